"""FakePostHog's shared behaviour: routing, auth, scopes, errors and the test knobs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import io
import json
import os
import signal
import subprocess
import sys
import typing
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import anyio
import pytest

import aposthog
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio


async def _raw(
    fake: FakePostHog, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.url + path, **kwargs) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def test_no_credentials_is_401_with_www_authenticate(fake: FakePostHog) -> None:
    """A request without a key gets PostHog's 401 envelope and WWW-Authenticate header."""
    status, headers, body = await _raw(fake, "GET", "/api/environments/1/customer_profile_configs/")
    assert 401 == status
    assert headers["WWW-Authenticate"] == (
        f'Bearer resource_metadata="{fake.url}/.well-known/oauth-protected-resource"'
    )
    assert (
        b'{"type":"authentication_error","code":"not_authenticated",'
        b'"detail":"Authentication credentials were not provided.","attr":null}'
    ) == body


async def test_invalid_key_is_authentication_failed(fake: FakePostHog) -> None:
    """An unknown key is 401 authentication_failed, raised as AuthenticationError."""
    async with fake.client(api_key="phx_wrong") as ph:
        with pytest.raises(aposthog.AuthenticationError) as info:
            await ph.customer_profile_configs.list()
    assert ("authentication_failed", info.value.detail) == (
        info.value.code,
        "Personal API key found in request Authorization header is invalid.",
    )


@pytest.mark.skipif(sys.platform != "linux", reason="reads the kernel's socket table")
async def test_the_fake_listens_on_loopback_only(fake: FakePostHog) -> None:
    """
    Bound to 127.0.0.1, never to every address: a test run must not open a port to the
    network. Read from the kernel's table of listening TCP sockets, not from `fake.url`.
    """
    port = int(fake.url.rsplit(":", 1)[1])
    table = await anyio.Path("/proc/net/tcp").read_text()
    rows = [line.split() for line in table.splitlines()[1:]]
    listening = [row[1] for row in rows if row[3] == "0A" and int(row[1].split(":")[1], 16) == port]
    assert listening == [f"0100007F:{port:04X}"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/environments/1/customer_profile_configs",
        "/api/environments/@current/customer_profile_configs/",
        "/api/projects/1/customer_profile_configs/",
    ],
)
async def test_paths_posthog_accepts(fake: FakePostHog, path: str) -> None:
    """Optional trailing slash, @current, and the /api/projects mirror all resolve."""
    status, _, _ = await _raw(
        fake, "GET", path, headers={"Authorization": f"Bearer {fake.api_key}"}
    )
    assert 200 == status


async def test_unknown_route_and_method(fake: FakePostHog) -> None:
    """Unknown paths are 404; a known path with another method is 405."""
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    assert 404 == (await _raw(fake, "GET", "/api/environments/1/nope/", headers=auth))[0]
    status, _, body = await _raw(
        fake, "PUT", "/api/environments/1/customer_profile_configs/", headers=auth
    )
    assert 405 == status
    assert {
        "type": "invalid_request",
        "code": "method_not_allowed",
        "detail": 'Method "PUT" not allowed.',
        "attr": None,
    } == json.loads(body)


async def test_other_project_is_forbidden(fake: FakePostHog) -> None:
    """Another environment id is refused with 403."""
    async with fake.client(project_id=99) as ph:
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.customer_profile_configs.list()


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, b"not_authenticated"), ({"Authorization": "Bearer phx_wrong"}, b"authentication_failed")],
)
async def test_a_missing_or_bad_key_is_401_before_the_project_check(
    fake: FakePostHog, headers: dict[str, str], code: bytes
) -> None:
    """DRF authenticates before checking permissions: another project still gets 401."""
    status, reply_headers, body = await _raw(
        fake, "GET", "/api/environments/99/customer_profile_configs/", headers=headers
    )
    assert 401 == status
    assert "WWW-Authenticate" in reply_headers
    assert code in body


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b" \n",
    ],
)
async def test_bad_json_is_a_parse_error(fake: FakePostHog, data: bytes) -> None:
    """A body that is not JSON, blanks included, gets DRF's parse_error 400."""
    status, _, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        data=data,
        headers={"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"},
    )
    assert 400 == status
    assert b'{"type":"invalid_request","code":"parse_error","detail":"JSON parse error - ' in body


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_in_a_json_body_are_drfs_parse_error(
    fake: FakePostHog, constant: str
) -> None:
    """
    DRF's JSONParser is strict (`STRICT_JSON`, on by default): `json.load` with
    `parse_constant=strict_constant` refuses `NaN`, `Infinity` and `-Infinity`, which
    Python's json accepts, with PostHog's 400 parse_error. Nothing is stored, and the
    list stays valid JSON (DRF's renderer could not even write such a value).
    """
    headers = {"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"}
    path = "/api/environments/1/customer_profile_configs/"
    data = b'{"scope": "person", "content": {"x": ' + constant.encode() + b"}}"
    status, _, body = await _raw(fake, "POST", path, data=data, headers=headers)
    assert (status, json.loads(body)) == (
        400,
        {
            "type": "invalid_request",
            "code": "parse_error",
            "detail": "JSON parse error - Out of range float values are not JSON compliant: "
            f"{constant!r}",
            "attr": None,
        },
    )
    assert fake.customer_profile_configs == {}
    status, _, body = await _raw(fake, "GET", path, headers=headers)
    json.loads(body, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))


@pytest.mark.parametrize("path", ["customer_profile_configs/", "batch_exports/"])
async def test_a_body_that_is_not_an_object_is_a_non_field_error(
    fake: FakePostHog, path: str
) -> None:
    """drf-exceptions-hog shows DRF's non-field `invalid` error without attr, as `invalid_input`."""
    status, _, body = await _raw(
        fake,
        "POST",
        f"/api/environments/1/{path}",
        data=b"[1, 2]",
        headers={"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"},
    )
    assert 400 == status
    assert {
        "type": "validation_error",
        "code": "invalid_input",
        "detail": "Invalid data. Expected a dictionary, but got list.",
        "attr": None,
    } == json.loads(body)


async def test_star_scope_and_legacy_keys(fake: FakePostHog) -> None:
    """
    A `*` or legacy key may write, a write scope may read; a key with another object's
    scope may not read.
    """
    star = fake.add_key(scopes=["*"])
    other = fake.add_key(scopes=["batch_export:write"])
    for may_write in (star, fake.add_key(scopes=[])):  # an empty list is a legacy key
        async with fake.client(api_key=may_write) as ph:
            await ph.customer_profile_configs.create(scope="person")
    writer = fake.add_key(scopes=["customer_profile_config:write"])
    async with fake.client(api_key=writer) as ph:
        await ph.customer_profile_configs.list()  # a write scope covers reading
    async with fake.client(api_key=other) as ph:
        with pytest.raises(aposthog.PermissionDeniedError, match="customer_profile_config:read"):
            await ph.customer_profile_configs.list()


async def test_fail_next_with_body_and_path_filter(fake: FakePostHog, ph: aposthog.Client) -> None:
    """fail_next() can target a method (in any case) and send a JSON body."""
    fake.fail_next(1, status=422, body={"error": "Nope"}, method="post")
    await ph.customer_profile_configs.list()  # not a POST: untouched
    with pytest.raises(aposthog.UnprocessableEntityError) as info:
        await ph.customer_profile_configs.create(scope="person")
    assert "Nope" == info.value.detail


async def test_throttle_text_matches_drf(fake: FakePostHog) -> None:
    """The 429 carries DRF's detail text and no Retry-After header."""
    fake.throttle_next(1, wait=1)
    status, headers, body = await _raw(
        fake,
        "GET",
        "/api/environments/1/customer_profile_configs/",
        headers={"Authorization": f"Bearer {fake.api_key}"},
    )
    assert 429 == status
    assert "Retry-After" not in headers
    assert b"Request was throttled. Expected available in 1 second." in body


@contextlib.contextmanager
def _standalone(
    *args: str, lines: int, stop: signal.Signals = signal.SIGINT
) -> Iterator[dict[str, str]]:
    """`python -m aposthog.testing *args`: the first `lines` it prints, then `stop` (exit 0)."""
    with subprocess.Popen(
        [sys.executable, "-m", "aposthog.testing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    ) as proc:
        try:
            assert proc.stdout is not None
            yield dict(proc.stdout.readline().strip().split("=", 1) for _ in range(lines))
        finally:
            proc.send_signal(stop)
            assert 0 == proc.wait(timeout=10)


@pytest.mark.parametrize("command", ["python -m aposthog.testing", "aposthog serve-fake"])
def test_standalone_server_whose_reader_went_away_exits_141_quietly(command: str) -> None:
    """
    Its stdout a pipe nobody reads any more: the first line it prints fails. It said
    "error: cannot serve on 127.0.0.1:0: Broken pipe" and exited 1, as for a port in
    use; it exits 141 with nothing on stderr now, as the command line's other commands.
    """
    argv = [sys.executable, "-m", "aposthog.testing"]
    if command == "aposthog serve-fake":
        argv = [sys.executable, "-m", "aposthog", "serve-fake"]
    read, write = os.pipe()
    os.close(read)  # the reader went away before anything was printed
    with subprocess.Popen(
        argv,
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    ) as proc:
        os.close(write)
        _, stderr = proc.communicate(timeout=30)
    assert (141, "") == (proc.returncode, stderr)


def test_standalone_server_prints_its_url_and_key() -> None:
    """`python -m aposthog.testing` serves on 127.0.0.1 and prints how to connect."""
    with _standalone(lines=3) as values:
        pass
    assert values["POSTHOG_HOST"].startswith("http://127.0.0.1:")
    assert values["POSTHOG_PERSONAL_API_KEY"].startswith("phx_fake_")
    assert "1" == values["POSTHOG_PROJECT_ID"]


async def test_a_standalone_server_does_not_grow_with_every_request_it_serves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    `python -m aposthog.testing` (and `aposthog serve-fake`) serves other processes for
    as long as a developer leaves it running, a worker pool behind it. `fake.requests`
    is for a test that holds the fake; standalone, nobody can read it, yet it kept
    every request served: about 1.2 KB each (52 MB of RSS after 10,000 list calls, 99 MB
    after 50,000), memory that grows for as long as it runs.
    """
    from aposthog.testing.__main__ import serve

    server = asyncio.ensure_future(serve())
    try:
        printed = ""
        with anyio.fail_after(10):
            while "POSTHOG_PROJECT_ID=" not in printed:
                await asyncio.sleep(0.01)
                printed += capsys.readouterr().out
        values = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
        host = values["POSTHOG_HOST"]
        async with aposthog.Client(
            api_key=values["POSTHOG_PERSONAL_API_KEY"], host=host, project_id=1
        ) as ph:
            for _ in range(20):
                await asyncio.gather(*(ph.customer_profile_configs.list() for _ in range(100)))
        # A fake of an earlier test may still be in memory under the same (reused) port:
        # each one with this URL must hold fewer than the 2,000 requests just served.
        fakes = [o for o in gc.get_objects() if isinstance(o, FakePostHog) and o.url == host]
        assert fakes
        assert [len(fake.requests) for fake in fakes if len(fake.requests) >= 2000] == []
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


def test_standalone_server_takes_its_key_and_project_and_stops_on_sigterm() -> None:
    """--api-key and --project-id are served as given; SIGTERM stops it cleanly, as SIGINT."""
    with _standalone(
        "--api-key", "phx_mine", "--project-id", "7", lines=3, stop=signal.SIGTERM
    ) as values:
        request = urllib.request.Request(
            values["POSTHOG_HOST"] + "/api/environments/7/customer_profile_configs/",
            headers={"Authorization": "Bearer phx_mine"},
        )
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback
        with direct.open(request, timeout=10) as response:
            assert 200 == response.status
    assert ("phx_mine", "7") == (
        values["POSTHOG_PERSONAL_API_KEY"],
        values["POSTHOG_PROJECT_ID"],
    )


def test_standalone_server_seeds_integrations() -> None:
    """
    `--integration aws-s3` adds one and prints its id: AwsS3 exports can be created. A
    seeded snowflake one holds the account, user and authentication type PostHog checks.
    """
    seed = ["--integration", "aws-s3", "--integration", "postgresql", "--integration", "snowflake"]
    created = []
    with _standalone(*seed, lines=6) as values:
        for destination in (
            {
                "type": "AwsS3",
                "config": {"bucket_name": "b", "region": "eu-west-1", "prefix": "p/"},
                "integration": int(values["POSTHOG_INTEGRATION_AWS_S3"]),
            },
            {
                "type": "Snowflake",
                "config": {"database": "d", "warehouse": "w", "schema": "s"},
                "integration": int(values["POSTHOG_INTEGRATION_SNOWFLAKE"]),
            },
        ):
            body = json.dumps({"name": "e", "interval": "hour", "destination": destination})
            request = urllib.request.Request(
                values["POSTHOG_HOST"] + "/api/environments/1/batch_exports/",
                data=body.encode(),
                headers={
                    "Authorization": f"Bearer {values['POSTHOG_PERSONAL_API_KEY']}",
                    "Content-Type": "application/json",
                },
            )
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback
            with direct.open(request, timeout=10) as response:
                created.append(json.loads(response.read()))
    assert ("1", "2", "3") == (
        values["POSTHOG_INTEGRATION_AWS_S3"],
        values["POSTHOG_INTEGRATION_POSTGRESQL"],
        values["POSTHOG_INTEGRATION_SNOWFLAKE"],
    )
    assert [1, 3] == [c["destination"]["integration"] for c in created]


def test_the_command_lines_integration_kinds_are_the_fakes() -> None:
    from aposthog._cli._args import FAKE_INTEGRATION_KINDS
    from aposthog.testing._batch_export_integrations import INTEGRATION_KINDS

    assert sorted(set(INTEGRATION_KINDS.values())) == list(FAKE_INTEGRATION_KINDS)


async def test_reset_stats_forgets_requests_and_counters(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """reset_stats() clears what was recorded, so a test can count from a known point."""
    fake.throttle_next(1, wait=0)
    await ph.customer_profile_configs.list()
    fake.script_answer("hi")
    await ph.conversations.create("hello").until_done()
    assert (2, 1) == (fake.status_counts[200], fake.status_counts[429])
    assert 1 == fake.ai_streams.completed
    assert 1 == fake.max_in_flight
    fake.reset_stats()
    assert ([], {}, 0, 0, 0) == (
        fake.requests,
        dict(fake.status_counts),
        fake.ai_streams.opened,
        fake.ai_streams.completed,
        fake.max_in_flight,
    )


async def test_only_a_bearer_authorization_carries_a_key(fake: FakePostHog) -> None:
    """PostHog reads a personal API key from `Bearer <key>` only: another scheme is no key."""
    status, _, body = await _raw(
        fake,
        "GET",
        "/api/environments/1/customer_profile_configs/",
        headers={"Authorization": f"Token {fake.api_key}"},
    )
    assert 401 == status
    assert b'"code":"not_authenticated"' in body


async def test_fault_paths_match_the_decoded_path(fake: FakePostHog) -> None:
    """A fault's `path` is looked for in the percent-decoded path of a request."""
    fake.fail_next(1, status=502, path="configs/café")
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    status, _, body = await _raw(
        fake, "GET", "/api/environments/1/customer_profile_configs/café", headers=auth
    )
    assert (502, b"") == (status, body)  # no body given: an empty one
    # Recorded as sent, percent-encoded; no body reads as None.
    assert "/api/environments/1/customer_profile_configs/caf%C3%A9" == fake.requests[-1].path
    assert fake.requests[-1].json() is None


async def test_a_bodiless_503_is_posthogs_own_error(fake: FakePostHog) -> None:
    """fail_next(status=503) without a body is PostHog's JSON error (a refusal the client
    retries for any request); bytes make it a proxy's page."""
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    fake.fail_next(1, status=503)
    status, _, body = await _raw(fake, "GET", "/api/environments/1/batch_exports/", headers=auth)
    assert 503 == status
    assert "service_unavailable" == json.loads(body)["code"]
    fake.fail_next(1, status=503, body=b"no healthy upstream")
    status, _, body = await _raw(fake, "GET", "/api/environments/1/batch_exports/", headers=auth)
    assert (503, b"no healthy upstream") == (status, body)


async def test_a_dropped_connection_is_counted_as_status_0(fake: FakePostHog) -> None:
    """drop_next() closes the connection unanswered; status_counts keeps it under 0."""
    fake.drop_next(1)
    with pytest.raises(aiohttp.ClientError):  # a POST, which aiohttp does not send again
        await _raw(fake, "POST", "/api/environments/1/customer_profile_configs/")
    assert {0: 1} == dict(fake.status_counts)


async def test_throttle_next_acts_after_the_scope_check(fake: FakePostHog) -> None:
    """
    A key without the scope gets its 403 before throttle_next's 429 (DRF checks
    permissions before throttles); the throttle waits for the next allowed request.
    """
    fake.throttle_next(1)
    path = "/api/environments/1/customer_profile_configs/"
    reader = {"Authorization": f"Bearer {fake.add_key(scopes=['batch_export:read'])}"}
    status, _, body = await _raw(fake, "GET", path, headers=reader)
    assert 403 == status
    assert {
        "type": "authentication_error",
        "code": "permission_denied",
        "detail": "API key missing required scope 'customer_profile_config:read'",
        "attr": None,
    } == json.loads(body)
    allowed = {"Authorization": f"Bearer {fake.api_key}"}
    assert 429 == (await _raw(fake, "GET", path, headers=allowed))[0]
    assert 200 == (await _raw(fake, "GET", path, headers=allowed))[0]


@pytest.mark.parametrize(
    "path",
    [
        "/api/environments/",
        "/api/environments/1/customer_profile_configs//",
        "/api/environments/1/nope/",
    ],
)
async def test_a_path_that_resolves_nowhere_is_404_before_authentication(
    fake: FakePostHog, path: str
) -> None:
    """
    Django resolves the URL first: no project, an empty id or an unknown resource is a
    plain 404 even without a key (no WWW-Authenticate: it is not a 401).
    """
    status, headers, body = await _raw(fake, "GET", path)
    assert (404, None) == (status, headers.get("WWW-Authenticate"))
    assert {
        "type": "invalid_request",
        "code": "not_found",
        "detail": "Not found.",
        "attr": None,
    } == json.loads(body)


async def test_reset_stats_keeps_a_stream_still_open_counted(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A stream open across reset_stats() stays counted as opened (and open)."""
    fake.script_answer("slow answer", delay=0.05)
    async with ph.conversations.create("q") as stream:
        await anext(stream)
        fake.reset_stats()
        assert (1, 1) == (fake.ai_streams.open, fake.ai_streams.opened)


async def test_json_is_sent_as_drf_renders_it(fake: FakePostHog) -> None:
    """`application/json`, compact, and UTF-8 as is (DRF's JSONRenderer escapes nothing)."""
    status, headers, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        json={"scope": "café"},
        headers={"Authorization": f"Bearer {fake.api_key}"},
    )
    assert (400, "application/json") == (status, headers["Content-Type"])
    assert '"detail":"\\"café\\" is not a valid choice."'.encode() in body


async def test_offset_pages_are_drfs_limit_offset_pagination(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `count` is the whole list; `next` and `previous` are absolute and keep `limit`
    (`previous` drops an offset reaching the start); a limit or offset DRF cannot use
    (not a number, below 1, negative) is its default. Asked at `/api/environments/`, the
    links name `/api/projects/`, as a current PostHog's rewrite makes them.
    """
    for _ in range(3):
        await ph.customer_profile_configs.create(scope="person")
    base = f"{fake.url}/api/projects/1/customer_profile_configs/"

    async def page(query: str) -> tuple[int, str | None, str | None, int]:
        status, _, body = await _raw(
            fake,
            "GET",
            f"/api/environments/1/customer_profile_configs/?{query}",
            headers={"Authorization": f"Bearer {fake.api_key}"},
        )
        assert 200 == status
        data = json.loads(body)
        return data["count"], data["next"], data["previous"], len(data["results"])

    assert (3, f"{base}?limit=1&offset=2", f"{base}?limit=1", 1) == await page("limit=1&offset=1")
    assert (3, None, f"{base}?limit=1&offset=1", 1) == await page("limit=1&offset=2")
    assert (3, None, f"{base}?limit=2", 1) == await page("offset=2&limit=2")
    for unusable in ("limit=0&offset=-1", "limit=x&offset=x", "limit=-2"):
        assert (3, None, None, 3) == await page(unusable)
    # Without a limit in the query, the page size is written into both.
    fake.page_size = 1
    assert (3, f"{base}?limit=1&offset=1", None, 1) == await page("offset=0")
    assert (3, None, f"{base}?limit=1&offset=1", 1) == await page("offset=2")
    # As older versions wrote them: the path asked.
    fake.environments_rewritten = False
    asked = f"{fake.url}/api/environments/1/customer_profile_configs/"
    assert (3, f"{asked}?limit=1&offset=2", f"{asked}?limit=1", 1) == await page("limit=1&offset=1")


async def test_a_body_over_a_mebibyte_is_read_whole(fake: FakePostHog) -> None:
    """aiohttp's 1 MiB default would be a 413: the fake reads a large body and answers it."""
    status, _, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        # A stream: aiohttp warns of a large body given as bytes.
        data=io.BytesIO(json.dumps({"scope": "x" * (2 * 1024 * 1024)}).encode()),
        headers={"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"},
    )
    assert (400, "invalid_choice") == (status, json.loads(body)["code"])


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_standalone_server_refuses_a_port_out_of_range(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port outside 0-65535 is argparse's usage error (exit 2), before anything serves."""
    from aposthog.testing.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--port", port])
    assert 2 == exited.value.code
    assert f"argument --port: must be between 0 and 65535, got {port}" in capsys.readouterr().err


def test_standalone_help_lists_the_integration_kinds_in_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--help` names each kind `--integration` takes once, alphabetically."""
    from aposthog.testing.__main__ import main
    from aposthog.testing._batch_export_integrations import INTEGRATION_KINDS

    monkeypatch.setenv("COLUMNS", "1000")  # no line wrapped (argparse breaks on hyphens)
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert 0 == exited.value.code
    shown = capsys.readouterr().out
    assert "one of " + ", ".join(sorted(set(INTEGRATION_KINDS.values()))) + ")" in shown


async def test_a_second_start_leaves_no_server_listening_after_aclose() -> None:
    """
    `fake = await FakePostHog().start()` followed by `async with fake:` starts it twice.
    Either the second start is refused or it is harmless; after `aclose()` nothing of the
    fake may still accept connections.
    """
    fake = FakePostHog()
    await fake.start()
    first, first_runner = fake.url, fake._server._runner
    try:
        with contextlib.suppress(RuntimeError):
            await fake.start()
        await fake.aclose()
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                async with session.get(first + "/api/environments/1/conversations/"):
                    pass
    finally:
        if first_runner is not None:
            await first_runner.cleanup()  # what the fake leaked, so no other test sees it


async def test_a_fail_next_body_is_either_sent_or_refused_at_once(fake: FakePostHog) -> None:
    """
    `fail_next(502, body=b"<html>…")` is how a test would play a proxy's error page. The
    fake must either answer the 502 it was told to, or refuse the body when the knob is
    set, not swallow the fault and answer its own 500 to whichever request came next.
    """
    fake.fail_next(status=502, body=b"<html>Bad gateway</html>")
    with pytest.raises(TypeError):
        fake.fail_next(status=500, body={"not": {"json"}})  # refused where it is set
    status, headers, body = await _raw(
        fake,
        "GET",
        "/api/environments/1/customer_profile_configs/",
        headers={"Authorization": f"Bearer {fake.api_key}"},
    )
    assert (502, b"<html>Bad gateway</html>") == (status, body)
    assert headers["Content-Type"].startswith("text/html")


async def test_a_page_size_below_one_is_refused() -> None:
    """
    `FakePostHog(page_size=0)` answers every list with no results and a `next` URL to
    the very same page, so a plain client that follows `next` never stops: refuse it.
    """
    with pytest.raises(ValueError, match="page_size"):
        FakePostHog(page_size=0)


def test_the_client_method_takes_clients_keyword_arguments_with_resolvable_hints() -> None:
    """
    `fake.client(...)` passes its keyword arguments to `aposthog.Client`, so it takes
    exactly Client's (but `host`, which is the fake's URL), typed and defaulted as Client
    types and defaults them: mypy then checks a test's `fake.client(timout=1)`, and
    `typing.get_type_hints` (which documentation tools and cattrs call) resolves its
    annotations at run time (`Client` was imported for type checking only: a `NameError`).
    `api_key` and `project_id` default to the fake's own, so their default is `NOT_GIVEN`.
    """
    hints = typing.get_type_hints(FakePostHog.client)
    assert aposthog.Client is hints.pop("return")
    client_hints = typing.get_type_hints(aposthog.Client.__init__)
    del client_hints["return"], client_hints["host"]
    for name in ("api_key", "project_id"):
        assert client_hints.pop(name) | aposthog.NotGiven == hints.pop(name)
    assert client_hints == hints

    ours = inspect.signature(FakePostHog.client).parameters
    theirs = inspect.signature(aposthog.Client.__init__).parameters
    assert [n for n in theirs if n not in ("self", "host")] == [n for n in ours if n != "self"]
    for name, parameter in ours.items():
        if name == "self":
            continue
        assert inspect.Parameter.KEYWORD_ONLY == parameter.kind
        expected = aposthog.NOT_GIVEN if name in ("api_key", "project_id") else theirs[name].default
        assert expected == parameter.default, name


async def test_the_client_method_passes_what_it_is_given_and_nothing_else(
    fake: FakePostHog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Given no `api_key` or `project_id`, the client uses the fake's; given one (None
    included, which reads the environment as `Client` does), it uses that; every other
    argument reaches `Client` as given.
    """
    async with fake.client(max_concurrency=3) as ph:
        await ph.customer_profile_configs.list().to_list()
        assert 3 == ph._api.config.max_concurrency
    assert f"Bearer {fake.api_key}" == fake.requests[-1].headers["authorization"]
    assert fake.requests[-1].path.startswith(f"/api/environments/{fake.project_id}/")

    key = fake.add_key()
    async with fake.client(api_key=key, project_id="@current") as ph:
        await ph.customer_profile_configs.list().to_list()
    assert f"Bearer {key}" == fake.requests[-1].headers["authorization"]
    assert fake.requests[-1].path.startswith("/api/environments/@current/")

    monkeypatch.setenv("POSTHOG_PERSONAL_API_KEY", key)
    monkeypatch.delenv("POSTHOG_PROJECT_ID", raising=False)
    async with fake.client(api_key=None, project_id=None) as ph:
        await ph.customer_profile_configs.list().to_list()
    assert f"Bearer {key}" == fake.requests[-1].headers["authorization"]
    assert fake.requests[-1].path.startswith("/api/environments/@current/")


async def test_a_fake_told_not_to_record_requests_keeps_none_and_still_counts_statuses() -> None:
    """`record_requests=False`: `requests` stays empty; the status counts go on."""
    async with FakePostHog(record_requests=False) as fake, fake.client() as ph:
        await ph.customer_profile_configs.list()
        with pytest.raises(aposthog.NotFoundError):
            await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
        assert [] == fake.requests
        assert {200: 1, 404: 1} == dict(fake.status_counts)


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream"])
async def test_a_json_body_not_labelled_json_is_drfs_415(
    fake: FakePostHog, content_type: str
) -> None:
    """
    PostHog parses a body with the parser its Content-Type names (DRF's JSON, form and
    multipart parsers, reference §1.1); any other type is DRF's `UnsupportedMediaType`,
    which drf-exceptions-hog renders as a 415 `invalid_request`. A client (or a user's
    own request code) that forgets `Content-Type: application/json` fails against the
    fake as it fails against PostHog; the fake used to parse the body as JSON whatever its
    type, and created the record.
    """
    status, _, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        data=json.dumps({"scope": "person"}).encode(),
        headers={"Authorization": f"Bearer {fake.api_key}", "Content-Type": content_type},
    )
    assert (status, fake.customer_profile_configs) == (415, {})
    assert {
        "type": "invalid_request",
        "code": "unsupported_media_type",
        "detail": f'Unsupported media type "{content_type}" in request.',
        "attr": None,
    } == json.loads(body)


async def test_a_form_encoded_body_is_read_as_posthog_reads_it(fake: FakePostHog) -> None:
    """
    PostHog's endpoints take form and multipart bodies as well as JSON (DRF's default
    parsers; every OpenAPI request body lists the three types, reference §1.1), so
    `scope=person` form-encoded creates a profile config, against the fake too. The fake
    used to answer a 400 "JSON parse error", so a client or script that posts forms
    passed against PostHog and failed against the fake.
    """
    status, _, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        data={"scope": "person"},  # aiohttp sends application/x-www-form-urlencoded
        headers={"Authorization": f"Bearer {fake.api_key}"},
    )
    assert (status, json.loads(body).get("scope")) == (201, "person")


async def test_a_start_that_could_not_bind_can_be_retried() -> None:
    """
    `FakePostHog(port=N).start()` on a port still held (by a fake a previous test has not
    closed yet, or another process) raises the OSError, as it should, and cleans up after
    itself: once the port is free, starting the same fake again serves. It used to raise
    "this server is already started, at " (an empty URL: it never served), so the fake
    could never be used, and the aiohttp runner set up by the failed start was never
    cleaned up.
    """
    holder = await FakePostHog().start()
    port = int(holder.url.rsplit(":", 1)[1])
    fake = FakePostHog(port=port)
    try:
        with pytest.raises(OSError, match="address already in use"):
            await fake.start()
        await holder.aclose()
        await fake.start()
        assert fake.url == f"http://127.0.0.1:{port}"
        async with fake.client() as ph:
            assert (await ph.customer_profile_configs.list()).results == []
    finally:
        await holder.aclose()
        await fake.aclose()


async def test_an_unexpected_failure_is_posthogs_json_500_and_is_counted(
    fake: FakePostHog,
) -> None:
    """
    PostHog answers an exception its view does not catch with drf-exceptions-hog's JSON
    500 (the fake's own `server_error()`), and so does the fake, counting it in
    `status_counts`: `after=-99999999999d` overflows PostHog's `relative_date_parse`, as
    it overflows the fake's. The fake used to let the OverflowError escape to aiohttp,
    which answered `text/plain` "Server got itself in trouble", and left the answer out of
    `status_counts`.
    """
    export_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    status, headers, body = await _raw(
        fake,
        "GET",
        f"/api/environments/1/batch_exports/{export_id}/runs/?after=-99999999999d",
        headers={"Authorization": f"Bearer {fake.api_key}"},
    )
    assert (status, headers["Content-Type"]) == (500, "application/json")
    assert {
        "type": "server_error",
        "code": "error",
        "detail": "A server error occurred.",
        "attr": None,
    } == json.loads(body)
    assert fake.status_counts[500] == 1


async def test_line_and_paragraph_separators_are_escaped_as_drf_renders_them(
    fake: FakePostHog,
) -> None:
    """
    DRF's JSONRenderer writes UTF-8 as is but always escapes U+2028 and U+2029 (`\\u2028`,
    `\\u2029`), so PostHog's JSON is a strict JavaScript subset and never holds a raw line
    or paragraph separator, which a line-oriented reader (a log shipper, a JSON-lines
    relay) would split a body at. The fake escapes them too; it used to send them raw, so
    a test could not show such a reader a body as PostHog writes it.
    """
    status, _, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        json={"scope": "person", "content": {"note": "a\u2028b\u2029c"}},
        headers={"Authorization": f"Bearer {fake.api_key}"},
    )
    assert status == 201
    assert "\u2028".encode() not in body
    assert "\u2029".encode() not in body
    assert b'"note":"a\\u2028b\\u2029c"' in body
    assert json.loads(body)["content"] == {"note": "a\u2028b\u2029c"}


@pytest.mark.parametrize("where", ["query", "body"])
async def test_a_key_in_the_query_or_body_is_accepted_as_posthog_accepts_it(
    fake: FakePostHog, where: str
) -> None:
    """
    PostHog's `PersonalAPIKeyAuthentication` falls back, without an `Authorization`
    header, to a `personal_api_key` body field, then query parameter (reference §1.2), so
    a script or webhook that sends the key there works against PostHog, and against the
    fake. The fake used to read the header only, and answered 401 "Authentication
    credentials were not provided.".
    """
    path = "/api/environments/1/customer_profile_configs/"
    if where == "query":
        status, _, body = await _raw(fake, "GET", path, params={"personal_api_key": fake.api_key})
        assert (status, json.loads(body).get("results")) == (200, [])
    else:
        status, _, body = await _raw(
            fake, "POST", path, json={"personal_api_key": fake.api_key, "scope": "person"}
        )
        assert (status, json.loads(body).get("scope")) == (201, "person")


async def test_a_streaming_answer_counts_in_flight_until_it_ends(fake: FakePostHog) -> None:
    """
    `in_flight` and `max_in_flight` are "the requests it has been handling at once". A
    conversation's `POST` is handled until its event stream ends, and the fake counts it
    until then. It used to count it only until it had the reply object: three streams
    open at once read `in_flight == 0` and `max_in_flight == 1`, so a test bounding the
    streams a client opens at once (its `max_concurrency`, a relay's own limit) passed
    whatever the client did.
    """
    fake.keepalive_interval = None
    for _ in range(3):
        fake.script_answer("a long answer " * 20, delay=0.2)
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    url = f"{fake.url}/api/environments/1/conversations/"
    async with aiohttp.ClientSession() as session:
        responses = []
        try:
            for _ in range(3):
                body = {"content": "hi", "conversation": str(uuid.uuid4())}
                body["trace_id"] = str(uuid.uuid4())
                response = await session.post(url, json=body, headers=headers)
                await response.content.readuntil(b"\n\n")  # the first event: it is streaming
                responses.append(response)
            assert fake.ai_streams.open == 3
            assert (fake.in_flight, fake.max_in_flight) == (3, 3)
        finally:
            for response in responses:
                response.close()
    await fake.wait_for_streams_closed()
    assert (fake.in_flight, fake.max_in_flight) == (0, 3)


async def test_a_body_without_a_content_type_is_drfs_415(fake: FakePostHog) -> None:
    """
    DRF reads a missing Content-Type as "" and no parser takes that: a body sent without
    one is the 415, naming the empty type (a body-less request needs no type).
    """
    status, _, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        data=json.dumps({"scope": "person"}).encode(),
        headers={"Authorization": f"Bearer {fake.api_key}"},
        skip_auto_headers=["Content-Type"],
    )
    assert (status, json.loads(body)["detail"]) == (415, 'Unsupported media type "" in request.')
    status, _, _ = await _raw(
        fake,
        "GET",
        "/api/environments/1/customer_profile_configs/",
        headers={"Authorization": f"Bearer {fake.api_key}"},
        skip_auto_headers=["Content-Type"],
    )
    assert status == 200


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/*"]
)
async def test_a_json_content_type_with_parameters_or_in_any_case_is_json(
    fake: FakePostHog, content_type: str
) -> None:
    """DRF matches the media type without its parameters, in any case, and wildcards."""
    status, _, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        data=json.dumps({"scope": "group_1"}).encode(),
        headers={"Authorization": f"Bearer {fake.api_key}", "Content-Type": content_type},
    )
    assert (status, json.loads(body)["scope"]) == (201, "group_1")


async def test_a_multipart_body_is_read_as_posthog_reads_it(fake: FakePostHog) -> None:
    """A multipart form's fields are read as DRF's MultiPartParser reads them."""
    form = aiohttp.FormData()
    form.add_field("scope", "group_0")
    form.add_field("file", b"ignored", filename="a.txt")
    status, _, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        data=form,
        headers={"Authorization": f"Bearer {fake.api_key}"},
    )
    assert (status, json.loads(body)["scope"]) == (201, "group_0")
    status, _, body = await _raw(
        fake,
        "POST",
        "/api/environments/1/customer_profile_configs/",
        data=b"scope=person",
        headers={"Authorization": f"Bearer {fake.api_key}", "Content-Type": "multipart/form-data"},
    )
    assert (status, json.loads(body)) == (
        400,
        {
            "type": "invalid_request",
            "code": "parse_error",
            "detail": "Multipart form parse error - Invalid boundary in multipart: None",
            "attr": None,
        },
    )


@pytest.mark.parametrize(("where", "source"), [("query", "query string"), ("body", "body")])
async def test_an_unknown_key_in_the_query_or_body_is_401_naming_where(
    fake: FakePostHog, where: str, source: str
) -> None:
    """PostHog's 401 for an unknown key names where it found it."""
    path = "/api/environments/1/customer_profile_configs/"
    if where == "query":
        status, _, body = await _raw(fake, "GET", path, params={"personal_api_key": "phx_nope"})
    else:
        status, _, body = await _raw(fake, "POST", path, json={"personal_api_key": "phx_nope"})
    assert (status, json.loads(body)["detail"]) == (
        401,
        f"Personal API key found in request {source} is invalid.",
    )


async def test_a_bearer_header_wins_over_a_key_in_the_body_or_query(fake: FakePostHog) -> None:
    """
    Only the first key found is tried: the header's, then the body's, then the query's
    (an unknown one is refused even when a later place holds a good key).
    """
    path = "/api/environments/1/customer_profile_configs/"
    status, _, _ = await _raw(
        fake,
        "GET",
        path,
        params={"personal_api_key": "phx_nope"},
        headers={"Authorization": f"Bearer {fake.api_key}"},
    )
    assert status == 200
    status, _, body = await _raw(
        fake,
        "POST",
        path,
        params={"personal_api_key": fake.api_key},
        json={"personal_api_key": "phx_nope", "scope": "person"},
    )
    assert (status, json.loads(body)["detail"]) == (
        401,
        "Personal API key found in request body is invalid.",
    )
    assert fake.customer_profile_configs == {}


async def test_a_recorded_request_shows_no_key_in_its_repr(
    fake: FakePostHog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    `fake.client(api_key=None)` reads `POSTHOG_PERSONAL_API_KEY`, as `Client()` pointed
    at the fake does: a CI job that also runs tests against the real PostHog has the
    real key there. The fake refuses it (401), but `fake.requests` holds it, and its
    repr (what pytest prints for a failing `assert fake.requests[-1] == ...`, or a
    `print(fake.requests)`) shows it in clear: the key must read `<redacted>` there, as
    in the client's own header mappings, while `.headers["authorization"]` keeps the text.
    """
    real = "phx_REAL_key_from_the_environment_7f3a9c"
    monkeypatch.setenv("POSTHOG_PERSONAL_API_KEY", real)
    async with fake.client(api_key=None, max_retries=0) as ph:
        with pytest.raises(aposthog.AuthenticationError):
            await ph.customer_profile_configs.list()
    recorded = fake.requests[-1]
    assert f"Bearer {real}" == recorded.headers["authorization"]
    assert real not in repr(fake.requests)


@pytest.mark.parametrize(
    "args", [["--project-id", "0"], ["--api-key", "phx a b"], ["--api-key", ""]]
)
def test_the_kits_command_refuses_a_project_id_or_key_no_client_accepts(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m aposthog.testing` refuses them before serving, as `serve-fake` does."""
    from aposthog.testing.__main__ import parse_arguments

    with pytest.raises(SystemExit) as info:
        parse_arguments(args)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


async def test_an_aclose_cut_short_by_cancellation_still_drops_every_connection() -> None:
    """
    `async with FakePostHog()` left under cancellation (a sibling task failed, a deadline
    passed) runs `aclose()` cancelled. It stopped listening, then the first await of the
    aiohttp cleanup raised, after `_runner` was already forgotten: connections the fake
    had accepted kept being served, and `aclose()` again was a no-op, so nothing could
    finish the stop ("Stop serving and drop every connection").
    """
    fake = FakePostHog()
    path = "/api/environments/1/customer_profile_configs/"
    served_after: int | None = None
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        with anyio.CancelScope() as scope:
            async with fake:
                async with session.get(fake.url + path, headers=auth) as resp:
                    assert 200 == resp.status  # a keep-alive connection, now idle
                scope.cancel()  # the block is left cancelled: __aexit__ runs cancelled
        await fake.aclose()  # whatever the first one left, this one finishes
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(fake.url + path, headers=auth) as resp:
                served_after = resp.status
    # The session is closed (and the connection with it) before asserting.
    assert served_after is None


def test_a_single_scope_given_as_a_str_is_refused_not_split_into_letters() -> None:
    """
    `scopes` is typed `Sequence[str] | None`, which a plain str satisfies (mypy accepts
    `add_key(scopes="customer_profile_config:write")`). The fake made a key whose scopes
    were the string's letters, so every request with it was PostHog's 403 "API key
    missing required scope 'customer_profile_config:write'": the very scope the test gave
    it. Like the fake's other knobs, it should refuse the value where it is given.
    """
    fake = FakePostHog()
    with pytest.raises(TypeError, match="scopes"):
        fake.add_key(scopes="customer_profile_config:write")


@pytest.mark.parametrize("latency", [-0.001, float("nan"), "0.01"])
def test_a_latency_that_is_no_delay_is_refused_where_it_is_given(latency: Any) -> None:
    """
    `FakePostHog(latency=...)` (and `fake.latency = ...`) took any value; each request
    then ran `anyio.sleep(latency)` before it was handled, which raised, so every answer
    was aiohttp's own `text/plain` "500 Internal Server Error" (not PostHog's JSON 500, and
    not in `status_counts`): the fake stopped answering like PostHog. `page_size` and
    `keepalive_interval` are refused where they are given; so should `latency` be.
    """
    with pytest.raises((TypeError, ValueError), match="latency"):
        FakePostHog(latency=latency)
    fake = FakePostHog()
    with pytest.raises((TypeError, ValueError), match="latency"):
        fake.latency = latency


@pytest.mark.parametrize("project_id", [0, -1, 2**63, True, "1"])
def test_a_project_id_no_client_can_address_is_refused(project_id: Any) -> None:
    """Every client refuses these ids, so a fake serving one could never be reached."""
    with pytest.raises(ValueError, match="project_id"):
        FakePostHog(project_id=project_id)


@pytest.mark.parametrize("api_key", ["", "phx key", "phx_\n", b"phx_x"])
def test_an_api_key_no_request_can_carry_is_refused(api_key: Any) -> None:
    """An empty key was silently replaced by a random one; one with blanks matches no header."""
    with pytest.raises(ValueError, match="api_key"):
        FakePostHog(api_key=api_key)


async def test_a_request_dropped_after_it_was_carried_out_took_effect(fake: FakePostHog) -> None:
    """`drop_next(after=True)`: PostHog acted, and the answer was lost on the way back."""
    fake.drop_next(method="POST", path="customer_profile_configs", after=True)
    async with fake.client(max_retries=3) as ph:
        with pytest.raises(aposthog.APIConnectionError) as caught:
            await ph.customer_profile_configs.create(scope="person")
        assert caught.value.reached_server  # a create is never sent twice
        assert len(fake.customer_profile_configs) == 1  # yet it was made
        assert fake.status_counts[0] == 1
        # The next request is answered.
        assert len((await ph.customer_profile_configs.list()).results) == 1


async def test_a_request_dropped_before_it_was_carried_out_took_no_effect(
    fake: FakePostHog,
) -> None:
    fake.drop_next(method="POST", path="customer_profile_configs")
    async with fake.client(max_retries=0) as ph:
        with pytest.raises(aposthog.APIConnectionError):
            await ph.customer_profile_configs.create(scope="person")
    assert fake.customer_profile_configs == {}


async def test_an_aclose_cancelled_by_asyncio_itself_still_drops_every_connection() -> None:
    """
    As above, with asyncio's own cancellation (`task.cancel()`: an asyncio `TaskGroup`
    whose sibling failed, `asyncio.wait_for`, the loop's shutdown) arriving while the fake
    stops. An anyio `CancelScope(shield=True)` does not shield from it: the task's cancel
    cancels the cleanup future it awaits, the cleanup is cut at its first step, `_runner`
    is forgotten all the same, and a second `aclose()` does nothing: the connection the
    fake took on is still served.
    """
    fake = FakePostHog()
    path = "/api/environments/1/customer_profile_configs/"
    served_after: int | None = None
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        async with fake:
            async with session.get(fake.url + path, headers=auth) as resp:
                assert 200 == resp.status  # a keep-alive connection, now idle
            closing = asyncio.ensure_future(fake.aclose())
            await asyncio.sleep(0)  # the stop has begun: it awaits the cleanup
            closing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await closing
        # `__aexit__` (a second `aclose()`) has run: whatever the first left, it finished.
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(fake.url + path, headers=auth) as resp:
                served_after = resp.status
    assert served_after is None


# ---------------------------------------------------------------- QA: the fault knobs' arguments


@pytest.mark.parametrize("knob", ["fail_next", "throttle_next", "drop_next"])
@pytest.mark.parametrize("n", [-1, "2", None, 1.5, float("nan")])
def test_a_fault_count_that_is_no_count_is_refused_where_it_is_given(knob: str, n: Any) -> None:
    """
    `fail_next(n)`, `throttle_next(n)` and `drop_next(n)` store `n` as it is. A str or None
    is compared with 0 at every later request (`remaining > 0`), which raises inside the
    dispatch: every request of the test, matching or not, is then the fake's JSON 500,
    for good (the fault is never consumed). -1 and NaN are silently no fault at all, and
    1.5 injects two. Like `latency`, `page_size` and the script options, `n` should be
    refused where it is given.
    """
    fake = FakePostHog()
    with pytest.raises((TypeError, ValueError), match=r"\bn\b"):
        getattr(fake, knob)(n)


@pytest.mark.parametrize("knob", ["fail_next", "throttle_next", "drop_next"])
@pytest.mark.parametrize("filters", [{"method": 1}, {"path": 5}, {"path": b"configs"}])
async def test_a_fault_filter_of_another_type_is_refused_where_it_is_given(
    knob: str, filters: dict[str, Any]
) -> None:
    """
    A `method` or `path` that is not a str is kept; `_Fault.matches` then raises at every
    request (`1.upper()`, `5 in str`), so from then on the fake answers everything with
    its JSON 500 and never consumes the fault: a test about one failed request sees all
    of them fail.
    """
    async with FakePostHog() as fake:
        try:
            getattr(fake, knob)(1, **filters)
        except (TypeError, ValueError):
            return  # refused where it was given: what this test wants
        path = "/api/environments/1/customer_profile_configs/"
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        statuses = [(await _raw(fake, "GET", path, headers=auth))[0] for _ in range(3)]
        pytest.fail(f"{knob}(**{filters!r}) was accepted; then the requests got {statuses}")


@pytest.mark.parametrize("wait", [-5, float("nan"), float("inf"), "3"])
async def test_a_throttle_wait_that_is_no_wait_is_refused_where_it_is_given(wait: Any) -> None:
    """
    `throttle_next(wait=...)` is stored unchecked and only used at the throttled request:
    `math.ceil(nan)`, `math.ceil(inf)` and `math.ceil("3")` raise there, so the request
    the test meant to be PostHog's 429 is the fake's JSON 500 instead (and the knob is
    spent), which a client retries as a server error: the test passes without ever
    exercising the 429 path. A negative wait is sent as "Expected available in -5
    seconds.", which DRF never writes.
    """
    async with FakePostHog() as fake:
        try:
            fake.throttle_next(1, wait=wait)
        except (TypeError, ValueError):
            return
        path = "/api/environments/1/customer_profile_configs/"
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        status, _, body = await _raw(fake, "GET", path, headers=auth)
        assert 429 == status, body
        assert b"-" not in body.split(b"Expected available in")[-1]


@pytest.mark.parametrize("status", [99, 1000, True, "500"])
def test_a_fail_status_that_is_no_http_status_is_refused_where_it_is_given(status: Any) -> None:
    """
    `fail_next(status=...)` is sent as given. 99, 1000 and True (sent as "HTTP/1.1 1") are
    no HTTP status: the client sees a malformed status line (aiohttp's "Bad status line",
    a connection error), not the failure the test meant. "500" is sent as a 500 but
    counted as `status_counts["500"]`, so `fake.status_counts[500]` stays 0.
    """
    fake = FakePostHog()
    with pytest.raises((TypeError, ValueError), match="status"):
        fake.fail_next(status=status)


@pytest.mark.parametrize(
    "scopes",
    [["customer_profile_config:reed"], ["customer_profile_config"], [1], b"batch_export:read"],
)
def test_a_scope_posthog_would_not_issue_is_refused_by_add_key(scopes: Any) -> None:
    """
    PostHog's personal API key serializer refuses any scope that is not `*` or
    `<object>:<read|write>` ("Invalid scope"), so no key can carry a misspelt action.
    `add_key` keeps whatever it is given: a typo makes a key that is refused (403)
    everywhere, so a test asserting `PermissionDeniedError` for a read-only key passes
    for the wrong reason. Bytes are split into ints, the way a str was before it was
    refused.
    """
    fake = FakePostHog()
    with pytest.raises((TypeError, ValueError), match="scope"):
        fake.add_key(scopes=scopes)


@pytest.mark.parametrize("page_size", [0, -1, "2"])
def test_a_page_size_set_on_the_fake_is_checked_as_the_constructor_checks_it(
    page_size: Any,
) -> None:
    """
    `FakePostHog(page_size=0)` is refused ("0 would serve empty pages whose `next` names
    the same page, without end"), and `latency`/`keepalive_interval` are checked on every
    assignment; but `fake.page_size = 0` (knobs "may be set at any time") is kept: every
    list then serves that chain of empty pages (the client gives up with
    `ResponseDecodeError`), and `fake.page_size = "2"` makes every list the fake's 500.
    """
    fake = FakePostHog()
    with pytest.raises((TypeError, ValueError), match="page_size"):
        fake.page_size = page_size


# ---------------------------------------------------------------- QA: methods, as DRF routes them


async def test_head_is_answered_as_a_get_without_a_body(fake: FakePostHog) -> None:
    """
    DRF's `ViewSetMixin.as_view` maps `head` to the `get` action wherever there is one,
    so PostHog answers HEAD of a list or a record as the GET (200, no body), with the read
    scope (the fake's own `_READ_ACTIONS` names HEAD). The fake finds no HEAD route and
    answers 405.
    """
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    path = "/api/environments/1/customer_profile_configs/"
    get_status, get_headers, _ = await _raw(fake, "GET", path, headers=auth)
    status, headers, body = await _raw(fake, "HEAD", path, headers=auth)
    assert (get_status, b"") == (status, body)
    assert get_headers.get("Content-Type") == headers.get("Content-Type")


async def test_a_method_not_allowed_comes_after_the_throttles(fake: FakePostHog) -> None:
    """
    The module's docstring: 404, then 401, then 403, then 429, "and only then does the view
    run". DRF finds the method's handler (or `http_method_not_allowed`) only after
    `initial()` ran authentication, permissions and throttles, so on PostHog a PUT to a
    list is counted by the key's burst throttle, and refused with 429 once the budget is
    spent. The fake answers 405 before its throttles and never counts it.
    """
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = aposthog.Rate(1, per=60)
    fake.throttles.sustained = None
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    path = "/api/environments/1/customer_profile_configs/"
    assert 405 == (await _raw(fake, "PUT", path, headers=auth))[0]  # counted: the budget is 1
    assert 429 == (await _raw(fake, "GET", path, headers=auth))[0]


async def test_a_method_not_allowed_is_refused_to_a_scoped_key_first(fake: FakePostHog) -> None:
    """A method the path takes no action for has no scope to require: PostHog's
    `APIScopePermission` refuses it to a scoped key (403, "This action does not support
    Personal API Key access") before the view's 405, which a legacy key still gets."""
    scoped = fake.add_key(scopes=["*"])
    path = "/api/environments/1/customer_profile_configs/"
    status, _, body = await _raw(fake, "PUT", path, headers={"Authorization": f"Bearer {scoped}"})
    assert 403 == status
    assert b"does not support Personal API Key access" in body
    legacy = {"Authorization": f"Bearer {fake.api_key}"}
    assert 405 == (await _raw(fake, "PUT", path, headers=legacy))[0]


# ---------------------------------------------------------------- QA: the port


@pytest.mark.parametrize("port", [1.5, True, -1, 70000])
def test_a_port_no_tcp_socket_takes_is_refused_where_it_is_given(port: Any) -> None:
    """
    `python -m aposthog.testing --port` is checked (0..65535), the class is not: 1.5 and
    True bind port 1 (where the process may), -1 and 70000 fail only at `start()` with
    an `OverflowError` from `bind()`, not a `ValueError` naming `port` where it was given.
    """
    with pytest.raises((TypeError, ValueError), match="port"):
        FakePostHog(port=port)


async def test_two_fakes_made_with_port_none_serve_side_by_side() -> None:
    """
    `port=None` is passed to aiohttp's `TCPSite`, whose default is 8080: the fake binds
    8080 (a developer's own server's port), and a second one (another test, a parallel
    worker) fails with "address already in use". None should mean any free port, like 0
    (or be refused).
    """
    try:
        first, second = FakePostHog(port=None), FakePostHog(port=None)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return
    async with first, second:
        assert first.url != second.url


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("text/event-stream", 406),
        ("text/html, text/plain", 406),
        ("application/xml", 406),
        ("text/event-stream, application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("application/*", 200),
        ("*/*;q=0.1", 200),
        ("TEXT/EVENT-STREAM, Application/JSON", 200),
    ],
)
async def test_an_accept_header_without_json_is_406_before_the_key_is_read(
    fake: FakePostHog, accept: str, status: int
) -> None:
    """
    DRF negotiates the answer's content type in `initial()`, before authentication, with
    PostHog's one renderer (JSON), for a conversation's stream too: an `Accept` of the
    event stream alone is PostHog's 406, whatever the key (here none).
    """
    path = "/api/environments/1/conversations/"
    got, _, body = await _raw(fake, "POST", path, headers={"Accept": accept}, json={})
    if status == 406:
        assert (
            406,
            {
                "type": "invalid_request",
                "code": "not_acceptable",
                "detail": "Could not satisfy the request Accept header.",
                "attr": None,
            },
        ) == (got, json.loads(body))
    else:
        assert 401 == got  # negotiated: then the missing key
