"""
FakePostHog's batch-export logs, as `LogEntryMixin.logs` behaves: filtered by level,
search text, time and run, newest first, at most `limit` (1-500, default 50) entries in
one limit/offset page. The action declares no `required_scopes`, so scoped personal
API keys get a 403 and only legacy unscoped keys may read logs.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ._batch_export_runs import live_export
from ._batch_export_validation import parse_datetime_field
from ._loopback import ServerReply
from ._wire import FakeRequest, Route, iso, offset_page, validation_error

if TYPE_CHECKING:
    from ._fake import FakePostHog

__all__ = ["ROUTES"]


def _limit(request: FakeRequest) -> int:
    raw = request.arg("limit")
    if raw is None:
        return 50
    try:
        limit = int(raw)
    except ValueError:
        raise validation_error("A valid integer is required.", attr="limit") from None
    if limit < 1:
        raise validation_error(
            "Ensure this value is greater than or equal to 1.", attr="limit", code="min_value"
        )
    if limit > 500:
        raise validation_error(
            "Ensure this value is less than or equal to 500.", attr="limit", code="max_value"
        )
    return limit


def _moment(request: FakeRequest, name: str) -> dt.datetime | None:
    raw = request.arg(name)
    if raw is None:
        return None
    try:
        return parse_datetime_field(raw)
    except ValueError as exc:
        raise validation_error(str(exc), attr=name) from None


async def _logs(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    export = live_export(fake, request.params["id"])
    limit = _limit(request)
    after, before = _moment(request, "after"), _moment(request, "before")
    # Newer PostHog takes one comma-separated value; older ones a repeated parameter.
    levels = {
        part.strip().upper()
        for value in request.args("level")
        for part in value.split(",")
        if part.strip()
    }
    search = (request.arg("search") or "").lower()
    instance_id = request.arg("instance_id")
    rows = [
        entry
        for entry in fake.batch_export_logs
        if entry["log_source_id"] == export["id"]
        and (not levels or entry["level"].upper() in levels)
        and search in entry["message"].lower()
        and (not instance_id or entry["instance_id"] == instance_id)
        and (after is None or entry["timestamp"] > after)
        and (before is None or entry["timestamp"] < before)
    ]
    rows.sort(key=lambda entry: entry["timestamp"], reverse=True)
    results = [
        {**entry, "level": entry["level"].upper(), "timestamp": iso(entry["timestamp"])}
        for entry in rows[:limit]
    ]
    return offset_page(request, results, page_size=fake.page_size)


ROUTES = [Route("GET", ("batch_exports", "{id}", "logs"), _logs, None)]
