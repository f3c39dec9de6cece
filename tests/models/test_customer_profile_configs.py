"""Customer profile config records: PostHog's bodies, its defaults and its JSON fields."""

from __future__ import annotations

from typing import Any

import pytest

from aposthog._converter import structure
from aposthog._errors import ResponseDecodeError
from aposthog.models import CustomerProfileConfig, ProfileScope

BODY: dict[str, Any] = {
    "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    "scope": "group_4",
    "created_at": "2024-05-01T10:00:00Z",
}


def test_a_body_without_content_or_sidebar_has_empty_objects() -> None:
    """PostHog stores null as `{}`: a body that leaves them out decodes the same way."""
    config: CustomerProfileConfig = structure(BODY, CustomerProfileConfig)
    assert ({}, {}, None) == (config.content, config.sidebar, config.updated_at)
    assert ProfileScope.GROUP_4 is config.scope
    assert "group_4" == str(config.scope)


@pytest.mark.parametrize("value", [{"a": [1]}, [1, {"b": 2}], []])
def test_content_and_sidebar_are_json_objects_or_arrays(value: Any) -> None:
    config: CustomerProfileConfig = structure(
        {**BODY, "content": value, "sidebar": value}, CustomerProfileConfig
    )
    assert (value, value) == (config.content, config.sidebar)


@pytest.mark.parametrize("value", ["text", 5, True])
def test_a_scalar_content_or_sidebar_is_a_decode_error(value: Any) -> None:
    """PostHog's `JSONField`s hold objects or arrays: a scalar is a body that does not fit."""
    for field in ("content", "sidebar"):
        with pytest.raises(ResponseDecodeError, match=field):
            structure({**BODY, field: value}, CustomerProfileConfig)


@pytest.mark.parametrize("field", ["content", "sidebar"])
def test_a_null_content_or_sidebar_reads_as_an_empty_object(field: str) -> None:
    """
    posthog-api.md §4: `content`/`sidebar` are "JSON object or array | null" (a row stored
    with NULL is returned as null). The client's own rule is null == `{}`; a null must not
    make the record (and so every page holding it) unreadable.
    """
    config: CustomerProfileConfig = structure({**BODY, field: None}, CustomerProfileConfig)
    assert {} == getattr(config, field)
