"""FakePostHog's runs view narrows every action, as PostHog's `safely_get_queryset` does."""

from __future__ import annotations

import datetime as dt
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
    assert (info.value.attr, info.value.code) == ("status", "invalid_choice")


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
