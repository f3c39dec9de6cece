"""Every Python code block of README.md runs, against a FakePostHog, so none goes stale."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aposthog
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks() -> list[Any]:
    text = README.read_text(encoding="utf-8")
    params = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 2
        params.append(pytest.param(match.group(1), line, id=f"README.md:{line}"))
    return params


def test_readme_has_code_blocks() -> None:
    """The README has runnable examples (a broken pattern would silently test nothing)."""
    assert len(_blocks()) >= 10


@pytest.mark.parametrize(("code", "line"), _blocks())
async def test_readme_block_runs(code: str, line: int, fake: FakePostHog) -> None:
    """The block runs as the body of a coroutine, with `ph` a client of a FakePostHog."""
    async with fake.client() as ph:
        namespace: dict[str, Any] = {
            "aposthog": aposthog,
            "ph": ph,
            "fake": fake,
            "key": fake.api_key,
        }
        # Padded so that a traceback points at the README's own line numbers.
        source = (
            "\n" * (line - 2)
            + "async def __readme_block():\n"
            + textwrap.indent(code, "    ")
            + "\n    return locals()\n"
        )
        exec(compile(source, str(README), "exec"), namespace)
        defined = await namespace["__readme_block"]()
        # A block that defines tests (the FakePostHog section) has them run too.
        for name, value in defined.items():
            if name.startswith("test_") and callable(value):
                await value()


def _console_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^```console\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        commands += [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    return commands


async def test_readme_console_commands_run(fake: FakePostHog) -> None:
    """Every `$ aposthog …` line of the README runs against a FakePostHog and exits 0."""
    import os
    import shlex
    import sys

    import anyio

    commands = _console_commands()
    assert len(commands) >= 5
    env = {
        **os.environ,
        "POSTHOG_HOST": fake.url,
        "POSTHOG_PERSONAL_API_KEY": fake.api_key,
        "POSTHOG_PROJECT_ID": fake.project_id,
    }
    for command in commands:
        argv = shlex.split(command)
        assert "aposthog" == argv[0]
        with anyio.fail_after(60):
            result = await anyio.run_process(
                [sys.executable, "-m", "aposthog", *argv[1:]], env=env, check=False
            )
        assert 0 == result.returncode, f"{command}: {result.stderr.decode()}"


def test_quick_start_commands_are_the_ci_commands() -> None:
    """The README's two commands are the nox sessions, and CI runs the same test command."""
    text = README.read_text(encoding="utf-8")
    quick_start = text[text.index("## Quick start") : text.index("## Installation")]
    assert "python3 -m pip install nox && python3 -m nox -s demo" in quick_start
    assert "python3 -m pip install nox && python3 -m nox -s tests" in quick_start
    root = README.parent
    noxfile = (root / "noxfile.py").read_text(encoding="utf-8")
    assert "def tests(" in noxfile
    assert "def demo(" in noxfile
    assert '"$PYTHON" -m nox -s tests' in (root / ".ci" / "run").read_text(encoding="utf-8")
