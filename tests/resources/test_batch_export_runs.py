"""ph.batch_exports runs and backfills against FakePostHog: cursor pages, actions, errors."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
import uuid
from typing import Any

import pytest

import aposthog
from aposthog.models import BatchExport, BatchExportRunStatus
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC)

#: A well-formed id nothing is stored under.
MISSING = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


async def make(ph: aposthog.Client, **kwargs: Any) -> BatchExport:
    kwargs.setdefault("name", "noop")
    kwargs.setdefault("destination", {"type": "NoOp", "config": {}})
    kwargs.setdefault("interval", "hour")
    return await ph.batch_exports.create(**kwargs)


def hours_ago(n: float) -> dt.datetime:
    return NOW - dt.timedelta(hours=n)


# ---------------------------------------------------------------------------------- runs


async def test_list_runs_is_a_cursor_paginated_newest_first_list(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Runs come 100 to a page without a count, newest first, from the last 7 days."""
    export = await make(ph)
    runs = [fake.add_batch_export_run(export.id, created_at=hours_ago(i)) for i in range(150)]
    fake.add_batch_export_run(export.id, created_at=NOW - dt.timedelta(days=8))

    first = await ph.batch_exports.list_runs(export.id)
    assert (len(first.results), first.count) == (100, None)
    assert first.next is not None
    assert "cursor" in urllib.parse.parse_qs(urllib.parse.urlsplit(first.next).query)
    assert fake.requests[-1].path == f"/api/environments/1/batch_exports/{export.id}/runs/"

    every = await ph.batch_exports.list_runs(export.id).to_list()
    assert [r.id for r in every] == [r["id"] for r in runs]
    assert every[0].status is BatchExportRunStatus.COMPLETED
    assert every[0].batch_export == export.id


async def test_list_runs_filters_go_on_the_wire(fake: FakePostHog, ph: aposthog.Client) -> None:
    """status repeats; after/before are ISO 8601 or relative; ordering is passed through."""
    export = await make(ph)
    failed = fake.add_batch_export_run(export.id, status="Failed", created_at=hours_ago(1))
    fake.add_batch_export_run(export.id, status="Completed", created_at=hours_ago(2))
    old = fake.add_batch_export_run(export.id, status="Running", created_at=hours_ago(24 * 20))

    found = await ph.batch_exports.list_runs(
        export.id, status=[BatchExportRunStatus.FAILED, "Running"], after="-30d"
    ).to_list()
    assert [r.id for r in found] == [failed["id"], old["id"]]
    assert fake.requests[-1].query == (
        ("status", "Failed"),
        ("status", "Running"),
        ("after", "-30d"),
    )

    window = await ph.batch_exports.list_runs(
        export.id,
        status="Failed",
        after=hours_ago(1.5),
        before=NOW,
        ordering="-created_at",
    ).to_list()
    assert [r.id for r in window] == [failed["id"]]
    query = dict(fake.requests[-1].query)
    assert query["after"] == hours_ago(1.5).isoformat().replace("+00:00", "Z")
    assert query["ordering"] == "-created_at"


async def test_list_runs_by_data_interval(fake: FakePostHog, ph: aposthog.Client) -> None:
    """Ordering by data_interval_start filters on start/end instead of created_at."""
    export = await make(ph)
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    early = fake.add_batch_export_run(export.id, data_interval_end=hour - dt.timedelta(hours=5))
    late = fake.add_batch_export_run(export.id, data_interval_end=hour - dt.timedelta(hours=1))

    runs = await ph.batch_exports.list_runs(
        export.id,
        ordering="data_interval_start",
        start=hour - dt.timedelta(hours=6),
        end=hour - dt.timedelta(hours=2),
    ).to_list()
    assert [r.id for r in runs] == [early["id"]]

    both = await ph.batch_exports.list_runs(export.id, ordering="-data_interval_start").to_list()
    assert [r.id for r in both] == [late["id"], early["id"]]


async def test_list_runs_sends_known_statuses_in_posthogs_spelling(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog matches statuses case-sensitively: "failed" is sent as "Failed"."""
    export = await make(ph)
    await ph.batch_exports.list_runs(export.id, status=["failed", "RUNNING"])
    assert [v for k, v in fake.requests[-1].query if k == "status"] == ["Failed", "Running"]


async def test_list_runs_rejects_unknown_statuses_server_side(ph: aposthog.Client) -> None:
    """A status PostHog does not know is its 400 (the client passes new statuses through)."""
    export = await make(ph)
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.batch_exports.list_runs(export.id, status="Exploded")
    assert (info.value.attr, info.value.code) == ("status__0", "invalid_choice")


async def test_get_run(fake: FakePostHog, ph: aposthog.Client) -> None:
    """get_run() fetches a run of the export; a run of another export is a 404."""
    export, other = await make(ph), await make(ph)
    stored = fake.add_batch_export_run(
        export.id, status="Failed", latest_error="AccessDenied", records_completed=3
    )

    run = await ph.batch_exports.get_run(export.id, stored["id"])
    assert fake.requests[-1].path == (
        f"/api/environments/1/batch_exports/{export.id}/runs/{stored['id']}/"
    )
    assert (run.status, run.latest_error, run.records_completed) == ("Failed", "AccessDenied", 3)
    assert run.data_interval_end == stored["data_interval_end"]

    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.get_run(other.id, stored["id"])


async def test_a_second_retry_while_the_first_runs_is_posthogs_500(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    PostHog names a retry's backfill workflow by the run's bounds alone, and Temporal
    runs one workflow of an id at a time: a retry of a run whose retry still runs fails
    in `start_workflow`, uncaught, a 500, and starts nothing. The fake started a second
    backfill. Once the first has ended, a retry goes again.
    """
    export = await make(ph)
    run = fake.add_batch_export_run(export.id, status="Failed")
    await ph.batch_exports.retry_run(export.id, run["id"])
    with pytest.raises(aposthog.InternalServerError):
        await ph.batch_exports.retry_run(export.id, run["id"])
    (backfill,) = fake.batch_export_backfills.values()
    backfill["status"] = "Completed"
    await ph.batch_exports.retry_run(export.id, run["id"])
    assert 2 == len(fake.batch_export_backfills)


async def test_retry_run_returns_posthogs_workflow_id(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    retry_run() is a 201 with the id of PostHog's backfill workflow over the run's data
    interval (bounds in UTC); the backfill it creates has a UUID of its own and is found
    by that interval.
    """
    export = await make(ph)
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    stored = fake.add_batch_export_run(
        export.id, status="Failed", data_interval_end=dt.datetime(2024, 1, 1, 6, 30, tzinfo=india)
    )
    fake.add_batch_export_backfill(export.id, start_at=dt.datetime(2023, 1, 1, tzinfo=UTC))
    created = fake.status_counts[201]

    workflow_id = await ph.batch_exports.retry_run(export.id, stored["id"])

    assert fake.requests[-1].path.endswith(f"/runs/{stored['id']}/retry/")
    assert fake.status_counts[201] == created + 1
    assert workflow_id == (
        f"{export.id}-Backfill-2024-01-01T00:00:00+00:00-2024-01-01T01:00:00+00:00"
    )
    with pytest.raises(ValueError, match="backfill_id"):
        await ph.batch_exports.get_backfill(export.id, workflow_id)

    interval = (stored["data_interval_start"], stored["data_interval_end"])
    found = [
        b
        async for b in ph.batch_exports.list_backfills(export.id)
        if (b.start_at, b.end_at) == interval
    ]
    assert len(found) == 1
    assert str(uuid.UUID(found[0].id)) == found[0].id
    backfill = await ph.batch_exports.get_backfill(export.id, found[0].id)
    assert backfill.status is BatchExportRunStatus.RUNNING
    assert backfill.progress is not None
    assert (backfill.progress.total_runs, backfill.progress.finished_runs) == (1, 0)

    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.retry_run(export.id, MISSING)


async def test_cancel_run(fake: FakePostHog, ph: aposthog.Client) -> None:
    """A running run is cancelled; any other status is PostHog's 400."""
    export = await make(ph)
    running = fake.add_batch_export_run(export.id, status="Running")

    assert await ph.batch_exports.cancel_run(export.id, running["id"]) is None  # type: ignore[func-returns-value]
    assert fake.requests[-1].method == "POST"
    assert fake.requests[-1].path.endswith(f"/runs/{running['id']}/cancel/")
    assert (await ph.batch_exports.get_run(export.id, running["id"])).status == "Cancelled"

    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.batch_exports.cancel_run(export.id, running["id"])
    assert info.value.detail == "Cannot cancel a run that is in 'Cancelled' status"


async def test_run_actions_find_only_the_last_7_days_without_after(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    PostHog's runs view narrows every action to runs created in the last 7 days: an
    older run is a 404 to get/retry/cancel unless `after` reaches back to it.
    """
    export = await make(ph)
    old = fake.add_batch_export_run(
        export.id, status="Running", created_at=NOW - dt.timedelta(days=10)
    )

    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.get_run(export.id, old["id"])
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.retry_run(export.id, old["id"])
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.cancel_run(export.id, old["id"])
    assert fake.batch_export_backfills == {}
    assert old["status"] == "Running"

    since = NOW - dt.timedelta(days=11)
    run = await ph.batch_exports.get_run(export.id, old["id"], after=since)
    assert run.id == old["id"]
    assert fake.requests[-1].query == (("after", since.isoformat().replace("+00:00", "Z")),)

    workflow_id = await ph.batch_exports.retry_run(export.id, old["id"], after="-30d")
    assert fake.requests[-1].query == (("after", "-30d"),)
    assert workflow_id.startswith(f"{export.id}-Backfill-")
    [backfill] = await ph.batch_exports.list_backfills(export.id).to_list()
    assert backfill.start_at == old["data_interval_start"]

    assert await ph.batch_exports.cancel_run(export.id, old["id"], after="-30d") is None  # type: ignore[func-returns-value]
    assert old["status"] == "Cancelled"


async def test_run_actions_after_is_a_lower_bound(fake: FakePostHog, ph: aposthog.Client) -> None:
    """`after` also hides a run created before it, even a recent one."""
    export = await make(ph)
    stored = fake.add_batch_export_run(export.id, created_at=hours_ago(5))

    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.get_run(export.id, stored["id"], after=hours_ago(1))
    assert (await ph.batch_exports.get_run(export.id, stored["id"], after="-1d")).id == stored["id"]


@pytest.mark.parametrize("method", ["get_run", "retry_run", "cancel_run"])
async def test_run_actions_check_after_before_sending(
    fake: FakePostHog, ph: aposthog.Client, method: str
) -> None:
    """A naive datetime, an empty string or a non-string `after` never reaches PostHog."""
    sent = len(fake.requests)
    call = getattr(ph.batch_exports, method)
    with pytest.raises(ValueError, match="timezone-aware"):
        await call(MISSING, MISSING, after=dt.datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="must not be empty"):
        await call(MISSING, MISSING, after=" ")
    with pytest.raises(TypeError):
        await call(MISSING, MISSING, after=3)
    assert len(fake.requests) == sent


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("-30s", "-30s"),
        ("-15M", "-15M"),
        ("-2h", "-2h"),
        ("7d", "7d"),
        ("-1m", "-1m"),
        ("-1q", "-1q"),
        ("-1dStart", "-1dStart"),
        ("mStart", "mStart"),
        (" -7d ", "-7d"),
        ("-1000y", "-1000y"),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01T10:00", "2024-01-01T10:00"),
        ("2024-01-01 10:00:00.5+05:30", "2024-01-01 10:00:00.5+05:30"),
        # The other forms dateutil's isoparse reads, and strptime's unpadded date.
        ("20240301T100000Z", "20240301T100000Z"),
        ("2024-03-01T10Z", "2024-03-01T10Z"),
        ("2024-03-01T1000+0100", "2024-03-01T1000+0100"),
        ("20240301", "20240301"),
        ("2024-03", "2024-03"),
        ("2024-3-1", "2024-3-1"),
    ],
)
async def test_run_filters_take_posthogs_relative_times(
    fake: FakePostHog, ph: aposthog.Client, given: str, sent: str
) -> None:
    """Every form PostHog's relative_date_parse reads goes out as given (stripped)."""
    export = await make(ph)
    await ph.batch_exports.list_runs(export.id, after=given, before=given)
    assert fake.requests[-1].query == (("after", sent), ("before", sent))
    ordering = "data_interval_start"
    await ph.batch_exports.list_runs(export.id, start=given, end=given, ordering=ordering)
    by_interval = fake.requests[-1]  # a name of its own (mypy narrows the query above)
    assert by_interval.query == (("start", sent), ("end", sent), ("ordering", ordering))
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.cancel_run(export.id, MISSING, after=given)
    # A name of its own: mypy would keep `fake.requests[-1].query` narrowed to the tuple above.
    cancelled = fake.requests[-1]
    assert cancelled.query == (("after", sent),)


async def test_a_basic_format_run_filter_selects_the_runs_it_names(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `after` in ISO 8601's basic format (as `strftime("%Y%m%dT%H%M%SZ")` writes it) is
    the moment it names for PostHog: the older run is left out, not every run since
    "now" (what PostHog would make of a form it cannot read).
    """
    export = await make(ph)
    older = fake.add_batch_export_run(export.id, created_at=hours_ago(5))
    newer = fake.add_batch_export_run(export.id, created_at=hours_ago(1))
    after = hours_ago(3).strftime("%Y%m%dT%H%M%SZ")
    runs = await ph.batch_exports.list_runs(export.id, after=after).to_list()
    assert [run.id for run in runs] == [newer["id"]]
    assert older["id"] not in {run.id for run in runs}
    assert fake.requests[-1].query == (("after", after),)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-2H", "no unit from 'H'"),
        ("-7D", "no unit from 'D'"),
        ("-1W", "no unit from 'W'"),
        ("-1Y", "no unit from 'Y'"),
        ("d", "needs a count"),
        ("wStart", "needs a count"),
        ("yesterday", "relative time such as"),
        ("-7days", "relative time such as"),
        ("+7d", "relative time such as"),
        ("2024-02-30", "not a real date"),
        ("2024-01-01T10:60", "not a real date"),
        ("2024-01-01T10:00+24:00", "not a real date"),
        ("-1001y", "more than 1000 years"),  # past year 1: PostHog's 500, retried
        ("-99999999d", "more than 1000 years"),
    ],
)
@pytest.mark.parametrize("name", ["after", "before", "start", "end"])
async def test_run_filters_refuse_what_posthog_would_read_as_now(
    fake: FakePostHog, ph: aposthog.Client, name: str, value: str, reason: str
) -> None:
    """
    PostHog reads a string it cannot parse as "now" without an error: a typo is a
    ValueError naming the argument instead, and nothing is sent.
    """
    sent = len(fake.requests)
    arguments: dict[str, Any] = {name: value}  # one of list_runs's date arguments
    with pytest.raises(ValueError, match=re.escape(reason)) as info:
        ph.batch_exports.list_runs(MISSING, **arguments)
    assert str(info.value).startswith(name)
    if name == "after":
        for method in ("get_run", "retry_run", "cancel_run"):
            with pytest.raises(ValueError, match=re.escape(reason)) as info:
                await getattr(ph.batch_exports, method)(MISSING, MISSING, after=value)
            assert str(info.value).startswith("after")
    assert len(fake.requests) == sent


@pytest.mark.parametrize(
    ("method", "ordering"),
    [
        ("list_runs", "start_at"),
        ("list_runs", "-end_at"),
        ("list_backfills", "data_interval_start"),
        ("list_backfills", "end_at"),
    ],
)
async def test_an_ordering_of_the_other_list_fails_before_sending(
    fake: FakePostHog, ph: aposthog.Client, method: str, ordering: str
) -> None:
    """PostHog ignores an ordering it does not know: each list refuses the other's."""
    with pytest.raises(ValueError, match="ordering must be one of"):
        getattr(ph.batch_exports, method)(MISSING, ordering=ordering)
    assert fake.requests == []


@pytest.mark.parametrize("status", [3, 1.5, object()])
async def test_a_status_that_is_no_str_nor_list_is_a_type_error(
    fake: FakePostHog, ph: aposthog.Client, status: Any
) -> None:
    """The TypeError names the argument (not "'int' object is not iterable")."""
    with pytest.raises(TypeError, match=r"^status must be a str or a list of str, got "):
        ph.batch_exports.list_runs(MISSING, status=status)
    assert fake.requests == []


async def test_an_empty_status_is_refused_not_ignored(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """status="" is no status PostHog knows: a ValueError, not "no filter"."""
    with pytest.raises(ValueError, match=r"^status must be one of"):
        ph.batch_exports.list_runs(MISSING, status="")
    assert fake.requests == []


#: Each runs/backfills method with good arguments besides the export's id.
CALLS: dict[str, dict[str, Any]] = {
    "list_runs": {},
    "get_run": {"run_id": MISSING},
    "retry_run": {"run_id": MISSING},
    "cancel_run": {"run_id": MISSING},
    "list_backfills": {},
    "create_backfill": {"start_at": "2024-01-01", "end_at": "2024-01-02"},
    "get_backfill": {"backfill_id": MISSING},
    "cancel_backfill": {"backfill_id": MISSING},
}


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_bad_ids_and_timeouts_fail_before_sending(
    fake: FakePostHog, ph: aposthog.Client, method: str
) -> None:
    """Every id is a UUID path segment and the timeout is checked, in every method."""
    call = getattr(ph.batch_exports, method)
    good = {"id": MISSING, **CALLS[method]}
    for name in good:
        if name.endswith("id"):
            with pytest.raises(ValueError, match=f"^{name} must be a UUID"):
                await call(**{**good, name: "../x"})
    with pytest.raises(ValueError, match=r"^timeout must be a positive number"):
        await call(**good, timeout=0)
    assert fake.requests == []


# ---------------------------------------------------------------------------------- backfills


async def test_create_backfill_of_an_hourly_export(fake: FakePostHog, ph: aposthog.Client) -> None:
    """Aware datetimes go out as ISO 8601; the 201 carries the new backfill's id."""
    export = await make(ph)
    start, end = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)

    backfill_id = await ph.batch_exports.create_backfill(export.id, start_at=start, end_at=end)

    sent = fake.requests[-1]
    assert (sent.method, sent.path) == (
        "POST",
        f"/api/environments/1/batch_exports/{export.id}/backfills/",
    )
    assert sent.json() == {"start_at": "2024-01-01T00:00:00Z", "end_at": "2024-01-02T00:00:00Z"}
    backfill = await ph.batch_exports.get_backfill(export.id, backfill_id)
    assert (backfill.id, backfill.start_at, backfill.end_at) == (backfill_id, start, end)
    assert backfill.status is BatchExportRunStatus.RUNNING
    assert backfill.progress is not None
    assert (backfill.progress.total_runs, backfill.progress.finished_runs) == (24, 0)


@pytest.mark.parametrize(
    ("start_at", "end_at", "detail"),
    [
        (
            "2024-01-02T00:00:00Z",
            "2024-01-01T00:00:00Z",
            "The initial backfill datetime 'start_at' must be before 'end_at'",
        ),
        (
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00Z",
            "The initial backfill datetime 'start_at' must be before 'end_at'",
        ),
        (
            "2024-01-01T00:00:00Z",
            "2999-01-01T00:00:00Z",
            "The provided 'end_at' (2999-01-01T00:00:00+00:00) is in the future",
        ),
        (None, "2024-01-01T00:00:00Z", None),
    ],
)
async def test_create_backfill_errors(
    ph: aposthog.Client, start_at: str | None, end_at: str, detail: str | None
) -> None:
    """PostHog's 400s for a reversed or empty range, a future end and a missing start."""
    export = await make(ph)
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.batch_exports.create_backfill(export.id, start_at=start_at, end_at=end_at)
    expected = detail or "Backfilling from the beginning of time is not enabled for this team."
    assert info.value.detail == expected


async def test_create_backfill_from_the_beginning_with_the_flag(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """start_at=None is sent as null and works once the team has the flag."""
    export = await make(ph)
    fake.batch_export_flags.add("batch-export-earliest-backfill")
    backfill_id = await ph.batch_exports.create_backfill(export.id, start_at=None, end_at=None)
    assert fake.requests[-1].json() == {"start_at": None, "end_at": None}
    assert (await ph.batch_exports.get_backfill(export.id, backfill_id)).start_at is None


async def test_a_backfill_from_the_beginning_needs_a_query_without_the_interval_start(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A hogql export whose query reads {data_interval_start} has no such bound to give
    a backfill from the beginning of time: PostHog's 400; with a start it runs."""
    fake.batch_export_flags.update({"batch-export-earliest-backfill", "hogql-batch-exports"})
    query = "SELECT uuid AS id FROM events WHERE timestamp >= {data_interval_start}"
    export = await make(ph, model="hogql", hogql_query=query)
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.batch_exports.create_backfill(export.id, start_at=None, end_at=None)
    assert info.value.detail == (
        "This query references {data_interval_start}, which is unavailable when backfilling "
        "from the beginning of time. Provide 'start_at' or remove {data_interval_start} from "
        "the query."
    )
    assert fake.batch_export_backfills == {}
    await ph.batch_exports.create_backfill(
        export.id, start_at="2024-01-01T00:00:00Z", end_at="2024-01-02T00:00:00Z"
    )
    other = await make(ph, model="hogql", hogql_query="SELECT uuid AS id FROM events")
    await ph.batch_exports.create_backfill(other.id, start_at=None, end_at=None)
    assert len(fake.batch_export_backfills) == 2


async def test_daily_and_weekly_backfills_take_dates(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Dates are sent as YYYY-MM-DD; a time or the wrong weekday is PostHog's 400."""
    daily = await make(ph, interval="day", offset_hour=5)
    backfill_id = await ph.batch_exports.create_backfill(
        daily.id, start_at=dt.date(2024, 3, 1), end_at="2024-03-03"
    )
    assert fake.requests[-1].json() == {"start_at": "2024-03-01", "end_at": "2024-03-03"}
    backfill = await ph.batch_exports.get_backfill(daily.id, backfill_id)
    assert backfill.start_at == dt.datetime(2024, 3, 1, 5, tzinfo=UTC)

    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.batch_exports.create_backfill(
            daily.id, start_at="2024-03-01T00:00:00Z", end_at="2024-03-03"
        )
    assert info.value.detail is not None
    assert "expect only the date component" in info.value.detail

    weekly = await make(ph, interval="week", offset_day=1)  # Mondays
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.batch_exports.create_backfill(
            weekly.id, start_at=dt.date(2024, 3, 5), end_at=dt.date(2024, 3, 11)
        )
    assert info.value.detail is not None
    assert (
        "2024-03-05 is a Tuesday but this batch export is configured to run weekly on Monday"
        in (info.value.detail)
    )
    assert await ph.batch_exports.create_backfill(
        weekly.id, start_at=dt.date(2024, 3, 4), end_at=dt.date(2024, 3, 11)
    )


async def test_too_many_running_backfills_is_a_rate_limit(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog's 429 too_many_concurrent_backfills arrives as RateLimitError."""
    export = await make(ph)
    fake.max_concurrent_backfills = 1
    fake.add_batch_export_backfill(export.id, status="Running")
    with pytest.raises(aposthog.RateLimitError) as info:
        await ph.batch_exports.create_backfill(
            export.id, start_at="2024-01-01T00:00:00Z", end_at="2024-01-02T00:00:00Z"
        )
    assert info.value.code == "too_many_concurrent_backfills"


async def test_too_many_running_backfills_is_not_retried(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    That 429 stands until a running backfill ends: raised after the one request, not
    asked again (each retry spends the rate budget and the caller's time for nothing).
    """
    export = await make(ph)
    fake.max_concurrent_backfills = 1
    fake.add_batch_export_backfill(export.id, status="Running")
    sent = len(fake.requests)
    with pytest.raises(aposthog.RateLimitError) as info:
        await ph.batch_exports.create_backfill(
            export.id, start_at="2024-01-01T00:00:00Z", end_at="2024-01-02T00:00:00Z"
        )
    assert info.value.retry_after is None
    assert [r.method for r in fake.requests[sent:]] == ["POST"]


async def test_create_backfill_of_unknown_export(ph: aposthog.Client) -> None:
    """An unknown export is PostHog's 404 with its own detail."""
    with pytest.raises(aposthog.NotFoundError) as info:
        await ph.batch_exports.create_backfill(
            MISSING, start_at="2024-01-01T00:00:00Z", end_at="2024-01-02T00:00:00Z"
        )
    assert info.value.detail == "BatchExport not found."


async def test_list_backfills_is_a_cursor_list_of_50(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Backfills come 50 to a page, newest first, or by start_at when asked."""
    export = await make(ph)
    days = [
        dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(days=(i * 7) % 60) for i in range(60)
    ]
    added = [fake.add_batch_export_backfill(export.id, start_at=day) for day in days]

    first = await ph.batch_exports.list_backfills(export.id)
    assert (len(first.results), first.count, first.has_next_page()) == (50, None, True)
    every = await ph.batch_exports.list_backfills(export.id).to_list()
    assert [b.id for b in every] == [b["id"] for b in reversed(added)]

    by_start = await ph.batch_exports.list_backfills(export.id, ordering="start_at").to_list()
    assert [b.start_at for b in by_start] == sorted(days)
    assert dict(fake.requests[-1].query)["ordering"] == "start_at"


async def test_backfill_progress(fake: FakePostHog, ph: aposthog.Client) -> None:
    """Completed backfills report 1.0; running ones count their finished runs."""
    export = await make(ph)
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    done = fake.add_batch_export_backfill(
        export.id, start_at=start, end_at=start + dt.timedelta(hours=4)
    )
    running = fake.add_batch_export_backfill(
        export.id, status="Running", start_at=start, end_at=start + dt.timedelta(hours=4)
    )
    for status in ("Completed", "Failed", "Running"):
        fake.add_batch_export_run(export.id, status=status, backfill=running["id"])

    finished = await ph.batch_exports.get_backfill(export.id, done["id"])
    assert finished.progress is not None
    assert (finished.progress.total_runs, finished.progress.progress) == (4, 1.0)
    partial = await ph.batch_exports.get_backfill(export.id, running["id"])
    assert partial.progress is not None
    assert (partial.progress.finished_runs, partial.progress.progress) == (2, 0.5)

    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.get_backfill(export.id, MISSING)


async def test_cancel_backfill(fake: FakePostHog, ph: aposthog.Client) -> None:
    """
    Cancelling a running backfill cancels its running runs (its finished ones, and other
    runs, stay as they are) and stamps it; a finished one is a 400.
    """
    export = await make(ph)
    running = fake.add_batch_export_backfill(export.id, status="Running")
    run = fake.add_batch_export_run(export.id, status="Running", backfill=running["id"])
    done = fake.add_batch_export_run(export.id, status="Completed", backfill=running["id"])
    scheduled = fake.add_batch_export_run(export.id, status="Running")

    assert await ph.batch_exports.cancel_backfill(export.id, running["id"]) is None  # type: ignore[func-returns-value]
    assert fake.requests[-1].path.endswith(f"/backfills/{running['id']}/cancel/")
    assert (await ph.batch_exports.get_backfill(export.id, running["id"])).status == "Cancelled"
    assert (await ph.batch_exports.get_run(export.id, run["id"])).status == "Cancelled"
    assert (await ph.batch_exports.get_run(export.id, done["id"])).status == "Completed"
    assert (await ph.batch_exports.get_run(export.id, scheduled["id"])).status == "Running"
    assert running["last_updated_at"] > running["created_at"]

    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.batch_exports.cancel_backfill(export.id, running["id"])
    assert info.value.detail == "Cannot cancel a backfill that is in 'Cancelled' status"


@pytest.mark.parametrize("body", [{"backfill_id": 5}, {"id": "x"}, ["x"], None])
@pytest.mark.parametrize("method", ["retry_run", "create_backfill"])
async def test_an_answer_without_a_backfill_id_string_is_a_decode_error(
    fake: FakePostHog, ph: aposthog.Client, method: str, body: Any
) -> None:
    """retry_run and create_backfill return PostHog's `backfill_id`; anything else is refused."""
    export = await make(ph)
    fake.fail_next(status=201, body=body, method="POST")
    call = getattr(ph.batch_exports, method)
    with pytest.raises(aposthog.ResponseDecodeError, match="backfill_id"):
        await call(export.id, **CALLS[method])


async def test_a_bad_end_at_is_named(fake: FakePostHog, ph: aposthog.Client) -> None:
    """A bad end_at is reported as end_at, not as start_at, and nothing is sent."""
    with pytest.raises(ValueError, match=r"^end_at ") as info:
        await ph.batch_exports.create_backfill(MISSING, start_at="2024-01-01", end_at="tomorrow")
    assert "start_at" not in str(info.value)
    assert fake.requests == []


@pytest.mark.parametrize("status", [[], (), set()])
async def test_an_empty_status_list_is_refused_not_dropped(
    fake: FakePostHog, ph: aposthog.Client, status: Any
) -> None:
    """
    `status` keeps "runs in any of these statuses", so an empty list keeps none. It was
    sent as no parameter at all, which PostHog reads as no filter: a caller that builds
    the list (`status=[s for s in wanted if ...]`) and ends with none got every run of
    the last 7 days. Refused before sending, as `logs(level=[])` is.
    """
    export = await make(ph)
    fake.requests.clear()
    with pytest.raises(ValueError, match="status must name at least one status"):
        await ph.batch_exports.list_runs(export.id, status=status)
    assert fake.requests == []


async def test_a_mapping_of_statuses_is_refused(fake: FakePostHog, ph: aposthog.Client) -> None:
    """A dict is no list of statuses (its keys were taken as the statuses)."""
    export = await make(ph)
    fake.requests.clear()
    with pytest.raises(TypeError, match="status must be a str or a list of str, got dict"):
        await ph.batch_exports.list_runs(export.id, status={"Completed": True})
    assert fake.requests == []


async def test_a_run_filter_datetime_with_a_seconds_offset_keeps_its_instant(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `after=` takes "an aware datetime". One in a zone whose offset has seconds (LMT and
    pre-1937 zones such as Europe/Amsterdam's +00:19:32, or any `timezone(timedelta)`)
    is written `...+00:19:32`: dateutil's `isoparse`, behind PostHog's run filters, reads
    offsets of hh, hhmm or hh:mm only, so PostHog falls back to its relative pattern,
    finds nothing and silently reads "now": no run is listed (and `get_run`,
    `retry_run`, `cancel_run` with such an `after` answer 404).
    """
    export = await make(ph)
    run = fake.add_batch_export_run(export.id, created_at=hours_ago(2))
    odd = dt.timezone(dt.timedelta(minutes=19, seconds=32))
    after = hours_ago(24).astimezone(odd)
    found = await ph.batch_exports.list_runs(export.id, after=after).to_list()
    assert [r.id for r in found] == [run["id"]]


async def test_an_open_ended_backfill_of_an_s3_export_is_refused_as_posthog_refuses_it(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    PostHog's `backfill_export` raises `BatchExportWithNoEndNotAllowedError` when
    `end_at` is None and the destination is not HTTP (or NoOp), and `create_backfill`'s
    open-ended branch calls it outside the `try` that turns that error into a 400: the
    caller gets a 500 and no backfill. `create_backfill`'s docstring said "None means
    up to now" without that condition, and the fake created the backfill, so a test
    suite written against it passed while PostHog failed.
    """
    integration = fake.add_integration(
        "aws-s3", sensitive_config={"aws_access_key_id": "k", "aws_secret_access_key": "s"}
    )["id"]
    export = await make(
        ph,
        destination={
            "type": "AwsS3",
            "config": {"bucket_name": "b", "region": "eu-west-1", "prefix": "p/"},
            "integration": integration,
        },
    )
    with pytest.raises(aposthog.InternalServerError) as info:
        await ph.batch_exports.create_backfill(export.id, start_at=hours_ago(5), end_at=None)
    assert info.value.status == 500
    assert await ph.batch_exports.list_backfills(export.id).to_list() == []
    # An HTTP export's open-ended backfill is one PostHog takes.
    http = await make(ph)
    assert await ph.batch_exports.create_backfill(http.id, start_at=hours_ago(5), end_at=None)


@pytest.mark.parametrize(
    "case", ["start_end_without_interval_ordering", "after_with_interval_ordering"]
)
async def test_run_filters_posthog_ignores_for_the_ordering_are_not_sent_silently(
    fake: FakePostHog, ph: aposthog.Client, case: str
) -> None:
    """
    PostHog's runs view reads `start`/`end` only with `ordering=data_interval_start`
    (either sign) and `after`/`before` only without it; the other pair is dropped without
    an error. A caller asking for the runs that exported the data of ten days ago (a
    backfill's, created an hour ago) got every run created in the last 7 days, and one
    asking for the last 30 days by data interval got the last 7. Either refuse the
    pair PostHog ignores (a ValueError naming it, nothing sent) or list what was asked.
    """
    export = await make(ph)
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    if case == "start_end_without_interval_ordering":
        wanted = fake.add_batch_export_run(
            export.id, created_at=hours_ago(1), data_interval_end=hour - dt.timedelta(days=10)
        )
        fake.add_batch_export_run(export.id, created_at=hours_ago(2))
        arguments: dict[str, Any] = {"start": "-11d", "end": "-9d"}
        name = "start"
    else:
        wanted = fake.add_batch_export_run(
            export.id,
            created_at=hours_ago(24 * 20),
            data_interval_end=hour - dt.timedelta(days=20),
        )
        arguments = {"ordering": "data_interval_start", "after": "-30d"}
        name = "after"
    sent = len(fake.requests)
    refused: ValueError | None = None
    try:
        runs = await ph.batch_exports.list_runs(export.id, **arguments).to_list()
    except ValueError as exc:
        refused = exc
    if refused is not None:
        assert name in str(refused)
        assert len(fake.requests) == sent
    else:
        assert [r.id for r in runs] == [wanted["id"]]


@pytest.mark.parametrize("pair", ["after_before", "start_end"])
async def test_a_reversed_run_window_is_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client, pair: str
) -> None:
    """
    PostHog filters runs with `created_at__range=(after, before)` (or
    `data_interval_start >= start, data_interval_end <= end`) and never compares the
    bounds: swapped ones are an empty list, which reads as "no runs (no failures)". Given
    as two aware datetimes the client can see it: a `ValueError` naming the later
    argument (`before` / `end`), nothing sent.
    """
    export = await make(ph)
    fake.add_batch_export_run(export.id, created_at=hours_ago(2), status="Failed")
    if pair == "after_before":
        arguments: dict[str, Any] = {"after": hours_ago(1), "before": hours_ago(3)}
        name = "before"
    else:
        arguments = {"ordering": "data_interval_start", "start": hours_ago(1), "end": hours_ago(5)}
        name = "end"
    sent = len(fake.requests)
    with pytest.raises(ValueError, match=name):
        await ph.batch_exports.list_runs(export.id, **arguments).to_list()
    assert len(fake.requests) == sent
