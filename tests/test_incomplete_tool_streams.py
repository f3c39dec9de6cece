"""A body cut at a step of a tool call is incomplete, however cleanly it ended (§3.5, 5)."""

from __future__ import annotations

import json

import anyio
import pytest

import aposthog

from .test_incomplete_streams import FINAL, HUMAN, ScriptedPostHog

pytestmark = pytest.mark.anyio

FAST = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01, max_reattaches=2)


def _message(**fields: object) -> bytes:
    return b"event: message\ndata: " + json.dumps(fields).encode() + b"\n\n"


CALL = {"id": "call_1", "name": "create_insight", "args": {}, "type": "tool_call"}
TOOL_CALL = _message(type="ai", content="Let me check the data.", id="a0", tool_calls=[CALL])
TOOL_RESULT = _message(type="tool", content="done", tool_call_id="call_1", id="t1")
SUBAGENT = _message(type="ai", content="Sub done", parent_tool_call_id="call_1", id="s1")
UPDATE = b'event: update\ndata: {"id":"a0","tool_call_id":"call_1","content":"Building"}\n\n'


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(HUMAN + TOOL_CALL, id="after-tool-call"),
        pytest.param(HUMAN + TOOL_CALL + UPDATE, id="after-update"),
        pytest.param(HUMAN + TOOL_CALL + SUBAGENT, id="after-subagent-message"),
        pytest.param(HUMAN + TOOL_CALL + TOOL_RESULT, id="after-tool-result"),
    ],
)
async def test_a_stream_cut_in_a_tool_call_is_reattached_then_reported_incomplete(
    body: bytes,
) -> None:
    async with ScriptedPostHog(body) as posthog:
        client = aposthog.Client(api_key="phx_x", host=posthog.server.url, retry=FAST)
        async with client as ph:
            stream = ph.conversations.create("q")
            with anyio.fail_after(5), pytest.raises(aposthog.IncompleteStreamError):
                await stream.until_done()
            result = stream.result()
    assert not result.complete
    assert "Let me check the data." == result.text  # given out, but not called the answer
    assert ["q", None, None] == [p["content"] for p in posthog.posts]


async def test_a_reattach_that_brings_the_answer_after_the_tool_completes_the_run() -> None:
    cut = HUMAN + TOOL_CALL + TOOL_RESULT
    whole = cut + FINAL
    async with ScriptedPostHog(cut, whole, conversation=whole) as posthog:
        client = aposthog.Client(api_key="phx_x", host=posthog.server.url, retry=FAST)
        async with client as ph:
            stream = ph.conversations.create("q")
            with anyio.fail_after(5):
                deltas = [text async for text in stream.text_deltas()]
            result = stream.result()
    assert result.complete
    assert "Let me check the data.\n\nHello there" == result.text == "".join(deltas)
    assert ["q", None] == [p["content"] for p in posthog.posts]


async def test_a_failure_during_a_tool_call_is_a_complete_run() -> None:
    failure = _message(type="ai/failure", content="Oops", id="f1")
    async with ScriptedPostHog(HUMAN + TOOL_CALL + TOOL_RESULT + failure) as posthog:
        client = aposthog.Client(api_key="phx_x", host=posthog.server.url, retry=FAST)
        async with client as ph:
            result = await ph.conversations.create("q").until_done()
    assert result.complete
    assert result.failed
    assert 1 == len(posthog.posts)
