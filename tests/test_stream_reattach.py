"""
Re-attach edge cases against FakePostHog: a repeated question whose POST PostHog never
processed (the catch-up must not take the earlier run's answer for this one), a
re-attach that finds another client's run in progress (the stream must not take it as
its own), and a replay that PostHog's capped Redis stream trimmed (live text must not
stall).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import anyio
import pytest

import aposthog
from aposthog.models.events import ConversationEvent, MessageEvent, StreamEvent
from aposthog.models.messages import HumanMessage
from aposthog.testing import AIScript, FakePostHog, StreamStats
from aposthog.testing._ai_runs import build_run

from .stream_helpers import FAST, collect, posts, stream_served_by

pytestmark = pytest.mark.anyio

QUESTION = "Summarise yesterday"


class _LongestWait(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b  # full jitter's longest wait, every time


# ---------------------------------------------------------------------- a repeated question


async def _ask_again_dropped(ph: aposthog.Client, fake: FakePostHog, conversation: str) -> None:
    """Ask QUESTION again; the POST's connection dies before PostHog processes it."""
    fake.drop_next(1, method="POST")  # cut like a load balancer would: nothing started
    stream = ph.conversations.create(QUESTION, conversation=conversation)
    deltas: list[str] = []
    with pytest.raises(aposthog.APIConnectionError) as info:
        async for text in stream.text_deltas():
            deltas.append(text)  # noqa: PERF401  (keeps what came before the error)
    assert not isinstance(info.value, aposthog.APIStatusError)
    assert deltas == []  # nothing of the earlier run's answer
    result = stream.result()
    assert not result.complete
    assert result.messages == ()
    assert result.text == ""
    # Re-attached (400: idle), caught up (the GET), and the message never sent twice.
    assert [b["content"] for b in posts(fake)[-2:]] == [QUESTION, None]
    assert fake.status_counts[400] == 1
    assert fake.requests[-1].method == "GET"


async def test_a_repeated_question_never_gets_the_earlier_runs_answer(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Asked first through another stream object, then again with its POST dropped."""
    fake.script_answer("Yesterday: 1,234 signups.")
    first = await ph.conversations.create(QUESTION).until_done()
    assert first.complete
    await _ask_again_dropped(ph, fake, first.conversation_id)
    humans = [m for m in fake.conversations[first.conversation_id].messages if m["type"] == "human"]
    assert len(humans) == 1  # PostHog never saw the second one


@pytest.mark.parametrize("with_trace_ids", [True, False], ids=["trace-ids", "no-trace-ids"])
async def test_a_question_asked_before_the_client_started_is_not_this_runs(
    fake: FakePostHog, ph: aposthog.Client, with_trace_ids: bool
) -> None:
    """The earlier run predates this process (seeded): nothing of it was ever seen here.
    Without trace ids on the stored messages (an older PostHog) the run cannot be told
    apart either: the error stands."""
    human: dict[str, object] = {"type": "human", "content": QUESTION}
    if with_trace_ids:
        human["trace_id"] = str(uuid.uuid4())
    seeded = fake.seed_conversation(messages=[human, {"type": "ai", "content": "Old answer."}])
    await _ask_again_dropped(ph, fake, seeded.id)


async def test_a_repeated_question_that_was_processed_is_caught_up_by_its_trace_id(
    fake: FakePostHog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: this time PostHog did take the message, and its run ended while the
    client was away, before the client saw the echo. The catch-up finds this run (by the
    trace id the message was sent with), not the earlier one with the same text."""
    monkeypatch.setattr("aposthog._retry._RNG", _LongestWait())
    slow = aposthog.RetryPolicy(initial_backoff=0.3, max_backoff=0.3)
    async with fake.client(retry=slow) as ph:
        fake.script_answer("Yesterday: 1,234 signups.")
        first = await ph.conversations.create(QUESTION).until_done()
        fake.script_answer("Yesterday: 1,240 signups (late events).", drop_after=0)
        stream = ph.conversations.create(QUESTION, conversation=first.conversation_id)
        deltas = await collect(stream)
        result = await stream.until_done()
    assert fake.status_counts[400] == 1  # the re-attach found the run over
    assert result.complete
    assert result.text == "Yesterday: 1,240 signups (late events)." == "".join(deltas)
    assert [m.type for m in result.messages] == ["human", "ai"]
    assert result.messages[0].id != first.messages[0].id


# ---------------------------------------------------------------------- another client's run

OTHER_QUESTION = "What broke last night?"
OTHER_ANSWER = "The other client's answer: the ingestion lag."


@pytest.mark.parametrize("new", [False, True], ids=["existing", "created-by-the-other"])
async def test_a_reattach_that_finds_another_clients_run_never_takes_it(
    fake: FakePostHog, ph: aposthog.Client, new: bool
) -> None:
    """Another client (same user) is generating in the conversation; this stream's POST is
    cut before PostHog processes it. The re-attach replays the other run, whose human
    message carries the other request's trace id: the stream takes nothing of it and
    raises the POST's error (PostHog never saw the message), and cancel() stops nothing.
    When the other run created the conversation, its `conversation` event (which precedes
    its message) is all this stream gives out: it describes the conversation, not the run."""
    conversation = str(uuid.uuid4()) if new else fake.seed_conversation().id
    # The other run's end waits for a second connection to it: this stream's re-attach.
    fake.script_answer(OTHER_ANSWER, end_after_connections=2)
    async with fake.client(retry=FAST) as other_client:
        other = other_client.conversations.create(OTHER_QUESTION, conversation=conversation)
        while not isinstance(await anext(other), MessageEvent):  # its run is generating
            pass  # up to its echo (anext: without ending the stream)
        fake.drop_next(1, method="POST")  # cut like a load balancer would: nothing started
        stream = ph.conversations.create(QUESTION, conversation=conversation)
        events: list[StreamEvent] = []
        with pytest.raises(aposthog.APIConnectionError) as info:
            async for event in stream:
                events.append(event)  # noqa: PERF401  (keeps what came before the error)
        assert not isinstance(info.value, aposthog.APIStatusError)
        assert info.value.reached_server
        assert info.value.method == "POST"
        assert all(isinstance(e, ConversationEvent) for e in events)
        assert len(events) == int(new)
        result = stream.result()
        assert not result.complete
        assert result.messages == ()
        assert result.text == "" == result.streamed_text
        await stream.cancel()  # the run in progress is the other client's: left alone
        assert not [r for r in fake.requests if r.method == "PATCH"]
        other_result = await other.until_done()
    assert other_result.complete
    assert other_result.text == OTHER_ANSWER
    humans = [m for m in fake.conversations[conversation].messages if m["type"] == "human"]
    assert [h["content"] for h in humans] == [OTHER_QUESTION]  # PostHog never saw ours
    # Sent once, re-attached once (the other run's replay), then looked for in the history.
    mine = [b for b in posts(fake) if b.get("content") != OTHER_QUESTION]
    assert [b["content"] for b in mine][:2] == [QUESTION, None]


async def test_a_reattach_that_finds_another_run_after_this_one_ended_catches_up(
    fake: FakePostHog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This time PostHog took the message; its run ended while the client was away
    (before it saw the echo), and another client's run started. The re-attach replays
    that run: the stream takes nothing of it, and catches up this run's answer from the
    conversation, which stops at the next run's message."""
    monkeypatch.setattr("aposthog._retry._RNG", _LongestWait())
    slow = aposthog.RetryPolicy(initial_backoff=0.5, max_backoff=0.5)
    seeded = fake.seed_conversation()
    fake.script_answer("Yesterday: 1,234 signups.", drop_after=0)  # ours: cut before its echo
    fake.script_answer(OTHER_ANSWER, end_after_connections=2)  # held for our re-attach
    async with fake.client(retry=slow) as ph, fake.client(retry=FAST) as other_client:
        stream = ph.conversations.create(QUESTION, conversation=seeded.id)
        deltas: list[str] = []

        async def read() -> None:
            deltas.extend(await collect(stream))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            with anyio.fail_after(5):  # until our connection was cut (the run goes on)
                while not fake.ai_streams.dropped:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
            assert fake.conversations[seeded.id].status == "idle"  # our run is over
            other = other_client.conversations.create(OTHER_QUESTION, conversation=seeded.id)
            while not isinstance(await anext(other), MessageEvent):  # the other run is
                pass  # generating: up to its echo
        result = await stream.until_done()
        other_result = await other.until_done()
    assert result.complete
    assert result.text == "Yesterday: 1,234 signups." == "".join(deltas)
    assert [m.type for m in result.messages] == ["human", "ai"]
    assert isinstance(result.messages[0], HumanMessage)
    assert result.messages[0].content == QUESTION
    assert other_result.text == OTHER_ANSWER
    assert fake.status_counts[400] == 0  # the re-attach found a run: the other one


# ---------------------------------------------------------------------- a trimmed replay

LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"  # no spaces: no text is held back


@pytest.mark.parametrize(
    ("kept", "replay_starts"),
    [
        # Events: human, ai(tool_calls), tool, 40 snapshots, final. The end waits for the
        # re-attach, which finds 43 events produced and replays the last `kept`: from the
        # 5th snapshot (the client saw 7 of them), after the tool call it cannot show
        # again; or from the tool's result, which places the snapshots that follow after
        # the assistant message it never replays.
        (36, [0, 7]),
        (41, [0, 2]),
    ],
    ids=["mid-answer", "from-the-tool-result"],
)
async def test_a_trimmed_replay_streams_live_text(
    fake: FakePostHog, ph: aposthog.Client, kept: int, replay_starts: list[int]
) -> None:
    """Redis kept only the last events: the replay starts mid-run. The text goes on
    streaming live, one snapshot at a time, none repeated or lost."""
    seeded = fake.seed_conversation()
    fake.script_answer(
        LETTERS,
        token_size=1,
        tool="search",
        drop_after=10,
        end_after_connections=2,
        keep_stream_on_disconnect=True,  # the cap trims the replay, not a deletion
        stream_max_length=kept,
    )
    stream = ph.conversations.create("q", conversation=seeded.id)
    deltas = await collect(stream)
    result = await stream.until_done()
    run = fake.conversations[seeded.id].run
    assert run is not None
    assert run.replay_starts == replay_starts
    assert "".join(deltas) == LETTERS == result.text
    assert deltas == list(LETTERS)  # every snapshot added its letter as it came
    assert [m.type for m in result.messages] == ["human", "ai", "tool", "ai"]
    assert result.complete


def test_the_fake_keeps_a_capped_stream_like_posthogs_redis() -> None:
    """PostHog keeps a run's last 1000 events (`CONVERSATION_STREAM_MAX_LENGTH`): a
    re-attach to a longer run starts mid-run; the connection that started it does not."""
    script = AIScript(text="x" * 1200, token_size=1, end_after_connections=2)
    run = build_run(script, content="q", human_id="h1", trace_id="t1", conversation=None)
    stats = StreamStats()
    run.stream(stats, lambda: None)  # the first connection (its bytes are not read here)
    run.stream(stats, lambda: None)  # a re-attach: 1201 events produced, the end held
    assert len(run.events) == 1202  # the echo, 1200 snapshots, the final message
    assert run.replay_starts == [0, 201]
    short = build_run(
        AIScript(text="short"), content="q", human_id="h", trace_id="t", conversation=None
    )
    short.stream(stats, lambda: None)
    short.stream(stats, lambda: None)
    assert short.replay_starts == [0, 0]  # under the cap: the whole run


# ---------------------------------------------------------------------- a deleted stream
# PostHog deletes a run's Redis stream when its reader goes away (`AgentExecutor.
# stream_conversation`: `finally: delete_stream()`): a re-attach replays only what the run
# produced after the drop, and what it produced before the drop but had not delivered is
# gone from the stream. The conversation (`GET conversations/{id}/`) still has it.

EARLIER = "Let me look at the signups."
ANSWER = "Yesterday: 1,234 signups."


async def test_final_messages_lost_in_a_reattach_gap_are_recovered_in_order(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The connection drops right after the echo. With `delay=0` every event but the held
    end is produced by then, so the deletion takes the tool call (with an earlier answer's
    text), its result and every snapshot: the re-attach replays the final answer alone.
    The stream recovers the lost messages from the conversation, in its order; the earlier
    answer's text, which preceded text already given out, is in `text` only."""
    seeded = fake.seed_conversation()
    fake.script_answer(ANSWER, tool="search", tool_text=EARLIER)  # the control: no drop
    unbroken = await ph.conversations.create("q", conversation=seeded.id).until_done()
    assert [r.method for r in fake.requests] == ["POST"]  # no re-attach: no extra GET
    fake.script_answer(
        ANSWER, tool="search", tool_text=EARLIER, drop_after=1, end_after_connections=2
    )
    stream = ph.conversations.create("q", conversation=seeded.id)
    events = [event async for event in stream]
    result = stream.result()
    run = fake.conversations[seeded.id].run
    assert run is not None
    assert run.replay_starts == [0, len(run.events) - 1]  # all deleted but the held end
    assert result.complete
    assert [m.type for m in result.messages] == [m.type for m in unbroken.messages]
    assert [m.type for m in result.messages] == ["human", "ai", "tool", "ai"]
    stored = [m["id"] for m in fake.conversations[seeded.id].messages[-4:]]
    assert [m.id for m in result.messages] == stored  # the conversation's order
    assert result.text == f"{EARLIER}\n\n{ANSWER}" == unbroken.text
    assert result.streamed_text == ANSWER  # honest: the earlier text was never given out
    # Every final message is delivered once, the recovered ones after the answer.
    finals = [e.message.id for e in events if isinstance(e, MessageEvent) and e.message.id]
    assert sorted(finals) == sorted(stored)
    assert finals[-2:] == stored[1:3]
    assert fake.requests[-1].method == "GET"


@pytest.mark.parametrize("cut", range(1, 8))
async def test_a_drop_after_any_event_loses_no_final_message(
    fake: FakePostHog, ph: aposthog.Client, cut: int
) -> None:
    """Whichever event the drop came before is deleted with everything produced by then;
    the run's final messages and its text are whole all the same."""
    seeded = fake.seed_conversation()
    fake.script_answer(
        ANSWER,
        tool="search",
        tool_text=EARLIER,
        token_size=5,
        delay=0.003,
        drop_after=cut,
        end_after_connections=2,
    )
    stream = ph.conversations.create("q", conversation=seeded.id)
    deltas = await collect(stream)
    result = stream.result()
    stored = [m["id"] for m in fake.conversations[seeded.id].messages]
    assert result.complete
    assert [m.id for m in result.messages] == stored
    assert result.text == f"{EARLIER}\n\n{ANSWER}"
    assert result.streamed_text == "".join(deltas)
    assert ANSWER in result.streamed_text


async def test_a_reattached_run_whose_conversation_cannot_be_read_is_incomplete(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The conversation that would show what the gap lost cannot be read (untitled: 404):
    the run's end arrived, but nothing proves no message was lost, so it is not reported
    as a complete answer."""
    # Cut after the `conversation` event and the echo (a new conversation).
    fake.script_answer(ANSWER, tool="search", title=None, drop_after=2, end_after_connections=2)
    stream = ph.conversations.create("q")
    with pytest.raises(aposthog.IncompleteStreamError) as info:
        await stream.until_done()
    assert isinstance(info.value.__cause__, aposthog.NotFoundError)
    result = stream.result()
    assert not result.complete
    assert result.text == ANSWER  # what arrived stays readable
    assert [m.type for m in result.messages] == ["human", "ai"]


async def test_a_reattached_run_whose_conversation_fetch_fails_is_incomplete(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    seeded = fake.seed_conversation()
    fake.script_answer(ANSWER, tool="search", drop_after=1, end_after_connections=2)
    fake.fail_next(10, status=503, method="GET")
    stream = ph.conversations.create("q", conversation=seeded.id)
    with pytest.raises(aposthog.IncompleteStreamError) as info:
        await stream.until_done()
    assert isinstance(info.value.__cause__, aposthog.APIStatusError)
    assert not stream.result().complete


@pytest.mark.parametrize(
    ("drop_after", "connections"),
    [(None, 2), ((100, 2), 3)],
    ids=["one-connection", "re-attached"],
)
async def test_a_bare_attach_recovers_what_a_deletion_took_from_its_run(
    fake: FakePostHog,
    ph: aposthog.Client,
    drop_after: tuple[int, ...] | None,
    connections: int,
) -> None:
    """`stream(id)` sends no message, and its first connection starts after the deletion
    its run's first reader caused by leaving (the echo and the tool call are gone from
    the stream). At the run's end, with or without a re-attach of its own, the run it
    followed is the conversation's latest, and what it never saw is recovered there."""
    seeded = fake.seed_conversation()
    fake.script_answer(
        ANSWER,
        tool="search",
        tool_text=EARLIER,
        token_size=1,
        delay=0.002,
        drop_after=drop_after,
        end_after_connections=connections,
    )
    first = ph.conversations.create("q", conversation=seeded.id)
    async with first:
        await anext(first)  # the echo; leaving deletes what the run produced so far
    result = await ph.conversations.stream(seeded.id).until_done()
    assert result.complete
    stored = [m["id"] for m in fake.conversations[seeded.id].messages[-4:]]
    assert [m.id for m in result.messages] == stored
    assert [m.type for m in result.messages] == ["human", "ai", "tool", "ai"]
    assert result.text == f"{EARLIER}\n\n{ANSWER}"


async def test_an_answer_streamed_after_a_lossy_reattach_reaches_text_deltas() -> None:
    """A chat bot relays `text_deltas()`. The connection drops while the first assistant
    message streams; its final message is lost with PostHog's deleted stream (reference
    §3.6; `_stream_engine`'s docstring). The re-attach then streams the next answer live,
    snapshots and final. The loop ends without an exception, the run complete, yet the
    relay got "Let me che" and nothing of "The answer is 42."."""
    import asyncio
    import json

    from aiohttp import web

    def event(data: dict[str, object]) -> bytes:
        return b"event: message\ndata: " + json.dumps(data).encode() + b"\n\n"

    stored: list[dict[str, object]] = [
        {"type": "human", "content": "q", "id": "h1"},
        {"type": "ai", "content": "Let me check.", "id": "a1"},
        {"type": "ai", "content": "The answer is 42.", "id": "a2"},
    ]
    posted: list[object] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":  # the reconcile at the end of a re-attached run
            conversation = {"id": "c", "status": "idle", "title": "t", "messages": stored}
            return web.json_response(conversation)
        body = json.loads(await request.read())
        posted.append(body["content"])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if len(posted) == 1:
            human = {"type": "human", "content": "q", "id": "h1", "trace_id": body["trace_id"]}
            await response.write(event(human))
            await response.write(event({"type": "ai", "content": "Let me"}))
            await response.write(event({"type": "ai", "content": "Let me che"}))
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()  # dropped mid-answer
            return response
        # The re-attach: what the run wrote after PostHog deleted its stream.
        await response.write(event({"type": "ai", "content": "The answer"}))
        await response.write(event({"type": "ai", "content": "The answer is"}))
        await response.write(event(stored[2]))
        return response

    stream, deltas = await stream_served_by(handler, "q")
    result = stream.result()
    assert posted == ["q", None]  # one re-attach
    assert result.complete
    assert result.text == "Let me check.\n\nThe answer is 42."
    assert "".join(deltas).endswith("The answer is 42.")


# ---------------------------------------------------------------------- a resume's re-attach

_ASKED: list[dict[str, Any]] = [
    {"type": "human", "content": "Make a flag", "id": "h1"},
    {
        "type": "ai",
        "content": "I'll create it.",
        "id": "a0",
        "tool_calls": [{"id": "call_1", "name": "create_feature_flag", "args": {}}],
    },
]


def _asked_card() -> dict[str, Any]:
    """`a0`'s approval card as PostHog stores it: its `message_id` is its own (a uuid4)."""
    return {
        "proposal_id": "p1",
        "decision_status": "pending",
        "tool_name": "create_feature_flag",
        "original_tool_call_id": "call_1",
        "message_id": str(uuid.uuid4()),
    }


async def test_a_resume_that_drops_gives_out_only_the_resumed_run(fake: FakePostHog) -> None:
    """The run before asked for approval (`h1`, then `a0` calling `call_1`); the card, as
    PostHog stores it, has its own `message_id` (a uuid4 of the runner's). The resume's
    stream drops after its first event; the re-attach replays what came after and the
    catch-up at the run's end must add only what the resumed run produced: a chat-bot
    relaying `text_deltas()` already showed "I'll create it." when the run asked."""
    conversation = fake.seed_conversation(messages=_ASKED, pending_approvals=[_asked_card()])
    fake.ai_scripts.append(
        AIScript(
            text="Created the flag for you.",
            tool="create_feature_flag",
            tool_text="Creating",
            drop_after=1,
            token_size=3,
        )
    )
    async with fake.client(retry=FAST) as ph:
        stream = ph.conversations.create(
            None,
            conversation=conversation.id,
            resume_payload={"action": "approve", "proposal_id": "p1"},
        )
        with anyio.fail_after(5):
            deltas = await collect(stream)
    result = stream.result()
    assert result.complete
    assert "I'll create it." not in "".join(deltas)
    assert not [m for m in result.messages if m.id in ("h1", "a0")]
    assert result.turns[0].question is None


async def test_a_resume_that_meets_another_run_does_not_take_its_answer(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The run before asked for approval; on another device the user wrote a new message
    instead (PostHog auto-rejects the card and runs the message). This client's approval
    arrives while that run is in progress: `ConversationViewSet.create` refuses no
    `content: null` on a busy conversation, and `AgentExecutor.astream` only attaches to
    the running run (`stream_conversation()`), the `resume_payload` unused. A resume's run
    sends no human message, so a stream that replays one is another run: the decision was
    not applied, and that run's question and answer are not the approval's result."""
    conversation = fake.seed_conversation(messages=_ASKED, pending_approvals=[_asked_card()])
    fake.script_answer(OTHER_ANSWER, end_after_connections=2)
    async with fake.client(retry=FAST) as other_client:
        other = other_client.conversations.create(OTHER_QUESTION, conversation=conversation.id)
        while not isinstance(await anext(other), MessageEvent):  # its run is generating
            pass
        stream = ph.conversations.create(
            None,
            conversation=conversation.id,
            resume_payload={"action": "approve", "proposal_id": "p1"},
        )
        taken: list[str] = []
        with anyio.fail_after(5), pytest.raises(aposthog.ConflictError, match="not apply"):
            async for text in stream.text_deltas():
                taken.append(text)  # noqa: PERF401
        await other.aclose()
    result = stream.result()
    assert OTHER_ANSWER not in "".join(taken)
    assert not result.complete
    assert OTHER_QUESTION not in [getattr(m, "content", None) for m in result.messages]
