"""The fake's `relative_date_parse`: PostHog's reading of the runs' date filters."""

from __future__ import annotations

import datetime as dt

import pytest

from aposthog.testing._relative_dates import relative_date_parse

NOW_FIXED = dt.datetime(2024, 3, 31, 10, 30, 15, 123, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-30s", NOW_FIXED - dt.timedelta(seconds=30)),
        ("-15M", NOW_FIXED - dt.timedelta(minutes=15)),
        ("-2h", NOW_FIXED - dt.timedelta(hours=2)),
        ("7d", NOW_FIXED - dt.timedelta(days=7)),
        ("-2w", NOW_FIXED - dt.timedelta(weeks=2)),
        ("-1q", NOW_FIXED - dt.timedelta(weeks=13)),
        # Months and years are calendar ones; the day stays within the month.
        ("-1m", NOW_FIXED.replace(month=2, day=29)),
        ("-13m", NOW_FIXED.replace(year=2023, month=2, day=28)),
        ("-1y", NOW_FIXED.replace(year=2023)),
        ("dStart", NOW_FIXED.replace(hour=0, minute=0, second=0, microsecond=0)),
        ("-1dEnd", NOW_FIXED.replace(day=30, hour=23, minute=59, second=59, microsecond=999999)),
        ("hStart", NOW_FIXED.replace(minute=0, second=0, microsecond=0)),
        ("-1hEnd", NOW_FIXED.replace(hour=9, minute=59, second=59, microsecond=999999)),
        ("mEnd", NOW_FIXED),  # March 31: day 31 exists
        # yEnd sets only the day (31), never the month: a year back, still March 31.
        ("-1yEnd", NOW_FIXED.replace(year=2023)),
        # The first relative time found anywhere in the value counts, not only at its start.
        ("x-2h", NOW_FIXED - dt.timedelta(hours=2)),
        ("-1mStart", NOW_FIXED.replace(month=2, day=1)),
        ("-1mEnd", NOW_FIXED.replace(month=2, day=29)),
        ("yStart", NOW_FIXED.replace(month=1, day=1)),
        ("-1wStart", NOW_FIXED - dt.timedelta(weeks=1)),
        # Units PostHog's pattern takes but nothing moves: "now".
        ("-2H", NOW_FIXED),
        ("-2D", NOW_FIXED),
        ("-2W", NOW_FIXED),
        ("-2Q", NOW_FIXED),
        ("-2Y", NOW_FIXED),
        ("d", NOW_FIXED),
        ("wStart", NOW_FIXED),
        ("nonsense", NOW_FIXED),
        ("-5mins", NOW_FIXED.replace(year=2023, month=10)),  # "-5m": five months
        # ISO 8601 as dateutil's isoparse reads it, naive in UTC.
        ("2024-01-02", dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)),
        ("2024-01-02T03:04", dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.timezone.utc)),
        ("20240102T030405Z", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)),
        (
            "2024-01-02 03:04:05,5-0130",
            dt.datetime(2024, 1, 2, 4, 34, 5, 500000, tzinfo=dt.timezone.utc),
        ),
        ("2024-01-02T24:00", dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc)),
        ("2024-01-02T+02", dt.datetime(2024, 1, 1, 22, tzinfo=dt.timezone.utc)),
        ("2024-02", dt.datetime(2024, 2, 1, tzinfo=dt.timezone.utc)),
        ("2024", dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)),
        # Any one character separates the date from the time; `z` is UTC too.
        ("2024-01-02_03:04", dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.timezone.utc)),
        ("20240102T030405z", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)),
        ("2024-1-2", dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)),  # strptime's fallback
        ("2024-02-30", NOW_FIXED),
        ("2024-01-02T10:60", NOW_FIXED),
        ("2024-01-02T10:00+24:00", NOW_FIXED),
        ("2024-01-02T10:00+05:60", NOW_FIXED),  # dateutil refuses minutes past 59
        ("2024-01-02T24:30", NOW_FIXED),  # 24:00 only on the hour
        ("2024-01-02T03:0405", NOW_FIXED),  # colons in the time: all or none
        ("2024-01-02T", NOW_FIXED),  # a separator needs a time after it
        # A fraction is cut to microseconds, not rounded or refused.
        (
            "2024-01-02T03:04:05.1234567",
            dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc),
        ),
    ],
)
def test_relative_date_parse(value: str, expected: dt.datetime) -> None:
    """The fake's relative_date_parse, checked against what PostHog's computes."""
    assert relative_date_parse(value, NOW_FIXED) == expected
