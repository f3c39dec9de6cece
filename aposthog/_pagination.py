"""
Pages and paginators.

PostHog pages two ways: limit/offset (`{"count", "next", "previous", "results"}`) for
most lists, and cursor pages without `count` for batch-export runs and backfills. Both
carry an absolute `next` URL, so one paginator follows either, and never computes a
cursor. It computes an offset in two places only: read-ahead on a limit/offset list
plans the offsets of the pages after the first (checked against each page's `next`,
see `_prefetch`), and a resume point inside a limit/offset page is that page's URL with
its offset moved on.

`paginator.next_url` is where a read resumes (say, after a 429 that outlived its
retries), with `resume_from()`: where the records the read did not finish start (the
record in hand when a loop over records stopped included; a cursor page's records
handed out already come again, as they have no URL of their own). A `to_list()` that
fails leaves it where it was, since it hands out none of the records it collected.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from typing import Any, Generic, Protocol, TypeVar

from ._errors import ResponseDecodeError
from ._http import Request, is_request_url
from ._prefetch import (
    MAX_EMPTY_PAGES,
    PageReader,
    RecordReader,
    ResumePoint,
    endless_pages,
    looping_pages,
    skipped,
    skipping,
    url_key,
)

__all__ = [
    "AsyncPaginator",
    "Page",
    "PageSource",
    "Unbuilt",
    "new_page",
    "new_raw_page",
    "parse_page",
    "parse_raw_page",
]

T = TypeVar("T")

#: Pages `to_list()` plans ahead on a limit/offset list, at least (more with a larger
#: `max_concurrency`, which is what bounds the requests actually sent at once).
_TO_LIST_AHEAD = 64


_structure_records: Callable[..., list[Any]] | None = None
_item_hook: Callable[[Any], Callable[[Any, Any], Any]] | None = None


def _load_converter() -> None:
    """
    Import the record hooks on first use: cattrs and the hooks load with the first page,
    not with `import aposthog` (and the import statement is not paid per page).
    """
    global _structure_records, _item_hook
    from ._converter import item_hook, structure_records

    _structure_records, _item_hook = structure_records, item_hook


def parse_page(
    body: Any, list_type: Any, *, request_path: str = ""
) -> tuple[list[Any], int | None, str | None, str | None]:
    """
    Split a page body into (results, count, next, previous), structuring the results.

    `list_type` is the type of the results, e.g. `list[BatchExport]` (made once per
    paginator rather than once per page: cattrs looks hooks up by it).
    """
    results, count, next_url, previous = parse_raw_page(body, request_path=request_path)
    assert _structure_records is not None  # loaded by `parse_raw_page`
    try:
        records = _structure_records(
            results, list_type.__args__[0], path="$.results", request_path=request_path
        )
    except ResponseDecodeError as exc:
        _whole_page(exc, body)
        raise
    return records, count, next_url, previous


def parse_raw_page(
    body: Any, *, request_path: str = ""
) -> tuple[list[Any], int | None, str | None, str | None]:
    """`parse_page` without structuring: the results as the JSON array they came in."""
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        raise ResponseDecodeError(
            f"expected a page with a 'results' list from {request_path or 'PostHog'}",
            paths=("$.results",),
            body=body,
            path=request_path,
        )
    count = body.get("count")
    next_url = body.get("next")
    previous = body.get("previous")
    if count is not None and (count.__class__ is bool or not isinstance(count, int)):
        raise ResponseDecodeError(
            f"'count' is not an integer in the page from {request_path}",
            paths=("$.count",),
            body=body,
        )
    if next_url is not None and (
        not isinstance(next_url, str) or (next_url and not is_request_url(next_url))
    ):
        # Checked before it is followed: nothing is sent for a `next` that is not a URL.
        raise _not_a_url("next", request_path, body)
    if next_url and "#" in next_url:
        # A fragment is never sent: it means nothing to the list, and a resume point's
        # fragment is the client's own (`#skip=N`), which a server's must not imitate.
        next_url = next_url.partition("#")[0]
    if previous is not None and not isinstance(previous, str):
        raise _not_a_url("previous", request_path, body)
    if _structure_records is None:
        _load_converter()
    return results, count, next_url or None, previous or None


def _not_a_url(key: str, request_path: str, body: Any) -> ResponseDecodeError:
    return ResponseDecodeError(
        f"'{key}' is not a URL in the page from {request_path}", paths=(f"$.{key}",), body=body
    )


class PageSource(Protocol[T]):
    """Where a paginator's pages come from: its first page, and the page at a URL."""

    def first(self) -> Awaitable[Page[T]]:
        """The first page."""

    def fetch(self, url: str) -> Awaitable[Page[T]]:
        """The page at a `next` (or saved) URL."""

    def first_url(self) -> str:
        """The URL of the first page (what `fetch` takes), its query included."""

    def foreign(self, url: str) -> str | None:
        """Why `url` is no page of this list (None: it is one)."""

    def sending(self) -> int:
        """How many of its requests the client sends at once (`max_concurrency`)."""


class Page(Generic[T]):
    """
    One page of a list.

    Attributes:
        results: the records on this page.
        count: the total number of records (None for cursor pages, which do not say).
        next: the absolute URL of the next page, or None on the last page.
        previous: the absolute URL of the previous page, or None.

    Example:
        ```python
        page = await ph.batch_exports.list(limit=50)
        while True:
            for export in page.results:
                print(export.name)
            if not page.has_next_page():
                break
            page = await page.next_page()
        ```
    """

    __slots__ = (
        "_depth",
        "_empty_run",
        "_fetch",
        "_request",
        "_results",
        "_unbuilt",
        "_walk",
        "count",
        "next",
        "previous",
    )

    def __init__(
        self,
        results: list[T],
        *,
        count: int | None,
        next: str | None,
        previous: str | None,
        fetch: Callable[[str], Awaitable[Page[T]]],
    ) -> None:
        self._results: list[T] | None = results
        self._unbuilt: Unbuilt | None = None  # a page that came unbuilt: `new_raw_page`
        self._empty_run = 0  # pages in a row, up to this one, with no records and a `next`
        self._walk: dict[Any, int] | None = None  # see `next_page`
        self._depth = 0
        self._request: Request | None = None  # the request it answered, if known
        self.count = count
        self.next = next
        self.previous = previous
        self._fetch = fetch

    @property
    def results(self) -> list[T]:
        """The records on this page."""
        results = self._results
        if results is None:
            # A page read by a records loop, built record by record as handed out (see
            # `_records`); here all at once, with the error of a page built whole.
            unbuilt = self._unbuilt
            assert unbuilt is not None
            results = self._results = unbuilt.build()
            self._unbuilt = None
            if unbuilt.on_results is not None:
                unbuilt.on_results(results)
        return results

    @results.setter
    def results(self, results: list[T]) -> None:
        self._results = results
        self._unbuilt = None

    def _records(self) -> Iterator[T]:
        """
        The records, each built as it is taken when the page came unbuilt (see
        `new_raw_page`): a loop that lets each go before the next is built keeps few
        alive, so the cyclic collector has little to scan and the records die young.
        """
        unbuilt = self._unbuilt
        if unbuilt is None:
            return iter(self.results)
        return self._build(unbuilt)

    def _build(self, unbuilt: Unbuilt) -> Iterator[T]:
        item_type = unbuilt.item_type
        assert _item_hook is not None  # loaded with the page's body
        hook = _item_hook(item_type)
        on_results = unbuilt.on_results
        built = 0
        for item in unbuilt.raw:
            try:
                record = hook(item, item_type)
            except Exception:
                break
            if on_results is not None:
                on_results([record])
            built += 1
            yield record
        else:
            return
        # A record the direct hook refused: the page's own structuring, outside the
        # `except` (no chain), names every record that does not fit (or builds what the
        # hook refused, as a whole page does, and the loop goes on with it).
        results = unbuilt.build()
        self._results, self._unbuilt = results, None
        if on_results is not None:
            on_results(results[built:])
        yield from results[built:]

    def has_next_page(self) -> bool:
        """Whether there is a page after this one."""
        return self.next is not None

    async def next_page(self) -> Page[T]:
        """
        Fetch the next page.

        Raises:
            LookupError: this is the last page (check `has_next_page()` first).
        """
        next_url = self.next
        if next_url is None:
            raise LookupError("this is the last page: check page.has_next_page() first")
        # A walk by hand ends on a `next` loop as a paginator's read does, unsent: the pages
        # fetched along it, each at its depth (a page's next fetched again, a retry after
        # an error, is no loop; a `next` naming this page or one before it is).
        key = url_key(next_url)
        walk = self._walk
        if walk is None:
            # The walk starts here: a `next` naming this very page is a loop too.
            walk = self._walk = {}
            own = self._own_key()
            if own is not None:
                walk[own] = self._depth
        if walk.get(key, self._depth + 1) <= self._depth:
            raise looping_pages(key)
        page = await self._fetch(next_url)
        depth = self._depth + 1
        walk[key] = min(walk.get(key, depth), depth)
        page._walk, page._depth = walk, depth
        if page.next is not None and not len(page):
            # Pages that hold nothing and each name another `next` (a broken proxy): a
            # walk by hand ends as a paginator's read does, not after thousands of pages.
            # (This page is one of them too, the first page of a walk included.)
            page._empty_run = (self._empty_run or (0 if len(self) else 1)) + 1
            if page._empty_run > MAX_EMPTY_PAGES:
                raise endless_pages(page.next)
        return page

    def _own_key(self) -> tuple[str, str] | str | None:
        """What this page's request asked for (`url_key`), if the page knows it."""
        request = self._request
        return None if request is None else url_key(request.full_url())

    def __iter__(self) -> Iterator[T]:
        return iter(self.results)

    def __len__(self) -> int:
        unbuilt = self._unbuilt
        return len(self.results if unbuilt is None else unbuilt.raw)

    def __repr__(self) -> str:
        return f"Page(results=<{len(self)} records>, count={self.count!r}, next={self.next!r})"


class Unbuilt:
    """A page's records as their JSON came, and what building them takes."""

    __slots__ = ("first", "item_type", "on_results", "page", "raw", "request_path", "status")

    def __init__(
        self,
        raw: list[Any],
        item_type: Any,
        request_path: str,
        status: int,
        on_results: Callable[[list[Any]], None] | None,
        *,
        page: Any = None,
        first: int = 0,
    ) -> None:
        self.raw = raw
        self.item_type = item_type
        self.request_path = request_path
        self.status = status
        self.on_results = on_results
        #: The page's whole body (`raw` is its `results`, from index `first` on).
        self.page = page
        self.first = first

    def build(self) -> list[Any]:
        """Every record, or the `ResponseDecodeError` a page built whole raises."""
        assert _structure_records is not None  # loaded with the page's body
        try:
            return _structure_records(
                self.raw, self.item_type, path="$.results", request_path=self.request_path
            )
        except ResponseDecodeError as exc:
            error = exc
        if self.first:
            # The rest of a page resumed at `#skip=N`: the error names the page's own
            # indexes, as its paths go in its body (the error path alone pays for this).
            try:
                _structure_records(
                    self.page["results"],
                    self.item_type,
                    path="$.results",
                    request_path=self.request_path,
                )
            except ResponseDecodeError as exc:
                error = exc
        _whole_page(error, self.page)
        if error.status is None:
            error.status = self.status  # the answer's, as for a page built whole
        raise error


def _whole_page(error: ResponseDecodeError, body: Any) -> None:
    """Give `error` the whole page's body, where its paths (`$.results[3].id`) lead."""
    if body is not None:
        error.body = body


def new_page(
    results: list[T],
    count: int | None,
    next: str | None,
    previous: str | None,
    fetch: Callable[[str], Awaitable[Page[T]]],
) -> Page[T]:
    """
    `Page(results, count=…, next=…, previous=…, fetch=…)`, as every list call makes one:
    filled directly, without a call of `__init__` by keyword (half a microsecond, a
    twentieth of what the client adds to a small page).
    """
    page: Page[T] = _new_object(Page)
    page._results = results
    page._unbuilt = None
    page._empty_run = 0
    page._walk = None
    page._depth = 0
    page._request = None
    page.count = count
    page.next = next
    page.previous = previous
    page._fetch = fetch
    return page


def new_raw_page(
    unbuilt: Unbuilt,
    count: int | None,
    next: str | None,
    previous: str | None,
    fetch: Callable[[str], Awaitable[Page[T]]],
) -> Page[T]:
    """
    A page whose records are built when taken (`unbuilt`): by a records loop one by one
    (`Page._records`), else all at once when `results` is first read, with the error of
    a page built whole.
    """
    page: Page[T] = new_page(None, count, next, previous, fetch)  # type: ignore[arg-type]
    page._unbuilt = unbuilt
    return page


_new_object = object.__new__


def _skipping(
    fetch: Callable[[str], Awaitable[Page[T]]], url: str
) -> Callable[[], Coroutine[Any, Any, Page[T]]]:
    """The first page of a read resumed at `url`, without the records its `#skip=N` skips."""

    async def first() -> Page[T]:
        page = await fetch(url)
        skip = skipped(url)
        unbuilt = page._unbuilt
        if unbuilt is None:
            kept = new_page(page.results[skip:], page.count, page.next, page.previous, page._fetch)
        else:
            rest = Unbuilt(
                unbuilt.raw[skip:],
                unbuilt.item_type,
                unbuilt.request_path,
                unbuilt.status,
                unbuilt.on_results,
                page=unbuilt.page,
                first=unbuilt.first + skip,
            )
            kept = new_raw_page(rest, page.count, page.next, page.previous, page._fetch)
        kept._request = page._request  # where a walk by hand from it starts
        return kept

    return first


class AsyncPaginator(Generic[T]):
    """
    A lazy list: await it for the first page, iterate it for every record.

    Nothing is requested until it is awaited or iterated, and every iteration starts
    afresh from the first page (or from the URL given to `resume_from()`).

    Example:
        ```python
        async for export in ph.batch_exports.list():       # every record, page after page
            ...
        page = await ph.batch_exports.list(limit=50)       # the first page
        async for page in ph.batch_exports.list().pages(): # page by page
            ...
        ```
    """

    __slots__ = ("_ahead", "_origin", "_resume", "_source", "_start_url")

    def __init__(
        self,
        source: PageSource[T],
        *,
        start_url: str | None = None,
        prefetch: int = 0,
        origin: AsyncPaginator[T] | None = None,
    ) -> None:
        self._source = source
        self._start_url = start_url
        self._ahead = prefetch
        # The paginator `prefetch()` was called on: it learns where each read stopped too.
        self._origin = origin
        self._resume: ResumePoint | None = None  # where the last read stopped, if any

    @property
    def next_url(self) -> str | None:
        """
        Where to resume (with `resume_from()`) the last read through this paginator (or
        a `prefetch()` made from it); None once the list ended. Nothing the read did not
        finish is skipped:

        * a loop over records: the record in hand when it stopped comes again (it is
          finished when the loop asks for the next one). On a limit/offset list the URL
          names that record's offset; on a cursor list (runs, backfills) it is its
          page's, whose records before it come again too.
        * `pages()`: the page in hand when it stopped comes again (it is finished when
          the loop asks for the next one).
        * `to_list()`: after the last record returned (an exact offset on a limit/offset
          list; on a cursor list, the URL of the page `limit` fell in with `#skip=N`, the
          records of it to skip, a fragment that is never sent); the start of the list
          when `to_list()` fails, since it then returns none of what it collected.

        Before any read, and from the start of each read until it hands something out,
        the first page's URL (the one given to `resume_from()`, if any): a read that
        failed at once resumes where it was to start.
        """
        point = self._resume
        if point is not None:
            return point.resolve()
        if self._start_url is not None:
            return self._start_url
        return self._source.first_url()

    async def _first(self) -> Page[T]:
        if self._start_url is not None:
            return await self._source.fetch(self._start_url)
        return await self._source.first()

    def __await__(self) -> Generator[Any, None, Page[T]]:
        start = self._start_url
        if start is not None:
            if skipped(start):
                return _skipping(self._source.fetch, start)().__await__()
            return self._source.fetch(start).__await__()
        return self._source.first().__await__()

    def _reader(
        self,
        on_page: Callable[[ResumePoint], None] | None,
        *,
        unbuilt: bool = False,
        **plan: Any,
    ) -> PageReader[T]:
        source = self._source
        start = self._start_url
        first, fetch = self._first, source.fetch
        # A records loop takes pages whose records are built as it takes them (a source
        # that can), so that each record can go before the next is built.
        first_unbuilt = getattr(source, "first_unbuilt", None) if unbuilt else None
        if first_unbuilt is not None:
            fetch = source.fetch_unbuilt  # type: ignore[attr-defined]
            first = first_unbuilt if start is None else functools.partial(fetch, start)
        if start is not None and skipped(start):
            first = _skipping(fetch, start)
        return PageReader(
            first,
            fetch,
            on_page,
            first_url=source.first_url() if start is None else start,
            sending=source.sending(),
            **plan,
        )

    def pages(self) -> PageReader[T]:
        """Every page, in order (read ahead as set by `prefetch()`)."""
        self._begin()
        return self._reader(self._mark, ahead=self._ahead)

    def __aiter__(self) -> RecordReader[T]:
        self._begin()
        return RecordReader(self._reader(None, unbuilt=True, ahead=self._ahead), self._mark)

    def _begin(self) -> None:
        """
        A read starts from the first page: until it has handed something out, it resumes
        where it starts, not where a read before it stopped (None, once a list ended).
        """
        paginator: AsyncPaginator[T] | None = self
        while paginator is not None:
            paginator._resume = None
            paginator = paginator._origin

    def _mark(self, point: ResumePoint) -> None:
        paginator: AsyncPaginator[T] | None = self
        while paginator is not None:
            paginator._resume = point
            paginator = paginator._origin

    def prefetch(self, pages: int) -> AsyncPaginator[T]:
        """
        The same list, read up to `pages` pages ahead of the consumer.

        While the loop works on one page, the next ones are already being fetched: on a
        limit/offset list up to `pages` at once (their offsets are known from the first
        page), otherwise one after the other. Pages still arrive in order, each fetch
        goes through the client (`max_concurrency`, retries), and leaving the loop early
        cancels the fetches in flight. `prefetch(0)` reads on demand.

        It is the same paginator read another way: where a read through it stops (its
        `next_url`) is this paginator's `next_url` too, so a loop over
        `paginator.prefetch(2)` that fails is resumed from `paginator.next_url`.

        Example:
            ```python
            async for export in ph.batch_exports.list().prefetch(2):
                await slow_work(export)   # the next pages download meanwhile
            ```
        """
        if isinstance(pages, bool) or not isinstance(pages, int):
            raise TypeError(f"pages must be an int, got {type(pages).__name__}")
        if pages < 0:
            raise ValueError(f"pages must be >= 0, got {pages}")
        return AsyncPaginator(self._source, start_url=self._start_url, prefetch=pages, origin=self)

    def resume_from(self, next_url: str) -> AsyncPaginator[T]:
        """
        A paginator of the same list that starts at a saved `next_url`.

        Raises:
            TypeError: `next_url` is not a `str` (None is what `next_url` says once a
                list ended: there is nothing to resume).
            ValueError: `next_url` is not a URL of this list's pages (another list's,
                another project's, or no URL at all). Nothing is sent.

        Example:
            ```python
            paginator = ph.batch_exports.logs(export_id)
            saved: str | None = None
            try:
                async for entry in paginator:
                    handle(entry)
            except aposthog.RateLimitError:
                saved = paginator.next_url   # store it, come back later
            ...
            if saved is not None:  # None: the list was read to its end
                async for entry in ph.batch_exports.logs(export_id).resume_from(saved):
                    handle(entry)
            ```
        """
        given: object = next_url  # typed for callers, checked as anything
        if not isinstance(given, str):
            raise TypeError(
                "next_url must be a str (a saved paginator.next_url; None means the list"
                f" was read to its end), got {type(given).__name__}"
            )
        problem = self._source.foreign(next_url)
        if problem is not None:
            raise ValueError(f"next_url is no page of this list: {problem}")
        return AsyncPaginator(self._source, start_url=next_url, prefetch=self._ahead)

    async def to_list(self, *, limit: int | None = None) -> list[T]:
        """
        Collect the records into a list (at most `limit` of them), in order.

        On a limit/offset list the first page gives `count`, and the remaining pages are
        then fetched concurrently (as many at once as the client's `max_concurrency`
        allows); on a cursor list the next page is fetched while one is being collected.
        `limit=None` collects every record; `limit=0` returns an empty list unsent.

        Raises:
            TypeError: `limit` is not an int (or None).
            ValueError: `limit` is negative.
        """
        if limit is not None:
            if limit.__class__ is bool or not isinstance(limit, int):
                raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
            if limit < 0:
                raise ValueError(f"limit must be >= 0, got {limit}")
        items: list[T] = []
        if limit == 0:
            return items
        self._begin()
        reader = self._reader(
            None,
            ahead=max(self._ahead, 1),
            plan_ahead=max(self._ahead, _TO_LIST_AHEAD, self._source.sending()),
            wanted=limit,
        )
        last: Page[T] | None = None
        taken = 0  # of the last page's records
        async with contextlib.aclosing(reader) as pages:
            async for page in pages:
                items += page.results
                last, taken = page, len(page.results)
                if limit is not None and len(items) >= limit:
                    taken -= len(items) - limit
                    del items[limit:]
                    break
        # Only now, with every record returned: a to_list() that failed returned none.
        if last is not None:
            url = reader.url
            if last.count is None and 0 < taken < len(last) and url is not None:
                # A cursor page's records have no URL of their own: its URL, with how
                # many of its records to skip (batches smaller than a page would
                # otherwise begin again at the same page, and never end).
                self._mark(ResumePoint(skipping(url, taken)))
            else:
                self._mark(ResumePoint(url, last, taken))
        return items

    def __repr__(self) -> str:
        return f"<AsyncPaginator next_url={self.next_url!r}>"
