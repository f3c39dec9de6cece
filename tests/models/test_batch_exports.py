"""Batch-export records: converter round trips, open enums, unknown fields, PostHog's bodies."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given

from aposthog._converter import converter, structure
from aposthog._errors import ResponseDecodeError
from aposthog.models import (
    BatchExport,
    BatchExportBackfill,
    BatchExportBackfillProgress,
    BatchExportDestination,
    BatchExportDestinationType,
    BatchExportIncrementalMode,
    BatchExportInterval,
    BatchExportLogEntry,
    BatchExportLogLevel,
    BatchExportModel,
    BatchExportRun,
    BatchExportRunStatus,
    BatchExportTestStep,
    BatchExportTestStepResult,
    BatchExportTestStepStatus,
)
from tests.strategies import records

RECORDS = (
    BatchExport,
    BatchExportBackfill,
    BatchExportBackfillProgress,
    BatchExportDestination,
    BatchExportLogEntry,
    BatchExportRun,
    BatchExportTestStep,
    BatchExportTestStepResult,
)


def _round_trip(record: Any) -> None:
    cls = type(record)
    data = converter.unstructure(record)
    # What PostHog sends is JSON: the unstructured form must survive json too.
    assert record == structure(json.loads(json.dumps(data)), cls)
    assert record == structure(data, cls)


@given(records(BatchExport))
def test_batch_export_round_trips(record: BatchExport) -> None:
    """unstructure → structure gives back the export, nested runs and destination included."""
    _round_trip(record)


@given(records(BatchExportDestination))
def test_destination_round_trips(record: BatchExportDestination) -> None:
    """A destination round-trips, unknown type strings included."""
    _round_trip(record)


@given(records(BatchExportRun))
def test_run_round_trips(record: BatchExportRun) -> None:
    """A run round-trips, unknown statuses included."""
    _round_trip(record)


@given(records(BatchExportBackfill))
def test_backfill_round_trips(record: BatchExportBackfill) -> None:
    """A backfill round-trips, with or without progress."""
    _round_trip(record)


@given(records(BatchExportBackfillProgress))
def test_backfill_progress_round_trips(record: BatchExportBackfillProgress) -> None:
    """Backfill progress round-trips."""
    _round_trip(record)


@given(records(BatchExportLogEntry))
def test_log_entry_round_trips(record: BatchExportLogEntry) -> None:
    """A log entry round-trips, levels this version does not know included."""
    _round_trip(record)


@given(records(BatchExportTestStep))
def test_test_step_round_trips(record: BatchExportTestStep) -> None:
    """A test step round-trips, with a result or without one."""
    _round_trip(record)


@given(records(BatchExportTestStepResult))
def test_test_step_result_round_trips(record: BatchExportTestStepResult) -> None:
    """A step result round-trips, unknown statuses included."""
    _round_trip(record)


@pytest.mark.parametrize("cls", RECORDS)
def test_every_record_is_frozen_and_keeps_unknown_fields(cls: type[Any]) -> None:
    """Each record is frozen and slotted, with an extra_fields mapping for newer fields."""
    assert "extra_fields" in {f.name for f in cls.__attrs_attrs__}
    assert "__slots__" in cls.__dict__
    assert cls.__doc__
    assert "Attributes:" in cls.__doc__


EXPORT_BODY: dict[str, Any] = {
    "id": "018f1c2e-0000-7000-8000-000000000001",
    "team_id": 2,
    "name": "Events to S3",
    "model": "events",
    "destination": {
        "type": "S3",
        "config": {"bucket_name": "b", "region": "eu-west-1", "prefix": "ph/"},
        "integration": None,
    },
    "interval": "week",
    "paused": False,
    "created_at": "2024-05-01T10:00:00.123456Z",
    "last_updated_at": "2024-05-01T10:00:00.123456Z",
    "last_paused_at": None,
    "start_at": None,
    "end_at": "2024-06-01T00:00:00+02:00",
    "latest_runs": [
        {
            "id": "r1",
            "status": "Completed",
            "records_completed": 10,
            "latest_error": None,
            "data_interval_start": "2024-04-24T00:00:00Z",
            "data_interval_end": "2024-05-01T00:00:00Z",
            "cursor": None,
            "created_at": "2024-05-01T00:05:00Z",
            "finished_at": "2024-05-01T00:06:00Z",
            "last_updated_at": "2024-05-01T00:06:00Z",
            "records_total_count": 10,
            "bytes_exported": 2048,
            "batch_export": "018f1c2e-0000-7000-8000-000000000001",
            "backfill": None,
        }
    ],
    "schema": None,
    "filters": [{"key": "$browser", "operator": "exact", "type": "event", "value": ["Firefox"]}],
    "timezone": "Europe/Berlin",
    "offset_day": 1,
    "offset_hour": 5,
}


def test_posthog_export_body_structures() -> None:
    """A body as BatchExportSerializer renders it becomes a typed, timezone-aware record."""
    export: BatchExport = structure(EXPORT_BODY, BatchExport)

    assert BatchExportInterval.WEEK is export.interval
    assert BatchExportModel.EVENTS is export.model
    assert BatchExportDestinationType.S3 is export.destination.type
    assert dt.datetime(2024, 5, 31, 22, tzinfo=dt.timezone.utc) == export.end_at
    assert export.created_at is not None
    assert export.created_at.tzinfo is not None
    assert BatchExportRunStatus.COMPLETED is export.latest_runs[0].status
    assert (export.offset_day, export.offset_hour, export.extra_fields) == (1, 5, {})


def test_newer_posthog_values_stay_strings_and_fields_stay_reachable() -> None:
    """Unknown enum values become plain strings and unknown keys land in extra_fields."""
    body = {
        **EXPORT_BODY,
        "model": "data_warehouse",
        "interval": "every 1 minutes",
        "destination": {"type": "Kafka", "config": {}, "integration": 7},
        "incremental_mode": "UPSERT",
        "export_mode": "full",
        "latest_runs": [{**EXPORT_BODY["latest_runs"][0], "status": "Paused"}],
    }
    export: BatchExport = structure(body, BatchExport)

    assert (export.model, export.interval) == ("data_warehouse", "every 1 minutes")
    assert not isinstance(export.interval, BatchExportInterval)
    assert (export.destination.type, export.destination.integration) == ("Kafka", 7)
    assert export.latest_runs[0].status == "Paused"
    assert export.incremental_mode == "UPSERT"
    assert not isinstance(export.incremental_mode, BatchExportIncrementalMode)
    assert export.extra_fields == {"export_mode": "full"}
    assert converter.unstructure(export)["export_mode"] == "full"


def test_enum_members_compare_and_print_as_their_values() -> None:
    """Open-enum members are strs: they equal and print as PostHog's values."""
    assert BatchExportInterval.EVERY_5_MINUTES == "every 5 minutes"  # type: ignore[comparison-overlap]
    assert str(BatchExportDestinationType.AWS_S3) == "AwsS3"
    assert f"{BatchExportRunStatus.FAILED_BILLING}" == "FailedBilling"
    assert [s.value for s in BatchExportTestStepStatus] == ["Passed", "Failed", "Skipped"]
    assert BatchExportLogLevel.ERROR == "ERROR"


@pytest.mark.parametrize(
    ("enum", "values"),
    [
        (BatchExportModel, ["events", "persons", "sessions", "hogql"]),
        (BatchExportIncrementalMode, ["APPEND", "MERGE"]),
        (BatchExportInterval, ["hour", "day", "week", "every 5 minutes", "every 15 minutes"]),
        (
            BatchExportDestinationType,
            [
                "S3",
                "AwsS3",
                "S3Compatible",
                "Snowflake",
                "Postgres",
                "Redshift",
                "BigQuery",
                "Databricks",
                "AzureBlob",
                "Workflows",
                "HTTP",
                "NoOp",
                "FileDownload",
            ],
        ),
        (
            BatchExportRunStatus,
            [
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
            ],
        ),
        (BatchExportLogLevel, ["DEBUG", "LOG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
        (BatchExportTestStepStatus, ["Passed", "Failed", "Skipped"]),
    ],
)
def test_every_value_posthog_sends_is_a_member(enum: Any, values: list[str]) -> None:
    """Each enum knows exactly PostHog's values (posthog-api.md), spelled as sent: a value
    misspelled here would decode as a plain string, not the member."""
    assert values == [member.value for member in enum]
    assert all(enum(value) is converter.structure(value, enum | str) for value in values)


def test_fields_posthog_leaves_out_take_their_documented_defaults() -> None:
    """An export without `paused`, an export-level log line without `instance_id` and a
    step without `description` decode with False and empty strings, not None."""
    minimal = {k: EXPORT_BODY[k] for k in ("id", "name", "destination", "interval")}
    export: BatchExport = structure(minimal, BatchExport)
    assert (False, [], None) == (export.paused, export.latest_runs, export.team_id)
    entry: BatchExportLogEntry = structure(
        {
            "log_source_id": "e1",
            "timestamp": "2024-05-01T10:00:00Z",
            "level": "INFO",
            "message": "m",
        },
        BatchExportLogEntry,
    )
    assert "" == entry.instance_id
    step: BatchExportTestStep = structure({"name": "Check"}, BatchExportTestStep)
    assert ("", None) == (step.description, step.result)


def test_test_step_bodies() -> None:
    """The step dicts of `test` (result null) and `run_test_step` (a failed result)."""
    listed: BatchExportTestStep = structure(
        {"name": "Check S3 bucket exists", "description": "d", "result": None}, BatchExportTestStep
    )
    assert listed.result is None

    ran: BatchExportTestStep = structure(
        {
            "name": "Check S3 bucket exists",
            "description": "d",
            "result": {"status": "Failed", "message": "Bucket 'b' does not exist"},
        },
        BatchExportTestStep,
    )
    assert ran.result is not None
    assert BatchExportTestStepStatus.FAILED is ran.result.status
    assert ran.result.message == "Bucket 'b' does not exist"


def test_log_entry_body() -> None:
    """A LogEntry row: upper-cased level, timezone-aware timestamp."""
    entry: BatchExportLogEntry = structure(
        {
            "log_source_id": "e1",
            "instance_id": "r1",
            "timestamp": "2024-05-01T10:00:00.5Z",
            "level": "WARNING",
            "message": "slow",
        },
        BatchExportLogEntry,
    )
    assert BatchExportLogLevel.WARNING is entry.level
    assert dt.datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=dt.timezone.utc) == entry.timestamp


def test_backfill_body_with_progress() -> None:
    """A backfill as the serializer renders it, progress and all."""
    backfill: BatchExportBackfill = structure(
        {
            "id": "b1",
            "progress": {"total_runs": 24, "finished_runs": 12, "progress": 0.5},
            "start_at": "2024-01-01T00:00:00Z",
            "end_at": "2024-01-02T00:00:00Z",
            "status": "Running",
            "created_at": "2024-05-01T00:00:00Z",
            "finished_at": None,
            "last_updated_at": "2024-05-01T00:00:00Z",
            "total_records_count": None,
            "adjusted_start_at": None,
            "team": 2,
            "batch_export": "e1",
        },
        BatchExportBackfill,
    )
    assert BatchExportBackfillProgress(total_runs=24, finished_runs=12, progress=0.5) == (
        backfill.progress
    )
    assert BatchExportRunStatus.RUNNING is backfill.status


def test_a_body_that_does_not_fit_names_the_field() -> None:
    """A wrong type deep inside the body is a ResponseDecodeError naming its JSON path."""
    body = {**EXPORT_BODY, "latest_runs": [{**EXPORT_BODY["latest_runs"][0], "created_at": 5}]}
    with pytest.raises(ResponseDecodeError) as info:
        structure(body, BatchExport)
    assert any("latest_runs" in path and "created_at" in path for path in info.value.paths)


def test_destination_is_built_by_users_for_requests() -> None:
    """Users build destinations themselves: config defaults to {}, integration to None."""
    destination = BatchExportDestination(type=BatchExportDestinationType.NOOP)
    assert (destination.config, destination.integration, destination.extra_fields) == ({}, None, {})


@pytest.mark.parametrize("bad", ["id", ["id", 1], [None], {"id": 1}])
def test_key_columns_are_a_json_array_of_strings(bad: Any) -> None:
    """Not cattrs' default, which reads a string as the list of its characters."""
    export: BatchExport = structure(
        {**EXPORT_BODY, "primary_key": ["id"], "version_key": None}, BatchExport
    )
    assert (["id"], None) == (export.primary_key, export.version_key)
    with pytest.raises(ResponseDecodeError, match="primary_key"):
        structure({**EXPORT_BODY, "primary_key": bad}, BatchExport)


def test_a_destinations_repr_shows_no_secret_of_its_config() -> None:
    """
    A destination built to create an export holds its secrets (PostHog never returns
    them): its repr, and that of an export holding it, reads `'<redacted>'` for each, at
    any depth, so a traceback's locals or a log line of the arguments shows none.
    """
    destination = BatchExportDestination(
        type="Redshift",
        config={
            "host": "warehouse.internal",
            "user": "loader",
            "password": "hunter2-SECRET",
            "nested": {"aws_secret_access_key": "AWS-SECRET", "region": "eu-west-1"},
            "token": None,
        },
    )
    shown = repr(destination)
    for secret in ("loader", "hunter2-SECRET", "AWS-SECRET"):
        assert secret not in shown
    assert "'password': '<redacted>'" in shown
    assert "'host': 'warehouse.internal'" in shown
    assert "'region': 'eu-west-1'" in shown
    assert "'token': None" in shown  # nothing to hide
    assert destination.config["password"] == "hunter2-SECRET"  # the value is kept


def test_a_destination_config_given_as_any_mapping_hides_its_secrets() -> None:
    """
    `create()`/`update()` take a destination whose `config` is any mapping (it is
    checked as a `Mapping` and sent as `dict(config)`), such as defaults merged with
    secrets in a `collections.ChainMap`, or a read-only `types.MappingProxyType`. The
    promise is the same as for a dict: the repr (a traceback's locals, a log line of the
    arguments) shows `'<redacted>'` for each secret field.
    """
    import collections
    import types

    from aposthog.resources._batch_export_args import destination_body

    defaults = {"host": "warehouse.internal", "database": "events"}
    secrets = {"user": "loader", "password": "hunter2-SECRET"}
    for config in (
        collections.ChainMap(secrets, defaults),
        types.MappingProxyType({**defaults, **secrets}),
    ):
        destination = BatchExportDestination(
            type="Redshift",
            config=config,  # type: ignore[arg-type]  # annotated dict; any mapping is taken
            integration=7,
        )
        # Accepted as a destination argument: what create() would send.
        assert "hunter2-SECRET" == destination_body(destination)["config"]["password"]
        shown = repr(destination)
        assert "hunter2-SECRET" not in shown, shown
        assert "loader" not in shown, shown


def test_a_destinations_repr_hides_secrets_nested_in_any_mapping() -> None:
    """
    `config` is a `dict[str, Any]`: a nested value may be any mapping, which `create()`
    checks as a `Mapping` and sends as a JSON object (a read-only view of settings,
    `MappingProxyType`; a `ChainMap` of defaults and overrides). The repr promises
    `'<redacted>'` for the secret fields at any depth, but recurses into dicts only.
    """
    import collections
    import types

    destination = BatchExportDestination(
        type="Redshift",
        config={
            "database": "dev",
            "copy_inputs": types.MappingProxyType(
                {"s3_bucket": "stage", "authorization": {"aws_secret_access_key": "AWS-1"}}
            ),
            "extra": collections.ChainMap({"password": "hunter2-SECRET"}),
        },
    )
    shown = repr(destination)
    for secret in ("AWS-1", "hunter2-SECRET"):
        assert secret not in shown
    assert "stage" in shown
