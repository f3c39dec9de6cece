"""
The README's pytest examples, pasted into a fresh project: a virtualenv with nothing but
aposthog (a wheel of this checkout, built once per session), pytest and the async plugin
the example names, then pytest in a subprocess. This is what a user does, so it proves the
`pytest11` entry point and the `fake_posthog` fixture outside this repository's conftest.

pip may fetch pytest, the plugin and aposthog's dependencies from the package index (or
its cache); each step is bounded in time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from .test_readme import readme_blocks

ROOT = Path(__file__).resolve().parent.parent
STEP_TIMEOUT = 600  # seconds for one pip or pytest run (a cold cache downloads a few wheels)


def _run(argv: Sequence[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    # The project must see only its own virtualenv: no checkout on the path, no options
    # meant for this test session.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "PYTEST", "VIRTUAL_ENV", "HYPOTHESIS"))
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    assert 0 == result.returncode, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def aposthog_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built once for every project of the session."""
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT], cwd=out)
    (wheel,) = out.glob("aposthog-*.whl")
    return wheel


def _project(tmp_path: Path, kind: str, wheel: Path, *requirements: str) -> Path:
    """A project holding the README block alone, in a virtualenv; returns its python."""
    ((code, _line),) = [p.values for p in readme_blocks(f"pytest-project {kind}")]
    (tmp_path / "test_posthog.py").write_text(code, encoding="utf-8")
    _run([sys.executable, "-m", "venv", tmp_path / ".venv"], cwd=tmp_path)
    python = tmp_path / ".venv" / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", wheel, "pytest", *requirements], cwd=tmp_path)
    return python


def _passed(result: subprocess.CompletedProcess[str], count: int) -> None:
    summary = result.stdout.strip().splitlines()[-1]
    assert f"{count} passed" in summary, result.stdout
    assert "warning" not in summary, result.stdout


def test_pytest_asyncio_project_strict_and_auto_mode(tmp_path: Path, aposthog_wheel: Path) -> None:
    """The pytest-asyncio example passes in strict mode (the default) and in auto mode."""
    python = _project(tmp_path, "pytest-asyncio", aposthog_wheel, "pytest-asyncio")
    _passed(_run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path), 3)
    auto: list[str | Path] = [
        python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
    ]
    _passed(_run(auto, cwd=tmp_path), 3)


def test_anyio_project(tmp_path: Path, aposthog_wheel: Path) -> None:
    """
    The anyio example passes with anyio's plugin, which comes with aposthog's anyio, trio
    installed too (another package may bring it): anyio runs a marked test on every
    backend installed unless the project names one, and aposthog refuses trio.
    """
    python = _project(tmp_path, "anyio", aposthog_wheel, "trio")
    _passed(_run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path), 1)
