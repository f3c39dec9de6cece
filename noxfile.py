"""
Every check aposthog runs: `nox` (tests on each installed Python, lint, typecheck, docs),
plus `nox -s demo`, `nox -s bench` and `nox -s browser`.

Interpreters are found on PATH or in pyenv's versions folder, and each one is run once
before it is offered to nox: a pyenv shim for a version that is not selected exists on
PATH but fails, and an absent Python is skipped rather than failing the run.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import nox

nox.needs_version = ">=2025.2.9"  # nox.project.dependency_groups
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
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
PYPROJECT = nox.project.load_toml("pyproject.toml")


# The test suite in parallel workers (pytest-xdist), one per core and at least two: most
# tests wait on a loopback server or a clock rather than compute. More workers than cores
# run it faster still (four on two cores: 3.2 minutes instead of 7.8) but starve the tests
# that time a wait. `nox -s tests -- -n 0` runs it in one process.
PYTEST = ("pytest", "-q", "-n", str(max(2, os.cpu_count() or 1)))


def _group(*names: str) -> list[str]:
    """The requirements of pyproject.toml's dependency groups `names`."""
    return list(nox.project.dependency_groups(PYPROJECT, *names))


@nox.session
@nox.parametrize("python", list(PYTHONS.values()), ids=list(PYTHONS))
def tests(session: nox.Session) -> None:
    """Run the test suite (on every supported Python that is installed)."""
    # Every extra: the Redis rate-limit tests run against a real redis-server, the tracing
    # tests record spans, and the JSON tests compare orjson with the standard library.
    session.install(".[otel,redis,speedups]", *_group("tests"))
    session.run(*PYTEST, *session.posargs)


def _declared_minimums() -> dict[str, str]:
    """
    Each runtime dependency and extra at the lowest version pyproject.toml allows
    (`name>=x`): read from the file itself, so the pins cannot drift from what it says.
    """
    project = PYPROJECT["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    pins: dict[str, str] = {}
    for requirement in requirements:
        found = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=([0-9.]+)", requirement)
        if found:
            pins[found[1]] = found[2]
    return pins


# The oldest and the newest Python found: asyncio's tasks count cancellations from 3.11 on,
# and aposthog's cancellations take another path there.
_ENDS = dict.fromkeys([next(iter(PYTHONS)), next(reversed(PYTHONS))])


@nox.session
@nox.parametrize("python", [PYTHONS[v] for v in _ENDS], ids=list(_ENDS))
def lowest(session: nox.Session) -> None:
    """
    The test suite on the oldest and the newest Python found, with every dependency and
    extra at the lowest version pyproject.toml declares: what `pip install aposthog` may
    give a user whose other packages hold those versions back.
    """
    pins = _declared_minimums()
    for needed in ("aiohttp", "attrs", "cattrs", "anyio", "orjson", "redis", "opentelemetry-api"):
        if needed not in pins:
            session.error(f"no minimum version of {needed} found in pyproject.toml")
    exact = [f"{name}=={version}" for name, version in pins.items()]
    # The SDK that reads spans back in the tests, at the API's version.
    sdk = f"opentelemetry-sdk=={pins['opentelemetry-api']}"
    tests = _group("tests")
    skipped: list[str] = []
    python = next(v for v, path in PYTHONS.items() if path == session.python)
    if tuple(map(int, python.split("."))) >= (3, 13):
        # trio runs on Python 3.13 from 0.27 on, which needs attrs 23.2: beside attrs at
        # its minimum, its one test (aposthog refuses trio) runs on the oldest Python.
        tests = [t for t in tests if not re.match(r"trio\b", t)]
        skipped = ["--deselect", f"tests/test_client.py::{_TRIO_TEST}"]
    session.install(".[otel,redis,speedups]", *tests, sdk, *exact)
    # pip must not have resolved anything higher: then this session would test the wrong thing.
    session.run("python", "-c", _CHECK_INSTALLED, *exact)
    session.run(*PYTEST, *skipped, *session.posargs)


_TRIO_TEST = "test_under_trio_every_entry_point_is_a_client_state_error"


_CHECK_INSTALLED = """
import sys
from importlib.metadata import version
from itertools import zip_longest

def parts(text):
    return [int(p) for p in text.split(".")]

for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    have = version(name)
    if any(a != b for a, b in zip_longest(parts(have), parts(wanted), fillvalue=0)):
        sys.exit(f"{name} {have} is installed, not the declared minimum {wanted}")
    print(f"{name} {have}")
"""


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, the examples, the benchmarks and the tests."""
    session.install(".[otel,redis]", *_group("typecheck"))
    session.run("mypy", "--strict", "aposthog", "examples", "benchmarks", "tests")


@nox.session
def docs(session: nox.Session) -> None:
    """The API reference, built from the docstrings into site/ (warnings are errors)."""
    session.install(".", *_group("docs", "tests"))
    session.run("pytest", "-q", "tests/test_docs.py")  # every public name has a page
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job, on an embedded FakePostHog, no credentials."""
    session.install(".")
    session.run("aposthog", "demo")


@nox.session
def browser(session: nox.Session) -> None:
    """
    The web relay example's page in a real browser: Debian's Chromium, headless, driven by
    selenium through chromium-driver (`apt-get install chromium chromium-driver`).
    Screenshots go to artifacts/browser/. Without Chromium the tests skip, saying how to
    install it; with CI=true they fail instead.
    """
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        session.warn("no Chromium: `sudo apt-get install chromium chromium-driver`")
    session.install(".", *_group("tests", "browser"))
    # SE_OFFLINE: the tests name the browser and its driver; nothing is ever downloaded.
    session.run(
        "pytest",
        "-q",
        "-m",
        "browser",
        "tests/examples",
        *session.posargs,
        env={"SE_OFFLINE": "true"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks, each side by side with its alternative; they print ratios."""
    session.install(".[otel,redis]", *_group("bench"))
    for script in sorted(glob.glob("benchmarks/bench_*.py")):
        session.run("python", script, *session.posargs)
