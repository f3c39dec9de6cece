"""
Time limits of requests: every attempt's deadline on one event loop, kept by one timer.

When an attempt's deadline passes, its task is cancelled, and the `CancelledError` that
comes out of the attempt is recognised as that deadline's (`expired()`) rather than a
cancellation from outside, which goes on as it came (on Python 3.11+, by the task's
count of cancellations asked for, as `asyncio.timeout` does; 3.10 has no such count).

Measured under callgrind on a call listing ten profile configs (about 570,000
instructions in all): aiohttp's own total timeout cost the client 26,000 instructions a
call (a timer context entered and left around every read; 14,000 in a plain
`session.get`), a timer handle scheduled and withdrawn per attempt still 18,000
(asyncio's timer handles are Python objects, and each withdrawn one is popped off the
loop's heap later), and this 4,000: an attempt is an entry in a dict, and the one timer
is re-armed only when it fires (once per timeout under steady traffic) or when an
attempt has a nearer deadline than every other.
"""

from __future__ import annotations

import asyncio
import math
import operator
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

__all__ = ["COUNTS_CANCELLATIONS", "Deadlines", "apart"]

T = TypeVar("T")

#: Python 3.11+ tasks count cancellations (`Task.cancelling()`), so anyio's time limits
#: tell their own cancellation from one that came from outside in the same loop step;
#: on 3.10 an attempt under such a limit runs `apart`.
COUNTS_CANCELLATIONS: Final = sys.version_info >= (3, 11)


# Task.cancelling() and Task.uncancel(), Python 3.11+: the cancellations asked of a task
# and not withdrawn, and withdrawing one. Python 3.10 counts none (always 0).
_cancelling: Callable[[asyncio.Task[Any]], int]
_withdraw: Callable[[asyncio.Task[Any]], int]
if sys.version_info >= (3, 11):
    # Called as methods (not `asyncio.Task.cancelling`): a task factory may make tasks
    # of another class.
    _cancelling = operator.methodcaller("cancelling")
    _withdraw = operator.methodcaller("uncancel")
else:

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return 0

    _withdraw = _cancelling


class Deadlines:
    """The deadlines of the attempts running on one event loop."""

    __slots__ = ("_expired", "_handle", "_keys", "_loop", "_running", "_when")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        # Attempt key -> (task, deadline, cancellations the task had asked of it already).
        self._running: dict[int, tuple[asyncio.Task[object], float, int]] = {}
        # Attempts whose deadline passed: key -> (task, cancellations before it).
        self._expired: dict[int, tuple[asyncio.Task[object], int]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._when = math.inf  # when the timer fires (inf: not armed)
        self._keys = 0

    def start(self, seconds: float) -> int | None:
        """
        Start the clock of an attempt of the current task: its key for `expired()` and
        `stop()`, or None outside a task (nothing is kept, and no deadline applies).
        """
        task = asyncio.current_task()
        if task is None:
            return None
        loop = self._loop
        if loop is None:
            loop = self._loop = task.get_loop()
        deadline = loop.time() + seconds
        self._keys = key = self._keys + 1
        self._running[key] = (task, deadline, _cancelling(task))
        if deadline < self._when:
            self._arm(loop, deadline)
        return key

    def expired(self, key: int) -> bool:
        """
        After a `CancelledError` out of attempt `key`: whether it is the deadline's own
        (then withdrawn from the task), as opposed to a cancellation from outside.
        """
        entry = self._expired.pop(key, None)
        if entry is None:
            return False
        task, cancelling = entry
        return _withdraw(task) <= cancelling

    def stop(self, key: int) -> None:
        """Attempt `key` is over: its deadline no longer applies."""
        if self._running.pop(key, None) is None and self._expired:
            entry = self._expired.pop(key, None)
            if entry is not None:
                # It expired as the attempt ended anyway: the cancellation asked for must
                # not reach an `await` that comes later.
                _withdraw(entry[0])

    def close(self) -> None:
        """
        The client closed: every attempt still running ends now, as if its deadline had
        passed (on a borrowed session, which closing the client leaves open, one would
        otherwise run on with no limit at all), and the timer is disarmed.
        """
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = math.inf
        running, self._running = self._running, {}
        for key, (task, _, cancelling) in running.items():
            self._expired[key] = (task, cancelling)
            task.cancel()

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        """Cancel every attempt whose deadline has passed; re-arm for the nearest other."""
        self._handle = None
        self._when = math.inf
        loop = self._loop
        assert loop is not None
        # Deadlines within a millisecond of now are due too: one pass takes them all, and
        # the loop, which may fire a timer a clock tick early, is not re-armed for a tick.
        now = loop.time() + 0.001
        nearest = math.inf
        running = self._running
        for key, (task, deadline, cancelling) in list(running.items()):
            if deadline <= now:
                del running[key]
                self._expired[key] = (task, cancelling)
                task.cancel()
            elif deadline < nearest:
                nearest = deadline
        if nearest < math.inf:
            self._arm(loop, nearest)


async def apart(attempt: Coroutine[Any, Any, T], dropped: Callable[[T], object] | None = None) -> T:
    """
    Await `attempt` as a task of its own, for Python 3.10, whose tasks count no
    cancellations: a deadline kept inside the attempt (`Deadlines`, or an anyio
    `fail_after`) cancels that task alone, so a cancellation of the caller that lands in
    the same loop step is never read as the deadline's. The caller's cancellation
    cancels the attempt, waits for it to end, and is raised; a result that arrived all
    the same is dropped, through `dropped` if given (an opened stream is closed), and
    an error retrieved (the caller hears its cancellation), whenever the attempt ends:
    also after a second cancellation of the caller (an anyio scope repeats its own)
    stopped the wait for it.
    """
    task = asyncio.ensure_future(attempt)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda ended: _settle(ended, dropped))
        if not task.done():
            task.cancel()  # the caller was cancelled: so is its attempt
            await asyncio.wait((task,))
        raise


def _settle(task: asyncio.Future[T], dropped: Callable[[T], object] | None) -> None:
    """The outcome of an attempt its caller left: a result dropped, an error retrieved."""
    if task.cancelled() or task.exception() is not None:
        return
    if dropped is not None:
        dropped(task.result())
