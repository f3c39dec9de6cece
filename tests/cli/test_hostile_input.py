"""Careless input to the command line: one-line errors, consistent checks, quiet exits."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import aposthog
from aposthog._cli import main
from aposthog.testing import FakePostHog

from .conftest import RunCli

pytestmark = pytest.mark.anyio

ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
ROOT = Path(__file__).resolve().parents[2]


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert status == result.returncode, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines, "no message"
    assert lines[-1].startswith("aposthog") or lines[-1].startswith("usage"), lines
    assert lines[-1].count("error") >= 1
    return lines[-1]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("profile-configs", "create", "--scope", "person", "--content", '"x"'), "object or array"),
        (("profile-configs", "create", "--scope", "person", "--content", "42"), "object or array"),
        (
            ("profile-configs", "create", "--scope", "person", "--content", "true"),
            "object or array",
        ),
        (("profile-configs", "create", "--scope", "person", "--sidebar", "5"), "object or array"),
        (("profile-configs", "create", "--scope", "quick"), "group_4"),
        (("profile-configs", "update", ID, "--scope", "nobody"), "person, group_0"),
        (("profile-configs", "get", "not-a-uuid"), "UUID"),
        (("profile-configs", "delete", "../x"), "UUID"),
        (("batch-exports", "logs", ID, "--fetch", "501"), "between 1 and 500"),
        (("batch-exports", "logs", ID, "--fetch", "0"), "between 1 and 500"),
        (
            ("batch-exports", "logs", ID, "--level", "bogus"),
            "DEBUG, LOG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (("batch-exports", "logs", ID, "--level", ","), "at least one level"),
        (("batch-exports", "logs", ID, "--run", "x"), "UUID"),
        (("batch-exports", "test-step", ID, "--step", "-1"), ">= 0"),
        (("batch-exports", "test-step", ID, "--step", "one"), "whole number"),
        (("batch-exports", "runs", ID, "--status", "bogus"), "Failed"),
        (("batch-exports", "get", "None"), "UUID"),
        (("chat", ""), "empty"),
        (("chat", "   "), "empty"),
        (("chat", "--conversation", "not-a-uuid", "hi"), "UUID"),
        (("chat", "--agent-mode", "", "hi"), "agent-mode"),
        (("conversations", "get", "None"), "UUID"),
        (("conversations", "cancel", "1.5"), "UUID"),
        (("serve-fake", "--port", "99999"), "65535"),
        (("serve-fake", "--port", "http"), "whole number"),
    ],
)
async def test_bad_input_is_a_one_line_usage_error(
    fake: FakePostHog, run_cli: RunCli, args: tuple[str, ...], says: str
) -> None:
    """Each of these once printed a traceback (or asked PostHog); now: exit 2, one line."""
    result = await run_cli(*args)
    line = assert_one_line_error(result, 2)
    assert says in line
    assert fake.requests == []


@pytest.mark.parametrize("option", ["--content", "--sidebar"])
async def test_json_nested_too_deep_to_parse_is_a_one_line_usage_error(
    fake: FakePostHog, run_cli: RunCli, option: str
) -> None:
    """
    A `--content` nested 100 levels and one is refused in one line; nested 5,000 levels
    (a generated file pasted in, `--content "$(cat deep.json)"`) the standard library's
    parser raises `RecursionError`, not `ValueError`, and the command printed a traceback
    and exited 1, where careless input is one line and exit 2.
    """
    deep = "[" * 5000 + "]" * 5000
    result = await run_cli("profile-configs", "create", "--scope", "person", option, deep)
    line = assert_one_line_error(result, 2)
    assert option in line
    assert fake.requests == []


async def test_a_record_holding_json_nested_600_deep_is_printed(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """
    PostHog's answer holds a `content` nested 600 levels deep, which the client reads:
    `get --json` printed a `RecursionError` traceback (cattrs gave up near 335 levels).
    It prints the record; the table shows the value shortened.
    """
    deep: list[object] = []
    for _ in range(600):
        deep = [deep]
    fake.customer_profile_configs[ID] = {
        "id": ID,
        "scope": "person",
        "content": deep,
        "sidebar": {"a": deep},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    result = await run_cli("profile-configs", "get", ID, "--json")
    assert (0, "") == (result.returncode, result.stderr)
    assert deep == json.loads(result.stdout)["content"]
    table = await run_cli("profile-configs", "get", ID)
    assert (0, "") == (table.returncode, table.stderr)
    assert "[" * 39 + "…" in table.stdout


@pytest.mark.parametrize(
    "command",
    [
        ("conversations", "list"),
        ("profile-configs", "list"),
        ("batch-exports", "list"),
        ("batch-exports", "logs", ID),
        ("batch-exports", "runs", ID),
    ],
)
@pytest.mark.parametrize("limit", ["0", "-3", "x"])
async def test_every_limit_is_checked_the_same_way(
    fake: FakePostHog, run_cli: RunCli, command: tuple[str, ...], limit: str
) -> None:
    """`conversations list --limit 0` once printed "(none)" where the others refused 0."""
    result = await run_cli(*command, "--limit", limit)
    line = assert_one_line_error(result, 2)
    assert "--limit" in line
    assert fake.requests == []


async def test_enum_values_ignore_case_everywhere(fake: FakePostHog, run_cli: RunCli) -> None:
    """`--level error` and `--status failed` both work; PostHog gets its own spelling."""
    async with fake.client() as ph:
        export = await ph.batch_exports.create(
            name="e", destination={"type": "NoOp", "config": {}}, interval="hour"
        )
    logs = await run_cli("batch-exports", "logs", export.id, "--level", "error,Warning")
    assert 0 == logs.returncode, logs.stderr
    assert ("level", "ERROR,WARNING") in fake.requests[-1].query
    runs = await run_cli("batch-exports", "runs", export.id, "--status", "failed")
    assert 0 == runs.returncode, runs.stderr
    assert ("status", "Failed") in fake.requests[-1].query
    scoped = await run_cli("--json", "profile-configs", "create", "--scope", "GROUP_1")
    assert 0 == scoped.returncode, scoped.stderr
    assert "group_1" == json.loads(scoped.stdout)["scope"]


async def test_hosts_are_checked_with_the_accepted_forms(run_cli: RunCli) -> None:
    bare = await run_cli("profile-configs", "list", env={"POSTHOG_HOST": "uk"})
    line = assert_one_line_error(bare, 2)
    assert '"us", "eu" or an http(s) URL' in line
    assert "POSTHOG_HOST" in line
    cleartext = await run_cli("--host", "http://192.0.2.2", "profile-configs", "list")
    line = assert_one_line_error(cleartext, 2)
    assert "--allow-insecure-http" in line
    assert "allow_insecure_http" not in line


async def test_serve_fake_on_a_port_in_use_is_one_line(run_cli: RunCli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_cli("serve-fake", "--port", str(port))
    line = assert_one_line_error(result, 1)
    assert f"127.0.0.1:{port}" in line


async def test_a_closed_pipe_exits_quietly_with_141(fake: FakePostHog) -> None:
    """`aposthog profile-configs list | head -0`: no traceback, status 141 like other tools."""
    async with fake.client() as ph:
        for _ in range(30):
            await ph.customer_profile_configs.create(scope="person")
    env = {
        **os.environ,
        "POSTHOG_HOST": fake.url,
        "POSTHOG_PERSONAL_API_KEY": fake.api_key,
        "POSTHOG_PROJECT_ID": fake.project_id,
        "PYTHONWARNINGS": "error",
    }
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        process = await anyio.open_process(
            [sys.executable, "-m", "aposthog", "profile-configs", "list"],
            stdout=write_end,
            env=env,
        )
    finally:
        os.close(write_end)
    assert process.stderr is not None
    async with process:
        with anyio.fail_after(30):
            stderr = b""
            async for chunk in process.stderr:
                stderr += chunk
            await process.wait()
    assert 141 == process.returncode, stderr
    assert b"" == stderr


# The console script's own code: import the entry module, call main(). The promise starts
# when that code runs, so the marker is written then: at the first import of the package,
# which the entry module makes right after installing its guard (the marker says whether
# the guard is in place). Python's own start-up before that is no part of the command.
_ENTRY = """
import sys

def _marker(event, args, done=[]):
    if event == "import" and not done and args[0].partition(".")[0] == "aposthog":
        done.append(True)
        signals = sys.modules["_signal"]
        guarded = signals.getsignal(signals.SIGINT) is not signals.default_int_handler
        sys.stderr.write("started\\n" if guarded else "unguarded\\n")
        sys.stderr.flush()

sys.addaudithook(_marker)
from _aposthog_cli import main
sys.exit(main())
"""


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.5])
async def test_ctrl_c_at_any_moment_prints_no_traceback(delay: float) -> None:
    """SIGINT while the package is still being imported, or later: exit 130, quietly."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error"}
    process = await anyio.open_process(
        [sys.executable, "-c", _ENTRY, "demo"], env=env, cwd=str(ROOT)
    )
    assert process.stderr is not None
    async with process:
        with anyio.fail_after(30):
            started = await process.stderr.receive()
            assert started.startswith(b"started")
            await anyio.sleep(delay)
            process.send_signal(signal.SIGINT)
            await process.wait()
            rest = b""
            async for chunk in process.stderr:
                rest += chunk
    shown = f"status {process.returncode}, stderr: {rest.decode()}"
    assert b"Traceback" not in rest, shown
    assert b"KeyboardInterrupt" not in rest, shown
    assert process.returncode in (130, 0), shown


async def test_python_m_aposthog_testing_on_a_port_in_use_is_one_line() -> None:
    """`python -m aposthog.testing --port <in use>` says so in one line too."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with anyio.fail_after(30):
            result = await anyio.run_process(
                [sys.executable, "-m", "aposthog.testing", "--port", str(port)], check=False
            )
    stderr = result.stderr.decode()
    assert 1 == result.returncode, stderr
    assert "Traceback" not in stderr
    assert 1 == len(stderr.strip().splitlines())
    assert f"127.0.0.1:{port}" in stderr


@pytest.mark.parametrize(
    ("args", "option", "says"),
    [
        (("batch-exports", "logs", ID, "--level", ","), "--level", "at least one level"),
        (
            ("profile-configs", "create", "--scope", "person", "--content", '{"a": NaN}'),
            "--content",
            "is nan",
        ),
        (("profile-configs", "update", ID, "--sidebar", "[Infinity]"), "--sidebar", "is inf"),
    ],
)
async def test_a_refused_value_names_its_option(
    fake: FakePostHog, run_cli: RunCli, args: tuple[str, ...], option: str, says: str
) -> None:
    """The parser refuses these itself, naming the option, rather than the library later."""
    result = await run_cli(*args)
    line = assert_one_line_error(result, 2)
    assert f"argument {option}: " in line
    assert says in line
    assert fake.requests == []


async def test_an_error_detail_with_line_separators_stays_one_line(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """\\v, \\f and U+2028 in PostHog's detail are line breaks to splitlines(): folded."""
    fake.fail_next(status=400, body={"detail": "bad\u2028value\x0bhere\x0cnow"})
    result = await run_cli("profile-configs", "list")
    line = assert_one_line_error(result, 1)
    assert 1 == len(result.stderr.splitlines())
    assert "bad value here now" in line


class _Interrupting(io.StringIO):
    """A terminal whose user presses Ctrl-C as the first output arrives."""

    def write(self, text: str) -> int:
        raise KeyboardInterrupt


def test_a_keyboard_interrupt_reaching_main_exits_130() -> None:
    """Ctrl-C that is not the event loop's cancellation (parsing, say): status 130."""
    assert 130 == main(["demo"], out=_Interrupting())


_AFTER_MAIN = """
import sys
import _signal

sys.argv = ["aposthog", "profile-configs", "list", "--json"]
from _aposthog_cli import main
status = main()
guarded = _signal.getsignal(_signal.SIGINT) is not _signal.default_int_handler
print(status, "guarded" if guarded else "unguarded")
"""


async def test_the_guard_is_back_once_main_returns(fake: FakePostHog) -> None:
    """The event loop hands SIGINT back to Python when it closes; the console script puts its
    guard back, so a Ctrl-C while the interpreter shuts down prints no traceback either."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONWARNINGS": "error",
        "POSTHOG_HOST": fake.url,
        "POSTHOG_PERSONAL_API_KEY": fake.api_key,
        "POSTHOG_PROJECT_ID": fake.project_id,
    }
    with anyio.fail_after(30):
        result = await anyio.run_process([sys.executable, "-c", _AFTER_MAIN], env=env, cwd=ROOT)
    assert b"0 guarded\n" == result.stdout, result.stderr


# ---------------------------------------------------------------- QA: found by review

_SECRET_KEY = "phx_QA_secret_key_9b1f2c3d4e5f"


async def _cli_against(
    url: str, *args: str, stdout: int | None = subprocess.PIPE, key: str = _SECRET_KEY
) -> subprocess.CompletedProcess[str]:
    """The command run in a subprocess against the loopback server at `url`."""
    env = {
        **os.environ,
        "POSTHOG_HOST": url,
        "POSTHOG_PERSONAL_API_KEY": key,
        "POSTHOG_PROJECT_ID": "1",
        "PYTHONWARNINGS": "error",
        "PYTHONIOENCODING": "utf-8",
    }
    with anyio.fail_after(30):
        result = await anyio.run_process(
            [sys.executable, "-m", "aposthog", *args], env=env, check=False, stdout=stdout
        )
    out = (result.stdout or b"").decode()  # None when written to a file of the caller's
    return subprocess.CompletedProcess(result.args, result.returncode, out, result.stderr.decode())


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    "args", [("profile-configs", "list", "--json"), ("profile-configs", "get", ID)]
)
async def test_output_that_cannot_be_written_is_a_one_line_error(
    fake: FakePostHog, args: tuple[str, ...]
) -> None:
    """`aposthog profile-configs list > /dev/full` (a full disk): one line on stderr, status 1."""
    fake.customer_profile_configs[ID] = {
        "id": ID,
        "scope": "person",
        "content": {},
        "sidebar": {},
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": None,
    }
    full = os.open("/dev/full", os.O_WRONLY)  # every write fails with ENOSPC
    try:
        result = await _cli_against(fake.url, *args, stdout=full, key=fake.api_key)
    finally:
        os.close(full)
    assert_one_line_error(result, 1)


async def test_the_key_is_not_printed_when_the_server_quotes_it_back() -> None:
    """
    A proxy (or a debugging server) whose 401 quotes the request's `Authorization`
    header: the one-line error must still not print the key.
    """
    from aiohttp import web

    from ..web_server import serve

    async def echo(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        return web.json_response(
            {"type": "authentication_error", "code": "x", "detail": f"rejected {header}"},
            status=401,
        )

    async with serve(echo) as url:
        result = await _cli_against(url, "profile-configs", "list")
    assert_one_line_error(result, 1)
    assert _SECRET_KEY not in result.stderr + result.stdout


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
async def test_a_record_holding_a_lone_surrogate_is_printed_inert(as_json: bool) -> None:
    """
    `"\\ud800"` is valid JSON: the record is printed (escaped, as control characters
    are), never a UnicodeEncodeError turned into a "usage error" with status 2.
    """
    from aiohttp import web

    from ..web_server import serve

    record = (
        b'{"id":"' + ID.encode() + b'","scope":"person","content":{"note":"\\ud800"},'
        b'"sidebar":{},"created_at":"2024-01-01T00:00:00Z","updated_at":null}'
    )

    async def handler(request: web.Request) -> web.Response:
        body = b'{"count":1,"next":null,"previous":null,"results":[' + record + b"]}"
        return web.Response(body=body, content_type="application/json")

    args = ("profile-configs", "list", *(("--json",) if as_json else ()))
    async with serve(handler) as url:
        result = await _cli_against(url, *args)
    assert 0 == result.returncode, result.stderr
    assert ID in result.stdout
    assert "\\ud800" in result.stdout


@pytest.mark.parametrize(
    "args",
    [("--project-id", "0"), ("--project-id", "-3"), ("--api-key", "phx a b"), ("--api-key", "")],
    ids=["project-0", "project-negative", "key-with-spaces", "empty-key"],
)
def test_serve_fake_refuses_a_project_id_or_key_no_client_accepts(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """
    `serve-fake --project-id 0` served, printing `POSTHOG_PROJECT_ID=0`, which the
    client (and `aposthog` itself) refuses with "project_id must be a positive int"; a key
    with whitespace is refused by the client too, and an empty one was silently replaced
    by a random key. Like `--port`, such values are a usage error before serving.
    """
    from aposthog._cli import build_parser

    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve-fake", *args])
    assert 2 == info.value.code
    assert "error" in capsys.readouterr().err


async def test_verbose_lines_quoting_server_text_are_inert(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """
    With `-v`, a retried 503's INFO line quotes the error, and so PostHog's (or a proxy's)
    `detail`: its ESC and BEL reach the terminal and act on it (colours, a title, OSC 52
    writing the clipboard). The final error line shows the same text escaped, and the
    command line's rule is that text from PostHog never acts on the terminal.
    """
    detail = "busy \x1b]0;pwned\x07 \x1b[31mred\x1b[0m"
    fake.fail_next(1, status=503, body={"type": "server_error", "code": "x", "detail": detail})
    result = await run_cli("-v", "profile-configs", "list")
    assert 0 == result.returncode, result.stderr
    assert "retrying" in result.stderr
    assert "busy" in result.stderr
    assert "\x1b" not in result.stderr
    assert "\x07" not in result.stderr


# ---------------------------------------------------------------- QA (cli): found by review


#: C1's CSI (U+009B, which xterm and others obey as ESC [ ) and NEL, in a name.
C1_ESCAPES = "\u009b2J\u0085\u009b31m"  # NEL mid-name: DRF trims it at the end


async def test_json_lines_show_c1_controls_escaped(fake: FakePostHog, run_cli: RunCli) -> None:
    """
    The table shows a C1 CSI escaped (`\\x9b`) because some terminals act on it as ESC [;
    `--json` relies on json.dumps, which escapes C0 only (ensure_ascii=False), so the same
    name reaches the terminal raw with `--json`. `\\u009b` is the same JSON value, inert.
    """
    async with fake.client() as ph:
        await ph.batch_exports.create(
            name="nightly" + C1_ESCAPES,
            destination=aposthog.BatchExportDestination(type="NoOp", config={}),
            interval="hour",
        )
    listed = await run_cli("batch-exports", "list", "--json")
    assert 0 == listed.returncode, listed.stderr
    line, end = listed.stdout.split("\n")  # not splitlines(): NEL (U+0085) is a break to it
    assert ("nightly" + C1_ESCAPES, "") == (json.loads(line)["name"], end)
    assert not any(0x80 <= ord(c) < 0xA0 for c in listed.stdout), repr(listed.stdout)


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
async def test_a_record_on_a_stdout_that_cannot_encode_it_is_printed_escaped(
    fake: FakePostHog, as_json: bool
) -> None:
    """
    stdout in a locale that is not UTF-8 (`PYTHONIOENCODING=ascii`, a Latin-1 locale, a
    Windows file redirect): a record holding "Zoë" stopped the listing halfway with
    "'ascii' codec can't encode character" and status 2, the status of a usage error, as
    the lone surrogate once did. JSON can always be written in ASCII; a table can escape.
    """
    async with fake.client() as ph:
        await ph.customer_profile_configs.create(scope="person", content={"name": "Zoë"})
    env = {
        **os.environ,
        "POSTHOG_HOST": fake.url,
        "POSTHOG_PERSONAL_API_KEY": fake.api_key,
        "POSTHOG_PROJECT_ID": fake.project_id,
        "PYTHONWARNINGS": "error",
        "PYTHONIOENCODING": "ascii",
    }
    args = ["profile-configs", "list", *(["--json"] if as_json else [])]
    with anyio.fail_after(30):
        result = await anyio.run_process(
            [sys.executable, "-m", "aposthog", *args], env=env, check=False
        )
    stdout, stderr = result.stdout.decode("ascii"), result.stderr.decode()
    assert 0 == result.returncode, stderr
    assert "Zo" in stdout
    if as_json:
        assert "Zoë" == json.loads(stdout)["content"]["name"]


async def test_a_table_prints_the_pages_that_came_before_an_error() -> None:
    """
    The README: lists are "aligned tables, printed page by page as they arrive". Rows are
    held until 50 have come, so when the second page fails (a 500, a lost connection) the
    first page's records, received and shown with `--json`, are never printed.
    """
    from aiohttp import web

    from ..web_server import serve

    def record(n: int) -> str:
        return (
            f'{{"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5{n}","scope":"person","content":{{}},'
            '"sidebar":{},"created_at":"2024-01-01T00:00:00Z","updated_at":null}'
        )

    async def handler(request: web.Request) -> web.Response:
        if "offset" in request.query:
            return web.json_response(
                {"type": "validation_error", "code": "invalid", "detail": "page two is gone"},
                status=400,
            )
        nxt = f"{request.url.with_query({'limit': '2', 'offset': '2'})}"
        body = f'{{"count":4,"next":"{nxt}","previous":null,"results":[{record(1)},{record(2)}]}}'
        return web.Response(text=body, content_type="application/json")

    async with serve(handler) as url:
        as_json = await _cli_against(url, "profile-configs", "list", "--json")
        table = await _cli_against(url, "profile-configs", "list")
    assert_one_line_error(as_json, 1)
    assert 2 == len(as_json.stdout.splitlines())  # JSON lines: printed as they came
    assert_one_line_error(table, 1)
    assert "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a51" in table.stdout
    assert "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a52" in table.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("profile-configs", "list", "--api_key", _SECRET_KEY),  # `_` for `-`: a common slip
        ("profile-configs", "list", "--apikey", _SECRET_KEY),
        ("batch-exports", "list", "--token", _SECRET_KEY),
        ("demo", "--api-key", _SECRET_KEY),  # demo takes no connection options
    ],
    ids=["api_key", "apikey", "token", "demo"],
)
def test_a_mistyped_key_option_does_not_print_the_key(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """
    The module's promise: "the API key is never printed". A slip in the option's name
    (`--api_key`), or the key given to `demo`, is a usage error whose line quotes every
    unrecognized argument: "unrecognized arguments: --api_key phx_…", the key in a CI log.
    """
    with pytest.raises(SystemExit) as info:
        main(list(args))
    assert 2 == info.value.code
    captured = capsys.readouterr()
    assert "unrecognized arguments" in captured.err
    assert _SECRET_KEY not in captured.err + captured.out


async def test_json_lines_stay_json_for_a_number_too_big_for_a_float() -> None:
    """
    `1e999` is a JSON number (RFC 8259 sets no range); Python reads it as `inf`, and
    json.dumps writes that back as `Infinity`, which no JSON reader (jq, JSON.parse)
    accepts: `aposthog profile-configs list --json | jq` fails on the whole line.
    """
    from aiohttp import web

    from ..web_server import serve

    record = (
        b'{"id":"' + ID.encode() + b'","scope":"person","content":{"n":1e999},'
        b'"sidebar":{},"created_at":"2024-01-01T00:00:00Z","updated_at":null}'
    )

    async def handler(request: web.Request) -> web.Response:
        body = b'{"count":1,"next":null,"previous":null,"results":[' + record + b"]}"
        return web.Response(body=body, content_type="application/json")

    async with serve(handler) as url:
        result = await _cli_against(url, "profile-configs", "list", "--json")
    assert 0 == result.returncode, result.stderr
    (line,) = result.stdout.splitlines()
    json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} is not JSON: {line}"))


# `python -m aposthog demo`, with Ctrl-C pressed once the package is imported, as its
# __main__ starts importing the command line (about 75 ms of imports: the resources).
_MINUS_M = """
import os, runpy, signal, sys

def _press_ctrl_c(event, args, done=[]):
    if event == "import" and not done and args[0] == "aposthog._cli":
        done.append(True)
        os.kill(os.getpid(), signal.SIGINT)

sys.addaudithook(_press_ctrl_c)
sys.argv = ["aposthog", "demo"]
runpy.run_module("aposthog", run_name="__main__", alter_sys=True)
"""


async def test_python_m_aposthog_ctrl_c_once_the_package_is_imported_is_quiet() -> None:
    """
    The README: Ctrl-C exits 130 without a traceback, "`python -m aposthog` from the
    moment the package is imported". aposthog/__main__.py imports `._cli` outside
    `main()`'s guard, so a Ctrl-C in those imports prints a KeyboardInterrupt traceback.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error"}
    with anyio.fail_after(30):
        result = await anyio.run_process(
            [sys.executable, "-c", _MINUS_M], env=env, cwd=str(ROOT), check=False
        )
    stderr = result.stderr.decode()
    assert b"" == result.stdout  # interrupted before the demo started
    assert "Traceback" not in stderr, stderr
    assert "KeyboardInterrupt" not in stderr, stderr
    assert 130 == result.returncode


@pytest.mark.parametrize("entry", ["aposthog serve-fake", "python -m aposthog.testing"])
@pytest.mark.parametrize("project_id", [str(2**63), "99999999999999999999"])
def test_serve_fake_refuses_a_project_id_past_a_64_bit_id(
    entry: str, project_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    As for `--project-id 0` (refused since the fix in the CHANGELOG): it served, printing
    `POSTHOG_PROJECT_ID=9223372036854775808`, which every client (and `aposthog` itself)
    then refuses: "project_id must be a project's id, at most 9223372036854775807".
    """
    from aposthog._cli import build_parser
    from aposthog.testing.__main__ import parse_arguments

    with pytest.raises(aposthog.ConfigurationError):  # what a client says to it
        aposthog.Client(api_key="phx_k", host="http://127.0.0.1:1", project_id=project_id)
    with pytest.raises(SystemExit) as info:
        if entry == "aposthog serve-fake":
            build_parser().parse_args(["serve-fake", "--project-id", project_id])
        else:
            parse_arguments(["--project-id", project_id])
    assert 2 == info.value.code
    assert "error" in capsys.readouterr().err
