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
