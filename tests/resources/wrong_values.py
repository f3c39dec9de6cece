"""Wrong values for resource arguments, by kind: Hypothesis strategies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from hypothesis import strategies as st

__all__ = ["KINDS"]

_objects = st.sampled_from([object(), b"x", bytearray(b"x"), {1, 2}, 1j, ..., print])
_not_str_nor_none = st.one_of(
    st.integers(), st.floats(), st.binary(max_size=8), st.lists(st.integers()), _objects
)
_not_str = st.one_of(st.none(), _not_str_nor_none)
_non_uuid_text = st.text(max_size=40).filter(lambda t: not _is_uuid(t))
_control = st.sampled_from(["\r", "\n", "\r\n", "\x00", "\x1b", "\u2028", "é", "\t"])
_header_breaking = st.builds(
    lambda a, c, b: f"{a}{c}{b}", st.text(max_size=5), _control, st.text(max_size=5)
)
_bad_ints = st.one_of(st.booleans(), st.floats(), st.text(max_size=3), _objects)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text.strip())
    except ValueError:
        return False
    return len(text.strip()) in (32, 36)


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _cyclic() -> Any:
    value: list[Any] = []
    value.append(value)
    return value


# Objects JSON cannot carry: non-finite numbers, a key that is not a string.
_bad_json_objects = st.one_of(
    st.sampled_from([float("nan"), float("inf")]).map(lambda f: {"x": f}),
    st.just({1: "non-str key"}),
    st.just({"x": "a lone \ud800"}),  # no text UTF-8 can carry
    st.just({"\udc00": 1}),
)
_bad_json = st.one_of(
    _objects.filter(lambda v: v is not None),
    _bad_json_objects,
    st.just(_nested(150)),
    st.just(_nested(5000)),
    st.builds(_cyclic),
)

KINDS: dict[str, st.SearchStrategy[Any]] = {
    "uuid": st.one_of(_not_str.filter(lambda v: not isinstance(v, uuid.UUID)), _non_uuid_text),
    "opt_uuid": st.one_of(
        _not_str_nor_none.filter(lambda v: not isinstance(v, uuid.UUID)), _non_uuid_text
    ),
    "str": _not_str,
    "opt_str": _not_str_nor_none,
    # A CharField's text: not blank, and neither a NUL nor a lone surrogate.
    "text": st.one_of(_not_str, st.sampled_from(["", "  ", "a\x00b", "a\ud800b"])),
    # A text filter: None is no filter, and PostHog refuses a blank one with a 400.
    "filter_text": st.one_of(
        _not_str_nor_none, st.sampled_from(["", " ", "\t\n", "a\x00", "\udfff"])
    ),
    "content": st.one_of(
        _not_str_nor_none,
        st.sampled_from(["", "   ", "\n\t", "top\x00pages", "top \ud83d"]),
        st.just("x" * 40001),
    ),
    "append_content": st.one_of(
        _not_str, st.sampled_from(["", "  ", "\x00", "\ud800"]), st.just("y" * 10001)
    ),
    "message_id": st.one_of(
        _not_str.filter(lambda v: not isinstance(v, uuid.UUID)),
        st.sampled_from(["", ".", "..", "a.b", "a/b", "/"]),
    ),
    # Blank: PostHog's CharField trims it to "" and refuses it.
    "session_id": st.one_of(_not_str_nor_none, _header_breaking, st.sampled_from(["", " ", "   "])),
    "limit": st.one_of(_bad_ints, st.integers(max_value=0)),
    "logs_limit": st.one_of(_bad_ints, st.integers(max_value=0), st.integers(min_value=501)),
    "offset": st.one_of(_bad_ints, st.integers(max_value=-1)),
    "bool": st.one_of(st.none(), st.integers(), st.text(max_size=3), _objects),
    "closed_enum": st.one_of(
        _not_str_nor_none,
        st.text(max_size=12).filter(lambda t: t.strip().lower() not in KNOWN_CLOSED),
    ),
    "open_enum": st.one_of(_not_str_nor_none, st.sampled_from(["", "  ", "a\nb", "\x00"])),
    "timestamp": st.one_of(
        _not_str_nor_none,
        st.just(dt.datetime(2024, 1, 1)),
        st.sampled_from(["", "yesterday", "2024-13", "01/02/2024", "2024-02-30T00:00:00Z"]),
    ),
    # PostHog would read the strings as "now": a typo must not silently become it.
    "relative_timestamp": st.one_of(
        _not_str_nor_none,
        st.just(dt.datetime(2024, 1, 1)),
        st.sampled_from(["  ", "-2H", "yesterday", "-5mins", "2024-02-30"]),
    ),
    "backfill_bound": st.one_of(
        _not_str_nor_none.filter(lambda v: not isinstance(v, dt.date)),
        st.sampled_from(["2024-01-01T00:00:00", "tomorrow", "", "2024-02-30"]),
    ),
    "json": _bad_json,
    "json_container": st.one_of(st.sampled_from(["x", 42, True, 1.5]), _bad_json),
    "mapping": st.one_of(st.sampled_from(["x", 42, [1]]), _objects),
    "step": st.one_of(_bad_ints, st.integers(max_value=-1)),
    "reattach": st.one_of(_bad_ints, st.integers(max_value=-1)),
    "timeout": st.one_of(
        st.sampled_from([float("nan"), 0, -1, -float("inf"), "5", True]), _objects
    ),
    "offset_day": st.one_of(_bad_ints, st.integers(max_value=-1), st.integers(min_value=7)),
    "offset_hour": st.one_of(_bad_ints, st.integers(max_value=-1), st.integers(min_value=24)),
    "destination": st.one_of(
        st.sampled_from(["S3", 42, [1], {"config": {}}]),
        st.builds(lambda t: {"type": t, "config": {}}, _not_str_nor_none),
        st.builds(lambda c: {"type": "NoOp", "config": c}, st.sampled_from(["x", 1, [1]])),
        st.builds(lambda j: {"type": "NoOp", "config": {"k": j}}, _bad_json),
    ),
    "level": st.one_of(
        st.integers(),
        _objects,
        st.lists(_not_str_nor_none, min_size=1, max_size=2),
        st.sampled_from(["", " , ", "bogus", "INFO,bogus", "warn"]),
    ),
    "status": st.one_of(
        st.integers(),
        _objects.filter(lambda v: not isinstance(v, (set, bytes, bytearray))),
        st.lists(_not_str_nor_none, min_size=1, max_size=2),
    ),
    "filters": st.one_of(
        st.sampled_from(["x", {"a": 1}, [1]]), _bad_json.map(lambda j: [{"k": j}])
    ),
    "query": st.one_of(_not_str_nor_none, st.sampled_from(["", "  ", "\n", "select\x00"])),
    "modifiers": st.one_of(
        # Drawn as objects, not filtered out of `_bad_json`: a filter that fails three
        # times makes Hypothesis print the strategy, and a 5000-deep list's repr recurses.
        st.sampled_from(["x", 42, [1]]),
        _bad_json_objects,
    ),
    "columns": st.one_of(
        st.sampled_from(["id", b"id", 42, {"id": 1}, [], [1], [None], [""], ["id", "  "]]),
        st.lists(_not_str_nor_none, min_size=1, max_size=2),
    ),
}
KNOWN_CLOSED: set[str] = {
    "person",
    "group_0",
    "group_1",
    "group_2",
    "group_3",
    "group_4",
    "created_at",
    "-created_at",
    "data_interval_start",
    "-data_interval_start",
    "start_at",
    "-start_at",
}
