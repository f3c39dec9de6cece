"""
PostHog's `relative_date_parse` (`posthog/utils.py`), as FakePostHog reads the runs'
`after`, `before`, `start` and `end` with it: an ISO 8601 date or time (dateutil's
`isoparse`, then `strptime`'s `%Y-%m-%d`), else `now` moved back by the first relative
time found anywhere in the value, else `now` itself. It never refuses a value.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import re

__all__ = ["relative_date_parse"]

#: `relative_date_parse`'s pattern, which PostHog searches for anywhere in the value.
_RELATIVE = re.compile(r"-?(?P<count>[0-9]+)?(?P<unit>[hdwmqysHDWMQY])(?P<position>Start|End)?")
#: `get_delta_mapping_for`: the units a count moves by a fixed length (H, D, W, Q and Y
#: match the pattern but move nothing); `m` and `y` move by calendar months and years.
_FIXED_UNITS = {
    "s": dt.timedelta(seconds=1),
    "M": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
    "w": dt.timedelta(weeks=1),
    "q": dt.timedelta(weeks=13),
}
#: `get_delta_mapping_for`: the fields `Start` and `End` set, with or without a count.
_SNAPS: dict[tuple[str, str], dict[str, int]] = {
    ("h", "Start"): {"minute": 0, "second": 0, "microsecond": 0},
    ("h", "End"): {"minute": 59, "second": 59, "microsecond": 999999},
    ("d", "Start"): {"hour": 0, "minute": 0, "second": 0, "microsecond": 0},
    ("d", "End"): {"hour": 23, "minute": 59, "second": 59, "microsecond": 999999},
    ("m", "Start"): {"day": 1},
    ("m", "End"): {"day": 31},
    ("y", "Start"): {"month": 1, "day": 1},
    ("y", "End"): {"day": 31},
}
#: What dateutil's `isoparse` reads, but ISO week and ordinal dates: `YYYY`, `YYYY-MM`,
#: or `YYYY-MM-DD` or `YYYYMMDD` then optionally any one character and a time of two
#: characters or more: `hh`, `hh:mm`, `hhmm`, `hh:mm:ss` or `hhmmss`, a fraction after
#: the seconds, then an offset `Z`, `±hh`, `±hhmm` or `±hh:mm` (or the offset alone).
_ISO_YEAR_MONTH = re.compile(r"(?P<year>\d{4})(?:-(?P<month>\d{2}))?")
_ISO_DATETIME = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})-(?P<day>\d{2})|(?P<bmonth>\d{2})(?P<bday>\d{2}))"
    r"(?:.(?=..)(?:(?P<hour>\d{2})(?:(?P<sep>:?)(?P<minute>\d{2})"
    r"(?:(?P=sep)(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?)?)?"
    r"(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?)?"
)
#: `strptime(value, "%Y-%m-%d")`, PostHog's fallback for dates without zero-padding.
_UNPADDED_DATE = re.compile(r"(\d{4})-(1[0-2]|0[1-9]|[1-9])-(3[01]|[12]\d|0[1-9]|[1-9])")


def relative_date_parse(value: str, now: dt.datetime) -> dt.datetime:
    """
    PostHog's `relative_date_parse` in a team without a timezone (UTC): an ISO 8601 date
    or time, else `now` moved back by the first relative time found in the value (such
    as `-7d`), else `now` itself: what it cannot read is "now", never an error.
    """
    parsed = _iso_date(value)
    if parsed is not None:
        return parsed
    match = _RELATIVE.search(value)
    if match is None:
        return now
    count = int(match["count"] or 0)
    unit = match["unit"]
    snap = _SNAPS.get((unit, match["position"] or ""), {})
    # relativedelta's order: years and months first (the day kept within the month),
    # then the fields Start/End set, then the fixed lengths.
    months = count if unit == "m" else 12 * count if unit == "y" else 0
    year, month = divmod(now.year * 12 + snap.get("month", now.month) - 1 - months, 12)
    day = min(calendar.monthrange(year, month + 1)[1], snap.get("day", now.day))
    moved = now.replace(
        year=year,
        month=month + 1,
        day=day,
        hour=snap.get("hour", now.hour),
        minute=snap.get("minute", now.minute),
        second=snap.get("second", now.second),
        microsecond=snap.get("microsecond", now.microsecond),
    )
    return moved - count * _FIXED_UNITS.get(unit, dt.timedelta())


def _iso_date(value: str) -> dt.datetime | None:
    """dateutil's `isoparse`, else `strptime`'s `%Y-%m-%d`, naive in UTC; else None."""
    with contextlib.suppress(ValueError):
        return _isoparse(value)
    with contextlib.suppress(ValueError):
        return _unpadded_date(value)
    return None


def _isoparse(value: str) -> dt.datetime:
    short = _ISO_YEAR_MONTH.fullmatch(value)
    if short is not None:
        return dt.datetime(int(short["year"]), int(short["month"] or 1), 1, tzinfo=dt.timezone.utc)
    match = _ISO_DATETIME.fullmatch(value)
    if match is None:
        raise ValueError(f"not an ISO 8601 date: {value!r}")
    date = dt.date(
        int(match["year"]),
        int(match["month"] or match["bmonth"]),
        int(match["day"] or match["bday"]),
    )
    hour, minute, second = (int(match[key] or 0) for key in ("hour", "minute", "second"))
    micro = int((match["fraction"] or "0")[:6].ljust(6, "0"))
    tz = _offset(match["tz"])
    if hour == 24:  # ISO 8601's midnight at the end of the day, on the hour only
        if minute or second or micro:
            raise ValueError(f"24:00 past the hour: {value!r}")
        return dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return dt.datetime.combine(date, dt.time(hour, minute, second, micro), tzinfo=tz)


def _unpadded_date(value: str) -> dt.datetime:
    match = _UNPADDED_DATE.fullmatch(value)
    if match is None:
        raise ValueError(f"not a date: {value!r}")
    year, month, day = (int(part) for part in match.groups())
    return dt.datetime(year, month, day, tzinfo=dt.timezone.utc)


def _offset(text: str | None) -> dt.tzinfo:
    if text is None or text in ("Z", "z"):
        return dt.timezone.utc
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"not an offset: {text!r}")
    sign = -1 if text[0] == "-" else 1
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
