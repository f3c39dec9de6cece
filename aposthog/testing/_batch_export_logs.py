"""
FakePostHog's batch-export logs, as `LogEntryMixin.logs` behaves: filtered by level,
search text, time and run, newest first, at most `limit` (1-500, default 50) entries in
one limit/offset page. The action declares no `required_scopes`, so scoped personal
API keys get a 403 and only legacy unscoped keys may read logs.

The parameters are read as PostHog's `LogEntryRequestSerializer` reads them: `level`,
`search` and `instance_id` are DRF `CharField`s (trimmed, a blank one is a 400, a
repeated one counts once: the last), `level` is split on commas as it is, and `search` is
the `%...%` of a ClickHouse `ILIKE`, in which `_` and `%` are wildcards.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

from ._batch_export_runs import live_export
from ._batch_export_validation import DatetimeFieldError, parse_datetime_field
from ._conversation_checks import validate_text
from ._loopback import ServerReply
from ._wire import FakeRequest, Route, integer_field, iso, offset_page, validation_error

if TYPE_CHECKING:
    from ._fake import FakePostHog

__all__ = ["ROUTES"]


def _limit(request: FakeRequest) -> int:
    raw = request.arg("limit")
    if raw is None:
        return 50
    try:
        limit = integer_field(raw)  # `limit=2.0` is 2
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
    except DatetimeFieldError as exc:
        raise validation_error(str(exc), attr=name, code=exc.code) from None


def _text(request: FakeRequest, name: str) -> str | None:
    """A `CharField` parameter, the last of repeated ones: as DRF checks a body's text."""
    raw = request.arg(name)
    body = {} if raw is None else {name: raw}
    return validate_text(body, name, max_length=None, allow_null=False, required=False)


def _ilike(search: str) -> re.Pattern[str]:
    """`message ILIKE '%<search>%'`: `_` is any one character, `%` any run, `\\` escapes."""
    pattern = []
    escaped = False
    for char in search:
        if escaped:
            pattern.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "_":
            pattern.append(".")
        elif char == "%":
            pattern.append(".*")
        else:
            pattern.append(re.escape(char))
    if escaped:  # a trailing backslash stands for itself
        pattern.append(re.escape("\\"))
    return re.compile("".join(pattern), re.IGNORECASE | re.DOTALL)


async def _logs(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    export = live_export(fake, request.params["id"])
    limit = _limit(request)
    after, before = _moment(request, "after"), _moment(request, "before")
    # One comma-separated value, split as it is: `INFO, ERROR` asks for ` ERROR` too.
    level = _text(request, "level")
    levels = None if level is None else {part.upper() for part in level.split(",")}
    search = _text(request, "search")
    matches = None if search is None else _ilike(search).search
    instance_id = _text(request, "instance_id")
    rows = [
        entry
        for entry in fake.batch_export_logs
        if entry["log_source_id"] == export["id"]
        and (levels is None or entry["level"].upper() in levels)
        and (matches is None or matches(entry["message"]))
        and (instance_id is None or entry["instance_id"] == instance_id)
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
