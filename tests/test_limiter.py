"""The async rate limiter over the in-process store: fair, exact, cancellable, penalized."""

from __future__ import annotations

import asyncio
import gc
import re
import time
import weakref
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aposthog._errors import ClientStateError, RateLimitError
from aposthog._limiter import (
    InProcessRateLimitStore,
    RateLimiter,
    RateLimitStore,
    RateLimitStoreError,
    rate_limit_scope,
)
from aposthog._pipeline import Unwanted
from aposthog._ratelimit import Rate, RateLimits
from aposthog._slots import Slots

pytestmark = pytest.mark.anyio


def _limiter(*rates: Rate, ai: tuple[Rate, ...] = (), margin: float = 0.0) -> RateLimiter:
    limits = RateLimits(api=rates, ai=ai, margin=margin)
    return RateLimiter(limits, InProcessRateLimitStore(), rate_limit_scope("http://h", "k"))


def test_the_scope_is_a_hash_never_the_key() -> None:
    key = "phx_secret_personal_key"
    scope = rate_limit_scope("https://us.posthog.com", key)
    assert key not in scope
    assert 32 == len(scope)
    assert scope == rate_limit_scope("https://us.posthog.com", key)
    assert scope != rate_limit_scope("https://eu.posthog.com", key)
    assert scope != rate_limit_scope("https://us.posthog.com", key + "x")


async def test_room_in_the_window_costs_no_wait() -> None:
    limiter = _limiter(Rate(100, per=60))
    waits = [await limiter.acquire("api") for _ in range(100)]
    assert [0.0] * 100 == waits


async def test_a_full_window_waits_until_its_oldest_request_is_old_enough() -> None:
    limiter = _limiter(Rate(3, per=0.3))
    started = time.monotonic()
    for _ in range(3):
        await limiter.acquire("api")
    waited = await limiter.acquire("api")
    assert waited > 0
    assert time.monotonic() - started >= 0.3


async def test_waiters_go_first_come_first_served() -> None:
    limiter = _limiter(Rate(1, per=0.03))
    order: list[int] = []

    async def request(n: int) -> None:
        await limiter.acquire("api")
        order.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(request, n)
            await anyio.sleep(0.001)  # arrive in this order
    assert list(range(8)) == order


class CountingStore(InProcessRateLimitStore):
    """Remembers which requests it counted."""

    def __init__(self) -> None:
        super().__init__()
        self.counted = 0

    async def try_acquire(
        self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
    ) -> float:
        wait = await super().try_acquire(scope, bucket, windows, margin)
        self.counted += wait == 0
        return wait


async def test_a_cancelled_waiter_leaves_the_line_and_is_not_counted() -> None:
    store = CountingStore()
    limiter = RateLimiter(RateLimits(api=Rate(1, per=0.2)), store, "scope")
    await limiter.acquire("api")  # the window is now full for 0.2 s
    done: list[str] = []

    async def request(name: str) -> None:
        await limiter.acquire("api")
        done.append(name)

    async with anyio.create_task_group() as tg:
        waiting = anyio.CancelScope()

        async def cancellable() -> None:
            with waiting:
                await request("cancelled")

        tg.start_soon(cancellable)
        await anyio.sleep(0.01)
        tg.start_soon(request, "third")
        await anyio.sleep(0.01)
        waiting.cancel()  # the head of the line, asleep on the store's answer
    assert ["third"] == done
    assert 2 == store.counted


async def test_cancelling_the_head_hands_the_turn_to_the_next() -> None:
    limiter = _limiter(Rate(1, per=0.1))
    await limiter.acquire("api")
    finished: list[str] = []

    async def request(name: str) -> None:
        await limiter.acquire("api")
        finished.append(name)

    async with anyio.create_task_group() as tg:
        head = anyio.CancelScope()

        async def head_request() -> None:
            with head:
                await request("head")

        tg.start_soon(head_request)
        await anyio.sleep(0.01)
        tg.start_soon(request, "second")
        await anyio.sleep(0.01)
        head.cancel()
    assert ["second"] == finished


async def test_a_penalty_holds_every_request_of_its_bucket() -> None:
    limiter = _limiter(Rate(1000, per=60))
    await limiter.penalize("api", 0.2)
    started = time.monotonic()
    assert await limiter.acquire("api") > 0
    assert time.monotonic() - started >= 0.2
    # Another bucket is not held.
    assert 0.0 == await limiter.acquire("ai")


async def test_a_429_without_a_wait_is_not_a_throttle() -> None:
    limiter = _limiter(Rate(1000, per=60))
    await limiter.penalize("api", None)
    await limiter.penalize("api", 0)
    assert 0.0 == await limiter.acquire("api")


async def test_a_bucket_without_windows_still_honours_a_429() -> None:
    limiter = _limiter(Rate(1000, per=60))  # no AI windows
    await limiter.penalize("ai", 0.1)
    started = time.monotonic()
    await limiter.acquire("ai")
    assert time.monotonic() - started >= 0.1


async def test_an_unknown_bucket_is_refused() -> None:
    limiter = _limiter()
    with pytest.raises(ValueError, match="bucket"):
        await limiter.acquire("nope")
    with pytest.raises(ValueError, match="bucket"):
        await limiter.penalize("nope", 1.0)


async def test_many_tasks_never_exceed_the_window() -> None:
    rate = Rate(5, per=0.1)
    granted = 0.0

    def clock() -> float:
        nonlocal granted
        granted = time.monotonic()
        return granted

    # The moment each request was granted is the store's own reading of the clock (the
    # last one before `acquire` returns, with no other task in between): a moment taken
    # after `acquire` returns would count a preemption or a GC pause as the limiter's.
    store = InProcessRateLimitStore(clock=clock)
    limiter = RateLimiter(RateLimits(api=rate), store, rate_limit_scope("http://h", "k"))
    moments: list[float] = []

    async def worker() -> None:
        for _ in range(5):
            await limiter.acquire("api")
            moments.append(granted)

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(worker)
    assert 30 == len(moments)
    for t in moments:
        assert sum(1 for s in moments if t - rate.per < s <= t) <= rate.limit


async def test_a_store_shared_by_two_limiters_is_one_budget() -> None:
    store = InProcessRateLimitStore()
    limits = RateLimits(api=Rate(2, per=60))
    first = RateLimiter(limits, store, "same-key")
    second = RateLimiter(limits, store, "same-key")
    other = RateLimiter(limits, store, "other-key")
    await first.acquire("api")
    await second.acquire("api")
    assert 0.0 == await other.acquire("api")
    with anyio.move_on_after(0.05) as scope:
        await first.acquire("api")
    assert scope.cancelled_caught


async def test_a_store_shared_by_limiters_with_different_margins_is_one_budget() -> None:
    """A store shared by the clients of one key is one budget for all of them (its
    docstring), however each counts its margin, as a `RedisRateLimitStore` is (its
    windows are keyed by their length): here three requests fill a budget of three,
    and the fourth must wait, whichever limiter asks.
    """
    store = InProcessRateLimitStore()
    api = Rate(3, per=60)
    wide = RateLimiter(RateLimits(api=api, margin=0.5), store, "same-key")
    narrow = RateLimiter(RateLimits(api=api, margin=0.25), store, "same-key")
    for limiter in (wide, narrow, wide):
        await limiter.acquire("api")
    with pytest.raises(RateLimitError):
        await narrow.acquire("api", max_wait=1)


async def test_a_shared_store_forgets_the_keys_whose_windows_are_over() -> None:
    """
    One store shared by the short-lived clients of a service that serves many keys (a
    client per tenant, closed after use), for weeks: once every request a key counted
    is older than its windows, and no 429 pause runs, nothing of that key is needed any
    more, as `RedisRateLimitStore` knows (its keys expire with their windows). The
    in-process store kept a bucket log per key ever seen, each time counted in it
    included, for the life of the process: memory that only grows.
    """
    now = 0.0
    store = InProcessRateLimitStore(clock=lambda: now)
    windows = (Rate(480, per=60), Rate(4800, per=3600))
    for generation in range(5):  # 5 hours, a thousand new keys each
        for tenant in range(1000):
            for _ in range(3):
                assert 0 == await store.try_acquire(f"{generation}-{tenant}", "api", windows, 0.5)
        now += 3601  # every window of every key counted so far is over
    counted = re.fullmatch(r"<InProcessRateLimitStore buckets=(\d+)>", repr(store))
    assert counted is not None
    assert int(counted[1]) <= 2000  # the live keys (a thousand), with room for a lazy sweep


async def test_a_stalled_store_fails_the_whole_line_in_about_one_timeout() -> None:
    """When Redis stops answering (a failover, a partition), each question to it fails
    after the store's timeout. A worker pool has many requests in the bucket's line: they
    must all fail about as soon as the head does (`RateLimitStoreError`), not one timeout
    after another (with the default 5 s and a thousand queued requests, the last would
    fail after more than an hour).
    """

    class StalledStore(RateLimitStore):
        async def try_acquire(
            self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
        ) -> float:
            await anyio.sleep(0.2)  # the store's timeout
            raise RateLimitStoreError("the rate-limit store (Redis) failed: Timeout")

    limiter = RateLimiter(RateLimits(api=Rate(1000, per=60)), StalledStore(), "s")
    failed: list[float] = []
    started = time.monotonic()

    async def request() -> None:
        with pytest.raises(RateLimitStoreError):
            await limiter.acquire("api")
        failed.append(time.monotonic() - started)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(request)
    assert 10 == len(failed)
    assert max(failed) < 0.2 * 3  # not 10 timeouts one after another (2 s)


@settings(max_examples=25, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 3), st.one_of(st.none(), st.integers(0, 30))),
        min_size=1,
        max_size=10,
    )
)
def test_random_arrivals_and_cancellations_keep_order_and_count(
    plan: list[tuple[int, int | None]],
) -> None:
    """Whatever arrives and whoever gives up: the rest go in arrival order, and only
    they are counted."""

    async def scenario() -> None:
        store = CountingStore()
        limiter = RateLimiter(RateLimits(api=Rate(2, per=0.02), margin=0), store, "s")
        done: list[int] = []

        async def request(n: int, give_up_ms: int | None) -> None:
            with anyio.CancelScope() as scope:
                if give_up_ms is not None:
                    scope.deadline = anyio.current_time() + give_up_ms / 1000
                await limiter.acquire("api")
                done.append(n)

        async with anyio.create_task_group() as tg:
            for n, (gap_ms, give_up_ms) in enumerate(plan):
                tg.start_soon(request, n, give_up_ms)
                await anyio.sleep(gap_ms / 1000)
        assert sorted(done) == done
        assert len(done) == store.counted
        assert all(n in done for n, (_, give_up) in enumerate(plan) if give_up is None)

    anyio.run(scenario)


def _clock(*readings: float, then: float = 1e6) -> Callable[[], float]:
    """A store clock that reads `readings` in turn, then `then` for ever."""
    it = iter(readings)
    return lambda: next(it, then)


async def test_a_wait_longer_than_max_wait_is_refused_at_once() -> None:
    store = CountingStore()
    store._clock = _clock(0.0, 0.0, 0.0, 0.0, 0.0)
    limiter = RateLimiter(RateLimits(api=Rate(1000, per=60)), store, "s")
    await limiter.penalize("api", 30)
    for _ in range(2):  # refused without holding the line: the next one is refused too
        with anyio.fail_after(5), pytest.raises(RateLimitError) as excinfo:
            await limiter.acquire("api", max_wait=10)
        assert 30 == excinfo.value.retry_after
    assert 0 == store.counted
    assert 0.0 == await limiter.acquire("ai", max_wait=10)  # another bucket goes


async def test_a_wait_of_exactly_max_wait_is_waited() -> None:
    store = InProcessRateLimitStore(clock=_clock(0.0, 0.0))  # the penalty, the first ask
    limiter = RateLimiter(RateLimits(api=Rate(1000, per=60)), store, "s")
    await limiter.penalize("api", 0.05)
    assert await limiter.acquire("api", max_wait=0.05) > 0


async def test_the_windows_apply_after_a_429_came_first() -> None:
    """A bucket penalized before its first request still counts its windows afterwards."""
    now = 0.0
    store = InProcessRateLimitStore(clock=lambda: now)
    limiter = RateLimiter(RateLimits(api=Rate(2, per=60), margin=0), store, "s")
    await limiter.penalize("api", 1)
    now = 2.0
    assert [0.0, 0.0] == [await limiter.acquire("api", max_wait=0) for _ in range(2)]
    with pytest.raises(RateLimitError) as excinfo:
        await limiter.acquire("api", max_wait=0)
    assert 60 == excinfo.value.retry_after


class GatedStore(CountingStore):
    """Every request asking the store waits for `gate`: whoever asks holds the turn meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()

    async def try_acquire(
        self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
    ) -> float:
        await self.gate.wait()
        return await super().try_acquire(scope, bucket, windows, margin)


async def _until_queued(limiter: RateLimiter, n: int) -> None:
    with anyio.fail_after(5):
        while len(limiter._lines["api"].queue) < n:  # noqa: ASYNC110 (no event to wait on)
            await anyio.sleep(0.001)


async def test_a_request_right_after_its_own_turn_queues_behind_the_waiters() -> None:
    """The turn goes straight to the next in line: no newcomer slips in while it wakes."""
    store = GatedStore()
    limiter = RateLimiter(RateLimits(api=Rate(1000, per=60)), store, "s")
    order: list[str] = []

    async def head() -> None:
        await limiter.acquire("api")
        order.append("head")
        await limiter.acquire("api")  # arrives while the waiter has the turn, not yet awake
        order.append("again")

    async def waiter() -> None:
        await limiter.acquire("api")
        order.append("waiter")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(head)
            await anyio.sleep(0.01)
            tg.start_soon(waiter)
            await _until_queued(limiter, 1)
            store.gate.set()
    assert ["head", "waiter", "again"] == order


async def test_a_waiter_cancelled_as_its_turn_comes_passes_it_on() -> None:
    """Cancelled (natively) in the very step the turn was handed to it: the next one goes."""
    store = GatedStore()
    limiter = RateLimiter(RateLimits(api=Rate(1000, per=60)), store, "s")
    done: list[str] = []

    async def request(name: str) -> None:
        await limiter.acquire("api")
        done.append(name)

    async def head() -> None:
        await request("head")
        late.cancel()  # its turn was just handed over; it has not run since

    with anyio.fail_after(5):
        first = asyncio.ensure_future(head())
        await anyio.sleep(0.01)
        late = asyncio.ensure_future(request("late"))
        await _until_queued(limiter, 1)
        last = asyncio.ensure_future(request("last"))
        await _until_queued(limiter, 2)
        store.gate.set()
        await asyncio.wait({first, late, last})
    assert late.cancelled()
    assert ["head", "last"] == done
    assert 2 == store.counted
    assert not limiter._lines["api"].busy


async def test_seconds_waited_count_the_time_in_line() -> None:
    """`acquire` returns the time since the request arrived, its turn in line included."""
    now = 0.0

    class ScriptedStore(RateLimitStore):
        """The waits asked for in turn; the clock moves one second per question."""

        def __init__(self, waits: list[float]) -> None:
            self.waits = waits
            self.gate = anyio.Event()

        async def try_acquire(
            self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
        ) -> float:
            nonlocal now
            await self.gate.wait()
            now += 1
            return self.waits.pop(0)

    store = ScriptedStore([0.001, 0.0, 0.001, 0.0])  # the first twice, then the second twice
    limiter = RateLimiter(RateLimits(api=Rate(1000, per=60)), store, "s")
    waited: dict[str, float] = {}

    async def request(name: str) -> None:
        waited[name] = await limiter.acquire("api")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("aposthog._limiter.time", SimpleNamespace(monotonic=lambda: now))
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(request, "first")  # holds the turn from `now` == 0
                await anyio.sleep(0.01)
                tg.start_soon(request, "second")  # in line from `now` == 0
                await _until_queued(limiter, 1)
                store.gate.set()
    assert {"first": 1.0, "second": 4.0} == waited  # waits from 1 (its first answer), from 0


async def test_aclose_releases_the_store_once() -> None:
    class AttachCounting(InProcessRateLimitStore):
        def __init__(self) -> None:
            super().__init__()
            self.users = 0

        def _attach(self) -> None:
            self.users += 1

        async def _detach(self) -> None:
            self.users -= 1

    store = AttachCounting()
    limits = RateLimits(api=Rate(1000, per=60))
    first, second = RateLimiter(limits, store, "s"), RateLimiter(limits, store, "s")
    assert 2 == store.users
    await first.aclose()
    await first.aclose()
    assert 1 == store.users  # still the second client's
    await second.aclose()
    assert 0 == store.users


@pytest.mark.parametrize("order", ["newest first", "every other"])
async def test_cancelling_most_of_a_long_line_leaves_the_rest_admitted_in_order(
    order: str,
) -> None:
    """
    A worker pool cancels most of a thousand requests queued in one bucket: those left
    are admitted in arrival order and the line ends idle (the cancelled ones are skipped,
    never searched for one by one), so a newcomer is admitted at once.
    """
    limiter = _limiter(Rate(1000, per=60))
    admitted: list[int] = []
    gate = anyio.Event()

    class Gated(InProcessRateLimitStore):
        async def try_acquire(
            self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
        ) -> float:
            await gate.wait()  # the head holds the turn until the cancellations are done
            return await super().try_acquire(scope, bucket, windows, margin)

    limiter.store = Gated()

    async def request(n: int) -> None:
        await limiter.acquire("api")
        admitted.append(n)

    tasks = [asyncio.create_task(request(n)) for n in range(1000)]
    await asyncio.sleep(0.01)
    keep = {0, 500, 999} if order == "newest first" else set(range(0, 1000, 2))
    for n in reversed(range(1000)):
        if n not in keep:
            tasks[n].cancel()
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert sorted(keep) == admitted
    line = limiter._lines["api"]
    assert (False, 0, 0) == (line.busy, line.live, len(line.queue))
    with anyio.fail_after(1):
        await limiter.acquire("api")


# ---------------------------------------------------------------------- counted when it goes


class SlotWatchingStore(InProcessRateLimitStore):
    """Notes how many of `slots` are free each time it is asked; can fail or stall."""

    def __init__(self, slots: Slots, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)
        self.slots = slots
        self.free_when_asked: list[int] = []
        self.failure: BaseException | None = None
        self.stall = anyio.Event()
        self.stall.set()

    async def try_acquire(
        self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
    ) -> float:
        self.free_when_asked.append(self.slots.free)
        await self.stall.wait()
        if self.failure is not None:
            raise self.failure
        return await super().try_acquire(scope, bucket, windows, margin)


async def test_with_slots_a_request_is_counted_holding_a_slot_and_keeps_it() -> None:
    slots = Slots(2)
    store = SlotWatchingStore(slots)
    limiter = RateLimiter(RateLimits(api=Rate(10, per=60), margin=0), store, "s")
    assert 0.0 == await limiter.acquire("api", slots=slots)
    assert [1] == store.free_when_asked  # asked holding its slot
    assert 1 == slots.free  # and returned holding it, for the request to go on
    slots.release()


async def test_a_request_waiting_for_a_slot_is_not_counted_until_it_has_one() -> None:
    """
    Every slot is busy (PostHog slow): the request at the head of the line waits for one
    before it is counted, so it is counted when it goes, not a slow answer earlier.
    """
    now = 0.0
    slots = Slots(1)
    store = SlotWatchingStore(slots, clock=lambda: now)
    limiter = RateLimiter(RateLimits(api=Rate(1, per=10), margin=0), store, "s")
    assert slots.take_nowait()  # a request in flight
    waiter = asyncio.create_task(limiter.acquire("api", slots=slots))
    await asyncio.sleep(0.01)
    assert [] == store.free_when_asked  # not asked: no slot yet
    now = 25.0  # the answer comes late
    slots.release()
    assert 0.0 == await asyncio.wait_for(waiter, 1)
    assert [0] == store.free_when_asked
    # Counted at 25 (when it went), so the window is full until 35, not until 10.
    now = 34.0
    with pytest.raises(RateLimitError) as excinfo:
        await limiter.acquire("api", max_wait=0)
    assert 1.0 == pytest.approx(excinfo.value.retry_after)
    assert 0 == slots.free  # the refused one holds nothing: the first still holds its slot


async def test_no_slot_is_held_while_a_request_sleeps_for_its_window() -> None:
    slots = Slots(1)
    store = SlotWatchingStore(slots)
    limiter = RateLimiter(RateLimits(api=Rate(1, per=0.2), margin=0), store, "s")
    await limiter.acquire("api", slots=slots)
    slots.release()
    second = asyncio.create_task(limiter.acquire("api", slots=slots))
    await asyncio.sleep(0.05)  # asleep on the store's answer
    assert 1 == slots.free
    assert slots.take_nowait()  # another bucket's request takes the slot meanwhile...
    await asyncio.sleep(0.25)
    assert not second.done()  # ...and the sleeper, awake, waits for it before asking again
    asked = len(store.free_when_asked)
    slots.release()
    waited = await asyncio.wait_for(second, 1)
    assert 0.15 < waited < 0.3  # its window's wait, not the slot's
    assert [0] == store.free_when_asked[asked:]
    assert 0 == slots.free
    slots.release()


@pytest.mark.parametrize("how", ["refused", "store fails", "cancelled", "closed"])
async def test_a_request_that_is_not_counted_holds_no_slot(how: str) -> None:
    slots = Slots(1)
    store = SlotWatchingStore(slots)
    limiter = RateLimiter(RateLimits(api=Rate(1, per=60), margin=0), store, "s")
    if how == "refused":
        await limiter.acquire("api", slots=slots)
        slots.release()
        with pytest.raises(RateLimitError):
            await limiter.acquire("api", max_wait=1, slots=slots)
    elif how == "store fails":
        store.failure = RateLimitStoreError("the store is down")
        with pytest.raises(RateLimitStoreError):
            await limiter.acquire("api", slots=slots)
    elif how == "cancelled":
        store.stall = anyio.Event()  # the store never answers
        with anyio.move_on_after(0.05) as scope:
            await limiter.acquire("api", slots=slots)
        assert scope.cancelled_caught
    else:
        assert slots.take_nowait()
        waiter = asyncio.create_task(limiter.acquire("api", slots=slots))
        await asyncio.sleep(0.01)
        await limiter.aclose()  # the client closes while the request waits for a slot
        slots.release()
        with pytest.raises(ClientStateError):
            await asyncio.wait_for(waiter, 1)
        assert [] == store.free_when_asked  # never asked
    assert 1 == slots.free
    assert not slots.waiting


async def test_waiting_behind_a_head_that_waits_for_a_slot_is_not_a_rate_limit_wait() -> None:
    """
    The windows have room; every slot is busy (PostHog slow). The request at the head
    of the line waits for a slot, which is not part of `max_wait`; the one behind it
    waits for the same slot, and must not be refused with a `RateLimitError` (a 429
    that neither PostHog nor the windows gave) where, without rate limits, it would
    simply have waited for its slot.
    """
    slots = Slots(1)
    limiter = RateLimiter(
        RateLimits(api=Rate(100, per=60), margin=0), InProcessRateLimitStore(), "s"
    )
    assert slots.take_nowait()  # a slow request in flight
    head = asyncio.create_task(limiter.acquire("api", max_wait=0.1, slots=slots))
    await asyncio.sleep(0.01)
    behind = asyncio.create_task(limiter.acquire("api", max_wait=0.1, slots=slots))
    await asyncio.sleep(0.3)  # the slow answer comes
    slots.release()
    assert 0.0 == await asyncio.wait_for(head, 1)
    slots.release()  # the head's request is answered too
    await asyncio.wait_for(behind, 1)
    slots.release()
    assert 1 == slots.free


async def test_a_waiter_whose_scope_is_cancelled_as_its_turn_comes_is_not_counted() -> None:
    """
    The turn is handed to a waiter in the very step its anyio scope is cancelled (anyio
    cancels at the next checkpoint, not a task whose awaited future is already done): it
    must stop there, uncounted, and pass the turn on, not be counted and sent.
    """
    store = CountingStore()
    gate = anyio.Event()

    class Gated(CountingStore):
        async def try_acquire(
            self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
        ) -> float:
            if not gate.is_set():  # the head's question; the others' pass no checkpoint
                await gate.wait()
            return await store.try_acquire(scope, bucket, windows, margin)

    limiter = RateLimiter(RateLimits(api=Rate(10, per=60), margin=0), Gated(), "s")
    waiter_scope = anyio.CancelScope()
    outcome: list[str] = []

    async def head() -> None:
        await limiter.acquire("api")
        waiter_scope.cancel()  # the same step in which the turn was handed over

    async def waiter() -> None:
        with waiter_scope:
            await limiter.acquire("api")
            outcome.append("counted")
        outcome.append("left" if waiter_scope.cancelled_caught else "done")

    async def behind() -> None:
        await limiter.acquire("api")
        outcome.append("behind counted")

    async with anyio.create_task_group() as tg:
        tg.start_soon(head)
        await anyio.sleep(0.01)
        tg.start_soon(waiter)
        await anyio.sleep(0.01)
        tg.start_soon(behind)
        await anyio.sleep(0.01)
        gate.set()
    assert ["left", "behind counted"] == outcome
    assert 2 == store.counted  # the head and the one behind


async def test_slots_freed_together_are_taken_together_by_the_requests_waiting() -> None:
    """
    The budget is far, every slot is busy, and requests wait for one (a worker pool of
    more tasks than `max_concurrency`). Without rate limits, slots freed in one step go
    to as many waiting requests in the next loop turn. With the limiter, only the head
    of the bucket's line waits for a slot; the one behind it asks only once handed the
    turn, a loop turn later: 16 slots freed at once took 16 turns, and
    `benchmarks/bench_limiter.py` at concurrency 32 fell from 1.0 to about 0.65 of the
    throughput without limits (it was 1.0 before requests were counted holding a slot).
    """
    slots = Slots(16)
    for _ in range(16):
        assert slots.take_nowait()  # every request in flight
    limiter = _limiter(Rate(1_000_000, per=60))
    admitted: list[int] = []

    async def request(i: int) -> None:
        await limiter.acquire("api", slots=slots)
        admitted.append(i)

    waiting = [asyncio.create_task(request(i)) for i in range(32)]
    try:
        for _ in range(5):
            await asyncio.sleep(0)  # all in line, or waiting for a slot
        for _ in range(16):
            slots.release()  # every request in flight is answered in the same step
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert 16 == len(admitted)
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)


async def test_requests_admitted_together_stop_at_the_window_and_keep_their_order() -> None:
    """The head counts the requests behind it while the window has room, in line order;
    the first that finds the window full waits for the turn, as before."""
    slots = Slots(8)
    for _ in range(8):
        assert slots.take_nowait()
    store = CountingStore()
    limiter = RateLimiter(RateLimits(api=Rate(5, per=60), margin=0), store, "s")
    admitted: list[int] = []

    async def request(i: int) -> None:
        await limiter.acquire("api", max_wait=0.05, slots=slots)
        admitted.append(i)

    waiting = [asyncio.create_task(request(i)) for i in range(8)]
    for _ in range(5):
        await asyncio.sleep(0)
    for _ in range(8):
        slots.release()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert [0, 1, 2, 3, 4] == admitted  # the window's five, in order
    assert all(isinstance(r, RateLimitError) for r in results[5:])
    assert 5 == store.counted
    assert 3 == slots.free  # the five admitted hold theirs; the refused hold none


class Asked:
    """
    A `Wanted` whose answer the test sets: True, False, or None (not known yet, until
    `decide()`); remembers each answer given.
    """

    def __init__(self, answer: bool | None = True) -> None:
        self.answer = answer
        self.given: list[bool | None] = []
        self._decided = anyio.Event()

    def now(self) -> bool | None:
        self.given.append(self.answer)
        return self.answer

    async def decided(self) -> None:
        await self._decided.wait()

    def decide(self, answer: bool) -> None:
        self.answer = answer
        self._decided.set()


async def test_a_request_no_longer_wanted_when_its_slot_comes_is_not_counted() -> None:
    """
    A message waits for the only slot while a cancel of its stream is under way: when the
    slot comes, the cancel has stopped the run (`wanted` says no). It raises `Unwanted`,
    counted by nobody and holding no slot, and the turn passes to the request behind it,
    which is counted and goes.
    """
    slots = Slots(1)
    assert slots.take_nowait()  # the cancel's PATCH in flight
    store = CountingStore()
    limiter = RateLimiter(RateLimits(api=Rate(1, per=60), margin=0), store, "s")
    wanted = Asked()
    message = asyncio.create_task(limiter.acquire("api", slots=slots, wanted=wanted))
    await asyncio.sleep(0.01)
    behind = asyncio.create_task(limiter.acquire("api", slots=slots))
    await asyncio.sleep(0.01)
    assert [] == wanted.given  # not asked while it waits for the slot
    wanted.answer = False  # the cancel stopped the run
    slots.release()
    with pytest.raises(Unwanted):
        await asyncio.wait_for(message, 1)
    assert [False] == wanted.given
    assert await asyncio.wait_for(behind, 1) < 1  # the window's one request: no wait for it
    assert 1 == store.counted
    assert 0 == slots.free  # the one behind holds it; the unwanted one holds none
    slots.release()


async def test_a_request_whose_time_stands_still_behind_a_slot_wait_is_not_woken_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    A request with little time (`max_wait`) waits behind a head that waits for a slot:
    that is no rate-limit wait, so its time stands still. It is not woken every
    `max_wait` to find that out (at 1 ms, a thousand wakes a second for each such
    request): it waits until the head's wait ends, and then its time runs on from what
    it had left. Here the head, once it has its slot, asks a store that does not answer:
    the request's 0.1 s run out meanwhile, and it is refused.
    """
    from aposthog import _limiter

    looked = 0

    def monotonic() -> float:  # every wake of a request in line reads the clock
        nonlocal looked
        looked += 1
        return time.monotonic()

    monkeypatch.setattr(_limiter, "time", SimpleNamespace(monotonic=monotonic))
    slots = Slots(1)
    assert slots.take_nowait()  # a long call
    store = GatedStore()
    limiter = RateLimiter(RateLimits(api=Rate(10, per=60), margin=0), store, "s")
    head = asyncio.create_task(limiter.acquire("api", slots=slots))
    await asyncio.sleep(0.01)
    assert limiter._lines["api"].slot_since is not None  # it waits for the slot
    behind = asyncio.create_task(limiter.acquire("api", max_wait=0.1, slots=slots))
    await _until_queued(limiter, 1)
    line = limiter._lines["api"]
    queued = looked
    with anyio.fail_after(2):
        while looked == queued:  # noqa: ASYNC110 (its 0.1 s passed: it woke once)
            await asyncio.sleep(0.01)
    before = looked
    await asyncio.sleep(0.5)
    assert before == looked  # nobody woke again
    assert not behind.done()
    assert list(line.frozen) == [line.queue[0]]  # it waits for the head's wait to end
    slots.release()  # the head takes it, and asks the store (which holds it)
    started = time.monotonic()
    with pytest.raises(RateLimitError):
        await asyncio.wait_for(behind, 2)
    assert 0.08 < time.monotonic() - started  # what it had left: 0.1 s (less a wake's lag)
    assert not line.frozen
    store.gate.set()
    assert 0 == await asyncio.wait_for(head, 1)
    slots.release()


class KeepingStore(InProcessRateLimitStore):
    """A store with a line of its own (as a fleet's), which remembers each renewal."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[tuple[str, ...]] = []
        self.tickets = iter(f"t{i}" for i in range(100))

    def _ticket(self) -> str:
        return next(self.tickets)

    async def _ask(self, *args: Any, **kwargs: Any) -> float:  # (its own: a line)
        return await super()._ask(*args, **kwargs)

    every = 0.01

    def _keep_every(self) -> float:
        return self.every

    def _keep(self, scope: str, bucket: str, tickets: tuple[str, ...]) -> None:
        self.kept.append(tickets)


@pytest.mark.parametrize("waits_for", ["a slot", "a cancel's answer"])
async def test_a_head_waiting_without_asking_keeps_its_processs_places_in_the_stores_line(
    waits_for: str,
) -> None:
    """
    The head holds the turn and waits for a slot, or for a cancel's answer: it asks the
    store nothing meanwhile, so a store whose line is the fleet's hears every
    `_keep_every()` that it and the requests behind it still wait (by their tickets, the
    head first). Once its wait ends, nobody renews anything any more.
    """
    slots = Slots(1)
    store = KeepingStore()
    limiter = RateLimiter(RateLimits(api=Rate(1, per=0.1), margin=0), store, "s")
    assert 0.0 == await limiter.acquire("api")  # t0: the window's place, for 0.1 s
    wanted = Asked()
    head = asyncio.create_task(limiter.acquire("api", slots=slots, wanted=wanted))
    await asyncio.sleep(0.02)  # it asked (as t1) and sleeps on the window, holding no slot
    assert 1 == slots.free
    behind = asyncio.create_task(limiter.acquire("api", slots=slots))
    if waits_for == "a slot":
        assert slots.take_nowait()  # a long call: no slot when the head wakes
    else:
        wanted.answer = None  # a cancel of its stream is under way when it wakes
    with anyio.fail_after(2):
        while len(store.kept) < 3:  # noqa: ASYNC110 (renewed while it waits)
            await asyncio.sleep(0.005)
    assert {("t1", "t2")} == set(store.kept)  # the head's first question named it t1
    if waits_for == "a slot":
        slots.release()
    else:
        wanted.decide(True)
    assert await asyncio.wait_for(head, 1) >= 0  # it goes, holding the slot
    with anyio.fail_after(2):
        while store.kept[-1] != ("t2",):  # noqa: ASYNC110 (the next head waits for it)
            await asyncio.sleep(0.005)
    slots.release()  # the head's call ends
    await asyncio.wait_for(behind, 1)
    renewals = len(store.kept)
    await asyncio.sleep(0.05)
    assert renewals == len(store.kept)
    slots.release()
    assert not [t for t in asyncio.all_tasks() if "_keep_places" in repr(t)]


async def test_a_head_whose_waits_follow_each_other_renews_from_when_it_was_last_heard_of() -> None:
    """
    The head waits for a cancel's answer, then (refused) for a slot, each shorter than
    `_keep_every()` and together longer: the store hears of its places in time all the
    same, counted from when it last heard of them (each wait's keeper counted from its
    own start, and renewed nothing).
    """
    slots = Slots(1)
    store = KeepingStore()
    store.every = 0.3
    limiter = RateLimiter(RateLimits(api=Rate(1, per=0.1), margin=0), store, "s")
    assert 0.0 == await limiter.acquire("api")  # the window's place, for 0.1 s
    wanted = Asked()
    head = asyncio.create_task(limiter.acquire("api", slots=slots, wanted=wanted))
    await asyncio.sleep(0.02)  # it asked (as t1), and sleeps on the window
    wanted.answer = None  # a cancel of its stream is under way when it wakes
    line = limiter._lines["api"]
    with anyio.fail_after(2):
        while line.slot_since is None:  # noqa: ASYNC110 (it waits for the answer)
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.2)
    assert slots.take_nowait()  # a long call: no slot when the answer comes
    wanted.decide(True)  # refused
    await asyncio.sleep(0.2)  # meanwhile, 0.3 s after it was last heard of: renewed
    assert not head.done()  # still waiting for the slot
    slots.release()
    await asyncio.wait_for(head, 1)
    slots.release()
    assert [("t1",)] == store.kept


class SlowlyAnsweringStore(KeepingStore):
    """A `KeepingStore` whose answer that a request must wait comes `late` seconds after
    its line counted the wait (a slow network, a busy Redis); each renewal's time kept."""

    late = 1.2

    def __init__(self) -> None:
        super().__init__()
        self.kept_at: list[float] = []

    async def _ask(self, *args: Any, **kwargs: Any) -> float:
        wait = await super()._ask(*args, **kwargs)
        if wait > 0:
            await asyncio.sleep(self.late)
        return wait

    def _keep(self, scope: str, bucket: str, tickets: tuple[str, ...]) -> None:
        super()._keep(scope, bucket, tickets)
        self.kept_at.append(time.monotonic())


async def test_a_head_counts_its_renewals_from_when_it_asked_not_from_a_late_answer() -> None:
    """
    The store's answer comes 1.2 s after its line counted the wait it tells: the line
    drops a place `_LATE` after the end of that wait, counted from when it counted it.
    So the head counts its renewals from when it asked: waking from the window to find
    every slot held, heard of longer ago than `_keep_every()` (1 s), it renews at once
    (counted from the answer, it renewed 1 s later, past the line's time).
    """
    slots = Slots(1)
    store = SlowlyAnsweringStore()
    store.every = 1.0
    limiter = RateLimiter(RateLimits(api=Rate(1, per=1), margin=0), store, "s")
    assert 0.0 == await limiter.acquire("api")  # the window's place, for 1 s
    head = asyncio.create_task(limiter.acquire("api", slots=slots))
    with anyio.fail_after(2):
        while "api" not in limiter._lines:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    line = limiter._lines["api"]
    with anyio.fail_after(4):
        while line.wakes is None:  # noqa: ASYNC110 (the answer came: it sleeps on the window)
            await asyncio.sleep(0.005)
    assert slots.take_nowait()  # a long call: no slot when the head wakes
    with anyio.fail_after(3):
        while line.slot_since is None:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        while not store.kept_at:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    assert store.kept_at[0] - line.slot_since < 0.5
    assert [("t1",)] == store.kept[:1]
    slots.release()
    assert await asyncio.wait_for(head, 1) > 0
    slots.release()


async def test_a_request_cancelled_as_its_turn_comes_leaves_the_stores_line() -> None:
    """
    A request waiting in its process's line is handed the turn and cancelled in the same
    step (its caller gave up just then): it passes the turn on, and leaves the store's
    line too, as one cancelled earlier does. (It stayed there until the fleet's line
    dropped it, 2 s after its wait: meanwhile every request of the fleet, the next of
    its own process included, counted it as ahead of it, a whole window more with
    PostHog AI's one a minute.) The next request's question names it as gone too: the
    removal, sent on its own, may reach the store after that question.
    """

    class LeavingStore(KeepingStore):
        def __init__(self) -> None:
            super().__init__()
            self.left: list[str] = []
            self.asked: list[tuple[str, tuple[str, ...]]] = []

        def _leave(self, scope: str, bucket: str, ticket: str) -> None:
            self.left.append(ticket)

        async def _ask(self, *args: Any, **kwargs: Any) -> float:
            self.asked.append((args[4], kwargs["left"]))
            return await super()._ask(*args, **kwargs)

    store = LeavingStore()
    limiter = RateLimiter(RateLimits(api=Rate(1, per=0.1), margin=0), store, "s")
    assert 0.0 == await limiter.acquire("api")  # t0: the window's place, for 0.1 s
    waiter = asyncio.create_task(limiter.acquire("api"))  # t2, behind the head
    behind = asyncio.create_task(limiter.acquire("api"))  # t3, behind it
    assert await limiter.acquire("api") > 0  # the head (t1): asleep on the window, counted
    waiter.cancel()  # in the step the head handed it the turn
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert ["t2"] == store.left
    assert await asyncio.wait_for(behind, 1) > 0  # the turn went on to the next
    assert ["t2"] == store.left
    assert ("t2",) == next(left for ticket, left in store.asked if ticket == "t3")
    assert [("t3", ("t2",))] == [(t, left) for t, left in store.asked if left]  # that one only


@pytest.mark.parametrize("decision", [True, False])
async def test_a_request_not_known_to_be_wanted_keeps_its_turn_until_it_is(decision: bool) -> None:
    """
    The slot comes while the cancel is still under way (`wanted` does not know yet): the
    request gives its slot back and keeps the turn, and the one behind it waits, counted
    by nobody. The cancel refused, the request is counted first and goes; the cancel
    succeeded, it leaves uncounted and the one behind goes.
    """
    slots = Slots(1)
    assert slots.take_nowait()
    store = CountingStore()
    limiter = RateLimiter(RateLimits(api=Rate(1, per=60), margin=0), store, "s")
    wanted = Asked(None)
    message = asyncio.create_task(limiter.acquire("api", max_wait=0, slots=slots, wanted=wanted))
    await asyncio.sleep(0.01)
    behind = asyncio.create_task(limiter.acquire("api", max_wait=0, slots=slots))
    await asyncio.sleep(0.01)
    slots.release()
    with anyio.fail_after(1):
        while not wanted.given:  # noqa: ASYNC110 (asked once its slot came)
            await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert [None] == wanted.given
    assert 1 == slots.free  # given back while it waits for the answer
    assert not message.done()
    assert not behind.done()  # the turn is the message's still
    assert 0 == store.counted
    wanted.decide(decision)
    if decision:  # refused: the message goes first, and takes the window
        assert isinstance(await asyncio.wait_for(message, 1), float)
        slots.release()  # its answer came
        with pytest.raises(RateLimitError):  # `max_wait=0`: refused at once
            await asyncio.wait_for(behind, 1)
        assert 1 == slots.free
    else:
        with pytest.raises(Unwanted):
            await asyncio.wait_for(message, 1)
        assert isinstance(await asyncio.wait_for(behind, 1), float)
        assert 0 == slots.free
        slots.release()
    assert 1 == store.counted


async def test_a_request_no_longer_wanted_is_not_counted_by_the_one_before_it() -> None:
    """
    Slots freed together: the head counts the requests behind it while the window has
    room (`_admit_ahead`), but not one that is no longer wanted. That one is handed the
    turn, leaves uncounted, and the next is counted: the window of two holds the two
    requests that went.
    """
    slots = Slots(3)
    for _ in range(3):
        assert slots.take_nowait()
    limiter = _limiter(Rate(2, per=60))
    went: list[int] = []

    async def request(i: int, wanted: Asked | None = None) -> None:
        await limiter.acquire("api", max_wait=0.05, slots=slots, wanted=wanted)
        went.append(i)

    waiting = [
        asyncio.create_task(request(0)),
        asyncio.create_task(request(1, Asked(False))),
        asyncio.create_task(request(2)),
    ]
    for _ in range(5):
        await asyncio.sleep(0)
    for _ in range(3):
        slots.release()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert [0, 2] == went
    assert isinstance(results[1], Unwanted)
    assert 1 == slots.free  # the two that went hold theirs
    with pytest.raises(RateLimitError):  # and the window counts those two alone
        await limiter.acquire("api", max_wait=0)


async def test_a_request_that_left_the_line_keeps_nothing_of_its_wanted() -> None:
    """
    A place left in the line is skipped when its turn comes, not searched for: until the
    head wakes (a minute here) it is still in the queue. It must hold nothing of the
    request that left it, in particular not `wanted`, a method of the message's stream.
    """
    limiter = _limiter(Rate(1, per=60))
    await limiter.acquire("api")  # the window's one request
    head = asyncio.create_task(limiter.acquire("api"))  # asleep on the window

    stream = Asked()  # (what a message's `wanted` holds: its stream)
    gone = weakref.ref(stream)
    left = anyio.Event()

    async def request(wanted: Asked) -> None:
        with anyio.CancelScope() as scope:
            leave.append(scope)
            await limiter.acquire("api", wanted=wanted)
        left.set()

    leave: list[anyio.CancelScope] = []
    leaving = asyncio.create_task(request(stream))
    behind = asyncio.create_task(limiter.acquire("api"))
    try:
        with anyio.fail_after(1):
            while limiter._lines["api"].live < 2:  # noqa: ASYNC110 (both behind the head)
                await asyncio.sleep(0)
        leave.pop().cancel()  # its caller gives up: the place is left
        await left.wait()
        await leaving
        del stream, leaving
        gc.collect()
        assert gone() is None, "the place left in the line holds the request's `wanted`"
    finally:
        head.cancel()
        behind.cancel()
        await asyncio.gather(head, behind, return_exceptions=True)


async def test_a_request_admitted_with_a_slot_and_cancelled_at_once_gives_the_slot_back() -> None:
    slots = Slots(2)
    assert slots.take_nowait()
    assert slots.take_nowait()
    limiter = _limiter(Rate(100, per=60))
    scope = anyio.CancelScope()
    outcome: list[str] = []

    async def head() -> None:
        await limiter.acquire("api", slots=slots)
        scope.cancel()  # the same step in which the one behind was admitted

    async def behind() -> None:
        with scope:
            await limiter.acquire("api", slots=slots)
            outcome.append("went")
        outcome.append("left" if scope.cancelled_caught else "?")

    async with anyio.create_task_group() as tg:
        tg.start_soon(head)
        await anyio.sleep(0.01)
        tg.start_soon(behind)
        await anyio.sleep(0.01)
        slots.release()
        slots.release()
    assert ["left"] == outcome
    assert 1 == slots.free  # the head holds one; the one admitted gave its back


async def test_a_request_admitted_with_a_slot_as_its_task_is_cancelled_gives_the_slot_back() -> (
    None
):
    """The same, when the task itself is cancelled (asyncio's own cancellation): the
    cancellation meets it still waiting in line, admitted; the slot goes back."""
    slots = Slots(2)
    assert slots.take_nowait()
    assert slots.take_nowait()
    limiter = _limiter(Rate(100, per=60))

    tasks: list[asyncio.Task[float]] = []

    async def head() -> float:
        waited = await limiter.acquire("api", slots=slots)
        tasks[1].cancel()  # the same step in which the one behind was admitted
        return waited

    tasks.append(asyncio.create_task(head()))
    await asyncio.sleep(0.01)  # the head waits for a slot
    tasks.append(asyncio.create_task(limiter.acquire("api", slots=slots)))
    await asyncio.sleep(0.01)  # the other waits in line
    slots.release()
    slots.release()
    await tasks[0]
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert 1 == slots.free  # the head holds one; the one admitted gave its back


async def test_forgetting_old_keys_keeps_every_count_and_pause_still_running() -> None:
    """A sweep drops only buckets with nothing left: a paused key and a full window stay."""
    now = 0.0
    store = InProcessRateLimitStore(clock=lambda: now)
    windows = (Rate(2, per=60),)
    for tenant in range(100):
        await store.try_acquire(f"old-{tenant}", "api", windows, 0.0)
    now = 100.0  # the old keys' windows are over
    await store.penalize("paused", "api", 500)
    for _ in range(2):
        assert 0 == await store.try_acquire("busy", "api", windows, 0.0)
    for tenant in range(200):  # new keys: the store sweeps as it grows
        await store.try_acquire(f"new-{tenant}", "api", windows, 0.0)
    assert 400 < await store.try_acquire("paused", "api", windows, 0.0) <= 500
    assert 0 < await store.try_acquire("busy", "api", windows, 0.0) <= 60
    counted = re.fullmatch(r"<InProcessRateLimitStore buckets=(\d+)>", repr(store))
    assert counted is not None
    assert int(counted[1]) < 300  # the hundred old keys are gone


async def test_a_request_behind_a_head_asleep_past_its_max_wait_is_refused_at_once() -> None:
    """
    `acquire()`'s docstring and the README: a wait the call may not take (longer than
    `max_retry_after`, or ending after its deadline) is not begun: `RateLimitError` at
    once, the wait in `.retry_after`. Alone, a web handler's call (a short deadline) meets
    a paused bucket so. Behind a worker whose call sleeps out that same pause as the head
    of the line, it sat out its whole `max_wait` in the line, then failed without any
    `retry_after`, though the head's wake-up time was known when it joined.
    """
    limiter = _limiter(Rate(1000, per=60))
    await limiter.penalize("api", 30)  # PostHog's 429: "Expected available in 30 seconds."
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire, "api")  # a worker that may wait it out: the head
        await anyio.sleep(0.05)
        started = time.monotonic()
        with anyio.fail_after(5), pytest.raises(RateLimitError) as refused:
            await limiter.acquire("api", max_wait=1)
        elapsed = time.monotonic() - started
        tg.cancel_scope.cancel()
    assert elapsed < 0.5  # at once, as without the worker ahead of it
    assert refused.value.retry_after is not None
    assert 29 < refused.value.retry_after <= 30


async def test_requests_in_line_whose_time_ends_before_the_head_wakes_are_refused_at_once() -> None:
    """
    Already in the line when the head begins a long sleep (PostHog asked for 30 s): a
    request whose `max_wait` ends before the head wakes is refused then, the head's wait
    in its `retry_after`; one that may wait longer stays in the line, and goes after it.
    """
    limiter = _limiter(Rate(1, per=0.2))
    await limiter.acquire("api")  # the window is full for 0.2 s
    results: dict[str, object] = {}

    async def wait(name: str, max_wait: float | None) -> None:
        try:
            results[name] = await limiter.acquire("api", max_wait=max_wait)
        except RateLimitError as exc:
            results[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "head", None)  # sleeps 0.2 s on the store's answer
        await anyio.sleep(0.02)
        tg.start_soon(wait, "short", 0.1)  # its time ends before the head wakes
        tg.start_soon(wait, "long", 5.0)
        await anyio.sleep(0.05)
        assert isinstance(results.get("short"), RateLimitError)  # at once, not at 0.1 s
        refused = results["short"]
        assert isinstance(refused, RateLimitError)
        assert refused.retry_after is not None
        assert 0 < refused.retry_after <= 0.2
        assert "long" not in results
    assert isinstance(results["head"], float)
    assert isinstance(results["long"], float)
    assert limiter._lines["api"].live == 0


async def test_a_request_in_line_is_refused_when_the_head_begins_a_sleep_past_its_time() -> None:
    """
    In the line before the head's long sleep began (PostHog's 429 came meanwhile): the
    request is refused when the head begins it, with the head's wait, not at its own
    `max_wait`.
    """
    limiter = _limiter(Rate(1, per=0.2))
    await limiter.acquire("api")  # the window is full for 0.2 s
    results: dict[str, object] = {}
    ended: dict[str, float] = {}
    started = time.monotonic()

    async def wait(name: str, max_wait: float | None) -> None:
        try:
            results[name] = await limiter.acquire("api", max_wait=max_wait)
        except RateLimitError as exc:
            results[name] = exc
        ended[name] = time.monotonic() - started

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "head", None)  # asleep until the window has room (0.2 s)
        await anyio.sleep(0.02)
        tg.start_soon(wait, "mid", 1.0)  # the head wakes within its time: it waits
        await anyio.sleep(0.05)
        assert "mid" not in results
        await limiter.penalize("api", 3)  # PostHog: "Expected available in 3 seconds."
        await anyio.sleep(0.5)  # the head woke at 0.2 s, and sleeps until about 3.2 s
        refused = results.get("mid")
        assert isinstance(refused, RateLimitError), refused
        assert refused.retry_after is not None
        assert 2.5 < refused.retry_after <= 3
        assert ended["mid"] < 0.5  # when the head began its sleep, not at 1 s
        tg.cancel_scope.cancel()
    assert limiter._lines["api"].live == 0


class _SlowStore(InProcessRateLimitStore):
    """An in-process store whose question takes a round trip, as Redis's does."""

    def __init__(self) -> None:
        super().__init__()
        self.asking = asyncio.Event()
        self.answer = asyncio.Event()

    async def try_acquire(
        self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
    ) -> float:
        self.asking.set()
        await self.answer.wait()
        return await super().try_acquire(scope, bucket, windows, margin)


async def test_a_close_while_the_store_answers_begins_no_wait() -> None:
    """
    The client closes while the store answers "wait 30 s" (a Redis round trip): the
    request raises `ClientStateError` then, not after sleeping out the 30 s (the close
    ends only the waits under way).
    """
    store = _SlowStore()
    limiter = RateLimiter(RateLimits(api=(Rate(1000, per=60),)), store, "scope")
    await limiter.penalize("api", 30)
    waiting = asyncio.ensure_future(limiter.acquire("api"))
    await asyncio.wait_for(store.asking.wait(), 2)
    limiter.close()
    store.answer.set()
    done, _ = await asyncio.wait({waiting}, timeout=1)
    if not done:
        waiting.cancel()
        await asyncio.wait({waiting})
    assert done, "the request still waits, 1 s after the close"
    assert isinstance(waiting.exception(), ClientStateError)


@pytest.mark.parametrize(
    "other",
    [
        "https://app.posthog.com",  # the US cloud's older name
        "https://US.PostHog.com",
        "https://us.posthog.com:443",
        "https://us.posthog.com/",
    ],
)
def test_one_posthog_instance_is_one_scope_whatever_its_name(other: str) -> None:
    """PostHog counts a key's requests per instance: workers naming it apart share it."""
    assert rate_limit_scope(other, "k") == rate_limit_scope("https://us.posthog.com", "k")


@pytest.mark.parametrize(
    "other",
    ["https://eu.posthog.com", "http://us.posthog.com", "https://us.posthog.com:8443"],
)
def test_other_instances_are_other_scopes(other: str) -> None:
    assert rate_limit_scope(other, "k") != rate_limit_scope("https://us.posthog.com", "k")


async def test_with_no_wait_allowed_waiting_behind_a_head_that_waits_for_a_slot_is_no_refusal() -> (
    None
):
    """
    `RetryPolicy(max_retry_after=0)` (fail fast rather than sleep on a 429) makes every
    call's `max_wait` 0. The windows have room; every slot is busy (PostHog slow). The
    request behind the head waits only for a slot, which counts against no `max_wait`:
    it must get its slot as the same request without rate limits would, not a 429 that
    neither PostHog nor the windows gave. (Any `max_wait` > 0 waits, as the test above
    shows; 0 is refused at once.)
    """
    slots = Slots(1)
    limiter = RateLimiter(
        RateLimits(api=Rate(100, per=60), margin=0), InProcessRateLimitStore(), "s"
    )
    assert slots.take_nowait()  # a slow request in flight
    head = asyncio.create_task(limiter.acquire("api", max_wait=0.0, slots=slots))
    await asyncio.sleep(0.01)
    behind = asyncio.create_task(limiter.acquire("api", max_wait=0.0, slots=slots))
    await asyncio.sleep(0.05)  # the slow answer comes
    slots.release()
    assert 0.0 == await asyncio.wait_for(head, 1)
    slots.release()  # the head's request is answered too
    await asyncio.wait_for(behind, 1)  # RateLimitError here, with room in the window
    slots.release()
    assert 1 == slots.free
