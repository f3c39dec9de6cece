"""
FakePostHog's checks on what a batch export selects, as `BatchExportSerializer` makes
them: the `hogql_query`, its modifiers and keys, `incremental_mode`, `filters` and
`timezone` (field by field), then the rules that tie them to the export's `model`.

A `hogql` export keeps its query, modifiers and keys in a source (PostHog's
`BatchExportSource`) and has no `schema`. Any other export may hold a custom query only
if the team already has an export with a `schema` (PostHog's grandfathered teams); the
query then becomes the export's `schema`, as `{"fields": [], "values": {}, "hogql_query":
...}` here (the fake does not compile HogQL). `hogql_query=None` clears that schema.
A test makes its team grandfathered by setting a stored export's `"schema"`.

The fake parses no HogQL: a query without SELECT fails to parse, and the columns of
`primary_key` and `version_key` are not checked against the query's output.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._wire import validation_error

if TYPE_CHECKING:
    from ._batch_export_validation import _Errors

__all__ = [
    "CHANGING_MODELS",
    "apply_source",
    "check_source_fields",
    "check_source_rules",
    "grandfathered",
    "present_source",
    "timezone_names",
]

CHANGING_MODELS = "Changing models is not supported. Create a new batch export instead."
INCREMENTAL_MODES = ("APPEND", "MERGE")
#: `SUPPORTED_FILTER_TYPES_DISPLAY` in PostHog's `batch_exports/backend/filters.py`.
_FILTER_TYPES = ("event", "hogql", "person")
_FILTER_TYPES_DISPLAY = ", ".join(repr(kind) for kind in _FILTER_TYPES)
_SOURCE_KEYS = ("hogql_query", "hogql_modifiers", "primary_key", "version_key")


@functools.cache
def timezone_names() -> frozenset[str]:
    """
    The names PostHog's `timezone` accepts (`pytz.all_timezones`), as this machine's IANA
    database has them: `zoneinfo.available_timezones()`, which holds the same zones and
    links (pytz bundles the same tzdata), without depending on pytz. Empty when the
    machine has no tz database: then the fake cannot tell and accepts any name.
    """
    return frozenset(zoneinfo.available_timezones() - {"localtime", "posixrules"})


def _string(errors: _Errors, attr: str, value: Any) -> str | None:
    """DRF's CharField (no blank, trimmed); None after an error."""
    if isinstance(value, (bool, dict, list)):
        errors.add(attr, "Not a valid string.")
        return None
    text = str(value).strip()
    if not text:
        errors.add(attr, "This field may not be blank.", "blank")
        return None
    return text


def _columns(errors: _Errors, attr: str, value: Any) -> list[str] | None:
    """DRF's ListField(child=CharField(), allow_empty=False)."""
    if isinstance(value, (str, dict)) or not isinstance(value, list):
        errors.add(
            attr, f'Expected a list of items but got type "{type(value).__name__}".', "not_a_list"
        )
        return None
    if not value:
        errors.add(attr, "This list may not be empty.", "empty")
        return None
    columns = []
    for index, item in enumerate(value):
        if item is None:
            errors.add(f"{attr}__{index}", "This field may not be null.", "null")
            return None
        column = _string(errors, f"{attr}__{index}", item)
        if column is None:
            return None
        columns.append(column)
    return columns


def _filters(errors: _Errors, value: Any) -> None:
    """PostHog's `validate_batch_export_filters`, filter by filter."""
    if value is None:
        return
    if not isinstance(value, list):
        errors.add("filters", "'filters' should be an array of filters")
        return
    for item in value:
        if not isinstance(item, dict):
            errors.add("filters", "Each filter must be an object")
        elif "data_interval_start" in item or "data_interval_end" in item:
            errors.add(
                "filters",
                "'data_interval_start' and 'data_interval_end' are run attributes and not "
                "'filters'. Trigger a backfill if you wish to manually control which periods "
                "to batch export.",
            )
        elif item.get("type") not in _FILTER_TYPES:
            errors.add(
                "filters", f"Each filter must have a 'type' of one of: {_FILTER_TYPES_DISPLAY}"
            )
        else:
            continue
        return


def check_source_fields(errors: _Errors, data: Mapping[str, Any], clean: dict[str, Any]) -> None:
    """The field-level checks, in the serializer's field order; clean values into `clean`."""
    if "hogql_query" in data:
        query = data["hogql_query"]
        if query is None:
            clean["hogql_query"] = None
        elif (text := _string(errors, "hogql_query", query)) is not None:
            clean["hogql_query"] = text
    if "hogql_modifiers" in data:
        modifiers = data["hogql_modifiers"]
        if modifiers is not None and not isinstance(modifiers, dict):
            # HogQLQueryModifiers.model_validate's message.
            errors.add(
                "hogql_modifiers",
                "Input should be a valid dictionary or instance of HogQLQueryModifiers",
            )
        else:  # stored with exclude_none, as PostHog dumps the modifiers
            clean["hogql_modifiers"] = (
                None if modifiers is None else {k: v for k, v in modifiers.items() if v is not None}
            )
    for name in ("primary_key", "version_key"):
        if name in data:
            if data[name] is None:
                clean[name] = None
            elif (columns := _columns(errors, name, data[name])) is not None:
                clean[name] = columns
    if "incremental_mode" in data:
        mode = data["incremental_mode"]
        if mode is None:
            errors.add("incremental_mode", "This field may not be null.", "null")
        elif not isinstance(mode, str) or mode not in INCREMENTAL_MODES:
            errors.add("incremental_mode", f'"{mode}" is not a valid choice.', "invalid_choice")
        else:
            clean["incremental_mode"] = mode
    if "filters" in data:
        _filters(errors, data["filters"])
        clean["filters"] = data["filters"]
    if "timezone" in data:
        timezone = data["timezone"]
        names = timezone_names()
        if timezone is not None and (
            not isinstance(timezone, str) or (names and timezone not in names) or not timezone
        ):
            errors.add("timezone", f'"{timezone}" is not a valid choice.', "invalid_choice")
        clean["timezone"] = timezone or "UTC"  # validate_timezone: None means UTC


def _only_for(clean: Mapping[str, Any], name: str, model: str, this_model: str) -> None:
    if clean.get(name) is not None and this_model != model:
        raise validation_error(
            f"'{name}' is only supported for '{model}' not '{this_model}' model", attr=name
        )


def check_source_rules(
    clean: Mapping[str, Any], *, instance: Mapping[str, Any] | None, grandfathered: bool
) -> None:
    """
    `BatchExportSerializer.validate`'s model rules. `grandfathered`: the team has an
    export (deleted ones too) with a custom schema.
    """
    model = str(instance["model"] if instance is not None else clean.get("model", "events"))
    _only_for(clean, "filters", "events", model)
    _only_for(clean, "hogql_modifiers", "hogql", model)
    _only_for(clean, "primary_key", "hogql", model)
    _only_for(clean, "version_key", "hogql", model)
    query = clean.get("hogql_query")
    if model == "events" and query is not None and grandfathered:
        if "select" not in query.lower():
            raise validation_error("Failed to parse query", attr="non_field_errors")
    else:
        _only_for(clean, "hogql_query", "hogql", model)
    if model != "hogql":
        return
    saved = instance or {}
    query = clean["hogql_query"] if "hogql_query" in clean else saved.get("hogql_query")
    if query is None:
        raise validation_error(
            "'hogql_query' is required when 'model' is 'hogql'", attr="hogql_query"
        )
    if "select" not in query.lower():
        raise validation_error("Failed to parse query", attr="hogql_query")
    mode = clean.get("incremental_mode", saved.get("incremental_mode"))
    primary_key = clean["primary_key"] if "primary_key" in clean else saved.get("primary_key")
    if mode == "MERGE" and not primary_key:
        raise validation_error(
            "'primary_key' is required when 'incremental_mode' is 'MERGE'", attr="primary_key"
        )


def grandfathered(exports: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the team has an export (deleted ones too) with a custom schema."""
    return any(export["schema"] is not None for export in exports)


def apply_source(export: dict[str, Any], clean: dict[str, Any]) -> None:
    """
    Store what `clean` sets, as PostHog's create and update do: a `hogql` export's
    source fields, another export's schema (from its query); the rest of `clean` stays.
    """
    sent = {name: clean.pop(name) for name in _SOURCE_KEYS if name in clean}
    if export["model"] == "hogql":
        export.update(sent)
    elif "hogql_query" in sent:
        query = sent["hogql_query"]
        export["schema"] = (
            None if query is None else {"fields": [], "values": {}, "hogql_query": query}
        )


def present_source(export: Mapping[str, Any]) -> dict[str, Any]:
    """The source fields as `BatchExportSerializer` renders them (None but for `hogql`)."""
    fields: dict[str, Any] = {name: export.get(name) for name in _SOURCE_KEYS}
    fields["incremental_mode"] = export.get("incremental_mode", "APPEND")
    return fields
