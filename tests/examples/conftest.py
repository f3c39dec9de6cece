"""Run an example script in a subprocess, as a user would, on its embedded FakePostHog."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(
    name: str, *args: str, input: str | None = None, posthog: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """
    Run examples/<name> without POSTHOG_* variables (so: against FakePostHog), or with
    only those of `posthog`.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    env.update(posthog or {})
    env["PYTHONWARNINGS"] = "error"
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=env,
        input=input,
        timeout=120,
        check=False,
    )
