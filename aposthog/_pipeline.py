"""
The request pipeline: the one place that decides every attempt of every request.

A request travels, from a resource method to the wire and back:

    resource method  ──►  Api.fetch / request_json / paginate / open_stream   (_api.py)
                            │ builds a Request from a Route (_http.py)
                            ▼
                          Call.run(attempt)             one logical request (this module)
                            ├─ throttle.acquire(bucket,    optional: waits for room, holding
                            │    slots)                    no slot and no connection, and
                            │                              counts the request once it holds
                            ├─ limiter slot                one (max_concurrency, per client)
                            ├─ attempt()                   one HTTP exchange (_transport.py)
                            └─ failed?  retry_delay()      (_retry.py) says how long to wait,
                                        or raise           or that the failure is final

JSON calls, opening a conversation stream and re-attaching a dropped one all go
through `Call.run`, under the view's `RetryPolicy`: a stream's re-attach is another
attempt of the same `Call`, counted against `RetryPolicy.max_reattaches`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import time
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final, Protocol, TypeVar

import anyio

from ._errors import (
    APIConnectionError,
    APIStatusError,
    ClientStateError,
    RateLimitError,
    name_request,
)
from ._http import (
    Query,
    Redactor,
    Request,
    Route,
    Secret,
    encode_json,
    query_items,
    user_agent,
)
from ._inflate import ACCEPT_ENCODING
from ._observe import CallObserver, WaitReason
from ._retry import ConnectionOutcome, Outcome, RetryPolicy, may_have_acted, retry_delay
from ._slots import Slots
from ._transport import AIOHTTP_VERSION, Transport, fixed_headers

__all__ = [
    "Call",
    "Failure",
    "Pipeline",
    "Throttle",
    "Unsent",
    "Unwanted",
    "Wanted",
    "announce_wait",
    "running_loop",
    "wait_listener",
]

T = TypeVar("T")
logger = logging.getLogger("aposthog")
_USER_AGENT: Final = user_agent(f"aiohttp/{AIOHTTP_VERSION}")


class Throttle(Protocol):
    """
    A client-side rate limiter the pipeline asks before every attempt.

    `acquire` is awaited for JSON calls, stream opens and re-attaches alike, and takes
    the attempt's concurrency slot from `slots`: a request that waits for room holds no
    slot and no connection, and one that waits for a slot is not counted yet (it is
    counted when it goes, as PostHog counts it). It may be cancelled. Before it sleeps
    it should call `announce_wait(seconds)`, so that `Client(on_wait=...)` hears of the
    wait first. `penalize` is awaited after every 429 with the wait PostHog named (None:
    none named).
    """

    async def acquire(
        self,
        bucket: str,
        *,
        max_wait: float | None = None,
        slots: Slots | None = None,
        wanted: Wanted | None = None,
    ) -> float:
        """
        Wait for room in `bucket`'s windows and take a slot from `slots`; return the
        seconds waited for room. A wait longer than `max_wait` is not begun:
        `RateLimitError` (its `retry_after` the wait), holding no slot. `wanted`, if
        given, is asked just before the request would be counted: no longer wanted, it
        is not counted and holds no slot (`Unwanted`); not known yet, it keeps its turn
        until it is.
        """

    async def penalize(self, bucket: str, seconds: float | None) -> None:
        """PostHog answered 429 for `bucket`: block it for `seconds` (if named)."""


class Wanted(Protocol):
    """Whether a request the rate limiter is about to count is still wanted."""

    def now(self) -> bool | None:
        """True: it is; False: no longer (it is never sent); None: not known yet."""

    async def decided(self) -> None:
        """Return once `now()` is True or False."""


class _BeforeDeadline:
    """A retry's `Wanted`: the caller's, and no longer once the call's deadline passed."""

    __slots__ = ("_call", "_inner")

    def __init__(self, call: Call, inner: Wanted | None) -> None:
        self._call = call
        self._inner = inner

    def now(self) -> bool | None:
        if self._call._past_deadline():
            return False
        return True if self._inner is None else self._inner.now()

    async def decided(self) -> None:
        if self._inner is not None:
            await self._inner.decided()


class Unsent(Exception):
    """
    Raised by an attempt that found it must not be sent, before sending anything: the
    call's count (and its observer's) takes it back.
    """


class Unwanted(Exception):
    """
    Raised by `Throttle.acquire`: when its turn came, the request was no longer wanted
    (see `Wanted`). It was not counted, and holds no slot.
    """


_WAIT_LISTENER: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar(
    "aposthog_wait_listener", default=None
)


#: The research conversations a client remembers (most recently seen first to stay).
RESEARCH_CONVERSATIONS_KEPT: Final = 4096
#: Words only the 429 of PostHog AI's research windows has (`RESEARCH_RATE_LIMIT_MESSAGE`).
_RESEARCH_429 = "Research mode"


def is_research_429(error: RateLimitError) -> bool:
    """Whether PostHog refused with its research windows' 429 (see `paused_bucket`)."""
    return _RESEARCH_429 in (error.detail or "")


def paused_bucket(bucket: str, error: RateLimitError) -> str:
    """
    The bucket a 429 pauses. A message to a research conversation this client did not
    know as one (another process made it) goes in the `ai` bucket, but PostHog counts
    it in its research windows and refuses it with their 429: that pause is the research
    bucket's, not every ordinary PostHog AI message's.
    """
    if bucket == "ai" and is_research_429(error):
        return "ai_research"
    return bucket


def longest_wait(policy: RetryPolicy, elapsed: float) -> float:
    """
    The longest wait for the rate limiter a call may begin, `elapsed` seconds after it
    started: as for a retry's wait, no longer than `policy.max_retry_after` and none
    that would end after `policy.deadline`.
    """
    if policy.deadline is None:
        return policy.max_retry_after
    return max(0.0, min(policy.max_retry_after, policy.deadline - elapsed))


@contextlib.contextmanager
def closable(
    waits: set[anyio.CancelScope], scope: anyio.CancelScope | None = None
) -> Iterator[anyio.CancelScope]:
    """
    A wait that closing the client ends: `scope` (a new one by default) is entered and
    kept in `waits` while the wait runs, for the close to cancel. The waiter then looks
    whether the client is closed, and raises if so.
    """
    with anyio.CancelScope() if scope is None else scope as entered:
        waits.add(entered)
        try:
            yield entered
        finally:
            waits.discard(entered)


class Sleeps:
    """
    Sleeps that closing the client ends at once: each is woken (its future given a
    result), never cancelled. On Python 3.10, whose tasks count no cancellations, a
    cancel scope that the close cancelled could not tell its own cancellation from the
    task's, if one landed in the same loop step (a shutdown cancelling its workers as it
    closes the client): it swallowed both, and the cancelled task went on. A wake leaves
    any cancellation of the task as it is. The sleeper then sees the client closed.
    """

    __slots__ = ("_sleeping",)

    def __init__(self) -> None:
        self._sleeping: set[asyncio.Future[None]] = set()

    async def sleep(self, seconds: float) -> None:
        """
        Sleep `seconds` as `time.monotonic()` counts them (the rate limiter's clock), or
        until `wake_all()`. A loop whose timers count whole milliseconds (uvloop's) may
        ring a fraction of one early: the rest is slept here, so the limiter, asking
        again too soon, does not begin (and announce) one tiny wait after another.
        """
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        timer: asyncio.TimerHandle | None = None
        if seconds < math.inf:
            end = time.monotonic() + seconds

            def ring() -> None:
                nonlocal timer
                left = end - time.monotonic()
                if left > 0:
                    timer = loop.call_later(math.ceil(left * 1000) / 1000, ring)
                else:
                    _wake(woken)

            timer = loop.call_later(seconds, ring)
        self._sleeping.add(woken)
        try:
            await woken
        finally:
            if timer is not None:
                timer.cancel()
            self._sleeping.discard(woken)

    def wake_all(self) -> None:
        """End every sleep under way (the client closes)."""
        for woken in list(self._sleeping):
            _wake(woken)


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


def wait_listener() -> Callable[[float], None] | None:
    """Who hears of the current call's waits (`announce_wait`), if anyone."""
    return _WAIT_LISTENER.get()


def _nothing() -> None:
    pass


_NO_LOOP: Final = (
    "aposthog runs on asyncio (its HTTP client is aiohttp), and no asyncio event loop "
    "runs here: await it under asyncio.run(), or anyio.run() with the asyncio backend "
    "(not trio)"
)


def running_loop() -> asyncio.AbstractEventLoop:
    """
    The running asyncio event loop; `ClientStateError` where none runs (under trio, say),
    instead of asyncio's bare `RuntimeError`.
    """
    loop = asyncio._get_running_loop()
    if loop is None:
        raise ClientStateError(_NO_LOOP)
    return loop


def announce_wait(seconds: float) -> None:
    """Called by a `Throttle` about to wait inside `acquire`: tells the call's observers."""
    listener = _WAIT_LISTENER.get()
    if listener is not None:
        listener(seconds)


class Pipeline:
    """
    What a client and all its `with_options()` views share: the transport, the limiter,
    the throttle, the open streams, and the request-building caches.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        api_key: str,
        base_url: str,
        api_prefix: str,
        max_concurrency: int,
        throttle: Throttle | None = None,
    ) -> None:
        self.transport = transport
        self.throttle = throttle
        self.closed = False
        #: Whether `Client.aclose()` ran to its end (a cancelled one is run again).
        self.close_finished = False
        self.streams: weakref.WeakSet[Any] = weakref.WeakSet()
        #: The retry backoffs under way: closing the client cancels them.
        #: Calls waiting to retry: closing the client wakes them.
        self.sleeps = Sleeps()
        #: The conversations known to be `deep_research` (PostHog counts every message to
        #: one, and every re-attach, in its research windows): kept by `ph.conversations`.
        self.research_conversations: dict[str, None] = {}
        #: The `max_concurrency` slots every attempt holds one of.
        self.slots = Slots(max_concurrency)
        # Only the header value is kept: a `Secret`, shown as '<redacted>' in any repr.
        self._authorization = Secret(f"Bearer {api_key}")
        #: Takes the key out of an answer that quotes it back, before an error holds it.
        self.redactor = Redactor(api_key)
        #: The event loop the client is bound to (by its first use).
        self.loop: asyncio.AbstractEventLoop | None = None
        #: What tells of a client dropped unclosed (set by `Client`, detached once closed).
        self.finalizer: weakref.finalize[Any, Any] = weakref.finalize(self, _nothing)
        base = urllib.parse.urlsplit(base_url)
        # The origin and the path prefix, worked out (and percent-encoded) once.
        self._origin = f"{base.scheme}://{base.netloc}"
        self._prefix = (base.path + api_prefix).rstrip("/")
        self._headers: dict[tuple[str, bool], Mapping[str, str]] = {}
        #: The headers of a request without a body nor headers of its own (most of them).
        self.json_headers = self._base_headers("application/json", False)
        transport.use_common_headers(self.json_headers)
        # Requests without path values, query or body (a list's first page, say): the
        # same immutable Request every time, one per route.
        self._plain: dict[int, tuple[Route, Request]] = {}

    def check_usable(self) -> None:
        """Raise `ClientStateError` if closed or used from another event loop."""
        if self.closed:
            raise ClientStateError("this aposthog.Client is closed; create a new one")
        loop = running_loop()
        if self.loop is None:
            self.loop = loop
        elif self.loop is not loop:
            raise ClientStateError(
                "this aposthog.Client belongs to another event loop; "
                "create one client per event loop (aiohttp sessions cannot cross loops)"
            )

    def check_open(self, failure: APIConnectionError) -> None:
        """
        After an attempt that lost its connection: if the client was closed meanwhile
        (which closed that connection), say so, rather than blame PostHog.
        """
        if self.closed:
            raise ClientStateError(
                "this aposthog.Client was closed while the request was in flight"
            ) from failure

    def request(
        self,
        route: Route,
        parts: tuple[str, ...],
        *,
        params: Query | None = None,
        json: Any = None,
        url: str | None = None,
    ) -> Request:
        """The request for `route` (parts already filled and encoded), or for a full `url`."""
        items = query_items(params) if params else ()
        body = None if json is None else encode_json(json)
        if url is not None:
            return Request(method=route.method, url=url, params=items, body=body)
        if items or body is not None or "{" in route.path:
            return self._build(route.method, parts, items, body)
        # No path values, query or body (a list's first page, say): the same immutable
        # Request every time, one per route (routes are constants: found by identity).
        cached = self._plain.get(id(route))
        if cached is not None and cached[0] is route:
            return cached[1]
        request = self._build(route.method, parts, (), None)
        self._plain[id(route)] = (route, request)
        return request

    def note_research(self, conversation_id: str, research: bool) -> None:
        """
        Note a conversation as `deep_research` (PostHog counts its messages in the research
        windows) or as a chat again; the least recently noted are forgotten past a bound.
        """
        known = self.research_conversations
        known.pop(conversation_id, None)
        if research:
            known[conversation_id] = None
            if len(known) > RESEARCH_CONVERSATIONS_KEPT:
                del known[next(iter(known))]  # the least recently seen

    def path_of(self, route_path: str) -> str:
        """A route's full request path (placeholders, if any, left as they are)."""
        return "/".join((self._prefix, route_path.strip("/"))) + "/"

    def _build(
        self,
        method: str,
        parts: tuple[str, ...],
        params: tuple[tuple[str, str], ...],
        body: bytes | None,
    ) -> Request:
        path = "/".join((self._prefix, *parts)) + "/"  # as join_path(), prefix stripped once
        return Request(method=method, url=self._origin + path, params=params, body=body, path=path)

    def headers(self, request: Request, *, accept: str = "application/json") -> Mapping[str, str]:
        """The request's headers, with the key (never stored on the `Request`)."""
        # Built once per client, read-only and shared (aiohttp copies headers into its
        # own multidict), so a request only pays for a dict when it adds its own headers.
        headers = self._base_headers(accept, request.body is not None)
        if request.headers:
            return {**headers, **dict(request.headers)}
        return headers

    def _base_headers(self, accept: str, has_body: bool) -> Mapping[str, str]:
        key = (accept, has_body)
        headers = self._headers.get(key)
        if headers is None:
            built = {
                "Authorization": self._authorization,
                "User-Agent": _USER_AGENT,
                "Accept": accept,
                # Only what the transport inflates itself, within max_response_size.
                "Accept-Encoding": ACCEPT_ENCODING,
            }
            if has_body:
                built["Content-Type"] = "application/json"
            headers = self._headers[key] = fixed_headers(built)
        return headers


class Failure:
    """A failed attempt: the error to raise if it is final, and what the policy needs."""

    __slots__ = ("error", "outcome")

    def __init__(self, error: APIStatusError | APIConnectionError, outcome: Outcome) -> None:
        self.error = error
        self.outcome = outcome

    @classmethod
    def connection(cls, error: APIConnectionError) -> Failure:
        """A failure without a response."""
        return cls(error, ConnectionOutcome(reached_server=error.reached_server))


Attempt = Callable[[], Awaitable[T | Failure]]


class Call:
    """
    Every attempt of one logical request, and the one decision after each failure.

    `run(attempt)` takes a throttle turn and a slot, makes the attempt, and on a
    `Failure` asks the policy whether (and after how long) to try again. A stream calls
    `run` again with `after=` when its connection drops: the same budget decides.
    """

    __slots__ = (
        "_answered",
        "_bucket",
        "_limit",
        "_method",
        "_observer",
        "_path",
        "_pipeline",
        "_policy",
        "_refusal",
        "_retries",
        "_started",
        "_target",
        "attempts",
        "maybe_acted",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        policy: RetryPolicy,
        *,
        method: str,
        path: str,
        bucket: str,
        observer: CallObserver | None = None,
        started: float | None = None,
        attempts: int = 0,
        target: str = "",
    ) -> None:
        self._pipeline = pipeline
        # The request's own path (ids filled in), for errors raised before it is sent.
        self._target = target
        self._policy = policy
        self._method = method
        self._path = path
        self._bucket = bucket
        self._observer = observer
        self._limit: int | None = None
        self._retries = 0
        #: The limiter's own `RateLimitError`, if it refused a wait: no response had it.
        self._refusal: RateLimitError | None = None
        #: The status of the last answer an attempt failed with, if any (an observed call).
        self._answered: int | None = None
        # A call whose first attempt was made inline (see `Api.send`) starts from then.
        self._started = time.monotonic() if started is None else started
        self.attempts = attempts
        #: Whether an attempt retried so far may have been acted on by PostHog.
        self.maybe_acted = False

    @property
    def observed(self) -> bool:
        """Whether anyone watches this call (else nothing is reported, at no cost)."""
        return self._observer is not None

    @property
    def retries(self) -> int:
        """Retries made since the start (or the last progress)."""
        return self._retries

    def dropped(self, *, limit: int) -> None:
        """
        A stream that was open dropped: from now on `limit` retries are allowed (the
        re-attach budget), and the deadline counts from now, not from the first attempt
        (an answer can stream for half an hour before it drops).
        """
        if self._limit is None:
            # The first drop of a stream that opened: the retries that opening took (a
            # 429 of PostHog's AI throttle, say) are no re-attaches.
            self._retries = 0
        self._limit = limit
        self._started = time.monotonic()

    def progress(self) -> None:
        """The request made progress (a stream delivered an event): the count starts over."""
        self._retries = 0

    async def run(
        self,
        attempt: Attempt[T],
        *,
        repeatable: bool,
        after: Failure | None = None,
        counted: bool = False,
        wanted: Wanted | None = None,
    ) -> T:
        """
        Attempt until success (returned), or a failure that is final (raised).

        `Api.send` makes the first attempt of an unobserved JSON call itself, with these
        same steps, and hands its failure here as `after`: a change to the steps of an
        attempt belongs in both places. `counted`: the rate limiter counted the first
        attempt already (one made before, which sent nothing and is made again now): it
        takes only a slot. `wanted`: asked by the rate limiter just before it counts an
        attempt; no longer wanted, `Unwanted` is raised, nothing counted nor sent.
        """
        failure = after
        while True:
            if failure is not None:
                if isinstance(failure.error, APIStatusError):
                    self._answered = failure.error.status
                await self._wait_or_raise(failure, repeatable)
                self.maybe_acted = self.maybe_acted or may_have_acted(failure.outcome)
            pipeline = self._pipeline
            pipeline.check_usable()  # closed, or another loop: before waiting for anything
            # A concurrency slot, held for the attempt: from the throttle, which counts
            # the request once it holds one, or taken here. Taken inline, not by an
            # async context manager: this runs on every request. The common case, a free
            # slot, costs no trip through the event loop.
            slots = pipeline.slots
            if pipeline.throttle is not None and not counted:
                # A retry is asked about the deadline as it is about to be counted (after
                # its wait for a slot): past it, it is neither counted nor sent.
                ask = wanted
                if failure is not None and self._policy.deadline is not None:
                    ask = _BeforeDeadline(self, wanted)
                past = False
                try:
                    await self._acquire(pipeline.throttle, slots, ask)
                except Unwanted:
                    if ask is wanted or not self._past_deadline():
                        raise
                    past = True
                if past:
                    assert failure is not None
                    raise failure.error
                if pipeline.closed:  # closed while it waited: nothing is sent
                    slots.release()
                    pipeline.check_usable()
            else:
                if not slots.take_nowait():
                    await slots.take()
                    if pipeline.closed:
                        slots.release()
                        pipeline.check_usable()
                if failure is not None and self._past_deadline():
                    # The wait for a slot (all of them busy with other calls) ran past the
                    # deadline: no attempt starts after it, as the policy says.
                    slots.release()
                    raise failure.error
            counted = False
            if not self.attempts:
                # The deadline counts from the first attempt's start, not from the wait
                # for a slot or the rate limit before it.
                self._started = time.monotonic()
            self.attempts += 1
            if self._observer is not None:
                self._observer.attempt(self.attempts)
            try:
                result = await attempt()
            except Unsent:
                # Nothing was sent after all: no attempt (the retries' count, the span's).
                self.attempts -= 1
                if self._observer is not None:
                    self._observer.unsent()
                raise
            except APIConnectionError as exc:
                pipeline.check_open(exc)
                result = Failure.connection(exc)
            finally:
                slots.release()
            if not isinstance(result, Failure):
                return result
            failure = result
            throttle = self._pipeline.throttle
            if throttle is not None and isinstance(failure.error, RateLimitError):
                bucket = paused_bucket(self._bucket, failure.error)
                await throttle.penalize(bucket, failure.error.retry_after)

    def _past_deadline(self) -> bool:
        deadline = self._policy.deadline
        return deadline is not None and time.monotonic() - self._started > deadline

    async def _acquire(self, throttle: Throttle, slots: Slots, wanted: Wanted | None) -> None:
        """Room in the bucket, and a slot (held on return)."""
        max_wait = longest_wait(self._policy, time.monotonic() - self._started)
        token = None if self._observer is None else _WAIT_LISTENER.set(self._announce)
        try:
            await throttle.acquire(self._bucket, max_wait=max_wait, slots=slots, wanted=wanted)
        except RateLimitError as exc:
            name_request(exc, self._method, self._target or self._pipeline.path_of(self._path))
            self._refusal = exc
            raise
        finally:
            if token is not None:
                _WAIT_LISTENER.reset(token)

    def _announce(self, seconds: float) -> None:
        assert self._observer is not None
        # The observers (a user's `on_wait` among them) run without this call's listener:
        # a task they start copies the context, and its own waits are not this call's.
        token = _WAIT_LISTENER.set(None)
        try:
            self._observer.wait("rate_limit", seconds, self.attempts + 1, None)
        finally:
            _WAIT_LISTENER.reset(token)

    async def _wait_or_raise(self, failure: Failure, repeatable: bool) -> None:
        policy = self._policy
        limit = policy.max_retries if self._limit is None else self._limit
        delay = retry_delay(
            policy,
            method=self._method,
            outcome=failure.outcome,
            retries_done=self._retries,
            elapsed=time.monotonic() - self._started,
            repeatable=repeatable,
            max_retries=limit,
        )
        if delay is None:
            raise failure.error
        self._retries += 1
        error = failure.error
        logger.info(
            "retrying %s %s in %.2f s (retry %d of %d) after: %s",
            self._method,
            self._path,
            delay,
            self._retries,
            limit,
            error,
        )
        if self._observer is not None:
            reason: WaitReason = "rate_limit" if isinstance(error, RateLimitError) else "retry"
            self._observer.wait(reason, delay, self.attempts + 1, error)
        # Closing the client ends the wait at once (the caller's check then raises); one
        # closed before the wait began (while a 429's pause was stored) ends it unbegun.
        self._pipeline.check_usable()
        await self._pipeline.sleeps.sleep(delay)

    def end(self, status: int | None, error: BaseException | None) -> None:
        """
        Report how the call ended (to the observer, if any). The client's own refusal
        of a rate-limit wait is no response (its 429 is only its class): the status is
        that of PostHog's last answer to an earlier attempt, if there was one.
        """
        if self._observer is not None:
            if error is not None and error is self._refusal:
                status = self._answered  # PostHog's last answer, if an attempt had one
            self._observer.end(status, error, self.attempts)
