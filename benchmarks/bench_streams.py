"""
PostHog AI streams: `ConversationStream` against raw aiohttp + `aposthog.sse` + `json.loads`
on the same bytes, from a plain aiohttp.web server in another process.

* One stream, events per second: a whole answer sent at once (the conversation event,
  the human echo, assistant messages as cumulative snapshots and their final messages,
  updates, keepalives). aposthog reads it through `text_deltas()` (typed events,
  de-duplication and deltas included); raw reads the chunks, decodes them with
  `aposthog.sse.SSEDecoder` and parses each event's JSON. Short answers (20 messages of
  50 snapshots) for the target (>= 0.6x), and one long answer (2,000 snapshots) to see
  that the client's own cost per event stays flat as the answer grows. That cost is
  measured twice: over raw, and over the floor of reading each event once (the chunks,
  the decoder's raw data bytes and one `orjson.loads`, or `json.loads` without orjson),
  which is what "the client adds no work beyond reading each snapshot once" compares
  against; the long answer's cost over the short answer's is printed as a ratio (flat:
  about 1, or below). Over a socket, how the kernel cuts a long answer into chunks
  changes from one connection to the next, and with it the floor (by up to 2x), so the
  flatness is measured a second time in-process: both answers recorded once, cut into
  the same 16 KiB chunks, and replayed to the floor and to a `ConversationStream` whose
  transport hands out those chunks (the benchmark replaces `Transport.open_stream`;
  everything above it is the client's own path). `--no-orjson` runs every side without
  orjson.
* Many streams at one event a second (default 1,000 for 30 s): aposthog and raw each in
  their own process, at the same time, on the same server. Each event carries the time
  it was written; the latency is taken when the consumer gets it. Printed per side:
  events received of those sent, p50/p99/max latency, memory per open stream (resident
  memory after every stream is open, minus before, and the objects the garbage collector
  tracks for each), CPU share, and the garbage collector's share of that CPU. Targets:
  every event, p99 <= 2x raw, max <= 5x raw, <= 32 KB per stream, CPU <= 1.3x raw.

    python benchmarks/bench_streams.py [--streams 1000] [--seconds 30] [--quick] [--no-orjson]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

if "--no-orjson" in sys.argv:
    sys.modules["orjson"] = None  # type: ignore[assignment]  # as if it were not installed

from _fixtures import answer_events
from _gc_clock import GCClock
from bench_list import start_server

import aposthog
from aposthog.sse import SSEDecoder

KEY = "phx_benchmark"
SHORT = (20, 50)
LONG = (1, 2000)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


# ----------------------------------------------------------------- one stream


class Rate(float):
    """Events per wall-clock second, carrying events per CPU-second of this process."""

    per_cpu_second: float


def _rate(events: int, started: float, cpu: float) -> Rate:
    rate = Rate(events / (time.perf_counter() - started))
    rate.per_cpu_second = events / max(time.process_time() - cpu, 1e-9)
    return rate


async def _one_stream_ours(ph: aposthog.Client, shape: tuple[int, int]) -> Rate:
    started, cpu = time.perf_counter(), time.process_time()
    async with ph.conversations.create(f"burst {shape[0]} {shape[1]}") as stream:
        async for _ in stream.text_deltas():
            pass
    return _rate(answer_events(*shape), started, cpu)


async def _one_stream_raw(session: aiohttp.ClientSession, url: str, shape: tuple[int, int]) -> Rate:
    started, cpu = time.perf_counter(), time.process_time()
    events = 0
    decoder = SSEDecoder()
    body = {"content": f"burst {shape[0]} {shape[1]}", "conversation": None}
    async with session.post(url, json=body) as resp:
        async for chunk in resp.content.iter_any():
            for event in decoder.feed(chunk):
                json.loads(event.data)
                events += 1
    if events != answer_events(*shape):
        raise AssertionError(f"raw read {events} events")
    return _rate(events, started, cpu)


def _floor_parser() -> Any:
    try:
        import orjson
    except ImportError:
        return lambda data: json.loads(data.decode("utf-8", "replace"))
    return orjson.loads


async def _one_stream_floor(
    session: aiohttp.ClientSession, url: str, shape: tuple[int, int], parse: Any
) -> Rate:
    started, cpu = time.perf_counter(), time.process_time()
    events = 0
    decoder = SSEDecoder()
    body = {"content": f"burst {shape[0]} {shape[1]}", "conversation": None}
    async with session.post(url, json=body) as resp:
        async for chunk in resp.content.iter_any():
            for _, data in decoder.feed_wire(chunk):
                parse(data)
                events += 1
    if events != answer_events(*shape):
        raise AssertionError(f"the floor read {events} events")
    return _rate(events, started, cpu)


async def one_stream(url: str, rounds: int) -> None:
    stream_url = f"{url}/api/environments/1/conversations/"
    async with (
        aposthog.Client(api_key=KEY, host=url, project_id=1) as ph,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session,
    ):
        parse = _floor_parser()
        print("\none stream: events per second (medians of", rounds, "rounds)")
        per_event: dict[str, tuple[float, float, float]] = {}
        # The client's own CPU per event over the floor, one figure per round: the three
        # sides of a round run back to back, so a change in the machine's state between
        # rounds cancels out of each difference (the difference of the medians does not).
        own: dict[str, float] = {}
        for label, shape in (("short answers", SHORT), ("one long answer", LONG)):
            sides: list[tuple[list[Rate], Any]] = [
                ([], lambda s=shape: _one_stream_ours(ph, s)),
                ([], lambda s=shape: _one_stream_raw(session, stream_url, s)),
                ([], lambda s=shape: _one_stream_floor(session, stream_url, s, parse)),
            ]
            for _ in range(2):  # warm every path
                for _results, call in sides:
                    await call()
            for i in range(rounds):
                for results, call in sides[i % 3 :] + sides[: i % 3]:
                    results.append(await call())
            ours, raw, floor = (results for results, _ in sides)
            mine, theirs = statistics.median(ours), statistics.median(raw)
            mine_cpu = statistics.median(r.per_cpu_second for r in ours)
            theirs_cpu = statistics.median(r.per_cpu_second for r in raw)
            floor_cpu = statistics.median(r.per_cpu_second for r in floor)
            per_event[label] = (1e6 / mine_cpu, 1e6 / theirs_cpu, 1e6 / floor_cpu)
            own[label] = statistics.median(
                1e6 / a.per_cpu_second - 1e6 / b.per_cpu_second
                for a, b in zip(ours, floor, strict=True)
            )
            print(
                f"  {label} ({shape[0]} x {shape[1]} snapshots, {answer_events(*shape)} events):\n"
                f"    aposthog {mine:8.0f}/s ({mine_cpu:8.0f} per CPU-s),"
                f" aiohttp + sse + json.loads {theirs:8.0f}/s ({theirs_cpu:8.0f} per CPU-s)\n"
                f"    ratio {mine / theirs:.2f} wall, {mine_cpu / theirs_cpu:.2f} CPU"
                + ("  (target >= 0.60)" if shape == SHORT else "")
            )
        short, long = per_event["short answers"], per_event["one long answer"]
        print(
            f"  the client's own CPU per event over raw: {short[0] - short[1]:.1f} us (short"
            f" answers), {long[0] - long[1]:.1f} us (long answer)"
        )
        own_short, own_long = own["short answers"], own["one long answer"]
        print(
            f"  over reading each event once ({short[2]:.1f} and {long[2]:.1f} us/event),"
            f" median of the rounds' differences: {own_short:.1f} us (short),"
            f" {own_long:.1f} us (long); flatness long/short {own_long / own_short:.2f}"
            " (flat: about 1 or below)"
        )


REPLAY_CHUNK = 16384


async def _replay_ours(ph: aposthog.Client, events: int) -> float:
    cpu = time.process_time()
    async with ph.conversations.create("replayed") as stream:
        async for _ in stream.text_deltas():
            pass
    return (time.process_time() - cpu) / events * 1e6


def _replay_floor(chunks: list[bytes], events: int, parse: Any) -> float:
    cpu = time.process_time()
    decoder = SSEDecoder()
    for chunk in chunks:
        for _, data in decoder.feed_wire(chunk):
            parse(data)
    return (time.process_time() - cpu) / events * 1e6


async def record_answer(url: str, shape: tuple[int, int]) -> list[bytes]:
    """The server's answer of `shape`, read whole and cut into `REPLAY_CHUNK` chunks."""
    body = {"content": f"burst {shape[0]} {shape[1]}", "conversation": None}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session,
        session.post(f"{url}/api/environments/1/conversations/", json=body) as resp,
    ):
        raw = await resp.read()
    return [raw[i : i + REPLAY_CHUNK] for i in range(0, len(raw), REPLAY_CHUNK)]


async def replayed_flatness(url: str, rounds: int) -> None:
    """The client's own CPU per event over the floor, on identical chunks, no socket."""
    recorded = {shape: await record_answer(url, shape) for shape in (SHORT, LONG)}
    replaying: list[list[bytes]] = []

    # The tests' stand-in for a response (imported here: the many-streams processes
    # import this module and need none of the tests' imports).
    from tests.stream_helpers import Replay

    async def open_stream(*_: Any, **__: Any) -> Replay:
        return Replay(replaying[-1])

    parse = _floor_parser()
    own: dict[tuple[int, int], float] = {}
    async with aposthog.Client(api_key=KEY, host=url, project_id=1) as ph:
        ph._api.pipeline.transport.open_stream = open_stream  # type: ignore[method-assign,assignment]
        for shape, chunks in recorded.items():
            events = answer_events(*shape)
            replaying.append(chunks)
            differences = []
            for i in range(rounds + 2):  # the first two warm both paths
                if i % 2:
                    floor = _replay_floor(chunks, events, parse)
                    mine = await _replay_ours(ph, events)
                else:
                    mine = await _replay_ours(ph, events)
                    floor = _replay_floor(chunks, events, parse)
                if i >= 2:
                    differences.append(mine - floor)
            own[shape] = statistics.median(differences)
    print(
        f"  replayed in-process ({REPLAY_CHUNK // 1024} KiB chunks, no socket, {rounds} rounds):"
        f" the client's own CPU per event over reading each event once {own[SHORT]:.1f} us"
        f" (short), {own[LONG]:.1f} us (long); flatness long/short"
        f" {own[LONG] / own[SHORT]:.2f} (flat: about 1 or below)"
    )


# ----------------------------------------------------------------- many streams


async def _many(role: str, url: str, streams: int, seconds: float) -> dict[str, Any]:
    gc_clock = GCClock()
    latencies: list[float] = []
    received = [0] * streams
    opened = asyncio.Event()
    first_tick = 0
    content = f"tick {seconds}"

    def got(index: int, text: str) -> None:
        nonlocal first_tick
        now = time.monotonic()
        latencies.append(now - float(text.rsplit("t=", 1)[1]))
        received[index] += 1
        if received[index] == 1:
            first_tick += 1
            if first_tick == streams:
                opened.set()

    if role == "ours":
        client: Any = aposthog.Client(api_key=KEY, host=url, project_id=1)

        async def read(index: int) -> None:
            async with client.conversations.create(content) as stream:
                async for delta in stream.text_deltas():
                    if delta != ".":  # the final message's tail
                        got(index, delta)

        async with client:
            await client.customer_profile_configs.list()  # open the session
            return await _run(read, streams, opened, received, latencies, gc_clock)
    stream_url = f"{url}/api/environments/1/conversations/"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {KEY}"}, connector=connector
    ) as session:

        async def read_raw(index: int) -> None:
            decoder = SSEDecoder()
            async with session.post(stream_url, json={"content": content}) as resp:
                async for chunk in resp.content.iter_any():
                    for event in decoder.feed(chunk):
                        message = json.loads(event.data)
                        if message.get("type") == "ai" and "id" not in message:
                            got(index, message["content"])

        await session.get(f"{url}/api/environments/1/customer_profile_configs/")
        return await _run(read_raw, streams, opened, received, latencies, gc_clock)


async def _run(
    read: Any,
    streams: int,
    opened: asyncio.Event,
    received: list[int],
    latencies: list[float],
    gc_clock: GCClock,
) -> dict[str, Any]:
    gc.collect()
    base, objects = _rss(), len(gc.get_objects())
    tasks = [asyncio.create_task(read(i)) for i in range(streams)]
    await opened.wait()
    rss_open = _rss()
    gc.collect()  # what a waiting stream holds, not what opening it left behind
    objects = len(gc.get_objects()) - objects
    latencies.clear()  # steady state from here: every stream open
    gc_clock.reset()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*tasks)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latencies.sort()
    return {
        "received": sum(received),
        "kb_per_stream": (rss_open - base) / streams / 1024,
        "objects_per_stream": objects / streams,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "max_ms": latencies[-1] * 1000,
        "cpu_share": cpu / wall,
        "gc_share": gc_clock.seconds / cpu if cpu else 0.0,
        "gc_collections": gc_clock.collections,
    }


def many_streams(url: str, streams: int, seconds: int) -> None:
    procs = {
        role: subprocess.Popen(
            [
                *(sys.executable, __file__, "--role", role, "--url", url),
                *("--streams", str(streams), "--seconds", str(seconds)),
                *(["--no-orjson"] if "--no-orjson" in sys.argv else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for role in ("ours", "raw")
    }
    results = {role: json.loads(proc.communicate()[0]) for role, proc in procs.items()}
    expected = streams * seconds
    print(f"\n{streams} streams at one event a second for {seconds} s, both sides at once")
    for role, label in (("raw", "aiohttp + sse + json.loads"), ("ours", "aposthog")):
        r = results[role]
        print(
            f"  {label:28s} events {r['received']}/{expected}  p50 {r['p50_ms']:6.1f} ms"
            f"  p99 {r['p99_ms']:6.1f} ms  max {r['max_ms']:6.1f} ms"
            f"  {r['kb_per_stream']:5.1f} KB/stream ({r['objects_per_stream']:.0f} objects)"
            f"  CPU {r['cpu_share']:5.1%}"
            f"  GC {r['gc_share']:5.1%} of it {r['gc_collections']}"
        )
    ours, raw = results["ours"], results["raw"]
    print(
        f"  ratios: p99 {ours['p99_ms'] / raw['p99_ms']:.2f}x (target <= 2),"
        f" max {ours['max_ms'] / raw['max_ms']:.2f}x (target <= 5),"
        f" CPU {ours['cpu_share'] / raw['cpu_share']:.2f}x (target <= 1.3),"
        f" memory {ours['kb_per_stream']:.1f} KB/stream (target <= 32)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--streams", type=int, default=None)
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    parser.add_argument("--no-orjson", action="store_true", help="every side without orjson")
    parser.add_argument("--role", choices=["ours", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    streams = args.streams or (200 if args.quick else 1000)
    seconds = args.seconds or (8 if args.quick else 30)
    if args.role:
        result = asyncio.run(_many(args.role, args.url, streams, seconds))
        print(json.dumps(result))
        return 0
    # A short answer streams in about 10 ms: rounds are cheap, and a few are not enough
    # on a shared machine, where one preempted round moves a median of three.
    rounds = args.rounds or (9 if args.quick else 15)
    server, url = start_server("--exports", "0", "--configs", "1")
    try:
        asyncio.run(one_stream(url, rounds))
        asyncio.run(replayed_flatness(url, rounds))
        many_streams(url, streams, seconds)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
