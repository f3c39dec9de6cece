"""
The rate limiter a client consults before every request, and the in-process store.

`RateLimiter.acquire(bucket)` waits until every window of the bucket has room and counts
the request; `penalize(bucket, seconds)` makes the bucket wait after a 429. The windows
themselves live in a store: `InProcessRateLimitStore` (the default, one process) or
`RedisRateLimitStore` (every process and machine that uses one key).

Waiting is first come, first served per bucket: only the request at the head of the
line asks the store, the others queue behind it without polling. A waiting request
holds no connection and no concurrency slot, and a cancelled waiter leaves the line
without having been counted.

A request is counted when it goes, not before it waits for a `max_concurrency` slot:
the sender passes its slots to `acquire`, and the request at the head of the line takes
one before it asks the store, gives it back while it sleeps on the store's answer, and
leaves holding it, to be sent at once. Counted, it also counts the requests next in line
while slots are free and the windows have room (in-process store: no await), so that
slots freed together are taken together, not one loop turn apart. Counted first and
sent when a slot freed (PostHog slow, every slot busy), requests let through over a
whole window reached PostHog bunched together, later than the client counted them, and
the next window's met 429s.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.lowlevel

from ._errors import APIConnectionError, ClientStateError, ConfigurationTypeError, RateLimitError
from ._pipeline import Sleeps, Unwanted, Wanted, announce_wait, closable, wait_listener
from ._ratelimit import BucketLog, Rate, RateLimits, resolve_rate_limits
from ._slots import Slots

__all__ = [
    "InProcessRateLimitStore",
    "RateLimitStore",
    "RateLimitStoreError",
    "RateLimiter",
    "make_rate_limiter",
    "rate_limit_scope",
]

logger = logging.getLogger("aposthog")


class RateLimitStoreError(APIConnectionError):
    """
    The rate-limit store (Redis) could not be reached or answered with an error.

    The request was not sent: a client never goes past its rate limits because their
    store is down. `reached_server` is always False.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, reached_server=False)


#: Hosts that are another name of one PostHog instance (whose throttles count per key).
_SAME_INSTANCE: Final = {"https://app.posthog.com": "https://us.posthog.com"}


def _instance(base_url: str) -> str:
    """
    `base_url` as one name per PostHog instance: scheme and host in lower case, without
    the scheme's default port, and PostHog's US cloud under one of its names.
    """
    parts = urllib.parse.urlsplit(base_url)
    try:
        port = parts.port
    except ValueError:  # (not a port: left as it is)
        return base_url
    host = (parts.hostname or "").lower().rstrip(".")  # (a final dot: the same host)
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    scheme = parts.scheme.lower()
    if port is not None and port != {"https": 443, "http": 80}.get(scheme):
        host = f"{host}:{port}"
    name = f"{scheme}://{host}{parts.path.rstrip('/')}"
    return _SAME_INSTANCE.get(name, name)


def rate_limit_scope(base_url: str, api_key: str) -> str:
    """
    The name a key's windows are stored under: a hash of the host and the key.

    The key itself is never stored, logged or sent to the store; the host is part of
    the hash so one key used against two PostHog instances counts twice. The two names
    of PostHog's US cloud (`app.posthog.com`, the older one, and `us.posthog.com`) are
    one instance, and one budget: a fleet whose workers name either counts once.
    """
    base_url = _instance(base_url)
    digest = hashlib.sha256(b"aposthog rate limits\0" + f"{base_url}\0{api_key}".encode())
    return digest.hexdigest()[:32]


class RateLimitStore:
    """
    Where a client's windows live. `InProcessRateLimitStore` and `RedisRateLimitStore`
    are the two kinds; a store may be shared by several clients (it is then one budget
    for all of them, per key).
    """

    async def try_acquire(
        self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
    ) -> float:
        """Count a request and return 0, or return the seconds to wait before asking again."""
        raise NotImplementedError

    async def penalize(self, scope: str, bucket: str, seconds: float) -> None:
        """Let no request of the bucket through for `seconds` from now."""
        raise NotImplementedError

    def _ticket(self) -> str:
        """A new request's name in the store's line, kept while it asks again (see `_ask`)."""
        return ""

    async def _ask(
        self,
        scope: str,
        bucket: str,
        windows: tuple[Rate, ...],
        margin: float,
        ticket: str,
        age: float = 0.0,
        waiting: tuple[tuple[str, float], ...] = (),
        left: tuple[str, ...] = (),
    ) -> float:
        """
        `try_acquire` for the request named `ticket`, which came `age` seconds ago and
        asks again after each wait; `waiting`: the requests of this process waiting behind
        it (each one's ticket and age), the first in line first; `left`: requests of this
        process that left the line ahead of it since (`_leave` told already, in the
        background), out of the line before this one is reckoned. A store shared across
        processes serves their requests in the order they came (a line of its own); this
        one's windows are its process's, whose line is this process's.
        """
        return await self.try_acquire(scope, bucket, windows, margin)

    def _leave(self, scope: str, bucket: str, ticket: str) -> None:
        """The request named `ticket` stopped waiting (refused, cancelled): out of the line."""

    def _keep_every(self) -> float | None:
        """
        How often (seconds) the head of a process's line that waits without asking the
        store (for a slot, or for a cancel's answer) renews its process's places in the
        store's line (`_keep`); None: a store whose line is its process's never does.
        """
        return None

    def _keep(self, scope: str, bucket: str, tickets: tuple[str, ...]) -> None:
        """
        The requests named `tickets` still wait, in the background: their places in the
        store's line are kept (a request not heard of in time is dropped from it, as a
        dead process's). A place the line no longer holds is not taken again here.
        """

    def _attach(self) -> None:
        """A client starts using the store."""

    async def _detach(self) -> None:
        """A client that used the store closed."""


_GONE_AHEAD = 32
"""The most departed tickets a line's next question names (`_Line.gone_ahead`); any
more (a burst of cancellations with no question between) leave by `_leave` alone."""

_FIRST_SWEEP = 64
"""Buckets an in-process store holds before it first looks for ones it may forget."""


class InProcessRateLimitStore(RateLimitStore):
    """
    Windows kept in this process's memory (the default store).

    Pass one instance to several clients that use the same key in one process to give
    them one budget; each client otherwise counts alone.

    Args:
        clock: seconds from a monotonic clock (tests pass a fake one).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # One log per key and bucket, whatever limits each client sharing it counts with.
        self._logs: dict[tuple[str, str], BucketLog] = {}
        self._sweep_at = _FIRST_SWEEP

    def _log(self, scope: str, bucket: str) -> BucketLog:
        log = self._logs.get((scope, bucket))
        if log is None:
            if len(self._logs) >= self._sweep_at:
                self._sweep()
            log = self._logs[(scope, bucket)] = BucketLog()
        return log

    def _sweep(self) -> None:
        """
        Forget the buckets whose counted requests are all out of their windows, under no
        pause (a store shared by the clients of many keys, each closed after use, grew
        for as long as the process ran). Run as the store doubles: amortised O(1).
        """
        now = self._clock()
        self._logs = {key: log for key, log in self._logs.items() if not log.idle(now)}
        self._sweep_at = max(_FIRST_SWEEP, 2 * len(self._logs))

    async def try_acquire(
        self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
    ) -> float:
        return self.try_acquire_now(scope, bucket, windows, margin)

    def try_acquire_now(
        self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
    ) -> float:
        """`try_acquire`, without awaiting: the windows are in this process's memory."""
        return self._log(scope, bucket).try_acquire(self._clock(), windows, margin)

    async def penalize(self, scope: str, bucket: str, seconds: float) -> None:
        self._log(scope, bucket).penalize(self._clock(), seconds)

    def __repr__(self) -> str:
        return f"<InProcessRateLimitStore buckets={len(self._logs)}>"


class _Turn:
    """A request's place in its bucket's line: set when the turn is its, or the line failed."""

    __slots__ = (
        "admitted",
        "event",
        "failure",
        "gone",
        "joined",
        "latest",
        "listener",
        "raised",
        "refused",
        "slot_time",
        "ticket",
        "wanted",
    )

    def __init__(
        self,
        latest: float = math.inf,
        slot_time: float = 0.0,
        joined: float = 0.0,
        ticket: str = "",
    ) -> None:
        self.event = anyio.Event()
        #: The store's failure that ended the line while this request waited in it.
        self.failure: str | None = None
        self.gone = False  # left the line (cancelled, or out of time): skipped at its turn
        #: Counted and given a slot by the request before it (see `_admit_ahead`): it
        #: goes without the turn.
        self.admitted = False
        #: The latest its turn may come: `max_wait` from joining (on the monotonic clock),
        #: moved on by the heads' waits for a slot since (no rate-limit wait): by
        #: `line.held_back(now) - slot_time`.
        self.latest = latest
        self.slot_time = slot_time
        #: When it joined the line (monotonic), and its name in a store's fleet-wide line.
        self.joined = joined
        self.ticket = ticket
        #: When the head sleeps until after `latest`: the time it wakes. The request is
        #: refused at once, that wait in its `retry_after` (see `_refuse_hopeless`).
        self.refused: float | None = None
        #: Who hears of this request's wait (its call's observers, `on_wait` among
        #: them), until it has: the head tells it when it sleeps on a window (see
        #: `_tell_waiting`). What that raised, if anything: the request leaves with it.
        self.listener: Callable[[float], None] | None = None
        self.raised: Exception | None = None
        #: Whether the request is still wanted (see `RateLimiter.acquire`): one that is
        #: not, or not known to be, is never counted by the request before it.
        self.wanted: Wanted | None = None


class _Line:
    """The requests of one bucket waiting their turn, in arrival order."""

    __slots__ = (
        "asking_since",
        "busy",
        "frozen",
        "gone_ahead",
        "heard",
        "live",
        "queue",
        "slot_seconds",
        "slot_since",
        "wakes",
    )

    def __init__(self) -> None:
        self.busy = False  # someone holds the turn (asks the store, or sleeps on its answer)
        self.queue: collections.deque[_Turn] = collections.deque()
        # How many in the queue still wait: one that leaves is skipped when its turn
        # comes, not searched for (a pool cancelling thousands of requests stays linear).
        self.live = 0
        # The seconds the turn's holders spent waiting for a concurrency slot (or for the
        # answer of a store with a line of its own), and since when the current one
        # waits for a slot (None: it does not), or asks the store: no rate-limit wait,
        # so not part of the `max_wait` of the requests behind them either.
        self.slot_seconds = 0.0
        self.slot_since: float | None = None
        self.asking_since: float | None = None
        #: The requests whose time ran while the head waited for a slot: they wait
        #: without a time limit, given back what is left of theirs when that wait ends
        #: (`slot_wait_ended`), not woken again and again meanwhile to find it unspent.
        self.frozen: dict[_Turn, anyio.CancelScope] = {}
        #: From when a store with a line of its own may drop those it heard of last
        #: (`_LATE` later, for the Redis store), at the latest: the end of the wait it
        #: told the last head that asked, counted from when that head asked, or when
        #: its last renewal was sent (`RateLimiter._keep_places`).
        self.heard = 0.0
        #: The tickets of requests that left the store's line holding the turn (or just
        #: handed it), since the last question to the store: the next question names
        #: them, so they are out of the line before its asker is reckoned (the removal
        #: `_leave` sends may come after it, and the asker would count them as ahead).
        self.gone_ahead: list[str] = []
        #: When the head, asleep on the store's answer, asks again (None: it is not
        #: asleep). No request behind it goes before then.
        self.wakes: float | None = None

    def held_back(self, now: float) -> float:
        """`slot_seconds`, the current slot wait (or question to the store) included."""
        since = self.slot_since if self.asking_since is None else self.asking_since
        return self.slot_seconds if since is None else self.slot_seconds + now - since

    def slot_wait_ended(self) -> None:
        """
        The head's wait for a slot (`slot_since`) ends: counted in `slot_seconds`, and
        each frozen request's time runs again, from what it had left (one with none left
        waits on for its turn, as it did: see `RateLimiter._wait_in_line`).
        """
        assert self.slot_since is not None
        self._thaw(self.slot_since)
        self.slot_since = None

    def asked(self) -> None:
        """The head's question to the store (`asking_since`) is answered: as a slot's wait."""
        assert self.asking_since is not None
        self._thaw(self.asking_since)
        self.asking_since = None

    def _thaw(self, since: float) -> None:
        now = time.monotonic()
        self.slot_seconds += now - since
        if self.frozen:
            clock = anyio.current_time()
            for turn, scope in self.frozen.items():
                left = turn.latest + (self.slot_seconds - turn.slot_time) - now
                if left > 0:
                    scope.deadline = clock + left

    def leave(self, turn: _Turn) -> None:
        turn.gone = True
        # Skipped when its turn comes, not searched for: until then the place holds
        # nothing of the request (`wanted` is its stream's).
        turn.wanted = turn.listener = None
        self.live -= 1
        if not self.live:
            self.queue.clear()  # only departed ones were left


class RateLimiter:
    """
    Waits for room in a bucket's windows, first come first served; shared by a client,
    every task using it and every `with_options()` view of it.

    Args:
        limits: the windows per bucket.
        store: where the windows live.
        scope: the key's name in the store (`rate_limit_scope`).
    """

    def __init__(self, limits: RateLimits, store: RateLimitStore, scope: str) -> None:
        self.limits = limits
        self.store = store
        self._scope = scope
        self._lines: dict[str, _Line] = {}
        self._closed = False
        self._release: asyncio.Future[None] | None = None  # of the store, by aclose()
        # The scopes of the waits under way (in a line, or asleep on the store's answer):
        # closing the client cancels them, and each waiter raises `ClientStateError` then.
        self._waits: set[anyio.CancelScope] = set()
        self._sleeps = Sleeps()  # the head's sleeps on the store's answer
        # The tasks keeping places in a fleet's line (`_holding_turn`): closing the
        # client ends them (a wait for a slot goes on, for a request never to be sent).
        self._keepers: set[asyncio.Task[None]] = set()
        #: Whether the store keeps a line of its own across processes (`_ask`).
        self._lined = type(store)._ask is not RateLimitStore._ask
        store._attach()

    def __repr__(self) -> str:
        return f"<RateLimiter {self.limits!r} store={self.store!r}>"

    async def acquire(
        self,
        bucket: str,
        *,
        max_wait: float | None = None,
        slots: Slots | None = None,
        wanted: Wanted | None = None,
    ) -> float:
        """
        Wait until a request of `bucket` may go, count it, and return the seconds waited.

        With `slots` (the client's `max_concurrency` slots), the request is counted only
        once it holds one of them, and returns holding it: it is counted when it goes.
        The slot is taken at the head of the line, before each question to the store,
        and given back while the request sleeps on the answer; the wait for it is not
        part of the seconds returned, nor of `max_wait`. On any exception no slot is
        held.

        `max_wait` (the call's `RetryPolicy.max_retry_after`, or what is left of its
        `deadline`) bounds the whole wait, in the bucket's line behind earlier requests
        included: a wait that would end after it is not begun, `RateLimitError` at once
        (its `retry_after` is the wait, when the store named one). That is how a call
        meets the pause of an earlier 429 that asked for hours (PostHog AI's daily
        limit): as the call that got the 429 did. Cancelling the wait leaves the line;
        the request is then not counted. When the store fails (`RateLimitStoreError`),
        every request waiting in the line fails with it, at once.

        `wanted`, when given, is asked once the request holds its slot, just before the
        store counts it: a request that is no longer wanted (a message whose stream a
        cancel stopped meanwhile) raises `Unwanted`, not counted and holding no slot, and
        the turn passes on. One not known to be (the cancel is under way) gives its slot
        back and keeps the turn until it is known, as the head keeps it while it waits
        for a slot: refused, the cancel leaves the message first in line, as if none had
        been asked. A request counted by the one before it (`_admit_ahead`) is asked
        there.
        """
        windows = self.limits.windows(bucket)
        line = self._lines.get(bucket)
        if line is None:
            line = self._lines[bucket] = _Line()
        started: float | None = None
        spent = 0.0  # of `max_wait`: in the line, then asleep on the store's answers
        # The line's waits for a slot (its heads', this request's own) since `started`
        # are no rate-limit wait: `line.held_back(now) - slot_time` of them.
        slot_time = 0.0
        ticket: str | None = None  # its name in a shared store's line, once it has one
        came: float | None = None  # when it joined this process's line, if it waited there
        if line.busy or line.live:
            started = came = time.monotonic()
            if max_wait is not None and line.wakes is not None:
                _refuse_past(bucket, line.wakes - started, max_wait)
            slot_time = line.held_back(started)
            turn = await self._wait_in_line(line, bucket, max_wait, slots, wanted)
            ticket = turn.ticket or None
            now = time.monotonic()
            spent = now - started - (line.held_back(now) - slot_time)
            if turn.admitted:  # counted, holding its slot: it goes without the turn
                assert slots is not None
                try:
                    # Handed it in the step its scope was cancelled: stop here.
                    await anyio.lowlevel.checkpoint_if_cancelled()
                except BaseException:
                    slots.release()
                    raise
                return max(0.0, spent)
        else:
            line.busy = True
        failed = False
        counted = False
        try:
            if started is not None:
                # Handed the turn in the step its scope was cancelled: stop here (the
                # turn is passed on below), not count and send.
                await anyio.lowlevel.checkpoint_if_cancelled()
            while True:
                if slots is not None and not slots.take_nowait():
                    await self._holding_turn(line, bucket, ticket, slots.take)
                    if self._closed:
                        slots.release()
                        self._check_open()
                if wanted is not None:
                    answer = wanted.now()
                    if answer is not True:
                        if slots is not None:
                            slots.release()
                        if answer is False:
                            raise Unwanted
                        await self._until_decided(line, bucket, ticket, wanted)
                        continue  # known now: a slot again, and the question again
                try:
                    if self._lined:
                        if ticket is None:
                            ticket = self.store._ticket()
                        now = time.monotonic()
                        if came is None:
                            came = now
                        left = tuple(line.gone_ahead)
                        line.gone_ahead.clear()
                        # The question's round trip is no rate-limit wait either: the
                        # requests behind it do not spend their `max_wait` on it.
                        line.asking_since = now
                        try:
                            wait = await self.store._ask(
                                self._scope,
                                bucket,
                                windows,
                                self.limits.margin,
                                ticket,
                                now - came,
                                _waiting(line, now),
                                left=left,
                            )
                        finally:
                            line.asked()
                        # Counted from when it was asked, not from when the answer came:
                        # the script ran in between, and its clock counts from then. (An
                        # answer that came late would move the renewals past the time
                        # the store drops the places.)
                        line.heard = now + wait
                    else:
                        wait = await self.store.try_acquire(
                            self._scope, bucket, windows, self.limits.margin
                        )
                except BaseException:
                    if slots is not None:
                        slots.release()
                    raise
                if wait <= 0:
                    counted = True
                    if slots is not None:
                        self._admit_ahead(line, bucket, windows, slots)
                    break  # counted: it goes now, on the slot it holds
                if slots is not None:
                    slots.release()  # no slot is held while it sleeps
                if max_wait is not None:
                    _refuse_past(bucket, wait, max_wait - spent)
                if started is None:
                    started = time.monotonic()
                    slot_time = line.held_back(started)
                self._check_open()  # closed while the store answered: no wait begins
                announce_wait(wait)  # Client(on_wait=...) hears of it first
                logger.debug("rate limits: %s request waits %.3f s for its window", bucket, wait)
                line.wakes = time.monotonic() + wait
                _refuse_hopeless(line, bucket, self._left)
                self._tell_waiting(line, bucket, wait)
                try:
                    await self._sleeps.sleep(wait)
                finally:
                    line.wakes = None
                self._check_open()
                spent += wait
        except RateLimitStoreError as exc:
            # The store is down: the requests behind this one would each wait for the
            # same failure, one store timeout after another. They fail now with it.
            failed = True
            for turn in line.queue:
                if not turn.gone:
                    turn.failure = str(exc)
                    self._left(bucket, turn)  # out of the fleet's line too
                    turn.event.set()
            line.queue.clear()
            line.live = 0
            line.busy = False
            raise
        finally:
            if not counted and ticket is not None:
                self._left_ahead(line, bucket, ticket)  # refused, cancelled, failed
            if not failed:
                self._pass_turn(line)
        if started is None:
            return 0.0
        now = time.monotonic()
        return max(0.0, now - started - (line.held_back(now) - slot_time))

    async def _until_decided(
        self, line: _Line, bucket: str, ticket: str | None, wanted: Wanted
    ) -> None:
        """
        The head, holding the turn, waits until it is known whether its request is still
        wanted: no rate-limit wait (as a wait for a slot, it is not part of the
        `max_wait` of the requests behind it). Closing the client ends it.
        """
        with closable(self._waits):
            await self._holding_turn(line, bucket, ticket, wanted.decided)
        self._check_open()

    async def _holding_turn(
        self,
        line: _Line,
        bucket: str,
        ticket: str | None,
        wait: Callable[[], Awaitable[object]],
    ) -> None:
        """
        The head (named `ticket` in the store's line, if it asked already) holds the turn
        and waits (`wait`: for a slot, or for a cancel's answer) without asking the
        store: no rate-limit wait, so counted in `line.slot_seconds` (see
        `_Line.slot_wait_ended`). A store whose line is the fleet's drops a request not
        heard of for a while, as it would a dead process's, and a later request of
        another process would go first: meanwhile the store hears that the head and the
        requests behind it still wait, every `_keep_every()` seconds.
        """
        every = self.store._keep_every() if self._lined and not self._closed else None
        keeper = None
        if every is not None:
            keeper = asyncio.get_running_loop().create_task(
                self._keep_places(line, bucket, ticket, every)
            )
            self._keepers.add(keeper)
            keeper.add_done_callback(self._keepers.discard)
        line.slot_since = time.monotonic()
        try:
            await wait()
        finally:
            line.slot_wait_ended()
            if keeper is not None:
                keeper.cancel()

    async def _keep_places(
        self, line: _Line, bucket: str, ticket: str | None, every: float
    ) -> None:
        while True:
            # Counted from when the store last heard of them: a head that waits for a
            # slot, then for a cancel's answer, then for a slot again renews in time.
            await asyncio.sleep(max(0.0, line.heard + every - time.monotonic()))
            if self._closed:
                return  # (`close()` cancels it too): its requests are never sent
            now = line.heard = time.monotonic()
            tickets = [name for name, _ in _waiting(line, now)]
            if ticket is not None:
                tickets.insert(0, ticket)
            if tickets:  # (a head that never asked, with nobody behind it: none)
                self.store._keep(self._scope, bucket, tuple(tickets))

    def _tell_waiting(self, line: _Line, bucket: str, wait: float) -> None:
        """
        The head is about to sleep `wait` seconds on a window: each request behind it that
        has not heard of its wait hears now, before it is taken (an estimate: at least
        the head's), in its call's observers (`on_wait` among them) as its own waits are.
        One whose listener raises leaves the line and raises that when it wakes.
        """
        for turn in line.queue:
            listener = turn.listener
            if listener is None or turn.gone or turn.event.is_set():
                continue
            turn.listener = None
            try:
                listener(wait)
            except Exception as exc:  # a user's on_wait: its own call raises it
                turn.raised = exc
                line.leave(turn)
                self._left(bucket, turn)
                turn.event.set()
                if not line.live:
                    return  # (the queue was cleared)

    def _admit_ahead(
        self, line: _Line, bucket: str, windows: tuple[Rate, ...], slots: Slots
    ) -> None:
        """
        Counted, holding the turn: count the requests next in line too, each with a free
        slot nobody else waits for, while the windows have room, and let them go at once.
        Handed the turn one after the other, each would take a loop turn: slots freed
        together (answers that came together) would be taken one loop turn apart. Done
        only where counting needs no await (the in-process store, as it is): a store
        across the network is asked by each request in its turn.
        """
        store = self.store
        if type(store).try_acquire is not InProcessRateLimitStore.try_acquire:
            return
        assert isinstance(store, InProcessRateLimitStore)
        queue = line.queue
        while queue and slots.free > 0 and not slots.live:
            turn = queue[0]
            if turn.gone:
                queue.popleft()
                continue
            if turn.wanted is not None and turn.wanted.now() is not True:
                return  # handed the turn, it asks (and waits) itself
            wait = store.try_acquire_now(self._scope, bucket, windows, self.limits.margin)
            if wait > 0:
                return
            taken = slots.take_nowait()
            assert taken
            queue.popleft()
            line.live -= 1
            turn.admitted = True
            turn.event.set()

    async def _wait_in_line(
        self,
        line: _Line,
        bucket: str,
        max_wait: float | None,
        slots: Slots | None,
        wanted: Wanted | None = None,
    ) -> _Turn:
        """
        Wait for the turn (at most `max_wait` seconds), or to be admitted with a slot by
        the request before (`_Turn.admitted`); raise if the line failed.
        """
        joined = time.monotonic()
        listener = wait_listener()
        if listener is not None and line.wakes is not None and line.wakes > joined:
            # Behind a head asleep on a window: held back at least that long, heard of
            # before the wait, as the head's own. (A line whose head only asks the store,
            # or wakes now, is no wait yet: the head tells those behind it if it sleeps.)
            announce_wait(line.wakes - joined)
            listener = None
        slot_time = line.held_back(joined)
        ticket = self.store._ticket() if self._lined else ""
        latest = math.inf if max_wait is None else joined + max_wait
        turn = _Turn(latest, slot_time, joined, ticket)
        turn.listener = listener
        turn.wanted = wanted
        line.queue.append(turn)
        line.live += 1
        try:
            limit = math.inf if max_wait is None else max_wait  # 0: a deadline used up
            frozen = False
            while True:
                with closable(self._waits, anyio.move_on_after(limit)) as scope:
                    if frozen:
                        line.frozen[turn] = scope
                    try:
                        await turn.event.wait()
                    finally:
                        if frozen:
                            del line.frozen[turn]
                if not scope.cancelled_caught or self._closed:
                    break
                # Out of time, unless part of that time the heads waited for a slot
                # (PostHog slow, every slot busy): that is no rate-limit wait, and the
                # request waits on for as long.
                now = time.monotonic()
                left = (max_wait or 0.0) - (now - joined - (line.held_back(now) - slot_time))
                frozen = line.slot_since is not None or line.asking_since is not None
                if frozen:
                    # The head waits for a slot (or for the store's answer to its
                    # question): the request's time stands still until
                    # that wait ends, and then runs on from what is left of it
                    # (`_Line.slot_wait_ended`). With none left (with no time to spare,
                    # `max_wait=0`, all of it went to the head's wait) it waits on for
                    # its turn; should a head then sleep on a window, a request whose
                    # time that wait exceeds is refused (`_refuse_hopeless`).
                    limit = math.inf
                elif left > 0:
                    limit = left
                else:
                    break
        except BaseException:
            if turn.event.is_set():
                if turn.admitted:
                    assert slots is not None
                    slots.release()  # counted, never sent: over-counted only
                elif turn.failure is None and turn.refused is None and turn.raised is None:
                    # It was handed over just as the wait ended: the turn goes on, and
                    # the request leaves the store's line, where the fleet's requests
                    # (the next of this process too) would count it as ahead of them.
                    if turn.ticket:
                        self._left_ahead(line, bucket, turn.ticket)
                    self._pass_turn(line)
            else:
                line.leave(turn)
                self._left(bucket, turn)
            raise
        if turn.failure is not None:
            raise RateLimitStoreError(turn.failure)
        if turn.raised is not None:  # its `on_wait` (or observer) raised: it left the line
            raise turn.raised
        if turn.refused is not None:  # left the line already (`_refuse_hopeless`)
            raise _refusal(bucket, max(0.0, turn.refused - time.monotonic()))
        if not turn.event.is_set():  # out of time, or the client closed
            line.leave(turn)
            self._left(bucket, turn)
            self._check_open()
            logger.debug("rate limits: %s request left the line at its time limit", bucket)
            raise RateLimitError(
                status=429,
                retry_after=None,
                detail=f"the {bucket} requests queued before this one under the rate limit"
                " take longer than this call may wait",
            )
        return turn

    async def penalize(self, bucket: str, seconds: float | None) -> None:
        """
        PostHog answered 429 and asked to wait `seconds`: hold back every request of the
        bucket that long. A 429 that names no wait (too many concurrent backfills, say)
        is not a throttle and leaves the bucket alone.
        """
        self.limits.windows(bucket)  # an unknown bucket is a bug: say so
        if seconds is None or seconds <= 0:
            return
        logger.info("rate limits: PostHog answered 429; %s requests wait %.1f s", bucket, seconds)
        try:
            await self.store.penalize(self._scope, bucket, float(seconds))
        except RateLimitStoreError as exc:
            # The call's outcome is PostHog's 429, not this: it was sent and refused (a
            # store error says "not sent"). The next request asks the store again.
            logger.warning(
                "rate limits: PostHog's %.1f s pause of %s requests could not be stored, "
                "so other clients sharing the store do not hold back: %s",
                seconds,
                bucket,
                exc,
            )

    def _check_open(self) -> None:
        if self._closed:
            raise ClientStateError("this aposthog.Client was closed while the call waited")

    def close(self) -> None:
        """The client closes: every wait under way ends now (`ClientStateError`)."""
        self._closed = True
        self._sleeps.wake_all()
        for scope in list(self._waits):
            scope.cancel()
        for keeper in self._keepers:
            keeper.cancel()

    async def aclose(self) -> None:
        """
        The client closed: every wait under way ends (`ClientStateError`), and the store
        is released, once (a Redis store made from a URL disconnects). The release runs
        as a task of its own: an `aclose()` cancelled while it runs leaves it running,
        and the next `aclose()` waits for that same release (never a second one).
        """
        self.close()
        release = self._release
        if release is None:
            release = self._release = asyncio.ensure_future(self.store._detach())
        await asyncio.shield(release)

    def _left(self, bucket: str, turn: _Turn) -> None:
        """A request left the line before its turn: out of the store's line too."""
        if turn.ticket:
            self.store._leave(self._scope, bucket, turn.ticket)

    def _left_ahead(self, line: _Line, bucket: str, ticket: str) -> None:
        """
        A request that held the turn, or was just handed it, left uncounted: out of the
        store's line, and named in the line's next question (`_Line.gone_ahead`), which
        may reach the store before the removal does.
        """
        self.store._leave(self._scope, bucket, ticket)
        if self._lined and len(line.gone_ahead) < _GONE_AHEAD:
            line.gone_ahead.append(ticket)

    @staticmethod
    def _pass_turn(line: _Line) -> None:
        queue = line.queue
        while queue:
            turn = queue.popleft()
            if not turn.gone:
                line.live -= 1
                turn.event.set()  # `busy` stays True: the turn goes to the next
                return
        line.busy = False


def _refusal(bucket: str, wait: float) -> RateLimitError:
    """The refusal of a wait longer than a call may take (`retry_after` the wait)."""
    logger.debug("rate limits: %s request refused a %.1f s wait", bucket, wait)
    return RateLimitError(
        status=429,
        retry_after=wait,
        detail=f"the {bucket} rate limit allows no request for {wait:.1f} s"
        " (a pause PostHog asked for, or this client's count of its"
        " throttles); longer than this call may wait",
    )


def _refuse_past(bucket: str, wait: float, max_wait: float) -> None:
    """Raise `_refusal` for a wait longer than `max_wait`."""
    if wait > max_wait:
        raise _refusal(bucket, wait)


def _waiting(line: _Line, now: float) -> tuple[tuple[str, float], ...]:
    """The tickets and ages of the first requests waiting in `line` (for a fleet's line)."""
    waiting = []
    for turn in line.queue:
        if not turn.gone and turn.ticket:
            waiting.append((turn.ticket, now - turn.joined))
            if len(waiting) == _WAITING_SENT:
                break
    return tuple(waiting)


#: The requests waiting in a process's line that its head brings into a fleet's line.
_WAITING_SENT = 32


def _refuse_hopeless(line: _Line, bucket: str, left: Callable[[str, _Turn], None]) -> None:
    """
    The head sleeps until `line.wakes`: each request behind it whose time ends before
    then is refused at once (with that wait), not left to sit its time out in the line.
    """
    wakes = line.wakes
    assert wakes is not None
    held_back = line.held_back(time.monotonic())
    for turn in line.queue:
        if turn.gone or turn.event.is_set():
            continue
        if turn.latest + (held_back - turn.slot_time) < wakes:
            logger.debug("rate limits: %s request behind a sleeping head refused", bucket)
            turn.refused = wakes
            line.leave(turn)
            left(bucket, turn)
            turn.event.set()
            if not line.live:
                return


def make_rate_limiter(
    rate_limits: RateLimits | str | None,
    store: RateLimitStore | None,
    *,
    base_url: str,
    api_key: str,
) -> RateLimiter | None:
    """The limiter of a new client (`Client(rate_limits=..., rate_limit_store=...)`), or None."""
    given: object = store  # typed for callers, checked as anything
    if given is not None and not isinstance(given, RateLimitStore):
        raise ConfigurationTypeError(
            "rate_limit_store must be None, an aposthog.InProcessRateLimitStore or an "
            f"aposthog.RedisRateLimitStore, got {type(given).__name__}"
        )
    limits = resolve_rate_limits(rate_limits, base_url, store_given=store is not None)
    if limits is None:
        return None
    return RateLimiter(
        limits, store or InProcessRateLimitStore(), rate_limit_scope(base_url, api_key)
    )
