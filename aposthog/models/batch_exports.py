"""
Batch exports: the export itself, its destination, runs, backfills, log entries and
destination test steps.

Every enum here is open: PostHog adds intervals, models, destination types and run
statuses over time, so a field typed `SomeEnum | str` holds the member for a known
value and the plain string for one this version has not heard of. Members are strs,
so `export.interval == "hour"` works either way.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ._common import extra_fields_field

__all__ = [
    "BatchExport",
    "BatchExportBackfill",
    "BatchExportBackfillProgress",
    "BatchExportDestination",
    "BatchExportDestinationType",
    "BatchExportIncrementalMode",
    "BatchExportInterval",
    "BatchExportLogEntry",
    "BatchExportLogLevel",
    "BatchExportModel",
    "BatchExportRun",
    "BatchExportRunStatus",
    "BatchExportTestStep",
    "BatchExportTestStepResult",
    "BatchExportTestStepStatus",
]


class _OpenEnum(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


class BatchExportModel(_OpenEnum):
    """Which data a batch export reads. `HOGQL` exists on newer PostHog versions only."""

    EVENTS = "events"
    PERSONS = "persons"
    SESSIONS = "sessions"
    HOGQL = "hogql"


class BatchExportIncrementalMode(_OpenEnum):
    """
    How a batch export writes rows a later run exports again: `APPEND` (PostHog's
    default) adds them, `MERGE` replaces the rows with the same `primary_key` (which
    PostHog then requires for `hogql` exports).
    """

    APPEND = "APPEND"
    MERGE = "MERGE"


class BatchExportInterval(_OpenEnum):
    """
    How often a batch export runs.

    Anything but `HOUR`, `DAY` and `WEEK` needs the team's "high-frequency-batch-exports"
    flag: without it PostHog answers 403.
    """

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    EVERY_5_MINUTES = "every 5 minutes"
    EVERY_15_MINUTES = "every 15 minutes"


class BatchExportDestinationType(_OpenEnum):
    """
    Where a batch export writes. `S3` is the legacy type: PostHog still returns such
    exports, but refuses to create or update one ("The 'S3' destination type is
    deprecated…"); write `AWS_S3` or `S3_COMPATIBLE`, with an integration.
    """

    S3 = "S3"
    AWS_S3 = "AwsS3"
    S3_COMPATIBLE = "S3Compatible"
    SNOWFLAKE = "Snowflake"
    POSTGRES = "Postgres"
    REDSHIFT = "Redshift"
    BIGQUERY = "BigQuery"
    DATABRICKS = "Databricks"
    AZURE_BLOB = "AzureBlob"
    WORKFLOWS = "Workflows"
    HTTP = "HTTP"
    NOOP = "NoOp"
    FILE_DOWNLOAD = "FileDownload"


class BatchExportRunStatus(_OpenEnum):
    """The state of a run, and of a backfill (backfills never reach `FAILED_BILLING`)."""

    CANCELLED = "Cancelled"
    COMPLETED = "Completed"
    CONTINUED_AS_NEW = "ContinuedAsNew"
    FAILED = "Failed"
    FAILED_RETRYABLE = "FailedRetryable"
    FAILED_BILLING = "FailedBilling"
    TERMINATED = "Terminated"
    TIMED_OUT = "TimedOut"
    RUNNING = "Running"
    STARTING = "Starting"


class BatchExportLogLevel(_OpenEnum):
    """The level of a log entry; PostHog upper-cases it."""

    DEBUG = "DEBUG"
    LOG = "LOG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    #: A workflow's `logger.critical()`: PostHog writes Python's level name.
    CRITICAL = "CRITICAL"


class BatchExportTestStepStatus(_OpenEnum):
    """The outcome of one destination test step."""

    PASSED = "Passed"
    FAILED = "Failed"
    SKIPPED = "Skipped"


@attrs.frozen(kw_only=True)
class BatchExportDestination:
    """
    Where a batch export writes, and how.

    Build one to create or update an export. Secret config fields (passwords, keys,
    tokens: which ones depends on `type`) may be sent, but PostHog never returns them,
    so a destination read back from PostHog lacks them. AwsS3, S3Compatible, Snowflake,
    BigQuery, Databricks and AzureBlob exports (and new Postgres and Redshift ones) need
    `integration`: their credentials live in that PostHog integration, and AwsS3,
    S3Compatible, Snowflake, Databricks and AzureBlob configs refuse inline ones.

    Attributes:
        type: a `BatchExportDestinationType` member (or the string of a newer type).
        config: the destination's settings, e.g. `{"bucket_name": ..., "region": ...}`.
        integration: the id of the PostHog integration holding the credentials, or None.
        extra_fields: fields PostHog sent that this version does not know.

    Example:
        ```python
        destination = BatchExportDestination(
            type=BatchExportDestinationType.AWS_S3,
            config={"bucket_name": "events", "region": "eu-west-1", "prefix": "ph/"},
            integration=aws_integration_id,  # an `aws-s3` integration holding the keys
        )
        ```
    """

    type: BatchExportDestinationType | str
    #: Its repr shows `'<redacted>'` for the secret fields PostHog strips from answers.
    config: dict[str, Any] = attrs.field(factory=dict, repr=lambda config: _shown_config(config))
    integration: int | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()


#: The config fields PostHog treats as secrets, of every destination type (its
#: `secret_fields`): never in an answer, and never in a destination's repr (a traceback's
#: locals, a log line of the arguments).
SECRET_CONFIG_FIELDS: Final = frozenset(
    {
        "aws_access_key_id",
        "aws_secret_access_key",
        "client_email",
        "client_secret",
        "password",
        "private_key",
        "private_key_id",
        "private_key_passphrase",
        "token",
        "token_uri",
        "user",
    }
)


class RedactedBody(dict[str, Any]):
    """
    A request body that may hold a destination's secrets: a plain JSON object on the
    wire, and in its repr (a traceback's locals, a log line) each secret config field
    is `'<redacted>'`, as in a destination's.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return _shown_config(self)


def _shown_config(config: Any, depth: int = 0) -> str:
    """
    `repr(config)`, each secret field's value shown as `'<redacted>'`, at any depth: in
    any mapping (a `ChainMap` of defaults and secrets is sent as the dict it reads as),
    list or tuple. Deeper than any destination's config, nothing is shown (`…`).
    """
    if depth > 32:
        return "…"
    if isinstance(config, Mapping):
        items = []
        for key, value in config.items():
            if key in SECRET_CONFIG_FIELDS and value not in (None, ""):
                shown = "'<redacted>'"
            else:
                shown = _shown_config(value, depth + 1)
            items.append(f"{key!r}: {shown}")
        return "{" + ", ".join(items) + "}"
    if isinstance(config, (list, tuple)):
        inner = [_shown_config(value, depth + 1) for value in config]
        if isinstance(config, list):
            return "[" + ", ".join(inner) + "]"
        return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"
    return repr(config)


@attrs.frozen(kw_only=True)
class BatchExportRun:
    """
    One run of a batch export: the export of one data interval.

    Attributes:
        id: the run's UUID.
        status: a `BatchExportRunStatus` member (or the string of a newer status).
        records_completed: records exported so far, or None.
        records_failed: records a downstream step rejected, or None (newer PostHog).
        latest_error: the last error message, or None.
        data_interval_start: the start of the exported interval, or None.
        data_interval_end: the end of the exported interval.
        cursor: an opaque resume cursor, or None.
        created_at: when the run was created.
        finished_at: when it finished, or None while it runs.
        last_updated_at: when it last changed, or None.
        records_total_count: the records the run should export, or None.
        bytes_exported: bytes written so far, or None.
        batch_export: the id of the export, or None.
        backfill: the id of the backfill the run belongs to, or None.
        extra_fields: fields PostHog sent that this version does not know.
    """

    id: str
    status: BatchExportRunStatus | str
    records_completed: int | None = None
    records_failed: int | None = None
    latest_error: str | None = None
    data_interval_start: dt.datetime | None = None
    data_interval_end: dt.datetime | None = None
    cursor: str | None = None
    created_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    last_updated_at: dt.datetime | None = None
    records_total_count: int | None = None
    bytes_exported: int | None = None
    batch_export: str | None = None
    backfill: str | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()


@attrs.frozen(kw_only=True)
class BatchExport:
    """
    A batch export: a destination, a schedule and the data to send.

    Attributes:
        id: the export's UUID.
        team_id: the environment (team) it belongs to.
        name: its name.
        model: a `BatchExportModel` member (or a newer model's string), or None.
        destination: where it writes (secret config fields are never returned).
        interval: a `BatchExportInterval` member (or a newer interval's string).
        paused: whether it is paused.
        created_at: when it was created.
        last_updated_at: when it last changed, or None.
        last_paused_at: when it was last paused, or None.
        start_at: no run covers data before this, or None.
        end_at: no run covers data after this, or None.
        latest_runs: up to 10 runs, newest first.
        hogql_query: a `hogql` export's query, when PostHog returns it (an `events`
            export's custom query is in `schema`).
        hogql_modifiers: a `hogql` export's HogQL modifiers, or None.
        primary_key: a `hogql` export's primary key columns, or None.
        version_key: a `hogql` export's version key columns, or None.
        incremental_mode: a `BatchExportIncrementalMode` member (or a newer mode's
            string), or None from PostHog versions without it.
        schema: the custom schema PostHog derived from an `events` export's
            `hogql_query`, or None.
        filters: property filters restricting the exported events, or None.
        timezone: the IANA timezone of daily and weekly boundaries, or None.
        offset_day: for weekly exports, the weekday runs start on (0 = Sunday), else None.
        offset_hour: for daily and weekly exports, the hour runs start at, else None.
        extra_fields: fields PostHog sent that this version does not know.
    """

    id: str
    team_id: int | None = None
    name: str
    model: BatchExportModel | str | None = None
    destination: BatchExportDestination
    interval: BatchExportInterval | str
    paused: bool = False
    created_at: dt.datetime | None = None
    last_updated_at: dt.datetime | None = None
    last_paused_at: dt.datetime | None = None
    start_at: dt.datetime | None = None
    end_at: dt.datetime | None = None
    latest_runs: list[BatchExportRun] = attrs.field(factory=list)
    hogql_query: str | None = None
    hogql_modifiers: dict[str, Any] | None = None
    primary_key: list[str] | None = None
    version_key: list[str] | None = None
    incremental_mode: BatchExportIncrementalMode | str | None = None
    schema: dict[str, Any] | None = None
    filters: list[Any] | None = None
    timezone: str | None = None
    offset_day: int | None = None
    offset_hour: int | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()


@attrs.frozen(kw_only=True)
class BatchExportBackfillProgress:
    """
    How far a backfill got (PostHog computes it only for running and completed ones).

    Attributes:
        total_runs: the runs the backfill is expected to make, or None.
        finished_runs: the runs that finished, or None.
        progress: `finished_runs / total_runs`, rounded to one decimal, or None.
        extra_fields: fields PostHog sent that this version does not know.
    """

    total_runs: int | None = None
    finished_runs: int | None = None
    progress: float | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()


@attrs.frozen(kw_only=True)
class BatchExportBackfill:
    """
    A backfill: the runs that re-export a past time range.

    Attributes:
        id: the backfill's UUID.
        status: a `BatchExportRunStatus` member (or a newer status's string).
        progress: how far it got, or None.
        start_at: the start of the range, or None (from the beginning of the data).
        end_at: the end of the range, or None (up to now).
        created_at: when it was created.
        finished_at: when it finished, or None.
        last_updated_at: when it last changed, or None.
        team: the environment (team) id, or None.
        batch_export: the export's id, or None.
        total_records_count: the records to export (an estimate until it finishes), or None.
        adjusted_start_at: the start PostHog used when the data begins after `start_at`.
        extra_fields: fields PostHog sent that this version does not know.
    """

    id: str
    status: BatchExportRunStatus | str
    progress: BatchExportBackfillProgress | None = None
    start_at: dt.datetime | None = None
    end_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    last_updated_at: dt.datetime | None = None
    team: int | None = None
    batch_export: str | None = None
    total_records_count: int | None = None
    adjusted_start_at: dt.datetime | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()


@attrs.frozen(kw_only=True)
class BatchExportLogEntry:
    """
    One line of a batch export's log.

    Attributes:
        log_source_id: the export's id.
        instance_id: the run the line belongs to (empty for export-level lines).
        timestamp: when it was logged.
        level: a `BatchExportLogLevel` member (or another upper-cased level string).
        message: the text.
        extra_fields: fields PostHog sent that this version does not know.
    """

    log_source_id: str
    instance_id: str = ""
    timestamp: dt.datetime
    level: BatchExportLogLevel | str
    message: str
    extra_fields: Mapping[str, Any] = extra_fields_field()


@attrs.frozen(kw_only=True)
class BatchExportTestStepResult:
    """
    The outcome of a destination test step. A failure is data, not an exception.

    Attributes:
        status: `PASSED`, `FAILED` or `SKIPPED` (or a newer status's string).
        message: why it failed or was skipped; usually None when it passed.
        extra_fields: fields PostHog sent that this version does not know.
    """

    status: BatchExportTestStepStatus | str
    message: str | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()


@attrs.frozen(kw_only=True)
class BatchExportTestStep:
    """
    One step of a destination test ("Check S3 bucket exists", …).

    Attributes:
        name: a short name.
        description: what the step checks.
        result: the outcome after running it; None in the list `test()` returns.
        extra_fields: fields PostHog sent that this version does not know.

    Example:
        ```python
        step = await ph.batch_exports.run_test_step(export_id, step=0)
        if step.result is not None and step.result.status == BatchExportTestStepStatus.FAILED:
            print(step.name, "failed:", step.result.message)
        ```
    """

    name: str
    description: str = ""
    result: BatchExportTestStepResult | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()
