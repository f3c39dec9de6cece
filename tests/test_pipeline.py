"""The request pipeline's rules, each against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import anyio
import pytest

import aposthog
from aposthog.testing import FakePostHog, LoopbackServer, ServerReply, ServerRequest

pytestmark = pytest.mark.anyio

FAST = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01)


class RawServer:
    """
    A bare TCP server on 127.0.0.1 that counts the requests it receives and then, per
    `mode`, closes the connection without answering ("drop") or never answers ("stall").
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.url = ""

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        for writer in self._writers:
            writer.close()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        self.requests.append(head.split(b"\r\n", 1)[0])
        if self.mode == "drop":
            writer.close()
        else:
            await asyncio.sleep(3600)


#: PostHog's own 503 (DRF's `ServiceUnavailable` through PostHog's error envelope).
_POSTHOG_503 = ServerReply(
    status=503,
    body=b'{"type":"server_error","code":"service_unavailable",'
    b'"detail":"Service temporarily unavailable, try again later.","attr":null}',
    headers={"Content-Type": "application/json"},
)


def _client(url: str, **kwargs: object) -> aposthog.Client:
    return aposthog.Client(api_key="phx_sentinel", host=url, project_id=1, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [300, 302])
@pytest.mark.parametrize("first", [None, 503])
async def test_a_redirect_is_an_error_naming_status_and_location_and_is_not_followed(
    status: int, first: int | None
) -> None:
    """Any 3xx (300 included: only below 300 is a success) is an `APIStatusError`, on a
    first attempt and on a retried one (`first=503`: the redirect answers the retry)."""
    elsewhere: list[ServerRequest] = []
    answered: list[str] = []

    async def other(request: ServerRequest) -> ServerReply:
        elsewhere.append(request)
        return ServerReply(status=200, body=b"{}")

    target = LoopbackServer(other)
    await target.start()

    async def redirecting(request: ServerRequest) -> ServerReply:
        answered.append(request.raw_path)
        if first is not None and len(answered) % 2:
            return _POSTHOG_503  # PostHog's own: refused before any work, retried
        return ServerReply(status=status, headers={"Location": f"{target.url}/steal/"})

    server = LoopbackServer(redirecting)
    await server.start()
    try:
        async with _client(server.url, retry=FAST) as ph:
            with pytest.raises(aposthog.APIStatusError) as info:
                await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
            with pytest.raises(aposthog.APIStatusError) as streamed:
                await ph.conversations.create("hi").until_done()
    finally:
        await server.stop()
        await target.stop()
    assert status == info.value.status == streamed.value.status
    assert f"{target.url}/steal/" in str(info.value)
    assert str(status) in str(info.value)
    assert (2 if first else 1) * 2 == len(answered)
    assert [] == elsewhere


_LONG = "https://elsewhere.example/" + "x" * 300


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        (_LONG[:300], f"redirected to {_LONG[:300]}; "),  # 300 characters: kept whole
        (_LONG[:301], f"redirected to {_LONG[:300]}…; "),  # longer: cut at 300
        (None, "redirected to (no Location header); "),
    ],
)
async def test_a_redirects_location_is_shown_up_to_300_characters(
    location: str | None, shown: str
) -> None:
    """The error names where PostHog redirected to, cut at 300 characters, or says there
    was no `Location` at all."""

    async def redirecting(request: ServerRequest) -> ServerReply:
        headers = {} if location is None else {"Location": location}
        return ServerReply(status=302, headers=headers)

    server = LoopbackServer(redirecting)
    await server.start()
    try:
        async with _client(server.url, retry=FAST) as ph:
            with pytest.raises(aposthog.APIStatusError) as info:
                await ph.customer_profile_configs.list()
    finally:
        await server.stop()
    assert shown in str(info.value)


# ---------------------------------------------------------------------- 429 waits

_CONFIG = (
    b'{"id":"x","scope":"person","content":{},"sidebar":{},'
    b'"created_at":"2024-01-01T00:00:00Z","updated_at":null}'
)


def _throttling(
    retry_after: str, seen: list[float]
) -> Callable[[ServerRequest], Awaitable[ServerReply]]:
    async def handler(request: ServerRequest) -> ServerReply:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return ServerReply(
                status=429,
                body=b'{"type":"throttled_error","code":"throttled","detail":"slow down"}',
                headers={"Retry-After": retry_after, "Content-Type": "application/json"},
            )
        return ServerReply(status=200, body=_CONFIG)

    return handler


async def test_a_wait_longer_than_max_retry_after_raises_rate_limit_error_at_once() -> None:
    seen: list[float] = []
    server = LoopbackServer(_throttling("120", seen))
    await server.start()
    waits: list[aposthog.Wait] = []
    try:
        policy = aposthog.RetryPolicy(max_retry_after=60)
        async with _client(server.url, retry=policy, on_wait=waits.append) as ph:
            started = time.monotonic()
            with pytest.raises(aposthog.RateLimitError) as info:
                await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
            elapsed = time.monotonic() - started
    finally:
        await server.stop()
    assert 120.0 == info.value.retry_after
    assert 1 == len(seen)
    assert [] == waits
    assert elapsed < 1.0


async def test_a_named_wait_is_honoured_with_a_spread_on_top() -> None:
    seen: list[float] = []
    server = LoopbackServer(_throttling("0.2", seen))
    await server.start()
    waits: list[aposthog.Wait] = []
    try:
        async with _client(server.url, on_wait=waits.append) as ph:
            await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    finally:
        await server.stop()
    assert 2 == len(seen)
    [wait] = waits
    assert ("rate_limit", 2) == (wait.reason, wait.attempt)
    assert isinstance(wait.error, aposthog.RateLimitError)
    assert 0.2 <= wait.seconds <= 0.2 * 1.2  # RetryPolicy.retry_after_jitter = 0.2
    assert seen[1] - seen[0] >= 0.2


# ---------------------------------------------------------------------- attempts


async def _silent_retry_control(url: str) -> None:
    """Plain aiohttp repeats a GET on a dropped connection: the hazard is real."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.get(f"{url}/control/")


@pytest.mark.parametrize("max_retries", [0, 3])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_aiohttp_never_adds_attempts_of_its_own(method: str, max_retries: int) -> None:
    async with RawServer("drop") as control:
        await _silent_retry_control(control.url)
        assert 2 == len(control.requests)  # aiohttp alone sent the GET twice
    async with RawServer("drop") as server:
        async with _client(server.url, retry=FAST, max_retries=max_retries) as ph:
            with pytest.raises(aposthog.APIConnectionError):
                if method == "GET":
                    await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
                else:
                    await ph.customer_profile_configs.create(scope="person")
        received = len(server.requests)
    # A GET that may have reached the server is repeated up to max_retries times; a
    # create is never repeated once it may have reached it.
    expected = 1 + max_retries if method == "GET" else 1
    assert expected == received


@pytest.mark.parametrize("max_retries", [0, 3])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_borrowed_session_adds_no_attempts_and_keeps_resending_for_its_owner(
    method: str, max_retries: int
) -> None:
    """
    A borrowed session is left as it is (the caller's own requests keep aiohttp's
    behaviour), yet the client's requests through it are attempted only as decided.
    """
    async with RawServer("drop") as server, aiohttp.ClientSession() as session:
        async with _client(server.url, session=session, retry=FAST, max_retries=max_retries) as ph:
            with pytest.raises(aposthog.APIConnectionError):
                if method == "GET":
                    await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
                else:
                    await ph.customer_profile_configs.create(scope="person")
        expected = 1 + max_retries if method == "GET" else 1
        assert expected == len(server.requests)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.get(f"{server.url}/control/")
        assert expected + 2 == len(server.requests)  # the owner's GET: aiohttp sent it twice


async def test_a_closed_borrowed_session_raises_client_state_error_once() -> None:
    async with RawServer("drop") as server:
        session = aiohttp.ClientSession()
        await session.close()
        waits: list[aposthog.Wait] = []
        async with _client(server.url, session=session, max_retries=3, on_wait=waits.append) as ph:
            with pytest.raises(aposthog.ClientStateError, match="session"):
                await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
        assert [] == server.requests
        assert [] == waits


# ---------------------------------------------------------------------- timeout


async def test_timeout_bounds_each_attempt_against_a_stalling_server() -> None:
    """`timeout` is per attempt: one attempt alone takes it; retries add attempts."""
    async with RawServer("stall") as server:
        async with _client(server.url, timeout=0.3, max_retries=0) as ph:
            started = time.monotonic()
            with pytest.raises(aposthog.APITimeoutError):
                await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
            one = time.monotonic() - started
        assert 1 == len(server.requests)
    async with RawServer("stall") as server:
        async with _client(server.url, timeout=0.3, retry=FAST, max_retries=2) as ph:
            started = time.monotonic()
            with pytest.raises(aposthog.APITimeoutError):
                await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
            three = time.monotonic() - started
        assert 3 == len(server.requests)
    assert 0.3 <= one < 1.0
    assert 0.9 <= three < 2.0


async def test_the_deadline_bounds_the_whole_call() -> None:
    """No attempt starts after RetryPolicy.deadline: a call lasts at most deadline + timeout."""
    policy = aposthog.RetryPolicy(
        max_retries=50, initial_backoff=0.01, max_backoff=0.01, deadline=0.5
    )
    async with RawServer("stall") as server:
        async with _client(server.url, timeout=0.3, retry=policy) as ph:
            started = time.monotonic()
            with pytest.raises(aposthog.APITimeoutError):
                await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
            elapsed = time.monotonic() - started
        attempts = len(server.requests)
    assert 2 == attempts
    assert elapsed < 0.5 + 0.3 + 0.3


# ---------------------------------------------------------------------- routes


async def test_cancel_is_retried_after_a_dropped_connection(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    conversation = fake.seed_conversation()
    fake.drop_next(1, method="PATCH")
    await ph.conversations.cancel(conversation.id)
    assert 2 == sum(r.method == "PATCH" for r in fake.requests)


async def test_unpause_with_backfill_is_not_retried_but_plain_unpause_is(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    export = await ph.batch_exports.create(
        name="n",
        destination=aposthog.BatchExportDestination(type="NoOp", config={}),
        interval="hour",
    )
    fake.drop_next(1, path="/unpause")
    await ph.batch_exports.unpause(export.id)
    fake.drop_next(1, path="/unpause")
    with pytest.raises(aposthog.APIConnectionError):
        await ph.batch_exports.unpause(export.id, backfill=True)
    unpauses = [r for r in fake.requests if r.path.endswith("/unpause/")]
    assert 3 == len(unpauses)


# ---------------------------------------------------------------------- shape


def test_import_aposthog_loads_no_aiohttp_web() -> None:
    code = (
        "import sys, aposthog\n"
        "web = sorted(m for m in sys.modules if m.startswith('aiohttp.web'))\n"
        "print(web)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "[]" == out.strip()


def test_dir_client_shows_configuration_lifetime_and_resources() -> None:
    public = {name for name in dir(aposthog.Client) if not name.startswith("_")}
    assert {
        "config",
        "base_url",
        "project_id",
        "rate_limiter",
        "with_options",
        "aclose",
        "closed",
        "open_streams",
    } == public
    client = aposthog.Client(api_key="k", host="https://eu.posthog.com")
    instance = {name for name in dir(client) if not name.startswith("_")}
    assert public | {"batch_exports", "conversations", "customer_profile_configs"} == instance


async def test_with_options_views_share_one_pipeline(fake: FakePostHog) -> None:
    async with fake.client(max_concurrency=1) as ph:
        view = ph.with_options(timeout=5, max_retries=0)
        assert view.config.timeout == 5
        assert view.config.retry.max_retries == 0
        assert ph.config.retry.max_retries == 3
        await view.customer_profile_configs.list()
    assert view.closed


async def test_a_503_retry_after_is_honoured() -> None:
    """A 503's Retry-After names the wait, instead of the (here tiny) backoff."""
    seen: list[float] = []

    async def unavailable(request: ServerRequest) -> ServerReply:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return ServerReply(status=503, body=b"{}", headers={"Retry-After": "0.2"})
        return ServerReply(status=200, body=_CONFIG)

    server = LoopbackServer(unavailable)
    await server.start()
    waits: list[aposthog.Wait] = []
    try:
        async with _client(server.url, retry=FAST, on_wait=waits.append) as ph:
            await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    finally:
        await server.stop()
    assert 2 == len(seen)
    [wait] = waits
    assert "retry" == wait.reason
    assert 0.2 <= wait.seconds <= 0.2 * 1.2
    assert seen[1] - seen[0] >= 0.2


async def test_a_503_naming_a_wait_past_max_retry_after_is_raised_at_once_with_the_wait() -> None:
    """
    A 503 whose `Retry-After` exceeds `max_retry_after` is not retried, and the error
    says when to come back, as a 429's `RateLimitError` does.
    """
    seen: list[float] = []

    async def unavailable(request: ServerRequest) -> ServerReply:
        seen.append(time.monotonic())
        return ServerReply(
            status=503,
            body=b'{"type":"server_error","detail":"Down for maintenance."}',
            headers={"Retry-After": "300", "Content-Type": "application/json"},
        )

    server = LoopbackServer(unavailable)
    await server.start()
    waits: list[aposthog.Wait] = []
    try:
        policy = aposthog.RetryPolicy(max_retry_after=60)
        async with _client(server.url, retry=policy, on_wait=waits.append) as ph:
            with pytest.raises(aposthog.InternalServerError) as info:
                await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    finally:
        await server.stop()
    assert 300.0 == info.value.retry_after
    assert 503 == info.value.status
    assert 1 == len(seen)
    assert [] == waits


async def test_an_empty_200_body_is_no_json_and_no_error() -> None:
    """A DELETE answered 200 with no body (a proxy's rewrite of 204): None, not an error."""
    methods: list[str] = []

    async def deleted(request: ServerRequest) -> ServerReply:
        methods.append(request.method)
        return ServerReply(status=200, body=b"")

    server = LoopbackServer(deleted)
    await server.start()
    try:
        async with _client(server.url, retry=FAST) as ph:
            gone = await ph.customer_profile_configs.delete("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")  # type: ignore[func-returns-value]
    finally:
        await server.stop()
    assert gone is None
    assert ["DELETE"] == methods


# ---------------------------------------------------------------------- deletes found done

_NOT_FOUND = ServerReply(
    status=404,
    body=b'{"type":"invalid_request","code":"not_found","detail":"Not found.","attr":null}',
    headers={"Content-Type": "application/json"},
)
_FIRST_ANSWERS: dict[str, ServerReply] = {
    "dropped": ServerReply(drop=True),  # sent, then the connection went: may have run
    "502": ServerReply(status=502, body=b"bad gateway"),
    "504": ServerReply(status=504, body=b"gateway timeout"),
    "503": _POSTHOG_503,  # PostHog's own: refused before any work
    # A proxy's 503 after PostHog reset the connection: the delete may have run.
    "proxy 503": ServerReply(
        status=503,
        body=b"upstream connect error or disconnect/reset before headers. "
        b"reset reason: connection termination",
    ),
    "429": ServerReply(
        status=429,
        body=b'{"type":"throttled_error","code":"throttled","detail":"slow down"}',
        headers={"Retry-After": "0", "Content-Type": "application/json"},
    ),
    "404": _NOT_FOUND,
}
_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
_DELETES: dict[str, Callable[[aposthog.Client], Awaitable[None]]] = {
    "batch export": lambda ph: ph.batch_exports.delete(_ID),
    "profile config": lambda ph: ph.customer_profile_configs.delete(_ID),
    "conversation": lambda ph: ph.conversations.delete(_ID),
}


@pytest.mark.parametrize("resource", list(_DELETES))
@pytest.mark.parametrize("first", list(_FIRST_ANSWERS))
async def test_a_delete_retried_after_an_attempt_that_may_have_run_is_done_when_gone(
    resource: str, first: str
) -> None:
    """
    A delete whose first attempt may have been carried out (its connection dropped after
    sending, or a gateway's 502/504, or a proxy's 503) is retried, and the retry meets a
    404: the thing is gone, which is what was asked, so `delete()` returns. After
    PostHog's own 503 or a 429 (refused before any work), or on the first attempt, a 404
    means there was nothing to delete: `NotFoundError`, as before.
    """
    methods: list[str] = []

    async def handler(request: ServerRequest) -> ServerReply:
        methods.append(request.method)
        return _FIRST_ANSWERS[first] if len(methods) == 1 else _NOT_FOUND

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with _client(server.url, retry=FAST) as ph:
            if first in ("dropped", "502", "504", "proxy 503"):
                await _DELETES[resource](ph)
            else:
                with pytest.raises(aposthog.NotFoundError):
                    await _DELETES[resource](ph)
    finally:
        await server.stop()
    assert ["DELETE"] * (1 if first == "404" else 2) == methods


async def test_a_delete_whose_answer_came_too_late_is_done_when_its_retry_finds_it_gone() -> None:
    """
    PostHog's batch-export delete also removes the export's schedule, which can outlast
    `timeout`: the first attempt deletes, its answer comes too late, the retry meets a
    404. An observer sees that 404 as the end, without an error.
    """
    from .test_observe import Recorder

    methods: list[str] = []

    async def handler(request: ServerRequest) -> ServerReply:
        methods.append(request.method)
        if len(methods) == 1:
            await asyncio.sleep(0.3)  # deleted, but the answer comes after the timeout
            return ServerReply(status=204)
        return _NOT_FOUND

    recorder = Recorder()
    server = LoopbackServer(handler)
    await server.start()
    try:
        async with _client(server.url, retry=FAST, timeout=0.1) as ph:
            ph._api.observer = recorder
            await ph.batch_exports.delete(_ID)
            assert ("end", 404, None, 2) == recorder.log[-1]
            # Without an observer too (the first attempt is made inline there).
            ph._api.observer = None
            methods.clear()
            await ph.batch_exports.delete(_ID)
    finally:
        await server.stop()
    assert ["DELETE", "DELETE"] == methods


# ---------------------------------------------------------------------- 503s from a proxy

#: The body Envoy (in front of PostHog Cloud: PostHog/posthog#21052 quotes it) answers
#: with when its upstream closed the connection before the response headers: the request
#: had been forwarded, and may have been carried out (envoyproxy/envoy#10007).
_ENVOY_RESET_503 = ServerReply(
    status=503,
    body=b"upstream connect error or disconnect/reset before headers. "
    b"reset reason: connection termination",
    headers={"Content-Type": "text/plain"},
)


async def test_a_create_answered_by_a_proxy_s_503_after_an_upstream_reset_is_sent_once() -> None:
    """
    PostHog Cloud's proxy (Envoy) answers 503 "upstream connect error or disconnect/reset
    before headers. reset reason: connection termination" when PostHog closed the
    connection after the request was forwarded: PostHog may have created the record. A
    create must then not be sent again (a second profile config, batch export or
    backfill), just as after a 502 or 504.
    """
    bodies: list[bytes] = []

    async def handler(request: ServerRequest) -> ServerReply:
        bodies.append(request.body)
        return _ENVOY_RESET_503 if len(bodies) == 1 else ServerReply(status=201, body=_CONFIG)

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with _client(server.url, retry=FAST) as ph:
            with pytest.raises(aposthog.InternalServerError):
                await ph.customer_profile_configs.create(scope="person")
    finally:
        await server.stop()
    assert 1 == len(bodies)


class _SlowPenaltyStore(aposthog.InProcessRateLimitStore):
    """An in-process store whose `penalize` takes a round trip, as Redis's does."""

    def __init__(self) -> None:
        super().__init__()
        self.penalizing = asyncio.Event()
        self.answer = asyncio.Event()

    async def penalize(self, scope: str, bucket: str, seconds: float) -> None:
        self.penalizing.set()
        await self.answer.wait()
        await super().penalize(scope, bucket, seconds)


async def test_aclose_while_a_429_s_pause_is_stored_ends_the_call_at_once() -> None:
    """
    PostHog answers 429 "wait 30 s"; while the client stores that pause (a Redis round
    trip for `RedisRateLimitStore`) the client is closed. `aclose()` ends every call in
    flight at once with `ClientStateError`, waits included: this one must not go on to
    sleep the 30 s and only then be told the client is closed.
    """

    async def throttled(request: ServerRequest) -> ServerReply:
        body = b'{"detail": "Request was throttled. Expected available in 30 seconds."}'
        headers = {"Content-Type": "application/json", "Retry-After": "30"}
        return ServerReply(429, body, headers)

    server = LoopbackServer(throttled)
    await server.start()
    store = _SlowPenaltyStore()
    limits = aposthog.RateLimits(api=(aposthog.Rate(1000, per=60),))
    policy = aposthog.RetryPolicy(max_retry_after=60, deadline=None)
    try:
        ph = aposthog.Client(
            api_key="phx_k",
            host=server.url,
            project_id=1,
            retry=policy,
            rate_limits=limits,
            rate_limit_store=store,
        )
        call = asyncio.ensure_future(ph.customer_profile_configs.list().to_list())
        await asyncio.wait_for(store.penalizing.wait(), 2)
        await ph.aclose()
        store.answer.set()
        done, _ = await asyncio.wait({call}, timeout=1)
        if not done:
            call.cancel()
            await asyncio.wait({call})
    finally:
        await server.stop()
    assert done, "the call still waits, 1 s after aclose()"
    assert isinstance(call.exception(), aposthog.ClientStateError)


@pytest.mark.parametrize("observed", [False, True])
async def test_the_deadline_counts_from_the_first_attempt_not_from_the_wait_for_a_slot(
    observed: bool,
) -> None:
    """
    `RetryPolicy.deadline` is "seconds from the first attempt's start to the last
    attempt's start", and the wait for a `max_concurrency` slot "counts against no
    `max_retry_after` or `deadline`" (CHANGELOG). A worker pool queues its calls for
    slots: here one slot, held 0.4 s by a slow answer, and a 0.2 s deadline. The queued
    call's first attempt meets PostHog's own 503 (retried for every request): it must be
    retried, since its first attempt has only just started. It is raised at once: the
    0.4 s it queued were counted as spent retrying (so, with the default 120 s deadline,
    a pool whose calls queue over two minutes retries none of them).
    """
    policy = aposthog.RetryPolicy(initial_backoff=0.01, max_backoff=0.01, deadline=0.2)
    slow_id, queued_id = (
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
    )
    seen: list[str] = []

    async def handler(request: ServerRequest) -> ServerReply:
        seen.append(request.raw_path)
        if slow_id in request.raw_path:
            await asyncio.sleep(0.4)  # the slow answer holding the one slot
        elif 1 == sum(queued_id in path for path in seen):
            return _POSTHOG_503
        return ServerReply(status=200, body=_CONFIG, headers={"Content-Type": "application/json"})

    server = LoopbackServer(handler)
    await server.start()
    on_wait: Callable[[aposthog.Wait], None] | None = (lambda wait: None) if observed else None
    try:
        async with _client(
            server.url, max_concurrency=1, retry=policy, rate_limits=None, on_wait=on_wait
        ) as ph:
            configs = ph.customer_profile_configs
            slow = asyncio.ensure_future(configs.get(slow_id))
            await asyncio.sleep(0.05)  # the slow call holds the slot
            await configs.get(queued_id)  # InternalServerError here
            await slow
    finally:
        await server.stop()
    assert 2 == sum(queued_id in path for path in seen)


@pytest.mark.parametrize("limited", [False, True])
async def test_a_retry_whose_wait_for_a_slot_ends_past_the_deadline_is_not_made(
    limited: bool,
) -> None:
    """
    `RetryPolicy.deadline`: "no attempt starts later than this". A call met a 502 (retried
    for a GET); while it backed off, a slow call took the one slot and held it 0.5 s. The
    retry then waited for the slot, and started at 0.5 s, past a 0.2 s deadline (a web
    handler's latency budget gone under load, when `max_concurrency` is full). The 502 is
    raised once the slot comes past the deadline, and nothing more is sent for the call.
    With a rate limiter, the retry is not counted either (it is asked about the deadline
    as it is about to be counted): the window's third request is the next call's.
    """
    policy = aposthog.RetryPolicy(initial_backoff=0.01, max_backoff=0.01, deadline=0.2)
    flaky_id, slow_id = (
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
    )
    seen: list[str] = []
    failing = asyncio.Event()

    async def handler(request: ServerRequest) -> ServerReply:
        seen.append(request.raw_path)
        if slow_id in request.raw_path:
            await asyncio.sleep(0.5)  # the slow answer holding the one slot
        elif flaky_id in request.raw_path and 1 == sum(flaky_id in path for path in seen):
            failing.set()
            await asyncio.sleep(0.05)  # the slow call queues for the slot meanwhile
            return ServerReply(status=502, body=b"bad gateway")
        return ServerReply(status=200, body=_CONFIG, headers={"Content-Type": "application/json"})

    server = LoopbackServer(handler)
    await server.start()
    try:
        limits = aposthog.RateLimits(api=(aposthog.Rate(3, per=60),), margin=0)
        async with _client(
            server.url, max_concurrency=1, retry=policy, rate_limits=limits if limited else None
        ) as ph:
            configs = ph.customer_profile_configs
            flaky = asyncio.ensure_future(configs.get(flaky_id))
            await failing.wait()
            slow = asyncio.ensure_future(configs.get(slow_id))
            with pytest.raises(aposthog.InternalServerError) as info:
                await flaky
            assert 502 == info.value.status
            await slow
            await configs.get(slow_id.replace("5c", "5d"))  # the window's third request
    finally:
        await server.stop()
    assert 1 == sum(flaky_id in path for path in seen)


async def test_a_json_call_inside_a_stream_loop_at_max_concurrency_1_does_not_wait_for_it(
    fake: FakePostHog,
) -> None:
    """
    A stream holds its `max_concurrency` slot only while it opens: a chat-bot backend at
    `max_concurrency=1` that looks something up inside its relay loop is not deadlocked
    by the stream it reads (the open stream and the call are two requests in flight).
    """
    fake.script_answer("one two three four", chunk_size=4, delay=0.01)
    async with fake.client(max_concurrency=1, timeout=1) as ph:
        looked_up = 0
        with anyio.fail_after(1.5):
            async with ph.conversations.create("q") as stream:
                async for _ in stream.text_deltas():
                    await ph.customer_profile_configs.list()
                    looked_up += 1
        assert looked_up > 0
        assert ph.open_streams == 0
        assert ph._api.pipeline.slots.free == 1


@pytest.mark.parametrize("limited", [False, True], ids=["no-limiter", "limiter"])
async def test_a_cancellation_at_every_await_leaves_every_slot_and_line_free(
    fake: FakePostHog, limited: bool
) -> None:
    """
    A worker pool cancelling calls at any moment (waiting for the rate limiter, for a
    slot, mid-exchange, in a 503's backoff): afterwards `max_concurrency` calls still run
    at once and nothing is left waiting in the slots' line or the limiter's.
    """
    limits = aposthog.RateLimits(api=aposthog.Rate(3, per=0.02), margin=0) if limited else None
    async with fake.client(max_concurrency=2, rate_limits=limits, retry=FAST) as ph:
        pipeline = ph._api.pipeline
        injected = 0
        for turns in range(60):
            if turns % 6 == 0 and fake.status_counts[503] == injected:  # none pending
                fake.fail_next(1, status=503)
                injected += 1
            task = asyncio.gather(*(ph.customer_profile_configs.list() for _ in range(3)))
            # Loop turns first (the waits before sending), then time (the exchange).
            for _ in range(turns % 8):
                await asyncio.sleep(0)
            await asyncio.sleep((turns % 12) * 0.0004)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aposthog.PostHogError):
                await task
        await asyncio.sleep(0.03)  # the windows' last requests age out
        assert (pipeline.slots.free, pipeline.slots.waiting) == (2, 0)
        limiter = ph.rate_limiter
        lines = limiter._lines.values() if limiter is not None else ()
        assert all(not line.busy and not line.live for line in lines)
        await ph.customer_profile_configs.list()  # takes a 503 still pending, if any
        fake.latency = 0.1
        fake.max_in_flight = 0
        with anyio.fail_after(1):
            await asyncio.gather(*(ph.customer_profile_configs.list() for _ in range(2)))
        assert fake.max_in_flight == 2
