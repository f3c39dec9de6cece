"""
Checking and encoding the arguments of `ph.batch_exports` methods (pure, no I/O).

Every check here rejects something PostHog would reject too, but before a request is
made, with a message that names the argument.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .._client import NotGiven
from ..models.batch_exports import (
    BatchExportDestination,
    BatchExportDestinationType,
    BatchExportIncrementalMode,
    BatchExportInterval,
    BatchExportLogLevel,
    BatchExportModel,
)
from ._checks import check_bool, check_json, check_str, choice, int_in_range

__all__ = [
    "DestinationArg",
    "backfill_bound",
    "body",
    "check_ordering",
    "check_step",
    "create_body",
    "destination_body",
    "enum_value",
    "log_levels",
    "timestamp",
]

DestinationArg = BatchExportDestination | Mapping[str, Any]
# Open enums (PostHog adds values): known ones are matched whatever their case.
_INTERVALS = tuple(item.value for item in BatchExportInterval)
_MODELS = tuple(item.value for item in BatchExportModel)
_INCREMENTAL_MODES = tuple(item.value for item in BatchExportIncrementalMode)
_DESTINATIONS = tuple(item.value for item in BatchExportDestinationType)
_LOG_LEVELS = tuple(item.value for item in BatchExportLogLevel)
#: The ISO 8601 shapes PostHog parses: a date, or a date and time with an optional offset.
_ISO_8601 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?)?"
)


def enum_value(value: Any) -> Any:
    """The wire value of an open-enum argument: a member's value, or the string as given."""
    return value.value if isinstance(value, enum.Enum) else value


def _iso(name: str, value: dt.datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        # PostHog would read a naive time in its own timezone (or refuse it, for
        # backfills): guessing for the caller hides bugs.
        raise ValueError(
            f"{name} must be timezone-aware, e.g. datetime(..., tzinfo=datetime.timezone.utc)"
        )
    return value.isoformat().replace("+00:00", "Z")


def timestamp(name: str, value: dt.datetime | str | None, *, relative: bool = False) -> str | None:
    """
    A datetime argument as ISO 8601: aware datetimes, or strings PostHog can parse.

    With `relative`, strings pass as given: PostHog's run filters also take `-7d`.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _iso(name, value)
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a datetime or an ISO 8601 string, got {type(value).__name__}"
        )
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    if not relative and _ISO_8601.fullmatch(value.strip()) is None:
        raise ValueError(f"{name} must be an ISO 8601 timestamp, got {value!r}")
    return value


def backfill_bound(name: str, value: dt.date | str | None) -> str | None:
    """A backfill's start or end: a date, an aware datetime, or the same as a string."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _iso(name, value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a date, a datetime or an ISO 8601 string, got {type(value).__name__}"
        )
    match = _ISO_8601.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{name} must be an ISO 8601 date or timestamp, got {value!r}")
    if match["time"] is not None and match["tz"] is None:
        raise ValueError(
            f"{name} has a time but no UTC offset ({value!r}): PostHog refuses naive times; "
            "send a date for daily and weekly exports, an offset otherwise"
        )
    return value


def log_levels(level: str | Iterable[Any] | None) -> str | None:
    """`level` of `logs()`: a list or a comma-separated string, sent as one upper-cased value."""
    if level is None:
        return None
    if isinstance(level, str):
        items: list[Any] = level.split(",")
    elif isinstance(level, Iterable):
        items = list(level)
    else:
        raise TypeError(f"level must be a str or a list of str, got {type(level).__name__}")
    levels: list[str] = []
    for item in items:
        check_str("level", item)
        text = str(enum_value(item)).strip()
        if text:
            # PostHog compares levels upper-cased; an unknown one would silently match nothing.
            levels.append(choice("level", text, _LOG_LEVELS))
    if not levels:
        raise ValueError("level must name at least one level, e.g. 'ERROR'")
    return ",".join(levels)


def check_step(step: Any) -> None:
    """A destination test step is the index of one of the destination's steps."""
    int_in_range("step", step, 0)


def check_ordering(value: str | None, allowed: tuple[str, ...]) -> str | None:
    """PostHog silently ignores an unknown ordering; refuse it instead."""
    if value is None:
        return None
    return choice("ordering", value, allowed)


def destination_body(value: Any) -> dict[str, Any]:
    """A destination argument as PostHog takes it: `type`, `config` and the integration."""
    if isinstance(value, BatchExportDestination):
        out: dict[str, Any] = {
            "type": choice("destination.type", value.type, _DESTINATIONS, open_enum=True),
            "config": dict(value.config),
        }
        check_json("destination.config", out["config"])
        if value.integration is not None:
            # An explicit null would remove the export's integration; leave it out instead.
            out["integration"] = value.integration
        return out
    if not isinstance(value, Mapping):
        raise TypeError(
            "destination must be a BatchExportDestination or a mapping with 'type' and "
            f"'config', got {type(value).__name__}"
        )
    if "type" not in value:
        # PostHog needs the type even when only config changes, and fails with a 500.
        raise ValueError("destination must include its 'type' (it cannot change on update)")
    out = dict(value)
    out["type"] = choice("destination['type']", value["type"], _DESTINATIONS, open_enum=True)
    config = value.get("config", {})
    if not isinstance(config, Mapping):
        raise TypeError(f"destination['config'] must be a mapping, got {type(config).__name__}")
    check_json("destination", out | {"config": config})
    # Always sent: PostHog's destination validation fails with a 500 without it.
    out["config"] = dict(config)
    return out


def _offset(name: str, value: Any, high: int) -> int | None:
    return None if value is None else int_in_range(name, value, 0, high)


def body(**fields: Any) -> dict[str, Any]:
    """A create, update or test request body from keyword arguments (NOT_GIVEN: left out)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, NotGiven):
            continue
        out[name] = _FIELDS[name](name, value)
    return out


def create_body(**fields: Any) -> dict[str, Any]:
    """`body()` for a new export, with the rule PostHog applies to a new `hogql` one."""
    out = body(**fields)
    if (
        out.get("model") == "hogql"
        and out.get("incremental_mode") == "MERGE"
        and not out.get("primary_key")
    ):
        # PostHog: "'primary_key' is required when 'incremental_mode' is 'MERGE'".
        raise ValueError("primary_key is required when incremental_mode is MERGE")
    return out


def _name(name: str, value: Any) -> str:
    check_str(name, value)
    if not value.strip():
        raise ValueError(f"{name} must not be blank")
    return str(value)


def _interval(name: str, value: Any) -> str:
    return choice(name, value, _INTERVALS, open_enum=True)


def _model(name: str, value: Any) -> str:
    return choice(name, value, _MODELS, open_enum=True)


def _query(name: str, value: Any) -> str | None:
    check_str(name, value, allow_none=True)
    if value is not None and not value.strip():
        raise ValueError(f"{name} must not be blank (None clears it)")
    return None if value is None else str(value)


def _optional_str(name: str, value: Any) -> str | None:
    check_str(name, value, allow_none=True)
    return None if value is None else str(value)


def _filters(name: str, value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(f, Mapping) for f in value):
        raise TypeError(f"{name} must be a list of filter dicts or None")
    check_json(name, value)
    return [dict(f) for f in value]


def _modifiers(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of HogQL modifiers or None")
    check_json(name, dict(value))
    return dict(value)


def _columns(name: str, value: Any) -> list[str] | None:
    """`primary_key` and `version_key`: a non-empty list of column names, or None."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list of column names or None")
    columns = list(value)
    if not columns:
        raise ValueError(f"{name} must name at least one column (None clears it)")
    for column in columns:
        check_str(name, column)
        if not column.strip():
            raise ValueError(f"{name} must not contain a blank column name")
    return [str(column) for column in columns]


def _incremental_mode(name: str, value: Any) -> str:
    return choice(name, value, _INCREMENTAL_MODES, open_enum=True)


_FIELDS: dict[str, Any] = {
    "name": _name,
    "destination": lambda _, value: destination_body(value),
    "interval": _interval,
    "model": _model,
    "paused": check_bool,
    "start_at": timestamp,
    "end_at": timestamp,
    "hogql_query": _query,
    "hogql_modifiers": _modifiers,
    "primary_key": _columns,
    "version_key": _columns,
    "incremental_mode": _incremental_mode,
    "filters": _filters,
    "timezone": _optional_str,
    "offset_day": lambda name, value: _offset(name, value, 6),
    "offset_hour": lambda name, value: _offset(name, value, 23),
}
