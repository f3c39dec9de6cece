"""The calls of the chaos run: the objects they work on and a seeded plan of them."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aposthog
from aposthog.testing import FakePostHog

__all__ = ["NOOP", "Call", "World", "call_result", "plan"]

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
        "exports.test": lambda i: lambda ph: ph.batch_exports.test(destination="AwsS3"),
        "exports.run_test_step": lambda i: _bind(
            unique("exports"), lambda e, ph: ph.batch_exports.run_test_step(e, step=0)
        ),
        "exports.run_test_step_new": lambda i: (
            lambda ph: ph.batch_exports.run_test_step_new(
                step=0, destination={"type": "AwsS3", "config": {"bucket_name": f"b{i}"}}
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


def _bind(target: Any, call: Callable[[Any, aposthog.Client], Any]) -> Call:
    return lambda ph: call(target, ph)


async def call_result(result: Awaitable[Any]) -> None:
    """Await what a call returned: a coroutine, or a paginator (its first page)."""
    await result
