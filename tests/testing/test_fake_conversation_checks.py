"""FakePostHog's checks before a PostHog AI answer streams: validation, throttles, quota."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import aposthog
from aposthog.testing import FakePostHog
from aposthog.testing._conversation_checks import AGENT_MODES

from .conversation_http import body as _body
from .conversation_http import post as _post

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("change", "attr", "code"),
    [
        ({"content": ""}, "content", "blank"),
        ({"content": "   "}, "content", "blank"),
        ({"content": "x" * 40001}, "content", "max_length"),
        ({"trace_id": "nope"}, "trace_id", "invalid_input"),
        ({"conversation": None}, "conversation", "null"),
        ({"agent_mode": "warp"}, "agent_mode", "invalid_choice"),
        ({"agent_mode": "onboarding"}, "agent_mode", "invalid_choice"),  # dropped by PostHog
        ({"contextual_tools": []}, "contextual_tools", "not_a_dict"),
        ({"ui_context": None}, "ui_context", "null"),  # a JSONField without allow_null
        ({"billing_context": None}, "billing_context", "null"),  # likewise
    ],
)
async def test_validation_errors(
    fake: FakePostHog, change: dict[str, Any], attr: str, code: str
) -> None:
    status, _, raw = await _post(fake, {**_body("q"), **change})
    error = json.loads(raw)
    assert status == 400
    assert (error["type"], error["attr"], error["code"]) == ("validation_error", attr, code)


async def test_a_null_contextual_tool_is_the_dict_fields_child_error(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `contextual_tools` is `DictField(child=JSONField())`: each value runs through the
    child, a JSONField without `allow_null`, so a null value is "This field may not be
    null." keyed by its dict key (drf-exceptions-hog: `contextual_tools__<key>`), and
    nothing streams. The fake only checks that the field is a dict, so a client that
    sends `contextual_tools={"search_docs": None}` gets an answer here and a 400 from
    PostHog. `QueueMessageSerializer` declares the same field.
    """
    change: dict[str, Any] = {"contextual_tools": {"create_insight": {}, "search_docs": None}}
    status, _, raw = await _post(fake, {**_body("q"), **change})
    assert (status, json.loads(raw)) == (
        400,
        {
            "type": "validation_error",
            "code": "null",
            "detail": "This field may not be null.",
            "attr": "contextual_tools__search_docs",
        },
    )
    # The client refuses it before sending (the 400 comes after PostHog's AI throttle).
    sent = len(fake.requests)
    with pytest.raises(ValueError, match="contextual_tools"):
        ph.conversations.create("q", contextual_tools={"search_docs": None})
    assert len(fake.requests) == sent


async def test_an_integer_is_a_uuid_as_drf_reads_it(fake: FakePostHog) -> None:
    """DRF's `UUIDField.to_internal_value` reads an int as `uuid.UUID(int=...)`."""
    status, _, raw = await _post(fake, _body("q", 5, trace_id=7))  # type: ignore[arg-type]
    assert status == 200, raw
    first = raw.split(b"\n\n")[0].split(b"data: ", 1)[1]
    assert json.loads(first)["id"] == "00000000-0000-0000-0000-000000000005"


async def test_every_agent_mode_posthog_lists_is_accepted(fake: FakePostHog) -> None:
    posthogs = {
        "product_analytics", "sql", "session_replay", "error_tracking", "plan", "execution",
        "survey", "research", "flags", "llm_analytics", "sandbox", "user_interview",
        "customer_analytics",
    }  # fmt: skip
    assert posthogs == AGENT_MODES
    fake.ai_burst_limit = fake.ai_research_burst_limit = 100
    for mode in sorted(posthogs - {"sandbox"}):  # sandbox: 400, the open endpoint's
        status, _, raw = await _post(fake, _body("q", agent_mode=mode))
        assert status == 200, (mode, raw)


# A realistic MaxUIContext, every key PostHog's newest version knows.
UI_CONTEXT: dict[str, Any] = {
    "dashboards": [
        {"type": "dashboard", "id": 7, "name": "KPIs", "insights": [], "filters": {}},
    ],
    "insights": [
        {
            "type": "insight",
            "id": "AbC12xYz",
            "name": "Weekly signups",
            "query": {"kind": "HogQLQuery", "query": "select count() from events"},
        }
    ],
    "events": [{"type": "event", "id": "$pageview", "name": "$pageview"}],
    "actions": [{"type": "action", "id": 3, "name": "Signed up"}],
    "error_tracking_issues": [
        {"type": "error_tracking_issue", "id": "0190a6c4-1c2d-7e6f-8a9b-0c1d2e3f4a5b"}
    ],
    "evaluations": [
        {"type": "evaluation", "id": "ev-1", "evaluation_type": "hog", "hog_source": "true"}
    ],
    "notebooks": [{"type": "notebook", "id": "nb-short-id", "name": "Notes"}],
    "form_answers": {"question-1": "Yes"},
    "voice_mode": False,
}


@pytest.mark.parametrize(
    "ui_context",
    [
        {},
        UI_CONTEXT,
        dict.fromkeys(UI_CONTEXT),  # every key null
        {"events": [{"id": "signup"}]},  # `type` defaults to the list's kind
        {"voice_mode": "true"},  # pydantic's lax bool
        {"voice_mode": "Yes"},  # its strings in any case
        {"voice_mode": 1},
    ],
)
async def test_a_ui_context_posthog_accepts(fake: FakePostHog, ui_context: Any) -> None:
    status, _, raw = await _post(fake, _body("q", ui_context=ui_context))
    assert status == 200, raw
    status, _, raw = await _post(fake, _body("q", ui_context={**ui_context, "page": "/home"}))
    assert (status, json.loads(raw)["detail"]) == (400, "Invalid message content.")


@pytest.mark.parametrize(
    "ui_context",
    [
        [],
        "dashboards",
        3,
        {"dashboard": []},  # an unknown key (extra="forbid")
        {**UI_CONTEXT, "filters_override": {}},
        {"dashboards": {}},
        {"insights": "AbC12xYz"},
        {"events": [1]},
        {"events": [{"type": "action", "id": "x"}]},
        {"actions": [{"type": "action", "id": 3}]},  # `name` is required
        {"dashboards": [{"id": 7, "filters": {}}]},  # so are `insights`…
        {"dashboards": [{"id": 7, "insights": []}]},  # …and `filters`…
        {"insights": [{"id": "AbC12xYz"}]},  # …and an insight's `query`
        {"evaluations": [{"id": "ev-1"}]},  # and `evaluation_type`
        {"form_answers": ["Yes"]},
        {"form_answers": {"question-1": 1}},
        {"voice_mode": "sometimes"},
        {"voice_mode": 2},
        {"voice_mode": []},
    ],
)
async def test_a_ui_context_posthog_refuses(fake: FakePostHog, ui_context: Any) -> None:
    status, _, raw = await _post(fake, _body("q", ui_context=ui_context))
    assert status == 400
    error = json.loads(raw)
    assert error == {
        "type": "validation_error",
        "code": "invalid_input",
        "detail": "Invalid message content.",
        "attr": None,
    }


@pytest.mark.parametrize(
    ("change", "attr"),
    [
        ({"content": "", "conversation": "nope"}, "content"),
        ({"conversation": "nope", "contextual_tools": []}, "conversation"),
        ({"contextual_tools": [], "trace_id": "nope"}, "contextual_tools"),
    ],
)
async def test_the_first_failing_field_in_declaration_order_is_reported(
    fake: FakePostHog, change: dict[str, Any], attr: str
) -> None:
    """drf-exceptions-hog reports one error: the first of `MessageSerializer`'s fields."""
    status, _, raw = await _post(fake, {**_body("q"), **change})
    assert (status, json.loads(raw)["attr"]) == (400, attr)


async def test_ui_context_is_checked_after_every_field(fake: FakePostHog) -> None:
    """Serializer.validate() runs only once the fields passed; null is the field's own error."""
    body = _body("q", ui_context={"bogus": 1}, agent_mode="warp")
    status, _, raw = await _post(fake, body)
    error = json.loads(raw)
    assert (status, error["attr"], error["detail"]) == (
        400,
        "agent_mode",
        '"warp" is not a valid choice.',  # DRF's ChoiceField message
    )
    body = _body("q", ui_context=None, trace_id="nope")
    status, _, raw = await _post(fake, body)
    assert (status, json.loads(raw)["attr"]) == (400, "ui_context")


async def test_without_a_message_ui_context_is_not_checked(fake: FakePostHog) -> None:
    conversation = fake.seed_conversation()
    for content, detail in [
        ("q", "Invalid message content."),
        (None, "Cannot continue streaming from an idle conversation"),
    ]:
        body = _body(content, conversation.id, ui_context={"bogus": 1})
        status, _, raw = await _post(fake, body)
        assert (status, json.loads(raw)["detail"]) == (400, detail)


async def test_the_client_passes_ui_context_and_raises_posthogs_400(fake: FakePostHog) -> None:
    async with fake.client() as ph:
        with pytest.raises(aposthog.BadRequestError, match="Invalid message content"):
            await ph.conversations.create("q", ui_context={"dashboard": []}).until_done()
        stream = ph.conversations.create("q", ui_context=UI_CONTEXT)
        result = await stream.until_done()
        # PostHog keeps the context on the human message: in the echo and in the conversation.
        echoed = result.messages[0]
        assert isinstance(echoed, aposthog.HumanMessage)
        assert UI_CONTEXT == echoed.ui_context
        stored = (await ph.conversations.get(stream.conversation_id)).messages[0]
        assert isinstance(stored, aposthog.HumanMessage)
        assert UI_CONTEXT == stored.ui_context
        plain = ph.conversations.create("again", conversation=stream.conversation_id)
        again = (await plain.until_done()).messages[0]
        assert isinstance(again, aposthog.HumanMessage)
        assert again.ui_context is None  # none sent, none kept (not an empty one)
    assert result.text


async def test_missing_fields_and_sandboxes(fake: FakePostHog) -> None:
    body = _body("q")
    del body["trace_id"]
    status, _, raw = await _post(fake, body)
    assert (status, json.loads(raw)["code"]) == (400, "required")
    status, _, raw = await _post(fake, _body("q", is_sandbox=True))
    assert status == 400
    assert "open endpoint" in json.loads(raw)["detail"]
    status, _, raw = await _post(fake, _body("q", agent_mode="sandbox"))  # the mode's choice too
    assert (status, json.loads(raw)["detail"]) == (400, _SANDBOX_DETAIL)


async def test_the_ai_throttle_is_per_user_and_sends_no_retry_after(fake: FakePostHog) -> None:
    fake.ai_burst_limit = 2
    for _ in range(2):
        assert (await _post(fake, _body("q")))[0] == 200
    status, headers, raw = await _post(fake, _body("q"))
    assert status == 429
    assert "Retry-After" not in headers
    detail = json.loads(raw)["detail"]
    assert detail.startswith("You've reached PostHog AI's usage limit for the moment.")
    assert re.search(
        r"Please try again in \d+ seconds\. Expected available in \d+ seconds?\.$", detail
    )
    other = fake.add_key(user="user-2")
    assert (await _post(fake, _body("q"), key=other))[0] == 200


async def test_research_has_its_own_throttle(fake: FakePostHog) -> None:
    fake.ai_research_burst_limit = 1
    status, _, raw = await _post(fake, _body("q", agent_mode="research"))
    assert status == 200
    # A conversation created in research mode is a `deep_research` one: its first event says.
    first = raw.split(b"\n\n")[0]
    assert first.startswith(b"event: conversation\ndata: ")
    assert json.loads(first.split(b"data: ", 1)[1])["type"] == "deep_research"
    status, _, raw = await _post(fake, _body("q", agent_mode="research"))
    assert status == 429
    assert "Research mode" in json.loads(raw)["detail"]
    assert (await _post(fake, _body("q")))[0] == 200


async def test_a_new_message_turns_idle_research_into_a_chat(fake: FakePostHog) -> None:
    """An idle deep_research conversation given a message becomes `assistant` (server create())."""
    research = fake.seed_conversation(title="t", type="deep_research")
    fake.ai_research_burst_limit = 1
    # The throttle sees the old type: this first follow-up still counts as research.
    assert (await _post(fake, _body("more", research.id)))[0] == 200
    await fake.wait_for_streams_closed()
    assert research.type == "assistant"
    # From now on the normal AI throttle applies, not the spent research one.
    assert (await _post(fake, _body("again", research.id)))[0] == 200


async def test_a_deleted_research_conversation_is_not_research_for_the_throttle(
    fake: FakePostHog,
) -> None:
    """`_is_research_request` looks the conversation up without the deleted ones: a message to
    a deleted `deep_research` one passes the chat throttle, then gets create()'s 404."""
    gone = fake.seed_conversation(type="deep_research")
    gone.deleted = True
    fake.ai_research_burst_limit = 1
    assert (await _post(fake, _body("q", agent_mode="research")))[0] == 200  # spends it
    status, _, raw = await _post(fake, _body("more", gone.id))
    assert (status, json.loads(raw)) == (404, {"error": "Conversation does not exist"})


async def test_a_research_conversation_under_another_spelling_counts_as_research(
    fake: FakePostHog,
) -> None:
    """`_is_research_request` finds the conversation through Django's `UUIDField`, which takes
    any spelling of its id: a message to it is research for the throttle whatever the case."""
    research = fake.seed_conversation(type="deep_research")
    fake.ai_research_burst_limit = 1
    assert (await _post(fake, _body("q", agent_mode="research")))[0] == 200  # spends it
    status, _, raw = await _post(fake, _body("more", research.id.upper()))
    assert status == 429  # the fake streams a chat answer
    assert "Research mode" in json.loads(raw)["detail"]


async def test_a_resume_keeps_research_and_its_throttle(fake: FakePostHog) -> None:
    research = fake.seed_conversation(title="t", type="deep_research")
    payload = {"action": "approve", "proposal_id": "p"}
    assert (await _post(fake, _body("more", research.id, resume_payload=payload)))[0] == 200
    assert research.type == "deep_research"


async def test_the_ai_quota(fake: FakePostHog) -> None:
    fake.ai_quota_exceeded = True
    status, _, raw = await _post(fake, _body("q"))
    assert (status, json.loads(raw)["code"]) == (402, "quota_limit_exceeded")
    # The AI throttles come first (DRF's `initial()`, before create() reads the quota).
    fake.ai_burst_limit = 1  # the 402 above counted in it
    status, _, raw = await _post(fake, _body("q"))
    assert (status, json.loads(raw)["type"]) == (429, "throttled_error")


_SANDBOX_DETAIL = "Sandbox conversations must be opened via the open endpoint."


@pytest.mark.parametrize(
    "value", [True, "true", "True", "TRUE", "tRuE", "t", "Y", "yes", "On", "1", 1, 1.0]
)
async def test_is_sandbox_is_true_for_every_value_drf_reads_as_true(
    fake: FakePostHog, value: Any
) -> None:
    """`BooleanField`: DRF's TRUE_VALUES, a string in any case; the body asks for the sandbox."""
    status, _, raw = await _post(fake, _body("q", is_sandbox=value))
    assert (status, json.loads(raw)) == (
        400,
        {
            "type": "validation_error",
            "code": "invalid_input",
            "detail": _SANDBOX_DETAIL,
            "attr": None,
        },
    )


@pytest.mark.parametrize("value", [False, "false", "FALSE", "f", "N", "no", "Off", "0", 0, 0.0])
async def test_is_sandbox_false_in_any_spelling_is_a_plain_chat(
    fake: FakePostHog, value: Any
) -> None:
    status, _, raw = await _post(fake, _body("q", is_sandbox=value))
    assert status == 200, raw


@pytest.mark.parametrize(
    ("value", "detail", "code"),
    [
        (None, "This field may not be null.", "null"),  # no allow_null
        ("", "Must be a valid boolean.", "invalid_input"),  # a null spelling, not allowed
        ("null", "Must be a valid boolean.", "invalid_input"),
        (" true", "Must be a valid boolean.", "invalid_input"),  # not trimmed
        ("maybe", "Must be a valid boolean.", "invalid_input"),
        (2, "Must be a valid boolean.", "invalid_input"),
        (-1, "Must be a valid boolean.", "invalid_input"),
        (0.5, "Must be a valid boolean.", "invalid_input"),
        ([], "Must be a valid boolean.", "invalid_input"),
        ([True], "Must be a valid boolean.", "invalid_input"),
        ({}, "Must be a valid boolean.", "invalid_input"),
    ],
)
async def test_is_sandbox_drf_cannot_read_is_the_fields_400(
    fake: FakePostHog, value: Any, detail: str, code: str
) -> None:
    status, _, raw = await _post(fake, _body("q", is_sandbox=value))
    assert (status, json.loads(raw)) == (
        400,
        {"type": "validation_error", "code": code, "detail": detail, "attr": "is_sandbox"},
    )


async def test_is_sandbox_is_checked_in_posthogs_order(fake: FakePostHog) -> None:
    # A field error: before the conversation is looked up (an unknown one, no message).
    status, _, raw = await _post(fake, _body(None, is_sandbox="maybe"))
    assert (status, json.loads(raw)["attr"]) == (400, "is_sandbox")
    # After the fields declared before it.
    status, _, raw = await _post(fake, _body("q", is_sandbox="maybe", agent_mode="warp"))
    assert (status, json.loads(raw)["attr"]) == (400, "agent_mode")
    # A true value is create()'s: after the owner and deletion checks…
    theirs = fake.seed_conversation(user="user-2")
    status, _, raw = await _post(fake, _body("q", theirs.id, is_sandbox="yes"))
    assert (status, json.loads(raw)) == (400, {"error": "Cannot access other users' conversations"})
    gone = fake.seed_conversation()
    gone.deleted = True
    status, _, raw = await _post(fake, _body("q", gone.id, is_sandbox="yes"))
    assert (status, json.loads(raw)) == (404, {"error": "Conversation does not exist"})
    # …and before the idle check of a re-attach.
    idle = fake.seed_conversation()
    status, _, raw = await _post(fake, _body(None, idle.id, is_sandbox=1))
    assert (status, json.loads(raw)["detail"]) == (400, _SANDBOX_DETAIL)


@pytest.mark.parametrize(
    ("value", "detail", "code"),
    [
        (None, "This field may not be null.", "null"),
        ("", "This field may not be blank.", "blank"),
        ("   ", "This field may not be blank.", "blank"),
        (True, "Not a valid string.", "invalid_input"),  # DRF refuses a bool…
        ({}, "Not a valid string.", "invalid_input"),
        (["sess"], "Not a valid string.", "invalid_input"),
        ("se\x00ss", "Null characters are not allowed.", "null_characters_not_allowed"),
        (
            "\ud800",
            "Surrogate characters are not allowed: U+D800.",
            "surrogate_characters_not_allowed",
        ),
    ],
)
async def test_session_id_in_the_body_is_a_drf_charfield(
    fake: FakePostHog, value: Any, detail: str, code: str
) -> None:
    status, _, raw = await _post(fake, _body("q", session_id=value))
    assert (status, json.loads(raw)) == (
        400,
        {"type": "validation_error", "code": code, "detail": detail, "attr": "session_id"},
    )


@pytest.mark.parametrize("value", ["sess-1", 12, 1.5])  # …but takes a number as its string
async def test_a_session_id_drf_reads_is_accepted(fake: FakePostHog, value: Any) -> None:
    body = _body("q", session_id=value)
    status, _, raw = await _post(fake, body)
    assert status == 200, raw
    run = fake.conversations[body["conversation"]].run
    assert run is not None
    assert run.session_id is None  # PostHog reads the header, not the body


async def test_session_id_is_checked_after_trace_id_and_before_agent_mode(
    fake: FakePostHog,
) -> None:
    status, _, raw = await _post(fake, _body("q", session_id=None, trace_id="nope"))
    assert (status, json.loads(raw)["attr"]) == (400, "trace_id")
    status, _, raw = await _post(fake, _body("q", session_id=None, agent_mode="warp"))
    assert (status, json.loads(raw)["attr"]) == (400, "session_id")


@pytest.mark.parametrize(
    ("content", "detail", "code"),
    [
        ("a\x00b", "Null characters are not allowed.", "null_characters_not_allowed"),
        (
            "a\udc00b",
            "Surrogate characters are not allowed: U+DC00.",
            "surrogate_characters_not_allowed",
        ),
        ("\x00" * 40001, "Ensure this field has no more than 40000 characters.", "max_length"),
    ],
)
async def test_content_gets_every_charfield_validator(
    fake: FakePostHog, content: str, detail: str, code: str
) -> None:
    status, _, raw = await _post(fake, _body(content))
    assert (status, json.loads(raw)) == (
        400,
        {"type": "validation_error", "code": code, "detail": detail, "attr": "content"},
    )
