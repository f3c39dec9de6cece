"""The resource commands, run as subprocesses against FakePostHog."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator

import pytest

import aposthog
from aposthog.testing import FakePostHog

from .conftest import RunCli

pytestmark = pytest.mark.anyio


async def test_profile_configs_round_trip(fake: FakePostHog, run_cli: RunCli) -> None:
    """create, list, get, update and delete, with --json output parsed back."""
    created = await run_cli(
        "profile-configs",
        "create",
        "--scope",
        "person",
        "--json",
        "--content",
        '{"properties": ["email"]}',
    )
    assert 0 == created.returncode, created.stderr
    config = json.loads(created.stdout)
    assert ("person", {"properties": ["email"]}) == (config["scope"], config["content"])

    listed = await run_cli("profile-configs", "list", "--json")
    assert [config["id"]] == [json.loads(line)["id"] for line in listed.stdout.splitlines()]

    updated = await run_cli(
        "--json", "profile-configs", "update", config["id"], "--sidebar", '["plan"]'
    )
    assert ["plan"] == json.loads(updated.stdout)["sidebar"]

    shown = await run_cli("profile-configs", "get", config["id"])
    assert f"id       {config['id']}" in shown.stdout.splitlines()
    assert "scope    person" in shown.stdout.splitlines()

    deleted = await run_cli("profile-configs", "delete", config["id"])
    assert (0, f"deleted: {config['id']}\n") == (deleted.returncode, deleted.stdout)
    assert {} == fake.customer_profile_configs


async def test_human_list_is_an_aligned_table(fake: FakePostHog, run_cli: RunCli) -> None:
    """The human output is a table whose columns line up."""
    async with fake.client() as ph:
        for scope in ("person", "group_0", "group_4"):
            await ph.customer_profile_configs.create(scope=scope)
    listed = await run_cli("profile-configs", "list")
    lines = listed.stdout.splitlines()
    assert 4 == len(lines)
    assert lines[0].startswith("ID ")
    scope_column = lines[0].index("SCOPE")
    assert ["person", "group_0", "group_4"] == [
        line[scope_column:].split()[0] for line in lines[1:]
    ]


async def test_list_limit_pages_lazily(fake: FakePostHog, run_cli: RunCli) -> None:
    """--limit stops reading pages once it has printed enough."""
    fake.page_size = 2
    async with fake.client() as ph:
        for _ in range(7):
            await ph.customer_profile_configs.create(scope="person")
    fake.reset_stats()
    listed = await run_cli("profile-configs", "list", "--json", "--limit", "3")
    assert 3 == len(listed.stdout.splitlines())
    assert 2 == len(fake.requests)  # two pages of 2, not four


async def test_api_error_is_one_line_and_exit_1(run_cli: RunCli) -> None:
    """A 404 prints one line on stderr and exits 1."""
    result = await run_cli("profile-configs", "get", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    assert 1 == result.returncode
    assert "" == result.stdout
    assert 1 == len(result.stderr.splitlines())
    assert result.stderr.startswith("aposthog: error: 404 Not Found")


async def test_an_error_quoting_server_text_is_one_inert_line(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """PostHog's `detail` (which may quote what a user wrote) is printed inert: its
    escape sequences are shown escaped, never sent to the terminal."""
    body = {"type": "validation_error", "code": "invalid", "detail": "bad \x1b[2Jname\x07"}
    fake.fail_next(1, status=400, body=body)
    result = await run_cli("profile-configs", "get", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    assert 1 == result.returncode
    assert 1 == len(result.stderr.splitlines())
    assert "bad \\x1b[2Jname\\x07" in result.stderr
    assert "\x1b" not in result.stderr


async def test_an_action_on_a_missing_object_exits_1(run_cli: RunCli) -> None:
    """PostHog's error for an action is reported on one line with its status."""
    result = await run_cli(
        "batch-exports", "test-step", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "--step", "0"
    )
    assert 1 == result.returncode
    assert 1 == len(result.stderr.splitlines())
    assert result.stderr.startswith("aposthog: error: 404 Not Found")


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("nope",),
        ("profile-configs",),
        ("profile-configs", "create"),
        ("profile-configs", "update", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        ("profile-configs", "create", "--scope", "person", "--content", "{bad json"),
        ("profile-configs", "list", "--limit", "0"),
    ],
)
async def test_usage_errors_exit_2(run_cli: RunCli, args: tuple[str, ...]) -> None:
    """A command line that cannot run exits 2 with a message on stderr."""
    result = await run_cli(*args)
    assert 2 == result.returncode
    assert result.stderr.strip()


async def test_missing_key_is_a_usage_error_naming_the_variable(run_cli: RunCli) -> None:
    """No key anywhere: exit 2, and the message says how to give one."""
    result = await run_cli("profile-configs", "list", env={"POSTHOG_PERSONAL_API_KEY": ""})
    assert 2 == result.returncode
    assert "POSTHOG_PERSONAL_API_KEY" in result.stderr
    assert "--api-key" in result.stderr


async def test_flags_override_the_environment_and_the_key_is_never_printed(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """--api-key beats the environment; a rejected key is not echoed."""
    bad_key = "phx_this_key_is_wrong_0123456789"
    result = await run_cli("--api-key", bad_key, "profile-configs", "list")
    assert 1 == result.returncode
    assert "401 Unauthorized" in result.stderr
    assert bad_key not in result.stdout + result.stderr
    assert fake.api_key not in result.stdout + result.stderr


async def test_verbose_logs_each_request_on_stderr_without_the_key(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """-v: one line per request on stderr (before or after the command); stdout unchanged."""
    quiet = await run_cli("profile-configs", "list", "--json")
    for args in (("-v", "profile-configs", "list"), ("profile-configs", "list", "--verbose")):
        result = await run_cli(*args, "--json")
        assert 0 == result.returncode, result.stderr
        assert quiet.stdout == result.stdout
        assert re.fullmatch(
            r"aposthog: GET /api/environments/1/customer_profile_configs/: 200 in [0-9.]+ m?s\n",
            result.stderr,
        ), result.stderr
        assert fake.api_key not in result.stderr
    missing = await run_cli("-v", "profile-configs", "get", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    assert 1 == missing.returncode
    logged, error = missing.stderr.splitlines()
    assert re.match(
        r"aposthog: GET \S+/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/: 404 NotFoundError", logged
    )
    assert error.startswith("aposthog: error: 404 Not Found")


async def test_serve_fake_is_listed_in_help(run_cli: RunCli) -> None:
    """`aposthog --help` names every command."""
    result = await run_cli("--help")
    for command in (
        "demo",
        "serve-fake",
        "chat",
        "conversations",
        "batch-exports",
        "profile-configs",
    ):
        assert command in result.stdout


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every command's parser under `parser`, groups (`batch-exports`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from _commands(child)


def test_every_command_s_help_lists_the_connection_options_it_takes() -> None:
    """
    The connection options are taken after the command too (`aposthog batch-exports list
    --host eu`), but only `aposthog --help` listed them: `aposthog chat --help`, what a
    user of that command reads, named none of them, not even `--api-key`. Every command
    that takes them lists them now; `demo` and `serve-fake`, which take none, do not.
    """
    from aposthog._cli import build_parser

    takes: list[str] = []
    other: list[str] = []
    for command in _commands(build_parser()):
        takes_them = any(a.dest == "api_key" for a in command._actions)
        (takes if takes_them else other).append(command.prog)
        text = command.format_help()
        for option in ("--api-key KEY", "--host HOST", "--project-id ID", "--allow-insecure"):
            assert (option in text) == takes_them, (command.prog, option)
    assert {"aposthog chat", "aposthog batch-exports list"} <= set(takes)
    assert {"aposthog demo", "aposthog serve-fake"} == set(other)
    assert len(takes) > 15


async def test_a_command_s_help_is_printed_with_its_connection_options(run_cli: RunCli) -> None:
    """`aposthog profile-configs create --help`, as a user runs it."""
    result = await run_cli("profile-configs", "create", "--help")
    assert 0 == result.returncode
    assert "connection (also from the environment):" in result.stdout
    assert "--api-key KEY" in result.stdout


def test_version() -> None:
    """The version flag prints the package version."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "aposthog", "--version"], capture_output=True, text=True, check=True
    )
    assert f"aposthog {aposthog.__version__}\n" == result.stdout


async def _export(fake: FakePostHog) -> str:
    async with fake.client() as ph:
        export = await ph.batch_exports.create(
            name="Nightly",
            destination={
                "type": "AwsS3",
                "config": {"bucket_name": "b", "region": "eu-west-1", "prefix": "p/"},
                "integration": fake.add_integration("aws-s3")["id"],
            },
            interval="day",
        )
    return export.id


async def test_batch_exports_list_get_pause_unpause(fake: FakePostHog, run_cli: RunCli) -> None:
    """list and get print the export; pause and unpause change it on the server."""
    export_id = await _export(fake)

    listed = await run_cli("batch-exports", "list", "--json")
    assert [export_id] == [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    table = await run_cli("batch-exports", "list")
    assert "Nightly" in table.stdout.splitlines()[1]

    paused = await run_cli("batch-exports", "pause", export_id, "--json")
    assert {"id": export_id, "paused": True} == json.loads(paused.stdout)
    assert fake.batch_exports[export_id]["paused"] is True
    shown = await run_cli("batch-exports", "get", export_id, "--json")
    assert json.loads(shown.stdout)["paused"] is True

    unpaused = await run_cli("batch-exports", "unpause", export_id, "--backfill")
    assert 0 == unpaused.returncode
    assert fake.batch_exports[export_id]["paused"] is False
    assert {"backfill": True} == fake.requests[-1].json()


async def test_batch_exports_logs_test_step_and_runs(fake: FakePostHog, run_cli: RunCli) -> None:
    """logs filters by level, test-step prints the step's result, runs lists runs."""
    export_id = await _export(fake)
    fake.add_batch_export_logs(
        export_id, ["started", {"message": "boom", "level": "ERROR"}, "finished"]
    )
    fake.add_batch_export_run(export_id, status="Failed", latest_error="boom")

    logs = await run_cli("batch-exports", "logs", export_id, "--level", "error", "--json")
    assert ["boom"] == [json.loads(line)["message"] for line in logs.stdout.splitlines()]
    assert ("level", "ERROR") in fake.requests[-1].query

    fake.set_batch_export_test_result("AwsS3", 0, status="Failed", message="Access denied")
    step = await run_cli("batch-exports", "test-step", export_id, "--step", "0")
    assert 0 == step.returncode  # a failed step is a result, not an error
    assert "status       Failed" in step.stdout.splitlines()
    assert "message      Access denied" in step.stdout.splitlines()

    runs = await run_cli("batch-exports", "runs", export_id, "--json")
    (run,) = [json.loads(line) for line in runs.stdout.splitlines()]
    assert ("Failed", "boom") == (run["status"], run["latest_error"])


async def test_batch_export_logs_with_a_scoped_key_exit_1(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """PostHog refuses logs to scoped keys: the 403 is reported, exit 1."""
    export_id = await _export(fake)
    key = fake.add_key(scopes=["batch_export:read"])
    result = await run_cli("batch-exports", "logs", export_id, "--api-key", key)
    assert 1 == result.returncode
    assert "This action does not support Personal API Key access" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["serve-fake", "--api-key", "phx_cli_key"],
        # The key given before the command is the one to accept too (a random one was).
        ["--api-key", "phx_cli_key", "serve-fake"],
    ],
    ids=["after", "before"],
)
def test_serve_fake_serves_until_interrupted(command: list[str]) -> None:
    """`aposthog serve-fake --api-key K` prints where it serves, with that key; SIGINT stops it."""
    import signal
    import subprocess
    import sys
    import urllib.request

    with subprocess.Popen(
        [sys.executable, "-m", "aposthog", *command, "--integration", "s3-compatible"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            values = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(4))
            request = urllib.request.Request(
                values["POSTHOG_HOST"] + "/api/environments/1/customer_profile_configs/",
                headers={"Authorization": "Bearer phx_cli_key"},
            )
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only
            with direct.open(request, timeout=10) as response:
                body = json.loads(response.read())
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=10)
    assert "phx_cli_key" == values["POSTHOG_PERSONAL_API_KEY"]
    assert values["POSTHOG_HOST"].startswith("http://127.0.0.1:")
    assert "1" == values["POSTHOG_INTEGRATION_S3_COMPATIBLE"]
    assert 0 == body["count"]
    assert 0 == code


def test_serve_fake_takes_any_port_from_0_to_65535() -> None:
    """0 asks for any free port; 65535 is the last one."""
    from aposthog._cli import build_parser

    for port in (0, 65535):
        assert port == build_parser().parse_args(["serve-fake", "--port", str(port)]).port


async def test_profile_configs_table_columns(fake: FakePostHog, run_cli: RunCli) -> None:
    """The list's columns: the config without its updated time (`get` shows that)."""
    async with fake.client() as ph:
        await ph.customer_profile_configs.create(scope="person", content={"a": 1})
    listed = await run_cli("profile-configs", "list")
    header, row = listed.stdout.splitlines()
    assert ["ID", "SCOPE", "CONTENT", "SIDEBAR", "CREATED"] == header.split()
    assert ["person", '{"a":1}', "{}"] == row.split()[1:4]


async def test_batch_export_logs_passes_search_run_and_fetch(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """--search, --run and --fetch reach PostHog as search, instance_id and limit."""
    export_id = await _export(fake)
    run = fake.add_batch_export_run(export_id, status="Failed")
    other = fake.add_batch_export_run(export_id, status="Completed")
    fake.add_batch_export_logs(
        export_id,
        [
            {"message": "boom: bucket", "instance_id": run["id"]},
            {"message": "boom: other run", "instance_id": other["id"]},
            {"message": "fine", "instance_id": run["id"]},
        ],
    )
    logs = await run_cli(
        "batch-exports", "logs", export_id, "--search", "boom", "--run", run["id"],
        "--fetch", "7", "--json",
    )  # fmt: skip
    assert 0 == logs.returncode, logs.stderr
    assert ["boom: bucket"] == [json.loads(line)["message"] for line in logs.stdout.splitlines()]
    query = fake.requests[-1].query
    assert {("search", "boom"), ("instance_id", run["id"]), ("limit", "7")} <= set(query)


async def test_batch_export_logs_limit_past_posthogs_page_asks_for_as_many(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """
    PostHog reads one page of 50 entries unless asked for more: `--limit 100` asks for
    100 (it printed 50 of 120, silently), `--limit 900` for PostHog's most (500), and
    `--fetch` still says how many PostHog reads.
    """
    export_id = await _export(fake)
    fake.add_batch_export_logs(export_id, [f"line {n}" for n in range(120)])
    limited = await run_cli("batch-exports", "logs", export_id, "--limit", "100", "--json")
    assert (0, 100) == (limited.returncode, len(limited.stdout.splitlines()))
    assert ("limit", "100") in fake.requests[-1].query
    every = await run_cli("batch-exports", "logs", export_id, "--limit", "900", "--json")
    assert 120 == len(every.stdout.splitlines())
    assert ("limit", "500") in fake.requests[-1].query
    few = await run_cli("batch-exports", "logs", export_id, "--limit", "3")
    assert 4 == len(few.stdout.splitlines())  # the header, then three
    assert "limit" not in dict(fake.requests[-1].query)
    fetched = await run_cli(
        "batch-exports", "logs", export_id, "--limit", "100", "--fetch", "10", "--json"
    )
    assert 10 == len(fetched.stdout.splitlines())


async def test_test_step_runs_the_step_asked_for(fake: FakePostHog, run_cli: RunCli) -> None:
    """--step N runs step N; without it, step 0."""
    export_id = await _export(fake)
    fake.set_batch_export_test_result("AwsS3", 1, status="Failed", message="Step one failed")
    second = await run_cli("batch-exports", "test-step", export_id, "--step", "1")
    assert 0 == second.returncode, second.stderr
    assert "message      Step one failed" in second.stdout.splitlines()
    assert 1 == fake.requests[-1].json()["step"]
    first = await run_cli("batch-exports", "test-step", export_id, "--json")
    assert 0 == first.returncode, first.stderr
    assert 0 == fake.requests[-1].json()["step"]


async def test_allow_insecure_http_lets_a_plain_http_host_through(run_cli: RunCli) -> None:
    """With the flag the command tries the host (here: a local proxy that is not there)."""
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    # Every request goes to the proxy on this machine, which refuses: nothing leaves it.
    env = {"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
    host = ("--host", "http://posthog.internal")
    refused = await run_cli(*host, "profile-configs", "list", env=env)
    assert 2 == refused.returncode
    allowed = await run_cli(*host, "--allow-insecure-http", "profile-configs", "list", env=env)
    assert 1 == allowed.returncode, allowed.stderr
    assert f"cannot connect to PostHog through the proxy {proxy}" in allowed.stderr
    assert "--allow-insecure-http" not in allowed.stderr


async def test_batch_export_get_shows_every_field(fake: FakePostHog, run_cli: RunCli) -> None:
    """The human `get`: one `label  value` line per field, each value from its own field."""
    from datetime import datetime, timezone

    async with fake.client() as ph:
        export = await ph.batch_exports.create(
            name="Windowed",
            destination={"type": "NoOp", "config": {}},
            interval="hour",
            start_at=datetime(2024, 1, 2, 3, 0, tzinfo=timezone.utc),
            end_at=datetime(2024, 2, 3, 4, 0, tzinfo=timezone.utc),
        )
    shown = await run_cli("batch-exports", "get", export.id)
    assert 0 == shown.returncode, shown.stderr
    lines = shown.stdout.splitlines()
    assert f"id           {export.id}" == lines[0]
    assert "name         Windowed" in lines
    assert "destination  NoOp" in lines
    assert "interval     hour" in lines
    assert "start at     2024-01-02T03:00:00Z" in lines
    assert "end at       2024-02-03T04:00:00Z" in lines


async def test_limit_reads_no_page_past_the_last_record_printed(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """--limit 2 with pages of 2: the first page holds everything to print."""
    fake.page_size = 2
    async with fake.client() as ph:
        for _ in range(7):
            await ph.customer_profile_configs.create(scope="person")
    for limit, pages in ((2, 1), (3, 2), (4, 2)):
        fake.reset_stats()
        listed = await run_cli("profile-configs", "list", "--json", "--limit", str(limit))
        assert limit == len(listed.stdout.splitlines())
        assert pages == len(fake.requests), limit
        table = await run_cli("profile-configs", "list", "--limit", str(limit))
        assert limit + 1 == len(table.stdout.splitlines())  # the header, then the rows


#: An OSC 8 hyperlink that disguises where it points, then "clear the screen".
TERMINAL_ESCAPES = "\x1b]8;;https://evil.example/\x07docs\x1b]8;;\x07\x1b[2J"


async def test_a_name_with_terminal_escapes_is_printed_inert(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """
    Any member of the organization (or the UI, or another integration) names a batch
    export; the human table must not let that name drive the reader's terminal (rewrite
    the screen, plant a disguised hyperlink, set the window title): control characters
    are shown escaped, as `--json` shows them.
    """
    async with fake.client() as ph:
        await ph.batch_exports.create(
            name="nightly" + TERMINAL_ESCAPES,
            destination=aposthog.BatchExportDestination(type="NoOp", config={}),
            interval="hour",
        )
    listed = await run_cli("batch-exports", "list")
    assert 0 == listed.returncode, listed.stderr
    assert "nightly\\x1b]8;;https://evil.example/\\x07docs" in listed.stdout
    assert "\x1b" not in listed.stdout
    assert "\x07" not in listed.stdout


async def test_a_host_with_credentials_is_told_to_use_the_flag(run_cli: RunCli) -> None:
    """The command line's advice names its flag, not the Python argument (`api_key`)."""
    result = await run_cli(
        "--host", "https://user:secret@eu.posthog.com", "profile-configs", "list"
    )
    assert 2 == result.returncode
    assert "must not carry credentials: use --api-key instead" in result.stderr
    assert "pass api_key" not in result.stderr
    assert "secret" not in result.stderr
