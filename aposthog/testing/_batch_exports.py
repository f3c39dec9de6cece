"""
FakePostHog's batch exports, as `BatchExportViewSet` behaves: CRUD with soft delete,
pause and unpause, and the destination tests. Runs, backfills and logs are in
`_batch_export_runs`; the serializer's checks in `_batch_export_validation`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import _batch_export_logs, _batch_export_runs, _destination_tests
from ._batch_export_configs import (
    coerce_read_config,
    deep_merge,
    pin_existing_parquet_extension,
    set_default_parquet_extension,
    strip_secrets,
)
from ._batch_export_destinations import DESTINATIONS
from ._batch_export_runs import interval_delta, live_export, new_backfill, present_run
from ._batch_export_sources import apply_source, grandfathered, present_source
from ._batch_export_validation import validate_export
from ._loopback import ServerReply
from ._wire import (
    FakeRequest,
    Route,
    boolean_field,
    empty,
    iso,
    json_reply,
    now,
    offset_page,
    utc_datetime,
)

if TYPE_CHECKING:
    from ._fake import FakePostHog

__all__ = ["ROUTES", "BatchExportsKnobs"]


class BatchExportsKnobs:
    """
    The batch-export state and knobs of a FakePostHog, which exposes them as its own
    attributes and methods (`fake.batch_exports`, `fake.add_batch_export_run(...)`).

    State (plain dicts, as PostHog stores them: datetimes are `datetime`s, secrets kept):

    * `batch_exports`: id → export, deleted ones too (`"deleted": True`);
    * `batch_export_runs`, `batch_export_backfills`: id → run / backfill;
    * `batch_export_logs`: every log entry;
    * `batch_export_flags`: the team's feature flags, e.g. `"high-frequency-batch-exports"`,
      `"hogql-batch-exports"`, `"batch-export-earliest-backfill"`,
      `"backfill-workflows-destination"` (none by default);
    * `max_concurrent_backfills`: running backfills allowed before a 429 (None: no limit);
    * `integrations`: id → the team's integrations (`add_integration()` adds one).

    Destination types the fake knows: S3 (legacy, with inline credentials: still read,
    but every write of it is refused), AwsS3, S3Compatible, Postgres, Redshift, BigQuery,
    Snowflake, Databricks, AzureBlob, HTTP, NoOp, Workflows (a 403 without the team's
    `"backfill-workflows-destination"` flag) and FileDownload. As in PostHog, AwsS3,
    S3Compatible, Snowflake, BigQuery, Databricks and AzureBlob exports need an
    integration of the right kind, and so do new Postgres and Redshift ones.
    """

    def __init__(self, fake: FakePostHog) -> None:
        self._fake = fake
        self.batch_exports: dict[str, dict[str, Any]] = {}
        self.batch_export_runs: dict[str, dict[str, Any]] = {}
        self.batch_export_backfills: dict[str, dict[str, Any]] = {}
        self.batch_export_logs: list[dict[str, Any]] = []
        self.batch_export_flags: set[str] = set()
        self.test_results: dict[tuple[str, int], dict[str, Any]] = {}
        self.integrations: dict[int, dict[str, Any]] = {}
        self._clock = now() - dt.timedelta(seconds=1)

    def now(self) -> dt.datetime:
        """The fake's clock for batch exports."""
        # Strictly increasing, so "newest first" never depends on the clock's resolution.
        self._clock = max(now(), self._clock + dt.timedelta(microseconds=1))
        return self._clock

    def _stored_export(self, export_id: str) -> dict[str, Any]:
        export = self.batch_exports.get(export_id)
        if export is None:
            raise KeyError(f"FakePostHog has no batch export {export_id!r}")
        return export

    def add_batch_export_run(
        self,
        export_id: str,
        *,
        status: str = "Completed",
        created_at: dt.datetime | None = None,
        data_interval_end: dt.datetime | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """
        Add a run to an export, as its schedule would, and return it.

        `created_at` defaults to now; PostHog lists and finds (get, retry, cancel) only
        the last 7 days' runs unless the request's `after` reaches back. The data
        interval defaults to the interval ending at the start of `created_at`'s hour.
        Other fields (`records_completed`, `latest_error`, `backfill`, …) are set as
        given. A naive datetime (here or in `fields`) is read as UTC, as PostHog reads
        one; an aware one that UTC cannot hold is a `ValueError`.
        """
        export = self._stored_export(export_id)
        created = self.now() if created_at is None else utc_datetime(created_at, "created_at")
        if data_interval_end is None:
            end = created.replace(minute=0, second=0, microsecond=0)
        else:
            end = utc_datetime(data_interval_end, "data_interval_end")
        fields = _utc_fields(fields)
        run: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "status": status,
            "records_completed": None,
            "records_failed": None,
            "latest_error": None,
            "data_interval_start": end - interval_delta(export["interval"]),
            "data_interval_end": end,
            "cursor": None,
            "created_at": created,
            "finished_at": None if status in ("Running", "Starting") else created,
            "last_updated_at": created,
            "records_total_count": None,
            "bytes_exported": None,
            "batch_export": export_id,
            "backfill": None,
        }
        run.update(fields)
        self.batch_export_runs[run["id"]] = run
        return run

    def add_batch_export_backfill(
        self,
        export_id: str,
        *,
        start_at: dt.datetime | None = None,
        end_at: dt.datetime | None = None,
        status: str = "Completed",
        **fields: Any,
    ) -> dict[str, Any]:
        """
        Add a backfill to an export (no checks, unlike the API) and return it.

        A naive datetime (`start_at`, `end_at`, or in `fields`) is read as UTC, as PostHog
        reads one; an aware one that UTC cannot hold is a `ValueError`.
        """
        export = self._stored_export(export_id)
        start = None if start_at is None else utc_datetime(start_at, "start_at")
        end = None if end_at is None else utc_datetime(end_at, "end_at")
        return new_backfill(self._fake, export, start, end, status=status, **_utc_fields(fields))

    def add_batch_export_log(
        self,
        export_id: str,
        message: str,
        *,
        level: str = "INFO",
        instance_id: str = "",
        timestamp: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """
        Add a log entry (`timestamp` defaults to now, later than every earlier default).

        A naive `timestamp` is read as UTC, as PostHog reads one; an aware one that UTC
        cannot hold is a `ValueError`.
        """
        self._stored_export(export_id)
        entry = {
            "log_source_id": export_id,
            "instance_id": instance_id,
            "timestamp": self.now() if timestamp is None else utc_datetime(timestamp, "timestamp"),
            "level": level,
            "message": message,
        }
        self.batch_export_logs.append(entry)
        return entry

    def add_batch_export_logs(
        self, export_id: str, entries: Iterable[str | Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """
        Add several log entries: messages, or mappings of `add_batch_export_log` arguments
        (a naive `timestamp` is read as UTC).
        """
        if isinstance(entries, str):
            raise TypeError(
                f"entries must be an iterable of entries, such as [{entries!r}], not one str"
            )
        added = []
        for entry in entries:
            if isinstance(entry, str):
                added.append(self.add_batch_export_log(export_id, entry))
            else:
                added.append(self.add_batch_export_log(export_id, **entry))
        return added

    def add_integration(
        self,
        kind: str,
        *,
        config: Mapping[str, Any] | None = None,
        sensitive_config: Mapping[str, Any] | None = None,
        integration_id: str | None = None,
    ) -> dict[str, Any]:
        """
        Add an integration to the team, as connecting one in PostHog's UI does, and return it.

        `kind` is PostHog's integration kind: `aws-s3` (AwsS3 exports, and Redshift COPY
        credentials), `s3-compatible` (S3Compatible), `postgresql` (Postgres: its `host`
        in `config` meets the SSRF guard), `aws-redshift` (Redshift),
        `google-cloud-service-account` (BigQuery), `snowflake` (Snowflake: `account`,
        `user` and `authentication_type` in `config`, `password` or `private_key` in
        `sensitive_config`), `databricks` (Databricks: `server_hostname` in `config`,
        `client_id` and `client_secret` in `sensitive_config`), `azure-blob` (AzureBlob:
        `connection_string` in `sensitive_config`). Its `id` is what a destination's
        `integration` names. `config` and `sensitive_config` (the credentials) join a
        destination test's config, as PostHog merges them; neither is ever returned.
        """
        pk = max(self.integrations, default=0) + 1
        integration = {
            "id": pk,
            "kind": kind,
            "integration_id": integration_id,
            "config": dict(config or {}),
            "sensitive_config": dict(sensitive_config or {}),
        }
        self.integrations[pk] = integration
        return integration

    def set_batch_export_test_result(
        self, destination_type: str, step: int, *, status: str, message: str | None = None
    ) -> None:
        """
        Script the result of test step `step` of a destination type.

        Unscripted steps fail with PostHog's "not configured" message when their
        configuration is incomplete by PostHog's `_is_configured` rules (the config merged
        with the integration's `config` and `sensitive_config`), skip where PostHog skips
        (the AWS role step without `aws_role_arn`; BigQuery's impersonation steps without
        an integration or with one holding a key), and pass otherwise.
        """
        self.test_results[(destination_type, step)] = {
            "status": status,
            "message": message,
        }


# ---------------------------------------------------------------------------------- helpers


def _utc_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A knob's other fields, each datetime among them as `utc_datetime` reads it."""
    return {
        name: utc_datetime(value, name) if isinstance(value, dt.datetime) else value
        for name, value in fields.items()
    }


def _offsets(export: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(offset_day, offset_hour) from the stored interval_offset, as the model computes them."""
    offset, interval = export["interval_offset"], export["interval"]
    day = (offset or 0) // 86400 if interval == "week" else None
    hour = ((offset or 0) // 3600) % 24 if interval in ("day", "week") else None
    return day, hour


def present_export(fake: FakePostHog, export: Mapping[str, Any]) -> dict[str, Any]:
    """An export as `BatchExportSerializer` renders it: secrets gone, latest runs in."""
    destination = export["destination"]
    spec = DESTINATIONS.get(destination["type"])
    runs = [r for r in fake.batch_export_runs.values() if r["batch_export"] == export["id"]]
    runs.sort(key=lambda r: r["created_at"], reverse=True)
    offset_day, offset_hour = _offsets(export)
    return {
        "id": export["id"],
        "team_id": export["team_id"],
        "name": export["name"],
        "model": export["model"],
        "destination": {
            "type": destination["type"],
            "config": coerce_read_config(
                destination["type"],
                strip_secrets(
                    destination["config"], spec.secrets if spec is not None else frozenset()
                ),
            ),
            "integration": destination["integration"],
        },
        "interval": export["interval"],
        "paused": export["paused"],
        "created_at": iso(export["created_at"]),
        "last_updated_at": iso(export["last_updated_at"]),
        "last_paused_at": iso(export["last_paused_at"]),
        "start_at": iso(export["start_at"]),
        "end_at": iso(export["end_at"]),
        "latest_runs": [present_run(r) for r in runs[:10]],
        **present_source(export),
        "schema": export["schema"],
        "filters": export["filters"],
        "timezone": export["timezone"],
        "offset_day": offset_day,
        "offset_hour": offset_hour,
    }


def _team_id(fake: FakePostHog) -> int:
    return int(fake.project_id) if fake.project_id.isdigit() else 1


# ---------------------------------------------------------------------------------- CRUD


async def _list(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    exports = [
        e
        for e in fake.batch_exports.values()
        if not e["deleted"] and e["destination"]["type"] != "Workflows"
    ]
    exports.sort(key=lambda e: e["created_at"], reverse=True)
    return offset_page(
        request, [present_export(fake, e) for e in exports], page_size=fake.page_size
    )


async def _create(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    clean = validate_export(
        request.body(),
        instance=None,
        partial=False,
        check_required_config=True,
        flags=fake.batch_export_flags,
        integrations=fake.integrations,
        grandfathered=grandfathered(fake.batch_exports.values()),
    )
    stamp = fake._batch_export_now()
    destination = clean["destination"]
    set_default_parquet_extension(destination["type"], destination["config"])
    export: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "team_id": _team_id(fake),
        "name": clean["name"],
        "model": clean.get("model", "events"),
        "destination": {
            "type": destination["type"],
            "config": destination["config"],
            "integration": destination.get("integration"),
        },
        "interval": clean["interval"],
        "paused": clean.get("paused", False),
        "deleted": False,
        "created_at": stamp,
        "last_updated_at": stamp,
        "last_paused_at": clean.get("last_paused_at"),  # writable, as in PostHog
        "start_at": clean.get("start_at"),
        "end_at": clean.get("end_at"),
        "schema": None,
        "incremental_mode": clean.get("incremental_mode", "APPEND"),
        "filters": clean.get("filters"),
        "timezone": clean.get("timezone", "UTC"),
        "interval_offset": clean.get("interval_offset"),
    }
    apply_source(export, clean)
    fake.batch_exports[export["id"]] = export
    return json_reply(201, present_export(fake, export))


async def _retrieve(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    return json_reply(200, present_export(fake, live_export(fake, request.params["id"])))


async def _update(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    export = live_export(fake, request.params["id"])
    partial = request.method == "PATCH"
    clean = validate_export(
        request.body(),
        instance=export,
        partial=partial,
        check_required_config=not partial,
        flags=fake.batch_export_flags,
        integrations=fake.integrations,
        grandfathered=grandfathered(fake.batch_exports.values()),
    )
    destination = clean.pop("destination", None)
    if destination is not None:
        stored = export["destination"]
        pin_existing_parquet_extension(stored["type"], stored["config"])
        stored["config"] = deep_merge(stored["config"], destination["config"])
        if "integration" in destination:
            stored["integration"] = destination["integration"]
    apply_source(export, clean)
    export.update(clean)
    export["last_updated_at"] = fake._batch_export_now()
    return json_reply(200, present_export(fake, export))


async def _destroy(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    export = live_export(fake, request.params["id"])
    # delete_batch_export() pauses the schedule first, then marks the export deleted.
    export.update(deleted=True, paused=True, last_updated_at=fake._batch_export_now())
    return empty(204)


async def _pause(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    export = live_export(fake, request.params["id"])
    if not export["paused"]:  # already paused: PostHog returns early, and still says so
        stamp = fake._batch_export_now()
        export.update(paused=True, last_paused_at=stamp, last_updated_at=stamp)
    return json_reply(200, {"paused": True})


async def _unpause(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    # PostHog reads the body (a BooleanField, `backfill`) before it looks the export up.
    backfill = boolean_field(request.body().get("backfill", False), "backfill")
    export = live_export(fake, request.params["id"])
    if export["paused"]:  # not paused: PostHog returns early, with no backfill either
        stamp = fake._batch_export_now()
        export.update(paused=False, last_updated_at=stamp)
        if backfill:
            new_backfill(fake, export, export["last_paused_at"], stamp)
    return json_reply(200, {"paused": False})


def _routes() -> list[Route]:
    base = ("batch_exports",)
    item = (*base, "{id}")
    scope = "batch_export"
    return [
        Route("GET", base, _list, scope),
        Route("POST", base, _create, scope),
        Route("GET", item, _retrieve, scope),
        Route("PUT", item, _update, scope),
        Route("PATCH", item, _update, scope),
        Route("DELETE", item, _destroy, scope),
        Route("POST", (*item, "pause"), _pause, scope),
        Route("POST", (*item, "unpause"), _unpause, scope),
        *_destination_tests.ROUTES,
        *_batch_export_runs.ROUTES,
        *_batch_export_logs.ROUTES,
    ]


ROUTES: list[Route] = _routes()
