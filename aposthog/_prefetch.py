"""
Reading a list's pages, optionally ahead of the consumer.

`PageReader` yields pages in order. With read-ahead it keeps up to `ahead` pages fetched
or in flight beyond the one the consumer holds, each fetch a task of its own:

* on a limit/offset list, once the first page gives `count`, the offsets of the remaining
  pages are known: they are derived from the first page's `next` URL (only its `offset`
  changes, so every other parameter is kept byte for byte) and fetched concurrently. The
  plan is checked against every page's own `next` as the page is handed out: a page
  whose `next` is not the next planned URL (a server whose pages hold fewer records than
  `limit`) ends the plan, its fetches are cancelled, and `next` is followed from there;
* on any other list (cursor pages, or a page without `count`), each page's `next` URL is
  known only when it arrives: a fetch waits for the page before it, so read-ahead is one
  chain of requests running while the consumer works.

Every fetch goes through the client, so `max_concurrency` and the retry policy apply.
Stopping early (a `break`, an error, `aclose()`, or dropping the iterator) cancels every
fetch in flight; an error is raised when the consumer reaches the page it belongs to.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import anyio

from ._errors import ResponseDecodeError
from ._pipeline import running_loop

if TYPE_CHECKING:
    from ._pagination import Page

__all__ = [
    "MAX_EMPTY_PAGES",
    "PageReader",
    "PlannedUrls",
    "RecordReader",
    "ResumePoint",
    "endless_pages",
    "planned_urls",
    "record_url",
]

T = TypeVar("T")

_OFFSET = re.compile(r"(?:^|&)offset=([^&]*)")
_LIMIT = re.compile(r"(?:^|&)limit=([^&]*)")
#: A value planned or moved on: a plain number a server would write (a longer one is left
#: as it is, `int()` refusing more than 4,300 digits).
_NUMBER = re.compile(r"[0-9]{1,18}")


def _number(value: str) -> int | None:
    return int(value) if _NUMBER.fullmatch(value) else None


class PlannedUrls:
    """
    The URLs of a limit/offset list's remaining pages, each made when it is taken.

    Lazy: a first page may claim any `count` (10**8, or more than memory holds), and only
    the pages about to be fetched are ever spelled out.
    """

    __slots__ = ("_after", "_before", "_parts", "_starts")

    def __init__(
        self, parts: urllib.parse.SplitResult, before: str, after: str, starts: range
    ) -> None:
        self._parts = parts
        self._before = before
        self._after = after
        self._starts = starts

    def _url(self, start: int) -> str:
        return urllib.parse.urlunsplit(
            self._parts._replace(query=f"{self._before}{start}{self._after}")
        )

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self) -> Iterator[str]:
        return map(self._url, self._starts)

    def popleft(self) -> str:
        """The next page's URL, taken off the plan (IndexError when none is left)."""
        start = self._starts[0]
        self._starts = self._starts[1:]
        return self._url(start)

    def peek(self) -> str:
        """The next page's URL, left on the plan (IndexError when none is left)."""
        return self._url(self._starts[0])


def planned_urls(next_url: str, count: int, wanted: int | None = None) -> PlannedUrls | None:
    """
    The URLs of every page from `next_url` on, for a limit/offset list of `count` records.

    None when `next_url` is not a plain limit/offset URL (one `limit` > 0, one `offset`).
    `wanted`: stop once this many more records are covered.
    """
    parts = urllib.parse.urlsplit(next_url)
    query = parts.query
    offsets = list(_OFFSET.finditer(query))
    limits = _LIMIT.findall(query)
    if len(offsets) != 1 or len(limits) != 1:
        return None
    offset, limit = _number(offsets[0].group(1)), _number(limits[0])
    if offset is None or limit is None or limit <= 0:
        return None
    before, after = query[: offsets[0].start(1)], query[offsets[0].end(1) :]
    stop = count if wanted is None else min(count, offset + wanted)
    return PlannedUrls(parts, before, after, range(offset, stop, limit))


def url_key(url: str) -> tuple[str, str] | str:
    """
    What a URL requests once `same_origin_url()` has put it on the configured host. A
    project's path and its environment's are one list (PostHog writes `next` under
    `/api/projects/` for a list asked for under `/api/environments/`).
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    path = parts.path or "/"
    if "/api/projects/" in path:
        path = path.replace("/api/projects/", "/api/environments/", 1)
    return path, parts.query


async def _fetch_once(
    fetch_url: Callable[[str], Awaitable[Page[T]]], fetched: set[Any], url: str
) -> Page[T]:
    """The page at `url`, unless this iteration has fetched it already (a `next` loop)."""
    key = url_key(url)
    if key in fetched:
        raise looping_pages(key)
    fetched.add(key)
    return await fetch_url(url)


def looping_pages(key: tuple[str, str] | str) -> ResponseDecodeError:
    """The error of a `next` naming a page (its `url_key`) that the read fetched already."""
    path = _where(key)
    return ResponseDecodeError(
        f"'next' names a page already fetched from {path}: the list would never end",
        paths=("$.next",),
        path=path,
    )


#: Pages in a row with no records, each naming a `next`, that a read follows. DRF's
#: cursor pages can be empty with a `next` once (read backwards, on the way to records);
#: page after page of nothing, each naming a new page, is a list that would never end
#: (a `next` seen before is caught as a loop at once).
MAX_EMPTY_PAGES: Final = 3


def _where(key: tuple[str, str] | str) -> str:
    """The path a `url_key` names, for an error's message (its host left out)."""
    return key[0] if isinstance(key, tuple) else "PostHog"


def endless_pages(next_url: str) -> ResponseDecodeError:
    """The error of a read that met `MAX_EMPTY_PAGES` + 1 empty pages in a row, each with a next."""
    path = _where(url_key(next_url))
    return ResponseDecodeError(
        f"{MAX_EMPTY_PAGES + 1} pages in a row from {path} held no records, each naming "
        "another 'next': the list would never end",
        paths=("$.next",),
        path=path,
    )


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A page nobody reads (the consumer stopped first) must not log "exception never
    # retrieved": its error belongs to a page the consumer chose not to see.
    if not task.cancelled():
        task.exception()


def _chain_on(reader: weakref.ref[PageReader[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    """
    A fetch's done callback on a `next` chain: the reader reads on past it, if the reader
    is still referenced (a reader dropped mid-loop starts nothing more).
    """

    def read_on(task: asyncio.Task[Any]) -> None:
        alive = reader()
        # Still the last fetch: a page already taken by the consumer is read on from
        # when `__anext__` hands it out (with its `next`).
        if alive is not None and alive._tasks and alive._tasks[-1] is task:
            alive._fill()

    return read_on


def _planned_on(reader: weakref.ref[PageReader[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    """A planned fetch's done callback: one fewer in flight, so the reader may start another."""

    def send_on(task: asyncio.Task[Any]) -> None:
        alive = reader()
        if alive is not None:
            alive._in_flight -= 1
            # Not a fetch of a plan dropped since, nor one that failed: the read is likely
            # to end at its page (the consumer, taking pages, starts more if it does not).
            if alive._plan is not None and (task.cancelled() or task.exception() is None):
                alive._fill()

    return send_on


class PageReader(Generic[T]):
    """
    The pages of one list, in order, read up to `ahead` pages ahead (0: on demand).

    `plan_ahead` is the read-ahead once the remaining pages' URLs are known (a limit/offset
    list): they are independent requests. `wanted` bounds the records a caller needs.
    `first_url`: the URL `first` fetches, when known (a `next` naming it is then a loop
    too). `on_page` hears where a read that stops now resumes: at the page handed out (it
    is finished only once the next is asked for), then after it. `url` is the URL of the
    page handed out (None for a first page whose URL was not given). `sending`: the most
    planned fetches in flight at once (the client's `max_concurrency`: more would only
    wait for a slot), so a read far ahead on a list whose `count` is overstated makes a
    few tasks, not one per page it claims.
    """

    __slots__ = (
        "__weakref__",
        "_ahead",
        "_chain_from",
        "_count",
        "_delivered",
        "_done",
        "_empty_run",
        "_fetch_url",
        "_fetched",
        "_first",
        "_first_url",
        "_in_flight",
        "_on_page",
        "_plan",
        "_plan_ahead",
        "_seen_first",
        "_sending",
        "_started",
        "_stopping",
        "_tasks",
        "_urls",
        "_wanted",
        "url",
    )

    def __init__(
        self,
        first: Callable[[], Awaitable[Page[T]]],
        fetch_url: Callable[[str], Awaitable[Page[T]]],
        on_page: Callable[[ResumePoint], None] | None,
        *,
        ahead: int = 0,
        plan_ahead: int | None = None,
        wanted: int | None = None,
        first_url: str | None = None,
        sending: int | None = None,
    ) -> None:
        self._first = first
        self._fetch_url = fetch_url
        self._on_page = on_page
        self._ahead = ahead
        self._plan_ahead = ahead if plan_ahead is None else plan_ahead
        self._wanted = wanted
        self._delivered = 0  # records handed out, against `wanted`
        self._empty_run = 0  # pages in a row with no records that named a `next`
        self._tasks: deque[asyncio.Task[Page[T] | None]] = deque()
        #: The URL each task fetches, in step with `_tasks` (None: a first page whose URL
        #: was not given).
        self._urls: deque[str | None] = deque()
        self._first_url = first_url
        self.url: str | None = None
        self._stopping: list[asyncio.Task[Page[T] | None]] = []
        self._plan: PlannedUrls | None = None
        #: What every URL fetched in this iteration requests: a `next` seen before is a loop.
        self._fetched: set[Any] = set() if first_url is None else {url_key(first_url)}
        self._chain_from: str | None = None  # the next URL of the last page handed out
        self._count: int | None = None  # the `count` of the last page handed out
        self._started = False
        self._seen_first = False
        self._done = False
        self._sending = sending
        self._in_flight = 0  # planned fetches not finished

    def __aiter__(self) -> PageReader[T]:
        return self

    async def __anext__(self) -> Page[T]:
        if self._on_page is not None and self._seen_first:
            # The page handed out before is finished: the loop asks for the next.
            self._on_page(ResumePoint(self._chain_from))
        if self._done:
            raise StopAsyncIteration
        try:
            if self._ahead or self._plan_ahead:
                page, url = await self._read_ahead()
            else:
                page, url = await self._read()
        except BaseException:
            self._close()
            raise
        if page is None:
            self._close()
            raise StopAsyncIteration
        self.url = self._chain_from if url is None else url
        if len(page) or page.next is None:
            self._empty_run = 0
        else:
            self._empty_run += 1
            if self._empty_run > MAX_EMPTY_PAGES:
                self._close()
                raise endless_pages(page.next)
        if self._on_page is not None:
            # The page in hand comes again if the read stops now (its URL unknown: after it).
            url = self.url
            self._on_page(ResumePoint(page.next) if url is None else ResumePoint(url, page, 0))
        self._chain_from = page.next
        self._delivered += len(page)
        changed = page.count != self._count
        self._count = page.count
        if not self._seen_first:
            self._seen_first = True
            if page.count is not None and page.next is not None and self._plan_ahead:
                wanted = None if self._wanted is None else self._wanted - len(page)
                self._plan = planned_urls(page.next, page.count, wanted)
        elif changed and (self._plan is not None or self._plan_ahead):
            # PostHog counts the list again for every page: records were created or
            # deleted during the read. Pages fetched at once may then straddle the change
            # (a later offset answered before it, an earlier one after), which loses a
            # record or gives one twice where a read one page after the other would not.
            # From here on, each page is fetched after the one before (its `next`).
            self._drop_plan()
            self._plan_ahead = 0
        elif self._plan is not None and page.next is not None:
            self._check_plan(page.next)
        if page.next is None or (self._plan is not None and not self._plan and not self._tasks):
            if page.next is None or (self._wanted is not None and self._delivered >= self._wanted):
                self._done = True  # the last page (or the last one a caller wants)
                self._close()
            else:
                # The list grew past `count` (the plan stopped there, short of what a
                # caller wants, if any): follow `next` from here.
                self._plan = None
        self._fill()
        return page

    def _check_plan(self, next_url: str) -> None:
        """
        A planned page was handed out: if its `next` is not the page planned after it,
        the plan is wrong for this list (pages shorter than `limit`). It is dropped, its
        fetches cancelled (their URLs may still come as `next`), and `next` followed.
        """
        if self._urls:
            planned = self._urls[0]
        elif self._plan:
            planned = self._plan.peek()
        else:
            return  # the plan's end: `__anext__` follows `next` from here if needed
        if planned is not None and url_key(planned) == url_key(next_url):
            return
        self._drop_plan()

    def _drop_plan(self) -> None:
        """Stop reading planned offsets: their fetches cancelled (their URLs may come as `next`)."""
        self._plan = None
        for task, url in zip(self._tasks, self._urls, strict=True):
            task.cancel()
            if url is not None:
                self._fetched.discard(url_key(url))
        self._stopping.extend(self._tasks)
        self._tasks.clear()
        self._urls.clear()

    async def _read(self) -> tuple[Page[T] | None, str | None]:
        if not self._started:
            self._started = True
            return await self._first(), self._first_url
        url = self._chain_from
        if url is None:
            return None, None
        return await _fetch_once(self._fetch_url, self._fetched, url), url

    async def _read_ahead(self) -> tuple[Page[T] | None, str | None]:
        if not self._started:
            running_loop()  # ClientStateError where no asyncio loop runs: tasks need one
            self._started = True
            self._spawn(self._first(), self._first_url)
        self._fill()
        if not self._tasks:
            return None, None
        task = self._tasks.popleft()
        url = self._urls.popleft()
        try:
            # Shielded: a cancellation of the reader is its own (an anyio scope knows its
            # own by its message), not the fetch's, which may be ending on the attempt's
            # own deadline in the same loop step with a cancellation of no message.
            return await asyncio.shield(task), url
        except BaseException:
            if not task.done():  # the reader was cancelled: so is the fetch it awaited
                task.cancel()
                self._stopping.append(task)
            raise

    def _fill(self) -> None:
        if self._done or not self._seen_first:
            return  # the first page decides between planned offsets and a chain
        if self._plan is not None:
            while self._plan and len(self._tasks) < self._plan_ahead:
                if self._sending is not None and self._in_flight >= self._sending and self._tasks:
                    # `_planned_on` comes back here as each one finishes. Never with no
                    # task at all: a fetch that finished may be taken before its done
                    # callback ran (`_in_flight` not yet down), and the list must go on.
                    return
                url = self._plan.popleft()
                self._spawn(_fetch_once(self._fetch_url, self._fetched, url), url)
                self._in_flight += 1
                self._tasks[-1].add_done_callback(_planned_on(weakref.ref(self)))
            return
        # A `next` chain: each page's URL comes with the page before it, so the fetch
        # after the last one starts when that page arrives (its done callback comes back
        # here), one task a page: `prefetch(100_000)` on a two-page list makes two.
        while len(self._tasks) < self._ahead:
            after: str | None
            if not self._tasks:
                after = self._chain_from
            else:
                last = self._tasks[-1]
                if not last.done():
                    return  # `_chain_on` reads on once it has arrived
                if last.cancelled() or last.exception() is not None:
                    return  # the consumer meets that error (or stopped) first
                page = last.result()
                after = None if page is None else page.next
            if after is None:
                return
            self._spawn(_fetch_once(self._fetch_url, self._fetched, after), after)
            self._tasks[-1].add_done_callback(_chain_on(weakref.ref(self)))

    def _spawn(self, fetch: Awaitable[Page[T] | None], url: str | None) -> None:
        task: asyncio.Task[Page[T] | None] = asyncio.ensure_future(fetch)
        task.add_done_callback(_retrieve)
        self._tasks.append(task)
        self._urls.append(url)

    def _close(self) -> None:
        self._done = True
        for task in self._tasks:
            task.cancel()
        # Kept until aclose() has waited for them (an error may close before it runs).
        self._stopping.extend(self._tasks)
        self._tasks.clear()
        self._urls.clear()

    async def aclose(self) -> None:
        """Stop: cancel every fetch in flight and wait until each has finished."""
        self._close()
        tasks = [task for task in self._stopping if not task.done()]
        self._stopping.clear()
        if tasks:
            # Shielded: when the caller is being cancelled (the usual reason to stop
            # early), the cancelled fetches still finish before this returns.
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks)

    def __del__(self) -> None:
        # Dropped without aclose() (a `break` out of `async for`): cancel what is in flight.
        tasks = getattr(self, "_tasks", ())
        try:
            for task in tasks:
                task.cancel()
        except RuntimeError:  # their event loop is already closed: nothing runs anyway
            pass


_CURSOR = re.compile(r"(?:^|&)cursor=")


def record_url(url: str, page: Page[Any], index: int) -> str:
    """
    The URL a read resumes at to get `page`'s records from `index` on (`url` is the
    page's own). On a limit/offset page (it has a `count`) that is the page's URL with
    `offset` moved on by `index`: exact. A cursor page's records have no URL of their
    own: its URL, whose first `index` records come again (repeated, never lost).
    """
    parts = urllib.parse.urlsplit(url)
    query = parts.query
    if page.count is None or _CURSOR.search(query) or len(_LIMIT.findall(query)) > 1:
        return url
    offsets = list(_OFFSET.finditer(query))
    if len(offsets) > 1:
        return url
    if offsets:
        found = offsets[0]
        offset = _number(found.group(1))
        if offset is None:
            return url  # not a number to move on: the page's records come again
        query = f"{query[: found.start(1)]}{offset + index}{query[found.end(1) :]}"
    else:
        query = f"{query}&offset={index}" if query else f"offset={index}"
    return urllib.parse.urlunsplit(parts._replace(query=query))


_SKIP = re.compile(r"skip=([0-9]{1,9})")


def skipped(url: str) -> int:
    """
    How many records of its page a resume URL skips: its `#skip=N` (see `skipping`), else
    0 (any other fragment, or none).
    """
    _, hash_, fragment = url.partition("#")
    found = _SKIP.fullmatch(fragment) if hash_ else None
    return int(found.group(1)) if found is not None else 0


def skipping(url: str, records: int) -> str:
    """
    `url` (a cursor page's, whose records have no URL of their own) resuming after its
    first `records`, more than it skips already: `#skip=N`, a fragment, which is never
    sent (`same_origin_url()` leaves it out), and which a paginator started there with
    `resume_from()` takes off that page before handing it out.
    """
    return f"{url.partition('#')[0]}#skip={skipped(url) + records}"


class ResumePoint:
    """
    Where a read of a list stopped: the URL the records it did not finish start at.

    `page` (with its URL, `url`) is the page in hand and `index` its first record not
    finished; without a page, `url` is where the next page starts (None: the list ended).
    """

    __slots__ = ("index", "page", "url")

    def __init__(self, url: str | None, page: Page[Any] | None = None, index: int = 0) -> None:
        self.url = url
        self.page = page
        self.index = index

    def resolve(self) -> str | None:
        """The URL to resume from."""
        page = self.page
        if page is None:
            return self.url
        if self.index >= len(page):
            return page.next
        if self.index <= 0 or self.url is None:
            return self.url  # None: a page of unknown URL (not read through a paginator)
        return record_url(self.url, page, self.index)


def _no_mark(_: ResumePoint) -> None:
    pass


class RecordReader(Generic[T]):
    """
    The records of a list's pages, one by one, telling `mark` where a read that stops
    now resumes: at the record in hand (it is finished only once the loop asks for the
    next one), or after a page once every record of it was handed out and the next asked
    for.
    """

    __slots__ = ("_items", "_mark", "_pages", "_point")

    def __init__(
        self, pages: PageReader[T], mark: Callable[[ResumePoint], None] = _no_mark
    ) -> None:
        self._pages = pages
        self._mark = mark
        self._items: Iterator[T] = iter(())
        self._point: ResumePoint | None = None

    def __aiter__(self) -> RecordReader[T]:
        return self

    async def __anext__(self) -> T:
        point = self._point
        try:
            if point is not None:
                for item in self._items:
                    point.index += 1
                    return item
                self._point = None
                assert point.page is not None
                self._mark(ResumePoint(point.page.next))  # the page is done
            while True:
                page = await self._pages.__anext__()
                point = self._point = ResumePoint(self._pages.url, page, -1)
                self._mark(point)
                self._items = page._records()  # each record built as it is taken
                for item in self._items:
                    point.index += 1
                    return item
                self._point = None
                self._mark(ResumePoint(page.next))
        except Exception:
            if point is not None and self._point is point:
                # A record that does not fit: a read resumes at it, and the read ends
                # here, as it does on a page that fails (whose own reader closes itself).
                point.index += 1
                self._point = None
                self._pages._close()
            raise

    async def aclose(self) -> None:
        """
        Stop: hand out nothing more (nor the rest of the page in hand), and cancel every
        page fetch in flight. A read resumes at the record in hand.
        """
        self._items = iter(())
        self._point = None
        await self._pages.aclose()
