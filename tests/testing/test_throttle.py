"""FakePostHog's throttles: DRF's counting and PostHog's exact 429s, without a server."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aposthog import Rate, RateLimits
from aposthog._ratelimit import BucketLog
from aposthog.testing._throttle import FakeThrottles, ThrottleLimit, ai_detail, throttled
from aposthog.testing._wire import HTTPError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _body(exc: HTTPError) -> dict[str, object]:
    assert 429 == exc.reply.status
    assert "retry-after" not in {k.lower() for k in exc.reply.headers}
    body = json.loads(exc.reply.body)
    assert isinstance(body, dict)
    return body


def _api(clock: Clock, **rates: object) -> FakeThrottles:
    throttles = FakeThrottles(rate_limit_enabled=True, clock=clock, **rates)  # type: ignore[arg-type]
    return throttles


def test_defaults_are_posthogs() -> None:
    throttles = FakeThrottles()
    assert not throttles.rate_limit_enabled
    assert (480, 60.0) == throttles.burst
    assert (4800, 3600.0) == throttles.sustained
    assert (10, 60.0) == throttles.ai_burst
    assert (100, 86400.0) == throttles.ai_sustained
    assert (3, 60.0) == throttles.ai_research_burst
    assert (10, 86400.0) == throttles.ai_research_sustained
    throttles.rate_limit_enabled = True
    # The fake starts as an organization without a paid plan: every AI window applies.
    assert RateLimits.posthog_cloud(paying=False) == throttles.rate_limits()
    throttles.ai_enabled = False
    assert RateLimits.posthog_cloud() == throttles.rate_limits()


def test_off_unless_rate_limiting_is_enabled() -> None:
    throttles = FakeThrottles(burst=(1, 60))
    for _ in range(10):
        throttles.check_api("key")
    # Nor does a client need to count per key then; the margin asked for is kept.
    limits = throttles.rate_limits(margin=2.0)
    assert ((), 2.0) == (limits.api, limits.margin)


def test_the_api_429_is_drfs() -> None:
    clock = Clock()
    throttles = _api(clock, burst=Rate(2, per=10), sustained=None)
    throttles.check_api("key")
    clock.now += 1
    throttles.check_api("key")
    clock.now += 1.5
    with pytest.raises(HTTPError) as caught:
        throttles.check_api("key")
    assert {
        "type": "throttled_error",
        "code": "throttled",
        "detail": "Request was throttled. Expected available in 8 seconds.",
        "attr": None,
    } == _body(caught.value)
    # Another key has its own budget.
    throttles.check_api("other key")


def test_reset_forgets_every_recorded_request() -> None:
    throttles = _api(Clock(), burst=Rate(1, per=60), sustained=None)
    throttles.check_api("key")
    with pytest.raises(HTTPError):
        throttles.check_api("key")
    throttles.reset()
    throttles.check_api("key")  # a full budget again, at the same instant


def test_a_history_over_a_lowered_rate_names_no_wait() -> None:
    """DRF's wait() is None when more requests are recorded than the rate now allows."""
    clock = Clock()
    throttles = _api(clock, burst=Rate(3, per=60), sustained=None)
    for _ in range(3):
        throttles.check_api("key")
    throttles.burst = Rate(1, per=60)
    with pytest.raises(HTTPError) as caught:
        throttles.check_api("key")
    assert "Request was throttled." == _detail(caught.value)


def test_one_second_is_singular_and_zero_plural() -> None:
    assert "Request was throttled. Expected available in 1 second." == _detail(throttled(0.2))
    assert "Request was throttled. Expected available in 0 seconds." == _detail(throttled(0))
    assert "Request was throttled." == _detail(throttled(None))


def _detail(exc: HTTPError) -> str:
    detail = _body(exc)["detail"]
    assert isinstance(detail, str)
    return detail


def test_a_refusal_by_one_throttle_still_counts_in_the_other() -> None:
    """DRF asks every throttle; the one that allows records the request."""
    clock = Clock()
    throttles = _api(clock, burst=Rate(1, per=1), sustained=Rate(3, per=100))
    throttles.check_api("k")
    with pytest.raises(HTTPError):
        throttles.check_api("k")  # refused by burst, counted by sustained
    clock.now += 1
    throttles.check_api("k")  # burst has room again; sustained now holds 3
    clock.now += 1
    with pytest.raises(HTTPError) as caught:
        throttles.check_api("k")  # sustained refuses: its wait is the longer one
    assert "Expected available in 98 seconds." in _detail(caught.value)


def test_when_both_refuse_the_longer_wait_is_named() -> None:
    """DRF's check_throttles answers with the longest of the refusing throttles' waits."""
    clock = Clock()
    throttles = _api(clock, burst=Rate(1, per=10), sustained=Rate(1, per=100))
    throttles.check_api("k")
    clock.now += 1
    with pytest.raises(HTTPError) as caught:
        throttles.check_api("k")  # burst would wait 9 s, sustained 99 s
    assert "Expected available in 99 seconds." in _detail(caught.value)


def test_the_ai_429_is_posthog_ais() -> None:
    clock = Clock()
    throttles = FakeThrottles(clock=clock, ai_burst=Rate(1, per=60))
    throttles.check_ai("user-1", research=False)
    clock.now += 15.5
    with pytest.raises(HTTPError) as caught:
        throttles.check_ai("user-1", research=False)
    assert (
        "You've reached PostHog AI's usage limit for the moment. Please try again in 44 "
        "seconds. Expected available in 45 seconds."
    ) == _detail(caught.value)
    throttles.check_ai("user-2", research=False)  # per user


def test_research_has_its_own_throttles_and_words() -> None:
    clock = Clock()
    throttles = FakeThrottles(clock=clock, ai_research_sustained=Rate(1, per=150))
    throttles.check_ai("u", research=True)
    with pytest.raises(HTTPError) as caught:
        throttles.check_ai("u", research=True)
    assert (
        "You've reached the usage limit for Research mode, which is currently in beta with "
        "limited capacity. Please try again in 2 minutes, or switch to a regular conversation "
        "for continued access. Expected available in 150 seconds."
    ) == _detail(caught.value)
    throttles.check_ai("u", research=False)  # the normal budget is separate


def test_ai_throttles_stop_at_the_first_refusal() -> None:
    """PostHog's own check_throttles: a burst refusal records nothing in the daily log."""
    clock = Clock()
    throttles = FakeThrottles(clock=clock, ai_burst=Rate(1, per=60), ai_sustained=Rate(2, 1e6))
    throttles.check_ai("u", research=False)
    for _ in range(5):
        with pytest.raises(HTTPError):
            throttles.check_ai("u", research=False)
    clock.now += 60
    throttles.check_ai("u", research=False)  # the daily log held only one


@pytest.mark.parametrize(
    ("wait", "when"),
    [
        (0.4, "in 0 seconds"),
        (59.9, "in 59 seconds"),
        (60, "in 1 minutes"),
        (3599, "in 59 minutes"),
        (3600, "later today"),
        (None, "later"),
    ],
)
def test_ai_wait_wording(wait: float | None, when: str) -> None:
    assert f"Please try again {when}." in ai_detail(wait, research=False)
    assert f"Please try again {when}, or switch" in ai_detail(wait, research=True)


def test_zero_requests_refuses_everything() -> None:
    throttles = FakeThrottles(clock=Clock(), ai_burst=(0, 60))
    with pytest.raises(HTTPError) as caught:
        throttles.check_ai("u", research=False)
    assert "Expected available in 60 seconds." in _detail(caught.value)


def test_a_throttle_turned_off_leaves_the_other_on() -> None:
    """With the burst throttle off, the sustained one still refuses."""
    api = _api(Clock(), burst=None, sustained=(0, 3600))
    with pytest.raises(HTTPError):
        api.check_api("k")
    ai = FakeThrottles(clock=Clock(), ai_burst=None, ai_sustained=(0, 86400))
    with pytest.raises(HTTPError):
        ai.check_ai("u", research=False)
    research = FakeThrottles(
        clock=Clock(), ai_research_burst=None, ai_research_sustained=(0, 86400)
    )
    with pytest.raises(HTTPError):
        research.check_ai("u", research=True)


def test_ai_throttles_can_be_skipped_like_for_paying_customers() -> None:
    throttles = FakeThrottles(clock=Clock(), ai_burst=(0, 60), ai_enabled=False)
    throttles.check_ai("u", research=False)


def test_paying_customers_are_still_throttled_in_research_mode() -> None:
    """PostHog skips only the ordinary AI throttles for a paying organization."""
    throttles = FakeThrottles(clock=Clock(), ai_research_burst=(0, 60), ai_enabled=False)
    with pytest.raises(HTTPError) as caught:
        throttles.check_ai("u", research=True)
    assert "or switch" in _detail(caught.value)
    paying = FakeThrottles(ai_enabled=False).rate_limits()
    assert paying.ai == ()
    assert paying.ai_research == (Rate(3, per=60), Rate(10, per=86400))


def test_exempt_teams_are_not_throttled_in_research_mode() -> None:
    throttles = FakeThrottles(clock=Clock(), ai_research_burst=(0, 60), ai_research_enabled=False)
    throttles.check_ai("u", research=True)
    with pytest.raises(HTTPError):
        FakeThrottles(clock=Clock(), ai_burst=(0, 60), ai_research_enabled=False).check_ai(
            "u", research=False
        )
    assert FakeThrottles(ai_research_enabled=False).rate_limits().ai_research == ()


@pytest.mark.parametrize("bad", [(1,), (-1, 60), (1, 0), "10/minute", (True, 60), 10])
def test_bad_rates_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="throttle rate"):
        FakeThrottles(burst=bad)  # type: ignore[arg-type]


def test_a_rate_set_on_the_attribute_is_converted_and_checked() -> None:
    throttles = FakeThrottles()
    throttles.burst = Rate(40, per=4)
    assert (40, 4.0) == throttles.burst
    throttles.sustained = (100, 60.0)
    assert (100, 60.0) == throttles.sustained
    throttles.ai_burst = None
    assert throttles.ai_burst is None
    with pytest.raises(ValueError, match="throttle rate"):
        throttles.burst = "10/minute"  # type: ignore[assignment]
    assert (40, 4.0) == throttles.burst  # the refused value changed nothing
    shown = repr(throttles)
    assert shown.startswith("FakeThrottles(rate_limit_enabled=False, burst=(40, 4.0), ")
    assert ", ai_burst=None, " in shown
    throttles.sustained = (100, 60)
    assert ", sustained=(100, 60.0), " in repr(throttles)  # seconds as a float, as DRF's
    assert "(_" not in shown
    assert " _" not in shown


def test_a_throttle_limit_sets_the_count_and_keeps_the_window() -> None:
    class Fake:
        limit = ThrottleLimit("ai_burst")

        def __init__(self) -> None:
            self.throttles = FakeThrottles(ai_burst=Rate(10, per=30))

    assert 10 == Fake().limit
    fake = Fake()
    # What each setting left in the throttles (read anew: mypy would keep a narrowing).
    seen: list[tuple[int | None, tuple[int, float] | None]] = []
    for limit in (2, None, 3):
        fake.limit = limit
        seen.append((fake.limit, fake.throttles.ai_burst))
    # The window stays; a throttle turned off comes back with PostHog's window.
    assert [(2, (2, 30.0)), (None, None), (3, (3, 60.0))] == seen
    with pytest.raises(ValueError, match="no throttle is named 'ai_hourly'"):
        ThrottleLimit("ai_hourly")


def test_scale_keeps_posthogs_proportions() -> None:
    throttles = FakeThrottles(rate_limit_enabled=True)
    throttles.scale(1 / 20)
    assert (24, 3.0) == throttles.burst
    assert (240, 180.0) == throttles.sustained
    assert (1, 3.0) == throttles.ai_research_burst
    assert (Rate(24, per=3), Rate(240, per=180)) == throttles.rate_limits().api


@given(
    limit=st.integers(1, 5),
    per=st.integers(1, 50),
    gaps=st.lists(st.integers(0, 20), min_size=1, max_size=80),
)
def test_a_client_counting_with_the_same_log_is_never_refused(
    limit: int, per: int, gaps: list[int]
) -> None:
    """The client's log and the fake agree: what the client lets go, the fake accepts."""
    clock = Clock()
    throttles = _api(clock, burst=Rate(limit, per=per), sustained=None)
    client = BucketLog([Rate(limit, per=per)])
    for gap in gaps:
        clock.now += gap
        while (wait := client.try_acquire(clock.now)) > 0:
            clock.now += wait
        throttles.check_api("k")
