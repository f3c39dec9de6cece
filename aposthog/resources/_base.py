"""What every resource shares: the client view's `Api`, and argument checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

# The checks live in one pure module; re-exported here for the resources that import them.
from ._checks import check_json_container, check_paging, check_str

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
