"""FakePostHog's PostHog AI message queue (`conversations/{id}/queue/`) and how it drains."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import pytest

import aposthog
from aposthog.testing import FakePostHog

from .conversation_http import PATH
from .conversation_http import auth as _auth
from .conversation_http import body as _body
from .conversation_http import post as _post
from .conversation_http import request as _request

pytestmark = pytest.mark.anyio

EMPTY = {"messages": [], "max_queue_messages": 2}
FULL = {"error": "queue_full", "detail": "Only two messages can be queued at a time."}
NOT_QUEUED = {"detail": "Queue message not found."}
UI_CONTEXT = {"events": [{"type": "event", "id": "$pageview"}]}
FIELDS = {
    "id", "content", "created_at", "contextual_tools", "ui_context", "billing_context",
    "agent_mode", "session_id",
}  # fmt: skip


async def _queue(
    fake: FakePostHog,
    method: str,
    conversation: str,
    path: str = "",
    *,
    json_body: Any = None,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A request to `conversations/{conversation}/queue/{path}`: its status and JSON body."""
    url = f"{fake.url}{PATH}{conversation}/queue/{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            url,
            json=json_body,
            headers={**_auth(fake, key), **(headers or {})},
        ) as resp,
    ):
        raw = await resp.read()
        return resp.status, json.loads(raw) if raw else None


async def _enqueue(
    fake: FakePostHog,
    conversation: str,
    content: str,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> Any:
    body = {"content": content, **fields}
    status, queue = await _queue(fake, "POST", conversation, json_body=body, headers=headers)
    assert status == 200, queue
    return queue


def _messages(raw: bytes) -> list[dict[str, Any]]:
    """The `message` events of a PostHog stream, decoded."""
    return [json.loads(d) for d in re.findall(r"event: message\ndata: (.*)\n\n", raw.decode())]


def _finals(raw: bytes) -> list[tuple[str, str]]:
    """(type, content) of the stream's final messages: the ones with an id."""
    return [(m["type"], m["content"]) for m in _messages(raw) if "id" in m]


async def _read_until(resp: aiohttp.ClientResponse, marker: bytes) -> bytes:
    seen = b""
    with anyio.fail_after(10):
        while marker not in seen:
            chunk = await resp.content.readany()
            assert chunk, seen  # the stream ended before the marker
            seen += chunk
    return seen


@contextlib.asynccontextmanager
async def _answering(
    fake: FakePostHog, body: dict[str, Any], headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[aiohttp.ClientResponse, bytes]]:
    """POST a message and hold its stream open: the response, and its first bytes read."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            fake.url + PATH, json=body, headers={**_auth(fake), **(headers or {})}
        ) as resp,
    ):
        yield resp, await resp.content.readany()


async def _conversation(fake: FakePostHog, conversation: str) -> Any:
    status, raw = await _request(fake, "GET", f"{conversation}/")
    assert status == 200, raw
    return json.loads(raw)


# ---------------------------------------------------------------------- the routes


async def test_a_new_conversation_has_an_empty_queue(fake: FakePostHog) -> None:
    """No title needed (unlike `GET conversations/{id}/`): a brand-new one's queue works."""
    fake.script_answer("answer", title=None)
    body = _body("q")
    await _post(fake, body)
    assert (await _request(fake, "GET", f"{body['conversation']}/"))[0] == 404
    assert await _queue(fake, "GET", body["conversation"]) == (200, EMPTY)


async def test_enqueue_answers_the_whole_queue(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    tools = {"create_insight": {"current_query": "select 1"}}
    billing: dict[str, Any] = {}  # empty: PostHog keeps it as sent (it parses only a non-empty one)
    status, body = await _queue(
        fake,
        "POST",
        conversation.id,
        json_body={
            "content": "  And yesterday?  ",  # DRF trims
            "contextual_tools": tools,
            "ui_context": UI_CONTEXT,
            "billing_context": billing,
            "agent_mode": "sql",
            "unknown": "ignored",
        },
        headers={"X-POSTHOG-SESSION-ID": "sess-9"},
    )
    assert status == 200
    assert body["max_queue_messages"] == 2
    (message,) = body["messages"]
    assert set(message) == FIELDS
    assert uuid.UUID(message["id"]).version == 4
    created = dt.datetime.fromisoformat(message["created_at"])
    assert message["created_at"].endswith("+00:00")  # Django's isoformat, not DRF's Z
    assert abs(dt.datetime.now(dt.timezone.utc) - created) < dt.timedelta(minutes=1)
    assert {k: v for k, v in message.items() if k not in ("id", "created_at")} == {
        "content": "And yesterday?",
        "contextual_tools": tools,
        "ui_context": UI_CONTEXT,
        "billing_context": billing,
        "agent_mode": "sql",
        "session_id": "sess-9",
    }
    body = await _enqueue(fake, conversation.id, "Only this.")
    assert body["messages"][0] == message
    second = body["messages"][1]
    assert second["content"] == "Only this."
    assert [second[k] for k in sorted(FIELDS - {"id", "content", "created_at"})] == [None] * 5
    assert await _queue(fake, "GET", conversation.id) == (200, body)
    assert conversation.queue == body["messages"]


async def test_a_third_message_is_409(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    await _enqueue(fake, conversation.id, "one")
    queue = await _enqueue(fake, conversation.id, "two")
    third = {"content": "three"}
    assert await _queue(fake, "POST", conversation.id, json_body=third) == (409, FULL)
    # The body is validated before the queue is looked at.
    status, body = await _queue(fake, "POST", conversation.id, json_body={"content": ""})
    assert (status, body["attr"], body["code"]) == (400, "content", "blank")
    assert await _queue(fake, "GET", conversation.id) == (200, queue)


async def test_patch_sets_the_content_and_answers_the_whole_queue(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    first = (await _enqueue(fake, conversation.id, "one", agent_mode="sql"))["messages"][0]
    second = (await _enqueue(fake, conversation.id, "two"))["messages"][1]
    status, body = await _queue(
        fake, "PATCH", conversation.id, f"{first['id']}/", json_body={"content": " uno ", "x": 1}
    )
    assert status == 200
    assert body == {"messages": [{**first, "content": "uno"}, second], "max_queue_messages": 2}
    status, body = await _queue(
        fake, "PATCH", conversation.id, f"{second['id']}/", json_body={"content": "x" * 40000}
    )
    assert (status, len(body["messages"][1]["content"])) == (200, 40000)


async def test_an_unknown_queue_id_is_404_whatever_the_body(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    await _enqueue(fake, conversation.id, "one")
    unknown = str(uuid.uuid4())
    for body in ({"content": ""}, {"content": None}, {}, {"content": "fine"}):
        got = await _queue(fake, "PATCH", conversation.id, f"{unknown}/", json_body=body)
        assert got == (404, NOT_QUEUED)
    assert await _queue(fake, "DELETE", conversation.id, f"{unknown}/") == (404, NOT_QUEUED)
    assert len(conversation.queue) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"content": ""}, "blank"),
        ({"content": "   "}, "blank"),  # trimmed first
        ({"content": "x" * 40001}, "max_length"),
        ({"content": None}, "null"),
        ({}, "required"),
    ],
)
async def test_patch_checks_the_content(fake: FakePostHog, body: Any, code: str) -> None:
    conversation = fake.seed_conversation()
    queued = (await _enqueue(fake, conversation.id, "one"))["messages"][0]
    status, error = await _queue(fake, "PATCH", conversation.id, f"{queued['id']}/", json_body=body)
    assert (status, error["type"], error["attr"], error["code"]) == (
        400,
        "validation_error",
        "content",
        code,
    )
    assert conversation.queue == [queued]


async def test_delete_answers_200_with_the_rest(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    first = (await _enqueue(fake, conversation.id, "one"))["messages"][0]
    second = (await _enqueue(fake, conversation.id, "two"))["messages"][1]
    status, body = await _queue(fake, "DELETE", conversation.id, f"{first['id']}/")
    assert (status, body) == (200, {"messages": [second], "max_queue_messages": 2})
    assert await _queue(fake, "DELETE", conversation.id, f"{first['id']}/") == (404, NOT_QUEUED)


async def test_clear_empties_the_queue(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    await _enqueue(fake, conversation.id, "one")
    await _enqueue(fake, conversation.id, "two")
    assert await _queue(fake, "POST", conversation.id, "clear/") == (200, EMPTY)
    assert await _queue(fake, "GET", conversation.id) == (200, EMPTY)
    assert await _queue(fake, "POST", conversation.id, "clear/") == (200, EMPTY)


async def test_clear_is_not_a_queue_id(fake: FakePostHog) -> None:
    """`queue/clear/` resolves to the clear action, which only POSTs; queue items only PATCH
    and DELETE."""
    conversation = fake.seed_conversation()
    queued = (await _enqueue(fake, conversation.id, "one"))["messages"][0]
    status, body = await _queue(
        fake, "PATCH", conversation.id, "clear/", json_body={"content": "x"}
    )
    assert (status, body["code"]) == (405, "method_not_allowed")
    assert (await _queue(fake, "GET", conversation.id, f"{queued['id']}/"))[0] == 405


ROUTES = [
    ("GET", "", None),
    ("POST", "", {"content": "q"}),
    ("PATCH", "{id}/", {"content": "q"}),
    ("DELETE", "{id}/", None),
    ("POST", "clear/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_unknown_and_deleted_conversations_are_404(
    fake: FakePostHog, method: str, path: str, body: Any
) -> None:
    deleted = fake.seed_conversation()
    await _enqueue(fake, deleted.id, "one")
    path = path.format(id=deleted.queue[0]["id"])
    deleted.deleted = True
    expected = (404, {"error": "Conversation not found"})
    for conversation in (str(uuid.uuid4()), deleted.id):
        assert await _queue(fake, method, conversation, path, json_body=body) == expected


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_another_users_conversation_is_403(
    fake: FakePostHog, method: str, path: str, body: Any
) -> None:
    theirs = fake.seed_conversation(user="user-2")
    their_key = fake.add_key(user="user-2")
    status, _ = await _queue(fake, "POST", theirs.id, json_body={"content": "x"}, key=their_key)
    assert status == 200
    expected = (403, {"error": "Cannot access other users' conversations"})
    if "{id}" in path:  # the conversation is checked before the queue id is looked up
        unknown = path.format(id=uuid.uuid4())
        assert await _queue(fake, method, theirs.id, unknown, json_body=body) == expected
    path = path.format(id=theirs.queue[0]["id"])
    assert await _queue(fake, method, theirs.id, path, json_body=body) == expected
    assert (await _queue(fake, method, theirs.id, path, json_body=body, key=their_key))[0] == 200


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_scoped_personal_api_keys_are_refused(
    fake: FakePostHog, method: str, path: str, body: Any
) -> None:
    """The queue actions declare no `required_scopes`, like `cancel`."""
    conversation = fake.seed_conversation()
    await _enqueue(fake, conversation.id, "one")
    path = path.format(id=conversation.queue[0]["id"])
    for scopes in (["conversation:write"], ["*"]):
        key = fake.add_key(scopes=scopes)
        status, error = await _queue(fake, method, conversation.id, path, json_body=body, key=key)
        assert (status, error["detail"]) == (
            403,
            "This action does not support Personal API Key access",
        )


async def test_the_api_throttles_apply_not_the_ai_ones(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    fake.ai_burst_limit = 1
    assert (await _post(fake, _body("q")))[0] == 200
    assert (await _post(fake, _body("q")))[0] == 429  # PostHog AI's own limit is spent
    await _enqueue(fake, conversation.id, "one")
    await _enqueue(fake, conversation.id, "two")
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = aposthog.Rate(1, per=60)
    assert (await _queue(fake, "GET", conversation.id))[0] == 200
    assert (await _queue(fake, "GET", conversation.id))[0] == 429


# ---------------------------------------------------------------------- the message's checks


@pytest.mark.parametrize(
    ("change", "attr", "code"),
    [
        ({"content": ""}, "content", "blank"),
        ({"content": "x" * 40001}, "content", "max_length"),
        ({"content": None}, "content", "null"),
        ({"content": "", "agent_mode": "warp"}, "content", "blank"),  # the first field's
        ({"contextual_tools": []}, "contextual_tools", "not_a_dict"),
        ({"contextual_tools": None}, "contextual_tools", "null"),
        ({"ui_context": None}, "ui_context", "null"),  # a JSONField without allow_null
        ({"billing_context": None}, "billing_context", "null"),
        ({"agent_mode": "warp"}, "agent_mode", "invalid_choice"),
        ({"agent_mode": ["sql"]}, "agent_mode", "invalid_choice"),
        ({"agent_mode": None}, "agent_mode", "null"),
        ({"agent_mode": "warp", "billing_context": None}, "billing_context", "null"),  # in order
        # Every field before validate(): the mode's error, not the ui_context's.
        ({"agent_mode": "warp", "ui_context": {"bogus": 1}}, "agent_mode", "invalid_choice"),
    ],
)
async def test_field_errors(
    fake: FakePostHog, change: dict[str, Any], attr: str, code: str
) -> None:
    conversation = fake.seed_conversation()
    status, error = await _queue(
        fake, "POST", conversation.id, json_body={"content": "q", **change}
    )
    assert status == 400
    assert (error["type"], error["attr"], error["code"]) == ("validation_error", attr, code)
    assert conversation.queue == []


@pytest.mark.parametrize(
    "change",
    [
        {"contextual_tools": None},
        {"contextual_tools": "tools"},
        {"ui_context": None},
        {"billing_context": None},
        {"agent_mode": None},
        {"agent_mode": 3},
        {"agent_mode": "onboarding"},
        {"ui_context": {"dashboard": []}},
    ],
)
async def test_the_fields_both_serializers_declare_are_checked_alike(
    fake: FakePostHog, change: dict[str, Any]
) -> None:
    """QueueMessageSerializer declares these fields as MessageSerializer does."""
    conversation = fake.seed_conversation()
    status, queued = await _queue(
        fake, "POST", conversation.id, json_body={"content": "q", **change}
    )
    sent, _, raw = await _post(fake, _body("q", conversation.id, **change))
    assert (status, queued) == (sent, json.loads(raw))
    assert status == 400


async def test_a_missing_content_is_required(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    status, error = await _queue(fake, "POST", conversation.id, json_body={"agent_mode": "sql"})
    assert (status, error["attr"], error["code"]) == (400, "content", "required")


@pytest.mark.parametrize("ui_context", [{"dashboard": []}, [], {"events": [{"type": "action"}]}])
async def test_a_ui_context_that_makes_no_human_message(fake: FakePostHog, ui_context: Any) -> None:
    conversation = fake.seed_conversation()
    status, error = await _queue(
        fake, "POST", conversation.id, json_body={"content": "q", "ui_context": ui_context}
    )
    assert (status, error) == (
        400,
        {
            "type": "validation_error",
            "code": "invalid_input",
            "detail": "Invalid message content.",
            "attr": None,
        },
    )


# ---------------------------------------------------------------------- the queue and the runs


def _bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A held end never released fails the test instead of hanging it."""

    @functools.wraps(test)
    async def bounded(*args: Any, **kwargs: Any) -> None:
        with anyio.fail_after(10):
            await test(*args, **kwargs)

    return bounded


@_bounded
async def test_cancel_clears_the_queue(fake: FakePostHog) -> None:
    fake.script_answer("never finished", end_after_connections=2)
    body = _body("q")
    conversation_id = body["conversation"]
    async with _answering(fake, body) as (resp, head):
        await _enqueue(fake, conversation_id, "one")
        await _enqueue(fake, conversation_id, "two")
        assert (await _request(fake, "PATCH", f"{conversation_id}/cancel/"))[0] == 204
        assert await _queue(fake, "GET", conversation_id) == (200, EMPTY)
        raw = head + await resp.read()
    assert _finals(raw) == [("human", "q")]  # nothing queued ran
    got = await _conversation(fake, conversation_id)
    assert got["status"] == "idle"
    assert [m["content"] for m in got["messages"]] == ["q"]


@_bounded
async def test_the_first_queued_message_runs_once_the_run_ends(fake: FakePostHog) -> None:
    fake.script_answer("First answer.", end_after_connections=2)  # its end waits for a re-attach
    fake.script_answer("Second answer.", end_after_connections=2)  # the queued run's too
    body = _body("Where are my users?")
    conversation_id = body["conversation"]
    async with aiohttp.ClientSession() as session:
        async with session.post(fake.url + PATH, json=body, headers=_auth(fake)) as first:
            await first.content.readany()  # run 1 is under way
            queued = await _enqueue(
                fake,
                conversation_id,
                "And yesterday?",
                headers={"X-POSTHOG-SESSION-ID": "sess-q"},
                agent_mode="sql",
                ui_context=UI_CONTEXT,
            )
        await fake.wait_for_streams_closed()  # the client left; run 1 goes on
        got = await _conversation(fake, conversation_id)
        assert got["status"] == "in_progress"
        assert [m["content"] for m in got["messages"]] == ["Where are my users?"]
        # A re-attach releases run 1's end and reads on into the queued message's run.
        reattach = _body(None, conversation_id)
        async with session.post(fake.url + PATH, json=reattach, headers=_auth(fake)) as second:
            seen = await _read_until(second, b'"content":"Second answer.","type"')
            # The queued run is under way, its end held: the queue is empty now.
            assert await _queue(fake, "GET", conversation_id) == (200, EMPTY)
            got = await _conversation(fake, conversation_id)
            assert got["status"] == "in_progress"
            assert got["agent_mode"] == "sql"
            contents = [(m["type"], m["content"]) for m in got["messages"]]
            assert contents == [
                ("human", "Where are my users?"),
                ("ai", "First answer."),
                ("human", "And yesterday?"),
            ]
            human = got["messages"][2]
            assert human["ui_context"] == UI_CONTEXT
            assert human["trace_id"] not in (body["trace_id"], None)
            assert human["id"] != queued["messages"][0]["id"]
            # Another re-attach replays the queued run from its start and releases its end.
            status, _, replay = await _post(fake, _body(None, conversation_id))
            rest = seen + await second.read()
    assert status == 200
    assert "event: conversation" not in replay.decode()  # not a new conversation
    echo = _messages(replay)[0]
    assert echo == {
        "type": "human",
        "content": "And yesterday?",
        "id": human["id"],
        "trace_id": human["trace_id"],
        "ui_context": UI_CONTEXT,
    }
    assert _finals(replay) == [("human", "And yesterday?"), ("ai", "Second answer.")]
    # The re-attach to run 1 replayed what its deleted stream kept, then the queued run.
    assert _finals(rest) == [
        ("ai", "First answer."),
        ("human", "And yesterday?"),
        ("ai", "Second answer."),
    ]
    got = await _conversation(fake, conversation_id)
    assert got["status"] == "idle"
    assert [m["content"] for m in got["messages"]][-1] == "Second answer."
    run = fake.conversations[conversation_id].run
    assert run is not None
    assert run.session_id == "sess-q"  # the queued message's


@_bounded
async def test_the_runs_stream_carries_on_into_the_queued_run(fake: FakePostHog) -> None:
    """PostHog's workflow leaves the stream open for the queued run: one reader, both runs."""
    fake.script_answer("First answer.", end_after_connections=2)
    fake.script_answer("Second answer.")
    body = _body("q1")
    conversation_id = body["conversation"]
    async with _answering(fake, body) as (first, head):
        await _enqueue(fake, conversation_id, "q2")
        status, _, replay = await _post(fake, _body(None, conversation_id))  # releases the end
        original = head + await first.read()
    assert status == 200
    both = [("human", "q1"), ("ai", "First answer."), ("human", "q2"), ("ai", "Second answer.")]
    assert _finals(original) == both
    assert _finals(replay) == both
    # Two connections, two streams: a run's successor is not a new stream.
    assert (fake.ai_streams.opened, fake.ai_streams.completed) == (2, 2)
    got = await _conversation(fake, conversation_id)
    assert [(m["type"], m["content"]) for m in got["messages"]] == both
    assert await _queue(fake, "GET", conversation_id) == (200, EMPTY)


@_bounded
async def test_the_reader_that_reads_on_is_the_queued_runs_first_connection(
    fake: FakePostHog,
) -> None:
    """A script's `drop_after` cuts the queued run's first connection: the reader of the run
    before it that read on into it."""
    fake.script_answer("First answer.", token_size=100, delay=0.1)  # under way while queuing
    fake.script_answer("Second answer.", drop_after=1)
    body = _body("q1")
    conversation_id = body["conversation"]
    async with _answering(fake, body) as (first, seen):
        await _enqueue(fake, conversation_id, "q2")
        with pytest.raises(aiohttp.ClientPayloadError):
            while chunk := await first.content.readany():
                seen += chunk
    # Cut after one event of the queued run: its echo (its own count, not the reader's).
    assert _finals(seen) == [("human", "q1"), ("ai", "First answer."), ("human", "q2")]
    assert fake.ai_streams.dropped == 1
    await fake.wait_for_streams_closed()
    got = await _conversation(fake, conversation_id)
    assert [m["content"] for m in got["messages"]][-1] == "Second answer."  # it ran on


@_bounded
async def test_a_held_end_is_produced_when_it_is_released(fake: FakePostHog) -> None:
    """`end_after_connections`: the end comes when the connection that releases it does, not
    when the timeline had it: the queued run starts then, and is under way right after."""
    fake.script_answer("First answer.", end_after_connections=2)
    fake.script_answer("Second answer.", token_size=100, delay=0.15)  # 0.3 s long
    body = _body("q1")
    conversation_id = body["conversation"]
    async with _answering(fake, body):
        await _enqueue(fake, conversation_id, "q2")
        await anyio.sleep(0.4)  # longer than the queued run
        async with _answering(fake, _body(None, conversation_id)):  # releases the end
            got = await _conversation(fake, conversation_id)
    assert got["status"] == "in_progress"
    assert [m["content"] for m in got["messages"]] == ["q1", "First answer.", "q2"]


@_bounded
async def test_the_session_of_the_queued_message_goes_with_its_run(fake: FakePostHog) -> None:
    fake.script_answer("First answer.", end_after_connections=2)
    body = _body("q1")
    conversation_id = body["conversation"]
    headers = {"X-POSTHOG-SESSION-ID": "sess-1"}
    async with _answering(fake, body, headers) as (first, _):
        await _enqueue(fake, conversation_id, "q2")
        await _post(fake, _body(None, conversation_id))  # run 1 ends, run 2 runs to its end
        await first.read()
    run = fake.conversations[conversation_id].run
    assert run is not None
    assert run.session_id == "sess-1"  # none queued: the run before's


@_bounded
async def test_a_message_queued_on_an_idle_conversation_waits_for_the_next_run(
    fake: FakePostHog,
) -> None:
    body = _body("q1")
    conversation_id = body["conversation"]
    await _post(fake, body)  # a whole run: the conversation is idle
    await _enqueue(fake, conversation_id, "q2")
    await anyio.sleep(0.05)
    got = await _conversation(fake, conversation_id)
    assert (got["status"], len(got["messages"])) == ("idle", 2)
    assert len((await _queue(fake, "GET", conversation_id))[1]["messages"]) == 1
    fake.script_answer("Third answer.")
    fake.script_answer("Second answer.")
    status, _, raw = await _post(fake, _body("q3", conversation_id))
    assert status == 200
    assert _finals(raw) == [
        ("human", "q3"),
        ("ai", "Third answer."),
        ("human", "q2"),
        ("ai", "Second answer."),
    ]
    assert await _queue(fake, "GET", conversation_id) == (200, EMPTY)


@_bounded
async def test_a_run_that_ended_unseen_leaves_a_later_message_waiting(fake: FakePostHog) -> None:
    """A run's end drains the queue as it was then, however late the fake looks."""
    fake.script_answer("abcdef", token_size=2, delay=0.01)
    body = _body("q1")
    conversation_id = body["conversation"]
    async with _answering(fake, body):
        pass  # the first bytes read, the reader leaves
    await fake.wait_for_streams_closed()  # nobody reads the run to its end
    await anyio.sleep(0.3)  # its end is well past
    await _enqueue(fake, conversation_id, "q2")
    got = await _conversation(fake, conversation_id)
    assert got["status"] == "idle"
    assert [m["content"] for m in got["messages"]] == ["q1", "abcdef"]
    assert len((await _queue(fake, "GET", conversation_id))[1]["messages"]) == 1


async def _q2_queued_behind_q1(fake: FakePostHog) -> tuple[str, Any]:
    """Start a conversation with "q1" and queue "q2" while its run is under way."""
    body = _body("q1")
    conversation_id = body["conversation"]
    async with _answering(fake, body):
        await _enqueue(fake, conversation_id, "q2")
    run = fake.conversations[conversation_id].run
    assert run is not None
    return conversation_id, run


@_bounded
async def test_a_reattach_after_a_run_ended_unseen_reads_the_queued_run(
    fake: FakePostHog,
) -> None:
    """`POST conversations/` sees a run's end first: the queued message's run is the one in
    progress, so a re-attach reads it (not the 400 of an idle conversation)."""
    fake.script_answer("abcdef", token_size=2, delay=0.1)
    fake.script_answer("Queued answer.", end_after_connections=1)  # held for the re-attach
    conversation_id, run = await _q2_queued_behind_q1(fake)
    # Nobody reads run 1 to its end, nor asks the fake about it, until it has ended.
    await anyio.sleep(run.end - time.monotonic() + 0.02)
    status, _, raw = await _post(fake, _body(None, conversation_id))
    assert status == 200, raw
    assert _finals(raw) == [("human", "q2"), ("ai", "Queued answer.")]


@_bounded
async def test_the_queued_run_starts_when_the_run_before_it_ended(fake: FakePostHog) -> None:
    """However late the fake notices a run's end, the queued message's run started then:
    noticed well after both timelines, the queued run is over too."""
    fake.script_answer("abcdef", token_size=2, delay=0.05)
    fake.script_answer("Queued answer.", token_size=100, delay=0.1)  # 0.2 s long
    conversation_id, run = await _q2_queued_behind_q1(fake)
    # Nobody asks the fake about run 1 until the queued run's timeline is over too.
    await anyio.sleep(run.end - time.monotonic() + 0.3)
    got = await _conversation(fake, conversation_id)
    assert got["status"] == "idle"
    assert [m["content"] for m in got["messages"]] == ["q1", "abcdef", "q2", "Queued answer."]


@_bounded
async def test_both_queued_messages_run_one_after_the_other(fake: FakePostHog) -> None:
    fake.script_answer("A1", end_after_connections=2)
    for text in ("A2", "A3"):
        fake.script_answer(text)
    body = _body("q1")
    conversation_id = body["conversation"]
    async with _answering(fake, body) as (first, head):
        await _enqueue(fake, conversation_id, "q2")
        await _enqueue(fake, conversation_id, "q3", agent_mode="flags")
        await _post(fake, _body(None, conversation_id))
        raw = head + await first.read()
    assert [c for _, c in _finals(raw)] == ["q1", "A1", "q2", "A2", "q3", "A3"]
    got = await _conversation(fake, conversation_id)
    assert (got["status"], got["agent_mode"]) == ("idle", "flags")


@pytest.mark.parametrize("decision", ["awaiting", "approved"])
@_bounded
async def test_pending_approvals_clear_the_queue_instead(fake: FakePostHog, decision: str) -> None:
    """
    Only an approval still `pending` when the run ends (the run ended awaiting it) stops
    the drain: `process_chat_agent_activity` clears the queue. A decided one leaves it be
    (and one pending before the run is `auto_rejected` by it: see the next test).
    """
    approvals = []
    if decision == "approved":
        approvals = [{"proposal_id": "p1", "decision_status": "approved", "tool_name": "x"}]
    conversation = fake.seed_conversation(pending_approvals=approvals)
    fake.script_answer(
        "Waiting for your approval.",
        end_after_connections=2,
        approval="create_flag" if decision == "awaiting" else None,
    )
    fake.script_answer("Queued answer.")
    async with _answering(fake, _body("q1", conversation.id)) as (first, head):
        await _enqueue(fake, conversation.id, "q2")
        await _post(fake, _body(None, conversation.id))
        raw = head + await first.read()
    finals = [("human", "q1"), ("ai", "Waiting for your approval.")]
    if decision != "awaiting":
        finals += [("human", "q2"), ("ai", "Queued answer.")]
    assert _finals(raw) == finals
    assert await _queue(fake, "GET", conversation.id) == (200, EMPTY)
    statuses = [a["decision_status"] for a in conversation.pending_approvals]
    assert statuses == (["pending"] if decision == "awaiting" else ["approved"])


@_bounded
async def test_a_research_run_leaves_the_queue_alone(fake: FakePostHog) -> None:
    fake.script_answer("Research done.", end_after_connections=2)
    body = _body("dig", agent_mode="research")
    conversation_id = body["conversation"]
    async with _answering(fake, body) as (first, head):
        queued = await _enqueue(fake, conversation_id, "q2")
        await _post(fake, _body(None, conversation_id))
        raw = head + await first.read()
    assert _finals(raw) == [("human", "dig"), ("ai", "Research done.")]
    assert await _queue(fake, "GET", conversation_id) == (200, queued)
    assert (await _conversation(fake, conversation_id))["status"] == "idle"


@_bounded
async def test_research_mode_on_a_chat_leaves_the_queue_and_the_type(fake: FakePostHog) -> None:
    """PostHog runs the research workflow, which does not drain; the type stays `assistant`."""
    conversation = fake.seed_conversation()
    fake.script_answer("Research done.", end_after_connections=2)
    body = _body("dig", conversation.id, agent_mode="research")
    async with _answering(fake, body) as (first, head):
        queued = await _enqueue(fake, conversation.id, "q2")
        await _post(fake, _body(None, conversation.id))
        raw = head + await first.read()
    assert _finals(raw) == [("human", "dig"), ("ai", "Research done.")]
    assert await _queue(fake, "GET", conversation.id) == (200, queued)
    assert conversation.type == "assistant"
    # The next chat message runs the chat workflow, which then drains the queue.
    fake.script_answer("Chat answer.")
    fake.script_answer("Queued answer.")
    status, _, raw = await _post(fake, _body("q3", conversation.id))
    assert status == 200
    assert [c for _, c in _finals(raw)] == ["q3", "Chat answer.", "q2", "Queued answer."]
    assert await _queue(fake, "GET", conversation.id) == (200, EMPTY)


@_bounded
async def test_a_new_message_on_idle_research_is_a_chat_run_that_drains(
    fake: FakePostHog,
) -> None:
    """On an idle `deep_research` conversation a message runs the chat workflow, whatever mode."""
    conversation = fake.seed_conversation(type="deep_research")
    fake.script_answer("Chat answer.", end_after_connections=2)
    fake.script_answer("Queued answer.")
    body = _body("more", conversation.id, agent_mode="research")
    async with _answering(fake, body) as (first, head):
        await _enqueue(fake, conversation.id, "q2")
        await _post(fake, _body(None, conversation.id))
        raw = head + await first.read()
    assert [c for _, c in _finals(raw)] == ["more", "Chat answer.", "q2", "Queued answer."]
    assert conversation.type == "assistant"


@_bounded
async def test_a_message_that_abandons_an_approval_still_runs_the_queue(
    fake: FakePostHog,
) -> None:
    """A new message (no `resume_payload`) on a conversation waiting for approval: the
    runner's `_init_or_update_state` falls through to `_expire_pending_approvals()`, which
    marks the card `auto_rejected` before the run. When the run ends,
    `process_chat_agent_activity` (posthog/temporal/ai/chat_agent.py) finds no approval
    `pending` (`has_pending_approvals`) and starts the queued message on the same stream.
    (`test_pending_approvals_clear_the_queue_instead[awaiting]`: a card still pending
    at the run's end, the queue cleared.)"""
    approval = {"proposal_id": "p1", "decision_status": "pending", "tool_name": "create_flag"}
    conversation = fake.seed_conversation(pending_approvals=[approval])
    fake.script_answer("Something else, then.", end_after_connections=2)
    fake.script_answer("Queued answer.")
    async with _answering(fake, _body("q1", conversation.id)) as (first, head):
        await _enqueue(fake, conversation.id, "q2")
        await _post(fake, _body(None, conversation.id))
        raw = head + await first.read()
    assert _finals(raw) == [
        ("human", "q1"),
        ("ai", "Something else, then."),
        ("human", "q2"),
        ("ai", "Queued answer."),
    ]
