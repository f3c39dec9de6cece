"""
Every check aposthog runs: `nox` (tests on each installed Python, lint, typecheck),
plus `nox -s demo` and `nox -s bench`.

Interpreters are found on PATH or in pyenv's versions folder, and each one is run once
before it is offered to nox: a pyenv shim for a version that is not selected exists on
PATH but fails, and an absent Python is skipped rather than failing the run.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import nox

nox.options.sessions = ["tests", "speedups", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

SUPPORTED = ("3.10", "3.11", "3.12", "3.13")


def _works(path: str) -> bool:
    try:
        subprocess.run(
            [path, "-c", "import sys, venv"], check=True, capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _find(version: str) -> str | None:
    if sys.version_info[:2] == tuple(map(int, version.split("."))):
        return sys.executable
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in candidates:
        if candidate and os.path.exists(candidate) and _works(candidate):
            return candidate
    return None


PYTHONS = {v: p for v in SUPPORTED if (p := _find(v)) is not None}
if not PYTHONS:  # nothing found: test with the Python running nox
    PYTHONS = {f"{sys.version_info[0]}.{sys.version_info[1]}": sys.executable}
TEST_DEPS = ["pytest>=8", "hypothesis>=6.100"]


@nox.session
@nox.parametrize("python", list(PYTHONS.values()), ids=list(PYTHONS))
def tests(session: nox.Session) -> None:
    """Run the test suite (on every supported Python that is installed)."""
    session.install(".", *TEST_DEPS)
    session.run("pytest", "-q", *session.posargs)


@nox.session
def speedups(session: nox.Session) -> None:
    """The tests that compare the speedups extra's JSON parser with the standard library's."""
    session.install(".[speedups]", *TEST_DEPS)
    session.run("pytest", "-q", "tests/test_json.py", "tests/test_converter.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install(".", "mypy>=1.11", *TEST_DEPS)
    session.run("mypy", "--strict", "aposthog")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job, on an embedded FakePostHog, no credentials."""
    session.install(".")
    session.run("aposthog", "demo")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks, each side by side with its alternative; they print ratios."""
    session.install(".", "httpx-sse>=0.4", "httpx>=0.27", "orjson>=3.9")
    for script in sorted(glob.glob("benchmarks/bench_*.py")):
        session.run("python", script, *session.posargs)
