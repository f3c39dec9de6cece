"""
`serve_in_thread()`: a FakePostHog on an event loop of its own, in a thread of its own.

This is what lets the `fake_posthog` pytest fixture be a plain (synchronous) fixture that
works the same under pytest-asyncio (strict or auto mode), anyio's pytest plugin, or in a
synchronous test: the test's own event loop, whichever plugin made it, only ever holds the
client, and talks to the fake over 127.0.0.1 like it would to PostHog.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import anyio.from_thread

from ._fake import FakePostHog

__all__ = ["serve_in_thread"]


@contextlib.contextmanager
def serve_in_thread(**options: Any) -> Iterator[FakePostHog]:
    """
    Serve a `FakePostHog` from a background thread for the duration of a `with` block.

    Keyword arguments are those of `FakePostHog` (`api_key`, `project_id`, `port`,
    `page_size`, `latency`). The fake is started when the block is entered and stopped,
    every connection dropped, when it is left.

    The fake's knobs (`throttle_next`, `fail_next`, `drop_next`, `script_answer`,
    `add_key`, `seed_conversation`, the `add_batch_export_*` helpers, and attributes such
    as `latency`) are plain in-memory changes, safe to make from the caller's thread.
    Its recorded state (`requests`, `status_counts`, `customer_profile_configs`,
    `conversations`, …) is written by the fake's thread as it answers: read it once the
    calls you are checking have returned, not while requests are still in flight.
    `await fake.wait_for_streams_closed()` works from the caller's own event loop.

    Example:
        ```python
        with serve_in_thread() as fake:
            async def main() -> None:
                async with fake.client() as ph:
                    await ph.customer_profile_configs.create(scope="person")

            asyncio.run(main())
            assert len(fake.customer_profile_configs) == 1
        ```
    """
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        # Built on the fake's own loop: anything it creates belongs to that loop.
        fake = portal.call(lambda: FakePostHog(**options))
        with portal.wrap_async_context_manager(fake) as started:
            yield started
