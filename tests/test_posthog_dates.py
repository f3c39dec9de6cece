"""`iso_date`: the dates PostHog's `relative_date_parse` reads before relative times."""

from __future__ import annotations

import datetime as dt

import pytest

from aposthog._posthog_dates import iso_date

UTC = dt.timezone.utc


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01", dt.datetime(2024, 3, 1, tzinfo=UTC)),
        ("20240301T100000Z", dt.datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01T10Z", dt.datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01T1030+0100", dt.datetime(2024, 3, 1, 9, 30, tzinfo=UTC)),
        ("2024-03", dt.datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-3-1", dt.datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-02-29T24:00", dt.datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_the_dates_posthog_reads(value: str, expected: dt.datetime) -> None:
    assert iso_date(value) == expected


@pytest.mark.parametrize(
    "value",
    ["-7d", "", "2024-02-30", "2024-13", "2024-03-01T10:60", "2024-03-01T10+24", "2024-3-32"],
)
def test_what_is_no_date_is_none(value: str) -> None:
    """What PostHog goes on to search for a relative time in (or reads as now)."""
    assert iso_date(value) is None
