"""
The only module of the client that imports aiohttp: the transport. (The testing kit's
loopback server, `aposthog.testing`, imports `aiohttp.web`; the client never does.)

The client side turns every aiohttp and asyncio failure into an aposthog error and
says whether the request may have reached the server (`APIConnectionError.reached_server`),
which is what the retry policy needs to keep POSTs safe. It never applies a total
timeout to a stream: PostHog AI answers can run for 30 minutes. Streams get a
socket-read idle timeout instead, which PostHog's 15-second keepalive comments reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import select
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from typing import Any, NamedTuple

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._deadlines import Deadlines, apart
from ._errors import (
    APIConnectionError,
    APITimeoutError,
    ClientStateError,
    ConfigurationError,
    ConfigurationTypeError,
    ResponseDecodeError,
    ResponseTooLargeError,
)
from ._http import Request
from ._inflate import BodyTooLarge, Inflater, UnreadableBody
from ._proxy import Proxies, redact

__all__ = [
    "AIOHTTP_VERSION",
    "ClientSession",
    "Response",
    "StreamResponse",
    "Transport",
    "fixed_headers",
]

AIOHTTP_VERSION = aiohttp.__version__
ClientSession = aiohttp.ClientSession

logger = logging.getLogger("aposthog")


#: Set around an attempt that must know whether its request began to be written (see
#: `Transport.writing`): a cell the client's own request class sets as aiohttp sends it.
_WRITING: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "aposthog_writing", default=None
)


class _Request(aiohttp.ClientRequest):
    """aiohttp's request, telling `writing()` when it starts to be sent."""

    def send(self, conn: Any) -> Any:  # a plain function: no coroutine frame of its own
        began = _WRITING.get()
        if began is not None:
            began[0] = True
        return super().send(conn)


def fixed_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """
    Headers sent with many requests, in the read-only form aiohttp takes as it is
    (a plain dict is converted on every request).
    """
    return CIMultiDictProxy(CIMultiDict(headers))


class Response(NamedTuple):
    """A complete HTTP response (a named tuple: made once per request, cheaply)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def __repr__(self) -> str:
        # Not the body: an answer that quotes the key (a page echoing the request's
        # headers) would show it in a traceback printed with its frames' locals.
        return f"Response(status={self.status!r}, body=<{len(self.body)} bytes>)"


_new_response = tuple.__new__  # Response(...) without the Python-level __new__ around it


def _connection_error(
    exc: BaseException, request: Request, proxy: str | None = None
) -> APIConnectionError:
    """
    Map an aiohttp/asyncio/OS failure to an aposthog error (most specific first).

    Only a failure to connect proves the request never reached PostHog; anything later
    (a reset, a disconnect before the status line, a read timeout) may follow a request
    the server already acted on. The aiohttp exception itself is not kept: it holds the
    request's headers, the key among them. Callers raise the result outside their
    `except` block, so that it is not even the `__context__`.
    """
    method, path = request.method, request.path
    via = f" through the proxy {redact(proxy)}" if proxy else ""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return APITimeoutError(
            f"timed out connecting to PostHog{via}", method=method, path=path, reached_server=False
        )
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return APITimeoutError("no complete answer from PostHog in time", method=method, path=path)
    if isinstance(exc, aiohttp.ClientConnectorError):
        # DNS failure, refused, unreachable, TLS handshake: nothing was sent.
        return APIConnectionError(
            f"cannot connect to PostHog{via}: {exc.os_error}",
            method=method,
            path=path,
            reached_server=False,
        )
    if isinstance(exc, ValueError):
        # Raised by aiohttp before sending (a URL, a proxy or a host name it cannot use):
        # its text may quote the URL, so only the kind is named.
        return APIConnectionError(
            f"cannot send a request to PostHog{via}: the URL is not one aiohttp can use "
            f"({type(exc).__name__})",
            method=method,
            path=path,
            reached_server=False,
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        message = "PostHog closed the connection without answering"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        message = "the response from PostHog was cut off"
    elif isinstance(exc, aiohttp.ClientHttpProxyError):
        # The proxy refused the tunnel (407: other credentials; 502: it could not reach
        # PostHog): nothing reached PostHog.
        return APIConnectionError(
            f"cannot connect to PostHog{via}: the proxy answered {exc.status}",
            method=method,
            path=path,
            reached_server=False,
        )
    elif isinstance(exc, aiohttp.ClientResponseError):
        # A malformed answer (a bad status line, header or chunk; headers too large),
        # which aiohttp reports as a 400 of its own: named by the fault's kind only, as
        # aiohttp's text goes on to quote the bytes received.
        fault = _parser_fault(exc.message)
        message = "PostHog's answer is not valid HTTP" + (f" ({fault})" if fault else "")
    else:
        message = f"connection to PostHog failed{via}: {type(exc).__name__}"
    return APIConnectionError(message, method=method, path=path)


_PARSER_FAULTS = (
    ("chunk", "a bad chunk size"),
    ("status", "a bad status line"),
    ("content-length", "a bad Content-Length"),
    ("header", "a bad header"),
    ("more than", "a line too long"),
    ("too long", "a line too long"),
)


def _parser_fault(text: object) -> str | None:
    """
    The kind of fault aiohttp's HTTP parser reports, in aposthog's own words (its text
    quotes the bytes received, which a server may have made of the request's headers):
    "Invalid character in chunk size" is "a bad chunk size". None when unrecognised.
    """
    words = str(text).split("\n", 1)[0]
    # aiohttp's own words come first; a colon or a quote starts the bytes it quotes.
    for mark in ":'\"":
        words = words.split(mark, 1)[0]
    words = words.lower()
    for word, fault in _PARSER_FAULTS:
        if word in words:
            return fault
    return None


_URLS_KEPT = 256
_CLIENT_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
# What making a request may raise besides: a ValueError (a UnicodeError among them) from
# a URL, a proxy or a host name aiohttp cannot use, before anything is sent.
_REQUEST_FAILURES = (*_CLIENT_FAILURES, ValueError)


class _AttemptFailed(Exception):
    """
    Carries a failure out of aiohttp's request loop untouched.

    aiohttp sends an idempotent request a second time, silently, when the connection it
    used turns out closed (`ServerDisconnectedError`, `ClientOSError`). That second
    request is an attempt the retry policy never decided on: with `max_retries=0` a GET
    would reach the server twice. Raised from inside the request (a client middleware),
    an exception that is neither a `ClientError` nor an `OSError` is not retried there.
    """

    def __init__(self, failure: BaseException) -> None:
        super().__init__(type(failure).__name__)
        self.failure = failure


async def _one_attempt(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    try:
        return await handler(request)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        failure: BaseException = exc
    raise _AttemptFailed(failure)


async def _release(response: aiohttp.ClientResponse) -> None:
    """Release a response not read to the end (what leaving `async with` does)."""
    response.release()
    await response.wait_for_close()


def _too_large(request: Request, limit: int, status: int | None = None) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"PostHog's answer to {request.method} {request.path} is larger than "
        f"max_response_size ({limit} bytes) once decoded; reading stopped there",
        limit=limit,
        path=request.path,
        status=status,
    )


def _plain_length(headers: Mapping[str, str]) -> int | None:
    """The declared length of a body sent as it is (not compressed), else None."""
    length = headers.get("Content-Length")  # digits only: aiohttp's parser checks
    if length is None or headers.get("Content-Encoding", "identity") != "identity":
        return None
    return int(length)


async def _read_body(response: aiohttp.ClientResponse, request: Request, limit: int) -> bytes:
    """
    The decoded body, or `ResponseTooLargeError` once it passes `limit` bytes; the body of
    an answer that is no success (a 3xx, an error) is empty when it does not decode, a
    success's is a `ResponseDecodeError`.

    A compressed body is inflated here, a bounded piece at a time (see `_inflate`), so a
    gzip bomb costs about `limit` bytes of memory, not what it would inflate to.
    """
    encoding = response.headers.get("Content-Encoding", "identity")
    length = _plain_length(response.headers)
    status = response.status
    if length is not None:
        if length > limit:
            response.close()
            # Not left in this frame for a traceback printed with its locals (pytest's
            # `--showlocals`, rich, Sentry): a response's headers may quote the key (a
            # proxy that echoes the request's), and so may its body.
            del response, encoding
            raise _too_large(request, limit, status)
        return await response.read()  # the common case: one read of a known length
    parts: list[bytes] = []
    problem: Exception | None = None
    chunk = b""
    try:
        inflater = Inflater(encoding, limit=limit)
        async for chunk in response.content.iter_any():
            parts.extend(inflater.feed(chunk))
        parts.extend(inflater.finish())
    except (BodyTooLarge, UnreadableBody) as exc:
        problem = exc
    if problem is None:
        return b"".join(parts)
    parts.clear()
    response.close()
    del response, chunk, encoding  # (as above)
    if isinstance(problem, BodyTooLarge):
        raise _too_large(request, limit, status)
    if not 200 <= status < 300:
        # A refusal (a proxy's 502, a 429) or a redirect whose body does not inflate: its
        # status and headers came, so the answer is known, as for one whose body was cut
        # off. What the body said is lost; the status, and the retry it calls for, are not.
        logger.debug(
            "PostHog's %d to %s %s had an unreadable body: %s",
            status,
            request.method,
            request.path,
            problem,
        )
        return b""
    raise ResponseDecodeError(
        f"PostHog answered {request.method} {request.path} with an unreadable body: {problem}",
        path=request.path,
        status=status,
    )


def _unread(content: aiohttp.StreamReader) -> bytes:
    """
    What arrived before the connection failed and the reader has not taken yet.

    aiohttp's `readany()` raises a connection's failure at once, dropping the bytes still
    in its buffer: events PostHog sent before the drop, which a re-attach does not replay
    (PostHog deletes a run's stream when its reader goes away). Handed out first, they
    are not lost to a reader slower than the network; the failure comes at the next
    read (it stays set). Read through aiohttp's own internals, so a release without them
    only falls back to dropping those bytes, as aiohttp does.
    """
    try:
        if not content._buffer:
            return b""
        unread: bytes = content._read_nowait(-1)
    except Exception:  # (an aiohttp whose internals differ)
        return b""
    return unread


def _own_idle_timer(response: aiohttp.ClientResponse) -> bool:
    """
    Switch aiohttp's per-chunk read timer off for this response; False (and aiohttp's
    timer kept) where the connection does not expose it.
    """
    connection = response.connection
    protocol = connection.protocol if connection is not None else None
    if protocol is None or not hasattr(type(protocol), "read_timeout"):
        return False
    protocol.read_timeout = None
    # The timer aiohttp started when the headers came is running already: with no
    # timeout set, (re)starting it cancels it. Left to fire, it would fail the stream,
    # losing what waits unread in the buffer for a reader slower than `sock_read`.
    protocol.start_timeout()
    return True


class StreamResponse:
    """
    An open response whose body is read chunk by chunk (server-sent events).

    The idle timeout is one timer per stream. aiohttp's own (`sock_read`), which guards
    the wait for the status and headers, re-schedules a timer for every chunk received:
    a thousand open streams leave a pile of cancelled timers behind them, and the
    garbage collector's passes over them stall the event loop. Once the headers are in,
    it is switched off and this timer takes over: it fires once per `idle` seconds of
    the stream, and only when nothing has arrived for that long (nothing read, and
    nothing waiting in aiohttp's buffer for a slow reader) does the wait for the next
    chunk fail as aiohttp's would.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        request: Request,
        max_error_size: int,
        idle_timeout: float | None = None,
    ) -> None:
        self._response = response
        self._request = request
        self._max_error_size = max_error_size
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.content_type = response.content_type
        self._encoding = self.headers.get("Content-Encoding", "identity")
        # A compressed stream: its inflater, the pieces one raw chunk is inflating into
        # (taken one at a time, so a bomb never inflates more than a piece ahead), and
        # whether the raw body has ended.
        self._inflater: Inflater | None = None
        self._inflating: Iterator[bytes] | None = None
        self._raw_ended = False
        # The idle timer: when a chunk was last read, and how many bytes have been read
        # (while `read()` takes a whole error body: how many had arrived at the last look).
        self._idle = idle_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._read = 0
        self._whole = False
        self._loop = asyncio.get_running_loop()
        if idle_timeout is not None and _own_idle_timer(response):
            loop = self._loop
            self._last_read = loop.time()
            self._timer = loop.call_at(self._last_read + idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        idle = self._idle
        assert idle is not None
        loop = self._loop
        now = loop.time()
        content = self._response.content
        if content.is_eof():  # the whole body is in: nothing left to wait for
            self._timer = None
            return
        arrived = content.total_bytes
        if arrived != self._read:
            # Bytes came since the last look (`read()` of a whole error body), or wait
            # that the reader has not taken yet: PostHog is not the one keeping it
            # waiting. Look again later.
            if self._whole:
                self._read = arrived
            self._timer = loop.call_at(now + idle, self._check_idle)
        elif not self._whole and now < self._last_read + idle:
            self._timer = loop.call_at(self._last_read + idle, self._check_idle)
        else:
            self._timer = None
            content.set_exception(aiohttp.ServerTimeoutError("Timeout on reading data from socket"))

    def _stop_idle_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def read(self) -> bytes:
        """Read the whole (error) body, up to `max_response_size`."""
        self._whole = True
        try:
            return await _read_body(self._response, self._request, self._max_error_size)
        except _CLIENT_FAILURES as exc:
            failure: BaseException = exc
        finally:
            self._stop_idle_timer()
        error = _connection_error(failure, self._request)
        del failure  # aiohttp's error holds the request's headers, the key among them
        raise error

    async def read_chunk(self) -> bytes:
        """
        The next piece of the decoded body as it arrives, `b""` at the end; failures
        become aposthog errors. `close()` from another task wakes a read that is waiting.
        A stream is bounded per event (by the SSE decoder), not as a whole.
        """
        if self._encoding == "identity":
            return await self._read_raw()
        while True:
            if self._inflating is not None:
                piece = self._next_piece(self._inflating)
                if piece:
                    return piece
                self._inflating = None
            if self._raw_ended:
                return b""
            raw = await self._read_raw()
            inflater = self._inflater or self._new_inflater()
            self._inflating = inflater.feed(raw) if raw else inflater.finish()
            self._raw_ended = not raw
            # Not left in this frame for a traceback printed with its locals (the next
            # piece's failure is raised here): a body may quote the key.
            del raw

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the decoded body as it arrives (see `read_chunk`)."""
        while chunk := await self.read_chunk():
            yield chunk

    async def _read_raw(self) -> bytes:
        failure: BaseException | None = None
        content = self._response.content
        try:
            chunk = await content.readany()
        except _CLIENT_FAILURES as exc:
            chunk = _unread(content)
            if not chunk:
                failure = exc
                self._stop_idle_timer()
        if failure is None:
            if self._timer is not None:
                if chunk:
                    self._last_read = self._loop.time()
                    self._read += len(chunk)
                else:
                    self._stop_idle_timer()
            return chunk
        # Raised outside the handler: aiohttp's error (which holds the request, and so
        # the key) is no context of ours, nor a local of this frame.
        error = _connection_error(failure, self._request)
        del failure
        raise error

    def _new_inflater(self) -> Inflater:
        try:
            self._inflater = Inflater(self._encoding, limit=None)
            return self._inflater
        except UnreadableBody as exc:
            problem = str(exc)
        raise ResponseDecodeError(problem, path=self._request.path)

    def _next_piece(self, inflating: Iterator[bytes]) -> bytes | None:
        try:
            return next(inflating, None)
        except UnreadableBody as exc:
            problem = str(exc)
        raise ResponseDecodeError(
            f"unreadable event stream from PostHog: {problem}", path=self._request.path
        )

    def close(self) -> None:
        """Close the connection at once (the server sees the disconnect). Idempotent."""
        self._stop_idle_timer()
        self._response.close()


def _idle_and_clean(protocol: object) -> bool:
    """
    Whether a pooled connection's protocol has nothing waiting: no answer already read
    from it (aiohttp queues what arrives on an idle connection as the next request's
    answer) and nothing in its socket not read yet (the server's FIN, or bytes, that
    came since the event loop's last turn).
    """
    try:
        if len(protocol):  # type: ignore[arg-type]  # (aiohttp's protocol: a queue)
            return False
    except TypeError:  # (an aiohttp whose protocol is no queue)
        pass
    transport = getattr(protocol, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return True
    try:
        fd = sock.fileno()
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return not poller.poll(0)
        readable, _, _ = select.select([fd], [], [], 0)  # (Windows: no poll)
    except (OSError, ValueError):
        return False  # a socket that cannot be asked: not one to send on
    return not readable


class _Connector(aiohttp.TCPConnector):
    """
    aiohttp's connector, which never hands out a pooled connection with something
    waiting on it (`_idle_and_clean`). A server that closed the connection right after
    its answer, without `Connection: close`: the next call made straight away (before
    the event loop saw the FIN) was written to a closed connection and failed unsent, a
    create as "it may have reached PostHog", never sent again. A server or proxy that
    wrote an answer nobody asked for on an idle connection (a `408`): the next call read
    it as its own, and each later call on it the answer to the call before. Such a
    connection is closed and the next one (or a new one) taken.

    `_get` is aiohttp's (private) pool lookup, the same from 3.12 on; its arguments are
    passed through as they are.
    """

    async def _get(self, *args: Any, **kwargs: Any) -> Any:
        while True:
            connection = await super()._get(*args, **kwargs)
            if connection is None or _idle_and_clean(connection.protocol):
                return connection
            connection.close()  # (taken out of the pool: closed, the next one tried)


class Transport:
    """
    Sends `Request`s over an aiohttp `ClientSession`, owned or borrowed.

    An owned session is created lazily, inside the running loop, with proxies taken from
    the environment; a borrowed one is used as it is and never closed here.

    aiohttp's own resend of an idempotent request on a connection found closed is turned
    off: on an owned session with aiohttp's switch for it (`_retry_connection`, which
    aiohttp's test client turns off the same way), else with a client middleware that
    stops the failure from reaching aiohttp's loop (`_one_attempt`). A borrowed session is
    never changed: the middleware it is.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        connect_timeout: float | None = None,
        max_response_size: int = 32 * 1024 * 1024,
    ) -> None:
        given: object = session  # typed a session, checked for callers who are not
        if given is not None and not isinstance(given, aiohttp.ClientSession):
            shown = type(given).__name__
            if isinstance(given, type):
                shown = f"the class {given.__name__}"
            raise ConfigurationTypeError(
                f"session must be an aiohttp.ClientSession (an instance) or None, got {shown}"
            )
        if given is not None and getattr(given, "auth", None) is not None:
            # aiohttp refuses to combine a session's `auth=` with the Authorization header
            # the key goes in (a ValueError on every request, before sending).
            raise ConfigurationError(
                "session carries auth= (an Authorization of its own), which aiohttp does "
                "not combine with the Authorization header PostHog's key is sent in: "
                "borrow a session made without auth="
            )
        self._session = session
        self._owns_session = session is None
        self._connect_timeout = connect_timeout
        self._max_response_size = max_response_size
        # Read once: the environment a client is created in decides its proxies.
        self._proxies = Proxies()
        self._call_timeouts: dict[float | None, aiohttp.ClientTimeout] = {}
        # Per-request middlewares replace a session's own, so a borrowed session's are
        # kept in front of ours (aiohttp has no public getter for them).
        own: tuple[aiohttp.ClientMiddlewareType, ...] = tuple(
            getattr(session, "_middlewares", ()) or ()
        )
        self._middlewares: tuple[aiohttp.ClientMiddlewareType, ...] | None = (*own, _one_attempt)
        #: The owned session, once created (a borrowed one is checked on every request).
        self._ready: aiohttp.ClientSession | None = None
        self._common_headers: Mapping[str, str] | None = None
        # Parsed URLs of recent requests (a list's first page, say): an immutable yarl URL
        # is looked up instead of made again per request.
        self._urls: dict[str, URL] = {}
        self._session_has_common = False
        #: Each call's attempt time limit (see `_deadlines`: aiohttp's costs far more).
        self._deadlines = Deadlines()

    def use_common_headers(self, headers: Mapping[str, str]) -> None:
        """
        The headers most requests carry (the key among them), given before the first.

        On a session the transport creates itself, with no proxy in the environment,
        they become the session's defaults, and a request that carries exactly them (the
        same object) passes none of its own. Never with a proxy: aiohttp would add a
        session's default headers to the CONNECT it sends the proxy, the key with them.
        """
        self._common_headers = headers

    def _ensure_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            # limit=0: concurrency is bounded by the client's limiter, not the pool; a pool
            # limit would make long-lived streams starve ordinary calls.
            connector = _Connector(limit=0)
            common = self._common_headers if self._proxies.none else None
            # Proxies come from the environment (see _proxy_for), read once per host here
            # rather than by aiohttp's trust_env, which hops to a thread on every request.
            # auto_decompress=False: bodies are inflated here, within max_response_size.
            # No cookie jar: PostHog's API authenticates by key, and a cookie one answer
            # set must not ride along with the next call (nor cost a lookup per request).
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                headers=common,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                request_class=_Request,
            )
            self._session_has_common = common is not None
            if isinstance(getattr(session, "_retry_connection", None), bool):
                # The session is ours: no resend to stop, so no middleware layer per request.
                session._retry_connection = False
                self._middlewares = None
            # Closed only by `aclose()`, after which the pipeline sends nothing: no check.
            self._ready = session
        elif session.closed:
            # Not a network failure, and retrying cannot help: raised once, at once.
            raise ClientStateError("the aiohttp session given to the aposthog.Client is closed")
        else:
            home = getattr(session, "_loop", None)  # (aiohttp's own, no public getter)
            if (
                isinstance(home, asyncio.AbstractEventLoop)
                and home is not asyncio.get_running_loop()
            ):
                # Its connections belong to that loop: asyncio's bare RuntimeError ("attached
                # to a different loop", "Event loop is closed") at the first await.
                raise ClientStateError(
                    "the aiohttp session given to the aposthog.Client belongs to another "
                    "event loop; give each event loop's client a session made in that loop"
                )
        return session

    def proxy_problem(self, url: str) -> str | None:
        """Why the environment's proxy for `url` can never be used (see `Proxies.problem`)."""
        return self._proxies.problem(url) if self._owns_session else None

    def _proxy_for(self, url: str) -> str | None:
        """The proxy the environment names for `url` (never for loopback), if any."""
        if not self._owns_session:
            return None  # a borrowed session brings its own settings
        return self._proxies.for_url(url)

    def _timeout(self, *, idle: float | None, attempt: float | None) -> aiohttp.ClientTimeout:
        """A stream's limits: connecting as `_call_timeout` bounds it, then only `idle`."""
        connect = self._connect_inside(attempt)
        return aiohttp.ClientTimeout(
            total=None, connect=connect, sock_connect=connect, sock_read=idle
        )

    def _connect_inside(self, attempt: float | None) -> float | None:
        """`connect_timeout`, or a little less than `attempt` when that is shorter."""
        connect = self._connect_timeout
        if attempt is not None:
            inside = attempt - min(0.1, attempt * 0.05)
            if connect is None or inside < connect:
                connect = inside
        return connect

    def _call_timeout(
        self, attempt: float | None, *, total: float | None = None
    ) -> aiohttp.ClientTimeout:
        """
        aiohttp's limits for an attempt of `attempt` seconds (the attempt's own deadline
        is kept by `_deadlines`; `total` only outside a task). Connecting is bounded a
        little inside the attempt's time, as well as by `connect_timeout`: an attempt
        whose time runs out while it still connects ends as a connect timeout, which
        says the request never reached PostHog (and may be repeated), not as the
        attempt's timeout, which cannot tell.
        """
        connect = self._connect_inside(attempt)
        limits = aiohttp.ClientTimeout(total=total, connect=connect, sock_connect=connect)
        if total is None:
            if len(self._call_timeouts) >= _URLS_KEPT:
                self._call_timeouts.clear()  # bounded: the ones still in use come back
            self._call_timeouts[attempt] = limits
        return limits

    def _request(
        self,
        session: aiohttp.ClientSession,
        request: Request,
        url: URL,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,
        proxy: str | None,
    ) -> Awaitable[aiohttp.ClientResponse]:
        """
        aiohttp's request for `request`, every setting spelled out (a body, a proxy, our
        middleware): awaited by the caller, which releases the response itself.
        """
        return session.request(
            request.method,
            url,
            params=request.params or None,
            data=request.body,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            proxy=proxy,
            middlewares=self._middlewares,
            auto_decompress=False,  # inflated here, within max_response_size
            raise_for_status=False,  # a borrowed session's setting must not hide statuses
        )

    async def _send(
        self, request: Request, headers: Mapping[str, str], *, timeout: float | None = None
    ) -> Response:
        """Send a request and read the whole response within `timeout` seconds."""
        session = self._ready
        if session is None:
            session = self._ensure_session()
            proxy = self._proxy_for(request.url)
        elif self._proxies.none:
            proxy = None
        else:
            proxy = self._proxies.for_url(request.url)
        url = self._urls.get(request.url)
        if url is None:
            url = URL(request.url, encoded=True)
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()  # bounded: the URLs still in use come back at once
            self._urls[request.url] = url
        # The time limit is kept here (see `_deadlines`), aiohttp's only outside a task.
        # An attempt without one is kept too (an endless deadline): closing the client
        # ends it, also on a borrowed session, which the close leaves open.
        key = self._deadlines.start(math.inf if timeout is None else timeout)
        if key is None:  # outside a task: aiohttp keeps the whole time limit
            limits = self._call_timeout(timeout, total=timeout)
        else:
            limits = self._call_timeouts.get(timeout) or self._call_timeout(timeout)
        failure: BaseException
        refused: tuple[int, CIMultiDictProxy[str]] | None = None  # an error's status, headers
        try:
            try:
                # Awaited, not entered: the response is released below, one layer less.
                if proxy is None and self._middlewares is None and request.body is None:
                    # The common case, a GET on the client's own session: only what differs
                    # from aiohttp's defaults is passed (the common headers are the
                    # session's).
                    resp = await session.request(
                        request.method,
                        url,
                        params=request.params or None,
                        headers=(
                            None
                            if headers is self._common_headers and self._session_has_common
                            else headers
                        ),
                        timeout=limits,
                        allow_redirects=False,
                        # A borrowed session may raise for 4xx/5xx: our status handling rules.
                        raise_for_status=False,
                    )
                else:
                    resp = await self._request(session, request, url, headers, limits, proxy)
            except _AttemptFailed as exc:
                failure = exc.failure
            except _REQUEST_FAILURES as exc:
                failure = exc
            else:
                try:
                    length = _plain_length(resp.headers)
                    if length is not None and length <= self._max_response_size:
                        body = await resp.read()  # the common case: one read of a known length
                    else:
                        body = await _read_body(resp, request, self._max_response_size)
                except _CLIENT_FAILURES as exc:
                    if not 200 <= resp.status < 300:
                        # An error (or a redirect) whose body was cut off: its status (and
                        # headers, a Retry-After or a Location among them) came, so the
                        # answer is known. What the body said is lost; that PostHog refused
                        # the request (or sent it elsewhere) is not.
                        await _release(resp)
                        return _new_response(Response, (resp.status, resp.headers, b""))
                    failure = exc
                except BaseException as exc:
                    if not 200 <= resp.status < 300:
                        refused = resp.status, resp.headers
                    await _release(resp)
                    if not isinstance(exc, asyncio.CancelledError):
                        # Not left for a traceback printed with its locals (see below):
                        # the response's headers may quote the key (a proxy echoing it).
                        del resp
                        refused = None
                    raise
                else:
                    # Read to the end: the connection goes back to the pool at once.
                    resp.release()
                    return _new_response(Response, (resp.status, resp.headers, body))
                await _release(resp)
        except asyncio.CancelledError:
            if key is None or not self._deadlines.expired(key):
                raise
            if refused is not None:
                # The time ran out reading an error's body: as a body cut off, its status
                # (a 429's Retry-After among its headers) is the answer: PostHog refused.
                return _new_response(Response, (*refused, b""))
            failure = asyncio.TimeoutError()  # the attempt's time is up
        finally:
            if key is not None:
                self._deadlines.stop(key)
        error = _connection_error(failure, request, proxy)
        # Not left in this frame for a traceback printed with its locals (pytest's
        # `--showlocals`, rich, Sentry): the proxy URL holds its password, and aiohttp's
        # error the request's headers, and a response's headers may quote the key.
        del failure, proxy
        refused = None
        with contextlib.suppress(UnboundLocalError):
            del resp
        raise error

    if sys.version_info >= (3, 11):
        send = _send
    else:

        async def send(
            self, request: Request, headers: Mapping[str, str], *, timeout: float | None = None
        ) -> Response:
            """
            Send a request and read the whole response within `timeout` seconds.

            Python 3.10 tasks count no cancellations, so a cancellation from outside that
            lands as the attempt's deadline passes would be read as the deadline's (a
            timeout, then a retry): the attempt runs as a task of its own (`apart`).
            """
            return await apart(self._send(request, headers, timeout=timeout))

    async def open_stream(
        self,
        request: Request,
        headers: Mapping[str, str],
        *,
        idle_timeout: float | None,
        attempt_timeout: float | None = None,
    ) -> StreamResponse:
        """
        Send a request and return once the status and headers have arrived.

        `attempt_timeout` is the time the caller gives the opening (kept by the caller):
        connecting ends a little inside it, as a connect timeout, which says the request
        never reached PostHog.
        """
        session = self._ensure_session()
        proxy = self._proxy_for(request.url)
        failure: BaseException
        try:
            resp = await self._request(
                session,
                request,
                URL(request.url, encoded=True),
                headers,
                self._timeout(idle=idle_timeout, attempt=attempt_timeout),
                proxy,
            )
        except _AttemptFailed as exc:
            failure = exc.failure
        except _REQUEST_FAILURES as exc:
            failure = exc
        else:
            return StreamResponse(resp, request, self._max_response_size, idle_timeout)
        error = _connection_error(failure, request, proxy)
        # Not left in this frame for a traceback printed with its locals (pytest's
        # `--showlocals`, rich, Sentry): the proxy URL holds its password, and aiohttp's
        # error the request's headers.
        del failure, proxy
        raise error

    @contextlib.contextmanager
    def writing(self) -> Iterator[list[bool]]:
        """
        `with transport.writing() as began:` around an attempt: `began[0]` turns True
        once its request begins to be written (aiohttp connected, and sends it); while it
        is False nothing was sent. With a borrowed `session=` (whose request class is its
        own) it is True from the start: whether anything was sent is not known.
        """
        began = [not self._owns_session]
        token = _WRITING.set(began)
        try:
            yield began
        finally:
            _WRITING.reset(token)

    def holds_session(self) -> bool:
        """Whether this transport made a session that is still open."""
        session = self._session
        return self._owns_session and session is not None and not session.closed

    def abandon(self) -> None:
        """
        Close, without awaiting, the session this transport created: its event loop has
        ended (nothing can run there), or its client was dropped unclosed (a finalizer
        cannot await). Its connections are closed at once where their loop still runs;
        on a loop that has ended they are only dropped (asyncio closes their sockets as
        they are collected). A borrowed session is left alone.
        """
        self._ready = None
        self._deadlines.close()
        session = self._session
        if not self._owns_session or session is None or session.closed:
            return
        connector = session.connector
        close = getattr(connector, "_close", None)  # aiohttp's close, before its awaitable
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        self._ready = None
        self._deadlines.close()
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
