"""What every resource shares: the client view's `Api`, and argument checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._api import Api

__all__ = ["Resource", "check_json_container", "check_paging", "check_str"]


class Resource:
    """A group of endpoints under one path segment; holds no HTTP details."""

    __slots__ = ("_api",)

    def __init__(self, api: Api) -> None:
        self._api = api

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._api.config.base_url}>"


def check_str(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise TypeError unless `value` is a str (or None when allowed)."""
    if value is None and allow_none:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")


def check_json_container(name: str, value: Any) -> None:
    """Raise TypeError unless `value` is a dict, a list or None (PostHog rejects scalars)."""
    if value is not None and not isinstance(value, (dict, list)):
        raise TypeError(f"{name} must be a dict, a list or None, got {type(value).__name__}")


def check_paging(
    limit: int | None, offset: int | None = None, *, max_limit: int | None = None
) -> None:
    """Raise TypeError/ValueError for a limit or offset PostHog would reject."""
    for name, value, low in (("limit", limit, 1), ("offset", offset, 0)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if max_limit is not None and limit is not None and limit > max_limit:
        raise ValueError(f"limit must be between 1 and {max_limit}, got {limit}")
