"""`ph.customer_profile_configs`: plain CRUD under `customer_profile_configs/`."""

from __future__ import annotations

import uuid
from typing import Any

from .. import _routes as routes
from .._client import NOT_GIVEN, NotGiven
from .._pagination import AsyncPaginator
from ..models.customer_profile_configs import CustomerProfileConfig, ProfileScope
from ._base import Resource, check_json_container, check_paging
from ._checks import choice, uuid_segment

__all__ = ["CustomerProfileConfigs"]

Timeout = float | None | NotGiven
JSONArg = dict[str, Any] | list[Any] | None
_SCOPES = tuple(scope.value for scope in ProfileScope)


def _body(
    *,
    scope: ProfileScope | str | NotGiven,
    content: Any,
    sidebar: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if not isinstance(scope, NotGiven):
        # A closed set on PostHog's side: anything else is a 400 there.
        body["scope"] = choice("scope", scope, _SCOPES)
    for name, value in (("content", content), ("sidebar", sidebar)):
        if not isinstance(value, NotGiven):
            check_json_container(name, value)
            body[name] = value
    return body


class CustomerProfileConfigs(Resource):
    """
    Customer profile configs (`/api/environments/<project>/customer_profile_configs/`).

    Example:
        ```python
        config = await ph.customer_profile_configs.create(
            scope="person", content={"properties": ["email", "plan"]}
        )
        config = await ph.customer_profile_configs.update(config.id, sidebar={"pinned": ["plan"]})
        await ph.customer_profile_configs.delete(config.id)
        ```
    """

    __slots__ = ()

    def list(
        self, *, limit: int | None = None, offset: int | None = None, timeout: Timeout = NOT_GIVEN
    ) -> AsyncPaginator[CustomerProfileConfig]:
        """
        Every config of the environment, page after page (PostHog's pages hold 100).

        Example:
            ```python
            async for config in ph.customer_profile_configs.list():
                print(config.scope, config.content)
            ```
        """
        params = None
        if limit is not None or offset is not None:
            check_paging(limit, offset)
            params = {"limit": limit, "offset": offset}
        return self._api.paginate(
            CustomerProfileConfig, routes.PROFILE_CONFIGS, params=params, timeout=timeout
        )

    async def create(
        self,
        *,
        scope: ProfileScope | str,
        content: JSONArg = None,
        sidebar: JSONArg = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> CustomerProfileConfig:
        """Create a config (`content`/`sidebar` left out or None are stored as `{}`)."""
        body = _body(
            scope=scope,
            content=NOT_GIVEN if content is None else content,
            sidebar=NOT_GIVEN if sidebar is None else sidebar,
        )
        return await self._api.fetch(
            CustomerProfileConfig, routes.PROFILE_CONFIG_CREATE, json=body, timeout=timeout
        )

    async def get(
        self, id: str | uuid.UUID, *, timeout: Timeout = NOT_GIVEN
    ) -> CustomerProfileConfig:
        """Fetch one config (`NotFoundError` if it does not exist in this environment)."""
        return await self._api.fetch(
            CustomerProfileConfig,
            routes.PROFILE_CONFIG_GET,
            uuid_segment("id", id),
            timeout=timeout,
        )

    async def update(
        self,
        id: str | uuid.UUID,
        *,
        scope: ProfileScope | str | NotGiven = NOT_GIVEN,
        content: JSONArg | NotGiven = NOT_GIVEN,
        sidebar: JSONArg | NotGiven = NOT_GIVEN,
        timeout: Timeout = NOT_GIVEN,
    ) -> CustomerProfileConfig:
        """Change the given fields only (PATCH); the others keep their values."""
        body = _body(scope=scope, content=content, sidebar=sidebar)
        return await self._api.fetch(
            CustomerProfileConfig,
            routes.PROFILE_CONFIG_UPDATE,
            uuid_segment("id", id),
            json=body,
            timeout=timeout,
        )

    async def replace(
        self,
        id: str | uuid.UUID,
        *,
        scope: ProfileScope | str,
        content: JSONArg = None,
        sidebar: JSONArg = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> CustomerProfileConfig:
        """
        Replace the whole config (PUT): `content` and `sidebar` left out become `{}`.

        They are sent as null, which PostHog stores as `{}`: PostHog's PUT itself keeps a
        field the body leaves out, so this method always sends all three.
        """
        body = _body(scope=scope, content=content, sidebar=sidebar)
        return await self._api.fetch(
            CustomerProfileConfig,
            routes.PROFILE_CONFIG_REPLACE,
            uuid_segment("id", id),
            json=body,
            timeout=timeout,
        )

    async def delete(self, id: str | uuid.UUID, *, timeout: Timeout = NOT_GIVEN) -> None:
        """
        Delete a config for good (PostHog answers 204).

        `NotFoundError` for an unknown id; a retry that finds the config gone after an
        attempt PostHog may have carried out (its answer lost) is the delete's success.
        """
        await self._api.request_json(
            routes.PROFILE_CONFIG_DELETE, uuid_segment("id", id), timeout=timeout
        )
