"""The stream engine against FakePostHog: requests, pre-stream errors, timeouts, re-attach."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import attrs
import hypothesis
import pytest
from hypothesis import strategies as hst

import aposthog
from aposthog import _stream_engine
from aposthog._observe import StreamOutcome, _Ignored
from aposthog.models.events import (
    ConversationEvent,
    MessageEvent,
    StreamEvent,
)
from aposthog.models.messages import AssistantMessage
from aposthog.sse import SSEDecoder
from aposthog.testing import (
    DropConnection,
    FakePostHog,
    LoopbackServer,
    ServerReply,
    ServerRequest,
)

from .strategies import _answer_text, _snapshots, posthog_runs, wire_message
from .stream_helpers import ANSWER, FAST, Replay, collect, posts

pytestmark = pytest.mark.anyio


# ---------------------------------------------------------------------- reading


async def test_multibyte_characters_split_across_network_chunks(
    fake: FakePostHog, ph: aposthog.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks: list[bytes] = []

    class Recording(SSEDecoder):
        def feed_wire(self, chunk: bytes | bytearray | memoryview) -> list[tuple[str, bytes]]:
            chunks.append(bytes(chunk))
            return super().feed_wire(chunk)

    monkeypatch.setattr(_stream_engine, "SSEDecoder", Recording)
    text = "é👋✓日本語🇫🇷"
    fake.script_answer(text, token_size=1, chunk_size=2, chunk_delay=0.0002)
    existing = fake.seed_conversation()  # no long `conversation` event to dribble out
    stream = ph.conversations.create("q", conversation=existing.id)
    assert "".join(await collect(stream)) == text

    def splits_a_character(chunk: bytes) -> bool:
        try:
            chunk.decode()
        except UnicodeDecodeError:
            return True
        return False

    assert any(splits_a_character(c) for c in chunks)  # the network really split them


# ---------------------------------------------------------------------- requests


async def test_the_request_carries_what_posthog_needs(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    stream = ph.conversations.create(
        "q",
        agent_mode=aposthog.AgentMode.SQL,
        contextual_tools={"tool": {"a": 1}},
        ui_context={"dashboards": []},
        session_id="sess-1",
    )
    await stream.until_done()
    (body,) = posts(fake)
    assert body == {
        "content": "q",
        "conversation": stream.conversation_id,
        "trace_id": stream.trace_id,
        "agent_mode": "sql",
        "contextual_tools": {"tool": {"a": 1}},
        "ui_context": {"dashboards": []},
        "session_id": "sess-1",
    }
    request = next(r for r in fake.requests if r.method == "POST")
    assert request.headers["x-posthog-session-id"] == "sess-1"
    # PostHog's view renders JSON only: the stream alone would be a 406 (see the fake's test).
    assert request.headers["accept"] == "text/event-stream, application/json"


async def test_pre_stream_errors_raise_on_entry(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("slow", delay=0.05)
    async with ph.conversations.create("q") as first:
        with pytest.raises(aposthog.ConflictError) as info:
            async with ph.conversations.create("again", conversation=first.conversation_id):
                pass
        assert info.value.detail == "Cannot resume streaming with a new message"
    other = fake.seed_conversation(user="user-2")
    with pytest.raises(aposthog.BadRequestError) as bad:
        await ph.conversations.create("x", conversation=other.id).until_done()
    assert bad.value.detail == "Cannot access other users' conversations"
    fake.ai_quota_exceeded = True
    with pytest.raises(aposthog.QuotaLimitError):
        await anext(ph.conversations.create("q"))


async def test_a_throttled_create_is_retried_then_sent_once(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.throttle_next(1, method="POST", wait=0)
    result = await ph.conversations.create("q").until_done()
    assert result.complete
    assert len(posts(fake)) == 2  # refused, then accepted


async def test_the_ai_throttle_raises_rate_limit_error(fake: FakePostHog) -> None:
    fake.ai_burst_limit = 0
    async with fake.client(max_retries=0) as ph:
        with pytest.raises(aposthog.RateLimitError) as info:
            await ph.conversations.create("q").until_done()
    assert info.value.retry_after is not None


async def test_a_message_that_reached_the_server_is_never_sent_twice(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.drop_next(1, method="POST")  # the connection dies before any answer
    with pytest.raises(aposthog.APIConnectionError):
        await ph.conversations.create("q").until_done()
    sent = posts(fake)
    assert [b["content"] for b in sent] == ["q", None]  # re-attach only, never the message


async def test_a_200_that_is_not_an_event_stream_is_an_error(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.fail_next(1, status=200, body={"ok": True}, method="POST")
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        await ph.conversations.create("q").until_done()
    assert "text/event-stream" in str(info.value)
    assert info.value.body == '{"ok":true}'


@pytest.mark.parametrize("cut", [False, True])
async def test_a_200_that_is_not_an_event_stream_shows_the_start_of_its_body(cut: bool) -> None:
    """The error keeps the first 500 bytes of the body, decoded with a replacement
    character for what is not UTF-8: an endless body is read no further (and its
    connection is closed at once, which the server sees); one the server cuts short
    keeps what arrived."""
    ended = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"\xff" + b"x" * 299
            if cut:
                raise DropConnection
            while True:
                await anyio.sleep(0.01)
                yield b"x" * 300
        finally:
            ended.set()

    async def handler(request: ServerRequest) -> ServerReply:
        return ServerReply(headers={"Content-Type": "application/json"}, stream=body())

    server = LoopbackServer(handler)
    await server.start()
    try:
        client = aposthog.Client(api_key="phx_k", host=server.url, project_id=1, retry=FAST)
        async with client as ph:
            with anyio.fail_after(2), pytest.raises(aposthog.ResponseDecodeError) as info:
                await ph.conversations.create("q").until_done()
            with anyio.fail_after(1):
                await ended.wait()
    finally:
        await server.stop()
    assert "\ufffd" + "x" * (299 if cut else 499) == info.value.body


async def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = aposthog.Client(api_key="phx_x", host=f"http://127.0.0.1:{port}", retry=FAST)
    async with client as ph:
        with pytest.raises(aposthog.APIConnectionError) as info:
            await ph.conversations.create("q").until_done()
    assert not info.value.reached_server


# ---------------------------------------------------------------------- timeouts


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs")
async def test_a_connect_timeout_is_an_api_timeout_error() -> None:
    # A listening socket whose accept queue is full: Linux drops further SYNs, so the
    # next connection attempt hangs until the client's connect timeout.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            host = f"http://127.0.0.1:{port}"
            client = aposthog.Client(api_key="phx_x", host=host, connect_timeout=0.1)
            async with client.with_options(max_retries=0) as ph:
                with anyio.fail_after(2), pytest.raises(aposthog.APITimeoutError) as info:
                    await ph.conversations.create("q").until_done()
        finally:
            for filler in fillers:
                filler.close()
    assert not info.value.reached_server


async def test_an_idle_stream_times_out_when_it_may_not_reattach(fake: FakePostHog) -> None:
    fake.keepalive_interval = None
    fake.script_answer("slow", token_size=1, delay=0.5)
    async with fake.client(stream_idle_timeout=0.05, retry=FAST) as ph:
        stream = ph.conversations.create("q", max_reattach_attempts=0)
        with pytest.raises(aposthog.APITimeoutError) as info:
            await stream.until_done()
    assert isinstance(info.value, TimeoutError)
    # It says how long PostHog was silent, and names the request the stream answers.
    assert "PostHog sent nothing for 0.05 s (stream_idle_timeout)" in str(info.value)
    path = f"/api/environments/{fake.project_id}/conversations/"
    assert ("POST", path) == (info.value.method, info.value.path)
    assert f"POST {path}" in str(info.value)
    await fake.wait_for_streams_closed()
    assert fake.ai_streams.disconnected == 1


async def test_an_idle_stream_is_reattached_until_the_budget_is_spent(fake: FakePostHog) -> None:
    """Silence past stream_idle_timeout is a drop: re-attached, raised only when spent."""
    fake.keepalive_interval = None
    fake.script_answer("slow", token_size=1, delay=5)
    policy = attrs.evolve(FAST, max_reattaches=2)
    async with fake.client(stream_idle_timeout=0.05, retry=policy) as ph:
        stream = ph.conversations.create("q")
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError) as info:
            await stream.until_done()
    assert "stream_idle_timeout" in str(info.value)
    assert [b["content"] for b in posts(fake)] == ["q", None, None]
    await fake.wait_for_streams_closed()
    assert fake.ai_streams.disconnected == 3


async def test_a_stream_silent_for_a_while_is_reattached_and_completes(
    fake: FakePostHog,
) -> None:
    """PostHog still generating behind a silent connection: the re-attach gets the answer."""
    fake.keepalive_interval = None
    fake.script_answer("abc", token_size=1, delay=0.15)  # silent 0.15 s between events
    async with fake.client(stream_idle_timeout=0.1, retry=FAST) as ph:
        with anyio.fail_after(5):
            result = await ph.conversations.create("q").until_done()
    assert result.complete
    assert result.text == "abc"
    assert [b["content"] for b in posts(fake)][:2] == ["q", None]


async def test_keepalives_keep_a_slow_answer_alive_past_every_timeout(fake: FakePostHog) -> None:
    # Events 0.6 s apart, past both timeouts (0.5 s); a keepalive every 0.01 s: a margin
    # of 50 keepalives per timeout, so a loaded machine's scheduling delays do not matter.
    fake.keepalive_interval = 0.01
    fake.script_answer("abc", token_size=3, delay=0.6)
    async with fake.client(stream_idle_timeout=0.5, timeout=0.5, retry=FAST) as ph:
        result = await ph.conversations.create("q").until_done()
    assert result.complete
    assert result.text == "abc"
    assert fake.ai_streams.opened == 1  # kept alive: never re-attached


async def test_a_reader_slower_than_the_idle_timeout_is_not_timed_out(fake: FakePostHog) -> None:
    """Bytes waiting unread are not silence: a slow consumer never trips the timeout."""
    fake.keepalive_interval = None
    answer = " ".join(f"w{n}" for n in range(12))
    # One event every 0.01 s, each read a long while after it came: the bytes wait unread.
    fake.script_answer(answer, token_size=4, delay=0.01)
    async with fake.client(stream_idle_timeout=0.1, retry=FAST) as ph:
        deltas = []
        with anyio.fail_after(10):
            async for text in ph.conversations.create("q").text_deltas():
                deltas.append(text)
                await anyio.sleep(0.25)  # 2.5 timeouts per delta
    assert "".join(deltas) == answer
    assert [b["content"] for b in posts(fake)] == ["q"]  # never re-attached


async def test_silence_after_some_events_is_timed_out_as_from_the_last_one(
    fake: FakePostHog,
) -> None:
    """The timeout counts from the last bytes read, wherever the stream is."""
    fake.keepalive_interval = None
    fake.script_answer("ab", token_size=1, delay=5)  # one event, then silence
    async with fake.client(stream_idle_timeout=0.2, retry=FAST) as ph:
        stream = ph.conversations.create("q", max_reattach_attempts=0)
        started = anyio.current_time()
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError):
            await stream.until_done()
        waited = anyio.current_time() - started
    assert 0.2 <= waited < 2.5


# ---------------------------------------------------------------------- re-attach


async def test_a_dropped_connection_is_reattached_without_repeating_text(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    # The run's end waits for the re-attach: it is replayed, never caught up (see below).
    fake.script_answer(ANSWER, token_size=3, delay=0.003, drop_after=6, end_after_connections=2)
    stream = ph.conversations.create("q")
    deltas = await collect(stream)
    assert "".join(deltas) == ANSWER
    result = await stream.until_done()
    assert [m.type for m in result.messages] == ["human", "ai"]
    assert fake.ai_streams.dropped == 1
    first, again = posts(fake)
    assert again["content"] is None
    assert again["conversation"] == first["conversation"]
    assert again["trace_id"] != first["trace_id"]
    assert set(again) == {"content", "conversation", "trace_id"}


@pytest.mark.parametrize("cut", range(1, 10))
async def test_a_drop_after_any_event_loses_and_repeats_nothing(
    fake: FakePostHog, ph: aposthog.Client, cut: int
) -> None:
    # The run's end waits for the re-attach, so it always finds the run going, however
    # loaded the machine (a run that ended meanwhile is caught up: tested below). The
    # run's stream is kept whole, so the replay holds every event (PostHog's deletion on
    # a drop: `test_stream_reattach`).
    fake.script_answer(
        "alpha beta gamma",
        token_size=3,
        delay=0.003,
        drop_after=cut,
        end_after_connections=2,
        keep_stream_on_disconnect=True,
    )
    once = [e async for e in ph.conversations.create("q")]
    assert fake.status_counts[400] == 0
    fake.script_answer("alpha beta gamma", token_size=3, delay=0.003)
    unbroken = [e async for e in ph.conversations.create("q")]
    assert fake.ai_streams.dropped == 1

    def shape(events: list[StreamEvent]) -> list[tuple[str, str, bool]]:
        # Ids and timestamps differ between the two runs; kinds, texts and finality do not.
        return [
            (e.message.type, getattr(e.message, "content", ""), e.message.id is None)
            if isinstance(e, MessageEvent)
            else (type(e).__name__, "", False)
            for e in events
        ]

    assert shape(once) == shape(unbroken)


class _LongestWait(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b  # full jitter's longest wait, every time


@pytest.mark.parametrize("cut", [1, 2, 4, 7])
async def test_a_run_that_ends_while_away_is_caught_up(
    fake: FakePostHog, cut: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-attached only after the run ended (400): the final messages come from the
    conversation, each once, also when the drop came before PostHog echoed the message."""
    monkeypatch.setattr("aposthog._retry._RNG", _LongestWait())
    slow = aposthog.RetryPolicy(initial_backoff=0.3, max_backoff=0.3)
    async with fake.client(retry=slow) as ph:
        fake.script_answer("alpha beta gamma", token_size=3, delay=0.01, drop_after=cut)
        stream = ph.conversations.create("q")
        deltas = await collect(stream)
        result = await stream.until_done()
    assert 1 == fake.status_counts[400]  # the re-attach found the conversation idle
    assert ["human", "ai"] == [m.type for m in result.messages]
    assert "alpha beta gamma" == result.text
    assert "".join(deltas) == result.text


async def test_replayed_events_are_delivered_once(fake: FakePostHog, ph: aposthog.Client) -> None:
    # Its end waits for the fourth connection: each re-attach finds the run in progress,
    # however late it comes (one that came after the end is caught up: tested below).
    # The run's stream is kept whole: each replay holds every event so far.
    fake.script_answer(
        "one two three",
        token_size=2,
        delay=0.003,
        drop_after=(4, 7, 9),
        end_after_connections=4,
        keep_stream_on_disconnect=True,
    )
    events = [e async for e in ph.conversations.create("q")]
    assert fake.ai_streams.dropped == 3
    conversations = [e for e in events if isinstance(e, ConversationEvent)]
    assert [c.conversation.title for c in conversations] == [None, "q"]
    ids = [e.message.id for e in events if isinstance(e, MessageEvent) and e.message.id]
    assert len(ids) == len(set(ids)) == 2
    snapshots = [
        e.message.content
        for e in events
        if isinstance(e, MessageEvent) and isinstance(e.message, AssistantMessage)
    ]
    assert snapshots == sorted(snapshots, key=len)  # never goes back to a shorter text
    assert len(posts(fake)) == 4


async def test_a_run_that_finished_while_away_is_caught_up(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    # delay=0: the whole run is done at once, so the re-attach finds the conversation idle.
    fake.script_answer(ANSWER, token_size=3, drop_after=5)
    stream = ph.conversations.create("q")
    assert "".join(await collect(stream)) == ANSWER
    result = stream.result()
    assert result.complete
    assert [m.type for m in result.messages] == ["human", "ai"]
    assert [r.method for r in fake.requests] == ["POST", "POST", "GET"]


async def test_reattaching_gives_up_after_the_attempts_without_progress(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    # The run never ends meanwhile (its end waits for a fifth connection): every re-attach
    # finds it going and is cut again before any event, without progress.
    fake.script_answer("slow", delay=0.05, drop_after=(2, 0, 0, 0, 0), end_after_connections=5)
    stream = ph.conversations.create("q", max_reattach_attempts=2)
    with pytest.raises(aposthog.APIConnectionError):
        await stream.until_done()
    assert len(posts(fake)) == 3
    assert stream.closed


async def test_stream_reattaches_on_purpose(fake: FakePostHog, ph: aposthog.Client) -> None:
    # The run ends only once the second stream has attached: it always finds it going.
    fake.script_answer(ANSWER, token_size=4, delay=0.003, end_after_connections=2)
    first = ph.conversations.create("q")
    async with first:
        await anext(first)
        await anext(first)
        again = ph.conversations.stream(first.conversation_id)
        assert "".join(await collect(again)) == ANSWER
        assert (await again.until_done()).text == ANSWER
    assert posts(fake)[1]["content"] is None


async def test_stream_on_an_idle_conversation_is_a_bad_request(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    conversation = fake.seed_conversation()
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.conversations.stream(conversation.id).until_done()
    assert info.value.detail == "Cannot continue streaming from an idle conversation"


# ---------------------------------------------------------------------- closing a waiting stream


async def test_aclose_from_another_task_wakes_a_read_at_once(fake: FakePostHog) -> None:
    """A reader waiting for a chunk that would come in 30 s is woken by aclose() at once."""
    fake.script_answer("a very slow answer", delay=30)
    async with fake.client(retry=FAST) as ph:
        stream = ph.conversations.create("q")
        seen: list[StreamEvent] = []

        async def consume() -> None:
            seen.extend([event async for event in stream])

        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                while len(fake.requests) < 1 or fake.ai_streams.open < 1:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                await anyio.sleep(0.1)  # the reader is now waiting for the first token
                await stream.aclose()
        assert stream.closed
        assert len(seen) == 2  # the conversation and the echo
        await fake.wait_for_streams_closed(timeout=1)


async def test_aclose_wakes_a_stream_waiting_to_reattach(
    fake: FakePostHog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream backing off before a re-attach stops waiting when closed."""
    monkeypatch.setattr("aposthog._retry._RNG", _LongestWait())  # full jitter's 30 s
    slow = attrs.evolve(FAST, initial_backoff=30.0, max_backoff=30.0)
    fake.script_answer("one two three four", token_size=4, delay=0.01, drop_after=1)
    backing_off = anyio.Event()

    def on_wait(wait: aposthog.Wait) -> None:
        backing_off.set()  # called just before the stream sleeps

    async with fake.client(retry=slow, on_wait=on_wait) as ph:
        stream = ph.conversations.create("q")

        async def consume() -> None:
            await stream.until_done()

        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await backing_off.wait()  # the stream is now in its 30 s backoff
                assert fake.ai_streams.dropped == 1
                sent = len(fake.requests)
                await stream.aclose()
        assert stream.closed
        await anyio.sleep(0.05)
        assert sent == len(fake.requests)  # no re-attach was sent after the close


async def test_each_reattach_that_makes_progress_gets_the_whole_budget_again(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Three drops, each after new events, with a budget of one re-attach: the count
    starts over with every event, so the answer completes."""
    fake.script_answer(
        "one two three",
        token_size=2,
        delay=0.003,
        drop_after=(4, 7, 9),
        end_after_connections=4,
        keep_stream_on_disconnect=True,
    )
    stream = ph.conversations.create("q", max_reattach_attempts=1)
    deltas = await collect(stream)
    result = stream.result()
    assert result.complete
    assert "".join(deltas) == result.text == "one two three"
    assert fake.ai_streams.dropped == 3
    assert [b["content"] for b in posts(fake)] == ["q", None, None, None]


async def test_a_finished_stream_is_no_longer_counted_open(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """`until_done()` reads to the end without a loop that would close the stream: the
    run's end alone takes it out of `open_streams` (and out of `Client.aclose()`'s list)."""
    fake.script_answer("short")
    stream = ph.conversations.create("q")
    result = await stream.until_done()
    assert result.complete
    assert ph.open_streams == 0
    assert stream._engine not in ph._api.pipeline.streams


async def test_a_response_that_arrives_after_aclose_is_closed_at_once() -> None:
    """Closed by another task while the request was out: the response that then arrives
    is closed, never read, and nothing stays counted open."""
    closes: list[str] = []

    class Recording(Replay):
        def close(self) -> None:
            closes.append("closed")

    async with aposthog.Client(api_key="phx_k", host="http://127.0.0.1:9", project_id=1) as ph:
        stream = ph.conversations.create("q")

        async def open_stream(*_: Any, **__: Any) -> Replay:
            await stream.aclose()  # as the headers arrive
            return Recording([b'event: message\ndata: {"type":"human","content":"q"}\n\n'])

        ph._api.pipeline.transport.open_stream = open_stream  # type: ignore[method-assign, assignment]
        assert [event async for event in stream] == []
        assert stream.closed
        assert ph.open_streams == 0
    assert closes == ["closed"]


@pytest.mark.parametrize("given_to", ["client", "create"])
async def test_headers_that_never_come_are_an_api_timeout_error_after_timeout(
    given_to: str,
) -> None:
    """A server that takes the request but never answers: after `timeout` (the client's,
    or one given to `create()` alone) the attempt is an `APITimeoutError` naming the
    request (not a bare `TimeoutError`)."""

    async def silent(request: ServerRequest) -> ServerReply:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    server = LoopbackServer(silent)
    await server.start()
    per_call: dict[str, Any] = {"timeout": 0.1} if given_to == "create" else {}
    try:
        client = aposthog.Client(
            api_key="phx_k",
            host=server.url,
            project_id=1,
            timeout=60 if per_call else 0.1,
            max_retries=0,
        )
        async with client as ph:
            stream = ph.conversations.create("q", max_reattach_attempts=0, **per_call)
            with anyio.fail_after(2), pytest.raises(aposthog.APITimeoutError) as info:
                await stream.until_done()
    finally:
        await server.stop()
    assert "did not start answering in time" in str(info.value)
    assert "POST /api/environments/1/conversations/" in str(info.value)


async def test_an_error_answer_whose_body_stalls_is_its_status_error_and_is_closed() -> None:
    """A 500 whose body stops coming is the 500 (with what arrived lost) once `timeout`
    is spent, not a bare `TimeoutError`; and its connection is closed at once, which the
    server sees, rather than left open until the client closes."""
    ended = anyio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        try:
            yield b'{"detail":'
            await anyio.sleep(3600)
        finally:
            ended.set()

    async def handler(request: ServerRequest) -> ServerReply:
        headers = {"Content-Type": "application/json"}
        return ServerReply(status=500, headers=headers, stream=stalling())

    server = LoopbackServer(handler)
    await server.start()
    try:
        client = aposthog.Client(api_key="phx_k", host=server.url, project_id=1, timeout=0.5)
        async with client as ph:
            with anyio.fail_after(2), pytest.raises(aposthog.APIStatusError) as info:
                await ph.conversations.create("q").until_done()
            with anyio.fail_after(1):
                await ended.wait()
    finally:
        await server.stop()
    assert 500 == info.value.status


async def test_a_stream_may_keep_exactly_max_response_size() -> None:
    """The limit is on what passes it: a stream whose count is exactly the limit completes,
    one byte less of limit raises after delivering what it decoded."""
    human = b'{"type":"human","content":"q","id":"h1"}'
    final = b'{"type":"ai","content":"Hello there","id":"a1"}'
    body = b"".join(b"event: message\ndata: " + data + b"\n\n" for data in (human, final))
    kept = len(human) + len(final) + 2 * _stream_engine._PIECE

    async def read(limit: int) -> tuple[list[StreamEvent], aposthog.ConversationStream]:
        client = aposthog.Client(
            api_key="phx_k", host="http://127.0.0.1:9", project_id=1, max_response_size=limit
        )
        async with client as ph:

            async def replay(*_: Any, **__: Any) -> Replay:
                return Replay([body])

            ph._api.pipeline.transport.open_stream = replay  # type: ignore[method-assign, assignment]
            stream = ph.conversations.create("q")
            events: list[StreamEvent] = []
            with contextlib.suppress(aposthog.ResponseTooLargeError):
                async for event in stream:
                    events.append(event)  # noqa: PERF401 (the list must survive the raise)
            return events, stream

    events, stream = await read(kept)
    assert len(events) == 2
    assert stream.result().complete
    events, stream = await read(kept - 1)
    assert len(events) == 2  # delivered, then the error
    assert not stream.result().complete


class _Outcomes(_Ignored):
    """An observer that records only each stream's outcome (every other report dropped)."""

    __slots__ = ("outcomes",)

    def __init__(self) -> None:
        self.outcomes: list[StreamOutcome] = []

    def call(self, method: str, route: str, server: str, target: str = "") -> _Outcomes:
        return self

    def stream(self, conversation_id: str, server: str) -> _Outcomes:
        return self

    def outcome(self, outcome: StreamOutcome) -> None:
        self.outcomes.append(outcome)


async def test_a_stream_whose_reader_is_cancelled_is_reported_cancelled(
    fake: FakePostHog,
) -> None:
    """Cancelling the consuming task (not `cancel()`) is a cancelled stream, not a failed one."""
    fake.script_answer("a slow answer", token_size=1, delay=0.05)
    recorder = _Outcomes()
    async with fake.client(retry=FAST) as ph:
        ph._api.observer = recorder
        stream = ph.conversations.create("q")
        reading = anyio.Event()

        async def consume() -> None:
            async for _ in stream.text_deltas():
                reading.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await reading.wait()
                tg.cancel_scope.cancel()
        assert stream.closed
    assert recorder.outcomes == ["cancelled"]


# ---------------------------------------------------------------------- runs as PostHog ends them

_CALL = {"id": "call_1", "name": "create_feature_flag", "args": {}, "type": "tool_call"}
_IDLE = {
    "type": "validation_error",
    "code": "invalid_input",
    "detail": "Cannot continue streaming from an idle conversation",
    "attr": None,
}


def _sse(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + json.dumps(message).encode() + b"\n\n"


def _json_reply(body: dict[str, Any], status: int = 200) -> ServerReply:
    headers = {"Content-Type": "application/json"}
    return ServerReply(status=status, body=json.dumps(body).encode(), headers=headers)


def _event_stream(*chunks: bytes, drop: bool = False) -> ServerReply:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk
        if drop:
            raise DropConnection

    return ServerReply(stream=body(), headers={"Content-Type": "text/event-stream"})


async def _ask(
    handler: Callable[[ServerRequest], Awaitable[ServerReply]],
    *,
    rate_limits: aposthog.RateLimits | None = None,
    retry: aposthog.RetryPolicy = FAST,
) -> aposthog.ConversationResult:
    """`create("q").until_done()` against `handler`, served on loopback."""
    server = LoopbackServer(handler)
    await server.start()
    options: dict[str, Any] = {} if rate_limits is None else {"rate_limits": rate_limits}
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=retry, **options) as ph:
            with anyio.fail_after(5):
                return await ph.conversations.create("q").until_done()
    finally:
        await server.stop()


@pytest.mark.parametrize("throttled", [0, 1, 2])
async def test_retries_that_opened_a_stream_are_no_re_attaches(throttled: int) -> None:
    """
    PostHog's AI throttle (10 messages a minute) makes a 429 on `create()` likely; the
    stream then opens, and its connection drops before the first event. The retries
    the opening took were counted as re-attaches: with `max_reattaches=2`, one 429 left
    one re-attach, two left none (`IncompleteStreamError` at once), though the message
    may be generating. The budget starts when the stream has opened.
    """
    policy = aposthog.RetryPolicy(
        max_retries=3, max_reattaches=2, initial_backoff=0.01, max_backoff=0.02
    )
    posts: list[Any] = []
    throttle = {
        "type": "throttled_error",
        "code": "throttled",
        "detail": "Request was throttled. Expected available in 0 seconds.",
        "attr": None,
    }

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method != "POST":
            return _json_reply({"detail": "Not found."}, status=404)
        posts.append(json.loads(request.body)["content"])
        if len(posts) <= throttled:
            return _json_reply(throttle, status=429)
        return _event_stream(b": opened\n\n")  # then the body ends: no event came

    with pytest.raises(aposthog.IncompleteStreamError):
        await _ask(handler, retry=policy)
    assert ["q"] * (throttled + 1) + [None, None] == posts


def _ends_awaiting_approval() -> Callable[[ServerRequest], Awaitable[ServerReply]]:
    """A server whose run ends at a tool call awaiting approval: the conversation is idle
    (a re-attach is a 400) and shows the call in `pending_approvals`."""
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        human = {"type": "human", "content": "q", "id": "h1", "trace_id": first.get("trace_id")}
        ai = {"type": "ai", "content": "I'll create it.", "id": "a0", "tool_calls": [_CALL]}
        if request.method == "GET":
            approval = {
                "proposal_id": "p1",
                "decision_status": "pending",
                "tool_name": "create_feature_flag",
                "original_tool_call_id": "call_1",
            }
            conversation = {
                "id": first["conversation"],
                "status": "idle",
                "title": "q",
                "messages": [human, ai],
                "pending_approvals": [approval],
            }
            return _json_reply(conversation)
        posts.append(json.loads(request.body))
        if posts[-1]["content"] is None:
            return _json_reply(_IDLE, status=400)
        human["trace_id"] = posts[0]["trace_id"]
        return _event_stream(_sse(human) + _sse(ai))

    return handler


async def test_a_run_that_ends_awaiting_approval_is_complete() -> None:
    """PostHog ends a run whose tool asks for approval right after the `ai` message that
    calls it (`BaseAgentRunner.astream`, ee/hogai/core/runner.py: `GraphInterrupt`, then an
    `ApprovalRequest` interrupt yields only an `APPROVAL` event, which
    `AgentExecutor._redis_stream_to_assistant_output` drops): the conversation is idle (a
    re-attach is a 400) and shows the call in `pending_approvals`. That is the run's end,
    waiting for `create(resume_payload=...)`, not a stream cut short."""
    handler = _ends_awaiting_approval()

    result = await _ask(handler)
    assert result.complete
    assert not result.failed
    assert "I'll create it." == result.text


async def _reattach_fails_while_the_run_goes_on(
    *, generation_error: bool
) -> aposthog.ConversationResult:
    """A run that calls a tool, then drops (after `status: generation_error` if
    `generation_error`); the first re-attach gets PostHog's "Oops" failure while the
    conversation, fetched, is still `in_progress` with no failure in it; the next
    re-attach streams the tool's result and the answer. The stream's result, read within
    5 s, whatever error ended it."""
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        human = {"type": "human", "content": "q", "id": "h1", "trace_id": first.get("trace_id")}
        ai = {"type": "ai", "content": "Let me check.", "id": "a0", "tool_calls": [_CALL]}
        tool = {"type": "tool", "content": "done", "tool_call_id": "call_1", "id": "t1"}
        answer = {"type": "ai", "content": "The answer.", "id": "a1"}
        if request.method == "GET":
            running = len(posts) < 3  # until the re-attach that streams the rest
            conversation = {
                "id": first["conversation"],
                "status": "in_progress" if running else "idle",
                "title": "q",
                "messages": [human, ai] if running else [human, ai, tool, answer],
            }
            return _json_reply(conversation)
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            human["trace_id"] = posts[0]["trace_id"]
            status = b'event: status\ndata: {"type": "generation_error"}\n\n'
            return _event_stream(
                _sse(human) + _sse(ai) + (status if generation_error else b""), drop=True
            )
        if len(posts) == 2:  # the stream is gone and the run is quiet: PostHog gives up
            oops = "Oops! Something went wrong. Please try again."
            return _event_stream(_sse({"type": "ai/failure", "content": oops, "id": "f-1"}))
        return _event_stream(_sse(tool) + _sse(answer))

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=FAST) as ph:
            stream = ph.conversations.create("q")
            with anyio.fail_after(5), contextlib.suppress(aposthog.PostHogError):
                await stream.until_done()
            return stream.result()
    finally:
        await server.stop()


async def test_a_failure_a_reattach_reports_while_the_run_goes_on_is_not_its_end() -> None:
    """After a drop PostHog deletes the run's Redis stream; a re-attach waits 60 s for it
    (`ConversationRedisStream.wait_for_stream`) and, when the run writes nothing meanwhile
    (a long tool call), sends `AgentExecutor._failure_message()` and ends, while the run
    goes on. The conversation the stream then fetches says so (`status: in_progress`, no
    failure in it): the run has not ended, and its answer still comes."""
    result = await _reattach_fails_while_the_run_goes_on(generation_error=False)
    assert not result.failed
    assert "The answer." in result.text
    assert ["human", "ai", "tool", "ai"] == [m.type for m in result.messages]  # no "Oops"


async def test_a_reattachs_failure_after_a_generation_error_is_not_the_runs_end() -> None:
    """As above, but the run met a `generation_error` before the drop (an insight that
    failed its schema check, which PostHog generates again: no end of the run). The
    re-attach's failure, which the conversation (still `in_progress`) does not hold, is
    PostHog's giving up on the stream, as without the status: the answer still comes.
    `unsaved_failure` still excludes any stream that met a `generation_error`, from when
    that status ended the run, so the stream ends failed with "Oops" and the answer is
    lost."""
    result = await _reattach_fails_while_the_run_goes_on(generation_error=True)
    assert "The answer." in result.text
    assert ["human", "ai", "tool", "ai"] == [m.type for m in result.messages]  # no "Oops"
    assert result.failure is None
    assert not result.failed


async def test_event_names_count_against_max_response_size() -> None:
    """What a stream keeps is bounded by `max_response_size` (the module's docstring): the
    wire form of every non-message event is kept to recognise its replay, name included,
    so a stream of events with long names keeps as much as one with long data and must
    raise `ResponseTooLargeError` as soon."""
    human = _sse({"type": "human", "content": "q", "id": "h1"})
    final = _sse({"type": "ai", "content": "Hi", "id": "a1"})
    unknown = [b"event: " + b"%02d" % i * 500 + b"\ndata: {}\n\n" for i in range(40)]
    body = b"".join([human, *unknown, final])  # 40 KB of names, 40 x 2 bytes of data
    client = aposthog.Client(
        api_key="phx_k", host="http://127.0.0.1:9", project_id=1, max_response_size=20_000
    )
    async with client as ph:

        async def replay(*_: Any, **__: Any) -> Replay:
            return Replay([body])

        ph._api.pipeline.transport.open_stream = replay  # type: ignore[method-assign, assignment]
        stream = ph.conversations.create("q")
        with pytest.raises(aposthog.ResponseTooLargeError):
            await stream.until_done()
    kept = sum(len(raw) for _, _, raw in stream._engine.state._seen_in)
    assert kept > 20_000  # what it holds on to, for the record


async def test_a_message_with_a_read_only_mapping_in_its_context_is_sent(
    fake: FakePostHog,
) -> None:
    """
    A read-only mapping inside `ui_context` (a record's `extra_fields`, say) passes the
    argument checks, and is sent as a JSON object. Its encoding failed inside the
    attempt, with nothing sent, after the rate limiter had counted the message in the
    `ai` windows: the next message then waited for a window PostHog never saw used.
    (The request is now also built before the limiter counts it.)
    """
    import types

    limits = aposthog.RateLimits(ai=(aposthog.Rate(2, per=60),))
    async with fake.client(rate_limits=limits) as ph:
        context = {"form_answers": types.MappingProxyType({"q1": "yes"})}
        first = await ph.conversations.create("hi", ui_context=context).until_done()
        assert first.complete
        with anyio.fail_after(2):  # the second of the two the window allows: no wait
            second = await ph.conversations.create("hi again").until_done()
        assert second.complete
    assert {"form_answers": {"q1": "yes"}} == fake.requests[0].json()["ui_context"]


async def test_a_stream_cancelled_as_its_reader_gets_a_slot_sends_nothing(
    fake: FakePostHog,
) -> None:
    """`cancel()` on a stream whose reader waits for the only `max_concurrency` slot: the
    slot freed in the same step must not carry the POST out after all. PostHog would
    start a generation that `cancel()` (which found nothing to PATCH) promised to spare,
    and the closed stream would be counted in `open_streams` again."""
    async with fake.client(max_concurrency=1, retry=FAST) as ph:
        stream = ph.conversations.create("q")
        slot_held = anyio.Event()

        async def holder() -> None:
            call = ph.customer_profile_configs.list()
            slot_held.set()
            await call  # holds the only slot ~0.2 s; its release hands it to the reader
            fake.latency = 0
            await stream.cancel()  # before the reader, handed the slot, has run

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                fake.latency = 0.2
                tg.start_soon(holder)
                await slot_held.wait()
                await anyio.sleep(0.05)  # the list's request is out, holding the slot
                tg.start_soon(stream.until_done)  # waits for the slot
        await anyio.sleep(0.1)
        assert [r.path for r in fake.requests if r.method == "POST"] == []
        assert fake.conversations == {}
        assert ph.open_streams == 0


async def test_an_outside_cancellation_that_lands_with_the_opening_deadline_is_never_lost() -> None:
    """
    Cancellation is never swallowed (README), on every Python: an outside `cancel()`
    landing in the loop step where a stream opening's time runs out stays a
    cancellation. Python 3.10 tasks count no cancellations: there the opening's own
    time limit took it for its own, the opening "timed out" and was retried.
    """
    arrived = anyio.Event()

    async def silent(request: ServerRequest) -> ServerReply:
        arrived.set()
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    server = LoopbackServer(silent)
    await server.start()
    try:
        client = aposthog.Client(api_key="phx_k", host=server.url, project_id=1, timeout=0.2)
        async with client as ph:
            task = asyncio.ensure_future(
                ph.conversations.create("q", max_reattach_attempts=0).until_done()
            )
            with anyio.fail_after(2):
                await arrived.wait()
            loop = asyncio.get_running_loop()
            # The loop is held past the opening's time limit, so the cancel below and the
            # time limit's own come due in the same step.
            loop.call_later(0.05, time.sleep, 0.3)
            loop.call_later(0.25, task.cancel)
            with anyio.fail_after(5), pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await server.stop()


#: A run that asked for approval (`h1`, `a0` calling `call_1`), then its resumed part: the
#: approved tool's result `t1` and the answer `a1`.
_APPROVED_RUN = (
    {"type": "human", "content": "q", "id": "h1", "trace_id": "t-old"},
    {"type": "ai", "content": "I'll create it.", "id": "a0", "tool_calls": [_CALL]},
    {"type": "tool", "content": "created", "tool_call_id": "call_1", "id": "t1"},
    {"type": "ai", "content": "Created the flag.", "id": "a1"},
)


async def _resume(
    handler: Callable[[ServerRequest], Awaitable[ServerReply]],
    conversation_id: str,
    *,
    proposal: str = "p1",
) -> tuple[aposthog.ConversationResult, list[str]]:
    """`create(None, resume_payload=<approve proposal>)` against `handler`: result, deltas."""
    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=FAST) as ph:
            stream = ph.conversations.create(
                None,
                conversation=conversation_id,
                resume_payload={"action": "approve", "proposal_id": proposal},
            )
            with anyio.fail_after(5):
                deltas = await collect(stream)
            return stream.result(), deltas
    finally:
        await server.stop()


async def test_a_resumed_run_that_ends_awaiting_another_approval_is_complete() -> None:
    """`create(None, conversation=..., resume_payload=approve)`: the run goes on from the
    approved tool call and may stop at the next tool that asks for approval, just as a
    message's run does (the conversation idle, a re-attach a 400). A resume sends no human
    message, so there is no echo: the stream must still see that end as the run's end."""
    call_2 = {"id": "call_2", "name": "delete_feature_flag", "args": {}, "type": "tool_call"}
    human = {"type": "human", "content": "q", "id": "h1", "trace_id": "t-old"}
    ai0 = {"type": "ai", "content": "I'll create it.", "id": "a0", "tool_calls": [_CALL]}
    tool = {"type": "tool", "content": "created", "tool_call_id": "call_1", "id": "t1"}
    ai1 = {
        "type": "ai",
        "content": "Now I'll delete the old one.",
        "id": "a1",
        "tool_calls": [call_2],
    }
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            approval = {
                "proposal_id": "p2",
                "decision_status": "pending",
                "tool_name": "delete_feature_flag",
                "original_tool_call_id": "call_2",
            }
            conversation = {
                "id": conversation_id,
                "status": "idle",
                "title": "q",
                "messages": [human, ai0, tool, ai1],
                "pending_approvals": [approval],
            }
            return _json_reply(conversation)
        posts.append(json.loads(request.body))
        if posts[-1].get("resume_payload") is None:
            return _json_reply(_IDLE, status=400)
        return _event_stream(_sse(tool) + _sse(ai1))

    result, _ = await _resume(handler, conversation_id)
    assert result.complete
    assert not result.failed
    assert result.text == "Now I'll delete the old one."


async def test_an_attach_to_a_run_that_ends_awaiting_approval_is_complete() -> None:
    """`stream(id)` joins a run after its human message (PostHog deleted the stream of the
    reader that left, so the replay starts later); the run then stops at a tool call that
    waits for approval: the conversation is idle and shows it. That is the run's end, as
    `create()` sees it (`test_a_run_that_ends_awaiting_approval_is_complete`)."""
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    human = {"type": "human", "content": "q", "id": "h1", "trace_id": "t-1"}
    ai = {"type": "ai", "content": "I'll create it.", "id": "a0", "tool_calls": [_CALL]}
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            conversation = {
                "id": conversation_id,
                "status": "idle",
                "title": "q",
                "messages": [human, ai],
            }
            return _json_reply(conversation)
        posts.append(json.loads(request.body))
        if len(posts) > 1:  # the run is over: the conversation is idle
            return _json_reply(_IDLE, status=400)
        return _event_stream(_sse({"type": "ai", "content": "I'll create"}) + _sse(ai))

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=FAST) as ph:
            with anyio.fail_after(5):
                result = await ph.conversations.stream(conversation_id).until_done()
    finally:
        await server.stop()
    assert result.complete
    assert result.text == "I'll create it."


@pytest.mark.parametrize("by_message_id", [True, False])
async def test_a_resume_that_lost_its_whole_stream_catches_up_only_the_resumed_run(
    by_message_id: bool,
) -> None:
    """`create(None, conversation=..., resume_payload=approve)`: the stream breaks before
    PostHog sends its first event, and the resumed run ends while the client is away (the
    re-attach is a 400, the conversation idle). The catch-up must deliver what the resumed
    run added (the tool result and the answer), not the run before the approval, whose
    question and "I'll create it." a chat-bot already relayed from its own stream. The
    decided call's message is found by the approval's `message_id`, or (an approval
    without one) by its `original_tool_call_id`."""
    human, ai0, tool, ai1 = _APPROVED_RUN
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    sent: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            approval = {
                "proposal_id": "p1",
                "decision_status": "approved",
                "tool_name": "create_feature_flag",
                "original_tool_call_id": "call_1",
                "message_id": "a0" if by_message_id else None,
            }
            conversation = {
                "id": conversation_id,
                "status": "idle",
                "title": "q",
                "messages": [human, ai0, tool, ai1],
                "pending_approvals": [approval],
            }
            return _json_reply(conversation)
        sent.append(json.loads(request.body))
        if sent[-1].get("resume_payload") is None:  # the re-attach: the run is over
            return _json_reply(_IDLE, status=400)
        return _event_stream(drop=True)  # cut before the resumed run's first event

    result, deltas = await _resume(handler, conversation_id)
    assert len(sent) == 2  # the resume, then one re-attach
    assert result.complete
    assert "".join(deltas) == "Created the flag."  # not "I'll create it.\n\nCreated the flag."
    assert [m.id for m in result.messages] == ["t1", "a1"]
    assert result.turns[0].question is None


async def test_a_resume_recovers_its_own_messages_lost_before_its_first_one() -> None:
    """The resumed run's first message (the approved tool's result) is produced while the
    connection is down: PostHog deleted the run's stream when the reader left, so the
    re-attach replays only what came after. The conversation shows the tool result after
    the approved call; the catch-up must deliver it, as it does for a message's run."""
    human, ai0, tool, ai1 = _APPROVED_RUN
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    sent: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            conversation = {
                "id": conversation_id,
                "status": "idle",
                "title": "q",
                "messages": [human, ai0, tool, ai1],
            }
            return _json_reply(conversation)
        sent.append(json.loads(request.body))
        if len(sent) == 1:  # the resume: dropped before the tool result reached the client
            return _event_stream(drop=True)
        return _event_stream(_sse({"type": "ai", "content": "Created"}) + _sse(ai1))

    result, _ = await _resume(handler, conversation_id)
    assert len(sent) == 2
    assert "resume_payload" not in sent[1]
    assert result.complete
    assert result.text == "Created the flag."
    assert [m.id for m in result.messages] == ["t1", "a1"]  # the tool result was lost


async def test_a_run_that_ends_awaiting_approval_needs_no_ai_request_to_end() -> None:
    """The run ends at a tool call that waits for approval, every event received. To tell
    that end from a cut, the stream re-attaches (`POST conversations/`, `content: null`),
    which PostHog's AI throttle counts as a message (10 a minute for a free organization,
    3 a minute and 10 a day in research mode) and the client's `ai` window holds back,
    and only then GETs the conversation, which alone tells. With the window spent by the
    message itself, the finished run raises `RateLimitError` (or, under a longer
    `max_retry_after`, waits out the window) instead of returning its result."""
    handler = _ends_awaiting_approval()

    # One PostHog AI message a minute: the free organization's burst, nearly spent.
    limits = aposthog.RateLimits(ai=(aposthog.Rate(1, per=60),))
    result = await _ask(handler, rate_limits=limits)
    assert result.complete
    assert result.text == "I'll create it."


@pytest.mark.parametrize(
    "failure",
    [
        _sse({"type": "ai/failure"}),
        b'event: status\ndata: {"type": "generation_error"}\n\n',
    ],
    ids=["bare-ai-failure", "generation-error"],
)
async def test_a_replayed_first_turn_failure_is_not_the_queued_turns(failure: bytes) -> None:
    """`stream(id)` joins after the echo (the first turn has no question): the first run
    fails mid-answer (a snapshot, then PostHog's bare `ai/failure` or `status:
    generation_error`), and the user's queued message starts the next turn. The connection
    drops in that turn; the re-attach replays the stream from its start. The first run's
    snapshot, never made final, is not recognised as a replay (a new delivery, so
    `_replaying` goes False), and then the first run's failure, replayed while the queued
    turn is current, is no longer dropped as the first turn's: it is delivered again and
    taken for the queued turn's, which PostHog answered. Before `_replaying` was
    consulted (b93f84b) the replayed failure was dropped and the turns came out right."""
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    h1 = {"type": "human", "content": "first", "id": "h1"}
    h2 = {"type": "human", "content": "second", "id": "h2"}
    a2 = {"type": "ai", "content": "The answer.", "id": "a2"}
    first_run = _sse({"type": "ai", "content": "Hel"}) + failure
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            messages = [h1, h2, a2]
            conversation = {"id": conversation_id, "status": "idle", "messages": messages}
            return _json_reply({**conversation, "title": "first"})
        posts.append(json.loads(request.body))
        if len(posts) == 1:  # the attach: the first run, then the queued message; a drop
            return _event_stream(first_run + _sse(h2), drop=True)
        # The re-attach: PostHog replays the stream from its start, then goes on.
        rest = _sse({"type": "ai", "content": "The"}) + _sse(a2)
        return _event_stream(first_run + _sse(h2) + rest)

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=FAST) as ph:
            stream = ph.conversations.stream(conversation_id)
            with anyio.fail_after(5):
                result = await stream.until_done()
    finally:
        await server.stop()
    assert len(posts) == 2
    assert result.complete
    second = result.turns[-1]
    assert second.question is not None
    assert second.question.id == "h2"
    assert second.text == "The answer."
    assert "h2" not in result.generation_error_turns
    assert not second.failed  # the replayed failure is the first turn's, delivered once


# ---------------------------------------------------------------------- approvals, PostHog-shaped

#: `BaseAgentRunner.astream` (ee/hogai/core/runner.py) builds each approval card with
#: `message_id = str(uuid4())`: the card's own id, stored in `approval_decisions` and shown
#: in `pending_approvals`, never the id of a message in `messages`.
_CARD_ID = "0b7d3c1e-5a2f-4e0b-9c1d-2f3e4a5b6c7d"
_CALL_2 = {"id": "call_2", "name": "delete_feature_flag", "args": {}, "type": "tool_call"}


def _card(
    proposal: str,
    call: str,
    status: str = "pending",
    *,
    message_id: str | None = _CARD_ID,
    tool: str = "create_feature_flag",
) -> dict[str, Any]:
    """An approval card as `pending_approvals` shows it."""
    return {
        "proposal_id": proposal,
        "decision_status": status,
        "tool_name": tool,
        "original_tool_call_id": call,
        "message_id": message_id,
    }


def _idle(conversation_id: str, messages: list[Any], *cards: dict[str, Any]) -> ServerReply:
    """The GET of an idle conversation holding `messages` and the approval `cards`."""
    conversation = {
        "id": conversation_id,
        "status": "idle",
        "title": "q",
        "messages": messages,
        "pending_approvals": list(cards),
    }
    return _json_reply(conversation)


async def test_a_lost_resume_catches_up_only_the_resumed_run_with_posthog_s_card_ids() -> None:
    """As `test_a_resume_that_lost_its_whole_stream_catches_up_only_the_resumed_run`, but
    with the approval as PostHog shows it: `message_id` is the approval card's id (a fresh
    uuid4 in `BaseAgentRunner.astream`), not `a0`'s. The decided call is still named by
    `original_tool_call_id`; the catch-up must not hand the earlier run's question and
    "I'll create it." out again as the resumed run's."""
    human, ai0, tool, ai1 = _APPROVED_RUN
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    sent: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            return _idle(
                conversation_id, [human, ai0, tool, ai1], _card("p1", "call_1", "approved")
            )
        sent.append(json.loads(request.body))
        if sent[-1].get("resume_payload") is None:  # the re-attach: the run is over
            return _json_reply(_IDLE, status=400)
        return _event_stream(drop=True)  # cut before the resumed run's first event

    result, deltas = await _resume(handler, conversation_id, proposal="p1")
    assert result.complete
    assert "".join(deltas) == "Created the flag."
    assert [m.id for m in result.messages] == ["t1", "a1"]


async def test_a_lost_resume_of_the_second_approval_in_a_message_skips_the_first_s_result() -> None:
    """One `ai` message calls two tools that each ask for approval (PostHog runs the tool
    calls of a message as parallel tasks; each `interrupt()`s, and each gets a card). The
    user approved `p1` (an earlier resume streamed `t1`, the run then stopped at `p2`), and
    now approves `p2`; this stream breaks before its first event and the run ends meanwhile.
    The catch-up must deliver only what this resume added (`t2`, `a2`), not `t1` again."""
    human = {"type": "human", "content": "q", "id": "h1", "trace_id": "t-old"}
    ai0 = {
        "type": "ai",
        "content": "I'll create one and delete the other.",
        "id": "a0",
        "tool_calls": [_CALL, _CALL_2],
    }
    t1 = {"type": "tool", "content": "created", "tool_call_id": "call_1", "id": "t1"}
    t2 = {"type": "tool", "content": "deleted", "tool_call_id": "call_2", "id": "t2"}
    a2 = {"type": "ai", "content": "Done both.", "id": "a2"}
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            return _idle(
                conversation_id,
                [human, ai0, t1, t2, a2],
                _card("p1", "call_1", "approved", message_id=None),
                _card("p2", "call_2", "approved", message_id=None, tool="delete_feature_flag"),
            )
        body = json.loads(request.body)
        if body.get("resume_payload") is None:  # the re-attach: the run is over
            return _json_reply(_IDLE, status=400)
        return _event_stream(drop=True)

    result, deltas = await _resume(handler, conversation_id, proposal="p2")
    assert result.complete
    assert [m.id for m in result.messages] == ["t2", "a2"]
    assert "".join(deltas) == "Done both."


@pytest.mark.parametrize("stored", ["superstep-pending", "with-result"])
async def test_a_resume_that_stops_at_the_same_message_s_next_approval_is_complete(
    stored: str,
) -> None:
    """One `ai` message calls two tools that each ask for approval. Approving `p1` runs
    `call_1` (its `tool` result streams), and the run stops again at `call_2`'s approval:
    the superstep cannot finish, PostHog sends nothing more, the conversation is idle and
    shows `p2` pending. That is the run's end, as at any approval (the user decides `p2`
    next), not a stream cut short. (Until the superstep completes LangGraph keeps `t1` as a
    pending write, so the conversation may not show it yet: both shapes are tried.)"""
    human = {"type": "human", "content": "q", "id": "h1", "trace_id": "t-old"}
    ai0 = {
        "type": "ai",
        "content": "I'll create one and delete the other.",
        "id": "a0",
        "tool_calls": [_CALL, _CALL_2],
    }
    t1 = {"type": "tool", "content": "created", "tool_call_id": "call_1", "id": "t1"}
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            return _idle(
                conversation_id,
                [human, ai0] if stored == "superstep-pending" else [human, ai0, t1],
                _card("p1", "call_1", "approved"),
                _card(
                    "p2",
                    "call_2",
                    message_id="1c8e4d2f-6b3a-4f1c-8d2e-3a4b5c6d7e8f",
                    tool="delete_feature_flag",
                ),
            )
        posts.append(json.loads(request.body))
        if posts[-1].get("resume_payload") is None:
            return _json_reply(_IDLE, status=400)
        return _event_stream(_sse(t1))

    result, _ = await _resume(handler, conversation_id, proposal="p1")
    assert result.complete
    assert [m.id for m in result.messages] == ["t1"]
    assert len(posts) == 1  # no re-attach: an AI request PostHog's throttle counts


async def test_a_run_whose_connection_drops_at_its_approval_needs_no_ai_request_to_end() -> None:
    """As `test_a_run_that_ends_awaiting_approval_needs_no_ai_request_to_end`, but the
    connection breaks (a reset, not a clean end) right after the `ai` message whose tool
    call awaits approval: every event of the run arrived, and the conversation (idle,
    `pending_approvals`) tells that the run ended there. The GET that says so comes only
    after a re-attach POST, which PostHog's AI throttle counts and the client's `ai`
    window holds back."""
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        human = {"type": "human", "content": "q", "id": "h1", "trace_id": first.get("trace_id")}
        ai = {"type": "ai", "content": "I'll create it.", "id": "a0", "tool_calls": [_CALL]}
        if request.method == "GET":
            return _idle(first["conversation"], [human, ai], _card("p1", "call_1"))
        posts.append(json.loads(request.body))
        if posts[-1]["content"] is None:
            return _json_reply(_IDLE, status=400)
        human["trace_id"] = posts[0]["trace_id"]
        return _event_stream(_sse(human) + _sse(ai), drop=True)

    limits = aposthog.RateLimits(ai=(aposthog.Rate(1, per=60),))
    result = await _ask(handler, rate_limits=limits)
    assert result.complete
    assert result.text == "I'll create it."
    assert len(posts) == 1


async def test_a_lost_resume_post_is_not_a_complete_run() -> None:
    """`create(None, resume_payload=approve p1)`: the connection breaks before PostHog
    answers, and PostHog never processed the resume (the run stays waiting: the
    conversation idle, its messages as before, `p1` still `pending`). The re-attach is a
    400 (idle), and the conversation shows nothing this resume did, so its outcome is
    unknown: the POST's `APIConnectionError` (`reached_server=True`), as for a message.
    Reporting the resume as a complete run (with the earlier run's "I'll create it." as its
    text) tells a bot its approval went through when nothing happened."""
    human, ai0, _, _ = _APPROVED_RUN
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    sent: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            return _idle(conversation_id, [human, ai0], _card("p1", "call_1"))
        sent.append(json.loads(request.body))
        if sent[-1].get("resume_payload") is None:
            return _json_reply(_IDLE, status=400)
        return ServerReply(drop=True)  # no answer at all

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=FAST) as ph:
            stream = ph.conversations.create(
                None,
                conversation=conversation_id,
                resume_payload={"action": "approve", "proposal_id": "p1"},
            )
            with anyio.fail_after(5), pytest.raises(aposthog.APIConnectionError) as info:
                await stream.until_done()
            assert info.value.reached_server
            assert not stream.result().complete
    finally:
        await server.stop()


async def test_a_run_that_awaits_approval_beside_a_finished_tool_call_is_complete() -> None:
    """The assistant calls two tools at once (`RootNode.router` sends each tool call to its
    own `ROOT_TOOLS` task): `call_2` (a read) finishes and streams its result, `call_1`
    asks for approval, so the superstep stops there and PostHog sends nothing more. The
    conversation is idle and shows `p1` pending: the run ended waiting for the user, as in
    `test_a_run_that_ends_awaiting_approval_is_complete`, though its last message is the
    other tool's result."""
    posts: list[dict[str, Any]] = []
    read = {"id": "call_2", "name": "read_data", "args": {}, "type": "tool_call"}

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        human = {"type": "human", "content": "q", "id": "h1", "trace_id": first.get("trace_id")}
        ai = {
            "type": "ai",
            "content": "Let me look, then create it.",
            "id": "a0",
            "tool_calls": [_CALL, read],
        }
        t2 = {"type": "tool", "content": "42 rows", "tool_call_id": "call_2", "id": "t2"}
        if request.method == "GET":  # t2 is a pending write until the superstep ends
            return _idle(first["conversation"], [human, ai], _card("p1", "call_1"))
        posts.append(json.loads(request.body))
        if posts[-1]["content"] is None:
            return _json_reply(_IDLE, status=400)
        human["trace_id"] = posts[0]["trace_id"]
        return _event_stream(_sse(human) + _sse(ai) + _sse(t2))

    result = await _ask(handler)
    assert result.complete
    assert [m.id for m in result.messages] == ["h1", "a0", "t2"]


async def test_an_applied_resume_re_attached_to_the_next_run_is_no_conflict() -> None:
    """`create(None, resume_payload=approve p1)`: PostHog takes the resume (the stream's
    headers come) and the connection breaks before its first event. The resumed run
    (`t1`, `a1`) ends meanwhile and the next message (queued, or sent from elsewhere)
    starts its run, so the re-attach streams that run, its human message first. The
    conversation shows `p1` approved and the resumed run's messages: the decision was
    applied. `ConflictError` ("did not apply the decision, send it again") is false, and
    sending the decision again fails the run (the card is no longer pending)."""
    human, ai0, tool, ai1 = _APPROVED_RUN
    h2 = {"type": "human", "content": "and another", "id": "h2", "trace_id": "t-next"}
    a2 = {"type": "ai", "content": "The other answer.", "id": "a2"}
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            conversation = {
                "id": conversation_id,
                "status": "in_progress",
                "title": "q",
                "messages": [human, ai0, tool, ai1, h2],
                "pending_approvals": [_card("p1", "call_1", "approved")],
            }
            return _json_reply(conversation)
        posts.append(json.loads(request.body))
        if posts[-1].get("resume_payload") is None:  # the re-attach: the next run
            return _event_stream(_sse(h2) + _sse(a2))
        return _event_stream(drop=True)  # applied, cut before its first event

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=FAST) as ph:
            stream = ph.conversations.create(
                None,
                conversation=conversation_id,
                resume_payload={"action": "approve", "proposal_id": "p1"},
            )
            with anyio.fail_after(5):
                try:
                    result = await stream.until_done()
                except aposthog.ConflictError as exc:
                    pytest.fail(f"an applied resume reported as not applied: {exc}")
    finally:
        await server.stop()
    assert "h2" not in [m.id for m in result.messages]
    assert [m.id for m in result.messages][:2] == ["t1", "a1"]


async def test_a_resume_that_fails_by_status_before_a_queued_run_is_no_conflict(
    fake: FakePostHog,
) -> None:
    """The resumed run (PostHog applied the decision: the card says `approved`) fails with
    `status: generation_error` after partial text, so it streams no final message; the
    message queued meanwhile runs on the same stream, its human message first. That is the
    queued run, which `expect_resume()`'s docstring says is taken, not another run that
    swallowed the decision: the stream raises `ConflictError` ("did not apply the decision
    ... send it again"), and sending it again fails (the card is no longer pending)."""
    fake.script_answer("I'll create it.", approval="create_feature_flag")
    async with fake.client(retry=FAST) as ph:
        with anyio.fail_after(5):
            first = await ph.conversations.create("Make a flag").until_done()
            conversation = await ph.conversations.get(first.conversation_id)
        [card] = conversation.pending_approvals
        fake.script_answer("Creating the fl", token_size=2, delay=0.01, generation_error=True)
        fake.script_answer("The queued answer.")
        stream = ph.conversations.create(
            None,
            conversation=first.conversation_id,
            resume_payload={"action": "approve", "proposal_id": card.proposal_id},
        )
        with anyio.fail_after(5):
            async with stream:
                await anext(stream)  # the resumed run has begun
                await ph.conversations.queue.add(first.conversation_id, "and then?")
                try:
                    result = await stream.until_done()
                except aposthog.ConflictError as exc:
                    after = await ph.conversations.get(first.conversation_id)
                    decided = {a.proposal_id: a.decision_status for a in after.pending_approvals}
                    pytest.fail(f"{exc} -- but the card says {decided[card.proposal_id]}")
    assert result.complete
    assert result.turns[-1].text == "The queued answer."


async def test_a_resume_attached_to_another_run_past_the_stream_cap_is_a_conflict(
    fake: FakePostHog,
) -> None:
    """`create()`'s docstring: while the conversation answers another message, PostHog
    streams that run instead of resuming and does not apply the decision: "the stream
    raises `ConflictError` then, having given out nothing of that run". The check
    (`expect_resume`) needs that run's human message first; but PostHog's Redis stream
    keeps about 1000 entries (every id-less snapshot is one), so an attach to a long run
    replays it from mid-answer, without its human message. The resume's stream then hands
    out the other run's answer as the approval's result, complete, while the card was
    `auto_rejected` by that message and nothing was approved."""
    fake.script_answer("I'll create it.", approval="create_feature_flag")
    async with fake.client(retry=FAST) as ph:
        with anyio.fail_after(5):
            first = await ph.conversations.create("Make a flag").until_done()
            conversation = await ph.conversations.get(first.conversation_id)
        [card] = conversation.pending_approvals
        fake.script_answer(
            "A long answer to another question, " * 4,
            token_size=1,
            stream_max_length=5,
            end_after_connections=2,
        )
        with anyio.fail_after(5):
            async with ph.conversations.create(
                "Another question", conversation=first.conversation_id
            ) as other:
                await anext(other)  # that run is going on (from elsewhere, say)
                resume = ph.conversations.create(
                    None,
                    conversation=first.conversation_id,
                    resume_payload={"action": "approve", "proposal_id": card.proposal_id},
                )
                try:
                    result = await resume.until_done()
                except aposthog.ConflictError:
                    return  # what the docstring promises
                after = await ph.conversations.get(first.conversation_id)
                decided = {a.proposal_id: a.decision_status for a in after.pending_approvals}
                pytest.fail(
                    f"complete={result.complete}, text={result.text[:40]!r}; "
                    f"the card says {decided[card.proposal_id]}"
                )


def _echo_lost(
    stored: list[dict[str, Any]], replay: bytes
) -> Callable[[ServerRequest], Awaitable[ServerReply]]:
    """A server whose first stream is cut before PostHog's echo (`h1`) arrives, and whose
    every re-attach streams `replay` (PostHog deleted the run's stream: only what came
    after the echo); the conversation is idle, holding the echo, then `stored`."""
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        human = {"type": "human", "content": "q", "id": "h1", "trace_id": first.get("trace_id")}
        if request.method == "GET":
            conversation = {
                "id": first["conversation"],
                "status": "idle",
                "title": "q",
                "messages": [human, *stored],
            }
            return _json_reply(conversation)
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            return _event_stream(b": keepalive\n\n", drop=True)  # cut before the echo
        return _event_stream(replay)

    return handler


@pytest.mark.parametrize(
    "failure",
    [
        _sse({"type": "ai/failure"}),  # PostHog's bare failure (unhandled error)
        # An insight generated again after its schema check failed, failing again.
        b'event: status\ndata: {"type":"generation_error"}\n\n' + _sse({"type": "ai/failure"}),
    ],
    ids=["bare-ai-failure", "generation-error"],
)
async def test_a_run_that_fails_after_its_lost_echo_is_a_complete_failed_run(
    failure: bytes,
) -> None:
    """The connection drops before PostHog's echo of the message arrives; the re-attach
    replays only what came after (PostHog deleted the run's stream), the answer's start,
    then an in-band failure that ends the run. The run ended (failed): `until_done()`
    must return a complete, failed result with the echo (caught up from the conversation)
    first. Before the fix, the catch-up counts the echo after the failure, so the failure looks
    like a previous run's, `run_ended` turns False, and the stream raises
    `IncompleteStreamError` (with `messages` = failure, then human)."""
    result = await _ask(_echo_lost([], _sse({"type": "ai", "content": "The answ"}) + failure))
    assert result.complete
    assert result.failed
    assert result.messages[0].type == "human"


async def test_a_run_that_recovers_from_a_generation_error_after_its_lost_echo_did_not_fail() -> (
    None
):
    """As above, but the run recovers: the re-attach replays only what came after the
    echo (PostHog deleted the run's stream), the insight call, `status: generation_error`
    (PostHog generates the insight again), the tool's result and the answer. The status
    came before any human message, so the state files it under the turn None; the echo,
    caught up from the conversation, makes the only turn `h1`'s, which no
    `generation_error` names, and `ConversationResult.failed` takes "no errored turn" for
    a result made by hand: `failed` is True for a run that answered (the chat-bot
    example apologises after a good answer, the web relay sends `error`)."""
    call = {
        "type": "ai",
        "content": "",
        "id": "a1",
        "tool_calls": [{"id": "t1", "name": "create_insight", "args": {}, "type": "tool_call"}],
    }
    tool = {"type": "tool", "content": "Insight created.", "tool_call_id": "t1", "id": "tm1"}
    answer = {"type": "ai", "content": "Signups rose 12%.", "id": "a2"}
    status = b'event: status\ndata: {"type":"generation_error"}\n\n'
    replay = _sse(call) + status + _sse(tool) + _sse(answer)
    result = await _ask(_echo_lost([call, tool, answer], replay))
    assert result.complete
    assert [m.type for m in result.messages] == ["human", "ai", "tool", "ai"]
    assert result.text == "Signups rose 12%."
    assert result.generation_error
    assert not result.turns[0].failed
    assert not result.failed


async def test_a_run_left_without_an_answer_after_a_generation_error_failed() -> None:
    """The run's assistant says what it will do and calls the insight tool ("Let me chart
    signups."), PostHog sends `status: generation_error`, and the run ends there: no
    insight, no answer (the conversation is idle and shows nothing more; the retries'
    failure never reached the stream). `failed` is documented to count a
    `generation_error` "with no answer after it"; `ConversationTurn.failed` tests
    `not self.text`, and the turn's text is the sentence said before the error, so the
    run reads complete and not failed, its "answer" the announcement. Before the status
    stopped ending the run, this result was failed."""
    posts: list[dict[str, Any]] = []
    call = {
        "type": "ai",
        "content": "Let me chart signups.",
        "id": "a1",
        "tool_calls": [{"id": "t1", "name": "create_insight", "args": {}, "type": "tool_call"}],
    }

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        human = {"type": "human", "content": "q", "id": "h1", "trace_id": first.get("trace_id")}
        if request.method == "GET":
            conversation = {
                "id": first["conversation"],
                "status": "idle",
                "title": "q",
                "messages": [human, call],
            }
            return _json_reply(conversation)
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            status = b'event: status\ndata: {"type":"generation_error"}\n\n'
            return _event_stream(_sse(human) + _sse(call) + status)
        return _json_reply(_IDLE, status=400)

    result = await _ask(handler)
    assert result.complete
    assert result.generation_error
    assert result.turns[0].failed
    assert result.failed


async def test_a_queued_turn_after_a_lost_echo_is_not_taken_for_another_run() -> None:
    """The connection drops before PostHog's echo arrives; the re-attach replays what came
    after: this run's answer `a1`, then the run of a message queued behind it (`h1`, sent
    with its own trace id, and its answer `a2`), on the same stream as PostHog streams
    queued runs. `a1` was already taken as this run's, so `h1` is the next turn, not
    another client's run: the stream must deliver it and `a2`, as the conversation shows.
    Before the fix, the echo check takes `h1` for another run's, drops the connection, catches up
    only `h0, a1` and reports the stream complete: the queued answer never reaches the
    reader (and its run is left streaming unread)."""
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        h0 = {"type": "human", "content": "q", "id": "h0", "trace_id": first.get("trace_id")}
        a1 = {"type": "ai", "content": "First.", "id": "a1"}
        h1 = {"type": "human", "content": "queued", "id": "h1", "trace_id": "queued-trace"}
        a2 = {"type": "ai", "content": "Second.", "id": "a2"}
        if request.method == "GET":
            conversation = {
                "id": first["conversation"],
                "status": "idle",
                "title": "q",
                "messages": [h0, a1, h1, a2],
            }
            return _json_reply(conversation)
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            return _event_stream(b": keepalive\n\n", drop=True)  # cut before the echo
        if len(posts) > 2:
            return _json_reply(_IDLE, status=400)
        return _event_stream(
            _sse(a1) + _sse(h1) + _sse({"type": "ai", "content": "Sec"}) + _sse(a2)
        )

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=FAST) as ph:
            stream = ph.conversations.create("q")
            with anyio.fail_after(5):
                deltas = await collect(stream)
            result = stream.result()
    finally:
        await server.stop()
    assert result.complete
    assert [m.id for m in result.messages] == ["h0", "a1", "h1", "a2"]
    assert "".join(deltas) == "First.\n\nSecond."


def _dropped_at_a_call(
    follower: dict[str, Any], answer: dict[str, Any], *, queued: bool
) -> Callable[[ServerRequest], Awaitable[ServerReply]]:
    """
    A run (`h0`, `a1` calling a tool) whose connection drops after `a1`; it goes on and
    ends (`t1`, `a2`) while the client is away, and `follower` starts the next run, which
    `answer` ends. The GET shows the conversation in progress, then (once re-attached)
    idle. `queued`: `follower` was queued behind this run, whose stream PostHog deleted
    at the drop (the re-attach replays what came after it, this run's `t1` first);
    otherwise another client's, whose run the re-attach replays from its start.
    """
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        h0 = {"type": "human", "content": "q", "id": "h0", "trace_id": first.get("trace_id")}
        a1 = {"type": "ai", "content": "Let me look.", "id": "a1", "tool_calls": [_CALL]}
        t1 = {"type": "tool", "content": "done", "tool_call_id": "call_1", "id": "t1"}
        a2 = {"type": "ai", "content": "First.", "id": "a2"}
        if request.method == "GET":
            over = len(posts) > 1
            conversation = {
                "id": first["conversation"],
                "status": "idle" if over else "in_progress",
                "title": "q",
                "messages": [h0, a1, t1, a2, follower, *([answer] if over else [])],
            }
            return _json_reply(conversation)
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            return _event_stream(_sse(h0) + _sse(a1), drop=True)
        if len(posts) > 2:
            return _json_reply(_IDLE, status=400)
        snapshot = {"type": "ai", "content": answer["content"][:3]}
        replay = [*([t1, a2] if queued else []), follower, snapshot, answer]
        return _event_stream(b"".join(_sse(m) for m in replay))

    return handler


async def test_a_drop_at_a_tool_call_does_not_end_the_stream_before_a_queued_run() -> None:
    """The connection drops right after the `ai` message that calls a tool (where PostHog
    may end a run that waits for the user, so the stream GETs the conversation first).
    The conversation shows the run went on and answered (`t1`, `a2`), and is still
    `in_progress`: the run of a message queued behind it (`h1`) has begun, and PostHog
    streams it on this run's stream. The stream must re-attach and deliver that turn,
    as it does for a drop anywhere else. Before the fix, the GET alone ends it `complete` after
    `a2`: no re-attach is sent and the queued answer never reaches the reader."""
    h1 = {"type": "human", "content": "queued", "id": "h1", "trace_id": "queued-trace"}
    a3 = {"type": "ai", "content": "Second.", "id": "a3"}
    result = await _ask(_dropped_at_a_call(h1, a3, queued=True))
    assert result.complete
    assert [m.id for m in result.messages] == ["h0", "a1", "t1", "a2", "h1", "a3"]
    assert result.streamed_text.endswith("\n\nSecond.")


# ---------------------------------------------------------------------- realistic runs, fuzzed


async def _serve_with_drops(
    wire: list[tuple[str, str]],
    finals: list[dict[str, Any]],
    stops: list[int],
    whole: bool,
    chunk: int,
    batches: bool,
    gaps: list[int] | None = None,
) -> tuple[list[str], aposthog.ConversationResult, int, list[asyncio.Task[Any]]]:
    """Serve `wire` as PostHog would, the connection reset after each of `stops` events;
    each re-attach replays the run from its start (`whole`) or from where the last
    connection stopped, the `gaps[n]` events after it lost (PostHog deleted the run's
    stream). The conversation shows the messages produced so far."""
    posts: list[dict[str, Any]] = []
    sent = [0]  # events produced so far

    def with_trace(data: str) -> str:
        return data.replace('"trace_id":"t0"', f'"trace_id":"{posts[0]["trace_id"]}"')

    async def handler(request: ServerRequest) -> ServerReply:
        over = len(posts) > len(stops)
        if request.method == "GET":
            produced = {json.loads(d).get("id") for n, d in wire[: sent[0]] if n == "message"}
            messages = [
                {
                    "id": None,
                    "parent_tool_call_id": None,
                    **json.loads(with_trace(json.dumps(f, separators=(",", ":")))),
                }
                for f in finals
                if f.get("id") in produced
            ]
            status = "idle" if over else "in_progress"
            return _json_reply(
                {
                    "id": posts[0]["conversation"],
                    "status": status,
                    "title": "q",
                    "messages": messages,
                }
            )
        posts.append(json.loads(request.body))
        n = len(posts) - 1
        if n > len(stops):
            return _json_reply(_IDLE, status=400)
        stop = stops[n] if n < len(stops) else len(wire)
        gap = gaps[n - 1] if gaps and 0 < n <= len(gaps) else 0
        start = 0 if whole or n == 0 else min(stops[n - 1] + gap, stop)
        sent[0] = max(sent[0], stop)
        data = b"".join(
            b"event: %s\ndata: %s\n\n" % (name.encode(), with_trace(d).encode())
            for name, d in wire[start:stop]
        )
        pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        return _event_stream(*pieces, drop=n < len(stops))

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=FAST) as ph:
            stream = ph.conversations.create("q0")
            with anyio.fail_after(5):
                loop = stream.text_batches() if batches else stream.text_deltas()
                deltas = [text async for text in loop]
            open_streams = ph.open_streams
        result = stream.result()
        tasks = [
            t
            for t in asyncio.all_tasks()
            if t is not asyncio.current_task()
            and not t.done()
            and "RequestHandler" not in repr(t.get_coro())  # the server's own
        ]
    finally:
        await server.stop()
    return deltas, result, open_streams, tasks


@hypothesis.settings(max_examples=25, derandomize=True, deadline=None)
@hypothesis.given(
    posthog_runs(),
    hst.lists(hst.integers(0, 80), max_size=3),
    hst.booleans(),
    hst.integers(1, 300),
    hst.booleans(),
)
def test_a_realistic_run_cut_anywhere_is_delivered_once_over_loopback(
    run: tuple[list[tuple[str, str]], list[dict[str, Any]]],
    cuts: list[int],
    whole: bool,
    chunk: int,
    batches: bool,
) -> None:
    """A realistic PostHog run (queued turns, tool calls, subagents, failures) served on
    127.0.0.1, its connection reset at random events, each re-attach replaying the run
    from its start or from where it stopped: the stream completes with every final
    message once and in order, its text is `streamed_text` (the answer's when no turn
    failed), and nothing is left open."""
    wire, finals = run
    human = next(n for n, (_, d) in enumerate(wire) if '"type":"human"' in d)
    # Cuts after the echo, never between a run's end and the next turn's human message
    # (a reset there is indistinguishable from PostHog's end by design: no end event).
    stops = sorted({human + 1 + c % (len(wire) - human) for c in cuts} - {len(wire)})
    deltas, result, open_streams, tasks = asyncio.run(
        _serve_with_drops(wire, finals, stops, whole, chunk, batches)
    )
    assert result.complete
    assert [m.id for m in result.messages] == [f.get("id") for f in finals]
    assert "".join(deltas) == result.streamed_text
    if not any(f["type"] == "ai/failure" for f in finals) and all(n != "status" for n, _ in wire):
        assert result.streamed_text == result.text
    assert open_streams == 0
    assert tasks == []


@pytest.mark.parametrize("name", [b"message", b"update"])
async def test_unreadable_events_keep_no_more_than_max_response_size(
    name: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """What a stream keeps is bounded by `max_response_size` (the engine's docstring).
    A hostile server sends events whose data is no JSON: control bytes and one astral
    character. Each is counted by its wire bytes, but kept (to recognise its replay) as
    text: one astral character makes the whole string UCS-4 (4 bytes per wire byte), and
    a `message` is kept as `repr()` of the event, where each control byte is 4
    characters (16 bytes per wire byte). 1 MB of such events holds 4 MB (`update`) or
    16 MB (`message`) while the stream, under a 2 MB limit, completes without an error."""
    import gc
    import tracemalloc

    limit = 2_000_000
    events = [
        b"event: %s\ndata: %d" % (name, i) + b"\x01" * 5000 + "\U0001f600".encode() + b"\n\n"
        for i in range(200)
    ]  # 1 MB of wire bytes
    human = _sse({"type": "human", "content": "q", "id": "h1"})
    final = _sse({"type": "ai", "content": "Done.", "id": "a1"})

    async def handler(request: ServerRequest) -> ServerReply:
        return _event_stream(human, *events, final)

    server = LoopbackServer(handler)
    await server.start()
    caplog.set_level("CRITICAL", logger="aposthog")  # one warning per unreadable event
    tracemalloc.start()
    try:
        async with aposthog.Client(
            api_key="phx_k", host=server.url, retry=FAST, max_response_size=limit
        ) as ph:
            stream = ph.conversations.create("q")
            before = tracemalloc.get_traced_memory()[0]
            with anyio.fail_after(10):
                try:
                    async for _ in stream:
                        pass
                except aposthog.ResponseTooLargeError:
                    return  # refused as the limit says: nothing more to check
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
            assert stream.result().complete
    finally:
        tracemalloc.stop()
        await server.stop()
    assert held < 1.25 * limit  # what the stream holds (a little for each piece allowed)


async def test_a_replay_that_only_swaps_messages_under_one_id_is_no_progress() -> None:
    """A hostile (or broken) server streams two different messages with the same id, then
    ends the body short of the run's end, and every re-attach replays the same two. Each
    replay replaces one by the other (`same id, new content: the newer wins`), which the
    engine takes as progress, restoring the whole re-attach budget: the stream sends a
    re-attach POST after another, forever (thousands a second, each counted by PostHog's
    AI throttle), instead of ending in `IncompleteStreamError` once the budget is spent."""
    requests = 0

    async def handler(request: ServerRequest) -> ServerReply:
        nonlocal requests
        requests += 1
        ai = {"type": "ai", "content": "Let me look.", "id": "m1", "tool_calls": [_CALL]}
        tool = {"type": "tool", "content": "done", "tool_call_id": "call_1", "id": "m1"}
        return _event_stream(_sse(ai) + _sse(tool))  # ends short: the run awaits its answer

    server = LoopbackServer(handler)
    await server.start()
    retry = attrs.evolve(FAST, max_reattaches=3)
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=retry) as ph:
            with anyio.move_on_after(1), contextlib.suppress(aposthog.PostHogError):
                await ph.conversations.create("q").until_done()
    finally:
        await server.stop()
    assert requests <= 10  # the message, then a few re-attaches (and GETs)


# ---------------------------------------------------------------------- review 2


async def test_another_client_s_run_after_two_drops_is_not_taken_for_a_queued_one() -> None:
    """The first connection drops before PostHog's echo; the first re-attach gets only a
    snapshot of the answer (no id) and drops too. Meanwhile the run ended and another
    client asked in the same conversation: the second re-attach streams that client's run
    from its start (its human message first, with its own trace id). Nothing of this run
    came first on *that* connection, so the human message is another run's, as on a
    single re-attach: the stream must catch up its own run (`h0`, `a1`) and stop.
    Before the fix, `_unechoed` (set on the first re-attach) makes it a queued run: the other
    client's question and answer are delivered as this stream's turn."""
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        h0 = {"type": "human", "content": "q", "id": "h0", "trace_id": first.get("trace_id")}
        a1 = {"type": "ai", "content": "First.", "id": "a1"}
        hx = {"type": "human", "content": "other", "id": "hx", "trace_id": "other-trace"}
        ax = {"type": "ai", "content": "Other.", "id": "ax"}
        if request.method == "GET":
            return _idle(first["conversation"], [h0, a1, hx, ax])
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            return _event_stream(b": keepalive\n\n", drop=True)  # cut before the echo
        if len(posts) == 2:
            return _event_stream(_sse({"type": "ai", "content": "Fir"}), drop=True)
        if len(posts) == 3:  # the other client's run, replayed from its start
            return _event_stream(_sse(hx) + _sse({"type": "ai", "content": "Oth"}) + _sse(ax))
        return _json_reply(_IDLE, status=400)

    result = await _ask(handler)
    assert result.complete
    assert [m.id for m in result.messages] == ["h0", "a1"]


async def test_a_drop_at_a_tool_call_after_which_another_client_asked_ends_with_this_run() -> None:
    """The connection drops right after the `ai` message that calls a tool. The GET shows
    this run went on and ended (`t1`, `a2`), and the conversation `in_progress` again:
    another client asked (`hx`, its own trace id) once this run was over. A re-attach
    joins that client's run, which PostHog replays from its start (`hx` first, nothing of
    this run before it on the connection). The stream must end with this run, as it did
    before `idle_only` (and as a lost echo's re-attach does: `OtherRunError`). Before the fix, it
    re-attaches and delivers the other client's question and answer as this stream's."""
    hx = {"type": "human", "content": "other", "id": "hx", "trace_id": "other-trace"}
    ax = {"type": "ai", "content": "Other.", "id": "ax"}
    result = await _ask(_dropped_at_a_call(hx, ax, queued=False))
    assert result.complete
    assert [m.id for m in result.messages] == ["h0", "a1", "t1", "a2"]


async def test_a_failure_after_a_lost_echo_and_lost_messages_stays_the_run_s_last() -> None:
    """As `test_a_run_that_fails_after_its_lost_echo_is_a_complete_failed_run`, but the gap
    also lost the run's first messages (`a1` calling a tool, its result `t1`, both stored):
    the re-attach replays only a snapshot and the bare failure that ended the run. Every
    message the conversation shows of the run came before that failure, so the result
    must hold them in the conversation's order with the failure last. Before the fix, only the
    echo is put before the failure (`_insert_missed(run[:1])`) and `a1`, `t1` are taken as
    if streamed after it: `messages` is human, failure, ai, tool."""
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        h0 = {"type": "human", "content": "q", "id": "h0", "trace_id": first.get("trace_id")}
        a1 = {"type": "ai", "content": "Let me look.", "id": "a1", "tool_calls": [_CALL]}
        t1 = {"type": "tool", "content": "done", "tool_call_id": "call_1", "id": "t1"}
        if request.method == "GET":
            return _idle(first["conversation"], [h0, a1, t1])
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            return _event_stream(b": keepalive\n\n", drop=True)  # cut before the echo
        failure = b'event: message\ndata: {"type":"ai/failure"}\n\n'
        return _event_stream(_sse({"type": "ai", "content": "The answ"}) + failure)

    result = await _ask(handler)
    assert result.complete
    assert result.failed
    assert [m.type for m in result.messages] == ["human", "ai", "tool", "ai/failure"]


async def test_a_queued_turn_after_a_lost_echo_still_running_at_the_catch_up_is_streamed() -> None:
    """As `test_a_queued_turn_after_a_lost_echo_is_not_taken_for_another_run`, but with the
    conversation as PostHog shows it the moment the queued message's `h1` is met: its run
    has just begun (`in_progress`, `h1` last, no answer yet). The stream must catch up its
    own echo and re-attach to stream the queued run on (the fix's stated behaviour).
    Before the fix, the catch-up said no end of the run (the last message, `h1`, ends no
    run) and `_disown` raises the error that lost the echo: the whole stream fails with an
    `APIConnectionError` although PostHog answered everything."""
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        h0 = {"type": "human", "content": "q", "id": "h0", "trace_id": first.get("trace_id")}
        a1 = {"type": "ai", "content": "First.", "id": "a1"}
        h1 = {"type": "human", "content": "queued", "id": "h1", "trace_id": "queued-trace"}
        a2 = {"type": "ai", "content": "Second.", "id": "a2"}
        if request.method == "GET":
            over = len(posts) > 2
            conversation = {
                "id": first["conversation"],
                "status": "idle" if over else "in_progress",
                "title": "q",
                "messages": [h0, a1, h1, *([a2] if over else [])],
            }
            return _json_reply(conversation)
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            return _event_stream(b": keepalive\n\n", drop=True)  # cut before the echo
        if len(posts) == 2:
            return _event_stream(_sse(a1) + _sse(h1) + _sse({"type": "ai", "content": "Sec"}))
        if len(posts) == 3:  # the queued run, in progress: replayed from its start
            return _event_stream(_sse(h1) + _sse({"type": "ai", "content": "Sec"}) + _sse(a2))
        return _json_reply(_IDLE, status=400)

    server = LoopbackServer(handler)
    await server.start()
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=FAST) as ph:
            stream = ph.conversations.create("q")
            with anyio.fail_after(5):
                deltas = await collect(stream)
            result = stream.result()
    finally:
        await server.stop()
    assert result.complete
    assert [m.id for m in result.messages] == ["h0", "a1", "h1", "a2"]
    assert "".join(deltas) == "First.\n\nSecond."


# ---------------------------------------------------------------------- resumes, fuzzed

_RESUME_CONVERSATION = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
#: The run before the approval, as the conversation stores it: the question, and the `ai`
#: message whose call `call_1` waits for the decision (card `p1`, its own uuid4).
_ASKED: tuple[dict[str, Any], ...] = (
    {"type": "human", "content": "q", "id": "h0", "trace_id": "t-old"},
    {"type": "ai", "content": "I'll create it.", "id": "a0", "tool_calls": [_CALL]},
)


@hst.composite
def _resumed_runs(
    draw: hst.DrawFn,
) -> tuple[list[tuple[str, str]], list[dict[str, Any]], bool]:
    """
    The stream of a resumed run, as PostHog writes it: the decided tool's result, then
    growing snapshots and a final answer (maybe an in-band failure), or another `ai`
    message whose call waits for approval (the run ends there); after an answer or a
    failure, maybe the runs of one or two queued messages. Returns the wire events, the
    final messages in order, and whether the run ends awaiting another approval.
    """
    wire: list[tuple[str, str]] = []
    finals: list[dict[str, Any]] = []
    ids = iter(range(1, 1000))

    def add(message: dict[str, Any]) -> None:
        wire.append(wire_message(**message))
        finals.append(message)

    add({"type": "tool", "content": "created", "tool_call_id": "call_1", "id": "t1"})
    end = draw(hst.sampled_from(["answer", "answer", "approval", "failure"]))
    text = draw(_answer_text(1))
    if end == "approval":
        wire.extend(draw(_snapshots(text)))
        add({"type": "ai", "content": text, "id": f"a{next(ids)}", "tool_calls": [_CALL_2]})
        return wire, finals, True
    if end == "failure":
        add({"type": "ai/failure", "content": "Oops", "id": f"f{next(ids)}"})
    else:
        wire.extend(draw(_snapshots(text)))
        add({"type": "ai", "content": text, "id": f"a{next(ids)}"})
    for q in range(draw(hst.integers(0, 2))):
        add({"type": "human", "content": f"queued {q}", "id": f"hq{q}", "trace_id": f"tq{q}"})
        text = draw(_answer_text(1))
        wire.extend(draw(_snapshots(text)))
        add({"type": "ai", "content": text, "id": f"aq{next(ids)}"})
    return wire, finals, False


async def _serve_resume_with_drops(
    wire: list[tuple[str, str]],
    finals: list[dict[str, Any]],
    awaiting: bool,
    stops: list[int],
    gaps: list[int],
    *,
    whole: bool,
    chunk: int,
    processed: bool,
    action: str,
    away: bool = False,
) -> tuple[list[str], aposthog.ConversationResult, BaseException | None, int, list[Any]]:
    """`create(None, resume_payload=...)` served as PostHog would: the connection reset
    after each of `stops` events; each re-attach replays the run from its start (`whole`)
    or from where the last connection stopped, the `gaps[n]` events after it lost (PostHog
    deleted the run's stream). Not `processed`: the resume's connection is cut before
    PostHog took it (the card stays pending, the conversation idle, re-attaches a 400).
    `away`: the rest of the run ends while the client is away (the last re-attach a 400).
    The conversation shows the run before the approval, then what the resumed run
    produced so far, and the card decided once the resume was processed."""
    posts: list[dict[str, Any]] = []
    sent = [0]

    def card(proposal: str, call: str, status: str, message_id: str) -> dict[str, Any]:
        return {
            "proposal_id": proposal,
            "decision_status": status,
            "tool_name": "create_feature_flag",
            "original_tool_call_id": call,
            "message_id": message_id,  # the card's own uuid4: no message's id
            "preview": None,
            "payload": None,
        }

    async def handler(request: ServerRequest) -> ServerReply:
        over = len(posts) > len(stops)
        if request.method == "GET":
            produced = {json.loads(d).get("id") for n, d in wire[: sent[0]] if n == "message"}
            messages = [*_ASKED, *(f for f in finals if f.get("id") in produced)]
            decided = {"approve": "approved", "reject": "rejected"}[action]
            cards = [card("p1", "call_1", decided if processed else "pending", _CARD_ID)]
            if awaiting and over:
                cards.append(card("p2", "call_2", "pending", str(uuid.UUID(int=2))))
            conversation = {
                "id": _RESUME_CONVERSATION,
                "status": "idle" if over or not processed else "in_progress",
                "title": "q",
                "messages": [{"id": None, "parent_tool_call_id": None, **m} for m in messages],
                "pending_approvals": cards,
            }
            return _json_reply(conversation)
        body = json.loads(request.body)
        posts.append(body)
        if not processed:
            if len(posts) == 1:
                return _event_stream(drop=True)  # cut before PostHog took it
            return _json_reply(_IDLE, status=400)
        n = len(posts) - 1
        if n > len(stops):
            return _json_reply(_IDLE, status=400)
        if away and n == len(stops):
            sent[0] = len(wire)  # the run ended while the client was away
            return _json_reply(_IDLE, status=400)
        stop = stops[n] if n < len(stops) else len(wire)
        gap = gaps[n - 1] if 0 < n <= len(gaps) else 0
        start = 0 if whole or n == 0 else min(stops[n - 1] + gap, stop)
        sent[0] = max(sent[0], stop)
        data = b"".join(
            b"event: %s\ndata: %s\n\n" % (name.encode(), d.encode()) for name, d in wire[start:stop]
        )
        pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        return _event_stream(*pieces, drop=n < len(stops))

    server = LoopbackServer(handler)
    await server.start()
    error: BaseException | None = None
    deltas: list[str] = []
    try:
        async with aposthog.Client(api_key="phx_k", host=server.url, retry=FAST) as ph:
            stream = ph.conversations.create(
                None,
                conversation=_RESUME_CONVERSATION,
                resume_payload={"action": action, "proposal_id": "p1"},
            )
            try:
                with anyio.fail_after(5):
                    async for text in stream.text_deltas():
                        deltas.append(text)  # noqa: PERF401  (kept up to an error)
            except aposthog.PostHogError as exc:
                error = exc
            open_streams = ph.open_streams
        result = stream.result()
        tasks = [
            t
            for t in asyncio.all_tasks()
            if t is not asyncio.current_task()
            and not t.done()
            and "RequestHandler" not in repr(t.get_coro())
        ]
    finally:
        await server.stop()
    assert all("resume_payload" not in p for p in posts[1:])  # a decision is sent once
    return deltas, result, error, open_streams, tasks


@hypothesis.settings(max_examples=40, derandomize=True, deadline=None)
@hypothesis.given(
    _resumed_runs(),
    hst.lists(hst.integers(0, 80), max_size=3),
    hst.lists(hst.integers(0, 3), max_size=3),
    hst.booleans(),
    hst.integers(1, 300),
    hst.booleans(),
    hst.sampled_from(["approve", "reject"]),
    hst.booleans(),
)
def test_a_resumed_run_cut_anywhere_is_delivered_once_over_loopback(
    run: tuple[list[tuple[str, str]], list[dict[str, Any]], bool],
    cuts: list[int],
    gaps: list[int],
    whole: bool,
    chunk: int,
    processed: bool,
    action: str,
    away: bool,
) -> None:
    """A resumed run (the approved or rejected tool's result, an answer, a failure or
    another approval, maybe queued runs after it) served on 127.0.0.1, its connection
    reset at random events (before the first included), each re-attach replaying the run
    from its start or from after a gap: the stream completes with each final message of
    the resumed run (and the queued runs) once and in order, nothing of the run before
    the approval, no error; a resume PostHog never took ends in a typed error, never
    complete. Or the run ends while the client is away: the stream catches up the rest of
    the resumed run (and of a queued run it met) from the conversation. Nothing is left
    open. (Gaps only without queued runs: a lost message before a queued run is
    `test_a_resume_recovers_its_tool_result_lost_before_a_queued_run`; no end while away
    after a queued run's human message:
    `test_a_resume_whose_queued_run_ends_while_away_is_complete`.)"""
    wire, finals, awaiting = run
    if any(f["type"] == "human" for f in finals):
        gaps = []
    # Never between a run's end and the next turn's human message (indistinguishable from
    # PostHog's end by design: no end event).
    humans = {n for n, (_, d) in enumerate(wire) if '"type":"human"' in d}
    stops = sorted({c % len(wire) for c in cuts} - humans)
    if not processed:
        stops = [0]
    expected = [f.get("id") for f in finals]
    away = away and bool(stops) and not any(h < stops[-1] for h in humans)
    if away:
        gaps = []
        # The stream met no queued run's human message: the run's end is its end.
        cutoff = min((h for h in humans if h >= stops[-1]), default=len(wire))
        ids = {json.loads(d).get("id") for _, d in wire[:cutoff]}
        expected = [f.get("id") for f in finals if f.get("id") in ids]
    deltas, result, error, open_streams, tasks = asyncio.run(
        _serve_resume_with_drops(
            wire,
            finals,
            awaiting,
            stops,
            gaps,
            whole=whole,
            chunk=chunk,
            processed=processed,
            action=action,
            away=away,
        )
    )
    assert open_streams == 0
    assert tasks == []
    if not processed:
        assert isinstance(error, aposthog.PostHogError)
        assert not result.complete
        assert result.messages == ()
        return
    assert error is None
    assert result.complete
    assert [m.id for m in result.messages] == expected
    assert "".join(deltas) == result.streamed_text


async def test_a_resume_recovers_its_tool_result_lost_before_a_queued_run() -> None:
    """`create(None, resume_payload=approve p1)`: PostHog takes the resume, and the
    connection is cut before its first event. The approved tool's result `t1` is produced
    while the client is away (PostHog deleted the run's stream: the re-attach replays only
    what came after): the answer `a1`, then the run of a message queued behind it (`h2`,
    `a2`). The conversation, idle at the end, shows `t1` after the approved call: the
    catch-up must deliver it, as it does when no queued run follows
    (`test_a_resume_recovers_its_own_messages_lost_before_its_first_one`). Before the fix, the
    stream takes the queued run's `h2` for its run's start (the first human message it
    saw), catches up from there, and ends complete without `t1`."""
    human, ai0, tool, ai1 = _APPROVED_RUN
    queued = {"type": "human", "content": "queued", "id": "h2", "trace_id": "t-queued"}
    ai2 = {"type": "ai", "content": "Second.", "id": "a2"}
    sent: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            if len(sent) < 2:  # the resumed run goes on
                conversation = {
                    "id": _RESUME_CONVERSATION,
                    "status": "in_progress",
                    "title": "q",
                    "messages": [human, ai0, tool],
                    "pending_approvals": [_card("p1", "call_1", "approved")],
                }
                return _json_reply(conversation)
            messages = [human, ai0, tool, ai1, queued, ai2]
            return _idle(_RESUME_CONVERSATION, messages, _card("p1", "call_1", "approved"))
        sent.append(json.loads(request.body))
        if len(sent) == 1:
            return _event_stream(drop=True)  # cut before the resumed run's first event
        if len(sent) == 2:
            return _event_stream(_sse(ai1) + _sse(queued) + _sse(ai2))
        return _json_reply(_IDLE, status=400)

    result, _ = await _resume(handler, _RESUME_CONVERSATION)
    assert result.complete
    assert [m.id for m in result.messages] == ["t1", "a1", "h2", "a2"]


async def test_a_resume_whose_queued_run_ends_while_away_is_complete() -> None:
    """`create(None, resume_payload=approve p1)`: the stream delivers the resumed run
    (`t1`, `a1`) and the human message of a message queued behind it (`h2`, its run
    streamed on the same stream), then the connection is cut. The queued run answers
    (`a2`) while the client is away and ends: the re-attach is PostHog's 400 (idle), and
    the conversation shows `a2` after `h2`. The stream must catch `a2` up and complete,
    as it does for a message's stream (the same cut after `h0, a0, t1, a1, h2`).
    Before the fix, the catch-up looks for the run from `h2` (the first human message
    the resume saw), misses the last answer it received (`a1`) there, and the stream
    raises the cut's
    `APIConnectionError` for a run, and a queued run, that both ended."""
    human, ai0, tool, ai1 = _APPROVED_RUN
    queued = {"type": "human", "content": "queued", "id": "h2", "trace_id": "t-queued"}
    ai2 = {"type": "ai", "content": "Second.", "id": "a2"}
    approved = _card("p1", "call_1", "approved")
    sent: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            if len(sent) < 2:  # the queued run goes on
                conversation = {
                    "id": _RESUME_CONVERSATION,
                    "status": "in_progress",
                    "title": "q",
                    "messages": [human, ai0, tool, ai1, queued],
                    "pending_approvals": [approved],
                }
                return _json_reply(conversation)
            messages = [human, ai0, tool, ai1, queued, ai2]
            return _idle(_RESUME_CONVERSATION, messages, approved)
        sent.append(json.loads(request.body))
        if len(sent) == 1:
            return _event_stream(_sse(tool) + _sse(ai1) + _sse(queued), drop=True)
        return _json_reply(_IDLE, status=400)  # the queued run ended meanwhile

    result, deltas = await _resume(handler, _RESUME_CONVERSATION)
    assert result.complete
    assert [m.id for m in result.messages] == ["t1", "a1", "h2", "a2"]
    assert "".join(deltas) == "Created the flag.\n\nSecond."


@hypothesis.settings(max_examples=30, derandomize=True, deadline=None)
@hypothesis.given(
    posthog_runs(),
    hst.integers(0, 80),
    hst.lists(hst.integers(0, 80), max_size=2),
    hst.lists(hst.integers(0, 3), max_size=3),
    hst.booleans(),
    hst.integers(1, 300),
    hst.booleans(),
)
def test_a_realistic_run_whose_echo_is_lost_is_delivered_once_over_loopback(
    run: tuple[list[tuple[str, str]], list[dict[str, Any]]],
    first: int,
    cuts: list[int],
    gaps: list[int],
    whole: bool,
    chunk: int,
    batches: bool,
) -> None:
    """A realistic PostHog run (maybe with queued turns) whose first connection is cut at
    or before its echo, later ones at random events, each re-attach replaying the run from
    its start, from where it stopped or after a gap of lost events: the stream completes
    with every final message once and in order (the echo caught up from the conversation
    by its trace id), and nothing is left open. Gaps only in single runs whose every end
    PostHog stores (a bare failure or `generation_error` lost in a gap cannot be known;
    a run's end lost before a queued message's is another run's by design)."""
    wire, finals = run
    unstored = any(n == "status" or d == '{"type":"ai/failure"}' for n, d in wire)
    if unstored or sum(f["type"] == "human" for f in finals) > 1:
        gaps = []
    humans = [n for n, (_, d) in enumerate(wire) if '"type":"human"' in d]
    echo = humans[0]
    later = {echo + 1 + c % (len(wire) - echo) for c in cuts} - set(humans) - {len(wire)}
    stops = sorted({first % (echo + 1)} | later)
    deltas, result, open_streams, tasks = asyncio.run(
        _serve_with_drops(wire, finals, stops, whole, chunk, batches, gaps)
    )
    assert result.complete
    assert [m.id for m in result.messages] == [f.get("id") for f in finals]
    assert "".join(deltas) == result.streamed_text
    assert open_streams == 0
    assert tasks == []


async def test_a_run_awaiting_approval_after_a_recovered_generation_error_did_not_fail() -> None:
    """The run charts signups (its insight fails the schema check: `status:
    generation_error`, and PostHog generates it again, the tool returns), then asks to
    create a flag: it ends at that tool call awaiting the user's approval, the
    conversation idle with the card in `pending_approvals`. Without the status the same
    run reads complete and not failed (`test_a_run_that_ends_awaiting_approval_is_complete`);
    `ConversationTurn.failed` takes a `generation_error` turn whose last assistant message
    calls a tool for one "left without an answer", so a relay that checks
    `result().failed` (README) reports a failure instead of asking for the approval."""
    posts: list[dict[str, Any]] = []
    insight = {"id": "i1", "name": "create_insight", "args": {}, "type": "tool_call"}
    chart = {"type": "ai", "content": "", "id": "a0", "tool_calls": [insight]}
    tool = {"type": "tool", "content": "Insight created.", "tool_call_id": "i1", "id": "tm1"}
    ask = {"type": "ai", "content": "Shall I create the flag?", "id": "a1", "tool_calls": [_CALL]}

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        human = {"type": "human", "content": "q", "id": "h1", "trace_id": first.get("trace_id")}
        if request.method == "GET":
            return _idle(first["conversation"], [human, chart, tool, ask], _card("p1", "call_1"))
        posts.append(json.loads(request.body))
        if posts[-1]["content"] is None:
            return _json_reply(_IDLE, status=400)
        status = b'event: status\ndata: {"type":"generation_error"}\n\n'
        return _event_stream(_sse(human) + _sse(chart) + status + _sse(tool) + _sse(ask))

    result = await _ask(handler)
    assert result.complete
    assert result.generation_error
    assert result.failure is None
    assert [m.id for m in result.messages] == ["h1", "a0", "tm1", "a1"]
    assert not result.turns[0].failed
    assert not result.failed


async def test_a_queued_echo_caught_up_after_a_resume_leaves_its_generation_error() -> None:
    """A resume (no human message: its run is the turn None) goes on from the approved
    call, charts signups, and ends there: `status: generation_error` and no answer. The
    message queued behind it (`h2`) runs on the same stream; the connection drops before
    its echo, and the re-attach replays only what came after (PostHog deleted the run's
    stream): `h2`'s answer. The catch-up inserts `h2`; `_insert_missed` then renames the
    turn None's `generation_error` to `h2` (meant for a send's own lost echo), so the
    resumed turn, left without an answer, no longer reads failed, nor does the result."""
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    human, ai0, tool, _ = _APPROVED_RUN
    insight = {"id": "i1", "name": "create_insight", "args": {}, "type": "tool_call"}
    chart = {"type": "ai", "content": "Let me chart it.", "id": "a1", "tool_calls": [insight]}
    h2 = {"type": "human", "content": "second", "id": "h2"}
    a2 = {"type": "ai", "content": "Answer two.", "id": "a2"}
    sent: list[dict[str, Any]] = []
    gets: list[ServerRequest] = []

    async def handler(request: ServerRequest) -> ServerReply:
        if request.method == "GET":
            gets.append(request)
            if len(gets) == 1:  # at the drop: the queued message's run goes on
                running = [human, ai0, tool, chart, h2]
                return _json_reply(
                    {"id": conversation_id, "status": "in_progress", "messages": running}
                )
            return _idle(
                conversation_id,
                [human, ai0, tool, chart, h2, a2],
                _card("p1", "call_1", "approved"),
            )
        sent.append(json.loads(request.body))
        if len(sent) == 1:  # the resume: its run, then a drop before the queued echo
            status = b'event: status\ndata: {"type":"generation_error"}\n\n'
            return _event_stream(_sse(tool) + _sse(chart) + status, drop=True)
        if len(sent) == 2:  # the re-attach: only what came after
            return _event_stream(_sse(a2))
        return _json_reply(_IDLE, status=400)

    result, _ = await _resume(handler, conversation_id, proposal="p1")
    assert len(sent) == 2  # the resume and one re-attach
    assert result.complete
    assert [m.id for m in result.messages] == ["t1", "a1", "h2", "a2"]
    assert result.generation_error_turns == (None,)
    assert result.turns[0].question is None
    assert result.turns[0].failed
    assert result.failed


async def test_an_answer_after_a_generation_error_caught_up_from_a_gap_answers_its_turn() -> None:
    """`create("q")`: PostHog echoes the question, sends `status: generation_error`, and
    the connection drops. Meanwhile PostHog generated the insight again and answered
    (`a1`), then ran the message queued behind it (`h2`). The re-attach brings only what
    came after (PostHog deleted the run's stream): `h2` and its answer. The catch-up puts
    `a1` in its place, after the error: the first turn recovered, and neither it nor the
    result reads failed (no message of the turn had followed the error as it streamed)."""
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    status = b'event: status\ndata: {"type":"generation_error"}\n\n'
    a1 = {"type": "ai", "content": "Signups fell 12% last week.", "id": "a1"}
    h2 = {"type": "human", "content": "second", "id": "h2"}
    a2 = {"type": "ai", "content": "Answer two.", "id": "a2"}
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        h1 = {"type": "human", "content": "q", "id": "h1", "trace_id": first.get("trace_id")}
        if request.method == "GET":
            if len(posts) < 2:  # at the drop: the queued message's run goes on
                running = [h1, a1, h2]
                return _json_reply(
                    {"id": conversation_id, "status": "in_progress", "messages": running}
                )
            return _idle(conversation_id, [h1, a1, h2, a2])
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            started = {"type": "conversation", "id": conversation_id}
            return _event_stream(
                b"event: conversation\ndata: "
                + json.dumps(started).encode()
                + b"\n\n"
                + _sse(h1)
                + status,
                drop=True,
            )
        if len(posts) == 2:  # the re-attach: only what came after
            return _event_stream(_sse(h2) + _sse(a2))
        return _json_reply(_IDLE, status=400)

    result = await _ask(handler)
    assert len(posts) == 2
    assert result.complete
    assert [m.id for m in result.messages] == ["h1", "a1", "h2", "a2"]
    assert result.generation_error_turns == ("h1",)
    assert result.generation_error_unanswered == ()
    assert not result.turns[0].failed
    assert not result.failed


@pytest.mark.xfail(
    strict=True,
    reason="a queued turn's generation_error after a re-attach is dropped as the turn None's",
)
async def test_a_queued_turns_generation_error_after_a_reattach_is_not_taken_for_a_replay() -> None:
    """A resume (its run is the turn None) meets `status: generation_error`, recovers and
    answers; the message queued behind it (`h2`) runs on the same stream and calls the
    insight tool, and the connection drops. PostHog deleted the run's stream, so the
    re-attach brings only what came after: `h2`'s own `status: generation_error` (the same
    bytes as the first), and the run ends there, no answer. Before any human message on
    the new connection, an event equal to one of the turn None is taken for a whole
    replay's and dropped: `h2` loses its `generation_error`, and the result of a turn
    left without an answer reads not failed."""
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    human, ai0, tool, a1 = _APPROVED_RUN
    h2 = {"type": "human", "content": "second", "id": "h2"}
    insight = {"id": "i2", "name": "create_insight", "args": {}, "type": "tool_call"}
    chart = {"type": "ai", "content": "Let me chart it.", "id": "b1", "tool_calls": [insight]}
    status = b'event: status\ndata: {"type":"generation_error"}\n\n'
    sent: list[dict[str, Any]] = []
    gets: list[ServerRequest] = []

    async def handler(request: ServerRequest) -> ServerReply:
        stored = [human, ai0, tool, a1, h2, chart]
        if request.method == "GET":
            gets.append(request)
            if len(sent) < 2:  # at the drop: the queued message's run goes on
                running = {"id": conversation_id, "status": "in_progress", "messages": stored}
                return _json_reply(running)
            return _idle(conversation_id, stored, _card("p1", "call_1", "approved"))
        sent.append(json.loads(request.body))
        if len(sent) == 1:  # the resume: its run, the queued run's start, a drop
            return _event_stream(_sse(tool) + status + _sse(a1) + _sse(h2) + _sse(chart), drop=True)
        if len(sent) == 2:  # the re-attach: only what came after, then the run's end
            return _event_stream(status)
        return _json_reply(_IDLE, status=400)

    result, _ = await _resume(handler, conversation_id, proposal="p1")
    assert len(sent) == 2  # the resume and one re-attach
    assert result.complete
    assert [m.id for m in result.messages] == ["t1", "a1", "h2", "b1"]
    assert result.turns[0].generation_error
    assert not result.turns[0].failed
    assert result.generation_error_turns == (None, "h2")
    assert result.turns[1].failed
    assert result.failed


async def test_a_message_lost_before_a_reattachs_generation_error_does_not_answer_it() -> None:
    """`create("q")`: PostHog echoes the question and the connection drops. In the gap
    (PostHog deleted the run's stream) the assistant calls the insight tool ("Let me chart
    signups.", `a1`); the re-attach brings only what came after: `status:
    generation_error`, and the run ends there, no answer; then the run of the message
    queued behind it (`h2`, `a2`). Everything lost in a gap came before what the
    re-attach brought, so no message of `h1`'s run followed its error: as streamed, the
    turn is unanswered (failed). The catch-up puts `a1` in its place after `h1`, and the
    recount looks for an answer after the last message received before the error (`h1`),
    finds `a1`, and reads the turn answered: neither it nor the result reads failed."""
    conversation_id = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    status = b'event: status\ndata: {"type":"generation_error"}\n\n'
    insight = {"id": "t1", "name": "create_insight", "args": {}, "type": "tool_call"}
    a1 = {"type": "ai", "content": "Let me chart signups.", "id": "a1", "tool_calls": [insight]}
    h2 = {"type": "human", "content": "second", "id": "h2"}
    a2 = {"type": "ai", "content": "Answer two.", "id": "a2"}
    posts: list[dict[str, Any]] = []

    async def handler(request: ServerRequest) -> ServerReply:
        first = posts[0] if posts else {}
        h1 = {"type": "human", "content": "q", "id": "h1", "trace_id": first.get("trace_id")}
        if request.method == "GET":
            if len(posts) < 2:  # at the drop: the run goes on
                running = [h1, a1]
                return _json_reply(
                    {"id": conversation_id, "status": "in_progress", "messages": running}
                )
            return _idle(conversation_id, [h1, a1, h2, a2])
        posts.append(json.loads(request.body))
        if len(posts) == 1:
            started = {"type": "conversation", "id": conversation_id}
            return _event_stream(
                b"event: conversation\ndata: " + json.dumps(started).encode() + b"\n\n" + _sse(h1),
                drop=True,
            )
        if len(posts) == 2:  # the re-attach: only what came after the gap
            return _event_stream(status + _sse(h2) + _sse(a2))
        return _json_reply(_IDLE, status=400)

    result = await _ask(handler)
    assert len(posts) == 2
    assert result.complete
    assert [m.id for m in result.messages] == ["h1", "a1", "h2", "a2"]
    assert result.generation_error_turns == ("h1",)
    assert result.generation_error_unanswered == ("h1",)
    assert result.turns[0].failed
    assert result.failed


async def test_a_bare_failure_after_a_generation_error_leaves_it_unanswered_after_a_catch_up() -> (
    None
):
    """The run starts answering, PostHog sends `status: generation_error`, and its retries
    fail: PostHog's bare `{"type":"ai/failure"}` (no id) ends the run. Streamed whole,
    the result names `h1` in `generation_error_unanswered` (an id-less message answers no
    error: `_idless_final` leaves the turn unanswered). The same run whose first
    connection dropped before the echo (`_echo_lost`: the echo caught up from the
    conversation) runs `_recount_unanswered`, which takes any message after the error,
    the bare failure among them, for an answer: `generation_error_unanswered` is empty,
    and the same run reads differently by where the connection dropped."""
    failure = _sse({"type": "ai", "content": "The answ"}) + (
        b'event: status\ndata: {"type":"generation_error"}\n\n' + _sse({"type": "ai/failure"})
    )
    result = await _ask(_echo_lost([], failure))
    assert result.complete
    assert result.generation_error_turns == ("h1",)
    assert result.generation_error_unanswered == ("h1",)
    assert result.turns[0].generation_error_unanswered
