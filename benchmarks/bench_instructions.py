"""
Instruction counts of the list and stream workloads, which this machine's noise hides.

On a shared machine, the wall-clock and CPU ratios of `bench_list.py` and
`bench_streams.py` move by 0.1 from one run to the next, as much as the distance to
their targets. The instructions a process executes do not depend on what else the
machine runs: here each variant runs in a process of its own under valgrind's callgrind,
which counts only the measured part (the process calls `os.getppid()` just before and
just after it, and callgrind dumps its counts at each call: `--dump-before=os_getppid`).
Each side warms up first (connections, generated record code, caches) outside that part,
with callgrind's instrumentation off until then (`--instr-atstart=no`, turned on by
`callgrind_control`): start-up and warm-up run about six times faster, and the measured
part counts within a hundred or so instructions of a run instrumented throughout. The
server is `_server.py` in another process, not counted. Instructions are not time (a
cache miss costs no instruction), but the same variant counts the same from run to run,
within a fraction of a percent. Beside each count, the cyclic garbage collector's
share of it: the calls of CPython's `gc_collect_main`, all they called included (the
collections are part of each variant's cost; where one falls depends on how many objects
a variant made before, so each variant starts its count just after a `gc.collect()`).

* profile configs: `await ph.customer_profile_configs.list()`, one page of 10 records,
  two requests at a time, against `session.get` + `json.loads` (the alternative), the
  alternative building the records with aposthog's hooks (the floor), and aposthog with
  the standard library's parser and with orjson. Instructions per request; the ratio is
  the alternative's count over the variant's (so, as throughput, higher is faster).
  Target >= 0.90.
* batch exports: the list of 1,000 read in pages of 100 (227 KB each), through `pages()`
  and by a loop over the records, against the same `next` URLs read with `session.get`
  + `json.loads`. Instructions per page. Target >= 0.65.
* `text_deltas()` flatness: the short answers and the long answer of `bench_streams.py`,
  recorded once, cut into 16 KiB chunks and replayed to a `ConversationStream` and to
  the floor of reading each event once (the SSE decoder and one JSON parse per event).
  The client's own instructions per event (the stream's minus the floor's), and the long
  answer's over the short answers' (flat: about 1).

Without valgrind on PATH it says so and exits 0.

    python benchmarks/bench_instructions.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fixtures import answer_events
from bench_list import start_server
from bench_streams import LONG, SHORT, _floor_parser, _replay_floor, _replay_ours, record_answer

import aposthog
from aposthog import _json

HERE = Path(__file__).resolve()
KEY = "phx_benchmark"
PAGE = 100
EXPORT_PAGES = 10  # 1,000 exports in pages of 100
CONCURRENCY = 2


def _checkpoint() -> None:
    """Where callgrind dumps its counts (`--dump-before=os_getppid`)."""
    os.getppid()


def _instrument() -> None:
    """
    Turn callgrind's instrumentation on: the process starts with it off
    (`--instr-atstart=no`), so its start-up and warm-up run about six times faster and
    count nothing. `callgrind_control` asks valgrind through `vgdb`, which valgrind
    serves while the process executes code, hence the short sleeps, not one blocking
    wait.
    """
    control = subprocess.Popen(
        ["callgrind_control", "--instr=on", str(os.getpid())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while control.poll() is None:
        time.sleep(0.005)
    assert control.stderr is not None
    if control.returncode != 0:
        raise SystemExit(f"callgrind_control failed: {control.stderr.read()[-500:]}")


async def _measure(warm: Callable[[], Awaitable[None]], run: Callable[[], Awaitable[None]]) -> None:
    await warm()
    _instrument()
    # Every side starts its count with the collector's counters at zero, so the
    # collections its count holds (a full one is some millions of instructions) follow
    # from its own work, not from what its warm-up happened to leave.
    gc.collect()
    _checkpoint()
    await run()
    _checkpoint()


def _use_parser(variant: str) -> None:
    if variant.endswith("orjson"):
        if _json.orjson_loads is None:
            raise SystemExit("orjson is not installed")
        _json.loads = _json.orjson_loads
    else:
        _json.loads = _json.stdlib_loads


async def _child_lists(workload: str, variant: str, units: int, url: str) -> None:
    from aposthog._converter import structure_records
    from aposthog.models import BatchExport, CustomerProfileConfig

    _use_parser(variant)
    headers = {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}
    async with (
        aposthog.Client(api_key=KEY, host=url, project_id=1, max_concurrency=CONCURRENCY) as ph,
        aiohttp.ClientSession(headers=headers) as session,
    ):
        seen = 0  # records read (or, by the alternative, JSON objects), checked at the end

        async def plain(path: str, item_type: Any) -> str | None:
            nonlocal seen
            async with session.get(path) as resp:
                resp.raise_for_status()
                body = json.loads(await resp.read())
            results = body["results"]
            if variant == "floor":
                results = structure_records(results, item_type)
            seen += len(results)
            next_url: str | None = body["next"]
            return next_url

        async def one_config() -> None:
            nonlocal seen
            if variant in ("alternative", "floor"):
                path = f"{url}/api/environments/1/customer_profile_configs/"
                await plain(path, CustomerProfileConfig)
            else:
                page = await ph.customer_profile_configs.list()
                seen += len(page.results)  # after the await: the two workers share `seen`

        async def every_export() -> None:
            nonlocal seen
            if variant in ("alternative", "floor"):
                next_url: str | None = f"{url}/api/environments/1/batch_exports/?limit={PAGE}"
                while next_url is not None:
                    next_url = await plain(next_url, BatchExport)
            elif variant.startswith("records loop"):
                async for _ in ph.batch_exports.list(limit=PAGE):
                    seen += 1
            else:
                async for page in ph.batch_exports.list(limit=PAGE).pages():
                    for _ in page:
                        seen += 1

        async def repeat(call: Callable[[], Awaitable[None]], times: int) -> None:
            nonlocal seen
            seen = 0

            async def worker(share: int) -> None:
                for _ in range(share):
                    await call()

            shares = [times // CONCURRENCY + (i < times % CONCURRENCY) for i in range(CONCURRENCY)]
            await asyncio.gather(*(worker(share) for share in shares))

        if workload == "configs":
            await _measure(lambda: repeat(one_config, 40), lambda: repeat(one_config, units))
            expected = 10 * units
        else:
            lists = units // EXPORT_PAGES
            await _measure(lambda: repeat(every_export, 2), lambda: repeat(every_export, lists))
            expected = PAGE * units
        if seen != expected:
            raise SystemExit(f"{workload}, {variant}: {seen} records read, not {expected}")


async def _child_replay(variant: str, shape_name: str, passes: int, url: str) -> None:
    from tests.stream_helpers import Replay  # the tests' stand-in for a response

    shape = SHORT if shape_name == "short" else LONG
    events = answer_events(*shape)
    chunks = await record_answer(url, shape)
    parse = _floor_parser()

    async def open_stream(*_: Any, **__: Any) -> Replay:
        return Replay(chunks)

    async with aposthog.Client(api_key=KEY, host=url, project_id=1) as ph:
        ph._api.pipeline.transport.open_stream = open_stream  # type: ignore[method-assign,assignment]

        async def read(times: int) -> None:
            for _ in range(times):
                if variant == "floor":
                    _replay_floor(chunks, events, parse)
                else:
                    await _replay_ours(ph, events)

        await _measure(lambda: read(2), lambda: read(passes))


def _child(args: list[str]) -> None:
    kind, variant, size, units, url = args
    if kind == "replay":
        asyncio.run(_child_replay(variant, size, int(units), url))
    else:
        asyncio.run(_child_lists(kind, variant, int(units), url))


# ------------------------------------------------------------------------- parent


def _dump_name(job: tuple[str, str, str, int]) -> str:
    """The start of the name of `job`'s callgrind dumps (the process id and part follow)."""
    kind, variant, size, _ = job
    return "-".join((kind, variant.replace(" ", "_"), size))


def _count(job: tuple[str, str, str, int], url: str, folder: str) -> subprocess.Popen[str]:
    kind, variant, size, units = job
    name = _dump_name(job)
    return subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",  # turned on after the warm-up: see _instrument()
            "--dump-before=os_getppid",
            f"--callgrind-out-file={folder}/{name}.%p",
            sys.executable,
            str(HERE),
            "--child",
            kind,
            variant,
            size,
            str(units),
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


class Count(NamedTuple):
    """A variant's instructions in its measured part, and the cyclic collector's share."""

    total: int
    collector: int


def _measured(job: tuple[str, str, str, int], folder: str) -> Count:
    """The instructions between the two checkpoints: the second of callgrind's dumps."""
    name = _dump_name(job)
    parts = sorted(glob.glob(f"{folder}/{name}.*.*"))
    if [path.rpartition(".")[2] for path in parts] != ["1", "2"]:
        # One dump per checkpoint, nothing else: a missed or extra one would shift the
        # measured part.
        raise RuntimeError(f"{name}: callgrind dumped {len(parts)} parts, not 2")
    before, part = parts
    with open(part) as dump:
        total = next((int(line.split()[1]) for line in dump if line.startswith("summary:")), None)
    if total is None:
        raise RuntimeError(f"no summary in {part}")
    return Count(total, _collector(before, part))


def _collector(before: str, part: str) -> int:
    """
    The instructions of the cyclic collector's collections in dump `part`: what the calls
    of CPython's `gc_collect_main` cost, all they called included. Callgrind names a
    function once, where it first appears (`cfn=(12) name`, then `cfn=(12)`), so the
    dump before `part` is read for the names too.
    """
    names: dict[str, str] = {}
    collector = 0
    for path in (before, part):
        callee = ""
        inclusive = False  # the next cost line is a call's, callee included
        with open(path) as dump:
            for line in dump:
                key, _, value = line.partition("=")
                if key in ("fn", "cfn"):
                    ref, _, text = value.strip().partition(" ")
                    if text:
                        names[ref] = text
                    callee = names.get(ref, "").split("'")[0] if key == "cfn" else ""
                elif key == "calls":
                    inclusive = True
                elif inclusive and line[:1] and line[0] in "0123456789+-*":
                    inclusive = False
                    fields = line.split()
                    if path == part and callee == "gc_collect_main" and len(fields) > 1:
                        collector += int(fields[1])
    return collector


def _run_all(jobs: list[tuple[str, str, str, int]], url: str) -> dict[tuple[str, str, str], Count]:
    counts: dict[tuple[str, str, str], Count] = {}
    with tempfile.TemporaryDirectory() as folder:
        pending = list(jobs)
        running: list[tuple[tuple[str, str, str, int], subprocess.Popen[str]]] = []
        while pending or running:
            while pending and len(running) < (os.cpu_count() or 1):
                job = pending.pop(0)
                running.append((job, _count(job, url, folder)))
            job, process = running.pop(0)
            _, errors = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"{job} failed under valgrind:\n{errors[-2000:]}")
            counts[job[:3]] = _measured(job, folder)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="fewer units (CI)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return 0
    print("\ninstruction counts (valgrind's callgrind)")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("  skipped: valgrind is not installed (`apt-get install valgrind`)")
        return 0
    requests, exports, passes = (
        (100, 2 * EXPORT_PAGES, 1) if args.quick else (400, 4 * EXPORT_PAGES, 2)
    )
    parsers = ["json", *(["orjson"] if _json.orjson_loads is not None else [])]
    lists = ["alternative", "floor", *(f"aposthog {p}" for p in parsers)]
    jobs = [("configs", variant, "page", requests) for variant in lists]
    jobs += [("exports", variant, "page", exports) for variant in lists]
    jobs.append(("exports", "records loop json", "page", exports))
    jobs += [
        ("replay", variant, size, passes)
        for variant in ("floor", "aposthog")
        for size in ("short", "long")
    ]
    server, url = start_server("--exports", "1000", "--configs", "10")
    try:
        counts = _run_all(jobs, url)
    finally:
        server.terminate()
        server.wait(timeout=10)
    _report(counts, requests, exports, passes)
    return 0


_LABELS = {
    "alternative": "aiohttp + json.loads",
    "floor": "+ records, no client (floor)",
    "aposthog json": "aposthog (stdlib json)",
    "aposthog orjson": "aposthog (orjson, speedups)",
    "records loop json": "aposthog, records loop (stdlib)",
}


def _report(
    counts: dict[tuple[str, str, str], Count], requests: int, pages: int, passes: int
) -> None:
    targets = {"configs": 0.90, "exports": 0.65}
    for kind, title, units, unit in (
        ("configs", "profile configs, one page of 10 records", requests, "request"),
        ("exports", "batch exports, pages of 100", pages, "page"),
    ):
        alternative = counts[(kind, "alternative", "page")].total / units
        floor = counts[(kind, "floor", "page")].total / units
        print(
            f"  {title}: instructions per {unit} (ratio: the alternative's over each;"
            " collector: the cyclic garbage collector's share)"
        )
        for (k, variant, _), count in counts.items():
            if k != kind:
                continue
            each = count.total / units
            label = _LABELS[variant]
            note = f"  target >= {targets[kind]:.2f}" if variant.endswith(" json") else ""
            mine = f"  own {each - floor:+,.0f}" if variant not in ("alternative", "floor") else ""
            print(
                f"    {label:34s} {each:12,.0f}   ratio {alternative / each:.3f}"
                f"  collector {count.collector / count.total:5.1%}{mine}{note}"
            )
    own: dict[str, float] = {}
    for size, shape in (("short", SHORT), ("long", LONG)):
        events = answer_events(*shape) * passes
        ours, floor_count = counts[("replay", "aposthog", size)], counts[("replay", "floor", size)]
        own[size] = (ours.total - floor_count.total) / events
        floor = floor_count.total / events
        print(
            f"  text_deltas(), {size} {'answers' if size == 'short' else 'answer'} replayed:"
            f" reading each event once {floor:,.0f} per event, the client's own {own[size]:,.0f}"
        )
    print(f"  flatness long/short {own['long'] / own['short']:.2f} (flat: about 1)")


if __name__ == "__main__":
    sys.exit(main())
