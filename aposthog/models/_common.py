"""Conventions shared by every record module."""

from __future__ import annotations

from typing import Any, TypeAlias

from .._converter import extra_fields_field, register_structure_hook

__all__ = ["JSONContainer", "extra_fields_field"]

#: A JSON object or array (PostHog's `JSONField`s that reject scalars, and store null as
#: `{}`: a null read from PostHog is `{}` too).
JSONContainer: TypeAlias = dict[str, Any] | list[Any]


def _structure_json_container(value: Any, _: Any) -> dict[str, Any] | list[Any]:
    if isinstance(value, (dict, list)):
        return value
    if value is None:
        return {}
    raise TypeError(f"expected a JSON object or array, got {type(value).__name__}")


register_structure_hook(JSONContainer, _structure_json_container)
