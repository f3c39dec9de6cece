"""
FakePostHog's checks of the integration a batch-export destination names, as PostHog's
`validate_destination` makes them: whether the type needs one and of which kind, whether
an update may leave it out, what a Snowflake, Databricks or AzureBlob integration must
hold, Redshift's COPY inputs, and the SSRF guard PostHog puts on a Postgres or Redshift
host (less its DNS lookup). Each check returns PostHog's message, or None when the write
passes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ._batch_export_destinations import AZURE_BLOB_COMPRESSIONS, S3_COMPRESSIONS, server_error

__all__ = ["INTEGRATION_KINDS", "host_problem", "integration_problem"]

#: The integration kind each integration-backed destination type needs.
INTEGRATION_KINDS = {
    "AwsS3": "aws-s3",
    "S3Compatible": "s3-compatible",
    "Postgres": "postgresql",
    "Redshift": "aws-redshift",
    "BigQuery": "google-cloud-service-account",
    "Snowflake": "snowflake",
    "Databricks": "databricks",
    "AzureBlob": "azure-blob",
}


def integration_problem(
    destination: Mapping[str, Any],
    config: Mapping[str, Any],
    merged: Mapping[str, Any],
    instance: Mapping[str, Any] | None,
    integrations: Mapping[int, Mapping[str, Any]],
) -> str | None:
    """`validate_destination`'s integration checks (and the S3 family's input checks)."""
    kind = destination["type"]
    if kind not in INTEGRATION_KINDS:
        return None
    if kind in ("Databricks", "AzureBlob"):
        return _credentials_integration_problem(destination, merged, integrations)
    if kind == "Redshift":
        return _redshift_problem(destination, merged, instance, integrations)
    pk = destination.get("integration")
    stored = instance["destination"].get("integration") if instance is not None else None
    if kind == "Snowflake":
        return _snowflake_problem(destination, instance, integrations)
    if kind in ("AwsS3", "S3Compatible"):
        if pk is None and "integration" not in destination and instance is not None:
            pk = stored  # a PATCH of config alone keeps the export's integration
        if pk is None:
            return f"Integration is required for {kind} batch exports"
        empty = [
            name
            for name in ("bucket_name", "region", "prefix")
            if isinstance(config.get(name), str) and not config[name].strip()
        ]
        if empty:
            return f"The following inputs are empty: {empty}"
        found = integrations[pk]["kind"] if pk in integrations else None
        if found != INTEGRATION_KINDS[kind]:
            # PostHog's message names AWS S3 for S3Compatible exports too.
            return f"Integration provided is not an AWS S3 integration (got kind='{found}')"
        return _format_problem(merged, S3_COMPRESSIONS)
    if kind == "Postgres":
        if pk is None and instance is None:
            return "Integration is required for Postgres batch exports"
        if pk is not None and integrations[pk]["kind"] != INTEGRATION_KINDS[kind]:
            return "Integration is not a PostgreSQL integration."
        return None
    # BigQuery: required on every write that sends a destination, updates too.
    if pk is None:
        return "Integration is required for BigQuery batch exports"
    if integrations[pk]["kind"] != INTEGRATION_KINDS[kind]:
        return "Integration is not a Google Cloud service account integration."
    return None


def _snowflake_problem(
    destination: Mapping[str, Any],
    instance: Mapping[str, Any] | None,
    integrations: Mapping[int, Mapping[str, Any]],
) -> str | None:
    """
    Snowflake: an integration on every write (an update that leaves it out keeps the
    stored one; null removes it: refused), holding the account, user and authentication
    type, as PostHog's `SnowflakeIntegration()` requires.
    """
    pk = destination.get("integration")
    if pk is None and "integration" not in destination and instance is not None:
        pk = instance["destination"].get("integration")
    if pk is None:
        return "Integration is required for Snowflake batch exports"
    integration = integrations[pk]
    if integration["kind"] != INTEGRATION_KINDS["Snowflake"]:
        return (
            "Integration provided is not a Snowflake integration "
            f"(got kind='{integration['kind']}')"
        )
    for name in ("account", "user", "authentication_type"):
        if name not in integration["config"]:
            return f"Snowflake integration is not valid: '{name}' missing"
    return None


def _credentials_integration_problem(
    destination: Mapping[str, Any],
    merged: Mapping[str, Any],
    integrations: Mapping[int, Mapping[str, Any]],
) -> str | None:
    """Databricks and AzureBlob: an integration on every write, holding its credentials."""
    kind = destination["type"]
    pk = destination.get("integration")  # an update that leaves it out has none: refused
    label = "Databricks" if kind == "Databricks" else "Azure Blob"
    if pk is None:
        return f"Integration is required for {label} batch exports"
    integration = integrations[pk]
    if integration["kind"] != INTEGRATION_KINDS[kind]:
        article = "a" if kind == "Databricks" else "an"
        return f"Integration is not {article} {label} integration."
    if kind == "Databricks":
        # DatabricksIntegration(): the hostname in config, the principal in sensitive_config.
        for where, name in (
            ("config", "server_hostname"),
            ("sensitive_config", "client_id"),
            ("sensitive_config", "client_secret"),
        ):
            if name not in integration[where]:
                return f"Databricks integration is not valid: '{name}' missing"
        return None
    if "connection_string" not in integration["sensitive_config"]:
        return "Azure Blob integration is missing required field: 'connection_string'"
    return _format_problem(merged, AZURE_BLOB_COMPRESSIONS)


def _format_problem(merged: Mapping[str, Any], compressions: Mapping[str, list[str]]) -> str | None:
    """An object-storage destination's file format and compression, against its table."""
    file_format = merged.get("file_format", "JSONLines")
    if file_format not in compressions:
        return (
            f"File format {file_format} is not supported. Supported file formats are "
            f"{list(compressions)}"
        )
    compression = merged.get("compression")
    if compression and compression not in compressions[file_format]:
        return (
            f"Compression {compression} is not supported for file format {file_format}. "
            f"Supported compressions are {compressions[file_format]}"
        )
    return None


def _copy_integration_id(value: Any) -> int | None:
    """PostHog's `_coerce_integration_id`: an int, or digits (stored config reads as text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _redshift_problem(
    destination: Mapping[str, Any],
    merged: Mapping[str, Any],
    instance: Mapping[str, Any] | None,
    integrations: Mapping[int, Mapping[str, Any]],
) -> str | None:
    """Redshift: a sticky integration, required on create, and the COPY mode's inputs."""
    pk = destination.get("integration")  # left out of an update: None, as in PostHog
    stored_pk = instance["destination"].get("integration") if instance is not None else None
    if stored_pk is not None and pk is None:
        return (
            "Cannot remove the integration from a Redshift batch export that uses one. "
            "Re-send its `integration` to keep it (or a different one to swap)."
        )
    if pk is None and instance is None:
        return "Integration is required for Redshift batch exports"
    if pk is not None:
        integration = integrations[pk]
        if integration["kind"] != INTEGRATION_KINDS["Redshift"]:
            return "Integration is not a Redshift integration."
        if "host" not in integration["config"] and not merged.get("host"):
            return (
                "A 'host' is required when using an AWS Redshift integration: "
                "set it to the cluster or workgroup endpoint."
            )
    if merged.get("mode") != "COPY":
        return None
    copy_inputs = merged.get("copy_inputs", {})
    if not copy_inputs:
        return "Missing required inputs for 'COPY'"
    if not isinstance(copy_inputs, dict):
        raise server_error()  # PostHog calls copy_inputs.keys(): an AttributeError, a 500
    if {"s3_bucket", "region_name", "authorization", "bucket_credentials"} - copy_inputs.keys():
        return "Missing required input for 'COPY'"
    existing = instance["destination"]["config"] if instance is not None else {}
    stored = existing.get("copy_inputs") or {}
    if not isinstance(stored, dict):
        raise server_error()  # likewise for the stored copy_inputs
    bucket_credentials = copy_inputs["bucket_credentials"]
    authorization = copy_inputs["authorization"]
    bucket_pk = _copy_integration_id(bucket_credentials)
    authorization_pk = _copy_integration_id(authorization)
    for name, copy_pk in (("bucket_credentials", bucket_pk), ("authorization", authorization_pk)):
        if copy_pk is None:
            if instance is not None and _copy_integration_id(stored.get(name)) is not None:
                return (
                    f"Cannot switch '{name}' from an integration to inline credentials. "
                    "Send a different integration ID to swap, or omit the field to keep the "
                    "current one."
                )
            continue
        found = integrations.get(copy_pk)
        if found is None or found["kind"] != "aws-s3":
            return f"'{name}' does not reference an AWS S3 integration of this project."
    keys = {"aws_access_key_id", "aws_secret_access_key"}
    if bucket_pk is None and (
        not isinstance(bucket_credentials, dict) or keys - bucket_credentials.keys()
    ):
        return "Missing required bucket credentials for 'COPY'"
    if authorization_pk is None:
        if isinstance(authorization, dict):
            if keys - authorization.keys():
                return "Missing required credentials for 'COPY'"
        elif isinstance(authorization, str):
            if not authorization.strip():
                return "Missing required IAM role for 'COPY'"
        else:
            return (
                "Authorization for 'COPY' must be an IAM role ARN, AWS credentials, or an "
                "integration ID."
            )
    return None


INVALID_HOST = "Invalid host. Enter a hostname or IP address without credentials, scheme, or path."
UNREACHABLE_HOST = (
    "Could not reach this host. Check that the hostname is correct and reachable from the internet."
)
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_METADATA_HOSTS = frozenset({"169.254.169.254", "metadata.google.internal"})
_INTERNAL_SUFFIXES = (
    ".local",
    ".internal",
    ".svc.cluster.local",
    ".cluster.local",
    ".consul",
    ".lan",
    ".home",
    ".corp",
    ".localdomain",
    ".home.arpa",
    ".intranet",
    ".priv",
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _canonical_host(host: str) -> str:
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    return host.lower().rstrip(".")


def _internal_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in _CGNAT
    )


def _host_problem(host: Any) -> str | None:
    """
    PostHog's `validate_external_host`, as its batch-export serializer reports it: a value
    that cannot be a host is "Invalid host", a local, metadata, internal-domain or private
    address "Could not reach this host". PostHog also resolves the name and refuses it when
    the lookup fails or finds a private address; the fake makes no DNS lookup.
    """
    if not isinstance(host, str) or not host.strip():
        return INVALID_HOST
    if _ip_literal(host) is None:
        canonical = _canonical_host(host)
        if len(canonical) > 253 or _HOSTNAME.fullmatch(canonical) is None:
            return INVALID_HOST
    host = _canonical_host(host)
    ip = _ip_literal(host)
    if (
        host in _METADATA_HOSTS
        or host in ("localhost", "127.0.0.1", "::1")
        or host.endswith(_INTERNAL_SUFFIXES)
        or (ip is not None and _internal_ip(ip))
    ):
        return UNREACHABLE_HOST
    return None


def host_problem(
    destination: Mapping[str, Any],
    merged: Mapping[str, Any],
    integrations: Mapping[int, Mapping[str, Any]],
) -> str | None:
    """
    The SSRF guard on a Postgres or Redshift host, PostHog's last destination check: the
    sent integration's host (a stored one is not looked at), else the merged config's.
    """
    if destination["type"] not in ("Postgres", "Redshift"):
        return None
    pk = destination.get("integration")
    host = integrations[pk]["config"].get("host") if pk is not None else None
    if host is None:
        host = merged.get("host")
    return None if host is None else _host_problem(host)
