"""
How PostHog keeps and returns a batch-export destination's config: an update's merge into
the stored config (`recursive_dict_merge`), the secrets stripped from every response, the
declared types every response restores (`coerce_config_to_declared_types`), and the
Parquet file naming of the object-storage types (`legacy_parquet_extension`).

PostHog stores the config in an `EncryptedJSONField`, which turns scalars into text, so
each response converts the text of a field its workflow inputs declare `bool` or `int`
(Optional ones too, and the base inputs' `team_id`, `integration_id`, …) back: a bool is
`text.lower() == "true"`, an int is `int(text)` when that parses and the text otherwise.
The fake stores what it was sent, so the same rule turns an Optional int sent as text
(`max_file_size_mb`, a Postgres `port`) and a config seeded as PostHog stores it into
PostHog's answer. The legacy `S3` type has no workflow inputs any more: its config comes
back as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._batch_export_destinations import DESTINATIONS

__all__ = [
    "OBJECT_STORAGE_DESTINATIONS",
    "coerce_read_config",
    "deep_merge",
    "pin_existing_parquet_extension",
    "set_default_parquet_extension",
    "strip_secrets",
    "uses_legacy_parquet_extension",
]

#: The types whose files may carry the codec in a Parquet file's name: each has a
#: `legacy_parquet_extension` field, `false` for a new export.
OBJECT_STORAGE_DESTINATIONS = frozenset({"AwsS3", "S3Compatible", "AzureBlob"})
#: `BaseBatchExportInputs`' bool and int fields (`integration_id` is `int | None`).
_BASE_READ_TYPES: dict[str, type] = {
    "team_id": int,
    "is_backfill": bool,
    "is_earliest_backfill": bool,
    "integration_id": int,
}


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


def _read_types(kind: str) -> dict[str, type]:
    spec = DESTINATIONS.get(kind)
    if spec is None or kind == "S3":  # no longer in PostHog's DESTINATION_WORKFLOWS
        return {}
    declared = {
        name: field_type
        for name, (field_type, _) in spec.fields.items()
        if field_type is bool or field_type is int
    }
    return {**_BASE_READ_TYPES, **declared, **dict.fromkeys(spec.optional_ints, int)}


def _coerced(value: Any, field_type: type | None) -> Any:
    if not isinstance(value, str) or field_type is None:
        return value
    if field_type is bool:
        return value.lower() == "true"
    try:
        return int(value)
    except ValueError:
        return value


def coerce_read_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """`coerce_config_to_declared_types`: the declared types back; COPY integration ids too."""
    types = _read_types(kind)
    coerced = {key: _coerced(value, types.get(key)) for key, value in config.items()}
    copy_inputs = coerced.get("copy_inputs")
    if kind == "Redshift" and isinstance(copy_inputs, dict):
        copy_inputs = dict(copy_inputs)
        for key in ("authorization", "bucket_credentials"):
            value = copy_inputs.get(key)
            if isinstance(value, str) and value.isdigit():
                copy_inputs[key] = int(value)
        coerced["copy_inputs"] = copy_inputs
    return coerced


def _writes_compressed_parquet(config: Mapping[str, Any]) -> bool:
    return config.get("file_format") == "Parquet" and config.get("compression") is not None


def uses_legacy_parquet_extension(kind: str, config: Mapping[str, Any]) -> bool:
    """Whether a stored config already writes the codec into its Parquet file names."""
    coerced = coerce_read_config(kind, config)  # stored text: "False" would be truthy
    stored = coerced.get("legacy_parquet_extension")
    if stored is None:  # an export from before the field: what its files look like
        return _writes_compressed_parquet(coerced)
    return bool(stored)


def set_default_parquet_extension(kind: str, config: dict[str, Any]) -> None:
    """A new object-storage export writes the standard `.parquet` names."""
    if kind in OBJECT_STORAGE_DESTINATIONS:
        config.setdefault("legacy_parquet_extension", False)


def pin_existing_parquet_extension(kind: str, stored: dict[str, Any]) -> None:
    """Before an update merges in: record the names an older export already writes."""
    if kind in OBJECT_STORAGE_DESTINATIONS:
        stored.setdefault("legacy_parquet_extension", _writes_compressed_parquet(stored))
