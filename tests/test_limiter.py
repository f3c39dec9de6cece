"""The async rate limiter over the in-process store: fair, exact, cancellable, penalized."""

from __future__ import annotations

import time

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aposthog._limiter import InProcessRateLimitStore, RateLimiter, rate_limit_scope
from aposthog._ratelimit import Rate, RateLimits

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
