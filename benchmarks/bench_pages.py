"""
Pages ahead: `prefetch(1)` and the concurrent `to_list()` against reading page after page.

A plain aiohttp.web server (`benchmarks/_server.py`) in another process answers each page
of customer profile configs after 20 ms, as a loaded PostHog might. Two workloads:

* a loop that works 10 ms on every page (an awaited call, say a database write), over 50
  pages: sequential iteration against `prefetch(1)` (target: <= 0.75x the time);
* collecting all 50 pages: `to_list()` against iterating page after page (target: >= 4x
  faster), with plain aiohttp fetching the same pages 16 at a time as the yardstick.

    python benchmarks/bench_pages.py [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_list import start_server

import aposthog

LATENCY_MS = 20
PAGES = 50
PAGE = 10
WORK = 0.010


async def _timed(call: Callable[[], Awaitable[int]], expected: int) -> float:
    started = time.perf_counter()
    got = await call()
    elapsed = time.perf_counter() - started
    if got != expected:
        raise AssertionError(f"expected {expected} records, got {got}")
    return elapsed


async def bench(url: str, rounds: int) -> None:
    key = "phx_benchmark"
    total = PAGES * PAGE
    async with (
        aposthog.Client(api_key=key, host=url, project_id=LATENCY_MS + 1) as ph,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session,
    ):
        listing = ph.customer_profile_configs.list

        async def sequential_with_work() -> int:
            n = 0
            async for page in listing(limit=PAGE).pages():
                n += len(page.results)
                await asyncio.sleep(WORK)
            return n

        async def prefetch_with_work() -> int:
            n = 0
            async for page in listing(limit=PAGE).prefetch(1).pages():
                n += len(page.results)
                await asyncio.sleep(WORK)
            return n

        async def sequential_collect() -> int:
            return len([config async for config in listing(limit=PAGE)])

        async def to_list() -> int:
            return len(await listing(limit=PAGE).to_list())

        base = f"{url}/api/environments/{LATENCY_MS + 1}/customer_profile_configs/"
        gate = asyncio.Semaphore(16)

        async def aiohttp_page(offset: int) -> list[object]:
            async with gate, session.get(f"{base}?limit={PAGE}&offset={offset}") as resp:
                results: list[object] = json.loads(await resp.read())["results"]
                return results

        async def aiohttp_16_at_once() -> int:
            pages = await asyncio.gather(*(aiohttp_page(o) for o in range(0, total, PAGE)))
            return sum(len(p) for p in pages)

        await to_list()  # warm the connections and the code paths
        await aiohttp_16_at_once()
        cases = {
            "sequential, 10 ms work per page": sequential_with_work,
            "prefetch(1), 10 ms work per page": prefetch_with_work,
            "sequential, collecting": sequential_collect,
            "to_list()": to_list,
            "aiohttp + json.loads, 16 at once": aiohttp_16_at_once,
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, call in cases.items():
                times[name].append(await _timed(call, total))
    ms = {name: statistics.median(t) * 1000 for name, t in times.items()}
    print(f"\n{PAGES} pages of {PAGE}, {LATENCY_MS} ms server latency ({rounds} rounds, medians)")
    for name, value in ms.items():
        print(f"  {name:36s} {value:7.0f} ms")
    ahead = ms["prefetch(1), 10 ms work per page"] / ms["sequential, 10 ms work per page"]
    print(f"  prefetch(1) / sequential = {ahead:.2f}x the time  (target <= 0.75x)")
    speedup = ms["sequential, collecting"] / ms["to_list()"]
    print(f"  to_list() is {speedup:.1f}x faster than sequential  (target >= 4x)")
    yardstick = ms["aiohttp + json.loads, 16 at once"] / ms["to_list()"]
    print(f"  to_list() / aiohttp 16 at once, speed ratio = {yardstick:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    server, url = start_server("--exports", "0", "--configs", str(PAGES * PAGE))
    try:
        asyncio.run(bench(url, rounds))
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
