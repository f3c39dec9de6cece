"""
The only module that imports aiohttp: the client transport, and the loopback server
adapter the testing kit serves FakePostHog with.

The client side turns every aiohttp and asyncio failure into an aposthog error and
says whether the request may have reached the server (`APIConnectionError.reached_server`),
which is what the retry policy needs to keep POSTs safe. It never applies a total
timeout to a stream: PostHog AI answers can run for 30 minutes. Streams get a
socket-read idle timeout instead, which PostHog's 15-second keepalive comments reset.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
import attrs
from aiohttp import web
from yarl import URL

from ._errors import APIConnectionError, APITimeoutError
from ._http import Request

__all__ = [
    "AIOHTTP_VERSION",
    "ClientSession",
    "DropConnection",
    "LoopbackServer",
    "Response",
    "ServerReply",
    "ServerRequest",
    "StreamResponse",
    "Transport",
]

AIOHTTP_VERSION = aiohttp.__version__
ClientSession = aiohttp.ClientSession

logger = logging.getLogger("aposthog")


@attrs.frozen
class Response:
    """A complete HTTP response."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def _connection_error(exc: BaseException, request: Request) -> APIConnectionError:
    """
    Map an aiohttp/asyncio/OS failure to an aposthog error (most specific first).

    Only a failure to connect proves the request never reached PostHog; anything later
    (a reset, a disconnect before the status line, a read timeout) may follow a request
    the server already acted on.
    """
    method, path = request.method, request.path
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return APITimeoutError(
            "timed out connecting to PostHog", method=method, path=path, reached_server=False
        )
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return APITimeoutError("no complete answer from PostHog in time", method=method, path=path)
    if isinstance(exc, aiohttp.ClientConnectorError):
        # DNS failure, refused, unreachable, TLS handshake: nothing was sent.
        return APIConnectionError(
            f"cannot connect to PostHog: {exc.os_error}",
            method=method,
            path=path,
            reached_server=False,
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        message = "PostHog closed the connection without answering"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        message = "the response from PostHog was cut off"
    else:
        message = f"connection to PostHog failed: {type(exc).__name__}: {exc}"
    return APIConnectionError(message, method=method, path=path)


# NO_PROXY matching, from the standard library (not in its type stubs).
_proxy_bypass: Callable[[str, Mapping[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]

_CLIENT_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class StreamResponse:
    """An open response whose body is read chunk by chunk (server-sent events)."""

    def __init__(self, response: aiohttp.ClientResponse, request: Request) -> None:
        self._response = response
        self._request = request
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.content_type = response.content_type

    async def read(self) -> bytes:
        """Read the whole (error) body."""
        try:
            return await self._response.read()
        except _CLIENT_FAILURES as exc:
            raise _connection_error(exc, self._request) from None

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield body chunks as they arrive; failures become `APIConnectionError`."""
        content = self._response.content
        while True:
            try:
                chunk = await content.readany()
            except _CLIENT_FAILURES as exc:
                raise _connection_error(exc, self._request) from None
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        """Close the connection at once (the server sees the disconnect). Idempotent."""
        self._response.close()


class Transport:
    """
    Sends `Request`s over an aiohttp `ClientSession`, owned or borrowed.

    An owned session is created lazily, inside the running loop, with proxies taken from
    the environment; a borrowed one is used as it is and never closed here.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._connect_timeout = connect_timeout
        # Read once: the environment a client is created in decides its proxies.
        self._env_proxies = urllib.request.getproxies_environment()
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._call_timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # limit=0: concurrency is bounded by the client's limiter, not the pool; a pool
            # limit would make long-lived streams starve ordinary calls.
            connector = aiohttp.TCPConnector(limit=0)
            # Proxies come from the environment (see _proxy_for), read once per host here
            # rather than by aiohttp's trust_env, which hops to a thread on every request.
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        elif self._session.closed:
            raise APIConnectionError("the aiohttp session given to the client is closed")
        return self._session

    def _proxy_for(self, url: str) -> str | None:
        """The proxy the environment (HTTP(S)_PROXY, NO_PROXY) names for `url`, if any."""
        if not self._env_proxies or not self._owns_session:
            return None  # none configured; a borrowed session brings its own settings
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._proxies:
            proxy = self._env_proxies.get(parts.scheme)
            if proxy and _proxy_bypass(parts.hostname or "", self._env_proxies):
                proxy = None
            self._proxies[key] = proxy
        return self._proxies[key]

    def _timeout(self, *, idle: float | None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None,
            connect=self._connect_timeout,
            sock_connect=self._connect_timeout,
            sock_read=idle,
        )

    def _call_timeout(self, total: float | None) -> aiohttp.ClientTimeout:
        timeout = self._call_timeouts.get(total)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=total, connect=self._connect_timeout, sock_connect=self._connect_timeout
            )
            self._call_timeouts[total] = timeout
        return timeout

    async def send(
        self, request: Request, headers: Mapping[str, str], *, timeout: float | None = None
    ) -> Response:
        """Send a request and read the whole response within `timeout` seconds."""
        session = self._ensure_session()
        try:
            async with session.request(
                request.method,
                URL(request.url, encoded=True),
                params=request.params or None,
                data=request.body,
                headers=headers,
                timeout=self._call_timeout(timeout),
                allow_redirects=False,
                proxy=self._proxy_for(request.url),
            ) as resp:
                body = await resp.read()
                return Response(resp.status, resp.headers, body)
        except _CLIENT_FAILURES as exc:
            raise _connection_error(exc, request) from None

    async def open_stream(
        self, request: Request, headers: Mapping[str, str], *, idle_timeout: float | None
    ) -> StreamResponse:
        """Send a request and return once the status and headers have arrived."""
        session = self._ensure_session()
        try:
            resp = await session.request(
                request.method,
                URL(request.url, encoded=True),
                params=request.params or None,
                data=request.body,
                headers=headers,
                timeout=self._timeout(idle=idle_timeout),
                allow_redirects=False,
                proxy=self._proxy_for(request.url),
            )
        except _CLIENT_FAILURES as exc:
            raise _connection_error(exc, request) from None
        return StreamResponse(resp, request)

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()


# --------------------------------------------------------------------------------------
# The loopback server adapter (used by aposthog.testing.FakePostHog)


@attrs.frozen
class ServerRequest:
    """A request as the fake server sees it."""

    method: str
    raw_path: str  # percent-encoded, exactly as sent, without the query
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    base_url: str  # scheme://host:port the request was addressed to


class DropConnection(Exception):
    """Raised by a streamed reply's iterator to cut the connection mid-answer."""


@attrs.frozen
class ServerReply:
    """What the fake server answers: a body, a stream of chunks, or a dropped connection."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    stream: AsyncIterator[bytes] | None = None
    drop: bool = False


Handler = Callable[[ServerRequest], Awaitable[ServerReply]]


class LoopbackServer:
    """Serves a handler on 127.0.0.1 with aiohttp.web. Loopback only, by construction."""

    def __init__(self, handler: Handler, *, port: int = 0) -> None:
        self._handler = handler
        self._port = port
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        """Start listening; returns the base URL (`http://127.0.0.1:<port>`)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that disconnects cancels its handler at once,
        # so a streaming answer notices the disconnect the way PostHog does.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        raw_path = request.raw_path.split("?", 1)[0]
        server_request = ServerRequest(
            method=request.method,
            raw_path=raw_path,
            query=tuple(request.url.query.items()),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            base_url=f"{request.scheme}://{request.host}",
        )
        reply = await self._handler(server_request)
        if reply.drop:
            return self._drop(request)
        if reply.stream is None:
            return web.Response(status=reply.status, body=reply.body, headers=dict(reply.headers))
        response = web.StreamResponse(status=reply.status, headers=dict(reply.headers))
        stream = reply.stream
        try:
            await response.prepare(request)
            async for chunk in stream:
                await response.write(chunk)
        except DropConnection:
            return self._drop(request)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            # The client went away; the handler's generator is closed below.
            return response
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await asyncio.shield(aclose())
        await response.write_eof()
        return response

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()
        # Nothing will be written: the connection is gone. aiohttp wants a response object.
        response = web.Response(status=500)
        response.force_close()
        return response
