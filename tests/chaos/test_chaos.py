"""
The chaos run: about 2,000 calls across every resource and the conversation stream, at
concurrency 100, through a proxy that faults a fifth of the requests.

It asserts that every call ends within a bound, that nothing but aposthog errors comes
out, that no POST or PATCH is repeated after an attempt PostHog may have acted on, and
that no connection, file descriptor or task is left once the client is closed.

Seeded: `CHAOS_SEED=<n>` replays a run (the seed is in every failure message); the
faults depend on the seed and the request alone, not on the order concurrency gives.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import traceback
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest

import aposthog
from aposthog.testing import FakePostHog

from .calls import NOOP, Call, World, call_result, plan
from .chaos_server import FAULTS, ChaosProxy

pytestmark = pytest.mark.anyio

CALLS = 2000
CONCURRENCY = 100
FAULT_RATE = 0.2
#: No call may take longer, whatever the faults: a hang is a failure, not a slow test.
CALL_BOUND = 45.0
#: Small, so that the proxy's oversized bodies and gzip bombs cross it.
MAX_RESPONSE_SIZE = 1024 * 1024
POLICY = aposthog.RetryPolicy(
    max_retries=3, initial_backoff=0.005, max_backoff=0.02, max_retry_after=0.02
)


async def _tolerant(call: Awaitable[Any]) -> None:
    try:
        await call
    except aposthog.PostHogError:
        pass


# ------------------------------------------------------------------ leaks


def _client_sockets(port: int) -> int:
    """Sockets of this process connected to `port` (the client's side of connections)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[9] in inodes:
                count += 1
    return count


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def seed() -> int:
    return int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))


@pytest.fixture
def served(seed: int) -> Iterator[tuple[Any, FakePostHog, ChaosProxy]]:
    """A FakePostHog behind a ChaosProxy, both on an event loop of their own."""
    with anyio.from_thread.start_blocking_portal() as portal:
        fake = FakePostHog()
        portal.call(fake.start)
        fake.ai_burst_limit = fake.ai_daily_limit = None
        fake.ai_research_burst_limit = fake.ai_research_daily_limit = None
        proxy = ChaosProxy(fake.url, seed=seed, fault_rate=FAULT_RATE)
        portal.call(proxy.start)
        try:
            yield portal, fake, proxy
        finally:
            portal.call(proxy.stop)
            portal.call(fake.aclose)


async def _populate(portal: Any, fake: FakePostHog, world: World) -> None:
    """Objects to work on, made straight on the fake (no chaos)."""

    async def make() -> None:
        async with fake.client() as ph:
            for i in range(80):
                export = await ph.batch_exports.create(
                    name=f"pool {i}", destination=NOOP, interval="hour"
                )
                world.exports.append(export.id)
            for _ in range(60):
                config = await ph.customer_profile_configs.create(scope="person")
                world.configs.append(config.id)
        for export_id in world.exports[:40]:
            run = fake.add_batch_export_run(export_id, status="Running")
            world.runs.append((export_id, run["id"]))
            backfill = fake.add_batch_export_backfill(export_id, status="Running")
            world.backfills.append((export_id, backfill["id"]))
            fake.add_batch_export_log(export_id, "a log line", level="INFO")
        for _ in range(60):
            seeded = fake.seed_conversation(messages=[{"type": "human", "content": "q"}])
            world.conversations.append(seeded.id)

    portal.call(make)


async def test_chaos_run(seed: int, served: tuple[Any, FakePostHog, ChaosProxy]) -> None:
    portal, fake, proxy = served
    say = f"chaos seed {seed} (replay with CHAOS_SEED={seed})"
    print(say)
    rng = random.Random(seed)
    world = World(fake, rng)
    await _populate(portal, fake, world)
    calls = plan(world, CALLS, rng)

    port = int(proxy.url.rsplit(":", 1)[1])
    tasks_before = {t for t in asyncio.all_tasks() if not t.done()}
    hangs: list[str] = []
    escapes: list[str] = []
    outcomes: dict[str, int] = {"ok": 0, "error": 0}
    limiter = anyio.Semaphore(CONCURRENCY)
    started = time.monotonic()

    client = aposthog.Client(
        api_key=fake.api_key,
        host=proxy.url,
        project_id=fake.project_id,
        retry=POLICY,
        timeout=2.0,
        connect_timeout=1.0,
        stream_idle_timeout=2.0,
        max_concurrency=CONCURRENCY,
        max_response_size=MAX_RESPONSE_SIZE,
    )

    async def one(index: int, label: str, call: Call) -> None:
        async with limiter:
            with anyio.move_on_after(CALL_BOUND) as scope:
                try:
                    await call_result(call(client))
                except aposthog.PostHogError:
                    outcomes["error"] += 1
                except Exception as exc:  # anything else escaping is what this test hunts
                    lines = traceback.format_exception(exc)
                    escapes.append(f"#{index} {label}: {''.join(lines[-3:])[-600:]}")
                else:
                    outcomes["ok"] += 1
            if scope.cancelled_caught:
                hangs.append(f"#{index} {label}")

    async with client, anyio.create_task_group() as tg:
        for index, (label, call) in enumerate(calls):
            tg.start_soon(one, index, label, call)
    elapsed = time.monotonic() - started
    await anyio.sleep(0.2)  # let the loop run the callbacks a close schedules

    leaked_tasks = {t for t in asyncio.all_tasks() if not t.done()} - tasks_before
    open_sockets = _client_sockets(port)
    faulted = sum(proxy.faults.values())
    print(
        f"{say}: {len(calls)} calls in {elapsed:.1f} s, {proxy.requests} requests, "
        f"{faulted} faulted {dict(proxy.faults)}, outcomes {outcomes}"
    )

    assert not escapes, f"{say}: non-aposthog exceptions escaped:\n" + "\n".join(escapes[:10])
    assert not hangs, f"{say}: calls still running after {CALL_BOUND} s: {hangs[:20]}"
    assert not proxy.duplicates, (
        f"{say}: POST/PATCH repeated after an attempt PostHog may have acted on: "
        f"{proxy.duplicates[:10]}"
    )
    assert open_sockets == 0, f"{say}: {open_sockets} connections still open after aclose()"
    assert not leaked_tasks, f"{say}: tasks left after aclose(): {leaked_tasks}"
    # The run did what it says: every fault kind met, a real share of calls succeeded.
    assert faulted >= 0.1 * proxy.requests, f"{say}: only {faulted} of {proxy.requests} faulted"
    missing = {f for f in FAULTS if f not in ("cut_stream", "hostile_stream")} - set(proxy.faults)
    assert not missing, f"{say}: faults never injected: {missing}"
    assert proxy.faults["cut_stream"] + proxy.faults["hostile_stream"] > 0, say
    assert outcomes["ok"] >= 0.5 * len(calls), f"{say}: only {outcomes['ok']} calls succeeded"


async def test_no_descriptor_is_left(seed: int) -> None:
    """A short run, then nothing: every descriptor it opened (client and servers) is closed."""
    before = _open_fds()
    with anyio.from_thread.start_blocking_portal() as portal:
        fake = FakePostHog()
        portal.call(fake.start)
        proxy = ChaosProxy(fake.url, seed=seed, fault_rate=0.5)
        portal.call(proxy.start)
        try:
            async with aposthog.Client(
                api_key=fake.api_key, host=proxy.url, project_id=1, retry=POLICY, timeout=2.0
            ) as ph:
                for _ in range(40):
                    await _tolerant(ph.customer_profile_configs.create(scope="person"))
                    await _tolerant(ph.customer_profile_configs.list().to_list())
        finally:
            portal.call(proxy.stop)
            portal.call(fake.aclose)
    assert _open_fds() == before, f"chaos seed {seed}: descriptors left open"
