"""`aposthog demo`: the main job on an embedded FakePostHog, without credentials."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_runs_every_tour_without_credentials() -> None:
    """The demo exits 0 in seconds with no POSTHOG_* variables, and shows every resource."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    env["PYTHONWARNINGS"] = "error"
    result = subprocess.run(
        [sys.executable, "-m", "aposthog", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    assert "" == result.stderr
    for heading in (
        "== Customer profile configs ==",
        "== Batch exports ==",
        "== PostHog AI conversations ==",
        "== Summary ==",
    ):
        assert heading in result.stdout
    assert "no credentials used" in result.stdout
    assert "pointed it at bucket 'analytics-archive-eu', every day at hour 3" in result.stdout
    # The queued message's run arrives on the stream of the answer it waited for.
    assert (
        'on the same stream: "How did signups do?": Signups rose 9% week over week. / '
        '"Where from?": Most came from organic search (61%).'
    ) in result.stdout
