"""Hypothesis strategies for aposthog records, built from their attrs fields."""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from typing import Any

import attrs
from hypothesis import strategies as st

from aposthog._converter import EXTRA_FIELDS

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
aware_datetimes = st.datetimes(
    min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2100, 1, 1)
).map(lambda d: d.replace(tzinfo=dt.timezone.utc))


def for_type(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for values of the annotation `tp`, as records declare them."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and str in args:
            # An open enum: a known member or a value a newer PostHog might send.
            strategy: st.SearchStrategy[Any] = st.sampled_from(list(enums[0])) | st.text(
                min_size=1, max_size=12
            ).filter(lambda s: s not in {m.value for m in enums[0]})
            if type(None) in args:
                strategy = strategy | st.none()
            return strategy
        return st.one_of(*(for_type(a) for a in args))
    if tp is type(None):
        return st.none()
    if tp is Any:
        return json_values
    if tp is str:
        return st.text(max_size=20)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-(2**31), 2**31)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is dt.datetime:
        return aware_datetimes
    if origin is list:
        return st.lists(for_type(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), for_type(args[1]), max_size=3)
    if isinstance(tp, type) and attrs.has(tp):
        return records(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    raise NotImplementedError(f"no strategy for {tp!r}")


def records(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Instances of an attrs record, with unknown extra fields now and then."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    known = set()
    for field in attrs.fields(cls):
        known.add(field.alias)
        if field.name == EXTRA_FIELDS:
            continue
        fields[field.alias] = for_type(hints[field.name])
    extra = st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in known and k != EXTRA_FIELDS),
        json_values,
        max_size=2,
    )
    return st.builds(cls, **fields, **{EXTRA_FIELDS: extra})
