"""`ConversationStream.question` and `text_batches()`: text per turn, as the reader sees it."""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aposthog
from aposthog.testing import FakePostHog

from .stream_helpers import FAST, Replay

pytestmark = pytest.mark.anyio


def _message(data: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + json.dumps(data).encode() + b"\n\n"


# Two turns in ONE chunk: the decoder sees the second message before the reader has the
# first answer's text.
TWO_TURNS = b"".join(
    [
        _message({"type": "human", "content": "first", "id": "h1"}),
        _message({"type": "ai", "content": "Answer"}),
        _message({"type": "ai", "content": "Answer one.", "id": "a1"}),
        _message({"type": "human", "content": "second", "id": "h2"}),
        _message({"type": "ai", "content": "Answer"}),
        _message({"type": "ai", "content": "Answer two.", "id": "a2"}),
    ]
)


async def test_question_is_the_turn_of_the_text_just_read_not_of_the_chunk() -> None:
    seen, result = await _read_per_turn([TWO_TURNS], batches=False)
    assert seen == [("h1", "Answer"), ("h1", " one."), ("h2", "\n\nAnswer"), ("h2", " two.")]
    assert result.complete


async def test_batches_join_what_arrived_and_never_span_two_turns() -> None:
    pieces, result = await _read_per_turn([TWO_TURNS], batches=True)
    assert pieces == [("h1", "Answer one."), ("h2", "\n\nAnswer two.")]
    assert result.complete
    assert "".join(text for _, text in pieces) == result.text


async def test_a_slow_reader_gets_what_arrived_meanwhile_in_one_piece(
    fake: FakePostHog,
) -> None:
    answer = "The pageview trend rose 12% week over week, and signups held steady."
    fake.script_answer(answer, token_size=1, delay=0.002)
    fake.script_answer("The queued answer, token by token.", token_size=1, delay=0.002)
    async with fake.client(retry=FAST) as ph:
        stream = ph.conversations.create("first")
        pieces: list[tuple[str, str]] = []
        async for text in stream.text_batches():
            assert stream.question is not None
            if not pieces:
                await ph.conversations.queue.add(stream.conversation_id, "second")
            pieces.append((stream.question.content, text))
            await anyio.sleep(0.05)  # a chat platform's pace: one edit at a time
        result = stream.result()
    assert result.complete
    assert "".join(text for _, text in pieces) == result.text
    turns = {question: "".join(t for q, t in pieces if q == question) for question, _ in pieces}
    assert turns == {"first": answer, "second": "\n\nThe queued answer, token by token."}
    deltas = len(answer) + len("The queued answer, token by token.")
    assert len(pieces) < deltas / 4, pieces  # joined while the reader slept


async def test_leaving_a_batch_loop_closes_the_stream(fake: FakePostHog) -> None:
    fake.script_answer("a slow answer", token_size=1, delay=0.05)
    async with fake.client(retry=FAST) as ph:
        stream = ph.conversations.create("q")
        async for _ in stream.text_batches():
            break
        assert stream.closed
        assert ph.open_streams == 0
    await fake.wait_for_streams_closed(timeout=0.5)
    assert fake.ai_streams.disconnected == 1


# ---------------------------------------------------------------------- any cut of the body


_TEXT = st.text(alphabet="ab ", min_size=1, max_size=12).filter(str.strip)


@st.composite
def _turns_and_cuts(draw: st.DrawFn) -> tuple[list[str], list[bytes]]:
    """Answers to 1-3 messages, streamed as snapshots then finals, cut anywhere."""
    answers = draw(st.lists(_TEXT, min_size=1, max_size=3))
    events = []
    for n, answer in enumerate(answers):
        events.append(_message({"type": "human", "content": f"q{n}", "id": f"h{n}"}))
        ends = draw(st.lists(st.integers(1, len(answer)), max_size=4).map(sorted))
        events += [_message({"type": "ai", "content": answer[:end]}) for end in ends]
        events.append(_message({"type": "ai", "content": answer, "id": f"a{n}"}))
    body = b"".join(events)
    cuts = sorted(set(draw(st.lists(st.integers(1, len(body) - 1), max_size=12))))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    return answers, chunks


async def _read_per_turn(
    chunks: list[bytes], *, batches: bool
) -> tuple[list[tuple[str, str]], aposthog.ConversationResult]:
    """Each delta (or piece) read from a stream whose body is `chunks`, with its turn."""
    async with aposthog.Client(api_key="phx_k", host="http://127.0.0.1:9", project_id=1) as ph:

        async def replay(*_: Any, **__: Any) -> Replay:
            return Replay(chunks)

        ph._api.pipeline.transport.open_stream = replay  # type: ignore[method-assign,assignment]
        stream = ph.conversations.create("q0")
        loop = stream.text_batches() if batches else stream.text_deltas()
        read = []
        async for text in loop:
            assert stream.question is not None
            read.append((stream.question.id or "", text))
        assert ph.open_streams == 0
        return read, stream.result()


@given(_turns_and_cuts())
@settings(max_examples=150)
def test_any_cut_keeps_each_turns_text_with_its_question(
    case: tuple[list[str], list[bytes]],
) -> None:
    """However the body is cut, each piece and each delta is read with its own turn's
    `question`, no piece spans two turns, and the pieces join to the answer."""
    answers, chunks = case
    expected = {f"h{n}": ("\n\n" if n else "") + answer for n, answer in enumerate(answers)}
    for batches in (True, False):
        read, result = anyio.run(functools.partial(_read_per_turn, chunks, batches=batches))
        assert result.complete
        assert "".join(t for _, t in read) == result.text == "\n\n".join(answers)
        per_turn: dict[str, str] = {}
        for turn, piece in read:
            per_turn[turn] = per_turn.get(turn, "") + piece
        assert per_turn == expected
        if batches:
            # A piece holds everything that was there: at most one piece per chunk and turn.
            assert len(read) <= len(chunks) + len(answers)


async def test_until_done_after_a_batch_reads_the_turn_the_batch_held_back() -> None:
    """A batch loop that stopped before a queued message's turn (it holds its
    `HumanMessage` for the next piece), then `until_done()`: everything is read, so
    `question` is the last turn's."""
    async with aposthog.Client(api_key="phx_k", host="http://127.0.0.1:9", project_id=1) as ph:

        async def replay(*_: Any, **__: Any) -> Replay:
            return Replay([TWO_TURNS])

        ph._api.pipeline.transport.open_stream = replay  # type: ignore[method-assign, assignment]
        stream = ph.conversations.create("q0")
        batches = stream.text_batches()
        assert await anext(batches) == "Answer one."
        assert stream.question is not None
        assert stream.question.id == "h1"
        result = await stream.until_done()
        assert stream.question is not None
        assert stream.question.id == "h2"
        assert result.complete
        del batches


async def test_a_queued_run_that_fails_like_the_first_ends_the_stream_complete(
    fake: FakePostHog,
) -> None:
    """Both runs end with PostHog's bare failure (`{"type":"ai/failure"}`, no id): the
    stream carried two whole runs and must end complete, each turn with its failure."""
    fake.script_answer("the first answer, cut", token_size=2, delay=0.01, fail=True)
    fake.script_answer("the queued answer, cut", token_size=2, delay=0.01, fail=True)
    async with fake.client(retry=FAST) as ph, ph.conversations.create("first") as stream:
        await anext(stream)  # the first run has begun
        await ph.conversations.queue.add(stream.conversation_id, "second")
        result = await stream.until_done()
    assert result.complete
    assert [turn.question.content for turn in result.turns if turn.question] == [
        "first",
        "second",
    ]
    assert all(turn.failure is not None for turn in result.turns)


class _Held:
    """A response that hands out `chunks`, then waits (the run goes on) until closed."""

    status = 200
    content_type = "text/event-stream"

    def __init__(self, chunks: list[bytes]) -> None:
        self.headers = {"Content-Type": self.content_type}
        self._chunks = iter(chunks)
        self._closed = anyio.Event()

    async def read_chunk(self) -> bytes:
        chunk = next(self._chunks, None)
        if chunk is not None:
            return chunk
        await self._closed.wait()
        return b""

    async def read(self) -> bytes:
        return b""

    def close(self) -> None:
        self._closed.set()


async def test_batches_hand_out_what_arrived_when_the_client_closes_under_them() -> None:
    """A stream closed under its reader "still hands out what had arrived, then raises
    `ClientStateError`": `text_deltas()` does, and `text_batches()` joins to what the
    deltas would. A batch loop that stopped at a queued message's turn holds that turn's
    text, already received: it must come out before the error."""
    ph = aposthog.Client(api_key="phx_k", host="http://127.0.0.1:9", project_id=1)

    async def held(*_: Any, **__: Any) -> _Held:
        return _Held([TWO_TURNS])  # both turns arrived; the body has not ended

    ph._api.pipeline.transport.open_stream = held  # type: ignore[method-assign,assignment]
    stream = ph.conversations.create("q0")
    batches = stream.text_batches()
    pieces = [await anext(batches)]
    assert pieces == ["Answer one."]  # the second turn's text waits for the next piece
    await ph.aclose()  # e.g. the bot shuts down while its reader relays the last piece
    with pytest.raises(aposthog.ClientStateError):
        while True:
            pieces.append(await anext(batches))
    assert "".join(pieces) == "Answer one.\n\nAnswer two." == stream.result().streamed_text


async def test_a_queued_turn_after_a_generation_error_keeps_each_turns_outcome(
    fake: FakePostHog,
) -> None:
    """The first run fails after `status: generation_error` (its insight generated again,
    and failing again: PostHog's bare `ai/failure`), the queued one answers. Each turn
    says how it ended: the first failed (it holds only a partial, unfinished answer), the
    second did not; nothing on the first had said so."""
    fake.script_answer(
        "the first answer, cut", token_size=2, delay=0.01, generation_error=True, fail=True
    )
    fake.script_answer("The queued answer.", token_size=2, delay=0.01)
    async with fake.client(retry=FAST) as ph, ph.conversations.create("first") as stream:
        await anext(stream)  # the first run has begun
        await ph.conversations.queue.add(stream.conversation_id, "second")
        with anyio.fail_after(5):
            result = await stream.until_done()
    assert result.complete
    first, second = result.turns
    assert second.text == "The queued answer."
    assert second.failure is None
    # The first turn failed: it says so; the second, which answered, does not.
    assert first.generation_error
    assert first.failed
    assert not second.generation_error
    assert not second.failed


async def test_a_turn_answered_after_its_subagent_failed_did_not_fail(fake: FakePostHog) -> None:
    """A subagent's `ai/failure` (it has a `parent_tool_call_id`) goes back to the main
    agent as its tool result, and the main agent answers: the run did not fail, and
    `result.failed` says so. A bot replying per turn (`result.turns`) must read the same:
    it showed the good answer as failed."""
    call = {"id": "call_1", "name": "task", "args": {}, "type": "tool_call"}
    subagent = [
        ("message", json.dumps({"type": "ai", "content": "", "id": "a0", "tool_calls": [call]})),
        (
            "message",
            json.dumps(
                {
                    "type": "ai/failure",
                    "content": "The subagent's query failed",
                    "id": "f1",
                    "parent_tool_call_id": "call_1",
                }
            ),
        ),
        (
            "message",
            json.dumps({"type": "tool", "content": "failed", "tool_call_id": "call_1", "id": "t1"}),
        ),
    ]
    fake.script_answer("Signups grew 12%.", raw_events=subagent)
    async with fake.client(retry=FAST) as ph:
        result = await ph.conversations.create("Signups?").until_done()
    assert result.complete
    assert result.text == "Signups grew 12%."
    assert not result.failed  # the run's outcome
    (turn,) = result.turns
    assert turn.text == "Signups grew 12%."
    assert turn.failure is None
    assert not turn.failed  # the same run's outcome, for a bot replying per turn


@pytest.mark.parametrize("failing", [{"generation_error": True, "fail": True}, {"fail": True}])
async def test_an_attached_streams_queued_turn_that_fails_like_the_first_is_reported(
    fake: FakePostHog, failing: dict[str, Any]
) -> None:
    """The bot re-attaches with `stream(id)` after its reader went away (PostHog deleted the
    run's stream, so the replay starts after the echo: the first turn has no question).
    The run fails, and so does the follow-up the user had queued, the same way (an LLM
    outage fails both with the same bytes: `status: generation_error`, or the bare
    `{"type":"ai/failure"}`). The queued turn's failure is new, not a replay of the first:
    the stream must end complete with both turns failed, not lose the second failure and
    raise IncompleteStreamError."""
    fake.script_answer(
        "The first answer.", token_size=1, delay=0.02, end_after_connections=2, **failing
    )
    fake.script_answer("The queued answer.", token_size=1, delay=0.02, **failing)
    async with fake.client(retry=FAST) as ph:
        first = ph.conversations.create("first")
        async with first:
            await anext(first)  # the conversation
            await anext(first)  # the echo: the answer has begun
            await ph.conversations.queue.add(first.conversation_id, "second")
        attached = ph.conversations.stream(first.conversation_id)
        with anyio.fail_after(5):
            result = await attached.until_done()
    assert result.complete
    assert [t.question.content if t.question else None for t in result.turns][-1] == "second"
    assert result.turns[-1].failed  # the queued turn failed too
