"""
What the rate limiter costs while the budget is far: `list()` throughput with limits
against the same client without them.

A FakePostHog runs in a separate process (`python -m aposthog.testing`). In this
process, trials alternate between three clients of it:

* off: `rate_limits=None`;
* in-process: PostHog Cloud's two API windows with limits no trial comes near, so every
  request asks the limiter (and is counted) but never waits;
* redis (when `redis-server` is installed): the same windows in a `RedisRateLimitStore`,
  one Lua script per request on a local redis-server.

Trials alternate (the machine is shared and noisy); each pair gives a ratio against
"off", and the median ratio is the result.

    python benchmarks/bench_limiter.py [--requests 2000] [--rounds 11] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from contextlib import AsyncExitStack

from _drive import drive
from _redis import redis_server

import aposthog

FAR = aposthog.RateLimits(
    api=(aposthog.Rate(10**9, per=60), aposthog.Rate(10**9, per=3600)), margin=0.5
)


async def acquire_cost(redis: str | None) -> dict[str, float]:
    """Microseconds per `acquire()` of a limiter alone, no HTTP: the limiter's own cost."""
    costs: dict[str, float] = {}
    stores: dict[str, aposthog.RateLimitStore] = {"in-process": aposthog.InProcessRateLimitStore()}
    if redis is not None:
        stores["redis"] = aposthog.RedisRateLimitStore(redis)
    for name, store in stores.items():
        limiter = aposthog.RateLimiter(FAR, store, "bench")
        n = 50_000 if name == "in-process" else 5_000
        best = float("inf")
        for _ in range(5):  # the best of five: the machine is shared
            started = time.perf_counter()
            for _ in range(n):
                await limiter.acquire("api")
            best = min(best, (time.perf_counter() - started) / n * 1e6)
        costs[name] = best
        await limiter.aclose()
    return costs


async def bench(url: str, key: str, redis: str | None, args: argparse.Namespace) -> None:
    costs = await acquire_cost(redis)
    async with AsyncExitStack() as stack:
        clients = {
            "off": aposthog.Client(api_key=key, host=url, project_id=1, rate_limits=None),
            "in-process": aposthog.Client(api_key=key, host=url, project_id=1, rate_limits=FAR),
        }
        if redis is not None:
            store = aposthog.RedisRateLimitStore(redis)
            clients["redis"] = aposthog.Client(
                api_key=key, host=url, project_id=1, rate_limits=FAR, rate_limit_store=store
            )
        for client in clients.values():
            await stack.enter_async_context(client)
        await clients["off"].customer_profile_configs.create(scope="person")
        calls = {name: c.customer_profile_configs.list for name, c in clients.items()}
        for call in calls.values():  # warm connections and caches
            await drive(300, args.concurrency, call)
        rates: dict[str, list[float]] = {name: [] for name in calls}
        for trial in range(args.rounds):
            order = list(calls)[trial % len(calls) :] + list(calls)[: trial % len(calls)]
            for name in order:
                rates[name].append(await drive(args.requests, args.concurrency, calls[name]))
    print(
        f"{args.rounds} alternating trials of {args.requests} list() calls at concurrency "
        f"{args.concurrency}; limits never near"
    )
    for name, results in rates.items():
        ratios = sorted(a / b for a, b in zip(results, rates["off"], strict=True))
        print(
            f"{name:>11}: {statistics.median(results):>6.0f} req/s   "
            f"ratio to off: median {statistics.median(ratios):.2f} "
            f"(min {ratios[0]:.2f}, max {ratios[-1]:.2f})"
        )
    per_request = 1e6 / statistics.median(rates["off"])
    print(f"a list() call costs this process {per_request:.0f} us; acquire() alone (no HTTP):")
    for name, cost in costs.items():
        print(f"{name:>11}: {cost:>8.1f} us per acquire() ({cost / per_request:.1%} of a call)")
    if redis is None:
        print("      redis: skipped (install redis-server and aposthog[redis])")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=2000, help="requests per trial")
    parser.add_argument("--rounds", type=int, default=11, help="trials of each client")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = min(args.requests, 300), min(args.rounds, 3)
    with (
        redis_server() as redis,
        subprocess.Popen(
            [sys.executable, "-m", "aposthog.testing"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as server,
    ):
        try:
            assert server.stdout is not None
            env = dict(server.stdout.readline().strip().split("=", 1) for _ in range(3))
            asyncio.run(bench(env["POSTHOG_HOST"], env["POSTHOG_PERSONAL_API_KEY"], redis, args))
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
