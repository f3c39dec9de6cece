"""`ph.batch_exports`: batch exports, their logs, destination tests, runs and backfills."""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .. import _routes as routes
from .._client import NOT_GIVEN, NotGiven
from .._converter import structure
from .._errors import BadRequestError, NotFoundError, ResponseDecodeError
from .._pagination import AsyncPaginator
from ..models.batch_exports import (
    BatchExport,
    BatchExportDestinationType,
    BatchExportIncrementalMode,
    BatchExportInterval,
    BatchExportLogEntry,
    BatchExportLogLevel,
    BatchExportModel,
    BatchExportTestStep,
    RedactedBody,
)
from ._base import check_paging
from ._batch_export_args import (
    DestinationArg,
    body,
    check_step,
    check_window,
    create_body,
    enum_value,
    log_levels,
    timestamp,
)
from ._batch_export_runs import BatchExportRuns
from ._checks import check_bool, check_json, choice, not_blank, uuid_id, uuid_segment

__all__ = ["BatchExports"]

Timeout = float | None | NotGiven
Timestamp = dt.datetime | str
#: `ph.batch_exports.list` shadows the builtin inside the class body.
Filters = list[dict[str, Any]]
_DESTINATIONS = tuple(item.value for item in BatchExportDestinationType)


class BatchExports(BatchExportRuns):
    """
    Batch exports (`/api/environments/<project>/batch_exports/`).

    Example:
        ```python
        export = await ph.batch_exports.create(
            name="Events to S3",
            destination=BatchExportDestination(
                type="AwsS3",
                config={"bucket_name": "my-bucket", "region": "eu-west-1", "prefix": "posthog/"},
                integration=aws_integration_id,  # PostHog keeps the AWS keys there
            ),
            interval=BatchExportInterval.HOUR,
        )
        await ph.batch_exports.pause(export.id)
        async for entry in ph.batch_exports.logs(export.id, level="ERROR"):
            print(entry.timestamp, entry.message)
        ```
    """

    # Runs and backfills (`list_runs()`, `create_backfill()`, …) are written in their own
    # module and inherited: methods of this class, for `help()` and the API reference.
    __slots__ = ()

    # ------------------------------------------------------------------ CRUD

    def list(
        self, *, limit: int | None = None, offset: int | None = None, timeout: Timeout = NOT_GIVEN
    ) -> AsyncPaginator[BatchExport]:
        """
        Every batch export of the environment, newest first. Deleted ones are left out,
        and so are `Workflows` ones, as PostHog lists them (`get()` finds those).

        Example:
            ```python
            async for export in ph.batch_exports.list():
                print(export.name, export.interval, export.paused)
            ```
        """
        check_paging(limit, offset)
        return self._api.paginate(
            BatchExport, routes.EXPORTS, params={"limit": limit, "offset": offset}, timeout=timeout
        )

    async def get(self, id: str | uuid.UUID, *, timeout: Timeout = NOT_GIVEN) -> BatchExport:
        """Fetch one batch export (`NotFoundError` if it does not exist or was deleted)."""
        return await self._api.fetch(
            BatchExport, routes.EXPORT_GET, uuid_segment("id", id), timeout=timeout
        )

    async def create(
        self,
        *,
        name: str,
        destination: DestinationArg,
        interval: BatchExportInterval | str,
        model: BatchExportModel | str | NotGiven = NOT_GIVEN,
        paused: bool | NotGiven = NOT_GIVEN,
        start_at: Timestamp | NotGiven | None = NOT_GIVEN,
        end_at: Timestamp | NotGiven | None = NOT_GIVEN,
        hogql_query: str | NotGiven | None = NOT_GIVEN,
        hogql_modifiers: Mapping[str, Any] | NotGiven | None = NOT_GIVEN,
        primary_key: Sequence[str] | NotGiven | None = NOT_GIVEN,
        version_key: Sequence[str] | NotGiven | None = NOT_GIVEN,
        incremental_mode: BatchExportIncrementalMode | str | NotGiven = NOT_GIVEN,
        filters: Filters | NotGiven | None = NOT_GIVEN,
        timezone: str | NotGiven | None = NOT_GIVEN,
        offset_day: int | NotGiven | None = NOT_GIVEN,
        offset_hour: int | NotGiven | None = NOT_GIVEN,
        timeout: Timeout = NOT_GIVEN,
    ) -> BatchExport:
        """
        Create a batch export (PostHog answers 201 with the new export).

        Args:
            name: its name.
            destination: a `BatchExportDestination`, or a mapping with `type` and `config`.
            interval: how often it runs.
            model: which data it exports (PostHog's default: events).
            paused: create it paused.
            start_at: where the exported data starts (a timezone-aware datetime or an
                ISO 8601 string).
            end_at: where it ends (likewise); with both given, one at or before
                `start_at` is a `ValueError` (PostHog would keep an export that never runs).
            hogql_query: the HogQL SELECT whose results a `hogql` export exports
                (required with that model; PostHog refuses it for other models, but
                for teams that already have an `events` export with a custom schema).
            hogql_modifiers: HogQL modifiers for a `hogql` export's query.
            primary_key: a `hogql` export's primary key columns (required with
                `incremental_mode=MERGE`).
            version_key: a `hogql` export's version key columns.
            incremental_mode: `APPEND` (PostHog's default) or `MERGE`.
            filters: property filters (each with a `type` of event, person or hogql)
                restricting the exported events; `events` exports only.
            timezone: the IANA timezone of daily and weekly boundaries (None: UTC).
            offset_day: for weekly exports, the weekday to run on (0 = Sunday … 6).
            offset_hour: for daily and weekly exports, the hour to run at (0-23).

        Raises:
            TypeError, ValueError: a plainly wrong argument, before anything is sent.
            BadRequestError: PostHog rejected the configuration (unknown or missing
                config fields, an offset that does not suit the interval, …).
        """
        payload = create_body(
            name=name,
            destination=destination,
            interval=interval,
            model=model,
            paused=paused,
            start_at=start_at,
            end_at=end_at,
            hogql_query=hogql_query,
            hogql_modifiers=hogql_modifiers,
            primary_key=primary_key,
            version_key=version_key,
            incremental_mode=incremental_mode,
            filters=filters,
            timezone=timezone,
            offset_day=offset_day,
            offset_hour=offset_hour,
        )
        del destination  # the caller's, maybe with secrets in clear: see RedactedBody
        return await self._api.fetch(
            BatchExport, routes.EXPORT_CREATE, json=payload, timeout=timeout
        )

    async def update(
        self,
        id: str | uuid.UUID,
        *,
        name: str | NotGiven = NOT_GIVEN,
        destination: DestinationArg | NotGiven = NOT_GIVEN,
        interval: BatchExportInterval | str | NotGiven = NOT_GIVEN,
        model: BatchExportModel | str | NotGiven = NOT_GIVEN,
        paused: bool | NotGiven = NOT_GIVEN,
        start_at: Timestamp | NotGiven | None = NOT_GIVEN,
        end_at: Timestamp | NotGiven | None = NOT_GIVEN,
        hogql_query: str | NotGiven | None = NOT_GIVEN,
        hogql_modifiers: Mapping[str, Any] | NotGiven | None = NOT_GIVEN,
        primary_key: Sequence[str] | NotGiven | None = NOT_GIVEN,
        version_key: Sequence[str] | NotGiven | None = NOT_GIVEN,
        incremental_mode: BatchExportIncrementalMode | str | NotGiven = NOT_GIVEN,
        filters: Filters | NotGiven | None = NOT_GIVEN,
        timezone: str | NotGiven | None = NOT_GIVEN,
        offset_day: int | NotGiven | None = NOT_GIVEN,
        offset_hour: int | NotGiven | None = NOT_GIVEN,
        timeout: Timeout = NOT_GIVEN,
    ) -> BatchExport:
        """
        Change the given fields only (PATCH).

        PostHog merges `destination.config` into the stored config key by key (nested
        objects too), so send only the keys that change. The destination's `type` must
        be sent and cannot change, nor can `model`. `hogql_query=None` clears an `events`
        export's custom schema; None also clears `hogql_modifiers`, `primary_key` and
        `version_key`, and `filters`. `offset_day` and `offset_hour` need `interval` beside
        them (PostHog fails with a 500 otherwise); an offset left out then goes back to 0.

        Example:
            ```python
            export = await ph.batch_exports.update(
                export.id, destination={"type": "AwsS3", "config": {"prefix": "v2/"}}
            )
            ```
        """
        if isinstance(interval, NotGiven) and not (
            isinstance(offset_day, NotGiven) and isinstance(offset_hour, NotGiven)
        ):
            raise ValueError("offset_day and offset_hour need interval in the same update")
        payload = body(
            name=name,
            destination=destination,
            interval=interval,
            model=model,
            paused=paused,
            start_at=start_at,
            end_at=end_at,
            hogql_query=hogql_query,
            hogql_modifiers=hogql_modifiers,
            primary_key=primary_key,
            version_key=version_key,
            incremental_mode=incremental_mode,
            filters=filters,
            timezone=timezone,
            offset_day=offset_day,
            offset_hour=offset_hour,
        )
        del destination  # the caller's, maybe with secrets in clear: see RedactedBody
        return await self._api.fetch(
            BatchExport, routes.EXPORT_UPDATE, uuid_segment("id", id), json=payload, timeout=timeout
        )

    async def replace(
        self,
        id: str | uuid.UUID,
        *,
        name: str,
        destination: DestinationArg,
        interval: BatchExportInterval | str,
        model: BatchExportModel | str | NotGiven = NOT_GIVEN,
        paused: bool | NotGiven = NOT_GIVEN,
        start_at: Timestamp | NotGiven | None = NOT_GIVEN,
        end_at: Timestamp | NotGiven | None = NOT_GIVEN,
        hogql_query: str | NotGiven | None = NOT_GIVEN,
        hogql_modifiers: Mapping[str, Any] | NotGiven | None = NOT_GIVEN,
        primary_key: Sequence[str] | NotGiven | None = NOT_GIVEN,
        version_key: Sequence[str] | NotGiven | None = NOT_GIVEN,
        incremental_mode: BatchExportIncrementalMode | str | NotGiven = NOT_GIVEN,
        filters: Filters | NotGiven | None = NOT_GIVEN,
        timezone: str | NotGiven | None = NOT_GIVEN,
        offset_day: int | NotGiven | None = NOT_GIVEN,
        offset_hour: int | NotGiven | None = NOT_GIVEN,
        timeout: Timeout = NOT_GIVEN,
    ) -> BatchExport:
        """
        Write an export's configuration whole (PUT), checked as `create()` checks a new one.

        `name`, `destination` and `interval` are required, and PostHog refuses a
        `destination.config` that lacks a key its type requires (a `BadRequestError`),
        where `update()` sends only what changes. That check reads the config sent,
        before the merge: a secret the type requires (an HTTP export's `token`, an inline
        `user` and `password`), which PostHog never sends back, must be sent again, or
        use `update()`. The rest is PostHog's update: the config is merged into the
        stored one key by key (so a secret it does not require need not be sent again),
        a field left out keeps its value, and neither the destination's `type` nor
        `model` can change. The arguments are `create()`'s.

        Except the schedule's offsets: a PUT always carries `interval`, and PostHog then
        sets `offset_day` and `offset_hour` back to none (midnight; Sunday for a weekly
        export) unless they are sent. Pass them again to keep a daily or weekly export's
        time.

        Example:
            ```python
            export = await ph.batch_exports.replace(
                export.id,
                name="Events to S3",
                destination={
                    "type": "AwsS3",
                    "config": {
                        "bucket_name": "events-v2",
                        "region": "eu-west-1",
                        "prefix": "posthog/",
                    },
                },
                interval="day",
                offset_hour=3,
            )
            ```
        """
        payload = body(
            name=name,
            destination=destination,
            interval=interval,
            model=model,
            paused=paused,
            start_at=start_at,
            end_at=end_at,
            hogql_query=hogql_query,
            hogql_modifiers=hogql_modifiers,
            primary_key=primary_key,
            version_key=version_key,
            incremental_mode=incremental_mode,
            filters=filters,
            timezone=timezone,
            offset_day=offset_day,
            offset_hour=offset_hour,
        )
        del destination  # the caller's, maybe with secrets in clear: see RedactedBody
        return await self._api.fetch(
            BatchExport,
            routes.EXPORT_REPLACE,
            uuid_segment("id", id),
            json=payload,
            timeout=timeout,
        )

    async def delete(self, id: str | uuid.UUID, *, timeout: Timeout = NOT_GIVEN) -> None:
        """
        Delete a batch export (PostHog answers 204; later reads answer 404).

        `NotFoundError` for an unknown id; a retry that finds the export gone after an
        attempt PostHog may have carried out (its answer lost: the delete also removes
        the export's schedule, which can take a while) is the delete's success.
        """
        await self._api.request_json(routes.EXPORT_DELETE, uuid_segment("id", id), timeout=timeout)

    # ------------------------------------------------------------------ actions

    async def pause(self, id: str | uuid.UUID, *, timeout: Timeout = NOT_GIVEN) -> None:
        """
        Pause a batch export. Pausing a paused export changes nothing (and succeeds),
        so a retried call is harmless.
        """
        await self._api.request_json(routes.EXPORT_PAUSE, uuid_segment("id", id), timeout=timeout)

    async def unpause(
        self, id: str | uuid.UUID, *, backfill: bool = False, timeout: Timeout = NOT_GIVEN
    ) -> None:
        """
        Unpause a batch export; harmless if it is not paused.

        Args:
            backfill: also backfill the intervals missed while it was paused (PostHog
                does so only when the export was paused). PostHog backfills from the
                export's `last_paused_at`, which only `pause()` sets: for an export
                paused otherwise (created with `paused=True`, or `update(paused=True)`)
                it has none, and PostHog would backfill the export's whole history. The
                export is read first, and that case is a `ValueError`, nothing changed:
                unpause it without `backfill`, then `create_backfill()` what you need.
                So is a pause time the export's runs have gone past: after a `pause()`
                long ago and runs since, an `update(paused=True)` keeps that old time,
                and PostHog would export again what those runs exported.
        """
        check_bool("backfill", backfill)
        if backfill:
            export = await self.get(id, timeout=timeout)
            paused_at = export.last_paused_at
            if export.paused and paused_at is None:
                raise ValueError(
                    "backfill=True: this export has no pause time (it was not paused by "
                    "pause()), so PostHog would backfill its whole history; unpause it "
                    "without backfill, then create_backfill() the interval you need"
                )
            # A run whose interval ends after the pause time ran after it: while paused no
            # interval that holds that time is exported. PostHog's backfill starts at the
            # interval holding the pause time, so one such run is enough to export again.
            ran: builtins.list[dt.datetime] = []
            for run in export.latest_runs:
                start, end = run.data_interval_start, run.data_interval_end
                if paused_at is None:
                    break
                if end is not None and end > paused_at:
                    ran.append(end)
                elif start is not None and start >= paused_at:
                    ran.append(start)
            if export.paused and ran and paused_at is not None:
                raise ValueError(
                    "backfill=True: this export ran after its pause time "
                    f"({paused_at.isoformat()}: it was paused again by update(), which keeps "
                    "that time), so PostHog would export again what those runs exported "
                    f"(up to {max(ran).isoformat()}); unpause it without backfill, then "
                    "create_backfill() the interval you need"
                )
        route = routes.EXPORT_UNPAUSE_BACKFILL if backfill else routes.EXPORT_UNPAUSE
        await self._api.request_json(
            route, uuid_segment("id", id), json={"backfill": backfill}, timeout=timeout
        )

    def logs(
        self,
        id: str | uuid.UUID,
        *,
        level: str | Iterable[BatchExportLogLevel | str] | None = None,
        search: str | None = None,
        after: Timestamp | None = None,
        before: Timestamp | None = None,
        instance_id: str | None = None,
        limit: int | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> AsyncPaginator[BatchExportLogEntry]:
        """
        The export's log, newest first.

        PostHog fetches at most `limit` entries (1-500, default 50) per request and
        serves them as one page; to read further back, call again with
        `before=<the oldest timestamp seen>`. Personal API keys with scopes get
        `PermissionDeniedError` here: PostHog lets only unscoped keys read logs.

        Args:
            level: levels to keep, as a list (`["INFO", "ERROR"]`) or a comma-separated
                string (`"info,error"`); sent upper-cased as one parameter.
            search: keep entries whose message contains this (case-insensitive).
                PostHog matches it with SQL's `ILIKE`, so `_` stands for any one
                character and `%` for any run of them; a backslash before one matches
                it as itself (`r"50\\%"`). PostHog trims blanks around it, so a value
                with any is refused (`ValueError`) rather than matching more.
            after: keep entries strictly after this moment.
            before: keep entries strictly before this moment (at or before a fixed
                `after`: a `ValueError`, as no entry could be kept).
            instance_id: keep entries of this run.
            limit: how many entries to fetch (1-500).

        Example:
            ```python
            errors = await ph.batch_exports.logs(export.id, level="ERROR", limit=100)
            for entry in errors.results:
                print(entry.timestamp, entry.message)
            ```
        """
        check_paging(limit, max_limit=500)
        empty = "PostHog refuses an empty filter; leave it out"
        for name, text in (("search", search), ("instance_id", instance_id)):
            not_blank(name, text, none_means=empty)
            if text is not None and text != text.strip():
                # PostHog trims it (a CharField): " failed" would match "unfailed" too.
                raise ValueError(
                    f"{name} must not begin or end with blanks: PostHog trims them, and "
                    f"would match more than {text!r}"
                )
        since, until = timestamp("after", after), timestamp("before", before)
        # Both bounds are exclusive: a window without a moment in it is always empty.
        check_window(
            "after",
            since,
            "before",
            until,
            empty="PostHog keeps entries strictly between them, so there would be none",
        )
        params = {
            "level": log_levels(level),
            "search": search,
            "after": since,
            "before": until,
            "instance_id": instance_id,
            "limit": limit,
        }
        return self._api.paginate(
            BatchExportLogEntry,
            routes.EXPORT_LOGS,
            uuid_segment("id", id),
            params=params,
            timeout=timeout,
        )

    # ------------------------------------------------------------------ destination tests

    async def test(
        self, *, destination: BatchExportDestinationType | str, timeout: Timeout = NOT_GIVEN
    ) -> builtins.list[BatchExportTestStep]:
        """
        The test steps PostHog runs for a destination type (each `result` is None).

        Raises:
            NotFoundError: PostHog has no test for this type (the legacy S3, Postgres,
                HTTP, …).
            ValueError: `destination` is empty or blank (refused before sending).
        """
        value = choice("destination", destination, _DESTINATIONS, open_enum=True)
        try:
            steps: builtins.list[BatchExportTestStep] = await self._api.request_json(
                routes.EXPORT_TEST, params={"destination": value}, timeout=timeout, expect=_steps
            )
        except (BadRequestError, NotFoundError) as exc:
            # PostHog answers both with an empty body: say what was wrong.
            if exc.detail is not None:
                raise
            detail = (
                "PostHog needs a destination type to list its test steps"
                if isinstance(exc, BadRequestError)
                else f"PostHog cannot test destination {value!r}"
            )
            raise type(exc)(
                status=exc.status, detail=detail, body=exc.body, method=exc.method, path=exc.path
            ) from None
        return steps

    async def run_test_step(
        self,
        id: str | uuid.UUID,
        *,
        step: int,
        config: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> BatchExportTestStep:
        """
        Run one test step against an export's stored destination.

        PostHog wants the export's name, interval and destination type in the request,
        so this fetches the export first. `config` overrides stored config keys for
        this test only (e.g. a new secret, which PostHog never returns); nothing is saved.

        Returns:
            The step, with its `result`: a failed step is `result.status == "Failed"`,
            not an exception.
        """
        check_step(step)
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping or None, got {type(config).__name__}")
        check_json("config", config)
        uuid_id("id", id)
        # The caller's, maybe with secrets in clear: kept from here on only in a body
        # whose repr hides them (a traceback's locals show none of them).
        sent = RedactedBody(config or {})
        del config
        export = await self.get(id, timeout=timeout)
        destination = RedactedBody(type=enum_value(export.destination.type), config=sent)
        if export.destination.integration is not None:
            destination["integration"] = export.destination.integration
        payload = RedactedBody(
            step=step,
            name=export.name,
            interval=enum_value(export.interval),
            destination=destination,
        )
        return await self._api.fetch(
            BatchExportTestStep,
            routes.EXPORT_TEST_STEP,
            uuid_segment("id", id),
            json=payload,
            timeout=timeout,
        )

    async def run_test_step_new(
        self,
        *,
        step: int,
        destination: DestinationArg,
        name: str = "Destination test",
        interval: BatchExportInterval | str = BatchExportInterval.HOUR,
        model: BatchExportModel | str | NotGiven = NOT_GIVEN,
        hogql_query: str | NotGiven | None = NOT_GIVEN,
        hogql_modifiers: Mapping[str, Any] | NotGiven | None = NOT_GIVEN,
        primary_key: Sequence[str] | NotGiven | None = NOT_GIVEN,
        version_key: Sequence[str] | NotGiven | None = NOT_GIVEN,
        incremental_mode: BatchExportIncrementalMode | str | NotGiven = NOT_GIVEN,
        filters: Filters | NotGiven | None = NOT_GIVEN,
        timeout: Timeout = NOT_GIVEN,
    ) -> BatchExportTestStep:
        """
        Run one test step against a destination that is not saved yet.

        PostHog validates the request as a full batch export (`create()`'s rules), hence
        `name` and `interval` (their defaults suit a test), and the source fields of the
        export being set up: a `hogql` export's destination is tested with its
        `hogql_query` (and its keys, for `incremental_mode="MERGE"`). A failed step is
        data.

        Raises:
            TypeError, ValueError: a plainly wrong argument, before anything is sent
                (`model="hogql"` without `hogql_query`, which PostHog refuses).
        """
        check_step(step)
        payload = create_body(
            name=name,
            destination=destination,
            interval=interval,
            model=model,
            hogql_query=hogql_query,
            hogql_modifiers=hogql_modifiers,
            primary_key=primary_key,
            version_key=version_key,
            incremental_mode=incremental_mode,
            filters=filters,
        )
        del destination  # the caller's, maybe with secrets in clear: see RedactedBody
        payload["step"] = step
        return await self._api.fetch(
            BatchExportTestStep, routes.EXPORT_TEST_STEP_NEW, json=payload, timeout=timeout
        )


def _steps(data: Any) -> builtins.list[BatchExportTestStep]:
    """The test steps of PostHog's destination test endpoint."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ResponseDecodeError(
            "expected {'steps': [...]} from PostHog's destination test endpoint",
            paths=("$.steps",),
            body=data,
        )
    steps: builtins.list[BatchExportTestStep] = structure(
        data["steps"], builtins.list[BatchExportTestStep], path="$.steps"
    )
    return steps
