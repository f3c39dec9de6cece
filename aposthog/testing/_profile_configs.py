"""
FakePostHog's customer profile configs, as PostHog's newest `CustomerProfileConfigViewSet`
behaves (`products/customer_analytics/backend/presentation/views/views.py`, which reaches
the data through the product's facade).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ._loopback import ServerReply
from ._wire import (
    FakeRequest,
    HTTPError,
    Route,
    empty,
    iso,
    json_reply,
    now,
    offset_page,
    validation_error,
)

if TYPE_CHECKING:
    from ._fake import FakePostHog

__all__ = ["ROUTES"]

SCOPES = ("person", "group_0", "group_1", "group_2", "group_3", "group_4")


def _not_found() -> HTTPError:
    # The view returns this body itself (`Response({"detail": "Not found."}, 404)`): it never
    # reaches drf-exceptions-hog, so there is no `type`, `code` or `attr`.
    return HTTPError(json_reply(404, {"detail": "Not found."}))


def _validate(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """
    The serializer's checks, in field order (scope, content, sidebar); the first error wins
    (drf-exceptions-hog). The result holds only the fields the body sent: the view writes
    no others, on PUT as on PATCH.
    """
    clean: dict[str, Any] = {}
    if "scope" in body:
        scope = body["scope"]
        if scope is None:
            raise validation_error("This field may not be null.", attr="scope", code="null")
        # DRF's ChoiceField looks the value up by str(): "person" only, never 1 or ["person"].
        if str(scope) not in SCOPES:
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


def _as_uuid(text: str) -> uuid.UUID | None:
    # Django's UUIDField reads the pk with uuid.UUID(hex=...): any case, with or without
    # hyphens, braces or a `urn:uuid:` prefix. Anything else is a 404, like an unknown id.
    try:
        return uuid.UUID(hex=text)
    except ValueError:
        return None


def _key(fake: FakePostHog, request: FakeRequest) -> str:
    """The stored config's key for the path's id, or PostHog's bare 404."""
    wanted = _as_uuid(request.params["id"])
    if wanted is None:
        raise _not_found()
    if str(wanted) in fake.customer_profile_configs:
        return str(wanted)
    for key in fake.customer_profile_configs:
        if _as_uuid(key) == wanted:
            return key
    raise _not_found()


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
    return json_reply(200, fake.customer_profile_configs[_key(fake, request)])


async def _update(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    # The body is checked before the id is looked up: a bad body is a 400 even for an
    # unknown id. PUT differs from PATCH only in requiring `scope`; a field the body leaves
    # out keeps its value either way (`_profile_config_write_fields`).
    clean = _validate(request.body(), partial=request.method == "PATCH")
    config = fake.customer_profile_configs[_key(fake, request)]
    config.update(clean)
    config["updated_at"] = iso(now())  # saved even when nothing changed
    return json_reply(200, config)


async def _destroy(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    del fake.customer_profile_configs[_key(fake, request)]
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
