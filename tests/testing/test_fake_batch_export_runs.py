"""FakePostHog's runs view narrows every action, as PostHog's `safely_get_queryset` does."""

from __future__ import annotations

import base64
import datetime as dt
import sys
import urllib.parse
import uuid
from typing import Any

import pytest

import aposthog
from aposthog._http import Route
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

NOW = dt.datetime.now(dt.timezone.utc)


async def raw(ph: aposthog.Client, method: str, path: str, **kwargs: Any) -> Any:
    """A request the client's methods do not make, with any query string."""
    return await ph._api.request_json(Route(method, path, repeatable=False), **kwargs)


async def test_a_run_lookup_takes_the_lists_filters(fake: FakePostHog, ph: aposthog.Client) -> None:
    """status, before, and start with ordering=data_interval_start narrow a lookup too."""
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    old = fake.add_batch_export_run(
        export.id, status="Failed", created_at=NOW - dt.timedelta(days=10)
    )
    path = f"batch_exports/{export.id}/runs/{old['id']}"

    assert (await raw(ph, "GET", path, params={"after": "-11d"}))["id"] == old["id"]
    with pytest.raises(aposthog.NotFoundError):
        await raw(ph, "GET", path, params={"after": "-11d", "status": "Completed"})
    with pytest.raises(aposthog.NotFoundError):
        await raw(ph, "GET", path, params={"after": "-11d", "before": "-12d"})
    # Ordering by data interval swaps after/before for start/end.
    with pytest.raises(aposthog.NotFoundError):
        await raw(ph, "GET", path, params={"after": "-11d", "ordering": "data_interval_start"})
    by_interval = {"start": "-11d", "ordering": "-data_interval_start"}
    assert (await raw(ph, "GET", path, params=by_interval))["id"] == old["id"]
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, "POST", f"{path}/cancel", params={"status": "Exploded"})
    assert (info.value.attr, info.value.code) == ("status__0", "invalid_choice")


async def test_retry_answers_with_the_backfill_workflows_id(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    PostHog's retry answers with `backfill_export`'s workflow id, bounds in UTC (START
    for a run without a start); the backfill itself is stored under a UUID of its own.
    """
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    end = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    run = fake.add_batch_export_run(export.id, status="Failed", data_interval_end=end)
    first = fake.add_batch_export_run(
        export.id, status="Failed", data_interval_end=end, data_interval_start=None
    )

    answer = await raw(ph, "POST", f"batch_exports/{export.id}/runs/{run['id']}/retry")
    assert answer == {
        "backfill_id": f"{export.id}-Backfill-2024-05-01T15:00:00+00:00-2024-05-01T16:00:00+00:00"
    }
    answer = await raw(ph, "POST", f"batch_exports/{export.id}/runs/{first['id']}/retry")
    assert answer == {"backfill_id": f"{export.id}-Backfill-START-2024-05-01T16:00:00+00:00"}

    stored = sorted(fake.batch_export_backfills.values(), key=lambda b: b["created_at"])
    assert [(b["start_at"], b["end_at"], b["status"]) for b in stored] == [
        (end - dt.timedelta(hours=1), end, "Running"),
        (None, end, "Running"),
    ]
    for backfill in stored:
        assert str(uuid.UUID(backfill["id"])) == backfill["id"]


async def test_run_dates_are_read_as_posthog_reads_them(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `after` and `before` go through relative_date_parse: seconds and hours count, a
    naive time is the team's (UTC), and what it cannot read is "now", not a 400.
    """
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    now = dt.datetime.now(dt.timezone.utc)
    recent = fake.add_batch_export_run(export.id, created_at=now - dt.timedelta(seconds=5))
    older = fake.add_batch_export_run(export.id, created_at=now - dt.timedelta(hours=3))
    path = f"batch_exports/{export.id}/runs"

    async def listed(**params: str) -> list[str]:
        page = await raw(ph, "GET", path, params=params)
        return [r["id"] for r in page["results"]]

    assert await listed(after="-60s") == [recent["id"]]
    assert await listed(after="-4h") == [recent["id"], older["id"]]
    assert await listed(after="-4h", before="-1h") == [older["id"]]
    naive = (now - dt.timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert await listed(after=naive) == [recent["id"]]
    # Read as now: nothing was created after it, and everything before it.
    for unread in ("-4H", "-1D", "yesterday", "2024-02-30"):
        assert await listed(after=unread) == []
        assert await listed(before=unread) == [recent["id"], older["id"]]
    # Blank is the default (DRF strips it), and a relative time is found inside a word.
    assert await listed(after="  ") == [recent["id"], older["id"]]
    assert await listed(after="-4hours") == [recent["id"], older["id"]]
    # Given twice, the last value counts (Django's QueryDict.get).
    page = await raw(ph, "GET", path, params={"after": ["-4h", "-60s"]})
    assert [r["id"] for r in page["results"]] == [recent["id"]]


@pytest.mark.parametrize(
    ("interval", "length"),
    [
        ("hour", dt.timedelta(hours=1)),
        ("day", dt.timedelta(days=1)),
        ("week", dt.timedelta(weeks=1)),
        ("every 5 minutes", dt.timedelta(minutes=5)),
        ("every 15 minutes", dt.timedelta(minutes=15)),
    ],
)
async def test_a_runs_data_interval_is_one_interval_of_its_export(
    fake: FakePostHog, ph: aposthog.Client, interval: str, length: dt.timedelta
) -> None:
    """A run added with only its end covers exactly one interval of its export."""
    fake.batch_export_flags.add("high-frequency-batch-exports")
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval=interval
    )
    end = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
    run = fake.add_batch_export_run(export.id, data_interval_end=end)

    got = await raw(ph, "GET", f"batch_exports/{export.id}/runs/{run['id']}")
    start = (end - length).isoformat().replace("+00:00", "Z")
    assert (got["data_interval_start"], got["data_interval_end"]) == (start, "2024-05-01T12:00:00Z")


async def test_backfill_progress_is_posthogs_serializers(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `progress` as `BatchExportBackfillSerializer.get_progress` computes it: a completed
    backfill has finished all its expected runs (one from the beginning of time, none
    when it found no records, up to `finished_at` without an end); a running one counts
    its finished runs against the runs to its end (or to now), never below what finished,
    rounded to one digit; it is null when nothing can be counted, or when not running.
    """
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    hours = dt.timedelta(hours=1)

    def backfill(**fields: Any) -> str:
        fields.setdefault("start_at", start)
        fields.setdefault("end_at", start + 4 * hours)
        added: str = fake.add_batch_export_backfill(export.id, **fields)["id"]
        return added

    def finish(backfill_id: str, count: int, status: str = "Completed") -> None:
        for _ in range(count):
            fake.add_batch_export_run(export.id, status=status, backfill=backfill_id)

    three_of_four = backfill(status="Running")
    finish(three_of_four, 3)
    finish(three_of_four, 1, status="Running")
    one_of_three = backfill(status="Running", end_at=start + 3 * hours)
    finish(one_of_three, 1, status="Failed")
    overrun = backfill(status="Running")
    finish(overrun, 5)

    def progress(total: int, finished: int, fraction: float) -> dict[str, Any]:
        return {"total_runs": total, "finished_runs": finished, "progress": fraction}

    expected: dict[str, dict[str, Any] | None] = {
        backfill(start_at=None, end_at=None): progress(1, 1, 1.0),
        backfill(total_records_count=0): progress(0, 0, 1.0),
        backfill(end_at=None, finished_at=start + 2.5 * hours): progress(3, 3, 1.0),
        three_of_four: progress(4, 3, 0.8),
        one_of_three: progress(3, 1, 0.3),
        overrun: progress(5, 5, 1.0),
        backfill(status="Running", start_at=NOW - 2.5 * hours, end_at=None): progress(3, 0, 0.0),
        backfill(status="Running", total_records_count=0): None,
        backfill(status="Running", start_at=None): None,
        backfill(status="Starting", end_at=None): None,
        backfill(status="Failed"): None,
    }

    for backfill_id, wanted in expected.items():
        got = await raw(ph, "GET", f"batch_exports/{export.id}/backfills/{backfill_id}")
        assert (backfill_id, got["progress"]) == (backfill_id, wanted)


async def test_backfills_order_by_every_term_with_nulls_last(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `ordering` takes several terms, the first deciding, `-` reversing each; as in
    PostgreSQL a null `start_at` comes last going up and first going down.
    """
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    jan = [dt.datetime(2024, 1, day, tzinfo=dt.timezone.utc) for day in (1, 2)]
    first, second, third, unbounded = (
        fake.add_batch_export_backfill(export.id, start_at=start)["id"]
        for start in (jan[1], jan[0], jan[1], None)
    )
    path = f"batch_exports/{export.id}/backfills"

    async def listed(ordering: str) -> list[str]:
        page = await raw(ph, "GET", path, params={"ordering": ordering})
        return [b["id"] for b in page["results"]]

    assert await listed("start_at,-created_at") == [second, third, first, unbounded]
    assert await listed("-start_at,created_at") == [unbounded, first, third, second]


async def test_ordering_by_data_interval_looks_back_7_days_without_start(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """With `ordering=data_interval_start`, a run is listed when its interval starts
    within the last 7 days (or after `start`), however recently it was created; a run
    without a start is not."""
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="day"
    )
    run = fake.add_batch_export_run(
        export.id, data_interval_end=NOW - dt.timedelta(days=6, hours=12)
    )
    # An export's first run may have no start: PostgreSQL's `NULL >= start` keeps it out.
    fake.add_batch_export_run(
        export.id, data_interval_start=None, data_interval_end=NOW - dt.timedelta(days=1)
    )
    path = f"batch_exports/{export.id}/runs"

    by_interval = {"ordering": "data_interval_start"}
    assert (await raw(ph, "GET", path, params=by_interval))["results"] == []
    found = await raw(ph, "GET", path, params={**by_interval, "start": "-8d"})
    assert [r["id"] for r in found["results"]] == [run["id"]]


async def test_backfill_bounds_are_read_in_the_exports_calendar(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    A daily export's dates start at its hour in its time zone; a weekly export on Sundays
    (offset_day 0) takes a Sunday; an hourly export's naive time is PostHog's 400.
    """
    daily = await ph.batch_exports.create(
        name="noop",
        destination={"type": "NoOp", "config": {}},
        interval="day",
        offset_hour=5,
        timezone="Europe/Berlin",
    )
    backfill_id = await ph.batch_exports.create_backfill(
        daily.id, start_at="2024-03-01", end_at="2024-03-03"
    )
    got = await raw(ph, "GET", f"batch_exports/{daily.id}/backfills/{backfill_id}")
    assert (got["start_at"], got["end_at"]) == ("2024-03-01T04:00:00Z", "2024-03-03T04:00:00Z")

    sundays = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="week", offset_day=0
    )
    assert await ph.batch_exports.create_backfill(
        sundays.id, start_at="2024-03-03", end_at="2024-03-10"
    )

    hourly = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    naive = {"start_at": "2024-01-01T00:00:00", "end_at": "2024-01-02T00:00:00Z"}
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, "POST", f"batch_exports/{hourly.id}/backfills", json=naive)
    assert info.value.detail == "Input 2024-01-01T00:00:00 is naive."


async def test_only_a_starting_or_running_run_is_cancelled(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    Cancel answers 200 `{"cancelled": true}` for a starting run and stamps it; a
    finished run is PostHog's 400 naming its status, and stays as it was.
    """
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    starting = fake.add_batch_export_run(export.id, status="Starting", created_at=NOW)
    done = fake.add_batch_export_run(export.id, status="Completed")
    path = f"batch_exports/{export.id}/runs"

    answer = await raw(ph, "POST", f"{path}/{starting['id']}/cancel")
    assert (answer, fake.status_counts[200]) == ({"cancelled": True}, 1)
    got = await raw(ph, "GET", f"{path}/{starting['id']}")
    assert got["status"] == "Cancelled"
    assert starting["last_updated_at"] > starting["created_at"]  # stamped when cancelled

    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, "POST", f"{path}/{done['id']}/cancel")
    assert info.value.detail == "Cannot cancel a run that is in 'Completed' status"
    assert done["status"] == "Completed"


async def test_starting_backfills_count_toward_the_concurrency_limit(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog counts Starting and Running backfills of the team: at the limit, its 429."""
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    fake.max_concurrent_backfills = 2
    fake.add_batch_export_backfill(export.id, status="Starting")
    running = fake.add_batch_export_backfill(export.id, status="Running")
    fake.add_batch_export_backfill(export.id, status="Completed")
    bounds = {"start_at": "2024-01-01T00:00:00Z", "end_at": "2024-01-02T00:00:00Z"}
    path = f"batch_exports/{export.id}/backfills"

    with pytest.raises(aposthog.RateLimitError) as info:
        await raw(ph, "POST", path, json=bounds)
    assert (info.value.type, info.value.code, info.value.detail) == (
        "server_error",
        "too_many_concurrent_backfills",
        "This team already has 2 batch export backfills running. Wait for some to finish "
        "or cancel them before creating more.",
    )
    await raw(ph, "POST", f"{path}/{running['id']}/cancel")
    assert (await raw(ph, "POST", path, json=bounds))["backfill_id"]


async def test_a_backfill_is_found_only_under_its_export(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The backfills view is narrowed to the export in the path: another's is neither
    listed nor found."""
    noop: dict[str, Any] = {"name": "noop", "destination": {"type": "NoOp", "config": {}}}
    export = await ph.batch_exports.create(**noop, interval="hour")
    other = await ph.batch_exports.create(**noop, interval="hour")
    backfill = fake.add_batch_export_backfill(export.id, status="Running")
    assert (await raw(ph, "GET", f"batch_exports/{other.id}/backfills"))["results"] == []
    path = f"batch_exports/{other.id}/backfills/{backfill['id']}"

    for method, action in (("GET", path), ("POST", f"{path}/cancel")):
        with pytest.raises(aposthog.NotFoundError) as info:
            await raw(ph, method, action)
        assert (info.value.type, info.value.code, info.value.detail) == (
            "invalid_request",
            "not_found",
            "Not found.",
        )
    assert backfill["status"] == "Running"


async def test_cursor_pages_are_drfs_cursor_pagination(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    No `count`; `next` only while more remain (none for exactly a page), `previous` from
    the second page on, both absolute; a cursor the fake did not make is a 404.
    """
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    path = f"batch_exports/{export.id}/backfills"
    for _ in range(50):
        fake.add_batch_export_backfill(export.id)
    full = await raw(ph, "GET", path)
    assert (sorted(full), full["next"], len(full["results"])) == (
        ["next", "previous", "results"],
        None,
        50,
    )
    fake.add_batch_export_backfill(export.id)

    first = await raw(ph, "GET", path)
    assert (len(first["results"]), first["previous"]) == (50, None)
    assert first["next"].startswith(f"{fake.url}/api/projects/1/{path}/?cursor=")
    cursor = urllib.parse.parse_qs(urllib.parse.urlsplit(first["next"]).query)["cursor"][0]
    second = await raw(ph, "GET", path, params={"cursor": cursor})
    assert (len(second["results"]), second["next"]) == (1, None)
    assert second["previous"].startswith(f"{fake.url}/api/projects/1/{path}/?cursor=")
    back = urllib.parse.parse_qs(urllib.parse.urlsplit(second["previous"]).query)["cursor"][0]
    assert await raw(ph, "GET", path, params={"cursor": back}) == first

    with pytest.raises(aposthog.NotFoundError) as info:
        await raw(ph, "GET", path, params={"cursor": "not-a-cursor"})
    assert info.value.detail == "Invalid cursor"


async def test_a_run_created_between_two_cursor_pages_is_not_listed_twice(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    DRF's CursorPagination keeps the ordering value of a page's last row in its cursor and
    filters the next page by it (`created_at__lt`), so a run created while a caller pages
    (newest first) is not on the pages that follow, and no run is repeated or skipped.
    """
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    for _ in range(150):
        fake.add_batch_export_run(export.id)
    seen: list[str] = []
    async for page in ph.batch_exports.list_runs(export.id).pages():
        seen += [run.id for run in page]
        if len(seen) == 100:
            fake.add_batch_export_run(export.id)  # the schedule starts a run meanwhile
    assert (150, 150) == (len(seen), len(set(seen)))


def _cursor(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["cursor"][0]


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("ordering", [None, "created_at", "data_interval_start"])
async def test_cursor_pages_list_each_run_once_with_shared_positions_too(
    fake: FakePostHog, ph: aposthog.Client, ordering: str | None, tied: bool
) -> None:
    """
    Following `next` lists every run once, in order, also when runs share their
    ordering value across a page's end (a schedule's runs created in the same
    microsecond, sharing an interval): DRF counts those in the cursor's offset. Without
    such ties, following `previous` back from the last page gives the same pages (with
    them DRF itself may page differently backwards, and says so).
    """
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    base = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    for n in range(230):
        when = base + dt.timedelta(minutes=n // 40 if tied else n)
        fake.add_batch_export_run(export.id, created_at=when, data_interval_end=when)
    path = f"batch_exports/{export.id}/runs"
    pages = [await raw(ph, "GET", path, params={} if ordering is None else {"ordering": ordering})]
    while pages[-1]["next"] is not None:
        pages.append(await raw(ph, "GET", path, params=_query(pages[-1]["next"])))
    ids = [run["id"] for page in pages for run in page["results"]]
    assert ([100, 100, 30], 230) == ([len(p["results"]) for p in pages], len(set(ids)))
    field = ordering or "created_at"
    values = [run[field] for page in pages for run in page["results"]]
    assert values == sorted(values, reverse=ordering is None)
    if tied:
        return
    back = pages[-1]
    for page in reversed(pages[:-1]):
        back = await raw(ph, "GET", path, params=_query(back["previous"]))
        assert [r["id"] for r in page["results"]] == [r["id"] for r in back["results"]]
    assert back["previous"] is None


async def test_a_cursor_is_drfs_offset_reverse_and_position(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    The cursor is DRF's: base64 of `o=&r=&p=` with the position as `str()` of the last
    run's `created_at`; an offset past DRF's cutoff is read as 1000; a negative one, or
    a position the database cannot read, is what PostHog answers (404, 500).
    """
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    base = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)
    for n in range(101):
        fake.add_batch_export_run(
            export.id, created_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=n)
        )
    path = f"batch_exports/{export.id}/runs"
    first = await raw(ph, "GET", path)
    decoded = urllib.parse.parse_qs(base64.b64decode(_cursor(first["next"])).decode())
    last = dt.datetime.fromisoformat(first["results"][-1]["created_at"].replace("Z", "+00:00"))
    assert {"p": [str(last)]} == decoded

    def cursor(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    far = await raw(ph, "GET", path, params={"cursor": cursor("o=5000")})
    assert ([], None) == (far["results"], far["next"])  # 1000 skipped: nothing left
    with pytest.raises(aposthog.NotFoundError, match="Invalid cursor"):
        await raw(ph, "GET", path, params={"cursor": cursor("o=-1")})
    with pytest.raises(aposthog.InternalServerError):
        await raw(ph, "GET", path, params={"cursor": cursor(f"p={base:%d/%m/%Y}")})


@pytest.mark.parametrize(
    "end_at", ["2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T10:00:00z"]
)
async def test_an_unreal_backfill_bound_is_posthogs_400_not_a_500(
    fake: FakePostHog, ph: aposthog.Client, end_at: str
) -> None:
    """
    PostHog's `validate_date_input` reads an hourly export's bounds with
    `dt.datetime.fromisoformat` and turns its `ValueError` into a 400 ("Input … is not a
    valid ISO formatted datetime."), hour 24 and a lower-case `z` included (Python 3.13).
    The fake matched the shape only (a `z` too), then parsed it unguarded: an uncaught
    `ValueError`, answered 500, and a `z` it read as UTC and took.
    """
    hourly = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    bounds = {"start_at": "2023-12-31T00:00:00Z", "end_at": end_at}
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, "POST", f"batch_exports/{hourly.id}/backfills", json=bounds)
    assert info.value.detail == f"Input {end_at} is not a valid ISO formatted datetime."


@pytest.mark.parametrize("start_at", ["2024-02-30", "2024-01-01T24:00:00Z"])
async def test_an_unreal_daily_backfill_bound_is_not_said_to_hold_a_time(
    fake: FakePostHog, ph: aposthog.Client, start_at: str
) -> None:
    """
    For a daily export PostHog says "a time was included" only when
    `dt.datetime.fromisoformat` reads the input; `2024-02-30` (no time at all) and hour 24
    (refused by Python 3.13) get the plain "is not a valid ISO formatted date.". The fake
    chose by the input's shape, so it blames a time that is not there.
    """
    daily = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="day"
    )
    bounds = {"start_at": start_at, "end_at": "2024-03-01"}
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, "POST", f"batch_exports/{daily.id}/backfills", json=bounds)
    assert info.value.detail == f"Input '{start_at}' is not a valid ISO formatted date."


@pytest.mark.parametrize(
    ("start_at", "timed"),
    [
        ("2024-01-01T10:00:00Z", True),
        ("2024-01-01 10:00", True),
        ("2024-01-01T10:00:00+01:00", True),
        ("2024-01-01T10:00:00z", False),
        ("2024-01-01T10:60:00Z", False),
    ],
)
async def test_a_daily_backfill_bound_is_said_to_hold_a_time_when_python_reads_one(
    fake: FakePostHog, ph: aposthog.Client, start_at: str, timed: bool
) -> None:
    """
    A daily export's bound that `datetime.fromisoformat` reads as a datetime gets
    PostHog's hint that only the date is wanted; one it does not read (a lower-case
    `z`, minute 60) gets the plain "not a valid ISO formatted date.".
    """
    daily = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="day"
    )
    bounds = {"start_at": start_at, "end_at": "2024-03-01"}
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, "POST", f"batch_exports/{daily.id}/backfills", json=bounds)
    plain = f"Input '{start_at}' is not a valid ISO formatted date."
    hint = (
        " Daily or weekly batch export backfills expect only the date component, but a time "
        "was included."
    )
    assert info.value.detail == (plain + hint if timed else plain)


async def test_a_non_string_hourly_backfill_bound_is_posthogs_400(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """`fromisoformat(5)` is PostHog's TypeError, answered with the same 400 as a bad text."""
    hourly = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval="hour"
    )
    bounds = {"start_at": 5, "end_at": "2024-01-02T00:00:00Z"}
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, "POST", f"batch_exports/{hourly.id}/backfills", json=bounds)
    assert info.value.detail == "Input 5 is not a valid ISO formatted datetime."


@pytest.mark.parametrize(
    ("interval", "start_at", "end_at"),
    [
        ("hour", "20231231T000000Z", "20240101T000000Z"),
        ("hour", "2023-12-31T00Z", "2024-01-01T00Z"),
    ],
)
async def test_a_backfill_bound_python_reads_is_taken(
    ph: aposthog.Client, interval: str, start_at: str, end_at: str
) -> None:
    """
    `validate_date_input` hands an hourly export's bound to `dt.datetime.fromisoformat`,
    which since Python 3.11 (PostHog runs 3.13) reads ISO 8601's basic format and a time
    with the hour alone: PostHog answers 201, and so does the fake from Python 3.11 on. On
    3.10, whose `fromisoformat` reads neither, the fake answers PostHog's 400 for them.
    """
    export = await ph.batch_exports.create(
        name="noop", destination={"type": "NoOp", "config": {}}, interval=interval
    )
    bounds = {"start_at": start_at, "end_at": end_at}
    if sys.version_info < (3, 11):
        with pytest.raises(aposthog.BadRequestError, match="not a valid ISO formatted"):
            await raw(ph, "POST", f"batch_exports/{export.id}/backfills", json=bounds)
    else:
        assert dt.datetime.fromisoformat(start_at) < dt.datetime.fromisoformat(end_at)
        answer = await raw(ph, "POST", f"batch_exports/{export.id}/backfills", json=bounds)
        assert isinstance(answer["backfill_id"], str)


async def test_a_refused_status_is_reported_at_its_index(ph: aposthog.Client) -> None:
    """
    PostHog reads `status` with `ListField(child=ChoiceField(...))`: a refused value is
    the ListField's `{index: [error]}`, which drf-exceptions-hog flattens with `__` into
    `attr` (as `destination__non_field_errors`, reference §1.4): `status__1` for the second
    value, as the fake now reports it. The fake used to answer `attr: "status"`, so a test
    asserting on `error.attr` passed against the fake and failed against PostHog.
    """
    export_id = str(uuid.uuid4())
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(
            ph,
            "GET",
            f"batch_exports/{export_id}/runs",
            params={"status": ["Completed", "Exploded"]},
        )
    assert (info.value.attr, info.value.code, info.value.detail) == (
        "status__1",
        "invalid_choice",
        '"Exploded" is not a valid choice.',
    )
