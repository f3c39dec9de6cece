"""FakePostHog throttles over HTTP as PostHog does: per key, per user, PostHog's 429s."""

from __future__ import annotations

import json

import aiohttp
import pytest

import aposthog
from aposthog.testing import FakePostHog
from aposthog.testing._throttle import ThrottleRate

from .conversation_http import body, post

pytestmark = pytest.mark.anyio

LIST = "/api/environments/1/customer_profile_configs/"


async def _get(fake: FakePostHog, key: str) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(fake.url + LIST, headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def test_per_key_throttles_are_off_until_enabled(fake: FakePostHog) -> None:
    fake.throttles.burst = aposthog.Rate(1, per=60)
    assert [200, 200, 200] == [(await _get(fake, fake.api_key))[0] for _ in range(3)]


async def test_the_burst_throttle_answers_posthogs_429(fake: FakePostHog) -> None:
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = aposthog.Rate(2, per=30)
    assert [200, 200] == [(await _get(fake, fake.api_key))[0] for _ in range(2)]
    status, headers, raw = await _get(fake, fake.api_key)
    assert 429 == status
    assert "Retry-After" not in headers
    assert {
        "type": "throttled_error",
        "code": "throttled",
        "detail": "Request was throttled. Expected available in 30 seconds.",
        "attr": None,
    } == json.loads(raw)
    # Per key: another key of the same user has a budget of its own.
    assert 200 == (await _get(fake, fake.add_key()))[0]
    assert 1 == fake.status_counts[429]


async def test_throttles_come_after_authentication(fake: FakePostHog) -> None:
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = (0, 30)
    assert 401 == (await _get(fake, "phx_unknown"))[0]
    assert 429 == (await _get(fake, fake.api_key))[0]


async def test_conversation_create_is_not_counted_per_key(fake: FakePostHog) -> None:
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = aposthog.Rate(1, per=30)
    fake.ai_burst_limit = 3
    for _ in range(3):
        status, _, _ = await post(fake, body("hi"))
        assert 200 == status
    assert 200 == (await _get(fake, fake.api_key))[0]
    status, _, raw = await post(fake, body("hi"))
    assert 429 == status
    assert "PostHog AI's usage limit" in json.loads(raw)["detail"]


async def test_the_client_reads_the_wait_from_the_detail(fake: FakePostHog) -> None:
    fake.throttles.rate_limit_enabled = True
    fake.throttles.burst = aposthog.Rate(1, per=7)
    async with fake.client(max_retries=0) as ph:
        await ph.customer_profile_configs.list()
        with pytest.raises(aposthog.RateLimitError) as caught:
            await ph.customer_profile_configs.list()
    assert 429 == caught.value.status
    assert 7 == caught.value.retry_after


def _ai_burst(fake: FakePostHog) -> ThrottleRate | None:
    """`fake.throttles.ai_burst`, read anew: mypy would keep an `is None` narrowing of the
    attribute across the setting of `fake.ai_burst_limit`."""
    return fake.throttles.ai_burst


async def test_the_ai_limit_attributes_set_the_throttles(fake: FakePostHog) -> None:
    assert 10 == fake.ai_burst_limit
    assert 100 == fake.ai_daily_limit
    assert (3, 10) == (fake.ai_research_burst_limit, fake.ai_research_daily_limit)
    fake.ai_burst_limit = None
    assert _ai_burst(fake) is None
    fake.ai_burst_limit = 4
    assert (4, 60.0) == fake.throttles.ai_burst
    fake.throttles.ai_sustained = aposthog.Rate(5, per=10)
    fake.ai_daily_limit = 6
    assert (6, 10.0) == fake.throttles.ai_sustained
    # A throttle turned off comes back with PostHog's window for it.
    fake.ai_research_burst_limit = fake.ai_research_daily_limit = None
    fake.ai_research_burst_limit = 2
    fake.ai_research_daily_limit = 5
    assert ((2, 60.0), (5, 86400.0)) == (
        fake.throttles.ai_research_burst,
        fake.throttles.ai_research_sustained,
    )
