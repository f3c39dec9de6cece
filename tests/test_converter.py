"""The converter: aware datetimes, open enums, unknown fields kept, errors with JSON paths."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aposthog
from aposthog._converter import (
    converter,
    parse_datetime,
    structure,
    structure_records,
    unstructure,
)
from aposthog.models import CustomerProfileConfig, ProfileScope

from .strategies import records

CONFIG = {
    "id": "7b0c",
    "scope": "person",
    "content": {"a": 1},
    "sidebar": [],
    "created_at": "2024-05-01T12:00:00.123456Z",
    "updated_at": None,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)),
        ("2024-05-01T12:00:00.5+00:00", dt.datetime(2024, 5, 1, 12, 0, 0, 500000, dt.timezone.utc)),
        (
            "2024-05-01 12:00:00.123456789",
            dt.datetime(2024, 5, 1, 12, 0, 0, 123456, dt.timezone.utc),
        ),
        ("2024-05-01T14:00:00+0200", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)),
        ("2024-05-01", dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)),
    ],
)
def test_timestamps_become_aware_datetimes(text: str, expected: dt.datetime) -> None:
    """Every timestamp shape PostHog sends becomes a timezone-aware datetime."""
    parsed = parse_datetime(text)
    assert parsed.tzinfo is not None
    assert expected == parsed


def test_unknown_fields_and_enum_values_survive() -> None:
    """A newer PostHog's extra field and scope decode, and stay reachable."""
    body = {**CONFIG, "scope": "group_9", "pinned_properties": ["email"]}
    config = structure(body, CustomerProfileConfig)
    assert "group_9" == config.scope
    assert {"pinned_properties": ["email"]} == config.extra_fields
    assert body == unstructure(config) | {"created_at": body["created_at"]}


def test_known_enum_values_are_members() -> None:
    """A known value is the enum member, which still equals its string."""
    config = structure(CONFIG, CustomerProfileConfig)
    assert ProfileScope.PERSON is config.scope
    assert "person" == config.scope


def test_bad_body_names_the_path_of_the_bad_field() -> None:
    """A field that does not fit raises ResponseDecodeError naming $.results[i].field."""
    results: list[dict[str, Any]] = [dict(CONFIG) for _ in range(5)]
    results[3]["created_at"] = "yesterday"
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure(results, list[CustomerProfileConfig], path="$.results", request_path="/p/")
    assert ("$.results[3].created_at",) == info.value.paths
    assert "$.results[3].created_at" in str(info.value)
    assert "/p/" in str(info.value)


@given(st.lists(records(CustomerProfileConfig), max_size=4), st.integers(0, 3))
def test_structure_records_matches_structure(
    configs: list[CustomerProfileConfig], bad: int
) -> None:
    """Page results: the same records as `structure(list[...])`, the same error if one is bad."""
    wire = json.loads(json.dumps([unstructure(c) for c in configs]))
    assert configs == structure_records(wire, CustomerProfileConfig)
    if bad >= len(wire):
        return
    wire[bad]["created_at"] = "yesterday"
    errors = []
    for call in (
        lambda: structure_records(
            wire, CustomerProfileConfig, path="$.results", request_path="/p/"
        ),
        lambda: structure(wire, list[CustomerProfileConfig], path="$.results", request_path="/p/"),
    ):
        with pytest.raises(aposthog.ResponseDecodeError) as info:
            call()
        errors.append((str(info.value), info.value.paths))
    assert errors[0] == errors[1]
    assert (f"$.results[{bad}].created_at",) == errors[0][1]


def test_missing_required_field_is_a_decode_error() -> None:
    """A missing required field is reported with its path, never as a KeyError."""
    body = {k: v for k, v in CONFIG.items() if k != "scope"}
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure(body, CustomerProfileConfig)
    assert ("$.scope",) == info.value.paths


def test_scalar_content_is_a_decode_error() -> None:
    """content must be a JSON object or array."""
    with pytest.raises(aposthog.ResponseDecodeError):
        structure({**CONFIG, "content": 3}, CustomerProfileConfig)


def test_package_converter_is_not_the_global_one() -> None:
    """aposthog configures its own converter and leaves cattrs' global one alone."""
    import cattrs

    assert converter is not cattrs.global_converter


@given(records(CustomerProfileConfig))
def test_customer_profile_config_round_trips(config: CustomerProfileConfig) -> None:
    """unstructure → JSON → structure gives the same record back."""
    wire = json.loads(json.dumps(unstructure(config)))
    assert config == structure(wire, CustomerProfileConfig)


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", None), ("id", 5), ("scope", None), ("created_at", 1714564800)],
)
def test_scalars_are_not_coerced(field: str, value: Any) -> None:
    """A null or a number where PostHog sends a string is an error, never the text "None"."""
    with pytest.raises(aposthog.ResponseDecodeError) as info:
        structure({**CONFIG, field: value}, CustomerProfileConfig)
    assert (f"$.{field}",) == info.value.paths


def test_strict_int_and_bool_hooks() -> None:
    """bool("false") is True and int(3.7) is 3: the converter refuses both."""
    for value, kind in [("false", bool), (1, bool), (3.7, int), (True, int), ("3", int)]:
        with pytest.raises(aposthog.ResponseDecodeError):
            structure(value, kind)
    assert 2.0 == structure(2, float)
    assert structure(False, bool) is False


def test_structured_records_are_frozen_and_equal_to_constructed_ones() -> None:
    """The generated hook builds the same frozen record as the class's own __init__."""
    import attrs

    config = structure(CONFIG, CustomerProfileConfig)
    built = CustomerProfileConfig(
        id="7b0c",
        scope=ProfileScope.PERSON,
        content={"a": 1},
        sidebar=[],
        created_at=parse_datetime("2024-05-01T12:00:00.123456Z"),
        updated_at=None,
    )
    assert built == config
    assert {} == dict(config.extra_fields)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.scope = "group_0"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.extra_fields["x"] = 1  # type: ignore[index]
