"""
How PostHog's `relative_date_parse` (`posthog/utils.py`) reads a date before it looks for
a relative time: dateutil's `isoparse`, then `strptime(value, "%Y-%m-%d")`. Pure.

Both sides of the runs' date filters use it: the client lets through every date that
PostHog reads so (anything else PostHog silently reads as "now"), and `FakePostHog`
reads the filters with it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re

__all__ = ["iso_date"]

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


def iso_date(value: str) -> dt.datetime | None:
    """
    The moment `relative_date_parse` reads from `value` as a date (naive ones in UTC, as
    in a project without a timezone), or None when it reads none and goes on to look
    for a relative time.
    """
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
