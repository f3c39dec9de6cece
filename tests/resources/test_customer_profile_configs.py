"""ph.customer_profile_configs against FakePostHog: every route, its wire format and errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import aposthog
from aposthog.models import CustomerProfileConfig, ProfileScope
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

#: A well-formed id nothing is stored under.
MISSING = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


async def test_create_returns_201_record_with_defaults(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """create() with only a scope: content and sidebar default to {}; timestamps are aware."""
    config = await ph.customer_profile_configs.create(scope=ProfileScope.GROUP_2)

    assert isinstance(config, CustomerProfileConfig)
    assert ("group_2", {}, {}) == (config.scope, config.content, config.sidebar)
    assert config.created_at.tzinfo is not None
    assert config.updated_at is not None  # saved once already: not null from the start
    assert str(uuid.UUID(config.id)) == config.id  # DRF's UUIDField: hyphenated, lower case
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

    assert await ph.customer_profile_configs.delete(created.id) is None  # type: ignore[func-returns-value]
    with pytest.raises(aposthog.NotFoundError):
        await ph.customer_profile_configs.get(created.id)
    assert {} == fake.customer_profile_configs


async def test_null_content_comes_back_as_empty_object(ph: aposthog.Client) -> None:
    """PostHog stores a null content or sidebar as {}."""
    config = await ph.customer_profile_configs.create(scope="person", content={"x": 1})
    updated = await ph.customer_profile_configs.update(config.id, content=None)
    assert {} == updated.content


async def test_scopes_are_checked_before_sending(fake: FakePostHog, ph: aposthog.Client) -> None:
    """PostHog's scopes are a closed set: another is refused with the valid ones listed."""
    with pytest.raises(ValueError, match="scope must be one of person, group_0") as info:
        await ph.customer_profile_configs.create(scope="quick")
    assert "'quick'" in str(info.value)
    with pytest.raises(ValueError, match="scope must be one of"):
        await ph.customer_profile_configs.update(MISSING, scope="")
    assert fake.requests == []
    config = await ph.customer_profile_configs.create(scope="Group_1")
    assert "group_1" == config.scope
    assert "group_1" == fake.requests[-1].json()["scope"]


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


@pytest.mark.parametrize("method", ["get", "update", "replace", "delete"])
async def test_ids_must_be_uuids(fake: FakePostHog, ph: aposthog.Client, method: str) -> None:
    """An id like ../x is refused before sending by every method: config ids are UUIDs."""
    call = getattr(ph.customer_profile_configs, method)
    kwargs = {"scope": "person"} if method == "replace" else {}
    with pytest.raises(ValueError, match="id must be a UUID"):
        await call("../x", **kwargs)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("list", {}),
        ("create", {"scope": "person"}),
        ("get", {"id": MISSING}),
        ("update", {"id": MISSING}),
        ("replace", {"id": MISSING, "scope": "person"}),
        ("delete", {"id": MISSING}),
    ],
)
async def test_a_bad_timeout_fails_before_sending(
    fake: FakePostHog, ph: aposthog.Client, method: str, args: dict[str, Any]
) -> None:
    """Every method hands its timeout on: 0 is refused, and nothing is sent."""
    with pytest.raises(ValueError, match=r"^timeout must be a positive number"):
        await getattr(ph.customer_profile_configs, method)(**args, timeout=0)
    assert fake.requests == []


async def test_list_pages_with_limit_and_offset(fake: FakePostHog, ph: aposthog.Client) -> None:
    """limit and offset go on the query string; the page reports PostHog's count."""
    for _ in range(3):
        await ph.customer_profile_configs.create(scope="person")
    page = await ph.customer_profile_configs.list(limit=1, offset=1)
    assert (1, 3) == (len(page.results), page.count)
    assert (("limit", "1"), ("offset", "1")) == fake.requests[-1].query


async def test_list_follows_the_fakes_page_size(fake: FakePostHog, ph: aposthog.Client) -> None:
    """Without limit the fake's page size applies, and the paginator follows `next`."""
    fake.page_size = 2
    created = [await ph.customer_profile_configs.create(scope="person") for _ in range(3)]
    first = await ph.customer_profile_configs.list()
    assert (2, 3, True) == (len(first.results), first.count, first.has_next_page())
    every = await ph.customer_profile_configs.list().to_list()
    assert [c.id for c in created] == [c.id for c in every]


async def test_scoped_keys(fake: FakePostHog, ph: aposthog.Client) -> None:
    """
    A read-only key can list and get but not create, update, replace or delete (403
    naming the missing scope); a key without the config scope cannot even get.
    """
    stored = await ph.customer_profile_configs.create(scope="person")
    key = fake.add_key(scopes=["customer_profile_config:read"])
    async with fake.client(api_key=key, max_retries=0) as reader:
        await reader.customer_profile_configs.list()
        assert stored.id == (await reader.customer_profile_configs.get(stored.id)).id
        writes = [
            reader.customer_profile_configs.create(scope="person"),
            reader.customer_profile_configs.update(stored.id, content=[1]),
            reader.customer_profile_configs.replace(stored.id, scope="person"),
            reader.customer_profile_configs.delete(stored.id),
        ]
        for write in writes:
            with pytest.raises(aposthog.PermissionDeniedError) as info:
                await write
            expected = "API key missing required scope 'customer_profile_config:write'"
            assert expected == info.value.detail
    other = fake.add_key(scopes=["batch_export:read"])
    async with fake.client(api_key=other, max_retries=0) as outsider:
        with pytest.raises(aposthog.PermissionDeniedError) as info:
            await outsider.customer_profile_configs.get(stored.id)
    assert "API key missing required scope 'customer_profile_config:read'" == info.value.detail
    assert [stored.id] == list(fake.customer_profile_configs)
    assert {} == fake.customer_profile_configs[stored.id]["content"]


async def test_replace_clears_what_it_leaves_out(fake: FakePostHog, ph: aposthog.Client) -> None:
    """PostHog's PUT keeps omitted fields, so replace() sends content/sidebar as null ({})."""
    created = await ph.customer_profile_configs.create(
        scope="person", content={"a": 1}, sidebar=[1]
    )
    replaced = await ph.customer_profile_configs.replace(created.id, scope="group_1", sidebar=[2])
    assert {"scope": "group_1", "content": None, "sidebar": [2]} == fake.requests[-1].json()
    assert ("group_1", {}, [2]) == (replaced.scope, replaced.content, replaced.sidebar)


@pytest.mark.parametrize("method", ["get", "update", "replace", "delete"])
async def test_a_missing_id_is_not_found_with_posthogs_bare_body(
    ph: aposthog.Client, method: str
) -> None:
    """The view answers {"detail": "Not found."} itself: the error has a detail and no code."""
    call = getattr(ph.customer_profile_configs, method)
    kwargs = {"scope": "person"} if method == "replace" else {}
    with pytest.raises(aposthog.NotFoundError) as info:
        await call(MISSING, **kwargs)
    assert ("Not found.", None, None) == (info.value.detail, info.value.code, info.value.type)
    assert {"detail": "Not found."} == info.value.body


async def test_an_int_json_cannot_write_is_refused_by_name_unsent(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `check_json` takes any int, but `json.dumps` cannot write one of more than 4300 digits
    (Python's int-to-str limit): the call fails while the body is encoded with "Exceeds
    the limit (4300 digits) for integer string conversion", a ValueError that does not
    name `content` (nothing is sent, at least).
    """
    with pytest.raises(ValueError, match="content"):
        await ph.customer_profile_configs.create(scope="person", content={"n": 10**5000})
    assert fake.requests == []


async def test_a_listed_config_with_null_content_does_not_break_the_list() -> None:
    """
    PostHog's schema has `content` and `sidebar` nullable (posthog-api.md §4): one such
    row must not make list() (every config of the environment) fail.
    """
    from aiohttp import web

    from ..web_server import serve

    def record(i: int, content: Any) -> dict[str, Any]:
        return {
            "id": f"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5{i}",
            "scope": "person",
            "content": content,
            "sidebar": {},
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": None,
        }

    async def handler(request: web.Request) -> web.Response:
        results = [record(0, {"a": 1}), record(1, None)]
        return web.json_response({"count": 2, "next": None, "previous": None, "results": results})

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph,
    ):
        configs = await ph.customer_profile_configs.list().to_list()
    assert [{"a": 1}, {}] == [c.content for c in configs]
