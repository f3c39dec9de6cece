"""FakePostHog's PostHog AI: PostHog's exact stream bytes, runs, replays, the other routes."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from typing import Any

import aiohttp
import anyio
import pytest

import aposthog
from aposthog.testing import AIScript, FakePostHog

from .conversation_http import PATH
from .conversation_http import auth as _auth
from .conversation_http import body as _body
from .conversation_http import post as _post
from .conversation_http import request as _request

pytestmark = pytest.mark.anyio


def _events(body: bytes) -> list[tuple[str, str]]:
    """(name, data) pairs of a PostHog stream: one `event:` and one `data:` line each."""
    text = body.decode()
    return re.findall(r"event: (\w+)\ndata: (.*)\n\n", text)


async def test_a_new_conversation_streams_like_posthog(fake: FakePostHog) -> None:
    fake.script_answer("Hello world", token_size=5, title="Greetings")
    body = _body("Hi there?")
    status, headers, raw = await _post(fake, body)
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    events = _events(raw)
    assert b"".join(f"event: {n}\ndata: {d}\n\n".encode() for n, d in events) == raw
    names = [name for name, _ in events]
    assert names == ["conversation", "message", "message", "conversation", *["message"] * 3]

    first = json.loads(events[0][1])
    assert first["id"] == body["conversation"]
    assert first["title"] is None
    assert first["status"] == "in_progress"
    # json.dumps with its default separators and nulls: what PostHog's serializer writes.
    assert events[0][1] == json.dumps(first)
    assert '"topic": null' in events[0][1]

    human = json.loads(events[1][1])
    assert human["type"] == "human"
    assert human["content"] == "Hi there?"
    uuid.UUID(human["id"])  # the server's id
    assert events[2][1] == '{"content":"Hello","type":"ai"}'  # compact, nulls left out
    assert json.loads(events[3][1])["title"] == "Greetings"
    assert events[4][1] == '{"content":"Hello worl","type":"ai"}'
    assert events[5][1] == '{"content":"Hello world","type":"ai"}'
    final = json.loads(events[6][1])
    assert final["content"] == "Hello world"
    assert final["type"] == "ai"
    assert "id" in final


async def test_the_conversation_id_is_read_as_a_uuid(fake: FakePostHog) -> None:
    """DRF's `UUIDField` takes any spelling of a UUID: the conversation gets its canonical id."""
    canonical = str(uuid.uuid4())
    body = _body("q", uuid.UUID(canonical).hex.upper())
    status, _, raw = await _post(fake, body)
    assert status == 200
    assert json.loads(_events(raw)[0][1])["id"] == canonical
    assert (await _request(fake, "GET", f"{canonical}/"))[0] == 200
    # A message under another spelling reaches the same conversation.
    status, _, raw = await _post(fake, _body("again", "{" + canonical.upper() + "}"))
    assert status == 200
    assert "conversation" not in [n for n, _ in _events(raw)]  # not a new conversation


async def test_only_new_conversations_get_conversation_events(fake: FakePostHog) -> None:
    body = _body("first")
    await _post(fake, body)
    fake.script_answer("second answer")
    _, _, raw = await _post(fake, _body("second", body["conversation"]))
    assert [n for n, _ in _events(raw)] == ["message"] * 6  # human, 4 snapshots, final


async def test_text_is_utf8_in_messages_and_escaped_in_conversations(fake: FakePostHog) -> None:
    fake.script_answer("Grüße 👋", token_size=100, title="Grüße")
    _, _, raw = await _post(fake, _body("Grüße?"))
    assert "Grüße 👋".encode() in raw
    assert b'"title": "Gr\\u00fc\\u00dfe"' in raw


async def test_tool_calls_updates_and_tool_results(fake: FakePostHog) -> None:
    fake.script_answer("Done.", tool="create_insight", updates=["Searching", "Building"])
    _, _, raw = await _post(fake, _body("chart please"))
    events = _events(raw)
    # The title arrives after the first assistant message, here the one calling the tool.
    names = ["conversation", "message", "message", "conversation", "update", "update", "message"]
    assert [n for n, _ in events][:7] == names
    ai = json.loads(events[2][1])
    call = ai["tool_calls"][0]
    assert call["name"] == "create_insight"
    assert call["type"] == "tool_call"
    assert call["args"] == {}  # ToolCall's args are required: an empty object
    updates = [json.loads(d) for n, d in events if n == "update"]
    assert updates == [
        {"content": "Searching", "id": ai["id"], "tool_call_id": call["id"]},
        {"content": "Building", "id": ai["id"], "tool_call_id": call["id"]},
    ]
    tools = [json.loads(d) for n, d in events if n == "message" and '"tool"' in d]
    assert tools[0]["tool_call_id"] == call["id"]


async def test_the_message_calling_a_tool_streams_its_text_first(fake: FakePostHog) -> None:
    """Its text arrives as snapshots, as any answer's does, then the final with the call."""
    fake.script_answer("Done.", tool="search", tool_text="Let me search.", token_size=4)
    _, _, raw = await _post(fake, _body("q"))
    messages = [json.loads(d) for n, d in _events(raw) if n == "message"]
    ai = [m for m in messages if m["type"] == "ai"]
    assert [m["content"] for m in ai if "id" not in m][:3] == ["Let ", "Let me s", "Let me searc"]
    assert [m["content"] for m in ai if "tool_calls" in m] == ["Let me search."]
    async with fake.client() as ph:
        fake.script_answer("Done.", tool="search", tool_text="Let me search.", token_size=4)
        stream = ph.conversations.create("q")
        deltas = [text async for text in stream.text_deltas()]
    assert "".join(deltas) == stream.result().text == "Let me search.\n\nDone."


@pytest.mark.parametrize(
    ("options", "tail"),
    [
        ({"fail": "Oops! Something went wrong."}, '"content":"Oops! Something went wrong."'),
        ({"fail": True}, '{"type":"ai/failure"}'),
        ({"fail": True, "generation_error": True}, '{"type":"ai/failure"}'),
    ],
)
async def test_in_band_failures_arrive_inside_a_200(
    fake: FakePostHog, options: dict[str, Any], tail: str
) -> None:
    fake.script_answer("a b c d e f g h", token_size=2, **options)
    status, _, raw = await _post(fake, _body("q"))
    assert status == 200
    events = _events(raw)
    assert tail in events[-1][1]
    if isinstance(options.get("fail"), str):  # a failure with a text is a stored message
        uuid.UUID(json.loads(events[-1][1])["id"])
    final_answers = [d for n, d in events if '"ai"' in d and '"id"' in d]
    assert final_answers == []  # no final answer after a failure
    snapshots = [d for n, d in events if d.startswith('{"content"') and '"ai"' in d]
    assert len(snapshots) == 4  # half of the eight snapshots
    statuses = [d for n, d in events if n == "status"]
    assert statuses == (['{"type":"generation_error"}'] if options.get("generation_error") else [])


async def test_a_generation_error_is_followed_by_the_answer(fake: FakePostHog) -> None:
    """PostHog sends it when an insight fails its schema check, and generates it again."""
    fake.script_answer("a b c d", token_size=2, generation_error=True)
    _, _, raw = await _post(fake, _body("q"))
    events = _events(raw)
    after = events[[n for n, _ in events].index("status") + 1 :]
    answers = [json.loads(d) for n, d in after if n == "message"]
    assert [a["content"] for a in answers] == ["a ", "a b ", "a b c ", "a b c d", "a b c d"]
    assert "id" in answers[-1]  # the final answer ends the run


async def test_an_empty_answer_streams_no_snapshot(fake: FakePostHog) -> None:
    fake.script_answer("")
    conversation = fake.seed_conversation()
    _, _, raw = await _post(fake, _body("q", conversation.id))
    messages = [json.loads(d) for n, d in _events(raw) if n == "message"]
    assert [(m["type"], m["content"], "id" in m) for m in messages] == [
        ("human", "q", True),
        ("ai", "", True),  # the final answer only
    ]


async def test_keepalive_comments_fill_silences(fake: FakePostHog) -> None:
    fake.keepalive_interval = 0.01
    fake.script_answer("slow", token_size=2, delay=0.05)
    _, _, raw = await _post(fake, _body("q"))
    assert b": keepalive\n\n" in raw
    assert "".join(d for _, d in _events(raw)).count("slow") >= 2


async def test_chunked_writes_split_characters_but_keep_the_bytes(fake: FakePostHog) -> None:
    fake.script_answer("é👋", token_size=1, chunk_size=1, chunk_delay=0.0002)
    existing = fake.seed_conversation()
    reads = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + PATH, json=_body("q", existing.id), headers=_auth(fake)) as resp,
    ):
        reads.extend([piece async for piece in resp.content.iter_any()])
    raw = b"".join(reads)
    assert len(reads) > 10
    assert '{"content":"é👋","type":"ai"}'.encode() in raw


async def test_a_new_message_while_generating_is_409(fake: FakePostHog) -> None:
    # The end waits for a second connection: the run is still going when "again" comes.
    fake.script_answer("slow answer", delay=0.05, end_after_connections=2)
    body = _body("q")
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + PATH, json=body, headers=_auth(fake)) as resp,
    ):
        await resp.content.readany()
        status, _, raw = await _post(fake, _body("again", body["conversation"]))
    assert status == 409
    assert json.loads(raw) == {
        "type": "server_error",
        "code": "conflict",
        "detail": "Cannot resume streaming with a new message",
        "attr": None,
    }


async def test_reattaching_replays_the_run_from_its_start(fake: FakePostHog) -> None:
    # The end waits for the second connection: the resume always finds the run going.
    fake.script_answer("one two three four", token_size=4, delay=0.02, end_after_connections=2)
    body = _body("q")
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + PATH, json=body, headers=_auth(fake)) as first,
    ):
        start = await first.content.readany()  # the run is under way
        resume = _body(None, body["conversation"])
        status, _, replay = await _post(fake, resume)
        original = start + await first.read()
    assert status == 200
    assert _events(replay) == _events(original)
    assert fake.conversations[body["conversation"]].run is not None


async def test_a_held_end_waits_for_the_connections_it_names(fake: FakePostHog) -> None:
    """`end_after_connections`: every event but the end is streamed; the end waits."""
    fake.script_answer("one two", token_size=4, end_after_connections=2)  # all due at once
    body = _body("q")
    conversation_id = body["conversation"]
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + PATH, json=body, headers=_auth(fake)) as first,
    ):
        seen = b""
        while b'"content":"one two"' not in seen:  # the last snapshot: all but the end
            seen += await first.content.readany()
        assert fake.conversations[conversation_id].status == "in_progress"
        status, _, replay = await _post(fake, _body(None, conversation_id))
        original = seen + await first.read()
    assert status == 200
    assert _events(replay) == _events(original)
    assert _events(original)[-1][0] == "message"
    assert json.loads(_events(original)[-1][1])["type"] == "ai"
    assert fake.conversations[conversation_id].status == "idle"


async def test_content_null_on_an_idle_conversation_is_400(fake: FakePostHog) -> None:
    body = _body("q")
    await _post(fake, body)
    status, _, raw = await _post(fake, _body(None, body["conversation"]))
    assert status == 400
    assert json.loads(raw)["detail"] == "Cannot continue streaming from an idle conversation"


@pytest.mark.parametrize(
    ("setup", "status", "expected"),
    [
        ("unknown", 400, {"error": "Cannot stream from non-existent conversation"}),
        ("other_user", 400, {"error": "Cannot access other users' conversations"}),
        ("deleted", 404, {"error": "Conversation does not exist"}),
        # create() checks the owner before the deletion.
        ("other_user_deleted", 400, {"error": "Cannot access other users' conversations"}),
    ],
)
async def test_non_standard_error_bodies(
    fake: FakePostHog, setup: str, status: int, expected: dict[str, str]
) -> None:
    conversation = fake.seed_conversation(
        user="someone-else" if setup.startswith("other_user") else "user-1"
    )
    conversation.deleted = setup.endswith("deleted")
    target = str(uuid.uuid4()) if setup == "unknown" else conversation.id
    got, _, raw = await _post(fake, _body(None if setup == "unknown" else "hi", target))
    assert (got, json.loads(raw)) == (status, expected)


async def test_cancel_stops_the_generation_and_is_idempotent(fake: FakePostHog) -> None:
    fake.script_answer("a long answer that will not finish", token_size=4, delay=0.02)
    body = _body("q")
    conversation_id = body["conversation"]
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + PATH, json=body, headers=_auth(fake)) as resp,
    ):
        await resp.content.readany()
        assert fake.conversations[conversation_id].status == "in_progress"
        assert (await _request(fake, "PATCH", f"{conversation_id}/cancel/"))[0] == 204
        raw = await resp.read()  # the stream ends
    assert "a long answer that will not finish" not in raw.decode()
    conversation = fake.conversations[conversation_id]
    assert conversation.status == "idle"
    assert [m["type"] for m in conversation.messages] == ["human"]
    await anyio.sleep(0.3)  # past the whole timeline (12 events, 0.02 s apart)
    assert (await _request(fake, "PATCH", f"{conversation_id}/cancel/"))[0] == 204
    assert [m["type"] for m in conversation.messages] == ["human"]  # nothing came later
    assert fake.ai_streams.open == 0
    # The stream the cancel ended counts as completed: the client did not leave.
    assert (fake.ai_streams.completed, fake.ai_streams.disconnected) == (1, 0)


async def test_cancel_and_append_need_an_unscoped_key_and_the_owner(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    scoped = fake.add_key(scopes=["conversation:write"])
    assert (await _request(fake, "PATCH", f"{conversation.id}/cancel/", key=scoped))[0] == 403
    other = fake.add_key(user="user-2")
    assert (await _request(fake, "PATCH", f"{conversation.id}/cancel/", key=other))[0] == 404
    path = f"{conversation.id}/append_message/"
    assert (await _request(fake, "POST", path, key=other, json_body={"content": "x"}))[0] == 404


async def test_append_message(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    path = f"{conversation.id}/append_message/"
    status, raw = await _request(fake, "POST", path, json_body={"content": "Saved."})
    assert status == 201
    new_id = json.loads(raw)["id"]
    assert conversation.messages[-1] == {"type": "ai", "content": "Saved.", "id": new_id}
    status, raw = await _request(fake, "POST", path, json_body={"content": "x" * 10001})
    assert (status, json.loads(raw)["code"]) == (400, "max_length")
    status, raw = await _request(fake, "POST", path, json_body={"content": None})
    assert (status, json.loads(raw)["code"]) == (400, "null")  # no allow_null here


async def test_an_appended_message_comes_after_what_the_run_has_produced(
    fake: FakePostHog,
) -> None:
    """The run's messages are in the graph state as they are produced: one appended while it
    runs comes after the question it has already stored. (The answer is slow enough that
    the append lands before it ends on a loaded machine: at 0.05 s a token it once did not.)"""
    fake.script_answer("slow answer", delay=0.5)
    body = _body("q")
    conversation_id = body["conversation"]
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + PATH, json=body, headers=_auth(fake)) as resp,
    ):
        await resp.content.readany()  # the echo of the question is out
        path = f"{conversation_id}/append_message/"
        status, _ = await _request(fake, "POST", path, json_body={"content": "Saved."})
        assert status == 201
    contents = [m["content"] for m in fake.conversations[conversation_id].messages]
    assert contents[:2] == ["q", "Saved."]


async def test_get_is_404_until_titled_then_shows_messages_with_nulls(fake: FakePostHog) -> None:
    fake.script_answer("answer", title=None)
    untitled = _body("q")
    await _post(fake, untitled)
    assert (await _request(fake, "GET", f"{untitled['conversation']}/"))[0] == 404
    titled = _body("Where are my users?")
    await _post(fake, titled)
    status, raw = await _request(fake, "GET", f"{titled['conversation']}/")
    assert status == 200
    conversation = json.loads(raw)
    assert conversation["title"] == "Where are my users?"
    assert conversation["status"] == "idle"
    assert [m["type"] for m in conversation["messages"]] == ["human", "ai"]
    assert conversation["messages"][1]["tool_calls"] is None  # model_dump keeps nulls
    assert conversation["pending_approvals"] == []


async def test_get_writes_every_message_with_the_null_fields_model_dump_keeps(
    fake: FakePostHog,
) -> None:
    """`ConversationSerializer` dumps each message with `model_dump()`: unset fields are null,
    `parent_tool_call_id` on every type; the stream's compact JSON leaves them out instead."""
    seeded = fake.seed_conversation(
        messages=[
            {"type": "human", "content": "hi", "id": "human-1"},  # an id given is kept
            {"type": "ai", "content": "calling"},
            {"type": "tool", "content": "done", "tool_call_id": "call_1"},
            {"type": "ai/failure"},
        ]
    )
    status, raw = await _request(fake, "GET", f"{seeded.id}/")
    assert status == 200
    ids = [m["id"] for m in seeded.messages]
    conversation = json.loads(raw)
    assert sorted(conversation) == sorted(
        [
            *("id", "status", "title", "topic", "user", "created_at", "updated_at", "type"),
            *("is_internal", "slack_thread_key", "slack_workspace_domain", "task", "messages"),
            *("has_unsupported_content", "agent_mode", "agent_runtime", "is_sandbox"),
            "pending_approvals",
        ]
    )
    assert conversation["has_unsupported_content"] is False
    assert conversation["messages"] == [
        {
            "type": "human",
            "content": "hi",
            "id": "human-1",
            "parent_tool_call_id": None,
            "ui_context": None,
            "trace_id": None,
        },
        {
            "type": "ai",
            "content": "calling",
            "id": ids[1],
            "parent_tool_call_id": None,
            "tool_calls": None,
            "meta": None,
        },
        {
            "type": "tool",
            "content": "done",
            "tool_call_id": "call_1",
            "id": ids[2],
            "parent_tool_call_id": None,
            "ui_payload": None,
        },
        {"type": "ai/failure", "id": ids[3], "parent_tool_call_id": None, "content": None},
    ]


@pytest.mark.parametrize(
    ("kind", "shown"),
    [("assistant", True), ("deep_research", True), ("slack", True), ("tool_call", False)],
)
async def test_only_the_chat_types_are_listed_and_retrieved(
    fake: FakePostHog, kind: str, shown: bool
) -> None:
    """`list` and `retrieve` keep `type ∈ {assistant, deep_research, slack}` only."""
    conversation = fake.seed_conversation(type=kind)
    status, raw = await _request(fake, "GET", f"{conversation.id}/")
    assert status == (200 if shown else 404)
    status, raw = await _request(fake, "GET", "")
    assert status == 200
    assert [c["id"] for c in json.loads(raw)["results"]] == ([conversation.id] if shown else [])


async def test_a_new_message_moves_its_conversation_to_the_top_of_the_list(
    fake: FakePostHog,
) -> None:
    """The run saves the conversation as it goes: `updated_at` moves, and `list` (newest
    `updated_at` first) shows it first."""
    older = fake.seed_conversation(title="Older")
    older.updated_at -= dt.timedelta(minutes=1)
    before = older.updated_at
    newer = fake.seed_conversation(title="Newer")
    await _post(fake, _body("q", older.id))
    status, raw = await _request(fake, "GET", "")
    assert status == 200
    listed = json.loads(raw)["results"]
    assert [c["id"] for c in listed] == [older.id, newer.id]
    assert older.updated_at > before
    stamps = [
        # Python 3.10's fromisoformat does not read a `Z`.
        {
            key: dt.datetime.fromisoformat(c[key].replace("Z", "+00:00"))
            for key in ("created_at", "updated_at")
        }
        for c in listed
    ]
    assert stamps[0]["updated_at"] > stamps[1]["updated_at"]
    assert stamps[0]["created_at"] < stamps[1]["created_at"]  # created_at stays as it was


async def test_each_user_is_one_userbasic_record(fake: FakePostHog) -> None:
    """`user` is PostHog's `UserBasic`: one record per user, the same wherever it shows (and
    in every fake: its uuid derives from the user's key)."""
    mine = fake.seed_conversation(title="Mine")
    theirs = fake.seed_conversation(user="user-2", title="Theirs")

    async def user_of(conversation: str, server: FakePostHog = fake) -> Any:
        status, raw = await _request(server, "GET", f"{conversation}/")
        assert status == 200
        return json.loads(raw)["user"]

    me = await user_of(mine.id)
    assert me == await user_of(mine.id)
    assert me == {
        "id": me["id"],
        "uuid": me["uuid"],
        "distinct_id": me["distinct_id"],
        "first_name": "user-1",
        "last_name": "",
        "email": "user-1@example.com",
        "is_email_verified": True,
        "hedgehog_config": None,
        "role_at_organization": None,
    }
    other = await user_of(theirs.id)
    assert other["first_name"] == "user-2"
    for key in ("id", "uuid", "distinct_id"):
        assert me[key] != other[key]
    assert {me["id"], other["id"]} == {1, 2}  # numbered as the fake meets them
    async with FakePostHog() as again:
        assert (await user_of(again.seed_conversation().id, again))["uuid"] == me["uuid"]


async def test_a_derived_title_is_the_questions_first_line_cut_at_60(fake: FakePostHog) -> None:
    """`title=""` (the default) makes the title from the question: its first line, 60 at most."""
    body = _body(" " + "x" * 70 + "\nsecond line")
    status, _, raw = await _post(fake, body)
    assert status == 200
    titles = [json.loads(d)["title"] for n, d in _events(raw) if n == "conversation"]
    assert titles == [None, "x" * 60]


async def test_other_users_conversations_can_be_read_but_not_listed(fake: FakePostHog) -> None:
    theirs = fake.seed_conversation(user="user-2", title="Theirs")
    mine = fake.seed_conversation(title="Mine")
    fake.seed_conversation(title=None)
    fake.seed_conversation(title="Internal", is_internal=True)
    async with fake.client() as ph:
        assert (await ph.conversations.get(theirs.id)).title == "Theirs"
        assert [c.id async for c in ph.conversations.list()] == [mine.id]


async def test_internal_conversations_cannot_be_retrieved(fake: FakePostHog) -> None:
    """`retrieve` filters `is_internal=False` like `list`; the owner's other actions do not."""
    internal = fake.seed_conversation(title="Internal", is_internal=True)
    assert (await _request(fake, "GET", f"{internal.id}/"))[0] == 404
    assert (await _request(fake, "PATCH", f"{internal.id}/cancel/"))[0] == 204
    path = f"{internal.id}/append_message/"
    assert (await _request(fake, "POST", path, json_body={"content": "x"}))[0] == 201
    assert (await _request(fake, "DELETE", f"{internal.id}/"))[0] == 204


async def test_delete_is_soft_and_hides_the_conversation(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    assert (await _request(fake, "DELETE", f"{conversation.id}/"))[0] == 204
    assert conversation.deleted
    assert (await _request(fake, "GET", f"{conversation.id}/"))[0] == 404
    assert (await _request(fake, "DELETE", f"{conversation.id}/"))[0] == 404


async def test_the_list_is_paged_by_the_fakes_page_size(fake: FakePostHog) -> None:
    fake.page_size = 1
    first = fake.seed_conversation(title="First")
    second = fake.seed_conversation(title="Second")
    first.updated_at -= dt.timedelta(minutes=1)
    status, raw = await _request(fake, "GET", "")
    assert status == 200
    page = json.loads(raw)
    assert (page["count"], [c["id"] for c in page["results"]]) == (2, [second.id])
    assert page["next"] is not None


async def test_older_servers_listed_messages(fake: FakePostHog) -> None:
    fake.seed_conversation(messages=[{"type": "human", "content": "hi"}])
    fake.conversations_list_includes_messages = True
    status, raw = await _request(fake, "GET", "")
    assert status == 200
    assert json.loads(raw)["results"][0]["messages"][0]["content"] == "hi"


async def test_a_dropped_connection_does_not_stop_the_generation(fake: FakePostHog) -> None:
    fake.script_answer("abcdefgh", token_size=2, delay=0.005, drop_after=3)
    body = _body("q")
    with pytest.raises(aiohttp.ClientPayloadError):
        await _post(fake, body)
    assert fake.ai_streams.dropped == 1
    await anyio.sleep(0.1)
    conversation = fake.conversations[body["conversation"]]
    conversation.refresh()
    assert conversation.status == "idle"
    assert conversation.messages[-1]["content"] == "abcdefgh"


async def test_the_fake_sees_clients_leave(fake: FakePostHog) -> None:
    fake.script_answer("slow", delay=0.05)
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + PATH, json=_body("q"), headers=_auth(fake)) as resp,
    ):
        await resp.content.readany()
        assert fake.ai_streams.open == 1
    await fake.wait_for_streams_closed()
    assert fake.ai_streams.disconnected == 1
    assert fake.ai_streams.completed == 0


async def test_the_session_header_is_what_posthog_reads(fake: FakePostHog) -> None:
    body = _body("q")
    await _post(fake, body, headers={"X-POSTHOG-SESSION-ID": "sess-1"})
    run = fake.conversations[body["conversation"]].run
    assert run is not None
    assert run.session_id == "sess-1"


async def test_a_resume_payload_starts_a_new_run_on_an_idle_conversation(
    fake: FakePostHog,
) -> None:
    """A resume of a pending approval runs (one that is not pending fails: see below)."""
    conversation = fake.seed_conversation(messages=_ASKING, pending_approvals=[_pending()])
    fake.script_answer("Approved and done.")
    payload = {"action": "approve", "proposal_id": "p1"}
    status, _, raw = await _post(fake, _body(None, conversation.id, resume_payload=payload))
    assert status == 200
    assert "Approved and done." in raw.decode()
    assert "human" not in raw.decode()


async def test_default_answers_when_nothing_is_scripted() -> None:
    async with FakePostHog() as fake, fake.client() as ph:
        result = await ph.conversations.create("anything?").until_done()
    assert result.text
    assert isinstance(result.messages[0], aposthog.models.messages.HumanMessage)


async def test_agent_mode_is_the_states_mode_or_its_default(fake: FakePostHog) -> None:
    """`ConversationSerializer.get_agent_mode`: the state's `agent_mode_or_default`, never null."""

    async def mode(conversation: str) -> Any:
        status, raw = await _request(fake, "GET", f"{conversation}/")
        assert status == 200
        return json.loads(raw)["agent_mode"]

    seeded = fake.seed_conversation()
    assert await mode(seeded.id) == "product_analytics"  # no mode was ever chosen
    chat = _body("q", agent_mode="sql")
    await _post(fake, chat)
    await fake.wait_for_streams_closed()
    assert await mode(chat["conversation"]) == "sql"
    await _post(fake, _body("again", chat["conversation"]))  # a message without a mode keeps it
    await fake.wait_for_streams_closed()
    assert await mode(chat["conversation"]) == "sql"
    for sent, shown in [
        ("plan", "sql"),
        ("execution", "product_analytics"),
        ("flags", "flags"),
    ]:
        await _post(fake, _body("more", chat["conversation"], agent_mode=sent))
        await fake.wait_for_streams_closed()
        assert await mode(chat["conversation"]) == shown
    research = _body("dig", agent_mode="research")
    await _post(fake, research)
    await fake.wait_for_streams_closed()
    assert await mode(research["conversation"]) == "product_analytics"
    fake.conversations_list_includes_messages = True  # an older server's list: full records
    status, raw = await _request(fake, "GET", "")
    assert status == 200
    listed = {c["id"]: c["agent_mode"] for c in json.loads(raw)["results"]}
    assert listed[seeded.id] == "product_analytics"
    assert listed[chat["conversation"]] == "flags"
    async with fake.client() as ph:
        got = await ph.conversations.get(seeded.id)
    assert got.agent_mode is aposthog.AgentMode.PRODUCT_ANALYTICS


async def test_the_conversation_record_shows_a_run_that_ended_after_its_reader_left(
    fake: FakePostHog,
) -> None:
    """
    A test reads `fake.conversations[id]` to check what its bot did. When the bot stops
    reading early, the run still ends server-side: once it has, the record's messages and
    title must show it, as its `status` (computed live) already says `idle`.
    """
    fake.script_answer("The answer is 42", token_size=4, delay=0.01, title="Answers")
    body = _body("What is it?")
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + PATH, json=body, headers=_auth(fake)) as resp,
    ):
        await resp.content.readuntil(b"\n\n")  # the `conversation` event only
    await fake.wait_for_streams_closed()
    conversation = fake.conversations[body["conversation"]]
    with anyio.fail_after(2):
        while conversation.status != "idle":  # noqa: ASYNC110
            await anyio.sleep(0.01)
    assert [m["type"] for m in conversation.messages] == ["human", "ai"]
    assert conversation.title == "Answers"


async def test_fail_false_scripts_an_answer_that_does_not_fail(fake: FakePostHog) -> None:
    """
    `AIScript.fail` is typed `str | bool | None`; `True` is PostHog's bare failure, so
    `False` (a parametrized test's "no failure" case) must be the normal answer.
    """
    fake.script_answer("All fine", fail=False)
    _, _, raw = await _post(fake, _body("q", fake.seed_conversation().id))
    last = json.loads(_events(raw)[-1][1])
    assert (last["type"], last.get("content")) == ("ai", "All fine")


@pytest.mark.parametrize("spell", [str.upper, lambda text: uuid.UUID(text).hex])
async def test_the_conversation_routes_find_any_spelling_of_its_id(
    fake: FakePostHog, spell: Any
) -> None:
    """
    Django's `UUIDField` reads `E157…` and `e157…` without hyphens as the same UUID, so
    PostHog's retrieve, cancel, append_message and queue find the conversation under
    either spelling (as `POST conversations/` already does here); the fake answered 404.
    """
    conversation = fake.seed_conversation()
    other = spell(conversation.id)
    assert (await _request(fake, "GET", f"{other}/"))[0] == 200
    assert (await _request(fake, "PATCH", f"{other}/cancel/"))[0] == 204
    assert (await _request(fake, "GET", f"{other}/queue/"))[0] == 200
    status, _ = await _request(fake, "POST", f"{other}/append_message/", json_body={"content": "x"})
    assert status == 201


async def test_a_conversation_seeded_under_another_spelling_is_reachable(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `seed_conversation(id=uuid.uuid4().hex)` is a natural way to seed a known id. PostHog
    stores a conversation under its UUID, so the client's `get()` (which sends the
    canonical spelling) must find it, and a follow-up must not create a second one.
    """
    known = uuid.uuid4()
    fake.seed_conversation(id=known.hex, messages=[{"type": "human", "content": "hi"}])
    conversation = await ph.conversations.get(known)
    assert str(conversation.id) == str(known)
    await ph.conversations.create("again", conversation=known).until_done()
    assert len(fake.conversations) == 1


async def test_a_zero_keepalive_interval_does_not_flood_the_stream(fake: FakePostHog) -> None:
    """
    `keepalive_interval = 0` (a test wanting keepalives "all the time", or mistaking 0 for
    off) must not turn the stream into a busy loop (PostHog's own loop waits
    `max(0.1, SSE_KEEPALIVE_INTERVAL - elapsed)` between keepalives): it is refused.
    """
    for bad in (0, -1, True, "15"):
        with pytest.raises(ValueError, match="keepalive_interval"):
            fake.keepalive_interval = bad  # type: ignore[assignment]
    assert 15.0 == fake.keepalive_interval  # unchanged
    fake.keepalive_interval = 0.05
    fake.script_answer("ab", delay=0.2)
    _, _, raw = await _post(fake, _body("q", fake.seed_conversation().id))
    assert 1 <= raw.count(b": keepalive\n\n") < 20


async def test_a_negative_chunk_size_is_refused_when_scripted(fake: FakePostHog) -> None:
    """A `chunk_size` below 1 cannot split anything: refused at once, not a silent, empty stream."""
    with pytest.raises(ValueError, match="chunk_size"):
        fake.script_answer("x", chunk_size=-1)


async def test_get_leaves_out_empty_answers_and_context_messages(fake: FakePostHog) -> None:
    """
    `ConversationSerializer.get_messages` filters the state's messages through
    `ee.hogai.utils.helpers.should_output_assistant_message`: an `ai` message with no
    content, no tool calls and no meta, and every `context` message, are left out.
    """
    conversation = fake.seed_conversation(
        messages=[{"type": "human", "content": "q"}, {"type": "context", "content": "page"}]
    )
    fake.script_answer("")  # an empty final answer
    await _post(fake, _body("again", conversation.id))
    status, raw = await _request(fake, "GET", f"{conversation.id}/")
    assert status == 200
    shown = [(m["type"], m["content"]) for m in json.loads(raw)["messages"]]
    assert shown == [("human", "q"), ("human", "again")]


async def test_a_scripted_answer_without_text_gets_the_default_answer(fake: FakePostHog) -> None:
    """
    `script_answer()` takes the text as optional: a test that only scripts how the answer
    behaves (`script_answer(delay=0.05)`, `script_answer(fail=True)`) gets the default
    answer, not a 500 from the fake itself in place of the scripted behaviour.
    """
    script = fake.script_answer(token_size=100)
    assert AIScript().text == script.text
    async with fake.client() as ph:
        result = await ph.conversations.create("Hi?").until_done()
    assert AIScript().text == result.text


async def test_an_aiscript_passed_as_the_text_is_refused_at_the_call(fake: FakePostHog) -> None:
    """
    `script_answer(text, **options)` builds the script itself; a ready `AIScript` given
    as its text (`script_answer(AIScript(...))`) was queued as the answer's text, and the
    next message got a 500 from the fake. It is a `TypeError` naming `text` at the call,
    saying where a ready script goes (`fake.ai_scripts`), and nothing is queued.
    """
    script = AIScript(text="scripted")
    with pytest.raises(TypeError, match=r"text.*AIScript.*ai_scripts\.append"):
        fake.script_answer(script)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text must be a str or None, got 42"):
        fake.script_answer(42)  # type: ignore[arg-type]
    assert not fake.ai_scripts
    fake.ai_scripts.append(script)  # the way to queue a script built beforehand
    async with fake.client() as ph:
        result = await ph.conversations.create("Hi?").until_done()
    assert "scripted" == result.text


# ---------------------------------------------------------------------- approvals as decided


def _pending(proposal: str = "p1", call: str = "call_1") -> dict[str, Any]:
    return {
        "proposal_id": proposal,
        "decision_status": "pending",
        "tool_name": "create_feature_flag",
        "preview": "Create flag 'beta'",
        "payload": {"key": "beta"},
        "original_tool_call_id": call,
        "message_id": str(uuid.uuid4()),
    }


_ASKING: list[dict[str, Any]] = [
    {"type": "human", "content": "Make a flag", "id": "h1"},
    {
        "type": "ai",
        "content": "I'll create it.",
        "id": "a0",
        "tool_calls": [{"id": "call_1", "name": "create_feature_flag", "args": {}}],
    },
]


async def _approvals(fake: FakePostHog, conversation: str) -> dict[str, str]:
    status, raw = await _request(fake, "GET", f"{conversation}/")
    assert status == 200
    return {a["proposal_id"]: a["decision_status"] for a in json.loads(raw)["pending_approvals"]}


@pytest.mark.parametrize("known", [False, True], ids=["unknown-proposal", "decided-proposal"])
async def test_a_resume_for_a_proposal_that_is_not_pending_fails_the_run(
    fake: FakePostHog, known: bool
) -> None:
    """`BaseAgentRunner._init_or_update_state` (ee/hogai/core/runner.py) looks the
    `proposal_id` up among the checkpoint's pending `ApprovalRequest` interrupts; none
    (an unknown id, or one decided already: approving twice) expires it and raises
    `ValueError("Approval does not match a pending operation")`, so the workflow fails and
    the HTTP stream gets `AgentExecutor._failure_message()`, never an answer."""
    decided = {**_pending(), "decision_status": "approved"}
    conversation = fake.seed_conversation(
        messages=_ASKING, pending_approvals=[decided] if known else []
    )
    fake.script_answer("Approved and done.")
    payload = {"action": "approve", "proposal_id": "p1"}
    status, _, raw = await _post(fake, _body(None, conversation.id, resume_payload=payload))
    assert status == 200
    assert "Approved and done." not in raw.decode()
    assert '"ai/failure"' in raw.decode()


@pytest.mark.parametrize(("action", "shown"), [("approve", "approved"), ("reject", "rejected")])
async def test_a_resume_records_its_decision(fake: FakePostHog, action: str, shown: str) -> None:
    conversation = fake.seed_conversation(messages=_ASKING, pending_approvals=[_pending()])
    payload = {"action": action, "proposal_id": "p1"}
    status, _, _ = await _post(fake, _body(None, conversation.id, resume_payload=payload))
    assert status == 200
    await fake.wait_for_streams_closed()
    assert await _approvals(fake, conversation.id) == {"p1": shown}


async def test_a_new_message_instead_of_a_decision_auto_rejects_the_approval(
    fake: FakePostHog,
) -> None:
    """`_init_or_update_state`: a new message without `resume_payload` on a conversation
    waiting for approval falls through to `_expire_pending_approvals()`: every pending card
    becomes `auto_rejected` (the frontend then shows it as expired). In the fake the card
    stays `pending`, and, since a pending approval clears the queue at a run's end, every
    later run of the conversation drops the messages queued behind it."""
    conversation = fake.seed_conversation(messages=_ASKING, pending_approvals=[_pending()])
    status, _, _ = await _post(fake, _body("Never mind, do something else", conversation.id))
    assert status == 200
    await fake.wait_for_streams_closed()
    assert await _approvals(fake, conversation.id) == {"p1": "auto_rejected"}


async def test_a_scripted_run_can_end_awaiting_approval(fake: FakePostHog) -> None:
    """
    `approval=`: the run ends with the `ai` message calling the tool and a pending card
    (PostHog's `ApprovalPayload`, its `message_id` a uuid4 of its own); the conversation is
    idle. Approving it records the decision and runs the next scripted answer.
    """
    conversation = fake.seed_conversation()
    fake.script_answer(
        "I'll create it.",
        approval="create_feature_flag",
        approval_preview="Create flag 'beta'",
        approval_payload={"key": "beta"},
    )
    status, _, raw = await _post(fake, _body("Make a flag", conversation.id))
    assert status == 200
    messages = [json.loads(data) for name, data in _events(raw) if name == "message"]
    final = messages[-1]
    assert (final["type"], final["content"]) == ("ai", "I'll create it.")
    [call] = final["tool_calls"]
    assert (call["name"], call["args"], call["type"]) == (
        "create_feature_flag",
        {"key": "beta"},
        "tool_call",
    )
    await fake.wait_for_streams_closed()
    status, body = await _request(fake, "GET", f"{conversation.id}/")
    assert status == 200
    got = json.loads(body)
    assert got["status"] == "idle"
    [card] = got["pending_approvals"]
    assert card["decision_status"] == "pending"
    assert (card["tool_name"], card["preview"], card["payload"]) == (
        "create_feature_flag",
        "Create flag 'beta'",
        {"key": "beta"},
    )
    assert card["original_tool_call_id"] == call["id"]
    assert uuid.UUID(card["message_id"]).version == 4
    assert card["message_id"] != final["id"]
    uuid.UUID(card["proposal_id"])

    fake.script_answer("Created.")
    payload = {"action": "approve", "proposal_id": card["proposal_id"]}
    status, _, raw = await _post(fake, _body(None, conversation.id, resume_payload=payload))
    assert status == 200
    assert "Created." in raw.decode()
    await fake.wait_for_streams_closed()
    assert await _approvals(fake, conversation.id) == {card["proposal_id"]: "approved"}


def test_an_approval_script_cannot_also_fail() -> None:
    with pytest.raises(ValueError, match="approval"):
        AIScript(approval="create_feature_flag", fail=True)
    with pytest.raises(ValueError, match="approval"):
        AIScript(approval="create_feature_flag", generation_error=True)


async def test_a_conversation_post_dropped_after_it_was_carried_out_runs_on(
    fake: FakePostHog,
) -> None:
    """The run began and the answer was lost: the client re-attaches (`content=None`)."""
    fake.script_answer("Hello there, friend.")
    fake.drop_next(method="POST", path="conversations", after=True)
    async with fake.client() as ph:
        result = await ph.conversations.create("hi").until_done()
    assert result.complete
    assert result.text == "Hello there, friend."
    posted = [r.json().get("content") for r in fake.requests if r.method == "POST"]
    assert posted == ["hi", None]


_WRONG_SCRIPT_OPTIONS = {
    "token_size": {"token_size": 1.5},
    "chunk_size": {"chunk_size": 2.5},
    "delay-inf": {"delay": math.inf},
    "fail_after-float": {"fail": "Oops", "fail_after": 2.5},
    "fail_after-str": {"fail": "Oops", "fail_after": "2"},
    "end_after_connections": {"end_after_connections": "2"},
    "drop_after": {"drop_after": "3"},
    "text-None": {"text": None},
    "text-int": {"text": 5},
    "tool_text-None": {"tool": "search", "tool_text": None},
    "tool-int": {"tool": 5},
    "title-int": {"title": 5},
    "raw_events-str": {"raw_events": "ab"},
    "raw_events-pair-short": {"raw_events": [("message",)]},
    "stream_max_length-str": {"stream_max_length": "10"},
    "approval-int": {"approval": 5},
    "approval_payload": {"approval": "create_feature_flag", "approval_payload": 5},
}


@pytest.mark.parametrize(
    "options", list(_WRONG_SCRIPT_OPTIONS.values()), ids=list(_WRONG_SCRIPT_OPTIONS)
)
def test_a_script_option_of_the_wrong_type_is_refused_when_the_script_is_made(
    options: dict[str, Any],
) -> None:
    """
    `script_answer` refuses a non-str text because, "queued, a non-str text failed only at
    the next message, as a 500"; a script built beforehand (`fake.ai_scripts.append`, as
    the docstrings advise) was not checked at all, and counts took floats. Each of these
    was queued, then broke the next message: `token_size=1.5`, `fail_after=2.5` or `"2"`,
    `end_after_connections="2"`, `text=None` or `5`, `tool_text=None`, `raw_events="ab"`,
    a non-mapping `approval_payload` made the create the fake's JSON 500 (the script
    spent); `chunk_size=2.5` and `drop_after="3"` raised inside the stream, which aiohttp
    cut, so the client re-attached from a cut the script never asked for; an infinite
    `delay` held the stream open for good. Each is refused where the script is made.
    """
    with pytest.raises((TypeError, ValueError)):
        AIScript(**options)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"title": 5}, TypeError),
        ({"user": 5}, TypeError),
        ({"user": ""}, TypeError),
        ({"type": None}, TypeError),
        ({"is_internal": "no"}, TypeError),
        ({"messages": ["hi"]}, TypeError),
        ({"messages": [{"content": "hi"}]}, ValueError),
        ({"pending_approvals": [5]}, TypeError),
    ],
    ids=[
        "title",
        "user",
        "user-empty",
        "type",
        "is_internal",
        "message-str",
        "message-untyped",
        "approval",
    ],
)
def test_a_seeded_conversation_refuses_what_posthog_could_not_hold(
    options: dict[str, Any], error: type[Exception]
) -> None:
    """`seed_conversation(title=5)`, `user=5` or `is_internal="no"` were kept and served
    as bodies PostHog never sends (the client's `ResponseDecodeError`, not the test's
    subject), and a message without its `type` broke the next read with the fake's 500:
    each is refused where it is given, and nothing is seeded."""
    fake = FakePostHog()
    with pytest.raises(error):
        fake.seed_conversation(**options)
    assert {} == fake.conversations
