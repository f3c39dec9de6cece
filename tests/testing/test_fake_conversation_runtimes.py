"""FakePostHog's sandbox conversations and what moves a conversation in `list()`."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

import aposthog
from aposthog.testing import FakePostHog

from .conversation_http import body as _body
from .conversation_http import post as _post
from .conversation_http import request as _request

pytestmark = pytest.mark.anyio

_SANDBOX_400 = {
    "type": "validation_error",
    "code": "invalid_input",
    "detail": "Sandbox conversations must be opened via the open endpoint.",
    "attr": None,
}


async def _get(fake: FakePostHog, conversation: str) -> Any:
    status, raw = await _request(fake, "GET", f"{conversation}/")
    assert status == 200, raw
    return json.loads(raw)


async def _listed(fake: FakePostHog) -> list[str]:
    status, raw = await _request(fake, "GET", "")
    assert status == 200, raw
    return [c["id"] for c in json.loads(raw)["results"]]


def _older_and_newer(fake: FakePostHog) -> tuple[str, str]:
    older = fake.seed_conversation(title="Older")
    older.updated_at -= dt.timedelta(hours=1)
    newer = fake.seed_conversation(title="Newer")
    return older.id, newer.id


async def test_append_message_leaves_updated_at_and_the_list_order(fake: FakePostHog) -> None:
    """PostHog writes the message into the graph state only, not the conversation row."""
    older, newer = _older_and_newer(fake)
    before = (await _get(fake, older))["updated_at"]
    path = f"{older}/append_message/"
    assert (await _request(fake, "POST", path, json_body={"content": "Saved."}))[0] == 201
    got = await _get(fake, older)
    assert got["messages"][-1]["content"] == "Saved."
    assert got["updated_at"] == before
    assert await _listed(fake) == [newer, older]


async def test_cancel_saves_the_conversation_so_it_moves_up(fake: FakePostHog) -> None:
    """`cancel_workflow` saves `status` with `updated_at`, a run or none, sandbox or not."""
    older, newer = _older_and_newer(fake)
    before = (await _get(fake, older))["updated_at"]
    assert (await _request(fake, "PATCH", f"{older}/cancel/"))[0] == 204
    assert (await _get(fake, older))["updated_at"] > before
    assert await _listed(fake) == [older, newer]


async def test_a_born_sandbox_conversation_as_get_shows_it(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation(agent_runtime="sandbox")
    got = await _get(fake, conversation.id)
    assert (got["agent_runtime"], got["is_sandbox"]) == ("sandbox", True)
    assert (got["messages"], got["agent_mode"]) == ([], None)  # no LangGraph state
    assert await _listed(fake) == [conversation.id]  # listed like any other
    async with fake.client() as ph:
        record = await ph.conversations.get(conversation.id)
    assert (record.agent_runtime, record.is_sandbox, record.agent_mode) == ("sandbox", True, None)


async def test_a_converted_sandbox_conversation_keeps_its_thread(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation(
        agent_runtime="sandbox", messages=[{"type": "human", "content": "hi"}]
    )
    got = await _get(fake, conversation.id)
    assert (got["agent_runtime"], got["is_sandbox"]) == ("sandbox", True)
    assert [m["content"] for m in got["messages"]] == ["hi"]
    assert got["agent_mode"] == "product_analytics"
    langgraph = await _get(fake, fake.seed_conversation().id)
    assert (langgraph["agent_runtime"], langgraph["is_sandbox"]) == ("langgraph", False)


async def test_only_posthogs_runtimes_can_be_seeded(fake: FakePostHog) -> None:
    with pytest.raises(ValueError, match="agent_runtime must be one of"):
        fake.seed_conversation(agent_runtime="LangGraph")
    conversation = fake.seed_conversation()
    with pytest.raises(ValueError, match="agent_runtime must be one of"):
        conversation.agent_runtime = "acp"
    assert conversation.agent_runtime == "langgraph"


async def test_post_refuses_a_sandbox_conversation_before_anything_runs(
    fake: FakePostHog,
) -> None:
    conversation = fake.seed_conversation(
        agent_runtime="sandbox", messages=[{"type": "human", "content": "hi"}]
    )
    script = fake.script_answer("never sent")
    status, _, raw = await _post(fake, _body("more", conversation.id))
    assert (status, json.loads(raw)) == (400, _SANDBOX_400)
    # A re-attach too, where a LangGraph conversation would say it is idle.
    status, _, raw = await _post(fake, _body(None, conversation.id))
    assert (status, json.loads(raw)) == (400, _SANDBOX_400)
    payload = {"action": "approve", "proposal_id": "p1"}
    status, _, raw = await _post(fake, _body(None, conversation.id, resume_payload=payload))
    assert (status, json.loads(raw)) == (400, _SANDBOX_400)
    assert list(fake.ai_scripts) == [script]
    assert (conversation.run, len(conversation.messages)) == (None, 1)
    # The owner and deletion checks come first.
    theirs = fake.seed_conversation(user="user-2", agent_runtime="sandbox")
    status, _, raw = await _post(fake, _body("q", theirs.id))
    assert (status, json.loads(raw)) == (400, {"error": "Cannot access other users' conversations"})
    theirs.user = "user-1"
    theirs.deleted = True
    status, _, raw = await _post(fake, _body("q", theirs.id))
    assert (status, json.loads(raw)) == (404, {"error": "Conversation does not exist"})


async def test_the_client_cannot_stream_a_sandbox_conversation(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation(agent_runtime="sandbox")
    async with fake.client() as ph:
        with pytest.raises(aposthog.BadRequestError, match="open endpoint"):
            await ph.conversations.stream(conversation.id).until_done()
        with pytest.raises(aposthog.BadRequestError, match="open endpoint"):
            await ph.conversations.create("q", conversation=conversation.id).until_done()


async def test_cancel_on_a_sandbox_conversation_is_204_and_stops_nothing(
    fake: FakePostHog,
) -> None:
    """Its runs cancel through the tasks relay; `cancel/` still clears the queue and saves."""
    conversation = fake.seed_conversation(agent_runtime="sandbox")
    conversation.updated_at -= dt.timedelta(hours=1)
    before = conversation.updated_at
    path = f"{conversation.id}/queue/"
    assert (await _request(fake, "POST", path, json_body={"content": "later"}))[0] == 200
    assert (await _request(fake, "PATCH", f"{conversation.id}/cancel/"))[0] == 204
    assert conversation.queue == []
    assert conversation.updated_at > before
    got = await _get(fake, conversation.id)
    assert (got["status"], got["agent_runtime"], got["messages"]) == ("idle", "sandbox", [])
