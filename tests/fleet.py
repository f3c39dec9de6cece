"""
A fleet of worker processes that share one API key against one FakePostHog: each
process runs its own client and many tasks, all calling as fast as they are let.

    python -m tests.fleet URL KEY MODE REDIS_URL LIMIT PER MARGIN START DURATION TASKS

MODE is `redis` (one RedisRateLimitStore for the fleet), `local` (each process counts
alone) or `none` (no limiter). The process waits until the wall-clock time START, runs
for DURATION seconds and prints a JSON summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

import aposthog

ROOT = Path(__file__).resolve().parents[1]


async def work(
    url: str,
    key: str,
    mode: str,
    redis_url: str,
    rate: aposthog.Rate,
    margin: float,
    start: float,
    duration: float,
    tasks: int,
) -> dict[str, int]:
    """One process of the fleet."""
    report = {"completed": 0, "rate_limit_errors": 0}
    limits = aposthog.RateLimits(api=rate, margin=margin) if mode != "none" else None
    store = aposthog.RedisRateLimitStore(redis_url) if mode == "redis" else None
    async with aposthog.Client(
        host=url, api_key=key, project_id=1, rate_limits=limits, rate_limit_store=store
    ) as ph:
        await anyio.sleep(max(0.0, start - time.time()))
        deadline = start + duration

        async def worker() -> None:
            while (left := deadline - time.time()) > 0:
                # A request still waiting for its turn at the deadline is cancelled.
                with anyio.move_on_after(left):
                    try:
                        await ph.customer_profile_configs.list(limit=1)
                        report["completed"] += 1
                    except aposthog.RateLimitError:
                        report["rate_limit_errors"] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(worker)
    return report


async def run_fleet(
    url: str,
    key: str,
    mode: str,
    *,
    redis_url: str = "",
    rate: aposthog.Rate,
    margin: float,
    processes: int = 4,
    tasks: int = 8,
    duration: float = 16.0,
) -> dict[str, int]:
    """Start the fleet's processes together; return their summed reports."""
    start = time.time() + 3.0  # every process imports and connects before the start
    totals = {"completed": 0, "rate_limit_errors": 0}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error"}
    args = [url, key, mode, redis_url or "-", str(rate.limit), str(rate.per), str(margin)]
    args += [str(start), str(duration), str(tasks)]

    async def one() -> None:
        result = await anyio.run_process(
            [sys.executable, "-m", "tests.fleet", *args], env=env, cwd=ROOT, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"a fleet process failed: {result.stderr.decode()[-2000:]}")
        for name, value in json.loads(result.stdout).items():
            totals[name] += value

    async with anyio.create_task_group() as tg:
        for _ in range(processes):
            tg.start_soon(one)
    return totals


def main(argv: list[str]) -> None:
    url, key, mode, redis_url, limit, per, margin, start, duration, tasks = argv
    rate = aposthog.Rate(int(limit), per=float(per))
    report: Any = asyncio.run(
        work(url, key, mode, redis_url, rate, float(margin), float(start), float(duration),
             int(tasks))
    )  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
