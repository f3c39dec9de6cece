"""
A worker pool that reads the logs of many batch exports, and pauses and unpauses them,
concurrently, under one client's `max_concurrency`, absorbing PostHog's 429s.

    python examples/worker_pool.py                 # against an embedded FakePostHog
    POSTHOG_PERSONAL_API_KEY=… POSTHOG_PROJECT_ID=… python examples/worker_pool.py --real

Against a real PostHog it only reads logs unless `--cycle` is given (pausing and
unpausing every export of a project is not something to do by accident).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator

import anyio

import aposthog
from aposthog.testing import FakePostHog

WORKERS = 20


@contextlib.asynccontextmanager
async def posthog(
    real: bool, exports: int
) -> AsyncIterator[tuple[aposthog.Client, FakePostHog | None]]:
    """A client of the real PostHog (from the environment), or of a seeded FakePostHog."""
    if real:
        async with aposthog.Client(max_concurrency=8) as ph:
            yield ph, None
        return
    async with FakePostHog(latency=0.005) as fake, fake.client(max_concurrency=8) as ph:
        for i in range(exports):
            export = await ph.batch_exports.create(
                name=f"export-{i:03d}",
                destination={"type": "NoOp", "config": {}},
                interval="hour",
            )
            fake.add_batch_export_logs(
                export.id,
                ["run started", {"message": f"export {i} failed", "level": "ERROR"}, "run done"],
            )
        # PostHog throttles bursts: the pool's first log reads will meet 429s.
        fake.throttle_next(8, wait=0, path="/logs")
        fake.reset_stats()
        yield ph, fake


async def work(ph: aposthog.Client, *, cycle: bool, report: collections.Counter[str]) -> None:
    """Every export through a bounded pool of workers; one failure never stops the others."""
    queue: list[aposthog.BatchExport] = [e async for e in ph.batch_exports.list()]
    report["exports"] = len(queue)

    async def worker() -> None:
        while queue:
            export = queue.pop()
            try:
                errors = await ph.batch_exports.logs(export.id, level="ERROR", limit=50)
                report["error log lines"] += len(errors.results)
                if cycle:
                    await ph.batch_exports.pause(export.id)
                    await ph.batch_exports.unpause(export.id)
                    report["paused and unpaused"] += 1
            except aposthog.PostHogError as err:
                report[f"failed: {type(err).__name__}"] += 1

    async with anyio.create_task_group() as tg:
        for _ in range(WORKERS):
            tg.start_soon(worker)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--real", action="store_true", help="use the PostHog of POSTHOG_*")
    parser.add_argument(
        "--cycle", action="store_true", help="pause and unpause (always on the fake)"
    )
    parser.add_argument("--exports", type=int, default=40, help="exports the fake starts with")
    args = parser.parse_args(argv)
    real = args.real or bool(os.environ.get("POSTHOG_PERSONAL_API_KEY"))
    report: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    async with posthog(real, args.exports) as (ph, fake):
        await work(ph, cycle=args.cycle or not real, report=report)
        if fake is not None:
            report["requests sent"] = len(fake.requests)
            report["429s absorbed"] = fake.status_counts[429]
            report["most in flight at once"] = fake.max_in_flight
    for name, value in sorted(report.items()):
        print(f"{name:>24}: {value}")
    print(f"{'seconds':>24}: {time.monotonic() - started:.1f}")
    return 1 if any(name.startswith("failed") for name in report) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
