"""Helpers shared by the conversation-stream tests."""

from __future__ import annotations

from typing import Any

import aposthog
from aposthog._streaming import ConversationStream
from aposthog.testing import FakePostHog

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
