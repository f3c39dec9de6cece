"""Conversation records, the message union and stream events: PostHog's bodies, newer servers."""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aposthog._converter import converter, structure, unstructure
from aposthog._errors import ResponseDecodeError
from aposthog.models.conversations import (
    AgentMode,
    Conversation,
    ConversationResult,
    ConversationStatus,
    ConversationSummary,
    ConversationTurn,
    ConversationType,
    MessageQueue,
    PendingApproval,
    QueuedMessage,
    UserBasic,
)
from aposthog.models.events import (
    ConversationEvent,
    MessageEvent,
    StatusEvent,
    UnknownEvent,
    UpdateEvent,
    decode_event,
)
from aposthog.models.messages import (
    ArtifactMessage,
    AssistantMessage,
    ContextMessage,
    FailureMessage,
    HumanMessage,
    Message,
    MultiVisualizationMessage,
    NotebookUpdateMessage,
    PlanningMessage,
    ReasoningMessage,
    TaskExecutionMessage,
    ToolCall,
    ToolCallMessage,
    UnknownMessage,
    VisualizationMessage,
    message_from_dict,
    message_to_dict,
)
from tests.strategies import records

KNOWN_MESSAGES = (
    HumanMessage,
    AssistantMessage,
    FailureMessage,
    ToolCallMessage,
    ArtifactMessage,
    NotebookUpdateMessage,
    VisualizationMessage,
    MultiVisualizationMessage,
    ReasoningMessage,
    PlanningMessage,
    TaskExecutionMessage,
    ContextMessage,
)

# A conversation as `GET conversations/{id}/` returns it: messages are `model_dump()`ed,
# so their null fields are written out (the stream leaves them out).
RETRIEVED: dict[str, Any] = {
    "id": "0f0b2d4c-9f5e-4a57-9d7e-3d5f3c1c2b11",
    "status": "idle",
    "title": "Weekly signups",
    "topic": None,
    "user": {
        "id": 7,
        "uuid": "0186f2a4-3c8e-0000-e2e3-4a2b1c9d8e7f",
        "distinct_id": "abc",
        "first_name": "Ada",
        "last_name": "L",
        "email": "ada@example.com",
        "is_email_verified": True,
        "hedgehog_config": None,
        "role_at_organization": "engineering",
    },
    "created_at": "2025-03-01T10:00:00.123456Z",
    "updated_at": "2025-03-01T10:01:00Z",
    "type": "assistant",
    "is_internal": False,
    "slack_thread_key": None,
    "slack_workspace_domain": None,
    "task": None,
    "messages": [
        {
            "content": "How many signups?",
            "id": "h1",
            "parent_tool_call_id": None,
            "trace_id": "t",
            "type": "human",
            "ui_context": None,
        },
        {
            "content": "",
            "id": "a1",
            "meta": None,
            "parent_tool_call_id": None,
            "tool_calls": [
                {"args": {"q": 1}, "id": "call_1", "name": "create_insight", "type": "tool_call"}
            ],
            "type": "ai",
        },
        {"content": "ok", "id": "t1", "tool_call_id": "call_1", "type": "tool", "ui_payload": None},
        {"type": "ai/hologram", "id": "x1", "beam": 3},
        {"content": "1,234 signups.", "id": "a2", "meta": None, "tool_calls": None, "type": "ai"},
    ],
    "has_unsupported_content": False,
    "agent_mode": "product_analytics",
    "agent_runtime": "langgraph",
    "is_sandbox": False,
    "pending_approvals": [
        {
            "proposal_id": "p1",
            "decision_status": "pending",
            "tool_name": "create_feature_flag",
            "preview": "Create flag beta",
            "payload": {"key": "beta"},
            "original_tool_call_id": "call_9",
            "message_id": "a2",
        }
    ],
}


def test_a_retrieved_conversation_decodes_with_every_message_typed() -> None:
    conversation: Conversation = structure(RETRIEVED, Conversation)
    assert conversation.status is ConversationStatus.IDLE
    assert conversation.type is ConversationType.ASSISTANT
    assert conversation.agent_mode is AgentMode.PRODUCT_ANALYTICS
    assert conversation.user is not None
    assert conversation.user.email == "ada@example.com"
    assert conversation.created_at is not None
    assert conversation.created_at.tzinfo is not None
    kinds = [type(m) for m in conversation.messages]
    assert kinds == [
        HumanMessage,
        AssistantMessage,
        ToolCallMessage,
        UnknownMessage,
        AssistantMessage,
    ]
    ai = conversation.messages[1]
    assert isinstance(ai, AssistantMessage)
    assert ai.tool_calls == [ToolCall(id="call_1", name="create_insight", args={"q": 1})]
    unknown = conversation.messages[3]
    assert unknown == UnknownMessage(type="ai/hologram", id="x1", data=RETRIEVED["messages"][3])
    assert conversation.pending_approvals == [
        PendingApproval(
            proposal_id="p1",
            tool_name="create_feature_flag",
            preview="Create flag beta",
            payload={"key": "beta"},
            original_tool_call_id="call_9",
            message_id="a2",
        )
    ]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@given(st.text())
def test_a_text_preview_is_shown_as_it_came(preview: str) -> None:
    approval: PendingApproval = structure({"proposal_id": "p", "preview": preview}, PendingApproval)
    assert preview == approval.preview_text


@given(_json_values.filter(lambda v: v is not None and not isinstance(v, str)))
def test_a_structured_preview_is_shown_as_its_json(preview: Any) -> None:
    """A chat-bot put `str(preview)` (Python's repr of a dict) before its users, the web
    relay JSON and the command line nothing at all: one text now, the JSON PostHog sent,
    non-ASCII kept, which reads back as the same value."""
    approval: PendingApproval = structure({"proposal_id": "p", "preview": preview}, PendingApproval)
    text = approval.preview_text
    assert (str, preview) == (type(text), json.loads(text))


def test_no_preview_is_no_text_and_a_hostile_one_is_bounded() -> None:
    assert "" == PendingApproval(proposal_id="p").preview_text
    deep: Any = []
    for _ in range(5000):  # deeper than the JSON encoder could recurse
        deep = [deep]
    assert (
        "(a preview nested too deeply to show)"
        == PendingApproval(proposal_id="p", preview=deep).preview_text
    )
    assert (
        '{"flag": "café", "rollout": [50]}'
        == PendingApproval(proposal_id="p", preview={"flag": "café", "rollout": [50]}).preview_text
    )
    member = PendingApproval(proposal_id="p", preview=AgentMode.SQL).preview_text
    assert (str, "sql") == (type(member), member)  # a str subclass as its plain text


def test_a_newer_server_adds_fields_modes_and_statuses_without_failing() -> None:
    body = {**RETRIEVED, "status": "paused", "agent_mode": "warp", "colour": "teal"}
    conversation: Conversation = structure(body, Conversation)
    assert conversation.status == "paused"
    assert conversation.agent_mode == "warp"
    assert conversation.extra_fields == {"colour": "teal"}


def test_an_older_server_sends_six_fields_and_lists_messages() -> None:
    old = {
        "id": "c",
        "user": {"id": 1, "first_name": "A", "email": "a@example.com"},
        "status": "in_progress",
        "title": "T",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": None,
        "messages": [{"type": "human", "content": "hi"}],
    }
    summary: ConversationSummary = structure(old, ConversationSummary)
    assert summary.status is ConversationStatus.IN_PROGRESS
    assert summary.type is None
    assert summary.extra_fields == {"messages": [{"type": "human", "content": "hi"}]}


@pytest.mark.parametrize(
    ("enum", "values"),
    [
        (ConversationStatus, ["idle", "in_progress", "canceling"]),
        (ConversationType, ["assistant", "tool_call", "deep_research", "slack"]),
        (
            AgentMode,
            [
                "product_analytics",
                "sql",
                "session_replay",
                "error_tracking",
                "plan",
                "execution",
                "survey",
                "onboarding",
                "research",
                "flags",
                "llm_analytics",
                "user_interview",
                "customer_analytics",
                "sandbox",
            ],
        ),
    ],
)
def test_every_value_posthog_sends_is_a_member(enum: Any, values: list[str]) -> None:
    """Each enum knows PostHog's values (posthog-api.md; `onboarding` kept for older
    servers), spelled as sent, and prints as its value, not as `Enum.MEMBER`."""
    assert values == [member.value for member in enum]
    assert all(enum(value) is structure(value, enum | str) for value in values)
    assert [str(member) for member in enum] == values


def test_fields_posthog_leaves_out_take_their_documented_defaults() -> None:
    """A conversation, approval, user and queue sent with their required fields only."""
    conversation: Conversation = structure({"id": "c"}, Conversation)
    assert ConversationStatus.IDLE is conversation.status
    assert (False, False, [], []) == (
        conversation.has_unsupported_content,
        conversation.is_sandbox,
        conversation.messages,
        conversation.pending_approvals,
    )
    approval: PendingApproval = structure({"proposal_id": "p"}, PendingApproval)
    assert ("pending", "") == (approval.decision_status, approval.tool_name)
    user: UserBasic = structure({}, UserBasic)
    assert ("", "", "") == (user.first_name, user.last_name, user.email)
    queue: MessageQueue = structure({}, MessageQueue)
    assert ([], None) == (queue.messages, queue.max_queue_messages)
    result = ConversationResult(conversation_id="c")
    assert (False, False, False, "") == (
        result.complete,
        result.cancelled,
        result.generation_error,
        result.streamed_text,
    )


def test_a_record_that_does_not_fit_is_a_decode_error() -> None:
    with pytest.raises(ResponseDecodeError):
        structure({"status": "idle"}, ConversationSummary)  # no id


QUEUED = {
    "id": "5f0c7c8e-6a53-4a53-9d3b-2f8f5d1f9a10",
    "content": "And last month?",
    "created_at": "2026-12-03T09:50:00.123456+00:00",
    "contextual_tools": None,
    "ui_context": {"dashboards": [{"id": 1, "name": "Growth"}]},
    "billing_context": None,
    "agent_mode": "sql",
    "session_id": None,
}


def test_a_message_queue_decodes_as_posthog_sends_it() -> None:
    queue: MessageQueue = structure({"messages": [QUEUED], "max_queue_messages": 2}, MessageQueue)
    (message,) = queue.messages
    assert queue.max_queue_messages == 2
    assert isinstance(message, QueuedMessage)
    assert message.agent_mode is AgentMode.SQL
    assert message.created_at is not None
    assert message.created_at.utcoffset() is not None
    assert message.ui_context == {"dashboards": [{"id": 1, "name": "Growth"}]}
    assert (message.content, message.contextual_tools, message.session_id) == (
        "And last month?",
        None,
        None,
    )


def test_a_newer_queue_keeps_what_it_does_not_know() -> None:
    newer = {**QUEUED, "agent_mode": "warp", "priority": 1}
    queue: MessageQueue = structure(
        {"messages": [newer], "max_queue_messages": 3, "drain": "open"}, MessageQueue
    )
    assert queue.extra_fields == {"drain": "open"}
    assert queue.messages[0].agent_mode == "warp"
    assert queue.messages[0].extra_fields == {"priority": 1}


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{**QUEUED, "content": None}], "max_queue_messages": 2},
        {"messages": [{"content": "no id"}], "max_queue_messages": 2},
        {"messages": "none", "max_queue_messages": 2},
        {"messages": [], "max_queue_messages": "two"},
        ["not", "an", "object"],
    ],
)
def test_a_queue_that_does_not_fit_is_a_decode_error(body: Any) -> None:
    with pytest.raises(ResponseDecodeError):
        structure(body, MessageQueue)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "human", "content": "q", "id": "h"}, HumanMessage(id="h", content="q")),
        ({"type": "ai/failure"}, FailureMessage()),
        (
            {"type": "ai/failure", "content": "Oops", "id": "f"},
            FailureMessage(id="f", content="Oops"),
        ),
        (
            {"type": "ai/artifact", "artifact_id": "a", "source": "insight", "content": {}},
            ArtifactMessage(artifact_id="a", source="insight"),
        ),
        (  # PostHog's defaults for what it leaves out, spelled out (not the record's)
            {"type": "ai/artifact", "artifact_id": "a"},
            ArtifactMessage(artifact_id="a", source="artifact", content={}),
        ),
        ({"type": "ai"}, AssistantMessage(content="", tool_calls=None, meta=None)),
        (
            {"type": "tool", "tool_call_id": "c"},
            ToolCallMessage(content="", tool_call_id="c", ui_payload=None),
        ),
        (
            {"type": "ai/notebook", "notebook_id": "n", "content": {"type": "doc"}},
            NotebookUpdateMessage(notebook_id="n", content={"type": "doc"}),
        ),
        (
            {"type": "tool", "content": "r", "tool_call_id": "c", "ui_payload": {"x": 1}},
            ToolCallMessage(content="r", tool_call_id="c", ui_payload={"x": 1}),
        ),
    ],
)
def test_messages_decode_by_type(data: dict[str, Any], expected: Message) -> None:
    assert message_from_dict(data) == expected


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        ({"type": "human", "content": "q"}, HumanMessage),
        ({"type": "ai"}, AssistantMessage),
        ({"type": "ai/failure"}, FailureMessage),
        ({"type": "tool", "tool_call_id": "c"}, ToolCallMessage),
        ({"type": "ai/artifact", "artifact_id": "a"}, ArtifactMessage),
        ({"type": "ai/notebook", "notebook_id": "n"}, NotebookUpdateMessage),
        ({"type": "ai/viz"}, VisualizationMessage),
        ({"type": "ai/multi_viz"}, MultiVisualizationMessage),
        ({"type": "ai/reasoning"}, ReasoningMessage),
        ({"type": "ai/planning"}, PlanningMessage),
        ({"type": "ai/task_execution"}, TaskExecutionMessage),
        ({"type": "context"}, ContextMessage),
    ],
)
def test_each_type_posthog_sends_decodes_to_its_class(data: dict[str, Any], cls: Any) -> None:
    """Every message type PostHog sends (or sent) is typed, each by its exact `type`."""
    message = message_from_dict(data)
    assert type(message) is cls
    assert data["type"] == message.type == message_to_dict(message)["type"]


@pytest.mark.parametrize(
    "data",
    [
        {"type": "ai/hologram", "id": "m"},  # a type this version does not know
        {"content": "no type"},
        {"type": 3},
        {"type": ["ai"], "id": 7},  # an unhashable type, and an id that is no string
        {"type": "ai", "content": None},  # a null where the text goes must not become "None"
        {"type": "ai", "content": 5},
        {"type": "tool", "content": "x"},  # tool_call_id missing
        {"type": "ai", "content": "x", "tool_calls": [{"name": "no id"}]},
    ],
)
def test_messages_that_do_not_fit_are_kept_whole(data: dict[str, Any]) -> None:
    message = message_from_dict(data)
    assert isinstance(message, UnknownMessage)
    assert message.data == data
    assert message.id == (data["id"] if isinstance(data.get("id"), str) else None)
    assert message.type == (data["type"] if isinstance(data.get("type"), str) else "")


def test_a_message_is_never_anything_but_a_dict() -> None:
    with pytest.raises(TypeError):
        message_from_dict(["human"])


def test_changing_what_message_to_dict_returns_changes_no_message() -> None:
    """
    `message_to_dict()` gives JSON-ready data, the message's copy: a caller that edits it
    (redacting a tool call's arguments before logging it, say) must not change the
    message, a frozen record that the stream's `result()` and its caller still hold.
    Its JSON values (`meta`, a tool call's `args`) were copied; written as they were
    parsed, they are the message's own objects.
    """
    message = message_from_dict(
        {
            "type": "ai",
            "id": "a1",
            "content": "Hi",
            "meta": {"thinking": [{"text": "t"}]},
            "tool_calls": [{"id": "c", "name": "n", "args": {"q": [1]}, "type": "tool_call"}],
        }
    )
    data = message_to_dict(message)
    data["meta"]["thinking"].append("edited")
    data["tool_calls"][0]["args"]["q"] = "redacted"
    assert isinstance(message, AssistantMessage)
    assert {"thinking": [{"text": "t"}]} == message.meta
    assert message.tool_calls is not None
    assert {"q": [1]} == message.tool_calls[0].args


def test_in_progress_is_no_id_or_a_temp_id() -> None:
    assert AssistantMessage(content="x").in_progress
    assert AssistantMessage(content="x", id="temp-3").in_progress
    assert not AssistantMessage(content="x", id="a1").in_progress


def test_message_to_dict_writes_the_type_and_leaves_nulls_out() -> None:
    message = AssistantMessage(id="a", content="Hi", tool_calls=[ToolCall(id="c", name="n")])
    assert message_to_dict(message) == {
        "id": "a",
        "content": "Hi",
        "tool_calls": [{"id": "c", "name": "n", "args": {}, "type": "tool_call"}],
        "type": "ai",
    }
    raw = {"type": "ai/hologram", "beam": None}
    assert message_to_dict(UnknownMessage(type="ai/hologram", data=raw)) == {"type": "ai/hologram"}
    # Only nulls are left out: an empty text, list or mapping is written.
    empty = AssistantMessage(id="e", content="", tool_calls=[], meta={})
    assert {"id": "e", "content": "", "tool_calls": [], "meta": {}, "type": "ai"} == (
        message_to_dict(empty)
    )
    # Unstructured, an unknown message is a copy of its data: changing it changes no record.
    unknown = UnknownMessage(type="ai/hologram", data=raw)
    unstructure(unknown)["beam"] = "changed"
    assert {"type": "ai/hologram", "beam": None} == unknown.data


known_messages = (
    st.sampled_from(KNOWN_MESSAGES)
    .flatmap(records)
    .filter(lambda m: "type" not in m.extra_fields)  # `type` is the union's key
)


def _conversation(summary: ConversationSummary, messages: Any, approvals: Any) -> Conversation:
    fields = {a.name: getattr(summary, a.name) for a in attrs.fields(ConversationSummary)}
    return Conversation(**fields, messages=messages, pending_approvals=approvals)


conversations = st.builds(
    _conversation,
    records(ConversationSummary),
    st.lists(known_messages, max_size=3),
    st.lists(records(PendingApproval), max_size=2),
)


@given(known_messages)
def test_known_messages_round_trip_through_json(message: Any) -> None:
    data = json.loads(json.dumps(unstructure(message)))
    assert data["type"] == type(message).type
    assert structure(data, Message) == message


@given(conversations)
def test_conversations_round_trip(conversation: Conversation) -> None:
    data = json.loads(json.dumps(converter.unstructure(conversation)))
    assert structure(data, Conversation) == conversation


# ---------------------------------------------------------------------- events


def test_the_four_event_names_decode_to_typed_events() -> None:
    conversation = decode_event(
        "conversation", '{"id": "c", "status": "in_progress", "title": null, "user": null}'
    )
    assert isinstance(conversation, ConversationEvent)
    assert conversation.conversation.title is None
    assert decode_event("message", '{"content":"test response","type":"ai"}') == MessageEvent(
        AssistantMessage(content="test response")
    )
    status = decode_event("status", '{"type":"generation_error"}')
    assert status == StatusEvent("generation_error")
    assert isinstance(status, StatusEvent)
    assert status.is_error
    assert not StatusEvent("ack").is_error
    assert decode_event("update", '{"id":"a","tool_call_id":"c","content":"Searching"}') == (
        UpdateEvent("a", "c", "Searching")
    )
    subagent = decode_event("update", '{"id":"a","tool_call_id":"c","content":{"id":"x"}}')
    assert subagent == UpdateEvent("a", "c", {"id": "x"})
    # Ids that are not strings are dropped (None), the event is kept.
    odd = decode_event("update", '{"id":5,"tool_call_id":["c"],"content":null}')
    assert odd == UpdateEvent(None, None, None)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("approval", '{"proposal_id":"p"}'),  # PostHog produces it, but does not send it yet
        ("notebook", "{}"),
        ("message", "not json"),
        ("message", "[1, 2]"),
        ("status", '{"kind":"x"}'),
        ("update", '{"id":"a","content":5}'),
        ("conversation", '{"status":"idle"}'),  # no id
    ],
)
def test_unknown_or_unreadable_events_pass_through_raw(name: str, data: str) -> None:
    assert decode_event(name, data) == UnknownEvent(name, data)


def test_an_unreadable_known_event_is_logged_an_unknown_name_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A known event whose data cannot be read is a warning naming the event (clipped:
    the name comes from the server); an event this version does not know is passed on
    without one, whatever its data."""
    with caplog.at_level(logging.WARNING, logger="aposthog"):
        assert decode_event("approval", "not json") == UnknownEvent("approval", "not json")
        assert [] == caplog.records
        unread = decode_event("conversation", "not json")
    assert UnknownEvent("conversation", "not json") == unread
    (record,) = caplog.records
    assert logging.WARNING == record.levelno
    assert "cannot read a 'conversation' event from PostHog" in record.getMessage()


def test_result_text_joins_the_top_level_assistant_answers() -> None:
    result = ConversationResult(
        conversation_id="c",
        messages=(
            HumanMessage(id="h", content="q"),
            AssistantMessage(id="a1", content="Let me look."),
            AssistantMessage(id="s", content="subagent text", parent_tool_call_id="t"),
            AssistantMessage(id="a2", content=""),
            AssistantMessage(id="a3", content="Found it."),
        ),
    )
    assert result.text == "Let me look.\n\nFound it."
    assert not result.failed
    assert ConversationResult(conversation_id="c", generation_error=True).failed
    assert ConversationResult(conversation_id="c", failure=FailureMessage()).failed


def test_turns_split_the_messages_at_each_human_message() -> None:
    mine = HumanMessage(id="h1", content="Signups last week?")
    queued = HumanMessage(id="h2", content="And the week before?")
    messages = (
        mine,
        AssistantMessage(id="a1", content="Let me look."),
        ToolCallMessage(id="t1", content="{}", tool_call_id="c1"),
        AssistantMessage(id="s", content="subagent text", parent_tool_call_id="c1"),
        AssistantMessage(id="a2", content="412 signups."),
        queued,
        FailureMessage(id="f1", content="Rate limited"),
        AssistantMessage(id="a3", content="388 signups."),
    )
    result = ConversationResult(conversation_id="c", messages=messages)
    assert result.turns == (
        ConversationTurn(question=mine, messages=messages[:5]),
        ConversationTurn(question=queued, messages=messages[5:]),
    )
    first, second = result.turns
    assert first.text == "Let me look.\n\n412 signups."
    assert first.failure is None
    assert second.text == "388 signups."
    assert second.failure == messages[6]
    # The result's text is every turn's, as before.
    assert result.text == "Let me look.\n\n412 signups.\n\n388 signups."
    # A turn that failed twice reports its last failure.
    failures = (FailureMessage(id="f1", content="first"), FailureMessage(id="f2", content="last"))
    assert failures[1] == ConversationTurn(question=None, messages=failures).failure


def test_turns_keep_what_came_before_any_question_and_a_question_left_unanswered() -> None:
    joined = (AssistantMessage(id="a1", content="Done."),)
    waiting = HumanMessage(id="h2", content="Next?")
    result = ConversationResult(conversation_id="c", messages=(*joined, waiting))
    assert result.turns == (
        ConversationTurn(question=None, messages=joined),
        ConversationTurn(question=waiting, messages=(waiting,)),
    )
    assert result.turns[1].text == ""
    assert ConversationResult(conversation_id="c").turns == ()


_TURN_MESSAGES = st.lists(
    st.one_of(
        st.builds(HumanMessage, id=st.text(max_size=3), content=st.text(max_size=5)),
        st.builds(AssistantMessage, id=st.text(max_size=3), content=st.text(max_size=5)),
        st.builds(FailureMessage, id=st.none() | st.text(max_size=3)),
    ),
    max_size=12,
)


@given(_TURN_MESSAGES)
def test_turns_cover_every_message_once_in_order(messages: list[Message]) -> None:
    result = ConversationResult(conversation_id="c", messages=tuple(messages))
    turns = result.turns
    assert tuple(m for turn in turns for m in turn.messages) == result.messages
    for n, turn in enumerate(turns):
        assert turn.messages, "no turn is empty"
        humans = [m for m in turn.messages if isinstance(m, HumanMessage)]
        if turn.question is None:
            assert n == 0
            assert not humans
        else:
            assert humans == [turn.question]
            assert turn.messages[0] is turn.question
    assert len(turns) == sum(isinstance(m, HumanMessage) for m in messages) + (
        bool(messages) and not isinstance(messages[0], HumanMessage)
    )
    texts = [turn.text for turn in turns if turn.text]
    assert "\n\n".join(texts) == result.text


def test_unstructuring_an_unknown_message_shares_no_nested_value_with_it() -> None:
    """
    `message_to_dict()` and `unstructure()` give the caller's own copy (CHANGELOG: "the
    dict is the caller's to edit"; a known message's JSON values are copied whole). A
    message of a type this version does not know (PostHog adds them often) is unstructured
    by `dict(message.data)`: redacting a tool call's arguments in what `message_to_dict()`
    returned, or editing the unstructured conversation, changes the frozen message itself.
    """
    sent = {
        "type": "ai/hologram",
        "id": "x1",
        "tool_calls": [{"id": "call_1", "name": "n", "args": {"q": [1]}}],
        "meta": {"k": "v"},
    }
    message = message_from_dict(json.loads(json.dumps(sent)))
    assert isinstance(message, UnknownMessage)
    out = message_to_dict(message)
    out["tool_calls"][0]["args"]["q"] = "redacted"
    out["meta"]["k"] = "changed"
    conversation: Conversation = structure(
        {"id": "c", "messages": [json.loads(json.dumps(sent))]}, Conversation
    )
    unstructure(conversation)["messages"][0]["meta"]["k"] = "changed"
    assert sent == message.data
    held = conversation.messages[0]
    assert isinstance(held, UnknownMessage)
    assert sent == held.data
