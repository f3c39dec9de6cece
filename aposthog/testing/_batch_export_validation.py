"""
FakePostHog's batch-export serializer: the checks `BatchExportSerializer` and
`BatchExportDestinationSerializer` make, in DRF's order, with PostHog's messages.

DRF validates field by field in declaration order and drf-exceptions-hog reports the
first error only; a `PermissionDenied` raised by a field validator (a feature flag the
team lacks) escapes at once, as a 403. Then the object-level `validate()` runs.

The destination's `integration` (or `integration_id`) is a team-scoped primary key: an
id the fake's `integrations` lack is DRF's `does_not_exist`. `validate_destination`
then refuses every write of the legacy `S3` type and requires an integration of the
right kind: always for AwsS3, S3Compatible, Snowflake, BigQuery, Databricks and AzureBlob
(an S3-family or Snowflake update that leaves `integration` out keeps the stored one; a
Databricks or AzureBlob one does not), on create for Postgres and Redshift (exports made
before integrations keep their inline credentials). A Snowflake, Databricks or AzureBlob
integration must also hold its credentials; Redshift, in COPY mode, checks its
`copy_inputs`; last, a Postgres or Redshift host meets PostHog's SSRF guard (less the DNS
lookup).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ._batch_export_configs import deep_merge, uses_legacy_parquet_extension
from ._batch_export_destinations import (
    BASE_CONFIG_FIELDS,
    DESTINATIONS,
    HTTP_URLS,
    INTERVALS,
    MODELS,
    DestinationSpec,
    from_isoformat,
    server_error,
)
from ._batch_export_integrations import host_problem, integration_problem
from ._batch_export_sources import CHANGING_MODELS, check_source_fields, check_source_rules
from ._wire import (
    HTTPError,
    boolean_field,
    error,
    integer_field,
    text_problem,
    validation_error,
)

__all__ = [
    "LEGACY_PARQUET_REFUSED",
    "LEGACY_S3_REFUSED",
    "DatetimeFieldError",
    "parse_datetime_field",
    "validate_export",
]

_DATETIME_FORMAT_ERROR = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)


class DatetimeFieldError(ValueError):
    """DRF's DateTimeField refusing a value: `str()` is the detail, `code` its code."""

    def __init__(self, detail: str, code: str = "invalid") -> None:
        super().__init__(detail)
        self.code = code


def parse_datetime_field(value: Any) -> dt.datetime:
    """
    DRF's DateTimeField: ISO 8601, naive meaning UTC (PostHog's TIME_ZONE), the result
    in UTC; a `DatetimeFieldError` with DRF's detail and code otherwise.

    DRF calls Django's `parse_datetime` under `suppress(ValueError, TypeError)`, so a
    well-formed value that names no real time (Feb 30, hour 24) gets the same "wrong
    format" error as any other text, never Python's own wording. `enforce_timezone`
    then converts an aware value to UTC: one that leaves datetime's range there
    (`9999-12-31T23:59:59-01:00`) is its `overflow` error.
    """
    if not isinstance(value, str):
        raise DatetimeFieldError(_DATETIME_FORMAT_ERROR)
    try:
        parsed = from_isoformat(value)  # as it came: Django reads no blanks around it
    except ValueError:
        raise DatetimeFieldError(_DATETIME_FORMAT_ERROR) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    try:
        return parsed.astimezone(dt.timezone.utc)
    except OverflowError:
        raise DatetimeFieldError("Datetime value out of the range.", "overflow") from None


class _Errors:
    """The first field error, as drf-exceptions-hog reports it."""

    def __init__(self) -> None:
        self.first: HTTPError | None = None

    def add(self, attr: str, detail: str, code: str = "invalid_input") -> None:
        if self.first is None:
            self.first = validation_error(detail, attr=attr, code=code)

    def keep(self, exc: HTTPError) -> None:
        """A field's error raised by a shared check, kept if it is the first."""
        if self.first is None:
            self.first = exc

    def raise_first(self) -> None:
        if self.first is not None:
            raise self.first


def _forbidden(detail: str) -> HTTPError:
    return HTTPError(error(403, "authentication_error", "permission_denied", detail))


def _choice(errors: _Errors, attr: str, value: Any, choices: tuple[str, ...]) -> bool:
    if value is None:
        errors.add(attr, "This field may not be null.", "null")
        return False
    if not isinstance(value, str) or value not in choices:
        errors.add(attr, f'"{value}" is not a valid choice.', "invalid_choice")
        return False
    return True


def _integer(errors: _Errors, attr: str, value: Any, high: int) -> int | None:
    if value is None:
        return None
    try:
        number = integer_field(value)
    except ValueError:
        errors.add(attr, "A valid integer is required.")
        return None
    if number < 0:
        errors.add(attr, "Ensure this value is greater than or equal to 0.", "min_value")
    elif number > high:
        errors.add(attr, f"Ensure this value is less than or equal to {high}.", "max_value")
    return number


def _integration_pk(
    errors: _Errors, attr: str, value: Any, integrations: Mapping[int, Mapping[str, Any]]
) -> int | None:
    """DRF's PrimaryKeyRelatedField: the integration's id, or None after an error."""
    try:
        if isinstance(value, bool):
            raise TypeError
        pk = int(value)  # Django's lookup casts the pk: "3" finds 3, "x" is a ValueError
    except (TypeError, ValueError):
        errors.add(
            attr,
            f"Incorrect type. Expected pk value, received {type(value).__name__}.",
            "incorrect_type",
        )
        return None
    if pk not in integrations:
        errors.add(attr, f'Invalid pk "{value}" - object does not exist.', "does_not_exist")
        return None
    return pk


def _config_type_error(errors: _Errors, config: dict[str, Any], spec: DestinationSpec) -> None:
    for name, (declared, _) in spec.fields.items():
        if declared is None or name not in config or isinstance(config[name], declared):
            continue
        value = config[name]
        # PostHog's try_convert_to_type: only str -> bool and str -> int are tried.
        if isinstance(value, str) and declared is bool and value.lower() in ("true", "false"):
            config[name] = value.lower() == "true"
        elif isinstance(value, str) and declared is int and value.strip().lstrip("-").isdigit():
            config[name] = int(value)
        else:
            errors.add(
                "destination__non_field_errors",
                f"Configuration has invalid type: got '{type(value).__name__}', "
                f"expected '{declared.__name__}'",
            )


def _destination(
    errors: _Errors,
    value: Any,
    *,
    instance: Mapping[str, Any] | None,
    check_required: bool,
    integrations: Mapping[int, Mapping[str, Any]],
    flags: frozenset[str] | set[str],
) -> dict[str, Any] | None:
    if value is None:
        # DRF's `validate_empty_values` refuses null before the nested serializer reads it.
        errors.add("destination", "This field may not be null.", "null")
        return None
    if not isinstance(value, dict):
        errors.add(
            "destination__non_field_errors",
            f"Invalid data. Expected a dictionary, but got {type(value).__name__}.",
        )
        return None
    kind = value.get("type")
    if "type" not in value:
        errors.add("destination__type", "This field is required.", "required")
        return None
    if not _choice(errors, "destination__type", kind, tuple(DESTINATIONS)):
        return None
    # `config` is a required JSONField: DRF's errors for a body that leaves it out (but
    # a partial update) or sends null; any other JSON passes the field.
    if "config" not in value and check_required:
        errors.add("destination__config", "This field is required.", "required")
        return None
    if "config" in value and value["config"] is None:
        errors.add("destination__config", "This field may not be null.", "null")
        return None
    if not isinstance(value.get("config"), dict):
        raise server_error()  # validate() reads attrs["config"].keys(): PostHog's 500
    clean: dict[str, Any] = {"type": kind}
    # The fields `integration` and `integration_id` (its write-only alias, declared after
    # it, so it wins) both set the destination's integration.
    for key in ("integration", "integration_id"):
        if key in value:
            integration = value[key]
            if integration is not None:
                integration = _integration_pk(
                    errors, f"destination__{key}", integration, integrations
                )
                if integration is None:
                    return None
            clean["integration"] = integration
    # BatchExportDestinationSerializer.validate
    spec = DESTINATIONS[str(kind)]
    config = dict(value["config"])
    unknown = sorted(config.keys() - spec.fields.keys() - BASE_CONFIG_FIELDS)
    if unknown:
        listed = ", ".join(f"'{name}'" for name in unknown)
        errors.add("destination__non_field_errors", f"Configuration has unknown field/s: {listed}")
        return None
    if check_required:
        for name, (_, required) in spec.fields.items():
            if required and name not in config:
                errors.add(
                    "destination__non_field_errors",
                    f"Configuration missing required field: '{name}'",
                )
                return None
    _config_type_error(errors, config, spec)
    clean["config"] = config
    # validate_destination, on the parent serializer.
    if instance is not None and kind != instance["destination"]["type"]:
        errors.add(
            "destination",
            f"Cannot change destination type from '{instance['destination']['type']}' to "
            f"'{kind}'. Delete this batch export and create a new one with the new destination "
            "type.",
        )
        return None
    if kind == "S3":
        errors.add("destination", LEGACY_S3_REFUSED)
        return None
    existing = instance["destination"]["config"] if instance is not None else {}
    if config.get("legacy_parquet_extension") is True and not uses_legacy_parquet_extension(
        str(kind), existing
    ):
        errors.add("destination", LEGACY_PARQUET_REFUSED)
        return None
    merged = deep_merge(existing, config)
    if kind == "HTTP" and merged.get("url") and merged["url"] not in HTTP_URLS:
        errors.add("destination", f"Invalid destination URL: {merged['url']}")
        return None
    problem = integration_problem(clean, config, merged, instance, integrations)
    if problem is None and kind == "Workflows" and "backfill-workflows-destination" not in flags:
        # validate_destination's PermissionDenied: it escapes DRF's field loop, a 403.
        raise _forbidden("Backfilling Workflows is not enabled for this team.")
    if problem is None:
        problem = host_problem(clean, merged, integrations)
    if problem is not None:
        errors.add("destination", problem)
        return None
    return clean


#: PostHog's answer to any write of the legacy `S3` destination type.
LEGACY_S3_REFUSED = (
    "The 'S3' destination type is deprecated and can no longer be used. "
    "Use 'AwsS3' for AWS S3, or 'S3Compatible' for S3-compatible storage."
)
LEGACY_PARQUET_REFUSED = (
    "'legacy_parquet_extension' can only stay on for an export that already writes the "
    "compression codec into its Parquet file names. It cannot be turned on for a new "
    "export, or turned back on once an export moved to the standard '.parquet' extension."
)


def validate_export(
    data: dict[str, Any],
    *,
    instance: Mapping[str, Any] | None,
    partial: bool,
    check_required_config: bool,
    flags: frozenset[str] | set[str],
    integrations: Mapping[int, Mapping[str, Any]],
    grandfathered: bool = False,
    detail_action: bool = False,
) -> dict[str, Any]:
    """
    Validate a create, update or test body; returns the clean fields that were sent.

    `interval_offset` is in the result whenever PostHog would set it. `integrations` are
    the team's integrations by id, which a destination's `integration` must name;
    `grandfathered`: the team has an export with a custom schema (see
    `_batch_export_sources`); `detail_action`: `instance` is only the view's object
    (`run_test_step`), not the serializer's, so the model rules see a new export.
    """
    errors = _Errors()
    clean: dict[str, Any] = {}

    def required(name: str) -> None:
        # A required field left out fails in its own place in the field order (its
        # `run_validation` raises), not before the fields declared ahead of it.
        if not partial and name not in data:
            errors.add(name, "This field is required.", "required")

    required("name")
    if "name" in data:
        name = data["name"]
        if name is None:
            errors.add("name", "This field may not be null.", "null")
        elif isinstance(name, (dict, list, bool)):
            errors.add("name", "Not a valid string.")
        elif not str(name).strip():
            errors.add("name", "This field may not be blank.", "blank")
        elif (problem := text_problem(str(name).strip())) is not None:
            errors.add("name", *problem)
        else:
            clean["name"] = str(name).strip()
    if "model" in data:
        model = data["model"]
        if _choice(errors, "model", model, MODELS):
            if model == "hogql" and "hogql-batch-exports" not in flags:
                raise _forbidden("HogQL batch exports are not enabled for this team.")
            if instance is not None and not detail_action and model != instance["model"]:
                errors.add("model", CHANGING_MODELS)
            else:
                clean["model"] = model
    required("destination")
    if "destination" in data:
        destination = _destination(
            errors,
            data["destination"],
            instance=instance,
            check_required=check_required_config,
            integrations=integrations,
            flags=flags,
        )
        if destination is not None:
            clean["destination"] = destination
    required("interval")
    if "interval" in data and _choice(errors, "interval", data["interval"], INTERVALS):
        if data["interval"] not in ("hour", "day", "week") and (
            "high-frequency-batch-exports" not in flags
        ):
            raise _forbidden("Higher frequency batch exports are not enabled for this team.")
        clean["interval"] = data["interval"]
    if "paused" in data:
        try:
            clean["paused"] = boolean_field(data["paused"], "paused")
        except HTTPError as exc:
            errors.keep(exc)
    # `last_paused_at` is writable (it is not in `read_only_fields`): the model's nullable
    # DateTimeField, declared between `paused` and `start_at`.
    for name in ("last_paused_at", "start_at", "end_at"):
        if name in data:
            try:
                clean[name] = None if data[name] is None else parse_datetime_field(data[name])
            except DatetimeFieldError as exc:
                errors.add(name, str(exc), exc.code)
    check_source_fields(errors, data, clean)
    interval = data.get("interval") or (instance["interval"] if instance is not None else None)
    offsets: dict[str, int | None] = {}
    for name, high, allowed, message in (
        ("offset_day", 6, ("week",), "offset_day is not applicable for non-weekly intervals"),
        (
            "offset_hour",
            23,
            ("day", "week"),
            "offset_hour is not applicable for non-daily/weekly intervals",
        ),
    ):
        if name in data:
            value = _integer(errors, name, data[name], high)
            if value is not None and interval not in allowed:
                errors.add(name, message)
            offsets[name] = value
    errors.raise_first()

    kind = clean.get("destination", {}).get("type")
    if kind == "HTTP" and clean.get("model") not in (None, "events"):
        raise validation_error(
            "HTTP batch exports only support the events model", attr="non_field_errors"
        )
    source_instance = None if detail_action else instance
    check_source_rules(clean, instance=source_instance, grandfathered=grandfathered)
    if offsets and "interval" not in data:
        # validate() converts offsets only alongside an interval; otherwise DRF sets the
        # model's read-only offset properties and the view fails: PostHog's 500.
        raise server_error()
    if "interval" in clean:
        day, hour = offsets.get("offset_day"), offsets.get("offset_hour")
        if interval == "day" and ("offset_hour" in offsets or not partial):
            clean["interval_offset"] = None if hour is None else hour * 3600
        elif interval == "week" and offsets:
            # PostHog resets a weekday left out to Sunday (0).
            clean["interval_offset"] = (day or 0) * 86400 + (hour or 0) * 3600
        elif (interval == "week" and not partial) or interval not in ("day", "week"):
            clean["interval_offset"] = None
    return clean
