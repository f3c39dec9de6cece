"""
Watching calls and streams from outside: the `Observer` seam and the public `on_wait` hook.

The request pipeline reports what happens to each logical call (its attempts, its waits,
how it ended) and to each conversation stream (first token, re-attaches, how much
arrived, how it ended) to an observer. A client's starts as the DEBUG log
(`_debug_log`) around tracing: unless DEBUG is on for the `aposthog` logger or a tracer
records, it hands each call none, and the pipeline then pays one `is None` test per
call: no objects are made, no clocks are read. Tracing (OpenTelemetry spans, metrics)
plugs in here; so does `Client(on_wait=...)`, which is the one piece of it that is
public.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Literal, Protocol

import attrs

# At run time, not only for type checkers: `Wait.error`'s annotation must resolve
# (`typing.get_type_hints`, cattrs), for an `on_wait` that passes the wait on as JSON.
from ._errors import ConfigurationTypeError, PostHogError

__all__ = [
    "IGNORED",
    "CallObserver",
    "ForwardingCall",
    "ForwardingStream",
    "Observer",
    "StreamObserver",
    "StreamOutcome",
    "Wait",
    "WaitCallback",
    "WaitReason",
    "wait_hook",
]

WaitReason = Literal["retry", "rate_limit"]
StreamOutcome = Literal["done", "failed", "cancelled", "incomplete"]


@attrs.frozen
class Wait:
    """
    A pause the client is about to take before sending (given to `Client(on_wait=...)`).

    Attributes:
        reason: `"retry"` — backing off after a failed attempt (a dropped connection, a
            502/503/504); `"rate_limit"` — PostHog answered 429 and named the wait, or
            the client's own rate limiter holds the request until its window has room.
        seconds: how long the wait will be (for a rate limiter, its estimate).
        attempt: the number of the attempt that comes after the wait (2 for the first
            retry); for a rate limiter's wait, the attempt it holds back.
        error: the failure that caused a retry, or None for a rate limiter's wait.
    """

    reason: WaitReason
    seconds: float
    attempt: int
    error: PostHogError | None = None


WaitCallback = Callable[[Wait], object]
"""`on_wait`: a plain (sync) function; it runs on the event loop, so it must not block."""


class CallObserver(Protocol):
    """What one logical call (every attempt of one request) reports."""

    def attempt(self, number: int) -> None:
        """Attempt `number` (1-based) is about to be sent."""

    def unsent(self) -> None:
        """The attempt last begun sent nothing after all: it is no attempt."""

    def wait(
        self, reason: WaitReason, seconds: float, attempt: int, error: PostHogError | None
    ) -> None:
        """The call will wait `seconds` before attempt `attempt`."""

    def end(self, status: int | None, error: BaseException | None, attempts: int) -> None:
        """The call ended: with a status (success or the raised error's) or an error."""


class StreamObserver(CallObserver, Protocol):
    """What a conversation stream reports, beyond the attempts of opening it."""

    def first_token(self) -> None:
        """The first event of the answer arrived."""

    def reattach(self, number: int) -> None:
        """Re-attach number `number` (1-based, since the last progress) is starting."""

    def received(self, events: int, size: int) -> None:
        """`events` events in `size` bytes arrived."""

    def outcome(self, outcome: StreamOutcome) -> None:
        """How the stream ended, from the caller's point of view."""


class Observer(Protocol):
    """Makes an observer for each logical call and each stream."""

    def call(self, method: str, route: str, server: str, target: str = "") -> CallObserver:
        """
        A call of `method` on `route` (a path template such as `batch_exports/{id}`);
        `target` is the request's path, when known.
        """

    def stream(self, conversation_id: str, server: str) -> StreamObserver:
        """A conversation stream (opened with `POST conversations/`)."""


class _Ignored:
    """
    The observer of a call or stream nobody records (say, tracing without a configured
    OpenTelemetry SDK): every report is dropped at once. A view that gets it for a call
    carries no observer for that call at all (see `Api.call`).
    """

    __slots__ = ()

    def attempt(self, number: int) -> None:
        pass

    def unsent(self) -> None:
        pass

    def wait(
        self, reason: WaitReason, seconds: float, attempt: int, error: PostHogError | None
    ) -> None:
        pass

    def end(self, status: int | None, error: BaseException | None, attempts: int) -> None:
        pass

    def first_token(self) -> None:
        pass

    def reattach(self, number: int) -> None:
        pass

    def received(self, events: int, size: int) -> None:
        pass

    def outcome(self, outcome: StreamOutcome) -> None:
        pass


IGNORED: StreamObserver = _Ignored()
"""The shared do-nothing observer (an `Observer` may return it for a call or a stream)."""


class ForwardingCall:
    """A call's observer that passes every report on to `inner` (if any): a base to extend."""

    __slots__ = ("_inner",)

    def __init__(self, inner: CallObserver | None) -> None:
        self._inner = inner

    def attempt(self, number: int) -> None:
        if self._inner is not None:
            self._inner.attempt(number)

    def unsent(self) -> None:
        if self._inner is not None:
            self._inner.unsent()

    def wait(
        self, reason: WaitReason, seconds: float, attempt: int, error: PostHogError | None
    ) -> None:
        if self._inner is not None:
            self._inner.wait(reason, seconds, attempt, error)

    def end(self, status: int | None, error: BaseException | None, attempts: int) -> None:
        if self._inner is not None:
            self._inner.end(status, error, attempts)


class ForwardingStream(ForwardingCall):
    """
    The same for a stream, its stream-only reports included (to `stream`: a call's
    observer has none, and its stream-only reports are never made).
    """

    __slots__ = ("_stream",)

    def __init__(self, inner: CallObserver | None, stream: StreamObserver | None) -> None:
        super().__init__(inner)
        self._stream = stream

    def first_token(self) -> None:
        if self._stream is not None:
            self._stream.first_token()

    def reattach(self, number: int) -> None:
        if self._stream is not None:
            self._stream.reattach(number)

    def received(self, events: int, size: int) -> None:
        if self._stream is not None:
            self._stream.received(events, size)

    def outcome(self, outcome: StreamOutcome) -> None:
        if self._stream is not None:
            self._stream.outcome(outcome)


class _WaitHook(ForwardingStream):
    """Calls `on_wait` before every wait of a call or a stream, and passes everything on."""

    __slots__ = ("_callback",)

    def __init__(
        self, callback: WaitCallback, inner: CallObserver | None, stream: StreamObserver | None
    ) -> None:
        super().__init__(inner, stream)
        self._callback = callback

    def wait(
        self, reason: WaitReason, seconds: float, attempt: int, error: PostHogError | None
    ) -> None:
        # The hook first: one that raises ends the call there, and the wait it would have
        # heard of is never taken, so the observers behind it (a span, the debug log)
        # never hear of it either.
        result = self._callback(Wait(reason=reason, seconds=seconds, attempt=attempt, error=error))
        if inspect.isawaitable(result) and not asyncio.isfuture(result):
            # A plain function returning a coroutine (`lambda w: notify(w)`): it would
            # never run. Said as for an `async def` one, the coroutine closed unawaited.
            # A task (or future) it returns is work it scheduled, as advised: it runs.
            close = getattr(result, "close", None)
            if callable(close):
                close()
            raise ConfigurationTypeError(_ASYNC_ON_WAIT)
        super().wait(reason, seconds, attempt, error)


class _WaitHookObserver:
    """An `Observer` that adds `on_wait` to every call and stream of another (or none)."""

    __slots__ = ("_callback", "_inner")

    def __init__(self, callback: WaitCallback, inner: Observer | None) -> None:
        self._callback = callback
        self._inner = inner

    def call(self, method: str, route: str, server: str, target: str = "") -> CallObserver:
        inner = None if self._inner is None else self._inner.call(method, route, server, target)
        return _WaitHook(self._callback, inner, None)

    def stream(self, conversation_id: str, server: str) -> StreamObserver:
        inner = None if self._inner is None else self._inner.stream(conversation_id, server)
        return _WaitHook(self._callback, inner, inner)


def wait_hook(callback: WaitCallback | None, inner: Observer | None) -> Observer | None:
    """The observer a client view uses: `inner`, plus `callback` before every wait."""
    if callback is None:
        return inner
    if not callable(callback):
        raise ConfigurationTypeError(f"on_wait must be a function, got {type(callback).__name__}")
    if inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)  # noqa: B004 (an object whose call is async)
    ):
        # Called in passing, never awaited: an async one would never run.
        raise ConfigurationTypeError(_ASYNC_ON_WAIT)
    return _WaitHookObserver(callback, inner)


_ASYNC_ON_WAIT = (
    "on_wait must be a plain function that returns no coroutine (it is called, not "
    "awaited): schedule async work from it, e.g. with asyncio.get_running_loop().create_task"
)
