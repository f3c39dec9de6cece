"""FakePostHog's runs view narrows every action, as PostHog's `safely_get_queryset` does."""

from __future__ import annotations

import datetime as dt
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
