"""
The `max_concurrency` slots of a client: a counter and a line, first come, first served.

Every attempt of every request holds one slot while it runs. Taking a free slot when
nobody waits costs two attribute operations and no trip through the event loop (the
pipeline does it inline on every request); otherwise the task waits in line. A released
slot goes straight to the first task in line, so a newcomer never overtakes a waiter. A
waiter cancelled before its turn leaves the line; one cancelled just as a slot was handed
to it (its task, or an anyio scope around it) passes the slot on. Slots are not tied to
a task: one task may hold several (a paginator's page inside a stream's consumer, say).
"""

from __future__ import annotations

import asyncio
import collections

import anyio.lowlevel

__all__ = ["Slots"]


class Slots:
    """`total` slots; `free` is read (and taken) inline by the pipeline."""

    __slots__ = ("free", "live", "waiters")

    def __init__(self, total: int) -> None:
        self.free = total
        #: The line: futures of waiting tasks, and of cancelled ones not yet skipped.
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        #: How many in the line still wait. A cancelled waiter is skipped when its turn
        #: comes, not searched for: a pool cancelling thousands of waiters stays linear.
        self.live = 0

    def take_nowait(self) -> bool:
        """Take a slot if one is free and nobody waits for one; whether it was taken."""
        if self.free > 0 and not self.live:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        """Take a slot, waiting in line for one (cancellable)."""
        if self.free > 0 and not self.live:
            self.free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.live += 1
        try:
            await waiter
            # Handed a slot in the step its scope was cancelled (anyio cancels at the
            # next checkpoint, not a task whose future is already done): without this
            # checkpoint the caller would go on and send. The slot is passed on below.
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot came with the cancellation: the next one gets it
            else:
                waiter.cancel()  # skipped by `release()` when its turn comes
                self.live -= 1
                if not self.live:
                    self.waiters.clear()  # only cancelled ones were left
                elif self.free > 0:
                    # A slot released while this waiter was cancelled but still counted
                    # went to `free`, and a newcomer in that step joined the line behind
                    # it: the slot is theirs now.
                    self.free -= 1
                    self.release()
            raise

    def release(self) -> None:
        """Give a slot back: to the first in line, if anyone waits."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.live -= 1
                return
        self.free += 1

    @property
    def waiting(self) -> int:
        """How many tasks wait for a slot."""
        return self.live
