"""Throughput of aposthog's SSE decoder against httpx-sse's, on a PostHog-like stream.

Run with ``python benchmarks/bench_sse.py [--size-mb N] [--rounds N]``; needs ``httpx-sse``
(the ``bench`` dependency group).

The stream imitates PostHog AI's conversation stream: per conversation a ``conversation``
event, then ``message`` events carrying cumulative snapshots of the assistant's answer (each
longer than the last, with accented, CJK and emoji text), an ``update`` event for a tool call
now and then, and ``: keepalive`` comments. It is cut into 4 KiB chunks, which split lines
and multi-byte characters at arbitrary points, as a socket would.

httpx-sse is driven the way ``EventSource.iter_sse`` drives it on an httpx response: an
incremental UTF-8 decoder with ``errors="replace"`` (what ``httpx.Response.iter_text``
uses), ``SSELineDecoder`` as in ``httpx_sse._api._iter_sse_lines``, then
``SSEDecoder.decode`` per line, each stage a generator as in httpx-sse. aposthog's decoder is
driven the way a client would drive it: a generator yielding what ``feed`` returns for each
chunk. Both are consumed without keeping the events (as a streaming consumer would; keeping
30+ MB of decoded text alive would mostly time the memory allocator), in the same process,
interleaved round by round; the best and the median round of each are reported.
"""

from __future__ import annotations

import argparse
import codecs
import gc
import json
import random
import statistics
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

# Run from a checkout without installing: make ``aposthog`` importable from the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
from httpx_sse._decoders import SSELineDecoder

from aposthog.sse import SSEDecoder

CHUNK_SIZE = 4096

# Words for the assistant's answers: mostly English, with the accented, CJK and emoji text
# that makes the UTF-8 decoding (and, for httpx-sse, the str handling) non-trivial.
_WORDS = [
    "Hello",
    "world,",
    "here",
    "is",
    "your",
    "weekly",
    "pageview",
    "trend:",
    "the",
    "funnel",
    "conversion",
    "rate",
    "rose,",
    "retention",
    "for",
    "the",
    "March",
    "cohort",
    "held",
    "steady",
    "and",
    "the",
    "dashboard",
    "insight",
    "shows",
    "why.",
    "café",
    "naïve",
    "résumé",
    "über",
    "é",
    "中文",
    "数据",
    "分析",
    "🚀",
    "📈",
]


class _Event(Protocol):
    """What both libraries' event classes have in common, for the sanity check."""

    @property
    def event(self) -> str: ...

    @property
    def data(self) -> str: ...


def build_stream(size_mb: float, seed: int = 1234) -> tuple[bytes, list[tuple[str, str]]]:
    """Return a PostHog-like stream of at least ``size_mb`` MB and its (event, data) pairs."""
    rng = random.Random(seed)
    target = int(size_mb * 1_000_000)
    pieces: list[bytes] = []
    expected: list[tuple[str, str]] = []
    total = 0

    def emit(event: str, payload: object) -> None:
        nonlocal total
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        piece = f"event: {event}\ndata: {data}\n\n".encode()
        pieces.append(piece)
        expected.append((event, data))
        total += len(piece)

    while total < target:
        conversation: dict[str, object] = {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "status": "in_progress",
            "title": None,
            "created_at": "2025-01-01T12:00:00Z",
            "messages": [],
        }
        emit("conversation", conversation)
        message_id = str(uuid.UUID(int=rng.getrandbits(128)))
        words: list[str] = []
        for step in range(rng.randint(60, 160)):
            words.extend(rng.choices(_WORDS, k=rng.randint(2, 6)))
            emit("message", {"content": " ".join(words), "type": "ai", "id": message_id})
            if step % 25 == 24:
                tool_call_id = str(uuid.UUID(int=rng.getrandbits(128)))
                update = {"id": message_id, "tool_call_id": tool_call_id, "content": "Searching…"}
                emit("update", update)
            if step % 40 == 39:
                pieces.append(b": keepalive\n\n")
                total += 13
    return b"".join(pieces), expected


def chunked(stream: bytes, size: int = CHUNK_SIZE) -> list[bytes]:
    """Cut ``stream`` into ``size``-byte chunks, regardless of line or character boundaries."""
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def aposthog_events(chunks: Iterable[bytes]) -> Iterator[_Event]:
    """Decode with aposthog's SSEDecoder."""
    decoder = SSEDecoder(max_event_size=None)
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.close()


def httpx_sse_events(chunks: Iterable[bytes]) -> Iterator[_Event]:
    """Decode as httpx-sse's ``EventSource.iter_sse`` does on an httpx response."""

    def iter_text() -> Iterator[str]:  # httpx.Response.iter_text, with TextDecoder
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for chunk in chunks:
            text = decoder.decode(chunk)
            if text:  # httpx's TextChunker drops empty strings
                yield text
        text = decoder.decode(b"", True)
        if text:
            yield text

    def iter_sse_lines() -> Iterator[str]:  # httpx_sse._api._iter_sse_lines
        decoder = SSELineDecoder()
        for text in iter_text():
            yield from decoder.decode(text)
        yield from decoder.flush()

    decoder = HttpxSSEDecoder()  # httpx_sse._api.EventSource.iter_sse
    for line in iter_sse_lines():
        sse = decoder.decode(line.rstrip("\n"))
        if sse is not None:
            yield sse


DECODERS: dict[str, Callable[[Iterable[bytes]], Iterator[_Event]]] = {
    "aposthog": aposthog_events,
    "httpx-sse": httpx_sse_events,
}


def time_once(decode: Callable[[Iterable[bytes]], Iterator[_Event]], chunks: list[bytes]) -> float:
    """Time one decoding of ``chunks``, dropping each event as it arrives."""
    start = time.perf_counter()
    deque(decode(chunks), maxlen=0)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Build the stream, check both decoders, race them and print MB/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=32.0, help="stream size (default 32)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds each (default 7)")
    parser.add_argument("--quick", action="store_true", help="a short run (CI): 4 MB, 3 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.size_mb, args.rounds = min(args.size_mb, 4.0), min(args.rounds, 3)
    if args.rounds < 1 or args.size_mb <= 0:
        parser.error("--rounds must be >= 1 and --size-mb > 0")

    stream, expected = build_stream(args.size_mb)
    chunks = chunked(stream)
    mb = len(stream) / 1_000_000
    print(f"stream: {mb:.1f} MB, {len(expected)} events, {len(chunks)} chunks of {CHUNK_SIZE} B")

    for name, decode in DECODERS.items():
        got = [(e.event, e.data) for e in decode(chunks)]
        if got != expected:
            print(f"MISMATCH: {name} decoded {len(got)} events, expected {len(expected)}")
            return 1
    # Free the check's data before timing: a heap full of it would slow both sides unevenly.
    del got, expected
    gc.collect()

    times: dict[str, list[float]] = {name: [] for name in DECODERS}
    for _ in range(args.rounds):
        # Interleaved, so that drift in the machine's load affects both decoders alike.
        for name, decode in DECODERS.items():
            times[name].append(time_once(decode, chunks))

    for name, ts in times.items():
        print(
            f"{name:>10}: {mb / min(ts):7.1f} MB/s best, {mb / statistics.median(ts):7.1f} MB/s "
            f"median of {args.rounds} rounds"
        )
    best = min(times["httpx-sse"]) / min(times["aposthog"])
    median = statistics.median(times["httpx-sse"]) / statistics.median(times["aposthog"])
    print(f"aposthog/httpx-sse = {best:.2f}x (best), {median:.2f}x (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
