"""ph.customer_profile_configs against FakePostHog: every route, its wire format and errors."""

from __future__ import annotations

import pytest

import aposthog
from aposthog.models import CustomerProfileConfig, ProfileScope
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio


async def test_create_returns_201_record_with_defaults(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """create() with only a scope: content and sidebar default to {}; timestamps are aware."""
    config = await ph.customer_profile_configs.create(scope=ProfileScope.GROUP_2)

    assert isinstance(config, CustomerProfileConfig)
    assert ("group_2", {}, {}) == (config.scope, config.content, config.sidebar)
    assert config.created_at.tzinfo is not None
    assert ("POST", {"scope": "group_2"}) == (fake.requests[-1].method, fake.requests[-1].json())


@pytest.mark.parametrize("scope", ["person", "group_0", "group_1", "group_2", "group_3", "group_4"])
async def test_every_scope(ph: aposthog.Client, scope: str) -> None:
    """Each of PostHog's scopes is accepted and comes back as the enum member."""
    config = await ph.customer_profile_configs.create(scope=scope, content=[1, 2])
    assert ProfileScope(scope) is config.scope
    assert [1, 2] == config.content


async def test_get_update_replace_delete(fake: FakePostHog, ph: aposthog.Client) -> None:
    """The full lifecycle: get, PATCH some fields, PUT all, DELETE (204), then 404."""
    created = await ph.customer_profile_configs.create(scope="person", content={"a": 1})

    got = await ph.customer_profile_configs.get(created.id)
    assert created.id == got.id

    patched = await ph.customer_profile_configs.update(created.id, sidebar={"pinned": ["plan"]})
    assert ({"a": 1}, {"pinned": ["plan"]}) == (patched.content, patched.sidebar)
    assert ("PATCH", {"sidebar": {"pinned": ["plan"]}}) == (
        fake.requests[-1].method,
        fake.requests[-1].json(),
    )

    replaced = await ph.customer_profile_configs.replace(created.id, scope="group_0")
    assert ("group_0", {}, {}) == (replaced.scope, replaced.content, replaced.sidebar)
    assert "PUT" == fake.requests[-1].method

    assert await ph.customer_profile_configs.delete(created.id) is None
    with pytest.raises(aposthog.NotFoundError):
        await ph.customer_profile_configs.get(created.id)
    assert {} == fake.customer_profile_configs


async def test_null_content_comes_back_as_empty_object(ph: aposthog.Client) -> None:
    """PostHog stores a null content or sidebar as {}."""
    config = await ph.customer_profile_configs.create(scope="person", content={"x": 1})
    updated = await ph.customer_profile_configs.update(config.id, content=None)
    assert {} == updated.content


async def test_validation_errors_are_bad_requests(ph: aposthog.Client) -> None:
    """PostHog's validation errors arrive as BadRequestError with code, detail and attr."""
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.customer_profile_configs.create(scope="quick")
    assert ("invalid_choice", "scope") == (info.value.code, info.value.attr)
    assert '"quick" is not a valid choice.' == info.value.detail

    config = await ph.customer_profile_configs.create(scope="person")
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.customer_profile_configs.replace(config.id, scope="")
    assert "invalid_choice" == info.value.code


async def test_wrong_argument_types_fail_before_sending(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A scalar content or a non-string scope is a TypeError, and nothing is sent."""
    with pytest.raises(TypeError, match="content"):
        await ph.customer_profile_configs.create(scope="person", content=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scope"):
        await ph.customer_profile_configs.create(scope=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        ph.customer_profile_configs.list(limit=0)
    assert [] == fake.requests


async def test_ids_are_percent_encoded(fake: FakePostHog, ph: aposthog.Client) -> None:
    """An id like ../x stays inside its segment: it cannot reach another route."""
    with pytest.raises(aposthog.NotFoundError):
        await ph.customer_profile_configs.delete("../x")
    assert "/api/environments/1/customer_profile_configs/..%2Fx/" == fake.requests[-1].path


async def test_list_pages_with_limit_and_offset(fake: FakePostHog, ph: aposthog.Client) -> None:
    """limit and offset go on the query string; the page reports PostHog's count."""
    for _ in range(3):
        await ph.customer_profile_configs.create(scope="person")
    page = await ph.customer_profile_configs.list(limit=1, offset=1)
    assert (1, 3) == (len(page.results), page.count)
    assert (("limit", "1"), ("offset", "1")) == fake.requests[-1].query


async def test_scoped_keys(fake: FakePostHog) -> None:
    """A read-only key can list but not create (403 naming the missing scope)."""
    key = fake.add_key(scopes=["customer_profile_config:read"])
    async with fake.client(api_key=key) as ph:
        await ph.customer_profile_configs.list()
        with pytest.raises(aposthog.PermissionDeniedError) as info:
            await ph.customer_profile_configs.create(scope="person")
    assert "API key missing required scope 'customer_profile_config:write'" == info.value.detail
