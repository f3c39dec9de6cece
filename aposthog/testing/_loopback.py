"""
`LoopbackServer`: serves a handler on 127.0.0.1 with aiohttp.web — what FakePostHog and
the project's transport tests run on. Only the testing kit imports `aiohttp.web`, so
`import aposthog` never loads the server side of aiohttp.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
import anyio
import attrs
from aiohttp import web

__all__ = ["DropConnection", "Handler", "LoopbackServer", "ServerReply", "ServerRequest"]


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
        self._stopping: asyncio.Future[None] | None = None
        self.url = ""

    async def start(self) -> str:
        """
        Start listening; returns the base URL (`http://127.0.0.1:<port>`). A server
        already started is a `RuntimeError`: a second one would be left listening. A start
        that fails (the port is taken: the `OSError`) cleans up after itself, so the server
        can be started again.
        """
        if self._runner is not None:
            raise RuntimeError(f"this server is already started, at {self.url}")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that disconnects cancels its handler at once,
        # so a streaming answer notices the disconnect the way PostHog does.
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        self._runner = runner
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", self._port)
            await site.start()
        except BaseException:
            # Not listening (the port is taken, or the start was cancelled): nothing is
            # left set up, and the server may be started again.
            self._runner = None
            await runner.cleanup()
            raise
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        runner = self._runner
        if runner is None:
            return
        if self._stopping is None:
            # One cleanup, which every caller awaits: a second `stop()` while the first
            # runs waits for it rather than cleaning up twice.
            self._stopping = asyncio.ensure_future(runner.cleanup())
        stopping = self._stopping
        try:
            # Shielded: a stop cut short (the `async with` left under a cancellation)
            # would leave the connections it had taken on served, with no way to end them.
            # (asyncio.shield too: anyio's shield does not hold against a plain
            # `task.cancel()`, an asyncio TaskGroup's or `wait_for`'s.)
            with anyio.CancelScope(shield=True):
                await asyncio.shield(stopping)
        finally:
            if self._runner is runner and stopping.done():
                self._runner = self._stopping = None

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
        try:
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the client left as the stream ended: no error for aiohttp to log
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
