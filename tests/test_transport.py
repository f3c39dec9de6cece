"""The aiohttp transport, against the testing kit's loopback server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import anyio
import anyio.abc
import pytest

import aposthog
from aposthog._http import Request
from aposthog._transport import Transport
from aposthog.testing import (
    DropConnection,
    FakePostHog,
    LoopbackServer,
    ServerReply,
    ServerRequest,
)

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
    dead = _dead_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://scott:tiger-secret@127.0.0.1:{dead}")
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


async def test_a_proxy_never_sees_the_key_in_its_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through an HTTPS proxy, the CONNECT the proxy reads carries no Authorization."""
    heads: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for name in ("HTTP_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    try:
        client = aposthog.Client(
            api_key="phx_SENTINEL", host="https://us.posthog.com", project_id=1, max_retries=0
        )
        async with client:
            with pytest.raises(aposthog.APIConnectionError):
                await client.customer_profile_configs.list()
    finally:
        server.close()
        await server.wait_closed()
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
