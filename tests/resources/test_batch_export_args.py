"""Argument checks of ph.batch_exports: plainly wrong arguments fail before any request."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import aposthog
from aposthog._http import encode_json
from aposthog._posthog_dates import iso_date
from aposthog.models import BatchExportDestination, BatchExportDestinationType, BatchExportLogLevel
from aposthog.resources._batch_export_args import (
    _RELATIVE,
    backfill_bound,
    body,
    create_body,
    destination_body,
    log_levels,
    timestamp,
)
from aposthog.testing import FakePostHog

UTC = dt.timezone.utc
NOOP = {"type": "NoOp", "config": {}}

#: A well-formed id nothing is stored under.
E = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


# ---------------------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("error", "ERROR"),
        ("info, Error ,", "INFO,ERROR"),
        (["warning", BatchExportLogLevel.DEBUG], "WARNING,DEBUG"),
        (("INFO",), "INFO"),
        (None, None),
    ],
)
def test_log_levels_become_one_upper_cased_parameter(level: Any, expected: str | None) -> None:
    """A list or a comma-separated string: one comma-separated, upper-cased value."""
    assert log_levels(level) == expected


@pytest.mark.parametrize(
    ("level", "error"),
    [("", ValueError), (" , ", ValueError), ([], ValueError), ([1], TypeError), (3, TypeError)],
)
def test_bad_log_levels(level: Any, error: type[Exception]) -> None:
    """Empty or non-string levels are refused."""
    with pytest.raises(error):
        log_levels(level)


def test_a_level_with_a_comma_inside_a_list_is_refused() -> None:
    """In a list, 'INFO,ERROR' as one item would silently become two levels."""
    with pytest.raises(ValueError, match="level must be one of"):
        log_levels(["INFO,ERROR"])


def test_timestamps() -> None:
    """Aware datetimes become ISO 8601 (UTC as Z); ISO strings pass; naive ones are refused."""
    offset = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert timestamp("t", dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == (
        "2024-01-02T03:04:05.000006Z"
    )
    assert timestamp("t", dt.datetime(2024, 1, 2, tzinfo=offset)) == "2024-01-02T00:00:00+05:30"
    assert timestamp("t", "2024-01-02T03:04:05Z") == "2024-01-02T03:04:05Z"
    assert timestamp("t", "-7d", relative=True) == "-7d"
    with pytest.raises(ValueError, match="timezone-aware"):
        timestamp("after", dt.datetime(2024, 1, 2))
    with pytest.raises(ValueError, match="ISO 8601"):
        timestamp("after", "yesterday")
    with pytest.raises(ValueError, match="empty"):
        timestamp("after", " ")
    # The shape of a timestamp, not a real one: PostHog's 400, said before sending.
    for unreal in (
        "2024-02-30T00:00:00Z",
        "2024-13-01",
        "2024-01-01T25:00Z",
        "2024-01-01T10:00+25:00",
    ):
        with pytest.raises(ValueError, match="not a real date or time"):
            timestamp("after", unreal)
    with pytest.raises(TypeError, match="after"):
        timestamp("after", 1700000000)  # type: ignore[arg-type]


def test_backfill_bounds() -> None:
    """Dates, aware datetimes and either as strings; a naive time is refused."""
    assert backfill_bound("start_at", dt.date(2024, 3, 1)) == "2024-03-01"
    assert backfill_bound("start_at", dt.datetime(2024, 3, 1, tzinfo=UTC)) == (
        "2024-03-01T00:00:00Z"
    )
    assert backfill_bound("start_at", "2024-03-01") == "2024-03-01"
    assert backfill_bound("start_at", "2024-03-01T10:00+01:00") == "2024-03-01T10:00+01:00"
    assert backfill_bound("start_at", None) is None
    with pytest.raises(ValueError, match="no UTC offset"):
        backfill_bound("start_at", "2024-03-01T10:00:00")
    with pytest.raises(ValueError, match="timezone-aware"):
        backfill_bound("end_at", dt.datetime(2024, 3, 1))
    with pytest.raises(ValueError, match="ISO 8601"):
        backfill_bound("end_at", "March 1st")
    with pytest.raises(ValueError, match="not a real date or time"):
        backfill_bound("end_at", "2024-02-30")
    with pytest.raises(ValueError, match="not a real date or time"):
        backfill_bound("end_at", "2024-03-01T10:61+01:00")
    with pytest.raises(TypeError):
        backfill_bound("end_at", 20240301)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["2024-01-01T24:00:00Z", "2024-01-01T24:00+01:00", "2024-01-01T10:00:00z"]
)
def test_timestamps_posthog_cannot_parse_are_refused_before_sending(value: str) -> None:
    """
    PostHog reads `start_at`/`end_at` and the logs' `after`/`before` with DRF's
    `DateTimeField` (Django's `parse_datetime`: `datetime.fromisoformat`, then a regex
    whose zone is `Z|[+-]…`, upper case only), and a backfill's bounds with
    `datetime.fromisoformat` (`validate_date_input`). On PostHog's Python 3.13 neither
    takes hour 24 (3.14 added it) nor a lower-case `z`: each is a 400 there. Like
    `T25:00`, they should be the `ValueError` naming the argument, before sending.
    """
    with pytest.raises(ValueError, match="after"):
        timestamp("after", value)
    with pytest.raises(ValueError, match="end_at"):
        backfill_bound("end_at", value)


@pytest.mark.parametrize(
    "value", [" 2024-03-01T10:00:00Z", "2024-03-01T10:00:00+01:00 ", "\t2024-03-01"]
)
def test_timestamps_padded_with_whitespace_are_refused_or_sent_trimmed(value: str) -> None:
    """
    The checks match the value stripped, then return it as given. PostHog reads a
    backfill bound with `datetime.fromisoformat` and `start_at`/`after` with Django's
    `parse_datetime` (`fromisoformat`, then a pattern anchored at the first character
    and ending after the zone): neither takes leading or trailing blanks, so each of
    these is PostHog's 400, where the check promises a `ValueError` before sending (or
    could send the trimmed text PostHog reads).
    """
    for name, check in (("start_at", backfill_bound), ("after", timestamp)):
        try:
            sent = check(name, value)
        except ValueError:
            continue
        assert sent == value.strip()


@pytest.mark.parametrize("value", ["20240301T100000Z", "2024-03-01T10Z", "20240301"])
def test_iso_8601_forms_posthog_reads_are_not_refused(value: str) -> None:
    """
    Since Python 3.11 (PostHog runs 3.13) `datetime.fromisoformat` reads ISO 8601's
    basic format and a time with the hour alone; `validate_date_input` (backfills) and
    Django's `parse_datetime` (`start_at`, the logs' `after`) call it first, so PostHog
    takes each of these. The client's pattern wants `YYYY-MM-DD` and `HH:MM`, so they
    are a `ValueError` ("must be an ISO 8601 timestamp"): a valid request refused.
    """
    if sys.version_info < (3, 11):  # whose fromisoformat reads none: refused, named
        with pytest.raises(ValueError, match="start_at"):
            backfill_bound("start_at", value)
        with pytest.raises(ValueError, match="after"):
            timestamp("after", value)
    else:
        assert dt.datetime.fromisoformat(value)  # what PostHog's Python reads
        assert backfill_bound("start_at", value) == value
        assert timestamp("after", value) == value
        naive = value.rstrip("Z")
        if "T" in naive:  # a time without an offset is still refused for a backfill
            with pytest.raises(ValueError, match="no UTC offset"):
                backfill_bound("start_at", naive)
            assert timestamp("after", naive) == naive  # DRF reads it (in UTC)


def test_the_refusal_says_what_posthog_does_not_read() -> None:
    """The message names the lower-case `z` or the hour 24, not "no real date"."""
    with pytest.raises(ValueError, match="start_at ends in a lower-case 'z'"):
        timestamp("start_at", "2024-01-01T10:00:00z")
    with pytest.raises(ValueError, match="start_at has hour 24"):
        backfill_bound("start_at", "2024-01-01T24:00:00Z")
    # The last moment of a day and an upper-case Z still pass.
    assert timestamp("end_at", "2024-01-01T23:59:59.999999Z") == "2024-01-01T23:59:59.999999Z"
    assert backfill_bound("end_at", "2024-01-01T23:59Z") == "2024-01-01T23:59Z"


@pytest.mark.parametrize("value", ["2024-01-01T24:00:00Z", "2024-01-01T10:00:00z"])
def test_run_filters_keep_what_dateutil_reads(value: str) -> None:
    """
    The run filters' `after`/`before`/`start`/`end` go through PostHog's
    `relative_date_parse`, whose dateutil `isoparse` reads hour 24 (the next midnight)
    and a lower-case `z` (UTC): they are sent as given.
    """
    assert timestamp("after", value, relative=True) == value


#: Characters of dates, times, offsets and relative times, so that most draws are near misses.
_DATEISH = st.text(alphabet="0123456789-:T .,Zz+_Wdhmsy", max_size=26)


@given(_DATEISH)
@example("20240301T100000Z")
@example("2024-03-01T10Z")
@example("2024-3-1")
@example("2024-03")
@example("2024-02-30")
@example("2024-01-01T24:30")
@settings(max_examples=500)
def test_run_filters_let_through_exactly_the_dates_posthog_reads(value: str) -> None:
    """
    A run filter that is no relative time is sent exactly when PostHog's
    `relative_date_parse` reads a date from it (`iso_date`, which FakePostHog reads the
    filters with too); anything else is a ValueError naming the argument, never a date
    PostHog would silently read as "now".
    """
    text = value.strip()
    if text and not _RELATIVE.fullmatch(text) and iso_date(text) is None:
        with pytest.raises(ValueError, match="after"):
            timestamp("after", value, relative=True)
        return
    if not text or _RELATIVE.fullmatch(text):
        return  # blank, or relative: checked by the tests of relative times
    sent = timestamp("after", value, relative=True)
    assert sent == text


_WRONG_DESTINATION_FIELDS = [
    ("config", None),
    ("config", "ab"),
    ("config", [("a", 1)]),
    ("integration", True),
    ("integration", 1.5),
    ("integration", "1"),
]


@pytest.mark.parametrize(("field", "value"), _WRONG_DESTINATION_FIELDS)
def test_a_destination_records_wrong_fields_are_refused_by_name(field: str, value: Any) -> None:
    """
    The README's way to give a destination is a `BatchExportDestination`, typed
    `config: dict`, `integration: int | None`; attrs checks neither. The mapping form
    refuses a config that is no mapping with a `TypeError` naming `destination['config']`,
    but the record's went through `dict(...)`: None was "'NoneType' object is not
    iterable", a string "dictionary update sequence element #0 …" (names nothing), and a
    list of pairs became a config. Its integration was sent as given: `true` is PostHog's
    400, and `1.5` its lookup `pk=1.5`, which Django reads as integration 1.
    """
    destination = BatchExportDestination(type="NoOp", **{field: value})
    with pytest.raises((TypeError, ValueError), match=field):
        destination_body(destination)


@pytest.mark.parametrize(("field", "value"), _WRONG_DESTINATION_FIELDS)
def test_a_destination_mappings_wrong_fields_are_refused_as_the_records_are(
    field: str, value: Any
) -> None:
    """
    A plain mapping is the documented alternative to a `BatchExportDestination`, so it
    is checked the same way, with the same `TypeError` naming `destination['<field>']`.
    Its `integration` was sent as given: `true` is PostHog's 400, and `1.5` its lookup
    `pk=1.5`, which Django reads as integration 1, the wrong export's credentials.
    """
    with pytest.raises(TypeError) as from_record:
        destination_body(BatchExportDestination(type="NoOp", **{field: value}))
    with pytest.raises(TypeError) as from_mapping:
        destination_body({"type": "NoOp", field: value})
    expected = str(from_record.value).replace(f"destination.{field}", f"destination['{field}']")
    assert expected == str(from_mapping.value)


@pytest.mark.parametrize("value", [True, 1.5, "1"])
def test_a_destination_mappings_integration_id_is_checked_as_its_integration(value: Any) -> None:
    """
    PostHog's serializer also takes the destination's integration as `integration_id`
    (a write-only alias that wins over `integration`): a mapping may carry it, and it is
    refused by name as `integration` is, not sent for PostHog to misread.
    """
    with pytest.raises(TypeError, match=r"destination\['integration_id'\] must be an int"):
        destination_body({"type": "NoOp", "integration_id": value})


@pytest.mark.parametrize(
    "destination",
    [
        BatchExportDestination(type=BatchExportDestinationType.S3, config={"prefix": "p"}),
        {"type": "S3", "config": {"prefix": "p"}},
    ],
)
def test_the_legacy_s3_type_is_refused_on_every_write(destination: Any) -> None:
    """
    PostHog refuses every write of the retired `S3` type ("The 'S3' destination type is
    deprecated and can no longer be used", a 400): it was sent. A `ValueError` now names
    the field and the types to use; reading such an export still works (PostHog keeps
    some).
    """
    with pytest.raises(ValueError, match=r"'S3' is the legacy type .* 'AwsS3' .* 'S3Compatible'"):
        destination_body(destination)
    with pytest.raises(ValueError, match="'S3' is the legacy type"):
        create_body(name="x", destination=destination, interval="hour")


@pytest.mark.parametrize(
    ("interval", "offsets", "named"),
    [
        ("day", {"offset_day": 2}, "offset_day"),
        ("hour", {"offset_day": 1}, "offset_day"),
        ("hour", {"offset_hour": 3}, "offset_hour"),
        ("every 5 minutes", {"offset_hour": 0}, "offset_hour"),
        ("hour", {"offset_day": 0, "offset_hour": 0}, "offset_day"),
    ],
)
def test_an_offset_the_interval_does_not_take_is_refused(
    interval: str, offsets: dict[str, int], named: str
) -> None:
    """
    PostHog takes a weekday offset for `week` only and an hour for `day` and `week`
    (`validate_offset_day`, `validate_offset_hour`: a 400). Such bodies were sent; the
    range of each offset was the only check.
    """
    with pytest.raises(ValueError, match=f"^{named} is only for interval"):
        body(interval=interval, **offsets)
    with pytest.raises(ValueError, match=f"^{named} is only for interval"):
        create_body(name="x", destination={"type": "NoOp"}, interval=interval, **offsets)


def test_offsets_the_interval_takes_and_cleared_ones_are_sent() -> None:
    """A weekly export takes both, a daily one its hour; None (clearing one) is sent as is."""
    assert body(interval="week", offset_day=6, offset_hour=23) == {
        "interval": "week",
        "offset_day": 6,
        "offset_hour": 23,
    }
    assert body(interval="day", offset_hour=0)["offset_hour"] == 0
    assert body(interval="hour", offset_day=None, offset_hour=None) == {
        "interval": "hour",
        "offset_day": None,
        "offset_hour": None,
    }


def test_an_http_destination_takes_only_the_events_model() -> None:
    """PostHog: "HTTP batch exports only support the events model" (a 400), on any write."""
    http = {"type": "HTTP", "config": {"url": "https://us.i.posthog.com/batch/", "token": "t"}}
    for model in ("persons", "sessions"):
        with pytest.raises(
            ValueError, match=f"HTTP destination takes only model 'events', not '{model}'"
        ):
            body(destination=http, model=model)
    assert body(destination=http, model="events")["model"] == "events"
    assert "model" not in body(destination=http)


def test_destination_bodies() -> None:
    """Records and mappings become {type, config[, integration]}; integration None is left out."""
    record = BatchExportDestination(type="AwsS3", config={"a": 1}, integration=None)
    assert destination_body(record) == {"type": "AwsS3", "config": {"a": 1}}
    assert destination_body(BatchExportDestination(type="BigQuery", integration=4)) == {
        "type": "BigQuery",
        "config": {},
        "integration": 4,
    }
    assert destination_body({"type": "NoOp", "integration_id": 3}) == {
        "type": "NoOp",
        "integration_id": 3,
        "config": {},
    }
    with pytest.raises(ValueError, match="type"):
        destination_body({"config": {"prefix": "x"}})
    with pytest.raises(TypeError, match="config"):
        destination_body({"type": "AwsS3", "config": [1]})
    with pytest.raises(TypeError, match="type"):
        destination_body({"type": 3, "config": {}})
    with pytest.raises(TypeError, match="destination"):
        destination_body("S3")


def test_body_leaves_out_not_given_and_keeps_none() -> None:
    """NOT_GIVEN means 'not sent'; None is sent as null."""
    assert body(name="x", end_at=aposthog.NOT_GIVEN, timezone=None) == {
        "name": "x",
        "timezone": None,
    }


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"name": ""}, ValueError),
        ({"name": 5}, TypeError),
        ({"interval": ""}, ValueError),
        ({"interval": 60}, TypeError),
        ({"model": None}, TypeError),
        ({"paused": "yes"}, TypeError),
        ({"offset_day": 7}, ValueError),
        ({"offset_day": -1}, ValueError),
        ({"offset_day": True}, TypeError),
        ({"offset_hour": 24}, ValueError),
        ({"offset_hour": "5"}, TypeError),
        ({"filters": {"key": "x"}}, TypeError),
        ({"filters": ["x"]}, TypeError),
        ({"hogql_query": 1}, TypeError),
        ({"hogql_query": "  "}, ValueError),
        ({"hogql_modifiers": [1]}, TypeError),
        ({"primary_key": "id"}, TypeError),
        ({"primary_key": []}, ValueError),
        ({"version_key": ["id", ""]}, ValueError),
        ({"version_key": [1]}, TypeError),
        ({"incremental_mode": " "}, ValueError),
        ({"incremental_mode": None}, TypeError),
        ({"timezone": 1}, TypeError),
        ({"start_at": dt.datetime(2024, 1, 1)}, ValueError),
        ({"end_at": "tomorrow"}, ValueError),
    ],
)
def test_plainly_wrong_fields(fields: dict[str, Any], error: type[Exception]) -> None:
    """Each plainly wrong field is a TypeError or ValueError naming it."""
    with pytest.raises(error, match=next(iter(fields))):
        body(**fields)


def test_offsets_at_the_bounds_are_fine() -> None:
    """0-6 and 0-23 are accepted, and None clears."""
    assert body(offset_day=0, offset_hour=23) == {"offset_day": 0, "offset_hour": 23}
    assert body(offset_day=6, offset_hour=None) == {"offset_day": 6, "offset_hour": None}


# ---------------------------------------------------------------------------------- methods

Call = Callable[[aposthog.Client], Coroutine[Any, Any, Any]]

WRONG_CALLS: list[tuple[str, Call, type[Exception]]] = [
    (
        "create naive start_at",
        lambda ph: ph.batch_exports.create(
            name="x", destination=NOOP, interval="hour", start_at=dt.datetime(2024, 1, 1)
        ),
        ValueError,
    ),
    (
        "create offset_day 7",
        lambda ph: ph.batch_exports.create(
            name="x", destination=NOOP, interval="week", offset_day=7
        ),
        ValueError,
    ),
    (
        "update destination without type",
        lambda ph: ph.batch_exports.update(E, destination={"config": {"prefix": "x"}}),
        ValueError,
    ),
    (
        "update offsets without interval",
        lambda ph: ph.batch_exports.update(E, offset_hour=3),
        ValueError,
    ),
    ("update id None", lambda ph: ph.batch_exports.update(None, name="x"), TypeError),  # type: ignore[arg-type]
    ("get empty id", lambda ph: ph.batch_exports.get(""), ValueError),
    ("unpause backfill str", lambda ph: ph.batch_exports.unpause(E, backfill="yes"), TypeError),  # type: ignore[arg-type]
    ("run_test_step step -1", lambda ph: ph.batch_exports.run_test_step(E, step=-1), ValueError),
    (
        "run_test_step step str",
        lambda ph: ph.batch_exports.run_test_step(E, step="0"),  # type: ignore[arg-type]
        TypeError,
    ),
    (
        "run_test_step config list",
        lambda ph: ph.batch_exports.run_test_step(E, step=0, config=[1]),  # type: ignore[arg-type]
        TypeError,
    ),
    (
        "run_test_step_new step bool",
        lambda ph: ph.batch_exports.run_test_step_new(step=True, destination=NOOP),
        TypeError,
    ),
    ("test destination None", lambda ph: ph.batch_exports.test(destination=None), TypeError),  # type: ignore[arg-type]
    (
        "run_test_step config nan",
        lambda ph: ph.batch_exports.run_test_step(E, step=0, config={"port": float("nan")}),
        ValueError,
    ),
    (
        "create hogql_modifiers non-str key",
        lambda ph: ph.batch_exports.create(
            name="x",
            destination=NOOP,
            interval="hour",
            hogql_modifiers={1: True},  # type: ignore[dict-item]
        ),
        TypeError,
    ),
    (
        "create destination record with non-str config key",
        lambda ph: ph.batch_exports.create(
            name="x",
            destination=BatchExportDestination(type="NoOp", config={1: "x"}),  # type: ignore[dict-item]
            interval="hour",
        ),
        TypeError,
    ),
    (
        "create destination mapping with a bool integration",
        lambda ph: ph.batch_exports.create(
            name="x", destination={**NOOP, "integration": True}, interval="hour"
        ),
        TypeError,
    ),
    (
        "update destination mapping with a float integration",
        lambda ph: ph.batch_exports.update(E, destination={**NOOP, "integration": 1.5}),
        TypeError,
    ),
    (
        "create_backfill naive",
        lambda ph: ph.batch_exports.create_backfill(E, start_at="2024-01-01T00:00:00", end_at=None),
        ValueError,
    ),
    (
        "get_run empty run id",
        lambda ph: ph.batch_exports.get_run(E, ""),
        ValueError,
    ),
    (
        "get_run malformed run id",
        lambda ph: ph.batch_exports.get_run(E, "../runs"),
        ValueError,
    ),
    (
        "cancel_backfill int-like id",
        lambda ph: ph.batch_exports.cancel_backfill(E, 1.5),  # type: ignore[arg-type]
        TypeError,
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("label", "call", "error"), WRONG_CALLS, ids=[c[0] for c in WRONG_CALLS])
async def test_wrong_arguments_fail_before_sending(
    fake: FakePostHog, ph: aposthog.Client, label: str, call: Call, error: type[Exception]
) -> None:
    """The error is raised and no request reaches PostHog."""
    with pytest.raises(error):
        await call(ph)
    assert fake.requests == []


WRONG_PAGINATORS: list[tuple[str, Callable[[aposthog.Client], Any], type[Exception]]] = [
    ("logs limit 0", lambda ph: ph.batch_exports.logs(E, limit=0), ValueError),
    ("logs limit 501", lambda ph: ph.batch_exports.logs(E, limit=501), ValueError),
    ("logs limit str", lambda ph: ph.batch_exports.logs(E, limit="5"), TypeError),  # type: ignore[arg-type]
    ("logs level int", lambda ph: ph.batch_exports.logs(E, level=5), TypeError),  # type: ignore[arg-type]
    (
        "logs naive after",
        lambda ph: ph.batch_exports.logs(E, after=dt.datetime(2024, 1, 1)),
        ValueError,
    ),
    ("logs search int", lambda ph: ph.batch_exports.logs(E, search=3), TypeError),  # type: ignore[arg-type]
    ("list offset -1", lambda ph: ph.batch_exports.list(offset=-1), ValueError),
    ("runs ordering", lambda ph: ph.batch_exports.list_runs(E, ordering="status"), ValueError),
    ("runs status int", lambda ph: ph.batch_exports.list_runs(E, status=[1]), TypeError),  # type: ignore[list-item]
    (
        "backfills ordering",
        lambda ph: ph.batch_exports.list_backfills(E, ordering="-end_at"),
        ValueError,
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("label", "call", "error"), WRONG_PAGINATORS, ids=[c[0] for c in WRONG_PAGINATORS]
)
async def test_wrong_list_arguments_fail_when_called(
    fake: FakePostHog, ph: aposthog.Client, label: str, call: Any, error: type[Exception]
) -> None:
    """List methods check their arguments at once, before there is a paginator to await."""
    with pytest.raises(error):
        call(ph)
    assert fake.requests == []


_fixed_offsets = st.timedeltas(
    min_value=-dt.timedelta(hours=23, minutes=59), max_value=dt.timedelta(hours=23, minutes=59)
).map(dt.timezone)


@settings(max_examples=300, deadline=None)
@given(
    when=st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1)),
    tz=_fixed_offsets,
)
@example(when=dt.datetime(2024, 1, 1), tz=dt.timezone(dt.timedelta(seconds=30)))
def test_an_aware_datetime_is_sent_as_the_same_instant(when: dt.datetime, tz: dt.tzinfo) -> None:
    """
    Any aware datetime is sent as ISO 8601 text naming the same instant (or refused by
    name). `_iso` turns the UTC offset into `Z` with `str.replace("+00:00", "Z")`, which
    also hit the start of an offset of less than a minute: `timezone(timedelta(seconds=30))`
    was sent as `2024-01-01T00:00:00Z:30`, text no parser reads (PostHog answers 400).
    """
    value = when.replace(tzinfo=tz)
    sent = timestamp("start_at", value)
    assert sent is not None
    # (Python 3.10's `fromisoformat` does not read `Z`.)
    read = dt.datetime.fromisoformat(sent[:-1] + "+00:00" if sent.endswith("Z") else sent)
    assert read == value, sent


@pytest.mark.parametrize("field", ["timezone", "primary_key", "version_key"])
def test_text_fields_that_cannot_be_encoded_are_refused_by_name(field: str) -> None:
    """
    `name`, `hogql_query` and every other text field refuse a lone surrogate by name
    (`sendable_text`); `timezone`, `primary_key` and `version_key` are only type-checked,
    so the body fails later in `encode_json` with a bare `UnicodeEncodeError` ("'utf-8'
    codec can't encode character '\\ud800' in position 89") that names no argument.
    """
    value: Any = "Europe/\ud800" if field == "timezone" else ["id\ud800"]
    with pytest.raises(ValueError, match=field):
        encode_json(body(name="n", destination=NOOP, interval="hour", **{field: value}))


@pytest.mark.anyio
async def test_a_timezone_that_cannot_be_encoded_is_refused_by_name_unsent(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The same through `create()`: a ValueError naming `timezone`, and nothing sent."""
    with pytest.raises(ValueError, match="timezone"):
        await ph.batch_exports.create(
            name="n", destination=NOOP, interval="hour", timezone="Europe/Par\udce9s"
        )
    assert fake.requests == []
