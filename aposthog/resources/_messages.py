"""The checks of a message to PostHog AI, shared by `create()` and the message queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models.conversations import AgentMode
from ._checks import check_json, check_str, choice, sendable_text

__all__ = ["MAX_CONTENT_LENGTH", "content", "json_object", "message_options"]

MAX_CONTENT_LENGTH = 40000
"""The longest message `create()` sends or the queue takes (PostHog's limit: ~10k tokens)."""
_AGENT_MODES = tuple(mode.value for mode in AgentMode)


def content(value: Any, *, limit: int) -> str:
    """A message's text: a string, not blank, at most `limit` characters once trimmed."""
    check_str("content", value)
    # PostHog trims whitespace before checking, so "   " is blank and is measured trimmed.
    trimmed = value.strip()
    if not trimmed:
        raise ValueError("content must not be empty or only whitespace")
    if len(trimmed) > limit:
        raise ValueError(f"content is {len(trimmed)} characters long; PostHog accepts {limit}")
    sendable_text("content", value)
    return str(value)


def json_object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(value).__name__}")
    check_json(name, value)
    return dict(value)


def message_options(
    *,
    agent_mode: AgentMode | str | None,
    contextual_tools: Mapping[str, Any] | None,
    ui_context: Any,
    billing_context: Any,
) -> dict[str, Any]:
    """The optional fields of a message, checked: None leaves a field out."""
    body: dict[str, Any] = {}
    if agent_mode is not None:
        body["agent_mode"] = choice("agent_mode", agent_mode, _AGENT_MODES, open_enum=True)
    if contextual_tools is not None:
        tools = body["contextual_tools"] = json_object("contextual_tools", contextual_tools)
        for key, value in tools.items():
            if value is None:
                # PostHog's DictField of JSONFields takes no null value: its 400, after
                # the AI throttle counted the message.
                raise ValueError(f"contextual_tools[{key!r}] must not be None")
    if ui_context is not None:
        # PostHog reads it as its `MaxUIContext` model, in every version: anything but an
        # object is a 400 ("Invalid message content."), after the AI throttle counted the
        # message. Its keys are passed on as given (PostHog versions differ in them).
        body["ui_context"] = json_object("ui_context", ui_context)
    if billing_context is not None:
        check_json("billing_context", billing_context)
        body["billing_context"] = billing_context
    return body
