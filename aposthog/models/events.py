"""
The typed events of a conversation stream, and their decoding from SSE name and data.

PostHog sends four event names (`conversation`, `message`, `status`, `update`). A name
this version does not know, or a known one whose data cannot be read, becomes an
`UnknownEvent` that keeps the raw data: a newer server never breaks a stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Union

import attrs

from .. import _json
from .._converter import structure
from .._errors import ResponseDecodeError, clip
from .conversations import ConversationSummary
from .messages import Message, message_from_dict

__all__ = [
    "ConversationEvent",
    "MessageEvent",
    "StatusEvent",
    "StreamEvent",
    "UnknownEvent",
    "UpdateEvent",
    "decode_event",
]

logger = logging.getLogger("aposthog")


@attrs.frozen
class ConversationEvent:
    """
    The conversation as it is now. Sent first for a new conversation (title None), and
    again once PostHog has generated the title.
    """

    conversation: ConversationSummary


@attrs.frozen
class MessageEvent:
    """
    A message. An `AssistantMessage` without an id is an in-progress snapshot holding the
    whole text so far; a message with an id is final.
    """

    message: Message


@attrs.frozen
class StatusEvent:
    """
    A generation status: `generation_error` means an insight PostHog generated failed its
    schema check, and PostHog generates it again (the run goes on, to its answer or to an
    `ai/failure`; it is not an exception). `until_done()` reports it.
    """

    type: str

    @property
    def is_error(self) -> bool:
        """Whether this reports a failed generation (which PostHog tries again)."""
        return self.type == "generation_error"


@attrs.frozen
class UpdateEvent:
    """
    Progress of a tool call.

    Attributes:
        id: the id of the assistant message that holds the tool call.
        tool_call_id: the `ToolCall.id` this is about.
        content: a progress text, or (from a subagent) a tool call as JSON.
    """

    id: str | None
    tool_call_id: str | None
    content: str | dict[str, Any] | None


@attrs.frozen
class UnknownEvent:
    """An event this version does not know (or could not read), with its raw data."""

    event: str
    data: str


StreamEvent = Union[  # noqa: UP007 (a runtime alias, usable in isinstance-free matching)
    ConversationEvent, MessageEvent, StatusEvent, UpdateEvent, UnknownEvent
]
"""Any event `ConversationStream` yields."""


_KNOWN_EVENTS = frozenset({"message", "conversation", "status", "update"})
_new_message_event = object.__new__
_set_message: Callable[[Any, Any], None] = vars(MessageEvent)["message"].__set__


def _decode(event: str, payload: Any) -> StreamEvent | None:
    if not isinstance(payload, dict):
        return None
    if event == "message":
        return MessageEvent(message_from_dict(payload))
    if event == "conversation":
        return ConversationEvent(structure(payload, ConversationSummary))
    if event == "status":
        kind = payload.get("type")
        return StatusEvent(kind) if isinstance(kind, str) else None
    if event == "update":
        ident, call, content = (payload.get(k) for k in ("id", "tool_call_id", "content"))
        if not isinstance(content, (str, dict, type(None))):
            return None
        return UpdateEvent(
            ident if isinstance(ident, str) else None,
            call if isinstance(call, str) else None,
            content,
        )
    return None


def decode_event(event: str, data: str) -> StreamEvent:
    """
    Turn one server-sent event's name and data into a typed event. Never raises.

    Example:
        >>> decode_event("status", '{"type":"generation_error"}')
        StatusEvent(type='generation_error')
        >>> decode_event("approval", "{}")
        UnknownEvent(event='approval', data='{}')
    """
    if event not in _KNOWN_EVENTS:
        return UnknownEvent(event, data)
    try:
        payload = _json.loads(data)
        if _json.too_deep(payload):
            raise ValueError(f"JSON nested more than {_json.MAX_EVENT_DEPTH} levels deep")
        if event == "message" and payload.__class__ is dict:
            # Nearly every event: built without the generic dispatch, slot by slot as the
            # record hooks build records (MessageEvent has no validators or converters).
            message_event = _new_message_event(MessageEvent)
            _set_message(message_event, message_from_dict(payload))
            return message_event
        decoded = _decode(event, payload)
    except (ValueError, ResponseDecodeError) as exc:
        decoded = None
        logger.warning(
            "cannot read a %s event from PostHog (%s); passing it on raw",
            clip(repr(event), 100),
            clip(str(exc)),
        )
    return decoded if decoded is not None else UnknownEvent(event, data)
