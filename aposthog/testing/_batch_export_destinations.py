"""
The destination types FakePostHog knows: their config fields (declared type, required),
their secret fields (never returned) and their test steps, after PostHog's
`DESTINATION_WORKFLOWS` input dataclasses, `BatchExportDestination.secret_fields` and
`destination_tests/`. How a config is merged, stripped and read back is in
`_batch_export_configs`.

The set is small and realistic: S3 (the legacy type, with inline credentials: PostHog
still returns such exports but refuses every write to them), AwsS3, S3Compatible,
Postgres, Redshift, BigQuery, Snowflake, Databricks, AzureBlob, HTTP and NoOp.
Credentials of the integration-backed types live in a PostHog integration, not in the
config: AwsS3, S3Compatible, Snowflake, Databricks and AzureBlob declare no credential
fields (nor `endpoint_url`, nor Snowflake's account, user and authentication type), so
inline ones are unknown fields; Postgres, Redshift and BigQuery still declare their
legacy inline fields, all optional. PostHog has tests for AwsS3, S3Compatible,
BigQuery, Snowflake, Databricks and AzureBlob; none for the legacy S3, Postgres,
Redshift, HTTP or NoOp.

AwsS3, S3Compatible and AzureBlob are object-storage types with a
`legacy_parquet_extension` flag (see `_batch_export_configs`).
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._converter import parse_datetime
from ._wire import server_error

__all__ = [
    "AZURE_BLOB_COMPRESSIONS",
    "BASE_CONFIG_FIELDS",
    "DESTINATIONS",
    "HTTP_URLS",
    "INTERVALS",
    "ISO_8601",
    "MODELS",
    "NOT_CONFIGURED",
    "S3_COMPRESSIONS",
    "DestinationSpec",
    "TestStepSpec",
    "from_isoformat",
    "server_error",
]

#: The ISO 8601 shapes PostHog parses: a date, or a date and time with an optional offset
#: (UTC as an upper-case `Z` only: neither `fromisoformat` nor Django's pattern reads `z`).
ISO_8601 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?)?"
)


def from_isoformat(text: str) -> dt.datetime:
    """
    `datetime.fromisoformat(text)` as PostHog's Python (3.13) answers, for `ISO_8601`'s
    shapes: naive without an offset, and a ValueError for any other text, a date or time
    that does not exist (Feb 30, 10:60) and hour 24, which 3.13 refuses (later Pythons
    read it as the next midnight). The fake's own Python may be older or newer, so it is
    asked only for the forms beyond `ISO_8601`'s.
    """
    match = ISO_8601.fullmatch(text)
    if match is None:
        # The rest of what 3.13 reads (the basic format, an hour alone, week dates), from
        # 3.11 on read the same by the fake's own Python; on 3.10 refused (the fake is
        # narrower than PostHog there).
        if sys.version_info >= (3, 11):
            try:
                return dt.datetime.fromisoformat(text)
            except ValueError:
                pass
        raise ValueError(f"Invalid isoformat string: {text!r}")
    if match["time"] is not None and match["time"].startswith("24"):
        raise ValueError("hour must be in 0..23")
    parsed = parse_datetime(text)  # aware: a naive time is read as UTC
    return parsed if match["tz"] is not None else parsed.replace(tzinfo=None)


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


#: A step's predicate: reads the test's configuration (the destination's config merged
#: with its integration's `config` and `sensitive_config`) and the integration, if any.
StepCheck = Callable[[Mapping[str, Any], "Mapping[str, Any] | None"], bool]


@attrs.frozen
class TestStepSpec:
    """
    A destination test step: its texts, when it is configured, when it skips itself.

    The step is configured when every key in `needs` is set and `configured` (if given)
    holds, as PostHog's `_is_configured`; it then answers `skipped` when `skips` holds
    (PostHog's `_run_step` returning SKIPPED), and passes otherwise.
    """

    name: str
    description: str
    needs: tuple[str, ...] = ()
    skipped: str | None = None  # the message when `skips` holds
    configured: StepCheck | None = None
    skips: StepCheck | None = None

    def is_configured(
        self, config: Mapping[str, Any], integration: Mapping[str, Any] | None
    ) -> bool:
        if any(config.get(key) is None for key in self.needs):
            return False
        return self.configured is None or self.configured(config, integration)

    def skips_itself(
        self, config: Mapping[str, Any], integration: Mapping[str, Any] | None
    ) -> bool:
        return self.skipped is not None and (self.skips is None or self.skips(config, integration))


@attrs.frozen
class DestinationSpec:
    """
    A destination type as the fake knows it.

    `fields` maps each config field to (declared type or None, required); None means
    PostHog's dataclass field is Optional, which its validation does not type-check.
    `optional_ints` names the Optional fields declared `int | None`: unchecked on a
    write, but read back as ints like the declared ones.
    """

    fields: Mapping[str, tuple[type | None, bool]]
    secrets: frozenset[str]
    steps: tuple[TestStepSpec, ...] | None = None  # None: PostHog has no test (404)
    optional_ints: frozenset[str] = frozenset()


_AWS_SECRETS = frozenset({"aws_access_key_id", "aws_secret_access_key"})
# `S3FamilyBaseInputs`: credentials come from the integration, so they are no fields.
_S3_FAMILY_FIELDS: dict[str, tuple[type | None, bool]] = {
    "bucket_name": (str, True),
    "region": (str, True),
    "prefix": (str, True),
    "compression": (None, False),
    "file_format": (str, False),
    "max_file_size_mb": (None, False),
    "legacy_parquet_extension": (bool, False),
}
_FILE_SIZE = frozenset({"max_file_size_mb"})
# The legacy `S3` type's fields, credentials inline, as PostHog served it before the split.
_LEGACY_S3_FIELDS: dict[str, tuple[type | None, bool]] = {
    **_S3_FAMILY_FIELDS,
    "aws_access_key_id": (None, False),
    "aws_secret_access_key": (None, False),
    "encryption": (None, False),
    "kms_key_id": (None, False),
    "endpoint_url": (None, False),
}
_BUCKET_NAME = "Check S3 bucket exists"
_BUCKET_DESCRIPTION = (
    "Ensure the configured S3 bucket exists and that we have the required permissions to access it."
)
# S3CompatibleDestinationTest gives its bucket step no role: access keys only.
_BUCKET_STEP = TestStepSpec(
    _BUCKET_NAME,
    _BUCKET_DESCRIPTION,
    needs=("bucket_name", "aws_access_key_id", "aws_secret_access_key"),
)


def _keys_or_role(config: Mapping[str, Any], integration: Mapping[str, Any] | None) -> bool:
    """`S3EnsureBucketTestStep._is_configured`: access keys, or a role ARN and an
    organization (the integration's team's: `AwsS3DestinationTest.configure`)."""
    keys = all(config.get(k) is not None for k in ("aws_access_key_id", "aws_secret_access_key"))
    role = config.get("aws_role_arn") is not None and integration is not None
    return keys or role


_AWS_BUCKET_STEP = TestStepSpec(
    _BUCKET_NAME, _BUCKET_DESCRIPTION, needs=("bucket_name",), configured=_keys_or_role
)
# `S3AssumeRoleTestStep`: always configured, skipped without a role ARN or a bucket.
_ROLE_STEP = TestStepSpec(
    "Ensure we can assume provided AWS role",
    "Ensure the configured AWS role ARN exists and that we have the required trust "
    "relationship to assume it.",
    skipped="No configured AWS role ARN, skipping test",
    skips=lambda config, _: config.get("aws_role_arn") is None or config.get("bucket_name") is None,
)
_BIGQUERY_CREDENTIALS = ("private_key", "private_key_id", "token_uri", "client_email")


def _has_key(integration: Mapping[str, Any] | None) -> bool:
    """`GoogleCloudServiceAccountIntegration.has_key`: a private key and its id, both set."""
    if integration is None:
        return False
    secrets = integration["sensitive_config"]
    return all(secrets.get(key) for key in ("private_key", "private_key_id"))


def _service_account(config: Mapping[str, Any], integration: Mapping[str, Any] | None) -> bool:
    """An integration, or a whole inline key (`BigQueryDestinationTest.service_account_info`,
    whose email is `service_account_email` or else `client_email`)."""
    email = config.get("service_account_email") or config.get("client_email")
    inline = email is not None and all(
        config.get(key) is not None for key in ("private_key", "private_key_id", "token_uri")
    )
    return integration is not None or inline


def _not_impersonating(_: Mapping[str, Any], integration: Mapping[str, Any] | None) -> bool:
    """The impersonation steps skip without an integration, or with a keyed one."""
    return integration is None or _has_key(integration)


_SNOWFLAKE_LOGIN = ("account", "user")  # the integration's config lends them


def _bigquery_step(what: str, needs: tuple[str, ...]) -> TestStepSpec:
    return TestStepSpec(
        f"Verify BigQuery {what}",
        f"Ensure the configured BigQuery {what} exists and that we have the required "
        "permissions to access it.",
        needs=needs,
        configured=_service_account,
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
    # The legacy type, with inline credentials: readable, but PostHog refuses its writes,
    # and `get_destination_test` no longer knows it (its test is a 404).
    "S3": DestinationSpec(_LEGACY_S3_FIELDS, _AWS_SECRETS),
    "AwsS3": DestinationSpec(
        {**_S3_FAMILY_FIELDS, "encryption": (None, False), "kms_key_id": (None, False)},
        _AWS_SECRETS,
        (_ROLE_STEP, _AWS_BUCKET_STEP),
        _FILE_SIZE,
    ),
    "S3Compatible": DestinationSpec(
        {**_S3_FAMILY_FIELDS, "use_virtual_style_addressing": (bool, False)},
        _AWS_SECRETS,
        (_BUCKET_STEP,),
        _FILE_SIZE,
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
        optional_ints=frozenset({"port"}),
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
                skips=_not_impersonating,
            ),
            TestStepSpec(
                "Verify BigQuery service account ownership",
                "Confirm that the current PostHog organization owns a BigQuery service account "
                "by ensuring its organization ID is set as part of the service account "
                "description.",
                needs=("project_id",),
                skipped="Using credentials without impersonation, ownership is assumed",
                skips=_not_impersonating,
            ),
            _bigquery_step("project", ("project_id",)),
            _bigquery_step("dataset", ("project_id", "dataset_id")),
            TestStepSpec(
                "Verify BigQuery table",
                "Ensure the configured BigQuery table already exists or that we have the "
                "required permissions to create it. Additionally, when creating a table, we "
                "will attempt to delete it.",
                needs=("project_id", "dataset_id", "table_id"),
                configured=_service_account,
            ),
        ),
    ),
    # The account, user, authentication type and credentials live in a snowflake
    # integration; exports from before it still hold them in config (secrets still apply).
    "Snowflake": DestinationSpec(
        {
            "database": (str, True),
            "warehouse": (str, True),
            "schema": (str, True),
            "table_name": (str, False),
            "role": (None, False),
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
        _FILE_SIZE,
    ),
    "HTTP": DestinationSpec({"url": (str, True), "token": (str, True)}, frozenset({"token"})),
    "NoOp": DestinationSpec({"arg": (str, False)}, frozenset()),
    # Workflows backfills a hog function (the team needs the "backfill-workflows-destination"
    # flag); FileDownload has no required input. PostHog has no test for either.
    "Workflows": DestinationSpec({"hog_function_id": (str, True)}, frozenset()),
    "FileDownload": DestinationSpec({}, frozenset()),
}
