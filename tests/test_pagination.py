"""Pages and paginators: limit/offset and cursor pages, resuming from a saved `next`."""

from __future__ import annotations

from typing import Any

import pytest

import aposthog
from aposthog._pagination import parse_page
from aposthog.models import CustomerProfileConfig
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio


def _config(i: int) -> dict[str, Any]:
    return {
        "id": f"id-{i:03d}",
        "scope": "person",
        "content": {"i": i},
        "sidebar": {},
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": None,
    }


def _seed(fake: FakePostHog, n: int) -> None:
    for i in range(n):
        fake.customer_profile_configs[f"id-{i:03d}"] = _config(i)


def test_parse_offset_and_cursor_pages() -> None:
    """Both page shapes split into results, count (None for cursor pages), next and previous."""
    offset = {
        "count": 3,
        "next": "https://h/a/?offset=1",
        "previous": None,
        "results": [_config(0)],
    }
    cursor = {"next": None, "previous": "https://h/a/?cursor=x", "results": []}

    results, count, next_url, previous = parse_page(offset, list[CustomerProfileConfig])
    assert (1, 3, "https://h/a/?offset=1", None) == (len(results), count, next_url, previous)
    assert ([], None, None, "https://h/a/?cursor=x") == parse_page(
        cursor, list[CustomerProfileConfig]
    )


@pytest.mark.parametrize(
    "body",
    [[], {"count": 1}, {"results": {}}, {"results": [], "count": "3"}, {"results": [], "next": 3}],
)
def test_bad_pages_are_decode_errors(body: Any) -> None:
    """A body that is not a page raises ResponseDecodeError."""
    with pytest.raises(aposthog.ResponseDecodeError):
        parse_page(body, list[CustomerProfileConfig])


async def test_iterating_follows_next_across_pages(fake: FakePostHog, ph: aposthog.Client) -> None:
    """`async for` yields every record, page after page, following the absolute next URLs."""
    _seed(fake, 7)
    ids = [c.id async for c in ph.customer_profile_configs.list(limit=3)]
    assert [f"id-{i:03d}" for i in range(7)] == ids
    assert 3 == len(fake.requests)


async def test_awaiting_gives_the_first_page(fake: FakePostHog, ph: aposthog.Client) -> None:
    """`await paginator` is the first Page, with count, next and next_page()."""
    _seed(fake, 5)
    page = await ph.customer_profile_configs.list(limit=2)
    assert (2, 5, True) == (len(page.results), page.count, page.has_next_page())
    second = await page.next_page()
    third = await second.next_page()
    assert ["id-004"] == [c.id for c in third]
    assert not third.has_next_page()
    with pytest.raises(LookupError):
        await third.next_page()


async def test_pages_iterates_page_objects(fake: FakePostHog, ph: aposthog.Client) -> None:
    """`.pages()` yields Page objects in order."""
    _seed(fake, 5)
    sizes = [len(page) async for page in ph.customer_profile_configs.list(limit=2).pages()]
    assert [2, 2, 1] == sizes


async def test_nothing_is_sent_until_awaited_or_iterated(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Creating a paginator sends nothing."""
    paginator = ph.customer_profile_configs.list()
    assert [] == fake.requests
    assert [] == await paginator.to_list()
    assert 1 == len(fake.requests)


async def test_resume_from_a_saved_next_url(fake: FakePostHog) -> None:
    """After a failure, iteration resumes at paginator.next_url without starting over."""
    _seed(fake, 6)
    async with fake.client(max_retries=0) as ph:
        paginator = ph.customer_profile_configs.list(limit=2)
        seen: list[str] = []
        with pytest.raises(aposthog.RateLimitError):
            async for config in paginator:
                seen.append(config.id)
                if len(seen) == 4:
                    fake.throttle_next(1)
        saved = paginator.next_url
        assert saved is not None
        rest = [c.id async for c in ph.customer_profile_configs.list().resume_from(saved)]
    assert [f"id-{i:03d}" for i in range(6)] == seen + rest


async def test_to_list_with_a_limit_stops_early(fake: FakePostHog, ph: aposthog.Client) -> None:
    """to_list(limit=n) stops fetching once it has n records."""
    _seed(fake, 9)
    configs = await ph.customer_profile_configs.list(limit=2).to_list(limit=3)
    assert 3 == len(configs)
    assert 2 == len(fake.requests)
