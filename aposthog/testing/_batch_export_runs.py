"""
FakePostHog's batch-export runs, backfills and logs, as `BatchExportRunViewSet`,
`BatchExportBackfillViewSet` and `LogEntryMixin.logs` behave.

Runs and backfills are paged by cursor (100 and 50 to a page, no `count`); logs are
one limit/offset page of at most `limit` (1-500) entries, newest first.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
import zoneinfo
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._batch_export_destinations import from_isoformat
from ._conversation_checks import uuid_text
from ._loopback import ServerReply
from ._relative_dates import relative_date_parse
from ._wire import (
    FakeRequest,
    HTTPError,
    Route,
    cursor_page,
    error,
    iso,
    json_reply,
    not_found,
    server_error,
    validation_error,
)

if TYPE_CHECKING:
    from ._fake import FakePostHog

__all__ = [
    "ROUTES",
    "RUN_STATUSES",
    "interval_delta",
    "live_export",
    "new_backfill",
    "present_backfill",
    "present_run",
]

RUN_STATUSES = (
    "Cancelled",
    "Completed",
    "ContinuedAsNew",
    "Failed",
    "FailedRetryable",
    "FailedBilling",
    "Terminated",
    "TimedOut",
    "Running",
    "Starting",
)
_CANCELLABLE = ("Running", "Starting")


def interval_delta(interval: str) -> dt.timedelta:
    """The length of one run of an export with this interval."""
    if interval.startswith("every "):
        _, value, unit = interval.split(" ")
        return dt.timedelta(**{unit: int(value)})
    return {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}.get(
        interval, dt.timedelta(weeks=1)
    )


def _uuid_or_none(value: Any) -> str | None:
    """A UUID's canonical text, or None for what is no UUID (it matches no record)."""
    try:
        return uuid_text(value)
    except ValueError:
        return None


def _same_id(stored: Any, wanted: str | None) -> bool:
    """
    Whether a stored id is the one a path names (`wanted`, canonical): Django's
    `UUIDField` compares UUIDs, so any spelling of the same UUID is the same id.
    """
    return wanted is not None and (stored == wanted or _uuid_or_none(stored) == wanted)


def _by_id(records: Mapping[str, dict[str, Any]], text: str) -> dict[str, Any] | None:
    """The record a path's id names, in any spelling `UUIDField` reads; None if none."""
    wanted = _uuid_or_none(text)
    if wanted is None:
        return None  # no UUID: PostHog's lookup finds nothing
    record = records.get(wanted)
    if record is not None:
        return record
    return next((r for key, r in records.items() if _same_id(key, wanted)), None)


def live_export(fake: FakePostHog, export_id: str) -> dict[str, Any]:
    """
    The export a path's id names (any spelling of its UUID: upper case, no hyphens, as
    Django's `UUIDField` reads it) that exists and is not deleted, else PostHog's 404.
    """
    export = _by_id(fake.batch_exports, export_id)
    if export is None or export["deleted"]:
        raise not_found()
    return export


def present_run(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run as `BatchExportRunSerializer` renders it."""
    return {
        key: iso(value) if isinstance(value, dt.datetime) else value for key, value in run.items()
    }


def present_backfill(fake: FakePostHog, backfill: Mapping[str, Any]) -> dict[str, Any]:
    """A backfill as `BatchExportBackfillSerializer` renders it, with its progress."""
    out = {"id": backfill["id"], "progress": _progress(fake, backfill)}
    out.update(
        (key, iso(value) if isinstance(value, dt.datetime) else value)
        for key, value in backfill.items()
        if key != "id"
    )
    return out


def _expected_runs(fake: FakePostHog, backfill: Mapping[str, Any]) -> int | None:
    start = backfill["adjusted_start_at"] or backfill["start_at"]
    if start is None:
        return 1  # one run exports everything from the beginning
    if backfill["total_records_count"] == 0:
        return 0
    end = backfill["end_at"]
    if end is None and backfill["finished_at"] is not None:
        end = backfill["finished_at"]
    elif end is None and backfill["status"] == "Running":
        end = fake._batch_export_now()
    elif end is None:
        return None
    interval = fake.batch_exports[backfill["batch_export"]]["interval"]
    runs: int = math.ceil((end - start) / interval_delta(interval))
    return runs


def _progress(fake: FakePostHog, backfill: Mapping[str, Any]) -> dict[str, Any] | None:
    status = backfill["status"]
    total = _expected_runs(fake, backfill)
    if status == "Completed":
        return {"total_runs": total, "finished_runs": total, "progress": 1.0}
    if status not in _CANCELLABLE or not total:
        return None
    if backfill["start_at"] is None and backfill["adjusted_start_at"] is None:
        return None
    finished = sum(
        1
        for run in fake.batch_export_runs.values()
        if run["backfill"] == backfill["id"] and run["status"] in ("Completed", "Failed")
    )
    total = max(total, finished)
    return {"total_runs": total, "finished_runs": finished, "progress": round(finished / total, 1)}


def new_backfill(
    fake: FakePostHog,
    export: Mapping[str, Any],
    start_at: dt.datetime | None,
    end_at: dt.datetime | None,
    **fields: Any,
) -> dict[str, Any]:
    """Store a backfill (PostHog's workflow creates the row; the fake does it at once)."""
    stamp = fake._batch_export_now()
    backfill: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "start_at": start_at,
        "end_at": end_at,
        "status": "Running",
        "created_at": stamp,
        "finished_at": None,
        "last_updated_at": stamp,
        "total_records_count": None,
        "adjusted_start_at": None,
        "team": export["team_id"],
        "batch_export": export["id"],
    }
    backfill.update(fields)
    fake.batch_export_backfills[backfill["id"]] = backfill
    return backfill


# ---------------------------------------------------------------------------------- runs


def _relative_date(
    fake: FakePostHog, request: FakeRequest, name: str, default: str | None
) -> dt.datetime:
    # DRF's CharField strips the value, and a blank one is the default.
    raw = (request.arg(name) or "").strip() or default
    now = fake._batch_export_now()
    return now if raw is None else relative_date_parse(raw, now)


def _orderings(request: FakeRequest, allowed: tuple[str, ...], default: str) -> list[str]:
    # DRF's OrderingFilter drops terms it does not know, and falls back to the default.
    terms = [
        term.strip()
        for term in (request.arg("ordering") or "").split(",")
        if term.strip().lstrip("-") in allowed
    ]
    return terms or [default]


def _ordered(items: list[dict[str, Any]], terms: list[str]) -> list[dict[str, Any]]:
    for term in reversed(terms):
        key = term.lstrip("-")
        far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
        items.sort(key=lambda item: item[key] or far, reverse=term.startswith("-"))
    return items


def _scoped_runs(fake: FakePostHog, request: FakeRequest) -> list[dict[str, Any]]:
    """
    The export's runs that `safely_get_queryset` keeps, for every action of the view
    (list, retrieve, retry, cancel): those in `status` (if given), created in
    [`after` or 7 days ago, `before` or now], or with `ordering=data_interval_start`
    those whose data interval lies in [`start` or 7 days ago, `end` or now].
    """
    statuses = request.args("status")
    for index, status in enumerate(statuses):
        if status not in RUN_STATUSES:
            # A ListField's error is keyed by the child's index: drf-exceptions-hog's
            # `status__<index>`.
            raise validation_error(
                f'"{status}" is not a valid choice.',
                attr=f"status__{index}",
                code="invalid_choice",
            )
    # `batch_export_id=<id>`: a UUIDField, so any spelling of the export's id.
    wanted = _uuid_or_none(request.params["id"])
    runs = [r for r in fake.batch_export_runs.values() if _same_id(r["batch_export"], wanted)]
    if request.arg("ordering") in ("data_interval_start", "-data_interval_start"):
        start = _relative_date(fake, request, "start", "-7d")
        end = _relative_date(fake, request, "end", None)
        runs = [
            r
            for r in runs
            if r["data_interval_start"] is not None
            and r["data_interval_start"] >= start
            and r["data_interval_end"] <= end
        ]
    else:
        after = _relative_date(fake, request, "after", "-7d")
        before = _relative_date(fake, request, "before", None)
        runs = [r for r in runs if after <= r["created_at"] <= before]
    if statuses:
        runs = [r for r in runs if r["status"] in statuses]
    return runs


async def _list_runs(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    runs = _scoped_runs(fake, request)
    terms = _orderings(request, ("created_at", "data_interval_start"), "-created_at")
    return cursor_page(
        request, _ordered(runs, terms), ordering=terms[0], page_size=100, present=present_run
    )


def _run(fake: FakePostHog, request: FakeRequest) -> dict[str, Any]:
    # get_object() goes through the same queryset as the list: a run older than 7 days
    # is a 404 unless `after` (or `start` with `ordering=data_interval_start`) reaches it.
    run_id = _uuid_or_none(request.params["run_id"])  # a UUIDField: any spelling
    for run in _scoped_runs(fake, request):
        if _same_id(run["id"], run_id):
            return run
    raise not_found()


async def _retrieve_run(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    return json_reply(200, present_run(_run(fake, request)))


async def _retry_run(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    # PostHog starts a backfill workflow over the run's interval and answers with the
    # workflow's id; the workflow then creates the backfill, under an id of its own.
    run = _run(fake, request)
    export = fake.batch_exports[run["batch_export"]]
    start, end = run["data_interval_start"], run["data_interval_end"]
    if any(
        b["batch_export"] == export["id"]
        and (b["start_at"], b["end_at"]) == (start, end)
        and b["status"] in _CANCELLABLE
        for b in fake.batch_export_backfills.values()
    ):
        # The workflow's id is made of the bounds alone, and Temporal runs one workflow
        # of an id at a time: `start_workflow` raises, which the view does not catch.
        raise server_error()
    new_backfill(fake, export, start, end)
    workflow_id = f"{export['id']}-Backfill-{_utc(start, 'START')}-{_utc(end, 'END')}"
    return json_reply(201, {"backfill_id": workflow_id})


def _utc(value: dt.datetime | None, absent: str) -> str:
    """A bound of a backfill as its workflow id spells it."""
    return absent if value is None else value.astimezone(dt.timezone.utc).isoformat()


async def _cancel_run(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    run = _run(fake, request)
    if run["status"] not in _CANCELLABLE:
        raise validation_error(f"Cannot cancel a run that is in '{run['status']}' status")
    run.update(status="Cancelled", last_updated_at=fake._batch_export_now())
    return json_reply(200, {"cancelled": True})


# ---------------------------------------------------------------------------------- backfills


def _timezone(name: str | None) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.timezone.utc  # no tz database here: UTC is the fake's only safe answer


def _backfill_input(value: Any, export: Mapping[str, Any]) -> dt.datetime:
    """
    PostHog's validate_date_input: dates for daily and weekly exports, aware times else.

    It parses with `datetime.fromisoformat` and answers its ValueError with a 400, so an
    unreal bound (Feb 30, hour 24) is that 400, not a 500; a daily or weekly export's
    bound is said to include a time only when `fromisoformat` reads it as a datetime.
    """
    text = value if isinstance(value, str) else str(value)
    if export["interval"] in ("day", "week"):
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            if isinstance(value, str) and _reads_as_datetime(text):
                raise validation_error(
                    f"Input '{text}' is not a valid ISO formatted date. Daily or weekly batch "
                    "export backfills expect only the date component, but a time was included."
                ) from None
            raise validation_error(f"Input '{text}' is not a valid ISO formatted date.") from None
        offset = export["interval_offset"] or 0
        if export["interval"] == "week" and day.isoweekday() % 7 != offset // 86400:
            names = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
            raise validation_error(
                f"Input {text} is not on the correct day of the week for this batch export. "
                f"{text} is a {day.strftime('%A')} but this batch export is configured to run "
                f"weekly on {names[offset // 86400]}."
            )
        hour = (offset // 3600) % 24
        return dt.datetime.combine(day, dt.time(hour), tzinfo=_timezone(export["timezone"]))
    try:
        parsed = from_isoformat(text) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:  # PostHog's ValueError, or its TypeError for a non-string
        raise validation_error(f"Input {text} is not a valid ISO formatted datetime.")
    if parsed.tzinfo is None:
        raise validation_error(f"Input {text} is naive.")
    return parsed


def _reads_as_datetime(text: str) -> bool:
    """Whether PostHog's `datetime.fromisoformat` reads `text`."""
    try:
        from_isoformat(text)
    except ValueError:
        return False
    return True


async def _list_backfills(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    wanted = _uuid_or_none(request.params["id"])  # a UUIDField: any spelling
    backfills = [
        b for b in fake.batch_export_backfills.values() if _same_id(b["batch_export"], wanted)
    ]
    terms = _orderings(request, ("created_at", "start_at"), "-created_at")
    return cursor_page(
        request,
        _ordered(backfills, terms),
        ordering=terms[0],
        page_size=50,
        present=lambda backfill: present_backfill(fake, backfill),
    )


async def _create_backfill(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    # PostHog looks the export up without excluding deleted ones (by UUID: any spelling).
    export = _by_id(fake.batch_exports, request.params["id"])
    if export is None:
        raise HTTPError(error(404, "invalid_request", "not_found", "BatchExport not found."))
    data = request.body()
    start_input, end_input = data.get("start_at"), data.get("end_at")
    if start_input is None and "batch-export-earliest-backfill" not in fake.batch_export_flags:
        raise validation_error(
            "Backfilling from the beginning of time is not enabled for this team."
        )
    query = export.get("hogql_query") if export.get("model") == "hogql" else None
    # PostHog finds the placeholder in the parsed query; the fake, which does not parse
    # HogQL, in its text.
    if start_input is None and query is not None and "{data_interval_start}" in query:
        raise validation_error(
            "This query references {data_interval_start}, which is unavailable when "
            "backfilling from the beginning of time. Provide 'start_at' or remove "
            "{data_interval_start} from the query."
        )
    limit = fake.max_concurrent_backfills
    active = sum(1 for b in fake.batch_export_backfills.values() if b["status"] in _CANCELLABLE)
    if limit is not None and active >= limit:
        raise HTTPError(
            error(
                429,
                "server_error",
                "too_many_concurrent_backfills",
                f"This team already has {limit} batch export backfills running. Wait for some "
                "to finish or cancel them before creating more.",
            )
        )
    start = None if start_input is None else _backfill_input(start_input, export)
    end = None if end_input is None else _backfill_input(end_input, export)
    if end is None and export["destination"]["type"] not in ("HTTP", "NoOp"):
        # `backfill_export` raises `BatchExportWithNoEndNotAllowedError` ("has no end_at
        # and is not HTTP"), and the open-ended branch calls it outside the `try` that
        # turns it into a 400: PostHog's JSON 500, no backfill.
        raise server_error()
    if start is not None and end is not None:
        if start >= end:
            raise validation_error(
                "The initial backfill datetime 'start_at' must be before 'end_at'"
            )
        if end > fake._batch_export_now():
            raise validation_error(f"The provided 'end_at' ({end.isoformat()}) is in the future")
    backfill = new_backfill(fake, export, start, end)
    return json_reply(201, {"backfill_id": backfill["id"]})


def _backfill(fake: FakePostHog, request: FakeRequest) -> dict[str, Any]:
    # Both ids are UUIDFields: any spelling of each finds the backfill.
    backfill = _by_id(fake.batch_export_backfills, request.params["backfill_id"])
    wanted = _uuid_or_none(request.params["id"])
    if backfill is None or not _same_id(backfill["batch_export"], wanted):
        raise not_found()
    return backfill


async def _retrieve_backfill(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    return json_reply(200, present_backfill(fake, _backfill(fake, request)))


async def _cancel_backfill(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    backfill = _backfill(fake, request)
    if backfill["status"] not in _CANCELLABLE:
        raise validation_error(f"Cannot cancel a backfill that is in '{backfill['status']}' status")
    stamp = fake._batch_export_now()
    backfill.update(status="Cancelled", last_updated_at=stamp)
    for run in fake.batch_export_runs.values():
        if run["backfill"] == backfill["id"] and run["status"] in _CANCELLABLE:
            run.update(status="Cancelled", last_updated_at=stamp)
    return json_reply(200, {"cancelled": True})


def _routes() -> list[Route]:
    item = ("batch_exports", "{id}")
    runs, run = (*item, "runs"), (*item, "runs", "{run_id}")
    backfills, backfill = (*item, "backfills"), (*item, "backfills", "{backfill_id}")
    scope = "batch_export"
    return [
        Route("GET", runs, _list_runs, scope),
        Route("GET", run, _retrieve_run, scope),
        Route("POST", (*run, "retry"), _retry_run, scope),
        Route("POST", (*run, "cancel"), _cancel_run, scope),
        Route("GET", backfills, _list_backfills, scope),
        Route("POST", backfills, _create_backfill, scope),
        Route("GET", backfill, _retrieve_backfill, scope),
        Route("POST", (*backfill, "cancel"), _cancel_backfill, scope),
    ]


ROUTES = _routes()
