"""
Throughput of `ph.customer_profile_configs.list()` against plain aiohttp + json.loads.

A FakePostHog runs in a separate process (`python -m aposthog.testing`) serving one page
of 10 customer profile configs. In this process, rounds alternate between:

* aposthog: `await ph.customer_profile_configs.list()` — auth, limiter, retry
  bookkeeping, JSON decoding and structuring into 10 `CustomerProfileConfig` records;
* baseline: `session.get(url)` + `json.loads(body)` with the same headers, no records.

Each trial sends the same number of requests at the same concurrency (32). The machine
is shared and noisy: trials alternate between the two, each pair gives a ratio, and the
median ratio is the result.

    python benchmarks/bench_list.py [--requests 2000] [--rounds 15] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

import aposthog


async def _drive(n: int, concurrency: int, call: Callable[[], Awaitable[int]]) -> float:
    """Run `call` n times, `concurrency` at a time; returns requests per second."""
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            if await call() != 10:
                raise AssertionError("expected a page of 10 records")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def bench(url: str, key: str, requests: int, rounds: int, concurrency: int) -> float:
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    list_url = f"{url}/api/environments/1/customer_profile_configs/"
    async with (
        aposthog.Client(api_key=key, host=url, project_id=1, max_concurrency=concurrency) as ph,
        aiohttp.ClientSession(headers=headers) as session,
    ):
        for i in range(10):
            await ph.customer_profile_configs.create(
                scope="person", content={"properties": ["email", "plan", f"p{i}"]}
            )

        async def with_aposthog() -> int:
            page = await ph.customer_profile_configs.list()
            return len(page.results)

        async def with_aiohttp() -> int:
            async with session.get(list_url) as resp:
                resp.raise_for_status()
                body = json.loads(await resp.read())
            return len(body["results"])

        # Warm both paths (connections, caches, code generation) before measuring.
        await _drive(300, concurrency, with_aposthog)
        await _drive(300, concurrency, with_aiohttp)
        # The machine is shared: short trials, alternating (and alternating who goes
        # first), each pair giving one ratio; the median pair is the result.
        ours: list[float] = []
        theirs: list[float] = []
        for trial in range(rounds):
            pair = [(ours, with_aposthog), (theirs, with_aiohttp)]
            if trial % 2:
                pair.reverse()
            for results, call in pair:
                results.append(await _drive(requests, concurrency, call))
        ratios = sorted(a / b for a, b in zip(ours, theirs, strict=True))
    ratio = statistics.median(ratios)
    print(
        f"{rounds} paired trials of {requests} requests at concurrency {concurrency}, "
        "one page of 10 customer profile configs each"
    )
    print(
        f"throughput (median): aposthog list() {statistics.median(ours):.0f} req/s, "
        f"aiohttp + json.loads {statistics.median(theirs):.0f} req/s"
    )
    print(f"pair ratios: min {ratios[0]:.2f}  median {ratio:.2f}  max {ratios[-1]:.2f}")
    print(f"ratio aposthog/aiohttp = {ratio:.2f}x  (target >= 0.80x)")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=2000, help="requests per trial")
    parser.add_argument("--rounds", type=int, default=15, help="paired trials")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with subprocess.Popen(
        [sys.executable, "-m", "aposthog.testing"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            env = dict(server.stdout.readline().strip().split("=", 1) for _ in range(3))
            asyncio.run(
                bench(
                    env["POSTHOG_HOST"],
                    env["POSTHOG_PERSONAL_API_KEY"],
                    args.requests,
                    args.rounds,
                    args.concurrency,
                )
            )
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
