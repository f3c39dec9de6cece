"""
The checks FakePostHog's `POST conversations/` makes before it streams, as PostHog's
`MessageSerializer` and AI throttles make them (reference §1.6 and §3.4).
"""

from __future__ import annotations

import collections
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from ._wire import HTTPError, error, validation_error

__all__ = [
    "AGENT_MODES",
    "QUOTA_DETAIL",
    "MessageBody",
    "check_ai_throttle",
    "validate_message",
    "validate_text",
]

AGENT_MODES = frozenset(
    {
        "product_analytics", "sql", "session_replay", "error_tracking", "plan", "execution",
        "survey", "onboarding", "research", "flags", "llm_analytics", "user_interview",
        "customer_analytics", "sandbox",
    }
)  # fmt: skip
QUOTA_DETAIL = (
    "Your organization reached its AI credit usage limit. Increase the limits in Billing "
    "settings, or ask an org admin to do so."
)
_AI_LIMIT = "You've reached PostHog AI's usage limit for the moment. Please try again {}."
_RESEARCH_LIMIT = (
    "You've reached the usage limit for Research mode, which is currently in beta with limited "
    "capacity. Please try again {}, or switch to a regular conversation for continued access."
)


def check_ai_throttle(
    history: dict[tuple[str, str], collections.deque[float]],
    *,
    user: str,
    research: bool,
    limits: Sequence[tuple[str, int | None, float]],
) -> None:
    """
    PostHog AI's per-user throttles, as DRF's SimpleRateThrottle counts: raise its 429.

    `limits` holds `(name, requests or None, seconds)`; `history` the request times per
    `(user, name)`, updated here.
    """
    moment = time.monotonic()
    for name, limit, duration in limits:
        if limit is None:
            continue
        times = history.setdefault((user, name), collections.deque())
        while times and times[0] <= moment - duration:
            times.popleft()
        if len(times) < limit:
            times.append(moment)  # DRF records each throttle that lets it pass
            continue
        wait = duration - (moment - times[0]) if times else duration
        if wait < 60:
            when = f"in {int(wait)} seconds"
        elif wait < 3600:
            when = f"in {int(wait / 60)} minutes"
        else:
            when = "later today"
        detail = (_RESEARCH_LIMIT if research else _AI_LIMIT).format(when)
        seconds = math.ceil(wait)
        unit = "second" if seconds == 1 else "seconds"
        detail = f"{detail} Expected available in {seconds} {unit}."
        raise HTTPError(error(429, "throttled_error", "throttled", detail))


@attrs.frozen
class MessageBody:
    """The fields of the request body the fake acts on, validated."""

    content: str | None
    conversation: str
    trace_id: str
    agent_mode: str | None
    is_sandbox: bool
    resume_payload: Any


def _uuid(body: dict[str, Any], name: str) -> str:
    if name not in body:
        raise validation_error("This field is required.", attr=name, code="required")
    value = body[name]
    if value is None:
        raise validation_error("This field may not be null.", attr=name, code="null")
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise validation_error("Must be a valid UUID.", attr=name) from None


def validate_text(
    body: dict[str, Any], name: str, *, max_length: int, allow_null: bool
) -> str | None:
    """A DRF `CharField`: required, trimmed, not blank, at most `max_length` characters."""
    if name not in body:
        raise validation_error("This field is required.", attr=name, code="required")
    value = body[name]
    if value is None:
        if allow_null:
            return None
        raise validation_error("This field may not be null.", attr=name, code="null")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise validation_error("Not a valid string.", attr=name)
    text = str(value).strip()  # DRF's CharField trims before it checks
    if not text:
        raise validation_error("This field may not be blank.", attr=name, code="blank")
    if len(text) > max_length:
        raise validation_error(
            f"Ensure this field has no more than {max_length} characters.",
            attr=name,
            code="max_length",
        )
    return text


def validate_message(body: dict[str, Any]) -> MessageBody:
    """`MessageSerializer`'s checks; the first failing field is the 400."""
    # MessageSerializer's fields in declaration order: drf-exceptions-hog reports the first.
    content = validate_text(body, "content", max_length=40000, allow_null=True)
    conversation = _uuid(body, "conversation")
    tools = body.get("contextual_tools")
    if "contextual_tools" in body and not isinstance(tools, dict):
        kind = type(tools).__name__
        raise validation_error(
            f'Expected a dictionary of items but got type "{kind}".',
            attr="contextual_tools",
            code="not_a_dict",
        )
    trace_id = _uuid(body, "trace_id")
    mode = body.get("agent_mode")
    if mode is not None and mode not in AGENT_MODES:
        raise validation_error(
            f'"{mode}" is not a valid choice.', attr="agent_mode", code="invalid_choice"
        )
    return MessageBody(
        content=content,
        conversation=conversation,
        trace_id=trace_id,
        agent_mode=mode,
        is_sandbox=body.get("is_sandbox") is True,
        resume_payload=body.get("resume_payload"),
    )
