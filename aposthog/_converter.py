"""
The package's own cattrs converter, and the conventions every record follows.

Records are frozen, slotted attrs classes. PostHog adds fields and enum values all the
time, so decoding is forward-compatible by construction:

* every record has an `extra_fields` mapping that receives the keys this version does
  not know, and gives them back when the record is unstructured;
* an enum-typed field is declared `SomeEnum | str`: a known value becomes the member,
  an unknown one stays the string it was.

A body that does not fit raises `ResponseDecodeError` naming the JSON path of each bad
field (`$.results[3].created_at`), built from cattrs' detailed validation.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError

from ._errors import ResponseDecodeError

__all__ = [
    "EXTRA_FIELDS",
    "converter",
    "extra_fields_field",
    "parse_datetime",
    "structure",
    "unstructure",
]

T = TypeVar("T")

EXTRA_FIELDS: Final = "extra_fields"

_ISO_RE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?:[.,](?P<frac>\d+))?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_datetime(value: str) -> dt.datetime:
    """
    Parse PostHog's ISO 8601 timestamps into timezone-aware datetimes.

    Accepts `Z`, offsets with or without a colon, a space instead of `T`, any number of
    fractional digits (Python 3.10's `fromisoformat` accepts none of these), and a bare
    date. A timestamp without an offset is UTC: PostHog stores and serves UTC.
    """
    match = _ISO_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    text = match["date"] + "T" + (match["time"] or "00:00")
    if match["frac"]:
        text += "." + (match["frac"] + "000000")[:6]
    tz = match["tz"]
    if tz is None or tz in ("Z", "z"):
        tz = "+00:00"
    elif len(tz) == 3:
        tz += ":00"
    elif ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:]}"
    return dt.datetime.fromisoformat(text + tz)


def _structure_datetime(value: Any, _: type) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    return parse_datetime(value)


def _unstructure_datetime(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _open_enum_parts(tp: Any) -> tuple[type[enum.Enum], bool] | None:
    """`E | str` or `E | str | None` with E a str-valued Enum → (E, nullable)."""
    args = _union_args(tp)
    if args is None:
        return None
    rest = [a for a in args if a is not type(None)]
    enums = [a for a in rest if isinstance(a, type) and issubclass(a, enum.Enum)]
    if len(rest) != 2 or str not in rest or len(enums) != 1:
        return None
    return enums[0], len(rest) != len(args)


def _make_open_enum_hook(tp: Any) -> Callable[[Any, Any], Any]:
    parts = _open_enum_parts(tp)
    assert parts is not None
    enum_cls, nullable = parts
    members: dict[Any, enum.Enum] = {m.value: m for m in enum_cls}

    def structure_open_enum(value: Any, _: Any) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise TypeError(f"expected a string for {enum_cls.__name__}, got {value!r}")
        # An unknown value comes from a newer PostHog: keep it as the plain string.
        return members.get(value, value)

    return structure_open_enum


def _is_record(cls: Any) -> bool:
    return attrs.has(cls) and any(a.name == EXTRA_FIELDS for a in attrs.fields(cls))


def _make_record_structure(conv: cattrs.Converter) -> Callable[[type], Callable[[Any, Any], Any]]:
    def factory(cls: type) -> Callable[[Any, Any], Any]:
        # `extra_fields` is filled below, from the keys the generated function ignores.
        base: Callable[[Any, Any], Any] = cattrs.gen.make_dict_structure_fn(
            cls, conv, extra_fields=cattrs.override(omit=True)
        )
        known = frozenset(a.alias for a in attrs.fields(cls) if a.name != EXTRA_FIELDS)

        def structure_record(data: Any, _: Any) -> Any:
            if not isinstance(data, dict):
                raise TypeError(f"expected a JSON object for {cls.__name__}, got {data!r:.80}")
            instance = base(data, cls)
            unknown = data.keys() - known
            if unknown:
                # Frozen, slotted: set the one attribute the generated function leaves alone.
                object.__setattr__(instance, EXTRA_FIELDS, {k: data[k] for k in unknown})
            return instance

        return structure_record

    return factory


def _make_record_unstructure(conv: cattrs.Converter) -> Callable[[type], Callable[[Any], Any]]:
    def factory(cls: type) -> Callable[[Any], Any]:
        base: Callable[[Any], dict[str, Any]] = cattrs.gen.make_dict_unstructure_fn(cls, conv)

        def unstructure_record(obj: Any) -> dict[str, Any]:
            out: dict[str, Any] = base(obj)
            extra = out.pop(EXTRA_FIELDS, None) or {}
            if extra:
                out = {**extra, **out}
            return out

        return unstructure_record

    return factory


def make_converter() -> cattrs.Converter:
    """Build aposthog's converter (the global cattrs converter is never touched)."""
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    conv.register_structure_hook(dt.datetime, _structure_datetime)
    conv.register_unstructure_hook(dt.datetime, _unstructure_datetime)
    conv.register_structure_hook_factory(
        lambda tp: _open_enum_parts(tp) is not None, _make_open_enum_hook
    )
    conv.register_structure_hook_factory(_is_record, _make_record_structure(conv))
    conv.register_unstructure_hook_factory(_is_record, _make_record_unstructure(conv))
    return conv


converter: Final = make_converter()


def extra_fields_field() -> Any:
    """The `extra_fields` attribute every record declares (keys this version does not know)."""
    return attrs.field(factory=dict, repr=False, kw_only=True)


def structure(data: Any, cl: type[T] | Any, *, path: str = "$", request_path: str = "") -> T:
    """
    Structure `data` into `cl`, turning cattrs' errors into `ResponseDecodeError`.

    Args:
        path: the JSON path of `data` inside the response body, for the message.
        request_path: the request's path, for the message.
    """
    try:
        return typing.cast(T, converter.structure(data, cl))
    except (ClassValidationError, IterableValidationError) as exc:
        messages = cattrs.transform_error(exc, path=path)
        paths = tuple(m.rsplit(" @ ", 1)[-1] for m in messages)
        where = f" from {request_path}" if request_path else ""
        summary = "; ".join(messages[:5]) + ("; …" if len(messages) > 5 else "")
        raise ResponseDecodeError(
            f"unexpected response body{where}: {summary}", paths=paths, body=data, path=request_path
        ) from None
    except (TypeError, ValueError, KeyError) as exc:
        where = f" from {request_path}" if request_path else ""
        raise ResponseDecodeError(
            f"unexpected response body{where}: {exc} @ {path}", paths=(path,), body=data
        ) from None


def unstructure(obj: Any) -> Any:
    """Unstructure a record (or anything) into JSON-ready values."""
    return converter.unstructure(obj)
