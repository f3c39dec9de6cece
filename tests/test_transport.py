"""The aiohttp transport, against the testing kit's loopback server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import math
import socket
import struct
import time
import traceback
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import anyio
import anyio.abc
import pytest

import aposthog
from aposthog._http import Request
from aposthog._transport import StreamResponse, Transport, _parser_fault
from aposthog.testing import (
    DropConnection,
    FakePostHog,
    LoopbackServer,
    ServerReply,
    ServerRequest,
)

from .tls_stall import tls_stall

pytestmark = pytest.mark.anyio


async def _chunks() -> AsyncIterator[bytes]:
    yield b"one "
    await anyio.sleep(0.01)
    yield b"two "
    raise DropConnection


async def _handler(request: ServerRequest) -> ServerReply:
    if request.raw_path == "/drop/":
        return ServerReply(drop=True)
    if request.raw_path == "/stream/":
        return ServerReply(stream=_chunks(), headers={"Content-Type": "text/event-stream"})
    return ServerReply(status=201, body=request.method.encode() + b" " + request.body)


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    """A loopback server with a handler that echoes, drops, or streams then drops."""
    loopback = LoopbackServer(_handler)
    await loopback.start()
    yield loopback
    await loopback.stop()


async def test_send_returns_status_headers_and_body(server: LoopbackServer) -> None:
    """A whole response comes back as status, headers and body."""
    transport = Transport()
    request = Request(method="POST", url=f"{server.url}/echo/", body=b'{"a":1}')
    response = await transport.send(request, {"Content-Type": "application/json"}, timeout=5)
    await transport.aclose()
    assert (201, b'POST {"a":1}') == (response.status, response.body)


async def test_a_dropped_answer_may_have_reached_the_server(server: LoopbackServer) -> None:
    """A connection closed without an answer is an APIConnectionError with reached_server."""
    transport = Transport()
    with pytest.raises(aposthog.APIConnectionError) as info:
        await transport.send(Request(method="POST", url=f"{server.url}/drop/"), {}, timeout=5)
    await transport.aclose()
    assert info.value.reached_server
    assert "POST /drop/" in str(info.value)


async def test_a_refused_connection_never_reached_it() -> None:
    """Nothing listening: reached_server is False, so any method may be retried."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    transport = Transport()
    with pytest.raises(aposthog.APIConnectionError) as info:
        await transport.send(Request(method="POST", url=f"http://127.0.0.1:{port}/"), {})
    await transport.aclose()
    assert not info.value.reached_server


async def test_writing_tells_whether_a_request_began_to_be_sent(server: LoopbackServer) -> None:
    """
    `transport.writing()` marks an attempt whose request began to be written: not one
    refused while connecting (nothing sent), a sent one once aiohttp sends it, and one on
    a borrowed session from the start (its request class is not the client's: unknown).
    """
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    transport = Transport()
    try:
        with transport.writing() as refused, pytest.raises(aposthog.APIConnectionError):
            await transport.send(Request(method="POST", url=f"http://127.0.0.1:{port}/"), {})
        with transport.writing() as sent:
            stream = await transport.open_stream(
                Request(method="POST", url=f"{server.url}/stream/"), {}, idle_timeout=5
            )
            stream.close()
    finally:
        await transport.aclose()
    assert (False, True) == (refused[0], sent[0])
    async with aiohttp.ClientSession() as session:
        with Transport(session=session).writing() as borrowed:
            assert borrowed[0]


async def test_stream_chunks_then_a_mid_stream_drop(server: LoopbackServer) -> None:
    """Chunks arrive as written; a cut mid-stream is an APIConnectionError, not aiohttp's."""
    transport = Transport()
    stream = await transport.open_stream(
        Request(method="GET", url=f"{server.url}/stream/"), {}, idle_timeout=5
    )
    received = b""
    with pytest.raises(aposthog.APIConnectionError):
        async for chunk in stream.chunks():
            received += chunk
    stream.close()
    await transport.aclose()
    assert (200, "text/event-stream", b"one two ") == (stream.status, stream.content_type, received)


async def test_a_closed_borrowed_session_is_a_clear_error(server: LoopbackServer) -> None:
    """Borrowing a session that was closed meanwhile is a ClientStateError, not aiohttp's."""
    session = aiohttp.ClientSession()
    await session.close()
    transport = Transport(session=session)
    with pytest.raises(aposthog.ClientStateError, match="session given to the"):
        await transport.send(Request(method="GET", url=f"{server.url}/x/"), {})


def test_proxies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY is used for https URLs, and NO_PROXY exempts hosts."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "eu.posthog.com")
    transport = Transport()
    assert "http://proxy.internal:3128" == transport._proxy_for("https://us.posthog.com/api/x/")
    assert transport._proxy_for("https://eu.posthog.com/api/x/") is None
    assert transport._proxy_for("http://127.0.0.1:8000/api/x/") is None  # no HTTP_PROXY


def test_loopback_hosts_never_go_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.0/8, ::1 and localhost connect directly whatever HTTP(S)_PROXY says."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    transport = Transport()
    for url in (
        "http://127.0.0.1:8000/x/",
        "http://127.5.6.7/x/",
        "http://[::1]:8000/x/",
        "https://localhost/x/",
    ):
        assert transport._proxy_for(url) is None, url
    assert "http://proxy.internal:3128" == transport._proxy_for("http://posthog.internal/x/")
    # A name under .localhost is resolved like any other: it may lead off the machine.
    assert "http://proxy.internal:3128" == transport._proxy_for("http://api.localhost/x/")


async def test_a_dead_proxy_does_not_break_a_loopback_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP(S)_PROXY on a dead port, a FakePostHog on 127.0.0.1 still answers."""
    dead = _dead_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with FakePostHog() as fake, fake.client() as ph:
        await ph.customer_profile_configs.create(scope="person")
        assert 1 == len((await ph.customer_profile_configs.list()).results)


async def test_a_failure_through_a_proxy_names_it_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    The proxy is named without its user and password, in the message and in a
    traceback printed with every frame's locals (pytest's `--showlocals`, rich, Sentry):
    the password, read from `HTTPS_PROXY`, is as much a secret as the key. The frame
    that raised had kept the proxy URL and aiohttp's error as locals.
    """
    dead = _dead_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://scott:tiger-{'secret'}@127.0.0.1:{dead}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with aposthog.Client(
        api_key="phx_x", host="https://posthog.invalid", max_retries=0
    ) as ph:
        with pytest.raises(aposthog.APIConnectionError) as info:
            await ph.customer_profile_configs.list()
    message = str(info.value)
    assert f"through the proxy http://127.0.0.1:{dead}" in message
    assert "tiger-secret" not in message
    assert "scott" not in message
    assert not info.value.reached_server
    printed = traceback.TracebackException.from_exception(info.value, capture_locals=True)
    lines = [line for line in printed.format() if "tiger-secret" in line]
    assert not lines, [line.splitlines()[0] for line in lines]


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("proxy", [None, "http://proxy.internal:3128"])
async def test_the_key_is_a_session_default_only_without_a_proxy(
    monkeypatch: pytest.MonkeyPatch, proxy: str | None
) -> None:
    """
    An owned session carries the common headers as its defaults only when no proxy is
    configured: aiohttp adds a session's defaults to the CONNECT a proxy receives.
    """
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    if proxy is not None:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    client = aposthog.Client(api_key="phx_SENTINEL", host="https://us.posthog.com", project_id=1)
    async with client:
        transport = client._api.pipeline.transport
        session = transport._ensure_session()
        defaults = dict(session.headers)
    if proxy is None:
        assert "Bearer phx_SENTINEL" == defaults.get("Authorization")
    else:
        assert {} == defaults


async def _through_a_refusing_proxy(
    monkeypatch: pytest.MonkeyPatch, answer: bytes, credentials: str = ""
) -> tuple[aposthog.APIConnectionError, list[bytes], int]:
    """
    A list call through `HTTPS_PROXY`, a proxy on 127.0.0.1 that answers the CONNECT
    with `answer` (its status line): the error, the heads the proxy read, its port.
    """
    heads: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for name in ("HTTP_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://{credentials}127.0.0.1:{port}")
    try:
        client = aposthog.Client(
            api_key="phx_SENTINEL", host="https://us.posthog.com", project_id=1, max_retries=0
        )
        async with client:
            with pytest.raises(aposthog.APIConnectionError) as info:
                await client.customer_profile_configs.list()
    finally:
        server.close()
        await server.wait_closed()
    return info.value, heads, port


async def test_a_proxy_never_sees_the_key_in_its_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through an HTTPS proxy, the CONNECT the proxy reads carries no Authorization."""
    _, heads, _ = await _through_a_refusing_proxy(monkeypatch, b"HTTP/1.1 502 Bad Gateway")
    [head] = heads
    assert head.startswith(b"CONNECT us.posthog.com:443")
    assert b"phx_SENTINEL" not in head
    assert b"authorization" not in head.lower()


async def _status_handler(request: ServerRequest) -> ServerReply:
    if request.raw_path.endswith("/customer_profile_configs/"):
        body = b'{"type":"throttled_error","code":"throttled","detail":"Slow down."}'
        return ServerReply(status=429, body=body, headers={"Retry-After": "7"})
    body = b'{"type":"invalid_request","code":"not_found","detail":"Not found.","attr":null}'
    return ServerReply(status=404, body=body, headers={"Content-Type": "application/json"})


def _raise_always(response: aiohttp.ClientResponse) -> None:
    response.raise_for_status()


@pytest.mark.parametrize("raise_for_status", [True, _raise_always], ids=["true", "callable"])
async def test_a_borrowed_session_that_raises_for_status_keeps_typed_errors(
    raise_for_status: object,
) -> None:
    """A session made with raise_for_status: a 404 is a NotFoundError, sent once; a 429
    is a RateLimitError with its Retry-After, not a retried connection error."""
    hits: list[str] = []

    async def handler(request: ServerRequest) -> ServerReply:
        hits.append(request.method)
        return await _status_handler(request)

    loopback = LoopbackServer(handler)
    await loopback.start()
    try:
        session = aiohttp.ClientSession(raise_for_status=raise_for_status)  # type: ignore[arg-type]
        async with (
            session,
            aposthog.Client(
                api_key="phx_test", host=loopback.url, project_id=1, session=session, max_retries=0
            ) as ph,
        ):
            with pytest.raises(aposthog.NotFoundError):
                await ph.customer_profile_configs.get("0190a0a0-0000-7000-8000-000000000001")
            assert ["GET"] == hits
            with pytest.raises(aposthog.RateLimitError) as info:
                await ph.customer_profile_configs.create(scope="person")
            assert 7 == info.value.retry_after
    finally:
        await loopback.stop()


async def test_a_stream_on_a_session_that_raises_for_status_gives_the_status() -> None:
    """open_stream on such a session returns the error status, for the client to handle."""
    loopback = LoopbackServer(_status_handler)
    await loopback.start()
    try:
        async with aiohttp.ClientSession(raise_for_status=True) as session:
            transport = Transport(session=session)
            stream = await transport.open_stream(
                Request(method="GET", url=f"{loopback.url}/missing/"), {}, idle_timeout=5
            )
            stream.close()
            await transport.aclose()
            assert 404 == stream.status
    finally:
        await loopback.stop()


# ------------------------------------------------- what mutants of _transport.py showed


async def _serve(handler: Callable[[ServerRequest], Awaitable[ServerReply]]) -> LoopbackServer:
    loopback = LoopbackServer(handler)
    await loopback.start()
    return loopback


async def _stall_after(*chunks: bytes, after: float = 0.0) -> AsyncIterator[bytes]:
    """`chunks`, `after` seconds apart, then nothing more until the client goes away."""
    for chunk in chunks:
        await anyio.sleep(after)
        yield chunk
    await anyio.sleep(60)
    yield b""  # pragma: no cover


@contextlib.asynccontextmanager
async def _stalled_stream(
    *chunks: bytes, after: float = 0.0, idle: float
) -> AsyncIterator[StreamResponse]:
    """A stream of `chunks` (`after` seconds apart) that then goes silent, opened with `idle`."""

    async def handler(request: ServerRequest) -> ServerReply:
        return ServerReply(stream=_stall_after(*chunks, after=after))

    loopback = await _serve(handler)
    transport = Transport()
    try:
        stream = await transport.open_stream(
            Request(method="GET", url=f"{loopback.url}/x/"), {}, idle_timeout=idle
        )
        try:
            yield stream
        finally:
            stream.close()
    finally:
        await transport.aclose()
        await loopback.stop()


async def test_a_failure_says_whether_the_answer_was_missing_or_cut_off() -> None:
    """No answer at all and a body that stops short of its Content-Length read apart."""

    async def cut(request: ServerRequest) -> ServerReply:
        if request.raw_path == "/drop/":
            return ServerReply(drop=True)

        async def short() -> AsyncIterator[bytes]:
            yield b"0123456789"
            raise DropConnection

        return ServerReply(stream=short(), headers={"Content-Length": "100"})

    loopback = await _serve(cut)
    transport = Transport()
    try:
        with pytest.raises(aposthog.APIConnectionError) as dropped:
            await transport.send(Request(method="GET", url=f"{loopback.url}/drop/"), {}, timeout=5)
        with pytest.raises(aposthog.APIConnectionError) as cut_off:
            await transport.send(Request(method="GET", url=f"{loopback.url}/cut/"), {}, timeout=5)
    finally:
        await transport.aclose()
        await loopback.stop()
    assert "closed the connection without answering" in str(dropped.value)
    assert "was cut off" in str(cut_off.value)
    assert dropped.value.reached_server
    assert cut_off.value.reached_server


async def test_an_error_body_of_exactly_max_response_size_is_read() -> None:
    """The limit is inclusive: a stream's error body of exactly that many bytes is read."""

    async def error(request: ServerRequest) -> ServerReply:
        size = int(request.raw_path.strip("/"))
        return ServerReply(status=500, body=b"e" * size)

    loopback = await _serve(error)
    transport = Transport(max_response_size=1000)
    try:
        stream = await transport.open_stream(
            Request(method="GET", url=f"{loopback.url}/1000/"), {}, idle_timeout=5
        )
        body = await stream.read()
        stream.close()
        stream = await transport.open_stream(
            Request(method="GET", url=f"{loopback.url}/1001/"), {}, idle_timeout=5
        )
        with pytest.raises(aposthog.ResponseTooLargeError):
            await stream.read()
        stream.close()
    finally:
        await transport.aclose()
        await loopback.stop()
    assert b"e" * 1000 == body


def _truncated_gzip() -> bytes:
    return gzip.compress(b"x" * 1000)[:-8]  # the trailer (CRC and length) missing


async def test_a_truncated_gzip_body_is_a_decode_error_not_a_short_body() -> None:
    """A gzip body that ends before its trailer is unreadable, not a shorter answer."""

    async def handler(request: ServerRequest) -> ServerReply:
        return ServerReply(body=_truncated_gzip(), headers={"Content-Encoding": "gzip"})

    loopback = await _serve(handler)
    transport = Transport()
    try:
        with pytest.raises(aposthog.ResponseDecodeError, match="unreadable"):
            await transport.send(Request(method="GET", url=f"{loopback.url}/x/"), {}, timeout=5)
    finally:
        await transport.aclose()
        await loopback.stop()


async def test_a_truncated_gzip_stream_is_a_decode_error_at_its_end() -> None:
    """A compressed stream that ends before its trailer fails at the end, not silently."""

    async def handler(request: ServerRequest) -> ServerReply:
        async def chunks() -> AsyncIterator[bytes]:
            yield _truncated_gzip()

        headers = {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
        return ServerReply(stream=chunks(), headers=headers)

    loopback = await _serve(handler)
    transport = Transport()
    received = b""
    try:
        stream = await transport.open_stream(
            Request(method="GET", url=f"{loopback.url}/x/"), {}, idle_timeout=5
        )
        with pytest.raises(aposthog.ResponseDecodeError):
            async for chunk in stream.chunks():
                received += chunk
        stream.close()
    finally:
        await transport.aclose()
        await loopback.stop()
    assert b"x" * 1000 == received


async def test_a_silent_stream_is_an_api_timeout_error() -> None:
    """Past idle_timeout with nothing received, the read fails as a timeout."""
    async with _stalled_stream(b"data: 1\n\n", idle=0.1) as stream:
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError) as info:
            async for _ in stream.chunks():
                pass
    assert info.value.reached_server


async def test_an_error_body_that_stops_coming_is_timed_out() -> None:
    """A stream's error body read whole: bytes, then silence, end in a timeout, not a hang."""

    async def handler(request: ServerRequest) -> ServerReply:
        # Bytes after the headers too: the timer is this module's, not one aiohttp armed.
        body = _stall_after(b'{"detail":', b'"Server', after=0.05)
        return ServerReply(status=500, stream=body, headers={"Content-Length": "100"})

    loopback = await _serve(handler)
    transport = Transport()
    try:
        stream = await transport.open_stream(
            Request(method="GET", url=f"{loopback.url}/x/"), {}, idle_timeout=0.2
        )
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError):
            await stream.read()
        stream.close()
    finally:
        await transport.aclose()
        await loopback.stop()


async def test_the_idle_timeout_counts_from_the_last_chunk_read() -> None:
    """A chunk 0.3 s in, then silence: the timeout is idle_timeout after that chunk."""
    async with _stalled_stream(b"data: 1\n\n", after=0.3, idle=1.0) as stream:
        assert b"data: 1\n\n" == await stream.read_chunk()
        read_at = anyio.current_time()
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError):
            await stream.read_chunk()
        waited = anyio.current_time() - read_at
    # Not the 1.7 s of a timer re-armed for a whole idle_timeout from its first firing.
    assert 0.9 <= waited < 1.45, waited


async def test_a_refused_body_is_not_kept_alive_by_the_error() -> None:
    """The pieces read before the limit was passed are dropped, not held by the traceback."""
    mib = 1024 * 1024

    async def handler(request: ServerRequest) -> ServerReply:
        async def pieces() -> AsyncIterator[bytes]:  # chunked: no length to refuse it early
            for _ in range(3):
                yield b"x" * mib

        return ServerReply(stream=pieces())

    loopback = await _serve(handler)
    transport = Transport(max_response_size=2 * mib)
    try:
        gc.collect()
        tracemalloc.start()
        try:
            with pytest.raises(aposthog.ResponseTooLargeError) as info:
                await transport.send(Request(method="GET", url=f"{loopback.url}/x/"), {})
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await transport.aclose()
        await loopback.stop()
    assert info.value.__traceback__ is not None  # the frames it holds are still alive here
    assert held < mib, f"{held / mib:.1f} MiB still held"


async def test_a_cookie_an_answer_sets_never_rides_along_with_the_next_call() -> None:
    """No cookie jar: PostHog's API authenticates by key, not by a cookie it once set."""
    cookies: list[str | None] = []

    async def handler(request: ServerRequest) -> ServerReply:
        cookies.append(request.headers.get("cookie"))
        return ServerReply(body=b"{}", headers={"Set-Cookie": "sessionid=abc; Path=/"})

    loopback = await _serve(handler)
    # A name, not 127.0.0.1: aiohttp's cookie jar would refuse a cookie from an IP address.
    url = loopback.url.replace("127.0.0.1", "localhost")
    transport = Transport()
    try:
        for _ in range(2):
            await transport.send(Request(method="GET", url=f"{url}/x/"), {}, timeout=5)
    finally:
        await transport.aclose()
        await loopback.stop()
    assert [None, None] == cookies


def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


async def test_every_call_goes_through_the_proxy_not_only_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An HTTP proxy on 127.0.0.1 receives each request, the first and those after it."""
    lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):  # the client's disconnect
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines.append(head.split(b"\r\n", 1)[0])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _no_proxy_settings(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    transport = Transport()
    try:
        for path in ("/first/", "/second/", "/third/"):
            request = Request(method="GET", url=f"http://posthog.invalid{path}")
            assert b"{}" == (await transport.send(request, {}, timeout=5)).body
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
    assert [
        b"GET http://posthog.invalid/first/ HTTP/1.1",
        b"GET http://posthog.invalid/second/ HTTP/1.1",
        b"GET http://posthog.invalid/third/ HTTP/1.1",
    ] == lines


class _ToLoopback(aiohttp.abc.AbstractResolver):
    """Resolves every name to 127.0.0.1: a borrowed session's own setting."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


async def test_a_borrowed_session_ignores_the_environment_s_proxy(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY names a dead port; a borrowed session still connects as it is set up to."""
    _no_proxy_settings(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_dead_port()}")
    port = server.url.rsplit(":", 1)[1]
    connector = aiohttp.TCPConnector(resolver=_ToLoopback())
    async with aiohttp.ClientSession(connector=connector) as session:
        transport = Transport(session=session)
        request = Request(method="POST", url=f"http://posthog.test:{port}/echo/", body=b"hi")
        response = await transport.send(request, {}, timeout=5)
        await transport.aclose()
    assert (201, b"POST hi") == (response.status, response.body)


async def test_an_encoded_dot_segment_reaches_the_server_as_sent() -> None:
    """An id of `..` is sent as `%2E%2E`: no URL normaliser may collapse it into the parent."""
    paths: list[str] = []

    async def handler(request: ServerRequest) -> ServerReply:
        paths.append(request.raw_path)
        return ServerReply(body=b"{}")

    loopback = await _serve(handler)
    transport = Transport()
    url = f"{loopback.url}/api/things/%2E%2E/%7E/"
    try:
        await transport.send(Request(method="GET", url=url), {}, timeout=5)
        stream = await transport.open_stream(Request(method="GET", url=url), {}, idle_timeout=5)
        stream.close()
    finally:
        await transport.aclose()
        await loopback.stop()
    assert ["/api/things/%2E%2E/%7E/"] * 2 == paths


async def test_the_parsed_urls_kept_are_bounded() -> None:
    """Parsed URLs are kept for reuse, but no more than a few hundred of them."""
    transport = Transport()
    loopback = await _serve(_handler)
    try:
        for n in range(300):
            await transport.send(Request(method="GET", url=f"{loopback.url}/x/{n}/"), {})
            assert len(transport._urls) <= 256
    finally:
        await transport.aclose()
        await loopback.stop()


async def test_a_call_s_time_limit_ends_with_the_call(server: LoopbackServer) -> None:
    """A call that finished within its timeout leaves no deadline to cancel the task later."""
    transport = Transport()

    async def call_then_wait() -> int:
        request = Request(method="POST", url=f"{server.url}/echo/", body=b"x")
        response = await transport.send(request, {}, timeout=0.05)
        await asyncio.sleep(0.3)  # well past the call's deadline
        return response.status

    task = asyncio.create_task(call_then_wait())
    await asyncio.wait([task])
    await transport.aclose()
    assert not task.cancelled()
    assert 201 == task.result()


async def test_a_stream_whose_headers_never_come_times_out() -> None:
    """The wait for the status line and headers is bounded by idle_timeout too."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = Transport()
    try:
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError) as info:
            await transport.open_stream(
                Request(method="GET", url=f"http://127.0.0.1:{port}/x/"), {}, idle_timeout=0.1
            )
    finally:
        await transport.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert info.value.reached_server


async def test_a_reset_on_a_borrowed_session_is_one_attempt() -> None:
    """A connection reset (not only a clean close) is never resent by aiohttp on its own."""
    heads: list[bytes] = []

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            heads.append(await reader.readuntil(b"\r\n\r\n"))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # SO_LINGER 0: an RST, not a FIN

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            transport = Transport(session=session)
            with pytest.raises(aposthog.APIConnectionError) as info:
                await transport.send(
                    Request(method="GET", url=f"http://127.0.0.1:{port}/x/"), {}, timeout=5
                )
            await transport.aclose()
    finally:
        server.close()
        await server.wait_closed()
    assert 1 == len(heads)
    assert info.value.reached_server
    assert "failed: ClientOSError" in str(info.value)  # aiohttp's failure, not our carrier


async def test_bytes_waiting_unread_are_read_before_the_idle_timeout_fails() -> None:
    """
    A slow reader: what arrived while it was busy is still read, and silence counts from
    its last read, not from when the bytes came (aiohttp's own timer would drop them).
    """

    chunks = (b"data: 1\n\n", b"data: 2\n\n")
    async with _stalled_stream(*chunks, after=0.05, idle=0.2) as stream:
        with anyio.fail_after(5):
            first = await stream.read_chunk()
            await anyio.sleep(0.6)  # busy: the second chunk waits, unread, three timeouts
            second = await stream.read_chunk()
            with pytest.raises(aposthog.APITimeoutError):
                await stream.read_chunk()
    assert (b"data: 1\n\n", b"data: 2\n\n") == (first, second)


async def test_bytes_that_came_with_the_headers_wait_for_a_slow_first_read() -> None:
    """
    The first event comes with the headers, then nothing: a reader that first looks only
    after several idle timeouts still gets it, and the silence counts from that read.
    (aiohttp's own timer, started with the headers, must not be left to fire.)
    """

    async with _stalled_stream(b"data: 1\n\n", idle=0.2) as stream:
        await anyio.sleep(0.6)  # busy elsewhere: the event waits unread in the buffer
        with anyio.fail_after(5):
            first = await stream.read_chunk()
            with pytest.raises(aposthog.APITimeoutError):
                await stream.read_chunk()
    assert b"data: 1\n\n" == first


async def test_drop_connection_cuts_a_stream_without_a_server_error(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A stream that raises DropConnection is cut where it stands, as a deliberate act: the
    client reads what was sent, then a cut-off body; aiohttp logs no handler error.
    """
    received = b""
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/stream/") as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_any():
                received += chunk
    assert b"one two " == received
    assert [] == [r for r in caplog.records if r.name.startswith("aiohttp")]


_NO_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.mark.parametrize(
    ("host", "proxy"),
    [
        ("https://posthog..example.com", None),  # the resolver's IDNA step refuses it
        ("http://[::1]]:8000", None),  # yarl: "Invalid IPv6 URL"
        # A malformed HTTPS_PROXY with credentials: redact() raises on its port.
        ("https://us.posthog.com", "http://user:secret@127.0.0.1:notaport"),
    ],
)
async def test_a_url_aiohttp_cannot_use_is_a_posthog_error(
    monkeypatch: pytest.MonkeyPatch, host: str, proxy: str | None
) -> None:
    """
    No aiohttp exception escapes a call, and neither does a builtin one raised inside
    aiohttp: a host (or a proxy setting) that aiohttp cannot use is a `PostHogError`
    (`ConfigurationError`, where the client is made), not a bare
    `ValueError`/`UnicodeError` the caller's `except aposthog.PostHogError` misses.
    Nothing leaves the machine: each fails before any lookup or connection.
    """
    for name in _NO_PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    if proxy is not None:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    with pytest.raises(aposthog.PostHogError) as caught:
        async with aposthog.Client(
            api_key="phx_test", host=host, max_retries=0, rate_limits=None
        ) as ph:
            await ph.customer_profile_configs.list()
    # Refused where the client is made; the proxy by its variable, without credentials.
    assert isinstance(caught.value, aposthog.ConfigurationError)
    if proxy is not None:
        assert str(caught.value).startswith("HTTPS_PROXY (http://127.0.0.1:notaport) ")
        assert "secret" not in str(caught.value)


async def test_an_attempt_timed_out_while_still_connecting_never_reached_the_server() -> None:
    """
    A `timeout` shorter than `connect_timeout` (the README's `create(..., timeout=2)`
    against the default 10 s) ends an attempt whose TLS handshake never completed: no
    byte of the request was sent, so the error must say the request never reached
    PostHog, as a refused connection or `connect_timeout` does; the retry policy then
    repeats a create that PostHog certainly never saw.
    """
    transport = Transport(connect_timeout=10)
    async with tls_stall() as port:
        request = Request(method="POST", url=f"https://127.0.0.1:{port}/x/", body=b"{}")
        try:
            with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError) as info:
                await transport.send(request, {}, timeout=0.2)
        finally:
            await transport.aclose()
    assert not info.value.reached_server


async def test_a_proxy_refusing_the_connect_is_named_as_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    README: "a connection that fails through a proxy says which one (without its
    credentials)". A proxy that refuses the CONNECT (407: it wants other credentials)
    is the proxy failing, not PostHog: the message names the proxy.
    """
    error, _, port = await _through_a_refusing_proxy(
        monkeypatch, b"HTTP/1.1 407 Proxy Authentication Required", credentials="scott:tiger@"
    )
    message = str(error)
    assert f"through the proxy http://127.0.0.1:{port}" in message
    assert "tiger" not in message
    assert not error.reached_server  # the proxy refused: nothing reached PostHog


@pytest.mark.parametrize(
    ("message", "fault"),
    [
        ("Invalid character in chunk size:\n\n  b'ZZ'\n    ^", "a bad chunk size"),
        ("Bad status line 'HTTP/1.1 2OO OK'", "a bad status line"),
        ("Invalid HTTP header: 'Content-Length'", "a bad header"),
        # The bytes quoted after the colon name a status header: aiohttp's words decide.
        ("Got more than 8190 bytes when reading: b'X-Status: aaaa", "a line too long"),
        ("ZZ\r", None),  # only the server's bytes (aiohttp's pure-Python parser)
        ("'chunk' status", None),
    ],
)
def test_a_parser_fault_is_named_from_aiohttps_words_never_the_bytes_it_quotes(
    message: str, fault: str | None
) -> None:
    assert fault == _parser_fault(message)


@pytest.mark.parametrize("early", [0.0, 0.001])
async def test_an_outside_cancellation_that_lands_with_the_deadline_is_never_lost(
    early: float,
) -> None:
    """
    Cancellation is never swallowed (README), on every Python: an outside `cancel()`
    landing in the loop step where the attempt's deadline fires (a shutdown, an outer
    `asyncio.wait_for` as long as the client's `timeout`) stays a cancellation. Python
    3.10 tasks count no cancellations: there it was read as the deadline's, the attempt
    "timed out" and the call retried (47 of 400 such cancellations were lost).
    """

    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await done.wait()  # never answers within the attempt's time
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = Transport()
    try:
        request = Request(method="GET", url=f"http://127.0.0.1:{port}/x/")
        task = asyncio.ensure_future(transport.send(request, {}, timeout=0.3))
        while transport._deadlines._when == math.inf:  # noqa: ASYNC110 (its clock started)
            await asyncio.sleep(0.005)
        loop = asyncio.get_running_loop()
        loop.call_at(transport._deadlines._when - early, task.cancel)
        with anyio.fail_after(5), pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await transport.aclose()
        done.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)  # the handler closes its side


async def test_what_arrived_before_a_drop_is_read_before_the_drop_is_raised() -> None:
    """
    A reader slower than the network: the events PostHog sent just before the
    connection dropped wait in aiohttp's buffer, and aiohttp's `readany()` raises the
    drop at once, dropping them. They are handed out first (a re-attach does not replay
    them: PostHog deletes the run's stream when its reader goes away); then the drop.
    """
    first_read = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n"
        )
        await writer.drain()
        await first_read.wait()
        writer.write(b"7\r\nsecond\n\r\n6\r\nthird\n\r\n")  # and no last chunk: cut off
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = Transport()
    try:
        request = Request(method="GET", url=f"http://127.0.0.1:{port}/stream/")
        stream = await transport.open_stream(request, {}, idle_timeout=5)
        assert await stream.read_chunk() == b"first\n"
        first_read.set()
        await asyncio.sleep(0.2)  # the rest, and the drop, arrive while the reader is busy
        assert await stream.read_chunk() == b"second\nthird\n"
        with pytest.raises(aposthog.APIConnectionError):
            await stream.read_chunk()
        stream.close()
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------- QA: transport under stress


async def test_an_anyio_scope_around_to_list_that_ends_with_the_attempt_s_deadline_catches_it() -> (
    None
):
    """
    `anyio.move_on_after()` around `to_list()` (its first page is fetched by a task of its
    own), whose time runs out in the loop step where the page's attempt times out (the
    loop was busy past both): the scope must end the read, as it does when it ends alone.
    The attempt's deadline cancels the fetch first (a `CancelledError` with no message),
    the scope then cancels the reader, which cancels the fetch again: `_send` sees two
    cancellations, takes the second for the outside one and re-raises the first one's
    error, which the reader receives. anyio recognises its own cancellation by its
    message, so the scope lets it through: the task dies cancelled (in a task group, its
    siblings with it) though nobody cancelled it.
    """
    asked = asyncio.Event()
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        asked.set()
        await done.wait()  # never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def busy_loop() -> None:
        await asyncio.wait_for(asked.wait(), 2)
        time.sleep(0.35)  # noqa: ASYNC251 (both time limits pass while the loop is busy)

    escaped: BaseException | None = None
    try:
        async with aposthog.Client(
            api_key="phx_test_key_0123456789",
            host=f"http://127.0.0.1:{port}",
            project_id=1,
            timeout=0.1,
            max_retries=0,
        ) as ph:
            blocker = asyncio.ensure_future(busy_loop())
            try:
                with anyio.move_on_after(0.2) as scope:
                    await ph.customer_profile_configs.list().to_list()
            except asyncio.CancelledError as exc:  # not ours: nobody cancelled this task
                escaped = exc
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
            await blocker
    finally:
        done.set()
        server.close()
        await server.wait_closed()
    assert escaped is None
    assert scope.cancelled_caught


_CONFIG = (
    b'{"id": "00000000-0000-0000-0000-000000000001", "scope": "person", "content": {}, '
    b'"sidebar": {}, "created_at": "2024-01-01T00:00:00Z", "updated_at": null}'
)


def _config_answer(status: int, number: int = 1) -> bytes:
    """A whole answer (`Content-Length`, no `Connection: close`): config `number`."""
    body = _CONFIG.replace(b"0001", b"%04d" % number)
    head = b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return head % (status, len(body)) + body


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """A request's head (its body, if any, read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if b"content-length: " in head.lower():
        length = head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]
        await reader.readexactly(int(length))
    return head


async def test_a_call_right_after_an_answer_whose_connection_closed_is_sent() -> None:
    """
    A server (or a proxy) that closes the connection right after an answer without saying
    `Connection: close` (aiohttp#3507: an API's 204s with `Connection: keep-alive`; #7297).
    Its FIN is in the socket already when the next call, made straight after, takes the
    pooled connection without the event loop having had a turn to see it: the request is
    written to a closed connection and fails without ever reaching the server. A create
    then ends in `APIConnectionError(reached_server=True)` ("it may have been created")
    and is never sent again, retries left or not, while nothing reached PostHog; a GET
    with `max_retries=0` fails the same way ("closed the connection without answering").
    """
    heads: list[bytes] = []

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await _read_request(reader)
            heads.append(head)
            writer.write(_config_answer(201 if head.startswith(b"POST") else 200))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()  # one answer per connection, no `Connection: close` said

    server = await asyncio.start_server(once, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    config_id = "00000000-0000-0000-0000-000000000001"
    try:
        async with aposthog.Client(api_key="phx_test", host=url, project_id=1) as ph:
            await ph.customer_profile_configs.get(config_id)
            created = await ph.customer_profile_configs.create(scope="person")
        async with aposthog.Client(api_key="phx_test", host=url, project_id=1, max_retries=0) as ph:
            await ph.customer_profile_configs.get(config_id)
            again = await ph.customer_profile_configs.get(config_id)
    finally:
        server.close()
        await server.wait_closed()
    assert created.scope == aposthog.ProfileScope.PERSON
    assert again.id == config_id
    assert [b"GET", b"POST", b"GET", b"GET"] == [head.split(b" ", 1)[0] for head in heads]


async def test_an_unasked_for_answer_on_an_idle_connection_is_no_call_s_answer() -> None:
    """
    A connection back in the pool, idle, on which the server (or a proxy) then writes an
    answer nobody asked for (some send `408 Request Timeout` on an idle keep-alive
    connection; httpx#34 names it). The next call takes that connection and reads the
    waiting bytes as its own answer: here another record than the one it asked for, and
    each later call on the connection the answer to the call before it. A pooled
    connection with bytes waiting on it is no connection to send on.
    """
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            while True:
                head = await _read_request(reader)
                # The config the path names: /…/customer_profile_configs/<uuid>/
                wanted = int(head.split(b" ", 2)[1].rstrip(b"/").rsplit(b"-", 1)[1])
                writer.write(_config_answer(200, wanted))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    got: list[str] = []
    try:
        async with aposthog.Client(api_key="phx_test", host=url, project_id=1) as ph:
            for n in (1, 2, 3):
                if n == 2:  # the first call's connection is idle in the pool now
                    writers[0].write(_config_answer(200, 9999))
                    await writers[0].drain()
                    await asyncio.sleep(0.05)
                record = await ph.customer_profile_configs.get(
                    f"00000000-0000-0000-0000-00000000000{n}"
                )
                got.append(record.id)
    finally:
        server.close()
        await server.wait_closed()
    assert [f"00000000-0000-0000-0000-00000000000{n}" for n in (1, 2, 3)] == got
