"""
The checks FakePostHog's `POST conversations/` makes before it streams, as PostHog's
`MessageSerializer` makes them (reference §3.4); the AI throttles are in `_throttle`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from ._wire import boolean_field, text_problem, validation_error

__all__ = [
    "AGENT_MODES",
    "QUOTA_DETAIL",
    "MessageBody",
    "uuid_text",
    "validate_agent_mode",
    "validate_boolean",
    "validate_context_fields",
    "validate_human_message",
    "validate_message",
    "validate_text",
]

# `MessageSerializer.agent_mode`'s choices, PostHog's `AgentMode` values (newer versions
# dropped `onboarding`, which is now a 400 like any unknown mode).
AGENT_MODES = frozenset(
    {
        "product_analytics", "sql", "session_replay", "error_tracking", "plan", "execution",
        "survey", "research", "flags", "llm_analytics", "sandbox", "user_interview",
        "customer_analytics",
    }
)  # fmt: skip
_INVALID_CONTENT = "Invalid message content."
# `MaxUIContext` (frontend/src/scenes/max/maxTypes.ts, generated into posthog/schema.py as a
# pydantic model with `extra="forbid"`): each list key with its items' `type` and the keys
# those items require. Newer PostHog versions add keys (`voice_mode` is recent; older
# servers refuse it as unknown), so this follows the newest version the fake models.
_UI_CONTEXT_LISTS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "dashboards": ("dashboard", ("id", "insights", "filters")),
    "insights": ("insight", ("id", "query")),
    "events": ("event", ("id",)),
    "actions": ("action", ("id", "name")),
    "error_tracking_issues": ("error_tracking_issue", ("id",)),
    "evaluations": ("evaluation", ("id", "evaluation_type")),
    "notebooks": ("notebook", ("id",)),
}
_UI_CONTEXT_KEYS = frozenset({*_UI_CONTEXT_LISTS, "form_answers", "voice_mode"})
# The strings pydantic's lax mode reads as a bool (any case).
_BOOL_STRINGS = frozenset({"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"})
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
    ui_context: Any = None  # the message's, kept on the human message PostHog stores


def _uuid(body: dict[str, Any], name: str) -> str:
    if name not in body:
        raise validation_error("This field is required.", attr=name, code="required")
    value = body[name]
    if value is None:
        raise validation_error("This field may not be null.", attr=name, code="null")
    try:
        return uuid_text(value)
    except ValueError:
        raise validation_error("Must be a valid UUID.", attr=name) from None


def uuid_text(value: Any) -> str:
    """
    A UUID's canonical text, read as DRF's and Django's `UUIDField`s read one: an int
    (a bool too) as its number, a str in any spelling `uuid.UUID` takes (any case, no
    hyphens, braces, `urn:uuid:`); `ValueError` for anything else.
    """
    if isinstance(value, int):
        return str(uuid.UUID(int=value))
    if isinstance(value, str):
        return str(uuid.UUID(hex=value))
    raise ValueError(f"not a UUID: {value!r:.40}")


def validate_text(
    body: dict[str, Any],
    name: str,
    *,
    max_length: int | None,
    allow_null: bool,
    required: bool = True,
) -> str | None:
    """
    A DRF `CharField`: trimmed, not blank, at most `max_length` characters, no NUL or
    surrogate characters. A number is taken as its string (DRF's leniency); when the field
    is left out, "This field is required." or, if not `required`, None.
    """
    if name not in body:
        if not required:
            return None
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
    # The field's validators, in DRF's order; the first failing one is reported.
    if max_length is not None and len(text) > max_length:
        raise validation_error(
            f"Ensure this field has no more than {max_length} characters.",
            attr=name,
            code="max_length",
        )
    problem = text_problem(text)
    if problem is not None:
        raise validation_error(problem[0], attr=name, code=problem[1])
    return text


def validate_boolean(body: dict[str, Any], name: str) -> bool:
    """A DRF `BooleanField(required=False, default=False)`: False when left out."""
    return boolean_field(body.get(name, False), name)


def _lax_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return value in (0, 1)
    return isinstance(value, str) and value.lower() in _BOOL_STRINGS


def _context_item_ok(item: Any, kind: str, required: tuple[str, ...]) -> bool:
    # The item's own fields are not checked further (an insight's `query` is a whole query
    # schema); its `type` may be left out (the generated model defaults it).
    if not isinstance(item, dict) or item.get("type", kind) != kind:
        return False
    return all(key in item for key in required)


def _ui_context_ok(ui_context: Any) -> bool:
    """
    Whether pydantic would take `ui_context` as a `MaxUIContext` (null included), at the
    depth the fake checks: an object with known keys, each null or of its type; the lists'
    items objects of their kind with their required keys; `form_answers` strings only.
    """
    if ui_context is None:
        return True
    if not isinstance(ui_context, dict) or not _UI_CONTEXT_KEYS.issuperset(ui_context):
        return False
    for key, value in ui_context.items():
        if value is None:
            continue
        if key == "voice_mode":
            ok = _lax_bool(value)
        elif key == "form_answers":
            ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        else:
            kind, required = _UI_CONTEXT_LISTS[key]
            ok = isinstance(value, list) and all(
                _context_item_ok(item, kind, required) for item in value
            )
        if not ok:
            return False
    return True


def _not_null(body: dict[str, Any], name: str) -> None:
    # DRF fields without allow_null refuse an explicit null before their own checks.
    if name in body and body[name] is None:
        raise validation_error("This field may not be null.", attr=name, code="null")


def validate_context_fields(body: dict[str, Any]) -> None:
    """
    The fields `MessageSerializer` and `QueueMessageSerializer` both declare, in their order:
    `contextual_tools` (a `DictField` of `JSONField`s: a dict whose values are any JSON but
    null), then the `JSONField`s `ui_context` and `billing_context` (any JSON but null).
    Each may be left out.
    """
    _not_null(body, "contextual_tools")
    tools = body.get("contextual_tools")
    if "contextual_tools" in body and not isinstance(tools, dict):
        kind = type(tools).__name__
        raise validation_error(
            f'Expected a dictionary of items but got type "{kind}".',
            attr="contextual_tools",
            code="not_a_dict",
        )
    # Its child, a `JSONField` without `allow_null`, runs on each value: DRF keys a
    # value's error by its dict key, and drf-exceptions-hog reports the first, in order.
    for key, value in (tools or {}).items():
        if value is None:
            raise validation_error(
                "This field may not be null.", attr=f"contextual_tools__{key}", code="null"
            )
    _not_null(body, "ui_context")
    _not_null(body, "billing_context")


def validate_agent_mode(body: dict[str, Any]) -> str | None:
    """The `agent_mode` `ChoiceField` (PostHog's `AgentMode` values); None when left out."""
    _not_null(body, "agent_mode")
    mode = body.get("agent_mode")
    # DRF looks `str(value)` up among the choices: only the mode's own string passes.
    if mode is not None and (not isinstance(mode, str) or mode not in AGENT_MODES):
        raise validation_error(
            f'"{mode}" is not a valid choice.', attr="agent_mode", code="invalid_choice"
        )
    return mode


def validate_human_message(ui_context: Any) -> None:
    """
    The serializers' `validate()`: a message's (valid) content and its `ui_context` must make
    a `HumanMessage`; pydantic's complaint is not passed on.
    """
    if not _ui_context_ok(ui_context):
        raise validation_error(_INVALID_CONTENT)


def validate_message(body: dict[str, Any]) -> MessageBody:
    """`MessageSerializer`'s checks; the first failing field is the 400."""
    # MessageSerializer's fields in declaration order: drf-exceptions-hog reports the first.
    content = validate_text(body, "content", max_length=40000, allow_null=True)
    conversation = _uuid(body, "conversation")
    validate_context_fields(body)
    trace_id = _uuid(body, "trace_id")
    # Validated only: PostHog reads the session from the `X-POSTHOG-SESSION-ID` header.
    validate_text(body, "session_id", max_length=None, allow_null=False, required=False)
    mode = validate_agent_mode(body)
    is_sandbox = validate_boolean(body, "is_sandbox")
    # `resume_payload` (any JSON, null included) cannot fail.
    # validate(), once every field passed. Without a message (content null) PostHog ignores
    # ui_context.
    if content is not None:
        validate_human_message(body.get("ui_context"))
    return MessageBody(
        content=content,
        conversation=conversation,
        trace_id=trace_id,
        agent_mode=mode,
        is_sandbox=is_sandbox,
        resume_payload=body.get("resume_payload"),
        ui_context=body.get("ui_context") if content is not None else None,
    )
