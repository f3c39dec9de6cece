"""
Sending requests: the concurrency limiter, timeouts, the retry loop, JSON decoding,
pages and opening streams. Everything PostHog-specific it needs is decided by the pure
modules (`_http`, `_errors`, `_retry`, `_pagination`, `_converter`); this module only
awaits.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
import weakref
from collections.abc import Mapping
from typing import Any, Final, Generic, TypeVar

import anyio

from . import _config, _json
from ._config import ClientConfig
from ._converter import structure
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientStateError,
    RateLimitError,
    ResponseDecodeError,
    error_from_response,
)
from ._http import Query, Request, encode_json, join_path, query_items, same_origin_url, user_agent
from ._limiter import RateLimiter
from ._pagination import AsyncPaginator, Page, parse_page
from ._retry import ConnectionOutcome, StatusOutcome, parse_retry_after, retry_delay
from ._transport import AIOHTTP_VERSION, Response, StreamResponse, Transport

__all__ = ["NOT_GIVEN", "NotGiven", "Sender"]

T = TypeVar("T")
logger = logging.getLogger("aposthog")


class NotGiven:
    """The type of `NOT_GIVEN`: "use the client's setting", as opposed to an explicit None."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Final = NotGiven()
_USER_AGENT: Final = user_agent(f"aiohttp/{AIOHTTP_VERSION}")


class _Shared:
    """State shared by a client and every `with_options()` view of it."""

    def __init__(
        self, transport: Transport, max_concurrency: int, throttle: RateLimiter | None = None
    ) -> None:
        self.transport = transport
        self.throttle = throttle
        self.max_concurrency = max_concurrency
        self.loop: asyncio.AbstractEventLoop | None = None
        self.limiter: anyio.CapacityLimiter | None = None
        self.closed = False
        self.streams: weakref.WeakSet[Any] = weakref.WeakSet()


class _Slot:
    """
    Holds one of the limiter's tokens for the duration of an `async with`.

    A fresh borrower per request: one task may legitimately hold several slots (a
    paginator inside a stream's consumer, say). A class rather than a generator-based
    context manager: this runs on every request.
    """

    __slots__ = ("_limiter", "_token")

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self._limiter = limiter
        self._token = object()

    async def __aenter__(self) -> None:
        try:
            # The common case, a free slot, costs no trip through the event loop.
            self._limiter.acquire_on_behalf_of_nowait(self._token)
        except anyio.WouldBlock:
            await self._limiter.acquire_on_behalf_of(self._token)

    async def __aexit__(self, *exc_info: object) -> None:
        self._limiter.release_on_behalf_of(self._token)


class Sender:
    """
    What a `Client` does with requests: the base class that holds the request loop.

    Split from `Client` so that each stays readable; `Client` adds configuration and
    the session's lifetime.
    """

    _config: ClientConfig
    _shared: _Shared
    _header_cache: dict[tuple[str, bool], dict[str, str]]
    _url_cache: tuple[str, str] | None = None

    def _check_usable(self) -> None:
        shared = self._shared
        if shared.closed:
            raise ClientStateError("this aposthog.Client is closed; create a new one")
        loop = asyncio.get_running_loop()
        if shared.loop is None:
            shared.loop = loop
            shared.limiter = anyio.CapacityLimiter(shared.max_concurrency)
        elif shared.loop is not loop:
            raise ClientStateError(
                "this aposthog.Client belongs to another event loop; "
                "create one client per event loop (aiohttp sessions cannot cross loops)"
            )

    def _slot(self) -> _Slot:
        self._check_usable()
        limiter = self._shared.limiter
        assert limiter is not None
        return _Slot(limiter)

    # ----------------------------------------------------------------- requests

    def _headers(self, request: Request, *, accept: str = "application/json") -> dict[str, str]:
        # Built once per client and shared (aiohttp copies headers into its own
        # multidict), so a request only pays for a dict when it adds its own headers.
        cache = self._header_cache
        key = (accept, request.body is not None)
        headers = cache.get(key)
        if headers is None:
            headers = {
                "Authorization": f"Bearer {self._config.api_key}",
                "User-Agent": _USER_AGENT,
                "Accept": accept,
            }
            if request.body is not None:
                headers["Content-Type"] = "application/json"
            cache[key] = headers
        if request.headers:
            return {**headers, **dict(request.headers)}
        return headers

    def _url_parts(self) -> tuple[str, str]:
        # The origin and the path prefix, worked out (and percent-encoded) once.
        parts = self._url_cache
        if parts is None:
            base = urllib.parse.urlsplit(self._config.base_url)
            parts = self._url_cache = (
                f"{base.scheme}://{base.netloc}",
                base.path + self._config.api_prefix,
            )
        return parts

    def build_request(
        self,
        method: str,
        *parts: str,
        params: Query | None = None,
        json: Any = None,
        url: str | None = None,
    ) -> Request:
        """Build a request to `/api/environments/<project>/<parts>/` (parts already encoded)."""
        body = None if json is None else encode_json(json)
        if url is not None:
            return Request(method=method, url=url, params=query_items(params), body=body)
        origin, prefix = self._url_parts()
        path = join_path(prefix, *parts)
        return Request(
            method=method, url=origin + path, params=query_items(params), body=body, path=path
        )

    def _timeout(self, timeout: float | NotGiven | None) -> float | None:
        if isinstance(timeout, NotGiven):
            return self._config.timeout
        return _config._positive("timeout", timeout)

    async def send(
        self, request: Request, *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> Response:
        """
        Send a request with the client's limiter, timeout and retry policy.

        Returns the successful (< 400) response; raises the typed error otherwise.
        """
        call_timeout = self._timeout(timeout)
        started = time.monotonic()
        retries = 0
        headers = self._headers(request)
        throttle = self._shared.throttle
        while True:
            error: APIStatusError | APIConnectionError
            if throttle is not None:
                await throttle.acquire("api")
            try:
                async with self._slot():
                    # The transport applies call_timeout as aiohttp's total timeout: it
                    # covers connecting, sending and reading the whole body.
                    response = await self._shared.transport.send(
                        request, headers, timeout=call_timeout
                    )
            except APIConnectionError as exc:
                error = exc
                outcome: StatusOutcome | ConnectionOutcome = ConnectionOutcome(
                    reached_server=exc.reached_server
                )
            else:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "%s %s -> %d (%.0f ms since the first attempt)",
                        request.method,
                        request.path,
                        response.status,
                        (time.monotonic() - started) * 1000,
                    )
                if response.status < 400:
                    return response
                error = error_from_response(
                    response.status,
                    response.headers,
                    response.body,
                    method=request.method,
                    path=request.path,
                )
                outcome = StatusOutcome(response.status, _retry_hint(error, response.headers))
                if throttle is not None and isinstance(error, RateLimitError):
                    await throttle.penalize("api", error.retry_after)
            retries += 1
            delay = self._retry_delay(request, error, outcome, retries, started)
            await anyio.sleep(delay)

    async def request_json(
        self,
        method: str,
        *parts: str,
        params: Query | None = None,
        json: Any = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Any:
        """Send a request and decode its JSON body (None for an empty body, as after a 204)."""
        request = self.build_request(method, *parts, params=params, json=json)
        response = await self.send(request, timeout=timeout)
        return _decode_json(response, request)

    async def fetch(
        self,
        cl: type[T] | Any,
        method: str,
        *parts: str,
        params: Query | None = None,
        json: Any = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> T:
        """Send a request and structure its JSON body into `cl`."""
        request = self.build_request(method, *parts, params=params, json=json)
        response = await self.send(request, timeout=timeout)
        result: T = structure(_decode_json(response, request), cl, request_path=request.path)
        return result

    def paginate(
        self,
        item_type: type[T] | Any,
        *parts: str,
        params: Query | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncPaginator[T]:
        """A paginator over a list endpoint (nothing is sent until it is awaited or iterated)."""
        source: _PageSource[T] = _PageSource(self, item_type, parts, params, timeout)
        return AsyncPaginator(source.first, source.fetch)

    async def open_stream(self, request: Request) -> StreamResponse:
        """
        Open a streamed (text/event-stream) response, retrying only refused attempts.

        The limiter slot is held until the headers arrive, not for the stream's life:
        an answer can stream for half an hour, and a held slot would starve (or, with
        `stream.cancel()` inside the stream, deadlock) every other call.
        """
        started = time.monotonic()
        retries = 0
        headers = self._headers(request, accept="text/event-stream")
        transport = self._shared.transport
        throttle = self._shared.throttle
        bucket = "ai_research" if b'"agent_mode":"research"' in (request.body or b"") else "ai"
        while True:
            error: APIStatusError | APIConnectionError
            if throttle is not None:
                await throttle.acquire(bucket)
            try:
                async with self._slot():
                    with anyio.fail_after(self._config.timeout):
                        stream = await transport.open_stream(
                            request, headers, idle_timeout=self._config.stream_idle_timeout
                        )
                    if stream.status < 400:
                        return stream
                    try:
                        with anyio.fail_after(self._config.timeout):
                            body = await stream.read()
                    finally:
                        stream.close()
            except APIConnectionError as exc:
                error = exc
                outcome: StatusOutcome | ConnectionOutcome = ConnectionOutcome(
                    reached_server=exc.reached_server
                )
            except TimeoutError:
                error = APITimeoutError(
                    "PostHog did not start answering in time",
                    method=request.method,
                    path=request.path,
                )
                outcome = ConnectionOutcome(reached_server=True)
            else:
                error = error_from_response(
                    stream.status, stream.headers, body, method=request.method, path=request.path
                )
                outcome = StatusOutcome(stream.status, _retry_hint(error, stream.headers))
                if throttle is not None and isinstance(error, RateLimitError):
                    await throttle.penalize(bucket, error.retry_after)
            retries += 1
            await anyio.sleep(self._retry_delay(request, error, outcome, retries, started))

    def _retry_delay(
        self,
        request: Request,
        error: APIStatusError | APIConnectionError,
        outcome: StatusOutcome | ConnectionOutcome,
        retry: int,
        started: float,
    ) -> float:
        """How long to wait before retry number `retry`; raises `error` when it must not be."""
        policy = self._config.retry
        delay = retry_delay(
            policy,
            method=request.method,
            outcome=outcome,
            retries_done=retry - 1,
            elapsed=time.monotonic() - started,
        )
        if delay is None:
            raise error
        logger.info(
            "retrying %s %s in %.2f s (retry %d of %d) after: %s",
            request.method,
            request.path,
            delay,
            retry,
            policy.max_retries,
            error,
        )
        return delay

    def _register_stream(self, stream: Any) -> None:
        self._shared.streams.add(stream)

    def _unregister_stream(self, stream: Any) -> None:
        self._shared.streams.discard(stream)


class _PageSource(Generic[T]):
    """
    Fetches the pages of one list endpoint.

    A class rather than closures: closures that call each other form a reference
    cycle, and every page holding one would wait for the cyclic garbage collector
    instead of being freed as soon as the caller drops it.
    """

    __slots__ = ("_client", "_list_type", "_params", "_parts", "_timeout")

    def __init__(
        self,
        client: Sender,
        item_type: Any,
        parts: tuple[str, ...],
        params: Query | None,
        timeout: float | NotGiven | None,
    ) -> None:
        self._client = client
        self._list_type = list[item_type]
        self._parts = parts
        self._params = params
        self._timeout = timeout

    async def first(self) -> Page[T]:
        """The first page."""
        client = self._client
        return await self._page(client.build_request("GET", *self._parts, params=self._params))

    async def fetch(self, url: str) -> Page[T]:
        """The page at a `next` (or saved) URL, requested on the configured host."""
        client = self._client
        target = same_origin_url(client._config.base_url, url)
        return await self._page(client.build_request("GET", url=target))

    async def _page(self, request: Request) -> Page[T]:
        response = await self._client.send(request, timeout=self._timeout)
        body = _decode_json(response, request)
        results, count, next_url, previous = parse_page(
            body, self._list_type, request_path=request.path
        )
        return Page(results, count=count, next=next_url, previous=previous, fetch=self.fetch)


def _retry_hint(error: APIStatusError, headers: Mapping[str, str]) -> float | None:
    if isinstance(error, RateLimitError):
        return error.retry_after
    if error.status == 503:
        return parse_retry_after(headers.get("Retry-After"))
    return None


def _decode_json(response: Response, request: Request) -> Any:
    if not response.body or response.status == 204:
        return None
    try:
        return _json.loads(response.body)
    except ValueError:
        raise ResponseDecodeError(
            f"PostHog answered {request.method} {request.path} with a body that is not JSON",
            body=response.body[:500].decode("utf-8", errors="replace"),
            path=request.path,
        ) from None
