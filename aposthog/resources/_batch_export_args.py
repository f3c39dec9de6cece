"""
Checking and encoding the arguments of `ph.batch_exports` methods (pure, no I/O).

Every check here rejects something PostHog would reject (or silently misread), but
before a request is made, with a message that names the argument.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .._client import NotGiven
from .._posthog_dates import iso_date
from ..models.batch_exports import (
    BatchExportDestination,
    BatchExportDestinationType,
    BatchExportIncrementalMode,
    BatchExportInterval,
    BatchExportLogLevel,
    BatchExportModel,
    RedactedBody,
)
from ._checks import (
    check_bool,
    check_json,
    check_str,
    choice,
    int_in_range,
    not_blank,
    sendable_text,
)

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
    "relative_time",
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
#: PostHog's relative times (`relative_date_parse`): an optional `-`, a count, a unit, and
#: `Start` or `End`, which snap the hour, day, month or year as PostHog does.
_RELATIVE = re.compile(r"-?(?P<count>\d+)?(?P<unit>[hdwmqysHDWMQY])(?P<position>Start|End)?")
#: The units PostHog snaps with `Start` or `End`, with or without a count.
_SNAPPED_UNITS = frozenset("hdmy")
#: The units PostHog reads with a count (seconds, minutes, hours, days, weeks, months,
#: quarters of 13 weeks, years; H, D, W, Q and Y match its pattern but mean nothing),
#: each with its longest length in days; and the farthest back a relative time may
#: reach: PostHog's dates end at year 1, and a count past it is its 500 (a server error
#: the client would retry), not an answer.
_UNIT_DAYS = {
    "s": 1 / 86400,
    "M": 1 / 1440,
    "h": 1 / 24,
    "d": 1,
    "w": 7,
    "m": 31,
    "q": 91,
    "y": 366,
}
_MAX_DAYS_BACK = 1000 * 366


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
    offset = value.utcoffset()
    if offset is not None and offset % dt.timedelta(minutes=1):
        # An offset with seconds (`timezone(timedelta(seconds=30))`, a local mean time):
        # the same instant in UTC, which every parser PostHog uses reads (dateutil's,
        # behind the runs' filters, reads offsets of hours and minutes only, and takes
        # anything else for "now").
        value = value.astimezone(dt.timezone.utc)
    text = value.isoformat()
    # Only a trailing offset (never the start of one with seconds): UTC reads `Z`.
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def timestamp(name: str, value: dt.datetime | str | None, *, relative: bool = False) -> str | None:
    """
    A datetime argument as ISO 8601: aware datetimes, or strings PostHog can parse.

    With `relative`, also the relative times of PostHog's run filters, such as `-7d`
    (see `relative_time`).
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
    if relative:
        return relative_time(name, value)
    text = value.strip()  # sent so: PostHog's parsers take no blanks around it
    match = _ISO_8601.fullmatch(text)
    if match is None:
        if _other_iso_8601(text) is None:
            raise ValueError(f"{name} must be an ISO 8601 timestamp, got {value!r}")
        return text
    _fromisoformat_reads(name, value, match)
    if not _real_datetime(match):
        raise ValueError(f"{name} is not a real date or time: {value!r}")
    return text


def instant(text: str | None) -> dt.datetime | None:
    """
    The moment a timestamp as `timestamp()` returns it names wherever it is read: one
    with `Z` or an offset. None for anything else (a relative time, a date, a time PostHog
    reads in the project's timezone, or a form this Python's `fromisoformat` does not read).
    """
    if text is None or not text[:1].isdigit():
        return None
    try:
        moment = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] == "Z" else text)
    except ValueError:
        return None
    return None if moment.tzinfo is None else moment


def check_window(
    low_name: str,
    low: str | None,
    high_name: str,
    high: str | None,
    *,
    empty: str,
    inclusive: bool = False,
) -> None:
    """
    Refuse bounds (as `timestamp()` returns them) whose window holds no moment: `high`
    before `low`, or at it unless the window is `inclusive` (`ValueError` naming
    `high_name`, `empty` saying what PostHog would do with them). Bounds without a fixed
    moment (relative, or read in the project's timezone) are left to PostHog.
    """
    start, end = instant(low), instant(high)
    if start is None or end is None or end > start or (inclusive and end == start):
        return
    after = "at or after" if inclusive else "after"
    raise ValueError(f"{high_name} ({high}) must be {after} {low_name} ({low}): {empty}")


def relative_time(name: str, value: str) -> str:
    """
    A string for PostHog's `relative_date_parse`, stripped as PostHog strips it.

    That parser reads what it can and answers "now" for the rest, without an error: a
    typo would silently become "now". So only what it reads as meant is let through:
    an ISO 8601 date or timestamp with real values, in any form PostHog reads (basic or
    extended, the hour alone, a year and month; without an offset PostHog reads it in
    the project's timezone), or a relative time `[-]<count><unit>[Start|End]`, units
    `s` seconds, `M` minutes, `h` hours, `d` days, `w` weeks, `m` months, `q` quarters
    (13 weeks), `y` years, counted back from now (`-` or not); after `h`, `d`, `m` or
    `y`, `Start`/`End` snap as PostHog does and the count may be left out (`dStart` is
    today at 00:00), reaching back at most 1000 years. Anything else is a ValueError
    naming the argument.
    """
    text = value.strip()
    iso = _ISO_8601.fullmatch(text)
    if iso is not None:
        if not _real_datetime(iso):
            raise ValueError(
                f"{name} is not a real date or time: {value!r} (PostHog would read it as now)"
            )
        return text
    if iso_date(text) is not None:
        # The other forms dateutil's `isoparse` reads (`20240301T1000Z`, `2024-03-01T10Z`,
        # `2024-03`), and `strptime`'s unpadded `2024-3-1`: each is the date it names.
        return text
    match = _RELATIVE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{name} must be an ISO 8601 date or timestamp, or a relative time such as "
            f"'-7d', '-2h' or '-30s', got {value!r}"
        )
    unit = match["unit"]
    if match["count"] is not None and unit in _UNIT_DAYS:
        if int(match["count"]) * _UNIT_DAYS[unit] > _MAX_DAYS_BACK:
            raise ValueError(
                f"{name} reaches back more than 1000 years: {value!r} (PostHog's dates end "
                "at year 1, and it answers a count past that with a server error)"
            )
        return text
    if match["position"] is not None and unit in _SNAPPED_UNITS:
        return text
    if unit not in _UNIT_DAYS:
        reason = f"PostHog reads no unit from {unit!r} (units are case-sensitive: "
        reason += "'M' is minutes, 'm' months, and 'h', 'd', 'w', 'q', 'y' are lower case)"
    else:
        reason = f"{unit!r} needs a count, e.g. '-1{unit}'"
        if match["position"] is not None:
            reason += f" ({match['position']!r} alone snaps only h, d, m and y)"
    raise ValueError(f"{name}: {reason}; PostHog would read {value!r} as now")


def _fromisoformat_reads(name: str, value: str, match: re.Match[str]) -> None:
    """
    Refuse the ISO 8601 that PostHog's `datetime.fromisoformat` does not read.

    PostHog reads `start_at`, `end_at` and the logs' `after`/`before` with DRF's
    `DateTimeField` (Django's `parse_datetime`: `fromisoformat`, then a pattern whose
    zone is an upper-case `Z` or an offset), and a backfill's bounds with `fromisoformat`
    alone. On its Python (3.13) neither reads hour 24 nor a lower-case `z`: each is a 400.
    dateutil's `isoparse`, behind the run filters (`relative_time`), reads both.
    """
    if match["tz"] == "z":
        raise ValueError(
            f"{name} ends in a lower-case 'z' ({value!r}): PostHog reads UTC only as 'Z' "
            "or an offset such as '+00:00'"
        )
    if match["time"] is not None and match["time"].startswith("24"):
        raise ValueError(
            f"{name} has hour 24 ({value!r}), which PostHog does not read: write 00:00 "
            "of the next day"
        )


#: Whether this Python's `fromisoformat` reads what PostHog's does (3.11+).
_FROMISOFORMAT_311: Final = sys.version_info >= (3, 11)


def _other_iso_8601(text: str) -> dt.datetime | None:
    """
    What PostHog's `datetime.fromisoformat` (Python 3.13) reads beyond `_ISO_8601`'s
    extended forms: the basic format (`20240301T100000Z`), a time of the hour alone
    (`T10Z`), week dates, a comma before the fraction. This Python's `fromisoformat`
    reads them the same from 3.11 on; on 3.10, which reads none of them, they are
    refused (a datetime argument is the portable spelling). None when it is not read.
    """
    if not _FROMISOFORMAT_311 or not text[:1].isdigit():
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def _is_date(text: str) -> bool:
    """Whether `text` is a date alone (one `fromisoformat` reads)."""
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _real_datetime(match: re.Match[str]) -> bool:
    """Whether an `_ISO_8601` match names a real date, time and offset."""
    try:
        dt.date.fromisoformat(match["date"])
    except ValueError:
        return False
    time, tz = match["time"], match["tz"]
    if time is not None:
        hour, minute, second = int(time[:2]), int(time[3:5]), int(time[6:8] or 0)
        # 24:00 is ISO 8601's midnight at the end of the day, which dateutil's `isoparse`
        # reads (PostHog's run filters); `_fromisoformat_reads` refuses it elsewhere.
        midnight = hour == 24 and not time[3:].strip("0:.,")
        if not midnight and (hour > 23 or minute > 59 or second > 59):
            return False
    if tz is not None and tz not in ("Z", "z"):
        digits = tz[1:].replace(":", "")
        if int(digits[:2]) > 23 or int(digits[2:] or 0) > 59:
            return False
    return True


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
    text = value.strip()  # sent so: PostHog's `fromisoformat` takes no blanks around it
    match = _ISO_8601.fullmatch(text)
    if match is None:
        parsed = _other_iso_8601(text)
        if parsed is None:
            raise ValueError(f"{name} must be an ISO 8601 date or timestamp, got {value!r}")
        if parsed.tzinfo is None and not _is_date(text):
            raise ValueError(
                f"{name} has a time but no UTC offset ({value!r}): PostHog refuses naive "
                "times; send a date for daily and weekly exports, an offset otherwise"
            )
        return text
    _fromisoformat_reads(name, value, match)
    if not _real_datetime(match):
        raise ValueError(f"{name} is not a real date or time: {value!r}")
    if match["time"] is not None and match["tz"] is None:
        raise ValueError(
            f"{name} has a time but no UTC offset ({value!r}): PostHog refuses naive times; "
            "send a date for daily and weekly exports, an offset otherwise"
        )
    return text


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
        # attrs checks no types: a config that is no mapping would fail in `dict()` naming
        # nothing (or, a list of pairs, become a config), and an integration of another
        # type would be sent as is (PostHog refuses `true`, and reads 1.5 as integration 1).
        config: Any = value.config
        if not isinstance(config, Mapping):
            raise TypeError(f"destination.config must be a mapping, got {type(config).__name__}")
        integration: Any = value.integration
        _check_integration("destination.integration", integration)
        out: dict[str, Any] = {
            "type": _writable(
                "destination.type",
                choice("destination.type", value.type, _DESTINATIONS, open_enum=True),
            ),
            "config": dict(config),
        }
        check_json("destination.config", out["config"])
        if integration is not None:
            # An explicit null would remove the export's integration; leave it out instead.
            out["integration"] = integration
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
    out["type"] = _writable(
        "destination['type']",
        choice("destination['type']", value["type"], _DESTINATIONS, open_enum=True),
    )
    config = value.get("config", {})
    if not isinstance(config, Mapping):
        raise TypeError(f"destination['config'] must be a mapping, got {type(config).__name__}")
    # `integration_id` is PostHog's write-only alias of `integration`. A None in a mapping
    # is sent as given: the caller wrote it (the record cannot tell None from left out).
    for key in ("integration", "integration_id"):
        _check_integration(f"destination[{key!r}]", value.get(key))
    check_json("destination", out | {"config": config})
    # Always sent: PostHog's destination validation fails with a 500 without it.
    out["config"] = dict(config)
    return out


def _writable(name: str, kind: str) -> str:
    if kind == "S3":
        # PostHog: "The 'S3' destination type is deprecated and can no longer be used."
        raise ValueError(
            f"{name} 'S3' is the legacy type PostHog no longer takes: use 'AwsS3' for AWS S3, "
            "or 'S3Compatible' for S3-compatible storage"
        )
    return kind


def _check_integration(name: str, value: Any) -> None:
    """An integration's id is an int (PostHog refuses `true`, and reads 1.5 as id 1)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(
            f"{name} must be an int (an integration's id) or None, got {type(value).__name__}"
        )


def _offset(name: str, value: Any, high: int) -> int | None:
    return None if value is None else int_in_range(name, value, 0, high)


def body(**fields: Any) -> dict[str, Any]:
    """
    A create, update or test request body from keyword arguments (NOT_GIVEN: left out),
    its destination's secrets hidden from its repr.
    """
    out: dict[str, Any] = RedactedBody()
    for name, value in fields.items():
        if isinstance(value, NotGiven):
            continue
        out[name] = _FIELDS[name](name, value)
    # PostHog's serializer never compares them: an export given both this way is kept,
    # with a schedule that never triggers a run.
    check_window(
        "start_at",
        out.get("start_at"),
        "end_at",
        out.get("end_at"),
        empty="PostHog would keep an export that never runs",
    )
    _check_offsets(out)
    destination = out.get("destination")
    model = out.get("model")
    if destination is not None and destination["type"] == "HTTP" and model not in (None, "events"):
        # PostHog: "HTTP batch exports only support the events model".
        raise ValueError(f"an HTTP destination takes only model 'events', not {model!r}")
    return out


def _check_offsets(out: dict[str, Any]) -> None:
    """
    An offset PostHog refuses for the interval beside it (`validate_offset_day`,
    `validate_offset_hour`): a weekday only for `week`, an hour only for `day` and `week`.
    """
    interval = out.get("interval")
    if interval is None:
        return
    if out.get("offset_day") is not None and interval != "week":
        raise ValueError(
            f"offset_day is only for interval 'week', not {interval!r} (PostHog refuses it)"
        )
    if out.get("offset_hour") is not None and interval not in ("day", "week"):
        raise ValueError(
            f"offset_hour is only for interval 'day' or 'week', not {interval!r} "
            "(PostHog refuses it)"
        )


#: Fields PostHog takes (not None) for one model only (`BatchExportSerializer.validate`).
_MODEL_ONLY: Final = (
    ("filters", "events"),
    ("hogql_modifiers", "hogql"),
    ("primary_key", "hogql"),
    ("version_key", "hogql"),
)


def create_body(**fields: Any) -> dict[str, Any]:
    """`body()` for a new export, with the rules PostHog applies to a new export's model."""
    out = body(**fields)
    model = out.get("model", "events")  # PostHog's default
    for name, only in _MODEL_ONLY:
        if out.get(name) is not None and model != only:
            # PostHog: "'filters' is only supported for 'events' not 'persons' model".
            raise ValueError(
                f"{name} is only for an export of model {only!r}, not {model!r} (PostHog "
                "refuses it)"
            )
    if (
        out.get("model") == "hogql"
        and out.get("incremental_mode") == "MERGE"
        and not out.get("primary_key")
    ):
        # PostHog: "'primary_key' is required when 'incremental_mode' is 'MERGE'".
        raise ValueError("primary_key is required when incremental_mode is MERGE")
    if out.get("model") == "hogql" and not out.get("hogql_query"):
        # PostHog: "'hogql_query' is required when 'model' is 'hogql'" (a 400, or a 403
        # first for a team without the feature).
        raise ValueError("hogql_query is required when model is 'hogql'")
    return out


def _name(name: str, value: Any) -> str:
    check_str(name, value)
    if not value.strip():
        raise ValueError(f"{name} must not be blank")
    sendable_text(name, value)
    return str(value)


def _interval(name: str, value: Any) -> str:
    return choice(name, value, _INTERVALS, open_enum=True)


def _model(name: str, value: Any) -> str:
    return choice(name, value, _MODELS, open_enum=True)


def _query(name: str, value: Any) -> str | None:
    not_blank(name, value, none_means="None clears it")
    return None if value is None else str(value)


def _timezone(name: str, value: Any) -> str | None:
    not_blank(name, value, none_means="None means UTC")
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
        sendable_text(name, column)
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
    "timezone": _timezone,
    "offset_day": lambda name, value: _offset(name, value, 6),
    "offset_hour": lambda name, value: _offset(name, value, 23),
}
