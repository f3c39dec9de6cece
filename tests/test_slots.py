"""The `max_concurrency` slots: first come, first served, and nothing lost to cancellation."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from aposthog._slots import Slots

pytestmark = pytest.mark.anyio


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_free_slot_is_taken_at_once_and_given_back() -> None:
    slots = Slots(2)
    assert slots.take_nowait()
    await slots.take()  # free: no wait
    assert (0, 0) == (slots.free, slots.waiting)
    assert not slots.take_nowait()
    slots.release()
    slots.release()
    assert 2 == slots.free


async def test_waiters_get_slots_in_arrival_order_and_newcomers_never_overtake() -> None:
    slots = Slots(1)
    assert slots.take_nowait()
    order: list[str] = []

    async def waiter(name: str) -> None:
        await slots.take()
        order.append(name)

    tasks = [asyncio.create_task(waiter(name)) for name in "abc"]
    await _settle()
    assert 3 == slots.waiting
    slots.release()  # handed to "a": not free for anyone else meanwhile
    assert not slots.take_nowait()
    await _settle()
    assert ["a"] == order
    slots.release()
    await _settle()
    slots.release()
    await _settle()
    assert ["a", "b", "c"] == order
    slots.release()
    assert (1, 0) == (slots.free, slots.waiting)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)


class _TwoWaiters:
    """One slot, taken; then "first" and "second" wait for it, in that order."""

    def __init__(self) -> None:
        self.slots = Slots(1)
        assert self.slots.take_nowait()
        self.got: list[str] = []
        self.first = asyncio.create_task(self._wait("first"))
        self.second = asyncio.create_task(self._wait("second"))

    async def _wait(self, name: str) -> None:
        await self.slots.take()
        self.got.append(name)

    async def second_gets_it(self) -> None:
        """With "first" cancelled, "second" gets the slot, then gives it back."""
        assert self.first.cancelled()
        await asyncio.wait_for(self.second, 2)  # a lost slot would leave it waiting
        assert ["second"] == self.got
        self.slots.release()
        assert (1, 0) == (self.slots.free, self.slots.waiting)


async def test_a_cancelled_waiter_leaves_the_line_without_a_slot() -> None:
    line = _TwoWaiters()
    await _settle()
    line.first.cancel()
    await _settle()
    assert line.first.cancelled()
    assert 1 == line.slots.waiting
    line.slots.release()
    await line.second_gets_it()


async def test_a_waiter_cancelled_as_its_slot_arrives_passes_it_on() -> None:
    line = _TwoWaiters()
    await _settle()
    line.slots.release()  # the slot is handed to "first"...
    line.first.cancel()  # ...which is cancelled before it runs again
    await _settle()
    await line.second_gets_it()


async def test_a_waiter_cancelled_just_before_a_release_is_skipped() -> None:
    line = _TwoWaiters()
    await _settle()
    line.first.cancel()  # still in line: it leaves when it runs again...
    line.slots.release()  # ...so the slot goes past it, to "second"
    await _settle()
    await line.second_gets_it()


async def test_many_tasks_never_hold_more_than_the_slots_and_all_come_back() -> None:
    slots = Slots(3)
    held = 0
    most = 0

    async def worker(cancel_me: bool) -> None:
        nonlocal held, most
        await slots.take()
        try:
            held += 1
            most = max(most, held)
            await asyncio.sleep(0.001 if cancel_me else 0)
        finally:
            held -= 1
            slots.release()

    tasks = [asyncio.create_task(worker(i % 7 == 0)) for i in range(100)]
    await asyncio.sleep(0)
    for task in tasks[::7]:
        task.cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert 3 == most
    assert (3, 0) == (slots.free, slots.waiting)


@pytest.mark.parametrize("order", ["newest first", "oldest first", "every other"])
async def test_cancelling_most_of_a_long_line_leaves_the_rest_served_in_order(order: str) -> None:
    """
    A worker pool cancels a thousand waiters (a gather torn down): those left are
    served in arrival order, every slot comes back, and a newcomer then takes a free slot
    at once (the cancelled ones are skipped, never searched for one by one).
    """
    slots = Slots(1)
    assert slots.take_nowait()
    served: list[int] = []

    async def waiter(n: int) -> None:
        await slots.take()
        served.append(n)
        slots.release()

    tasks = [asyncio.create_task(waiter(n)) for n in range(1000)]
    await _settle()
    keep = {0, 500, 999} if order != "every other" else set(range(0, 1000, 2))
    doomed = [t for n, t in enumerate(tasks) if n not in keep]
    for task in doomed if order == "oldest first" else reversed(doomed):
        task.cancel()
    await _settle()
    assert len(keep) == slots.waiting
    slots.release()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert sorted(keep) == served
    assert (1, 0, 0) == (slots.free, slots.waiting, len(slots.waiters))
    assert slots.take_nowait()


async def test_a_waiter_whose_scope_is_cancelled_as_its_slot_arrives_goes_no_further() -> None:
    """
    As with `task.cancel()` above, but the way anyio code cancels (`move_on_after`, a
    task group, a stream's `close()`): the scope is cancelled in the step that hands the
    waiter its slot. The waiter must pass the slot on and stop there; going on, it sends
    its request (a POST that creates, a conversation message that starts a run) after
    the caller had cancelled it.
    """
    slots = Slots(1)
    assert slots.take_nowait()  # a request in flight
    went_on: list[str] = []
    scope = anyio.CancelScope()

    async def waiter() -> None:
        with scope:
            await slots.take()
            try:
                went_on.append("sends its request")
                await anyio.lowlevel.checkpoint()
            finally:
                slots.release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await _settle()
        slots.release()  # the slot is handed to the waiter...
        scope.cancel()  # ...whose scope is cancelled before it runs again
    assert scope.cancelled_caught
    assert [] == went_on
    assert 1 == slots.free


async def test_a_newcomer_in_the_step_a_cancelled_waiter_is_skipped_gets_the_free_slot() -> None:
    """
    One slot, held. A waiter is cancelled (say, by its `asyncio.timeout()`); in the same
    loop step the holder gives the slot back (it goes past the cancelled waiter, to
    `free`) and a new request, already scheduled, asks for one. The slot is free and
    nobody else wants it: the newcomer must get it. It sees the cancelled waiter still
    counted in `live`, queues behind it, and nothing ever wakes it (no release comes:
    every other request is done), so a worker's call hangs with a slot free.
    """
    slots = Slots(1)
    assert slots.take_nowait()  # a request in flight
    cancelled = asyncio.create_task(slots.take())
    await _settle()
    assert 1 == slots.waiting
    newcomer = asyncio.create_task(slots.take())  # scheduled: runs before `cancelled` does
    cancelled.cancel()
    slots.release()  # the request in flight is answered: past the cancelled waiter
    await _settle()
    assert cancelled.cancelled()
    with anyio.fail_after(1):  # hangs here
        await newcomer
    slots.release()
    assert (1, 0) == (slots.free, slots.waiting)
