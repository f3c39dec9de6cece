"""
OpenTelemetry spans (the `aposthog[otel]` extra), read back with opentelemetry-sdk's
in-memory exporter: the observer alone here, the client end to end in test_otel_client.py.

nox installs the extra and the SDK for the test sessions, so under CI these tests always
run; a checkout without the SDK skips them only outside CI.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping

import anyio
import pytest

if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    import opentelemetry.sdk  # noqa: F401  (CI installs it: missing is a failure, not a skip)
else:
    pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import aposthog
from aposthog._otel import TracingObserver, error_type, url_template


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def observer(exporter: InMemorySpanExporter) -> TracingObserver:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return TracingObserver(provider)


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def _number(attributes: Mapping[str, object], key: str) -> float:
    """The attribute `key`, a number (OpenTelemetry types attribute values as a union)."""
    value = attributes[key]
    assert isinstance(value, (int, float))
    return value


def test_url_template_is_the_environment_path() -> None:
    """Routes become PostHog's path templates, with the trailing slash PostHog documents."""
    assert "/api/environments/{project_id}/batch_exports/" == url_template("batch_exports")
    assert "/api/environments/{project_id}/batch_exports/{id}/runs/{run_id}/" == url_template(
        "batch_exports/{id}/runs/{run_id}"
    )


def test_error_type_names_the_status_or_the_class() -> None:
    """A status error is its status code; others their class, as users import it."""
    assert "404" == error_type(aposthog.NotFoundError(status=404, detail="Not found."))
    assert "aposthog.APITimeoutError" == error_type(aposthog.APITimeoutError("slow"))
    assert "ValueError" == error_type(ValueError("x"))


def test_a_call_is_one_client_span_after_the_http_conventions(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """Name, kind and attributes of a call that succeeded at once."""
    call = observer.call("GET", "batch_exports", "https://eu.posthog.com")
    call.attempt(1)
    assert not exporter.get_finished_spans()  # open until the call ends
    call.end(200, None, 1)
    span = _only(exporter)
    assert "GET /api/environments/{project_id}/batch_exports/" == span.name
    assert SpanKind.CLIENT == span.kind
    assert StatusCode.UNSET == span.status.status_code
    assert {
        "http.request.method": "GET",
        "url.template": "/api/environments/{project_id}/batch_exports/",
        "server.address": "eu.posthog.com",
        "server.port": 443,
        "http.response.status_code": 200,
        "aposthog.attempts": 1,
        "aposthog.retry.wait_seconds": 0.0,
        "aposthog.rate_limit.wait_seconds": 0.0,
    } == dict(span.attributes or {})


def test_waits_are_measured_per_reason_until_the_next_attempt(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """Time from a wait to the next attempt counts for that wait's reason; events say why."""
    call = observer.call("POST", "customer_profile_configs", "http://127.0.0.1:8000")
    call.attempt(1)
    error = aposthog.InternalServerError(status=503, detail="busy")
    call.wait("retry", 0.02, 2, error)
    time.sleep(0.02)
    call.attempt(2)
    call.wait("rate_limit", 0.03, 3, None)
    time.sleep(0.03)
    call.attempt(3)
    call.end(201, None, 3)
    span = _only(exporter)
    attributes = dict(span.attributes or {})
    assert 8000 == attributes["server.port"]
    assert 3 == attributes["aposthog.attempts"]
    assert 0.02 <= _number(attributes, "aposthog.retry.wait_seconds") < 0.03 + 1
    assert 0.03 <= _number(attributes, "aposthog.rate_limit.wait_seconds") < 0.03 + 1
    assert [
        {
            "aposthog.wait.reason": "retry",
            "aposthog.wait.seconds": 0.02,
            "aposthog.wait.attempt": 2,
            "error.type": "503",
        },
        {
            "aposthog.wait.reason": "rate_limit",
            "aposthog.wait.seconds": 0.03,
            "aposthog.wait.attempt": 3,
        },
    ] == [dict(e.attributes or {}) for e in span.events]
    assert {"aposthog.wait"} == {e.name for e in span.events}


def test_each_wait_is_counted_once_and_ends_at_the_next_attempt(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """Two retry waits add up; the time after the last attempt is no wait at all."""
    call = observer.call("GET", "batch_exports", "https://us.posthog.com")
    error = aposthog.InternalServerError(status=503, detail="busy")
    call.attempt(1)
    longest = 0.0
    for attempt in (2, 3):
        before = time.monotonic()
        call.wait("retry", 0.02, attempt, error)
        time.sleep(0.02)
        call.attempt(attempt)
        longest += time.monotonic() - before
    time.sleep(0.1)  # the last attempt's exchange: not waiting
    call.end(200, None, 3)
    attributes = dict(_only(exporter).attributes or {})
    assert 3 == attributes["aposthog.attempts"]
    assert 0.04 <= _number(attributes, "aposthog.retry.wait_seconds") <= longest
    assert 0.0 == attributes["aposthog.rate_limit.wait_seconds"]


def test_a_call_ended_while_it_waits_counts_the_wait(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """Cancelled during a rate limit's wait: the time waited until then is recorded."""
    call = observer.call("GET", "batch_exports", "https://us.posthog.com")
    call.attempt(1)
    before = time.monotonic()
    call.wait("rate_limit", 1.0, 2, None)
    time.sleep(0.03)
    call.end(None, asyncio.CancelledError(), 1)
    waited = time.monotonic() - before
    attributes = dict(_only(exporter).attributes or {})
    assert 0.03 <= _number(attributes, "aposthog.rate_limit.wait_seconds") <= waited
    assert 0.0 == attributes["aposthog.retry.wait_seconds"]
    assert "cancelled" == attributes["error.type"]


def test_a_failed_call_has_error_type_and_error_status_without_the_message(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """The status description is the error type alone: a detail may quote what was sent."""
    call = observer.call("GET", "batch_exports/{id}", "https://us.posthog.com")
    call.attempt(1)
    call.end(404, aposthog.NotFoundError(status=404, detail="secret detail"), 1)
    span = _only(exporter)
    assert StatusCode.ERROR == span.status.status_code
    assert "404" == span.status.description
    assert "404" == (span.attributes or {})["error.type"]
    assert 404 == (span.attributes or {})["http.response.status_code"]
    assert [] == list(span.events)


def test_a_connection_failure_has_no_status_code(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """No answer: `error.type` is the exception class and no status code is set."""
    call = observer.call("GET", "batch_exports", "https://us.posthog.com")
    call.end(None, aposthog.APIConnectionError("refused"), 0)
    attributes = dict(_only(exporter).attributes or {})
    assert "aposthog.APIConnectionError" == attributes["error.type"]
    assert "http.response.status_code" not in attributes


@pytest.mark.anyio
async def test_a_cancelled_call_is_not_an_error(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """Cancellation is the caller's choice: `error.type` says so, the status stays unset."""
    call = observer.call("GET", "batch_exports", "https://us.posthog.com")
    call.attempt(1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class() as exc:
            call.end(None, exc, 1)
            raise
    span = _only(exporter)
    assert "cancelled" == (span.attributes or {})["error.type"]
    assert StatusCode.UNSET == span.status.status_code


def test_a_stream_span_ends_with_its_outcome(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """Opening calls report into the stream's span, which ends only with the outcome."""
    stream = observer.stream("0b8a2c38-8c5e-4b0e-9d62-3f7b9a0d1e21", "https://us.posthog.com")
    stream.attempt(1)
    stream.received(2, 300)
    stream.first_token()
    stream.received(3, 200)
    stream.end(None, aposthog.APIConnectionError("dropped"), 1)
    stream.reattach(1)
    stream.attempt(1)
    stream.received(5, 500)
    stream.end(200, None, 1)
    assert not exporter.get_finished_spans()
    stream.outcome("done")
    span = _only(exporter)
    assert "POST /api/environments/{project_id}/conversations/" == span.name
    attributes = dict(span.attributes or {})
    assert {
        "aposthog.stream.outcome": "done",
        "aposthog.stream.events": 10,
        "aposthog.stream.bytes": 1000,
        "aposthog.stream.reattaches": 1,
        "aposthog.attempts": 2,
        "aposthog.conversation.id": "0b8a2c38-8c5e-4b0e-9d62-3f7b9a0d1e21",
        "http.response.status_code": 200,
    }.items() <= attributes.items()
    assert _number(attributes, "aposthog.stream.first_token_seconds") >= 0
    assert ["aposthog.first_token", "aposthog.reattach"] == [e.name for e in span.events]
    assert StatusCode.UNSET == span.status.status_code  # the drop was recovered from
    assert "error.type" not in attributes


def test_a_streams_first_token_is_timed_from_its_opening(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """`first_token_seconds` is the time from opening the stream to its first token."""
    before = time.monotonic()
    stream = observer.stream("0b8a2c38-8c5e-4b0e-9d62-3f7b9a0d1e21", "https://us.posthog.com")
    stream.attempt(1)
    time.sleep(0.02)
    stream.first_token()
    elapsed = time.monotonic() - before
    stream.end(200, None, 1)
    stream.outcome("done")
    seconds = _number(_only(exporter).attributes or {}, "aposthog.stream.first_token_seconds")
    assert 0.02 <= seconds <= elapsed


def test_each_reattach_event_carries_its_number(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """Numbers start over after progress; the span counts every re-attach."""
    stream = observer.stream("0b8a2c38-8c5e-4b0e-9d62-3f7b9a0d1e21", "https://us.posthog.com")
    stream.attempt(1)
    stream.reattach(1)
    stream.reattach(2)
    stream.received(1, 10)
    stream.reattach(1)
    stream.end(200, None, 1)
    stream.outcome("done")
    span = _only(exporter)
    assert [1, 2, 1] == [
        (e.attributes or {})["aposthog.reattach.number"]
        for e in span.events
        if e.name == "aposthog.reattach"
    ]
    assert 3 == (span.attributes or {})["aposthog.stream.reattaches"]


@pytest.mark.parametrize(
    ("outcome", "error", "status", "kind"),
    [
        ("failed", None, StatusCode.ERROR, "failed"),
        (
            "failed",
            aposthog.APITimeoutError("idle"),
            StatusCode.ERROR,
            "aposthog.APITimeoutError",
        ),
        ("cancelled", None, StatusCode.UNSET, "cancelled"),
        # A failed answer whose last error is a cancellation is typed by the outcome.
        ("failed", asyncio.CancelledError(), StatusCode.ERROR, "failed"),
    ],
)
def test_stream_outcomes_and_span_status(
    observer: TracingObserver,
    exporter: InMemorySpanExporter,
    outcome: str,
    error: BaseException | None,
    status: StatusCode,
    kind: str,
) -> None:
    """A failed answer is an error (typed by what broke it); a cancelled one is not."""
    stream = observer.stream("0b8a2c38-8c5e-4b0e-9d62-3f7b9a0d1e21", "https://us.posthog.com")
    stream.attempt(1)
    stream.end(200 if error is None else None, error, 1)
    stream.outcome(outcome)  # type: ignore[arg-type]
    span = _only(exporter)
    assert outcome == (span.attributes or {})["aposthog.stream.outcome"]
    assert kind == (span.attributes or {})["error.type"]
    assert status == span.status.status_code


def test_an_answer_left_unread_is_incomplete_not_an_error(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """The caller stopped reading (break, aclose): the outcome says so, without an error."""
    stream = observer.stream("0b8a2c38-8c5e-4b0e-9d62-3f7b9a0d1e21", "https://us.posthog.com")
    stream.attempt(1)
    stream.end(200, None, 1)
    stream.outcome("incomplete")
    span = _only(exporter)
    assert "incomplete" == (span.attributes or {})["aposthog.stream.outcome"]
    assert "error.type" not in (span.attributes or {})
    assert StatusCode.UNSET == span.status.status_code


def test_a_span_nobody_records_costs_one_shared_observer() -> None:
    """Without an SDK (or when not sampled) every call gets the same do-nothing observer."""
    from opentelemetry.trace import NoOpTracerProvider

    observer = TracingObserver(NoOpTracerProvider())
    first = observer.call("GET", "batch_exports", "https://us.posthog.com")
    stream = observer.stream("0b8a2c38-8c5e-4b0e-9d62-3f7b9a0d1e21", "https://us.posthog.com")
    assert first is stream
    first.attempt(1)
    first.wait("retry", 0.1, 2, None)
    first.end(200, None, 1)
    stream.first_token()
    stream.reattach(1)
    stream.received(1, 10)
    stream.outcome("done")


def test_the_servers_of_clients_gone_are_not_kept_for_good(
    observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    """
    Every client of the process shares one `TracingObserver` (`default_observer()`), and
    it keeps the parsed `server.address`/`server.port` of each base URL it has seen: a
    worker that makes a client per tenant's self-hosted PostHog (each closed after its
    job) keeps one entry per host it ever talked to, for as long as it runs.
    """

    def calls(first: int, last: int) -> None:
        for n in range(first, last):
            call = observer.call("GET", "batch_exports", f"https://posthog-{n}.example.com")
            call.attempt(1)
            call.end(200, None, 1)

    calls(0, 200)
    after_200 = len(observer._servers)
    calls(200, 400)
    assert len(exporter.get_finished_spans()) == 400
    assert len(observer._servers) <= max(after_200, 64), "grows with every host seen"


def test_a_provider_given_is_used_while_no_global_one_is_set() -> None:
    """An explicit provider records even though the global one is still the placeholder."""
    import subprocess
    import sys

    script = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from aposthog._observe import IGNORED\n"
        "from aposthog._otel import TracingObserver\n"
        "assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)\n"
        "observer = TracingObserver(TracerProvider())\n"
        "print(observer.call('GET', 'batch_exports', 'https://h') is not IGNORED)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OTEL_PYTHON_TRACER_PROVIDER"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert 0 == result.returncode, result.stderr
    assert "True" == result.stdout.strip()


@pytest.mark.parametrize(
    ("named", "records"), [(None, False), ("sdk_tracer_provider", True)], ids=["none", "sdk"]
)
def test_a_provider_named_by_the_environment_is_used(named: str | None, records: bool) -> None:
    """
    Until a provider is set, the global tracer records nothing and calls cost no span;
    a provider that `OTEL_PYTHON_TRACER_PROVIDER` names is loaded and records them.
    """
    import subprocess
    import sys

    script = (
        "from aposthog._observe import IGNORED\n"
        "from aposthog._otel import TracingObserver\n"
        "print(TracingObserver().call('GET', 'batch_exports', 'https://h') is not IGNORED)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OTEL_PYTHON_TRACER_PROVIDER"}
    if named is not None:
        env["OTEL_PYTHON_TRACER_PROVIDER"] = named
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert 0 == result.returncode, result.stderr
    assert str(records) == result.stdout.strip()
