"""Every Python code block of README.md runs, against a FakePostHog, so none goes stale."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aposthog
from aposthog.testing import FakePostHog

from .stream_helpers import in_flight_with_three_streams_at_one_slot

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # pytest's own dependency on 3.10

pytestmark = pytest.mark.anyio

README = Path(__file__).resolve().parent.parent / "README.md"
# A block may be preceded by `<!-- readme-test: KIND -->`: a whole script (run as one) or a
# test module for a fresh pytest project (tests/test_readme_projects.py); others run here.
_BLOCK = re.compile(
    r"^(?:<!-- readme-test: (?P<kind>[^>]*?) -->\n)?```python\n(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


def readme_blocks(kind: str | None = None) -> list[Any]:
    """The README's Python blocks of one kind (None: plain blocks), as pytest params."""
    text = README.read_text(encoding="utf-8")
    params = []
    for match in _BLOCK.finditer(text):
        if match.group("kind") != kind:
            continue
        line = text.count("\n", 0, match.start("code")) + 1
        params.append(pytest.param(match.group("code"), line, id=f"README.md:{line}"))
    return params


def _blocks() -> list[Any]:
    return readme_blocks(None)


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
            # What the batch-export example names: an integration holding AWS keys.
            "aws_integration_id": fake.add_integration(
                "aws-s3", sensitive_config={"aws_access_key_id": "k", "aws_secret_access_key": "s"}
            )["id"],
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


def test_readme_blocks_type_check_as_a_users_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A user who checks their code with `mypy --strict` (as this project does) copies the
    README's blocks into a module; each, as the body of a coroutine given the names the
    blocks use, must pass the project's own mypy settings. Two do not: `step.result` is
    `BatchExportTestStepResult | None` and `Client.rate_limiter` is `RateLimiter | None`,
    so `step.result.status` and `polite.rate_limiter.limits` are `union-attr` errors.
    """
    from mypy import api  # the tests' dependency group installs it

    header = "import aposthog\nfrom aposthog.testing import FakePostHog\n\n\n"
    functions = [
        f"async def readme_line_{line}(\n"
        "    ph: aposthog.Client, fake: FakePostHog, key: str, aws_integration_id: int\n"
        ") -> None:\n" + textwrap.indent(code, "    ")
        for code, line in (param.values for param in _blocks())
    ]
    module = tmp_path / "users_module.py"
    module.write_text(header + "\n\n".join(functions), encoding="utf-8")
    monkeypatch.setenv("MYPYPATH", str(README.parent))
    report, errors, status = api.run(
        [
            "--config-file",
            str(README.parent / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            # The user's module is checked, not the package it imports (whose own check,
            # against the dependencies' latest stubs, is the typecheck session's).
            "--follow-imports",
            "silent",
            str(module),
        ]
    )
    assert (0, "") == (status, errors), report


async def test_readme_script_runs_as_a_program(fake: FakePostHog) -> None:
    """The first script runs as `python3 first.py` with the three variables set."""
    import os
    import sys

    import anyio

    (code, _line), *_ = [p.values for p in readme_blocks("script")]
    fake.script_answer("Most views: /pricing.", chunk_size=4)
    async with fake.client() as ph:
        await ph.batch_exports.create(
            name="Nightly",
            destination=aposthog.BatchExportDestination(
                type="AwsS3",
                config={"bucket_name": "b", "region": "eu-west-1", "prefix": "p/"},
                integration=fake.add_integration("aws-s3")["id"],
            ),
            interval="day",
        )
    env = {
        **os.environ,
        "POSTHOG_HOST": fake.url,
        "POSTHOG_PERSONAL_API_KEY": fake.api_key,
        "POSTHOG_PROJECT_ID": fake.project_id,
        "PYTHONWARNINGS": "error",
    }
    with anyio.fail_after(60):
        result = await anyio.run_process([sys.executable, "-c", code], env=env, check=False)
    assert 0 == result.returncode, result.stderr.decode()
    assert [
        "batch export 'Nightly': every day, paused=False",
        "Most views: /pricing.",
    ] == result.stdout.decode().splitlines()


def test_readme_testing_section_has_one_project_per_plugin() -> None:
    """The pytest examples exist for both plugins (tests/test_readme_projects.py runs them)."""
    assert 1 == len(readme_blocks("pytest-project pytest-asyncio"))
    assert 1 == len(readme_blocks("pytest-project anyio"))
    kinds = set(re.findall(r"<!-- readme-test: ([^>]*?) -->", README.read_text("utf-8")))
    assert {"script", "pytest-project pytest-asyncio", "pytest-project anyio"} == kinds


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


def test_the_sdist_ships_every_file_the_readme_tests_read() -> None:
    """
    The sdist includes `tests` (pyproject.toml), so a packager runs `pytest` from the
    unpacked sdist: every file these tests read must be in it, `.ci/run` included, or
    `test_quick_start_commands_are_the_ci_commands` fails there on a FileNotFoundError.
    """
    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = pyproject["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    assert "tests" in shipped
    read_by_the_tests = ["README.md", "noxfile.py", ".ci/run"]
    missing = [
        path
        for path in read_by_the_tests
        if not any(path == entry or path.startswith(f"{entry}/") for entry in shipped)
    ]
    assert [] == missing


def test_quick_start_names_a_one_interpreter_session_of_the_noxfile() -> None:
    """`nox -s "tests(3.X)"` is how the noxfile names a session: ids are the versions."""
    text = README.read_text(encoding="utf-8")
    quick_start = text[text.index("## Quick start") : text.index("## A first script")]
    assert "on every Python from 3.10 to 3.13" in quick_start
    (version,) = re.findall(r'python3 -m nox -s "tests\((3\.\d+)\)"', quick_start)
    noxfile = (README.parent / "noxfile.py").read_text(encoding="utf-8")
    assert f'"{version}"' in noxfile.split("SUPPORTED = ", 1)[1].split("\n", 1)[0]
    assert '@nox.parametrize("python", list(PYTHONS.values()), ids=list(PYTHONS))' in noxfile


def _examples_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Examples") : text.index("## Troubleshooting")]


def test_the_examples_section_says_how_each_example_reaches_a_real_posthog() -> None:
    """
    The README's Examples section: "Each runs against an embedded FakePostHog by default,
    and against your PostHog when `POSTHOG_PERSONAL_API_KEY` (and `POSTHOG_HOST`,
    `POSTHOG_PROJECT_ID`) are set". examples/worker_pool.py deliberately does not: it
    uses the variables only with `--real` (its docstring, and
    tests/examples/test_worker_pool.py::test_a_key_in_the_environment_alone_does_not_make_it_real).
    A user who sets the variables and runs it as the README says pauses and unpauses
    exports of a fake, believing it is theirs; the README must name `--real`.
    """
    section = " ".join(_examples_section().split())
    worker_pool = (README.parent / "examples" / "worker_pool.py").read_text(encoding="utf-8")
    docstring = worker_pool.split('"""', 2)[1]
    assert "--real" in docstring  # what the example needs (its own docstring says so)
    promises_env_alone = "against your PostHog when `POSTHOG_PERSONAL_API_KEY`" in section
    assert not promises_env_alone or "--real" in section, section


async def test_every_bad_client_value_is_the_error_the_readme_names() -> None:
    """
    README, Configuration: "Every value is checked when the client is built: a bad one is
    a `ConfigurationError` that names the argument". A program that reports a bad
    configuration with `except aposthog.ConfigurationError` (or `except
    aposthog.PostHogError`) around `Client(...)` lets these escape: `session=` and
    `on_wait=` (a non-callable, or an `async def`) raise `TypeError`, which is neither.
    """
    text = README.read_text(encoding="utf-8")
    configuration = " ".join(
        text[text.index("## Configuration") : text.index("## Customer profile")].split()
    )
    assert "a bad one is a `ConfigurationError` that names the argument" in configuration

    async def notify(wait: aposthog.Wait) -> None:  # refused: it would never be awaited
        del wait

    bad: list[dict[str, object]] = [
        {"session": "not a session"},
        {"on_wait": 5},
        {"on_wait": notify},
        {"max_concurrency": 0},  # for contrast: a ConfigurationError today
    ]
    raised = [_client_error(kwargs) for kwargs in bad]
    escaped = [
        f"{next(iter(kwargs))}: {type(err).__name__}"
        for kwargs, err in zip(bad, raised, strict=True)
        if not isinstance(err, aposthog.ConfigurationError)
    ]
    assert [] == escaped
    for kwargs, err in zip(bad, raised, strict=True):
        assert next(iter(kwargs)) in str(err)


def _client_error(kwargs: dict[str, object]) -> BaseException:
    """What `aposthog.Client(**kwargs)` raises (it must refuse `kwargs`)."""
    with pytest.raises(Exception) as caught:  # noqa: PT011 - which class is the finding
        aposthog.Client(api_key="phx_readme_contract", **kwargs)  # type: ignore[arg-type]
    return caught.value


async def test_readme_max_concurrency_row_says_what_open_streams_hold(fake: FakePostHog) -> None:
    """
    A conversation stream holds its `max_concurrency` slot only while it opens (by design:
    a call inside a stream's loop must not wait for that stream): at `max_concurrency=1`
    several answers stream at once, each a request in flight on its own connection. The
    configuration table's "requests in flight at once" promises a bound they escape, so
    the row must say that a stream is bounded only while it opens.
    """
    # three requests in flight at max_concurrency=1
    assert await in_flight_with_three_streams_at_one_slot(fake) == 3
    row = next(
        line
        for line in README.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `max_concurrency`")
    )
    assert "stream" in row, row


async def test_readme_decode_error_names_the_first_bad_records_of_the_page() -> None:
    """
    README, "Lists": a record that does not fit "raises `ResponseDecodeError` (naming the
    first 10 records of the page that do not fit, and counting the rest) when the loop
    reaches it": a page of 12 bad records names records 0 to 9 and "2 more items".
    """
    from aiohttp import web

    from .web_server import serve

    async def page(request: web.Request) -> web.Response:
        del request
        results: list[dict[str, Any]] = [{} for _ in range(12)]
        return web.json_response({"count": 12, "next": None, "previous": None, "results": results})

    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "naming the first 10 records of the page that do not fit, and counting the rest" in text
    async with (
        serve(page) as url,
        aposthog.Client(api_key="phx_readme_contract", host=url, project_id=1, max_retries=0) as ph,
    ):
        with pytest.raises(aposthog.ResponseDecodeError) as caught:
            async for _export in ph.batch_exports.list():
                pass
    named = {path.split("]", 1)[0] + "]" for path in caught.value.paths}
    assert {f"$.results[{i}]" for i in range(10)} == named, sorted(named)
    assert "(and 2 more items that do not fit)" in str(caught.value)
