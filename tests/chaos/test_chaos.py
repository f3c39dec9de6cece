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
import datetime as dt
import os
import random
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest

import aposthog
from aposthog.testing import FakePostHog

from .chaos_server import FAULTS, ChaosProxy

pytestmark = pytest.mark.anyio

CALLS = 2000
CONCURRENCY = 100
FAULT_RATE = 0.2
#: No call may take longer, whatever the faults: a hang is a failure, not a slow test.
CALL_BOUND = 45.0
POLICY = aposthog.RetryPolicy(
    max_retries=3, initial_backoff=0.005, max_backoff=0.02, max_retry_after=0.02
)
NOOP = {"type": "NoOp", "config": {}}

Call = Callable[[aposthog.Client], Awaitable[Any]]


# ------------------------------------------------------------------ the world


class World:
    """The objects the calls work on, and pools of ones each used by a single call."""

    def __init__(self, fake: FakePostHog, rng: random.Random) -> None:
        self.rng = rng
        self.exports: list[str] = []
        self.runs: list[tuple[str, str]] = []
        self.backfills: list[tuple[str, str]] = []
        self.conversations: list[str] = []
        self.configs: list[str] = []
        self._fake = fake
        self._used: dict[str, set[Any]] = {}

    def any(self, kind: str) -> Any:
        """An existing object, or now and then one that does not exist."""
        pool: list[Any] = getattr(self, kind)
        if not pool or self.rng.random() < 0.1:
            return self._missing(kind)
        return self.rng.choice(pool)

    def unique(self, kind: str) -> Any:
        """An object no other call of this kind of action uses (so a repeat is visible)."""
        pool: list[Any] = getattr(self, kind)
        used = self._used.setdefault(kind, set())
        free = [item for item in pool if item not in used]
        item = self.rng.choice(free) if free else self._missing(kind)
        used.add(item)
        return item

    def _missing(self, kind: str) -> Any:
        fresh = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if kind in ("runs", "backfills"):
            return (self.rng.choice(self.exports) if self.exports else fresh, fresh)
        return fresh


def _fresh(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


async def _consume(stream: aposthog.ConversationStream, rng: random.Random) -> None:
    async with stream:
        if rng.random() < 0.5:
            await stream.until_done()
        else:
            async for _ in stream.text_deltas():
                pass


def plan(world: World, n: int, rng: random.Random) -> list[tuple[str, Call]]:
    """`n` calls, each a (label, call) pair, drawn from every public method."""
    hour = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    any_, unique = world.any, world.unique

    def create(i: int) -> Call:
        seed = rng.random()
        return lambda ph: _consume(
            ph.conversations.create(f"chaos question {i}", max_reattach_attempts=2),
            random.Random(seed),
        )

    # Each entry draws its targets when the call is planned.
    table: dict[str, Callable[[int], Call]] = {
        "exports.list": lambda i: lambda ph: ph.batch_exports.list(limit=1 + i % 50),
        "exports.iterate": lambda i: lambda ph: ph.batch_exports.list(limit=20).to_list(),
        "exports.get": lambda i: _bind(any_("exports"), lambda e, ph: ph.batch_exports.get(e)),
        "exports.create": lambda i: (
            lambda ph: ph.batch_exports.create(name=f"chaos {i}", destination=NOOP, interval="hour")
        ),
        "exports.update": lambda i: _bind(
            unique("exports"), lambda e, ph: ph.batch_exports.update(e, name=f"renamed {i}")
        ),
        "exports.delete": lambda i: _bind(
            unique("exports"), lambda e, ph: ph.batch_exports.delete(e)
        ),
        "exports.pause": lambda i: _bind(
            unique("exports"), lambda e, ph: ph.batch_exports.pause(e)
        ),
        "exports.unpause": lambda i: _bind(
            unique("exports"), lambda e, ph: ph.batch_exports.unpause(e)
        ),
        "exports.unpause_backfill": lambda i: _bind(
            unique("exports"), lambda e, ph: ph.batch_exports.unpause(e, backfill=True)
        ),
        "exports.logs": lambda i: _bind(
            any_("exports"), lambda e, ph: ph.batch_exports.logs(e, level="info", limit=20)
        ),
        "exports.test": lambda i: lambda ph: ph.batch_exports.test(destination="S3"),
        "exports.run_test_step": lambda i: _bind(
            unique("exports"), lambda e, ph: ph.batch_exports.run_test_step(e, step=0)
        ),
        "exports.run_test_step_new": lambda i: (
            lambda ph: ph.batch_exports.run_test_step_new(
                step=0, destination={"type": "S3", "config": {"bucket_name": f"b{i}"}}
            )
        ),
        "runs.list": lambda i: _bind(
            any_("exports"),
            lambda e, ph: ph.batch_exports.list_runs(e, status="completed").to_list(),
        ),
        "runs.get": lambda i: _bind(any_("runs"), lambda r, ph: ph.batch_exports.get_run(*r)),
        "runs.retry": lambda i: _bind(unique("runs"), lambda r, ph: ph.batch_exports.retry_run(*r)),
        "runs.cancel": lambda i: _bind(
            unique("runs"), lambda r, ph: ph.batch_exports.cancel_run(*r)
        ),
        "backfills.list": lambda i: _bind(
            any_("exports"), lambda e, ph: ph.batch_exports.list_backfills(e).to_list()
        ),
        "backfills.create": lambda i: _bind(
            any_("exports"),
            lambda e, ph: ph.batch_exports.create_backfill(
                e, start_at=hour + dt.timedelta(hours=i), end_at=hour + dt.timedelta(hours=i + 1)
            ),
        ),
        "backfills.get": lambda i: _bind(
            any_("backfills"), lambda b, ph: ph.batch_exports.get_backfill(*b)
        ),
        "backfills.cancel": lambda i: _bind(
            unique("backfills"), lambda b, ph: ph.batch_exports.cancel_backfill(*b)
        ),
        "conversations.list": lambda i: lambda ph: ph.conversations.list(limit=10),
        "conversations.get": lambda i: _bind(
            any_("conversations"), lambda c, ph: ph.conversations.get(c)
        ),
        "conversations.create": create,
        "conversations.create_again": create,
        "conversations.stream": lambda i: _bind(
            any_("conversations"),
            lambda c, ph: _consume(
                ph.conversations.stream(c, max_reattach_attempts=1), random.Random(i)
            ),
        ),
        "conversations.append_message": lambda i: _bind(
            any_("conversations"), lambda c, ph: ph.conversations.append_message(c, f"note {i}")
        ),
        "conversations.cancel": lambda i: _bind(
            unique("conversations"), lambda c, ph: ph.conversations.cancel(c)
        ),
        "conversations.delete": lambda i: _bind(
            unique("conversations"), lambda c, ph: ph.conversations.delete(c)
        ),
        "configs.list": lambda i: lambda ph: ph.customer_profile_configs.list().to_list(),
        "configs.get": lambda i: _bind(
            any_("configs"), lambda c, ph: ph.customer_profile_configs.get(c)
        ),
        "configs.create": lambda i: (
            lambda ph: ph.customer_profile_configs.create(scope="person", content={"call": i})
        ),
        "configs.update": lambda i: _bind(
            unique("configs"),
            lambda c, ph: ph.customer_profile_configs.update(c, content={"call": i}),
        ),
        "configs.replace": lambda i: _bind(
            any_("configs"),
            lambda c, ph: ph.customer_profile_configs.replace(c, scope="group_0", sidebar=[i]),
        ),
        "configs.delete": lambda i: _bind(
            unique("configs"), lambda c, ph: ph.customer_profile_configs.delete(c)
        ),
    }
    labels = sorted(table)
    calls = []
    for i in range(n):
        label = rng.choice(labels)
        calls.append((label, table[label](i)))
    return calls


async def _tolerant(call: Awaitable[Any]) -> None:
    try:
        await call
    except aposthog.PostHogError:
        pass


def _bind(target: Any, call: Callable[[Any, aposthog.Client], Any]) -> Call:
    return lambda ph: call(target, ph)


async def _await(result: Any) -> None:
    if isinstance(result, aposthog.AsyncPaginator):
        await result
    else:
        await result


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
    )

    async def one(index: int, label: str, call: Call) -> None:
        async with limiter:
            with anyio.move_on_after(CALL_BOUND) as scope:
                try:
                    await _await(call(client))
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
