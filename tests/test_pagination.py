"""Pages and paginators: limit/offset and cursor pages, resuming from a saved `next`."""

from __future__ import annotations

import datetime
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from aiohttp import web

import aposthog
from aposthog._pagination import Unbuilt, new_raw_page, parse_page, parse_raw_page
from aposthog.models import CustomerProfileConfig
from aposthog.testing import FakePostHog

from .test_key_secrecy import QUOTED, _graph, printed_with_locals
from .web_server import serve

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
    cursor: dict[str, Any] = {"next": None, "previous": "https://h/a/?cursor=x", "results": []}

    results, count, next_url, previous = parse_page(offset, list[CustomerProfileConfig])
    assert (1, 3, "https://h/a/?offset=1", None) == (len(results), count, next_url, previous)
    assert ([], None, None, "https://h/a/?cursor=x") == parse_page(
        cursor, list[CustomerProfileConfig]
    )


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"count": 1},
        {"results": {}},
        {"results": [], "count": "3"},
        {"results": [], "count": True},
        {"results": [], "next": 3},
        {"results": [], "next": "https://h/a b/?offset=1"},
        {"results": [], "next": "https://h/a/?offset=1\x00"},
        {"results": [], "next": "https://h/\u00e9/"},
        {"results": [], "next": "http://[::1/x"},
        {"results": [], "previous": 3},
    ],
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
        seen, saved = await _read_until_throttled(fake, ph, after=4)
        rest = [c.id async for c in ph.customer_profile_configs.list().resume_from(saved)]
    assert [f"id-{i:03d}" for i in range(6)] == seen + rest


@pytest.mark.parametrize("ahead", [0, 2])
async def test_a_pages_loop_that_fails_on_a_page_resumes_at_that_page(
    fake: FakePostHog, ahead: int
) -> None:
    """
    A batch job handles a page and fails partway through it. `next_url` named the page
    after it, so resuming from it dropped the rest of the page in hand, though the
    README promises "skipping nothing". As for a records loop, the page in hand comes
    again; once the loop asks for the next page, it is done, and a fetch that fails
    then resumes after it.
    """
    _seed(fake, 7)
    async with fake.client(max_retries=0) as ph:
        paginator = ph.customer_profile_configs.list(limit=2).prefetch(ahead)
        handled: list[str] = []
        with pytest.raises(RuntimeError):
            async for page in paginator.pages():
                for config in page:
                    if config.id == "id-003":
                        raise RuntimeError("the handler failed")
                    handled.append(config.id)
        saved = paginator.next_url
        assert saved is not None
        assert saved.endswith("offset=2")  # the page in hand: id-002, id-003
        resumed = ph.customer_profile_configs.list().resume_from(saved)
        rest = [c.id async for page in resumed.pages() for c in page]
        assert ["id-000", "id-001", "id-002"] == handled
        assert [f"id-{i:03d}" for i in range(2, 7)] == rest

        # Asked for the next page, the one in hand is done: a throttled fetch then
        # resumes after it.
        paginator = ph.customer_profile_configs.list(limit=2)
        pages = 0
        with pytest.raises(aposthog.RateLimitError):
            async for _ in paginator.pages():
                pages += 1
                if pages == 2:
                    fake.throttle_next(1)
        assert 2 == pages
        assert (paginator.next_url or "").endswith("offset=4")


async def _read_until_throttled(
    fake: FakePostHog, ph: aposthog.Client, *, after: int
) -> tuple[list[str], str]:
    """
    Read a list of configs in pages of 2 until PostHog throttles the page after the
    first `after` records: the ids read, and the paginator's `next_url` then.
    """
    paginator = ph.customer_profile_configs.list(limit=2)
    seen: list[str] = []
    with pytest.raises(aposthog.RateLimitError):
        async for config in paginator:
            seen.append(config.id)
            if len(seen) == after:
                fake.throttle_next(1)
    saved = paginator.next_url
    assert saved is not None
    return seen, saved


async def test_to_list_with_a_limit_stops_early(fake: FakePostHog, ph: aposthog.Client) -> None:
    """to_list(limit=n) stops fetching once it has n records."""
    _seed(fake, 9)
    configs = await ph.customer_profile_configs.list(limit=2).to_list(limit=3)
    assert 3 == len(configs)
    assert 2 == len(fake.requests)


# ----------------------------------------------------------------- hostile pages


async def _collect(paginator: Any, how: str) -> list[Any]:
    if how == "to_list":
        return list(await paginator.to_list())
    if how == "next_page":  # the pages walked by hand, as `Page`'s docstring does
        page = await paginator
        records = list(page.results)
        while page.has_next_page():
            page = await page.next_page()
            records += page.results
        return records
    if how == "prefetch":
        paginator = paginator.prefetch(3)
    return [record async for record in paginator]


def _configs(
    ph: aposthog.Client, url: str, start: str, *, resumed_at: str
) -> aposthog.AsyncPaginator[CustomerProfileConfig]:
    """The profile configs' list, from its first page or (`start`) resumed at a saved URL."""
    paginator = ph.customer_profile_configs.list()
    if start == "resumed with #skip":
        paginator = paginator.resume_from(
            f"{url}/api/environments/1/customer_profile_configs/{resumed_at}"
        )
    return paginator


@pytest.mark.parametrize("how", ["async for", "prefetch", "to_list"])
@pytest.mark.parametrize("stuck", ["own url", "cursor stops", "other host", "offset stops"])
async def test_a_next_that_repeats_a_fetched_page_is_a_decode_error(how: str, stuck: str) -> None:
    """A `next` naming a page already fetched ends the iteration instead of looping forever."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        body: dict[str, Any] = {"previous": None, "results": [_config(len(hits))]}
        if stuck == "own url":
            body["next"] = str(request.url)
        elif stuck == "cursor stops":  # moves once, then repeats
            body["next"] = str(
                request.url.with_query(cursor="b" if "cursor" in request.query else "a")
            )
        elif stuck == "other host":  # the same page, each time through another proxy
            body["next"] = f"http://proxy-{len(hits)}.internal{request.path}?cursor=same"
        else:  # a limit/offset list whose pages all point back at offset 1
            body["count"] = 50
            body["next"] = str(request.url.with_query(limit=1, offset=1))
        return web.json_response(body)

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with (
            anyio.fail_after(5),
            pytest.raises(aposthog.ResponseDecodeError, match="already fetched"),
        ):
            await _collect(ph.customer_profile_configs.list(), how)
    # A limit/offset list fetches its planned pages first (at most `count` of them).
    assert len(hits) <= (50 if stuck == "offset stops" else 4)


@pytest.mark.parametrize("how", ["next_page", "async for"])
@pytest.mark.parametrize("start", ["first page", "resumed with #skip"])
async def test_a_next_naming_the_first_page_as_a_project_list_is_a_loop_too(
    how: str, start: str
) -> None:
    """
    PostHog writes `next` under `/api/projects/<id>/` for a list asked for under
    `/api/environments/<id>/`: one list. A `next` naming the first page that way was not
    taken for the page already fetched: it came again, its records handed out twice. So
    was one naming a page resumed at `…#skip=N` (rebuilt without its request). Both are
    refused at once now.
    """
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        path = request.path.replace("/api/environments/", "/api/projects/")
        follow = str(request.url.with_path(path).with_query(request.url.query))
        return web.json_response({"next": follow, "results": [_config(i) for i in range(3)]})

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph,
    ):
        paginator = _configs(ph, url, start, resumed_at="?cursor=1#skip=1")
        with pytest.raises(aposthog.ResponseDecodeError, match="already fetched"):
            await _collect(paginator, how)
    assert 1 == len(hits), hits


async def test_to_list_fetches_as_many_pages_at_once_as_max_concurrency_allows() -> None:
    """
    `to_list()` on a limit/offset list fetches the remaining pages "as many at once as
    the client's `max_concurrency` allows", it says: it planned 64 ahead at most, so a
    client given 80 sent 64 at once.
    """
    active = peak = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            await anyio.sleep(0.05)
        finally:
            active -= 1
        offset = int(request.query.get("offset", "0"))
        follow = str(request.url.with_query(limit=1, offset=offset + 1)) if offset < 99 else None
        return web.json_response({"count": 100, "next": follow, "results": [_config(offset)]})

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_concurrency=80) as ph,
    ):
        with anyio.fail_after(10):
            configs = await ph.customer_profile_configs.list(limit=1).to_list()
    assert [_config(i)["id"] for i in range(100)] == [c.id for c in configs]
    assert 64 < peak <= 80


async def test_a_fragment_in_a_servers_next_is_not_taken_for_a_resume_point() -> None:
    """
    The client never sends a fragment; its own resume points carry one (`#skip=N`, the
    records of a page to skip). A `next` that came with `#skip=3` (a proxy, a server's
    bug) was kept as it was, so a read resumed at it skipped 3 records no one had seen.
    A server's fragment is dropped now: the resumed read misses nothing.
    """

    async def handler(request: web.Request) -> web.Response:
        at = int(request.query.get("cursor", "0"))
        if at == 2 and not failed:
            failed.append(at)
            return web.json_response({"detail": "boom"}, status=500)
        base = request.url.with_query({})
        follow = f"{base}?cursor={at + 1}#skip=3" if at < 3 else None
        return web.json_response(
            {"next": follow, "results": [_config(at * 4 + i) for i in range(4)]}
        )

    failed: list[int] = []
    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph,
    ):
        paginator = ph.customer_profile_configs.list()
        seen: list[str] = []
        with pytest.raises(aposthog.InternalServerError):
            async for config in paginator:
                seen.append(config.id)  # noqa: PERF401 (kept when it raises)
        saved = paginator.next_url
        assert saved is not None
        assert "#" not in saved
        seen += [c.id async for c in ph.customer_profile_configs.list().resume_from(saved)]
    assert [_config(i)["id"] for i in range(16)] == seen


@pytest.mark.parametrize("how", ["async for", "prefetch", "to_list"])
async def test_a_resumed_paginator_knows_its_start_url(how: str) -> None:
    """Resumed at a URL whose page names that URL again: stopped without fetching it twice."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        return web.json_response({"next": str(request.url), "results": [_config(1)]})

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        start = f"{url}/api/environments/1/customer_profile_configs/?cursor=a"
        with anyio.fail_after(5), pytest.raises(aposthog.ResponseDecodeError):
            await _collect(ph.customer_profile_configs.list().resume_from(start), how)
    assert ["/api/environments/1/customer_profile_configs/?cursor=a"] == hits


@pytest.mark.parametrize(
    "next_url",
    [
        "http://x/api/a\x00b/?p=2",
        "http://x/api/a\x0bb/?p=2",
        "http://x/api/a b/?p=2",
        "http://x/api/a\tb/?p=2",
        "http://x/api/\u00e9/?p=2",
        "http://[::1/second",
    ],
)
@pytest.mark.parametrize("how", ["async for", "to_list"])
async def test_a_next_that_is_not_a_request_url_is_a_decode_error(next_url: str, how: str) -> None:
    """Control characters, whitespace, non-ASCII or an unparseable `next`: typed, unsent."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.raw_path)
        return web.json_response({"count": 2, "next": next_url, "results": [_config(1)]})

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with anyio.fail_after(5), pytest.raises(aposthog.ResponseDecodeError, match="not a URL"):
            await _collect(ph.customer_profile_configs.list(), how)
    assert ["/api/environments/1/customer_profile_configs/"] == hits


@pytest.mark.parametrize("limit", [2.5, 3.0, "3", True])
async def test_to_list_rejects_a_limit_that_is_not_an_int(
    fake: FakePostHog, ph: aposthog.Client, limit: Any
) -> None:
    """A TypeError naming `limit`, before anything is sent (a bool is not a count)."""
    _seed(fake, 5)
    with pytest.raises(TypeError, match="limit"):
        await ph.customer_profile_configs.list(limit=1).to_list(limit=limit)
    assert [] == fake.requests


async def test_to_list_rejects_a_negative_limit(fake: FakePostHog, ph: aposthog.Client) -> None:
    """A ValueError naming `limit`; 0 is an empty list, None every record, both unsent/sent."""
    _seed(fake, 5)
    with pytest.raises(ValueError, match="limit"):
        await ph.customer_profile_configs.list().to_list(limit=-1)
    assert [] == await ph.customer_profile_configs.list().to_list(limit=0)
    assert [] == fake.requests
    assert 5 == len(await ph.customer_profile_configs.list().to_list(limit=None))


def test_an_empty_next_or_previous_is_none() -> None:
    """`"next": ""` ends the list like `null` does (nothing would be fetched at "")."""
    body = {"count": 1, "next": "", "previous": "", "results": [_config(0)]}
    results, count, next_url, previous = parse_page(body, list[CustomerProfileConfig])
    assert (1, 1, None, None) == (len(results), count, next_url, previous)


async def test_a_page_carries_its_previous_url(fake: FakePostHog, ph: aposthog.Client) -> None:
    """`page.previous` is None on the first page, and leads back to it from the second."""
    _seed(fake, 5)
    first = await ph.customer_profile_configs.list(limit=2)
    second = await first.next_page()
    assert first.previous is None
    assert second.previous is not None
    back = await ph.customer_profile_configs.list().resume_from(second.previous)
    assert ["id-000", "id-001"] == [c.id for c in back]


async def test_awaiting_a_resumed_paginator_gives_the_page_at_its_url(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """`await paginator.resume_from(url)` is the page at `url`, not the first page."""
    _seed(fake, 6)
    first = await ph.customer_profile_configs.list(limit=2)
    assert first.next is not None
    page = await ph.customer_profile_configs.list().resume_from(first.next)
    assert ["id-002", "id-003"] == [c.id for c in page]


async def test_prefetch_keeps_the_resume_point_and_resume_keeps_prefetch(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """resume_from(url).prefetch(n) starts at url; prefetch(n).resume_from(url) reads ahead."""
    _seed(fake, 20)
    first = await ph.customer_profile_configs.list(limit=2)
    assert first.next is not None
    resumed = ph.customer_profile_configs.list().resume_from(first.next)
    assert [f"id-{i:03d}" for i in range(2, 20)] == [c.id async for c in resumed.prefetch(2)]
    fake.reset_stats()
    pages = ph.customer_profile_configs.list().prefetch(2).resume_from(first.next).pages()
    try:
        page = await pages.__anext__()
        assert ["id-002", "id-003"] == [c.id for c in page]
        with anyio.fail_after(2):
            while len(fake.requests) < 3:  # noqa: ASYNC110 (the page in hand, two ahead)
                await anyio.sleep(0.005)
    finally:
        await pages.aclose()


async def test_to_list_on_a_cursor_list_stops_at_its_limit() -> None:
    """With `limit` reached on a cursor page, to_list() awaits no further page."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        cursor = int(request.query.get("cursor", "0"))
        if cursor >= 4:  # past what to_list(limit=4) needs: a page it must not read
            return web.json_response({"oops": True})
        body = {
            "next": str(request.url.with_query(cursor=str(cursor + 2))),
            "previous": None,
            "results": [_config(cursor), _config(cursor + 1)],
        }
        return web.json_response(body)

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with anyio.fail_after(5):
            got = await ph.customer_profile_configs.list().to_list(limit=4)
    assert [f"id-{i:03d}" for i in range(4)] == [c.id for c in got]
    assert 2 <= len(hits) <= 3  # the third page may have been in flight, never read


async def test_a_next_on_another_host_is_fetched_from_the_configured_one() -> None:
    """PostHog's `next` may name a proxy's host: only its path and query are followed."""
    elsewhere: list[str | None] = []
    hits: list[str] = []

    async def other(request: web.Request) -> web.Response:
        elsewhere.append(request.headers.get("Authorization"))
        return web.json_response({"next": None, "results": []})

    async with serve(other) as other_url:

        async def handler(request: web.Request) -> web.Response:
            hits.append(request.path_qs)
            offset = int(request.query.get("offset", "0"))
            next_url = f"{other_url}{request.path}?offset=1" if offset == 0 else None
            return web.json_response({"next": next_url, "results": [_config(offset)]})

        async with (
            serve(handler) as url,
            aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
        ):
            with anyio.fail_after(5):
                got = [c.id async for c in ph.customer_profile_configs.list()]
    assert ["id-000", "id-001"] == got
    assert [] == elsewhere
    assert ["/api/environments/1/customer_profile_configs/?offset=1"] == hits[1:]


async def test_a_paginator_read_through_prefetch_keeps_its_resume_point(
    fake: FakePostHog,
) -> None:
    """
    DESIGN.md calls `list().prefetch(2)` "the same paginator, fetching up to 2 pages
    ahead", and the README resumes from `paginator.next_url` after a failure: reading
    `paginator` through `.prefetch(n)` must leave that resume point on `paginator`, or
    the rest of the list is silently skipped.
    """
    _seed(fake, 6)
    async with fake.client(max_retries=0) as ph:
        paginator = ph.customer_profile_configs.list(limit=2)
        seen: list[str] = []
        with pytest.raises(aposthog.RateLimitError):
            async for config in paginator.prefetch(1):
                seen.append(config.id)
                if len(seen) == 1:
                    fake.throttle_next(1)  # the page read ahead meets a 429
        saved = paginator.next_url
        assert saved is not None
        rest = [c.id async for c in ph.customer_profile_configs.list().resume_from(saved)]
    assert [f"id-{i:03d}" for i in range(6)] == seen + rest


async def test_a_resumed_paginator_that_fails_at_once_keeps_its_resume_point(
    fake: FakePostHog,
) -> None:
    """
    `resume_from(saved)` is the README's "store it, come back later": a worker that
    resumes and meets another 429 before the first page arrives must still find where
    to resume in `next_url`. It is None there, what a list read to its end says, so
    the README's `if paginator.next_url:` takes the rest of the list as done and drops
    it without an error.
    """
    _seed(fake, 6)
    async with fake.client(max_retries=0) as ph:
        _, saved = await _read_until_throttled(fake, ph, after=2)
        resumed = ph.customer_profile_configs.list().resume_from(saved)
        fake.throttle_next(1)
        with pytest.raises(aposthog.RateLimitError):
            await resumed.to_list()
        assert saved == resumed.next_url


async def test_a_paginator_that_fails_on_its_first_page_resumes_from_the_start(
    fake: FakePostHog,
) -> None:
    """
    Before any page, `next_url` is the first page's URL, its query included: the
    README's `if paginator.next_url:` after a 429 on the very first page resumes the
    whole list, where None took it for read and skipped it all.
    """
    _seed(fake, 5)
    async with fake.client(max_retries=0) as ph:
        paginator = ph.customer_profile_configs.list(limit=2)
        first = paginator.next_url
        assert first == f"{fake.url}/api/environments/1/customer_profile_configs/?limit=2"
        fake.throttle_next(1)
        with pytest.raises(aposthog.RateLimitError):
            await paginator.to_list()
        assert first == paginator.next_url
        before = len(fake.requests)
        rest = await ph.customer_profile_configs.list().resume_from(first).to_list()
        assert [f"id-{i:03d}" for i in range(5)] == [c.id for c in rest]
        assert ("limit", "2") in fake.requests[before].query  # the same pages as before
        read = ph.customer_profile_configs.list(limit=2)
        assert 5 == len(await read.to_list())
        assert read.next_url is None  # the list ended


# ----------------------------------------------------------------- resume points (QA)


async def test_resuming_after_to_list_with_a_limit_skips_no_record(fake: FakePostHog) -> None:
    """
    An export in batches, `to_list(limit=n)` then `resume_from(paginator.next_url)`,
    must see every record. to_list() cuts the last page it read down to `n` records
    but leaves `next_url` at that page's `next`, past the records it dropped, so the
    next batch silently starts after them.
    """
    _seed(fake, 10)
    async with fake.client() as ph:
        paginator = ph.customer_profile_configs.list(limit=2)
        batch = await paginator.to_list(limit=3)
        assert paginator.next_url is not None
        rest = await ph.customer_profile_configs.list().resume_from(paginator.next_url).to_list()
    seen = {c.id for c in [*batch, *rest]}
    assert [] == [f"id-{i:03d}" for i in range(10) if f"id-{i:03d}" not in seen]


async def test_resuming_after_a_failed_to_list_skips_no_record() -> None:
    """
    The README's recovery, `resume_from(paginator.next_url)` after a 429, applied to
    `to_list()`: the failed call returns none of the records it collected, so resuming
    must read them again. `next_url` is left at the failed page instead, and the
    records of the pages before it are lost without an error.
    """
    throttled: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "2"))
        offset = int(request.query.get("offset", "0"))
        if offset == 4 and not throttled:  # page 3, once: a 429 that outlives the retries
            throttled.append(request.path_qs)
            detail = "Request was throttled. Expected available in 1 second."
            body = {"type": "throttled_error", "code": "throttled", "detail": detail, "attr": None}
            return web.json_response(body, status=429)
        nxt = str(request.url.update_query(limit=limit, offset=offset + limit))
        return web.json_response(
            {
                "count": 10,
                "next": nxt if offset + limit < 10 else None,
                "previous": None,
                "results": [_config(i) for i in range(offset, min(offset + limit, 10))],
            }
        )

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph,
    ):
        paginator = ph.customer_profile_configs.list(limit=2)
        with anyio.fail_after(5), pytest.raises(aposthog.RateLimitError):
            await paginator.to_list()
        assert throttled
        saved = paginator.next_url
        assert saved is not None
        with anyio.fail_after(5):
            rest = await ph.customer_profile_configs.list().resume_from(saved).to_list()
    assert [f"id-{i:03d}" for i in range(10)] == [c.id for c in rest]


async def test_resuming_from_none_does_not_read_the_list_again(fake: FakePostHog) -> None:
    """
    `next_url` is None once a list was read to its end. A worker that stored it and
    resumes with it must not get the whole list again (every record processed twice):
    `resume_from()` takes a `str`, and None is refused before anything is sent.
    """
    _seed(fake, 3)
    async with fake.client() as ph:
        paginator = ph.customer_profile_configs.list()
        assert 3 == len(await paginator.to_list())
        assert paginator.next_url is None
        saved: Any = paginator.next_url
        fake.reset_stats()
        with pytest.raises(TypeError):
            await ph.customer_profile_configs.list().resume_from(saved).to_list()
    assert [] == fake.requests


async def test_resuming_from_another_list_s_url_is_refused(fake: FakePostHog) -> None:
    """
    `resume_from()` is "a paginator of the same list". A saved URL of another list
    (a mixed-up checkpoint) was requested with the key, and its records were structured
    as this list's type: profile configs came back as `ConversationSummary` records,
    silently. It is refused with a ValueError, and nothing is sent.
    """
    _seed(fake, 5)
    async with fake.client() as ph:
        page = await ph.customer_profile_configs.list(limit=2)
        assert page.next is not None
        fake.reset_stats()
        with pytest.raises(ValueError, match="customer_profile_configs"):
            await ph.conversations.list().resume_from(page.next).to_list()
    assert [] == fake.requests


@pytest.mark.parametrize("how", ["async for", "prefetch"])
async def test_a_first_page_whose_next_names_it_is_not_read_twice(how: str) -> None:
    """
    A `next` naming a page already fetched is a decode error "instead of looping
    forever" (CHANGELOG), and a resumed paginator counts its start URL. A paginator
    that starts at the first page did not count it: a first page naming itself was
    fetched again and its records handed to the loop twice before the error.
    """
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        return web.json_response({"next": str(request.url), "results": [_config(1)]})

    seen: list[str] = []
    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        paginator = ph.customer_profile_configs.list()
        if how == "prefetch":
            paginator = paginator.prefetch(2)
        with anyio.fail_after(5), pytest.raises(aposthog.ResponseDecodeError):
            async for config in paginator:
                seen.append(config.id)  # noqa: PERF401 (kept up to the error)
    assert ["id-001"] == seen
    assert ["/api/environments/1/customer_profile_configs/"] == hits


@pytest.mark.parametrize(
    "path",
    [
        "/api/environments/2/customer_profile_configs/?offset=1",  # another project
        "/api/environments/1/customer_profile_configs/../../../../admin/?x=1",
        "/admin/users/",
    ],
)
async def test_a_next_outside_the_list_is_a_decode_error(path: str) -> None:
    """
    PostHog's `next` is the list's own URL with another offset or cursor. One naming
    another path (another project's list, a path that climbs out of the API with `..`,
    a page that is not PostHog's) was requested with the key on the configured host,
    and whatever came back was added to this list's records. It is refused, unsent.
    """
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.raw_path)
        next_url = f"https://posthog.example{path}" if len(hits) == 1 else None
        return web.json_response({"next": next_url, "results": [_config(len(hits))]})

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with anyio.fail_after(5), pytest.raises(aposthog.ResponseDecodeError):
            await ph.customer_profile_configs.list().to_list()
    assert ["/api/environments/1/customer_profile_configs/"] == hits


class _Stop(Exception):
    """The loop body's own failure."""


@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("fails_at", [0, 3, 4, 5, 9])
async def test_a_loop_that_stops_mid_page_resumes_at_the_record_in_hand(
    fake: FakePostHog, prefetch: int, fails_at: int
) -> None:
    """
    A loop over records whose body fails (its own database write, say) resumes, from
    `next_url`, at the record it was working on: exactly, on a limit/offset list (the
    URL names that record's offset). The rest of its page was skipped.
    """
    _seed(fake, 10)
    async with fake.client() as ph:
        paginator = ph.customer_profile_configs.list(limit=4)
        done: list[str] = []
        with pytest.raises(_Stop):
            async for config in paginator.prefetch(prefetch):
                if len(done) == fails_at:
                    raise _Stop
                done.append(config.id)
        saved = paginator.next_url
        assert saved is not None
        rest = [c.id async for c in ph.customer_profile_configs.list().resume_from(saved)]
    assert [f"id-{i:03d}" for i in range(10)] == done + rest


async def test_a_loop_over_a_cursor_list_that_stops_mid_page_repeats_rather_than_loses() -> None:
    """
    A cursor page's records have no URL of their own: a loop that stops inside one
    resumes at the page, and its records before the one in hand come again.
    """

    async def handler(request: web.Request) -> web.Response:
        page = int(request.query.get("cursor", "0"))
        nxt = str(request.url.with_query(cursor=page + 1)) if page < 2 else None
        results = [_config(page * 3 + i) for i in range(3)]
        return web.json_response({"next": nxt, "previous": None, "results": results})

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        paginator = ph.customer_profile_configs.list()
        done: list[str] = []
        with pytest.raises(_Stop):
            async for config in paginator:
                if config.id == "id-004":
                    raise _Stop
                done.append(config.id)
        saved = paginator.next_url
        assert saved is not None
        assert saved.endswith("?cursor=1")
        rest = [c.id async for c in ph.customer_profile_configs.list().resume_from(saved)]
    assert ["id-000", "id-001", "id-002", "id-003"] == done
    assert [f"id-{i:03d}" for i in range(3, 9)] == rest


async def test_a_loop_read_to_its_end_or_between_pages_says_where_the_next_page_starts(
    fake: FakePostHog,
) -> None:
    _seed(fake, 4)
    async with fake.client() as ph:
        paginator = ph.customer_profile_configs.list(limit=2)
        reader = paginator.__aiter__()
        assert "id-000" == (await reader.__anext__()).id
        assert paginator.next_url is not None
        assert paginator.next_url.endswith("?limit=2")
        assert "id-001" == (await reader.__anext__()).id
        assert paginator.next_url.endswith("?limit=2&offset=1")  # the record in hand
        assert "id-002" == (await reader.__anext__()).id
        assert paginator.next_url.endswith("?limit=2&offset=2")
        assert ["id-003"] == [c.id async for c in reader]
        assert paginator.next_url is None  # the list ended


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 10])
async def test_batches_of_to_list_with_a_limit_read_every_record_once(
    fake: FakePostHog, limit: int
) -> None:
    """`to_list(limit=n)` then `resume_from(next_url)`, batch after batch: each record once."""
    _seed(fake, 10)
    async with fake.client() as ph:
        paginator = ph.customer_profile_configs.list(limit=3)
        got = await paginator.to_list(limit=limit)
        while paginator.next_url is not None:
            paginator = ph.customer_profile_configs.list().resume_from(paginator.next_url)
            got += await paginator.to_list(limit=limit)
    assert [f"id-{i:03d}" for i in range(10)] == [c.id for c in got]


@pytest.mark.parametrize(
    ("saved", "error", "match"),
    [
        (None, TypeError, "next_url must be a str .* got NoneType"),
        (123, TypeError, "got int"),
        ("", ValueError, "next_url is no page of this list: it names '/'"),
        ("http://h/a b", ValueError, "not a URL that can be requested"),
        ("http://h/api/environments/1/batch_exports/?offset=2", ValueError, "batch_exports"),
    ],
)
async def test_resume_from_refuses_what_is_not_a_page_of_its_list(
    fake: FakePostHog, saved: Any, error: type[Exception], match: str
) -> None:
    async with fake.client() as ph:
        with pytest.raises(error, match=match):
            ph.customer_profile_configs.list().resume_from(saved)
    assert [] == fake.requests


async def test_resume_from_takes_the_list_s_own_url_however_it_is_spelled(
    fake: FakePostHog,
) -> None:
    """Another host (a proxy's), percent-encoded characters: the path is what counts."""
    _seed(fake, 3)
    async with fake.client() as ph:
        saved = "https://proxy.internal/api/environments/%31/customer_profile_configs/?offset=1"
        rest = await ph.customer_profile_configs.list().resume_from(saved).to_list()
    assert ["id-001", "id-002"] == [c.id for c in rest]


async def test_a_next_without_the_hosts_api_prefix_is_followed() -> None:
    """
    Self-hosted behind a proxy mounting PostHog at `/api` (host `http://h/api`), PostHog
    sees `/api/environments/…` and its `next` lacks the prefix, as with any other prefix
    (`/posthog` works): it must be requested at `/api/api/environments/…`, not refused.
    """
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        inner = request.path.removeprefix("/api")  # what PostHog behind the proxy sees
        offset = int(request.query.get("offset", "0"))
        nxt = f"http://internal:8000{inner}?limit=1&offset={offset + 1}" if offset < 2 else None
        body = {"count": 3, "next": nxt, "previous": None, "results": [_config(offset)]}
        return web.json_response(body)

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=f"{url}/api", project_id=1, max_retries=0) as ph,
    ):
        with anyio.fail_after(5):
            got = await ph.customer_profile_configs.list(limit=1).to_list()
    assert ["id-000", "id-001", "id-002"] == [c.id for c in got]
    assert all(path.startswith("/api/api/environments/1/") for path in hits), hits


@pytest.mark.parametrize("how", ["async for", "to_list", "next_page"])
@pytest.mark.parametrize("shape", ["cursor", "offset past count"])
async def test_empty_pages_with_an_ever_new_next_end_the_list(how: str, shape: str) -> None:
    """
    A server (or a proxy) answering empty pages that still name a `next`, each a new URL,
    must not keep the paginator requesting forever: the loop check only catches a `next`
    seen before. (DRF's cursor pages can be empty with a `next` once, read backwards, but
    then lead to records; page after page of nothing cannot.) After a few empty pages in a
    row the read ends, quietly or with a decode error, not after thousands of requests;
    so does a walk by hand with `has_next_page()` and `next_page()` (before the fix, it
    went on for ever, thousands of requests a second on the key's budget).
    """
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        if shape == "cursor":  # batch-export runs style: no count, a fresh cursor each time
            body: dict[str, Any] = {
                "next": str(request.url.with_query(cursor=str(len(hits)))),
                "previous": None,
                "results": [],
            }
        else:  # limit/offset: two records, then empty pages that still name the next one
            offset = int(request.query.get("offset", "0"))
            body = {
                "count": 2,
                "next": str(request.url.with_query(limit=1, offset=offset + 1)),
                "previous": None,
                "results": [_config(offset)] if offset < 2 else [],
            }
        return web.json_response(body)

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph,
    ):
        paginator = ph.customer_profile_configs.list()
        with anyio.fail_after(0.5), pytest.raises(aposthog.ResponseDecodeError, match="never end"):
            await _collect(paginator, how)
    assert len(hits) <= 10, f"{len(hits)} requests for an empty list"


# ----------------------------------------------------------------- a paginator read again (QA)


@pytest.mark.parametrize("how", ["for", "prefetch", "to_list"])
async def test_a_paginator_read_again_that_fails_at_once_resumes_from_its_start(
    fake: FakePostHog, how: str
) -> None:
    """
    Every iteration of a paginator "starts afresh from the first page", and `next_url`
    is where the last read resumes, its first page's URL when that read "failed at
    once"; the README: "a failed `to_list()` ... resumes where it started". A poller
    reading the same paginator again after a full read (which left `next_url` None)
    meets a 429 on the new read's first page: `next_url` must name the list's start.
    Before the fix it still said None, "the list was read to its end", and the README's
    `if paginator.next_url:` dropped the whole list without an error.
    """
    _seed(fake, 5)
    async with fake.client(max_retries=0) as ph:
        paginator = ph.customer_profile_configs.list(limit=2)
        start = paginator.next_url
        assert 5 == len([c async for c in paginator])
        assert paginator.next_url is None  # read to its end
        fake.throttle_next(1)
        with pytest.raises(aposthog.RateLimitError):
            if how == "to_list":
                await paginator.to_list()
            else:
                async for _ in paginator.prefetch(2 if how == "prefetch" else 0):
                    pass
        assert start == paginator.next_url


# ----------------------------------------------------------------- records built as taken


async def _read_records(paginator: Any, seen: list[str]) -> None:
    async for config in paginator:
        seen.append(config.id)  # noqa: PERF401 (what was seen before an error)


@pytest.mark.parametrize("ahead", [0, 2])
async def test_a_records_loop_hands_out_the_records_before_one_that_does_not_fit(
    fake: FakePostHog, ph: aposthog.Client, ahead: int
) -> None:
    """
    A loop over records builds each as it takes it: a record that does not fit raises
    the page's own `ResponseDecodeError` (the one `await` or `pages()` raises for that
    page) when the loop reaches it, after the records before it, and the read resumes
    at it; the loop ends there, its read-ahead cancelled.
    """
    _seed(fake, 9)
    fake.customer_profile_configs["id-005"]["created_at"] = "yesterday"
    fake.customer_profile_configs["id-007"]["scope"] = 7
    paginator = ph.customer_profile_configs.list(limit=4).prefetch(ahead)
    seen: list[str] = []
    reader = paginator.__aiter__()
    with pytest.raises(aposthog.ResponseDecodeError) as caught:
        async for config in reader:
            seen.append(config.id)  # noqa: PERF401 (what was seen before the error)
    assert ["id-000", "id-001", "id-002", "id-003", "id-004"] == seen
    with pytest.raises(aposthog.ResponseDecodeError) as whole:
        async for _ in ph.customer_profile_configs.list(limit=4).pages():
            pass
    assert (str(whole.value), whole.value.paths) == (str(caught.value), caught.value.paths)
    # The second page's second and fourth: the page's error names each.
    assert ("$.results[1].created_at", "$.results[3].scope") == caught.value.paths
    assert paginator.next_url is not None
    assert "offset=5" in paginator.next_url
    with pytest.raises(StopAsyncIteration):
        await reader.__anext__()  # the read ended with its error
    await reader.aclose()
    fake.customer_profile_configs["id-005"]["created_at"] = "2024-01-01T00:00:00Z"
    fake.customer_profile_configs["id-007"]["scope"] = "group_0"
    resumed: list[str] = []
    await _read_records(ph.customer_profile_configs.list().resume_from(paginator.next_url), resumed)
    assert [f"id-{i:03d}" for i in range(5, 9)] == resumed


def test_a_page_that_came_unbuilt_builds_its_records_when_first_read() -> None:
    """
    A page a records loop reads comes unbuilt: its length and repr build nothing, and
    `results` (or iterating it) builds every record at once, with the error of the page
    built whole; taken one by one, its records are the same.
    """

    async def fetch(url: str) -> aposthog.Page[CustomerProfileConfig]:
        raise AssertionError(url)

    def unbuilt(body: dict[str, Any]) -> aposthog.Page[CustomerProfileConfig]:
        raw, count, next_url, previous = parse_raw_page(body, request_path="/p/")
        records = Unbuilt(raw, CustomerProfileConfig, "/p/", 200, None)
        return new_raw_page(records, count, next_url, previous, fetch)

    bad = {"count": 3, "results": [_config(0), {**_config(1), "created_at": "soon"}, _config(2)]}
    page = unbuilt(bad)
    assert 3 == len(page)
    assert "Page(results=<3 records>, count=3, next=None)" == repr(page)
    with pytest.raises(aposthog.ResponseDecodeError) as caught:
        page.results  # noqa: B018
    with pytest.raises(aposthog.ResponseDecodeError) as whole:
        parse_page(bad, list[CustomerProfileConfig], request_path="/p/")
    assert (str(whole.value), whole.value.paths) == (str(caught.value), caught.value.paths)
    assert ("$.results[1].created_at",) == caught.value.paths
    taken = page._records()
    assert "id-000" == next(taken).id
    with pytest.raises(aposthog.ResponseDecodeError):
        next(taken)

    good = {"count": 3, "results": [_config(i) for i in range(3)]}
    expected = parse_page(good, list[CustomerProfileConfig])[0]
    assert expected == list(unbuilt(good)._records())
    page = unbuilt(good)
    assert expected == page.results
    assert page.results is page.results  # built once
    assert expected == list(page)
    assert [] == list(unbuilt({"results": []})._records())


async def test_a_records_loop_keeps_few_records_of_a_page_alive(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    Each record of a page is built as the loop takes it, so a loop that lets each go
    holds one or two at a time, not the whole page: the records die young and the
    cyclic collector has little to scan. (A page built whole held all 30.)
    """
    _seed(fake, 30)

    def alive() -> int:
        return sum(type(o) is CustomerProfileConfig for o in gc.get_objects())

    before = alive()  # (other tests' records may still be around)
    during: list[int] = []
    async for config in ph.customer_profile_configs.list(limit=30):
        if config.id in ("id-010", "id-020"):
            during.append(alive() - before)  # noqa: PERF401 (counted inside the loop)
    assert len(during) == 2
    assert max(during) <= 2, during


async def test_an_observed_records_loop_builds_each_page_whole(fake: FakePostHog) -> None:
    """
    When the client's calls are observed (here `on_wait`), a page is built as its call
    ends, so that a body that does not fit is the call's reported error: the loop raises
    before handing out any record of that page.
    """
    _seed(fake, 4)
    fake.customer_profile_configs["id-002"]["created_at"] = "yesterday"
    async with fake.client(on_wait=lambda _: None) as ph:
        seen: list[str] = []
        with pytest.raises(aposthog.ResponseDecodeError):
            await _read_records(ph.customer_profile_configs.list(limit=10), seen)
        assert [] == seen


async def test_a_records_loop_raises_the_pages_own_error_with_its_status(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    The README: a record that does not fit raises "the page's own" `ResponseDecodeError`:
    `status` is the HTTP status of the answer whose body it is (200), as `await`,
    `pages()` and `to_list()` say, not None ("a stream's event read after its start").
    """
    _seed(fake, 3)
    fake.customer_profile_configs["id-001"]["created_at"] = "yesterday"
    with pytest.raises(aposthog.ResponseDecodeError) as whole:
        await ph.customer_profile_configs.list()
    assert 200 == whole.value.status
    with pytest.raises(aposthog.ResponseDecodeError) as caught:
        await _read_records(ph.customer_profile_configs.list(), [])
    assert (str(whole.value), whole.value.paths) == (str(caught.value), caught.value.paths)
    assert whole.value.status == caught.value.status


async def test_a_walk_by_hand_ends_after_as_many_empty_pages_as_a_read() -> None:
    """
    The CHANGELOG: a walk by hand "ends with ResponseDecodeError after 4 pages in a row
    that hold no records and each name another next ..., as a paginator's read already
    did". From an empty first page (`await paginator`), the walk requests a fifth: the
    first page's run of empty pages is never counted (`Page._empty_run` stays 0).
    """
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        body: dict[str, Any] = {
            "next": str(request.url.with_query(cursor=str(len(hits)))),
            "previous": None,
            "results": [],
        }
        return web.json_response(body)

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph,
    ):
        with pytest.raises(aposthog.ResponseDecodeError, match="4 pages in a row"):
            await _collect(ph.customer_profile_configs.list(), "async for")
        by_read = len(hits)
        hits.clear()
        with pytest.raises(aposthog.ResponseDecodeError, match="4 pages in a row"):
            await _collect(ph.customer_profile_configs.list(), "next_page")
    assert by_read == len(hits)


# ------------------------------------ a records loop's error is the page's own (QA: fuzzrecords)


def _page_with_a_bad_record(*, quote_key: bool = False) -> Any:
    """
    A server whose one page holds a record that does not fit (its second: `created_at`);
    with `quote_key`, its first record (which fits) holds the request's key in its
    `content`, as a key pasted into a profile config would be.
    """

    async def handler(request: web.Request) -> web.Response:
        first = _config(0)
        if quote_key:
            first["content"] = {"note": request.headers.get("Authorization", "")}
        bad = {**_config(1), "created_at": "yesterday"}
        body = {"count": 3, "next": None, "previous": None, "results": [first, bad, _config(2)]}
        return web.json_response(body)

    return handler


@pytest.mark.parametrize("ahead", [0, 2])
async def test_a_records_loop_error_keeps_the_status_of_its_page(ahead: int) -> None:
    """
    The error a records loop raises at a record that does not fit is the page's own, as
    `pages()` (or `await`) raises it: with the HTTP status of the answer (200), which
    `ResponseDecodeError.status` promises for a body that did not decode.
    """
    async with (
        serve(_page_with_a_bad_record()) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph,
    ):
        with pytest.raises(aposthog.ResponseDecodeError) as whole:
            async for _ in ph.customer_profile_configs.list().pages():
                pass
        seen: list[str] = []
        with pytest.raises(aposthog.ResponseDecodeError) as caught:
            await _read_records(ph.customer_profile_configs.list().prefetch(ahead), seen)
    assert ["id-000"] == seen
    assert (str(whole.value), whole.value.paths) == (str(caught.value), caught.value.paths)
    assert 200 == whole.value.status
    assert whole.value.status == caught.value.status


async def test_a_records_loop_error_quoting_the_key_leaves_it_nowhere() -> None:
    """
    A page that quotes the key (pasted into a record's free-form `content`), one of whose
    records does not fit: `pages()` raises the error with `<redacted>` in its `body`
    (the page's records); the records loop's error for the same page must not hold the
    key either (body, chain, the locals its traceback prints). Such a page is built
    whole, within its call, as `pages()` builds it: the error comes before its records.
    """
    async with (
        serve(_page_with_a_bad_record(quote_key=True)) as url,
        aposthog.Client(api_key=QUOTED, host=url, project_id=1, max_retries=0) as ph,
    ):
        with pytest.raises(aposthog.ResponseDecodeError) as whole:
            async for _ in ph.customer_profile_configs.list().pages():
                pass
        assert "<redacted>" in repr(whole.value.body)
        seen: list[str] = []
        with pytest.raises(aposthog.ResponseDecodeError) as caught:
            await _read_records(ph.customer_profile_configs.list(), seen)
    assert [] == seen
    error = caught.value
    assert QUOTED not in repr(error.body)
    everything = printed_with_locals(error) + repr(vars(error))
    for item in _graph(error):
        everything += repr(item) + str(item)
    assert QUOTED not in everything


@pytest.mark.parametrize("ahead", [0, 2])
async def test_a_records_loop_hands_out_nothing_after_aclose(
    fake: FakePostHog, ph: aposthog.Client, ahead: int
) -> None:
    """
    `aclose()` ends the loop (`ClosingIterator`), as it ends `pages()`: the next
    `__anext__` raises StopAsyncIteration, and `next_url` stays at the record in hand
    (a resume gets it again). The records loop went on handing out the rest of the page
    it held, moving `next_url` past them.
    """
    _seed(fake, 6)
    paginator = ph.customer_profile_configs.list(limit=3).prefetch(ahead)
    records = paginator.__aiter__()
    assert "id-000" == (await records.__anext__()).id
    await records.aclose()
    resume = paginator.next_url
    assert resume is not None
    after: list[str] = []
    with pytest.raises(StopAsyncIteration):
        while True:
            after.append((await records.__anext__()).id)
    assert [] == after
    assert resume == paginator.next_url


async def test_a_conversations_loop_hands_out_the_records_before_one_that_does_not_fit() -> None:
    """
    The README's rule for a loop over records holds for every list: a record that does
    not fit raises when the loop reaches it, after the records of its page before it,
    and the read resumes at it. `conversations.list()` (whose records the client notes
    for its AI rate limits) built each page whole: the loop raised before the page's
    first record and resumed at the page's start.
    """

    def summary(i: int) -> dict[str, Any]:
        return {
            "id": f"0190a1b2-c3d4-7e5f-8a9b-{i:012d}",
            "status": "idle",
            "title": f"t{i}",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "type": "assistant",
        }

    async def handler(request: web.Request) -> web.Response:
        results = [summary(0), summary(1), {**summary(2), "created_at": "yesterday"}]
        return web.json_response({"count": 3, "next": None, "previous": None, "results": results})

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph,
    ):
        paginator = ph.conversations.list(limit=3)
        seen: list[str] = []
        with pytest.raises(aposthog.ResponseDecodeError) as caught:
            await _read_records(paginator, seen)
    assert ("$.results[2].created_at",) == caught.value.paths
    assert [summary(0)["id"], summary(1)["id"]] == seen
    assert paginator.next_url is not None
    assert "offset=2" in paginator.next_url


@pytest.mark.parametrize("rewritten", [True, False], ids=["projects links", "environments links"])
async def test_every_read_follows_next_links_at_api_projects_and_api_environments(
    fake: FakePostHog, rewritten: bool
) -> None:
    """
    A current PostHog serves `/api/environments/<id>/…` through its `/api/projects/<id>/…`
    viewset (its `EnvironmentsRewriteMiddleware` rewrites the path first), so DRF's `next`
    names `/api/projects/1/customer_profile_configs/`; older versions named the path
    asked. Both are this list's pages: every way of reading follows them to the end (the
    client stopped at the first page of every list, a `ResponseDecodeError`).
    """
    fake.environments_rewritten = rewritten
    _seed(fake, 7)
    expected = [f"id-{i:03d}" for i in range(7)]
    prefix = "/api/projects/1/" if rewritten else "/api/environments/1/"
    async with fake.client() as ph:
        configs = ph.customer_profile_configs
        with anyio.fail_after(10):
            assert expected == [c.id async for c in configs.list(limit=2)]
            assert expected == [c.id for c in await configs.list(limit=2).to_list()]
            assert expected == [c.id async for c in configs.list(limit=2).prefetch(2)]
            pages = [page async for page in configs.list(limit=2).pages()]
            assert expected == [c.id for page in pages for c in page]
            page = await configs.list(limit=3)
            by_hand = [c.id for c in page]
            while page.has_next_page():
                assert page.next is not None
                assert prefix in page.next
                page = await page.next_page()
                by_hand += [c.id for c in page]
            assert expected == by_hand
            saved = (await configs.list(limit=3)).next
            assert saved is not None
            resumed = [c.id async for c in configs.list().resume_from(saved)]
            assert expected[3:] == resumed
    followed = [r.path for r in fake.requests if any(k == "offset" for k, _ in r.query)]
    assert followed
    assert all(path.startswith(prefix) for path in followed)


async def test_a_next_at_api_projects_of_another_list_is_not_followed() -> None:
    """Only this list's own path has a twin under `/api/projects/`: another list's (or
    another project's) path there is refused as any other is, unsent."""
    hits: list[str] = []
    for other in ("/api/projects/1/batch_exports/", "/api/projects/2/customer_profile_configs/"):

        async def handler(request: web.Request, other: str = other) -> web.Response:
            hits.append(request.path)
            next_url = f"http://{request.host}{other}?offset=1"
            return web.json_response({"next": next_url, "results": [_config(0)]})

        async with (
            serve(handler) as url,
            aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
        ):
            with pytest.raises(aposthog.ResponseDecodeError, match="not a page of the list"):
                await ph.customer_profile_configs.list().to_list()
            with pytest.raises(ValueError, match="next_url is no page of this list"):
                ph.customer_profile_configs.list().resume_from(f"{url}{other}")
    assert ["/api/environments/1/customer_profile_configs/"] * 2 == hits


@pytest.mark.parametrize("link", ["next", "previous"])
async def test_a_page_whose_link_quotes_the_key_is_refused_and_never_followed(link: str) -> None:
    """
    A proxy that echoes the request's key into a page's link (`?personal_api_key=…`):
    kept, the key showed in `repr(page)`, in the paginator's `next_url` and repr, and the
    next request sent it in its URL. Every read raises `ResponseDecodeError` naming the
    link, no error or repr holds the key, and nothing more is sent.
    """
    key = "phx_" + "s3cret" * 6
    paths: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        paths.append(request.path_qs)
        quoting = str(request.url.with_query(offset=1, personal_api_key=key))
        other = str(request.url.with_query(offset=1))
        links = {"next": other, "previous": None, link: quoting}
        return web.json_response({"count": 9, **links, "results": [_config(0)]})

    async with serve(handler) as url, aposthog.Client(api_key=key, host=url, project_id=1) as ph:
        configs = ph.customer_profile_configs
        reads: dict[str, Callable[[], Awaitable[Any]]] = {
            "first page": lambda: configs.list(),
            "async for": lambda: _drain(configs.list()),
            "to_list": lambda: configs.list().to_list(),
            "prefetch": lambda: _drain(configs.list().prefetch(2)),
        }
        for name, read in reads.items():
            with pytest.raises(aposthog.ResponseDecodeError) as caught:
                await read()
            error = caught.value
            assert f"'{link}' in the page from" in str(error), name
            assert "quotes the API key" in str(error), name
            assert key not in f"{error!s} {error!r} {vars(error)!r}", name
        paginator = configs.list()
        with pytest.raises(aposthog.ResponseDecodeError):
            await _drain(paginator)
        assert key not in f"{paginator!r} {paginator.next_url}"
    assert all(key not in path for path in paths)
    assert all("offset" not in path for path in paths)


async def _drain(items: Any) -> None:
    async for _ in items:
        pass


@pytest.mark.parametrize(
    "links",
    [{"": "a", "a": "a"}, {"": "a", "a": "b", "b": "a"}, {"": "a", "a": "b", "b": ""}],
    ids=["a page naming itself", "two pages naming each other", "back to the first page"],
)
async def test_a_walk_by_hand_ends_on_a_next_loop_as_a_paginators_read_does(
    links: dict[str, str],
) -> None:
    """
    `while page.has_next_page(): page = await page.next_page()` (the walk `Page` and
    DESIGN.md show) over pages with records whose `next` comes back to a page the walk
    fetched: it walked on forever, thousands of requests a second. It raises the
    `ResponseDecodeError` a paginator's read raises, before sending the page again,
    after as many requests (a `next` back to the first page included: the first page
    knows the request it answered).
    """
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        cursor = request.query.get("cursor", "")
        hits.append(cursor)
        next_url = str(
            request.url.with_query(cursor=links[cursor])
            if links[cursor]
            else request.url.with_query({})
        )
        return web.json_response({"next": next_url, "results": [_config(len(hits))]})

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with anyio.fail_after(5):
            with pytest.raises(
                aposthog.ResponseDecodeError, match="already fetched"
            ) as by_paginator:
                await ph.customer_profile_configs.list().to_list()
            sent = len(hits)
            hits.clear()
            page = await ph.customer_profile_configs.list()
            with pytest.raises(aposthog.ResponseDecodeError, match="already fetched") as by_hand:
                while page.has_next_page():
                    page = await page.next_page()
    assert str(by_paginator.value) == str(by_hand.value)
    assert by_hand.value.paths == ("$.next",)
    assert sent == len(hits)


async def test_a_page_fetched_again_by_hand_is_no_loop(fake: FakePostHog) -> None:
    """`next_page()` called twice on the same page (a retry after an error, a second look)
    fetches the same next page twice: that is no `next` loop."""
    _seed(fake, 5)
    async with fake.client() as ph:
        first = await ph.customer_profile_configs.list(limit=2)
        second = await first.next_page()
        again = await first.next_page()
        third = await again.next_page()
        fourth = await second.next_page()
    assert [c.id for c in second] == [c.id for c in again] == ["id-002", "id-003"]
    assert [c.id for c in third] == [c.id for c in fourth] == ["id-004"]


@pytest.mark.parametrize("batch", [1, 30, 99, 100, 130])
async def test_batches_of_to_list_on_a_cursor_list_read_every_record_once(
    fake: FakePostHog, batch: int
) -> None:
    """
    The README's batching (`to_list(limit=n)`, then `resume_from(next_url)`) on runs, a
    cursor list of pages of 100: `next_url` was the URL of the page `limit` fell in, so
    batches smaller than a page began again at the same page, the same records batch
    after batch, and never ended. It names that page with the records to skip
    (`#skip=N`, a fragment, never sent): each run once, in order, and the read ends.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    async with fake.client() as ph:
        export = await ph.batch_exports.create(
            name="n", destination={"type": "NoOp", "config": {}}, interval="hour"
        )
        runs = [
            fake.add_batch_export_run(export.id, created_at=now - datetime.timedelta(minutes=i))
            for i in range(250)
        ]
        fake.requests.clear()
        paginator = ph.batch_exports.list_runs(export.id)
        got = await paginator.to_list(limit=batch)
        with anyio.fail_after(20):
            while paginator.next_url is not None:
                # Mid-page: the page's URL and the records to skip; else the next page's.
                assert ("#skip=" in paginator.next_url) == bool(len(got) % 100)
                paginator = ph.batch_exports.list_runs(export.id).resume_from(paginator.next_url)
                got += await paginator.to_list(limit=batch)
    assert [r["id"] for r in runs] == [r.id for r in got]
    assert all("#" not in r.path and "skip" not in dict(r.query) for r in fake.requests)


async def test_a_read_resumed_at_a_cursor_pages_record_skips_the_records_before_it(
    fake: FakePostHog,
) -> None:
    """Every read resumed at a `#skip=N` URL starts at that record of its page: the first
    page awaited, a records loop, `pages()` and `prefetch()`; a fragment that is no
    `skip=N` (or an unusable one) skips nothing."""
    now = datetime.datetime.now(datetime.timezone.utc)
    async with fake.client() as ph:
        export = await ph.batch_exports.create(
            name="n", destination={"type": "NoOp", "config": {}}, interval="hour"
        )
        ids = [
            fake.add_batch_export_run(export.id, created_at=now - datetime.timedelta(minutes=i))[
                "id"
            ]
            for i in range(120)
        ]
        first = ph.batch_exports.list_runs(export.id)
        assert [r.id for r in await first.to_list(limit=3)] == ids[:3]
        saved = first.next_url
        assert saved is not None
        assert saved.endswith("#skip=3")

        def resumed(url: str = saved) -> aposthog.AsyncPaginator[Any]:
            return ph.batch_exports.list_runs(export.id).resume_from(url)

        assert [r.id for r in await resumed()] == ids[3:100]
        assert [r.id async for r in resumed()] == ids[3:]
        assert [r.id async for page in resumed().pages() for r in page] == ids[3:]
        assert [r.id async for r in resumed().prefetch(2)] == ids[3:]
        again = resumed()
        assert [r.id for r in await again.to_list(limit=4)] == ids[3:7]
        assert again.next_url is not None
        assert again.next_url.endswith("#skip=7")
        page_url = saved.partition("#")[0]
        for fragment in (
            "",
            "#",
            "#skip=",
            "#skip=x",
            "#skip=-1",
            "#other=3",
            "#skip=1" + "0" * 12,
        ):
            assert [r.id for r in await resumed(page_url + fragment)] == ids[:100], fragment


def _at(body: Any, path: str) -> Any:
    """The value at a JSON path such as `$.results[3].created_at` (KeyError: none)."""
    value = body
    for part in path.removeprefix("$").replace("[", ".[").split("."):
        if not part:
            continue
        value = value[int(part[1:-1])] if part.startswith("[") else value[part]
    return value


@pytest.mark.parametrize("how", ["next_page", "async for", "prefetch", "to_list", "pages"])
@pytest.mark.parametrize("start", ["first page", "resumed with #skip"])
async def test_a_page_that_does_not_fit_gives_its_whole_body_where_the_paths_lead(
    how: str, start: str
) -> None:
    """
    `ResponseDecodeError.body` is "the decoded JSON body", where its `paths` lead
    (`$.results[3].created_at`): for a page it held the `results` array alone, so no
    path led anywhere and `count` and `next` were lost. A page resumed at `#skip=N`
    names its own indexes too.
    """
    records = [_config(i) for i in range(4)]
    records[3]["created_at"] = "yesterday"
    page = {"count": 4, "next": None, "previous": None, "results": records}

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(page)

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph,
    ):
        paginator = _configs(ph, url, start, resumed_at="?limit=4#skip=2")
        with pytest.raises(aposthog.ResponseDecodeError) as info:
            if how == "pages":
                async for whole in paginator.pages():
                    list(whole)
            else:
                await _collect(paginator, how)
    assert page == info.value.body
    assert ("$.results[3].created_at",) == info.value.paths
    assert "yesterday" == _at(info.value.body, info.value.paths[0])


@pytest.mark.parametrize(
    ("bad", "path"),
    [({"count": "4"}, "$.count"), ({"next": 5}, "$.next"), ({"previous": 5}, "$.previous")],
)
async def test_a_page_whose_links_or_count_do_not_fit_gives_its_body(
    bad: dict[str, Any], path: str
) -> None:
    """As for a record that does not fit: the error's `body` is the page its path is in."""
    page = {"count": 1, "next": None, "previous": None, "results": [_config(0)], **bad}

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(page)

    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph,
    ):
        with pytest.raises(aposthog.ResponseDecodeError) as info:
            await ph.customer_profile_configs.list()
    assert (path,) == info.value.paths
    assert page == info.value.body
