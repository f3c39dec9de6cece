"""
A fleet of worker processes sharing one personal API key, three ways, side by side.

A FakePostHog in this process throttles the key like PostHog does (a sliding window,
here 40 requests per 4 s so that a run spans several windows in seconds). Each worker
process has its own `aposthog.Client` and many tasks calling `list()` as fast as they
are let, for the same wall-clock span, with the client's default retry policy:

* redis: every client shares one `RedisRateLimitStore` (a redis-server started here);
* in-process: each client's limiter knows the budget but counts only its own requests;
* none: `rate_limits=None`; the 429s and the retry policy pace the fleet.

For each: the 429s PostHog sent, the calls that gave up with `RateLimitError` (retries
spent), the requests completed, and the achieved rate as a share of the budget
(completed / (limit * seconds / per)).

    python benchmarks/bench_fleet.py [--processes 4] [--tasks 8] [--seconds 16]
                                     [--limit 40] [--per 4] [--margin 0.4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

from _redis import redis_server

import aposthog
from aposthog.testing import FakePostHog


async def worker(args: argparse.Namespace) -> None:
    """One process of the fleet: prints its completed requests and RateLimitErrors."""
    report = {"completed": 0, "errors": 0}
    limits = (
        aposthog.RateLimits(api=aposthog.Rate(args.limit, per=args.per), margin=args.margin)
        if args.mode != "none"
        else None
    )
    store = aposthog.RedisRateLimitStore(args.redis) if args.mode == "redis" else None
    async with aposthog.Client(
        host=args.url, api_key=args.key, project_id=1, rate_limits=limits, rate_limit_store=store
    ) as ph:
        await asyncio.sleep(max(0.0, args.start - time.time()))
        deadline = args.start + args.seconds

        async def call(left: float) -> None:
            try:
                await asyncio.wait_for(ph.customer_profile_configs.list(limit=1), left)
                report["completed"] += 1
            except aposthog.RateLimitError:
                report["errors"] += 1
            except asyncio.TimeoutError:
                pass  # still waiting for its turn at the end of the run

        async def task() -> None:
            while (left := deadline - time.time()) > 0:
                await call(left)

        await asyncio.gather(*(task() for _ in range(args.tasks)))
    print(json.dumps(report))


async def fleet(args: argparse.Namespace, fake: FakePostHog, mode: str, redis: str) -> str:
    fake.throttles.reset()
    fake.reset_stats()
    start = time.time() + 3.0  # every process imports and connects before the start
    command = [sys.executable, __file__, "--worker", "--mode", mode, "--url", fake.url]
    command += ["--key", fake.api_key, "--redis", redis, "--start", str(start)]
    for name in ("processes", "tasks", "seconds", "limit", "per", "margin"):
        command += [f"--{name}", str(getattr(args, name))]
    procs = [
        await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
        for _ in range(args.processes)
    ]
    outputs = [json.loads((await p.communicate())[0]) for p in procs]
    completed = sum(o["completed"] for o in outputs)
    gave_up = sum(o["errors"] for o in outputs)
    budget = args.limit * args.seconds / args.per
    return (
        f"{mode:>10} {fake.status_counts[429]:>8} {gave_up:>8} {completed:>10} "
        f"{completed / budget:>10.0%}"
    )


async def bench(args: argparse.Namespace) -> None:
    with redis_server() as redis:
        async with FakePostHog() as fake:
            fake.throttles.rate_limit_enabled = True
            fake.throttles.burst = aposthog.Rate(args.limit, per=args.per)
            fake.throttles.sustained = None
            print(
                f"{args.processes} processes x {args.tasks} tasks, one key, "
                f"{args.limit} requests per {args.per:g} s, {args.seconds:g} s each"
            )
            print(f"{'limiter':>10} {'429s':>8} {'gave up':>8} {'completed':>10} {'of budget':>10}")
            rows = []
            if redis is None:
                rows.append(f"{'redis':>10}  skipped: install redis-server and aposthog[redis]")
            else:
                rows.append(await fleet(args, fake, "redis", redis))
            rows.append(await fleet(args, fake, "in-process", ""))
            rows.append(await fleet(args, fake, "none", ""))
            print("\n".join(rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=16.0)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--per", type=float, default=4.0)
    parser.add_argument("--margin", type=float, default=0.4)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("mode", "url", "key", "redis"):
        parser.add_argument(f"--{name}", default="", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a short run (CI): 8 s a row")
    args = parser.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 8.0)
    if args.worker:
        asyncio.run(worker(args))
    else:
        os.environ.setdefault("PYTHONWARNINGS", "error")
        asyncio.run(bench(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
