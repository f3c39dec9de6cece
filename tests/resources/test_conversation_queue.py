"""`ph.conversations.queue`: every route against FakePostHog, and the checks before sending."""

from __future__ import annotations

import uuid

import pytest

import aposthog
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

QUEUE_FULL = "Only two messages can be queued at a time."


async def test_a_new_conversation_has_an_empty_queue(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    seeded = fake.seed_conversation()
    queue = await ph.conversations.queue.get(seeded.id)
    assert queue == aposthog.MessageQueue(messages=[], max_queue_messages=2)
    assert fake.requests[-1].path.endswith(f"/conversations/{seeded.id}/queue/")


async def test_add_sends_the_message_and_its_options(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    seeded = fake.seed_conversation()
    queue = await ph.conversations.queue.add(
        uuid.UUID(seeded.id),
        "And last month?",
        agent_mode=aposthog.AgentMode.SQL,
        contextual_tools={"search": {"q": 1}},
        ui_context={"form_answers": {"plan": "paid"}},
        billing_context={"subscription_level": "paid"},
        session_id="session-7",
    )
    request = fake.requests[-1]
    assert request.json() == {
        "content": "And last month?",
        "agent_mode": "sql",
        "contextual_tools": {"search": {"q": 1}},
        "ui_context": {"form_answers": {"plan": "paid"}},
        "billing_context": {"subscription_level": "paid"},
    }
    # PostHog reads a queued message's session from the header alone.
    assert request.headers["x-posthog-session-id"] == "session-7"
    (message,) = queue.messages
    assert isinstance(message, aposthog.QueuedMessage)
    uuid.UUID(message.id)
    assert message.content == "And last month?"
    assert message.agent_mode is aposthog.AgentMode.SQL
    assert message.contextual_tools == {"search": {"q": 1}}
    assert message.ui_context == {"form_answers": {"plan": "paid"}}
    assert message.session_id == "session-7"
    assert message.created_at is not None
    assert message.created_at.utcoffset() is not None
    assert (await ph.conversations.queue.get(seeded.id)) == queue


async def test_a_full_queue_is_a_conflict_with_its_code(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    seeded = fake.seed_conversation()
    await ph.conversations.queue.add(seeded.id, "one")
    queue = await ph.conversations.queue.add(seeded.id, "two")
    assert [m.content for m in queue.messages] == ["one", "two"]
    sent = len(fake.requests)
    with pytest.raises(aposthog.ConflictError) as info:
        await ph.conversations.queue.add(seeded.id, "three")
    assert (info.value.code, info.value.detail) == ("queue_full", QUEUE_FULL)
    assert len(fake.requests) == sent + 1  # a 409 is PostHog's answer: not retried
    queue = await ph.conversations.queue.get(seeded.id)
    assert [m.content for m in queue.messages] == ["one", "two"]


async def test_update_and_remove_name_a_queued_message(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    seeded = fake.seed_conversation()
    await ph.conversations.queue.add(seeded.id, "one")
    first, second = (await ph.conversations.queue.add(seeded.id, "two")).messages
    queue = await ph.conversations.queue.update(seeded.id, second.id, "two, reworded")
    assert [m.content for m in queue.messages] == ["one", "two, reworded"]
    assert queue.messages[1].id == second.id
    queue = await ph.conversations.queue.remove(seeded.id, uuid.UUID(first.id))
    assert [m.id for m in queue.messages] == [second.id]
    for call in (
        ph.conversations.queue.update(seeded.id, first.id, "gone"),
        ph.conversations.queue.remove(seeded.id, first.id),
    ):
        with pytest.raises(aposthog.NotFoundError) as info:
            await call
        assert info.value.detail == "Queue message not found."


async def test_clear_empties_the_queue(fake: FakePostHog, ph: aposthog.Client) -> None:
    seeded = fake.seed_conversation()
    await ph.conversations.queue.add(seeded.id, "one")
    cleared = await ph.conversations.queue.clear(seeded.id)
    assert cleared.messages == []
    assert (await ph.conversations.queue.get(seeded.id)).messages == []


async def test_only_the_owner_reaches_a_queue(fake: FakePostHog, ph: aposthog.Client) -> None:
    theirs = fake.seed_conversation(user="user-2")
    with pytest.raises(aposthog.PermissionDeniedError) as denied:
        await ph.conversations.queue.add(theirs.id, "mine now")
    assert denied.value.detail == "Cannot access other users' conversations"
    with pytest.raises(aposthog.NotFoundError) as missing:
        await ph.conversations.queue.get(str(uuid.uuid4()))
    assert missing.value.detail == "Conversation not found"
    deleted = fake.seed_conversation()
    await ph.conversations.delete(deleted.id)
    with pytest.raises(aposthog.NotFoundError):
        await ph.conversations.queue.clear(deleted.id)


async def test_scoped_keys_are_refused(fake: FakePostHog) -> None:
    seeded = fake.seed_conversation()
    key = fake.add_key(scopes=["conversation:write"])
    async with fake.client(api_key=key) as ph:
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.conversations.queue.get(seeded.id)


async def test_a_message_sent_while_answering_runs_next_on_the_same_stream(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The chat-bot case: the user writes again before the answer is done. PostHog runs the
    queued message when the answer ends and streams its run on the same connection."""
    fake.script_answer("The first answer, slowly.", token_size=1, delay=0.05)
    fake.script_answer("The queued answer.")
    async with ph.conversations.create("first") as stream:
        await anext(stream)
        with pytest.raises(aposthog.ConflictError):
            await ph.conversations.create(
                "second", conversation=stream.conversation_id
            ).until_done()
        queue = await ph.conversations.queue.add(stream.conversation_id, "second")
        assert [m.content for m in queue.messages] == ["second"]
        result = await stream.until_done()
    humans = [m for m in result.messages if isinstance(m, aposthog.HumanMessage)]
    assert [m.content for m in humans] == ["first", "second"]
    assert humans[0].trace_id != humans[1].trace_id  # PostHog gives the queued run its own
    assert result.complete
    assert result.text == "The first answer, slowly.\n\nThe queued answer."
    assert result.streamed_text == result.text
    # Each message's answer apart, for a bot that replies to each.
    assert [(t.question and t.question.content, t.text) for t in result.turns] == [
        ("first", "The first answer, slowly."),
        ("second", "The queued answer."),
    ]
    assert (await ph.conversations.queue.get(stream.conversation_id)).messages == []
    conversation = await ph.conversations.get(stream.conversation_id)
    assert [m.id for m in conversation.messages] == [m.id for m in result.messages]


async def test_question_tells_each_turns_deltas_apart(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A relay that answers each message with a reply of its own: `stream.question` is the
    turn a delta belongs to, and a later turn's first delta starts with the blank line."""
    fake.script_answer("The first answer, slowly.", token_size=1, delay=0.05)
    fake.script_answer("The queued answer.")
    stream = ph.conversations.create("first")
    question = stream.question  # read apart: mypy would keep this narrowing below
    assert question is None  # nothing read yet
    turns: list[tuple[str, str]] = []
    async with stream:
        async for text in stream.text_deltas():
            assert stream.question is not None
            if not turns:
                await ph.conversations.queue.add(stream.conversation_id, "second")
            turns.append((stream.question.content, text))
    assert [q for q, _ in turns] == sorted(q for q, _ in turns)  # every first, then second
    first = "".join(t for q, t in turns if q == "first")
    second = [t for q, t in turns if q == "second"]
    assert first == "The first answer, slowly."
    assert second[0].startswith("\n\n")
    assert "".join(second) == "\n\nThe queued answer."
    assert first + "".join(second) == stream.result().text
    assert stream.question is not None
    assert stream.question.content == "second"


async def test_a_stream_that_re_attached_ends_complete_after_a_queued_run(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The catch-up at the end of a re-attached stream takes the queued run it streamed on
    into as its own (it used to stop at the queued message and raise IncompleteStreamError)."""
    fake.script_answer("The first answer, slowly.", token_size=1, delay=0.05, drop_after=5)
    fake.script_answer("The queued answer.")
    stream = ph.conversations.create("first")
    async with stream:
        await anext(stream)
        await ph.conversations.queue.add(stream.conversation_id, "second")
        result = await stream.until_done()
    assert (fake.ai_streams.dropped, fake.ai_streams.opened) == (1, 2)  # re-attached once
    assert result.complete
    humans = [m.content for m in result.messages if isinstance(m, aposthog.HumanMessage)]
    assert humans == ["first", "second"]
    assert [t.text for t in result.turns] == ["The first answer, slowly.", "The queued answer."]


async def test_cancel_clears_the_queue(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("a slow answer", token_size=1, delay=0.05)
    async with ph.conversations.create("q") as stream:
        await anext(stream)
        await ph.conversations.queue.add(stream.conversation_id, "later")
        await ph.conversations.cancel(stream.conversation_id)
    assert (await ph.conversations.queue.get(stream.conversation_id)).messages == []


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda q: q.add("not-a-uuid", "x"), ValueError, "conversation"),
        (lambda q: q.add(str(uuid.uuid4()), "   "), ValueError, "content"),
        (lambda q: q.add(str(uuid.uuid4()), "x" * 40001), ValueError, "40001"),
        (lambda q: q.add(str(uuid.uuid4()), "x", session_id="a\nb"), ValueError, "session_id"),
        (lambda q: q.update(str(uuid.uuid4()), "a/b", "x"), ValueError, "message_id"),
        (lambda q: q.update(str(uuid.uuid4()), "m", ""), ValueError, "content"),
        (lambda q: q.remove(str(uuid.uuid4()), ".."), ValueError, "message_id"),
        (lambda q: q.remove(str(uuid.uuid4()), 7), TypeError, "message_id"),
    ],
)
async def test_arguments_are_checked_before_sending(
    fake: FakePostHog, ph: aposthog.Client, call: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        await call(ph.conversations.queue)  # type: ignore[operator]
    assert fake.requests == []


async def test_update_takes_the_longest_message(fake: FakePostHog, ph: aposthog.Client) -> None:
    seeded = fake.seed_conversation()
    (queued,) = (await ph.conversations.queue.add(seeded.id, "one")).messages
    content = "x" * 40000 + "  "  # PostHog measures the trimmed text
    queue = await ph.conversations.queue.update(seeded.id, queued.id, content)
    assert fake.requests[-1].json() == {"content": content}
    assert [m.id for m in queue.messages] == [queued.id]


async def test_a_message_id_stays_in_its_segment(fake: FakePostHog, ph: aposthog.Client) -> None:
    seeded = fake.seed_conversation()
    with pytest.raises(aposthog.NotFoundError):
        await ph.conversations.queue.remove(seeded.id, "a?b#c d")
    assert fake.requests[-1].path.endswith(f"/conversations/{seeded.id}/queue/a%3Fb%23c%20d/")


async def test_a_null_contextual_tool_is_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog's `DictField` of `JSONField`s takes no null value (its 400): refused here."""
    seeded = fake.seed_conversation()
    with pytest.raises(ValueError, match=r"contextual_tools\['t'\]"):
        await ph.conversations.queue.add(seeded.id, "next", contextual_tools={"t": None})
    assert fake.requests == []
