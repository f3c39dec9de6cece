"""
Lists at real sizes: aposthog's `list()` against plain aiohttp + the standard library's
`json.loads`, side by side in one run.

A plain aiohttp.web server (`benchmarks/_server.py`) runs in another process and serves
pre-encoded pages, so its own cost is the same for both sides. Two workloads:

* batch exports: `ph.batch_exports.list(limit=100)` iterated page by page over 1,000
  real-shaped exports (destination config, up to 5 `latest_runs`, timestamps; 227 KB a
  page), two iterations at once; the alternative follows the same `next` URLs with
  `session.get` + `json.loads` and builds no records. Pages per second. Read twice:
  through `pages()` (each page's records built whole, held until the next page), and by
  the usual loop over records, `async for export in ph.batch_exports.list(...)`, which
  builds each record as it takes it, so that a loop letting each go keeps few alive (the
  collector's share falls; its own cost per record, an `async for` step, is the loop's).
* profile configs: `await ph.customer_profile_configs.list()`, one page of 10 small
  records, two at a time; the alternative is `session.get` + `json.loads`. Requests per
  second.

aposthog runs with the standard library's parser and, when orjson is installed (the
`speedups` extra), with orjson too. A third line, the floor, is the alternative plus
building the same records with aposthog's record hooks and nothing else of the client
(no retries, limits, time limits, paginator or typed errors): what any client that hands
out these records costs at least, so the distance from it is the client's own cost.
Below each workload, the garbage collector's share of each variant's CPU time, over all
its trials: records are objects the collector tracks, and part of the distance between
the floor and the alternative is its work.
The machine may be shared and noisy: trials
alternate between the variants (in a rotating order), each trial gives one ratio per
variant against the alternative's trial next to it, and the median ratio is reported,
for wall-clock throughput and for throughput per CPU-second of the client process
(steadier when other processes compete for the cores).

    python benchmarks/bench_list.py [--rounds 25] [--quick]
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
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gc_clock import GCClock

import aposthog
from aposthog import _json

HERE = Path(__file__).resolve().parent
EXPORTS = 1000
CONCURRENCY = 2
PAGE = 100


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `_server.py` in its own process; returns it and its URL."""
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_server.py"), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline().strip()
    if not line.startswith("URL="):
        server.kill()
        raise RuntimeError("the benchmark server did not start")
    return server, line.split("=", 1)[1]


class Rate(float):
    """
    Units per wall-clock second, carrying units per CPU-second of this process, and its
    CPU time with the part of it the garbage collector took.
    """

    per_cpu_second: float
    cpu_seconds: float
    gc_seconds: float


_COLLECTOR = GCClock()


async def _drive(n: int, concurrency: int, call: Callable[[], Awaitable[int]]) -> Rate:
    """Run `call` n times, `concurrency` at a time; units (pages or requests) per second."""
    remaining = n
    done = 0

    async def worker() -> None:
        nonlocal remaining, done
        while remaining > 0:
            remaining -= 1
            done += await call()

    started = time.perf_counter()
    cpu = time.process_time()
    collecting = _COLLECTOR.seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = Rate(done / (time.perf_counter() - started))
    rate.cpu_seconds = max(time.process_time() - cpu, 1e-9)
    rate.per_cpu_second = done / rate.cpu_seconds
    rate.gc_seconds = _COLLECTOR.seconds - collecting
    return rate


def _parsers() -> dict[str, Callable[[bytes | str], Any]]:
    parsers: dict[str, Callable[[bytes | str], Any]] = {"json": _json.stdlib_loads}
    if _json.orjson_loads is not None:
        parsers["orjson"] = _json.orjson_loads
    return parsers


async def _compare(
    title: str,
    unit: str,
    rounds: int,
    ours: Callable[[], Awaitable[Rate]],
    theirs: Callable[[], Awaitable[Rate]],
    floor: Callable[[], Awaitable[Rate]],
    target: float,
    records: Callable[[], Awaitable[Rate]] | None = None,
) -> None:
    """
    Alternate trials; print each parser's figures and ratios against the alternative.
    `records`: the same read as `ours` by a loop over records (stdlib json).
    """
    parsers = _parsers()
    names = ["baseline", "floor", *parsers, *(["records"] if records is not None else [])]
    trials: dict[str, list[Rate]] = {name: [] for name in names}
    for trial in range(rounds):
        order = list(trials)
        order = order[trial % len(order) :] + order[: trial % len(order)]
        for who in order:
            if who == "baseline":
                trials[who].append(await theirs())
                continue
            if who == "floor":
                trials[who].append(await floor())
                continue
            if who == "records":
                assert records is not None
                trials[who].append(await records())
                continue
            _json.loads = parsers[who]
            try:
                trials[who].append(await ours())
            finally:
                _json.loads = _json.stdlib_loads
    base = trials["baseline"]
    print(f"\n{title}  ({rounds} rounds, medians)")
    print(
        f"  {'aiohttp + json.loads:':32s} {statistics.median(base):8.0f} {unit}"
        f"  {statistics.median(r.per_cpu_second for r in base):8.0f} {unit} of CPU"
    )
    gc_shares = {"aiohttp + json.loads": base}
    for name in names[1:]:
        wall = sorted(a / b for a, b in zip(trials[name], base, strict=True))
        cpu = sorted(
            a.per_cpu_second / b.per_cpu_second for a, b in zip(trials[name], base, strict=True)
        )
        label = {
            "floor": "+ records, no client (floor):",
            "json": "aposthog (stdlib json):",
            "records": "aposthog, records loop (stdlib):",
        }.get(name, "aposthog (orjson, speedups):")
        print(
            f"  {label:32s} {statistics.median(trials[name]):8.0f} {unit}"
            f"  {statistics.median(r.per_cpu_second for r in trials[name]):8.0f} {unit} of CPU"
            f"   ratio {statistics.median(wall):.2f} wall (min {wall[0]:.2f}, max {wall[-1]:.2f}),"
            f" {statistics.median(cpu):.2f} CPU"
            + (f"   target >= {target:.2f}" if name in ("json", "records") else "")
        )
        gc_shares[label.rstrip(":")] = trials[name]
    # Records are objects the cyclic collector tracks (every attrs instance is), where
    # the JSON objects they replace mostly are not (dicts of scalars): more collections,
    # and more of the page alive when one runs. The collector's time is part of each
    # figure above; here it is apart, over all trials (a full collection comes seldom,
    # and takes milliseconds).
    print(
        "  the garbage collector's share of the CPU: "
        + ", ".join(
            f"{name} {sum(r.gc_seconds for r in rates) / sum(r.cpu_seconds for r in rates):.1%}"
            for name, rates in gc_shares.items()
        )
    )
    over = sorted(a / b for a, b in zip(trials["json"], trials["floor"], strict=True))
    print(
        f"  aposthog (stdlib json) / floor: {statistics.median(over):.2f} wall"
        f" (min {over[0]:.2f}, max {over[-1]:.2f}): the client's own share of the gap"
    )


async def bench(url: str, rounds: int, quick: bool) -> None:
    # The floor builds the same records with aposthog's hooks and nothing else.
    from aposthog._converter import structure_records
    from aposthog.models import BatchExport, CustomerProfileConfig

    key = "phx_benchmark"
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    # Two at once: enough to keep the client busy while the server answers, and on a
    # small machine more only measures the scheduler (throughput falls with concurrency
    # for plain aiohttp too).
    iterations = CONCURRENCY
    async with (
        aposthog.Client(api_key=key, host=url, project_id=1, max_concurrency=CONCURRENCY) as ph,
        aiohttp.ClientSession(headers=headers) as session,
    ):
        first = f"{url}/api/environments/1/batch_exports/?limit={PAGE}"

        async def iterate_ours() -> int:
            pages = 0
            async for page in ph.batch_exports.list(limit=PAGE).pages():
                pages += len(page.results) > 0
            return pages

        async def iterate_records() -> int:
            """The usual loop: each export in turn (built as the loop takes it)."""
            exports = 0
            async for _export in ph.batch_exports.list(limit=PAGE):
                exports += 1
            return exports // PAGE

        async def iterate_plain(item_type: Any = None) -> int:
            """The alternative; with `item_type`, the floor (the records built too)."""
            pages = 0
            next_url: str | None = first
            while next_url is not None:
                async with session.get(next_url) as resp:
                    resp.raise_for_status()
                    body = json.loads(await resp.read())
                # The floor's records are held until the next page's are built, as a
                # loop over pages holds them.
                held = (
                    body["results"]
                    if item_type is None
                    else structure_records(body["results"], item_type)
                )
                pages += len(held) > 0
                next_url = body["next"]
            return pages

        configs = f"{url}/api/environments/1/customer_profile_configs/"

        async def configs_ours() -> int:
            page = await ph.customer_profile_configs.list()
            return len(page.results) // 10

        async def configs_plain(item_type: Any = None) -> int:
            """The alternative; with `item_type`, the floor (the records built too)."""
            async with session.get(configs) as resp:
                resp.raise_for_status()
                body = json.loads(await resp.read())
            if item_type is None:
                return len(body["results"]) // 10
            return len(structure_records(body["results"], item_type)) // 10

        def iterate_theirs() -> Awaitable[int]:
            return iterate_plain()

        def iterate_floor() -> Awaitable[int]:
            return iterate_plain(BatchExport)

        def configs_theirs() -> Awaitable[int]:
            return configs_plain()

        def configs_floor() -> Awaitable[int]:
            return configs_plain(CustomerProfileConfig)

        assert await iterate_ours() == EXPORTS // PAGE == await iterate_theirs()
        assert await iterate_records() == EXPORTS // PAGE
        assert await iterate_floor() == EXPORTS // PAGE
        requests = 500 if quick else 2000
        # Warm both paths (connections, caches, code generation) before measuring.
        await _drive(iterations, iterations, iterate_ours)
        await _drive(iterations, iterations, iterate_theirs)
        await _drive(300, CONCURRENCY, configs_ours)
        await _drive(300, CONCURRENCY, configs_theirs)
        await _drive(iterations, iterations, iterate_floor)
        await _drive(iterations, iterations, iterate_records)
        await _drive(300, CONCURRENCY, configs_floor)
        await _compare(
            f"batch_exports.list(): pages of {PAGE} real-shaped exports, "
            f"{iterations} iterations at once",
            "pages/s",
            rounds,
            lambda: _drive(iterations * 3, iterations, iterate_ours),
            lambda: _drive(iterations * 3, iterations, iterate_theirs),
            lambda: _drive(iterations * 3, iterations, iterate_floor),
            0.65,
            records=lambda: _drive(iterations * 3, iterations, iterate_records),
        )
        await _compare(
            f"customer_profile_configs.list(): one page of 10 records, {CONCURRENCY} at once",
            "req/s",
            rounds,
            lambda: _drive(requests, CONCURRENCY, configs_ours),
            lambda: _drive(requests, CONCURRENCY, configs_theirs),
            lambda: _drive(requests, CONCURRENCY, configs_floor),
            0.90,
        )


def _cattrs_gen_converter() -> Any:
    """
    aposthog's converter with cattrs' own record hooks: `cattrs.gen` without detailed
    validation, on the same scalar, optional, JSON and enum hooks (what the generated
    record code is measured against).
    """
    import attrs
    import cattrs

    from aposthog import _converter

    conv = _converter.make_converter()

    def factory(cls: Any) -> Any:
        known = frozenset(a.name for a in attrs.fields(cls)) - {_converter.EXTRA_FIELDS}
        base = cattrs.gen.make_dict_structure_fn(
            cls,
            conv,
            _cattrs_detailed_validation=False,
            extra_fields=cattrs.override(omit=True),
        )

        def structure(data: Any, _: Any) -> Any:
            instance = base(data, cls)
            if not known.issuperset(data):
                extra = _converter._extra_fields(data, known)
                object.__setattr__(instance, _converter.EXTRA_FIELDS, extra)
            return instance

        return structure

    conv.register_structure_hook_factory(_converter._is_record, factory)
    return conv


def bench_structuring(rounds: int) -> None:
    """Structuring one parsed page of 100 exports: generated code against cattrs.gen."""
    import timeit

    from _fixtures import batch_export

    from aposthog._converter import converter
    from aposthog.models import BatchExport

    raw = json.dumps([batch_export(i) for i in range(PAGE)]).encode()
    data = json.loads(raw)
    cattrs_gen = _cattrs_gen_converter()
    list_type = list[BatchExport]
    assert cattrs_gen.structure(data, list_type) == converter.structure(data, list_type)
    cases = {
        "json.loads (the page's bytes)": lambda: json.loads(raw),
        "cattrs.gen hooks": lambda: cattrs_gen.structure(data, list_type),
        "aposthog's generated hooks": lambda: converter.structure(data, list_type),
    }
    best = {
        name: min(timeit.repeat(call, number=10, repeat=rounds * 3)) / 10 * 1000
        for name, call in cases.items()
    }
    # timeit turns the garbage collector off while it times: these are the costs of the
    # code alone (the list benchmark's figures include the collector's share).
    print(
        f"\nstructuring a parsed page of {PAGE} batch exports (best of {rounds * 3}, collector off)"
    )
    for name, ms in best.items():
        print(f"  {name:32s} {ms:6.2f} ms")
    ratio = best["cattrs.gen hooks"] / best["aposthog's generated hooks"]
    print(f"  cattrs.gen / generated = {ratio:.2f}x the time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rounds", type=int, default=None, help="trials of each variant")
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    args = parser.parse_args()
    # Many short paired trials: a disturbance on this shared machine spoils a few pairs,
    # and the median of the pair ratios stays put.
    rounds = args.rounds or (5 if args.quick else 25)
    server, url = start_server("--exports", str(EXPORTS), "--configs", "10")
    try:
        bench_structuring(rounds)
        asyncio.run(bench(url, rounds, args.quick))
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
