"""FakePostHog's Redshift, Databricks and AzureBlob destinations, checked as PostHog checks them."""

from __future__ import annotations

from typing import Any

import pytest

import aposthog
from aposthog._http import Route
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

# The integrations the autouse fixture seeds, by id.
REDSHIFT, AWS_REDSHIFT, DATABRICKS, AZURE, AWS_S3 = 1, 2, 3, 4, 5
REDSHIFT_CONFIG = {"database": "analytics", "schema": "public", "table_name": "events"}
DATABRICKS_CONFIG = {"http_path": "/sql/1.0/w/1", "catalog": "c", "schema": "s", "table_name": "t"}
AZURE_CONFIG = {"container_name": "exports"}
KEYS = {"aws_access_key_id": "k", "aws_secret_access_key": "s"}
INVALID = "Invalid host. Enter a hostname or IP address without credentials, scheme, or path."
UNREACHABLE = (
    "Could not reach this host. Check that the hostname is correct and reachable from the internet."
)


@pytest.fixture(autouse=True)
def integrations(fake: FakePostHog) -> None:
    fake.add_integration(
        "aws-redshift",
        config={"host": "redshift.example.com", "user": "posthog"},
        sensitive_config={"password": "hunter2"},
    )
    fake.add_integration("aws-redshift", config={"aws_role_arn": "arn:aws:iam::1:role/r"})
    fake.add_integration(
        "databricks",
        config={"server_hostname": "dbc.example.com"},
        sensitive_config={"client_id": "id", "client_secret": "secret"},
    )
    fake.add_integration("azure-blob", sensitive_config={"connection_string": "AccountName=a"})
    fake.add_integration("aws-s3", sensitive_config=KEYS)
    assert sorted(fake.integrations) == [1, 2, 3, 4, 5]


async def raw(ph: aposthog.Client, method: str, *parts: str, **kwargs: Any) -> Any:
    route = Route(method, "/".join(("batch_exports", *parts)), repeatable=False)
    return await ph._api.request_json(route, **kwargs)


async def create(ph: aposthog.Client, destination: dict[str, Any]) -> dict[str, Any]:
    body = {"name": "x", "destination": destination, "interval": "hour"}
    result: dict[str, Any] = await raw(ph, "POST", json=body)
    return result


async def refused(ph: aposthog.Client, method: str, *parts: str, **kwargs: Any) -> tuple[Any, ...]:
    """(code, attr, detail) of the 400 a request meets."""
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, method, *parts, **kwargs)
    return (info.value.code, info.value.attr, info.value.detail)


async def create_refused(ph: aposthog.Client, destination: dict[str, Any]) -> tuple[Any, ...]:
    body = {"name": "x", "destination": destination, "interval": "hour"}
    return await refused(ph, "POST", json=body)


def destination_error(detail: str) -> tuple[str, str, str]:
    return ("invalid_input", "destination", detail)


def config_error(detail: str) -> tuple[str, str, str]:
    return ("invalid_input", "destination__non_field_errors", detail)


# ---------------------------------------------------------------------------------- integrations


@pytest.mark.parametrize(
    ("kind", "config", "label"),
    [
        ("Redshift", {**REDSHIFT_CONFIG, "host": "redshift.example.com"}, "Redshift"),
        ("Databricks", DATABRICKS_CONFIG, "Databricks"),
        ("AzureBlob", AZURE_CONFIG, "Azure Blob"),
    ],
)
async def test_new_exports_need_an_integration(
    ph: aposthog.Client, kind: str, config: dict[str, Any], label: str
) -> None:
    """Without an integration, or with a null one, PostHog refuses to create these exports."""
    for destination in (
        {"type": kind, "config": config},
        {"type": kind, "config": config, "integration": None},
    ):
        assert await create_refused(ph, destination) == destination_error(
            f"Integration is required for {label} batch exports"
        )


@pytest.mark.parametrize(
    ("kind", "config", "detail"),
    [
        ("Redshift", REDSHIFT_CONFIG, "Integration is not a Redshift integration."),
        ("Databricks", DATABRICKS_CONFIG, "Integration is not a Databricks integration."),
        ("AzureBlob", AZURE_CONFIG, "Integration is not an Azure Blob integration."),
    ],
)
async def test_the_integration_must_be_of_the_destinations_kind(
    ph: aposthog.Client, kind: str, config: dict[str, Any], detail: str
) -> None:
    """An aws-s3 integration is not a Redshift, Databricks or Azure Blob one."""
    destination = {"type": kind, "config": config, "integration": AWS_S3}
    assert await create_refused(ph, destination) == destination_error(detail)


async def test_the_integration_must_hold_the_credentials(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """DatabricksIntegration() and AzureBlobIntegration() refuse a half-built integration."""
    for config, sensitive, missing in (
        ({}, {"client_id": "i", "client_secret": "s"}, "server_hostname"),
        ({"server_hostname": "h"}, {"client_secret": "s"}, "client_id"),
        ({"server_hostname": "h"}, {"client_id": "i"}, "client_secret"),
    ):
        pk = fake.add_integration("databricks", config=config, sensitive_config=sensitive)["id"]
        destination = {"type": "Databricks", "config": DATABRICKS_CONFIG, "integration": pk}
        assert await create_refused(ph, destination) == destination_error(
            f"Databricks integration is not valid: '{missing}' missing"
        )
    pk = fake.add_integration("azure-blob", config={"connection_string": "not a secret"})["id"]
    destination = {"type": "AzureBlob", "config": AZURE_CONFIG, "integration_id": pk}
    assert await create_refused(ph, destination) == destination_error(
        "Azure Blob integration is missing required field: 'connection_string'"
    )


async def test_updates_need_the_integration_again_or_keep_it(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    Databricks and AzureBlob updates must send the integration again; a Redshift one that
    leaves it out would drop it (refused), while an export made before integrations may.
    """
    databricks = await create(
        ph, {"type": "Databricks", "config": DATABRICKS_CONFIG, "integration": DATABRICKS}
    )
    patch: dict[str, Any] = {"destination": {"type": "Databricks", "config": {"catalog": "c2"}}}
    assert await refused(ph, "PATCH", databricks["id"], json=patch) == destination_error(
        "Integration is required for Databricks batch exports"
    )
    patch["destination"]["integration"] = DATABRICKS
    patched = await raw(ph, "PATCH", databricks["id"], json=patch)
    assert patched["destination"]["config"] == {**DATABRICKS_CONFIG, "catalog": "c2"}

    azure = await create(ph, {"type": "AzureBlob", "config": AZURE_CONFIG, "integration": AZURE})
    patch = {"destination": {"type": "AzureBlob", "config": {"prefix": "p/"}}}
    assert await refused(ph, "PATCH", azure["id"], json=patch) == destination_error(
        "Integration is required for Azure Blob batch exports"
    )

    redshift = await create(
        ph, {"type": "Redshift", "config": REDSHIFT_CONFIG, "integration": REDSHIFT}
    )
    patch = {"destination": {"type": "Redshift", "config": {"schema": "s2"}}}
    assert await refused(ph, "PATCH", redshift["id"], json=patch) == destination_error(
        "Cannot remove the integration from a Redshift batch export that uses one. "
        "Re-send its `integration` to keep it (or a different one to swap)."
    )
    patch["destination"]["integration"] = REDSHIFT
    assert (await raw(ph, "PATCH", redshift["id"], json=patch))["destination"]["config"][
        "schema"
    ] == "s2"

    # An export from before integrations keeps its inline credentials when edited.
    stored = fake.batch_exports[redshift["id"]]["destination"]
    stored["integration"] = None
    stored["config"].update(host="redshift.example.com", user="u", password="p")
    patched = await raw(
        ph,
        "PATCH",
        redshift["id"],
        json={"destination": {"type": "Redshift", "config": {"table_name": "t2"}}},
    )
    assert patched["destination"]["integration"] is None
    assert patched["destination"]["config"]["table_name"] == "t2"


# ---------------------------------------------------------------------------------- config


async def test_config_fields_follow_the_input_dataclasses(ph: aposthog.Client) -> None:
    """Required fields, unknown ones (inline credentials included), declared types."""
    databricks = {"type": "Databricks", "integration": DATABRICKS}
    for config, detail in (
        (
            {k: v for k, v in DATABRICKS_CONFIG.items() if k != "http_path"},
            "Configuration missing required field: 'http_path'",
        ),
        (
            {k: v for k, v in DATABRICKS_CONFIG.items() if k != "table_name"},
            "Configuration missing required field: 'table_name'",
        ),
        (
            {**DATABRICKS_CONFIG, "client_secret": "s", "server_hostname": "h"},
            "Configuration has unknown field/s: 'client_secret', 'server_hostname'",
        ),
        (
            {**DATABRICKS_CONFIG, "use_variant_type": "yes"},
            "Configuration has invalid type: got 'str', expected 'bool'",
        ),
        (
            {**DATABRICKS_CONFIG, "catalog": 3},
            "Configuration has invalid type: got 'int', expected 'str'",
        ),
    ):
        assert await create_refused(ph, {**databricks, "config": config}) == config_error(detail)
    for config, detail in (
        ({}, "Configuration missing required field: 'container_name'"),
        (
            {**AZURE_CONFIG, "connection_string": "c"},
            "Configuration has unknown field/s: 'connection_string'",
        ),
    ):
        destination = {"type": "AzureBlob", "config": config, "integration": AZURE}
        assert await create_refused(ph, destination) == config_error(detail)
    for config, detail in (
        ({"schema": "s"}, "Configuration missing required field: 'database'"),
        (
            {**REDSHIFT_CONFIG, "port": "x"},
            "Configuration has invalid type: got 'str', expected 'int'",
        ),
        ({**REDSHIFT_CONFIG, "region": "r"}, "Configuration has unknown field/s: 'region'"),
    ):
        destination = {"type": "Redshift", "config": config, "integration": REDSHIFT}
        assert await create_refused(ph, destination) == config_error(detail)

    created = await create(
        ph,
        {
            "type": "Databricks",
            "config": {**DATABRICKS_CONFIG, "use_variant_type": "false"},
            "integration": DATABRICKS,
        },
    )
    assert created["destination"]["config"]["use_variant_type"] is False
    created = await create(
        ph,
        {
            "type": "Redshift",
            "config": {**REDSHIFT_CONFIG, "port": "5439", "mode": "anything"},
            "integration": REDSHIFT,
        },
    )
    assert created["destination"]["config"]["port"] == 5439


async def test_secrets_are_stripped(ph: aposthog.Client) -> None:
    """Redshift's user, password and AWS keys (nested in copy_inputs too) are never returned."""
    copy_inputs = {
        "s3_bucket": "b",
        "region_name": "r",
        "s3_key_prefix": "p",
        "authorization": KEYS,
        "bucket_credentials": KEYS,
    }
    created = await create(
        ph,
        {
            "type": "Redshift",
            "config": {
                **REDSHIFT_CONFIG,
                "user": "u",
                "password": "p",
                "mode": "COPY",
                "copy_inputs": copy_inputs,
            },
            "integration": REDSHIFT,
        },
    )
    assert created["destination"]["config"] == {
        **REDSHIFT_CONFIG,
        "mode": "COPY",
        "copy_inputs": {
            "s3_bucket": "b",
            "region_name": "r",
            "s3_key_prefix": "p",
            "authorization": {},
            "bucket_credentials": {},
        },
    }
    databricks = await create(
        ph, {"type": "Databricks", "config": DATABRICKS_CONFIG, "integration": DATABRICKS}
    )
    assert databricks["destination"]["config"] == DATABRICKS_CONFIG
    assert databricks["destination"]["integration"] == DATABRICKS
    export = await ph.batch_exports.get(databricks["id"])
    assert export.destination.type == aposthog.BatchExportDestinationType.DATABRICKS


async def test_azure_blob_formats_and_parquet_names(fake: FakePostHog, ph: aposthog.Client) -> None:
    """Format and compression as PostHog allows them; `legacy_parquet_extension` one-way."""
    base = {"type": "AzureBlob", "integration": AZURE}
    for config, detail in (
        (
            {**AZURE_CONFIG, "file_format": "CSV"},
            "File format CSV is not supported. Supported file formats are ['Parquet', 'JSONLines']",
        ),
        (
            {**AZURE_CONFIG, "compression": "zstd"},
            "Compression zstd is not supported for file format JSONLines. "
            "Supported compressions are ['gzip', 'brotli']",
        ),
        (
            {**AZURE_CONFIG, "legacy_parquet_extension": "true"},
            "'legacy_parquet_extension' can only stay on for an export that already writes the "
            "compression codec into its Parquet file names. It cannot be turned on for a new "
            "export, or turned back on once an export moved to the standard '.parquet' "
            "extension.",
        ),
    ):
        assert await create_refused(ph, {**base, "config": config}) == destination_error(detail)

    parquet = {**AZURE_CONFIG, "file_format": "Parquet", "compression": "zstd"}
    created = await create(ph, {**base, "config": parquet})
    assert created["destination"]["config"] == {**parquet, "legacy_parquet_extension": False}
    on = {"destination": {**base, "config": {"legacy_parquet_extension": True}}}
    assert (await refused(ph, "PATCH", created["id"], json=on))[2].startswith(
        "'legacy_parquet_extension' can only stay on"
    )

    # An export from before the setting, writing compressed Parquet, keeps its names.
    stored = fake.batch_exports[created["id"]]["destination"]["config"]
    del stored["legacy_parquet_extension"]
    patched = await raw(ph, "PATCH", created["id"], json=on)
    assert patched["destination"]["config"]["legacy_parquet_extension"] is True
    # One on JSON Lines is pinned to the new names before an update moves it to Parquet.
    fake.batch_exports[created["id"]]["destination"]["config"] = dict(AZURE_CONFIG)
    to_parquet = {
        "destination": {**base, "config": {"file_format": "Parquet", "compression": "lz4"}}
    }
    patched = await raw(ph, "PATCH", created["id"], json=to_parquet)
    assert patched["destination"]["config"]["legacy_parquet_extension"] is False


# ---------------------------------------------------------------------------------- redshift


async def test_redshift_needs_a_host(ph: aposthog.Client) -> None:
    """An AWS-flavour integration stores no host: the config must name the endpoint."""
    destination = {"type": "Redshift", "config": REDSHIFT_CONFIG, "integration": AWS_REDSHIFT}
    assert await create_refused(ph, destination) == destination_error(
        "A 'host' is required when using an AWS Redshift integration: "
        "set it to the cluster or workgroup endpoint."
    )
    destination["config"] = {
        **REDSHIFT_CONFIG,
        "host": "wg.123.us-east-1.redshift-serverless.amazonaws.com",
    }
    assert (await create(ph, destination))["destination"]["integration"] == AWS_REDSHIFT


async def test_redshift_port_reads_back_as_an_int(fake: FakePostHog, ph: aposthog.Client) -> None:
    """Redshift declares `port: int`: stored as text, it reads back as the int it is."""
    destination = {
        "type": "Redshift",
        "config": {**REDSHIFT_CONFIG, "host": "redshift.example.com"},
        "integration": REDSHIFT,
    }
    created = await create(ph, destination)
    fake.batch_exports[created["id"]]["destination"]["config"]["port"] = "5439"
    assert (await raw(ph, "GET", created["id"]))["destination"]["config"]["port"] == 5439


@pytest.mark.parametrize(
    ("host", "detail"),
    [
        (
            "postgres://u:p@db.example.com/x",
            INVALID,
        ),
        (
            "db.example.com:5439",
            INVALID,
        ),
        (" ", "Invalid host. Enter a hostname or IP address without credentials, scheme, or path."),
        (".".join(["a" * 63] * 4), INVALID),  # 255 characters: longer than a host name may be
        ("localhost.", UNREACHABLE),
        ("100.64.0.1", UNREACHABLE),  # carrier-grade NAT
        ("224.0.0.1", UNREACHABLE),  # multicast
        (
            "localhost",
            UNREACHABLE,
        ),
        (
            "10.0.0.1",
            UNREACHABLE,
        ),
        (
            "169.254.169.254",
            UNREACHABLE,
        ),
        (
            "warehouse.corp",
            UNREACHABLE,
        ),
    ],
)
async def test_redshift_hosts_pass_posthogs_ssrf_guard(
    ph: aposthog.Client, host: str, detail: str
) -> None:
    """The config's host, or the integration's when it has one, must be a public host."""
    destination = {
        "type": "Redshift",
        "config": {**REDSHIFT_CONFIG, "host": host},
        "integration": AWS_REDSHIFT,
    }
    assert await create_refused(ph, destination) == destination_error(detail)


async def test_a_public_ipv4_address_in_ipv6_form_passes(ph: aposthog.Client) -> None:
    """An IPv4-mapped IPv6 address is judged by the IPv4 address it maps."""
    destination = {
        "type": "Redshift",
        "config": {**REDSHIFT_CONFIG, "host": "::ffff:8.8.8.8"},
        "integration": AWS_REDSHIFT,
    }
    assert (await create(ph, destination))["destination"]["config"]["host"] == "::ffff:8.8.8.8"


async def test_redshift_integration_host_is_the_one_checked(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A host in the integration wins over the config's, for the SSRF guard too."""
    pk = fake.add_integration("aws-redshift", config={"host": "192.168.1.1"})["id"]
    destination = {
        "type": "Redshift",
        "config": {**REDSHIFT_CONFIG, "host": "redshift.example.com"},
        "integration": pk,
    }
    assert (await create_refused(ph, destination))[2].startswith("Could not reach this host.")
    destination["integration"] = REDSHIFT
    destination["config"] = {**REDSHIFT_CONFIG, "host": "10.0.0.1"}
    assert (await create(ph, destination))["destination"]["config"]["host"] == "10.0.0.1"


async def test_postgres_hosts_pass_the_same_ssrf_guard(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    PostHog guards a Postgres host as a Redshift one: the sent postgresql integration's
    host first, else the config's (an export from before integrations keeps its own).
    """
    config = {"database": "analytics"}
    for host, detail in (
        ("169.254.169.254", UNREACHABLE),
        ("10.0.0.1", UNREACHABLE),
        ("db.internal", UNREACHABLE),
        ("postgres://db.example.com:5432", INVALID),
        ("", INVALID),  # an empty host is still checked, and is no host
    ):
        pk = fake.add_integration("postgresql", config={"host": host, "port": 5432})["id"]
        destination = {"type": "Postgres", "config": config, "integration": pk}
        assert await create_refused(ph, destination) == destination_error(detail)

    pk = fake.add_integration("postgresql", config={"host": "db.example.com"})["id"]
    destination = {"type": "Postgres", "config": config, "integration": pk}
    created = await create(ph, destination)
    # An export whose credentials are inline: its merged config's host is the one checked.
    fake.batch_exports[created["id"]]["destination"].update(
        config={**config, "host": "db.example.com", "user": "u", "password": "p"},
        integration=None,
    )
    patch = {"destination": {"type": "Postgres", "config": {"host": "127.0.0.1"}}}
    assert await refused(ph, "PATCH", created["id"], json=patch) == destination_error(UNREACHABLE)
    patch = {"destination": {"type": "Postgres", "config": {"port": 5433}}}
    assert (await raw(ph, "PATCH", created["id"], json=patch))["destination"]["config"] == {
        **config,
        "host": "db.example.com",
        "port": 5433,
    }


async def test_redshift_copy_inputs(fake: FakePostHog, ph: aposthog.Client) -> None:
    """COPY mode needs its staging inputs; credentials inline or as aws-s3 integration ids."""
    full = {
        "s3_bucket": "b",
        "region_name": "r",
        "s3_key_prefix": "p",
        "authorization": "arn:aws:iam::1:role/copy",
        "bucket_credentials": KEYS,
    }

    def destination(copy_inputs: Any) -> dict[str, Any]:
        config = {**REDSHIFT_CONFIG, "mode": "COPY"}
        if copy_inputs is not None:
            config["copy_inputs"] = copy_inputs
        return {"type": "Redshift", "config": config, "integration": REDSHIFT}

    for copy_inputs, detail in (
        (None, "Missing required inputs for 'COPY'"),
        ({}, "Missing required inputs for 'COPY'"),
        ({k: v for k, v in full.items() if k != "s3_bucket"}, "Missing required input for 'COPY'"),
        (
            {k: v for k, v in full.items() if k != "region_name"},
            "Missing required input for 'COPY'",
        ),
        (
            {**full, "bucket_credentials": {"aws_access_key_id": "k"}},
            "Missing required bucket credentials for 'COPY'",
        ),
        ({**full, "bucket_credentials": "k"}, "Missing required bucket credentials for 'COPY'"),
        (
            {**full, "authorization": {"aws_access_key_id": "k"}},
            "Missing required credentials for 'COPY'",
        ),
        ({**full, "authorization": " "}, "Missing required IAM role for 'COPY'"),
        (  # a bool is no integration id, though Python's True == 1
            {**full, "authorization": True},
            "Authorization for 'COPY' must be an IAM role ARN, AWS credentials, or an "
            "integration ID.",
        ),
        (
            {**full, "authorization": None},
            "Authorization for 'COPY' must be an IAM role ARN, AWS credentials, or an "
            "integration ID.",
        ),
        (
            {**full, "authorization": REDSHIFT},
            "'authorization' does not reference an AWS S3 integration of this project.",
        ),
        (
            {**full, "bucket_credentials": 99},
            "'bucket_credentials' does not reference an AWS S3 integration of this project.",
        ),
    ):
        assert await create_refused(ph, destination(copy_inputs)) == destination_error(detail)

    with pytest.raises(aposthog.InternalServerError):  # PostHog calls .keys() on a string
        await create(ph, destination("b"))

    by_ids = {**full, "authorization": str(AWS_S3), "bucket_credentials": AWS_S3}
    created = await create(ph, destination(by_ids))
    # Integration ids read back as ints, as PostHog's encrypted config coerces them.
    assert created["destination"]["config"]["copy_inputs"]["authorization"] == AWS_S3
    stored = fake.batch_exports[created["id"]]["destination"]["config"]["copy_inputs"]
    stored["bucket_credentials"] = str(AWS_S3)
    got = (await raw(ph, "GET", created["id"]))["destination"]["config"]["copy_inputs"]
    assert got["bucket_credentials"] == AWS_S3
    patch = {"destination": {**destination({"bucket_credentials": KEYS}), "integration": REDSHIFT}}
    assert await refused(ph, "PATCH", created["id"], json=patch) == destination_error(
        "Cannot switch 'bucket_credentials' from an integration to inline credentials. "
        "Send a different integration ID to swap, or omit the field to keep the current one."
    )
    patch = {"destination": {**destination({"s3_key_prefix": "q"}), "integration": REDSHIFT}}
    patched = await raw(ph, "PATCH", created["id"], json=patch)
    assert patched["destination"]["config"]["copy_inputs"]["s3_key_prefix"] == "q"

    # An IAM role ARN is text that is no id: it reads back as sent.
    by_role = await create(ph, destination(full))
    assert by_role["destination"]["config"]["copy_inputs"]["authorization"] == full["authorization"]
    # PostHog reads the stored copy_inputs as an object too: anything else is its 500.
    fake.batch_exports[by_role["id"]]["destination"]["config"]["copy_inputs"] = "junk"
    patch = {"destination": {**destination(full), "integration": REDSHIFT}}
    with pytest.raises(aposthog.InternalServerError):
        await raw(ph, "PATCH", by_role["id"], json=patch)


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    ("destination", "names"),
    [
        (
            "Databricks",
            [
                "Establish connection to Databricks",
                "Verify Databricks catalog",
                "Verify Databricks schema",
                "Verify Databricks table",
                "Verify permissions to create a Databricks volume",
            ],
        ),
        ("AzureBlob", ["Check Azure Blob container exists"]),
    ],
)
async def test_step_lists(ph: aposthog.Client, destination: str, names: list[str]) -> None:
    """PostHog's destination_tests for Databricks and AzureBlob, in order."""
    assert [s.name for s in await ph.batch_exports.test(destination=destination)] == names


async def test_redshift_has_no_destination_test(ph: aposthog.Client) -> None:
    """No test for Redshift: the list is a bare 404, a step PostHog's uncaught 500."""
    with pytest.raises(aposthog.NotFoundError):
        await raw(ph, "GET", "test", params={"destination": "Redshift"})
    redshift = {"type": "Redshift", "config": REDSHIFT_CONFIG, "integration": REDSHIFT}
    with pytest.raises(aposthog.InternalServerError):
        await ph.batch_exports.run_test_step_new(step=0, destination=redshift)


async def test_steps_use_the_integrations_credentials(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The integration's hostname, principal and connection string configure the steps."""
    databricks = {"type": "Databricks", "config": DATABRICKS_CONFIG, "integration": DATABRICKS}
    for number in range(5):
        result = (
            await ph.batch_exports.run_test_step_new(step=number, destination=databricks)
        ).result
        assert result is not None
        assert result.status == "Passed"
    azure = {"type": "AzureBlob", "config": AZURE_CONFIG, "integration": AZURE}
    step = await ph.batch_exports.run_test_step_new(step=0, destination=azure)
    assert step.description == (
        "Ensure the configured container exists and that we have the required permissions "
        "to access it."
    )
    assert step.result is not None
    assert step.result.status == "Passed"
    fake.set_batch_export_test_result(
        "AzureBlob", 0, status="Failed", message="Container 'exports' does not exist"
    )
    step = await ph.batch_exports.run_test_step_new(step=0, destination=azure)
    assert step.result is not None
    assert (step.result.status, step.result.message) == (
        "Failed",
        "Container 'exports' does not exist",
    )


async def test_the_command_line_seeds_the_new_integration_kinds() -> None:
    """`--integration` (both command lines) offers the three new kinds."""
    from aposthog._cli._args import FAKE_INTEGRATION_KINDS
    from aposthog.testing.__main__ import INTEGRATION_CHOICES

    for kind in ("aws-redshift", "databricks", "azure-blob"):
        assert kind in FAKE_INTEGRATION_KINDS
        assert kind in INTEGRATION_CHOICES


# ----------------------------------------------- destination tests of integration-backed exports


async def test_aws_s3_steps_run_with_a_role_based_integration(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    An aws-s3 integration that holds a role ARN (PostHog keeps it in `config`, see
    `Integration.display_name`: `self.config.get("aws_role_arn")`) configures both AwsS3
    steps: `run_test_step` merges `integration.config` into the test's configuration,
    `S3AssumeRoleTestStep` skips only when `aws_role_arn is None`, and
    `S3EnsureBucketTestStep._is_configured` accepts a role with the integration's
    organization instead of access keys (`destination_tests/s3.py`).
    """
    role = fake.add_integration("aws-s3", config={"aws_role_arn": "arn:aws:iam::1:role/ph"})
    s3 = {
        "type": "AwsS3",
        "config": {"bucket_name": "b", "region": "eu-west-1", "prefix": "p/"},
        "integration": role["id"],
    }
    assume, bucket = [
        (await ph.batch_exports.run_test_step_new(step=number, destination=s3)).result
        for number in (0, 1)
    ]
    assert assume is not None
    assert bucket is not None
    assert (assume.status, assume.message) != (
        "Skipped",
        "No configured AWS role ARN, skipping test",
    )
    assert bucket.message != "The test step cannot run as it's not configured."


@pytest.mark.parametrize(
    "sensitive_config",
    [
        {},  # a service account PostHog impersonates
        {"private_key": "-----BEGIN PRIVATE KEY-----", "private_key_id": "k1", "token_uri": "t"},
    ],
    ids=["impersonated", "with-key"],
)
async def test_bigquery_steps_run_with_posthogs_service_account_integration(
    fake: FakePostHog, ph: aposthog.Client, sensitive_config: dict[str, str]
) -> None:
    """
    PostHog's google-cloud-service-account integration holds `project_id` and
    `service_account_email` in `config` (and, for a key, `private_key`, `private_key_id`,
    `token_uri` in `sensitive_config`: `integration_from_service_account`). The project,
    dataset and table steps are configured whenever an integration is given
    (`BigQueryProjectTestStep._is_configured`: `integration is None and
    service_account_info is None` fails), and an impersonated account's first step runs
    rather than being skipped (`integration.has_key()` is False).
    """
    service_account = fake.add_integration(
        "google-cloud-service-account",
        config={"project_id": "proj", "service_account_email": "sa@proj.iam.gserviceaccount.com"},
        sensitive_config=sensitive_config,
    )
    bigquery = {
        "type": "BigQuery",
        "config": {"dataset_id": "ds", "table_id": "events"},
        "integration": service_account["id"],
    }
    results = [
        (await ph.batch_exports.run_test_step_new(step=number, destination=bigquery)).result
        for number in range(5)
    ]
    not_configured = "The test step cannot run as it's not configured."
    assert [r.message if r is not None else None for r in results[2:]].count(not_configured) == 0
    table = await ph.batch_exports.run_test_step_new(step=4, destination=bigquery)
    assert table.description == (  # BigQueryTableTestStep.description
        "Ensure the configured BigQuery table already exists or that we have the required "
        "permissions to create it. Additionally, when creating a table, we will attempt to "
        "delete it."
    )
    if not sensitive_config:
        assert results[0] is not None
        assert results[0].status != "Skipped"


async def test_workflows_exports_need_posthogs_flag(ph: aposthog.Client) -> None:
    """
    `Workflows` is one of PostHog's destination types (`BatchExportDestination.Destination`,
    `DESTINATION_WORKFLOWS["Workflows"]` with the required `hog_function_id`); creating one
    without the team's "backfill-workflows-destination" flag is `validate_destination`'s
    `PermissionDenied("Backfilling Workflows is not enabled for this team.")`, a 403.
    """
    workflows = {"type": "Workflows", "config": {"hog_function_id": "0190a1b2-c3d4"}}
    with pytest.raises(aposthog.APIStatusError) as info:
        await create(ph, workflows)
    assert (info.value.status, info.value.detail) == (
        403,
        "Backfilling Workflows is not enabled for this team.",
    )


async def test_workflows_and_file_download_exports_with_the_flag(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    With the flag a Workflows export is created; it needs `hog_function_id`. FileDownload
    needs no input. PostHog has a destination test for neither (`test` is a 404).
    """
    fake.batch_export_flags.add("backfill-workflows-destination")
    workflows = {"type": "Workflows", "config": {"hog_function_id": "0190a1b2-c3d4"}}
    created = await create(ph, workflows)
    assert created["destination"]["type"] == "Workflows"
    assert created["destination"]["config"] == {"hog_function_id": "0190a1b2-c3d4"}
    assert await create_refused(ph, {"type": "Workflows", "config": {}}) == config_error(
        "Configuration missing required field: 'hog_function_id'"
    )
    downloads = await create(ph, {"type": "FileDownload", "config": {}})
    assert downloads["destination"]["type"] == "FileDownload"
    for kind in ("Workflows", "FileDownload"):
        with pytest.raises(aposthog.NotFoundError):
            await ph.batch_exports.test(destination=kind)


async def test_aws_s3_bucket_step_needs_keys_or_a_role(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    An aws-s3 integration with neither access keys nor a role leaves the bucket step
    unconfigured (`S3EnsureBucketTestStep._is_configured`) and the role step skipped.
    """
    empty = fake.add_integration("aws-s3")
    s3 = {
        "type": "AwsS3",
        "config": {"bucket_name": "b", "region": "eu-west-1", "prefix": "p/"},
        "integration": empty["id"],
    }
    assume, bucket = [
        (await ph.batch_exports.run_test_step_new(step=number, destination=s3)).result
        for number in (0, 1)
    ]
    assert assume is not None
    assert bucket is not None
    assert (assume.status, assume.message) == (
        "Skipped",
        "No configured AWS role ARN, skipping test",
    )
    assert (bucket.status, bucket.message) == (
        "Failed",
        "The test step cannot run as it's not configured.",
    )
