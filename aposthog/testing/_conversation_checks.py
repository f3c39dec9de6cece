"""
The checks FakePostHog's `POST conversations/` makes before it streams, as PostHog's
`MessageSerializer` makes them (reference §3.4); the AI throttles are in `_throttle`.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from ._wire import validation_error

__all__ = [
    "AGENT_MODES",
    "QUOTA_DETAIL",
    "MessageBody",
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
