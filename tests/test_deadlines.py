"""
The attempts' deadlines (`aposthog._deadlines`): each attempt cancelled at its own
deadline and only then, a cancellation from outside never taken for a timeout, nothing
left pending on the task afterwards, and one timer for them all.
"""

from __future__ import annotations

import asyncio
import gc
import sys

import anyio
import pytest

from aposthog._deadlines import Deadlines, apart

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # deadlines are the asyncio transport's


def _pending_cancels() -> int:
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):
        return task.cancelling()
    return 0


async def _attempt(deadlines: Deadlines, seconds: float, lasts: float) -> str:
    """One attempt that takes `lasts` seconds under a `seconds` limit: how it ended."""
    key = deadlines.start(seconds)
    assert key is not None
    try:
        await asyncio.sleep(lasts)
    except asyncio.CancelledError:
        if not deadlines.expired(key):
            raise
        return "timed out"
    finally:
        deadlines.stop(key)
    return "done"


async def test_an_attempt_past_its_deadline_is_cancelled_and_the_task_goes_on() -> None:
    deadlines = Deadlines()
    started = asyncio.get_running_loop().time()
    assert "timed out" == await _attempt(deadlines, 0.05, 5)
    assert 0.04 <= asyncio.get_running_loop().time() - started < 2
    assert 0 == _pending_cancels()
    await asyncio.sleep(0.01)  # no cancellation left for a later await
    assert "done" == await _attempt(deadlines, 5, 0.01)


async def test_attempts_end_at_their_own_deadlines_whatever_the_order() -> None:
    """A short limit among long ones, and long ones after it: each keeps its own time."""
    deadlines = Deadlines()
    results = await asyncio.gather(
        _attempt(deadlines, 5, 0.3),
        _attempt(deadlines, 0.05, 5),
        _attempt(deadlines, 0.2, 5),
        _attempt(deadlines, 5, 0.01),
        _attempt(deadlines, 0.1, 0.01),
    )
    assert ["done", "timed out", "timed out", "done", "done"] == list(results)


async def test_a_cancellation_from_outside_is_not_a_timeout() -> None:
    deadlines = Deadlines()
    task = asyncio.create_task(_attempt(deadlines, 5, 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._running
    assert not deadlines._expired


async def test_a_cancellation_from_outside_as_the_deadline_passes() -> None:
    """
    Both at once: on Python 3.11+ the outside one wins, as with `asyncio.timeout`. 3.10
    tasks count no cancellations, so there the deadline's reading wins (as with
    aiohttp's own timeout there), as the module says.
    """
    deadlines = Deadlines()
    task = asyncio.create_task(_attempt(deadlines, 0.05, 5))
    await asyncio.sleep(0.01)
    asyncio.get_running_loop().call_at(deadlines._when, task.cancel)
    if sys.version_info >= (3, 11):
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        assert "timed out" == await task


async def test_a_deadline_that_passes_as_the_attempt_ends_leaves_nothing_pending() -> None:
    """An attempt that swallowed the cancellation: `stop()` withdraws it from the task."""
    deadlines = Deadlines()
    key = deadlines.start(0.01)
    assert key is not None
    try:
        await asyncio.sleep(1)
    except asyncio.CancelledError:
        pass  # as a library that swallows it would
    deadlines.stop(key)
    assert 0 == _pending_cancels()
    await asyncio.sleep(0.01)


class _Counting(Deadlines):
    """Counts the times the timer is armed."""

    arms = 0

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self.arms += 1
        super()._arm(loop, when)


async def test_one_timer_serves_every_attempt_and_none_is_left_armed() -> None:
    deadlines = _Counting()
    await asyncio.gather(*(_attempt(deadlines, 0.05, 0.001 * (i % 5)) for i in range(100)))
    assert 1 == deadlines.arms  # at the first attempt's deadline, never once per attempt
    await asyncio.sleep(0.1)  # it fires, finds nothing running, and is not re-armed
    assert 1 == deadlines.arms
    assert deadlines._handle is None
    assert not deadlines._running


async def test_a_nearer_deadline_re_arms_the_timer_and_close_disarms_it() -> None:
    deadlines = _Counting()
    long = asyncio.create_task(_attempt(deadlines, 5, 5))
    await asyncio.sleep(0)
    assert "timed out" == await _attempt(deadlines, 0.02, 5)
    assert 3 == deadlines.arms  # the long one, the short one, the long one again
    deadlines.close()
    assert deadlines._handle is None
    assert "timed out" == await long  # close() ends what still runs


async def test_outside_a_task_there_is_no_deadline() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    got: asyncio.Future[int | None] = loop.create_future()
    loop.call_soon(lambda: got.set_result(deadlines.start(1)))  # a callback: no task
    assert None is await got
    assert not deadlines._running


async def test_the_timer_is_armed_for_exactly_the_attempt_s_limit() -> None:
    """Neither early nor late: the timer fires at the moment `start()` plus the limit."""
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    before = loop.time()
    key = deadlines.start(0.5)
    after = loop.time()
    assert key is not None
    assert before + 0.5 <= deadlines._when <= after + 0.5
    deadlines.stop(key)
    deadlines.close()


async def test_no_attempt_is_cancelled_before_its_deadline() -> None:
    """One firing takes the attempts due within a millisecond, never the later ones."""
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    limits = [0.05, 0.08, 0.11, 0.14]

    async def timed(seconds: float) -> float:
        started = loop.time()
        assert "timed out" == await _attempt(deadlines, seconds, 5)
        return loop.time() - started

    took = await asyncio.gather(*(timed(s) for s in limits))
    for seconds, elapsed in zip(limits, took, strict=True):
        assert elapsed >= seconds - 0.0011


async def test_after_a_firing_the_timer_waits_for_the_nearest_deadline_left() -> None:
    deadlines = Deadlines()
    far = asyncio.create_task(_attempt(deadlines, 30, 30))
    near = asyncio.create_task(_attempt(deadlines, 0.3, 30))
    await asyncio.sleep(0)
    assert "timed out" == await _attempt(deadlines, 0.02, 5)
    left = sorted(deadline for _, deadline, _ in deadlines._running.values())
    assert 2 == len(left)
    assert left[0] == deadlines._when  # the near one's, not the far one's
    assert "timed out" == await near
    far.cancel()
    with pytest.raises(asyncio.CancelledError):
        await far
    deadlines.close()


async def test_close_ends_the_attempts_still_running_and_leaves_no_timer_behind() -> None:
    """
    close() (the client closed) ends every attempt still running at once, as timed out
    (on a borrowed session, which stays open, one would run on with no limit), and
    leaves no timer that could cancel an attempt begun later.
    """
    deadlines = Deadlines()
    long = asyncio.create_task(_attempt(deadlines, 30, 60))
    await asyncio.sleep(0)
    assert "timed out" == await _attempt(deadlines, 0.02, 5)  # the timer, re-armed for 30
    started = asyncio.get_running_loop().time()
    deadlines.close()
    assert "timed out" == await long
    assert asyncio.get_running_loop().time() - started < 1
    assert 0 == _pending_cancels()
    assert "done" == await _attempt(deadlines, 5, 0.01)


@pytest.mark.parametrize("how", ["fired", "closed"])
async def test_an_attempt_after_the_timer_went_idle_still_has_its_deadline(how: str) -> None:
    """Once the timer fired with nothing left to wait for, or was closed, it is armed anew."""
    deadlines = Deadlines()
    if how == "fired":
        assert "timed out" == await _attempt(deadlines, 0.01, 5)
    else:
        key = deadlines.start(0.01)
        assert key is not None
        deadlines.stop(key)
        deadlines.close()
    assert "timed out" == await _attempt(deadlines, 0.05, 2)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 tasks count no cancellations")
async def test_a_deadline_is_recognised_in_a_task_already_being_cancelled() -> None:
    """An attempt begun after its task swallowed a cancellation: its timeout is its own."""
    task = asyncio.current_task()
    assert task is not None
    deadlines = Deadlines()
    task.cancel()
    try:
        await asyncio.sleep(1)
    except asyncio.CancelledError:
        pass  # a cleanup that goes on
    assert 1 == _pending_cancels()
    assert "timed out" == await _attempt(deadlines, 0.02, 5)
    assert 1 == _pending_cancels()  # the outside cancellation is still pending, untouched
    if sys.version_info >= (3, 11):  # (for mypy: skipped on 3.10 anyway)
        task.uncancel()


async def test_a_cancellation_of_the_caller_with_the_attempts_own_deadline_is_never_lost() -> None:
    """
    `apart`: the attempt's deadline (here an anyio scope, as a stream's opening keeps)
    fires in the very step the caller is cancelled. The deadline's cancellation stays
    inside the attempt, which ends as its scope says; the caller's is raised. Run in the
    caller's task (as before, on Python 3.10, which counts no cancellations), the scope
    took both for its own and the caller's cancellation was lost.
    """
    scopes: list[anyio.CancelScope] = []

    async def attempt() -> str:
        with anyio.CancelScope() as scope:  # the attempt's own time limit
            scopes.append(scope)
            await asyncio.sleep(5)
        return "timed out"

    caller = asyncio.ensure_future(apart(attempt()))
    while not scopes:  # noqa: ASYNC110 (the attempt has entered its scope)
        await asyncio.sleep(0)

    def both() -> None:
        scopes[0].cancel()
        caller.cancel()

    asyncio.get_running_loop().call_soon(both)
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_a_result_that_arrives_as_the_caller_is_cancelled_is_dropped() -> None:
    """The attempt finished in the step its caller was cancelled: the caller is cancelled."""
    ready = asyncio.Event()

    async def attempt() -> str:
        await ready.wait()
        return "an answer nobody waits for"

    caller = asyncio.ensure_future(apart(attempt()))
    await asyncio.sleep(0)

    def both() -> None:
        ready.set()
        caller.cancel()

    asyncio.get_running_loop().call_soon(both)
    with pytest.raises(asyncio.CancelledError):
        await caller


@pytest.mark.parametrize("ends", ["raises", "returns"])
async def test_a_caller_cancelled_again_while_its_attempt_winds_down_leaves_nothing_unhandled(
    ends: str,
) -> None:
    """
    An anyio cancel scope around the caller re-delivers its cancellation every loop step
    (it cannot know the task is waiting for its attempt to end), and a task may be
    cancelled twice anyway. `apart` then stops waiting for the attempt it cancelled: an
    attempt that needs a step to wind down (aiohttp closing its connection) and ends in
    an error (the `APITimeoutError` of `Client.aclose()`, which marks the attempt expired)
    logs "Task exception was never retrieved"; one that returns a result all the same (an
    opened stream) is never given to `dropped`, its connection left open.
    """
    dropped: list[str] = []
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context["message"]))
    started = asyncio.Event()

    async def attempt() -> str:
        started.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # a step to wind down
            if ends == "raises":
                raise RuntimeError("the attempt's own late failure") from None
        return "a stream opened all the same"

    caller = asyncio.ensure_future(apart(attempt(), dropped.append))
    await started.wait()
    caller.cancel()
    await asyncio.sleep(0)  # the caller has cancelled the attempt and waits for its end
    caller.cancel()  # cancelled again (an anyio scope re-delivering its cancellation)
    with pytest.raises(asyncio.CancelledError):
        await caller
    for _ in range(5):
        await asyncio.sleep(0)
    del caller  # (its frames hold the attempt's task)
    gc.collect()
    loop.set_exception_handler(None)
    assert not errors
    if ends == "returns":
        assert dropped == ["a stream opened all the same"]
