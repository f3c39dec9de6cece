"""
Reading pages ahead: `paginator.prefetch(n)` and the concurrent `to_list()`.

Order, completeness, errors at the page they belong to, and nothing left behind when a
loop stops early (tasks, connections, requests in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import json
import logging
import tracemalloc
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

import aposthog
from aposthog._pagination import Page, new_page
from aposthog._prefetch import (
    MAX_EMPTY_PAGES,
    PageReader,
    ResumePoint,
    planned_urls,
    record_url,
    skipped,
    skipping,
)
from aposthog.testing import FakePostHog

from .test_json import _EXPORT
from .web_server import serve

pytestmark = pytest.mark.anyio

NOW = dt.datetime.now(dt.timezone.utc)


def _seed(fake: FakePostHog, n: int) -> list[str]:
    ids = [f"id-{i:04d}" for i in range(n)]
    for i, ident in enumerate(ids):
        fake.customer_profile_configs[ident] = {
            "id": ident,
            "scope": "person",
            "content": {"i": i},
            "sidebar": {},
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": None,
        }
    return ids


async def _export_with_runs(
    fake: FakePostHog, ph: aposthog.Client, n: int
) -> tuple[str, list[str]]:
    export = await ph.batch_exports.create(
        name="runs",
        destination=aposthog.BatchExportDestination(
            type="AwsS3",
            config={"bucket_name": "b", "region": "eu-west-1", "prefix": "p/"},
            integration=fake.add_integration("aws-s3")["id"],
        ),
        interval="hour",
    )
    runs = [
        fake.add_batch_export_run(export.id, created_at=NOW - dt.timedelta(minutes=i))
        for i in range(n)
    ]
    return export.id, [run["id"] for run in runs]


def _settled_tasks() -> set[asyncio.Task[Any]]:
    """The client side's unfinished tasks (the fake's server tasks share the loop)."""
    return {
        t
        for t in asyncio.all_tasks()
        if not t.done() and "web_protocol" not in t.get_coro().cr_code.co_filename  # type: ignore[union-attr]
    }


async def _until(condition: Any, timeout: float = 5.0) -> None:
    """Wait until `condition()` holds: the states polled here signal no event."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


# ----------------------------------------------------------------- planned offsets


@given(
    count=st.integers(0, 5000),
    limit=st.integers(1, 300),
    offset=st.integers(0, 5000),
    wanted=st.none() | st.integers(0, 6000),
    extra=st.sampled_from(["", "level=ERROR&", "search=a%26b&"]),
)
def test_planned_pages_cover_the_rest_of_the_list_once(
    count: int, limit: int, offset: int, wanted: int | None, extra: str
) -> None:
    """From a `next` URL, the planned pages cover [offset, count) without gap or overlap."""
    urls = planned_urls(f"https://h/api/x/?{extra}limit={limit}&offset={offset}", count, wanted)
    assert urls is not None
    starts = [int(u.rsplit("offset=", 1)[1]) for u in urls]
    stop = count if wanted is None else min(count, offset + wanted)
    assert starts == list(range(offset, stop, limit))
    assert all(u.startswith(f"https://h/api/x/?{extra}limit={limit}&offset=") for u in urls)


@pytest.mark.parametrize(
    "url",
    [
        "https://h/api/x/?cursor=cD0yMDI0",
        "https://h/api/x/?limit=10",
        "https://h/api/x/?offset=10",
        "https://h/api/x/?limit=0&offset=10",
        "https://h/api/x/?limit=10&offset=10&offset=20",
        "https://h/api/x/?limit=ten&offset=10",
    ],
)
def test_no_plan_without_one_limit_and_one_offset(url: str) -> None:
    """Anything but a plain limit/offset `next` URL is followed, not computed."""
    assert planned_urls(url, 100) is None


def test_a_huge_count_plans_only_the_pages_taken() -> None:
    """A `count` of a million pages costs nothing until those pages are taken."""
    tracemalloc.start()
    try:
        urls = planned_urls("https://h/api/x/?limit=1&offset=1", 10**6)
        assert urls is not None
        assert "https://h/api/x/?limit=1&offset=1" == next(iter(urls))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # a list of every URL would be some 100 MB


# ----------------------------------------------------------------- prefetch


@pytest.mark.parametrize("ahead", [0, 1, 2, 5, 50])
async def test_prefetch_yields_every_record_in_order(
    fake: FakePostHog, ph: aposthog.Client, ahead: int
) -> None:
    ids = _seed(fake, 23)
    got = [c.id async for c in ph.customer_profile_configs.list(limit=4).prefetch(ahead)]
    assert ids == got
    assert 6 == len(fake.requests)  # no page fetched twice, none past the end


@pytest.mark.parametrize("ahead", [1, 3])
async def test_prefetch_on_a_cursor_list_follows_next(
    fake: FakePostHog, ph: aposthog.Client, ahead: int
) -> None:
    export_id, run_ids = await _export_with_runs(fake, ph, 230)
    fake.reset_stats()
    paginator = ph.batch_exports.list_runs(export_id).prefetch(ahead)
    got = [run.id async for run in paginator]
    assert run_ids == got  # newest first, as created
    assert 3 == len(fake.requests)
    assert paginator.next_url is None


async def test_prefetch_fetches_ahead_while_the_consumer_works(fake: FakePostHog) -> None:
    """With prefetch(2) the two pages after the one in hand are requested meanwhile."""
    _seed(fake, 50)
    async with fake.client() as ph:
        pages = ph.customer_profile_configs.list(limit=5).prefetch(2).pages()
        first = await pages.__anext__()
        await _until(lambda: len(fake.requests) == 3)
        await asyncio.sleep(0.05)
        assert 3 == len(fake.requests)  # no further than two ahead
        assert "id-0000" == first.results[0].id
        second = await pages.__anext__()
        assert "id-0005" == second.results[0].id
        await _until(lambda: len(fake.requests) == 4)
        await pages.aclose()


async def test_prefetch_rejects_a_bad_count(ph: aposthog.Client) -> None:
    paginator = ph.customer_profile_configs.list()
    with pytest.raises(ValueError, match="pages"):
        paginator.prefetch(-1)
    with pytest.raises(TypeError, match="pages"):
        paginator.prefetch(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pages"):
        paginator.prefetch(True)


@pytest.mark.parametrize("ahead", [1, 3, 10])
async def test_a_failed_page_raises_where_it_belongs(
    fake: FakePostHog, ph: aposthog.Client, ahead: int
) -> None:
    """
    Every record before the one that does not fit is seen (those of its page before it
    included: a records loop builds each as it takes it); the error comes at that record.
    """
    _seed(fake, 40)
    fake.customer_profile_configs["id-0012"]["scope"] = 12  # page 3 does not decode
    seen: list[str] = []
    with pytest.raises(aposthog.ResponseDecodeError):
        async for config in ph.customer_profile_configs.list(limit=5).prefetch(ahead):
            seen.append(config.id)  # noqa: PERF401 (what was seen before the error)
    assert [f"id-{i:04d}" for i in range(12)] == seen
    with pytest.raises(aposthog.ResponseDecodeError):
        await ph.customer_profile_configs.list(limit=5).to_list()


async def test_leaving_the_loop_early_cancels_what_is_in_flight(fake: FakePostHog) -> None:
    """A break with fetches in flight: they are cancelled, their connections let go."""
    _seed(fake, 60)
    async with fake.client() as ph:
        before = _settled_tasks()
        async for _config in ph.customer_profile_configs.list(limit=5).prefetch(4):
            fake.latency = 5  # pages 2-5, requested from now on, would take 5 s
            await _until(lambda: fake.in_flight >= 4)
            break
        # Well before those 5 s: nothing of the client is left running or holding on.
        await _until(lambda: _settled_tasks() <= before, timeout=1)
        session = ph._api.pipeline.transport._session
        assert session is not None
        await _until(lambda: not getattr(session.connector, "_acquired", set()), timeout=1)
        assert 5 == len(fake.requests)  # and nothing was requested after the break
        fake.latency = 0


async def test_aclose_waits_for_the_cancelled_fetches(fake: FakePostHog) -> None:
    _seed(fake, 60)
    async with fake.client() as ph:
        before = _settled_tasks()
        pages = ph.customer_profile_configs.list(limit=5).prefetch(3).pages()
        await pages.__anext__()
        fake.latency = 1
        await pages.__anext__()  # already fetched; pages 3-5 now in flight, slowly
        await _until(lambda: len(fake.requests) >= 4)
        await pages.aclose()
        assert _settled_tasks() <= before
        fake.latency = 0
        with pytest.raises(StopAsyncIteration):
            await pages.__anext__()


async def test_a_cancelled_consumer_leaves_nothing_behind(fake: FakePostHog) -> None:
    _seed(fake, 60)
    async with fake.client() as ph:
        before = _settled_tasks()
        with anyio.move_on_after(0.3):
            async for _ in ph.customer_profile_configs.list(limit=5).prefetch(5):
                fake.latency = 5
                await anyio.sleep(10)
        await _until(lambda: _settled_tasks() <= before, timeout=1)
        assert 6 == len(fake.requests)
        fake.latency = 0


# ----------------------------------------------------------------- to_list


async def test_to_list_fetches_the_remaining_offsets_concurrently(fake: FakePostHog) -> None:
    ids = _seed(fake, 97)
    async with fake.client(max_concurrency=8) as ph:
        fake.latency = 0.02
        got = await ph.customer_profile_configs.list(limit=5).to_list()
        fake.latency = 0
    assert ids == [c.id for c in got]  # in order, no duplicates, no gaps
    assert 20 == len(fake.requests)
    assert 8 == fake.max_in_flight  # bounded by the client's max_concurrency
    offsets = sorted(int(dict(r.query).get("offset", "0")) for r in fake.requests)
    assert list(range(0, 97, 5)) == offsets


async def test_to_list_with_a_limit_fetches_only_what_it_needs(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    _seed(fake, 100)
    got = await ph.customer_profile_configs.list(limit=10).to_list(limit=35)
    assert [f"id-{i:04d}" for i in range(35)] == [c.id for c in got]
    assert 4 == len(fake.requests)


async def test_to_list_on_a_cursor_list_reads_one_page_ahead(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    export_id, run_ids = await _export_with_runs(fake, ph, 250)
    fake.reset_stats()
    got = await ph.batch_exports.list_runs(export_id).to_list()
    assert run_ids == [run.id for run in got]
    assert 3 == len(fake.requests)
    assert fake.max_in_flight == 1  # each cursor comes from the page before it


async def test_to_list_from_a_resumed_paginator(fake: FakePostHog, ph: aposthog.Client) -> None:
    ids = _seed(fake, 30)
    first = await ph.customer_profile_configs.list(limit=4)
    assert first.next is not None
    rest = await ph.customer_profile_configs.list().resume_from(first.next).to_list()
    assert ids[4:] == [c.id for c in rest]


async def test_to_list_follows_next_when_the_list_grew(fake: FakePostHog) -> None:
    """More records than `count` said: the last planned page's `next` is followed."""
    ids = _seed(fake, 12)
    async with fake.client() as ph:
        paginator = ph.customer_profile_configs.list(limit=5)
        pages = paginator.pages()
        first = await pages.__anext__()
        await pages.aclose()
        assert 12 == first.count
        more = _seed(fake, 16)
        got = await paginator.to_list()
    assert more == [c.id for c in got]
    assert ids == more[:12]


async def test_to_list_cancelled_mid_way_leaves_nothing_behind(fake: FakePostHog) -> None:
    """A to_list() whose caller is cancelled cancels its fetches and waits for them."""
    _seed(fake, 60)
    async with fake.client() as ph:
        before = _settled_tasks()
        fake.latency = 0.1  # every answer waits: the fetches of pages 2-12 are caught in flight
        got: list[Any] = []

        async def to_list() -> None:
            got.extend(await ph.customer_profile_configs.list(limit=5).to_list())

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(to_list)
                # Page 1 answered and a later page asked for: mid-way. This poll wakes
                # (every 1 ms) before any page asked for now can be answered (0.1 s later).
                await _until(lambda: len(fake.requests) >= 2)
                scope.cancel()
        assert got == []  # cancelled mid-way, not finished
        # Right after the cancellation: no fetch of the client is left running.
        assert _settled_tasks() <= before
        fake.latency = 0


@contextlib.asynccontextmanager
async def _claiming_count(count: int, hits: list[str]) -> AsyncIterator[str]:
    """A loopback server whose first page claims `count` records; every later page is the last."""
    record: dict[str, Any] = {
        "id": "id-0000",
        "scope": "person",
        "content": {},
        "sidebar": {},
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": None,
    }

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        if "offset" not in request.query:
            nxt = str(request.url.with_query(limit=1, offset=1))
            return web.json_response({"count": count, "next": nxt, "results": [record]})
        return web.json_response({"count": 1, "next": None, "results": []})

    async with serve(handler) as url:
        yield url


@pytest.mark.parametrize("count", [10**8, 10**30])
async def test_to_list_with_a_huge_count_fetches_only_what_is_planned_ahead(count: int) -> None:
    """A first page claiming 10**30 records: the read-ahead's pages are planned, no more."""
    hits: list[str] = []
    async with (
        _claiming_count(count, hits) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with anyio.fail_after(5):
            got = await ph.customer_profile_configs.list().to_list()
            assert ["id-0000"] == [c.id for c in got]
            assert ["id-0000"] == [
                c.id async for c in ph.customer_profile_configs.list().prefetch(4)
            ]
    assert len(hits) <= (1 + 64) + (1 + 4)  # each a first page, then one read-ahead at most


@contextlib.asynccontextmanager
async def _stale_count(total: int, count: int) -> AsyncIterator[str]:
    """A loopback limit/offset list of `total` records whose first page says `count`."""

    async def handler(request: web.Request) -> web.Response:
        limit, offset = int(request.query.get("limit", "5")), int(request.query.get("offset", "0"))
        nxt = request.url.with_query(limit=limit, offset=offset + limit)
        return web.json_response(
            {
                "count": count if offset == 0 else total,  # counted before the rest arrived
                "next": str(nxt) if offset + limit < total else None,
                "previous": None,
                "results": [_record(i) for i in range(offset, min(total, offset + limit))],
            }
        )

    async with serve(handler) as url:
        yield url


async def test_to_list_follows_next_past_a_stale_count() -> None:
    """The first page says 12 records, the list holds 16: every one of them is collected."""
    total = 16
    want = [f"id-{i:04d}" for i in range(total)]
    async with (
        _stale_count(total, 12) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with anyio.fail_after(5):
            assert want == [c.id for c in await ph.customer_profile_configs.list().to_list()]
            assert want == [c.id async for c in ph.customer_profile_configs.list().prefetch(3)]
            got = await ph.customer_profile_configs.list().to_list(limit=14)
            assert want[:14] == [c.id for c in got]


async def test_to_list_with_a_limit_follows_next_past_a_stale_count() -> None:
    """to_list(limit=100) on 16 records whose first page says 12: all 16, as to_list() gives."""
    async with (
        _stale_count(16, 12) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with anyio.fail_after(5):
            got = await ph.customer_profile_configs.list().to_list(limit=100)
    assert [f"id-{i:04d}" for i in range(16)] == [c.id for c in got]


def _record(i: int) -> dict[str, Any]:
    return {
        "id": f"id-{i:04d}",
        "scope": "person",
        "content": {},
        "sidebar": {},
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": None,
    }


async def test_a_cancel_scope_around_reading_ahead_ends_it_and_nothing_escapes(
    fake: FakePostHog,
) -> None:
    """
    `move_on_after` around `to_list()` or a `prefetch()` loop stops the read where it is:
    the scope absorbs its cancel (with anyio 4.0-4.5 on Python 3.10 it escaped the scope
    as a CancelledError, most times), and the client goes on working.
    """
    _seed(fake, 30)
    fake.latency = 0.05  # to_list() takes two round trips at least (0.1 s), a loop five
    async with fake.client() as ph:
        for attempt in range(12):
            with anyio.move_on_after(0.005 + attempt * 0.004) as scope:
                if attempt % 2:
                    await ph.customer_profile_configs.list(limit=2).to_list()
                else:
                    async for _ in ph.customer_profile_configs.list(limit=2).prefetch(3).pages():
                        await asyncio.sleep(0)
            assert scope.cancelled_caught, attempt  # every scope ends before 0.05 s
            await asyncio.sleep(0.01)  # a cancel that escaped would land here
        fake.latency = 0.0
        assert 30 == len(await ph.customer_profile_configs.list().to_list())


@pytest.mark.parametrize("ahead", [0, 1, 3])
async def test_no_page_is_fetched_after_aclose(fake: FakePostHog, ahead: int) -> None:
    """Once closed, the reader is over: a further `__anext__` stops without a request."""
    _seed(fake, 20)
    async with fake.client() as ph:
        pages = ph.customer_profile_configs.list(limit=5).prefetch(ahead).pages()
        await pages.__anext__()
        await pages.aclose()
        sent = len(fake.requests)
        with pytest.raises(StopAsyncIteration):
            await pages.__anext__()
        assert sent == len(fake.requests)
        assert 1 <= sent <= 1 + ahead


# ----------------------------------------------------------------- the reader itself

_BASE = "https://h/api/x/"


class _Pages:
    """Fetches for a `PageReader`, each page one record: what was asked for, and how it ended."""

    def __init__(self, *, count: int | None) -> None:
        self.count = count  # None: a cursor list that never ends; else limit=1 offsets
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.cleaned: list[str] = []
        self.release = asyncio.Event()  # a blocking fetch answers once this is set
        self.block: set[int] = set()  # the pages whose fetch waits for `release`
        self.fail: set[int] = set()  # the pages whose fetch raises
        self.slow_cleanup = False  # a cancelled fetch takes many loop turns to let go
        self.fail_when_cancelled = False  # a cancelled fetch ends in an error of its own
        self.fetched = anyio.Event()  # set once `wait_for` fetches have started
        self.wait_for = 0

    def _page(self, n: int) -> Page[int]:
        if self.count is None:
            nxt: str | None = f"{_BASE}?cursor={n + 1}"
        else:
            nxt = f"{_BASE}?limit=1&offset={n + 1}" if n + 1 < self.count else None
        return new_page([n], self.count, nxt, None, self.fetch)

    async def first(self) -> Page[int]:
        return self._page(0)

    async def fetch(self, url: str) -> Page[int]:
        n = int(url.rsplit("=", 1)[1])
        self.started.append(url)
        if len(self.started) == self.wait_for:
            self.fetched.set()
        try:
            if n in self.fail:
                await self.fetched.wait()  # the other fetches are under way first
                raise ValueError(f"page {n}")
            if n in self.block:
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(url)
            if self.slow_cleanup:  # letting go of a connection takes a while
                for _ in range(20):
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.sleep(0)
            self.cleaned.append(url)
            if self.fail_when_cancelled:
                raise ConnectionResetError(url) from None
            raise
        return self._page(n)

    def reader(self, ahead: int, plan_ahead: int | None = None) -> PageReader[int]:
        return PageReader(
            self.first, self.fetch, lambda _: None, ahead=ahead, plan_ahead=plan_ahead
        )


async def _turns(n: int = 50) -> None:
    """Let every ready task run: the fetches here wait on nothing but each other."""
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("ahead", [1, 2, 3])
async def test_a_cursor_chain_reads_no_further_than_ahead(ahead: int) -> None:
    pages = _Pages(count=None)
    reader = pages.reader(ahead)
    assert [0] == (await reader.__anext__()).results
    await _turns()
    assert [f"{_BASE}?cursor={i}" for i in range(1, ahead + 1)] == pages.started
    assert [1] == (await reader.__anext__()).results
    await _turns()
    assert [f"{_BASE}?cursor={i}" for i in range(1, ahead + 2)] == pages.started
    await reader.aclose()


async def test_reading_far_ahead_on_a_short_cursor_list_makes_a_task_per_page_only() -> None:
    """
    `prefetch(n)` on a `next` chain starts each fetch when the page before it arrives,
    so a huge `n` costs nothing on a short list: it made `n` waiting tasks at once
    (`prefetch(100_000)` on a two-page list: 100,000 tasks, seconds and hundreds of MB).
    """
    started: list[str] = []

    async def first() -> Page[int]:
        return new_page([0], None, f"{_BASE}?cursor=1", None, fetch)

    async def fetch(url: str) -> Page[int]:
        started.append(url)
        n = int(url.rsplit("=", 1)[1])
        return new_page([n], None, f"{_BASE}?cursor={n + 1}" if n < 2 else None, None, fetch)

    before = len(asyncio.all_tasks())
    reader = PageReader(first, fetch, lambda _: None, ahead=1000)
    most = 0
    results = []
    async for page in reader:
        most = max(most, len(asyncio.all_tasks()) - before)
        results += page.results
        await _turns()
        most = max(most, len(asyncio.all_tasks()) - before)
    assert [0, 1, 2] == results
    assert [f"{_BASE}?cursor=1", f"{_BASE}?cursor=2"] == started
    assert most <= 2
    assert len(asyncio.all_tasks()) == before


async def test_a_dropped_cursor_reader_starts_no_further_fetch() -> None:
    """A reader dropped mid-chain (no aclose()) cancels what is in flight and starts no more."""
    pages = _Pages(count=None)
    pages.block = {1}
    reader = pages.reader(5)
    await reader.__anext__()
    await _turns()
    assert [f"{_BASE}?cursor=1"] == pages.started
    del reader
    gc.collect()
    pages.release.set()
    await _turns()
    assert [f"{_BASE}?cursor=1"] == pages.started
    assert [f"{_BASE}?cursor=1"] == pages.cancelled


async def test_aclose_cancels_the_fetches_in_flight() -> None:
    """aclose() does not wait for slow pages to arrive: it cancels them, then waits."""
    pages = _Pages(count=10)
    pages.block = set(range(1, 10))
    pages.wait_for = 3
    reader = pages.reader(3)
    await reader.__anext__()
    await pages.fetched.wait()
    closing = asyncio.ensure_future(reader.aclose())
    done, _ = await asyncio.wait({closing}, timeout=10)  # instant unless it waits for `release`
    pages.release.set()
    await closing
    assert {closing} == done
    assert sorted(pages.started) == sorted(pages.cancelled)
    assert 3 == len(pages.cancelled)


async def test_an_error_cancels_the_fetches_in_flight() -> None:
    """The consumer meets a failed page: the pages after it are cancelled, the reader is over."""
    pages = _Pages(count=10)
    pages.fail = {1}
    pages.block = set(range(2, 10))
    pages.wait_for = 3
    reader = pages.reader(3)
    await reader.__anext__()
    with pytest.raises(ValueError, match="page 1"):
        await reader.__anext__()
    # No aclose() and the reader still referenced: the error alone stopped everything.
    await _until(lambda: len(pages.cancelled) == 2)
    assert [f"{_BASE}?limit=1&offset={i}" for i in (2, 3)] == sorted(pages.cancelled)
    with pytest.raises(StopAsyncIteration):
        await reader.__anext__()
    pages.release.set()
    await reader.aclose()


async def test_a_cancelled_consumer_s_aclose_waits_for_every_fetch() -> None:
    """
    Cancelled while awaiting a page, then closed within the cancelled scope (as `to_list()`
    does): aclose() still waits until every fetch has let go, however long that takes.
    """
    pages = _Pages(count=10)
    pages.block = set(range(1, 10))
    pages.slow_cleanup = True
    pages.wait_for = ahead = 3
    reader = pages.reader(ahead)

    async def cancel_once_fetching() -> None:
        await pages.fetched.wait()
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_once_fetching)
        async with contextlib.aclosing(reader):
            await reader.__anext__()
            await reader.__anext__()  # page 1 never comes: cancelled while awaiting it
    assert ahead == len(pages.started)
    assert sorted(pages.started) == sorted(pages.cleaned)


async def test_a_fetch_failing_as_it_is_cancelled_is_not_reported() -> None:
    """A fetch that fails while being cancelled (the consumer stopped): no 'never retrieved'."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        pages = _Pages(count=10)
        pages.block = set(range(1, 10))
        pages.fail_when_cancelled = True
        pages.wait_for = 2
        reader = pages.reader(2)
        await reader.__anext__()
        await pages.fetched.wait()
        await reader.aclose()
        assert 2 == len(pages.cancelled)
        del reader, pages
        gc.collect()
        await _turns(5)
    finally:
        loop.set_exception_handler(previous)
    assert [] == [c.get("message") for c in reported]


# ----------------------------------------------------------------- planned pages (QA)


@pytest.mark.parametrize("how", ["to_list", "prefetch"])
async def test_planned_pages_skip_no_record_when_pages_are_short(how: str) -> None:
    """
    `_pagination`'s contract: the paginator "never computes an offset or a cursor
    itself", following `next`, "which keeps it correct for both and for any future
    style". Read ahead, a limit/offset list's offsets are computed from the first
    page's `limit` instead. A server whose pages hold fewer records than `limit`, its
    `next` naming where the following page starts, then lost the records between:
    `async for` read 10 records, `to_list()` and `prefetch(2)` 8.
    """

    async def handler(request: web.Request) -> web.Response:
        limit, offset = int(request.query.get("limit", "4")), int(request.query.get("offset", "0"))
        end = min(offset + 2, 10)  # two records a page, whatever the limit
        nxt = request.url.update_query(limit=limit, offset=end)
        return web.json_response(
            {
                "count": 10,
                "next": str(nxt) if end < 10 else None,
                "previous": None,
                "results": [_record(i) for i in range(offset, end)],
            }
        )

    want = [f"id-{i:04d}" for i in range(10)]
    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with anyio.fail_after(5):
            assert want == [c.id async for c in ph.customer_profile_configs.list(limit=4)]
            paginator = ph.customer_profile_configs.list(limit=4)
            if how == "to_list":
                got = [c.id for c in await paginator.to_list()]
            else:
                got = [c.id async for c in paginator.prefetch(2)]
    assert want == got


# ----------------------------------------------------------------- resume points


def _page_of(n: int, count: int | None, next_url: str | None = "https://h/l/?next") -> Page[int]:
    async def never(_: str) -> Page[int]:
        raise AssertionError

    return new_page(list(range(n)), count, next_url, None, never)


@given(
    before=st.sampled_from(["", "limit=5", "a=1&limit=5", "limit=5&z=%20"]),
    offset=st.one_of(st.none(), st.integers(0, 10**6)),
    after=st.sampled_from(["", "&b=2"]),
    index=st.integers(1, 4),
)
def test_a_record_of_a_limit_offset_page_has_its_own_offset(
    before: str, offset: int | None, after: str, index: int
) -> None:
    """Only the offset moves (added when the page's URL has none); the rest is kept as is."""
    query = before if offset is None else "&".join(filter(None, [before, f"offset={offset}"]))
    query += after if query else after.lstrip("&")
    url = f"https://h/api/l/?{query}" if query else "https://h/api/l/"
    got = record_url(url, _page_of(5, 100), index)
    expected_query = (
        query.replace(f"offset={offset}", f"offset={offset + index}")
        if offset is not None
        else (f"{query}&offset={index}" if query else f"offset={index}")
    )
    assert f"https://h/api/l/?{expected_query}" == got


@pytest.mark.parametrize(
    ("url", "count"),
    [
        ("https://h/l/?cursor=abc", None),  # a cursor page: no URL of its own per record
        ("https://h/l/?cursor=abc&limit=2", 10),
        ("https://h/l/?offset=1&offset=2", 10),  # ambiguous: the page itself, repeated
        ("https://h/l/?limit=1&limit=2", 10),
    ],
)
def test_a_record_without_a_url_of_its_own_resumes_at_its_page(url: str, count: int | None) -> None:
    assert url == record_url(url, _page_of(5, count), 3)


def test_a_resume_point_at_a_page_s_end_is_its_next() -> None:
    page = _page_of(3, 10, next_url="https://h/l/?offset=3")
    assert "https://h/l/?offset=3" == ResumePoint("https://h/l/", page, 3).resolve()
    assert "https://h/l/" == ResumePoint("https://h/l/", page, 0).resolve()
    assert "https://h/l/?offset=2" == ResumePoint("https://h/l/", page, 2).resolve()
    assert ResumePoint("https://h/l/", _page_of(0, 0, next_url=None), 0).resolve() is None
    assert ResumePoint(None).resolve() is None


async def test_reading_far_ahead_on_a_list_whose_count_is_overstated_makes_few_tasks() -> None:
    """
    A first page claiming 10**8 records on a one-record list: `prefetch(5_000)` spawns
    one task per planned page, 5,000 at once in one synchronous step (the event loop is
    blocked meanwhile; `prefetch(100_000)` took 10 s and 300 MB for one record), though
    `max_concurrency` lets only a few of them send at a time and the list ends at once.
    The cursor chain makes one task a page; the plan should not make more than the client
    can send at once either.
    """
    hits: list[str] = []
    async with (
        _claiming_count(10**8, hits) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, max_concurrency=4) as ph,
    ):
        before = len(asyncio.all_tasks())
        most = 0
        got = []
        with anyio.fail_after(10):
            async for config in ph.customer_profile_configs.list().prefetch(5_000):
                most = max(most, len(asyncio.all_tasks()) - before)
                got.append(config.id)
        assert ["id-0000"] == got
    assert most <= 200, f"{most} tasks in flight for a one-record list"


async def test_a_planned_page_taken_before_its_done_callback_ran_does_not_end_the_list() -> None:
    """`max_concurrency=1`: one planned fetch in flight. The consumer wakes in the same
    loop turn the fetch finishes (woken by what the fetch did last: a log handler's queue,
    a signal, here an event), before the fetch's done callbacks run. It takes that page,
    whose task is done, and reads on at once: the list must go on, not end after 2 of its
    5 pages with no error."""
    count = 5
    woken = asyncio.Event()

    def page(n: int) -> Page[int]:
        nxt = f"{_BASE}?limit=1&offset={n + 1}" if n + 1 < count else None
        return new_page([n], count, nxt, None, fetch)

    async def first() -> Page[int]:
        return page(0)

    async def fetch(url: str) -> Page[int]:
        n = int(url.rsplit("=", 1)[1])
        await asyncio.sleep(0)
        if n == 1:
            woken.set()  # the consumer's wake-up is queued before this task's callbacks
        return page(n)

    reader = PageReader(first, fetch, lambda _: None, ahead=4, sending=1)
    got: list[int] = []
    with anyio.fail_after(5):
        async for p in reader:
            got += p.results
            if p.results == [0]:
                await woken.wait()
    assert [0, 1, 2, 3, 4] == got


@pytest.mark.parametrize("ahead", [0, 2])
@pytest.mark.parametrize("empties", [1, MAX_EMPTY_PAGES])
async def test_a_few_empty_pages_on_the_way_to_records_are_followed(
    ahead: int, empties: int
) -> None:
    """DRF's cursor pages can be empty and still name a `next` (read backwards): as many
    as `MAX_EMPTY_PAGES` in a row are followed to the records after them."""

    async def first() -> Page[int]:
        return new_page([], None, f"{_BASE}?cursor=1", None, fetch)

    async def fetch(url: str) -> Page[int]:
        n = int(url.rsplit("=", 1)[1])
        results = [n] if n >= empties else []
        return new_page(results, None, f"{_BASE}?cursor={n + 1}" if n < 5 else None, None, fetch)

    reader = PageReader(first, fetch, lambda _: None, ahead=ahead)
    assert [n for page in [p async for p in reader] for n in page.results] == list(
        range(empties, 6)
    )


async def test_an_empty_last_page_ends_the_list_quietly() -> None:
    """An empty page without a `next` is a list's end (an empty list), whatever came before."""

    async def first() -> Page[int]:
        return new_page([], None, f"{_BASE}?cursor=1", None, fetch)

    async def fetch(url: str) -> Page[int]:
        n = int(url.rsplit("=", 1)[1])
        return new_page(
            [], None, f"{_BASE}?cursor={n + 1}" if n < MAX_EMPTY_PAGES else None, None, fetch
        )

    assert [] == [n async for page in PageReader(first, fetch, None) for n in page.results]


# ----------------------------------------------------------------- a list that changes (QA)


@contextlib.asynccontextmanager
async def _growing_while_read(
    limit: int, total: int, change: str, *, wait: float = 1.0
) -> AsyncIterator[str]:
    """
    A newest-first limit/offset list (as PostHog orders exports: `-created_at`) of `total`
    records. The request for the second page (offset=limit) waits until the third page
    (offset=2*limit) has been answered (up to `wait` seconds: a read one page after the
    other never asks for it first), then a record is created at the front, the newest one
    deleted, or (`replaced`) one created at the front and the oldest deleted, the count
    kept, before the second page is answered: what read-ahead's concurrent requests meet
    when another process creates (or deletes) an export meanwhile.
    """
    records = [_record(i) for i in range(total)]
    third_served = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        offset = int(request.query.get("offset", "0"))
        if offset == limit:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(third_served.wait(), wait)
            if change in ("created", "replaced"):
                records.insert(0, _record(9000))
            if change == "deleted":
                del records[0]
            elif change == "replaced":
                del records[-1]
        nxt = request.url.with_query(limit=limit, offset=offset + limit)
        body = {
            "count": len(records),
            "next": str(nxt) if offset + limit < len(records) else None,
            "previous": None,
            "results": records[offset : offset + limit],
        }
        if offset == 2 * limit:
            third_served.set()
        return web.json_response(body)

    async with serve(handler) as url:
        yield url


async def _read_ahead(paginator: aposthog.AsyncPaginator[Any], how: str) -> list[str]:
    """The ids `to_list()` (or a loop with `prefetch(3)`) reads, within 5 s."""
    with anyio.fail_after(5):
        if how == "to_list":
            return [c.id for c in await paginator.to_list()]
        return [c.id async for c in paginator.prefetch(3)]


@pytest.mark.parametrize("how", ["to_list", "prefetch"])
async def test_read_ahead_skips_no_record_when_one_is_created_meanwhile(how: str) -> None:
    """
    README: "records deleted (or created) while a loop reads it move the records after
    them, so the loop skips (or repeats) some". Read one page after the other, a record
    created at the front only repeats one (a sequential read of this server gives
    id-0001 twice and every record). Read ahead, the third page was answered before the
    record was created and the second after: id-0003, in the list all along, was lost
    without an error (before the fix), from the very `to_list()` the README says to
    collect with; the changed `count` now drops the pages fetched ahead.
    """
    async with (
        _growing_while_read(2, 8, "created") as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        got = await _read_ahead(ph.customer_profile_configs.list(limit=2), how)
    missing = {f"id-{i:04d}" for i in range(8)} - set(got)
    assert set() == missing, got


@pytest.mark.parametrize("how", ["to_list", "prefetch"])
async def test_read_ahead_repeats_no_record_when_one_is_deleted_meanwhile(how: str) -> None:
    """
    The mirror case: a record deleted at the front makes a sequential read skip one
    (documented), never repeat one. Read ahead, the third page (answered before the
    delete) and the second (after it) both hold id-0004: `to_list()` returns it twice.
    """
    async with (
        _growing_while_read(2, 8, "deleted") as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        got = await _read_ahead(ph.customer_profile_configs.list(limit=2), how)
    assert len(got) == len(set(got)), got


@pytest.mark.parametrize("how", ["for", "pages"])
async def test_a_read_one_page_after_another_loses_no_record_when_a_change_keeps_the_count(
    how: str,
) -> None:
    """
    Read ahead (`to_list()`, `prefetch(n)`), a change to a limit/offset list is noticed
    by its `count` (the pages fetched ahead are then dropped); one that keeps the count
    (an export created at the front while the oldest is deleted, a sync tool replacing
    one) goes unseen there, and a record may be skipped: the README says so, and that a
    list changed while it is read is read one page after the other. So read, this server
    gives every record that was in the list all along (id-0001 twice).
    """
    limit, total = 2, 8
    async with (
        _growing_while_read(limit, total, "replaced", wait=0.05) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with anyio.fail_after(5):
            paginator = ph.customer_profile_configs.list(limit=limit)
            if how == "for":
                got = [c.id async for c in paginator]
            else:
                got = [c.id async for page in paginator.pages() for c in page.results]
    # id-0007 was deleted before it was read; every other record was there all along.
    missing = {f"id-{i:04d}" for i in range(total - 1)} - set(got)
    assert set() == missing, got


# ----------------------------------------------------------------- an offset of 5000 digits (QA)


@pytest.mark.parametrize("how", ["to_list", "prefetch", "next_url"])
async def test_a_next_whose_offset_has_thousands_of_digits_is_no_untyped_error(how: str) -> None:
    """
    A `next` whose `offset` has 5000 digits (a hostile or broken server): `async for`
    follows it as it is and reads every record. Read ahead, the offsets are planned with
    `int()`, which refuses strings over 4300 digits (Python's CVE-2020-10735 limit):
    `to_list()` and `prefetch(2)` raise a bare `ValueError`, not an aposthog error; and
    `paginator.next_url`, read in an `except` block as the README shows, raises it too
    for a loop stopped on that page, hiding the error being handled.
    """
    big = "9" * 5000

    async def handler(request: web.Request) -> web.Response:
        if "offset" not in request.query:
            nxt = f"{request.url.with_query(limit=2)}&offset={big}"
            return web.json_response(
                {"count": 4, "next": nxt, "previous": None, "results": [_record(0), _record(1)]}
            )
        return web.json_response(
            {"count": 4, "next": None, "previous": None, "results": [_record(2), _record(3)]}
        )

    want = [f"id-{i:04d}" for i in range(4)]
    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
    ):
        with anyio.fail_after(5):
            assert want == [c.id async for c in ph.customer_profile_configs.list(limit=2)]
            paginator = ph.customer_profile_configs.list(limit=2)
            try:
                if how == "to_list":
                    got = [c.id for c in await paginator.to_list()]
                elif how == "prefetch":
                    got = [c.id async for c in paginator.prefetch(2)]
                else:
                    got = []
                    async for config in paginator:
                        got.append(config.id)
                        if config.id == "id-0003":
                            break  # the record in hand: its URL is the page's, offset + 1
                    resume_at = paginator.next_url
                    assert resume_at is not None
            except ValueError as exc:
                pytest.fail(f"untyped {exc!r}"[:200])
    assert want == got


# ----------------------------------------------------------------- generated servers (QA)


def _server_page(shape: dict[str, Any], query: dict[str, str], host: str) -> dict[str, Any]:
    """One page of a server that does not change, shaped by `shape` (see below)."""
    path = "/api/environments/1/customer_profile_configs/"
    ids: list[int] = shape["ids"]
    if shape["cursor"]:
        limit, offset = shape["limit"], int(query.get("cursor", "0"))
    else:
        limit, offset = int(query.get("limit", "100")), int(query.get("offset", "0"))
    served = limit if shape["cap"] is None else min(limit, shape["cap"])
    results = [_record(i) for i in ids[offset : offset + served]]
    end = offset + len(results) if shape["step"] == "served" else offset + limit
    body: dict[str, Any] = {"next": None, "previous": None, "results": results}
    if end < len(ids):
        next_limit = shape["next_limit"] if offset >= shape["change_at"] else limit
        query_text = {
            "cursor": f"cursor={end}",
            "plain": f"limit={next_limit}&offset={end}",
            "reorder": f"offset={end}&limit={next_limit}",
            "extra": f"a=%2F&limit={next_limit}&offset={end}&z=1",
            "pad": f"limit={next_limit}&offset={end:04d}",
        }["cursor" if shape["cursor"] else shape["query"]]
        origin = {"same": host, "other": "https://proxy.internal", "relative": ""}[shape["host"]]
        body["next"] = f"{origin}{path}?{query_text}"
    if not shape["cursor"]:
        delta = {"exact": 0, "over": 5, "under": -3}[shape["count"]]
        body["count"] = max(0, len(ids) + delta)
    return body


def _sequential(shape: dict[str, Any], first: dict[str, str]) -> list[str]:
    """A plain reading of that server, following each `next` after the page before it."""
    got: list[str] = []
    query = first
    while True:
        body = _server_page(shape, query, "")
        got += [r["id"] for r in body["results"]]
        if body["next"] is None:
            return got
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(body["next"]).query))


_SHAPES = st.fixed_dictionaries(
    {
        "n": st.integers(0, 11),
        "dup": st.booleans(),  # records repeated further on
        "limit": st.integers(1, 4),
        "cap": st.none() | st.integers(1, 4),  # pages shorter than `limit`
        "step": st.sampled_from(["served", "limit"]),  # `next` after the records, or skipping
        "cursor": st.booleans(),
        "count": st.sampled_from(["exact", "over", "under"]),
        "query": st.sampled_from(["plain", "reorder", "extra", "pad"]),
        "host": st.sampled_from(["same", "other", "relative"]),
        "change_at": st.integers(0, 12),  # from this offset on, `next` names another limit
        "next_limit": st.integers(1, 4),
    }
)


@settings(derandomize=True, max_examples=12, deadline=None, database=None)
@given(shape=_SHAPES)
def test_every_way_of_reading_a_server_that_does_not_change_gives_the_same_records(
    shape: dict[str, Any],
) -> None:
    """
    Generated servers (counts overstated or understated, short pages, `next` URLs on
    another host, relative, reordered, zero-padded, with other parameters or another
    `limit`, cursor pages, records repeated): `async for`, `pages()`, `prefetch(n)` and
    `to_list()` give exactly what a plain sequential reading of `next` gives.
    """
    ids = list(range(shape["n"]))
    shape = {**shape, "ids": ids + ids[: len(ids) // 2] if shape["dup"] else ids}
    first = {} if shape["cursor"] else {"limit": str(shape["limit"])}
    want = _sequential(shape, first)

    async def handler(request: web.Request) -> web.Response:
        host = f"http://{request.host}"
        return web.json_response(_server_page(shape, dict(request.query), host))

    async def read_every_way() -> None:
        async with (
            serve(handler) as url,
            aposthog.Client(api_key="phx_k", host=url, project_id=1) as ph,
        ):

            def paginator() -> aposthog.AsyncPaginator[Any]:
                if shape["cursor"]:
                    return ph.customer_profile_configs.list()
                return ph.customer_profile_configs.list(limit=shape["limit"])

            with anyio.fail_after(10):
                assert want == [c.id async for c in paginator()]
                assert want == [c.id for c in await paginator().to_list()]
                assert want[:3] == [c.id for c in await paginator().to_list(limit=3)]
                for ahead in (1, 2, 4):
                    assert want == [c.id async for c in paginator().prefetch(ahead)], ahead
                    pages = [p async for p in paginator().prefetch(ahead).pages()]
                    assert want == [c.id for p in pages for c in p.results], ahead

    asyncio.run(read_every_way())


# ------------------------------------------ records loops fuzzed over loopback (Hypothesis)

_FUZZ_EXPORT: dict[str, Any] = {key: value for key, value in _EXPORT.items() if key != "id"}


def _fuzz_record(kind: str, i: int) -> dict[str, Any]:
    if kind == "configs":
        return {
            "id": f"id-{i:04d}",
            "scope": "person",
            "content": {"i": i},
            "sidebar": {},
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": None,
        }
    run = dict(_FUZZ_EXPORT["latest_runs"][0])
    return {**_FUZZ_EXPORT, "id": f"7f1c0c4e-0000-4000-8000-{i:012d}", "latest_runs": [run]}


def _fuzz_index(ident: Any) -> int:
    return int(str(ident).rsplit("-", 1)[-1])


def _spoil(record: dict[str, Any], how: str) -> Any:
    """A record that does not fit its class (or, for "extra", one that does)."""
    record = {**record, "latest_runs": [dict(r) for r in record.get("latest_runs", [])]}
    if how == "wrong_type":
        record["created_at"] = 5
    elif how == "bad_value":
        record["created_at"] = "yesterday"
    elif how == "missing":
        del record["id"]
    elif how == "extra":
        record["zzz_unknown"] = {"nested": [1, 2]}
    elif how == "null":
        return None
    elif how == "run_status":  # nested: a batch export's run
        if record["latest_runs"]:
            record["latest_runs"][0]["status"] = 5
        else:
            record["created_at"] = 7
    elif how == "runs_not_a_list":
        record["latest_runs"] = {}
    return record


_SPOILS = ["wrong_type", "bad_value", "missing", "extra", "null"]
_EXPORT_SPOILS = [*_SPOILS, "run_status", "runs_not_a_list"]


class _FuzzServer:
    """Limit/offset or cursor pages of `n` records; some spoiled, some answers faulty."""

    def __init__(self, shape: dict[str, Any]) -> None:
        self.kind = shape["kind"]
        self.limit = shape["limit"]
        self.cursor = shape["cursor"]
        self.good = [_fuzz_record(self.kind, i) for i in range(shape["n"])]
        self.records: list[Any] = list(self.good)
        for index, how in shape["bad"].items():
            if index < len(self.records):
                self.records[index] = _spoil(self.good[index], how)
        self.faults: dict[int, str] = dict(shape["faults"])
        self.faulty = True
        self.answered = 0  # requests, faults on
        self.slow = shape["slow"]

    def repair(self, start: int, stop: int) -> None:
        self.records[start:stop] = self.good[start:stop]

    async def handler(self, request: web.Request) -> web.StreamResponse:
        fault = None
        if self.slow:
            await asyncio.sleep(0.002)
        if self.faulty:
            self.answered += 1
            fault = self.faults.pop(self.answered, None)
        if fault in ("429", "503", "500"):
            headers = {"Retry-After": "0"} if fault != "500" else {}
            body = {"type": "throttled", "code": "throttled", "detail": "x", "attr": None}
            return web.json_response(body, status=int(fault), headers=headers)
        query = dict(request.query)
        if self.cursor:
            offset, limit = int(query.get("cursor", "o0")[1:]), self.limit
        else:
            offset, limit = int(query.get("offset", "0")), int(query.get("limit", "100"))
        base = f"http://{request.host}{request.path}"
        stop = offset + limit
        nxt = None
        if stop < len(self.records):
            nxt = f"{base}?cursor=o{stop}" if self.cursor else f"{base}?limit={limit}&offset={stop}"
        page: dict[str, Any] = {"next": nxt, "previous": None, "results": self.records[offset:stop]}
        if not self.cursor:
            page["count"] = len(self.records)
        if fault == "drop":
            text = json.dumps(page).encode()
            response = web.StreamResponse(
                headers={"Content-Type": "application/json", "Content-Length": str(len(text))}
            )
            await response.prepare(request)
            await response.write(text[: len(text) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        return web.json_response(page)


def _start_of(url: str | None) -> int | None:
    """The record a resume URL starts at (None: the list ended)."""
    if url is None:
        return None
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    if "cursor" in query:
        return int(query["cursor"][1:])
    return int(query.get("offset", "0"))


def _client_tasks() -> set[asyncio.Task[Any]]:
    """Tasks other than this one and the loopback server's own."""
    me = asyncio.current_task()
    return {
        t
        for t in asyncio.all_tasks()
        if t is not me and "aiohttp/web" not in repr(t.get_coro()) and "web_protocol" not in repr(t)
    }


async def _settled() -> set[asyncio.Task[Any]]:
    for _ in range(400):
        left = _client_tasks()
        if not left:
            return left
        await asyncio.sleep(0.005)
    return _client_tasks()


_RECORD_SHAPES = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["configs", "exports"]),
        "n": st.integers(0, 11),
        "limit": st.integers(1, 4),
        "cursor": st.booleans(),
        "ahead": st.sampled_from([0, 0, 1, 2, 3]),
        "bad": st.dictionaries(st.integers(0, 10), st.sampled_from(_EXPORT_SPOILS), max_size=3),
        "faults": st.dictionaries(
            st.integers(1, 14), st.sampled_from(["429", "503", "500", "drop"]), max_size=4
        ),
        "actions": st.lists(
            st.tuples(
                st.sampled_from(
                    ["break", "aclose", "cancel", "cancel_in_body", "cancel_outside", "none"]
                ),
                st.integers(1, 6),
            ),
            max_size=3,
        ),
        "traced": st.sampled_from([False, False, "spans", "debug"]),
        "slow": st.booleans(),
    }
)


async def _oracle(
    server: _FuzzServer, paginator: aposthog.AsyncPaginator[Any]
) -> tuple[list[list[Any]], aposthog.ResponseDecodeError | None]:
    """What a page-by-page read from the same start gives: its pages' records, its error."""
    server.faulty = False
    pages: list[list[Any]] = []
    error = None
    try:
        async for page in paginator.pages():
            pages.append(page.results)  # noqa: PERF401
    except aposthog.ResponseDecodeError as exc:
        error = exc
    finally:
        server.faulty = True
    return pages, error


def _tracing() -> Any:
    """test_otel_client's switch and exporter (the one global tracer provider), or None."""
    import importlib.util

    if importlib.util.find_spec("opentelemetry.sdk") is None:
        return None
    from . import test_otel_client

    return test_otel_client


async def _fuzz_records(shape: dict[str, Any]) -> None:
    otel = _tracing() if shape["traced"] == "spans" else None
    if shape["traced"] == "spans" and otel is None:
        shape = {**shape, "traced": "debug"}  # pages built whole all the same
    server = _FuzzServer(shape)
    n, limit, cursor = shape["n"], shape["limit"], shape["cursor"]
    retry = aposthog.RetryPolicy(
        max_retries=3, initial_backoff=0.001, max_backoff=0.002, max_retry_after=0.002
    )
    async with (
        serve(server.handler) as url,
        aposthog.Client(api_key="phx_fuzzkey0123456789", host=url, project_id=1, retry=retry) as ph,
    ):
        resource = ph.customer_profile_configs if server.kind == "configs" else ph.batch_exports

        def fresh() -> aposthog.AsyncPaginator[Any]:
            return resource.list() if cursor else resource.list(limit=limit)

        start: str | None = None
        at = 0  # the record the next read starts at
        for session in range(3 * n + 12):
            action, k = (
                shape["actions"][session] if session < len(shape["actions"]) else ("none", 0)
            )
            base = fresh() if start is None else fresh().resume_from(start)
            pages, oracle_error = await _oracle(server, base)
            built = {_fuzz_index(r.id): r for page in pages for r in page}
            expected = list(built)
            assert expected[:1] in ([], [at]), (expected, at)
            error_page_start = at + len(expected)
            bad_at: int | None = None
            if oracle_error is not None:
                bad_at = error_page_start + min(
                    int(p.split("[", 2)[1].split("]")[0]) for p in oracle_error.paths
                )
            deliverable = list(expected)
            if bad_at is not None and not shape["traced"]:
                deliverable += range(error_page_start, bad_at)
            paginator = fresh() if start is None else fresh().resume_from(start)
            reading = paginator.prefetch(shape["ahead"]) if shape["ahead"] else paginator
            got: list[int] = []
            records: list[Any] = []
            in_body = False

            async def consume(
                reading: Any = reading,
                action: str = action,
                k: int = k,
                got: list[int] = got,
                records: list[Any] = records,
            ) -> None:
                nonlocal in_body
                reader = reading.__aiter__()
                async for record in reader:
                    got.append(_fuzz_index(record.id))
                    records.append(record)
                    if len(got) == k:
                        if action == "break":
                            break
                        if action == "aclose":
                            await reader.aclose()
                            return
                        if action in ("cancel", "cancel_in_body"):
                            asyncio.current_task().cancel()  # type: ignore[union-attr]
                            if action == "cancel_in_body":
                                in_body = True
                                await asyncio.sleep(0)

            if otel is not None:
                otel._SWITCH.on = True
            logger = logging.getLogger("aposthog")
            level = logger.level
            if shape["traced"] == "debug":
                logger.setLevel(logging.DEBUG)
            try:
                task = asyncio.ensure_future(consume())
                if action == "cancel_outside":
                    # Cancelled from outside once the server has answered k requests more.
                    target = server.answered + k
                    while not task.done() and server.answered < target:  # noqa: ASYNC110
                        await asyncio.sleep(0.0005)
                    task.cancel()
                await asyncio.wait([task], timeout=10)
            finally:
                failed_spans = []
                if otel is not None:
                    otel._SWITCH.on = False
                    failed_spans = [
                        span
                        for span in otel._EXPORTER.get_finished_spans()
                        if (span.attributes or {}).get("error.type")
                        == "aposthog.ResponseDecodeError"
                    ]
                    otel._EXPORTER.clear()
                logger.setLevel(level)
            assert task.done(), "the loop hangs"
            error = None if task.cancelled() else task.exception()
            stopped = action != "none" and len(got) >= k
            if action == "cancel_outside":
                stopped = task.cancelled()
            resume = _start_of(paginator.next_url)
            # Nothing delivered out of order or skipped within the read; each record
            # equal to the one `pages()` built (unknown fields and values included).
            assert got == list(range(at, at + len(got))), (got, at)
            assert [built[i] for i in got if i in built] == [
                r for r in records if _fuzz_index(r.id) in built
            ]
            if isinstance(error, aposthog.ResponseDecodeError):
                # (Its `status` is compared in test_pagination.py's strict xfail:
                # `test_a_records_loop_error_keeps_the_status_of_its_page`.)
                assert oracle_error is not None, error
                assert bad_at is not None
                # The page's own error, as `pages()` raised it.
                assert (str(error), error.paths, error.path) == (
                    str(oracle_error),
                    oracle_error.paths,
                    oracle_error.path,
                )
                assert error.body == oracle_error.body
                if shape["traced"] == "spans":  # the page's request reports it
                    assert failed_spans  # (pages fetched ahead may report theirs too)
                if not stopped:
                    upto = error_page_start if shape["traced"] else bad_at
                    assert got == list(range(at, upto)), (got, upto, shape["traced"])
                    page_start = at + ((upto - at) // limit) * limit if cursor else upto
                    assert resume == (error_page_start if shape["traced"] else page_start), (
                        resume,
                        upto,
                    )
            elif error is not None:
                # A fault that outlived the retries: the page it hit comes again.
                assert isinstance(error, (aposthog.APIStatusError, aposthog.APIConnectionError)), (
                    repr(error)
                )
                assert not isinstance(error, aposthog.ResponseDecodeError)
                assert got == deliverable[: len(got)]
                assert resume == at + len(got), (resume, got)
                assert (at + len(got) - at) % limit == 0 or not got
            elif action in ("break", "aclose") and stopped:
                assert got == deliverable[: len(got)]
                last = got[-1]
                assert resume == (at + ((last - at) // limit) * limit if cursor else last)
            elif action.startswith("cancel") and stopped:
                assert got == deliverable[: len(got)]
                last = got[-1] if got else at - 1
                if resume is not None:
                    assert resume in (last, last + 1) or cursor, (resume, last)
                    assert resume <= last + 1
                    if in_body and task.cancelled() and not cursor:
                        assert resume == last, (resume, last)
                else:
                    assert got[-1:] in ([], [n - 1])
                if cursor and resume is not None:
                    assert at <= resume <= last + 1
                    assert (resume - at) % limit == 0, (resume, at)
            else:
                assert not task.cancelled()
                assert oracle_error is None
                assert got == expected
                assert resume is None
                assert got[-1:] in ([], [n - 1])
            assert set() == await _settled(), _client_tasks()
            session_ = ph._api.pipeline.transport._session
            assert session_ is not None
            await _until(lambda s=session_: not getattr(s.connector, "_acquired", set()), 2)
            if resume is None:
                break
            if isinstance(error, aposthog.ResponseDecodeError):
                server.repair(resume, resume + limit)
            at, start = resume, paginator.next_url
        else:
            raise AssertionError("the read never ended")
        # The client still works: a later call, on the same connections.
        server.faulty = False
        server.repair(0, n)
        page = await fresh()
        assert [_fuzz_index(r.id) for r in page.results] == list(range(min(n, limit)))


@settings(derandomize=True, max_examples=60, deadline=None, database=None)
@given(shape=_RECORD_SHAPES)
def test_a_records_loop_over_hostile_pages_matches_a_page_by_page_read(
    shape: dict[str, Any],
) -> None:
    """
    Generated lists (limit/offset and cursor pages of profile configs and batch exports,
    records that do not fit, 429/503/500 answers and dropped connections) read by loops
    over records that break, close, are cancelled and resume from `next_url`, traced or
    not: every record comes in order, the records before one that does not fit come
    first, the error is the page's own (as `pages()` raises it), a resumed read starts at
    the record in hand (its page, on a cursor list), and no task is left behind.
    """
    asyncio.run(_fuzz_records(shape))


@given(
    url=st.sampled_from(["https://h/l/?cursor=abc", "https://h/l/", "https://h/l/?cursor=a#x"]),
    first=st.integers(1, 10**6),
    then=st.integers(1, 10**6),
)
def test_a_resume_url_s_skip_adds_up_and_replaces_any_other_fragment(
    url: str, first: int, then: int
) -> None:
    once = skipping(url, first)
    assert once == f"{url.partition('#')[0]}#skip={first}"
    assert skipped(once) == first
    assert skipped(skipping(once, then)) == first + then
    assert skipped(url) == 0


@given(st.text())
def test_any_fragment_but_a_skip_skips_nothing(fragment: str) -> None:
    count = skipped(f"https://h/l/?cursor=abc#{fragment}")
    digits = fragment.removeprefix("skip=")
    usable = fragment.startswith("skip=") and digits.isascii() and digits.isdigit()
    assert count == (int(digits) if usable and len(digits) <= 9 else 0)
