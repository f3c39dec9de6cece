"""FakePostHog's customer profile configs, as `CustomerProfileConfigViewSet` behaves."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ._loopback import ServerReply
from ._wire import (
    FakeRequest,
    Route,
    empty,
    iso,
    json_reply,
    not_found,
    now,
    offset_page,
    validation_error,
)

if TYPE_CHECKING:
    from ._fake import FakePostHog

__all__ = ["ROUTES"]

SCOPES = ("person", "group_0", "group_1", "group_2", "group_3", "group_4")
_FIELDS = ("scope", "content", "sidebar")


def _validate(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """The serializer's checks, in field order; the first error wins (drf-exceptions-hog)."""
    clean: dict[str, Any] = {}
    if "scope" in body:
        scope = body["scope"]
        if not isinstance(scope, (str, int, float)) or str(scope) not in SCOPES:
            raise validation_error(
                f'"{scope}" is not a valid choice.', attr="scope", code="invalid_choice"
            )
        clean["scope"] = str(scope)
    elif not partial:
        raise validation_error("This field is required.", attr="scope", code="required")
    for name in ("content", "sidebar"):
        if name not in body:
            continue
        value = body[name]
        if value is None:
            clean[name] = {}  # PostHog stores null as {}
        elif isinstance(value, (dict, list)):
            clean[name] = value
        else:
            raise validation_error(f"Invalid value for field '{name}'", attr=name)
    return clean


def _get(fake: FakePostHog, request: FakeRequest) -> dict[str, Any]:
    config = fake.customer_profile_configs.get(request.params["id"])
    if config is None:
        raise not_found()
    return config


async def _list(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    return offset_page(
        request, list(fake.customer_profile_configs.values()), page_size=fake.page_size
    )


async def _create(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    clean = _validate(request.body(), partial=False)
    stamp = iso(now())
    config = {
        "id": str(uuid.uuid4()),
        "scope": clean["scope"],
        "content": clean.get("content", {}),
        "sidebar": clean.get("sidebar", {}),
        "created_at": stamp,
        "updated_at": stamp,
    }
    fake.customer_profile_configs[config["id"]] = config
    return json_reply(201, config)


async def _retrieve(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    return json_reply(200, _get(fake, request))


async def _update(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    config = _get(fake, request)
    partial = request.method == "PATCH"
    clean = _validate(request.body(), partial=partial)
    if not partial:
        # PUT replaces: JSON fields left out fall back to their default, {}.
        clean.setdefault("content", {})
        clean.setdefault("sidebar", {})
    config.update(clean)
    config["updated_at"] = iso(now())
    return json_reply(200, config)


async def _destroy(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    _get(fake, request)
    del fake.customer_profile_configs[request.params["id"]]
    return empty(204)


def _routes() -> list[Route]:
    base = ("customer_profile_configs",)
    item = (*base, "{id}")
    scope = "customer_profile_config"
    return [
        Route("GET", base, _list, scope),
        Route("POST", base, _create, scope),
        Route("GET", item, _retrieve, scope),
        Route("PUT", item, _update, scope),
        Route("PATCH", item, _update, scope),
        Route("DELETE", item, _destroy, scope),
    ]


ROUTES = _routes()
