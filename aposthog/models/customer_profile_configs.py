"""Customer profile configs: which properties a person's or group's profile page shows."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

import attrs

from ._common import JSONContainer, extra_fields_field

__all__ = ["CustomerProfileConfig", "ProfileScope"]


class ProfileScope(str, enum.Enum):
    """
    Whose profile a config applies to. Compare with plain strings freely: members are strs.

    A scope a newer PostHog adds arrives as its plain string.
    """

    PERSON = "person"
    GROUP_0 = "group_0"
    GROUP_1 = "group_1"
    GROUP_2 = "group_2"
    GROUP_3 = "group_3"
    GROUP_4 = "group_4"

    def __str__(self) -> str:
        return self.value


@attrs.frozen(kw_only=True, weakref_slot=False)
class CustomerProfileConfig:
    """
    A customer profile config.

    Attributes:
        id: the config's UUID.
        scope: `ProfileScope` member (or the string of a scope this version does not know).
        content: a JSON object or array (PostHog stores `null` as `{}`).
        sidebar: a JSON object or array (PostHog stores `null` as `{}`).
        created_at: when it was created (timezone-aware).
        updated_at: when it was last changed, or None.
        extra_fields: fields PostHog sent that this version does not know.
    """

    id: str
    scope: ProfileScope | str
    content: JSONContainer = attrs.field(factory=dict)
    sidebar: JSONContainer = attrs.field(factory=dict)
    created_at: dt.datetime
    updated_at: dt.datetime | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()
