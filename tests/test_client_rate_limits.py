"""A client's rate limits against FakePostHog throttling like PostHog, alone and in fleets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from typing import Any, cast

import anyio
import pytest

import aposthog
from aposthog import Rate, RateLimits
from aposthog.testing import FakePostHog

from .fleet import run_fleet
from .redis_server import _free_port, require_redis_py

pytestmark = pytest.mark.anyio


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize("host", ["us", "eu", "https://us.posthog.com"])
def test_auto_on_posthog_cloud_is_its_published_throttles(host: str) -> None:
    client = aposthog.Client(api_key="phx_k", host=host)
    assert client.rate_limiter is not None
    assert RateLimits.posthog_cloud() == client.rate_limiter.limits
    assert isinstance(client.rate_limiter.store, aposthog.InProcessRateLimitStore)


def test_auto_elsewhere_and_none_are_off() -> None:
    assert aposthog.Client(api_key="k", host="https://posthog.example.com").rate_limiter is None
    assert aposthog.Client(api_key="k", host="us", rate_limits=None).rate_limiter is None


def test_explicit_limits_and_store() -> None:
    limits = RateLimits(api=Rate(5, per=1))
    store = aposthog.InProcessRateLimitStore()
    client = aposthog.Client(
        api_key="k", host="https://posthog.example.com", rate_limits=limits, rate_limit_store=store
    )
    assert client.rate_limiter is not None
    assert limits is client.rate_limiter.limits
    assert store is client.rate_limiter.store
    assert client.with_options(timeout=1).rate_limiter is client.rate_limiter


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate_limits": "always"}, "rate_limits"),
        ({"rate_limits": Rate(1, per=1)}, "rate_limits"),
        ({"rate_limit_store": "redis://localhost"}, "rate_limit_store"),
    ],
)
def test_bad_arguments_are_configuration_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(aposthog.ConfigurationError, match=match):
        aposthog.Client(api_key="k", **kwargs)  # type: ignore[arg-type]


def test_the_key_is_not_in_the_limiters_repr() -> None:
    key = "phx_" + secrets.token_hex(12)
    client = aposthog.Client(api_key=key, host="us")
    assert key not in repr(client.rate_limiter)
    assert key not in repr(client.rate_limiter.store if client.rate_limiter else None)


# ---------------------------------------------------------------------- one client


def _throttled_like_posthog(fake: FakePostHog) -> None:
    """PostHog's shape, scaled down: a short burst window and a longer, tighter one."""
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = Rate(12, per=1)
    fake.throttles.sustained = Rate(30, per=5)
    fake.throttles.ai_burst = Rate(2, per=1)
    fake.throttles.ai_sustained = Rate(5, per=6)


async def test_a_client_alone_on_its_key_never_meets_a_429(fake: FakePostHog) -> None:
    _throttled_like_posthog(fake)
    fake.script_answer("ok")
    # The margin covers a request's time between the limiter and the server's count, which
    # on a loaded 2-core machine (the whole suite in parallel) can exceed 50 ms.
    limits = fake.throttles.rate_limits(margin=0.25)
    counts = {"api": 0, "ai": 0}
    async with fake.client(rate_limits=limits, max_retries=0) as ph:
        deadline = time.monotonic() + 7

        async def api_worker() -> None:
            while time.monotonic() < deadline:
                await ph.customer_profile_configs.list()
                counts["api"] += 1

        async def ai_worker() -> None:
            while time.monotonic() < deadline:
                await ph.conversations.create("hello").until_done()
                counts["ai"] += 1

        with anyio.move_on_after(8):
            async with anyio.create_task_group() as tg:
                for _ in range(12):
                    tg.start_soon(api_worker)
                for _ in range(3):
                    tg.start_soon(ai_worker)
    assert 0 == fake.status_counts[429]
    # Both windows were reached: more than one burst, and the sustained one bounded it.
    assert 30 < counts["api"] <= 30 + 30 + 12 + 12
    assert counts["ai"] >= 5


async def test_auto_never_refuses_a_paying_organizations_messages(fake: FakePostHog) -> None:
    """PostHog skips the AI throttles outside research mode for a paying organization, so
    the limits "auto" applies on PostHog Cloud must let its twelfth message in a minute
    through (they refused the eleventh, unsent, for a minute)."""
    fake.throttles.ai_enabled = False  # a paying organization
    async with fake.client(rate_limits=RateLimits.posthog_cloud()) as ph:
        with anyio.fail_after(30):
            for n in range(12):
                fake.script_answer(f"answer {n}")
                result = await ph.conversations.create(f"question {n}").until_done()
                assert f"answer {n}" == result.text
    assert 0 == fake.status_counts[429]


async def test_a_free_organization_without_ai_windows_waits_out_posthogs_429(
    fake: FakePostHog,
) -> None:
    """Without the AI windows ("auto"), a free organization's message over PostHog's
    budget meets the 429, and the client waits as PostHog asks and sends it again."""
    fake.throttles.ai_burst = Rate(2, per=1)
    async with fake.client(rate_limits=RateLimits.posthog_cloud(margin=0.05)) as ph:
        with anyio.fail_after(30):
            for n in range(3):
                fake.script_answer(f"answer {n}")
                result = await ph.conversations.create(f"question {n}").until_done()
                assert f"answer {n}" == result.text
    assert fake.status_counts[429] >= 1


async def test_research_mode_counts_in_its_own_windows(fake: FakePostHog) -> None:
    fake.throttles.ai_research_burst = Rate(1, per=0.5)
    fake.throttles.ai_burst = Rate(1, per=30)
    limits = fake.throttles.rate_limits(margin=0.05)
    async with fake.client(rate_limits=limits, max_retries=0) as ph:
        started = time.monotonic()
        for _ in range(3):
            fake.script_answer("deep")
            await ph.conversations.create("dig", agent_mode="research").until_done()
        assert time.monotonic() - started >= 1.0  # waited for the research window twice
        fake.script_answer("quick")
        await ph.conversations.create("hi").until_done()  # the normal window is untouched
    assert 0 == fake.status_counts[429]


async def test_a_message_to_a_research_conversation_counts_as_research(fake: FakePostHog) -> None:
    fake.throttles.ai_research_burst = Rate(1, per=0.5)
    limits = fake.throttles.rate_limits(margin=0.05)
    async with fake.client(rate_limits=limits, max_retries=0) as ph:
        fake.script_answer("deep")
        first = ph.conversations.create("dig", agent_mode="research")
        await first.until_done()
        research = ph._api.pipeline.research_conversations
        assert [first.conversation_id] == list(research)
        # PostHog counts it in the research windows (the conversation is `deep_research`):
        # the client waits for them rather than meet the 429.
        started = time.monotonic()
        fake.script_answer("deeper")
        await ph.conversations.create("more", conversation=first.conversation_id).until_done()
        assert time.monotonic() - started >= 0.4
        # That message made it a chat: the next one counts in the AI windows.
        assert fake.conversations[first.conversation_id].type == "assistant"
        assert [] == list(research)
        fake.script_answer("chat")
        await ph.conversations.create("again", conversation=first.conversation_id).until_done()
    assert 0 == fake.status_counts[429]


async def test_a_research_conversation_fetched_counts_as_research(fake: FakePostHog) -> None:
    seeded = fake.seed_conversation(type="deep_research")
    fake.throttles.ai_research_burst = Rate(1, per=0.5)
    limits = fake.throttles.rate_limits(margin=0.05)
    async with fake.client(rate_limits=limits, max_retries=0) as ph:
        fake.script_answer("deep")
        await ph.conversations.create("dig", agent_mode="research").until_done()
        conversation = await ph.conversations.get(seeded.id)
        assert aposthog.ConversationType.DEEP_RESEARCH == conversation.type
        started = time.monotonic()
        fake.script_answer("deeper")
        await ph.conversations.create("more", conversation=seeded.id).until_done()
        assert time.monotonic() - started >= 0.4  # waited for the research window
        # A conversation fetched as a chat is one; views share what the client knows.
        other = ph.with_options(timeout=5)
        research = other._api.pipeline.research_conversations
        await other.conversations.get(seeded.id)
        assert seeded.id not in research  # the message made it a chat
        again = fake.seed_conversation(type="deep_research")
        await other.conversations.get(again.id)
        assert again.id in research
        # An attach counts in the research windows too: it waits for them, then meets the
        # idle conversation's 400 (not a 429).
        with pytest.raises(aposthog.BadRequestError):
            await other.conversations.stream(again.id).until_done()
        await other.conversations.delete(again.id)
        assert again.id not in research
    assert 0 == fake.status_counts[429]


async def test_listing_conversations_teaches_which_are_research(fake: FakePostHog) -> None:
    research = fake.seed_conversation(type="deep_research")
    chat = fake.seed_conversation()
    fake.throttles.ai_research_burst = Rate(1, per=0.5)
    limits = fake.throttles.rate_limits(margin=0.05)
    async with fake.client(rate_limits=limits, max_retries=0) as ph:
        known = ph._api.pipeline.research_conversations
        known[chat.id] = None  # a stale guess: listing corrects it
        async for page in ph.conversations.list(limit=1).pages():
            assert 1 == len(page.results)
        assert [research.id] == list(known)
        fake.script_answer("deep")
        await ph.conversations.create("dig", agent_mode="research").until_done()
        started = time.monotonic()
        fake.script_answer("deeper")
        await ph.conversations.create("more", conversation=research.id).until_done()
        assert time.monotonic() - started >= 0.4  # waited for the research window
    assert 0 == fake.status_counts[429]


async def test_a_429_from_another_program_teaches_the_limiter(fake: FakePostHog) -> None:
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = Rate(10, per=2)
    fake.throttles.sustained = None
    limits = RateLimits(api=Rate(10, per=2), margin=0.05)
    async with fake.client(rate_limits=None) as other:  # another program on the same key
        for _ in range(10):
            await other.customer_profile_configs.list()
    async with fake.client(rate_limits=limits, max_concurrency=1) as ph:
        started = time.monotonic()
        for _ in range(5):
            await ph.customer_profile_configs.list()
        # The first request met the 429 and waited until PostHog said; none met another.
        assert 1 == fake.status_counts[429]
        assert time.monotonic() - started >= 1


async def test_waiting_holds_no_concurrency_slot(fake: FakePostHog) -> None:
    limits = RateLimits(ai=Rate(1, per=30))
    async with fake.client(rate_limits=limits, max_concurrency=1) as ph:
        fake.script_answer("first")
        await ph.conversations.create("one").until_done()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: ph.conversations.create("two").until_done())
            await anyio.sleep(0.05)  # the second create waits for the AI window...
            with anyio.fail_after(2):
                await ph.customer_profile_configs.list()  # ...while other calls go on
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("observed", [False, True])
async def test_a_request_held_back_by_a_concurrency_slot_is_counted_when_it_goes(
    fake: FakePostHog, observed: bool
) -> None:
    """
    A client alone on its key never meets a 429 from the throttles, also when
    `max_concurrency` holds requests back: ten requests fill the window at once, but two
    slots and slow answers send them over a second, and PostHog counts each when it
    arrives. Counted when the limiter let them through (all at the start), the next ten
    went together as soon as the client's window freed, while PostHog still held eight
    of the first ten in its own: 8 of them met 429.
    """
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = Rate(10, per=1)
    fake.throttles.sustained = None
    fake.latency = 0.2
    # A wide margin: a busy machine may delay a request between the limiter and the
    # server by a tenth of a second or more. Counted at the start, the next ten would
    # still go while PostHog held most of the first ten (sent up to 0.8 s later).
    limits = fake.throttles.rate_limits(margin=0.5)
    waits: list[aposthog.Wait] = []
    # With `on_wait`, every call goes through the observed path.
    hooks: dict[str, Any] = {"on_wait": waits.append} if observed else {}
    async with fake.client(rate_limits=limits, max_concurrency=2, max_retries=0, **hooks) as ph:

        async def one() -> None:
            with contextlib.suppress(aposthog.RateLimitError):
                await ph.customer_profile_configs.list()

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
        fake.latency = 0.0
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
    assert 20 == len(fake.requests)
    assert 0 == fake.status_counts[429]
    if observed:
        assert waits  # the second ten waited for the client's window
        assert {"rate_limit"} == {w.reason for w in waits}


async def test_calls_that_only_wait_for_a_slot_are_not_refused_as_rate_limited(
    fake: FakePostHog,
) -> None:
    """
    The windows have room and PostHog is slow: calls wait for `max_concurrency` slots,
    never for the rate limit, and each goes when a slot frees, as without rate limits
    (the wait for a slot is no part of `max_retry_after`).
    """
    fake.latency = 0.2
    policy = aposthog.RetryPolicy(max_retry_after=0.5)
    limits = RateLimits(api=Rate(1000, per=60))
    async with fake.client(rate_limits=limits, max_concurrency=1, retry=policy) as ph:

        async def one() -> None:
            await ph.customer_profile_configs.list()

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(one)
    assert 8 == len(fake.requests)


async def test_a_call_waiting_for_its_window_when_the_client_closes_is_not_sent(
    fake: FakePostHog,
) -> None:
    """A call still waiting for the limiter when the client closes fails as a closed
    client's call (`ClientStateError` saying so) once the wait ends, and is never sent."""
    errors: list[BaseException] = []
    async with fake.client(rate_limits=RateLimits(api=Rate(1, per=0.6)), max_retries=0) as ph:
        await ph.customer_profile_configs.list()

        async def waiting() -> None:
            try:
                await ph.customer_profile_configs.list()
            except aposthog.ClientStateError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting)
            await anyio.sleep(0.05)  # the second call waits for the API window
            await ph.aclose()
    assert 1 == len(fake.requests)
    assert ["this aposthog.Client was closed while the call waited"] == [str(e) for e in errors]


async def test_with_options_views_share_the_budget(fake: FakePostHog) -> None:
    limits = RateLimits(api=Rate(3, per=30))
    async with fake.client(rate_limits=limits) as ph:
        view = ph.with_options(timeout=5)
        await ph.customer_profile_configs.list()
        await view.customer_profile_configs.list()
        await view.with_options(max_retries=0).customer_profile_configs.list()
        with anyio.move_on_after(0.2) as waited:
            await ph.customer_profile_configs.list()
        assert waited.cancelled_caught
    assert 3 == len(fake.requests)


async def test_clients_sharing_a_store_count_each_key_apart(fake: FakePostHog) -> None:
    store = aposthog.InProcessRateLimitStore()
    limits = RateLimits(api=Rate(1, per=30))
    async with (
        fake.client(rate_limits=limits, rate_limit_store=store) as ph,
        fake.client(api_key=fake.add_key(), rate_limits=limits, rate_limit_store=store) as other,
        fake.client(rate_limits=limits, rate_limit_store=store) as same_key,
    ):
        with anyio.fail_after(2):
            await ph.customer_profile_configs.list()
            await other.customer_profile_configs.list()  # its own key: its own budget
        with anyio.move_on_after(0.2) as waited:
            await same_key.customer_profile_configs.list()  # ph's key: ph's budget
        assert waited.cancelled_caught
    assert 2 == len(fake.requests)


async def test_on_wait_hears_of_the_limiters_waits(fake: FakePostHog) -> None:
    waits: list[aposthog.Wait] = []
    limits = RateLimits(api=Rate(1, per=0.3), margin=0)
    async with fake.client(rate_limits=limits, on_wait=waits.append) as ph:
        await ph.customer_profile_configs.list()
        assert [] == waits
        await ph.customer_profile_configs.list()
    assert 1 == len(waits)
    assert "rate_limit" == waits[0].reason
    assert 0 < waits[0].seconds <= 0.3
    assert waits[0].error is None


# ---------------------------------------------------------------------- Redis


async def test_an_unreachable_store_fails_the_request_unsent(fake: FakePostHog) -> None:
    require_redis_py()
    store = aposthog.RedisRateLimitStore(f"redis://127.0.0.1:{_free_port()}/0", timeout=1)
    limits = RateLimits(api=Rate(5, per=1))
    async with fake.client(rate_limits=limits, rate_limit_store=store) as ph:
        with pytest.raises(aposthog.RateLimitStoreError) as caught:
            await ph.customer_profile_configs.list()
    assert isinstance(caught.value, aposthog.APIConnectionError)
    assert fake.api_key not in str(caught.value)
    assert [] == fake.requests


async def test_a_caller_that_never_waits_is_not_refused_for_the_stores_round_trips(
    fake: FakePostHog, redis_url: str
) -> None:
    """
    `max_retry_after=0`: never wait for a rate limit. With windows nearly empty, the
    requests queued behind one asking Redis spent their time on its round trip and were
    refused by the client itself (a `RateLimitError` no window and no 429 caused): 19 of
    20 concurrent calls. Asking the store is no rate-limit wait.
    """
    store = aposthog.RedisRateLimitStore(redis_url, prefix=f"test:{secrets.token_hex(4)}")
    limits = RateLimits(api=Rate(1000, per=60))
    policy = aposthog.RetryPolicy(max_retry_after=0)
    async with fake.client(rate_limits=limits, rate_limit_store=store, retry=policy) as ph:
        pages = await asyncio.gather(*(ph.customer_profile_configs.list() for _ in range(20)))
    assert len(pages) == 20 == len(fake.requests)
    assert 429 not in fake.status_counts


async def test_a_429_pauses_every_process_sharing_the_store(
    fake: FakePostHog, redis_url: str
) -> None:
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = Rate(2, per=2)
    limits = RateLimits(api=Rate(1000, per=60))  # a client that does not know the budget
    prefix = f"test:{secrets.token_hex(4)}"
    first = aposthog.RedisRateLimitStore(redis_url, prefix=prefix)
    second = aposthog.RedisRateLimitStore(redis_url, prefix=prefix)
    async with (
        fake.client(rate_limits=limits, rate_limit_store=first, max_retries=0) as a,
        fake.client(rate_limits=limits, rate_limit_store=second, max_retries=0) as b,
    ):
        await a.customer_profile_configs.list()
        await a.customer_profile_configs.list()
        with pytest.raises(aposthog.RateLimitError):
            await a.customer_profile_configs.list()  # PostHog: "Expected available in 2 s"
        started = time.monotonic()
        await b.customer_profile_configs.list()  # b never saw the 429, yet waits
        assert time.monotonic() - started >= 1
    assert 1 == fake.status_counts[429]


async def test_a_429_whose_pause_the_store_cannot_write_is_still_reported_as_the_429(
    fake: FakePostHog, redis_url: str
) -> None:
    """
    PostHog answers 429 while Redis stalls (here paused for writes; a slow failover):
    the pause cannot be shared with the fleet, but the caller must still learn what
    happened: PostHog refused the request (`RateLimitError`, its `retry_after`), not
    "the request was not sent" (`RateLimitStoreError`, `reached_server=False`), which
    would make a caller that retries unsent requests at once hammer a throttled key.
    """
    import redis.asyncio

    admin = redis.asyncio.Redis.from_url(redis_url)
    store = aposthog.RedisRateLimitStore(
        redis_url, prefix=f"test:{secrets.token_hex(4)}", timeout=0.3
    )
    fake.latency = 0.3  # the request is in flight while Redis stops taking writes
    fake.throttle_next(wait=1)
    limits = RateLimits(api=Rate(100, per=60))
    try:
        async with fake.client(rate_limits=limits, rate_limit_store=store, max_retries=0) as ph:
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:

                    async def pause_redis_once_sent() -> None:
                        while not fake.requests:  # noqa: ASYNC110 (sent: in flight)
                            await anyio.sleep(0.01)
                        await cast(Any, admin).execute_command("CLIENT", "PAUSE", "3000", "WRITE")

                    tg.start_soon(pause_redis_once_sent)
                    with pytest.raises(aposthog.PostHogError) as caught:
                        await ph.customer_profile_configs.list()
    finally:
        await cast(Any, admin).execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()
    assert 1 == fake.status_counts[429]
    assert "was not sent" not in str(caught.value)
    assert isinstance(caught.value, aposthog.RateLimitError)
    assert 1 == caught.value.retry_after


async def _connections_named(admin: Any, name: str, expected: int | None = None) -> int:
    """How many connections Redis has under `name`; with `expected`, once it has that
    many (or 2 s on): the server learns of a closed connection at its next turn."""

    async def count() -> int:
        return sum(1 for client in await admin.client_list() if client["name"] == name)

    for _ in range(100 if expected is not None else 0):
        if await count() == expected:
            break
        await anyio.sleep(0.02)
    return await count()


async def test_the_last_client_using_a_store_closes_its_connections(
    fake: FakePostHog, redis_url: str
) -> None:
    """A store made from a URL keeps its connection while any client uses it, and
    closes it when the last one closes."""
    import redis.asyncio

    name = f"test-{secrets.token_hex(4)}"
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        store = aposthog.RedisRateLimitStore(f"{redis_url}?client_name={name}")
        limits = RateLimits(api=Rate(100, per=60))
        first = fake.client(rate_limits=limits, rate_limit_store=store)
        async with fake.client(rate_limits=limits, rate_limit_store=store) as second:
            async with first:
                await first.customer_profile_configs.list()
                await second.customer_profile_configs.list()
                assert 1 == await _connections_named(admin, name)
            await anyio.sleep(0.1)
            assert 1 == await _connections_named(admin, name)  # `second` still uses it
            await second.customer_profile_configs.list()
        assert 0 == await _connections_named(admin, name, 0)
        assert 3 == len(fake.requests)
    finally:
        await admin.aclose()


async def test_a_client_refused_at_construction_does_not_keep_the_store_open(
    fake: FakePostHog, redis_url: str
) -> None:
    """
    A `Client(...)` that raises (an `on_wait` that is not a function, a `session` that
    is not a session) is no user of its store: the last real client to close still
    closes the store's connections, as the store promises.
    """
    import redis.asyncio

    name = f"test-{secrets.token_hex(4)}"
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        store = aposthog.RedisRateLimitStore(f"{redis_url}?client_name={name}")
        limits = RateLimits(api=Rate(100, per=60))
        with pytest.raises(TypeError, match="on_wait"):
            fake.client(rate_limits=limits, rate_limit_store=store, on_wait=42)  # type: ignore[arg-type]
        async with fake.client(rate_limits=limits, rate_limit_store=store) as ph:
            await ph.customer_profile_configs.list()
            assert 1 == await _connections_named(admin, name)
        assert 0 == await _connections_named(admin, name, 0)
    finally:
        await store.aclose()
        await admin.aclose()


async def test_a_client_closed_by_a_cancelled_task_closes_its_store(
    fake: FakePostHog, redis_url: str
) -> None:
    """Closing is shielded: a client closed in a `finally` of a cancelled task still
    closes the connections of its store."""
    import redis.asyncio

    name = f"test-{secrets.token_hex(4)}"
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        store = aposthog.RedisRateLimitStore(f"{redis_url}?client_name={name}")
        ph = fake.client(rate_limits=RateLimits(api=Rate(100, per=60)), rate_limit_store=store)
        await ph.customer_profile_configs.list()
        assert 1 == await _connections_named(admin, name)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await ph.aclose()
        assert ph.closed
        assert 0 == await _connections_named(admin, name, 0)
    finally:
        await admin.aclose()


async def test_four_processes_share_one_budget_through_redis(
    fake: FakePostHog, redis_url: str
) -> None:
    """
    40 requests per 4 s, 4 processes x 8 tasks, 16 s: no 429, at least 90% used.

    The margin (each request counted 0.4 s beyond its window) covers the spread between
    Redis's clock at the count and the fake's at arrival on a loaded machine; it still
    leaves 4 / 4.4 = 91% of the budget in a long run.
    """
    rate = Rate(40, per=4)
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = rate
    fake.throttles.sustained = None
    totals = await run_fleet(
        fake.url, fake.api_key, "redis", redis_url=redis_url, rate=rate, margin=0.4, duration=16
    )
    assert 0 == fake.status_counts[429]
    assert 0 == totals["rate_limit_errors"]
    budget = rate.limit * 16 / rate.per
    assert totals["completed"] >= 0.9 * budget, totals
    assert totals["completed"] <= budget


async def test_a_pause_longer_than_a_call_may_wait_fails_it_at_once(fake: FakePostHog) -> None:
    # PostHog AI's daily limit answers "Expected available in 86400 seconds.": the call
    # that meets it raises at once (over max_retry_after), and so does every later call
    # of that bucket, unsent, rather than sleeping through the day.
    fake.throttle_next(wait=86400)
    async with fake.client(rate_limits=RateLimits(api=Rate(100, per=60))) as ph:
        with pytest.raises(aposthog.RateLimitError) as first:
            await ph.customer_profile_configs.list()
        assert first.value.retry_after == 86400
        with anyio.fail_after(2):
            with pytest.raises(aposthog.RateLimitError) as later:
                await ph.customer_profile_configs.list()
        assert 86300 < (later.value.retry_after or 0) <= 86400
        assert "api rate limit" in str(later.value)
        # Refused before sending, it still names its request, as a 429 response's does.
        assert later.value.method == "GET"
        assert later.value.path == f"/api/environments/{fake.project_id}/customer_profile_configs/"
        assert f"on GET {later.value.path}" in str(later.value)
    assert 1 == len(fake.requests)


async def test_a_429_on_a_retried_attempt_pauses_the_bucket_too(fake: FakePostHog) -> None:
    # The first attempt fails with a 503 and is retried; the retry meets the daily limit.
    # That 429 holds the bucket as a first attempt's does: the next call raises unsent.
    fake.fail_next(1, status=503)
    fake.throttle_next(wait=86400)
    policy = aposthog.RetryPolicy(initial_backoff=0.01, max_backoff=0.01)
    async with fake.client(rate_limits=RateLimits(api=Rate(100, per=60)), retry=policy) as ph:
        with pytest.raises(aposthog.RateLimitError) as first:
            await ph.customer_profile_configs.list()
        assert first.value.retry_after == 86400
        assert (fake.status_counts[503], fake.status_counts[429]) == (1, 1)
        with anyio.fail_after(2):
            with pytest.raises(aposthog.RateLimitError) as later:
                await ph.customer_profile_configs.list()
        assert 86300 < (later.value.retry_after or 0) <= 86400
    assert 2 == len(fake.requests)


async def test_a_window_wait_beyond_the_deadline_is_not_begun(fake: FakePostHog) -> None:
    limits = RateLimits(api=Rate(1, per=30), margin=0)
    policy = aposthog.RetryPolicy(deadline=1)
    async with fake.client(rate_limits=limits, retry=policy) as ph:
        await ph.customer_profile_configs.list()
        with anyio.fail_after(2):
            with pytest.raises(aposthog.RateLimitError) as refused:
                await ph.customer_profile_configs.list()
        assert 1 < (refused.value.retry_after or 0) <= 30
        assert (refused.value.method, refused.value.path) == (
            "GET",
            f"/api/environments/{fake.project_id}/customer_profile_configs/",
        )
        # The same through a call that is watched (here by an `on_wait` listener).
        heard: list[object] = []
        async with fake.client(rate_limits=limits, retry=policy, on_wait=heard.append) as other:
            await other.customer_profile_configs.list()
            with pytest.raises(aposthog.RateLimitError) as watched:
                await other.customer_profile_configs.list()
        assert heard == []  # refused, not waited
        assert watched.value.method == "GET"
        assert watched.value.path == refused.value.path
        # A view whose deadline allows the wait takes it (cancelled here: it is 30 s).
        view = ph.with_options(retry=aposthog.RetryPolicy(deadline=None))
        with anyio.move_on_after(0.3) as waited:
            await view.customer_profile_configs.list()
        assert waited.cancelled_caught
    assert 2 == len(fake.requests)  # one for each client


async def test_a_retry_refused_by_the_limiter_names_its_request_with_its_id(
    fake: FakePostHog,
) -> None:
    """A retry (after a 503) that the limiter refuses names the request as sent, the id
    in its path, not the route's template."""
    config_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    fake.fail_next(1, status=503)
    limits = RateLimits(api=Rate(1, per=30), margin=0)
    policy = aposthog.RetryPolicy(deadline=1, initial_backoff=0.001, max_backoff=0.001)
    async with fake.client(rate_limits=limits, retry=policy) as ph:
        with anyio.fail_after(2), pytest.raises(aposthog.RateLimitError) as refused:
            await ph.customer_profile_configs.get(config_id)
    assert refused.value.path == (
        f"/api/environments/{fake.project_id}/customer_profile_configs/{config_id}/"
    )
    assert 1 == len(fake.requests)


async def test_a_stream_refused_by_the_limiter_names_its_request(fake: FakePostHog) -> None:
    limits = RateLimits(ai=Rate(1, per=30), margin=0)
    async with fake.client(rate_limits=limits, retry=aposthog.RetryPolicy(deadline=1)) as ph:
        await ph.conversations.create("q").until_done()
        with anyio.fail_after(2):
            with pytest.raises(aposthog.RateLimitError) as refused:
                await ph.conversations.create("again").until_done()
    assert refused.value.method == "POST"
    assert refused.value.path == f"/api/environments/{fake.project_id}/conversations/"
    assert 1 == len(fake.requests)


# ---------------------------------------------------------------------- worker pools


async def test_a_call_queued_in_the_limiters_line_keeps_to_its_deadline(
    fake: FakePostHog,
) -> None:
    """`RetryPolicy.deadline` bounds the whole call: no wait is begun that would end
    after it, so a call lasts at most about `deadline + timeout` (README, `Client`'s
    docstring). A worker pool queues many calls of one bucket at once: a call's wait
    behind the others is a rate-limit wait like any, and must end by its deadline (the
    call then raises `RateLimitError`), not run on for as long as the line is.
    """
    limits = RateLimits(api=Rate(1, per=0.3), margin=0)
    policy = aposthog.RetryPolicy(deadline=0.5)
    durations: list[float] = []
    async with fake.client(rate_limits=limits, retry=policy, timeout=1) as ph:

        async def one() -> None:
            started = time.monotonic()
            with contextlib.suppress(aposthog.RateLimitError):
                await ph.customer_profile_configs.list()
            durations.append(time.monotonic() - started)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
    assert 10 == len(durations)
    assert max(durations) < 0.5 + 1  # deadline + timeout; the line alone is 2.7 s


async def test_a_research_429_on_a_message_sent_as_a_chat_leaves_the_chat_bucket_alone(
    fake: FakePostHog,
) -> None:
    """
    A message to a research conversation this client has not seen (another process
    made it; the web app got the follow-up) goes in the `ai` bucket, but PostHog counts
    it in its research windows and answers with the research 429 ("the usage limit for
    Research mode ... Expected available in 3600 seconds."). That pause is the research
    bucket's: the client held back every ordinary PostHog AI message for the hour,
    unsent, though PostHog takes them (a paying organization has no chat throttle),
    and through a shared Redis store the whole fleet's.
    """
    seeded = fake.seed_conversation(type="deep_research")  # unknown to this client
    fake.throttles.ai_enabled = False  # a paying organization: chats are not throttled
    fake.throttles.ai_research_burst = Rate(1, per=3600)
    fake.throttles.ai_research_sustained = None
    limits = fake.throttles.rate_limits(margin=0.05)
    assert () == limits.ai
    async with fake.client(rate_limits=limits, max_retries=0) as ph:
        fake.script_answer("deep")
        await ph.conversations.create("dig", agent_mode="research").until_done()
        with pytest.raises(aposthog.RateLimitError) as refused:
            await ph.conversations.create("more", conversation=seeded.id).until_done()
        assert "Research mode" in str(refused.value)
        assert 3500 < (refused.value.retry_after or 0) <= 3600
        # An ordinary chat, which PostHog takes: the client must send it.
        fake.script_answer("hello")
        with anyio.fail_after(2):
            result = await ph.conversations.create("hi").until_done()
        assert "hello" in result.text
        # And the conversation's next message waits in the research windows.
        assert seeded.id in ph._api.pipeline.research_conversations
    assert 1 == fake.status_counts[429]


def _spin(seconds: float) -> None:
    """Hold the event loop (and the thread) for `seconds`, without a timer."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_under_uvloop_a_request_held_back_once_hears_of_one_wait() -> None:
    """
    uvloop's timers count whole milliseconds (`call_later` rounds the delay, libuv's
    clock is truncated to the millisecond), so the limiter's sleep of 2.6 ms may end a
    fraction of a millisecond before `time.monotonic()` says the window frees. The
    limiter then asks again, finds 0.3 ms left, and begins, announces (`on_wait`) and
    logs another wait, rounded to 0 ms by uvloop, then another, spinning through the loop
    until the clock catches up: `on_wait` hears of dozens of sub-millisecond waits for
    one request held back once (`test_on_wait_hears_of_the_limiters_waits` fails under
    uvloop for this reason). Each request here starts at another phase of the
    millisecond, so some are woken early whatever the machine's speed.
    """
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        import uvloop  # the tests' dependency group installs it: CI runs this, never skips
    else:
        uvloop = pytest.importorskip("uvloop")

    async def main() -> list[list[float]]:
        waits: list[aposthog.Wait] = []
        heard: list[list[float]] = []
        limits = RateLimits(api=Rate(1, per=0.003), margin=0)
        async with (
            FakePostHog() as fake,
            fake.client(rate_limits=limits, on_wait=waits.append) as ph,
        ):
            await ph.customer_profile_configs.list()
            for k in range(30):
                _spin((k * 0.000137) % 0.001)
                waits.clear()
                await ph.customer_profile_configs.list()
                heard.append([round(wait.seconds, 6) for wait in waits])
        return heard

    heard = uvloop.run(main())
    assert [] == [waits for waits in heard if len(waits) > 1]
