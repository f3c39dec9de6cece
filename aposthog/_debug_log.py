"""
A DEBUG line on the `aposthog` logger for every call and every conversation stream.

    aposthog: GET /api/environments/1/batch_exports/: 200 in 41.2 ms
    aposthog: POST /api/environments/1/batch_exports/: 400 BadRequestError in 9.8 ms
    aposthog: GET /api/environments/1/customer_profile_configs/: 200 in 1.4 s, 3 attempts
    aposthog: conversation 0190…: done in 12.5 s, 412 events (96.1 KB), first token
        after 820 ms, 1 re-attach

It is an observer (see `_observe`) around the tracing one: each call asks the logger
whether DEBUG is on (the logging module caches the answer), and when it is not the call
gets the tracing observer alone, or none, as if this module did not exist. A line names
the method, the path (never the query, the host or a header, so never the key), the
status or the error's class, the time from the call's start to its end, and the
attempts; the retries and waits themselves are logged as they happen (INFO, by the
pipeline and the rate limiter).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ._errors import APIStatusError
from ._observe import IGNORED, ForwardingCall, ForwardingStream

if TYPE_CHECKING:
    from ._observe import CallObserver, Observer, StreamObserver, StreamOutcome

__all__ = ["DebugLog"]

logger = logging.getLogger("aposthog")
_DEBUG = logging.DEBUG


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _ended(status: int | None, error: BaseException | None) -> str:
    if error is None:
        return str(status)
    if isinstance(error, APIStatusError) and status is not None:
        return f"{status} {type(error).__name__}"
    return type(error).__name__  # no status: no response had it (the limiter's refusal)


class DebugLog:
    """The `Observer` every client starts with: DEBUG lines, then `inner` (tracing)."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Observer | None) -> None:
        self._inner = inner

    def call(self, method: str, route: str, server: str, target: str = "") -> CallObserver:
        tracer = self._inner
        inner = IGNORED if tracer is None else tracer.call(method, route, server, target)
        if not logger.isEnabledFor(_DEBUG):
            return inner
        return _CallLine(f"{method} {target or route}", None if inner is IGNORED else inner)

    def stream(self, conversation_id: str, server: str) -> StreamObserver:
        tracer = self._inner
        inner = IGNORED if tracer is None else tracer.stream(conversation_id, server)
        if not logger.isEnabledFor(_DEBUG):
            return inner
        return _StreamLine(conversation_id, None if inner is IGNORED else inner)


class _CallLine(ForwardingCall):
    """One call: its line is written when it ends."""

    __slots__ = ("_started", "_what")

    def __init__(self, what: str, inner: CallObserver | None) -> None:
        super().__init__(inner)
        self._what = what
        self._started = time.monotonic()

    def end(self, status: int | None, error: BaseException | None, attempts: int) -> None:
        super().end(status, error, attempts)
        took = _duration(time.monotonic() - self._started)
        more = f", {attempts} attempts" if attempts > 1 else ", not sent" if not attempts else ""
        logger.debug("%s: %s in %s%s", self._what, _ended(status, error), took, more)


class _StreamLine(ForwardingStream):
    """A conversation stream: its line is written when its outcome is known."""

    __slots__ = ("_bytes", "_ended", "_events", "_first", "_reattaches", "_started", "_what")

    def __init__(self, conversation_id: str, inner: StreamObserver | None) -> None:
        super().__init__(inner, inner)
        self._what = f"conversation {conversation_id}"
        self._started = time.monotonic()
        self._events = self._bytes = self._reattaches = 0
        self._first: float | None = None
        self._ended = ""

    def end(self, status: int | None, error: BaseException | None, attempts: int) -> None:
        # Opening (and re-attaching) ended: how, for the line the outcome writes.
        super().end(status, error, attempts)
        if error is not None:
            self._ended = f" ({_ended(status, error)})"

    def first_token(self) -> None:
        if self._first is None:
            self._first = time.monotonic()
        super().first_token()

    def reattach(self, number: int) -> None:
        self._reattaches += 1
        super().reattach(number)

    def received(self, events: int, size: int) -> None:
        self._events += events
        self._bytes += size
        super().received(events, size)

    def outcome(self, outcome: StreamOutcome) -> None:
        super().outcome(outcome)
        took = _duration(time.monotonic() - self._started)
        parts = [f"{self._events} events ({self._bytes / 1000:.1f} KB)"]
        if self._first is not None:
            parts.append(f"first token after {_duration(self._first - self._started)}")
        if self._reattaches:
            plural = "es" if self._reattaches > 1 else ""
            parts.append(f"{self._reattaches} re-attach{plural}")
        logger.debug("%s: %s%s in %s, %s", self._what, outcome, self._ended, took, ", ".join(parts))
