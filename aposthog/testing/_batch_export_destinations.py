"""
The destination types FakePostHog knows: their config fields (declared type, required),
their secret fields (never returned) and their test steps, after PostHog's
`DESTINATION_WORKFLOWS` input dataclasses, `BatchExportDestination.secret_fields` and
`destination_tests/`. Also the config merge and secret stripping PostHog applies.

The set is small and realistic: S3 (the legacy type, with inline credentials: PostHog
still returns such exports but refuses every write to them), AwsS3, S3Compatible,
Postgres, Redshift, BigQuery, Snowflake, Databricks, AzureBlob, HTTP and NoOp.
Credentials of the integration-backed types live in a PostHog integration, not in the
config: AwsS3 and S3Compatible declare no credential fields (nor `endpoint_url`), and
neither do Databricks and AzureBlob, so inline keys are unknown fields; Postgres,
Redshift and BigQuery still declare their legacy inline fields, all optional (Snowflake
its older ones too). PostHog has tests for the S3 family, BigQuery, Snowflake, Databricks
and AzureBlob; none for Postgres, Redshift, HTTP or NoOp.

AzureBlob is an object-storage type: a new one stores `legacy_parquet_extension: false`
(PostHog's `_set_default_parquet_extension`), and an update first pins an older export's
naming (`_pin_existing_parquet_extension`). The fake's AwsS3 and S3Compatible predate
that field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from ._wire import HTTPError, error

__all__ = [
    "AZURE_BLOB_COMPRESSIONS",
    "BASE_CONFIG_FIELDS",
    "DESTINATIONS",
    "HTTP_URLS",
    "INTERVALS",
    "ISO_8601",
    "MODELS",
    "NOT_CONFIGURED",
    "OBJECT_STORAGE_DESTINATIONS",
    "S3_COMPRESSIONS",
    "DestinationSpec",
    "TestStepSpec",
    "coerce_read_config",
    "deep_merge",
    "pin_existing_parquet_extension",
    "server_error",
    "set_default_parquet_extension",
    "strip_secrets",
    "uses_legacy_parquet_extension",
]

#: The ISO 8601 shapes PostHog parses: a date, or a date and time with an optional offset.
ISO_8601 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?)?"
)
INTERVALS = ("hour", "day", "week", "every 5 minutes", "every 15 minutes")
MODELS = ("events", "persons", "sessions", "hogql")
HTTP_URLS = ("https://us.i.posthog.com/batch/", "https://eu.i.posthog.com/batch/")
NOT_CONFIGURED = "The test step cannot run as it's not configured."
#: `S3_SUPPORTED_COMPRESSIONS`: the S3 family's file formats and their compressions.
S3_COMPRESSIONS: dict[str, list[str]] = {
    "Parquet": ["zstd", "lz4", "snappy", "gzip", "brotli"],
    "JSONLines": ["gzip", "brotli"],
}
#: `AZURE_BLOB_SUPPORTED_COMPRESSIONS`: the same table, kept apart as PostHog keeps it.
AZURE_BLOB_COMPRESSIONS: dict[str, list[str]] = {
    "Parquet": ["zstd", "lz4", "snappy", "gzip", "brotli"],
    "JSONLines": ["gzip", "brotli"],
}
#: The types with a `legacy_parquet_extension` field the fake models (PostHog's
#: `OBJECT_STORAGE_DESTINATIONS` has the S3 family too, whose fake fields predate it).
OBJECT_STORAGE_DESTINATIONS = frozenset({"AzureBlob"})
#: `BaseBatchExportInputs` fields: a destination config may carry them without being "unknown".
BASE_CONFIG_FIELDS = frozenset(
    {
        "batch_export_id",
        "team_id",
        "interval",
        "timezone",
        "data_interval_end",
        "exclude_events",
        "include_events",
        "is_backfill",
        "is_earliest_backfill",
        "backfill_details",
        "batch_export_model",
        "batch_export_schema",
        "integration_id",
    }
)


@attrs.frozen
class TestStepSpec:
    """A destination test step: its texts, the config keys it needs, a default skip."""

    name: str
    description: str
    needs: tuple[str, ...] = ()
    skipped: str | None = None  # the message when the step skips itself by default


@attrs.frozen
class DestinationSpec:
    """
    A destination type as the fake knows it.

    `fields` maps each config field to (declared type or None, required); None means
    PostHog's dataclass field is Optional, which its validation does not type-check.
    """

    fields: Mapping[str, tuple[type | None, bool]]
    secrets: frozenset[str]
    steps: tuple[TestStepSpec, ...] | None = None  # None: PostHog has no test (404)


_AWS_SECRETS = frozenset({"aws_access_key_id", "aws_secret_access_key"})
# `S3FamilyBaseInputs`: credentials come from the integration, so they are no fields.
_S3_FAMILY_FIELDS: dict[str, tuple[type | None, bool]] = {
    "bucket_name": (str, True),
    "region": (str, True),
    "prefix": (str, True),
    "compression": (None, False),
    "file_format": (str, False),
    "max_file_size_mb": (None, False),
}
# The legacy `S3` type's fields, credentials inline, as PostHog served it before the split.
_LEGACY_S3_FIELDS: dict[str, tuple[type | None, bool]] = {
    **_S3_FAMILY_FIELDS,
    "aws_access_key_id": (None, False),
    "aws_secret_access_key": (None, False),
    "encryption": (None, False),
    "kms_key_id": (None, False),
    "endpoint_url": (None, False),
}
_BUCKET_STEP = TestStepSpec(
    "Check S3 bucket exists",
    "Ensure the configured S3 bucket exists and that we have the required permissions "
    "to access it.",
    needs=("bucket_name", "aws_access_key_id", "aws_secret_access_key"),
)
_ROLE_STEP = TestStepSpec(
    "Ensure we can assume provided AWS role",
    "Ensure the configured AWS role ARN exists and that we have the required trust "
    "relationship to assume it.",
    skipped="No configured AWS role ARN, skipping test",
)
_BIGQUERY_CREDENTIALS = ("private_key", "private_key_id", "token_uri", "client_email")
_SNOWFLAKE_LOGIN = ("account", "user")


def _bigquery_step(name: str, what: str, needs: tuple[str, ...]) -> TestStepSpec:
    return TestStepSpec(
        f"Verify BigQuery {name}",
        f"Ensure the configured BigQuery {what} exists and that we have the required "
        "permissions to access it.",
        needs=needs,
    )


def _snowflake_step(what: str, needs: tuple[str, ...]) -> TestStepSpec:
    return TestStepSpec(
        f"Verify Snowflake {what}",
        f"Verify the configured Snowflake {what} exists and we have the necessary "
        "permissions to use it.",
        needs=_SNOWFLAKE_LOGIN + needs,
    )


_DATABRICKS_LOGIN = ("server_hostname", "http_path", "client_id", "client_secret")


def _databricks_step(what: str, needs: tuple[str, ...]) -> TestStepSpec:
    return TestStepSpec(
        f"Verify Databricks {what}",
        f"Verify the configured Databricks {what} exists and we have the necessary "
        "permissions to use it.",
        needs=_DATABRICKS_LOGIN + needs,
    )


DESTINATIONS: dict[str, DestinationSpec] = {
    # The legacy type, with inline credentials: readable, but PostHog refuses its writes.
    "S3": DestinationSpec(_LEGACY_S3_FIELDS, _AWS_SECRETS, (_BUCKET_STEP,)),
    "AwsS3": DestinationSpec(
        {**_S3_FAMILY_FIELDS, "encryption": (None, False), "kms_key_id": (None, False)},
        _AWS_SECRETS,
        (_ROLE_STEP, _BUCKET_STEP),
    ),
    "S3Compatible": DestinationSpec(
        {**_S3_FAMILY_FIELDS, "use_virtual_style_addressing": (bool, False)},
        _AWS_SECRETS,
        (_BUCKET_STEP,),
    ),
    # The connection's credentials (and host) may come from a postgresql integration.
    "Postgres": DestinationSpec(
        {
            "database": (str, True),
            "schema": (str, False),
            "table_name": (str, False),
            "user": (None, False),
            "host": (None, False),
            "port": (None, False),
            "password": (None, False),
            "has_self_signed_cert": (bool, False),
        },
        frozenset({"user", "password"}),
    ),
    # The service account's credentials come from a google-cloud-service-account integration.
    "BigQuery": DestinationSpec(
        {
            "dataset_id": (str, True),
            "table_id": (str, False),
            "project_id": (None, False),
            "private_key": (None, False),
            "private_key_id": (None, False),
            "token_uri": (None, False),
            "client_email": (None, False),
            "use_json_type": (bool, False),
        },
        frozenset(_BIGQUERY_CREDENTIALS),
        (
            TestStepSpec(
                "Impersonate BigQuery service account",
                "Confirm we can impersonate a BigQuery service account.",
                needs=("project_id",),
                skipped="Using credentials without impersonation, skipping test",
            ),
            TestStepSpec(
                "Verify BigQuery service account ownership",
                "Confirm that the current PostHog organization owns a BigQuery service account "
                "by ensuring its organization ID is set as part of the service account "
                "description.",
                needs=("project_id",),
                skipped="Using credentials without impersonation, ownership is assumed",
            ),
            _bigquery_step("project", "project", ("project_id", *_BIGQUERY_CREDENTIALS)),
            _bigquery_step(
                "dataset", "dataset", ("project_id", "dataset_id", *_BIGQUERY_CREDENTIALS)
            ),
            _bigquery_step(
                "table", "table", ("project_id", "dataset_id", "table_id", *_BIGQUERY_CREDENTIALS)
            ),
        ),
    ),
    # The account, user and credentials come from a snowflake integration.
    "Snowflake": DestinationSpec(
        {
            "database": (str, True),
            "warehouse": (str, True),
            "schema": (str, True),
            "table_name": (str, False),
            "role": (None, False),
            "account": (None, False),
            "user": (None, False),
            "password": (None, False),
            "private_key": (None, False),
            "private_key_passphrase": (None, False),
            "authentication_type": (str, False),
        },
        frozenset({"user", "password", "private_key", "private_key_passphrase"}),
        (
            TestStepSpec(
                "Establish connection to Snowflake",
                "Attempt to establish a Snowflake connection with the provided configuration "
                "values.",
                needs=_SNOWFLAKE_LOGIN,
            ),
            _snowflake_step("warehouse", ("warehouse",)),
            _snowflake_step("database", ("warehouse", "database")),
            _snowflake_step("schema", ("warehouse", "database", "schema")),
        ),
    ),
    # `RedshiftBatchExportInputs`: user, password and host may come from an aws-redshift
    # integration; `mode` (a Literal) and `copy_inputs` (a dataclass) are not type-checked.
    "Redshift": DestinationSpec(
        {
            "database": (str, True),
            "user": (None, False),
            "password": (None, False),
            "host": (None, False),
            "schema": (str, False),
            "table_name": (str, False),
            "port": (int, False),
            "properties_data_type": (str, False),
            "mode": (None, False),
            "copy_inputs": (None, False),
        },
        frozenset({"user", "password", "aws_access_key_id", "aws_secret_access_key"}),
    ),
    # The server hostname and the service principal's credentials live in a databricks
    # integration: each step needs them, then one config field more than the last.
    "Databricks": DestinationSpec(
        {
            "http_path": (str, True),
            "catalog": (str, True),
            "schema": (str, True),
            "table_name": (str, True),
            "use_variant_type": (bool, False),
            "use_automatic_schema_evolution": (bool, False),
        },
        frozenset(),
        (
            TestStepSpec(
                "Establish connection to Databricks",
                "Attempt to establish a Databricks connection with the provided configuration "
                "values.",
                needs=_DATABRICKS_LOGIN,
            ),
            _databricks_step("catalog", ("catalog",)),
            _databricks_step("schema", ("catalog", "schema")),
            TestStepSpec(
                "Verify Databricks table",
                "Ensure the configured Databricks table already exists or that we have the "
                "required permissions to create it. Additionally, when creating this test "
                "table, we will attempt to delete it.",
                needs=(*_DATABRICKS_LOGIN, "catalog", "schema", "table_name"),
            ),
            TestStepSpec(
                "Verify permissions to create a Databricks volume",
                "Ensure we have the required permissions to create a Databricks volume. We "
                "need to create temporary volumes as part of the batch export process.",
                needs=(*_DATABRICKS_LOGIN, "catalog", "schema", "table_name"),
            ),
        ),
    ),
    # The connection string lives in an azure-blob integration's sensitive config.
    "AzureBlob": DestinationSpec(
        {
            "container_name": (str, True),
            "prefix": (str, False),
            "compression": (None, False),
            "file_format": (str, False),
            "max_file_size_mb": (None, False),
            "legacy_parquet_extension": (bool, False),
        },
        frozenset(),
        (
            TestStepSpec(
                "Check Azure Blob container exists",
                "Ensure the configured container exists and that we have the required "
                "permissions to access it.",
                needs=("connection_string", "container_name"),
            ),
        ),
    ),
    "HTTP": DestinationSpec({"url": (str, True), "token": (str, True)}, frozenset({"token"})),
    "NoOp": DestinationSpec({"arg": (str, False)}, frozenset()),
}


def server_error() -> HTTPError:
    """What drf-exceptions-hog answers for an uncaught exception in a view."""
    return HTTPError(error(500, "server_error", "error", "A server error occurred."))


def deep_merge(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """PostHog's `recursive_dict_merge`: nested objects merge only when both sides are objects."""
    merged = {**old, **new}
    for key, value in merged.items():
        if isinstance(value, dict):
            before, after = old.get(key), new.get(key)
            merged[key] = deep_merge(
                before if isinstance(before, dict) else {}, after if isinstance(after, dict) else {}
            )
    return merged


def strip_secrets(config: Mapping[str, Any], secrets: frozenset[str]) -> dict[str, Any]:
    """The config as PostHog returns it: secret keys removed at every depth."""
    return {
        key: strip_secrets(value, secrets) if isinstance(value, dict) else value
        for key, value in config.items()
        if key not in secrets
    }


def _writes_compressed_parquet(config: Mapping[str, Any]) -> bool:
    return config.get("file_format") == "Parquet" and config.get("compression") is not None


def uses_legacy_parquet_extension(config: Mapping[str, Any]) -> bool:
    """Whether a stored config already writes the codec into its Parquet file names."""
    stored = config.get("legacy_parquet_extension")
    if isinstance(stored, str):  # PostHog's encrypted config reads scalars back as text
        stored = stored.lower() == "true"
    if stored is None:  # an export from before the field: what its files look like
        return _writes_compressed_parquet(config)
    return bool(stored)


def set_default_parquet_extension(kind: str, config: dict[str, Any]) -> None:
    """A new object-storage export writes the standard `.parquet` names."""
    if kind in OBJECT_STORAGE_DESTINATIONS:
        config.setdefault("legacy_parquet_extension", False)


def pin_existing_parquet_extension(kind: str, stored: dict[str, Any]) -> None:
    """Before an update merges in: record the names an older export already writes."""
    if kind in OBJECT_STORAGE_DESTINATIONS:
        stored.setdefault("legacy_parquet_extension", _writes_compressed_parquet(stored))


def coerce_read_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """`coerce_config_to_declared_types`' Redshift rule: COPY integration ids read as ints."""
    copy_inputs = config.get("copy_inputs")
    if kind != "Redshift" or not isinstance(copy_inputs, dict):
        return config
    copy_inputs = dict(copy_inputs)
    for key in ("authorization", "bucket_credentials"):
        value = copy_inputs.get(key)
        if isinstance(value, str) and value.isdigit():
            copy_inputs[key] = int(value)
    return {**config, "copy_inputs": copy_inputs}
