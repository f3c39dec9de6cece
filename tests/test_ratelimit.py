"""The rate-limit data and the pure sliding-window log: it counts the way PostHog does."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aposthog
from aposthog._ratelimit import BucketLog, Rate, RateLimits, WindowLog, resolve_rate_limits


class DRFThrottle:
    """Django REST framework's SimpleRateThrottle, as PostHog runs it (newest time first)."""

    def __init__(self, num_requests: int, duration: float) -> None:
        self.num_requests = num_requests
        self.duration = duration
        self.history: list[float] = []
        self.now = 0.0

    def allow_request(self, now: float) -> bool:
        self.now = now
        while self.history and self.history[-1] <= now - self.duration:
            self.history.pop()
        if len(self.history) >= self.num_requests:
            return False
        self.history.insert(0, now)
        return True

    def wait(self) -> float | None:
        remaining = self.duration - (self.now - self.history[-1]) if self.history else self.duration
        available = self.num_requests - len(self.history) + 1
        return None if available <= 0 else remaining / available


# ---------------------------------------------------------------------- Rate, RateLimits


def test_rate_is_a_limit_per_seconds() -> None:
    assert Rate(480, per=60) == Rate(480, 60.0)
    assert 60.0 == Rate(480, per=60).per


@pytest.mark.parametrize(
    ("limit", "per", "error", "name"),
    [
        (0, 60, ValueError, "limit"),
        (-1, 60, ValueError, "limit"),
        (True, 60, TypeError, "limit"),
        (1.5, 60, TypeError, "limit"),
        (10, 0, ValueError, "per"),
        (10, -1, ValueError, "per"),
        (10, math.inf, ValueError, "per"),
        (10, math.nan, ValueError, "per"),
        (10, "60", TypeError, "per"),
        (10, True, TypeError, "per"),
        # Past ten years: no store could count it (Redis's microseconds overflowed).
        (10, 10 * 365.25 * 86400 + 1, ValueError, "per"),
        (10, 1e303, ValueError, "per"),
    ],
)
def test_rate_refuses_what_is_not_a_window(
    limit: object, per: object, error: type, name: str
) -> None:
    """The error names the argument at fault (a bool is neither a count nor seconds)."""
    with pytest.raises(error, match=f"Rate {name} must"):
        Rate(limit, per=per)  # type: ignore[arg-type]


def test_a_window_of_ten_years_is_the_longest() -> None:
    assert 10 * 365.25 * 86400 == Rate(1, per=10 * 365.25 * 86400).per
    assert 10 * 365.25 * 86400 == RateLimits(margin=10 * 365.25 * 86400).margin


def test_seconds_are_floats() -> None:
    """`per` and `margin` are stored as floats, as the repr shows them."""
    assert "Rate(limit=480, per=60.0)" == repr(Rate(480, per=60))
    assert float is type(RateLimits(margin=1).margin)


def test_posthog_cloud_is_the_published_throttles() -> None:
    limits = RateLimits.posthog_cloud()
    assert (Rate(480, per=60), Rate(4800, per=3600)) == limits.api
    # PostHog skips the AI windows outside research mode for a paying organization, so
    # by default the client does not count them (it would refuse what PostHog allows).
    assert () == limits.ai
    assert (Rate(3, per=60), Rate(10, per=86400)) == limits.ai_research
    assert limits.windows("ai_research") == limits.ai_research
    assert 2.0 == RateLimits.posthog_cloud(margin=2).margin
    free = RateLimits.posthog_cloud(paying=False)
    assert (Rate(10, per=60), Rate(100, per=86400)) == free.ai
    assert (limits.api, limits.ai_research) == (free.api, free.ai_research)
    with pytest.raises(TypeError, match="paying"):
        RateLimits.posthog_cloud(paying="no")  # type: ignore[arg-type]


def test_rate_limits_take_one_rate_several_or_none() -> None:
    limits = RateLimits(api=Rate(5, per=1), ai=[Rate(1, per=1), Rate(2, per=5)])
    assert (Rate(5, per=1),) == limits.api
    assert (Rate(1, per=1), Rate(2, per=5)) == limits.ai
    assert () == limits.ai_research == RateLimits(ai_research=None).ai_research


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"api": (5, 60)}, TypeError),
        ({"api": "480/minute"}, TypeError),
        ({"ai": 10}, TypeError),
        ({"margin": -1}, ValueError),
        ({"margin": math.nan}, ValueError),
        ({"margin": "1"}, TypeError),
        ({"margin": True}, TypeError),
        ({"margin": 1e303}, ValueError),
    ],
)
def test_rate_limits_refuse_bad_arguments(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        RateLimits(**kwargs)  # type: ignore[arg-type]


def test_the_default_margin_is_half_a_second_and_zero_is_allowed() -> None:
    """0.5 s unless told otherwise (as documented); 0 counts exactly as PostHog does."""
    assert 0.5 == RateLimits().margin == RateLimits.posthog_cloud().margin
    assert 0.0 == RateLimits(margin=0).margin


def test_each_bucket_has_its_own_windows() -> None:
    limits = RateLimits(api=Rate(1, per=1), ai=Rate(2, per=2), ai_research=Rate(3, per=3))
    assert (Rate(1, per=1),) == limits.windows("api")
    assert (Rate(2, per=2),) == limits.windows("ai")
    assert (Rate(3, per=3),) == limits.windows("ai_research")


def test_an_unknown_bucket_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bucket 'query'"):
        RateLimits().windows("query")


@pytest.mark.parametrize(
    "host",
    [
        "https://us.posthog.com",
        "https://eu.posthog.com",
        "https://app.posthog.com/",
        "https://US.PostHog.com",  # host names are case-insensitive
        "https://eu.posthog.com:443",  # the default port, spelled out
    ],
)
def test_auto_is_posthog_clouds_throttles_on_posthog_cloud(host: str) -> None:
    assert RateLimits.posthog_cloud() == resolve_rate_limits("auto", host)


@pytest.mark.parametrize(
    "host", ["https://posthog.example.com", "http://127.0.0.1:8000", "https://us.i.posthog.com"]
)
def test_auto_is_no_limiter_elsewhere(host: str) -> None:
    assert resolve_rate_limits("auto", host) is None
    # ...unless a store is given: then 429 pauses are still shared through it.
    assert RateLimits() == resolve_rate_limits("auto", host, store_given=True)


def test_none_and_explicit_limits_are_taken_as_given() -> None:
    limits = RateLimits(api=Rate(1, per=1))
    assert limits is resolve_rate_limits(limits, "https://posthog.example.com")
    assert resolve_rate_limits(None, "https://us.posthog.com", store_given=True) is None


@pytest.mark.parametrize("bad", ["on", "posthog_cloud", 480, Rate(1, per=1)])
def test_other_rate_limits_are_a_configuration_error(bad: object) -> None:
    with pytest.raises(aposthog.ConfigurationError, match="rate_limits"):
        resolve_rate_limits(bad, "https://us.posthog.com")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- WindowLog = DRF

# Whole milliseconds keep every sum exact, so "exactly like the server" can be asserted.
times_ms = st.lists(st.integers(0, 5_000), min_size=1, max_size=120).map(sorted)


@given(limit=st.integers(1, 8), per_ms=st.integers(1, 2_000), moments=times_ms)
def test_window_log_decides_like_drf(limit: int, per_ms: int, moments: list[int]) -> None:
    """Same requests, same answers; a refusal waits exactly what DRF's wait() says."""
    drf = DRFThrottle(limit, float(per_ms))
    log = WindowLog(limit, float(per_ms))
    for moment in moments:
        now = float(moment)
        allowed = drf.allow_request(now)
        wait = log.wait(now)
        assert allowed == (wait == 0.0)
        if allowed:
            log.record(now)
        else:
            assert drf.wait() == wait
        assert sorted(drf.history) == list(log.times)


def test_a_time_exactly_one_window_old_is_forgotten() -> None:
    """DRF drops a time at `now - duration` itself: the log forgets it at that moment."""
    drf = DRFThrottle(2, 10.0)
    log = WindowLog(2, 10.0)
    for now in (0.0, 0.0, 10.0):
        assert drf.allow_request(now)
        assert 0.0 == log.wait(now)
        log.record(now)
        assert sorted(drf.history) == list(log.times)
    assert [10.0] == list(log.times)


def test_a_full_window_admits_nothing_at_a_rounding_edge() -> None:
    """
    `t + per - now` can be 0 in floats while `t > now - per`: `t` is still in the window
    (as DRF's `history[-1] <= now - duration` finds), so the wait is positive, not 0.
    """
    t, per = 23796.462709189138, 86400.5
    now = t + per
    assert t > now - per  # the edge: `t` is not yet `per` old
    assert 0.0 == t + per - now
    log = BucketLog([Rate(1, per=per)])
    assert 0.0 == log.try_acquire(t)
    assert all(log.try_acquire(now) > 0 for _ in range(3))
    later = math.nextafter(now, math.inf)
    assert t <= later - per  # one step of the clock later, `t` is `per` old
    assert 0.0 == log.try_acquire(later)


@given(
    t=st.floats(0, 1e9, allow_nan=False),
    per=st.floats(1e-3, 1e6, allow_nan=False),
    step=st.integers(-3, 3),
)
def test_the_log_admits_exactly_when_drf_forgets(t: float, per: float, step: int) -> None:
    """At any float `now` near `t + per`, the log admits a second request iff DRF would."""
    now = t + per
    for _ in range(abs(step)):
        now = math.nextafter(now, math.inf if step > 0 else -math.inf)
    log = BucketLog([Rate(1, per=per)])
    assert 0.0 == log.try_acquire(t)
    drf_allows = t <= now - per  # DRF drops the time, and the request fits
    assert (log.try_acquire(now) == 0.0) is drf_allows


# ---------------------------------------------------------------------- FIFO over a bucket


def _earliest(
    admitted: list[float], rates: list[Rate], margin: float, start: float, blocked: float
) -> float:
    """The first moment from `start` at which every window has room: by brute force."""
    candidates = {start, blocked} | {t + r.per + margin for t in admitted for r in rates}
    for moment in sorted(c for c in candidates if c >= start):
        if moment < blocked:
            continue
        if all(sum(1 for t in admitted if t > moment - (r.per + margin)) < r.limit for r in rates):
            return moment
    raise AssertionError("no moment frees a place")


def _serve_in_order(log: BucketLog, arrivals: list[float]) -> list[float]:
    """Requests queue in arrival order; the head asks, sleeps the answer, asks again."""
    admitted: list[float] = []
    clock = 0.0
    for arrival in arrivals:
        clock = max(clock, arrival)
        while (wait := log.try_acquire(clock)) > 0:
            clock += wait
        admitted.append(clock)
    return admitted


rates = st.lists(
    st.builds(Rate, st.integers(1, 6), st.integers(1, 3_000).map(float)), min_size=1, max_size=3
)


@given(rates=rates, margin=st.integers(0, 50), arrivals=times_ms)
def test_fifo_never_exceeds_a_window_and_waits_exactly(
    rates: list[Rate], margin: int, arrivals: list[int]
) -> None:
    log = BucketLog(rates, margin)
    admitted = _serve_in_order(log, [float(a) for a in arrivals])
    # Never more than `limit` in any window, even as PostHog counts (without the margin).
    for rate in rates:
        for t in admitted:
            assert sum(1 for s in admitted if t - rate.per < s <= t) <= rate.limit
    # First come, first served, and each waits exactly until a place frees: no longer.
    for i, (arrival, moment) in enumerate(zip(arrivals, admitted, strict=True)):
        start = max(float(arrival), admitted[i - 1] if i else 0.0)
        assert _earliest(admitted[:i], rates, margin, start, -math.inf) == moment


@given(
    rates=rates,
    arrivals=times_ms,
    pause_at=st.integers(0, 5_000),
    pause=st.integers(1, 3_000),
)
def test_a_penalty_holds_the_bucket_until_the_named_moment(
    rates: list[Rate], arrivals: list[int], pause_at: int, pause: int
) -> None:
    log = BucketLog(rates)
    before = [float(a) for a in arrivals if a < pause_at]
    after = [float(a) for a in arrivals if a >= pause_at]
    admitted = _serve_in_order(log, before)
    log.penalize(float(max(pause_at, admitted[-1] if admitted else 0)), float(pause))
    blocked = log.blocked_until
    for arrival in after:
        start = max(arrival, admitted[-1] if admitted else 0.0)
        moment = _serve_in_order(log, [start])[0]
        assert moment >= blocked
        assert _earliest(admitted, rates, 0.0, start, blocked) == moment
        admitted.append(moment)


def test_a_penalty_never_shortens_an_earlier_one() -> None:
    log = BucketLog([Rate(1, per=1)])
    log.penalize(0.0, 10.0)
    log.penalize(1.0, 2.0)
    assert 9.0 == log.try_acquire(1.0)
    assert 0.0 == log.try_acquire(10.0)


def test_the_margin_lengthens_every_window() -> None:
    log = BucketLog([Rate(2, per=10)], margin=0.5)
    assert 0.0 == log.try_acquire(0.0) == log.try_acquire(1.0)
    assert 9.5 == log.try_acquire(1.0)
    assert 0.0 == log.try_acquire(10.5)


def test_a_bucket_without_windows_only_honours_penalties() -> None:
    log = BucketLog([])
    assert all(0.0 == log.try_acquire(float(t)) for t in range(1000))
    log.penalize(5.0, 1.0)
    assert 1.0 == log.try_acquire(5.0)


@given(now=st.floats(-1e9, 1e9))
def test_a_fresh_bucket_is_not_paused(now: float) -> None:
    """Until a 429 pauses it, a bucket with room lets a request through at any moment."""
    assert 0.0 == BucketLog([Rate(1, per=1)]).try_acquire(now)
    assert 0.0 == BucketLog([]).try_acquire(now)


@given(
    times=st.lists(st.floats(0, 100, allow_nan=False), max_size=30).map(sorted),
    limit=st.integers(1, 6),
    span=st.floats(0.5, 50, allow_nan=False),
    wider=st.floats(0, 20, allow_nan=False),
    now=st.floats(100, 150, allow_nan=False),
)
def test_a_shared_history_counts_for_each_client_as_its_own_would(
    times: list[float], limit: int, span: float, wider: float, now: float
) -> None:
    """
    A history kept as long as the widest margin among the clients sharing it answers a
    client with a narrower span exactly as a history of its own would.
    """
    shared, own = WindowLog(limit, span + wider), WindowLog(limit, span)
    for t in times:
        shared.record(t)
        own.record(t)
    shared.expire(now)
    assert own.wait(now) == shared.wait_as(now, limit, span)


def test_clients_sharing_a_log_with_other_margins_are_one_budget() -> None:
    """Three requests fill a budget of three whichever margin each client counts with."""
    log = BucketLog()
    api = (Rate(3, per=60),)
    for margin in (0.5, 0.25, 0.5):
        assert 0.0 == log.try_acquire(10.0, api, margin)
    assert log.try_acquire(10.0, api, 0.25) == pytest.approx(60.25)
    assert log.try_acquire(10.0, api, 0.5) == pytest.approx(60.5)


def test_a_request_of_a_client_without_the_hour_window_counts_in_it() -> None:
    """
    Two clients sharing one store (one key, one budget), one asking with a minute and an
    hour window, one with the minute window only: PostHog counts every request of the
    key in both throttles, but `BucketLog.try_acquire` records a request only in the
    windows its client named, so the first client's hour window never sees the second's
    requests and the key goes past PostHog's hourly limit.
    """
    log = BucketLog()
    minute_and_hour = (Rate(100, per=1), Rate(2, per=30))
    minute_only = (Rate(100, per=1),)
    assert log.try_acquire(0.0, minute_only, 0.0) == 0.0
    assert log.try_acquire(0.1, minute_only, 0.0) == 0.0
    assert log.try_acquire(0.2, minute_and_hour, 0.0) > 29


def test_a_key_given_as_rate_limits_is_not_quoted() -> None:
    """The key pasted into the wrong argument: the refusal names its type, never the key."""
    with pytest.raises(aposthog.ConfigurationError) as caught:
        aposthog.Client(
            api_key="phx_x",
            host="http://127.0.0.1:1",
            rate_limits="phx_abcdefghij",  # type: ignore[arg-type]
        )
    assert "abcdefghij" not in str(caught.value)
    assert "rate_limits" in str(caught.value)
