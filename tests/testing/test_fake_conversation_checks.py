"""FakePostHog's checks before a PostHog AI answer streams: validation, throttles, quota."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from aposthog.testing import FakePostHog

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
        ({"contextual_tools": []}, "contextual_tools", "not_a_dict"),
    ],
)
async def test_validation_errors(
    fake: FakePostHog, change: dict[str, Any], attr: str, code: str
) -> None:
    status, _, raw = await _post(fake, {**_body("q"), **change})
    error = json.loads(raw)
    assert status == 400
    assert (error["type"], error["attr"], error["code"]) == ("validation_error", attr, code)


async def test_missing_fields_and_sandboxes(fake: FakePostHog) -> None:
    body = _body("q")
    del body["trace_id"]
    status, _, raw = await _post(fake, body)
    assert (status, json.loads(raw)["code"]) == (400, "required")
    status, _, raw = await _post(fake, _body("q", is_sandbox=True))
    assert status == 400
    assert "open endpoint" in json.loads(raw)["detail"]


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
    assert (await _post(fake, _body("q", agent_mode="research")))[0] == 200
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


async def test_a_resume_keeps_research_and_its_throttle(fake: FakePostHog) -> None:
    research = fake.seed_conversation(title="t", type="deep_research")
    payload = {"action": "approve", "proposal_id": "p"}
    assert (await _post(fake, _body("more", research.id, resume_payload=payload)))[0] == 200
    assert research.type == "deep_research"


async def test_the_ai_quota(fake: FakePostHog) -> None:
    fake.ai_quota_exceeded = True
    status, _, raw = await _post(fake, _body("q"))
    assert (status, json.loads(raw)["code"]) == (402, "quota_limit_exceeded")
