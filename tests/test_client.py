"""The client's lifecycle, limiter, timeouts, retries and error mapping, against FakePostHog."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import anyio.abc
import pytest
from aiohttp import web

import aposthog
from aposthog import _routes
from aposthog.resources.batch_exports import BatchExports
from aposthog.testing import FakePostHog, serve_in_thread

from .tls_stall import tls_stall
from .web_server import serve

pytestmark = pytest.mark.anyio

FAST = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01, max_retry_after=0.01)


async def test_headers_carry_bearer_key_user_agent_and_json(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Every request carries the key as a Bearer token, aposthog's User-Agent and JSON."""
    await ph.customer_profile_configs.create(scope="person", content={"a": 1})

    sent = fake.requests[-1]
    assert f"Bearer {fake.api_key}" == sent.headers["authorization"]
    assert sent.headers["user-agent"].startswith(f"aposthog/{aposthog.__version__} ")
    assert "application/json" == sent.headers["content-type"]
    assert {"scope": "person", "content": {"a": 1}} == sent.json()


async def test_project_id_is_in_the_path(fake: FakePostHog) -> None:
    """The configured project id is the environment segment of every path."""
    async with fake.client(project_id="@current") as ph:
        assert "@current" == ph.project_id
        await ph.customer_profile_configs.list()
    assert fake.requests[-1].path.startswith("/api/environments/@current/")


async def test_max_concurrency_bounds_in_flight_requests_across_tasks(fake: FakePostHog) -> None:
    """500 concurrent calls through a client limited to 8: the server never sees more than 8,
    and sees 8 at once (each call takes 10 ms there, enough for the client to fill every
    slot even when it runs slowly, as under `python -X dev`)."""
    fake.latency = 0.01
    async with fake.client(max_concurrency=8) as ph:
        config = await ph.customer_profile_configs.create(scope="person")
        fake.reset_stats()
        results: list[str] = []

        async def one() -> None:
            results.append((await ph.customer_profile_configs.get(config.id)).id)

        async with anyio.create_task_group() as tg:
            for _ in range(500):
                tg.start_soon(one)

    assert 500 == len(results)
    assert 500 == len(fake.requests)
    assert 8 == fake.max_in_flight


async def test_with_options_shares_the_limiter(fake: FakePostHog) -> None:
    """A with_options() view counts against the same max_concurrency as its client."""
    fake.latency = 0.005
    async with fake.client(max_concurrency=3) as ph:
        fast = ph.with_options(timeout=5, max_retries=0)
        async with anyio.create_task_group() as tg:
            for client in [ph, fast] * 10:
                tg.start_soon(_list_once, client)
    assert 3 == fake.max_in_flight


async def _list_once(client: aposthog.Client) -> None:
    await client.customer_profile_configs.list()


async def test_a_call_timeout_raises_api_timeout_error(fake: FakePostHog) -> None:
    """A call slower than `timeout` raises APITimeoutError, which is also a TimeoutError."""
    fake.latency = 0.5
    async with fake.client(timeout=0.05, max_retries=0) as ph:
        with pytest.raises(aposthog.APITimeoutError) as info:
            await ph.customer_profile_configs.list()
    assert isinstance(info.value, TimeoutError)
    assert "GET /api/environments/1/customer_profile_configs/" in str(info.value)


async def test_per_call_timeout_overrides_the_client(fake: FakePostHog) -> None:
    """`timeout=` on a method applies to that call only."""
    fake.latency = 0.2
    async with fake.client(timeout=5, max_retries=0) as ph:
        with pytest.raises(aposthog.APITimeoutError):
            await ph.customer_profile_configs.list(timeout=0.02)
        page = await ph.customer_profile_configs.list()
    assert [] == page.results


async def test_a_per_call_timeout_is_checked_as_the_clients_is(fake: FakePostHog) -> None:
    """`timeout=` on a method follows the client's rules: a non-positive or NaN one is a
    `ConfigurationError` raised before anything is sent, and `math.inf` means no limit
    (the call then outlasts a client timeout it would otherwise exceed)."""
    fake.latency = 0.1
    async with fake.client(timeout=0.02, max_retries=0) as ph:
        for wrong in (-1, 0, float("nan")):
            with pytest.raises(aposthog.ConfigurationError, match=r"^timeout"):
                await ph.customer_profile_configs.list(timeout=wrong)
        assert [] == fake.requests
        page = await ph.customer_profile_configs.list(timeout=float("inf"))
    assert [] == page.results


class TeamClient(aposthog.Client):
    """What an application writes: the client, plus helpers of its own."""

    def team(self) -> str:
        return "growth"


async def test_a_subclass_keeps_its_class_through_with_options(fake: FakePostHog) -> None:
    """
    `Client` is not final, and `_view` is a classmethod that builds an instance of `cls`;
    but `with_options()` calls it on `Client` itself, so a subclass's view (`fast =
    ph.with_options(timeout=2)`) is a plain `Client` that has lost the application's own
    methods. `mypy --strict` says the same the other way round: `async with
    TeamClient() as ph` types `ph` as `Client` (the annotation is `-> Client`, not `Self`),
    so `ph.team()` is an error although `ph` is a `TeamClient` at run time.
    """
    async with TeamClient(api_key=fake.api_key, host=fake.url, project_id=fake.project_id) as ph:
        assert isinstance(ph, TeamClient)
        fast = ph.with_options(timeout=2)
        assert isinstance(fast, TeamClient), type(fast).__name__


class _DelegatingClient(aposthog.Client):
    """A subclass that relays unknown attributes to a helper of its own."""

    def __init__(self, *, helper: object, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._helper = helper

    def __getattr__(self, name: str) -> object:
        return getattr(self._helper, name)


class _UnpicklableClient(aposthog.Client):
    """A subclass that refuses pickling (it holds the API key)."""

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("holds an API key: not picklable")


@pytest.mark.parametrize("kind", ["relaying __getattr__", "__reduce__ refusing pickling"])
async def test_with_options_on_a_subclass_needs_no_copy_protocol(
    fake: FakePostHog, kind: str
) -> None:
    """`with_options()` views are built by `copy.copy(self)` (since the subclass-view change),
    which goes through the copy/pickle protocol: `__reduce_ex__`, then `hasattr(view,
    "__setstate__")` on the bare new object. A subclass whose `__getattr__` relays to an
    attribute set in `__init__` recurses there (RecursionError), and one whose `__reduce__`
    refuses pickling (common for objects holding secrets) makes `with_options()` raise its
    TypeError. Both worked before (the view was `cls.__new__(cls)`, then bound)."""
    common = {"api_key": fake.api_key, "host": fake.url, "project_id": fake.project_id}
    client: aposthog.Client = (
        _DelegatingClient(helper=object(), **common)
        if kind.startswith("relaying")
        else _UnpicklableClient(**common)  # type: ignore[arg-type]
    )
    async with client as ph:
        fast = ph.with_options(timeout=2)
        assert type(fast) is type(ph)
        assert fast.config.timeout == 2


class _HelperClient(aposthog.Client):
    """A subclass with a helper built lazily on its resources (`functools.cached_property`)."""

    @functools.cached_property
    def exports(self) -> BatchExports:
        return self.batch_exports


async def test_a_subclass_view_s_cached_helper_uses_the_view_s_options(fake: FakePostHog) -> None:
    """A `cached_property` computed on the client before `with_options()` is stored in the
    instance's `__dict__`; `copy.copy()` hands it to the view, so `fast.exports` is the
    parent's resource, with the parent's `timeout` (60 s, not the view's 0.1 s): a slow
    answer the view was made to cut short is waited for. Before the subclass-view change
    the view computed its own helper from its own resources."""
    async with _HelperClient(api_key=fake.api_key, host=fake.url, project_id=fake.project_id) as ph:
        assert ph.exports is ph.batch_exports  # computed (and cached) on the parent
        fast = ph.with_options(timeout=0.1, max_retries=0)
        assert fast.config.timeout == 0.1
        fake.latency = 0.5
        with pytest.raises(aposthog.APITimeoutError):
            await fast.exports.get("00000000-0000-0000-0000-000000000001")


def test_not_given_is_one_falsy_value() -> None:
    """`NOT_GIVEN` is a singleton that reads as false and shows as its name, so a caller
    can write `if timeout:` or compare with `is`, as with other clients' sentinels."""
    assert aposthog.NotGiven() is aposthog.NOT_GIVEN
    assert not aposthog.NOT_GIVEN
    assert "NOT_GIVEN" == repr(aposthog.NOT_GIVEN)


async def test_a_timed_out_get_is_retried_but_not_a_post(fake: FakePostHog) -> None:
    """A GET that timed out may be repeated; a POST that may have reached the server may not."""
    fake.latency = 0.3
    async with fake.client(
        timeout=0.05, retry=aposthog.RetryPolicy(max_retries=2, initial_backoff=0.001)
    ) as ph:
        with pytest.raises(aposthog.APITimeoutError):
            await ph.customer_profile_configs.list()
        gets = len(fake.requests)
        with pytest.raises(aposthog.APITimeoutError):
            await ph.customer_profile_configs.create(scope="person")
        await anyio.sleep(0.4)
    assert 3 == gets
    assert 4 == len(fake.requests)


async def test_connect_timeout_raises_api_timeout_error() -> None:
    """A server that never completes the TLS handshake trips connect_timeout, not the call's."""
    async with (
        tls_stall() as port,
        aposthog.Client(
            api_key="k",
            host=f"https://127.0.0.1:{port}",
            connect_timeout=0.1,
            timeout=30,
            max_retries=0,
        ) as ph,
    ):
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError) as info:
            await ph.customer_profile_configs.list()
    assert not info.value.reached_server
    assert "connecting" in str(info.value)


async def test_a_stream_whose_timeout_ends_while_connecting_never_reached_the_server() -> None:
    """
    A conversation message whose `timeout` (shorter than `connect_timeout`) runs out
    during a TLS handshake that never completes: no byte of the message was sent, so
    the error says so (and the retry policy may repeat it), as for a JSON call; it said
    "did not start answering in time", as if PostHog might have started the run.
    """
    async with (
        tls_stall() as port,
        aposthog.Client(
            api_key="k",
            host=f"https://127.0.0.1:{port}",
            connect_timeout=10,
            timeout=0.3,
            max_retries=0,
        ) as ph,
    ):
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError) as info:
            await ph.conversations.create("Signups last week?").until_done()
    assert not info.value.reached_server
    assert "connecting" in str(info.value)


async def test_connection_refused_is_retried_then_raised() -> None:
    """A refused connection never reached the server: retried for any method, then raised."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there any more
    async with aposthog.Client(api_key="k", host=f"http://127.0.0.1:{port}", retry=FAST) as ph:
        with pytest.raises(aposthog.APIConnectionError) as info:
            await ph.customer_profile_configs.create(scope="person")
    assert not info.value.reached_server
    assert "cannot connect" in str(info.value)


async def test_throttled_page_is_retried_without_restarting(fake: FakePostHog) -> None:
    """A 429 on page 2 is retried; the iteration continues where it was."""
    for i in range(5):
        fake.customer_profile_configs[str(i)] = {
            "id": str(i),
            "scope": "person",
            "content": {},
            "sidebar": {},
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": None,
        }
    async with fake.client(retry=FAST) as ph:
        seen = []
        async for config in ph.customer_profile_configs.list(limit=2):
            seen.append(config.id)
            if len(seen) == 2:
                fake.throttle_next(2, wait=0)
    assert ["0", "1", "2", "3", "4"] == seen
    offsets = [dict(r.query).get("offset") for r in fake.requests]
    assert [None, "2", "2", "2", "4"] == offsets


async def test_retry_after_comes_from_the_detail_text(fake: FakePostHog) -> None:
    """PostHog's 429 has no Retry-After header: the wait is read from the detail text."""
    async with fake.client(max_retries=0) as ph:
        fake.throttle_next(1, wait=7)
        with pytest.raises(aposthog.RateLimitError) as info:
            await ph.customer_profile_configs.list()
    assert 7.0 == info.value.retry_after
    assert "throttled" == info.value.code


async def test_post_that_got_a_500_is_not_retried(fake: FakePostHog, ph: aposthog.Client) -> None:
    """A POST answered 500 may have started work: raised at once."""
    fake.fail_next(1, status=500)
    with pytest.raises(aposthog.InternalServerError):
        await ph.customer_profile_configs.create(scope="person")
    assert 1 == len(fake.requests)
    assert {} == fake.customer_profile_configs


#: PostHog's own 503 body (DRF's `ServiceUnavailable` in PostHog's error envelope).
_SERVICE_UNAVAILABLE = {
    "type": "server_error",
    "code": "service_unavailable",
    "detail": "Service temporarily unavailable, try again later.",
    "attr": None,
}


async def test_post_that_got_a_503_or_429_is_retried(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """429 and PostHog's own 503 mean it refused: retried for POST too, and it succeeds once."""
    fake.fail_next(1, status=503, body=_SERVICE_UNAVAILABLE)
    fake.throttle_next(1, wait=0)
    config = await ph.customer_profile_configs.create(scope="person")
    assert [config.id] == list(fake.customer_profile_configs)
    assert 3 == len(fake.requests)


@pytest.mark.parametrize("body", [b"", b"<html><body>503 Service Unavailable</body></html>"])
async def test_post_that_got_a_proxys_503_is_not_retried_but_a_get_is(
    fake: FakePostHog, ph: aposthog.Client, body: bytes
) -> None:
    """A 503 without PostHog's error body or a `Retry-After` is a proxy's: it may have
    forwarded the request first, so only a request that may be repeated is retried."""
    fake.fail_next(1, status=503, body=body)
    with pytest.raises(aposthog.InternalServerError):
        await ph.customer_profile_configs.create(scope="person")
    assert 1 == len(fake.requests)
    fake.fail_next(1, status=503, body=body)
    await ph.customer_profile_configs.list()
    assert 3 == len(fake.requests)


async def test_dropped_post_is_not_retried_but_dropped_get_is(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A POST that reached the server and got no answer is raised; a GET is repeated."""
    fake.drop_next(1)
    with pytest.raises(aposthog.APIConnectionError) as info:
        await ph.customer_profile_configs.create(scope="person")
    assert info.value.reached_server
    assert 1 == len(fake.requests)

    fake.drop_next(1)
    page = await ph.customer_profile_configs.list()
    assert [] == page.results
    assert 3 == len(fake.requests)


async def test_max_retries_zero_turns_retrying_off(fake: FakePostHog) -> None:
    """With max_retries=0 a 429 is raised at once."""
    async with fake.client(max_retries=0) as ph:
        fake.throttle_next(1)
        with pytest.raises(aposthog.RateLimitError):
            await ph.customer_profile_configs.list()
    assert 1 == len(fake.requests)


async def test_retries_give_up_after_max_retries(fake: FakePostHog) -> None:
    """A server that keeps refusing is asked max_retries + 1 times, then the error is raised."""
    policy = aposthog.RetryPolicy(max_retries=3, initial_backoff=0.001, max_retry_after=0.001)
    async with fake.client(retry=policy) as ph:
        fake.fail_next(10, status=502)
        with pytest.raises(aposthog.InternalServerError) as info:
            await ph.customer_profile_configs.list()
    assert 502 == info.value.status
    assert 4 == len(fake.requests)


async def test_client_owns_and_closes_its_session(fake: FakePostHog) -> None:
    """The owned session is created lazily and closed by aclose(); use after close is an error."""
    ph = fake.client()
    assert "closed" not in repr(ph)
    await ph.customer_profile_configs.list()
    await ph.aclose()
    await ph.aclose()  # idempotent
    assert ph.closed
    with pytest.raises(aposthog.ClientStateError, match="closed"):
        await ph.customer_profile_configs.list()


async def test_borrowed_session_is_never_closed(fake: FakePostHog) -> None:
    """A session passed in is used and left open."""
    async with aiohttp.ClientSession() as session:
        async with fake.client(session=session) as ph:
            await ph.customer_profile_configs.list()
        assert not session.closed
        async with session.get(f"{fake.url}/api/environments/1/customer_profile_configs/") as r:
            assert 401 == r.status


async def test_a_client_refuses_another_event_loop(fake: FakePostHog) -> None:
    """A client first used in one loop gives a clear error in another."""
    ph = fake.client()
    await ph.customer_profile_configs.list()
    errors: list[BaseException] = []

    def other_loop() -> None:
        async def use() -> None:
            await ph.customer_profile_configs.list()

        try:
            asyncio.run(use())
        except BaseException as exc:  # the assertion is on the type
            errors.append(exc)

    thread = threading.Thread(target=other_loop)
    thread.start()
    thread.join()
    await ph.aclose()
    assert 1 == len(errors)
    assert isinstance(errors[0], aposthog.ClientStateError)
    assert "another event loop" in str(errors[0])


async def test_a_stream_read_from_another_event_loop_is_a_client_state_error(
    fake: FakePostHog,
) -> None:
    """
    A chat relay opens a conversation stream in one event loop and hands it to code that
    runs another (a worker thread's `asyncio.run()`, asgiref's `async_to_sync`). Every
    other use of the client from there is a `ClientStateError` ("belongs to another event
    loop"); reading the stream is not checked: the read awaits the response of the first
    loop, and asyncio's bare `RuntimeError` ("... got Future ... attached to a different
    loop") escapes, which no aposthog handler catches.
    """
    fake.script_answer("one two three four five six seven eight", token_size=2, delay=0.02)
    async with fake.client(max_retries=0) as ph:
        stream = ph.conversations.create("q")
        async with stream:
            await anext(stream)  # opened, and read, in this loop
            raised: list[BaseException] = []

            def other_loop() -> None:
                async def read() -> None:
                    async for _ in stream:
                        pass

                try:
                    asyncio.run(asyncio.wait_for(read(), 2))
                except BaseException as exc:  # the assertion is on the type
                    raised.append(exc)

            await anyio.to_thread.run_sync(other_loop)
    assert [aposthog.ClientStateError] == [type(e) for e in raised], raised
    assert "another event loop" in str(raised[0])


async def _raised_by(entry: Callable[[], Awaitable[object]]) -> BaseException | None:
    try:
        await entry()
    except BaseException as exc:  # the callers' assertions are on the type
        return exc
    return None


async def test_under_trio_every_entry_point_is_a_client_state_error(fake: FakePostHog) -> None:
    """
    aposthog runs on asyncio (aiohttp). Under trio (or anyio's trio backend), a call, a
    list, a prefetching list and a stream each raised asyncio's bare `RuntimeError` ("no
    running event loop") from deep inside aiohttp or asyncio, which no aposthog handler
    catches; now each is a `ClientStateError` that says what to run instead, raised
    before anything is sent. `aclose()` has nothing to close and returns.
    """
    import trio

    raised: dict[str, BaseException | None] = {}

    async def under_trio() -> None:
        ph = fake.client(max_retries=0)

        async def enter() -> None:
            async with fake.client():
                pass

        async def paginate() -> None:
            async for _ in ph.batch_exports.list():
                pass

        async def prefetch() -> None:
            async for _ in ph.batch_exports.list().prefetch(2):
                pass

        async def stream() -> None:
            async with ph.conversations.create("q") as opened:
                await anext(opened)

        async def deltas() -> None:
            async for _ in ph.conversations.create("q").text_deltas():
                pass

        entries: dict[str, Callable[[], Awaitable[object]]] = {
            "async with": enter,
            "call": ph.customer_profile_configs.list,
            "list": paginate,
            "to_list": lambda: ph.batch_exports.list().to_list(),
            "prefetch": prefetch,
            "stream": stream,
            "text_deltas": deltas,
        }
        for name, entry in entries.items():
            raised[name] = await _raised_by(entry)
        await ph.aclose()

    await anyio.to_thread.run_sync(trio.run, under_trio)
    assert dict.fromkeys(raised, aposthog.ClientStateError) == {
        name: type(exc) for name, exc in raised.items()
    }, raised
    for exc in raised.values():
        assert "no asyncio event loop runs here" in str(exc)
        assert "not trio" in str(exc)
    assert 7 == len(raised)
    assert [] == fake.requests


async def test_closing_a_stream_from_another_event_loop_is_a_client_state_error(
    fake: FakePostHog,
) -> None:
    """
    `Client.aclose()` from a loop the client does not belong to is refused
    (`ClientStateError`: "close it from there"), since its connections belong to the
    other loop. `ConversationStream.aclose()` is not: it closes the response of the
    first loop from another thread, which asyncio does not allow (a first loop in debug
    mode answers with a bare `RuntimeError` "Non-thread-safe operation", leaving the
    stream open and counted in `open_streams`).
    """
    fake.script_answer("one two three four five six seven eight", token_size=2, delay=0.02)
    async with fake.client(max_retries=0) as ph:
        stream = ph.conversations.create("q")
        async with stream:
            await anext(stream)
            raised: list[BaseException] = []

            def other_loop() -> None:
                try:
                    asyncio.run(asyncio.wait_for(stream.aclose(), 2))
                except BaseException as exc:  # the assertion is on the type
                    raised.append(exc)

            await anyio.to_thread.run_sync(other_loop)
    assert [aposthog.ClientStateError] == [type(e) for e in raised], raised


async def test_closing_a_client_from_another_event_loop_is_a_client_state_error(
    fake: FakePostHog,
) -> None:
    """`aclose()` from a loop the client does not belong to is refused as every other
    use from there is (`ClientStateError`), not an asyncio `RuntimeError` (no asyncio
    exception escapes the client), and leaves the client open for its own loop to close.
    """
    ph = fake.client()
    await ph.customer_profile_configs.list()
    errors: list[BaseException] = []

    def other_loop() -> None:
        try:
            asyncio.run(ph.aclose())
        except BaseException as exc:  # the assertion is on the type
            errors.append(exc)

    thread = threading.Thread(target=other_loop)
    thread.start()
    thread.join()
    still_open = not ph.closed
    await ph.aclose()
    assert [aposthog.ClientStateError] == [type(e) for e in errors]
    assert still_open


async def test_a_borrowed_session_of_another_event_loop_is_a_client_state_error(
    fake: FakePostHog,
) -> None:
    """
    aiohttp sessions cannot cross event loops. A session made on another loop (a web
    app's, lent to a client a worker thread uses with its own loop) is refused as every
    other use from another loop is (`ClientStateError`), not with asyncio's bare
    `RuntimeError` ("... attached to a different loop"): no asyncio exception escapes
    the client. (The borrowed Redis client of a `RedisRateLimitStore` is refused so.)
    """
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever)
    thread.start()

    async def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    session = asyncio.run_coroutine_threadsafe(make(), other).result(5)
    raised: list[BaseException] = []

    async def record(call: Callable[[], Awaitable[object]]) -> None:
        try:
            with anyio.fail_after(2):
                await call()
        except Exception as exc:  # the assertion is on the type
            raised.append(exc)

    try:
        async with fake.client(session=session, max_retries=0) as ph:
            await record(ph.customer_profile_configs.list().to_list)
            await record(ph.conversations.create("q", max_reattach_attempts=0).until_done)
    finally:
        asyncio.run_coroutine_threadsafe(session.close(), other).result(5)
        other.call_soon_threadsafe(other.stop)
        thread.join()
        other.close()
    assert [aposthog.ClientStateError] * 2 == [type(e) for e in raised], raised


async def test_a_call_waiting_for_a_slot_when_the_client_closes_says_the_client_closed(
    fake: FakePostHog,
) -> None:
    """A call waiting for a `max_concurrency` slot when `aclose()` runs fails with the
    closed client's `ClientStateError`, as a call waiting for the rate limiter does, not
    one blaming a borrowed session the caller never gave; the call in flight, whose
    connection the close cut, is told the client closed, rather than that PostHog did.
    """
    fake.latency = 0.3
    errors: list[aposthog.ClientStateError] = []
    async with fake.client(max_concurrency=1, max_retries=0) as ph:

        async def call() -> None:
            try:
                await ph.customer_profile_configs.list()
            except aposthog.ClientStateError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            tg.start_soon(call)
            with anyio.fail_after(5):  # one call in flight at PostHog, the other waits
                while fake.in_flight < 1:  # noqa: ASYNC110 (the fake signals no event)
                    await anyio.sleep(0.005)
            await ph.aclose()
    assert [
        "this aposthog.Client was closed while the request was in flight",
        "this aposthog.Client is closed; create a new one",
    ] == [str(e) for e in errors]
    assert isinstance(errors[0].__cause__, aposthog.APIConnectionError)
    assert 1 == len([r for r in fake.requests if r.method == "GET"])  # the waiter sent nothing


async def test_proxies_from_the_environment_are_honoured(
    fake: FakePostHog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is used: the request goes to the proxy (here: the fake itself)."""
    monkeypatch.setenv("HTTP_PROXY", fake.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with aposthog.Client(
        api_key=fake.api_key,
        host="http://posthog.invalid",
        retry=FAST,
        allow_insecure_http=True,
    ) as ph:
        with pytest.raises(aposthog.NotFoundError):
            await ph.customer_profile_configs.list()
    # A proxy receives the absolute URL in the request line.
    assert fake.requests[-1].path.startswith("http://posthog.invalid/")


async def test_key_never_appears_in_errors_reprs_or_logs(
    fake: FakePostHog, caplog: pytest.LogCaptureFixture
) -> None:
    """The API key is absent from the client's repr, its config, errors and log lines."""
    caplog.set_level(logging.DEBUG, logger="aposthog")
    async with fake.client(retry=FAST) as ph:
        fake.throttle_next(1, wait=0)
        await ph.customer_profile_configs.list()
        fake.fail_next(
            1,
            status=400,
            body={"type": "validation_error", "code": "x", "detail": "bad", "attr": None},
        )
        with pytest.raises(aposthog.BadRequestError) as info:
            await ph.customer_profile_configs.list()
        texts = [repr(ph), repr(ph.config), str(info.value), repr(info.value), caplog.text]
    assert caplog.records  # the retry was logged
    for text in texts:
        assert fake.api_key not in text


async def test_no_unclosed_session_warning_after_many_clients(fake: FakePostHog) -> None:
    """Clients closed with `async with` leave nothing for the garbage collector to warn about."""
    for _ in range(20):
        async with fake.client() as ph:
            await ph.customer_profile_configs.list()
    gc.collect()


def test_a_host_with_a_path_prefix_keeps_it() -> None:
    """A self-hosted PostHog under /posthog: every path keeps the prefix."""
    client = aposthog.Client(api_key="k", host="https://example.com/posthog/", project_id=7)
    route = _routes.EXPORTS
    request = client._api.pipeline.request(route, route.fill())
    assert "https://example.com/posthog/api/environments/7/batch_exports/" == request.url
    assert "/posthog/api/environments/7/batch_exports/" == request.path


async def test_a_timed_out_call_leaves_no_cancellation_behind(fake: FakePostHog) -> None:
    """
    The time limit cancels the attempt, not the caller: after an `APITimeoutError` the
    task awaits on normally, and a cancellation from outside stays a cancellation.
    """
    fake.latency = 0.3
    async with fake.client(timeout=0.05, max_retries=0) as ph:
        with pytest.raises(aposthog.APITimeoutError):
            await ph.customer_profile_configs.list()
        await anyio.sleep(0.01)
        with anyio.move_on_after(0.05) as scope:
            await ph.customer_profile_configs.list(timeout=5)
        assert scope.cancelled_caught
        fake.latency = 0
        assert [] == (await ph.customer_profile_configs.list()).results


async def test_a_refused_post_is_retried_as_often_as_max_retries() -> None:
    """A refused create never reached the server: it is repeated, max_retries times."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there any more
    waits: list[aposthog.Wait] = []
    async with aposthog.Client(
        api_key="k", host=f"http://127.0.0.1:{port}", retry=FAST, on_wait=waits.append
    ) as ph:
        with pytest.raises(aposthog.APIConnectionError):
            await ph.customer_profile_configs.create(scope="person")
    assert ["retry", "retry", "retry"] == [wait.reason for wait in waits]


async def test_retries_give_their_slot_back(fake: FakePostHog) -> None:
    """With max_concurrency=1, a call that needed retries leaves the slot free for the next."""
    async with fake.client(max_concurrency=1, retry=FAST) as ph:
        fake.fail_next(2, status=503)
        with anyio.fail_after(10):
            await ph.customer_profile_configs.list()
            page = await ph.customer_profile_configs.list()
    assert [] == page.results
    assert 4 == len(fake.requests)


async def test_only_a_request_with_a_body_says_it_is_json(fake: FakePostHog) -> None:
    """A POST's body is declared JSON, through a borrowed session too; a GET declares none."""
    async with aiohttp.ClientSession() as session, fake.client(session=session) as ph:
        await ph.customer_profile_configs.create(scope="person")
        await ph.customer_profile_configs.list()
    post, get = fake.requests[-2:]
    assert ("POST", "application/json") == (post.method, post.headers["content-type"])
    assert "GET" == get.method
    assert "content-type" not in {name.lower() for name in get.headers}


async def test_a_view_with_a_shorter_stream_idle_timeout_times_out_its_streams(
    fake: FakePostHog,
) -> None:
    """`with_options(stream_idle_timeout=...)` applies to the view's streams."""
    fake.keepalive_interval = None
    fake.script_answer("slow", token_size=1, delay=0.5)
    async with fake.client(retry=FAST) as ph:
        view = ph.with_options(stream_idle_timeout=0.05)
        assert 0.05 == view.config.stream_idle_timeout
        stream = view.conversations.create("q", max_reattach_attempts=0)
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError) as info:
            await stream.until_done()
    assert "stream_idle_timeout" in str(info.value)


async def test_entering_a_closed_client_is_an_error(fake: FakePostHog) -> None:
    """`async with` refuses a closed client at once, before any call."""
    ph = fake.client()
    await ph.aclose()
    with pytest.raises(aposthog.ClientStateError, match="closed"):
        async with ph:
            pytest.fail("entered a closed client")


@pytest.mark.parametrize(
    "session",
    [
        aiohttp.ClientSession,  # the class: `session=aiohttp.ClientSession` without the call
        "http://127.0.0.1:1",  # a URL where the session goes
        5,
    ],
)
async def test_a_session_that_is_not_an_aiohttp_session_is_refused_at_construction(
    session: object,
) -> None:
    """
    Every other argument is checked where the client is built, with an error naming it.
    A `session` that is not an `aiohttp.ClientSession` instance was accepted, and each
    call then failed with an untyped `AttributeError` ('int' object has no attribute
    'closed'), or, for the class itself, with "the aiohttp session given to the
    aposthog.Client is closed", which sends the reader looking for who closed it.
    """
    with pytest.raises(TypeError, match=r"^session must be an aiohttp\.ClientSession"):
        aposthog.Client(api_key="phx_test", host="http://127.0.0.1:1", session=session)  # type: ignore[arg-type]


async def _closed_under(ph: aposthog.Client, call: Callable[[], Awaitable[object]]) -> str:
    """
    Start `call`, let it begin its wait, close `ph`: what the call ended with (its
    error's class name), or "still waiting" if it had not ended a second after the close.
    """
    outcome = "still waiting"
    ended = anyio.Event()

    async def run() -> None:
        nonlocal outcome
        try:
            await call()
        except aposthog.PostHogError as exc:
            outcome = type(exc).__name__
        else:
            outcome = "returned"
        ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.sleep(0.2)  # the call is waiting now
        await ph.aclose()
        with anyio.move_on_after(1):
            await ended.wait()
        tg.cancel_scope.cancel()
    return outcome


async def test_closing_the_client_ends_a_call_waiting_to_retry_at_once(
    fake: FakePostHog,
) -> None:
    """
    A call sleeping before a retry (here PostHog's 429 asked for 5 s) when the client
    closes fails at once with `ClientStateError`, as a stream waiting to re-attach does:
    a web app's shutdown closes the client and waits for its handlers, which would
    otherwise hang for as long as the wait PostHog named (60 s by default).
    """
    fake.throttle_next(1, wait=5)
    policy = aposthog.RetryPolicy(max_retry_after=10, retry_after_jitter=0)
    ph = fake.client(retry=policy)
    assert "ClientStateError" == await _closed_under(ph, ph.customer_profile_configs.list)


async def test_closing_the_client_ends_a_call_waiting_for_the_rate_limiter_at_once(
    fake: FakePostHog,
) -> None:
    """
    A call held back by the client's own rate limiter when the client closes fails at
    once with `ClientStateError`, rather than after the window frees (30 s here).
    """
    limits = aposthog.RateLimits(api=(aposthog.Rate(1, per=30),))
    ph = fake.client(rate_limits=limits)
    await ph.customer_profile_configs.list()  # the window is full now
    assert "ClientStateError" == await _closed_under(ph, ph.customer_profile_configs.list)


async def test_an_aclose_cancelled_midway_is_finished_by_the_next_one(fake: FakePostHog) -> None:
    """
    A shutdown under `asyncio.timeout()`, or in an `asyncio.TaskGroup` whose sibling
    failed, cancels `aclose()` while it awaits the session's close (anyio's shield does
    not stop asyncio's own cancellation). `aclose()` is idempotent: called again, it must
    finish the close, so that a call waiting for the rate limiter ends at once with
    `ClientStateError` (and a Redis store is let go), not when its window frees.
    """
    limits = aposthog.RateLimits(api=(aposthog.Rate(1, per=30),))
    ph = fake.client(rate_limits=limits)
    await ph.customer_profile_configs.list()  # the window is full now
    ended: list[str] = []

    async def held_back() -> None:
        try:
            await ph.customer_profile_configs.list()
        except aposthog.ClientStateError:
            ended.append("ClientStateError")

    waiter = asyncio.create_task(held_back())
    await asyncio.sleep(0.05)  # waiting for the window, 30 s
    closer = asyncio.create_task(ph.aclose())
    await asyncio.sleep(0)  # the close is under way, awaiting the session's close
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    await ph.aclose()
    await asyncio.wait({waiter}, timeout=1)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert ["ClientStateError"] == ended


async def test_an_aclose_cancelled_while_the_store_is_released_is_finished_by_the_next_one(
    fake: FakePostHog,
) -> None:
    """
    `aclose()` cancelled midway is finished by the next one: also when it was cancelled
    while the rate-limit store was being let go (a `RedisRateLimitStore` waits up to 5 s
    for its background clean-ups, then disconnects its pool). Cancelled there, the next
    `aclose()` must let the store go to its end, not skip it: a Redis store made from a
    URL otherwise stays connected for good.
    """

    class SlowRelease(aposthog.InProcessRateLimitStore):
        def __init__(self) -> None:
            super().__init__()
            self.gate = asyncio.Event()
            self.released = False

        async def _detach(self) -> None:
            await self.gate.wait()  # as a Redis store's clean-ups and disconnect
            self.released = True

    store = SlowRelease()
    limits = aposthog.RateLimits(api=(aposthog.Rate(10, per=1),))
    ph = fake.client(rate_limits=limits, rate_limit_store=store)
    await ph.customer_profile_configs.list()
    closer = asyncio.create_task(ph.aclose())
    await asyncio.sleep(0.05)  # the close is under way, letting the store go
    closer.cancel()  # a shutdown under asyncio.timeout()
    with pytest.raises(asyncio.CancelledError):
        await closer
    store.gate.set()
    await asyncio.wait_for(ph.aclose(), 1)
    assert store.released


async def test_a_stream_waiting_for_the_rate_limiter_is_open_and_closed_with_the_client(
    fake: FakePostHog,
) -> None:
    """
    `open_streams` counts a stream "from the first iteration (or `async with`)": one
    whose first request waits for room in the `ai` windows is iterated, so it is counted,
    and `aclose()` closes it at once, as it does a stream waiting to re-attach.
    """
    fake.ai_burst_limit = None
    limits = aposthog.RateLimits(ai=(aposthog.Rate(1, per=30),))
    ph = fake.client(rate_limits=limits)
    await ph.conversations.create("first").until_done()  # the ai window is full now
    counted: list[int] = []

    told: list[str] = []

    async def read() -> None:
        stream = ph.conversations.create("second")

        async def until_done() -> None:
            try:
                await stream.until_done()
            except aposthog.ClientStateError as exc:
                told.append(str(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(until_done)
            await anyio.sleep(0.1)
            counted.append(ph.open_streams)

    assert "returned" == await _closed_under(ph, read)  # at once, not 30 s later
    assert [1] == counted
    assert [
        "this ConversationStream was closed before PostHog ended it: its aposthog.Client was "
        "closed; result() holds what arrived"
    ] == told


async def test_a_call_in_flight_on_a_borrowed_session_keeps_its_timeout_after_aclose() -> None:
    """
    `timeout` bounds one attempt. A web app that lends its own session to the client
    and closes the client at shutdown, while a handler's call waits on a PostHog that
    does not answer, must see that call end within its `timeout` (a `ClientStateError`
    or an `APITimeoutError`), not wait for as long as PostHog takes: here, forever.
    """
    answer = anyio.Event()

    async def stalled(request: web.Request) -> web.StreamResponse:
        await answer.wait()
        return web.json_response({"count": 0, "next": None, "previous": None, "results": []})

    async with serve(stalled) as url, aiohttp.ClientSession() as session:
        ph = aposthog.Client(api_key="k", host=url, session=session, timeout=0.5, max_retries=0)
        # Closed 0.2 s into the call; looked at for a second after.
        outcome = await _closed_under(ph, ph.customer_profile_configs.list)
        answer.set()
    assert outcome in ("ClientStateError", "APITimeoutError")


async def test_a_call_without_a_timeout_on_a_borrowed_session_ends_at_aclose() -> None:
    """
    `aclose()` ends a call in flight on a borrowed session (CHANGELOG: "A call in
    flight on a borrowed `session=` ... ends then too"). With `timeout=None` (documented:
    no limit) the call has no deadline to end it by: a web app's shutdown that closes the
    client while PostHog does not answer must still see the call end, and its slot freed.
    """
    answer = anyio.Event()

    async def stalled(request: web.Request) -> web.StreamResponse:
        await answer.wait()
        return web.json_response({"count": 0, "next": None, "previous": None, "results": []})

    async with serve(stalled) as url, aiohttp.ClientSession() as session:
        ph = aposthog.Client(api_key="k", host=url, session=session, timeout=None, max_retries=0)
        # Closed 0.2 s into the call; looked at for a second after.
        outcome = await _closed_under(ph, ph.customer_profile_configs.list)
        answer.set()
    assert outcome == "ClientStateError"
    assert ph._api.pipeline.slots.free == ph.config.max_concurrency


@pytest.mark.parametrize("waiting_for", ["retry", "rate_limit"])
async def test_a_cancel_landing_as_aclose_ends_the_wait_stays_a_cancellation(
    fake: FakePostHog, waiting_for: str
) -> None:
    """
    A worker pool shutting down cancels its workers and closes the client together. A
    worker waiting to retry PostHog's 503 (or for its rate-limit window) is woken by the
    close (which cancels the wait's scope) in the same loop step as its task is
    cancelled: the task must end cancelled, as it does on 3.11, not with the close's
    `ClientStateError` (a task group then reports an error for a cancelled worker).
    """
    waiting = asyncio.Event()

    def on_wait(wait: aposthog.Wait) -> None:
        waiting.set()

    if waiting_for == "retry":
        fake.fail_next(1, status=503)
        policy = aposthog.RetryPolicy(initial_backoff=10, max_backoff=10)
        client = fake.client(retry=policy, on_wait=on_wait)
    else:
        limits = aposthog.RateLimits(api=(aposthog.Rate(1, per=10),), margin=0)
        client = fake.client(rate_limits=limits, on_wait=on_wait)
        await client.batch_exports.list()  # the window's one request
    worker = asyncio.ensure_future(client.batch_exports.list().to_list())
    with anyio.fail_after(1):
        await waiting.wait()
    closing = asyncio.ensure_future(client.aclose())  # its wake-up of the worker runs first,
    asyncio.get_running_loop().call_soon(worker.cancel)  # the worker's cancel in that step
    await closing
    outcome = (await asyncio.gather(worker, return_exceptions=True))[0]
    assert isinstance(outcome, asyncio.CancelledError), repr(outcome)


async def test_aclose_as_a_scope_cancels_a_call_leaves_no_unretrieved_error() -> None:
    """
    A worker's call is cancelled by its anyio scope (a shutdown) in the step the client
    closes. On 3.10 the attempt runs as a task of its own (`apart`); the close marks it
    expired, so it ends in `APITimeoutError`, which nobody retrieves once the scope's
    repeated cancellation stops the caller's wait: asyncio logs "Task exception was
    never retrieved" at shutdown.
    """
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.json_response({})

    errors: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(repr(context.get("exception"))))
    try:
        async with serve(stall) as url:
            client = aposthog.Client(api_key="phx_k", host=url, project_id=1)
            scope = anyio.CancelScope()

            async def worker() -> None:
                with scope:
                    await client.batch_exports.get("018f0000-0000-0000-0000-000000000000")

            task = asyncio.ensure_future(worker())
            with anyio.fail_after(1):
                await arrived.wait()
            scope.cancel()
            await client.aclose()
            await task  # its scope caught the cancellation
            for _ in range(5):
                await asyncio.sleep(0)
            del task
            gc.collect()
            release.set()
    finally:
        loop.set_exception_handler(None)
    assert not errors


async def test_a_slotted_subclass_view_keeps_its_slots(fake: FakePostHog) -> None:
    """A subclass with `__slots__` (a private one too) hands its slots' values to its view."""

    class Slotted(aposthog.Client):
        __slots__ = ("__secret", "team")

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.team = "growth"
            self.__secret = "s"

        def secret(self) -> str:
            return self.__secret

    async with Slotted(api_key=fake.api_key, host=fake.url, project_id=fake.project_id) as ph:
        fast = ph.with_options(timeout=2)
        assert (fast.team, fast.secret()) == ("growth", "s")
        assert fast.batch_exports is not ph.batch_exports


def test_a_client_whose_event_loop_has_ended_can_still_be_closed() -> None:
    """
    A client used under one `asyncio.run()` (a pytest-asyncio per-test loop, a script
    that runs twice) and not closed there can only be closed from another loop: its own
    has ended. `aclose()` then raises "close it from there", which no code can do, and
    the session's keep-alive connection is left to the garbage collector (unclosed
    transport and connector `ResourceWarning`s). A loop that is closed can run nothing:
    its client should close what it holds (or at least end up closed) without an error.
    Its session and connector are closed (aiohttp warns of neither); the sockets of the
    ended loop are closed as they are collected (asyncio's "unclosed transport").
    """
    with serve_in_thread() as fake:
        ph = fake.client()

        async def use(client: aposthog.Client) -> None:
            await client.customer_profile_configs.list()

        asyncio.run(use(ph))  # the loop ends; the pooled connection stays open
        refused: str | None = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                asyncio.run(ph.aclose())
            except aposthog.ClientStateError as exc:
                refused = str(exc)  # not the error: its traceback holds the client
            closed = ph.closed
            del ph, use
            leaks = _collected_leaks(caught)
    assert (None, True, []) == (refused, closed, leaks)


def _collected_leaks(caught: list[warnings.WarningMessage], *dropped: str) -> list[str]:
    """
    Collect the garbage (within `catch_warnings`) until it warns of nothing more: the
    resource warnings but for the sockets of a loop that has ended, which asyncio closes
    as they are collected (and `dropped`, more of the same). A warning holds what it
    warns of (its `source`): what that holds is collected once it is let go.
    """
    leaks: list[str] = []
    for _ in range(10):
        gc.collect()
        if not caught:
            break
        leaks += [
            str(w.message)
            for w in caught
            if issubclass(w.category, ResourceWarning)
            and not str(w.message).startswith(("unclosed transport", "unclosed <socket", *dropped))
        ]
        caught.clear()
    return leaks


def test_a_stream_whose_event_loop_has_ended_closes_without_an_error() -> None:
    """
    As its client (above): a stream left open under one `asyncio.run()` can only be
    closed from another loop. Its connection went with its loop; `aclose()` marks it
    closed, touching nothing of that loop, and reading it is a `ClientStateError`. (The
    connection's socket is closed as it is collected, asyncio and aiohttp warning of it:
    nothing can close it on a loop that has ended.)
    """

    async def begin(ph: aposthog.Client) -> aposthog.ConversationStream:
        stream = ph.conversations.create("q")
        await anext(stream)
        return stream

    async def later(ph: aposthog.Client, stream: aposthog.ConversationStream) -> None:
        with pytest.raises(aposthog.ClientStateError, match="another event loop"):
            await anext(stream)
        await stream.aclose()
        await ph.aclose()

    with serve_in_thread() as fake:
        fake.script_answer("one two three four five six", token_size=2, delay=0.02)
        client = fake.client()
        opened = asyncio.run(begin(client))  # the loop ends with the stream open
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asyncio.run(later(client, opened))
            ended = (opened.closed, client.open_streams, client.closed)
            del opened, client
            leaks = _collected_leaks(caught, "Unclosed connection")
    assert ((True, 0, True), []) == (ended, leaks)


async def test_a_client_dropped_without_aclose_warns_naming_the_fix(fake: FakePostHog) -> None:
    """
    A client garbage-collected without `aclose()` (a web app that builds one per request,
    a test that forgets `async with`) should say so the way a dropped stream does: a
    `ResourceWarning` naming `aposthog.Client` and how to close it, not only aiohttp's
    "Unclosed client session" / "Unclosed connector", which never name the client that
    owned the session.
    """
    ph = fake.client()
    await ph.customer_profile_configs.list()
    session = ph._api.pipeline.transport._session
    assert session is not None
    # Kept to close it after (its keep-alive timer would outlive the test otherwise).
    connector = session.connector
    assert connector is not None
    del session
    loop = asyncio.get_running_loop()
    told: list[str] = []
    loop.set_exception_handler(lambda _, context: told.append(str(context.get("message"))))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del ph
            gc.collect()
    finally:
        loop.set_exception_handler(None)
        await connector.close()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert any("aposthog.Client" in m and "aclose" in m for m in messages), messages
    assert not any("Unclosed client session" in m for m in messages + told), messages + told


async def test_a_borrowed_session_with_auth_of_its_own_is_refused_at_once() -> None:
    """
    aiohttp refuses to combine a session's `auth=` with the Authorization header the key
    goes in: every request failed before sending with a ValueError, reported as "the URL
    is not one aiohttp can use" and retried with backoff. It is a ConfigurationError when
    the client is made, saying why.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # aiohttp 3.14 deprecates auth=
        session = aiohttp.ClientSession(auth=aiohttp.BasicAuth("user", "password"))
    async with session:
        with pytest.raises(aposthog.ConfigurationError, match="auth="):
            aposthog.Client(api_key="phx_k", host="http://127.0.0.1:9", session=session)
