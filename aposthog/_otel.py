"""
OpenTelemetry spans for every logical call and every conversation stream.

Installed with the `aposthog[otel]` extra (opentelemetry-api only). The client looks for
the `opentelemetry` package once, without importing it (`aposthog._tracing`); when it is
absent this module is never imported and calls carry no observer at all.

A call is one CLIENT span from its first attempt to its outcome, retries and waits
included, named and attributed after OpenTelemetry's HTTP client conventions
(`{method} {url.template}`, `http.request.method`, `server.address`, `server.port`,
`http.response.status_code`, `error.type`) plus `aposthog.attempts` and the seconds spent
waiting to retry and for rate limits. A conversation stream is one span from opening to
its outcome, with events for the first token and for each re-attach.

Tracing never breaks a call: an exception from OpenTelemetry itself (a span processor,
sampler or exporter of the application's that raises) is logged on the `aposthog` logger
(the first at WARNING, the rest at DEBUG, by class name only) and the call goes on as if
it were not traced, its result or error unchanged. A span it could not end is dropped.

What goes on a span is chosen so that neither the API key nor anything a caller or
PostHog wrote (message content, error details, query parameters) is ever recorded: only
the method, the route template, the server, status codes, exception class names, counts
and durations.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ._errors import APIStatusError
from ._observe import IGNORED
from ._version import __version__

if TYPE_CHECKING:
    from ._observe import CallObserver, StreamObserver, StreamOutcome, WaitReason

__all__ = ["TracingObserver", "error_type", "url_template"]

logger = logging.getLogger("aposthog")

# Span and attribute names. The HTTP ones are OpenTelemetry's (stable) conventions.
METHOD = "http.request.method"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
STATUS_CODE = "http.response.status_code"
ERROR_TYPE = "error.type"
URL_TEMPLATE = "url.template"
ATTEMPTS = "aposthog.attempts"
RETRY_WAIT = "aposthog.retry.wait_seconds"
RATE_LIMIT_WAIT = "aposthog.rate_limit.wait_seconds"
CONVERSATION_ID = "aposthog.conversation.id"
STREAM_EVENTS = "aposthog.stream.events"
STREAM_BYTES = "aposthog.stream.bytes"
STREAM_OUTCOME = "aposthog.stream.outcome"
STREAM_REATTACHES = "aposthog.stream.reattaches"
FIRST_TOKEN_SECONDS = "aposthog.stream.first_token_seconds"
FIRST_TOKEN_EVENT = "aposthog.first_token"
REATTACH_EVENT = "aposthog.reattach"
WAIT_EVENT = "aposthog.wait"

#: The global providers that record nothing: the placeholder before an SDK is set up
#: (it delegates to the provider set later), and the explicit no-op one.
_SILENT_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)

#: Whether opentelemetry-api keeps its global provider in `trace._TRACER_PROVIDER`, None
#: until one is set: `get_tracer_provider()`'s own first test, which `_silent()` makes
#: without the environment lookup that follows it on every call until a provider is set
#: (10,000 instructions: a sixth of what the client adds to a small call).
_GLOBAL_SLOT = hasattr(trace, "_TRACER_PROVIDER")

_PREFIX = "/api/environments/{project_id}/"
_STREAM_ROUTE = "conversations"


def url_template(route: str) -> str:
    """`batch_exports/{id}` → `/api/environments/{project_id}/batch_exports/{id}/`."""
    return f"{_PREFIX}{route.strip('/')}/"


def error_type(error: BaseException, *, answered: int | None = -1) -> str:
    """
    `error.type`: the status code of a status error whose status PostHog `answered` (the
    call's last status; -1: not known, taken as answered), else the exception's class
    name: a `RateLimitError` the client's own limiter raised before sending anything (at
    all, or after an answer of another status) is no HTTP 429.
    """
    if isinstance(error, APIStatusError) and answered in (-1, error.status):
        return str(error.status)
    cls = type(error)
    module = cls.__module__
    if module.startswith("aposthog."):
        module = "aposthog"  # where users import it from
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


_warned = False


def _tracing_failed(error: Exception, doing: str) -> None:
    """OpenTelemetry raised while `doing`: said once at WARNING, then at DEBUG."""
    global _warned
    level = logging.DEBUG if _warned else logging.WARNING
    _warned = True
    # The class alone, as on a span: the message is the application's or its SDK's.
    logger.log(
        level,
        "tracing failed: %s raised while %s (a span processor, sampler or exporter of "
        "OpenTelemetry); the call itself is unaffected",
        error_type(error),
        doing,
    )


_SERVERS_KEPT = 64
"""How many base URLs' parsed `server.*` attributes the shared observer keeps (oldest go)."""


class _Server:
    """`server.address` and `server.port` of a base URL, parsed once (for the last 64)."""

    __slots__ = ("address", "port")

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.address = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)


class _CallSpan:
    """One call's span: attempts, waits (timed until the next attempt), and its end."""

    __slots__ = ("_span", "_wait_reason", "_wait_started", "attempts", "waited")

    def __init__(self, span: Span) -> None:
        self._span = span
        self.attempts = 0
        self.waited = {"retry": 0.0, "rate_limit": 0.0}
        self._wait_reason: str | None = None
        self._wait_started = 0.0

    def _close_wait(self) -> None:
        # A wait lasts until the next attempt, the next wait or the end: measured, since
        # a rate limiter's announced seconds are an estimate.
        if self._wait_reason is not None:
            self.waited[self._wait_reason] += time.monotonic() - self._wait_started
            self._wait_reason = None

    def attempt(self, number: int) -> None:
        self._close_wait()
        self.attempts += 1

    def unsent(self) -> None:
        self.attempts -= 1

    def wait(
        self, reason: WaitReason, seconds: float, attempt: int, error: BaseException | None
    ) -> None:
        self._close_wait()
        self._wait_reason = reason
        self._wait_started = time.monotonic()
        attributes: dict[str, Any] = {
            "aposthog.wait.reason": reason,
            "aposthog.wait.seconds": seconds,
            "aposthog.wait.attempt": attempt,
        }
        if error is not None:
            attributes[ERROR_TYPE] = error_type(error)
        try:
            self._span.add_event(WAIT_EVENT, attributes)
        except Exception as exc:  # tracing never breaks a call (see the module's docstring)
            _tracing_failed(exc, "recording a wait")

    def end(self, status: int | None, error: BaseException | None, attempts: int) -> None:
        try:
            self._record(status, error)
        except Exception as exc:
            _tracing_failed(exc, "recording a call's end")
        self._finish()

    def _record(self, status: int | None, error: BaseException | None) -> None:
        span = self._span
        if status is not None:
            span.set_attribute(STATUS_CODE, status)
        if error is None:
            return
        if isinstance(error, asyncio.CancelledError):  # aiohttp runs on asyncio only
            span.set_attribute(ERROR_TYPE, "cancelled")
            return
        kind = error_type(error, answered=status)
        span.set_attribute(ERROR_TYPE, kind)
        # The class alone: an error's message may quote what was sent or answered.
        span.set_status(Status(StatusCode.ERROR, kind))

    def _finish(self) -> None:
        self._close_wait()
        span = self._span
        try:
            span.set_attributes(
                {
                    ATTEMPTS: self.attempts,
                    RETRY_WAIT: self.waited["retry"],
                    RATE_LIMIT_WAIT: self.waited["rate_limit"],
                }
            )
        except Exception as exc:
            _tracing_failed(exc, "recording a span's counts")
        try:
            span.end()
        except Exception as exc:
            _tracing_failed(exc, "ending a span")


class _StreamSpan(_CallSpan):
    """
    A stream's span. The opening call (and each re-attach's call) report attempts, waits
    and their end into it; the span itself ends with the stream's outcome.
    """

    __slots__ = ("_error", "_opened", "_status", "bytes", "events", "reattaches")

    def __init__(self, span: Span) -> None:
        super().__init__(span)
        self._opened = time.monotonic()
        self._status: int | None = None
        self._error: BaseException | None = None
        self.events = 0
        self.bytes = 0
        self.reattaches = 0

    def end(self, status: int | None, error: BaseException | None, attempts: int) -> None:
        # A connection that dropped and was re-attached is not the stream's outcome:
        # only the last opening call's end counts, judged when the outcome is known.
        self._status, self._error = status, error

    def first_token(self) -> None:
        seconds = time.monotonic() - self._opened
        try:
            self._span.set_attribute(FIRST_TOKEN_SECONDS, seconds)
            self._span.add_event(FIRST_TOKEN_EVENT)
        except Exception as exc:
            _tracing_failed(exc, "recording a stream's first token")

    def reattach(self, number: int) -> None:
        self.reattaches += 1
        try:
            self._span.add_event(REATTACH_EVENT, {"aposthog.reattach.number": number})
        except Exception as exc:
            _tracing_failed(exc, "recording a re-attach")

    def received(self, events: int, size: int) -> None:
        self.events += events
        self.bytes += size

    def outcome(self, outcome: StreamOutcome) -> None:
        try:
            self._record_outcome(outcome)
        except Exception as exc:
            _tracing_failed(exc, "recording a stream's outcome")
        self._finish()

    def _record_outcome(self, outcome: StreamOutcome) -> None:
        span = self._span
        span.set_attributes(
            {
                STREAM_OUTCOME: outcome,
                STREAM_EVENTS: self.events,
                STREAM_BYTES: self.bytes,
                STREAM_REATTACHES: self.reattaches,
            }
        )
        if self._status is not None:
            span.set_attribute(STATUS_CODE, self._status)
        if outcome == "cancelled":
            span.set_attribute(ERROR_TYPE, "cancelled")
        elif outcome == "failed":
            error = self._error
            usable = error is not None and not isinstance(error, asyncio.CancelledError)
            kind = "failed"
            if usable and error is not None:
                kind = error_type(error, answered=self._status)
            span.set_attribute(ERROR_TYPE, kind)
            span.set_status(Status(StatusCode.ERROR, kind))


class TracingObserver:
    """
    The `Observer` that turns calls and streams into spans of the global tracer (or of
    the provider given).

    While no SDK is configured globally (no `trace.set_tracer_provider()` yet), a call
    costs one look at the global provider and nothing else: no span, no attributes. The
    look is made per call, so a provider set up after the client was created is used
    from the next call on.
    """

    __slots__ = ("_servers", "_tracer", "_watch_global")

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("aposthog", __version__, tracer_provider)
        # Whether the global provider may still be a silent one. The global provider is
        # set at most once, so once a real one is seen it is never looked at again.
        self._watch_global = tracer_provider is None
        self._servers: dict[str, _Server] = {}

    def _silent(self) -> bool:
        """Whether the global provider is one that records nothing (no SDK set up yet)."""
        if not self._watch_global:
            return False
        # `get_tracer()` in `__init__` loaded any provider the environment names: an
        # empty global slot now means that nothing has been set up.
        if _GLOBAL_SLOT and trace._TRACER_PROVIDER is None:
            return True
        if isinstance(trace.get_tracer_provider(), _SILENT_PROVIDERS):
            return True
        self._watch_global = False
        return False

    def _server(self, base_url: str) -> _Server:
        servers = self._servers
        server = servers.get(base_url)
        if server is None:
            if len(servers) >= _SERVERS_KEPT:
                # One observer serves every client of the process: a worker that makes a
                # client per tenant's PostHog would keep each host it ever met.
                del servers[next(iter(servers))]
            server = servers[base_url] = _Server(base_url)
        return server

    def _start(self, method: str, route: str, base_url: str) -> Span:
        server = self._server(base_url)
        template = url_template(route)
        return self._tracer.start_span(
            f"{method} {template}",
            kind=SpanKind.CLIENT,
            attributes={
                METHOD: method,
                URL_TEMPLATE: template,
                SERVER_ADDRESS: server.address,
                SERVER_PORT: server.port,
            },
        )

    def call(self, method: str, route: str, server: str, target: str = "") -> CallObserver:
        if self._silent():
            return IGNORED
        try:
            span = self._start(method, route, server)
            if not span.is_recording():  # a no-op provider, or not sampled: nothing to record
                span.end()
                return IGNORED
        except Exception as exc:  # tracing never breaks a call: this one goes untraced
            _tracing_failed(exc, "starting a span")
            return IGNORED
        return _CallSpan(span)

    def stream(self, conversation_id: str, server: str) -> StreamObserver:
        if self._silent():
            return IGNORED
        try:
            span = self._start("POST", _STREAM_ROUTE, server)
            if not span.is_recording():
                span.end()
                return IGNORED
            span.set_attribute(CONVERSATION_ID, conversation_id)
        except Exception as exc:
            _tracing_failed(exc, "starting a span")
            return IGNORED
        return _StreamSpan(span)
