"""
The client's OpenTelemetry spans end to end: a client against FakePostHog, the spans read
back with opentelemetry-sdk's in-memory exporter (installed once as the global tracer
provider, recording only while these tests run).

nox installs the `otel` extra and the SDK for the test sessions, so under CI these tests
always run; a checkout without the SDK skips them only outside CI.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anyio
import pytest

if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    import opentelemetry.sdk  # noqa: F401  (CI installs it: missing is a failure, not a skip)
else:
    pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

import aposthog
from aposthog._tracing import default_observer
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

SENTINEL_KEY = "phx_SENTINELKEY0123456789abcdefSENTINEL"
SENTINEL_TEXT = "SENTINEL-MESSAGE: what is the secret plan?"
LIST = "GET /api/environments/{project_id}/batch_exports/"
STREAM = "POST /api/environments/{project_id}/conversations/"


class _Switch(Sampler):
    """Records spans only while a test of this module runs (other tests pay nothing)."""

    on = False

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if not self.on:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "aposthog-tests"


class _Breaker(SpanProcessor):
    """A span processor of the application's that raises, when a test says where."""

    where: str | None = None

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.where == "start":
            raise RuntimeError("SENTINEL-PROCESSOR broke on start")

    def on_end(self, span: Any) -> None:
        if self.where == "end":
            raise RuntimeError("SENTINEL-PROCESSOR broke on end")


_SWITCH = _Switch()
_EXPORTER = InMemorySpanExporter()
_BREAKER = _Breaker()


def _install() -> None:
    # The global provider can be set once per process; if something else set an SDK
    # provider first, export from it too.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider(sampler=_SWITCH))
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    provider.add_span_processor(_BREAKER)


_install()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    _SWITCH.on = True
    try:
        yield _EXPORTER
    finally:
        _SWITCH.on = False
        _EXPORTER.clear()


@pytest.fixture
def fast() -> aposthog.RetryPolicy:
    return aposthog.RetryPolicy(initial_backoff=0.01, max_backoff=0.02, max_retry_after=0.05)


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_list_call_is_one_span(fake: FakePostHog, spans: InMemorySpanExporter) -> None:
    """Awaiting a paginator is one GET span with the HTTP client attributes."""
    async with fake.client() as ph:
        page = await ph.batch_exports.list()
    assert [] == page.results
    (span,) = spans.get_finished_spans()
    assert LIST == span.name
    assert SpanKind.CLIENT == span.kind
    assert StatusCode.UNSET == span.status.status_code
    port = int(fake.url.rsplit(":", 1)[1])
    assert {
        "http.request.method": "GET",
        "url.template": "/api/environments/{project_id}/batch_exports/",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
        "aposthog.attempts": 1,
        "aposthog.retry.wait_seconds": 0.0,
        "aposthog.rate_limit.wait_seconds": 0.0,
    } == _attrs(span)


async def test_each_page_is_a_call_and_spans_nest_under_the_callers(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """Walking three pages makes three spans, children of the span current at the call."""
    async with fake.client() as ph:
        for _ in range(5):
            await ph.customer_profile_configs.create(scope="person")
    spans.clear()
    tracer = trace.get_tracer("tests")
    async with fake.client() as ph:
        with tracer.start_as_current_span("handler") as parent:
            await ph.customer_profile_configs.list(limit=2).to_list()
    pages = _named(spans, "GET /api/environments/{project_id}/customer_profile_configs/")
    assert 3 == len(pages)
    for span in pages:
        assert span.parent is not None
        assert parent.get_span_context().span_id == span.parent.span_id


async def test_a_retried_call_counts_attempts_and_waits(
    fake: FakePostHog, spans: InMemorySpanExporter, fast: aposthog.RetryPolicy
) -> None:
    """A 503 then PostHog's 429: one span, three attempts, both kinds of wait measured."""
    fake.fail_next(1, status=503)
    fake.throttle_next(1, wait=0)
    async with fake.client(retry=fast) as ph:
        await ph.customer_profile_configs.create(scope="person")
    (span,) = _named(spans, "POST /api/environments/{project_id}/customer_profile_configs/")
    attributes = _attrs(span)
    assert 3 == attributes["aposthog.attempts"]
    assert 201 == attributes["http.response.status_code"]
    assert attributes["aposthog.retry.wait_seconds"] > 0
    assert attributes["aposthog.rate_limit.wait_seconds"] >= 0
    assert "error.type" not in attributes
    waits = [_attrs_of(e) for e in span.events if e.name == "aposthog.wait"]
    assert [("retry", "503", 2), ("rate_limit", "429", 3)] == [
        (w["aposthog.wait.reason"], w["error.type"], w["aposthog.wait.attempt"]) for w in waits
    ]
    assert StatusCode.UNSET == span.status.status_code


def _attrs_of(event: Any) -> dict[str, Any]:
    return dict(event.attributes or {})


async def test_a_failed_call_is_an_error_span(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """A 404: status code, `error.type` and an ERROR status, after one attempt."""
    async with fake.client() as ph:
        with pytest.raises(aposthog.NotFoundError):
            await ph.batch_exports.get("0b8a2c38-8c5e-4b0e-9d62-3f7b9a0d1e21")
    (span,) = spans.get_finished_spans()
    assert "GET /api/environments/{project_id}/batch_exports/{id}/" == span.name
    assert StatusCode.ERROR == span.status.status_code
    attributes = _attrs(span)
    assert 404 == attributes["http.response.status_code"]
    assert "404" == attributes["error.type"]
    assert 1 == attributes["aposthog.attempts"]


async def test_a_connection_failure_after_retries_is_an_error_span(
    fake: FakePostHog, spans: InMemorySpanExporter, fast: aposthog.RetryPolicy
) -> None:
    """Every attempt dropped: `error.type` is the exception class, no status code."""
    fake.drop_next(10)
    async with fake.client(retry=fast, max_retries=2) as ph:
        with pytest.raises(aposthog.APIConnectionError):
            await ph.batch_exports.list()
    (span,) = spans.get_finished_spans()
    attributes = _attrs(span)
    assert "aposthog.APIConnectionError" == attributes["error.type"]
    assert "http.response.status_code" not in attributes
    assert 3 == attributes["aposthog.attempts"]
    assert StatusCode.ERROR == span.status.status_code


async def test_a_stream_with_a_reattach(
    fake: FakePostHog, spans: InMemorySpanExporter, fast: aposthog.RetryPolicy
) -> None:
    """A dropped answer: one stream span, a re-attach event, the first token, `done`."""
    # The run's end waits for the re-attach, so the second connection streams it live.
    fake.script_answer(
        "An answer cut once and re-attached.", drop_after=4, delay=0.05, end_after_connections=2
    )
    async with fake.client(retry=fast) as ph:
        stream = ph.conversations.create(SENTINEL_TEXT)
        text = "".join([delta async for delta in stream.text_deltas()])
    assert "An answer cut once and re-attached." == text
    assert 2 == fake.ai_streams.opened  # the re-attach streamed the rest live
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert "done" == attributes["aposthog.stream.outcome"]
    assert 1 == attributes["aposthog.stream.reattaches"]
    assert attributes["aposthog.stream.events"] > 4
    assert attributes["aposthog.stream.bytes"] > len(text)
    assert attributes["aposthog.stream.first_token_seconds"] >= 0
    assert 200 == attributes["http.response.status_code"]
    assert stream.conversation_id == attributes["aposthog.conversation.id"]
    names = [e.name for e in span.events]
    assert "aposthog.first_token" == names[0]
    assert 1 == names.count("aposthog.reattach")
    assert StatusCode.UNSET == span.status.status_code


async def test_a_cancelled_stream(fake: FakePostHog, spans: InMemorySpanExporter) -> None:
    """`cancel()` mid-answer: the stream span's outcome is `cancelled`, not an error."""
    fake.script_answer("A long answer that will not be read to its end.", delay=0.05)
    async with fake.client() as ph, ph.conversations.create("Hi") as stream:
        async for _ in stream.text_deltas():
            await stream.cancel()
            break
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert "cancelled" == attributes["aposthog.stream.outcome"]
    assert "cancelled" == attributes["error.type"]
    assert StatusCode.UNSET == span.status.status_code
    assert ["aposthog.first_token"] == [e.name for e in span.events]


async def test_a_stream_left_early_is_incomplete(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """`break` after the first delta: outcome `incomplete`, not an error."""
    fake.script_answer("A long answer that will not be read to its end.", delay=0.05)
    async with fake.client() as ph, ph.conversations.create("Hi") as stream:
        async for _ in stream.text_deltas():
            break
    (span,) = _named(spans, STREAM)
    assert "incomplete" == _attrs(span)["aposthog.stream.outcome"]
    assert "error.type" not in _attrs(span)
    assert StatusCode.UNSET == span.status.status_code


async def test_a_stream_the_client_closes_under_its_reader_is_an_error_span(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    `Client.aclose()` mid-answer: the reader's next read raises `ClientStateError`, as a
    call the close cuts short does, and the span says so. It said `incomplete` ("the
    caller stopped reading"), with no error.
    """
    fake.script_answer("A long answer that will not be read to its end.", delay=0.05)
    async with fake.client() as ph:
        stream = ph.conversations.create("Hi")
        deltas = stream.text_deltas()
        await anext(deltas)
        await ph.aclose()
        with pytest.raises(aposthog.ClientStateError):
            await anext(deltas)
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert "failed" == attributes["aposthog.stream.outcome"]
    assert "aposthog.ClientStateError" == attributes["error.type"]
    assert 200 == attributes["http.response.status_code"]


async def test_a_stream_the_collector_closes_outside_any_task_still_ends_its_span(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    A stream dropped in a reference cycle, collected in a plain callback of the loop (no
    task runs there): its outcome needed a task to be told (anyio's lookup of the
    cancellation class), so the span never ended and no debug line was written.
    """
    fake.script_answer("A long answer that will not be read to its end.", delay=0.05)
    async with fake.client() as ph:
        stream = ph.conversations.create("Hi")
        deltas = stream.text_deltas()
        await anext(deltas)
        cycle: list[Any] = [stream, deltas]
        cycle.append(cycle)
        del stream, deltas, cycle
        loop = asyncio.get_running_loop()
        collected: asyncio.Future[None] = loop.create_future()

        def collect() -> None:  # a plain callback of the loop: no task runs
            gc.collect()
            collected.set_result(None)

        gc.disable()
        try:
            # A fresh context: none of the test task's (anyio's runner marks it as anyio's).
            loop.call_soon(collect, context=contextvars.Context())
            # (The warning a stream dropped open gives, pointing at the leak.)
            with pytest.warns(ResourceWarning, match="unclosed conversation stream"):
                await collected
        finally:
            gc.enable()
        assert 0 == ph.open_streams
    (span,) = _named(spans, STREAM)
    assert "incomplete" == _attrs(span)["aposthog.stream.outcome"]


async def test_a_message_held_back_while_a_cancel_is_under_way_is_no_attempt(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    The retry of a message (after PostHog's 503) comes due while a `conversations.cancel`
    of its stream is under way: it is held back, unsent, and sent once the cancel is
    refused. The span counted it as an attempt: 3 attempts for 2 POSTs.
    """
    waited = anyio.Event()
    policy = aposthog.RetryPolicy(initial_backoff=0.2, max_backoff=0.2)
    # A scoped key: PostHog refuses it the cancel (403).
    key = fake.add_key(scopes=["conversation:write", "conversation:read"])
    async with fake.client(api_key=key, retry=policy, on_wait=lambda _: waited.set()) as ph:
        fake.fail_next(1, status=503, method="POST")
        fake.script_answer("Short answer.")
        stream = ph.conversations.create("hi")

        async def cancel() -> None:
            await waited.wait()
            fake.latency = 0.8  # under way when the retry comes due
            with pytest.raises(aposthog.PermissionDeniedError):  # refused
                await ph.conversations.cancel(stream.conversation_id)
            fake.latency = 0

        with anyio.fail_after(8):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel)
                text = "".join([delta async for delta in stream.text_deltas()])
    assert "Short answer." == text
    posts = [r for r in fake.requests if r.method == "POST"]
    (span,) = _named(spans, STREAM)
    assert 2 == len(posts) == _attrs(span)["aposthog.attempts"]


async def test_a_stream_left_early_still_has_the_status_it_was_answered_with(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    A stream PostHog answered with 200 and that the reader left (`break`, `cancel()`)
    keeps `http.response.status_code` 200 on its span, as a finished one does:
    OpenTelemetry's HTTP client spans carry the status whenever one was received, and a
    dashboard of answers by status would otherwise lose every stream not read to its end.
    """
    fake.script_answer("A long answer that will not be read to its end.", delay=0.05)
    async with fake.client() as ph:
        async with ph.conversations.create("Hi") as stream:
            async for _ in stream.text_deltas():
                break
        async with ph.conversations.create("Hi again") as stream:
            async for _ in stream.text_deltas():
                await stream.cancel()
                break
    left, cancelled = _named(spans, STREAM)
    assert "incomplete" == _attrs(left)["aposthog.stream.outcome"]
    assert "cancelled" == _attrs(cancelled)["aposthog.stream.outcome"]
    assert [200, 200] == [_attrs(s).get("http.response.status_code") for s in (left, cancelled)]


async def test_a_refused_stream_is_an_error_with_its_status(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """PostHog refuses before streaming (402): the status code and `error.type` say so."""
    fake.ai_quota_exceeded = True
    async with fake.client() as ph:
        with pytest.raises(aposthog.QuotaLimitError):
            await ph.conversations.create("Hi").until_done()
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert ("failed", 402, "402") == (
        attributes["aposthog.stream.outcome"],
        attributes["http.response.status_code"],
        attributes["error.type"],
    )
    assert StatusCode.ERROR == span.status.status_code


async def test_a_stream_refused_on_entering_its_async_with_is_an_error_with_its_status(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    The README's way to read an answer is `async with ph.conversations.create(...)`, whose
    entry sends the request and raises PostHog's refusal (402): the span must say `failed`
    with the status, as it does when the same refusal is met by `until_done()`, not
    `incomplete` without a status, an outcome that is not an error.
    """
    fake.ai_quota_exceeded = True
    async with fake.client() as ph:
        with pytest.raises(aposthog.QuotaLimitError):
            async with ph.conversations.create("Hi"):
                pass
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert ("failed", 402, "402") == (
        attributes["aposthog.stream.outcome"],
        attributes.get("http.response.status_code"),
        attributes.get("error.type"),
    )
    assert StatusCode.ERROR == span.status.status_code


async def test_a_stream_lost_for_good_is_an_error_of_its_class(
    fake: FakePostHog, spans: InMemorySpanExporter, fast: aposthog.RetryPolicy
) -> None:
    """Every re-attach cut too: `failed`, typed by the connection error, re-attaches counted."""
    fake.script_answer(
        "A long answer, cut again and again, and never heard to its very end by anyone.",
        drop_after=[1, 0, 0, 0, 0],  # each re-attach cut before it brings anything
        delay=0.05,
        end_after_connections=5,  # still running whenever the client re-attaches
    )
    async with fake.client(retry=fast) as ph:
        with pytest.raises(aposthog.APIConnectionError):
            await ph.conversations.create("Hi", max_reattach_attempts=2).until_done()
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert "failed" == attributes["aposthog.stream.outcome"]
    assert "aposthog.APIConnectionError" == attributes["error.type"]
    assert 2 <= attributes["aposthog.stream.reattaches"]
    assert StatusCode.ERROR == span.status.status_code


async def test_a_failed_answer_is_an_error_stream_span(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """PostHog AI's in-band failure: outcome `failed`, an ERROR status."""
    fake.script_answer("half", fail="Oops! Something went wrong.")
    async with fake.client() as ph:
        result = await ph.conversations.create("Hi").until_done()
    assert result.failed
    (span,) = _named(spans, STREAM)
    assert "failed" == _attrs(span)["aposthog.stream.outcome"]
    assert StatusCode.ERROR == span.status.status_code


def _strings(span: ReadableSpan) -> Sequence[str]:
    found = [span.name, span.status.description or ""]
    values: list[Any] = list((span.attributes or {}).values())
    for event in span.events:
        found.append(event.name)
        values += list((event.attributes or {}).values())
    for link in span.links:
        values += list((link.attributes or {}).values())
    for value in values:
        found += [str(v) for v in value] if isinstance(value, (tuple, list)) else [str(value)]
    return found


async def test_spans_never_hold_the_key_or_the_message(
    spans: InMemorySpanExporter, fast: aposthog.RetryPolicy
) -> None:
    """Every attribute of every span and event, for calls that succeed, fail and stream."""
    async with FakePostHog(api_key=SENTINEL_KEY) as fake, fake.client(retry=fast) as ph:
        fake.script_answer(f"You asked: {SENTINEL_TEXT}", drop_after=3)
        await ph.conversations.create(SENTINEL_TEXT).until_done()
        fake.fail_next(1, status=400, body={"detail": SENTINEL_TEXT})
        with pytest.raises(aposthog.BadRequestError):
            await ph.customer_profile_configs.create(scope="person")
        await ph.batch_exports.list()
        with pytest.raises(ValueError, match="content"):
            ph.conversations.create("x" * 50_000)
        async with fake.client(api_key="phx_SENTINELKEY_wrong") as wrong:
            with pytest.raises(aposthog.AuthenticationError):
                await wrong.batch_exports.list()
    finished = spans.get_finished_spans()
    assert 4 <= len(finished)
    for span in finished:
        for text in _strings(span):
            assert "SENTINEL" not in text, (span.name, text)


async def test_spans_are_closed_when_the_call_is_cancelled(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """A call cancelled by a timeout around it still ends its span (no span leaks)."""
    fake.latency = 1.0
    async with fake.client() as ph:
        with anyio.move_on_after(0.05):
            await ph.batch_exports.list()
    (span,) = spans.get_finished_spans()
    assert "cancelled" == _attrs(span)["error.type"]
    assert StatusCode.UNSET == span.status.status_code


def test_without_opentelemetry_nothing_is_imported_and_calls_carry_no_observer() -> None:
    """With the package hidden, a client works and no OpenTelemetry module is loaded."""
    script = textwrap.dedent(
        """
        import asyncio, sys

        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(name)
                return None

        sys.meta_path.insert(0, Hide())
        import aposthog
        from aposthog._tracing import default_observer
        from aposthog.testing import FakePostHog

        async def main():
            async with FakePostHog() as fake, fake.client() as ph:
                await ph.batch_exports.list()

        asyncio.run(main())
        assert default_observer() is None
        loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry", "aposthog._otel")))
        print(loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert 0 == result.returncode, result.stderr
    assert "[]" == result.stdout.strip()


def test_without_a_configured_sdk_calls_start_no_span_until_one_is_set_up() -> None:
    """
    Before `set_tracer_provider()` a call gets the shared do-nothing observer and starts
    no span at all; a provider set up afterwards, while the client is open, records the
    next call.
    """
    script = textwrap.dedent(
        """
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from aposthog._observe import IGNORED
        from aposthog._tracing import default_observer
        from aposthog.testing import FakePostHog

        started = []
        real_start = type(trace.get_tracer("probe")).start_span

        def start_span(self, *args, **kwargs):
            started.append(args[0] if args else kwargs.get("name"))
            return real_start(self, *args, **kwargs)

        type(trace.get_tracer("probe")).start_span = start_span  # the placeholder's tracer

        async def main():
            async with FakePostHog() as fake, fake.client() as ph:
                await ph.batch_exports.list()
                assert default_observer().call("GET", "x", "http://h") is IGNORED
                assert [] == started, started
                exporter = InMemorySpanExporter()
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                trace.set_tracer_provider(provider)
                await ph.batch_exports.list()
                names = [span.name for span in exporter.get_finished_spans()]
                print(names)

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert 0 == result.returncode, result.stderr
    assert repr([LIST]) == result.stdout.strip()


async def test_on_wait_and_spans_together(
    fake: FakePostHog, spans: InMemorySpanExporter, fast: aposthog.RetryPolicy
) -> None:
    """`on_wait`, given to the client or to `with_options`, comes on top of the spans."""
    seen: list[aposthog.Wait] = []
    async with fake.client(retry=fast, on_wait=seen.append) as ph:
        fake.throttle_next(1, wait=0)
        await ph.batch_exports.list()
        fake.throttle_next(1, wait=0)
        await ph.with_options(on_wait=seen.append).batch_exports.list()
    assert ["rate_limit", "rate_limit"] == [w.reason for w in seen]
    assert [2, 2] == [_attrs(s)["aposthog.attempts"] for s in _named(spans, LIST)]


async def test_an_on_wait_that_raises_leaves_no_wait_in_the_span(
    fake: FakePostHog, spans: InMemorySpanExporter, fast: aposthog.RetryPolicy
) -> None:
    """
    An `on_wait` that raises ends its call with that exception: the wait is never taken
    and no later attempt is made. The span recorded the wait all the same (an
    `aposthog.wait` event, its seconds in `aposthog.rate_limit.wait_seconds`), as if the
    call had waited; it records only what happened now, and ends failed with the hook's
    exception.
    """

    class GiveUp(Exception):
        pass

    def refuse(wait: aposthog.Wait) -> None:
        raise GiveUp

    fake.throttle_next(1, wait=0)
    async with fake.client(retry=fast, on_wait=refuse) as ph:
        with pytest.raises(GiveUp):
            await ph.batch_exports.list()
    (span,) = _named(spans, LIST)
    attributes = _attrs(span)
    assert [] == [e.name for e in span.events if e.name == "aposthog.wait"]
    assert 0 == attributes["aposthog.rate_limit.wait_seconds"]
    assert 1 == attributes["aposthog.attempts"]
    assert StatusCode.ERROR == span.status.status_code
    assert attributes["error.type"].endswith("GiveUp")
    assert 1 == len(fake.requests)


@pytest.mark.parametrize("where", ["start", "end"])
async def test_a_span_processor_that_raises_never_breaks_a_call_or_a_stream(
    fake: FakePostHog,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """
    An application's span processor that raises (on a span's start or end) made every
    traced call raise its exception: a create PostHog had made came back as a
    `RuntimeError`, its record lost, and a stream failed before its first event. Tracing
    never breaks a call now: the calls return what PostHog answered, the stream its whole
    answer, and the failure is logged once at WARNING by class name (not its message).
    """
    monkeypatch.setattr(_BREAKER, "where", where)
    monkeypatch.setattr("aposthog._otel._warned", False)
    fake.script_answer("all is well")
    caplog.set_level(logging.DEBUG, logger="aposthog")
    async with fake.client() as ph:
        created = await ph.customer_profile_configs.create(scope="person")
        listed = await ph.customer_profile_configs.list()
        async with ph.conversations.create("q") as stream:
            result = await stream.until_done()
    assert [created.id] == [c.id for c in listed.results]
    assert "all is well" == result.text
    failures = [r for r in caplog.records if r.getMessage().startswith("tracing failed")]
    assert failures
    assert logging.WARNING == failures[0].levelno
    assert {logging.DEBUG} >= {r.levelno for r in failures[1:]}
    doing = "starting a span" if where == "start" else "ending a span"
    assert f"tracing failed: RuntimeError raised while {doing}" in failures[0].getMessage()
    assert "SENTINEL-PROCESSOR" not in caplog.text
    if where == "end":  # started and recorded: the exporter before the breaker has them
        assert 3 == len(spans.get_finished_spans())


async def test_the_clients_own_rate_limiter_wait_is_measured(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """A call held back by the client's rate limiter: a rate-limit wait without an error."""
    limits = aposthog.RateLimits(api=(aposthog.Rate(1, per=0.2),), margin=0)
    async with fake.client(rate_limits=limits) as ph:
        await ph.batch_exports.list()
        await ph.batch_exports.list()
    first, second = _named(spans, LIST)
    assert 0.0 == _attrs(first)["aposthog.rate_limit.wait_seconds"]
    assert 0.1 < _attrs(second)["aposthog.rate_limit.wait_seconds"]
    assert 1 == _attrs(second)["aposthog.attempts"]
    (wait,) = [_attrs_of(e) for e in second.events]
    assert ("rate_limit", 1) == (wait["aposthog.wait.reason"], wait["aposthog.wait.attempt"])
    assert "error.type" not in wait


async def test_debug_lines_come_on_top_of_the_spans(
    fake: FakePostHog,
    spans: InMemorySpanExporter,
    fast: aposthog.RetryPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With DEBUG on, every call and stream still gets its whole span, and the lines agree."""
    caplog.set_level(logging.DEBUG, logger="aposthog")
    fake.script_answer(
        "A longer answer, cut once and re-attached, whose events add up to a few kilobytes.",
        token_size=8,
        drop_after=4,
        delay=0.02,
        end_after_connections=2,
    )
    async with fake.client(retry=fast) as ph:
        await ph.batch_exports.list()
        stream = ph.conversations.create("Hi")
        await stream.until_done()
    (call,) = _named(spans, LIST)
    assert (200, 1) == (
        _attrs(call)["http.response.status_code"],
        _attrs(call)["aposthog.attempts"],
    )
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert ("done", 1, 200) == (
        attributes["aposthog.stream.outcome"],
        attributes["aposthog.stream.reattaches"],
        attributes["http.response.status_code"],
    )
    assert ["aposthog.first_token", "aposthog.reattach"] == [
        e.name for e in span.events if e.name != "aposthog.wait"
    ]
    events, size = attributes["aposthog.stream.events"], attributes["aposthog.stream.bytes"]
    assert events > 4
    assert f"{size / 1000:.1f}" != f"{size / 1024:.1f}"  # KB: 1,000 bytes, not 1,024
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    (line,) = [line for line in lines if line.startswith("conversation ")]
    assert line.startswith(f"conversation {stream.conversation_id}: done in ")
    assert f", {events} events ({size / 1000:.1f} KB), first token after " in line
    assert line.endswith(", 1 re-attach")


def test_the_tracing_observer_is_looked_up_once_per_process() -> None:
    """Every client shares the one tracing observer."""
    observer = default_observer()
    assert observer is not None
    assert observer is default_observer()


async def test_a_call_refused_unsent_by_the_rate_limiter_has_no_response_status(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    A wait longer than the call may take is not begun: the call raises `RateLimitError`
    at once, unsent (README, Rate limits). Its span has no attempt, so it must not claim
    an HTTP response: OpenTelemetry's `http.response.status_code` is the status of a
    response received, and a 429 counted here would be read as PostHog throttling the key.
    """
    limits = aposthog.RateLimits(api=(aposthog.Rate(1, per=60),), margin=0)
    policy = aposthog.RetryPolicy(max_retry_after=1)
    async with fake.client(rate_limits=limits, retry=policy) as ph:
        await ph.batch_exports.list()
        with pytest.raises(aposthog.RateLimitError):
            await ph.batch_exports.list()
    assert 1 == len(fake.requests)
    _, refused = _named(spans, LIST)
    attributes = _attrs(refused)
    assert 0 == attributes["aposthog.attempts"]
    assert "http.response.status_code" not in attributes
    assert StatusCode.ERROR == refused.status.status_code


async def test_a_call_whose_answer_does_not_fit_its_record_is_an_error_span(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    The call's span runs to its outcome (README: "a call ... is one CLIENT span"); a call
    that raises `ResponseDecodeError` (PostHog changed a field) failed, and its span must
    say so with `error.type` and an ERROR status, or an alert on error spans never hears
    of the one failure that means the API changed under the client.
    """
    fake.fail_next(1, status=200, body={"id": 5}, path="customer_profile_configs")
    async with fake.client() as ph:
        with pytest.raises(aposthog.ResponseDecodeError):
            await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    (span,) = spans.get_finished_spans()
    assert "aposthog.ResponseDecodeError" == _attrs(span).get("error.type")
    assert StatusCode.ERROR == span.status.status_code


async def test_a_page_that_does_not_fit_its_records_is_an_error_span(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """As for one record: a list page whose body is no page of records ends its span failed."""
    fake.fail_next(1, status=200, body={"results": [{"id": 5}]}, path="customer_profile_configs")
    async with fake.client() as ph:
        with pytest.raises(aposthog.ResponseDecodeError):
            await ph.customer_profile_configs.list()
    (span,) = spans.get_finished_spans()
    assert "aposthog.ResponseDecodeError" == _attrs(span).get("error.type")
    assert 200 == _attrs(span).get("http.response.status_code")
    assert StatusCode.ERROR == span.status.status_code


async def test_a_stream_cut_by_a_timeout_still_has_the_status_it_was_answered_with(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    A stream PostHog answered with 200, whose reader is cancelled by a timeout around it
    (`anyio.move_on_after`, `asyncio.timeout`: the usual way to bound an answer), keeps
    `http.response.status_code` 200, as one left by `break` or `cancel()` does: the
    status was received, and a dashboard of answers by status would otherwise lose every
    stream cut by a timeout.
    """
    fake.script_answer("A long answer that will not be read to its end.", delay=0.05)
    async with fake.client() as ph:
        stream = ph.conversations.create("Hi")
        with anyio.move_on_after(0.5) as scope:
            async for _ in stream.text_deltas():
                scope.deadline = 0  # the 200 was received and the answer began: time is up
    assert scope.cancelled_caught
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert "cancelled" == attributes["aposthog.stream.outcome"]
    assert 200 == attributes.get("http.response.status_code")


async def test_a_retry_the_rate_limiter_refuses_keeps_posthogs_429_on_the_span(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    PostHog answered 429, and the retry's wait for the client's own window is longer
    than the call may wait: the call ends with the limiter's refusal, and its span keeps
    the 429 PostHog did answer (the last response received), not no status at all.
    """
    limits = aposthog.RateLimits(api=(aposthog.Rate(1, per=60),), margin=0)
    policy = aposthog.RetryPolicy(max_retry_after=1)
    fake.throttle_next(wait=0)
    async with fake.client(rate_limits=limits, retry=policy) as ph:
        with pytest.raises(aposthog.RateLimitError):
            await ph.batch_exports.list()
    assert 1 == len(fake.requests)
    (span,) = _named(spans, LIST)
    attributes = _attrs(span)
    assert 1 == attributes["aposthog.attempts"]
    assert 429 == attributes.get("http.response.status_code")


async def test_a_stream_whose_reattaches_cannot_connect_keeps_the_200_it_was_answered(
    fake: FakePostHog, spans: InMemorySpanExporter, fast: aposthog.RetryPolicy
) -> None:
    """
    PostHog answered 200 and the answer began; the connection dropped and every re-attach
    failed to get an answer: the stream failed, and its span keeps the 200 PostHog last
    answered with, as a stream cut by a timeout does.
    """
    fake.script_answer("An answer cut for good.", drop_after=4, delay=0.05)
    async with fake.client(retry=fast) as ph:
        stream = ph.conversations.create(SENTINEL_TEXT)
        with pytest.raises(aposthog.APIConnectionError):
            async for _ in stream.text_deltas():
                fake.drop_next(50)  # every re-attach from now on
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert "failed" == attributes["aposthog.stream.outcome"]
    assert 200 == attributes.get("http.response.status_code")


async def test_a_refusal_unsent_by_the_rate_limiter_is_not_an_http_429_error_type(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    The client's limiter refuses a wait longer than the call may take: nothing is sent,
    no response arrives. The span rightly has no `http.response.status_code`, and the
    DEBUG line says `RateLimitError ..., not sent` (not "429"), but `error.type` was "429":
    OpenTelemetry's HTTP conventions give `error.type` the status code only when a
    response had one, else the exception's class, so a dashboard grouping by it counted
    the client's own refusals as PostHog throttling the key. The same for a stream.
    """
    limits = aposthog.RateLimits(
        api=(aposthog.Rate(1, per=60),), ai=(aposthog.Rate(1, per=60),), margin=0
    )
    policy = aposthog.RetryPolicy(max_retry_after=1)
    async with fake.client(rate_limits=limits, retry=policy) as ph:
        await ph.batch_exports.list()
        with pytest.raises(aposthog.RateLimitError):
            await ph.batch_exports.list()
        await ph.conversations.create("first").until_done()
        with pytest.raises(aposthog.RateLimitError):
            await ph.conversations.create("second").until_done()
    assert 2 == len(fake.requests)  # neither refusal was sent
    _, refused_call = _named(spans, LIST)
    _, refused_stream = _named(spans, STREAM)
    for refused in (refused_call, refused_stream):
        attributes = _attrs(refused)
        assert 0 == attributes["aposthog.attempts"]
        assert "http.response.status_code" not in attributes
        assert "aposthog.RateLimitError" == attributes["error.type"]


async def test_a_limiter_refusal_of_a_retry_after_a_503_is_not_an_http_429_error_type(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    PostHog answers 503; the retry is refused by the client's own limiter, unsent. The
    span keeps the 503 PostHog answered, but the error raised is no response: its
    `error.type` is the class, not the "429" no server sent (nor the 503's code).
    """
    limits = aposthog.RateLimits(
        api=(aposthog.Rate(1, per=60),), ai=(aposthog.Rate(1, per=60),), margin=0
    )
    policy = aposthog.RetryPolicy(max_retry_after=1)
    fake.fail_next(1, status=503)
    async with fake.client(rate_limits=limits, retry=policy) as ph:
        with pytest.raises(aposthog.RateLimitError):
            await ph.batch_exports.list()
    assert 1 == len(fake.requests)  # the retry was not sent
    (span,) = _named(spans, LIST)
    attributes = _attrs(span)
    assert 503 == attributes.get("http.response.status_code")
    assert "aposthog.RateLimitError" == attributes["error.type"]


async def test_a_stream_answered_200_but_not_an_event_stream_keeps_its_status(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    A proxy or a misrouted host answers the conversation's POST with 200 and a JSON (or
    HTML) page: the stream fails with `ResponseDecodeError`. PostHog's side did answer,
    with 200, and OpenTelemetry's HTTP client spans carry `http.response.status_code`
    whenever a status was received, as a JSON call whose 200 does not fit its record
    keeps it (`test_a_page_that_does_not_fit_its_records_is_an_error_span`); the stream
    span has none, so a dashboard of answers by status loses these failures.
    """
    fake.fail_next(1, status=200, body={"detail": "not a stream"}, path="conversations")
    async with fake.client(max_retries=0) as ph:
        with pytest.raises(aposthog.ResponseDecodeError):
            await ph.conversations.create("Hi").until_done()
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert "aposthog.ResponseDecodeError" == attributes.get("error.type")
    assert StatusCode.ERROR == span.status.status_code
    assert 200 == attributes.get("http.response.status_code")


async def test_a_stream_failing_on_its_catch_up_get_does_not_take_the_gets_status(
    spans: InMemorySpanExporter,
) -> None:
    """
    The conversation's POST is never answered (the connection drops after the request was
    sent), the re-attach is PostHog's 400 "idle", and the GET of the conversation that
    should recover the run answers 200 with a body that is no conversation. The stream's
    span is the POST's: no POST was ever answered 200, yet `StreamEngine._end` now takes
    the `ResponseDecodeError.status` of the GET (a request of its own, with its own span)
    for the stream's status, where it reported none before.
    """
    import json

    from aposthog.testing import LoopbackServer, ServerReply, ServerRequest

    idle = {
        "type": "validation_error",
        "code": "invalid_input",
        "detail": "Cannot continue streaming from an idle conversation",
        "attr": None,
    }
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        json_type = {"Content-Type": "application/json"}
        if request.method == "GET":  # no conversation: `messages` is not a list
            return ServerReply(body=b'{"id": "x", "messages": 5}', headers=json_type)
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            return ServerReply(drop=True)  # the message was sent; no answer came
        return ServerReply(status=400, body=json.dumps(idle).encode(), headers=json_type)

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, max_retries=1) as ph:
            with anyio.fail_after(5), pytest.raises(aposthog.ResponseDecodeError):
                await ph.conversations.create("Hi").until_done()
    finally:
        await server.stop()
    assert len(posts) == 2  # the message, then one re-attach
    (span,) = _named(spans, STREAM)
    assert 200 != _attrs(span).get("http.response.status_code")


async def test_a_call_held_back_in_its_rate_limit_line_counts_that_wait(
    fake: FakePostHog, spans: InMemorySpanExporter
) -> None:
    """
    A burst of four calls under 2 requests per 0.3 s: the last two spend about 0.3 s in
    the client's rate limiter before they are sent (the limiter's `acquire` returns how
    long, its line included). `aposthog.rate_limit.wait_seconds` is "the seconds spent
    waiting for rate limits", yet the call the head of the line admitted along with
    itself reports 0.0: a dashboard of time lost to rate limits misses most of it in
    exactly the worker-pool burst it is there for.
    """
    limits = aposthog.RateLimits(api=(aposthog.Rate(2, per=0.3),), margin=0)

    async def one(ph: aposthog.Client) -> None:
        await ph.batch_exports.list()

    async with fake.client(rate_limits=limits) as ph:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(one, ph)
    calls = _named(spans, LIST)
    assert 4 == len(calls)
    # Told apart by their waits, not by how long their spans took: on a busy machine (the
    # suite runs in parallel workers) the first two calls may take 0.2 s too.
    waits = sorted(_attrs(s)["aposthog.rate_limit.wait_seconds"] for s in calls)
    assert [False, False, True, True] == [wait > 0.2 for wait in waits], waits
    for span in calls:  # each span lasts at least the wait it reports (clocks apart: 1 ms)
        wait = _attrs(span)["aposthog.rate_limit.wait_seconds"]
        assert (span.end_time or 0) - (span.start_time or 0) >= (wait - 0.001) * 1e9


_IDLE = {
    "type": "validation_error",
    "code": "invalid_input",
    "detail": "Cannot continue streaming from an idle conversation",
    "attr": None,
}


def _dropped_then_idle(on_get: Callable[[list[dict[str, Any]]], Any]) -> tuple[Any, list[Any]]:
    """
    A server whose first POST (the message) is dropped once it arrived, whose re-attach
    is PostHog's 400 "idle", and whose GET of the conversation `on_get(posts)` answers.
    """
    import json

    from aposthog.testing import ServerReply, ServerRequest

    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            reply: ServerReply = on_get(posts)
            return reply
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            return ServerReply(drop=True)  # the message was sent; no answer came
        body = json.dumps(_IDLE).encode()
        return ServerReply(status=400, body=body, headers={"Content-Type": "application/json"})

    return handler, posts


async def _until_done_against(handler: Any) -> Any:
    """`conversations.create("Hi").until_done()` against `handler`, one re-attach allowed."""
    from aposthog.testing import LoopbackServer

    quick = aposthog.RetryPolicy(max_retries=1, initial_backoff=0.01, max_backoff=0.02)
    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=quick) as ph:
            with anyio.fail_after(5):
                return await ph.conversations.create("Hi").until_done()
    finally:
        await server.stop()


@pytest.mark.parametrize("get_status", [500, 403])
async def test_a_stream_failing_with_its_catch_up_gets_status_error_keeps_the_posts_status(
    spans: InMemorySpanExporter, get_status: int
) -> None:
    """
    The sibling of `test_a_stream_failing_on_its_catch_up_get_does_not_take_the_gets_status`
    for a GET that PostHog refuses with a status: the conversation's POST is never
    answered (dropped after it was sent), the re-attach is PostHog's 400 "idle", and the
    GET of the conversation that should recover the run answers 500 (or 403). That GET
    has its own span, with its status. The stream's span is the POST's, and no POST was
    answered 500: yet it said `http.response.status_code` 500 and `error.type` "500",
    so a dashboard of the conversation endpoint's answers counted a 500 it never gave.
    """
    import json

    from aposthog.testing import ServerReply

    refused = {"type": "server_error", "code": "error", "detail": "refused", "attr": None}
    handler, posts = _dropped_then_idle(
        lambda _: ServerReply(
            status=get_status,
            body=json.dumps(refused).encode(),
            headers={"Content-Type": "application/json"},
        )
    )
    with pytest.raises(aposthog.APIStatusError) as info:
        await _until_done_against(handler)
    assert len(posts) == 2  # the message, then one re-attach
    assert (get_status, "GET") == (info.value.status, info.value.method)
    (get,) = [s for s in spans.get_finished_spans() if s.name.startswith("GET ")]
    assert get_status == _attrs(get)["http.response.status_code"]  # the GET's own span
    (span,) = _named(spans, STREAM)
    attributes = _attrs(span)
    assert StatusCode.ERROR == span.status.status_code
    assert get_status != attributes.get("http.response.status_code"), attributes
    assert str(get_status) != attributes.get("error.type"), attributes


async def test_a_stream_recovered_by_its_catch_up_get_claims_no_200_it_was_not_answered(
    spans: InMemorySpanExporter,
) -> None:
    """
    The conversation's POST is dropped after it was sent, the re-attach is PostHog's 400
    "idle" (the run ended meanwhile), and the GET of the conversation recovers the run's
    final messages: the stream is `done`. Its span is the POST's, whose answers were none
    and a 400; yet `StreamEngine._end(None)` reported 200 for any stream that ended
    without an error, answered or not. OpenTelemetry's HTTP client spans carry
    `http.response.status_code` only when a response had it.
    """
    import json

    from aposthog.testing import ServerReply

    def conversation(posts: list[dict[str, Any]]) -> ServerReply:
        sent = posts[0]  # the run's end, as the conversation shows it
        messages = [
            {"type": "human", "content": "Hi", "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a51"},
            {"type": "ai", "content": "Hello!", "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a52"},
        ]
        for message in messages:
            message["trace_id"] = sent["trace_id"]
        body = {"id": sent["conversation"], "status": "idle", "messages": messages}
        return ServerReply(
            body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )

    handler, posts = _dropped_then_idle(conversation)
    result = await _until_done_against(handler)
    assert "Hello!" == result.text
    assert len(posts) == 2  # the message, then one re-attach
    (span,) = _named(spans, STREAM)
    assert "done" == _attrs(span)["aposthog.stream.outcome"]
    assert 200 != _attrs(span).get("http.response.status_code")
