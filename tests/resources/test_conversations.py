"""`ph.conversations`: argument checks before sending, and every route against FakePostHog."""

from __future__ import annotations

import uuid

import pytest

import aposthog
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio


def sent(fake: FakePostHog, method: str = "POST") -> list[dict[str, object]]:
    return [r.json() for r in fake.requests if r.method == method]


# ---------------------------------------------------------------------- create()


async def test_create_returns_a_stream_at_once_and_sends_nothing(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    stream = ph.conversations.create("Hello?")
    assert isinstance(stream, aposthog.ConversationStream)
    uuid.UUID(stream.conversation_id)
    uuid.UUID(stream.trace_id)
    assert fake.requests == []
    other = ph.conversations.create("Hello?")
    assert other.conversation_id != stream.conversation_id
    assert other.trace_id != stream.trace_id


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        (" \n\t", "empty"),
        ("x" * 40001, "40001 characters"),
        (" " + "x" * 40001, "40001 characters"),
    ],
)
async def test_create_checks_the_content_before_sending(
    fake: FakePostHog, ph: aposthog.Client, content: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ph.conversations.create(content)
    assert fake.requests == []


async def test_the_longest_message_is_accepted(fake: FakePostHog, ph: aposthog.Client) -> None:
    content = "x" * 40000 + "  "  # PostHog measures the trimmed text
    await ph.conversations.create(content).until_done()
    assert sent(fake)[0]["content"] == content


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"content": None}, ValueError),
        ({"content": 3}, TypeError),
        ({"content": "q", "conversation": "not-a-uuid"}, ValueError),
        ({"content": "q", "trace_id": "nope"}, ValueError),
        ({"content": "q", "agent_mode": 3}, TypeError),
        ({"content": "q", "contextual_tools": [1]}, TypeError),
        ({"content": "q", "session_id": 5}, TypeError),
        ({"content": "q", "session_id": "  "}, ValueError),  # PostHog's 400: blank
        ({"content": "q", "max_reattach_attempts": -1}, ValueError),
        ({"content": "q", "max_reattach_attempts": True}, TypeError),
    ],
)
async def test_create_rejects_bad_arguments(
    fake: FakePostHog, ph: aposthog.Client, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        ph.conversations.create(**kwargs)  # type: ignore[arg-type]
    assert fake.requests == []


async def test_ids_may_be_uuid_objects(fake: FakePostHog, ph: aposthog.Client) -> None:
    conversation, trace = uuid.uuid4(), uuid.uuid4()
    stream = ph.conversations.create("q", conversation=conversation, trace_id=trace)
    assert (stream.conversation_id, stream.trace_id) == (str(conversation), str(trace))
    await stream.until_done()
    assert sent(fake)[0]["trace_id"] == str(trace)


async def test_agent_mode_is_a_free_string(fake: FakePostHog, ph: aposthog.Client) -> None:
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.conversations.create("q", agent_mode="time_travel").until_done()
    assert info.value.code == "invalid_choice"
    assert sent(fake)[0]["agent_mode"] == "time_travel"


async def test_optional_fields_are_sent_only_when_given(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    await ph.conversations.create("q").until_done()
    await ph.conversations.create(
        "q", deep_research_mode=True, billing_context={"plan": "scale"}
    ).until_done()
    plain, research = sent(fake)
    assert set(plain) == {"content", "conversation", "trace_id"}
    assert research["deep_research_mode"] is True
    assert research["billing_context"] == {"plan": "scale"}


async def test_a_resume_payload_continues_without_a_message(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    conversation = fake.seed_conversation()
    fake.script_answer("Flag created.")
    payload = {"action": "approve", "proposal_id": "p1"}
    result = await ph.conversations.create(
        None, conversation=conversation.id, resume_payload=payload
    ).until_done()
    assert result.text == "Flag created."
    assert sent(fake)[0] == {
        "content": None,
        "conversation": conversation.id,
        "trace_id": sent(fake)[0]["trace_id"],
        "resume_payload": payload,
    }


async def test_a_follow_up_continues_the_conversation(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("First.")
    fake.script_answer("Second.")
    first = await ph.conversations.create("one").until_done()
    second = await ph.conversations.create("two", conversation=first.conversation_id).until_done()
    assert (first.text, second.text) == ("First.", "Second.")
    assert second.conversation is None  # PostHog announces new conversations only
    conversation = await ph.conversations.get(first.conversation_id)
    assert [m.type for m in conversation.messages] == ["human", "ai", "human", "ai"]


# ---------------------------------------------------------------------- other routes


async def test_list_gives_summaries_newest_first(fake: FakePostHog, ph: aposthog.Client) -> None:
    older = fake.seed_conversation(title="Older")
    newer = fake.seed_conversation(title="Newer")
    newer.updated_at = older.updated_at.replace(year=older.updated_at.year + 1)
    summaries = [c async for c in ph.conversations.list()]
    assert [c.title for c in summaries] == ["Newer", "Older"]
    assert isinstance(summaries[0], aposthog.ConversationSummary)
    assert summaries[0].status is aposthog.ConversationStatus.IDLE
    page = await ph.conversations.list(limit=1)
    assert page.count == 2
    assert len(page.results) == 1


async def test_list_accepts_older_servers_that_include_messages(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.seed_conversation(messages=[{"type": "human", "content": "hi"}])
    fake.conversations_list_includes_messages = True
    (summary,) = [c async for c in ph.conversations.list()]
    assert summary.extra_fields["messages"][0]["content"] == "hi"


async def test_list_checks_paging(ph: aposthog.Client) -> None:
    with pytest.raises(ValueError, match="limit"):
        ph.conversations.list(limit=0)


async def test_get_returns_messages_and_pending_approvals(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    seeded = fake.seed_conversation(
        messages=[
            {"type": "human", "content": "Make a flag"},
            {"type": "ai", "content": "I need your approval."},
            {"type": "ai/brand_new", "payload": 1},
        ],
        pending_approvals=[
            {
                "proposal_id": "p1",
                "decision_status": "pending",
                "tool_name": "create_feature_flag",
                "preview": "Create flag 'beta'",
                "payload": {"key": "beta"},
                "original_tool_call_id": "call_1",
                "message_id": None,
            }
        ],
    )
    conversation = await ph.conversations.get(seeded.id)
    assert isinstance(conversation, aposthog.Conversation)
    assert conversation.title == seeded.title
    kinds = [type(m) for m in conversation.messages]
    assert kinds == [aposthog.HumanMessage, aposthog.AssistantMessage, aposthog.UnknownMessage]
    (approval,) = conversation.pending_approvals
    assert approval.proposal_id == "p1"
    assert approval.payload == {"key": "beta"}
    assert conversation.user is not None
    assert conversation.user.email == "user-1@example.com"


async def test_get_is_not_found_until_titled(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("answer", title=None)
    result = await ph.conversations.create("q").until_done()
    with pytest.raises(aposthog.NotFoundError):
        await ph.conversations.get(result.conversation_id)
    sent = len(fake.requests)
    with pytest.raises(ValueError, match="id must be a UUID"):
        await ph.conversations.get("../../batch_exports")
    assert sent == len(fake.requests)


async def test_append_message_returns_the_new_id(fake: FakePostHog, ph: aposthog.Client) -> None:
    seeded = fake.seed_conversation()
    new_id = await ph.conversations.append_message(seeded.id, "Saved for later.")
    assert seeded.messages[-1] == {"type": "ai", "content": "Saved for later.", "id": new_id}
    conversation = await ph.conversations.get(seeded.id)
    assert conversation.messages[-1].id == new_id


@pytest.mark.parametrize("content", ["", "   ", "x" * 10001])
async def test_append_message_checks_the_content_before_sending(
    fake: FakePostHog, ph: aposthog.Client, content: str
) -> None:
    with pytest.raises(ValueError, match="content"):
        await ph.conversations.append_message(str(uuid.uuid4()), content)
    assert fake.requests == []


async def test_append_message_and_cancel_refuse_scoped_keys(fake: FakePostHog) -> None:
    seeded = fake.seed_conversation()
    key = fake.add_key(scopes=["conversation:write"])
    async with fake.client(api_key=key) as ph:
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.conversations.append_message(seeded.id, "x")
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.conversations.cancel(seeded.id)
        assert (await ph.conversations.get(seeded.id)).id == seeded.id


async def test_cancel_is_idempotent(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("a slow answer", token_size=1, delay=0.05)
    async with ph.conversations.create("q") as stream:
        await anext(stream)
        await ph.conversations.cancel(stream.conversation_id)
        await ph.conversations.cancel(stream.conversation_id)
        assert fake.conversations[stream.conversation_id].status == "idle"
    with pytest.raises(aposthog.NotFoundError):
        await ph.conversations.cancel(str(uuid.uuid4()))


async def test_delete(fake: FakePostHog, ph: aposthog.Client) -> None:
    seeded = fake.seed_conversation()
    await ph.conversations.delete(seeded.id)
    with pytest.raises(aposthog.NotFoundError):
        await ph.conversations.get(seeded.id)
    assert [c async for c in ph.conversations.list()] == []
    with pytest.raises(aposthog.NotFoundError) as info:
        # A deleted conversation cannot be written to either: 404 `{"error": …}`.
        await ph.conversations.create("q", conversation=seeded.id).until_done()
    assert info.value.detail == "Conversation does not exist"


async def test_stream_checks_its_arguments(ph: aposthog.Client) -> None:
    with pytest.raises(ValueError, match="UUID"):
        ph.conversations.stream("not-a-uuid")
    with pytest.raises(TypeError):
        ph.conversations.stream(str(uuid.uuid4()), session_id=1)  # type: ignore[arg-type]
