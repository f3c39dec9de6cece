"""
`Api`: what resources and streams send with — one client view's settings (timeouts,
retry policy, observer) over the pipeline the views share. Every method builds a
`Request` from a `Route`, runs it as one `Call` (see `_pipeline`), and decodes the
answer. Nothing here decides about retries; `Call` does.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Generic, TypeVar

import anyio
import attrs

from . import _config, _json
from ._config import ClientConfig
from ._deadlines import COUNTS_CANCELLATIONS, apart
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    ResponseDecodeError,
    error_from_response,
    header_text,
    name_request,
)
from ._http import Query, Redactor, Request, Route, same_origin_url
from ._observe import IGNORED, CallObserver, Observer
from ._pagination import (
    AsyncPaginator,
    Page,
    Unbuilt,
    new_page,
    new_raw_page,
    parse_page,
    parse_raw_page,
)
from ._pipeline import Call, Failure, Pipeline, longest_wait, paused_bucket
from ._retry import StatusOutcome
from ._stream_failures import EVENT_STREAM, STREAM_ACCEPT, snippet
from ._transport import Response, StreamResponse

__all__ = ["NOT_GIVEN", "Api", "NotGiven", "decode_json"]

logger = logging.getLogger("aposthog")

T = TypeVar("T")


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
_LOCATION_SHOWN = 300  # characters of a redirect's Location kept in the message
_SHOWN = 500  # bytes of a body that is not JSON kept in its ResponseDecodeError
#: The code of PostHog's 429 to a backfill while too many of the team's run (a refusal
#: that stands until one ends, not a throttle).
_LASTING_429: Final = "too_many_concurrent_backfills"


class Api:
    """One client view's way of sending: its configuration over the shared pipeline."""

    __slots__ = ("config", "observer", "pipeline")

    def __init__(
        self, pipeline: Pipeline, config: ClientConfig, observer: Observer | None = None
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.observer = observer

    def timeout(self, timeout: float | NotGiven | None) -> float | None:
        """A per-call `timeout=` argument, or the view's."""
        if isinstance(timeout, NotGiven):
            return self.config.timeout
        return _config._positive("timeout", timeout)

    def with_timeouts(
        self,
        timeout: float | NotGiven | None = NOT_GIVEN,
        stream_idle_timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Api:
        """
        This view with other timeouts (each checked, `ValueError` naming it), or this view
        itself when neither is given.
        """
        changes: dict[str, Any] = {}
        if not isinstance(timeout, NotGiven):
            changes["timeout"] = _config._positive("timeout", timeout)
        if not isinstance(stream_idle_timeout, NotGiven):
            changes["stream_idle_timeout"] = _config._positive(
                "stream_idle_timeout", stream_idle_timeout
            )
        if not changes:
            return self
        return Api(self.pipeline, attrs.evolve(self.config, **changes), self.observer)

    def call(
        self, route: Route, *, bucket: str | None = None, observer: CallObserver | None = None
    ) -> Call:
        """A new logical call of `route`, under this view's policy."""
        if observer is None:
            observer = self._watch(route)
        elif observer is IGNORED:  # nobody records this call: report nothing
            observer = None
        return Call(
            self.pipeline,
            self.config.retry,
            method=route.method,
            path=route.path,
            bucket=route.bucket if bucket is None else bucket,
            observer=observer,
        )

    # ------------------------------------------------------------------ JSON calls

    async def send(
        self,
        route: Route,
        request: Request,
        decode: Callable[[Response, Request], T],
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
        observed_decode: Callable[[Response, Request], T] | None = None,
    ) -> T:
        """
        Send `request` (an instance of `route`) until it succeeds or fails for good.

        `timeout` bounds each attempt: connecting, sending and reading the whole body.
        Gives the 2xx response through `decode` (with the request), or raises the typed
        error (a 3xx included: redirects are never followed, so the key never travels
        elsewhere). A failure of `decode` (a body that is not the record) is the call's
        own end: an observed call reports it as its error. An observed call decodes with
        `observed_decode` when given (one that leaves nothing of the body for later).

        The first attempt of a call nobody observes is made right here, as `Call.run`
        would make it (rate limiter, slot, attempt): a call that succeeds at once, the
        common case, costs no `Call`. Any failure goes on in a `Call` that counts the
        attempt made and the time since it started, for the same decision.
        """
        attempt_timeout = self.config.timeout if timeout is NOT_GIVEN else self.timeout(timeout)
        pipeline = self.pipeline
        if request.body is None and not request.headers:
            headers = pipeline.json_headers
        else:
            headers = pipeline.headers(request)
        observer = self._watch(route, request.path)
        if observer is not None:
            exchange = _exchange(pipeline, request, headers, attempt_timeout)
            call = self._call(route, observer, target=request.path)
            if observed_decode is not None:
                decode = observed_decode
            return await _observed(call, exchange, route, decode, request, pipeline.redactor)
        loop = pipeline.loop
        if pipeline.closed or loop is None or loop is not asyncio._get_running_loop():
            pipeline.check_usable()  # raises (or binds the client to its first loop)
        throttle = pipeline.throttle
        slots = pipeline.slots
        if throttle is not None:
            try:
                # Counts the request once it holds a slot, and returns holding it.
                await throttle.acquire(
                    route.bucket, max_wait=longest_wait(self.config.retry, 0.0), slots=slots
                )
            except RateLimitError as exc:
                name_request(exc, request.method, request.path)
                raise
            if pipeline.closed:  # closed while it waited: nothing is sent
                slots.release()
                pipeline.check_usable()
        elif not slots.take_nowait():
            await slots.take()
            if pipeline.closed:
                slots.release()
                pipeline.check_usable()
        failure: Failure | None = None
        # The retry deadline counts from the first attempt's start, not from the wait
        # for a slot or the rate limit before it.
        started = time.monotonic()
        try:
            response = await pipeline.transport.send(request, headers, timeout=attempt_timeout)
        except APIConnectionError as exc:
            pipeline.check_open(exc)
            failure = Failure.connection(exc)
        else:
            if response.status >= 300 or response.status < 200:
                failure = status_failure(
                    response.status, response.headers, response.body, request, pipeline.redactor
                )
        finally:
            slots.release()
        if failure is None:
            # The slot is free for the next call meanwhile.
            return _decoded(decode, response, request, pipeline.redactor)
        if throttle is not None and isinstance(failure.error, RateLimitError):
            await throttle.penalize(
                paused_bucket(route.bucket, failure.error), failure.error.retry_after
            )
        call = self._call(route, None, started=started, target=request.path)
        exchange = _exchange(pipeline, request, headers, attempt_timeout)
        response = await _run(call, exchange, route, failure)
        return _decoded(decode, response, request, pipeline.redactor)

    def _watch(self, route: Route, target: str = "") -> CallObserver | None:
        """The observer of a new call of `route` (to `target`), or None when nobody records it."""
        if self.observer is None:
            return None
        observer = self.observer.call(route.method, route.path, self.config.base_url, target)
        return None if observer is IGNORED else observer

    def _call(
        self,
        route: Route,
        observer: CallObserver | None,
        *,
        started: float | None = None,
        target: str = "",
    ) -> Call:
        return Call(
            self.pipeline,
            self.config.retry,
            method=route.method,
            path=route.path,
            bucket=route.bucket,
            observer=observer,
            started=started,
            attempts=0 if started is None else 1,
            target=target,
        )

    async def request_json(
        self,
        route: Route,
        *values: str,
        params: Query | None = None,
        json: Any = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        expect: Callable[[Any], Any] | None = None,
    ) -> Any:
        """
        Call `route` and decode its JSON body (None for an empty body, as after a 204).

        `expect` takes the decoded body and returns what the caller wants of it, or
        raises `ResponseDecodeError`: run as part of the decoding, so that a body quoting
        the key (an echo behind a wrong `host`) leaves it in no error nor any frame.
        """
        request = self.pipeline.request(route, route.fill(*values), params=params, json=json)
        if expect is None:
            return await self.send(route, request, decode_json, timeout=timeout)

        def decode(response: Response, request: Request) -> Any:
            return expect(decode_json(response, request))

        return await self.send(route, request, decode, timeout=timeout)

    async def fetch(
        self,
        cl: type[T] | Any,
        route: Route,
        *values: str,
        params: Query | None = None,
        json: Any = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> T:
        """Call `route` and structure its JSON body into `cl` (`headers`: sent besides ours)."""
        request = self.pipeline.request(route, route.fill(*values), params=params, json=json)
        if headers:
            request = attrs.evolve(request, headers=headers)

        def decode(response: Response, request: Request) -> T:
            body = decode_json(response, request)
            result: T = _structure()(body, cl, request_path=request.path)
            return result

        return await self.send(route, request, decode, timeout=timeout)

    def paginate(
        self,
        item_type: type[T] | Any,
        route: Route,
        *values: str,
        params: Query | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        on_results: Callable[[list[T]], None] | None = None,
    ) -> AsyncPaginator[T]:
        """
        A paginator over a list route (nothing is sent until it is awaited or iterated);
        `on_results` sees each page's records as they arrive.
        """
        source = _PageSource(self, item_type, route, values, params, timeout, on_results)
        return AsyncPaginator(source)

    # ------------------------------------------------------------------ streams

    async def open_attempt(self, request: Request) -> StreamResponse | Failure:
        """
        One attempt at opening an event stream: the response once its headers are in.

        `timeout` bounds this attempt (until the headers, or an error body, arrive); the
        stream itself then has only the idle timeout. Python 3.10 tasks count no
        cancellations, so a cancellation from outside that lands as the attempt's time
        runs out would be taken for the time limit's own: there the attempt runs as a
        task of its own (`apart`), and a stream it opened all the same is closed.
        """
        if COUNTS_CANCELLATIONS:
            return await self._open_attempt(request)
        return await apart(self._open_attempt(request), _close_opened)

    async def _open_attempt(self, request: Request) -> StreamResponse | Failure:
        pipeline = self.pipeline
        headers = pipeline.headers(request, accept=STREAM_ACCEPT)
        timeout = self.config.timeout
        # One time limit for the whole attempt: the headers, then what is read of an
        # error body or of a page that is not a stream, in what is left of it.
        started = anyio.current_time()
        try:
            with anyio.fail_after(timeout):
                stream = await pipeline.transport.open_stream(
                    request,
                    headers,
                    idle_timeout=self.config.stream_idle_timeout,
                    attempt_timeout=timeout,
                )
        except APIConnectionError as exc:  # before TimeoutError: APITimeoutError is one
            return Failure.connection(exc)
        except TimeoutError:
            error = APITimeoutError(
                "PostHog did not start answering in time (timeout)",
                method=request.method,
                path=request.path,
            )
            return Failure.connection(error)
        left = None if timeout is None else max(timeout - (anyio.current_time() - started), 0.0)
        if 200 <= stream.status < 300:
            if stream.content_type == EVENT_STREAM:
                return stream
            # A proxy's login page, say: its start for the message, however slowly it comes.
            shown = await snippet(stream, pipeline.redactor, timeout=left)
            # (A proxy may have copied anything there, the key too; aiohttp lower-cases it.)
            kind = pipeline.redactor.scrub_folded(header_text(stream.content_type))
            raise ResponseDecodeError(
                f"PostHog answered {request.method} {request.path} with {stream.status} "
                f"{kind or 'no content type'}, not {EVENT_STREAM}",
                body=shown,
                path=request.path,
                status=stream.status,
            )
        try:
            with anyio.fail_after(left):
                body = await stream.read()
        except (TimeoutError, APIConnectionError):
            # The status came: the answer is known without its body (slow or cut off).
            body = b""
        finally:
            stream.close()
        return status_failure(stream.status, stream.headers, body, request, pipeline.redactor)


def _close_opened(opened: StreamResponse | Failure) -> None:
    """A stream opened for a caller that was cancelled meanwhile: closed, not leaked."""
    if not isinstance(opened, Failure):
        opened.close()


_structure_fn: Callable[..., Any] | None = None


def _structure() -> Callable[..., Any]:
    """`_converter.structure`, imported on first use (not at `import aposthog`), once."""
    global _structure_fn
    if _structure_fn is None:
        from ._converter import structure

        _structure_fn = structure
    return _structure_fn


def _exchange(
    pipeline: Pipeline, request: Request, headers: Mapping[str, str], timeout: float | None
) -> Callable[[], Awaitable[Response | Failure]]:
    """One attempt of a JSON call: the 2xx response, or the failure."""
    transport = pipeline.transport
    redactor = pipeline.redactor

    async def exchange() -> Response | Failure:
        response = await transport.send(request, headers, timeout=timeout)
        if 200 <= response.status < 300:
            return response
        return status_failure(response.status, response.headers, response.body, request, redactor)

    return exchange


_GONE: Final = Response(204, {}, b"")
"""What a `gone_is_done` route's call returns when its retry finds the thing gone."""


async def _run(
    call: Call,
    exchange: Callable[[], Awaitable[Response | Failure]],
    route: Route,
    after: Failure | None = None,
) -> Response:
    """`call.run` for a JSON call, with `route.gone_is_done` applied to its last 404."""
    try:
        response: Response = await call.run(exchange, repeatable=route.repeatable, after=after)
    except NotFoundError:
        if not (route.gone_is_done and call.maybe_acted):
            raise
        logger.info(
            "%s %s: 404 to a retry after an attempt PostHog may have carried out: done",
            route.method,
            route.path,
        )
        return _GONE
    return response


async def _observed(
    call: Call,
    exchange: Callable[[], Awaitable[Response | Failure]],
    route: Route,
    decode: Callable[[Response, Request], T],
    request: Request,
    redactor: Redactor,
) -> T:
    """
    A JSON call that an observer watches: every attempt through `Call.run`, the answer
    decoded, then its end (a body that is not the record is the call's error).
    """
    try:
        response = await _run(call, exchange, route)
    except APIStatusError as exc:
        call.end(exc.status, exc)
        raise
    except ResponseDecodeError as exc:  # a body the transport could not read
        call.end(exc.status, exc)
        raise
    except BaseException as exc:
        call.end(None, exc)
        raise
    # A delete found gone after a lost answer: the last status PostHog sent, no error.
    status = 404 if response is _GONE else response.status
    try:
        result = _decoded(decode, response, request, redactor)
    except BaseException as exc:
        call.end(status, exc)
        raise
    call.end(status, None)
    return result


def _decoded(
    decode: Callable[[Response, Request], T],
    response: Response,
    request: Request,
    redactor: Redactor,
) -> T:
    """
    `decode(response, request)`. A body that does not decode and quotes the key (a
    proxy's or a misconfigured host's page echoing the request's headers) is raised as
    the same error without the key, and without the chain that held it.
    """
    try:
        return decode(response, request)
    except ResponseDecodeError as exc:
        if exc.status is None:
            exc.status = response.status
        clean = _without_key(exc, response.body, redactor)
        if clean is None:
            raise
    raise clean  # outside the `except`: not even the original is its context


def _without_key(
    exc: ResponseDecodeError, body: bytes, redactor: Redactor
) -> ResponseDecodeError | None:
    """`exc` made again without the key, or None when `body` does not quote it."""
    if type(exc) is not ResponseDecodeError or redactor.scrub(body) is body:
        return None  # (a subclass, `ResponseTooLargeError`, quotes nothing of the body)
    message = redactor.scrub_text(str(exc))
    shown: Any
    if isinstance(exc.body, str):  # the start of a body that is not JSON: cut after
        shown = redactor.scrub(body)[:_SHOWN].decode("utf-8", errors="replace")
    else:
        shown = redactor.scrub_value(exc.body)
    return ResponseDecodeError(
        message, paths=exc.paths, body=shown, path=exc.path, status=exc.status
    )


def status_failure(
    status: int, headers: Mapping[str, str], body: bytes, request: Request, redactor: Redactor
) -> Failure:
    """
    The failure for a non-2xx answer, with the wait the server named (if any). An answer
    that quotes the key (a proxy echoing the request's headers) has it replaced first.
    """
    body = redactor.scrub(body)
    if status < 200:
        # Informational (RFC 9110 §15.2): never a final answer, so nothing was done. Sent
        # as one by a server or proxy that is not PostHog's (an unasked-for 101).
        error = APIStatusError(
            status=status,
            detail=f"the answer's status, {status}, is informational and never a final "
            "answer: the request was not carried out (is `host` PostHog, or a proxy?)",
            method=request.method,
            path=request.path,
        )
        return Failure(error, StatusOutcome(status))
    if status < 400:
        location = redactor.scrub_text(headers.get("Location") or "(no Location header)")
        location = header_text(location, _LOCATION_SHOWN)
        error = APIStatusError(
            status=status,
            detail=(
                f"PostHog redirected to {location}; aposthog does not follow redirects "
                "(the key must only go to the configured host): check `host`"
            ),
            method=request.method,
            path=request.path,
        )
        return Failure(error, StatusOutcome(status))
    error = error_from_response(status, headers, body, method=request.method, path=request.path)
    hint = None
    if isinstance(error, RateLimitError):
        if error.code == _LASTING_429 and error.retry_after is None:
            # Not a throttle: it stands until one of the team's backfills ends, so
            # asking again in a second or two only spends the budget and the caller's time.
            return Failure(error, StatusOutcome(status, None, lasting=True))
        hint = error.retry_after
    elif status == 503 and isinstance(error, InternalServerError):
        hint = error.retry_after
        # PostHog's (DRF's) JSON error is an object with `detail` or `type`; the error
        # holds the body already parsed.
        parsed = error.body
        if hint is None and not (
            isinstance(parsed, dict) and ("detail" in parsed or "type" in parsed)
        ):
            # A proxy's 503 (Envoy's "upstream connect error or disconnect/reset before
            # headers"): PostHog may have acted before the reset, as after a 502.
            return Failure(error, StatusOutcome(status, None, proxy=True))
    return Failure(error, StatusOutcome(status, hint))


def decode_json(response: Response, request: Request) -> Any:
    """The response's JSON body (None when empty); `ResponseDecodeError` when it is not JSON."""
    if not response.body or response.status == 204:
        return None
    try:
        return _json.loads(response.body)
    except ValueError:
        raise ResponseDecodeError(
            f"PostHog answered {request.method} {request.path} with a body that is not JSON",
            body=response.body[:_SHOWN].decode("utf-8", errors="replace"),
            path=request.path,
        ) from None


_ENVIRONMENTS: Final = "/api/environments/"
_PROJECTS: Final = "/api/projects/"

#: `list[item_type]` per record type, made once (cattrs looks its hooks up by it).
_LIST_TYPES: dict[Any, Any] = {}


class _PageSource(Generic[T]):
    """
    Fetches the pages of one list route.

    A class rather than closures: closures that call each other form a reference
    cycle, and every page holding one would wait for the cyclic garbage collector
    instead of being freed as soon as the caller drops it.
    """

    __slots__ = (
        "_api",
        "_item_type",
        "_list_type",
        "_on_results",
        "_own_path",
        "_params",
        "_parts",
        "_route",
        "_timeout",
    )

    def __init__(
        self,
        api: Api,
        item_type: Any,
        route: Route,
        values: tuple[str, ...],
        params: Query | None,
        timeout: float | NotGiven | None,
        on_results: Callable[[list[T]], None] | None = None,
    ) -> None:
        self._api = api
        self._on_results = on_results
        list_type = _LIST_TYPES.get(item_type)
        if list_type is None:
            list_type = _LIST_TYPES[item_type] = list[item_type]
        self._list_type = list_type
        self._item_type = item_type
        self._route = route
        self._parts = route.fill(*values)
        self._params = params
        self._timeout = timeout
        self._own_path: tuple[str, str] | None = None

    def first(self) -> Awaitable[Page[T]]:
        """The first page (a plain function returning the coroutine: one frame less)."""
        api = self._api
        request = api.pipeline.request(self._route, self._parts, params=self._params)
        return api.send(self._route, request, self._decode, timeout=self._timeout)

    def first_unbuilt(self) -> Awaitable[Page[T]]:
        """`first()`, for a loop over records: see `_decode_unbuilt`."""
        api = self._api
        request = api.pipeline.request(self._route, self._parts, params=self._params)
        return api.send(
            self._route,
            request,
            self._decode_unbuilt,
            timeout=self._timeout,
            observed_decode=self._decode,
        )

    def first_url(self) -> str:
        """The first page's URL, its query included (where a read that failed resumes)."""
        return self._api.pipeline.request(self._route, self._parts, params=self._params).full_url()

    def _path(self) -> str:
        """This list's path (percent-decoded), where every page of it is."""
        return self._paths()[0]

    def _paths(self) -> tuple[str, str]:
        """
        This list's path (percent-decoded) and the same list's path under `/api/projects/`.

        PostHog serves `/api/environments/<id>/…` through the `/api/projects/<id>/…`
        viewset of the same id: its `EnvironmentsRewriteMiddleware` rewrites the path
        before the view sees it, and DRF builds `next` (and `previous`) from the path the
        view saw. So a current PostHog's `next` names `/api/projects/<id>/<list>/`, an
        older one's `/api/environments/<id>/<list>/`: both are this list's pages.
        """
        own = self._own_path
        if own is None:
            request = self._api.pipeline.request(self._route, self._parts)
            path = urllib.parse.unquote(urllib.parse.urlsplit(request.url).path)
            own = self._own_path = (path, path.replace(_ENVIRONMENTS, _PROJECTS, 1))
        return own

    def _other_path(self, target: str) -> str | None:
        """The path `target` (on the configured host) names, when not this list's."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        return None if path in self._paths() else path

    def foreign(self, url: str) -> str | None:
        """Why `url` is no page of this list (None: it is one)."""
        try:
            target = same_origin_url(self._api.config.base_url, url)
        except ValueError as exc:
            return str(exc)
        other = self._other_path(target)
        if other is None:
            return None
        return f"it names {self._shown(other)!r}, and this list's pages are at {self._path()!r}"

    def _shown(self, path: str) -> str:
        """Another list's path, as a message shows it: cut, and without the key."""
        return self._api.pipeline.redactor.scrub_text(path)[:200]

    def sending(self) -> int:
        """How many of its requests the client sends at once (`max_concurrency`)."""
        return self._api.config.max_concurrency

    def fetch(self, url: str) -> Awaitable[Page[T]]:
        """
        The page at a `next` (or saved) URL, requested on the configured host: only at
        this list's path (PostHog's `next` names the list's own URL with another offset
        or cursor), else `ResponseDecodeError`, unsent.
        """
        return self._fetch(url, self._decode)

    def fetch_unbuilt(self, url: str) -> Awaitable[Page[T]]:
        """`fetch()`, for a loop over records: see `_decode_unbuilt`."""
        return self._fetch(url, self._decode_unbuilt, self._decode)

    async def _fetch(
        self,
        url: str,
        decode: Callable[[Response, Request], Page[T]],
        observed_decode: Callable[[Response, Request], Page[T]] | None = None,
    ) -> Page[T]:
        api = self._api
        target = same_origin_url(api.config.base_url, url)
        other = self._other_path(target)
        if other is not None:
            own = self._path()
            raise ResponseDecodeError(
                f"'next' names {self._shown(other)!r}, not a page of the list at {own!r}: "
                "not followed",
                paths=("$.next",),
                path=own,
            )
        request = api.pipeline.request(self._route, (), url=target)
        return await api.send(
            self._route, request, decode, timeout=self._timeout, observed_decode=observed_decode
        )

    def _decode(self, response: Response, request: Request) -> Page[T]:
        body = decode_json(response, request)
        results, count, next_url, previous = parse_page(
            body, self._list_type, request_path=request.path
        )
        if next_url is not None or previous is not None:
            self._check_links(next_url, previous, request.path)
        if self._on_results is not None:
            self._on_results(results)
        page = new_page(results, count, next_url, previous, self.fetch)
        page._request = request  # where a walk by hand from it starts (`next_page`)
        return page

    def _check_links(self, next_url: str | None, previous: str | None, path: str) -> None:
        """
        Refuse a page whose `next` or `previous` quotes the API key (a proxy that echoes
        the request into its links): kept, it would show in the page's and the
        paginator's repr and `next_url`, and following it would send the key in a URL.
        """
        scrub = self._api.pipeline.redactor.scrub_text
        for name, link in (("next", next_url), ("previous", previous)):
            if link is not None and scrub(link) is not link:
                raise ResponseDecodeError(
                    f"'{name}' in the page from {path} quotes the API key: not followed",
                    paths=(f"$.{name}",),
                    path=path,
                )

    def _decode_unbuilt(self, response: Response, request: Request) -> Page[T]:
        """
        How a records loop decodes a page: its records built one by one as the loop takes
        them (`Page._records`), so that each can go before the next is built. A record
        that does not fit then raises the page's error when the loop reaches it, after
        those before it (`on_results` hears of each as it is built). Not for an observed
        call (its span or log reports a body that does not fit as the call's error), nor
        for a body that quotes the key: built whole by `_decode`, within the call, whose
        errors never hold the key.
        """
        if self._api.pipeline.redactor.scrub(response.body) is not response.body:
            return self._decode(response, request)
        body = decode_json(response, request)
        path = request.path
        results, count, next_url, previous = parse_raw_page(body, request_path=path)
        unbuilt = Unbuilt(
            results, self._item_type, path, response.status, self._on_results, page=body
        )
        page = new_raw_page(unbuilt, count, next_url, previous, self.fetch)
        page._request = request
        return page
