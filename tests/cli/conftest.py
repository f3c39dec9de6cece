"""Run the `aposthog` command in a subprocess against the test's FakePostHog."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable

import anyio
import pytest

from aposthog.testing import FakePostHog

RunCli = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
def run_cli(fake: FakePostHog) -> RunCli:
    """`await run_cli("batch-exports", "list", "--json")`: the finished process, text output."""

    async def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        environ = {
            **os.environ,
            "POSTHOG_HOST": fake.url,
            "POSTHOG_PERSONAL_API_KEY": fake.api_key,
            "POSTHOG_PROJECT_ID": fake.project_id,
            "PYTHONWARNINGS": "error",
            **(env or {}),
        }
        with anyio.fail_after(timeout):
            result = await anyio.run_process(
                [sys.executable, "-m", "aposthog", *args], env=environ, check=False
            )
        return subprocess.CompletedProcess(
            result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
        )

    return run
