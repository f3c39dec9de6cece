"""The pure accumulator: snapshots to deltas, final messages, replays. No event loop."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aposthog._conversation_state import SEPARATOR, ConversationState, Delivery, OtherRunError
from aposthog._stream_events import wire_message
from aposthog.models.conversations import ConversationResult
from aposthog.models.events import (
    ConversationEvent,
    MessageEvent,
    StatusEvent,
    StreamEvent,
    UpdateEvent,
    decode_event,
)
from aposthog.models.messages import (
    AssistantMessage,
    FailureMessage,
    HumanMessage,
    Message,
    ToolCall,
    ToolCallMessage,
)

from .strategies import posthog_runs

Wire = tuple[str, str]  # (event name, data), as on the wire


def msg(**fields: Any) -> Wire:
    return ("message", json.dumps({k: v for k, v in fields.items() if v is not None}))


def conv(title: str | None) -> Wire:
    return ("conversation", json.dumps({"id": "c1", "status": "in_progress", "title": title}))


def feed_all(state: ConversationState, wire: list[Wire]) -> list[Delivery]:
    out = []
    for name, data in wire:
        delivery = state.feed(decode_event(name, data), raw=f"{name}\n{data}".encode())
        if delivery is not None:
            out.append(delivery)
    return out


def texts(deliveries: list[Delivery]) -> str:
    return "".join(d.text for d in deliveries)


def result(state: ConversationState) -> ConversationResult:
    return state.result("c1", complete=True, cancelled=False)


def snapshots(text: str, cuts: list[int]) -> list[Wire]:
    return [msg(type="ai", content=text[:c]) for c in sorted(set(cuts)) if c <= len(text)]


SIMPLE_RUN: list[Wire] = [
    conv(None),
    msg(type="human", content="Hi?", id="h1"),
    msg(type="ai", content="Hel"),
    msg(type="ai", content="Hello wo"),
    conv("Greeting"),
    msg(type="ai", content="Hello world"),
    msg(type="ai", content="Hello world!", id="a1"),
]


def test_snapshots_become_deltas_and_the_final_adds_the_tail() -> None:
    state = ConversationState()
    deliveries = feed_all(state, SIMPLE_RUN)
    assert [d.text for d in deliveries] == ["", "", "Hel", "lo wo", "", "rld", "!"]
    assert texts(deliveries) == "Hello world!" == result(state).text
    assert state.human_id == "h1"
    assert [m.id for m in state.messages] == ["h1", "a1"]
    assert state.in_progress is None
    assert state.conversation is not None
    assert state.conversation.title == "Greeting"


def test_a_full_replay_delivers_nothing() -> None:
    state = ConversationState()
    feed_all(state, SIMPLE_RUN)
    state.begin_attempt()
    assert feed_all(state, SIMPLE_RUN) == []
    assert [m.id for m in state.messages] == ["h1", "a1"]
    assert state.streamed_text == "Hello world!"


def test_a_replay_after_a_drop_mid_answer_continues_where_it_left_off() -> None:
    state = ConversationState()
    first = feed_all(state, SIMPLE_RUN[:4])  # dropped after "Hello wo"
    state.begin_attempt()
    second = feed_all(state, SIMPLE_RUN)
    assert texts(first) == "Hello wo"
    assert [d.text for d in second] == ["", "rld", "!"]
    assert isinstance(second[0].event, ConversationEvent)  # the titled one is new
    assert texts(first + second) == "Hello world!"


def test_trailing_whitespace_is_held_back_until_the_final_message() -> None:
    state = ConversationState()
    got = feed_all(
        state,
        [
            msg(type="ai", content="One "),
            msg(type="ai", content="One two\n\n"),
            msg(type="ai", content="One two", id="a1"),  # the final trims it
        ],
    )
    assert [d.text for d in got] == ["One", " two", ""]
    assert texts(got) == "One two" == result(state).text


def test_messages_of_one_run_are_joined_by_a_blank_line() -> None:
    state = ConversationState()
    call = {"id": "t1", "name": "search", "args": {}, "type": "tool_call"}
    got = feed_all(
        state,
        [
            msg(type="human", content="q", id="h1"),
            msg(type="ai", content="Let me"),
            msg(type="ai", content="Let me look.", id="a1", tool_calls=[call]),
            ("update", json.dumps({"id": "a1", "tool_call_id": "t1", "content": "Searching"})),
            msg(type="tool", content="found", tool_call_id="t1", id="t-msg"),
            msg(type="ai", content="Found"),
            msg(type="ai", content="Found it.", id="a2"),
        ],
    )
    assert texts(got) == f"Let me look.{SEPARATOR}Found it." == result(state).text
    first = state.messages[1]
    assert isinstance(first, AssistantMessage)
    assert first.tool_calls == [ToolCall(id="t1", name="search")]
    assert isinstance(got[3].event, UpdateEvent)


def _question(state: ConversationState) -> HumanMessage | None:
    """`state.question`, read anew: mypy would keep an `is None` narrowing of the attribute
    across the feeding calls."""
    return state.question


def test_question_is_the_turn_each_delta_belongs_to() -> None:
    """A queued message's run follows on the stream: each delta is read with the question
    of its own turn, and the next turn's first delta carries the separator."""
    state = ConversationState()
    assert _question(state) is None
    seen: list[tuple[str | None, str]] = []
    for wire in [
        msg(type="ai", content="joined late"),  # a re-attach after the echo: no turn yet
        msg(type="ai", content="joined late.", id="a0"),
        msg(type="human", content="first", id="h1"),
        msg(type="ai", content="One"),
        msg(type="ai", content="One.", id="a1"),
        msg(type="human", content="second", id="h2"),
        msg(type="ai", content="Two"),
        msg(type="ai", content="Two.", id="a2"),
        msg(type="human", content="second", id="h2"),  # replayed: the turn stays
    ]:
        for delivery in feed_all(state, [wire]):
            question = state.question
            seen.append((question.content if question else None, delivery.text))
    deltas = [(q, t) for q, t in seen if t]
    assert deltas == [
        (None, "joined late"),
        (None, "."),
        ("first", f"{SEPARATOR}One"),
        ("first", "."),
        ("second", f"{SEPARATOR}Two"),
        ("second", "."),
    ]
    assert state.question is not None
    assert state.question.id == "h2"


def test_a_tool_only_message_adds_no_separator() -> None:
    state = ConversationState()
    got = feed_all(
        state,
        [
            msg(type="ai", content="", id="a1"),
            msg(type="ai", content="Answer"),
            msg(type="ai", content="Answer.", id="a2"),
        ],
    )
    assert texts(got) == "Answer." == result(state).text


def test_a_rewritten_final_adds_nothing_and_the_result_shows_it() -> None:
    state = ConversationState()
    got = feed_all(
        state,
        [msg(type="ai", content="Hello wor"), msg(type="ai", content="Hi, world", id="a1")],
    )
    assert texts(got) == "Hello wor"
    final = result(state)
    assert final.streamed_text == "Hello wor"
    assert final.text == "Hi, world"


def test_a_diverging_snapshot_pauses_deltas_until_text_extends_again() -> None:
    state = ConversationState()
    got = feed_all(
        state,
        [
            msg(type="ai", content="Hello"),
            msg(type="ai", content="Help"),  # not an extension: delivered, no text
            msg(type="ai", content="Hello there", id="a1"),
        ],
    )
    assert [d.text for d in got] == ["Hello", "", " there"]


def test_in_band_failures_are_reported_not_raised() -> None:
    state = ConversationState()
    got = feed_all(
        state,
        [
            msg(type="human", content="q", id="h1"),
            msg(type="ai", content="Partial"),
            ("status", '{"type":"generation_error"}'),
            msg(type="ai/failure", content="Oops! Something went wrong.", id="f1"),
        ],
    )
    final = result(state)
    assert final.failed
    assert final.generation_error
    assert final.failure == FailureMessage(id="f1", content="Oops! Something went wrong.")
    assert final.in_progress == AssistantMessage(content="Partial")
    assert final.text == ""
    assert final.streamed_text == "Partial"
    assert isinstance(got[2].event, StatusEvent)


_CALL = {"id": "t1", "name": "search", "args": {}, "type": "tool_call"}
_TOOL_CALL = msg(type="ai", content="Let me look.", id="a1", tool_calls=[_CALL])
_TOOL_RESULT = msg(type="tool", content="found", tool_call_id="t1", id="t-msg")
_SUBAGENT = msg(type="ai", content="Sub done", parent_tool_call_id="t1", id="s1")
_ANSWER = msg(type="ai", content="Found it.", id="a2")


@pytest.mark.parametrize(
    ("after_human", "ended"),
    [
        pytest.param([], False, id="echo-only"),
        pytest.param([msg(type="ai", content="Hel")], False, id="snapshot"),
        pytest.param([_TOOL_CALL], False, id="tool-call"),
        pytest.param([_TOOL_CALL, _SUBAGENT], False, id="subagent-message"),
        pytest.param([_TOOL_CALL, _TOOL_RESULT], False, id="tool-result"),
        pytest.param([_TOOL_CALL, _TOOL_RESULT, _ANSWER], True, id="answer-after-tool"),
        pytest.param([_ANSWER], True, id="answer"),
        pytest.param([_ANSWER, msg(type="ai", content="More")], False, id="answer-then-snapshot"),
        pytest.param([_ANSWER, _SUBAGENT], True, id="subagent-after-answer"),
        pytest.param([msg(type="ai", content="", id="a2", tool_calls=[])], True, id="no-calls"),
        pytest.param([_TOOL_CALL, msg(type="ai/failure", id="f1")], True, id="failure"),
        pytest.param([_TOOL_CALL, ("message", '{"type":"ai/failure"}')], True, id="bare-failure"),
        # PostHog generates the insight again after it: the run goes on.
        pytest.param([_TOOL_CALL, ("status", '{"type":"generation_error"}')], False, id="error"),
        pytest.param(
            [_TOOL_CALL, ("status", '{"type":"generation_error"}'), _TOOL_RESULT, _ANSWER],
            True,
            id="answer-after-error",
        ),
    ],
)
def test_a_run_ends_on_its_answer_or_a_failure_never_on_a_tool_call_step(
    after_human: list[Wire], ended: bool
) -> None:
    # Reference §3.5, point 5: tool calls, their results and subagents precede the answer.
    state = ConversationState()
    feed_all(state, [msg(type="human", content="q", id="h1"), *after_human])
    assert state.run_ended is ended


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(msg(type="ai/failure", content="Try again later.", id="f1"), id="ai-failure"),
        pytest.param(("status", '{"type":"generation_error"}'), id="generation-error"),
    ],
)
def test_a_queued_run_after_a_failed_one_has_not_ended_mid_answer(failure: Wire) -> None:
    """PostHog drains the queue after a run whatever its outcome (`process_chat_agent_activity`,
    posthog/temporal/ai/chat_agent.py: `write_to_stream(..., emit_completion=False)`, then
    `build_queued_workflow_inputs()`), so a failed run's stream goes on with the queued
    message's run. That run, with its answer still in progress, has not ended: a body cut
    there is cut short, as it would be without the earlier failure."""
    state = ConversationState()
    first = [msg(type="human", content="q", id="h1"), failure]
    second = [msg(type="human", content="next", id="h2"), msg(type="ai", content="The answer is")]
    feed_all(state, first + second)
    assert state.in_progress is not None
    assert state.run_ended is False


# PostHog's failures without an id: the same bytes whichever run fails.
ID_LESS_FAILURES = pytest.mark.parametrize(
    "failure",
    [
        pytest.param(("message", '{"type":"ai/failure"}'), id="bare-ai-failure"),
    ],
)


def failed_then_queued(failure: Wire) -> list[Wire]:
    """A run that fails mid-answer, then the queued message's run, its answer begun."""
    return [
        msg(type="human", content="q", id="h1"),
        msg(type="ai", content="Partial"),
        failure,
        msg(type="human", content="next", id="h2"),
        msg(type="ai", content="Other"),
    ]


@ID_LESS_FAILURES
def test_a_queued_runs_failure_like_the_previous_runs_ends_that_run(failure: Wire) -> None:
    """PostHog drains the queue after a failed run, and its failures carry no id (a bare
    `{"type":"ai/failure"}`, `status: generation_error`): the queued run failing the same
    way sends the very same bytes. That is no replay (nothing re-attached): it ends the
    queued run. Dropped, the run never ends, and the stream that PostHog closed after it
    is taken for one cut short (re-attached, then `IncompleteStreamError`)."""
    state = ConversationState()
    feed_all(state, failed_then_queued(failure))
    assert len(feed_all(state, [failure])) == 1  # delivered: the second run's failure
    assert state.run_ended


@ID_LESS_FAILURES
def test_replayed_failures_of_two_turns_are_still_replays(failure: Wire) -> None:
    """Two queued runs that failed alike, then a re-attach: a replay from the start gives
    each turn's failure again after its own human message, and one trimmed before the
    second turn's human message gives the first's failure without one. Nothing of it is
    new."""
    two_turns = [
        msg(type="human", content="q", id="h1"),
        failure,
        msg(type="human", content="next", id="h2"),
        msg(type="ai", content="Other"),
        failure,
    ]
    for replay in (two_turns, two_turns[1:]):
        state = ConversationState()
        assert len(feed_all(state, two_turns)) == 5
        state.begin_attempt()
        assert feed_all(state, replay) == []
        assert state.run_ended


@ID_LESS_FAILURES
def test_a_queued_runs_failure_after_a_reattach_ends_that_run(failure: Wire) -> None:
    """As above, with the connection dropped during the queued run: PostHog deleted its
    stream, so the re-attach brings only what the run produced since, no human message.
    The queued run's failure, the same bytes as the first run's, is new: it ends the run
    (dropped, the stream PostHog closes after it is taken for one cut short)."""
    state = ConversationState()
    feed_all(state, failed_then_queued(failure))
    state.begin_attempt()  # dropped mid-run of h2; re-attached
    got = feed_all(state, [msg(type="ai", content="Other text"), failure])
    assert len(got) == 2  # the snapshot, and the second run's failure
    assert state.run_ended


@ID_LESS_FAILURES
def test_a_queued_runs_answer_after_a_run_failed_mid_answer_is_given_out(failure: Wire) -> None:
    """The first run fails mid-answer (its last snapshot never finalised), and PostHog
    drains the queue: the queued message's answer is new text, given out in its turn, as
    it is after a run that ended with a final message."""
    state = ConversationState()
    final = msg(type="ai", content="Other answer.", id="a2")
    got = feed_all(state, [*failed_then_queued(failure), final])
    assert texts(got).endswith("Other answer.")


def reattached_after_a_lost_final() -> ConversationState:
    """A state that gave out "Let me che", then re-attached: the final of "Let me check."
    was lost in the gap (PostHog deleted the run's stream)."""
    state = ConversationState()
    before = [
        msg(type="human", content="q", id="h1"),
        msg(type="ai", content="Let me"),
        msg(type="ai", content="Let me che"),
    ]
    assert texts(feed_all(state, before)) == "Let me che"
    state.begin_attempt()
    return state


def test_the_next_answer_streams_after_a_gap_lost_the_previous_answers_final() -> None:
    """The connection drops mid-answer; PostHog deletes the run's stream, and the first
    answer's final message (produced before the server noticed) is lost with it. The
    re-attach replays what came after: the next answer's snapshots, then its final.
    That answer is new text, all of it: `text_deltas()` must give it out, not hold it
    against the lost message's text and stay silent for the rest of the run."""
    state = reattached_after_a_lost_final()
    after = [
        msg(type="ai", content="The answer"),
        msg(type="ai", content="The answer is"),
        msg(type="ai", content="The answer is 42.", id="a2"),
    ]
    got = texts(feed_all(state, after))
    assert got.endswith("The answer is 42.")
    assert state.streamed_text == "Let me che" + got


def test_the_next_answer_streams_after_a_gap_when_it_begins_without_text() -> None:
    """As above, with the next answer's first snapshots carrying no text yet (a reasoning
    model's thinking, or a tool call being streamed: `content` is ""). Its text, once it
    comes, is new all the same."""
    state = reattached_after_a_lost_final()
    after = [
        msg(type="ai", content="", meta={"thinking": [{"type": "thinking", "thinking": "Hm"}]}),
        msg(type="ai", content="The answer"),
        msg(type="ai", content="The answer is 42.", id="a2"),
    ]
    got = texts(feed_all(state, after))
    assert got.endswith("The answer is 42.")


def test_a_next_answer_whose_final_alone_follows_a_gap_is_given_out() -> None:
    """As above, with the gap taking the next answer's snapshots too: its final is all
    that comes, and its text is new. A replay that goes on with the message in progress
    is no gap: its text goes on from what was given out."""
    state = ConversationState()
    feed_all(state, [msg(type="human", content="q", id="h1"), msg(type="ai", content="Let me")])
    state.begin_attempt()
    got = feed_all(state, [msg(type="ai", content="The answer is 42.", id="a2")])
    assert texts(got) == "\n\nThe answer is 42."

    state = ConversationState()
    feed_all(state, [msg(type="human", content="q", id="h1"), msg(type="ai", content="Let me")])
    state.begin_attempt()
    got = feed_all(state, [msg(type="ai", content="Let me check.", id="a1")])
    assert texts(got) == " check."


def test_a_bare_failure_without_id_is_kept_once_across_replays() -> None:
    state = ConversationState()
    run = [msg(type="human", content="q", id="h1"), ("message", '{"type":"ai/failure"}')]
    assert len(feed_all(state, run)) == 2
    state.begin_attempt()
    assert feed_all(state, run) == []
    assert state.failure == FailureMessage()
    assert len(state.messages) == 2


def test_a_final_message_with_a_known_id_and_new_content_replaces_the_old_one() -> None:
    state = ConversationState()
    feed_all(state, [msg(type="tool", content="v1", tool_call_id="t", id="x")])
    got = feed_all(state, [msg(type="tool", content="v2", tool_call_id="t", id="x")])
    assert len(got) == 1
    assert len(state.messages) == 1
    assert getattr(state.messages[0], "content", None) == "v2"


def test_temp_ids_are_in_progress() -> None:
    state = ConversationState()
    got = feed_all(
        state,
        [msg(type="ai", content="Hi", id="temp-1"), msg(type="ai", content="Hi!", id="a1")],
    )
    assert texts(got) == "Hi!"
    assert [m.id for m in state.messages] == ["a1"]


def test_subagent_messages_are_events_but_not_reply_text() -> None:
    state = ConversationState()
    run = [
        msg(type="ai", content="Sub", parent_tool_call_id="t1"),
        msg(type="ai", content="Sub done", parent_tool_call_id="t1", id="s1"),
        msg(type="ai", content="Main", id="a1"),
    ]
    got = feed_all(state, run)
    assert len(got) == 3
    assert texts(got) == "Main" == result(state).text
    state.begin_attempt()
    assert feed_all(state, run) == []


def test_a_replay_that_starts_mid_run_still_finds_its_place() -> None:
    # PostHog trims its Redis stream to about 1000 entries: a replay may lack the start.
    state = ConversationState()
    run = [
        msg(type="ai", content="A"),
        msg(type="ai", content="A.", id="a1"),
        msg(type="ai", content="B"),
        msg(type="ai", content="B.", id="a2"),
        msg(type="ai", content="C"),
    ]
    feed_all(state, run)
    state.begin_attempt()
    tail = [*run[2:], msg(type="ai", content="C!"), msg(type="ai", content="C!!", id="a3")]
    got = feed_all(state, tail)
    assert [d.text for d in got] == ["!", "!"]
    assert state.streamed_text == result(state).text == f"A.{SEPARATOR}B.{SEPARATOR}C!!"


def test_a_trimmed_replay_that_lacks_the_tool_call_resumes_live_deltas() -> None:
    # Redis kept only the end: no replayed final message places the snapshots, which
    # are recognised as new (or replayed) by their text.
    state = ConversationState()
    call = {"id": "t1", "name": "search", "args": {}, "type": "tool_call"}
    seen = [
        msg(type="human", content="q", id="h1"),
        msg(type="ai", content="", id="a1", tool_calls=[call]),
        msg(type="tool", content="done", tool_call_id="t1", id="r1"),
        msg(type="ai", content="The"),
        msg(type="ai", content="The answer"),
    ]
    assert texts(feed_all(state, seen)) == "The answer"
    state.begin_attempt()
    replay = [
        msg(type="ai", content="The"),  # trimmed before this: a replay of the one in progress
        msg(type="ai", content="The answer"),
        msg(type="ai", content="The answer is"),
        msg(type="ai", content="The answer is 42"),
        msg(type="ai", content="The answer is 42.", id="a2"),
    ]
    assert [d.text for d in feed_all(state, replay)] == [" is", " 42", "."]
    assert state.streamed_text == result(state).text == "The answer is 42."


def test_a_trimmed_replay_starting_at_the_tool_result_places_what_follows() -> None:
    state = ConversationState()
    call = {"id": "t1", "name": "search", "args": {}, "type": "tool_call"}
    seen = [
        msg(type="ai", content="Let me look.", id="a1", tool_calls=[call]),
        msg(type="tool", content="done", tool_call_id="t1", id="r1"),
        msg(type="ai", content="Let"),
    ]
    feed_all(state, seen)
    state.begin_attempt()
    replay = [seen[1], msg(type="ai", content="Let"), msg(type="ai", content="Let me")]
    assert [d.text for d in feed_all(state, replay)] == [" me"]  # placed by the tool result


def test_a_new_snapshot_that_begins_an_earlier_answer_only_defers_its_text() -> None:
    state = ConversationState()
    seen = [msg(type="ai", content="Let me look.", id="a1"), msg(type="ai", content="Let")]
    feed_all(state, seen)
    state.begin_attempt()
    replay = [
        msg(type="ai", content="Let me"),  # new, but it may be a replay of a1: held
        msg(type="ai", content="Let me see"),
        msg(type="ai", content="Let me see.", id="a2"),
    ]
    assert [d.text for d in feed_all(state, replay)] == [" me see", "."]
    assert state.streamed_text == result(state).text == f"Let me look.{SEPARATOR}Let me see."


def test_catch_up_delivers_only_this_runs_unseen_messages() -> None:
    state = ConversationState()
    feed_all(state, [msg(type="human", content="q2", id="h2"), msg(type="ai", content="An")])
    fetched: list[Message] = [
        HumanMessage(id="h1", content="q1"),
        AssistantMessage(id="old", content="Earlier answer"),
        HumanMessage(id="h2", content="q2"),
        AssistantMessage(id="a2", content="Answer"),
    ]
    got = state.catch_up(fetched)
    assert got is not None
    assert [d.text for d in got] == ["swer"]
    assert [m.id for m in state.messages] == ["h2", "a2"]
    assert state.catch_up(fetched) == []


def test_catch_up_without_the_human_message_matches_nothing() -> None:
    state = ConversationState()
    assert state.catch_up([AssistantMessage(id="a", content="x")]) is None
    feed_all(state, [msg(type="human", content="q", id="h9")])
    assert state.catch_up([AssistantMessage(id="a", content="x")]) is None


def test_events_without_raw_form_are_deduplicated_by_value() -> None:
    state = ConversationState()
    update = UpdateEvent("a1", "t1", "Searching")
    assert state.feed(update) == Delivery(update)
    assert state.feed(update) is None
    assert state.feed(MessageEvent(HumanMessage(id="h", content="x"))) is not None


# ---------------------------------------------------------------------- properties

_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=40
)


@st.composite
def growing_run(draw: st.DrawFn, *, distinct: bool = False) -> tuple[list[Wire], list[str]]:
    """
    A run like PostHog streams it: each assistant message as growing snapshots, then final.
    `distinct`: each message's text starts with a letter of its own (no snapshot of one
    begins another's text).
    """
    wire: list[Wire] = [conv(None), msg(type="human", content="question", id="h1")]
    finals: list[str] = []
    for n in range(draw(st.integers(1, 3))):
        text = "ABC"[n] + draw(_TEXT) if distinct else draw(_TEXT)
        cuts = draw(st.lists(st.integers(0, len(text)), max_size=8))
        wire.extend(snapshots(text, cuts))
        if bool(cuts) and draw(st.booleans()):  # bool(): `cuts and` would type draw() as a list
            wire.append(wire[-1])  # the same snapshot twice (a chunk with no text)
        wire.append(msg(type="ai", content=text, id=f"a{n}"))
        if draw(st.booleans()):
            update = {"id": f"a{n}", "tool_call_id": f"t{n}", "content": draw(_TEXT)}
            wire.append(("update", json.dumps(update)))
            wire.append(msg(type="tool", content="ok", tool_call_id=f"t{n}", id=f"tool{n}"))
        if n == 0 and draw(st.booleans()):
            wire.append(conv("Title"))
        finals.append(text)
    return wire, finals


def answer(finals: list[str]) -> str:
    return SEPARATOR.join(t for t in finals if t)


@given(growing_run())
def test_deltas_join_to_the_final_answer(run: tuple[list[Wire], list[str]]) -> None:
    wire, finals = run
    state = ConversationState()
    got = feed_all(state, wire)
    assert texts(got) == answer(finals) == result(state).text == state.streamed_text
    assert len({m.id for m in state.messages}) == len(state.messages)


@given(growing_run())
def test_replaying_the_whole_run_yields_nothing_new(run: tuple[list[Wire], list[str]]) -> None:
    wire, _ = run
    state = ConversationState()
    feed_all(state, wire)
    before = state.messages
    state.begin_attempt()
    assert feed_all(state, wire) == []
    assert state.messages == before


@given(growing_run(), st.lists(st.integers(0, 200), max_size=3))
def test_drops_and_replays_deliver_exactly_what_one_connection_would(
    run: tuple[list[Wire], list[str]], cuts: list[int]
) -> None:
    wire, finals = run
    once = ConversationState()
    expected = feed_all(once, wire)

    state = ConversationState()
    got: list[Delivery] = []
    reached = 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts):
        # Each connection replays from the start, and may get further than the last one.
        state.begin_attempt()
        reached = max(reached, cut)
        got.extend(feed_all(state, wire[:reached]))
    state.begin_attempt()
    got.extend(feed_all(state, wire))

    assert got == expected
    assert texts(got) == answer(finals)
    assert state.messages == once.messages


@given(
    st.booleans().flatmap(lambda distinct: growing_run(distinct=distinct)),
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=4),
)
@example(  # seen up to "B"; the replay starts there, after the final "A" it lacks
    (
        [
            conv(None),
            msg(type="human", content="question", id="h1"),
            msg(type="ai", content="A", id="a0"),
            msg(type="ai", content="B"),
            msg(type="ai", content="Bo"),
            msg(type="ai", content="Bob", id="a1"),
        ],
        ["A", "Bob"],
    ),
    [(4, 0), (1, 1)],
)
def test_trimmed_replays_lose_and_repeat_no_text(
    run: tuple[list[Wire], list[str]], connections: list[tuple[int, int]]
) -> None:
    """PostHog's capped stream: each re-attach replays from anywhere up to where the last
    connection got (what Redis dropped had been seen), then on. The text given out is
    still the answer, each final message is delivered once, nothing is given twice. And
    it is live: when no snapshot of one message begins another's text, each connection
    has given out all the text one unbroken connection would have by the same event."""
    wire, finals = run
    distinct = all(text[:1] == "ABC"[n] for n, text in enumerate(finals))
    once = ConversationState()
    expected = feed_all(once, wire)

    state = ConversationState()
    got: list[Delivery] = []
    reached = 0
    # Each connection gets `advance` events further than the last; a re-attach's replay
    # starts `back` events before where the last one got (the rest was trimmed).
    for n, (advance, back) in enumerate([*connections, (len(wire), connections[-1][1])]):
        begin = 0
        if n:
            state.begin_attempt()
            begin = max(0, reached - back)
        reached = min(len(wire), reached + advance)
        got.extend(feed_all(state, wire[begin:reached]))
        if distinct:
            assert state.streamed_text == texts(feed_all(ConversationState(), wire[:reached]))

    assert texts(got) == answer(finals) == state.streamed_text == result(state).text
    assert state.messages == once.messages
    ids = [d.event.message.id for d in got if isinstance(d.event, MessageEvent)]
    finals_ids = [i for i in ids if i is not None]
    assert len(finals_ids) == len(set(finals_ids)) == len(once.messages)
    assert all(d.event in [e.event for e in expected] for d in got)


@given(_TEXT, st.lists(st.integers(0, 60), max_size=10))
def test_any_growing_snapshots_then_the_final_join_to_it(text: str, cuts: list[int]) -> None:
    state = ConversationState()
    got = feed_all(state, [*snapshots(text, cuts), msg(type="ai", content=text, id="a1")])
    assert texts(got) == text


@pytest.mark.parametrize(
    "event",
    [
        StatusEvent("ack"),
        UpdateEvent(None, None, {"id": "x", "name": "y", "args": {}}),
    ],
)
def test_other_events_pass_through_once(event: StreamEvent) -> None:
    state = ConversationState()
    assert state.feed(event) == Delivery(event)
    state.begin_attempt()
    assert state.feed(event) is None


def test_catch_up_finds_the_run_by_its_text_and_trace_id_when_the_echo_was_never_seen() -> None:
    """A run seen only up to its conversation event is found by the text that was sent
    and the trace id it was sent with, never by the text alone."""
    history: list[Message] = [
        HumanMessage(content="q", id="h0", trace_id="t0"),
        AssistantMessage(content="old answer", id="a0"),
        HumanMessage(content="q", id="h1", trace_id="t1"),
        AssistantMessage(content="new answer", id="a1"),
    ]
    state = ConversationState()
    deliveries = state.catch_up(history, sent="q", trace_id="t1")
    assert deliveries is not None
    assert ["h1", "a1"] == [m.id for m in state.messages]
    assert ConversationState().catch_up(history, sent="never sent", trace_id="t1") is None
    assert ConversationState().catch_up(history, sent="q") is None  # the text alone
    assert ConversationState().catch_up(history) is None


def test_catch_up_never_takes_an_earlier_run_with_the_same_question() -> None:
    """The message PostHog never processed is not in the conversation: the earlier run
    with the same text (seen or not by this client) is someone else's answer."""
    history: list[Message] = [
        HumanMessage(content="Summarise yesterday", id="h0", trace_id="t0"),
        AssistantMessage(content="Yesterday: 1,234 signups.", id="a0"),
    ]
    state = ConversationState()
    assert state.catch_up(history, sent="Summarise yesterday", trace_id="t1") is None
    assert state.messages == ()
    assert state.streamed_text == ""
    # Stored without trace ids (an older PostHog): nothing tells the runs apart either.
    untraced: list[Message] = [HumanMessage(content="Summarise yesterday", id="h0"), history[1]]
    assert state.catch_up(untraced, sent="Summarise yesterday", trace_id="t1") is None
    # The same trace id on another text (a caller reusing one) is not this message.
    reused: list[Message] = [HumanMessage(content="Other", id="h0", trace_id="t1"), history[1]]
    assert state.catch_up(reused, sent="Summarise yesterday", trace_id="t1") is None


@st.composite
def _histories(draw: st.DrawFn) -> tuple[list[Message], int | None]:
    """Earlier runs (texts and trace ids that may repeat ours), maybe ours, maybe later."""
    run = st.tuples(st.sampled_from(["q", "r"]), st.sampled_from(["t0", "t1", None]))
    # Our trace id on our text is ours: a caller reusing both is beyond telling apart.
    runs = draw(st.lists(run.filter(lambda r: r != ("q", "t1")), max_size=5))
    ours = draw(st.none() | st.integers(0, len(runs)))
    messages: list[Message] = []
    mine: int | None = None
    for n, (content, trace) in enumerate(runs):
        if n == ours:
            mine = len(messages)
            messages += [HumanMessage(content="q", id="mine", trace_id="t1")]
            messages += [AssistantMessage(content="mine", id="a-mine")]
        messages += [HumanMessage(content=content, id=f"h{n}", trace_id=trace)]
        messages += [AssistantMessage(content=f"answer {n}", id=f"a{n}")]
    if ours == len(runs):
        mine = len(messages)
        messages += [HumanMessage(content="q", id="mine", trace_id="t1")]
        messages += [AssistantMessage(content="mine", id="a-mine")]
    return messages, mine


@given(_histories())
def test_catch_up_finds_exactly_this_runs_message_or_nothing(
    history: tuple[list[Message], int | None],
) -> None:
    messages, mine = history
    state = ConversationState()
    got = state.catch_up(messages, sent="q", trace_id="t1")
    if mine is None:
        assert got is None
        assert state.messages == ()
    else:
        assert got is not None
        # This run only: its message and answer, never a later run's (the next human
        # message starts one).
        assert state.messages == tuple(messages[mine : mine + 2])
        assert [m.id for m in state.messages] == ["mine", "a-mine"]
        assert state.run_ended


def test_catch_up_stops_at_the_next_runs_message() -> None:
    """The conversation goes on after this run (another client asked since): its answer is
    not this run's, whether the echo was seen or is found by its trace id."""
    history: list[Message] = [
        HumanMessage(content="q", id="h1", trace_id="t1"),
        AssistantMessage(content="mine", id="a1"),
        HumanMessage(content="other", id="h2", trace_id="t2"),
        AssistantMessage(content="theirs", id="a2"),
        HumanMessage(content="third", id="h3", trace_id="t3"),
    ]
    state = ConversationState()
    assert state.catch_up(history, sent="q", trace_id="t1") is not None
    assert [m.id for m in state.messages] == ["h1", "a1"]
    assert result(state).text == "mine"
    assert state.run_ended
    seen = ConversationState()
    feed_all(seen, [msg(type="human", content="q", id="h1", trace_id="t1")])
    deliveries = seen.catch_up(history)
    assert deliveries is not None
    assert [d.event.message.id for d in deliveries if isinstance(d.event, MessageEvent)] == ["a1"]
    assert seen.run_ended


def test_catch_up_spans_the_queued_runs_the_stream_went_on_into() -> None:
    """PostHog streams a queued message's run on the same connection (a new trace id):
    after a re-attach, the catch-up at the end takes what came through as this stream's,
    and recovers what a gap lost in a queued run, but no later run's messages."""
    history: list[Message] = [
        HumanMessage(content="q", id="h1", trace_id="t1"),
        AssistantMessage(content="mine", id="a1"),
        HumanMessage(content="queued", id="h2", trace_id="t2"),
        ToolCallMessage(content="rows", id="t", tool_call_id="c"),
        AssistantMessage(content="queued answer", id="a2"),
        HumanMessage(content="later", id="h3", trace_id="t3"),
        AssistantMessage(content="theirs", id="a3"),
    ]
    state = ConversationState()
    feed_all(
        state,
        [
            msg(type="human", content="q", id="h1", trace_id="t1"),
            msg(type="ai", content="mine", id="a1"),
            msg(type="human", content="queued", id="h2", trace_id="t2"),
        ],
    )
    state.begin_attempt()  # a drop: the tool result is lost in the gap
    feed_all(state, [msg(type="ai", content="queued answer", id="a2")])
    deliveries = state.catch_up(history)
    assert deliveries is not None
    assert [d.event.message.id for d in deliveries if isinstance(d.event, MessageEvent)] == ["t"]
    assert [m.id for m in state.messages] == ["h1", "a1", "h2", "t", "a2"]
    assert result(state).text == f"mine{SEPARATOR}queued answer"
    assert state.run_ended


def test_catch_up_finds_the_message_as_posthog_stored_it_trimmed() -> None:
    """PostHog's CharField trims the content it stores: the text sent had whitespace."""
    history: list[Message] = [
        HumanMessage(content="q", id="h1", trace_id="t1"),
        AssistantMessage(content="mine", id="a1"),
    ]
    state = ConversationState()
    assert state.catch_up(history, sent="  q\n", trace_id="t1") is not None
    assert [m.id for m in state.messages] == ["h1", "a1"]


# ---------------------------------------------------------------------- another run

OTHER_RUN: list[Wire] = [
    conv(None),
    msg(type="human", content="other", id="h9", trace_id="t9"),
    msg(type="ai", content="The other"),
    msg(type="ai", content="The other answer.", id="a9"),
]


def test_a_reattach_takes_nothing_of_another_runs_human_message() -> None:
    """This run's echo unseen, a re-attach replays another client's run: its human message
    (another trace id) raises, and nothing of it is taken."""
    state = ConversationState()
    state.expect_echo("q", "t1")
    state.begin_attempt()
    delivered = feed_all(state, OTHER_RUN[:1])  # its conversation event: the conversation's
    assert [type(d.event) for d in delivered] == [ConversationEvent]
    with pytest.raises(OtherRunError) as info:
        feed_all(state, OTHER_RUN[1:])
    assert info.value.message.id == "h9"
    assert state.human_id is None
    assert state.messages == ()
    assert state.streamed_text == ""
    assert not state.run_ended


@pytest.mark.parametrize(
    "echo",
    [
        {"content": "other", "trace_id": "t1"},  # our trace id, another text: not ours
        {"content": "q", "trace_id": "t9"},  # our text, another request's trace id
    ],
    ids=["other-text", "other-trace-id"],
)
def test_another_runs_message_differs_in_trace_id_or_text(echo: dict[str, str]) -> None:
    state = ConversationState()
    state.expect_echo("q", "t1")
    with pytest.raises(OtherRunError):
        feed_all(state, [msg(type="human", id="h9", **echo)])
    assert state.messages == ()


def test_this_runs_echo_is_taken_and_the_check_ends() -> None:
    """The echo with this request's trace id (and the text as PostHog stores it, trimmed)
    is this run's; a later human message (a queued next run) is then not checked."""
    state = ConversationState()
    state.expect_echo(" q\n", "t1")
    state.begin_attempt()
    wire = [
        msg(type="human", content="q", id="h1", trace_id="t1"),
        msg(type="ai", content="Hi", id="a1"),
        msg(type="human", content="next", id="h2", trace_id="t2"),
    ]
    assert len(feed_all(state, wire)) == 3
    assert state.human_id == "h1"
    state.expect_echo("q", "t1")  # already seen: nothing to check
    assert feed_all(state, [msg(type="human", content="x", id="h3", trace_id="t3")])


def test_an_echo_without_trace_id_is_taken_as_before() -> None:
    """An older PostHog echoed the message without its trace id: nothing tells the runs
    apart, so the first human message is taken, as it always was."""
    state = ConversationState()
    state.expect_echo("q", "t1")
    state.begin_attempt()
    untraced = [msg(type="human", content="other", id="h9"), *OTHER_RUN[2:]]
    assert texts(feed_all(state, untraced)) == "The other answer."
    assert state.human_id == "h9"
    assert state.run_ended


def reference_deltas(snapshots_then_final: list[str]) -> list[str]:
    """The documented rule, plainly: snapshots up to their last non-space character, only
    when they extend the text given out; the final message's rest when it extends it."""
    emitted, out = "", []
    *snapshots, final = snapshots_then_final
    for target in [s.rstrip() for s in snapshots] + [final]:
        if len(target) > len(emitted) and target.startswith(emitted):
            out.append(target[len(emitted) :])
            emitted = target
    return out


_PIECES = st.sampled_from(["a", "b", " ", "\n", "\t", "\u3000", "é", "📈", "  \n\n", "x" * 70])
_SNAPSHOT_TEXTS = st.lists(st.lists(_PIECES, max_size=8).map("".join), min_size=1, max_size=12)


@given(_SNAPSHOT_TEXTS, st.booleans())
def test_deltas_follow_the_rule_for_any_snapshots_even_rewrites(
    texts_: list[str], grow: bool
) -> None:
    """Whitespace held back or trimmed, rewritten text, text that extends again: the deltas
    are the documented rule's, and never contradict one another."""
    if grow:  # mostly extensions, as PostHog streams
        texts_ = [texts_[0][:i] + "".join(texts_[1:i]) for i in range(1, len(texts_) + 1)]
    state = ConversationState()
    wire = [msg(type="ai", content=t) for t in texts_[:-1]]
    wire.append(msg(type="ai", content=texts_[-1], id="a1"))
    deltas = [d.text for d in feed_all(state, wire) if d.text]
    assert deltas == reference_deltas(texts_)
    streamed = "".join(deltas)
    assert result(state).streamed_text == streamed
    for i in range(1, len(deltas) + 1):  # every state of the answer was a prefix of a text
        assert any(t.startswith("".join(deltas[:i])) for t in texts_)


# ---------------------------------------------------------------------- a re-attach's gap
# PostHog deletes a run's stream when its reader goes away: a re-attach replays only what
# came after, and final messages produced around the drop reach the client only through
# the conversation. `catch_up` puts them at their places.

_GAP_CALL = ToolCall(id="call_1", name="search", args={})
GAPPED_RUN: list[Message] = [
    HumanMessage(id="h1", content="q"),
    AssistantMessage(id="a0", content="Let me look.", tool_calls=[_GAP_CALL]),
    ToolCallMessage(id="t1", content="done", tool_call_id="call_1"),
    AssistantMessage(id="a1", content="The answer."),
]


def test_catch_up_puts_messages_lost_in_a_gap_in_the_conversations_order() -> None:
    state = ConversationState()
    feed_all(state, [msg(type="human", content="q", id="h1")])
    state.begin_attempt()  # re-attached: the replay lacks the tool call and its result
    feed_all(state, [msg(type="ai", content="The answer.", id="a1")])
    assert state.run_ended
    got = state.catch_up(GAPPED_RUN)
    assert got is not None
    assert [d.event.message.id for d in got if isinstance(d.event, MessageEvent)] == ["a0", "t1"]
    assert [d.text for d in got] == ["", ""]  # the earlier text preceded text given out
    assert state.messages == tuple(GAPPED_RUN)
    assert result(state).text == "Let me look.\n\nThe answer."
    assert state.streamed_text == "The answer."  # honest: differs from the text
    assert state.run_ended
    assert state.catch_up(GAPPED_RUN) == []  # each once


def test_catch_up_gives_out_the_text_of_a_lost_message_after_all_received() -> None:
    state = ConversationState()
    feed_all(state, [msg(type="human", content="q", id="h1"), msg(type="ai", content="Let")])
    got = state.catch_up(GAPPED_RUN)
    assert got is not None
    # The tool call's final extends the text given out; the answer follows it.
    assert texts(got) == " me look.\n\nThe answer."
    assert state.streamed_text == result(state).text


def test_catch_up_refuses_a_conversation_that_lacks_the_answer_received() -> None:
    """A conversation that does not show this run as received (a stale view) cannot show
    what the stream missed either."""
    state = ConversationState()
    feed_all(state, [msg(type="human", content="q", id="h1")])
    feed_all(state, [msg(type="ai", content="The answer.", id="a1")])
    assert state.catch_up(GAPPED_RUN[:3]) is None
    assert [m.id for m in state.messages] == ["h1", "a1"]


def test_catch_up_places_a_lost_echo_found_by_its_trace_id_first() -> None:
    state = ConversationState()
    state.expect_echo("q", "t1")
    state.begin_attempt()  # the echo was deleted with the stream: only the answer came
    feed_all(state, [msg(type="ai", content="The answer.", id="a1")])
    stored: list[Message] = [
        HumanMessage(id="h1", content="q", trace_id="t1"),
        *GAPPED_RUN[1:],
    ]
    got = state.catch_up(stored, sent="q", trace_id="t1")
    assert got is not None
    assert state.messages == tuple(stored)
    assert state.human_id == "h1"


@given(st.lists(st.booleans(), min_size=4, max_size=4), st.integers(1, 3))
def test_catch_up_recovers_any_lost_messages_in_order(lost: list[bool], answers: int) -> None:
    """A run of several answers, any of whose final messages (the last answer aside) the
    stream lost: the catch-up delivers exactly those, each once; `messages` is the
    conversation's order and `text` the whole answer; the deltas are the text received,
    never out of order."""
    stored: list[Message] = [HumanMessage(id="h", content="q")]
    for n in range(answers):
        call = ToolCall(id=f"c{n}", name="search", args={})
        stored += [
            AssistantMessage(id=f"a{n}", content=f"Step {n}.", tool_calls=[call]),
            ToolCallMessage(id=f"t{n}", content="done", tool_call_id=f"c{n}"),
        ]
    stored.append(AssistantMessage(id="end", content="Done."))
    kept = [m for n, m in enumerate(stored) if n in (0, len(stored) - 1) or not lost[n % 4]]
    state = ConversationState()
    received = []
    for message in kept:
        state.begin_attempt()
        delivery = state.feed_message(MessageEvent(message))
        assert delivery is not None
        received.append(delivery.text)
    got = state.catch_up(stored)
    assert got is not None
    missed = [m.id for m in stored if m not in kept]
    assert [d.event.message.id for d in got if isinstance(d.event, MessageEvent)] == missed
    assert all(d.text == "" for d in got)
    assert state.messages == tuple(stored)
    expected = "\n\n".join(m.content for m in stored if isinstance(m, AssistantMessage))
    assert result(state).text == expected
    assert state.streamed_text == "".join(received)
    assert state.run_ended
    assert state.catch_up(stored) == []


# ---------------------------------------------------------------------- pinned by mutants


def test_non_message_events_are_recognised_by_their_wire_form() -> None:
    """`raw` is the identity of a non-message event: the same bytes again are a replay,
    an equal event sent in another wire form is not."""
    state = ConversationState()
    once = ("update", '{"id":"a1","tool_call_id":"t1","content":"caf\\u00e9"}')
    again = ("update", '{"id":"a1","tool_call_id":"t1","content":"café"}')
    assert decode_event(*once) == decode_event(*again)
    assert len(feed_all(state, [once, again])) == 2
    assert feed_all(state, [once, again]) == []


_SUB = {"type": "ai", "parent_tool_call_id": "t1"}


@pytest.mark.parametrize(
    "new",
    [
        pytest.param(("update", '{"id":"a1","tool_call_id":"t1","content":"On it"}'), id="update"),
        pytest.param(msg(type="tool", content="found", tool_call_id="t0", id="r0"), id="final"),
        pytest.param(msg(type="tool", content="found", tool_call_id="t0"), id="id-less"),
    ],
)
def test_a_new_event_after_a_reattach_ends_the_replay(new: Wire) -> None:
    """A subagent's snapshots are only passed on live: once a new event shows the replay
    is over, they are delivered again."""
    state = ConversationState()
    feed_all(state, [_TOOL_CALL, msg(**_SUB, content="Sub")])
    state.begin_attempt()
    assert feed_all(state, [msg(**_SUB, content="Sub")]) == []  # a replay
    assert len(feed_all(state, [new])) == 1
    got = feed_all(state, [msg(**_SUB, content="Sub more")])
    assert [d.event for d in got] == [decode_event(*msg(**_SUB, content="Sub more"))]


def test_a_repeated_subagent_snapshot_is_passed_on_once() -> None:
    state = ConversationState()
    got = feed_all(state, [_TOOL_CALL, msg(**_SUB, content="Sub"), msg(**_SUB, content="Sub")])
    assert len(got) == 2


def test_each_subagent_message_streams_even_when_it_repeats_the_last_ones_text() -> None:
    """A subagent's final message ends its snapshots: its next message's first snapshot is
    new even with the same text."""
    state = ConversationState()
    run = [
        _TOOL_CALL,
        msg(**_SUB, content="Looking"),
        msg(**_SUB, content="Looking", id="s1"),
        msg(**_SUB, content="Looking"),  # the subagent's next message
    ]
    assert len(feed_all(state, run)) == 4


def test_a_status_other_than_generation_error_is_no_failure() -> None:
    state = ConversationState()
    got = feed_all(state, [msg(type="human", content="q", id="h1"), ("status", '{"type":"ack"}')])
    assert isinstance(got[1].event, StatusEvent)
    assert not state.generation_error
    assert not state.run_ended
    assert not result(state).failed


def test_a_new_final_message_after_a_reattach_places_the_snapshots_after_it() -> None:
    """The replay held nothing of what was seen: the new tool result places what follows,
    so a snapshot that begins the earlier answer's text is new, its text given out now."""
    state = ConversationState()
    feed_all(state, [_TOOL_CALL])  # "Let me look.", calling t1
    state.begin_attempt()
    got = feed_all(
        state,
        [
            msg(type="tool", content="found", tool_call_id="t1", id="r1"),
            msg(type="ai", content="Let"),
            msg(type="ai", content="Let me"),
            msg(type="ai", content="Let me see.", id="a2"),
        ],
    )
    assert [d.text for d in got] == ["", f"{SEPARATOR}Let", " me", " see."]


def test_a_new_snapshot_places_an_unplaced_replay() -> None:
    """The first snapshot that begins no known answer is new: the replay is over, and what
    follows is live, even a (rewritten) snapshot that begins a known answer."""
    state = ConversationState()
    feed_all(state, [msg(type="ai", content="Let me look.", id="a1")])
    state.begin_attempt()
    got = feed_all(state, [msg(type="ai", content="The"), msg(type="ai", content="Let")])
    assert [d.text for d in got] == [f"{SEPARATOR}The", ""]
    assert state.in_progress == AssistantMessage(content="Let")


def test_after_the_replay_reaches_where_it_left_off_snapshots_are_live() -> None:
    """A replayed snapshot that begins the last one delivered is dropped only while the
    replay lasts: a live one (a rewrite) is delivered, without text."""
    live = ConversationState()
    got = feed_all(live, [msg(type="ai", content="Hello wo"), msg(type="ai", content="Hello")])
    assert [d.text for d in got] == ["Hello wo", ""]
    assert live.in_progress == AssistantMessage(content="Hello")

    state = ConversationState()
    feed_all(state, SIMPLE_RUN[:4])  # dropped after "Hello wo"
    state.begin_attempt()
    assert feed_all(state, SIMPLE_RUN[:4]) == []  # the replay, up to where it left off
    got = feed_all(state, [msg(type="ai", content="Hello")])
    assert [d.text for d in got] == [""]
    assert state.in_progress == AssistantMessage(content="Hello")
    assert state.streamed_text == "Hello wo"


def test_a_long_run_of_trailing_whitespace_is_held_back_whole() -> None:
    state = ConversationState()
    got = feed_all(
        state,
        [
            msg(type="ai", content="Hi" + " " * 100),
            msg(type="ai", content="Hi" + "\n" * 100 + "there"),
            msg(type="ai", content="Hi" + " " * 100),
            msg(type="ai", content="Hi", id="a1"),  # the final trims it
        ],
    )
    assert [d.text for d in got] == ["Hi", "\n" * 100 + "there", "", ""]

    trimmed = ConversationState()
    got = feed_all(
        trimmed, [msg(type="ai", content="Hi" + " " * 100), msg(type="ai", content="Hi", id="a1")]
    )
    assert texts(got) == "Hi" == result(trimmed).text == trimmed.streamed_text


def test_a_trimmed_replay_of_whitespace_the_final_trimmed_is_not_given_out_again() -> None:
    """An unplaced replay's snapshot is one of a known answer when its text, trailing
    whitespace aside, begins that answer's (the final message trimmed it)."""
    state = ConversationState()
    run = [msg(type="ai", content="Done.\n\n"), msg(type="ai", content="Done.", id="a1")]
    assert texts(feed_all(state, run)) == "Done."
    state.begin_attempt()
    assert feed_all(state, run) == []
    assert state.streamed_text == result(state).text == "Done."


def test_catch_up_refuses_a_conversation_that_lacks_the_last_answer_received() -> None:
    """Of several answers received, the last decides: a conversation that shows only an
    earlier one is stale."""
    state = ConversationState()
    feed_all(state, [msg(type="human", content="q", id="h1")])
    for message in GAPPED_RUN[1:]:
        state.feed_message(MessageEvent(message))
    assert state.catch_up(GAPPED_RUN[:3]) is None
    assert state.messages == tuple(GAPPED_RUN)


def test_catch_up_of_a_stream_that_sent_nothing_takes_the_latest_run() -> None:
    history: list[Message] = [
        HumanMessage(id="h1", content="first"),
        AssistantMessage(id="a1", content="One."),
        HumanMessage(id="h2", content="second"),
        AssistantMessage(id="a2", content="Two."),
    ]
    state = ConversationState()
    got = state.catch_up(history, latest=True)
    assert got is not None
    assert [m.id for m in state.messages] == ["h2", "a2"]
    assert result(state).text == "Two."
    assert state.catch_up(history) == []


# ---------------------------------------------------------------------- runs ended by PostHog

_CALL = {"id": "call_1", "name": "create_feature_flag", "args": {}, "type": "tool_call"}
_READ = {"id": "call_2", "name": "read_data", "args": {}, "type": "tool_call"}


@pytest.mark.parametrize(
    ("wire", "awaits"),
    [
        ([msg(type="ai", content="On it.", id="a1", tool_calls=[_CALL])], True),
        (  # a subagent's message after the call: still the call's step
            [
                msg(type="ai", content="On it.", id="a1", tool_calls=[_CALL]),
                msg(type="ai", content="sub", id="s1", parent_tool_call_id="call_1"),
            ],
            True,
        ),
        (
            [
                msg(type="ai", content="On it.", id="a1", tool_calls=[_CALL]),
                msg(type="tool", content="done", id="t1", tool_call_id="call_1"),
            ],
            False,
        ),
        ([msg(type="ai", content="Done.", id="a1")], False),
        ([msg(type="ai", content="Writ")], False),  # an answer in progress
        ([], False),
        (  # two calls side by side: one returned (a read), the other awaits approval
            [
                msg(type="ai", content="Look, then create.", id="a1", tool_calls=[_CALL, _READ]),
                msg(type="tool", content="42 rows", id="t2", tool_call_id="call_2"),
            ],
            True,
        ),
        (  # both returned: the assistant's next message is due
            [
                msg(type="ai", content="Look, then create.", id="a1", tool_calls=[_CALL, _READ]),
                msg(type="tool", content="42 rows", id="t2", tool_call_id="call_2"),
                msg(type="tool", content="created", id="t1", tool_call_id="call_1"),
            ],
            False,
        ),
        (  # a result, then the run's next step
            [
                msg(type="ai", content="Look.", id="a1", tool_calls=[_READ]),
                msg(type="tool", content="42 rows", id="t2", tool_call_id="call_2"),
                msg(type="ai", content="Hm", id="a2", tool_calls=[]),
            ],
            False,
        ),
    ],
)
def test_a_run_awaits_the_user_at_a_tool_call_without_its_result(
    wire: list[Wire], awaits: bool
) -> None:
    state = ConversationState()
    feed_all(state, [msg(type="human", content="q", id="h1"), *wire])
    assert state.awaits_user is awaits
    if awaits:
        assert not state.run_ended  # only the conversation's status tells it ended


def _stored(*messages: dict[str, Any]) -> list[Message]:
    stored = []
    for message in messages:
        event = decode_event("message", json.dumps(message))
        assert isinstance(event, MessageEvent)
        stored.append(event.message)
    return stored


_HUMAN = {"type": "human", "content": "q", "id": "h1"}
_ASKING = {"type": "ai", "content": "Let me check.", "id": "a0", "tool_calls": [_CALL]}


def test_a_failure_the_conversation_does_not_hold_is_unsaved_and_can_be_withdrawn() -> None:
    state = ConversationState()
    oops = msg(type="ai/failure", content="Oops! Something went wrong.", id="f-1")
    feed_all(state, [msg(**_HUMAN), msg(**_ASKING), oops])
    ended = [state.run_ended]
    assert state.unsaved_failure(_stored(_HUMAN, _ASKING))
    state.withdraw_failure()
    assert state.failure is None
    ended.append(state.run_ended)
    assert [True, False] == ended  # withdrawn, the run is at its tool call again
    assert not state.unsaved_failure(_stored(_HUMAN, _ASKING))


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(
            [_HUMAN, _ASKING, {"type": "ai/failure", "content": "Oops", "id": "f-1"}],
            id="saved",
        ),
        pytest.param(
            [_HUMAN, _ASKING, {"type": "human", "content": "next", "id": "h2"}], id="queued"
        ),
    ],
)
def test_a_failure_saved_or_followed_by_a_queued_run_is_the_runs(stored: list[Any]) -> None:
    state = ConversationState()
    oops = msg(type="ai/failure", content="Oops", id="f-1")
    feed_all(state, [msg(**_HUMAN), msg(**_ASKING), oops])
    assert not state.unsaved_failure(_stored(*stored))


def test_a_generation_error_is_never_taken_for_a_reattachs_failure() -> None:
    state = ConversationState()
    feed_all(state, [msg(**_HUMAN), ("status", '{"type":"generation_error"}')])
    assert not state.run_ended  # PostHog generates the insight again
    assert not state.unsaved_failure(_stored(_HUMAN))


def test_id_less_messages_are_taken_in_linear_time() -> None:
    """A stream (a hostile or broken server, or an old one's many `ai/reasoning` steps)
    sends thousands of distinct id-less messages in one turn: about 200 KB of events,
    far under `max_response_size`. Each is taken in constant time, not compared with every
    message before it (that blocked the event loop for minutes on a 1 MB body)."""
    import time

    from aposthog._stream_events import wire_message

    state = ConversationState()
    state.feed_message(wire_message(b'{"type":"human","content":"q","id":"h1"}'))  # type: ignore[arg-type]
    events = [
        json.dumps({"type": "ai/reasoning", "content": f"step {n}"}).encode() for n in range(3000)
    ]
    start = time.perf_counter()
    taken = 0
    for data in events:
        if time.perf_counter() - start > 1.0:
            break
        state.feed_message(wire_message(data))  # type: ignore[arg-type]
        taken += 1
    assert taken == len(events)  # a linear pass takes a few milliseconds


_SUBAGENT_CALL = {"id": "t1", "name": "task", "args": {}, "type": "tool_call"}
_SUBAGENT_FAILS = [
    msg(type="human", content="q", id="h1"),
    msg(type="ai", content="", id="a1", tool_calls=[_SUBAGENT_CALL]),
    msg(type="ai", content="Looking", parent_tool_call_id="t1"),
    msg(type="ai/failure", content="The subagent failed", parent_tool_call_id="t1", id="f1"),
]


def test_a_subagents_failure_is_not_the_runs_end() -> None:
    """A failure with a `parent_tool_call_id` is the subagent's, inside a tool call that
    has not returned (as any subagent message is, for `run_ended`): a body cut right
    after it was cut short, not a finished (failed) run."""
    state = ConversationState()
    feed_all(state, _SUBAGENT_FAILS)
    assert not state.run_ended


def test_a_run_answered_after_its_subagent_failed_did_not_fail() -> None:
    """The main agent gets the subagent's failure as its tool result and answers: the run
    did not fail (a bot would apologise after relaying a good answer)."""
    state = ConversationState()
    wire = [
        *_SUBAGENT_FAILS,
        msg(type="tool", content="the subagent failed", tool_call_id="t1", id="tm1"),
        msg(type="ai", content="Final answer", id="a2"),
    ]
    assert texts(feed_all(state, wire)) == "Final answer"
    assert state.run_ended
    outcome = result(state)
    assert outcome.text == "Final answer"
    assert not outcome.failed


@ID_LESS_FAILURES
def test_a_full_replay_after_a_failed_run_and_a_queued_one_delivers_nothing_new(
    failure: Wire,
) -> None:
    """A run fails mid-answer (a snapshot, then an id-less failure), the queued message's run
    begins, the connection drops, and the re-attach replays the stream from its start (as
    `test_replayed_failures_of_two_turns_are_still_replays` has it). The failed run's
    snapshot was never made final, so `_replays_a_final` does not know it, and it is taken
    for new text of the current turn: "\\n\\nPartial" is given out a second time, and the
    queued run's answer ("Other answer.") then does not extend it, so none of it is given
    out at all. One connection gives "Partial\\n\\nOther answer."."""
    rest = [
        msg(type="ai", content="Other answer"),
        msg(type="ai", content="Other answer.", id="a2"),
    ]
    one = ConversationState()
    feed_all(one, failed_then_queued(failure) + rest)
    state = ConversationState()
    feed_all(state, failed_then_queued(failure))
    state.begin_attempt()
    assert feed_all(state, failed_then_queued(failure)) == []  # all of it a replay
    feed_all(state, rest)
    assert state.streamed_text == one.streamed_text == f"Partial{SEPARATOR}Other answer."


def test_a_resumes_stream_of_tool_results_alone_may_await_the_user() -> None:
    """A resume's stream starts after the message calling the tools (an earlier run's):
    the approved call's result alone may be where PostHog stops, at the same message's
    next approval."""
    state = ConversationState()
    state.expect_resume()
    feed_all(state, [msg(type="tool", content="created", id="t1", tool_call_id="call_1")])
    assert state.awaits_user
    assert not state.run_ended


def test_a_resume_meeting_another_runs_human_message_first_takes_nothing() -> None:
    """PostHog attaches a resume to the run in progress when the conversation is busy: a
    human message before any of the resumed run's own is that other run's."""
    state = ConversationState()
    state.expect_resume()
    with pytest.raises(OtherRunError):
        feed_all(state, [msg(type="human", content="Something else", id="h9")])
    assert state.messages == ()


def test_a_resumes_queued_runs_human_messages_are_taken() -> None:
    """After the resumed run's own messages, PostHog streams the runs of queued messages on
    the same stream: their human messages are this stream's."""
    state = ConversationState()
    state.expect_resume()
    feed_all(
        state,
        [
            msg(type="tool", content="created", id="t1", tool_call_id="call_1"),
            msg(type="ai", content="Created.", id="a1"),
            msg(type="human", content="And now?", id="h2"),
            msg(type="ai", content="Now this.", id="a2"),
        ],
    )
    assert [m.id for m in state.messages] == ["t1", "a1", "h2", "a2"]


# ---------------------------------------------------------------------- realistic runs, fuzzed

_RUNS = settings(max_examples=60, derandomize=True, deadline=None)


def _feed_wire(state: ConversationState, wire: list[Wire]) -> list[Delivery]:
    """Feed events as the stream engine does: messages parsed from their bytes."""
    out = []
    for name, data in wire:
        if name == "message":
            event = wire_message(data.encode())
            if event.__class__ is MessageEvent:
                delivery = state.feed_message(event)
            else:
                delivery = state.feed(event)
        else:
            delivery = state.feed(decode_event(name, data), raw=f"{name}\n{data}".encode())
        if delivery is not None:
            out.append(delivery)
    return out


def _finals(deliveries: list[Delivery]) -> list[StreamEvent]:
    """The deliveries that are no in-progress snapshot (those are passed on only live)."""
    return [
        d.event
        for d in deliveries
        if not (
            isinstance(d.event, MessageEvent) and getattr(d.event.message, "in_progress", False)
        )
    ]


def _ended_well(finals: list[dict[str, Any]], wire: list[Wire]) -> bool:
    return not any(f["type"] == "ai/failure" for f in finals)


@_RUNS
@given(posthog_runs())
def test_a_realistic_run_on_one_connection(run: tuple[list[Wire], list[dict[str, Any]]]) -> None:
    """Every final message once, in order; the deltas are `streamed_text`, and the answer
    when no turn failed; the run has ended."""
    wire, finals = run
    state = ConversationState()
    got = _feed_wire(state, wire)
    assert [m.id for m in state.messages] == [f.get("id") for f in finals]
    assert texts(got) == state.streamed_text
    if _ended_well(finals, wire):
        assert state.streamed_text == result(state).text
    assert state.run_ended


@_RUNS
@given(posthog_runs(), st.lists(st.integers(0, 80), max_size=4), st.booleans())
def test_a_realistic_run_replayed_or_resumed_after_drops_is_delivered_once(
    run: tuple[list[Wire], list[dict[str, Any]]], cuts: list[int], whole: bool
) -> None:
    """Drops anywhere; each re-attach replays the run from its start (`whole`: PostHog's
    kept stream) or goes on exactly where the last connection stopped: the same final
    messages, events and text as one connection."""
    wire, finals = run
    expected = _feed_wire(ConversationState(), wire)
    state = ConversationState()
    got: list[Delivery] = []
    stops = [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]
    start = 0
    for n, stop in enumerate(stops):
        if n:
            state.begin_attempt()
        got += _feed_wire(state, wire[0 if whole else start : stop])
        start = stop
    assert _finals(got) == _finals(expected)
    assert texts(got) == texts(expected) == state.streamed_text
    assert [m.id for m in state.messages] == [f.get("id") for f in finals]


# ------------------------------------------------- an answer split at a server tool
#
# PostHog's `normalize_ai_message` splits an answer at a server tool's use (Anthropic's
# web search) into messages, the part before ending with its `server_tool_calls`, and
# its stream processor streams only the last part (`[messages[-1]]`): the text starts
# again, for a new message, with no final between. The parts' finals come when the node
# ends, the earlier ones after the last part's text streamed.

_SEARCH = [{"id": "srvtoolu_1", "name": "web_search", "args": {"query": "flags"}}]


def _split_answer(before: str, after: str, *, searches: int = 1) -> list[Wire]:
    human = msg(type="human", content="What are flags?", id="h1")
    wire = [human, *snapshots(before, [3, len(before)])]
    wire.append(msg(type="ai", content=before, server_tool_calls=_SEARCH))
    parts = [before]
    for n in range(1, searches):
        middle = f"Searched {n}."
        wire += [msg(type="ai", content=""), msg(type="ai", content=middle)]
        wire.append(msg(type="ai", content=middle, server_tool_calls=_SEARCH))
        parts.append(middle)
    wire += [msg(type="ai", content=""), *snapshots(after, [4, 9, len(after)])]
    finals = [
        msg(type="ai", content=part, id=f"u{i}", server_tool_calls=_SEARCH)
        for i, part in enumerate(parts)
    ]
    return [*wire, *finals, msg(type="ai", content=after, id="u9")]


@pytest.mark.parametrize(
    ("before", "searches"),
    [("Let me search the web.", 1), ("", 1), ("Let me look.", 2), ("", 3)],
    ids=["text before", "search first", "two searches", "three, search first"],
)
def test_an_answer_split_at_a_server_tool_streams_each_part_once_as_it_comes(
    before: str, searches: int
) -> None:
    """
    The part after the search streams live, as the next message's text (after the
    separator), not held back until the finals as a rewrite; and the finals of the
    parts before it, coming after its text, neither give their text again nor restart
    it: with the search first, the answer was given out twice (the live text, then all
    of it again at its final).
    """
    after = "According to the docs, flags are evaluated server side."
    state = ConversationState()
    got = feed_all(state, _split_answer(before, after, searches=searches))
    streamed = texts(got)
    assert streamed == state.streamed_text == result(state).text
    assert streamed.count(after) == 1
    assert streamed.endswith(after)
    # Live: the part after the search was given out before any final came.
    live = [d.text for d in got if isinstance(d.event, MessageEvent) and d.event.message.id is None]
    assert "".join(live).endswith(after)


def test_an_answer_split_at_a_server_tool_after_a_reattach_comes_once() -> None:
    """On a re-attached connection (a replay could be mistaken for the next part), the
    part after the search is given out with the finals: late, but once, and all of it."""
    after = "According to the docs, flags are evaluated server side."
    state = ConversationState()
    state.begin_attempt()
    got = feed_all(state, _split_answer("Let me search the web.", after))
    assert texts(got) == state.streamed_text == result(state).text
    assert texts(got).count(after) == 1


_REWRITTEN_RUNS = {
    # PostHog's split at a web search: the part after it starts the text again.
    "split at a search": _split_answer("Let me search the web.", "Flags are evaluated."),
    "split, search first": _split_answer("", "Flags are evaluated."),
    "two searches": _split_answer("Let me look.", "Flags are evaluated.", searches=2),
    "three, search first": _split_answer("", "Flags are evaluated.", searches=3),
    # A snapshot that rewrites the text streamed so far, or takes some of it back.
    "rewritten": [
        msg(type="human", content="q", id="h1"),
        msg(type="ai", content="Hello wor"),
        msg(type="ai", content="Hi world"),
        msg(type="ai", content="Hi world!", id="a1"),
    ],
    "shortened": [
        msg(type="human", content="q", id="h1"),
        msg(type="ai", content="Hello world"),
        msg(type="ai", content="Hello"),
        msg(type="ai", content="Hello there"),
        msg(type="ai", content="Hello there.", id="a1"),
    ],
    "held-back whitespace rewritten": [
        msg(type="human", content="q", id="h1"),
        msg(type="ai", content="Hello "),
        msg(type="ai", content="Hello, world"),
        msg(type="ai", content="Hello, world.", id="a1"),
    ],
}


@pytest.mark.parametrize("wire", list(_REWRITTEN_RUNS.values()), ids=list(_REWRITTEN_RUNS))
def test_a_replay_of_snapshots_a_later_one_rewrote_delivers_none_of_them_again(
    wire: list[Wire],
) -> None:
    """
    PostHog's re-attach replays the run from its start. A snapshot that the ones after it
    did not extend (a rewrite, or an answer split at a web search) was taken for a new
    one: every event from it on was delivered a second time, and each counted as progress
    (a body cut on every re-attach was re-attached for ever). Cut anywhere and replayed,
    the run delivers each event once, and its text once.
    """
    once = ConversationState()
    one_connection = feed_all(once, wire)
    expected = [d.event for d in one_connection]
    for cut in range(len(wire) + 1):
        state = ConversationState()
        got = feed_all(state, wire[:cut])
        state.begin_attempt()
        got += feed_all(state, wire)
        events = [d.event for d in got]
        assert events == expected, cut
        assert texts(got) == texts(one_connection) == state.streamed_text, cut
        assert state.messages == once.messages
