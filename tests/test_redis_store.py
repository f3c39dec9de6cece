"""RedisRateLimitStore against a real redis-server the tests start on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import secrets
import sys
import threading
import time
import traceback
import warnings
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import pytest

import aposthog
from aposthog._errors import ClientStateError, RateLimitError
from aposthog._limiter import RateLimiter, RateLimitStoreError, rate_limit_scope
from aposthog._pipeline import Unwanted
from aposthog._ratelimit import Rate, RateLimits
from aposthog._redis_store import RedisRateLimitStore
from aposthog._slots import Slots

from .redis_server import _answers_ping, _free_port, _unavailable, require_redis_py
from .test_limiter import Asked

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisRateLimitStore]:
    """A store on the tests' Redis, under a prefix of its own."""
    made = RedisRateLimitStore(redis_url, prefix=f"test:{secrets.token_hex(4)}")
    try:
        yield made
    finally:
        await made.aclose()


async def _keys(redis_url: str, pattern: str) -> dict[str, int]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {key: await client.pttl(key) async for key in client.scan_iter(match=pattern)}
    finally:
        await client.aclose()


async def test_counts_up_to_the_limit_then_names_the_wait(store: RedisRateLimitStore) -> None:
    windows = (Rate(3, per=0.5),)
    assert [0.0, 0.0, 0.0] == [await store.try_acquire("s", "api", windows, 0.1) for _ in "abc"]
    wait = await store.try_acquire("s", "api", windows, 0.1)
    assert 0 < wait <= 0.6
    await anyio.sleep(wait)
    assert 0.0 == await store.try_acquire("s", "api", windows, 0.1)


async def test_every_window_must_have_room(store: RedisRateLimitStore) -> None:
    windows = (Rate(5, per=0.2), Rate(2, per=5))
    assert 0.0 == await store.try_acquire("s", "api", windows, 0.0)
    assert 0.0 == await store.try_acquire("s", "api", windows, 0.0)
    wait = await store.try_acquire("s", "api", windows, 0.0)
    assert 4.5 < wait <= 5.0  # the long window decides


async def test_keys_are_a_hash_of_the_key_and_expire(
    store: RedisRateLimitStore, redis_url: str
) -> None:
    api_key = "phx_" + secrets.token_hex(16)
    limiter = RateLimiter(
        RateLimits(api=(Rate(10, per=2), Rate(100, per=30))),
        store,
        rate_limit_scope("https://us.posthog.com", api_key),
    )
    await limiter.acquire("api")
    await limiter.penalize("api", 1.0)
    keys = await _keys(redis_url, f"{store._prefix}:*")
    # The pause, per window its entries and widest span, the bucket's registry of windows
    # and its history of requests.
    assert 7 == len(keys)
    for key, ttl in keys.items():
        assert api_key not in key
        assert api_key[4:] not in key
        assert 0 < ttl <= 32_000, key  # the window, its margin and a second
    scope = rate_limit_scope("https://us.posthog.com", api_key)
    assert all(f"{{{scope}}}" in key for key in keys)  # one Redis Cluster slot per key


async def test_keys_outlive_the_windows_and_the_pause_they_hold(
    store: RedisRateLimitStore, redis_url: str
) -> None:
    await store.try_acquire("s", "api", (Rate(10, per=2), Rate(100, per=30)), 0.5)
    await store.penalize("s", "api", 3.0)
    keys = await _keys(redis_url, f"{store._prefix}:*")
    ttls = {key.rsplit(":", 1)[1]: ttl for key, ttl in keys.items()}
    assert ttls.keys() == {
        "2000ms", "2000ms-widest", "30000ms", "30000ms-widest", "pause", "windows", "history"
    }  # fmt: skip
    # Each lives at least as long as what it counts (window + margin, the pause).
    assert ttls["2000ms"] > 2_400
    assert ttls["30000ms"] > 30_400
    assert ttls["2000ms-widest"] > 2_400
    assert ttls["30000ms-widest"] > 30_400
    assert ttls["pause"] > 2_900
    assert ttls["windows"] > 30_400  # as long as the widest window it names
    assert ttls["history"] > 30_400


async def test_the_wait_named_is_until_a_place_is_free_under_a_lowered_limit(
    store: RedisRateLimitStore,
) -> None:
    """Three requests counted under a limit of 3, then asked under a limit of 1 (another
    process, or a new release, with a tighter budget): the place frees when the newest
    leaves the window, not the oldest."""
    assert 0.0 == await store.try_acquire("s", "api", (Rate(3, per=1),), 0.0)
    await anyio.sleep(0.4)
    assert [0.0, 0.0] == [await store.try_acquire("s", "api", (Rate(3, per=1),), 0.0) for _ in "ab"]
    wait = await store.try_acquire("s", "api", (Rate(1, per=1),), 0.0)
    assert 0.8 < wait <= 1.0


@pytest.mark.parametrize("seconds", [1e13, 1e20])
async def test_a_pause_too_long_to_write_exactly_still_holds_the_bucket(
    store: RedisRateLimitStore, seconds: float
) -> None:
    """A 429 naming an absurd wait (a hostile or broken proxy's `Retry-After`) holds the
    bucket back, as the in-process store does, instead of being dropped or failing
    as if Redis were unreachable (`RateLimitStoreError`: "the request was not sent",
    about a request that was sent and refused)."""
    await store.penalize("s", "api", seconds)
    assert await store.try_acquire("s", "api", (Rate(5, per=1),), 0.0) > 9 * 365 * 86400


async def test_two_stores_share_one_budget(store: RedisRateLimitStore, redis_url: str) -> None:
    other = RedisRateLimitStore(redis_url, prefix=store._prefix)
    try:
        windows = (Rate(4, per=30),)
        for s in (store, other, store, other):
            assert 0.0 == await s.try_acquire("k", "api", windows, 0.0)
        assert await other.try_acquire("k", "api", windows, 0.0) > 29
        assert await store.try_acquire("k", "api", windows, 0.0) > 29
        assert 0.0 == await other.try_acquire("another key", "api", windows, 0.0)
    finally:
        await other.aclose()


async def test_a_penalty_is_seen_by_every_process(
    store: RedisRateLimitStore, redis_url: str
) -> None:
    other = RedisRateLimitStore(redis_url, prefix=store._prefix)
    try:
        await store.penalize("k", "ai", 2.0)
        await store.penalize("k", "ai", 0.5)  # never shortens the pause
        wait = await other.try_acquire("k", "ai", (), 0.0)
        assert 1.5 < wait <= 2.0
        assert 0.0 == await other.try_acquire("k", "api", (), 0.0)
    finally:
        await other.aclose()


async def test_tasks_on_several_stores_never_exceed_a_window(
    store: RedisRateLimitStore, redis_url: str
) -> None:
    """
    Twelve tasks on three stores share one window: no span of it ever held more grants
    than its limit, by Redis's clock (the one the windows are counted with).

    Each grant is stamped by Redis as the script counts it: the bucket's history (kept
    for the window and its margin, 0.42 s here) is read by a thread every 20 ms. Times
    taken in the tasks after `acquire()` returns would add each answer's delay on a
    busy machine, and two grants 0.42 s apart at Redis could look 0.39 s apart there.
    """
    import redis

    rate = Rate(10, per=0.4)
    stores = [store, *(RedisRateLimitStore(redis_url, prefix=store._prefix) for _ in range(2))]
    history = f"{store._prefix}:{{fleet}}:api:history"
    granted: dict[bytes, float] = {}  # ticket -> Redis's time when it was counted (µs)
    done = threading.Event()

    def watch() -> None:
        admin = redis.Redis.from_url(redis_url)
        try:
            while True:
                finished = done.is_set()  # one more read after the last grant
                seen: list[tuple[bytes, float]] = cast(Any, admin).zrange(
                    history, 0, -1, withscores=True
                )
                granted.update(seen)
                if finished:
                    return
                time.sleep(0.02)
        finally:
            admin.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    calls = 0

    async def worker(limiter: RateLimiter) -> None:
        nonlocal calls
        for _ in range(8):
            await limiter.acquire("api")
            calls += 1

    try:
        async with anyio.create_task_group() as tg:
            for s in stores:
                limiter = RateLimiter(RateLimits(api=rate, margin=0.02), s, "fleet")
                for _ in range(4):
                    tg.start_soon(worker, limiter)
    finally:
        done.set()
        await anyio.to_thread.run_sync(watcher.join)
        for s in stores[1:]:
            await s.aclose()
    assert 96 == calls
    assert 96 == len(granted)  # every grant seen, each once
    moments = [micros / 1_000_000 for micros in granted.values()]
    for t in moments:
        assert sum(1 for s in moments if t - rate.per < s <= t) <= rate.limit
    assert max(moments) - min(moments) >= 9 * rate.per  # 96 grants, 10 per window


class _SlowProxy:
    """
    A proxy on 127.0.0.1 between a store and the Redis at `port` (serve `relay`). While
    `slow` (True: every answer; a number: that many more), each answer from Redis is held
    back by 0.3 s; with `late_connections`, a connection opened while slow is held back
    as a whole instead (its answers then pass at once).
    """

    def __init__(self, port: int, *, late_connections: bool = False) -> None:
        self.port = port
        self.late_connections = late_connections
        self.slow: bool | int = False

    async def _pump(
        self, source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream, answers: bool
    ) -> None:
        async for chunk in source:
            if answers and self.slow:
                if self.slow is not True:
                    self.slow -= 1
                await anyio.sleep(0.3)
            await sink.send(chunk)

    async def relay(self, client: anyio.abc.SocketStream) -> None:
        late = self.late_connections and bool(self.slow)
        if late:
            await anyio.sleep(0.3)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            async with (
                client,
                await anyio.connect_tcp("127.0.0.1", self.port) as server,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(self._pump, client, server, False)
                await self._pump(server, client, not late)
                tg.cancel_scope.cancel()


async def test_a_request_cancelled_mid_script_is_not_counted(
    store: RedisRateLimitStore, redis_url: str
) -> None:
    import redis.asyncio

    admin = redis.asyncio.Redis.from_url(redis_url)
    windows = (Rate(5, per=30),)
    try:
        await cast(Any, admin).execute_command("CLIENT", "PAUSE", "300", "WRITE")  # script waits
        with anyio.move_on_after(0.1) as scope:
            await store.try_acquire("s", "api", windows, 0.0)
        assert scope.cancelled_caught
        await anyio.sleep(0.4)
        await store.aclose()  # waits for the background clean-up
        counts = [await admin.zcard(key) for key in await admin.keys(f"{store._prefix}:*")]
        assert 0 == sum(counts)
        assert [0.0] * 5 == [await store.try_acquire("s", "api", windows, 0.0) for _ in range(5)]
    finally:
        await admin.aclose()


async def test_a_place_in_the_line_with_no_time_to_be_heard_of_by_is_dropped(
    store: RedisRateLimitStore, redis_url: str
) -> None:
    """
    A request the store forgot in two steps (the line, then its time to be heard of by)
    could be placed again in the line between them, by a question of the head that
    named it and reached Redis just then: a place with no time, which no sweep drops.
    Every request of the fleet counted it ahead of itself for as long as the fleet
    stayed busy: with as many such places as the limit, none went again. The store now
    forgets a request in one step, and a question that meets such a place (left by an
    earlier version) drops it: the limit's requests go, one window after another.
    """
    import redis.asyncio

    admin = redis.asyncio.Redis.from_url(redis_url)
    line = store._key("s", "api", "line")
    try:
        seconds, micros = await admin.time()
        await admin.zadd(line, {"ghost:1": seconds * 1_000_000 + micros - 1_000})
        limiter = RateLimiter(RateLimits(api=Rate(1, per=0.3), margin=0), store, "s")
        slots = Slots(2)
        with anyio.fail_after(5):
            for _ in range(3):
                await limiter.acquire("api", max_wait=2.0, slots=slots)
                slots.release()
        assert 0 == await admin.zcard(line)
    finally:
        await admin.aclose()


async def test_a_request_forgotten_leaves_the_line_and_its_time_in_one_step(
    store: RedisRateLimitStore, redis_url: str
) -> None:
    """`_forget` removes the ticket from every set it names with one command to Redis."""
    import redis.asyncio

    admin = redis.asyncio.Redis.from_url(redis_url)
    line, asks = store._key("s", "api", "line"), store._key("s", "api", "line-asks")
    try:
        await admin.zadd(line, {"t:1": 1, "t:2": 2})
        await admin.zadd(asks, {"t:1": 9e15, "t:2": 9e15})
        await store.try_acquire("s", "api", (Rate(5, per=30),), 0.0)  # makes the pool
        pool = store._pools[asyncio.get_running_loop()]
        sent: list[str] = []
        zrem = pool.redis.zrem

        def counted_zrem(name: str, *values: str) -> Any:
            sent.append(name)
            return zrem(name, *values)

        pool.redis.zrem = counted_zrem  # type: ignore[method-assign]
        await store._forget(pool, [asks, line], "t:1")
        assert [] == sent  # no removal of its own per key: the script's one step
        assert [b"t:2"] == await admin.zrange(line, 0, -1)
        assert [b"t:2"] == await admin.zrange(asks, 0, -1)
    finally:
        await admin.aclose()


async def test_a_request_no_longer_wanted_is_not_counted_nor_kept_in_the_fleets_line(
    store: RedisRateLimitStore,
) -> None:
    # A message whose stream a cancel stops while it waits for a slot: asked before the
    # script counts it, it is not counted, and it leaves the fleet's line at once.
    limiter = RateLimiter(RateLimits(api=Rate(1, per=30), margin=0), store, "s")
    slots = Slots(1)
    with pytest.raises(Unwanted):
        await limiter.acquire("api", slots=slots, wanted=Asked(False))
    assert 1 == slots.free
    started = time.monotonic()
    assert 0.0 == await limiter.acquire("api", slots=slots)  # the window's one request
    assert time.monotonic() - started < 1  # nobody ahead of it in the line
    slots.release()
    with pytest.raises(RateLimitError):  # and that one alone is counted
        await limiter.acquire("api", max_wait=0)


@pytest.mark.parametrize(
    "waits_for", ["a cancel's answer", "a slot", "a slot, as another client of the loop closes"]
)
async def test_a_request_waiting_long_at_the_head_keeps_its_place_in_the_fleets_line(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, waits_for: str
) -> None:
    """
    With a Redis store the line is the fleet's. A request waits behind one asleep on the
    window (1 per 0.4 s), and a request of another process comes 50 ms after it. When
    its turn comes it waits without asking Redis, longer than `_LATE` (2 s in
    production, 0.5 s here: renewed every 0.125 s, so a renewal may come 0.375 s late
    on a busy machine): for the answer to a `conversations.cancel(id)` of its stream
    (the CHANGELOG: "the message keeps its place at the head of the line until the
    answer (refused, it goes first, as if no cancel had been asked)"), or for a slot
    (every `max_concurrency` slot held by a long call). Its place in the fleet's line
    is kept meanwhile, and it goes before the other process's request. (Its place was
    dropped, as a dead process's is, and the other process's request took the window:
    the message waited a whole window more, a minute with PostHog AI's.)

    The third case makes the client outside any event loop (at import, say), and a
    client of another key shares its store, made in the loop and closed while the
    request waits: the store's connections on that loop are still the first client's
    (its renewals stopped, quietly).
    """
    from aposthog import _redis_store

    monkeypatch.setattr(_redis_store, "_LATE", 0.5)
    prefix = f"test:{secrets.token_hex(4)}"
    limits = RateLimits(api=Rate(1, per=0.4), margin=0)
    store = RedisRateLimitStore(redis_url, prefix=prefix)
    tenant: RateLimiter | None = None
    if waits_for == "a slot, as another client of the loop closes":
        mine = await anyio.to_thread.run_sync(RateLimiter, limits, store, "k")  # no loop
        tenant = RateLimiter(limits, store, "another key's")
    else:
        mine = RateLimiter(limits, store, "k")
    other = RateLimiter(limits, RedisRateLimitStore(redis_url, prefix=prefix), "k")
    slots = Slots(1)
    cancel = Asked(None if waits_for == "a cancel's answer" else True)
    went: list[str] = []

    async def request(name: str, limiter: RateLimiter, wanted: Asked | None = None) -> None:
        if limiter is other:  # (its process's slots are its own)
            await limiter.acquire("api")
            went.append(name)
            return
        await limiter.acquire("api", slots=slots, wanted=wanted)
        went.append(name)
        if name != "first" or waits_for == "a cancel's answer":
            slots.release()  # else the first keeps its slot: a long call

    try:
        assert 0.0 == await other.acquire("api")  # the window's place, until 0.4 s
        with anyio.fail_after(8):
            async with anyio.create_task_group() as tg:
                tg.start_soon(request, "first", mine)  # asleep on the window
                while "api" not in mine._lines or mine._lines["api"].wakes is None:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                tg.start_soon(request, "second", mine, cancel)  # behind it
                while mine._lines["api"].live < 1:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                # The fleet's line orders requests by when they came, as closely as
                # Redis's latency allows (each process's clock counts from when it
                # asks, Redis's from when the script runs): a request that came 1 ms
                # later could be taken for an earlier one.
                await anyio.sleep(0.05)
                tg.start_soon(request, "later", other)  # another process's, after it
                # The first goes; the second's turn comes, and it waits.
                while mine._lines["api"].slot_since is None:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                if tenant is not None:
                    await tenant.aclose()  # the other key's client is done
                # Long past the other process's turn (at 0.8 s), and past the time its
                # place would be dropped (0.5 s after its wait began), so that only a
                # request that kept its place goes first.
                await anyio.sleep(2.0)
                assert ["first"] == went
                if waits_for == "a cancel's answer":
                    cancel.decide(True)  # refused: the message is still wanted
                else:
                    slots.release()
    finally:
        await mine.aclose()
        await other.aclose()
    assert ["first", "second", "later"] == went


async def test_a_request_cancelled_as_its_turn_comes_does_not_hold_back_the_next(
    redis_url: str,
) -> None:
    """
    Three requests of a process wait on the window (1 per 0.5 s); the second is handed
    the turn and cancelled in the same step (its caller gave up just then). The third
    goes with the next window, at 1 s. (The second stayed in the fleet's line until it
    was dropped, `_LATE` after its wait, and the third, counting it as ahead of it, went
    at 2.5 s: with PostHog AI's one a minute, a minute late.)
    """
    limiter = RateLimiter(
        RateLimits(api=Rate(1, per=0.5), margin=0),
        RedisRateLimitStore(redis_url, prefix=f"test:{secrets.token_hex(4)}"),
        "k",
    )
    try:
        assert 0.0 == await limiter.acquire("api")  # the window's place, for 0.5 s
        started = time.monotonic()
        waiter = asyncio.create_task(limiter.acquire("api"))
        behind = asyncio.create_task(limiter.acquire("api"))
        assert await limiter.acquire("api") > 0  # the head: asleep on the window
        waiter.cancel()  # in the step the head handed it the turn
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.wait_for(behind, 3)
        went = time.monotonic() - started
    finally:
        await limiter.aclose()
    assert 0.9 < went < 1.3, went


async def test_a_waiting_requests_place_the_fleets_line_dropped_is_not_taken_again_by_keeping_it(
    store: RedisRateLimitStore, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Keeping places renews those the line still holds, and only those: a request that
    left it (its `_leave` ran before a renewal in flight) is not placed back, where it
    would hold back the fleet's requests until it is dropped again.
    """
    import redis.asyncio

    from aposthog import _redis_store

    windows = (Rate(1, per=30),)
    admin = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    line, asks = store._key("s", "api", "line"), store._key("s", "api", "line-asks")
    try:
        assert 0.0 == await store._ask("s", "api", windows, 0.0, "a", 0.0, (("b", 0.0),))
        assert 0 < await store._ask("s", "api", windows, 0.0, "c", 0.0)  # waits behind "b"
        due = await admin.zscore(asks, "c")  # heard of again within its wait + `_LATE`
        store._leave("s", "api", "b")
        with anyio.fail_after(5):
            while await admin.zscore(line, "b") is not None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        monkeypatch.setattr(_redis_store, "_LATE", 100.0)  # past the 30 s wait it was told
        store._keep("s", "api", ("b", "c"))
        assert due is not None
        with anyio.fail_after(5):  # renewed, in the background
            while (await admin.zscore(asks, "c") or 0) < due + 60_000_000:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert ["c"] == await admin.zrange(line, 0, -1)
        assert ["c"] == await admin.zrange(asks, 0, -1)
        assert 100_000 < await admin.pttl(asks)
    finally:
        await admin.aclose()


async def test_a_closed_clients_request_waiting_for_a_slot_keeps_no_place_in_the_fleets_line(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A request asleep on the window wakes to find every slot held by a long call, and
    its client closes meanwhile: it is never sent (`ClientStateError` once a slot
    frees), so the fleet's line forgets it as it would a dead process's, at most
    `_LATE` (2 s in production, 1 s here) after it was last heard of. The request of
    another client sharing the store goes then, not once the closed client's long call
    ends.
    """
    from aposthog import _redis_store

    monkeypatch.setattr(_redis_store, "_LATE", 1.0)
    limits = RateLimits(api=Rate(1, per=0.3), margin=0)
    store = RedisRateLimitStore(redis_url, prefix=f"test:{secrets.token_hex(4)}")
    closing = RateLimiter(limits, store, "k")
    staying = RateLimiter(limits, store, "k")  # another client sharing the store
    slots = Slots(1)
    assert 0.0 == await staying.acquire("api")  # the window's place, for 0.3 s
    head = asyncio.create_task(closing.acquire("api", slots=slots))
    try:
        with anyio.fail_after(5):
            while "api" not in closing._lines or closing._lines["api"].wakes is None:  # noqa: ASYNC110
                await anyio.sleep(0.001)
            assert slots.take_nowait()  # a long call: no slot when the head wakes
            while closing._lines["api"].slot_since is None:  # noqa: ASYNC110
                await anyio.sleep(0.001)
        await closing.aclose()
        # A kept place would hold it back for as long as the slot stays busy: here, ever.
        with anyio.fail_after(4):
            assert 0 <= await staying.acquire("api")
        assert not head.done()  # (still waiting for the slot)
    finally:
        slots.release()
        with pytest.raises(ClientStateError):
            await asyncio.wait_for(head, 1)
        await staying.aclose()


class _CountingProxy(_SlowProxy):
    """
    A `_SlowProxy` that counts the connections its clients hold open to it, and the
    requests that passed while it was `slow`.
    """

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.open = 0
        self.asked_slow = 0

    async def _pump(
        self, source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream, answers: bool
    ) -> None:
        if answers:
            return await super()._pump(source, sink, answers)
        self.open += 1  # the client's requests: they end when it closes the connection
        try:
            async for chunk in source:
                await sink.send(chunk)
                self.asked_slow += bool(self.slow)
        finally:
            self.open -= 1


async def test_closing_a_client_whose_request_waits_for_a_slot_leaves_no_connection_open(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A request waits for a slot (every slot held by a long call), its place in the
    fleet's line kept, when its client closes; Redis answers slowly (0.3 s, through a
    proxy), so `aclose()` waits for the renewals under way. The store, made from a URL
    and used by that client alone, then closes its connections: all of them. One left
    open is a socket (and a Redis client) held until the garbage collector finds it
    (`ResourceWarning: unclosed Connection`).
    """
    from aposthog import _redis_store

    monkeypatch.setattr(_redis_store, "_LATE", 0.2)  # renewed every 0.05 s
    proxy = _CountingProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    async with _a_head_waiting_for_a_slot(proxy) as (limiter, slots, head, _):
        proxy.slow = True
        with anyio.fail_after(5):
            while proxy.asked_slow < 2:  # noqa: ASYNC110 (renewals under way)
                await anyio.sleep(0.01)
        await limiter.aclose()  # the store's only client: its connections close
        slots.release()  # the long call ends; the closed client's request never goes
        with pytest.raises(ClientStateError):
            await asyncio.wait_for(head, 1)
        proxy.slow = False
        await _until_the_stores_tasks_end()
        with anyio.fail_after(3):
            while proxy.open:  # noqa: ASYNC110 (each closes as the store's pool closes)
                await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def _a_head_waiting_for_a_slot(
    proxy: _SlowProxy, *, made_outside_the_loop: bool = False
) -> AsyncIterator[tuple[RateLimiter, Slots, asyncio.Task[float], RedisRateLimitStore]]:
    """
    A client whose store (made from a URL) reaches Redis through `proxy`, and its `head`
    request, which waits for a slot (every slot held by a long call) with its places in
    the fleet's line kept; the store's first connections are closed at the end.
    `made_outside_the_loop`: the client is made in a thread, as at import.
    """
    pool: Any = None
    try:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, proxy.relay)
            store = RedisRateLimitStore(
                f"redis://127.0.0.1:{port}/0", prefix=f"test:{secrets.token_hex(4)}"
            )
            limits = RateLimits(api=Rate(1, per=0.1), margin=0)
            if made_outside_the_loop:
                limiter = await anyio.to_thread.run_sync(RateLimiter, limits, store, "k")
            else:
                limiter = RateLimiter(limits, store, "k")
            slots = Slots(1)
            assert 0.0 == await limiter.acquire("api")  # the window's place, for 0.1 s
            pool = store._pools[asyncio.get_running_loop()].redis.connection_pool
            head = asyncio.create_task(limiter.acquire("api", slots=slots))
            with anyio.fail_after(5):
                while "api" not in limiter._lines or limiter._lines["api"].wakes is None:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                assert slots.take_nowait()  # a long call: no slot when the head wakes
                while limiter._lines["api"].slot_since is None:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
            yield limiter, slots, head, store
            tg.cancel_scope.cancel()  # (the proxy goes: what still waits on it fails)
    finally:
        if pool is not None:  # (closed here: one left open warns when collected)
            await pool.disconnect()


async def _until_the_stores_tasks_end() -> None:
    with anyio.fail_after(10):
        while [t for t in asyncio.all_tasks() if "RedisRateLimitStore" in repr(t)]:  # noqa: ASYNC110
            await anyio.sleep(0.01)


class _GatedProxy(_CountingProxy):
    """A `_CountingProxy` whose answers, while `slow`, wait until `opened` is set."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.opened = anyio.Event()

    async def _pump(
        self, source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream, answers: bool
    ) -> None:
        # (a connection its client closed, or reset, meanwhile ends the relay: no error)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            if not answers:
                return await super()._pump(source, sink, answers)
            async for chunk in source:
                if self.slow:
                    await self.opened.wait()
                await sink.send(chunk)


async def test_a_renewal_under_way_as_another_client_of_the_loop_closes_leaves_no_connection_open(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A client made outside any event loop waits for a slot at the head of its line, its
    places in the fleet's line renewed (Redis answers slowly, through a proxy: renewals
    are under way), when a client of another key sharing its store, made in the loop,
    closes: the loop's connections close with that client (see
    `test_a_request_waiting_long_at_the_head_keeps_its_place_in_the_fleets_line`), and
    the renewals go on with connections made again. Once the first client closes too,
    no connection of the store is left open (one left is a socket held until the garbage
    collector finds it: `ResourceWarning: unclosed Connection`).
    """
    from aposthog import _redis_store

    monkeypatch.setattr(_redis_store, "_LATE", 0.2)  # renewed every 0.05 s
    proxy = _GatedProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    again: Any = None
    try:
        async with _a_head_waiting_for_a_slot(proxy, made_outside_the_loop=True) as (
            mine,
            slots,
            head,
            store,
        ):
            tenant = RateLimiter(mine.limits, store, "another key's")
            loop = asyncio.get_running_loop()
            first = store._pools[loop].redis.connection_pool
            proxy.slow = True  # Redis's answers wait
            with anyio.fail_after(5):
                while not proxy.asked_slow:  # noqa: ASYNC110 (a renewal under way)
                    await anyio.sleep(0.001)
            await tenant.aclose()  # the loop's connections close with it
            with anyio.fail_after(5):  # renewals go on, on connections made again
                while store._pools.get(loop) is None:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            again = store._pools[loop].redis.connection_pool
            proxy.opened.set()
            with anyio.fail_after(5):  # the renewal that was under way got its answer
                while first._in_use_connections:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            proxy.slow = False
            await mine.aclose()  # the store's last client: its connections close
            slots.release()
            with pytest.raises(ClientStateError):
                await asyncio.wait_for(head, 1)
            await _until_the_stores_tasks_end()
            with anyio.move_on_after(3):
                while proxy.open:  # noqa: ASYNC110 (each closes as its pool closes)
                    await anyio.sleep(0.01)
            left = proxy.open
    finally:
        if again is not None:  # (closed here: one left open warns when collected)
            await again.disconnect()
    assert not left, f"{left} connection(s) of the store left open once its clients closed"


class _StallingProxy(_SlowProxy):
    """
    A `_SlowProxy` whose answers, once `slow`, never come (Redis hung); `asked` is set
    when a request passes meanwhile.
    """

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.asked = anyio.Event()

    async def _pump(
        self, source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream, answers: bool
    ) -> None:
        async for chunk in source:
            if answers and self.slow:
                await anyio.sleep_forever()
            await sink.send(chunk)
            if self.slow and not answers:
                self.asked.set()


async def test_a_renewal_under_way_does_not_hold_up_the_close_while_redis_hangs(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A request waits for a slot (every slot held by a long call), its place in the
    fleet's line kept, when Redis stops answering, and its client closes: nothing the
    client still has to do needs Redis (the request leaves the line when it fails, and a
    place not heard of is dropped), so the close does not wait for a renewal of those
    places to get its answer, or to give up on it.
    """
    from aposthog import _redis_store

    monkeypatch.setattr(_redis_store, "_LATE", 0.4)  # renewed every 0.1 s
    proxy = _StallingProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    async with _a_head_waiting_for_a_slot(proxy) as (limiter, slots, head, _):
        proxy.slow = True  # Redis hangs
        with anyio.fail_after(5):
            await proxy.asked.wait()  # a renewal under way
        began = time.monotonic()
        await limiter.aclose()
        closed_in = time.monotonic() - began
        slots.release()
        with pytest.raises(ClientStateError):
            await asyncio.wait_for(head, 1)
    await _until_the_stores_tasks_end()  # (whatever the store still ran, ended)
    assert closed_in < 1


def test_a_request_counted_before_its_cancellation_is_taken_back(redis_url: str) -> None:
    """
    Redis counted the request, but its answer came after the call was cancelled: the
    store takes the count back, and its `aclose()` waits for that before the program
    ends (here `anyio.run` returning, which cancels whatever still runs).

    Between the store and Redis a proxy, once `slow`, holds back by 0.3 s the answers on
    the connections already open, and every new connection.
    """
    require_redis_py()
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    prefix = f"test:{secrets.token_hex(4)}"
    windows = (Rate(5, per=30),)
    proxy = _SlowProxy(port, late_connections=True)

    async def program() -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        proxy_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, proxy.relay)
            store = RedisRateLimitStore(f"redis://127.0.0.1:{proxy_port}/0", prefix=prefix)
            assert 0.0 == await store.try_acquire("s", "other", windows, 0.0)  # script loaded
            await store.penalize("s", "api", 0.01)  # a pause that ends; its key lives on
            await anyio.sleep(0.05)
            proxy.slow = True
            with anyio.move_on_after(0.1) as scope:
                await store.try_acquire("s", "api", windows, 0.0)
            assert scope.cancelled_caught
            await store.aclose()
            tg.cancel_scope.cancel()

    async def counted() -> list[int]:
        import redis.asyncio

        admin = redis.asyncio.Redis.from_url(redis_url)
        try:
            return [int(await admin.zcard(f"{prefix}:{{s}}:{b}:30000ms")) for b in ("api", "other")]
        finally:
            await admin.aclose()

    anyio.run(program)
    assert [0, 1] == anyio.run(counted)


async def test_an_unreachable_redis_is_a_typed_error() -> None:
    require_redis_py()
    port = _free_port()  # nothing listens there
    store = RedisRateLimitStore(f"redis://:hunter2@127.0.0.1:{port}/0", timeout=1)
    limiter = RateLimiter(RateLimits(api=Rate(1, per=1)), store, "scope")
    with pytest.raises(aposthog.APIConnectionError) as caught:
        await limiter.acquire("api")
    error = caught.value
    assert isinstance(error, RateLimitStoreError)
    assert not error.reached_server
    assert f"127.0.0.1:{port}" in str(error)
    assert "hunter2" not in str(error)
    assert "hunter2" not in repr(store)
    assert f"<RedisRateLimitStore redis://127.0.0.1:{port}/0 prefix='aposthog:ratelimit'>" == repr(
        store
    )
    with pytest.raises(RateLimitStoreError, match="the pause was not stored"):
        await store.penalize("scope", "api", 1.0)
    # The limiter logs it: the call it follows ends with PostHog's 429, which it was.
    await limiter.penalize("api", 1.0)
    await store.aclose()


async def test_a_borrowed_client_waits_for_a_silent_redis_no_longer_than_the_timeout() -> None:
    """
    A `redis.asyncio.Redis` passed in has no `socket_timeout` unless its owner set one,
    and redis-py then waits for an answer without end. Redis (or a proxy before it)
    that took the connection and stopped answering held every call there: past its own
    `timeout`, which does not cover the limiter, for as long as the connection stayed
    up. The store's `timeout` bounds each request to Redis, the script and the pause.
    """
    async with _silent_redis() as borrowed:
        store = RedisRateLimitStore(borrowed, timeout=0.2)
        began = time.monotonic()
        for outcome, call in (
            ("the request was not sent", store.try_acquire("s", "api", (Rate(1, per=1),), 0.0)),
            ("the pause was not stored", store.penalize("s", "api", 1.0)),
        ):
            with anyio.fail_after(5):  # (the test's own bound, far above the store's)
                with pytest.raises(RateLimitStoreError) as caught:
                    await call
            assert f"failed: no answer within 0.2 s; {outcome}" in str(caught.value)
        assert time.monotonic() - began < 2
        await store.aclose()


@contextlib.asynccontextmanager
async def _silent_redis() -> AsyncIterator[Any]:
    """A `redis.asyncio.Redis` (closed after) of a server that takes connections and never
    answers: Redis hung, or a proxy before it."""
    require_redis_py()
    import redis.asyncio

    async def silent(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    client = redis.asyncio.Redis(host="127.0.0.1", port=port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, silent)
        try:
            yield client
        finally:
            await client.aclose()
            tg.cancel_scope.cancel()


async def test_a_borrowed_client_is_never_closed(redis_url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        connection = await client.client_id()
        store = RedisRateLimitStore(client, prefix=f"test:{secrets.token_hex(4)}")
        store._attach()
        assert 0.0 == await store.try_acquire("s", "api", (Rate(1, per=1),), 0.0)
        await store._detach()
        assert connection == await client.client_id()  # the same connection, left open
        assert "127.0.0.1" in repr(store)
    finally:
        await client.aclose()


async def test_a_store_from_a_url_reconnects_after_closing(store: RedisRateLimitStore) -> None:
    store._attach()
    assert 0.0 == await store.try_acquire("s", "api", (), 0.0)
    await store._detach()  # the last user: connections closed
    assert 0.0 == await store.try_acquire("s", "api", (), 0.0)


def test_arguments_are_checked() -> None:
    require_redis_py()
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        RedisRateLimitStore(6379)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefix"):
        RedisRateLimitStore("redis://127.0.0.1:1/0", prefix="")
    with pytest.raises(ValueError, match="redis URL"):
        RedisRateLimitStore("http://127.0.0.1:1/0")


def test_without_redis_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ModuleNotFoundError, match=r"aposthog\[redis\]"):
        RedisRateLimitStore("redis://127.0.0.1:6379/0")


REDIS_PASSWORD = "phx_REDIS_PASSWORD_7f3a9c"


def _store_of_an_unknown_user(redis_url: str) -> RedisRateLimitStore:
    # Built here, so that no frame of the test's traceback holds the password itself.
    location = redis_url.removeprefix("redis://")
    return RedisRateLimitStore(f"redis://nosuchuser:{REDIS_PASSWORD}@{location}", timeout=2)


async def test_a_refused_redis_password_is_not_in_the_traceback_printed_with_locals(
    redis_url: str,
) -> None:
    """
    The store keeps the password out of its messages and repr; a crash report that prints
    the traceback with every frame's local variables (pytest's `--showlocals`, rich,
    loguru, Sentry) must not show it either, as the README promises for the API key. A
    user Redis does not know makes the connection's AUTH fail.
    """
    store = _store_of_an_unknown_user(redis_url)
    limiter = RateLimiter(RateLimits(api=Rate(1, per=1)), store, "scope")
    try:
        with pytest.raises(RateLimitStoreError) as caught:
            await limiter.acquire("api")
    finally:
        await store.aclose()
    assert REDIS_PASSWORD not in str(caught.value)
    printed = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
    lines = [line for line in printed.format() if REDIS_PASSWORD in line]
    assert not lines, lines[0][:300]


def test_a_refused_store_can_still_be_printed_with_the_tracebacks_locals() -> None:
    """
    A store whose arguments are refused raises a ValueError from `__init__`, whose frame
    holds the half-made store as `self`: printing that traceback with its locals (as the
    README says crash reports do) must show the error, not fail on the store's repr.
    """
    require_redis_py()
    with pytest.raises(ValueError, match="prefix") as caught:
        RedisRateLimitStore("redis://127.0.0.1:1/0", prefix="")
    printed = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
    assert "prefix must be a non-empty string" in "".join(printed.format())


def test_a_url_with_a_port_that_is_no_number_is_refused_as_a_redis_url() -> None:
    """
    `redis://:pw@host:abc/0`: the error names the redis URL (without the password) and
    hides redis-py's own error; showing the URL in it had failed inside the handler, so
    the error was Python's own "Port could not be cast", with the context kept.
    """
    require_redis_py()
    with pytest.raises(ValueError, match="redis URL 'redis://host/0'") as caught:
        RedisRateLimitStore(f"redis://:{REDIS_PASSWORD}@host:abc/0")
    assert caught.value.__suppress_context__
    assert REDIS_PASSWORD not in str(caught.value)


def _count_one_request(store: RedisRateLimitStore) -> None:
    """In a forked worker process: one request under 2 per 30 s, which must be let through."""

    async def one() -> float:
        try:
            return await store.try_acquire("k", "api", (Rate(2, per=30),), 0.0)
        finally:
            await store.aclose()

    if anyio.run(one) != 0.0:
        raise SystemExit(1)


def test_processes_forked_after_the_store_was_made_count_every_request(redis_url: str) -> None:
    """
    A store made at import, before the worker processes fork (gunicorn `--preload`, a
    Celery prefork pool, `multiprocessing`'s default start method on Linux), as the
    README's "in every worker process" example invites: every request of every process
    must count in the shared windows. A window of 2 lets two requests through, never
    three.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork() on this platform")
    store = RedisRateLimitStore(redis_url, prefix=f"test:{secrets.token_hex(4)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
        worker = multiprocessing.get_context("fork").Process(
            target=_count_one_request, args=(store,)
        )
        worker.start()
    worker.join(20)
    assert 0 == worker.exitcode

    async def parent() -> list[float]:
        try:
            windows = (Rate(2, per=30),)
            return [await store.try_acquire("k", "api", windows, 0.0) for _ in "ab"]
        finally:
            await store.aclose()

    first, second = anyio.run(parent)
    assert 0.0 == first
    assert second > 29  # the window holds the worker's request and the parent's first


async def test_a_client_keeps_its_margin_when_another_with_a_smaller_one_shares_the_key(
    store: RedisRateLimitStore,
) -> None:
    """
    Clients sharing a key may count with margins of their own (a worker far from PostHog
    counts each request longer). As `InProcessRateLimitStore` does, and as the CHANGELOG
    says `RedisRateLimitStore` does, the store keeps the history long enough for the
    widest margin and counts it with each client's own: a client with a 1 s margin still
    sees its two requests of 0.6 s ago in a window of 2 per 0.5 s, though a client with
    no margin asked in between.
    """
    windows = (Rate(2, per=0.5),)
    assert [0.0, 0.0] == [await store.try_acquire("k", "api", windows, 1.0) for _ in "ab"]
    await anyio.sleep(0.6)
    assert 0.0 == await store.try_acquire("k", "api", windows, 0.0)  # its window has room
    assert await store.try_acquire("k", "api", windows, 1.0) > 0.5  # 1.5 s after the first


def test_clients_on_two_event_loops_can_share_a_store(redis_url: str) -> None:
    """
    One store for the process, used by clients on two event loops at once (threads that
    each `asyncio.run()` their PostHog work, as a sync web app does per request): each
    request is counted, or fails with a typed aposthog error, within the store's timeout;
    it never raises a bare `RuntimeError` about another loop, nor hangs.
    """
    store = RedisRateLimitStore(redis_url, prefix=f"test:{secrets.token_hex(4)}", timeout=1)
    windows = (Rate(100, per=30),)
    used, done = threading.Event(), threading.Event()

    async def first_loop() -> None:
        await store.try_acquire("k", "api", windows, 0.0)  # its connection stays pooled
        used.set()
        await anyio.to_thread.run_sync(done.wait)
        await store.aclose()

    async def second_loop() -> float | aposthog.PostHogError:
        outcome: float | aposthog.PostHogError
        with anyio.fail_after(3):
            try:
                outcome = await store.try_acquire("k", "api", windows, 0.0)
            except aposthog.PostHogError as exc:
                outcome = exc
            await store.aclose()  # the connections of this loop
        return outcome

    thread = threading.Thread(target=anyio.run, args=(first_loop,))
    thread.start()
    try:
        assert used.wait(10)
        outcome = anyio.run(second_loop)
    finally:
        done.set()
        thread.join(10)
    assert isinstance(outcome, (float, aposthog.PostHogError))


def test_clients_on_event_loops_of_their_own_count_together_and_close_theirs(
    redis_url: str,
) -> None:
    """
    A store made from a URL, shared by clients in three threads that each run their own
    event loop (a sync web app's `asyncio.run()` per request): every request counts in
    the one window, and each loop's connections close with its client, so no loop ends
    holding a socket (a `ResourceWarning`, an error here).
    """
    store = RedisRateLimitStore(redis_url, prefix=f"test:{secrets.token_hex(4)}")
    waits: list[float] = []

    async def requests() -> None:
        # A client's limiter: attached to the store, released by its aclose().
        limiter = RateLimiter(RateLimits(api=Rate(12, per=30)), store, "scope")
        windows = (Rate(12, per=30),)
        try:
            waits.extend([await store.try_acquire("k", "api", windows, 0) for _ in range(4)])
        finally:
            await limiter.aclose()

    threads = [threading.Thread(target=anyio.run, args=(requests,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert [0.0] * 12 == waits

    async def one_more() -> float:
        try:
            return await store.try_acquire("k", "api", (Rate(12, per=30),), 0)
        finally:
            await store.aclose()

    assert anyio.run(one_more) > 29  # the twelve of the three loops fill the window
    gc.collect()  # a socket left open would warn now


def test_a_borrowed_client_on_a_second_running_loop_is_refused_typed(redis_url: str) -> None:
    """
    A `redis.asyncio.Redis` client is bound to the event loop that uses it; the store
    that borrows it refuses a request from another running loop at once, saying so,
    where redis-py raised a bare `RuntimeError` or hung. After its loop has ended, the
    client's connections are gone with it: a typed error too.
    """
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    store = RedisRateLimitStore(client, prefix=f"test:{secrets.token_hex(4)}")
    windows = (Rate(100, per=30),)
    used, done = threading.Event(), threading.Event()

    async def home() -> None:
        await store.try_acquire("k", "api", windows, 0.0)
        used.set()
        await anyio.to_thread.run_sync(done.wait)
        await client.aclose()

    async def elsewhere() -> float:
        with anyio.fail_after(3):
            return await store.try_acquire("k", "api", windows, 0.0)

    thread = threading.Thread(target=anyio.run, args=(home,))
    thread.start()
    try:
        assert used.wait(10)
        with pytest.raises(RateLimitStoreError, match="another running event loop"):
            anyio.run(elsewhere)
    finally:
        done.set()
        thread.join(10)


def test_an_ended_event_loop_is_not_kept_by_a_store_other_clients_still_use(
    redis_url: str,
) -> None:
    """
    A sync web app's threads `asyncio.run()` each request with a client of their own,
    while another client of the shared store stays open (a worker's long-lived loop).
    Each request's loop closes its connections with its client (CHANGELOG), and the store
    must then let the ended loop go: a store that kept every loop's pool (about 20 KB a
    request) grew for as long as the process served requests.
    """
    import asyncio
    import weakref

    store = RedisRateLimitStore(redis_url, prefix=f"test:{secrets.token_hex(4)}")
    rates = RateLimits(api=Rate(1000, per=30))
    windows = (Rate(1000, per=30),)
    used, done = threading.Event(), threading.Event()

    async def long_lived() -> None:
        limiter = RateLimiter(rates, store, "scope")
        try:
            await store.try_acquire("k", "api", windows, 0.0)
            used.set()
            await anyio.to_thread.run_sync(done.wait)
        finally:
            await limiter.aclose()

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def request() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        limiter = RateLimiter(rates, store, "scope")
        try:
            await store.try_acquire("k", "api", windows, 0.0)
        finally:
            await limiter.aclose()

    thread = threading.Thread(target=anyio.run, args=(long_lived,))
    thread.start()
    try:
        assert used.wait(10)
        for _ in range(5):
            worker = threading.Thread(target=anyio.run, args=(request,))
            worker.start()
            worker.join(10)
        gc.collect()
        kept = [ref for ref in loops if ref() is not None]
    finally:
        done.set()
        thread.join(10)
    assert not kept, f"{len(kept)} of {len(loops)} ended event loops are still referenced"


@pytest.mark.parametrize("tail", ["host:abc/0", "host:6379/0?socket_timeout=soon"])
def test_a_refused_redis_url_leaves_its_password_in_no_local_of_the_traceback(
    tail: str,
) -> None:
    """
    A URL redis-py refuses is a ValueError naming it without its password; a crash
    report printed with every frame's locals (pytest's `--showlocals`, rich, Sentry) must
    not show the password either, as for a store error at run time (CHANGELOG): the URL
    read from the environment and passed inline is in no frame of the caller's.
    """
    require_redis_py()
    with pytest.raises(ValueError, match="redis URL") as caught:
        RedisRateLimitStore(f"redis://:{REDIS_PASSWORD}@{tail}")
    printed = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
    lines = [line for line in printed.format() if REDIS_PASSWORD in line]
    assert not lines, lines[0][-300:]


def test_a_loops_connections_close_with_its_client_while_another_client_is_open(
    redis_url: str,
) -> None:
    """
    CHANGELOG: a store made from a URL keeps one pool per event loop, and "each loop's
    connections close with its client". A client made at start-up (not used yet) keeps
    the store open; a request's `asyncio.run()` in a thread uses the store with a client
    of its own, then closes it and its loop ends: no connection of that loop may stay
    open in Redis (a socket left to the garbage collector, "unclosed transport").
    """
    import redis

    name = f"qa-{secrets.token_hex(4)}"
    store = RedisRateLimitStore(f"{redis_url}?client_name={name}", prefix=f"test:{name}")
    rates = RateLimits(api=Rate(100, per=30))
    other = RateLimiter(rates, store, "scope")  # a client made at start-up, still open

    async def request() -> None:
        limiter = RateLimiter(rates, store, "scope")
        try:
            await store.try_acquire("k", "api", (Rate(100, per=30),), 0.0)
        finally:
            await limiter.aclose()

    worker = threading.Thread(target=anyio.run, args=(request,))
    worker.start()
    worker.join(10)
    admin = redis.Redis.from_url(redis_url)
    try:
        left = [c for c in admin.client_list() if c.get("name") == name]
    finally:
        admin.close()

    async def close_the_other() -> None:
        await other.aclose()
        await store.aclose()

    with warnings.catch_warnings():
        # The ended loop's socket, if left, is not this test's subject when collected.
        warnings.simplefilter("ignore", ResourceWarning)
        anyio.run(close_the_other)  # which forgets the pools of ended loops
        gc.collect()
    assert not left, f"{len(left)} Redis connection(s) of an ended event loop still open"


def test_the_last_client_closing_does_not_wait_for_another_loops_renewal(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A store made from a URL is shared by clients on event loops of their own (threads).
    A thread's client closes while a renewal of its places in the fleet's line is under
    way, Redis slow to answer (paused, 3 s); its loop runs on. The last client, on the
    main loop, then closes: nothing of that loop needs Redis, and it closes at once, not
    once the other loop's renewal ended (nor does it cancel another loop's task from
    its own thread, which that loop does not hear of until something wakes it).
    """
    import redis

    from aposthog import _redis_store

    monkeypatch.setattr(_redis_store, "_LATE", 0.2)  # renewed every 0.05 s
    store = RedisRateLimitStore(redis_url, prefix=f"test:{secrets.token_hex(4)}")
    limits = RateLimits(api=Rate(1, per=0.3), margin=0)
    admin = redis.Redis.from_url(redis_url)
    ready, close, closed = threading.Event(), threading.Event(), threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []

    async def other_loop() -> None:
        limiter = RateLimiter(limits, store, "k")
        slots = Slots(1)
        assert 0.0 == await limiter.acquire("api")  # the window's place, for 0.3 s
        pool = store._pools[asyncio.get_running_loop()].redis.connection_pool
        head = asyncio.create_task(limiter.acquire("api", slots=slots))
        try:
            while "api" not in limiter._lines or limiter._lines["api"].wakes is None:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            assert slots.take_nowait()  # a long call: no slot when the head wakes
            while limiter._lines["api"].slot_since is None:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            ready.set()  # the head's place is renewed while it waits for its slot
            await asyncio.get_running_loop().run_in_executor(None, close.wait)
            await limiter.aclose()  # a renewal under way: Redis is paused
            closed.set()
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        except BaseException as exc:
            failures.append(exc)
            raise
        finally:
            closed.set()
            slots.release()  # the head, of a closed client, never goes
            with contextlib.suppress(ClientStateError):
                await asyncio.wait_for(head, 5)
            await pool.disconnect()  # (closed here: one left open warns when collected)

    async def main_loop() -> float:
        limiter = RateLimiter(limits, store, "another key's")  # of the main loop
        assert 0.0 == await limiter.acquire("api")
        pool = store._pools[asyncio.get_running_loop()].redis.connection_pool
        try:
            await anyio.to_thread.run_sync(ready.wait, 5)
            cast(Any, admin).execute_command("CLIENT", "PAUSE", "3000", "ALL")
            before = set(store._renewing)  # (a copy made in one step: the other thread's)
            with anyio.fail_after(2):
                while not store._renewing - before:  # noqa: ASYNC110 (one sent while paused)
                    await anyio.sleep(0.01)
            close.set()  # the thread's client closes; its loop runs on
            await anyio.to_thread.run_sync(closed.wait, 5)
        finally:
            began = time.monotonic()
            with anyio.move_on_after(5):
                await limiter.aclose()  # the store's last client
            closed_in = time.monotonic() - began
            await pool.disconnect()  # (once the close gave up)
        return closed_in

    worker = threading.Thread(target=asyncio.run, args=(other_loop(),))
    worker.start()
    try:
        closed_in = anyio.run(main_loop)
    finally:
        close.set()
        stop.set()
        worker.join(10)
        cast(Any, admin).execute_command("CLIENT", "UNPAUSE")
        admin.close()
    assert not failures
    assert closed_in < 1


def test_a_pause_refused_on_a_second_loop_says_the_pause_was_not_stored(redis_url: str) -> None:
    """
    CHANGELOG: "`RedisRateLimitStore.penalize()`'s own error says the pause was not
    stored". The limiter logs that error at WARNING after PostHog's 429, so a borrowed
    client refused on another running loop must not say "the request was not sent":
    the request was sent, and PostHog refused it.
    """
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    store = RedisRateLimitStore(client, prefix=f"test:{secrets.token_hex(4)}")
    used, done = threading.Event(), threading.Event()

    async def home() -> None:
        await store.try_acquire("k", "api", (Rate(100, per=30),), 0.0)
        used.set()
        await anyio.to_thread.run_sync(done.wait)
        await client.aclose()

    async def elsewhere() -> None:
        with anyio.fail_after(3):
            await store.penalize("k", "api", 1.0)

    thread = threading.Thread(target=anyio.run, args=(home,))
    thread.start()
    try:
        assert used.wait(10)
        with pytest.raises(RateLimitStoreError) as caught:
            anyio.run(elsewhere)
    finally:
        done.set()
        thread.join(10)
    assert "was not sent" not in str(caught.value)
    assert "the pause was not stored" in str(caught.value)


def _fail_in_the_callers_code() -> None:
    raise KeyError("the caller's own error")


async def test_a_store_failure_leaves_the_callers_own_exception_as_it_was(
    redis_url: str,
) -> None:
    """
    A client called from an `except` block (a fallback, a report of the failure) while
    Redis refuses the store: redis-py's error chains to the exception being handled, as
    Python chains every error. The store strips the tracebacks of redis-py's errors (their
    frames hold the password), but the caller's own exception is not the store's: it
    must keep its traceback, which the caller logs or re-raises next.
    """
    store = _store_of_an_unknown_user(redis_url)
    handled: list[tuple[BaseException, int]] = []
    try:
        try:
            _fail_in_the_callers_code()
        except KeyError as mine:
            handled.append((mine, len(traceback.extract_tb(mine.__traceback__))))
            with pytest.raises(RateLimitStoreError):
                await store.try_acquire("scope", "api", (Rate(10, per=1),), 0.0)
    finally:
        await store.aclose()
    [(error, frames)] = handled
    assert frames == len(traceback.extract_tb(error.__traceback__))


@pytest.mark.parametrize("timeout", [float("nan"), 0, -1.0, True, "5", float("inf")])
def test_a_timeout_that_is_no_positive_number_is_refused_by_name(timeout: Any) -> None:
    """
    `timeout` is "seconds to connect to Redis and to wait for an answer"; it went to
    redis-py unchecked. NaN, 0, a negative, a bool or a string were taken, and only
    showed later: every rate-limited request then fails with `RateLimitStoreError`
    ("Timeout connecting to server", or "unsupported operand type(s) for +: 'float' and
    'str'"), or closing the store raises a bare `TimeoutError`. Every other timeout of
    the package (`Client`, `RetryPolicy`, `Rate`) is refused at construction, by name.
    """
    require_redis_py()
    with pytest.raises((TypeError, ValueError), match="timeout"):
        RedisRateLimitStore("redis://127.0.0.1:6379/0", timeout=timeout)


# ---------------------------------------------------------------------- a Redis answering garbage

_HELLO_3 = (
    b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n"
    b"$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
    b"$7\r\nmodules\r\n*0\r\n"
)


@contextlib.asynccontextmanager
async def _resp_server(script_answer: bytes, *, handshake: bool = True) -> AsyncIterator[str]:
    """
    A server on 127.0.0.1 that speaks Redis's protocol but is not Redis (a proxy in a
    bad state, another service on the port): `script_answer` to every EVALSHA/EVAL,
    `+OK` to everything else; with `handshake`, a Redis 7 HELLO answer to HELLO.
    """
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line.startswith(b"*"):
                    break
                args = []
                for _ in range(int(line[1:])):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2])
                name = args[0].upper()
                if name == b"HELLO" and handshake:
                    writer.write(_HELLO_3)
                elif name in (b"EVALSHA", b"EVAL"):
                    writer.write(script_answer)
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("answer", "handshake"),
    [
        (b"$7\r\ngarbage\r\n", True),  # a bulk string where the script returns a number
        (b"*1\r\n:1\r\n", True),  # an array
        (b"+OK\r\n", False),  # `+OK` to everything, the connection's handshake included
    ],
    ids=["bulk-string", "array", "ok-to-everything"],
)
async def test_a_store_that_answers_garbage_is_a_typed_error(
    answer: bytes, handshake: bool
) -> None:
    """
    The README: if Redis cannot be reached the request fails with
    `RateLimitStoreError`, never sent, and no exception of a dependency escapes the
    client. A server that answers, but not as the script does, let `int()`'s
    ValueError/TypeError (or redis-py's AttributeError on a handshake that is no map)
    out of `acquire()`, and out of `penalize()`, where it replaced PostHog's 429.
    """
    require_redis_py()
    async with _resp_server(answer, handshake=handshake) as url:
        store = RedisRateLimitStore(url, timeout=1)
        limiter = RateLimiter(RateLimits(api=Rate(5, per=1)), store, "scope")
        try:
            with anyio.fail_after(2), pytest.raises(RateLimitStoreError, match="was not sent"):
                await limiter.acquire("api")
            await limiter.penalize("api", 1.0)  # logged, never raised: the 429 is the outcome
        finally:
            await limiter.aclose()


async def _timed_acquire(limiter: RateLimiter, started: float, outcomes: list[object]) -> None:
    """One call (at most 1 s of waiting): when it went, in s since `started`, or refused."""
    try:
        await limiter.acquire("api", max_wait=1.0)
        outcomes.append(round(time.monotonic() - started, 2))
    except aposthog.RateLimitError:
        outcomes.append("RateLimitError")


async def test_a_process_farther_from_redis_is_not_starved_by_one_nearer(redis_url: str) -> None:
    """
    Two processes share a key through Redis; one sits on another machine, 10 ms farther
    from Redis (a proxy here). The near one's workers keep the budget busy; the far one
    asks for three places at 0.1 s. Each time a place freed, both heads woke together
    (both were told the same free time) and the near one's question reached Redis first,
    every time: the far process never got a place, and its calls ended in
    `RateLimitError` once their `max_wait` was spent, while requests that came after
    them went. The fleet is served in the order its requests came: the near process's
    five that waited since 0 s take the window that frees at 0.3 s, the far one's three
    the next, at 0.6 s.
    """
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])

    async def pump(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
        async for chunk in source:
            await anyio.sleep(0.005)  # each way: 10 ms more of a round trip
            await sink.send(chunk)

    async def relay(client: anyio.abc.SocketStream) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            async with (
                client,
                await anyio.connect_tcp("127.0.0.1", port) as server,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(pump, client, server)
                await pump(server, client)
                tg.cancel_scope.cancel()

    prefix = f"test:{secrets.token_hex(4)}"
    limits = RateLimits(api=Rate(5, per=0.3), margin=0)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    proxy_port = listener.extra(anyio.abc.SocketAttribute.local_port)
    far_outcomes: list[object] = []
    async with listener, anyio.create_task_group() as outer:
        outer.start_soon(listener.serve, relay)
        near = RateLimiter(limits, RedisRateLimitStore(redis_url, prefix=prefix), "k")
        far_store = RedisRateLimitStore(f"redis://127.0.0.1:{proxy_port}/0", prefix=prefix)
        far = RateLimiter(limits, far_store, "k")
        started = time.monotonic()
        try:

            async def near_worker() -> None:
                while time.monotonic() - started < 1.4:
                    with contextlib.suppress(aposthog.RateLimitError):
                        await near.acquire("api", max_wait=1)

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    for _ in range(5):
                        tg.start_soon(near_worker)
                    await anyio.sleep(0.1)
                    for _ in range(3):
                        tg.start_soon(_timed_acquire, far, started, far_outcomes)
        finally:
            await near.aclose()
            await far.aclose()
            outer.cancel_scope.cancel()
    # In order of coming, the far process's three go as the second window frees (0.6 s).
    assert all(isinstance(outcome, float) for outcome in far_outcomes), far_outcomes
    assert all(0.55 < outcome < 0.9 for outcome in far_outcomes), far_outcomes  # type: ignore[operator]


async def test_the_fleets_line_serves_the_request_that_came_first(
    store: RedisRateLimitStore,
) -> None:
    """
    Two requests wait for one place (another process's, say): the one that came first
    gets it, whichever asks first when it frees; the other is told to wait for the place
    after (the line wakes one place at a time).
    """
    windows = (Rate(1, per=0.3),)
    assert 0.0 == await store.try_acquire("s", "api", windows, 0.0)
    early, late = store._ticket(), store._ticket()
    first = await store._ask("s", "api", windows, 0.0, early, 0.2)  # came 0.2 s ago
    second = await store._ask("s", "api", windows, 0.0, late, 0.0)
    assert 0.0 < first <= 0.3
    assert second > first  # the place after the first one's
    await anyio.sleep(first + 0.01)
    # The later one asks first when the place frees: the place is the earlier one's.
    assert await store._ask("s", "api", windows, 0.0, late, 0.0) > 0
    assert 0.0 == await store._ask("s", "api", windows, 0.0, early, 0.0)


async def test_a_request_placed_before_one_it_came_after_in_its_process_holds_nobody_back(
    store: RedisRateLimitStore,
) -> None:
    """
    A process's requests are placed in the fleet's line by its head's questions, each
    from when it came, reckoned against Redis's clock as of that question: questions
    whose round trips differ (a first one that opened a connection) can place a request
    before one that came before it in the process. That one, at the head, counted it as
    ahead of itself, though it waits behind it and never asks: a full window held it
    for good (a burst of calls in one process stalled the fleet). It moves up now.
    """
    windows = (Rate(1, per=0.3),)
    assert 0.0 == await store.try_acquire("s", "api", windows, 0.0)  # the window is full
    head, second, third = store._ticket(), store._ticket(), store._ticket()
    assert 0 < await store._ask("s", "api", windows, 0.0, head, 0.010, ((second, 0.006),))
    # A question whose reckoning places the third (which came after the second) earlier.
    assert 0 < await store._ask("s", "api", windows, 0.0, head, 0.5, ((second, 0.5), (third, 0.5)))
    store._leave("s", "api", head)  # gone (cancelled, say): the second is the head
    await anyio.sleep(0.32)  # the window has room again
    assert 0.0 == await store._ask("s", "api", windows, 0.0, second, 0.0, ((third, 0.0),))


async def test_a_question_naming_requests_gone_reckons_the_asker_without_them(
    store: RedisRateLimitStore,
) -> None:
    """
    A request of the process left the line as its turn came; its removal, sent on its
    own, has not reached Redis yet. The next request's question names it: it is out of
    the line before the asker is reckoned, and the asker takes the place that freed,
    not the one after.
    """
    windows = (Rate(1, per=0.3),)
    assert 0.0 == await store.try_acquire("s", "api", windows, 0.0)
    gone, asker = store._ticket(), store._ticket()
    first = await store._ask("s", "api", windows, 0.0, gone, 0.1)
    second = await store._ask("s", "api", windows, 0.0, asker, 0.0)
    await anyio.sleep(max(first, second) + 0.01)  # the place has freed
    assert await store._ask("s", "api", windows, 0.0, asker, 0.0) > 0.2  # the one gone's
    assert 0.0 == await store._ask("s", "api", windows, 0.0, asker, 0.0, left=(gone,))


async def test_a_request_that_leaves_the_line_holds_nobody_back(store: RedisRateLimitStore) -> None:
    """Refused or cancelled, a request leaves the fleet's line: the next one goes."""
    windows = (Rate(1, per=0.2),)
    assert 0.0 == await store.try_acquire("s", "api", windows, 0.0)
    gone, next_one = store._ticket(), store._ticket()
    await store._ask("s", "api", windows, 0.0, gone, 0.1)
    wait = await store._ask("s", "api", windows, 0.0, next_one, 0.0)
    store._leave("s", "api", gone)
    await anyio.sleep(wait + 0.01)
    assert 0.0 == await store._ask("s", "api", windows, 0.0, next_one, 0.0)


async def test_a_request_of_a_process_gone_leaves_the_line_when_it_is_not_heard_of(
    store: RedisRateLimitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A request whose process ended (it never asks again) holds the line only until it
    is late by `_LATE` after the wait it was told: then the next request goes.
    """
    from aposthog import _redis_store

    monkeypatch.setattr(_redis_store, "_LATE", 0.1)
    windows = (Rate(1, per=0.2),)
    assert 0.0 == await store.try_acquire("s", "api", windows, 0.0)
    dead, alive = store._ticket(), store._ticket()
    told = await store._ask("s", "api", windows, 0.0, dead, 0.1)  # and never again
    await anyio.sleep(told + 0.01)
    assert await store._ask("s", "api", windows, 0.0, alive, 0.0) > 0  # the dead one's turn
    await anyio.sleep(0.15)  # the dead one is now late
    assert 0.0 == await store._ask("s", "api", windows, 0.0, alive, 0.0)


async def test_one_ask_yields_to_the_line_without_joining_it(store: RedisRateLimitStore) -> None:
    """`try_acquire` (asked once) waits behind the line, and leaves nothing in it."""
    windows = (Rate(1, per=0.2),)
    assert 0.0 == await store.try_acquire("s", "api", windows, 0.0)
    waiting = store._ticket()
    told = await store._ask("s", "api", windows, 0.0, waiting, 0.1)
    await anyio.sleep(told + 0.01)
    assert await store.try_acquire("s", "api", windows, 0.0) > 0  # the waiting one's place
    assert 0.0 == await store._ask("s", "api", windows, 0.0, waiting, 0.0)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://default:{REDIS_PASSWORD}/x@redis.internal:6379/0",
        f"redis://:{REDIS_PASSWORD}#x@redis.internal:6379/0",
        f"redis://:{REDIS_PASSWORD}?x@redis.internal:6379/0",
    ],
)
def test_a_password_with_a_url_delimiter_is_not_in_the_refusal(url: str) -> None:
    """
    A password not percent-encoded that holds '/', '?' or '#' ends the URL's netloc
    early, so the URL parser reads the password as the port: redis-py refuses it with
    "Port could not be cast to integer value as '<password>'", and the store's
    ValueError repeats that text (its own redaction, `_safe_location`, leaves the rest
    of the password in the path it shows).
    """
    require_redis_py()
    with pytest.raises(ValueError, match="redis URL") as caught:
        RedisRateLimitStore(url)
    assert REDIS_PASSWORD not in str(caught.value)


@pytest.mark.parametrize("delimiter", ["/", "#"])
def test_a_password_with_an_at_sign_and_a_url_delimiter_is_not_in_the_repr(
    delimiter: str,
) -> None:
    """
    redis-py accepts `redis://:x@PW/PW@host:6379/0` (the URL parser reads host "PW",
    no port, and a database number it ignores), so the store is made; but its repr, and
    the "Redis at …" of every `RateLimitStoreError` it raises, read the location from the
    same misparse and show the password's tail: "redis://<pw>/<pw>@redis.internal:6379/0".
    """
    require_redis_py()
    store = RedisRateLimitStore(
        f"redis://:x@{REDIS_PASSWORD}{delimiter}{REDIS_PASSWORD}@redis.internal:6379/0"
    )
    shown = repr(store)
    assert REDIS_PASSWORD.lower() not in shown.lower(), shown


async def test_a_new_processs_first_call_is_not_held_back_by_the_call_behind_it(
    redis_url: str,
) -> None:
    """
    A worker starts while another process holds the window (1 per 0.3 s) and makes two
    calls at once. The head's place in the fleet's line is "when it came" on Redis's
    clock, reckoned from its first question (`now - age`), which is slow: it opens the
    store's connection. The call behind it is brought into the line by the head's next,
    fast, question, and so reckoned earlier than the head, though it came after. From
    then on the head counts its own waiter as ahead of it ("as if counted already"):
    the window empty, it is told to wait a whole span every time it asks, while the
    waiter cannot ask before it (it waits behind it in the process's own line). Both
    calls should go within two windows (0.3 s, 0.6 s); the head sits out its whole
    `max_wait` and is refused, and the call behind it is held back as long.
    """
    prefix = f"test:{secrets.token_hex(4)}"
    limits = RateLimits(api=Rate(1, per=0.3), margin=0)
    other = RateLimiter(limits, RedisRateLimitStore(redis_url, prefix=prefix), "k")
    new = RateLimiter(limits, RedisRateLimitStore(redis_url, prefix=prefix), "k")
    outcomes: list[object] = []
    try:
        assert 0.0 == await other.acquire("api")  # the other process fills the window
        started = time.monotonic()

        with anyio.fail_after(4):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_timed_acquire, new, started, outcomes)
                await anyio.lowlevel.checkpoint()  # the head asks (connecting); the second queues
                tg.start_soon(_timed_acquire, new, started, outcomes)
    finally:
        await other.aclose()
        await new.aclose()
    assert all(isinstance(o, float) and o < 0.9 for o in outcomes), outcomes


async def test_a_request_behind_one_of_a_process_gone_goes_when_that_one_is_dropped(
    store: RedisRateLimitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The README: "a request whose process ended is dropped from the line 2 s after it
    should have asked again. A waiting process sleeps exactly until its place frees,
    then asks again." A request behind a dead one (killed in a deploy while its call
    waited) is told to wait as if the dead one would be counted first: a whole window
    (`free = span` when the places ahead outnumber the counted entries), and, asking again
    before the dead one is dropped, another whole window. Here (1 per 0.6 s, dropped
    0.1 s late) the dead one is dropped at 0.7 s; the live one, which should go then,
    goes at 1.2 s. With PostHog AI's 60 s windows that is a minute more, per dead request.
    """
    from aposthog import _redis_store

    monkeypatch.setattr(_redis_store, "_LATE", 0.1)
    windows = (Rate(1, per=0.6),)
    assert 0.0 == await store.try_acquire("s", "api", windows, 0.0)
    started = time.monotonic()
    dead, alive = store._ticket(), store._ticket()
    await store._ask("s", "api", windows, 0.0, dead, 0.05)  # told ~0.6 s, and never asks again
    with anyio.fail_after(3):
        while (wait := await store._ask("s", "api", windows, 0.0, alive, 0.0)) > 0:  # noqa: ASYNC110
            await anyio.sleep(wait)
    went = time.monotonic() - started
    assert went < 0.95, went  # the dead one is dropped at ~0.7 s


async def test_a_request_of_a_client_without_the_hour_window_counts_in_it(
    store: RedisRateLimitStore,
) -> None:
    """
    Two clients share a key through one store (one budget, as `RateLimitStore` and the
    README say), one with PostHog's minute and hour windows, one with the minute window
    only (an older release of the fleet, or `RateLimits(api=Rate(480, per=60))`).
    PostHog counts every request of the key in both of its throttles, but the store
    writes a request only into the windows its client named: the second client's
    requests are missing from the hour window, so the first sends its whole hour's
    budget on top of them, and the key meets PostHog's 429.
    """
    minute_and_hour = (Rate(100, per=1), Rate(2, per=30))
    minute_only = (Rate(100, per=1),)
    assert 0.0 == await store.try_acquire("s", "api", minute_only, 0.0)
    assert 0.0 == await store.try_acquire("s", "api", minute_only, 0.0)
    # Two requests of the key went in the last 30 s: PostHog's "2 per 30 s" is full.
    assert await store.try_acquire("s", "api", minute_and_hour, 0.0) > 29


def test_a_request_counted_before_its_answer_timed_out_is_taken_back(redis_url: str) -> None:
    """
    Redis counted the request, but its answer came after the store's `timeout` (a Redis
    slow for a moment: a fork for a snapshot, a long command of another program): the
    call fails with `RateLimitStoreError`, "the request was not sent", as documented, yet
    the count stays in the windows. It is taken back for a request cancelled in the same
    moment (the test above), not for this one: every such failure spends a place of the
    key's budget on nothing, for the window's whole length (one of PostHog AI's ten
    research messages a day, for a day), and the fleet then refuses or holds back valid
    requests. Between the store and Redis a proxy, once `slow`, holds back every answer
    by 0.3 s (the store's timeout is 0.1 s); it is fast again for the clean-up.
    """
    require_redis_py()
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    prefix = f"test:{secrets.token_hex(4)}"
    windows = (Rate(5, per=30),)
    proxy = _SlowProxy(port)

    async def program() -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        proxy_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, proxy.relay)
            store = RedisRateLimitStore(
                f"redis://127.0.0.1:{proxy_port}/0", prefix=prefix, timeout=0.1
            )
            assert 0.0 == await store.try_acquire("s", "other", windows, 0.0)  # script loaded
            proxy.slow = True
            with pytest.raises(RateLimitStoreError, match="the request was not sent"):
                await store.try_acquire("s", "api", windows, 0.0)
            await anyio.sleep(0.35)  # the late answer has come and gone
            proxy.slow = False
            await store.aclose()  # waits for any background clean-up
            tg.cancel_scope.cancel()

    async def counted() -> list[int]:
        import redis.asyncio

        admin = redis.asyncio.Redis.from_url(redis_url)
        try:
            return [int(await admin.zcard(f"{prefix}:{{s}}:{b}:30000ms")) for b in ("api", "other")]
        finally:
            await admin.aclose()

    anyio.run(program)
    assert [0, 1] == anyio.run(counted)


def test_a_script_retried_by_a_borrowed_client_does_not_wait_on_its_own_count(
    redis_url: str,
) -> None:
    """
    A borrowed `redis.asyncio.Redis(host=..., socket_timeout=...)` (as the docstring
    allows) retries a command that timed out (redis-py 6+: 10 retries on `TimeoutError`
    by default). Redis slow once: the script counted the request, its answer came late,
    redis-py ran the script again with the same member, which found the window full of
    the request's own entry. The request, alone under "1 per 30 s", is told to wait
    ~30 s (or refused by a call's `max_retry_after`) while its entry, never sent, holds
    the window's only place. Between the store and Redis a proxy holds back one answer
    by 0.3 s (the client's timeout is 0.1 s).
    """
    require_redis_py()
    import redis.asyncio
    import redis.exceptions
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    prefix = f"test:{secrets.token_hex(4)}"
    windows = (Rate(1, per=30),)
    proxy = _SlowProxy(port)

    async def program() -> tuple[float, int]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        proxy_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, proxy.relay)
            # Retrying a command that timed out: redis-py 6+ does by default; set here
            # as every version reads it.
            borrowed = redis.asyncio.Redis(
                host="127.0.0.1",
                port=proxy_port,
                socket_timeout=0.1,
                retry=Retry(NoBackoff(), 3),
                retry_on_error=[redis.exceptions.TimeoutError],
            )
            admin = redis.asyncio.Redis.from_url(redis_url)
            try:
                store = RedisRateLimitStore(borrowed, prefix=prefix)
                assert 0.0 == await store.try_acquire("s", "other", windows, 0.0)  # loaded
                proxy.slow = 1
                wait = await store.try_acquire("s", "api", windows, 0.0)
                counted = int(await admin.zcard(f"{prefix}:{{s}}:api:30000ms"))
            finally:
                await borrowed.aclose()
                await admin.aclose()
                tg.cancel_scope.cancel()
        return wait, counted

    wait, counted = anyio.run(program)
    # Its own count, or a typed failure and no count: never a wait on itself.
    assert (wait, counted) == (0.0, 1)


def test_requests_failed_with_the_store_leave_the_fleets_line(redis_url: str) -> None:
    """
    Process B's head asks Redis with the two requests waiting behind it (bringing them
    into the fleet's line); Redis answers B too late, so the head and both fail with
    `RateLimitStoreError` ("not sent"). The head leaves the fleet's line (`_leave`,
    `_take_back`), the two behind it do not: they stay in it, as if still waiting, for
    another 2 s (`_LATE`), and every other process's request counts them as ahead of it.
    Process A's request, alone with a window that has room, then waits ~2 s for two
    requests that no longer exist (a cancelled or refused request leaves at once).
    """
    require_redis_py()
    import redis.asyncio

    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    prefix = f"test:{secrets.token_hex(4)}"
    limits = RateLimits(api=Rate(1, per=0.3), margin=0.0)
    scope = rate_limit_scope("https://us.posthog.com", "phx_fleet")
    proxy = _SlowProxy(port)

    async def program() -> tuple[list[str], int, float | None]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        proxy_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        outcomes: list[str] = []
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, proxy.relay)
            far = RedisRateLimitStore(
                f"redis://127.0.0.1:{proxy_port}/0", prefix=prefix, timeout=0.1
            )
            near = RedisRateLimitStore(redis_url, prefix=prefix)
            b = RateLimiter(limits, far, scope)
            a = RateLimiter(limits, near, scope)
            admin = redis.asyncio.Redis.from_url(redis_url)
            try:
                assert 0.0 == await b.acquire("api")  # B's first: the window is full

                async def b_request() -> None:
                    try:
                        await b.acquire("api")
                        outcomes.append("sent")
                    except RateLimitStoreError:
                        outcomes.append("store failed")

                async with anyio.create_task_group() as requests:
                    for _ in range(3):
                        requests.start_soon(b_request)
                    await anyio.sleep(0.15)  # the head sleeps, two wait behind it
                    proxy.slow = True  # its next question is answered too late
                proxy.slow = False
                await anyio.sleep(0.1)  # the failures' clean-up reaches Redis
                in_line = int(await admin.zcard(f"{prefix}:{{{scope}}}:api:line"))
                waited: float | None = None
                with anyio.move_on_after(0.6):
                    waited = await a.acquire("api")  # the window has room
            finally:
                await admin.aclose()
                await b.aclose()
                await a.aclose()
                tg.cancel_scope.cancel()
        return outcomes, in_line, waited

    outcomes, in_line, waited = anyio.run(program)
    assert outcomes == ["store failed"] * 3
    assert (in_line, waited is not None and waited < 0.1) == (0, True), (in_line, waited)


def test_the_first_request_after_redis_restarted_is_not_failed(tmp_path: Any) -> None:
    """
    Redis restarts between two requests (an upgrade, a failover, a crash and its
    supervisor): it is back and answers, yet the store's next request fails with
    `RateLimitStoreError` "Connection closed by server ... the request was not sent":
    the URL store's redis-py client takes its pooled connection, closed by the old
    server, and neither reconnects nor tries again (the store's clients are made without
    a retry). The call fails, with every request waiting in its bucket's line; a pool of
    N connections fails N requests per process, across the whole fleet. The README
    promises this error only "if Redis cannot be reached".
    """
    import shutil
    import subprocess

    require_redis_py()
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not on PATH")
    assert binary is not None
    port = _free_port()

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while not _answers_ping(port) and time.monotonic() < deadline:
            time.sleep(0.01)
        return process

    def stop(process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        process.wait(timeout=5)

    windows = (Rate(5, per=30),)

    async def program() -> tuple[float, float | str]:
        store = RedisRateLimitStore(f"redis://127.0.0.1:{port}/0", prefix="test:restart")
        try:
            before = await store.try_acquire("s", "api", windows, 0.0)
            stop(servers.pop())
            servers.append(start())  # back, on the same port
            try:
                after: float | str = await store.try_acquire("s", "api", windows, 0.0)
            except RateLimitStoreError as exc:
                after = str(exc)
            return before, after
        finally:
            await store.aclose()

    servers = [start()]
    try:
        assert (0.0, 0.0) == anyio.run(program)
    finally:
        for process in servers:
            stop(process)


def test_a_cancellation_as_the_store_times_out_stays_a_cancellation() -> None:
    """
    The store's `timeout` is kept with `anyio.fail_after` around the script, in the
    caller's own task. Python 3.10 tasks count no cancellations, so a cancellation from
    outside (a caller's deadline, a task group's, a shutdown) that lands in the loop step
    where the store's time runs out is taken for the scope's own: swallowed, and turned
    into `RateLimitStoreError` ("no answer within 0.2 s"); the task is not cancelled. The
    transport and the stream opens run such attempts `apart` on 3.10 for this very race.
    Here the loop is busy past both deadlines (the store's, then the caller's cancel),
    which then come in one step, in that order.
    """
    import asyncio

    async def program() -> str:
        async with _silent_redis() as borrowed:
            store = RedisRateLimitStore(borrowed, timeout=0.2)
            loop = asyncio.get_running_loop()
            # (No windows: nothing for the store to take back in the background afterwards.)
            task = asyncio.ensure_future(store.try_acquire("s", "api", (), 0.0))
            await asyncio.sleep(0.05)  # waiting for Redis: the store's deadline in ~0.15 s
            loop.call_soon(time.sleep, 0.3)  # the loop busy past it (a slow callback)
            loop.call_at(loop.time() + 0.2, task.cancel)  # the caller's, just after it
            try:
                await task
                outcome = "returned"
            except asyncio.CancelledError:
                outcome = "cancelled"
            except RateLimitStoreError as exc:
                outcome = f"RateLimitStoreError: {exc}"
            await store.aclose()
        return outcome

    assert "cancelled" == asyncio.run(program())


async def test_a_client_closing_while_one_made_outside_any_loop_asks_redis_leaves_nothing_open(
    redis_url: str,
) -> None:
    """
    A client made outside any event loop (at import) and a client made in the loop share
    a store. The second closes while the first's question to Redis is under way (Redis
    paused for writes, as in a slow failover): the loop's connections were let go with
    the one in use still open, and nobody closed it (`ResourceWarning: unclosed
    Connection`, an error here). It is closed with the first client now.
    """
    import redis.asyncio

    admin = redis.asyncio.Redis.from_url(redis_url)
    store = RedisRateLimitStore(redis_url, prefix=f"test:{secrets.token_hex(4)}")
    limits = RateLimits(api=Rate(100, per=30), margin=0)
    early = await anyio.to_thread.run_sync(RateLimiter, limits, store, "k")  # no loop
    tenant = RateLimiter(limits, store, "another key's")
    try:
        assert 0.0 == await early.acquire("api")  # the loop's connections are made
        await cast(Any, admin).execute_command("CLIENT", "PAUSE", "300", "WRITE")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(early.acquire, "api")  # under way until Redis resumes
                await anyio.sleep(0.1)
                await tenant.aclose()
        assert 0.0 == await early.acquire("api")  # and it goes on
    finally:
        await early.aclose()
        await cast(Any, admin).execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()
    gc.collect()  # a connection left open would warn now
