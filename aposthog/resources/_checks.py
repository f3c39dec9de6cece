"""
The argument checks every resource (and the command line) shares. Pure: no I/O.

Each check refuses what PostHog would refuse, or what could never reach it intact
(an id that leaves its path segment, a CR/LF in a header), before anything is sent:
a `TypeError` for the wrong type, a `ValueError` for a wrong value, and the message
names the argument. Enum values are matched without regard to case and sent in
PostHog's spelling (`"failed"` is sent as `Failed`); a value outside a closed set is
refused with the valid ones listed, while an open enum (one PostHog keeps growing,
such as `interval` or `agent_mode`) passes an unknown value on as it is.
"""

from __future__ import annotations

import enum
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .._errors import clip
from .._http import segment

__all__ = [
    "MAX_JSON_DEPTH",
    "check_bool",
    "check_json",
    "check_json_container",
    "check_paging",
    "check_str",
    "choice",
    "header_value",
    "int_in_range",
    "not_blank",
    "sendable_text",
    "uuid_id",
    "uuid_segment",
]

#: Deeper arguments are refused: PostHog's own parser gives up long before this.
MAX_JSON_DEPTH = 100
_MAX_JSON_NODES = 1_000_000
#: The two plain spellings of a UUID: 32 hex digits, or 8-4-4-4-12 with dashes.
_PLAIN_UUID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def _shown(value: Any) -> str:
    return clip(repr(value), 100)


def check_str(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise TypeError unless `value` is a str (or None when allowed)."""
    if value is None and allow_none:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")


def not_blank(name: str, value: Any, *, none_means: str) -> None:
    """
    A str that is not blank, or None (`none_means` says what None does): PostHog refuses
    an empty (or all-space) one with a 400, so it is refused here, before sending; so is
    text no `CharField` takes (see `sendable_text`).
    """
    check_str(name, value, allow_none=True)
    if value is not None:
        if not value.strip():
            raise ValueError(f"{name} must not be blank ({none_means})")
        sendable_text(name, value)


def sendable_text(name: str, value: str) -> None:
    """
    Raise ValueError unless `value` can be sent as a PostHog `CharField` takes it: with
    no NUL character (DRF's validator answers one with a 400) and no lone surrogate
    (which is not text UTF-8 can carry).
    """
    if "\x00" in value:
        raise ValueError(f"{name} must not contain a NUL character (PostHog refuses it)")
    _encodable(name, value)


def _encodable(where: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{where} holds a lone surrogate ({value[exc.start]!r} at {exc.start}): "
            "not text that can be sent"
        ) from None


def check_bool(name: str, value: Any) -> bool:
    """`value` if it is a bool (1, "yes" and None are not)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


#: Ints up to this many bits are written as text by any Python: their 603 digits are
#: within the smallest int-to-text limit one can set (`sys.set_int_max_str_digits`, 640).
_SHORT_INT_BITS: Final = 2000


def int_in_range(name: str, value: Any, low: int, high: int | None = None) -> int:
    """`value` if it is an int (not a bool) from `low` to `high`, both included."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    bounds = f"between {low} and {high}" if high is not None else f">= {low}"
    if value.bit_length() > _SHORT_INT_BITS:
        # Not written in the message, nor sent: Python refuses to write such an int as
        # text, past a few thousand digits, with an error that names nothing.
        raise ValueError(f"{name} must be {bounds}, got an int of {value.bit_length()} bits")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def check_paging(
    limit: int | None, offset: int | None = None, *, max_limit: int | None = None
) -> None:
    """Raise TypeError/ValueError for a limit or offset PostHog would reject."""
    if limit is not None:
        int_in_range("limit", limit, 1, max_limit)
    if offset is not None:
        int_in_range("offset", offset, 0)


def uuid_id(name: str, value: Any) -> str:
    """
    An id PostHog stores as a UUID, in its canonical form.

    Any other string could only ever be a 404 (or, with `/` or `..`, another endpoint).

    Example:
        >>> uuid_id("id", "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B")
        '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a UUID or a str, got {type(value).__name__}")
    text = value.strip()
    # uuid.UUID also reads "{…}", "urn:uuid:…", "urn:…" and dashes anywhere; an id is
    # taken in its plain forms only.
    if _PLAIN_UUID.fullmatch(text):
        return str(uuid.UUID(text))
    raise ValueError(f"{name} must be a UUID such as 0190a1b2-c3d4-…, got {_shown(value)}")


def uuid_segment(name: str, value: Any) -> str:
    """A UUID id as its path segment; anything else is refused before it is sent."""
    return segment(uuid_id(name, value), name=name)


def header_value(name: str, value: Any) -> str:
    """
    A string sent as an HTTP header: printable ASCII, so no CR/LF can split it, and not
    blank (PostHog's fields trim it, and refuse what is left empty).
    """
    check_str(name, value)
    if not value.strip() or not value.isascii() or not value.isprintable():
        raise ValueError(
            f"{name} must be a non-blank string of printable ASCII characters, got {_shown(value)}"
        )
    return str(value)


def choice(name: str, value: Any, allowed: Iterable[str], *, open_enum: bool = False) -> str:
    """
    An enum argument (an `enum.Enum` member or a str) in PostHog's spelling.

    A known value is matched whatever its case. An unknown one is refused with the valid
    values listed, unless `open_enum` (PostHog adds values over time): then it is sent
    as given, provided it is a non-empty printable string.
    """
    if isinstance(value, enum.Enum):
        value = value.value
    check_str(name, value)
    known = {item.lower(): item for item in allowed}
    found = known.get(value.strip().lower())
    if found is not None:
        return found
    if open_enum and value.strip() and value.isprintable():
        return str(value)
    raise ValueError(f"{name} must be one of {', '.join(known.values())}; got {_shown(value)}")


def check_json_container(name: str, value: Any) -> None:
    """Raise TypeError unless `value` is a dict, a list or None (PostHog rejects scalars)."""
    if value is not None and not isinstance(value, (dict, list)):
        raise TypeError(f"{name} must be a dict, a list or None, got {type(value).__name__}")
    check_json(name, value)


def _writable_int(where: str, value: int) -> None:
    """Raise ValueError, naming `where`, for an int Python refuses to write as text."""
    try:
        str(value)
    except ValueError:
        raise ValueError(
            f"{where} is an int of more digits than Python writes as text "
            "(see sys.set_int_max_str_digits): not JSON that can be sent"
        ) from None


def check_json(name: str, value: Any) -> None:
    """
    Raise TypeError/ValueError unless `value` can be sent as JSON: dicts with str keys,
    lists and tuples, str, int, finite floats, bools and None, at most `MAX_JSON_DEPTH` deep.
    """
    # An explicit stack: a hostile value must not end in a RecursionError. A value that
    # contains itself meets the depth bound; one that shares parts meets the size bound.
    stack: list[tuple[Any, str, int]] = [(value, name, 0)]
    visited = 0
    while stack:
        item, where, depth = stack.pop()
        visited += 1
        if visited > _MAX_JSON_NODES:
            raise ValueError(f"{name} has more than {_MAX_JSON_NODES:,} values")
        if isinstance(item, str):
            _encodable(where, item)
            continue
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if item.bit_length() > _SHORT_INT_BITS:
                _writable_int(where, item)
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"{where} is {item!r}: JSON has no such number")
            continue
        if not isinstance(item, (Mapping, list, tuple)):
            raise TypeError(
                f"{where} must be JSON (dict, list, str, number, bool or None), "
                f"got {type(item).__name__}"
            )
        if depth >= MAX_JSON_DEPTH:
            raise ValueError(f"{name} is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"{where} has a key of type {type(key).__name__}: JSON keys are str"
                    )
                _encodable(f"a key of {where}", key)
                stack.append((child, f"{where}[{clip(repr(key), 40)}]", depth + 1))
        else:
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
