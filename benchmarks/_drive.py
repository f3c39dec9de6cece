"""Driving a call at a fixed concurrency, shared by the benchmarks that compare clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["drive"]


async def drive(n: int, concurrency: int, call: Callable[[], Awaitable[object]]) -> float:
    """Run `call` n times, `concurrency` at a time; returns calls per second."""
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)
