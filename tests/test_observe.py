"""The pipeline's seams: a throttle before every attempt, observers, and `on_wait`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, get_type_hints

import anyio
import cattrs
import pytest
from aiohttp import web

import aposthog
from aposthog._errors import PostHogError
from aposthog._observe import StreamOutcome, WaitReason, wait_hook
from aposthog._pipeline import Wanted, announce_wait
from aposthog._slots import Slots
from aposthog.testing import FakePostHog

from .web_server import serve

pytestmark = pytest.mark.anyio

FAST = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01)


class GateThrottle:
    """A throttle written for the test: records buckets, holds one bucket until released."""

    def __init__(self, hold: str | None = None) -> None:
        self.acquired: list[str] = []
        self.penalized: list[tuple[str, float | None]] = []
        self.hold = hold
        self.released = anyio.Event()
        self.waiting = anyio.Event()

    async def acquire(
        self,
        bucket: str,
        *,
        max_wait: float | None = None,
        slots: Slots | None = None,
        wanted: Wanted | None = None,
    ) -> float:
        self.acquired.append(bucket)
        waited = 0.0
        if bucket == self.hold and not self.released.is_set():
            announce_wait(0.5)
            self.waiting.set()
            await self.released.wait()
            waited = 0.5
        if slots is not None:
            await slots.take()  # returns holding the request's slot, as the limiter does
        return waited

    async def penalize(self, bucket: str, seconds: float | None) -> None:
        self.penalized.append((bucket, seconds))


async def test_a_request_waiting_for_the_throttle_holds_no_slot(fake: FakePostHog) -> None:
    throttle = GateThrottle(hold="ai")
    waits: list[aposthog.Wait] = []
    async with fake.client(max_concurrency=1, on_wait=waits.append) as ph:
        ph._api.pipeline.throttle = throttle
        result: list[Any] = []

        async def chat() -> None:
            result.append(await ph.conversations.create("hi").until_done())

        async with anyio.create_task_group() as tg:
            tg.start_soon(chat)
            await throttle.waiting.wait()
            # The only slot is free: the held conversation is not sitting on it.
            with anyio.fail_after(2):
                await ph.customer_profile_configs.list()
            assert [] == result
            throttle.released.set()
    assert result[0].complete
    assert ["ai", "api"] == throttle.acquired
    assert [aposthog.Wait(reason="rate_limit", seconds=0.5, attempt=1)] == waits


async def test_every_429_penalizes_its_bucket(fake: FakePostHog) -> None:
    throttle = GateThrottle()
    async with fake.client(retry=FAST) as ph:
        ph._api.pipeline.throttle = throttle
        fake.throttle_next(1, wait=0)
        await ph.customer_profile_configs.list()
    assert [("api", 0.0)] == throttle.penalized
    assert ["api", "api"] == throttle.acquired


async def test_stream_opens_and_reattaches_take_a_turn_in_their_bucket(fake: FakePostHog) -> None:
    throttle = GateThrottle()
    async with fake.client(retry=FAST) as ph:
        ph._api.pipeline.throttle = throttle
        # The run's end waits for the re-attach: it is never caught up from an idle one.
        fake.script_answer(
            "one two three", token_size=2, delay=0.003, drop_after=3, end_after_connections=2
        )
        await ph.conversations.create("q", agent_mode="research").until_done()
        fake.script_answer("ok")
        await ph.conversations.create("q2").until_done()
    # The re-attached run's end is checked against the conversation: a GET, in "api".
    assert ["ai_research", "ai_research", "api", "ai"] == throttle.acquired


# ---------------------------------------------------------------------- on_wait


async def test_on_wait_hears_every_wait_before_it_is_taken(fake: FakePostHog) -> None:
    waits: list[aposthog.Wait] = []
    other: list[aposthog.Wait] = []
    async with fake.client(retry=FAST, on_wait=waits.append) as ph:
        fake.fail_next(1, status=503)
        fake.throttle_next(1, wait=0)
        await ph.customer_profile_configs.list()
        quiet = ph.with_options(on_wait=other.append)
        fake.fail_next(1, status=503)
        await quiet.customer_profile_configs.list()
        silent = ph.with_options(on_wait=None)
        fake.fail_next(1, status=503)
        await silent.customer_profile_configs.list()
    assert [("retry", 2), ("rate_limit", 3)] == [(w.reason, w.attempt) for w in waits]
    assert isinstance(waits[0].error, aposthog.InternalServerError)
    assert isinstance(waits[1].error, aposthog.RateLimitError)
    assert all(0 <= w.seconds <= 0.01 for w in waits)
    assert [("retry", 2)] == [(w.reason, w.attempt) for w in other]


async def test_on_wait_hears_a_streams_open_and_reattach_waits(fake: FakePostHog) -> None:
    waits: list[aposthog.Wait] = []
    async with fake.client(retry=FAST, on_wait=waits.append) as ph:
        fake.throttle_next(1, method="POST", wait=0)
        # The run's end waits for the re-attach: it is never caught up from an idle one.
        fake.script_answer(
            "one two three", token_size=2, delay=0.003, drop_after=3, end_after_connections=2
        )
        result = await ph.conversations.create("q").until_done()
    assert result.complete
    assert ["rate_limit", "retry"] == [w.reason for w in waits]
    assert isinstance(waits[1].error, aposthog.APIConnectionError)


def test_on_wait_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_wait"):
        aposthog.Client(api_key="k", on_wait=42)  # type: ignore[arg-type]


def test_an_async_on_wait_is_refused_where_it_is_given() -> None:
    """
    `on_wait` is called synchronously before each wait. An `async def` one (natural in a
    web app that writes the notice to its response) would only make a coroutine that
    nobody awaits: the user hears of no wait, and only a `RuntimeWarning` at garbage
    collection hints why. Refused with a `TypeError`, as a value that is not callable is.
    """

    async def tell_the_browser(wait: aposthog.Wait) -> None:
        pass

    with pytest.raises(TypeError, match="on_wait"):
        aposthog.Client(api_key="k", on_wait=tell_the_browser)
    client = aposthog.Client(api_key="k")
    with pytest.raises(TypeError, match="on_wait"):
        client.with_options(on_wait=tell_the_browser)


async def test_an_on_wait_returning_a_coroutine_is_refused_not_dropped(fake: FakePostHog) -> None:
    """
    `on_wait=lambda wait: notify(wait)` around an `async def notify` is what the refusal of
    an `async def` one invites. It is typed as accepted (`Callable[[Wait], object]`), the
    `iscoroutinefunction` check cannot see through it, and each wait then makes a coroutine
    nobody awaits: no notification, only a `RuntimeWarning` at garbage collection, the very
    failure the refusal of an async `on_wait` exists to prevent. The call should say so
    with the same `TypeError` (and close the coroutine), not carry on silently.
    """
    heard: list[aposthog.Wait] = []
    made: list[Coroutine[Any, Any, None]] = []

    async def notify(wait: aposthog.Wait) -> None:
        heard.append(wait)

    def on_wait(wait: aposthog.Wait) -> Coroutine[Any, Any, None]:
        made.append(notify(wait))
        return made[-1]

    try:
        async with fake.client(retry=FAST, on_wait=on_wait) as ph:
            fake.throttle_next(1, wait=0)
            with pytest.raises(TypeError, match="on_wait"):
                await ph.customer_profile_configs.list()
    finally:
        for coroutine in made:
            coroutine.close()  # not left for the garbage collector to warn about
    assert [] == heard


def test_a_wait_s_annotations_resolve_so_cattrs_can_unstructure_it() -> None:
    """
    `aposthog.Wait` is a public attrs record, handed to `on_wait` "to tell a user
    'waiting 3 s'": a web app sends it on as JSON, and with cattrs (which aposthog itself
    depends on) that is `cattrs.unstructure(wait)`. Its `error: PostHogError | None`
    names a class `aposthog._observe` imports only for type checkers, so resolving the
    annotations (`typing.get_type_hints`, `attrs.resolve_types`, which cattrs calls) is a
    `NameError`, raised inside the user's `on_wait` and so out of their API call. Every
    other public class's annotations resolve.
    """
    wait = aposthog.Wait(reason="retry", seconds=3.0, attempt=2, error=None)
    assert aposthog.PostHogError | None == get_type_hints(aposthog.Wait)["error"]
    assert {"reason": "retry", "seconds": 3.0, "attempt": 2, "error": None} == (
        cattrs.unstructure(wait)
    )


# ---------------------------------------------------------------------- observers


class Recorder:
    """An observer that writes down everything, for calls and streams alike."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.targets: list[str] = []

    def call(self, method: str, route: str, server: str, target: str = "") -> Recorder:
        self.log.append(("call", method, route, server.startswith("http://127.0.0.1:")))
        self.targets.append(target)
        return self

    def stream(self, conversation_id: str, server: str) -> Recorder:
        self.log.append(("stream",))
        return self

    def attempt(self, number: int) -> None:
        self.log.append(("attempt", number))

    def unsent(self) -> None:
        self.log.append(("unsent",))

    def wait(
        self, reason: WaitReason, seconds: float, attempt: int, error: PostHogError | None
    ) -> None:
        self.log.append(("wait", reason, attempt))

    def end(self, status: int | None, error: BaseException | None, attempts: int) -> None:
        self.log.append(("end", status, type(error).__name__ if error else None, attempts))

    def first_token(self) -> None:
        self.log.append(("first_token",))

    def reattach(self, number: int) -> None:
        self.log.append(("reattach", number))

    def received(self, events: int, size: int) -> None:
        if not any(entry[0] == "received" for entry in self.log):
            self.log.append(("received",))

    def outcome(self, outcome: StreamOutcome) -> None:
        self.log.append(("outcome", outcome))


async def test_an_observer_sees_each_attempt_wait_and_the_end_of_a_call(fake: FakePostHog) -> None:
    recorder = Recorder()
    async with fake.client(retry=FAST) as ph:
        ph._api.observer = recorder
        fake.fail_next(1, status=503)
        await ph.customer_profile_configs.list()
        fake.fail_next(1, status=404)
        with pytest.raises(aposthog.NotFoundError):
            await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    assert [
        ("call", "GET", "customer_profile_configs", True),
        ("attempt", 1),
        ("wait", "retry", 2),
        ("attempt", 2),
        ("end", 200, None, 2),
        ("call", "GET", "customer_profile_configs/{id}", True),
        ("attempt", 1),
        ("end", 404, "NotFoundError", 1),
    ] == recorder.log
    # Each call is told the path it requests, the template filled in.
    assert [
        "/api/environments/1/customer_profile_configs/",
        "/api/environments/1/customer_profile_configs/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/",
    ] == recorder.targets


async def test_an_observer_sees_a_stream_from_open_to_outcome(fake: FakePostHog) -> None:
    recorder = Recorder()
    async with fake.client(retry=FAST) as ph:
        ph._api.observer = recorder
        # The run's end waits for the re-attach: it is never caught up from an idle one.
        fake.script_answer(
            "one two three", token_size=2, delay=0.003, drop_after=3, end_after_connections=2
        )
        await ph.conversations.create("q").until_done()
        done = list(recorder.log)
        recorder.log.clear()
        fake.script_answer("a long answer", delay=0.05)
        stream = ph.conversations.create("q2")
        await anext(stream)
        await stream.cancel()
        cancelled = list(recorder.log)
        recorder.log.clear()
        fake.script_answer("another long answer", delay=0.05)
        async with ph.conversations.create("q3") as stream:
            await anext(stream)
        left = list(recorder.log)
    assert done[:3] == [("stream",), ("attempt", 1), ("received",)]
    assert ("first_token",) in done
    assert ("reattach", 1) in done
    assert ("attempt", 2) in done
    assert done[-2:] == [("end", 200, None, 2), ("outcome", "done")]
    assert cancelled[-1] == ("outcome", "cancelled")
    assert left[-1] == ("outcome", "incomplete")


async def test_on_wait_and_an_observer_both_hear_a_stream(fake: FakePostHog) -> None:
    """`on_wait` composes with another observer: each hears what it listens for."""
    recorder = Recorder()
    waits: list[aposthog.Wait] = []
    async with fake.client(retry=FAST) as ph:
        ph._api.observer = wait_hook(waits.append, recorder)
        # The run's end waits for the re-attach: it is never caught up from an idle one.
        fake.script_answer(
            "one two three", token_size=2, delay=0.003, drop_after=3, end_after_connections=2
        )
        result = await ph.conversations.create("q").until_done()
    assert result.complete
    assert ["retry"] == [w.reason for w in waits]
    assert ("first_token",) in recorder.log
    assert ("reattach", 1) in recorder.log
    assert ("wait", "retry", 2) in recorder.log
    assert ("outcome", "done") == recorder.log[-1]


async def test_a_chunk_is_received_before_its_first_token() -> None:
    """A whole answer in one chunk: the observer hears the chunk, then the first token."""
    body = (
        b'event: message\ndata: {"type": "human", "content": "q", "id": "h1"}\n\n'
        b'event: message\ndata: {"type": "ai", "content": "Hello", "id": "a1"}\n\n'
    )

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="text/event-stream")  # one write

    recorder = Recorder()
    async with (
        serve(answer) as url,
        aposthog.Client(api_key="phx_test", host=url, project_id=1) as ph,
    ):
        ph._api.observer = recorder
        assert (await ph.conversations.create("q").until_done()).text == "Hello"
    log = [entry[0] for entry in recorder.log]
    assert log[:4] == ["stream", "attempt", "received", "first_token"]


async def test_a_task_started_from_on_wait_does_not_report_its_waits_to_that_call(
    fake: FakePostHog,
) -> None:
    """
    The README's advice for async work in `on_wait` is to start a task from it. A task
    started there copies the context of the call that is waiting; its own calls, made on
    a view without `on_wait`, must not be reported to that call's `on_wait` (with that
    call's attempt number, after it has ended).
    """
    limits = aposthog.RateLimits(api=(aposthog.Rate(1, per=0.2),), margin=0)
    heard: list[aposthog.Wait] = []
    started: list[asyncio.Task[None]] = []
    async with fake.client(rate_limits=limits) as ph:

        async def side_job() -> None:
            await ph.batch_exports.list()  # the view without on_wait: it waits unheard

        def on_wait(wait: aposthog.Wait) -> None:
            heard.append(wait)
            if not started:
                started.append(asyncio.get_running_loop().create_task(side_job()))

        await ph.batch_exports.list()  # the window is full
        await ph.with_options(on_wait=on_wait).batch_exports.list()  # waits, starts the job
        await asyncio.gather(*started)
    assert 3 == len(fake.requests)
    assert [("rate_limit", 1)] == [(w.reason, w.attempt) for w in heard]


async def test_an_on_wait_that_returns_the_task_it_started_is_accepted(fake: FakePostHog) -> None:
    """
    The refusal of an async `on_wait` tells the user to "schedule async work from it,
    e.g. with asyncio.get_running_loop().create_task", and the natural way to write that
    is a lambda, which returns the task. A task is no coroutine: it is scheduled and runs.
    The call should go on with its retry; it failed with the TypeError that says to do
    exactly this, after its first attempt, so only when PostHog is struggling.
    """
    heard: list[aposthog.Wait] = []

    async def notify(wait: aposthog.Wait) -> None:
        heard.append(wait)

    def on_wait(wait: aposthog.Wait) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(notify(wait))

    async with fake.client(retry=FAST, on_wait=on_wait) as ph:
        fake.fail_next(1, status=503)
        page = await ph.customer_profile_configs.list()
        await asyncio.sleep(0)  # let the scheduled notification run
    assert [] == page.results
    assert 2 == len(fake.requests)
    assert [("retry", 2)] == [(w.reason, w.attempt) for w in heard]


async def test_every_request_the_rate_limiter_holds_back_hears_of_its_wait(
    fake: FakePostHog,
) -> None:
    """
    Four calls at once under 2 requests per 0.3 s: the last two are held back by the
    client's rate limiter for about 0.3 s each. `on_wait` "hears of every wait before it
    is taken" (a request queued behind the head "hears of its wait when its turn comes"),
    yet the fourth, admitted by the third when that one's window opened, never hears of
    its wait at all: a web app telling its users "waiting for PostHog" tells only one of
    the two.
    """
    heard: list[aposthog.Wait] = []
    limits = aposthog.RateLimits(api=(aposthog.Rate(2, per=0.3),), margin=0)
    loop = asyncio.get_running_loop()
    async with fake.client(retry=FAST, on_wait=heard.append, rate_limits=limits) as ph:
        started = loop.time()

        async def one() -> float:
            await ph.customer_profile_configs.list()
            return loop.time() - started

        with anyio.fail_after(5):
            took = sorted(await asyncio.gather(*(one() for _ in range(4))))
    held_back = [t for t in took if t > 0.2]
    assert 2 == len(held_back), took  # the two the limiter held back for their window
    # Each heard (before the fix, one did): one that, at the head, waits on a moment more
    # for a window place freeing just after the one before (timing) hears that too.
    assert len(heard) >= 2, heard
    assert {"rate_limit"} == {w.reason for w in heard}


@pytest.mark.parametrize("queued", [1, 3])
async def test_an_on_wait_raising_for_a_request_in_the_line_ends_that_call_alone(
    fake: FakePostHog, queued: int
) -> None:
    """
    A request queued behind a head asleep on its window hears of its wait before it is
    taken, told by the head (or on joining, behind a head already asleep). An `on_wait`
    that raises for it ends that call with its exception: not the head's call (in whose
    task it ran), nor the calls behind it, and the line goes on.
    """

    class Refused(Exception):
        pass

    heard: list[float] = []

    def on_wait(wait: aposthog.Wait) -> None:
        heard.append(wait.seconds)
        if len(heard) == 2:  # the first request queued behind the head
            raise Refused

    limits = aposthog.RateLimits(api=(aposthog.Rate(2, per=0.3),), margin=0)
    async with fake.client(retry=FAST, on_wait=on_wait, rate_limits=limits) as ph:
        with anyio.fail_after(5):
            results = await asyncio.gather(
                *(ph.customer_profile_configs.list() for _ in range(3 + queued)),
                return_exceptions=True,
            )
            assert 1 == sum(isinstance(r, Refused) for r in results), results
            assert 2 + queued == sum(isinstance(r, aposthog.Page) for r in results), results
            # Every held-back request heard (one that waits on at the head again, again).
            assert len(heard) >= 1 + queued
            assert all(0.0 < seconds <= 0.3 for seconds in heard), heard
            await ph.customer_profile_configs.list()  # the line is whole
