"""
Parsing JSON from PostHog, in one place.

Every body the client parses (a response, an error body, one stream event) goes through
`loads`, so every way a hostile body can break parsing ends in one exception type:
`ValueError`. That includes nesting too deep for the parser, which the standard library
reports as `RecursionError`.

With the `speedups` extra (orjson installed), `loads` parses with orjson, two to three
times faster, and gives the same result as the standard library for every body. An
orjson older than 3.9.15 (installed by something else) is not used: it parses JSON
nested to any depth.

* whatever orjson refuses (NaN and Infinity, `1e400`, lone surrogates, a UTF-8 BOM,
  UTF-16 bodies, bad UTF-8, nesting deeper than 1024) is parsed again by the standard
  library, which accepts it or raises its own `ValueError`, exactly as without orjson;
* orjson reads an integer beyond 64 bits as a float, the standard library as an int:
  a body with a run of 19 digits anywhere (a cheap byte scan) goes to the standard
  library directly.

The one difference left is where "too deep" starts: the standard library's limit
depends on the stack in use (nearly a thousand levels), orjson's is 1024.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MAX_EVENT_DEPTH", "loads", "too_deep"]


# The standard library's own scanner, as `json.loads` uses it (set in its __init__,
# hence unknown to the type stubs).
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def stdlib_loads(data: bytes | str) -> Any:
    """Parse with the standard library; `ValueError` for anything that is not JSON."""
    # A JSON object, the shape of nearly every body and stream event: the scanner alone
    # reads it, as `json.loads` would after its encoding, BOM and whitespace checks
    # (12,400 of the 158,000 instructions of a page of ten small records). A body that is
    # not plain UTF-8, or that the scanner does not read whole, goes to `json.loads`
    # below, for the same value or the same error.
    text: str | None = None
    if isinstance(data, str):
        if data[:1] == "{" and data[-1:] == "}":
            text = data
    elif data[:1] == b"{" and data[-1:] == b"}":
        try:
            text = data.decode()
        except UnicodeDecodeError:
            pass
    if text is not None:
        try:
            value, end = _scan_once(text, 0)
        except (StopIteration, ValueError, RecursionError):
            pass
        else:
            if end == len(text):
                return value
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None


orjson_loads: Callable[[bytes | str], Any] | None = None
#: orjson's own parser, as it is (None without the speedups extra): for callers that
#: settle its differences from the standard library themselves (`_stream_events`).
orjson_parse: Callable[[bytes], Any] | None = None
#: The oldest orjson used: earlier releases parse JSON nested to any depth, so a hostile
#: body 100,000 levels deep is parsed, and its value raises `RecursionError` wherever it
#: is printed or compared.
ORJSON_MINIMUM = (3, 9, 15)


def usable_orjson(module: Any) -> Callable[[bytes], Any] | None:
    """`module.loads` if `module` is an orjson release aposthog can use, else None."""
    release = tuple(int(n) for n in re.findall(r"\d+", str(getattr(module, "__version__", "")))[:3])
    return module.loads if release >= ORJSON_MINIMUM else None


try:
    # Imported by name: orjson is optional, and typed here as what aposthog uses of it.
    _orjson_parse = usable_orjson(importlib.import_module("orjson"))
except ImportError:  # the speedups extra is not installed
    _orjson_parse = None
if _orjson_parse is not None:
    orjson_parse = _parse = _orjson_parse
    # Digits stay "0", every other byte becomes a space: a long digit run is then a
    # plain substring search, at memory speed.
    _DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
    _LONG_NUMBER = b"0" * 19

    def _orjson_loads(data: bytes | str) -> Any:
        """Parse with orjson, deferring to the standard library wherever they differ."""
        if isinstance(data, str):
            try:
                raw = data.encode()
            except UnicodeEncodeError:  # lone surrogates: the standard library decides
                return stdlib_loads(data)
        else:
            raw = data
        if _LONG_NUMBER in raw.translate(_DIGITS_ONLY):
            return stdlib_loads(data)
        try:
            return _parse(raw)
        except ValueError:  # orjson.JSONDecodeError: the standard library decides
            return stdlib_loads(data)

    orjson_loads = _orjson_loads


#: The parser in use: orjson's (speedups extra) when installed, else the standard library's.
loads: Callable[[bytes | str], Any] = orjson_loads or stdlib_loads


#: A stream event's JSON nested deeper than this is not taken as its event (it stays an
#: `UnknownEvent`): orjson parses up to 1024 levels, and a value nested near Python's
#: recursion limit raises `RecursionError` wherever it is compared or printed, as the
#: stream compares a replayed message with the one it holds.
MAX_EVENT_DEPTH = 500


def too_deep(value: Any, limit: int = MAX_EVENT_DEPTH) -> bool:
    """
    Whether `value` nests objects and arrays more than `limit` levels deep. Walked
    without recursion, and at once for the usual stream event: an object of scalars.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if item.__class__ is dict:
            children = item.values()
        elif item.__class__ is list:
            children = item
        else:
            continue
        if _SCALARS.issuperset(map(type, children)):
            continue
        if depth >= limit:
            return True
        stack.extend(
            (child, depth + 1)
            for child in children
            if child.__class__ is dict or child.__class__ is list
        )
    return False


_SCALARS = frozenset({str, int, float, bool, type(None)})
