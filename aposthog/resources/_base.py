"""What every resource shares: a reference to the client, and argument checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

# The checks live in one pure module; re-exported here for the resources that import them.
from ._checks import check_json_container, check_paging, check_str

if TYPE_CHECKING:
    from .._client import Client

__all__ = ["Resource", "check_json_container", "check_paging", "check_str"]


class Resource:
    """A group of endpoints under one path segment; holds no HTTP details."""

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"
