"""ConversationStream against FakePostHog: typed events, text deltas, closing, cancel()."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import textwrap
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import anyio
import pytest
from aiohttp import web

import aposthog
from aposthog._streaming import ConversationStream
from aposthog.models.conversations import ConversationSummary
from aposthog.models.events import (
    ConversationEvent,
    MessageEvent,
    StatusEvent,
    StreamEvent,
    UnknownEvent,
    UpdateEvent,
)
from aposthog.models.messages import AssistantMessage, FailureMessage, HumanMessage
from aposthog.testing import FakePostHog

from .stream_helpers import ANSWER, FAST, Replay, posts, stream_served_by
from .web_server import serve

pytestmark = pytest.mark.anyio


# ---------------------------------------------------------------------- events and text


async def test_typed_events_in_posthog_order(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("Hello world", token_size=5, title="Greetings")
    stream = ph.conversations.create("Hi?")
    conversation_id = stream.conversation_id
    assert posts(fake) == []  # known before anything is sent
    events: list[StreamEvent] = [event async for event in stream]
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "ConversationEvent",
        "MessageEvent",
        "MessageEvent",
        "ConversationEvent",
        "MessageEvent",
        "MessageEvent",
        "MessageEvent",
    ]
    first, titled = events[0], events[3]
    assert isinstance(first, ConversationEvent)
    assert isinstance(titled, ConversationEvent)
    assert first.conversation.id == conversation_id
    assert (first.conversation.title, titled.conversation.title) == (None, "Greetings")
    human = events[1]
    assert isinstance(human, MessageEvent)
    assert isinstance(human.message, HumanMessage)
    assert human.message.id is not None
    answers = [e.message for e in events[2:] if isinstance(e, MessageEvent)]
    assert all(isinstance(m, AssistantMessage) for m in answers)
    contents = [cast(AssistantMessage, m).content for m in answers]
    assert contents == ["Hello", "Hello worl", "Hello world", "Hello world"]
    final = events[-1]
    assert isinstance(final, MessageEvent)
    assert isinstance(final.message, AssistantMessage)
    assert not final.message.in_progress
    assert stream.conversation == ConversationSummary(**{
        **{a: getattr(titled.conversation, a) for a in ("id", "status", "title", "user")},
        "created_at": titled.conversation.created_at,
        "updated_at": titled.conversation.updated_at,
        "type": titled.conversation.type,
        "is_internal": False,
    })  # fmt: skip


async def test_three_lines_stream_an_answer_as_it_arrives(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer(ANSWER, token_size=3)
    printed = []
    async with ph.conversations.create("How many signups?") as stream:
        async for text in stream.text_deltas():
            printed.append(text)  # noqa: PERF401 (the loop a terminal app writes)
    assert "".join(printed) == ANSWER
    assert len(printed) > 5
    result = await stream.until_done()
    assert result.complete
    assert result.text == result.streamed_text == ANSWER


async def test_a_run_with_a_tool_call(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("Found it.", tool="search", updates=["Searching", "Reading"])
    stream = ph.conversations.create("q")
    events = [e async for e in stream]
    updates = [e for e in events if isinstance(e, UpdateEvent)]
    assert [u.content for u in updates] == ["Searching", "Reading"]
    result = stream.result()
    assert [m.type for m in result.messages] == ["human", "ai", "tool", "ai"]
    assert result.text == "Found it."


async def test_keepalives_are_invisible(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.keepalive_interval = 0.005
    fake.script_answer("ab", token_size=1, delay=0.03)
    events = [e async for e in ph.conversations.create("q")]
    assert not any(isinstance(e, UnknownEvent) for e in events)
    assert len(events) == 6  # conversation, human, two snapshots, title, final


async def test_a_newer_server_does_not_break_the_stream(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer(
        "ok",
        raw_events=[
            ("approval", '{"proposal_id":"p"}'),
            ("message", '{"type":"ai/hologram","id":"m9","beam":1}'),
            ("message", "{broken"),
        ],
    )
    stream = ph.conversations.create("q")
    events = [e async for e in stream]
    assert UnknownEvent("approval", '{"proposal_id":"p"}') in events
    assert UnknownEvent("message", "{broken") in events
    assert [m.type for m in stream.result().messages] == ["human", "ai/hologram", "ai"]
    assert stream.result().text == "ok"


@pytest.mark.parametrize(
    ("options", "failure", "generation_error"),
    [
        ({"fail": "Oops! Something went wrong."}, "Oops! Something went wrong.", False),
        ({"fail": True}, None, False),
        ({"fail": True, "generation_error": True}, None, True),  # the retry failed too
    ],
)
async def test_in_band_failures_are_results_not_exceptions(
    fake: FakePostHog,
    ph: aposthog.Client,
    options: dict[str, Any],
    failure: str | None,
    generation_error: bool,
) -> None:
    fake.script_answer("partial answer", token_size=4, **options)
    result = await ph.conversations.create("q").until_done()
    assert result.failed
    assert result.complete
    assert result.generation_error is generation_error
    if "fail" in options:
        assert isinstance(result.failure, FailureMessage)
        assert result.failure.content == failure
    # What streamed before the failure (the trailing space waited for more text).
    assert result.streamed_text == "partial"
    assert result.text == ""
    assert result.in_progress == AssistantMessage(content="partial ")


async def test_status_events_are_delivered(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("x", generation_error=True)
    stream = ph.conversations.create("q")
    events = [e async for e in stream]
    assert StatusEvent("generation_error") in events
    # PostHog generated the insight again, and the run went on to its answer.
    result = stream.result()
    assert result.generation_error
    assert result.text == "x"
    assert not result.failed


# ---------------------------------------------------------------------- closing


async def test_a_stream_never_iterated_opens_no_connection(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    stream = ph.conversations.create("q")
    del stream
    gc.collect()
    await anyio.sleep(0.01)
    assert fake.requests == []
    assert fake.ai_streams.opened == 0


async def test_break_closes_the_response_at_once(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("slow answer", delay=0.05)
    stream = ph.conversations.create("q")
    async for _ in stream:
        break
    # Closed by the `break` itself, before the event loop turns again.
    assert stream.closed
    assert ph.open_streams == 0
    await fake.wait_for_streams_closed(timeout=0.5)
    assert fake.ai_streams.disconnected == 1
    # A loop after it would take nothing for the whole answer: it says what happened.
    with pytest.raises(aposthog.ClientStateError, match="a loop over it was left early"):
        [e async for e in stream]


async def test_a_read_after_a_loop_left_early_raises_instead_of_ending_quietly(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `anext(aiter(stream))` (the idiom for the first item of any async iterable) makes a
    loop and drops it at once, which closes the stream; a `break` does too. Then
    `until_done()` returned an empty result, as if PostHog had answered nothing, and a
    new loop ended at once: the answer lost with no error. Such a read now raises
    `ClientStateError` saying why; `anext(stream)` reads one event and leaves the stream
    open, and `aclose()`, the reader's own choice to stop, still ends reads quietly.
    """
    answer = "one two three four five six seven eight"
    fake.script_answer(answer, token_size=2, delay=0.01)
    stream = ph.conversations.create("q")
    async with stream:
        first = await anext(aiter(stream))
        assert isinstance(first, ConversationEvent)
        assert stream.closed
        with pytest.raises(aposthog.ClientStateError, match=r"anext\(aiter\(stream\)\)"):
            await stream.until_done()
        with pytest.raises(aposthog.ClientStateError, match="left early"):
            await anext(stream)
        assert not stream.result().complete

    fake.script_answer(answer, token_size=2, delay=0.01)
    async with ph.conversations.create("q") as stream:
        async for _ in stream.text_deltas():
            break
        with pytest.raises(aposthog.ClientStateError, match="left early"):
            await stream.until_done()

    fake.script_answer(answer, token_size=2, delay=0.01)
    async with ph.conversations.create("q") as stream:
        await anext(stream)
        assert answer == (await stream.until_done()).text

    fake.script_answer(answer, token_size=2, delay=0.01)
    async with ph.conversations.create("q") as stream:
        await anext(stream)
        await stream.aclose()
        assert not (await stream.until_done()).complete  # closed by its reader: no error
        assert [] == [e async for e in stream]


async def test_cancel_sends_nothing_for_a_message_cut_off_while_connecting(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    A chat relay's handler is cancelled (its user left) while the follow-up's POST is
    still connecting, and cleans up with `stream.cancel()`, as the README shows. The
    stream took the POST for sent from before it connected, so `cancel()` sent a PATCH
    …/cancel/ for a message PostHog never received: it stopped whatever ran in that
    conversation (another device's answer), or met a 404. It sends nothing now.
    """
    connecting = asyncio.Event()

    async def never_connects(*_: Any, **__: Any) -> Any:
        connecting.set()
        await asyncio.Event().wait()  # aiohttp still connecting: nothing written yet

    ph._api.pipeline.transport.open_stream = never_connects  # type: ignore[method-assign]
    conversation = fake.seed_conversation()
    stream = ph.conversations.create("follow-up", conversation=conversation.id)

    async def relay() -> None:
        async with stream:
            async for _ in stream.text_deltas():
                pass

    task = asyncio.ensure_future(relay())
    await connecting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.cancel()
    assert [] == fake.requests


async def test_break_out_of_text_deltas_closes_too(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("slow answer", token_size=1, delay=0.02)
    stream = ph.conversations.create("q")
    async for _ in stream.text_deltas():
        break
    assert stream.closed  # at once, as for events
    fake.script_answer("slow answer", token_size=1, delay=0.02)
    async for _ in ph.conversations.create("q").text_deltas():
        break
    assert ph.open_streams == 0
    await fake.wait_for_streams_closed(timeout=0.5)
    assert fake.ai_streams.disconnected == 2


async def test_leaving_async_with_closes_the_response(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("slow answer", delay=0.05)
    async with ph.conversations.create("q") as stream:
        event = await anext(stream)
        assert isinstance(event, ConversationEvent)
        assert fake.ai_streams.open == 1
        assert stream._engine in ph._api.pipeline.streams
    await fake.wait_for_streams_closed(timeout=0.5)
    assert fake.ai_streams.disconnected == 1
    assert stream._engine not in ph._api.pipeline.streams


async def test_an_exception_in_the_consumer_closes_the_response(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("slow answer", delay=0.05)

    async def consume() -> None:
        async for _ in ph.conversations.create("q"):
            raise ValueError("the consumer failed")

    with pytest.raises(ValueError, match="the consumer failed"):
        await consume()
    await fake.wait_for_streams_closed(timeout=0.5)
    assert fake.ai_streams.disconnected == 1


async def test_cancelling_the_consumer_closes_and_is_not_swallowed(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("slow answer", token_size=1, delay=0.05)
    seen: list[str] = []
    cancelled = anyio.Event()

    async def consume() -> None:
        try:
            seen.extend([text async for text in ph.conversations.create("q").text_deltas()])
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        seen.append("the loop ended as if the answer were complete")

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.sleep(0.08)
        tg.cancel_scope.cancel()
    assert cancelled.is_set()
    assert "the loop ended as if the answer were complete" not in seen
    await fake.wait_for_streams_closed(timeout=0.5)
    assert fake.ai_streams.disconnected == 1


async def test_a_timeout_around_the_loop_still_fires(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("slow answer", token_size=1, delay=0.05)
    stream = ph.conversations.create("q")
    with anyio.move_on_after(0.08) as scope:
        await stream.until_done()
    assert scope.cancelled_caught
    assert stream.closed
    assert not stream.result().complete
    await fake.wait_for_streams_closed(timeout=0.5)


async def test_aclose_from_another_task_ends_the_loop(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("slow answer", delay=0.2)
    stream = ph.conversations.create("q")
    events: list[StreamEvent] = []

    async def consume() -> None:
        events.extend([event async for event in stream])

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.05)
            await stream.aclose()
    assert len(events) == 2  # the conversation and the echo; then the loop just ended
    await fake.wait_for_streams_closed(timeout=0.5)


async def test_one_stream_is_read_by_one_task_at_a_time(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("slow answer", delay=0.2)
    stream = ph.conversations.create("q")
    async with stream, anyio.create_task_group() as tg:
        tg.start_soon(stream.until_done)
        await anyio.sleep(0.05)
        with pytest.raises(aposthog.ClientStateError):
            await anext(stream)
        assert not stream.closed  # the reader keeps its stream
        tg.cancel_scope.cancel()


async def test_closing_the_client_closes_its_streams(fake: FakePostHog) -> None:
    fake.script_answer("slow answer", delay=0.2)
    async with fake.client(retry=FAST) as ph:
        stream = ph.conversations.create("q")
        await anext(stream)
    assert stream.closed
    await fake.wait_for_streams_closed(timeout=0.5)
    assert fake.ai_streams.disconnected == 1


async def test_two_hundred_cancelled_streams_leave_no_connection_open(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.ai_burst_limit = fake.ai_daily_limit = None
    for n in range(200):
        # Seconds of answer: none can finish before it is cancelled, however loaded the machine.
        fake.script_answer("never finished " * 20, token_size=1, delay=0.01)
        stream = ph.conversations.create(f"question {n}")
        if n % 4 == 0:
            async for _ in stream:
                break
        elif n % 4 == 1:
            async with stream:
                await anext(stream)
        elif n % 4 == 2:
            await anext(stream)
            with anyio.move_on_after(0.005):
                await stream.until_done()
        else:
            reading = anyio.Event()

            async def consume(
                stream: ConversationStream = stream, reading: anyio.Event = reading
            ) -> None:
                async for _ in stream.text_deltas():
                    reading.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await reading.wait()  # cancelled mid-answer, however slow the machine
                tg.cancel_scope.cancel()
    await fake.wait_for_streams_closed(timeout=2)
    assert fake.ai_streams.opened == 200
    assert fake.ai_streams.disconnected == 200
    assert ph.open_streams == 0
    session = ph._api.pipeline.transport._session
    assert session is not None
    assert not getattr(session.connector, "_acquired", set())


async def test_open_streams_counts_what_is_open_and_every_way_out_closes(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.ai_burst_limit = None
    view = ph.with_options(max_retries=0)  # a view shares its client's streams
    assert ph.open_streams == view.open_streams == 0
    fake.script_answer("a slow answer", token_size=1, delay=0.05)
    fake.script_answer("another slow answer", token_size=1, delay=0.05)
    fake.script_answer("short")
    never_read = ph.conversations.create("never read")
    first, second = ph.conversations.create("one"), view.conversations.create("two")
    await anext(first)
    assert (ph.open_streams, view.open_streams) == (1, 1)
    await anext(second)
    assert (ph.open_streams, view.open_streams) == (2, 2)
    # A refused message (another run goes on in that conversation) leaves nothing open.
    refused = view.conversations.create("three", conversation=first.conversation_id)
    with pytest.raises(aposthog.ConflictError):
        await refused.until_done()
    assert ph.open_streams == 2
    await second.aclose()
    assert ph.open_streams == 1
    await first.cancel()
    assert ph.open_streams == 0
    # An answer read to its end closes its stream; one never read was never counted.
    third = ph.conversations.create("four")
    async for _ in third:
        assert ph.open_streams == 1
    assert ph.open_streams == 0
    assert not never_read.closed
    await fake.wait_for_streams_closed(timeout=0.5)
    assert (fake.ai_streams.opened, fake.ai_streams.open) == (3, 0)


async def test_a_stream_waiting_to_re_attach_stays_open_and_closing_the_client_wakes_it(
    fake: FakePostHog,
) -> None:
    """Between a drop and its re-attach a stream is still open: counted, and closed (at
    once, not after the backoff) by `Client.aclose()`; its reader is told its run did
    not end (it is not handed the answer so far as a finished one)."""
    fake.script_answer("an answer cut short", token_size=1, delay=0.01, drop_after=3)
    waiting = anyio.Event()

    def on_wait(wait: aposthog.Wait) -> None:
        if wait.reason == "retry":
            waiting.set()  # just before a 60 s backoff

    slow = aposthog.RetryPolicy(initial_backoff=60, max_backoff=60, max_retry_after=60)
    ph = fake.client(retry=slow, on_wait=on_wait)
    stream = ph.conversations.create("q")
    told: list[str] = []

    async def read() -> None:
        with pytest.raises(aposthog.ClientStateError) as caught:
            await stream.until_done()
        told.append(str(caught.value))

    with anyio.fail_after(10):  # only a hang would take this long
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await waiting.wait()
            assert ph.open_streams == 1
            await ph.aclose()
    assert [
        "this ConversationStream was closed before PostHog ended it: its aposthog.Client was "
        "closed; result() holds what arrived"
    ] == told
    assert stream.closed
    assert not stream.result().complete
    assert ph.open_streams == 0


async def test_a_stream_dropped_open_warns_and_closes(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Read partly and dropped without closing: a ResourceWarning names the leak."""
    fake.script_answer("a slow answer", token_size=1, delay=0.05)
    streams = [ph.conversations.create("q")]
    await anext(streams[0])
    assert ph.open_streams == 1
    conversation_id = streams[0].conversation_id
    with pytest.warns(ResourceWarning, match=f"unclosed conversation stream {conversation_id}"):
        streams.clear()  # the last reference: dropped at once
    assert ph.open_streams == 0
    await fake.wait_for_streams_closed(timeout=0.5)
    assert fake.ai_streams.disconnected == 1
    # Never started, read to the end, or closed: nothing to warn about.
    fake.script_answer("short")
    done = ph.conversations.create("q")
    await done.until_done()
    unread = ph.conversations.create("q")
    left = ph.conversations.create("q")
    fake.script_answer("short")
    await anext(left)
    await left.aclose()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del done, unread, left
        gc.collect()


# ---------------------------------------------------------------------- cancel()


async def test_cancel_stops_the_generation_then_closes(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("a long answer", token_size=1, delay=0.02)
    stream = ph.conversations.create("q")
    async for event in stream.text_deltas():
        assert event == "a"
        await stream.cancel()
    result = await stream.until_done()
    assert result.cancelled
    assert not result.complete
    assert result.streamed_text == "a"
    patches = [r for r in fake.requests if r.method == "PATCH"]
    assert [r.path for r in patches] == [
        f"/api/environments/1/conversations/{stream.conversation_id}/cancel/"
    ]
    conversation = fake.conversations[stream.conversation_id]
    assert conversation.status == "idle"
    assert [m["type"] for m in conversation.messages] == ["human"]
    await fake.wait_for_streams_closed(timeout=0.5)


async def test_cancel_from_another_task_ends_the_readers_loop_quietly() -> None:
    """A chat bot's reader task relays `text_deltas()` while another task (its user went
    away) calls `stream.cancel()`. PostHog's cancel deletes the run's stream, which ends
    the reader's body, then answers 204 (reference §3.7). The reader must see the end of
    a stream it cancelled itself ("a stream you close yourself just ends"), and the client
    must not re-attach (POST `content: null`) to the run it is cancelling."""
    from aiohttp import web

    cancelling = asyncio.Event()
    seen: list[tuple[str, Any]] = []

    def event(data: dict[str, Any]) -> bytes:
        return b"event: message\ndata: " + json.dumps(data).encode() + b"\n\n"

    async def handler(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read() or b"null")
        seen.append((request.method, body))
        if request.method == "PATCH":
            cancelling.set()  # PostHog deletes the run's stream: the body ends...
            await asyncio.sleep(0.3)  # ...then it resets the status and answers
            return web.Response(status=204)
        if request.method == "POST" and body["content"] is None:
            detail = "Cannot continue streaming from an idle conversation"
            error = {"type": "validation_error", "code": "invalid_input", "detail": detail}
            return web.json_response({**error, "attr": None}, status=400)
        if request.method == "POST":
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            human = {"type": "human", "content": "q", "id": "h1", "trace_id": body["trace_id"]}
            await response.write(event(human))
            await response.write(event({"type": "ai", "content": "Partial"}))
            await cancelling.wait()
            return response
        messages = [{"type": "human", "content": "q", "id": "h1"}]
        return web.json_response({"id": "x", "status": "idle", "title": "t", "messages": messages})

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, retry=FAST) as ph,
    ):
        stream = ph.conversations.create("q")
        deltas, errors = await _relayed_until(stream, stream.cancel)  # the user went away
    assert deltas == ["Partial"]
    assert errors == []
    assert [method for method, _ in seen] == ["POST", "PATCH"]  # no re-attach, no GET
    assert stream.result().cancelled


async def test_cancel_while_the_message_is_being_sent_stops_its_run() -> None:
    """The user goes away right after asking: `cancel()` while the `POST conversations/`
    is still in flight. PostHog creates the conversation and starts the run only after its
    checks (throttles, quota, serializer, a DB write), so a PATCH sent at once overtakes the
    POST: 404 for a new conversation (204 on an idle existing one), and the run the POST
    then starts is never stopped. `cancel()` must stop the run the POST may have started."""
    from aiohttp import web

    created = asyncio.Event()
    stopped = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read() or b"null")
        if request.method == "PATCH":
            if not created.is_set():
                detail = {"type": "invalid_request", "code": "not_found", "detail": "Not found."}
                return web.json_response({**detail, "attr": None}, status=404)
            stopped.set()
            return web.Response(status=204)
        await asyncio.sleep(0.3)  # PostHog's checks before the conversation exists
        created.set()  # and the workflow starts with the body
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            human = {"type": "human", "content": "q", "id": "h1", "trace_id": body["trace_id"]}
            await response.write(b"event: message\ndata: " + json.dumps(human).encode() + b"\n\n")
            await stopped.wait()  # the run goes on until a cancel stops it
        return response

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, retry=FAST) as ph,
    ):
        stream = ph.conversations.create("q")

        async def read() -> None:
            async for _ in stream:
                pass

        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await anyio.sleep(0.1)  # the POST is on its way
                await stream.cancel()
            await created.wait()
    assert stopped.is_set()  # the run the POST started was cancelled


async def test_cancel_before_starting_sends_nothing(fake: FakePostHog, ph: aposthog.Client) -> None:
    stream = ph.conversations.create("q")
    await stream.cancel()
    assert fake.requests == []
    assert stream.closed


async def test_repr_and_properties(fake: FakePostHog, ph: aposthog.Client) -> None:
    stream = ph.conversations.create("q")
    assert "not started" in repr(stream)
    await stream.until_done()
    assert "finished" in repr(stream)
    assert stream.messages[0].type == "human"
    await stream.aclose()
    assert "closed" in repr(stream)
    assert json.loads(json.dumps(stream.conversation_id))


async def test_cancel_after_a_refused_request_stops_nothing(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A 409 means another run is going: cancel() on the refused stream must not stop it."""
    fake.script_answer("a long answer " * 10, delay=0.05)
    first = ph.conversations.create("first")
    async with first:
        second = ph.conversations.create("second", conversation=first.conversation_id)
        with pytest.raises(aposthog.ConflictError):
            await second.__aenter__()
        await second.cancel()
        assert not [r for r in fake.requests if r.method == "PATCH"]
        assert "in_progress" == fake.conversations[first.conversation_id].status
        assert second.closed


async def test_cancel_after_a_500_stops_what_may_have_started(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A 500 proves nothing (PostHog may have started the run before failing), unlike
    a 4xx: cancel() on that stream sends the cancel PATCH. The fake failed before
    creating anything, so the PATCH meets a 404."""
    fake.fail_next(1, status=500, method="POST")
    stream = ph.conversations.create("q")
    with pytest.raises(aposthog.InternalServerError):
        await stream.until_done()
    with pytest.raises(aposthog.NotFoundError):
        await stream.cancel()
    assert _patches(fake) == [f"/api/environments/1/conversations/{stream.conversation_id}/cancel/"]


# A cancel() while the client waits to try again: PATCH only if a run may have started.

SLOW_RETRY = aposthog.RetryPolicy(initial_backoff=60, max_backoff=60, max_retry_after=60)


async def _cancel_while_waiting(
    client: aposthog.Client, reason: str
) -> tuple[ConversationStream, aposthog.PostHogError | None]:
    """
    Read a new stream in a task; cancel it while it waits (`reason`) to try again.
    Returns the stream and what cancel() raised.
    """
    waiting = anyio.Event()
    raised: aposthog.PostHogError | None = None

    def on_wait(wait: aposthog.Wait) -> None:
        if wait.reason == reason:
            waiting.set()  # called just before the client sleeps, 60 s here

    stream = client.with_options(on_wait=on_wait).conversations.create("q")
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.until_done)  # woken by the cancel: it returns, unfinished
        with anyio.fail_after(10):  # only a hang would take this long
            await waiting.wait()
            try:
                await stream.cancel()
            except aposthog.PostHogError as exc:
                raised = exc
    assert stream.closed
    assert stream.result().cancelled
    assert not stream.result().complete
    return stream, raised


async def test_cancel_while_waiting_after_a_429_sends_nothing(fake: FakePostHog) -> None:
    """PostHog answered 429: it created no conversation, and a PATCH would get a 404."""
    fake.throttle_next(1, method="POST")
    async with fake.client(retry=SLOW_RETRY) as client:
        stream, raised = await _cancel_while_waiting(client, "rate_limit")
    assert raised is None
    assert [r.method for r in fake.requests] == ["POST"]
    assert fake.status_counts == {429: 1}
    assert stream.conversation_id not in fake.conversations


async def test_cancel_while_waiting_after_posthogs_own_503_spares_another_devices_run(
    fake: FakePostHog,
) -> None:
    """
    Another device's answer streams in the conversation; this device's follow-up got
    PostHog's own 503 (its JSON error, before the view ran: retried for that reason).
    The user leaves during the backoff: cancel() sent the PATCH, which stopped the other
    device's answer. It sends nothing now, as after a 429.
    """
    fake.script_answer("the other device's answer " * 20, delay=0.05)
    async with fake.client(retry=SLOW_RETRY) as client:
        other = client.conversations.create("from the other device")
        async with other:
            await anext(other)  # its answer has begun
            fake.fail_next(1, status=503, method="POST")
            waiting = anyio.Event()

            def on_wait(wait: aposthog.Wait) -> None:
                waiting.set()

            follow_up = client.with_options(on_wait=on_wait).conversations.create(
                "a follow-up", conversation=other.conversation_id
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow_up.until_done)
                with anyio.fail_after(10):
                    await waiting.wait()
                    await follow_up.cancel()
            assert follow_up.result().cancelled
            assert [] == _patches(fake)
            result = await other.until_done()
    assert result.complete
    assert not result.cancelled


@pytest.mark.parametrize("refusal", ["429", "503"])
async def test_conversations_cancel_while_a_new_conversations_message_waits_stops_it(
    fake: FakePostHog, refusal: str
) -> None:
    """
    The Stop button (`ph.conversations.cancel(id)`) while a new conversation's first
    message waits out PostHog's 429 (or its 503): PostHog knows no such conversation and
    answers the PATCH 404. That was a `NotFoundError`, and the stream, released as not
    stopped, then sent the message and streamed the whole answer. It is stopped now:
    cancelled, unsent, and the Stop raises nothing.
    """
    if refusal == "429":
        fake.throttle_next(1, method="POST")
    else:
        fake.fail_next(1, status=503, method="POST")
    async with fake.client(retry=SLOW_RETRY) as client:
        waiting = anyio.Event()

        def on_wait(wait: aposthog.Wait) -> None:
            waiting.set()

        stream = client.with_options(on_wait=on_wait).conversations.create("q")
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.until_done)
            with anyio.fail_after(10):
                await waiting.wait()
                await client.conversations.cancel(stream.conversation_id)
    assert stream.closed
    assert stream.result().cancelled
    assert ["POST", "PATCH"] == [r.method for r in fake.requests]
    assert stream.conversation_id not in fake.conversations


async def test_conversations_cancel_of_a_conversation_deleted_under_its_run_is_not_found(
    fake: FakePostHog,
) -> None:
    """
    Another device deleted the conversation while this client's stream reads its answer:
    PostHog answers the cancel 404 (deleted ones are not found), and the run goes on.
    The stream, whose message was sent, is not ended as cancelled: the 404 is raised.
    """
    fake.script_answer("word " * 200, delay=0.02)
    async with fake.client() as client, fake.client() as other_device:
        stream = client.conversations.create("q")
        async with stream:
            await anext(stream)  # the answer has begun
            await other_device.conversations.delete(stream.conversation_id)
            with pytest.raises(aposthog.NotFoundError):
                await client.conversations.cancel(stream.conversation_id)
            assert not stream.closed
            assert not stream.result().cancelled


async def test_conversations_cancel_of_a_conversation_no_stream_knows_is_not_found(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Without a stream of it on this client, an unknown conversation stays an error."""
    with pytest.raises(aposthog.NotFoundError):
        await ph.conversations.cancel(uuid.uuid4())


async def test_cancel_while_waiting_after_a_failed_connection_sends_nothing() -> None:
    """The POST never reached a server: there is nothing to stop, and nobody to tell."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # a port nobody listens on: connections are refused
        port = sock.getsockname()[1]
        client = aposthog.Client(
            host=f"http://127.0.0.1:{port}", api_key="phx_x", project_id=1, retry=SLOW_RETRY
        )
        async with client:
            _, raised = await _cancel_while_waiting(client, "retry")
    assert raised is None  # a PATCH would have failed: there is no server


async def test_cancel_while_waiting_after_a_dropped_post_stops_the_run(fake: FakePostHog) -> None:
    """The POST reached PostHog, which started the run, then the connection dropped."""
    fake.script_answer("a long answer", delay=0.05, drop_after=0)
    async with fake.client(retry=SLOW_RETRY) as client:
        stream, raised = await _cancel_while_waiting(client, "retry")
    assert raised is None
    assert _patches(fake) == [f"/api/environments/1/conversations/{stream.conversation_id}/cancel/"]
    assert fake.conversations[stream.conversation_id].status == "idle"


async def test_cancel_while_waiting_after_a_lost_answer_sends_the_patch(
    fake: FakePostHog,
) -> None:
    """The POST reached the server, which cut the connection unanswered: maybe it started."""
    fake.drop_next(1, method="POST")
    async with fake.client(retry=SLOW_RETRY) as client:
        stream, raised = await _cancel_while_waiting(client, "retry")
    # The fake dropped it before creating anything, so it answers the PATCH with a 404.
    assert isinstance(raised, aposthog.NotFoundError)
    assert _patches(fake) == [f"/api/environments/1/conversations/{stream.conversation_id}/cancel/"]


def _patches(fake: FakePostHog) -> list[str]:
    return [r.path for r in fake.requests if r.method == "PATCH"]


async def test_cancel_while_waiting_to_retry_a_503_sends_the_message_no_more() -> None:
    """
    PostHog answered the message's POST with its 503 (refused: retried after a short
    backoff). The user goes away during that backoff: cancel() from another task sends
    the PATCH, and while PostHog answers it the reader's backoff ends. The message must
    not be sent again after cancel() was called: that POST starts the very run the user
    asked to stop, after the PATCH that was to stop it, and then nobody reads it.
    """
    seen: list[str] = []
    cancelling = asyncio.Event()

    async def posthog(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} after cancel" if cancelling.is_set() else request.method)
        if request.method == "PATCH":
            await asyncio.sleep(0.3)  # PostHog takes its time to answer the cancel
            return web.json_response({"detail": "Not found."}, status=404)
        if len([m for m in seen if m.startswith("POST")]) == 1:
            body = {"type": "server_error", "code": "error", "detail": "busy", "attr": None}
            return web.json_response(body, status=503)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)  # a run started: PostHog streams it
        with contextlib.suppress(Exception):
            while True:
                await response.write(b": keepalive\n\n")
                await asyncio.sleep(0.05)
        return response

    retrying = asyncio.Event()

    def on_wait(wait: aposthog.Wait) -> None:
        if wait.reason == "retry":
            retrying.set()

    policy = aposthog.RetryPolicy(initial_backoff=0.05, max_backoff=0.05)
    async with serve(posthog) as url:
        client = aposthog.Client(
            api_key="phx_k", host=url, project_id=1, retry=policy, on_wait=on_wait
        )
        async with client as ph:
            stream = ph.conversations.create("q")
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(stream.until_done)  # woken by the cancel
                    await retrying.wait()
                    cancelling.set()
                    with contextlib.suppress(aposthog.NotFoundError):
                        await stream.cancel()
    assert stream.closed
    assert "POST after cancel" not in seen, seen


async def test_cancel_while_the_retry_waits_for_the_only_slot_does_not_hang() -> None:
    """
    A worker pool at `max_concurrency=1` (or with every slot busy): the message's POST
    lost its answer (PostHog may have started the run), its backoff ended, and its
    re-attach waits in line for a slot behind a slow call. The user goes away: cancel()
    sends its PATCH, which joins the line behind the re-attach. Neither may hold the
    slot the other waits for (a retry that saw the cancel and slept holding it hung both
    for good); nor is the message sent again.
    """
    seen: list[str] = []
    contents: list[str | None] = []
    holding = asyncio.Event()
    release = asyncio.Event()

    async def posthog(request: web.Request) -> web.StreamResponse:
        seen.append(request.method)
        if request.method == "POST":
            contents.append((await request.json())["content"])
        if request.method == "GET":  # a slow call of another task, holding the one slot
            holding.set()
            await release.wait()
        if request.method in ("GET", "PATCH"):
            return web.json_response({"detail": "Not found."}, status=404)
        # Lost once sent: PostHog may have started the run, which cancel() must stop.
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    retrying = asyncio.Event()

    def on_wait(wait: aposthog.Wait) -> None:
        if wait.reason == "retry":
            retrying.set()

    policy = aposthog.RetryPolicy(initial_backoff=0.02, max_backoff=0.02)
    async with serve(posthog) as url:
        client = aposthog.Client(
            api_key="phx_k",
            host=url,
            project_id=1,
            retry=policy,
            on_wait=on_wait,
            max_concurrency=1,
        )
        async with client as ph:
            stream = ph.conversations.create("q")
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream.until_done)  # woken by the cancel
                await retrying.wait()  # the POST's answer was lost: the retry waits 0.02 s
                other = ph.batch_exports.get("018f0000-0000-0000-0000-000000000000")
                tg.start_soon(_ignore, other)
                await holding.wait()  # that GET holds the only slot
                await anyio.sleep(0.1)  # the retry's backoff is over: it waits for the slot
                hung = True
                with anyio.move_on_after(1.0):
                    async with anyio.create_task_group() as inner:
                        inner.start_soon(_cancel_quietly, stream)
                        await anyio.sleep(0.05)  # cancel()'s PATCH is in line behind it
                        release.set()
                    hung = False
                tg.cancel_scope.cancel()  # (when it hung: let the test end)
    assert not hung, f"cancel() never ended: the requests sent were {seen}"
    assert ["POST", "GET"] == seen[:2]
    assert "PATCH" == seen[-1]
    assert ["q"] == [c for c in contents if c is not None]  # after it, re-attaches alone
    assert stream.closed


async def _ignore(call: Any) -> None:
    with contextlib.suppress(aposthog.PostHogError):
        await call


async def _cancel_quietly(stream: ConversationStream) -> None:
    with contextlib.suppress(aposthog.NotFoundError):
        await stream.cancel()


async def test_a_stream_read_to_its_end_is_closed(fake: FakePostHog, ph: aposthog.Client) -> None:
    stream = ph.conversations.create("q")
    assert not stream.closed
    result = await stream.until_done()
    assert result.complete
    assert stream.closed  # over: ended, though nobody closed it


async def test_a_refused_async_with_leaves_the_stream_closed(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A pre-stream error raised by `async with` closes the stream: nothing stays counted."""
    fake.script_answer("a long answer", delay=0.05)
    async with ph.conversations.create("first") as first:
        await anext(first)
        second = ph.conversations.create("second", conversation=first.conversation_id)
        with pytest.raises(aposthog.ConflictError):
            async with second:
                pass
        assert second.closed
        assert ph.open_streams == 1  # the first only
        assert second._engine not in ph._api.pipeline.streams


async def test_a_loop_refused_to_a_second_reader_leaves_the_first_readers_stream_open(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A loop that got `ClientStateError` (another task reads the stream) and is then
    dropped does not close the stream under the task reading it."""
    fake.script_answer("slow answer", token_size=1, delay=0.05)
    stream = ph.conversations.create("q")
    results: list[aposthog.ConversationResult] = []

    async def read() -> None:
        results.append(await stream.until_done())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            while not stream._engine._busy:  # noqa: ASYNC110 (the reader is now waiting)
                await anyio.sleep(0.005)
            for loop in (stream.text_deltas(), stream.text_batches(), aiter(stream)):
                with pytest.raises(aposthog.ClientStateError):
                    await anext(loop)
            del loop
            gc.collect()
            assert not stream.closed
    (result,) = results
    assert result.complete
    assert result.text == "slow answer"


async def test_aclose_on_a_loop_closes_its_stream(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("slow answer", token_size=1, delay=0.05)
    stream = ph.conversations.create("q")
    loop = stream.text_deltas()
    assert await anext(loop) == "s"
    await loop.aclose()
    assert stream.closed  # while the loop is still referenced
    assert ph.open_streams == 0
    await fake.wait_for_streams_closed(timeout=0.5)
    assert fake.ai_streams.disconnected == 1


async def test_cancel_after_the_run_ended_stops_nothing(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The run is over: a PATCH could only stop another run (a message queued meanwhile)."""
    stream = ph.conversations.create("q")
    await stream.until_done()
    await stream.cancel()
    assert _patches(fake) == []
    assert stream.result().complete


@pytest.mark.parametrize("reader", ["text_deltas", "until_done"])
async def test_closing_the_client_under_a_reader_never_passes_for_a_finished_answer(
    fake: FakePostHog, reader: str
) -> None:
    """
    A chat bot relays `text_deltas()` (or awaits `until_done()`) in a task while its
    shutdown closes the shared client. The README's rule is that a loop ending without an
    exception means the run is complete, and `until_done()` never returns an answer cut
    short; so the reader, whose run is not complete, must get an exception, not a quiet
    end that it relays to its user as the whole answer.
    """
    fake.script_answer("a slow answer that is still being written", delay=0.2)
    outcome: list[str] = []
    async with fake.client(retry=FAST) as ph:
        stream = ph.conversations.create("q")
        await anext(stream)  # the conversation
        await anext(stream)  # the echo of the question: the answer is under way

        async def relay() -> None:
            try:
                if reader == "text_deltas":
                    async for _ in stream.text_deltas():
                        pass
                else:
                    await stream.until_done()
            except aposthog.ClientStateError as exc:
                outcome.append(str(exc))
            else:
                outcome.append("ended quietly")

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(relay)
                await anyio.sleep(0.05)  # the relay waits for the next snapshot
                await ph.aclose()
    assert not stream.result().complete
    assert [
        "this ConversationStream was closed before PostHog ended it: its aposthog.Client was "
        "closed; result() holds what arrived"
    ] == outcome


async def test_a_timed_out_read_never_turns_into_the_quiet_end_of_the_answer(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    A chat bot shows "typing…" while PostHog AI thinks: it waits for each delta with a
    timeout (`asyncio.wait_for(anext(deltas), ...)`) and, on a timeout, updates the
    indicator and waits again. The cancelled read closes the stream (every cancellation
    does), which is fine; but the next read must not then end the loop as if the answer
    were complete: the bot would relay an empty or truncated answer as the whole one.
    Either the stream survives the timed-out read, or reading it again raises.
    """
    fake.script_answer(ANSWER, token_size=8, delay=0.15)  # slower than the timeout
    stream = ph.conversations.create("q")
    deltas = stream.text_deltas()
    relayed: list[str] = []
    timeouts = 0
    outcome = "ended quietly"
    try:
        while True:
            try:
                relayed.append(await asyncio.wait_for(anext(deltas), 0.1))
            except asyncio.TimeoutError:  # noqa: PERF203 (3.10: not the builtin)
                timeouts += 1  # the bot updates its "typing…" indicator
            except StopAsyncIteration:
                break
    except aposthog.ClientStateError as exc:
        outcome = str(exc)
    assert 1 == timeouts  # the next read raised: the cancelled one had closed the stream
    assert (
        "this ConversationStream was closed before PostHog ended it: a read of it was "
        "cancelled, which closes the stream; result() holds what arrived"
    ) == outcome
    assert stream.closed
    assert not stream.result().complete
    # Another read, or until_done(), says the same: never a quiet end.
    with pytest.raises(aposthog.ClientStateError, match="a read of it was cancelled"):
        await stream.until_done()
    with pytest.raises(aposthog.ClientStateError, match="a read of it was cancelled"):
        await anext(stream)


class _Stalling(Replay):
    """The recorded chunks, and then silence (the body goes on, nothing comes)."""

    async def read_chunk(self) -> bytes:
        chunk = await super().read_chunk()
        if not chunk:
            await anyio.sleep_forever()
        return chunk


async def test_what_arrived_before_the_client_closed_is_still_read_then_the_reader_is_told() -> (
    None
):
    """
    A relay that awaits its own platform between deltas while its client closes: the
    deltas already received (one chunk held several) are still handed out, nothing of
    them lost, and then the next read raises, as the stream never ended.
    """
    chunk = b"".join(
        b"event: message\ndata: " + json.dumps(data).encode() + b"\n\n"
        for data in [
            {"type": "human", "content": "q", "id": "h0"},
            {"type": "ai", "content": "One"},
            {"type": "ai", "content": "One, two"},
            {"type": "ai", "content": "One, two, three"},
        ]
    )
    async with aposthog.Client(api_key="phx_k", host="http://127.0.0.1:9", project_id=1) as ph:

        async def replay(*_: Any, **__: Any) -> Replay:
            return _Stalling([chunk])

        ph._api.pipeline.transport.open_stream = replay  # type: ignore[method-assign, assignment]
        stream = ph.conversations.create("q")
        deltas = stream.text_deltas()
        assert "One" == await anext(deltas)
        await ph.aclose()  # while the relay is busy elsewhere
        rest: list[str] = []
        with pytest.raises(aposthog.ClientStateError, match=r"its aposthog\.Client was closed"):
            async for text in deltas:
                rest.append(text)  # noqa: PERF401 (kept as read: the loop raises)
        assert [", two", ", three"] == rest
        assert "One, two, three" == stream.result().streamed_text
        assert not stream.result().complete


async def test_a_stream_whose_read_failed_never_ends_quietly_after(
    fake: FakePostHog,
) -> None:
    """
    A read that raised (the re-attach budget spent on a stream cut short) closes the
    stream; a later read (a second loop, `until_done()` in a handler) raises too, naming
    the failure, instead of ending as if the answer were whole.
    """
    fake.script_answer("an answer cut short", token_size=2, drop_after=2)
    async with fake.client(retry=FAST) as ph:
        stream = ph.conversations.create("q", max_reattach_attempts=0)
        with pytest.raises(aposthog.APIConnectionError):
            async for _ in stream.text_deltas():
                pass
        with pytest.raises(aposthog.ClientStateError, match=r"a read of it failed \("):
            await stream.until_done()
        assert not stream.result().complete


async def test_a_delta_loop_that_ends_without_an_exception_joins_to_the_result_text(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    README and `text_deltas()`: "when the loop ends without an exception, the run is
    complete and `"".join(deltas) == stream.result().text`", the only exception named
    being PostHog rewriting text it streamed. PostHog's LLM errors arrive as an in-band
    `ai/failure` after part of the answer was streamed (reference §3.5): the loop ends
    quietly (in-band failures are results), the run is complete, and the relayed deltas
    are a partial answer that `result().text` does not contain. A bot that trusts the rule
    relays half an answer as the whole one: the rule (README, `text_deltas()`) says the
    deltas join to `streamed_text`, which is `text` only for a run that did not fail.
    """
    fake.script_answer(ANSWER, token_size=3, fail="I'm unable to respond right now.")
    stream = ph.conversations.create("q")
    deltas = [text async for text in stream.text_deltas()]
    result = stream.result()
    assert result.complete
    assert result.failed
    assert "".join(deltas) == result.streamed_text
    assert deltas
    assert "" == result.text  # the abandoned part is no answer


def test_the_question_docstring_example_is_valid_python() -> None:
    """
    The reference (mkdocstrings) and `help()` show `ConversationStream.question`'s
    example from `__doc__`, where the `"\\n\\n"` of its source, written in a docstring
    that is not raw, is two real line breaks: the example readers copy is a string
    literal cut in two, a `SyntaxError`.
    """
    doc = ConversationStream.question.__doc__
    assert doc is not None
    example = textwrap.dedent(doc.split("```python\n", 1)[1].split("```", 1)[0])
    compile("async def _example(stream):\n" + textwrap.indent(example, "    "), "doc", "exec")


@pytest.mark.parametrize("closed_by", ["stream.aclose", "client.aclose"])
async def test_a_readers_cancel_landing_as_the_stream_closes_stays_a_cancellation(
    fake: FakePostHog, closed_by: str
) -> None:
    """
    A chat-bot's reader task waits (to retry the message after PostHog's 503) when the
    bot shuts down: the stream (or the client) is closed and the reader's task cancelled
    in the same loop step. The close wakes the reader by cancelling its wait's scope; on
    3.10 that scope also takes the task's own cancellation for its own, and the reader's
    loop ends quietly (`stream.aclose()`) or with `ClientStateError` (`Client.aclose()`):
    the task goes on running past its cancellation.
    """
    waiting = asyncio.Event()
    fake.fail_next(1, status=503, method="POST")
    policy = aposthog.RetryPolicy(initial_backoff=10, max_backoff=10)
    async with fake.client(retry=policy, on_wait=lambda _: waiting.set()) as client:
        stream = client.conversations.create("q")

        async def read() -> str:
            async for _ in stream.text_deltas():
                pass
            return "the loop ended"

        reader = asyncio.ensure_future(read())
        with anyio.fail_after(1):
            await waiting.wait()
        closing = asyncio.ensure_future(
            stream.aclose() if closed_by == "stream.aclose" else client.aclose()
        )
        asyncio.get_running_loop().call_soon(reader.cancel)  # in the step the close wakes it
        await closing
        outcome = (await asyncio.gather(reader, return_exceptions=True))[0]
    assert isinstance(outcome, asyncio.CancelledError), repr(outcome)


# ------------------------------------------------------------ partial notebook updates
#
# PostHog streams a notebook it is writing (session summaries, deep research) as
# `ai/notebook` messages WITHOUT an id, each holding the whole notebook so far, then one
# with an id (`_stream_notebook_content`: "not providing id to count it as a partial
# message on FE"; `ChatAgentStreamProcessor._handle_message`: "Messages WITHOUT IDs must
# be streamed because they're progressive"; the frontend skips id-less notebook updates).


def _notebook(size: int, ident: str | None = None) -> dict[str, Any]:
    text = {"type": "text", "text": "x" * size}
    content = {"type": "doc", "content": [{"type": "paragraph", "content": [text]}]}
    message: dict[str, Any] = {"type": "ai/notebook", "notebook_id": "nb1", "content": content}
    if ident is not None:
        message["id"] = ident
    return message


def _sse_message(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + json.dumps(message).encode() + b"\n\n"


def _answering(messages: list[dict[str, Any]]) -> Any:
    """A PostHog whose `POST conversations/` streams `messages`, then ends the body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.method != "POST":
            return web.json_response({"detail": "Not found."}, status=404)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"".join(_sse_message(m) for m in messages))
        await response.write_eof()
        return response

    return handler


_SUMMARY_CALL: dict[str, Any] = {
    "type": "ai",
    "content": "",
    "id": "a1",
    "tool_calls": [{"id": "t1", "name": "summarize_sessions", "args": {}, "type": "tool_call"}],
}


def _summary_run(partial: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """A run that writes a session summary's notebook: `partial` updates, then its final."""
    return [
        {"type": "human", "content": "Summarise my sessions", "id": "h1"},
        _SUMMARY_CALL,
        *partial,
        _notebook(size, "n1"),
        {"type": "tool", "content": "Summary written.", "tool_call_id": "t1", "id": "tm1"},
        {"type": "ai", "content": "Here is the summary.", "id": "a2"},
    ]


async def test_partial_notebook_updates_are_not_final_messages() -> None:
    messages = _summary_run([_notebook(size) for size in (10, 20, 30)], 40)
    async with (
        serve(_answering(messages)) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, retry=FAST) as ph,
    ):
        result = await ph.conversations.create("Summarise my sessions").until_done()
    assert result.complete
    # "in-progress snapshots are not included (their final messages are)", "each once"
    assert [m.id for m in result.messages] == ["h1", "a1", "n1", "tm1", "a2"]


async def test_a_stream_cut_while_a_notebook_streams_is_incomplete() -> None:
    # A research run writing its report notebook (a top-level node): the body is cut
    # after two partial updates, long before the final notebook and the answer.
    messages: list[dict[str, Any]] = [
        {"type": "human", "content": "Research our churn", "id": "h1"},
        _notebook(10),
        _notebook(20),
    ]
    async with (
        serve(_answering(messages)) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, retry=FAST) as ph,
    ):
        stream = ph.conversations.create("Research our churn", max_reattach_attempts=0)
        with anyio.fail_after(2), pytest.raises(aposthog.IncompleteStreamError):
            await stream.until_done()
    assert not stream.result().complete


async def test_partial_notebook_updates_count_only_their_growth() -> None:
    # A 20 KB notebook written in 200 partial updates: 2 MB on the wire, but a snapshot
    # replaces the one before, so what the stream keeps stays near the final notebook's
    # size ("A snapshot counts only for the text it adds").
    messages = _summary_run([_notebook(100 * step) for step in range(1, 201)], 20000)
    async with (
        serve(_answering(messages)) as url,
        aposthog.Client(
            api_key="phx_k", host=url, project_id=1, retry=FAST, max_response_size=1 << 20
        ) as ph,
    ):
        result = await ph.conversations.create("Summarise").until_done()
    assert result.text == "Here is the summary."


def _notebook_artifact(size: int, ident: str = "temp-notebook") -> dict[str, Any]:
    """PostHog's notebook artifact (`ai/artifact`): being written under `temp-notebook`
    (the `NotebookStreamingMixin` of its stream processor), or final under its own id."""
    blocks = [{"type": "markdown", "content": "y" * size}]
    return {
        "type": "ai/artifact",
        "id": ident,
        "artifact_id": "" if ident.startswith("temp-") else "nb1",
        "source": "artifact",
        "content": {"content_type": "notebook", "title": "Weekly", "blocks": blocks},
    }


_NOTEBOOK_CALL: dict[str, Any] = {
    "type": "ai",
    "content": "Writing it.",
    "id": "a1",
    "tool_calls": [{"id": "c1", "name": "create_notebook", "args": {}, "type": "tool_call"}],
}


async def test_a_notebook_artifact_written_under_a_temp_id_is_passed_on_live_not_kept() -> None:
    """
    A current PostHog streams a notebook being written as an `ai/artifact` with the id
    `temp-notebook`, once per model chunk, each with the whole notebook so far; its
    final artifact (its own id) follows. Each was taken for a final message: replaced in
    place, kept in `result.messages` under `temp-notebook`, and counted whole, so a 20
    KB notebook in 200 snapshots (4 MB on the wire) broke a 1 MiB `max_response_size`
    with `ResponseTooLargeError`. They are passed on live (`in_progress`), each once,
    counted by their growth, and only the final artifact is kept.
    """
    written = [_notebook_artifact(100 * step) for step in range(1, 201)]
    messages = [
        {"type": "human", "content": "Write a report", "id": "h1"},
        _NOTEBOOK_CALL,
        *written,
        written[-1],  # sent again unchanged: passed on once
        {"type": "tool", "content": "Notebook created.", "tool_call_id": "c1", "id": "t1"},
        _notebook_artifact(20000, "art-1"),
        {"type": "ai", "content": "Here it is."},
        {"type": "ai", "content": "Here it is.", "id": "a2"},
    ]
    async with (
        serve(_answering(messages)) as url,
        aposthog.Client(
            api_key="phx_k", host=url, project_id=1, retry=FAST, max_response_size=1 << 20
        ) as ph,
    ):
        stream = ph.conversations.create("Write a report")
        live = [
            event.message
            async for event in stream
            if isinstance(event, aposthog.MessageEvent) and event.message.in_progress
        ]
        result = stream.result()
    assert result.complete
    assert [m.id for m in result.messages] == ["h1", "a1", "t1", "art-1", "a2"]
    notebooks = [m for m in live if isinstance(m, aposthog.ArtifactMessage)]
    assert [len(m.content["blocks"][0]["content"]) for m in notebooks] == [
        100 * step for step in range(1, 201)
    ]
    assert result.text == "Writing it.\n\nHere it is."


async def test_an_answer_streams_live_while_a_notebook_is_written_under_a_temp_id() -> None:
    """
    The next answer's text streams while a second notebook is written (its snapshots
    between the text's): each repeated `temp-notebook` moved the read position back, as
    a replayed final message does, and the text's snapshots after it were dropped as
    replays: the answer came in one piece with its final message.
    """
    pieces = ["Here", " is", " the", " second", " report."]
    answer = [
        {"type": "ai", "content": "".join(pieces[: i + 1]), "tool_calls": None}
        for i in range(len(pieces))
    ]
    interleaved: list[dict[str, Any]] = []
    for i, snapshot in enumerate(answer):
        interleaved += [snapshot, _notebook_artifact(10 * (i + 1))]
    messages = [
        {"type": "human", "content": "Two reports", "id": "h1"},
        _NOTEBOOK_CALL,
        _notebook_artifact(10),
        {"type": "tool", "content": "Notebook created.", "tool_call_id": "c1", "id": "t1"},
        _notebook_artifact(10, "art-1"),
        *interleaved,
        {"type": "ai", "content": "".join(pieces), "id": "a2"},
    ]
    deltas, result = await _relayed(messages, "Two reports")
    assert deltas == ["Writing it.", "\n\n" + pieces[0], *pieces[1:]]
    assert [m.id for m in result.messages] == ["h1", "a1", "t1", "art-1", "a2"]


async def _relayed(
    messages: list[dict[str, Any]], question: str
) -> tuple[list[str], aposthog.ConversationResult]:
    """`text_deltas()` of `create(question)` from a PostHog streaming `messages`, and the
    stream's result."""
    async with (
        serve(_answering(messages)) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, retry=FAST) as ph,
    ):
        stream = ph.conversations.create(question)
        deltas = [delta async for delta in stream.text_deltas()]
    return deltas, stream.result()


async def test_an_answer_after_a_web_search_is_relayed_once_and_live() -> None:
    """
    PostHog splits an answer at Anthropic's web search and streams only its last part;
    with the search first, `text_deltas()` gave the answer twice (live, then all of it
    again when the finals came), and with text before the search, the answer after it
    came in one piece with the finals.
    """
    search = [{"id": "srvtoolu_1", "name": "web_search", "args": {}}]
    answer = ["According", " to the docs,", " flags are evaluated server side."]
    for before in ("", "Let me search."):
        messages: list[dict[str, Any]] = [{"type": "human", "content": "Flags?", "id": "h1"}]
        if before:
            messages.append({"type": "ai", "content": before})
        messages += [
            {"type": "ai", "content": before, "server_tool_calls": search},
            {"type": "ai", "content": ""},
            *({"type": "ai", "content": "".join(answer[: i + 1])} for i in range(len(answer))),
            {"type": "ai", "content": before, "id": "u1", "server_tool_calls": search},
            {"type": "ai", "content": "".join(answer), "id": "u2"},
        ]
        deltas, result = await _relayed(messages, "Flags?")
        separator = "\n\n" if before else ""
        assert deltas == [*([before] if before else []), separator + answer[0], *answer[1:]]
        assert "".join(deltas) == result.text


# ------------------------------------------------------------ generation_error is a retry
#
# PostHog sends `status: generation_error` when an insight generator's output fails its
# schema validation (`SchemaGeneratorNode` returns `intermediate_steps`, which
# `_process_value_update` turns into GENERATION_ERROR); its router then goes to the
# failover node and the generator tries again. The run goes on: a visualization and the
# answer follow (a FailureMessage only after the second failed retry).

_INSIGHT_CALL: dict[str, Any] = {
    "type": "ai",
    "content": "",
    "id": "a1",
    "tool_calls": [{"id": "t1", "name": "create_insight", "args": {}, "type": "tool_call"}],
}
_AFTER_THE_RETRY: list[dict[str, Any]] = [
    {"type": "ai/viz", "query": "Signups", "answer": {"kind": "TrendsQuery"}, "id": "v1"},
    {"type": "tool", "content": "Insight created.", "tool_call_id": "t1", "id": "tm1"},
    {"type": "ai", "content": "Signups rose"},
    {"type": "ai", "content": "Signups rose 12%.", "id": "a2"},
]


async def test_a_generation_error_the_run_recovers_from_is_no_failure() -> None:
    messages: list[dict[str, Any]] = [
        {"type": "human", "content": "Signups?", "id": "h1"},
        _INSIGHT_CALL,
    ]

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        body = b"".join(_sse_message(m) for m in messages)
        body += b'event: status\ndata: {"type":"generation_error"}\n\n'
        body += b"".join(_sse_message(m) for m in _AFTER_THE_RETRY)
        await response.write(body)
        await response.write_eof()
        return response

    stream, deltas = await stream_served_by(handler, "Signups?", within=None)
    result = stream.result()
    assert "".join(deltas) == result.text == "Signups rose 12%."
    # The relays in examples/ apologise instead of answering when `failed` is set.
    assert not result.failed


async def test_a_stream_cut_after_a_generation_error_is_reattached() -> None:
    human = {"type": "human", "content": "Signups?", "id": "h1"}
    posted: list[Any] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read() or b"null")
        if request.method == "GET":  # the run as stored: still going until re-attached
            stored: list[dict[str, Any]] = [human, _INSIGHT_CALL]
            status = "in_progress"
            if None in posted:
                stored += [m for m in _AFTER_THE_RETRY if "id" in m]
                status = "idle"
            conversation = {"id": "x", "status": status, "title": "Signups", "messages": stored}
            return web.json_response(conversation)
        posted.append(body["content"])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if body["content"] is not None:
            # The message's stream, cut while the generator tries again.
            data = _sse_message(human) + _sse_message(_INSIGHT_CALL)
            data += b'event: status\ndata: {"type":"generation_error"}\n\n'
        else:  # the re-attach: what the run produced since
            data = b"".join(_sse_message(m) for m in _AFTER_THE_RETRY)
        await response.write(data)
        await response.write_eof()
        return response

    stream, deltas = await stream_served_by(handler, "Signups?")
    assert posted == ["Signups?", None]  # re-attached: the run was still going
    assert "".join(deltas) == stream.result().text == "Signups rose 12%."


async def _relayed_until(
    stream: ConversationStream, stop: Callable[[], Awaitable[None]]
) -> tuple[list[str], list[BaseException]]:
    """
    Relay `stream`'s text in a task of its own, as a chat backend does, and call `stop`
    once the first text came (within 2 s in all): the text relayed, and the aposthog
    errors the relay met.
    """
    deltas: list[str] = []
    errors: list[BaseException] = []
    relayed = anyio.Event()

    async def relay() -> None:
        try:
            async with stream:
                async for text in stream.text_deltas():
                    deltas.append(text)
                    relayed.set()
        except aposthog.PostHogError as exc:
            errors.append(exc)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay)
            await relayed.wait()
            await stop()
    return deltas, errors


async def test_cancel_by_id_from_another_task_ends_the_same_clients_reader_quietly(
    fake: FakePostHog,
) -> None:
    """A web app streams an answer in one request handler; the user's Stop button is
    another request, whose handler knows only the conversation id and calls
    `ph.conversations.cancel(id)` on the shared client. The client itself asked PostHog to
    stop that run: its reader should end as a stream cancelled by `stream.cancel()` does
    (`result().cancelled`), not raise `IncompleteStreamError` ("PostHog ended the stream
    before the run's final message"), which the relay shows its user as a failure."""
    fake.script_answer("c " * 100, token_size=2, delay=0.03)
    async with fake.client(retry=FAST) as ph:
        stream = ph.conversations.create("A long analysis, please")
        deltas, errors = await _relayed_until(
            stream,
            lambda: ph.conversations.cancel(stream.conversation_id),  # the Stop button
        )
        assert ph.open_streams == 0
    assert deltas
    assert errors == []
    assert stream.result().cancelled
    posts = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/conversations/")]
    assert len(posts) == 1  # no re-attach (PostHog AI's 10-a-minute window counts it)


# ------------------------------------------------------------------ pending_approval


async def test_pending_approval_gives_the_card_a_run_ended_waiting_for(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog streams nothing about an approval: the run ends at the message calling the
    tool, and the card is the conversation's. `pending_approval()` fetches it then, and
    a resume with its `proposal_id` decides it."""
    fake.script_answer(
        "Shall I create the flag?",
        approval="create_feature_flag",
        approval_preview="Create the flag new-onboarding",
        approval_payload={"key": "new-onboarding"},
    )
    fake.script_answer("Done.")
    stream = ph.conversations.create("Create a flag for the new onboarding")
    with pytest.raises(aposthog.ClientStateError, match="to its end"):
        await stream.pending_approval()  # not read yet: its end decides
    assert (await stream.until_done()).text == "Shall I create the flag?"
    fetched = len(fake.requests)  # the stream fetched the conversation to confirm its end
    approval = await stream.pending_approval()
    assert len(fake.requests) == fetched  # so the card is known: no request
    assert approval is not None
    assert (approval.tool_name, approval.preview, approval.payload) == (
        "create_feature_flag",
        "Create the flag new-onboarding",
        {"key": "new-onboarding"},
    )
    assert approval.decision_status == "pending"
    card = fake.conversations[stream.conversation_id].pending_approvals[0]
    assert approval.proposal_id == card["proposal_id"]
    resumed = ph.conversations.create(
        None,
        conversation=stream.conversation_id,
        resume_payload={"action": "approve", "proposal_id": approval.proposal_id},
    )
    assert (await resumed.until_done()).text == "Done."
    fetched = len(fake.requests)
    assert await resumed.pending_approval() is None  # answered
    assert len(fake.requests) == fetched
    assert card["decision_status"] == "approved"


async def test_pending_approval_asks_nothing_of_a_run_that_ended_otherwise(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """An answer, an in-band failure, a cancel and a stream closed before its end wait for
    no approval: None, and no request."""
    fake.script_answer("An answer.")
    fake.script_answer("Never", fail=True)
    fake.script_answer("A long answer " * 50, delay=0.01)
    answered = ph.conversations.create("q1")
    await answered.until_done()
    failed = ph.conversations.create("q2")
    assert (await failed.until_done()).failed
    cancelled = ph.conversations.create("q3")
    async for _ in cancelled.text_deltas():
        await cancelled.cancel()
        break
    left = ph.conversations.create("q4")
    await left.aclose()  # never sent: closed before its end
    before = len(fake.requests)
    for stream in (answered, failed, cancelled, left):
        assert await stream.pending_approval() is None
    assert len(fake.requests) == before


async def test_pending_approval_is_only_a_card_of_this_runs_call() -> None:
    """A run that ends at a tool call whose card was decided meanwhile (in PostHog's app,
    say) waits for nothing: a card still pending for another call is not this run's. One
    with no call named is taken (PostHog's older cards)."""
    call = {"id": "call_1", "name": "create_feature_flag", "args": {}, "type": "tool_call"}
    human = {"type": "human", "content": "q", "id": "h1"}
    asked = {"type": "ai", "content": "Shall I?", "id": "a1", "tool_calls": [call]}
    cards: list[list[dict[str, Any]]] = [
        [_card("p1", "call_1", "rejected"), _card("p2", "elsewhere")],
        [_card("p1", "call_1", "rejected"), _card("p3", None)],
    ]
    for pending, expected in zip(cards, (None, "p3"), strict=True):
        shown = {"status": "idle", "messages": [human, asked], "pending_approvals": pending}
        async with _posthog_showing(shown, [human, asked]) as ph:
            stream = ph.conversations.create("q")
            await stream.until_done()
            approval = await stream.pending_approval()
        assert (approval and approval.proposal_id) == expected


def _card(proposal: str, call: str | None, status: str = "pending") -> dict[str, Any]:
    return {
        "proposal_id": proposal,
        "decision_status": status,
        "tool_name": "create_feature_flag",
        "original_tool_call_id": call,
    }


@contextlib.asynccontextmanager
async def _posthog_showing(
    conversation: dict[str, Any], streamed: list[dict[str, Any]], methods: list[str] | None = None
) -> AsyncIterator[aposthog.Client]:
    """
    A client of a PostHog on loopback whose conversations GET shows `conversation`, whose
    PATCH answers 204, and whose message POST streams `streamed`, then ends; `methods`
    records each request's method.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        if methods is not None:
            methods.append(request.method)
        if request.method == "GET":
            return web.json_response({"id": request.match_info.get("id", "c"), **conversation})
        if request.method == "PATCH":
            return web.Response(status=204)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for message in streamed:
            await response.write(f"event: message\ndata: {json.dumps(message)}\n\n".encode())
        return response

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, retry=FAST) as ph,
    ):
        yield ph


def _approve_p1(ph: aposthog.Client) -> aposthog.ConversationStream:
    """A resume approving the card `p1` of a conversation."""
    return ph.conversations.create(
        None,
        conversation="5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11",
        resume_payload={"action": "approve", "proposal_id": "p1"},
    )


async def test_pending_approval_after_a_resume_gives_the_same_message_s_next_card() -> None:
    """One `ai` message calls two tools that each need approval. Approving `p1` runs
    `call_1` (its `tool` result streams) and the run stops again at `call_2`'s card, `p2`
    pending: the stream is complete (as tested in test_stream_engine), but
    `pending_approval()` only took cards of calls in this run's own messages, and the
    resumed run holds only the tool result: None, so chat_bot.py and `conversations
    approve` never asked for `p2`."""
    call_1 = {"id": "call_1", "name": "create_feature_flag", "args": {}, "type": "tool_call"}
    call_2 = {"id": "call_2", "name": "delete_feature_flag", "args": {}, "type": "tool_call"}
    human = {"type": "human", "content": "q", "id": "h1"}
    ai0 = {"type": "ai", "content": "I'll do both.", "id": "a0", "tool_calls": [call_1, call_2]}
    t1 = {"type": "tool", "content": "created", "tool_call_id": "call_1", "id": "t1"}
    shown = {
        "status": "idle",
        "title": "q",
        "messages": [human, ai0, t1],
        "pending_approvals": [_card("p1", "call_1", "approved"), _card("p2", "call_2")],
    }
    async with _posthog_showing(shown, [t1]) as ph:
        stream = _approve_p1(ph)
        with anyio.fail_after(5):
            result = await stream.until_done()
            assert result.complete
            approval = await stream.pending_approval()
    assert approval is not None
    assert approval.proposal_id == "p2"


async def test_cancel_after_a_resume_found_not_applied_spares_the_run_going_on() -> None:
    """A resume PostHog attached to another message's run in progress (the user's other
    device), replayed from its middle (no human message tells it), whose connection
    breaks at that run's tool call: the GET before any re-attach shows the card
    `auto_rejected` and raises `ConflictError`. No run of this stream exists (as after a
    409, or when the other run's human message tells it), so `cancel()` (which
    chat_bot.py, web_relay.py and `conversations approve` call on any error) must send
    nothing; it PATCHed `cancel/`, stopping the other device's answer."""
    methods: list[str] = []
    call = {"id": "call_9", "name": "read_data", "args": {}, "type": "tool_call"}
    theirs = {"type": "ai", "content": "Let me look.", "id": "a9", "tool_calls": [call]}
    shown = {
        "status": "in_progress",
        "title": "q",
        "messages": [{"type": "human", "content": "elsewhere", "id": "h2"}],
        "pending_approvals": [_card("p1", "call_1", "auto_rejected")],
    }
    async with _posthog_showing(shown, [theirs], methods) as ph:
        stream = _approve_p1(ph)
        with anyio.fail_after(5), pytest.raises(aposthog.ConflictError):
            await stream.until_done()
        with anyio.fail_after(5):
            await stream.cancel()
    assert "PATCH" not in methods


async def test_an_approve_attached_to_a_reject_of_the_same_card_is_a_conflict(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The user rejects the card in PostHog's app while a bot approves it. PostHog runs
    the reject; the bot's resume, sent while that run goes on, is attached to it (a resume
    with `content: null` on a conversation in progress re-attaches) and its decision
    ignored. The resumed run has no human message, so only the card tells: `rejected`,
    not what was sent. The stream reports the reject's run as the approval's own,
    complete, where the docs promise `ConflictError` for a decision PostHog ignored."""
    fake.script_answer("Shall I create the flag?", approval="create_feature_flag")
    asked = ph.conversations.create("Create a flag")
    await asked.until_done()
    approval = await asked.pending_approval()
    assert approval is not None
    fake.script_answer("OK, I won't create the flag. " * 10, delay=0.01)
    rejected = ph.conversations.create(
        None,
        conversation=asked.conversation_id,
        resume_payload={"action": "reject", "proposal_id": approval.proposal_id},
    )
    async with contextlib.aclosing(rejected.text_deltas()) as deltas:
        async for _ in deltas:
            break  # the reject's run is going
        approved = ph.conversations.create(
            None,
            conversation=asked.conversation_id,
            resume_payload={"action": "approve", "proposal_id": approval.proposal_id},
        )
        with anyio.fail_after(5), pytest.raises(aposthog.ConflictError, match="came first"):
            await approved.until_done()
    card = fake.conversations[asked.conversation_id].pending_approvals[0]
    assert card["decision_status"] == "rejected"
