"""Helpers shared by the conversation-stream tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from aiohttp import web

import aposthog
from aposthog._streaming import ConversationStream
from aposthog.testing import FakePostHog

from .web_server import serve

FAST = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01, max_retry_after=0.01)
ANSWER = "PostHog AI says: grüße 👋 — 1,234 signups last week."


def posts(fake: FakePostHog) -> list[dict[str, Any]]:
    """The bodies of every `POST conversations/` the fake received."""
    return [
        r.json()
        for r in fake.requests
        if r.method == "POST" and r.path.rstrip("/").endswith("conversations")
    ]


async def collect(stream: ConversationStream) -> list[str]:
    return [text async for text in stream.text_deltas()]


async def stream_served_by(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    content: str,
    *,
    within: float | None = 2,
) -> tuple[ConversationStream, list[str]]:
    """`create(content)` against `handler`, served on loopback (`web_server.serve`) to a
    client with `FAST` retries: the stream, ended, and the text deltas read from it (all
    of them within `within` seconds; no limit if None)."""
    async with (
        serve(handler) as url,
        aposthog.Client(api_key="phx_k", host=url, project_id=1, retry=FAST) as ph,
    ):
        stream = ph.conversations.create(content)
        with anyio.fail_after(within):
            deltas = await collect(stream)
    return stream, deltas


async def in_flight_with_three_streams_at_one_slot(fake: FakePostHog) -> int:
    """The requests `fake` has in flight while three answers stream at once to a client at
    `max_concurrency=1` (a stream holds its slot only while it opens)."""
    for _ in range(3):
        fake.script_answer("one two three", chunk_size=2, delay=0.02)
    async with fake.client(max_concurrency=1) as ph:
        streams = [ph.conversations.create("q") for _ in range(3)]
        for stream in streams:
            await stream.__aenter__()
            await anext(stream)  # its answer has begun
        in_flight = fake.in_flight
        for stream in streams:
            await stream.__aexit__(None, None, None)
    return in_flight


class Replay:
    """
    Stands in for the transport's `StreamResponse`: recorded chunks, as they were cut, then
    the end (`transport.open_stream` replaced by a function returning one).
    """

    status = 200
    content_type = "text/event-stream"

    def __init__(self, chunks: list[bytes]) -> None:
        self.headers = {"Content-Type": self.content_type}
        self._chunks = iter(chunks)

    async def read_chunk(self) -> bytes:
        return next(self._chunks, b"")

    async def read(self) -> bytes:
        return b""

    def close(self) -> None:
        pass
