"""Terminal output for the command line: aligned tables and JSON lines."""

from __future__ import annotations

import json
import math
import re
import sys
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from .._converter import unstructure

__all__ = [
    "OutputError",
    "Styler",
    "cell",
    "column_widths",
    "format_row",
    "format_table",
    "json_line",
    "terminal_text",
]

# Text from PostHog (log messages, a destination's error, an AI answer) reaches a terminal:
# its control characters are shown escaped, never acted on. C0, DEL and C1 (whose CSI
# some terminals obey as ESC [), and the Unicode line and paragraph separators.
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
# A lone surrogate (JSON's "\\ud800" is valid) cannot be written as UTF-8: shown escaped.
_SURROGATES = {c: f"\\u{c:04x}" for c in range(0xD800, 0xE000)}
_SURROGATE = re.compile("[\ud800-\udfff]")
_ONE_LINE = {c: f"\\u{c:04x}" if c > 0xFF else f"\\x{c:02x}" for c in _CONTROLS}
_ONE_LINE.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
_ONE_LINE.update(_SURROGATES)
# Flowing text keeps its line breaks and tabs.
_FLOWING = {c: v for c, v in _ONE_LINE.items() if c not in (0x09, 0x0A)}
# In a JSON line: what json.dumps leaves raw (it escapes C0 only) as JSON's own escapes,
# the same values: DEL, C1, the line and paragraph separators, and lone surrogates.
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)}
_JSON_ESCAPES.update(_SURROGATES)
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class OutputError(Exception):
    """A record the command line cannot print (the CLI's one-line error, exit status 1)."""


_TOO_DEEP = "a JSON value in PostHog's answer is nested too deeply to print"


def terminal_text(text: str) -> str:
    """
    Text from PostHog to print as it flows (an answer): its lines and tabs kept, every
    other control character shown escaped (`\\x1b`), so none acts on the terminal.
    """
    return text.translate(_FLOWING)


def cell(value: Any) -> str:
    """
    A value rendered for a human on one line: enums by value, times in ISO, JSON
    shortened, control characters (a newline too) shown escaped.
    """
    if value is None:
        return "-"
    if hasattr(value, "value") and isinstance(value.value, str):  # an enum member
        return str(value.value)
    if hasattr(value, "isoformat"):
        text = str(value.isoformat(timespec="seconds"))
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, (dict, list)):
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except RecursionError:
            raise OutputError(_TOO_DEEP) from None
        text = text.translate(_ONE_LINE)  # JSON escapes C0, not DEL or C1
        return text if len(text) <= 40 else text[:39] + "…"
    return str(value).translate(_ONE_LINE)


def column_widths(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> list[int]:
    """The width of each column: its widest cell, or its header."""
    return [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]


def format_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One table line: each cell padded to its column, or cut with "…" if longer."""
    fitted = (
        c.ljust(w) if len(c) <= w else c[: w - 1] + "…" for c, w in zip(cells, widths, strict=True)
    )
    return "  ".join(fitted).rstrip()


def format_table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> list[str]:
    """Lines of a left-aligned table (values rendered for humans)."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = column_widths(cells, headers)
    return [format_row([h.upper() for h in headers], widths)] + [
        format_row(row, widths) for row in cells
    ]


def json_line(record: Any, *, ascii_only: bool = False) -> str:
    """
    One record as one line of JSON (the wire format, unknown fields included), inert in
    a terminal (controls escaped as JSON escapes), and JSON for every reader: a number
    too big for a float (`1e999`, read as infinity) is written back as `1e999`, not as
    Python's `Infinity`. `ascii_only`: every non-ASCII character escaped (an output
    whose encoding is not UTF-8).
    """
    try:
        data = record if isinstance(record, (dict, list)) else unstructure(record)
        try:
            text = json.dumps(data, ensure_ascii=ascii_only, separators=(",", ":"), allow_nan=False)
        except ValueError:  # a float that is not finite
            text = _with_huge_numbers(data, ascii_only)
    except RecursionError:
        raise OutputError(_TOO_DEEP) from None
    if "\x7f" in text or not text.isascii():
        # Only ever inside a JSON string, where its escape means it.
        text = _JSON_RAW.sub(lambda m: _JSON_ESCAPES[ord(m.group())], text)
    return text


def _with_huge_numbers(data: Any, ascii_only: bool) -> str:
    """`json.dumps(data)` where an infinite float is `1e999` (or `-1e999`), a NaN `null`."""
    marker = f"\ue000aposthog-{uuid.uuid4().hex}"
    marks = {math.inf: f"{marker}+", -math.inf: f"{marker}-"}

    def finite(value: Any) -> Any:
        if value.__class__ is float and not math.isfinite(value):
            return None if math.isnan(value) else marks[value]
        if isinstance(value, dict):
            return {key: finite(item) for key, item in value.items()}
        if isinstance(value, list):
            return [finite(item) for item in value]
        return value

    text = json.dumps(finite(data), ensure_ascii=ascii_only, separators=(",", ":"))
    for value, mark in marks.items():
        shown = json.dumps(mark, ensure_ascii=ascii_only)
        text = text.replace(shown, "1e999" if value > 0 else "-1e999")
    return text


class Styler:
    """ANSI emphasis when writing to a terminal, plain text otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        out = stream if stream is not None else sys.stdout
        self.enabled = out.isatty()

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        """Bold."""
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        """Faint."""
        return self._wrap("2", text)

    def green(self, text: str) -> str:
        """Green."""
        return self._wrap("32", text)

    def red(self, text: str) -> str:
        """Red."""
        return self._wrap("31", text)
