"""
Typed stream events from the wire: an SSE event's type and raw data bytes in, the
`StreamEvent` that `decode_event` gives for the decoded text out, for less.

Nearly every event of a PostHog AI stream is a `message` whose data is one JSON object,
and on a long answer each is a snapshot of the whole text so far. `decode_event` takes
the data as `str`, which costs three passes over it before parsing starts: the SSE
decoder decodes the bytes to text, and `_json.loads` (with orjson) encodes it back to
UTF-8 and scans the bytes for runs of 19 digits. Here, with orjson installed, a message's
bytes are parsed as they came, and the digit scan is replaced by a walk over the parsed
values, whose cost follows the number of values, not the length of the text: orjson
differs from the standard library only by reading an integer beyond 64 bits as a float,
so a result with no float in it is the standard library's result. Anything else (no
orjson, a float anywhere, bytes orjson refuses, data that is no object, a message that
does not fit its class) goes to `decode_event` with the decoded text, for exactly its
result, warnings included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._json import MAX_EVENT_DEPTH, orjson_parse
from .models.events import MessageEvent, StreamEvent, decode_event
from .models.messages import message_from_dict

__all__ = ["wire_event", "wire_message"]

_new = object.__new__
_set_message: Callable[[Any, Any], None] = vars(MessageEvent)["message"].__set__
_LEAVES = frozenset({str, int, bool, type(None)})

_parse = orjson_parse  # None without the speedups extra


def _has_float(value: Any, depth: int = 1) -> bool:
    """
    Whether a parsed dict or list holds a float anywhere (orjson's big integers are);
    `ValueError` if it nests deeper than `MAX_EVENT_DEPTH` (see `_json.too_deep`).
    """
    items = value.values() if value.__class__ is dict else value
    if _LEAVES.issuperset(map(type, items)):  # the usual message: strings only, at C speed
        return False
    for item in items:
        cls = item.__class__
        if cls in _LEAVES:
            continue
        if cls is float:
            return True
        if cls is dict or cls is list:
            if depth >= MAX_EVENT_DEPTH:
                raise ValueError("JSON nested too deeply for a stream event")
            if _has_float(item, depth + 1):
                return True
    return False


def wire_message(data: bytes) -> StreamEvent:
    """`wire_event("message", data)`."""
    if _parse is not None:
        try:
            payload = _parse(data)
            if payload.__class__ is dict and not _has_float(payload):
                message = message_from_dict(payload)
                event: StreamEvent = _new(MessageEvent)
                _set_message(event, message)
                return event
        except Exception:  # refused, too deep, or no fit: decode_event decides
            pass
    return decode_event("message", data.decode("utf-8", "replace"))


def wire_event(name: str, data: bytes) -> StreamEvent:
    """`decode_event(name, data.decode("utf-8", "replace"))`, faster. Never raises."""
    if name == "message":
        return wire_message(data)
    return decode_event(name, data.decode("utf-8", "replace"))
