"""
PostHog's `relative_date_parse` (`posthog/utils.py`), as FakePostHog reads the runs'
`after`, `before`, `start` and `end` with it: an ISO 8601 date or time (dateutil's
`isoparse`, then `strptime`'s `%Y-%m-%d`; see `aposthog._posthog_dates`), else `now`
moved back by the first relative time found anywhere in the value, else `now` itself.
It never refuses a value.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

from .._posthog_dates import iso_date

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


def relative_date_parse(value: str, now: dt.datetime) -> dt.datetime:
    """
    PostHog's `relative_date_parse` in a team without a timezone (UTC): an ISO 8601 date
    or time, else `now` moved back by the first relative time found in the value (such
    as `-7d`), else `now` itself: what it cannot read is "now", never an error.
    """
    parsed = iso_date(value)
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
