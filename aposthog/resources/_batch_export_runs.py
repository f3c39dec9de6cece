"""The runs and backfills of a batch export, reached as `ph.batch_exports.list_runs(...)` etc."""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from .. import _routes as routes
from .._client import NOT_GIVEN, NotGiven
from .._errors import ResponseDecodeError
from .._pagination import AsyncPaginator
from ..models.batch_exports import BatchExportBackfill, BatchExportRun, BatchExportRunStatus
from ._base import Resource
from ._batch_export_args import backfill_bound, check_ordering, check_window, timestamp
from ._checks import choice, uuid_segment

__all__ = ["BatchExportRuns"]

_RUN_ORDERINGS = ("created_at", "-created_at", "data_interval_start", "-data_interval_start")
_BACKFILL_ORDERINGS = ("created_at", "-created_at", "start_at", "-start_at")
Timeout = float | None | NotGiven
Timestamp = dt.datetime | str
_RUN_STATUSES = tuple(item.value for item in BatchExportRunStatus)


class BatchExportRuns(Resource):
    """Runs (`batch_exports/<id>/runs/`) and backfills (`batch_exports/<id>/backfills/`)."""

    __slots__ = ()

    # ------------------------------------------------------------------ runs

    def list_runs(
        self,
        id: str | uuid.UUID,
        *,
        status: BatchExportRunStatus | str | Iterable[BatchExportRunStatus | str] | None = None,
        after: Timestamp | None = None,
        before: Timestamp | None = None,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
        ordering: str | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> AsyncPaginator[BatchExportRun]:
        """
        The export's runs, 100 to a cursor page (no count), newest first by default.

        `after`, `before`, `start` and `end` each take an aware datetime, an ISO 8601
        date or timestamp (one without an offset is read in the project's timezone),
        or a relative time counted back from now: `-30s`, `-15M` (minutes), `-2h`,
        `-7d`, `-2w`, `-1m` (calendar months), `-1q` (13 weeks) or `-1y`. `Start` or
        `End` after the unit snaps as PostHog does: `h` and `d` to the start or end of
        the hour or day (`-1dStart`: yesterday at 00:00, in the project's timezone),
        `m` to the first or last day of the month, `yStart` to January 1 (the time of
        day kept for `m` and `y`); with a snap the count may be left out (`dStart`:
        today at 00:00), reaching back at most 1000 years. PostHog reads a string it
        cannot parse as "now", without an error; here any other string is a
        `ValueError`, before a request is made.

        PostHog filters by one range, chosen by `ordering`: by when runs were created
        (`after`, `before`), or, ordered by `data_interval_start` (either way), by their
        data interval (`start`, `end`). It ignores the other pair without an error: given
        here, that pair is a `ValueError`, before a request is made.

        Args:
            status: keep runs in this status, or in any of these statuses.
            after: keep runs created after this (with `before`: PostHog's
                default is the last 7 days).
            before: keep runs created before this (before a fixed `after`: a
                `ValueError`, as is an `end` before a fixed `start`).
            start: with `ordering="data_interval_start"` (or its `-` form), keep runs
                whose data interval lies in `start`..`end` instead (PostHog's default
                start: 7 days ago).
            end: the end of that range.
            ordering: `created_at`, `data_interval_start`, or either with a leading `-`.
        """
        statuses: builtins.list[str] | None = None
        if status is not None:
            given: object = status  # typed for callers, checked as anything
            if not isinstance(given, (str, Iterable)) or isinstance(given, Mapping):
                raise TypeError(
                    f"status must be a str or a list of str, got {type(status).__name__}"
                )
            items = [status] if isinstance(status, str) else builtins.list(status)
            # PostHog matches statuses case-sensitively and adds new ones over time:
            # known ones are sent in its spelling, unknown ones as given.
            statuses = [choice("status", item, _RUN_STATUSES, open_enum=True) for item in items]
            if not statuses:
                # Sent as no parameter, PostHog's "no filter": runs of every status.
                raise ValueError(
                    "status must name at least one status (None for runs of any status)"
                )
        order = check_ordering(ordering, _RUN_ORDERINGS)
        bounds = {
            "after": timestamp("after", after, relative=True),
            "before": timestamp("before", before, relative=True),
            "start": timestamp("start", start, relative=True),
            "end": timestamp("end", end, relative=True),
        }
        for low, high in (("after", "before"), ("start", "end")):
            check_window(
                low,
                bounds[low],
                high,
                bounds[high],
                empty="PostHog would answer no runs, as if none had run",
                inclusive=True,
            )
        params = {"status": statuses, **bounds, "ordering": order}
        by_interval = order in ("data_interval_start", "-data_interval_start")
        for name in ("after", "before") if by_interval else ("start", "end"):
            if params[name] is not None:
                raise ValueError(
                    f"{name} filters runs by when they were created, which PostHog ignores "
                    "when they are ordered by data_interval_start: use start and end"
                    if by_interval
                    else f"{name} filters runs by their data interval only with "
                    "ordering='data_interval_start' (or '-data_interval_start'): PostHog "
                    "ignores it otherwise (after and before filter by creation time)"
                )
        return self._api.paginate(
            BatchExportRun, routes.RUNS, uuid_segment("id", id), params=params, timeout=timeout
        )

    async def get_run(
        self,
        id: str | uuid.UUID,
        run_id: str | uuid.UUID,
        *,
        after: Timestamp | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> BatchExportRun:
        """
        Fetch one run of an export.

        PostHog finds only runs created in the last 7 days: an older one is a
        `NotFoundError` unless `after` reaches back to it.

        Args:
            after: look among runs created at or after this point: an aware datetime,
                an ISO 8601 string, or a relative time such as `"-30d"` (see `list_runs`).
        """
        return await self._api.fetch(
            BatchExportRun,
            routes.RUN_GET,
            uuid_segment("id", id),
            uuid_segment("run_id", run_id),
            params=_window(after),
            timeout=timeout,
        )

    async def retry_run(
        self,
        id: str | uuid.UUID,
        run_id: str | uuid.UUID,
        *,
        after: Timestamp | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> str:
        """
        Run a run's data interval again. PostHog does it as a one-run backfill.

        PostHog finds only runs created in the last 7 days: an older one is a
        `NotFoundError` unless `after` reaches back to it.

        PostHog answers with the id of the workflow it starts, not with a backfill id:
        the workflow creates the backfill when it starts, under an id of its own. To
        follow it, look in `list_backfills(id)` (newest first) for the backfill whose
        `start_at` and `end_at` are the run's `data_interval_start` and
        `data_interval_end`; it may take a moment to appear.

        Args:
            after: look among runs created at or after this point: an aware datetime,
                an ISO 8601 string, or a relative time such as `"-30d"` (see `list_runs`).

        Returns:
            PostHog's workflow id for the backfill,
            `"<id>-Backfill-<data_interval_start>-<data_interval_end>"` with both
            bounds in UTC as Python's `isoformat()` writes them (`START` for a run
            without a start), e.g.
            `"…-Backfill-2024-01-01T00:00:00+00:00-2024-01-01T01:00:00+00:00"`. It is
            not a backfill id: `get_backfill` refuses it.
        """
        backfill_id: str = await self._api.request_json(
            routes.RUN_RETRY,
            uuid_segment("id", id),
            uuid_segment("run_id", run_id),
            params=_window(after),
            timeout=timeout,
            expect=_backfill_id,
        )
        return backfill_id

    async def cancel_run(
        self,
        id: str | uuid.UUID,
        run_id: str | uuid.UUID,
        *,
        after: Timestamp | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> None:
        """
        Cancel a run.

        PostHog finds only runs created in the last 7 days: an older one is a
        `NotFoundError` unless `after` reaches back to it.

        Args:
            after: look among runs created at or after this point: an aware datetime,
                an ISO 8601 string, or a relative time such as `"-30d"` (see `list_runs`).

        Raises:
            BadRequestError: the run is not `Running` or `Starting`.
        """
        await self._api.request_json(
            routes.RUN_CANCEL,
            uuid_segment("id", id),
            uuid_segment("run_id", run_id),
            params=_window(after),
            timeout=timeout,
        )

    # ------------------------------------------------------------------ backfills

    def list_backfills(
        self, id: str | uuid.UUID, *, ordering: str | None = None, timeout: Timeout = NOT_GIVEN
    ) -> AsyncPaginator[BatchExportBackfill]:
        """
        The export's backfills, 50 to a cursor page (no count), newest first by default.

        Args:
            ordering: `created_at`, `start_at`, or either with a leading `-`.
        """
        params = {"ordering": check_ordering(ordering, _BACKFILL_ORDERINGS)}
        return self._api.paginate(
            BatchExportBackfill,
            routes.BACKFILLS,
            uuid_segment("id", id),
            params=params,
            timeout=timeout,
        )

    async def create_backfill(
        self,
        id: str | uuid.UUID,
        *,
        start_at: dt.date | str | None,
        end_at: dt.date | str | None,
        timeout: Timeout = NOT_GIVEN,
    ) -> str:
        """
        Re-export a past range.

        Hourly and sub-hourly exports take timezone-aware datetimes (or ISO 8601
        strings with an offset); daily and weekly exports take dates (`datetime.date`
        or `"YYYY-MM-DD"`), which PostHog places in the export's timezone and hour, and
        for weekly exports the date must fall on the export's weekday.

        PostHog creates the backfill when its workflow starts, so a `get_backfill`
        right after this may be a `NotFoundError` for a moment.

        Args:
            start_at: the start of the range; None means from the beginning of the data
                (a PostHog feature flag: otherwise `BadRequestError`).
            end_at: the end of the range (not in the future); None means up to now and
                on (the backfill catches up, then unpauses the export), which PostHog
                allows only for HTTP exports: for any other it fails with a 500
                (`InternalServerError`, not retried) and creates nothing.

        Returns:
            The new backfill's id (see `get_backfill`).

        Raises:
            BadRequestError: `start_at` is not before `end_at`, `end_at` is in the
                future, or the input does not suit the export's interval.
            RateLimitError: too many backfills are running for this team.
        """
        payload = {
            "start_at": backfill_bound("start_at", start_at),
            "end_at": backfill_bound("end_at", end_at),
        }
        backfill_id: str = await self._api.request_json(
            routes.BACKFILL_CREATE,
            uuid_segment("id", id),
            json=payload,
            timeout=timeout,
            expect=_backfill_id,
        )
        return backfill_id

    async def get_backfill(
        self, id: str | uuid.UUID, backfill_id: str | uuid.UUID, *, timeout: Timeout = NOT_GIVEN
    ) -> BatchExportBackfill:
        """Fetch one backfill of an export, with its progress."""
        return await self._api.fetch(
            BatchExportBackfill,
            routes.BACKFILL_GET,
            uuid_segment("id", id),
            uuid_segment("backfill_id", backfill_id),
            timeout=timeout,
        )

    async def cancel_backfill(
        self, id: str | uuid.UUID, backfill_id: str | uuid.UUID, *, timeout: Timeout = NOT_GIVEN
    ) -> None:
        """
        Cancel a backfill and its running runs.

        Raises:
            BadRequestError: the backfill is not `Running` or `Starting`.
        """
        await self._api.request_json(
            routes.BACKFILL_CANCEL,
            uuid_segment("id", id),
            uuid_segment("backfill_id", backfill_id),
            timeout=timeout,
        )


def _window(after: Timestamp | None) -> dict[str, str | None]:
    # PostHog's runs view keeps runs created in [after or -7d, now] for every action.
    return {"after": timestamp("after", after, relative=True)}


def _backfill_id(data: Any) -> str:
    if not isinstance(data, dict) or not isinstance(data.get("backfill_id"), str):
        raise ResponseDecodeError(
            "expected {'backfill_id': <id>} from PostHog", paths=("$.backfill_id",), body=data
        )
    return str(data["backfill_id"])
