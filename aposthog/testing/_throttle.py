"""
FakePostHog's throttles, counted and worded as PostHog's are (reference §1.6, §3.4).

PostHog runs Django REST framework's `SimpleRateThrottle`: per throttle and bucket a
history of request times, newest first; times at or before `now - duration` are
dropped; a request is refused while `num_requests` remain, and otherwise its time is
recorded. Two families apply:

* every endpoint but conversation create: `BurstRateThrottle` (480/minute) and
  `SustainedRateThrottle` (4800/hour), per personal API key, only when the instance
  setting `RATE_LIMIT_ENABLED` is on. DRF's `check_throttles` asks every throttle (one
  that allows still records, even when another refuses) and answers with the longest
  wait: `"Request was throttled. Expected available in N seconds."`;
* conversation create: `AIBurstRateThrottle` (10/minute) and `AISustainedRateThrottle`
  (100/day) per user, skipped for a paying organization (`ai_enabled`), or the
  research ones (3/minute, 10/day), skipped only for an exempt team. PostHog's own
  `check_throttles` asks them in order and stops at the first refusal, with its own
  wording before DRF's "Expected available" sentence.

The 429 carries no `Retry-After` header: drf-exceptions-hog sets no headers.
The module is pure: time comes from `clock`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol, overload

import attrs

from .._ratelimit import DEFAULT_MARGIN, Rate, RateLimits
from ._wire import HTTPError, error

__all__ = [
    "AI_DETAIL",
    "RESEARCH_DETAIL",
    "FakeThrottles",
    "ThrottleLimit",
    "ThrottleRate",
    "ai_detail",
    "throttled",
]

AI_DETAIL = "You've reached PostHog AI's usage limit for the moment. Please try again {}."
RESEARCH_DETAIL = (
    "You've reached the usage limit for Research mode, which is currently in beta with limited "
    "capacity. Please try again {}, or switch to a regular conversation for continued access."
)

_RATES = (
    "burst", "sustained", "ai_burst", "ai_sustained", "ai_research_burst", "ai_research_sustained"
)  # fmt: skip

#: `(num_requests, duration)`, as DRF's `parse_rate` returns it; 0 requests refuses all.
ThrottleRate = tuple[int, float]


def _to_rate(value: Rate | ThrottleRate | None) -> ThrottleRate | None:
    """
    The converter of each rate field, run by `FakeThrottles(burst=...)` and by every
    assignment: what it accepts, checked. A field is stored as `_<name>` and read and
    set through the `_ThrottleSetting` of that name, so that setting an `aposthog.Rate`
    type-checks.
    """
    given: object = value  # checked as anything: tests pass what they like
    if given is None:
        return None
    if isinstance(given, Rate):
        return (given.limit, given.per)
    if isinstance(given, tuple) and len(given) == 2:
        count, duration = given
        if (
            isinstance(count, int)
            and not isinstance(count, bool)
            and count >= 0
            and isinstance(duration, (int, float))
            and duration > 0
        ):
            return (count, float(duration))
    raise ValueError(f"a throttle rate is a Rate, (requests, seconds) or None, got {given!r}")


def throttled(wait: float | None, detail: str = "Request was throttled.") -> HTTPError:
    """DRF's `Throttled(wait, detail)` through drf-exceptions-hog: PostHog's 429."""
    if wait is not None:
        seconds = math.ceil(wait)
        unit = "second" if seconds == 1 else "seconds"  # DRF's ngettext
        detail = f"{detail} Expected available in {seconds} {unit}."
    return HTTPError(error(429, "throttled_error", "throttled", detail))


def ai_detail(wait: float | None, *, research: bool) -> str:
    """The sentence PostHog AI's 429 starts with (`ConversationViewSet.check_throttles`)."""
    if wait is None:
        when = "later"
    elif wait < 60:
        when = f"in {int(wait)} seconds"
    elif wait < 3600:
        when = f"in {int(wait / 60)} minutes"
    else:
        when = "later today"
    return (RESEARCH_DETAIL if research else AI_DETAIL).format(when)


class _ThrottleSetting:
    """
    One rate of `FakeThrottles`: read as `(requests, seconds)` or None; set from an
    `aposthog.Rate`, a `(requests, seconds)` pair or None (the field's converter checks
    and converts it).
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._stored = f"_{name}"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _ThrottleSetting: ...
    @overload
    def __get__(self, obj: FakeThrottles, owner: type | None = None) -> ThrottleRate | None: ...
    def __get__(
        self, obj: FakeThrottles | None, owner: type | None = None
    ) -> _ThrottleSetting | ThrottleRate | None:
        if obj is None:
            return self
        rate: ThrottleRate | None = getattr(obj, self._stored)
        return rate

    def __set__(self, obj: FakeThrottles, value: Rate | ThrottleRate | None) -> None:
        setattr(obj, self._stored, value)


@attrs.define
class FakeThrottles:
    """
    PostHog's throttles as FakePostHog applies them; every rate is `(requests, seconds)`,
    an `aposthog.Rate`, or None (that throttle is off).

    Attributes:
        rate_limit_enabled: PostHog's `RATE_LIMIT_ENABLED`: the per-key `burst` and
            `sustained` throttles apply only when True (PostHog Cloud). The fake starts
            with it off, like a self-hosted instance, so tests that are not about
            throttling are not throttled.
        burst, sustained: per personal API key, every endpoint but conversation create.
        ai_burst, ai_sustained: per user, conversation create.
        ai_research_burst, ai_research_sustained: per user, conversation create in
            research mode.
        ai_enabled: False skips `ai_burst` and `ai_sustained`, as PostHog does for a
            paying organization (one with a billing customer); research mode stays
            throttled.
        ai_research_enabled: False skips the research throttles too, as PostHog does for
            a team on its `posthog-ai-rate-limit-exemptions` flag.
        clock: seconds from a monotonic clock.

    Example:
        ```python
        fake.throttles.rate_limit_enabled = True
        fake.throttles.burst = aposthog.Rate(40, per=4)   # a small budget for a test
        fake.throttles.sustained = None
        ```
    """

    rate_limit_enabled: bool = False
    _burst: ThrottleRate | None = attrs.field(
        default=(480, 60.0), converter=_to_rate, alias="burst", repr=False
    )
    _sustained: ThrottleRate | None = attrs.field(
        default=(4800, 3600.0), converter=_to_rate, alias="sustained", repr=False
    )
    _ai_burst: ThrottleRate | None = attrs.field(
        default=(10, 60.0), converter=_to_rate, alias="ai_burst", repr=False
    )
    _ai_sustained: ThrottleRate | None = attrs.field(
        default=(100, 86400.0), converter=_to_rate, alias="ai_sustained", repr=False
    )
    _ai_research_burst: ThrottleRate | None = attrs.field(
        default=(3, 60.0), converter=_to_rate, alias="ai_research_burst", repr=False
    )
    _ai_research_sustained: ThrottleRate | None = attrs.field(
        default=(10, 86400.0), converter=_to_rate, alias="ai_research_sustained", repr=False
    )
    ai_enabled: bool = True
    ai_research_enabled: bool = True
    clock: Callable[[], float] = time.monotonic
    # DRF's cache: the history of each (throttle scope, ident), newest first.
    histories: dict[tuple[str, str], list[float]] = attrs.field(factory=dict, repr=False)
    _wait: float | None = attrs.field(default=None, init=False, repr=False)

    burst = _ThrottleSetting()
    sustained = _ThrottleSetting()
    ai_burst = _ThrottleSetting()
    ai_sustained = _ThrottleSetting()
    ai_research_burst = _ThrottleSetting()
    ai_research_sustained = _ThrottleSetting()

    def __repr__(self) -> str:
        rates = ", ".join(f"{name}={getattr(self, name)!r}" for name in _RATES)
        return (
            f"FakeThrottles(rate_limit_enabled={self.rate_limit_enabled!r}, {rates}, "
            f"ai_enabled={self.ai_enabled!r}, ai_research_enabled={self.ai_research_enabled!r})"
        )

    def scale(self, factor: float) -> None:
        """
        Shorten every window `factor` times and scale its request count with it (at least
        one), keeping PostHog's proportions: `scale(1/20)` makes 480/minute 24 per 3 s.
        """
        for name in _RATES:
            rate = getattr(self, name)
            if rate is not None:
                setattr(self, name, (max(1, round(rate[0] * factor)), rate[1] * factor))

    def rate_limits(self, *, margin: float = DEFAULT_MARGIN) -> RateLimits:
        """The `aposthog.RateLimits` a client needs to stay under these throttles."""

        def rates(*names: str) -> tuple[Rate, ...]:
            found = [getattr(self, name) for name in names]
            return tuple(Rate(limit, per=per) for limit, per in filter(None, found))

        api = rates("burst", "sustained") if self.rate_limit_enabled else ()
        ai = rates("ai_burst", "ai_sustained") if self.ai_enabled else ()
        research = (
            rates("ai_research_burst", "ai_research_sustained") if self.ai_research_enabled else ()
        )
        return RateLimits(api=api, ai=ai, ai_research=research, margin=margin)

    def reset(self) -> None:
        """Forget every recorded request."""
        self.histories.clear()

    def _allow(self, scope: str, ident: str, rate: ThrottleRate, now: float) -> bool:
        """SimpleRateThrottle.allow_request; `self._wait` is its wait() after a refusal."""
        num_requests, duration = rate
        history = self.histories.setdefault((scope, ident), [])
        while history and history[-1] <= now - duration:
            history.pop()
        if len(history) >= num_requests:
            remaining = duration - (now - history[-1]) if history else duration
            available = num_requests - len(history) + 1
            self._wait = None if available <= 0 else remaining / available
            return False
        history.insert(0, now)
        return True

    def check_api(self, key: str) -> None:
        """The per-key throttles of every endpoint but conversation create: raise the 429."""
        if not self.rate_limit_enabled:
            return
        now = self.clock()
        refused = False
        waits: list[float] = []
        for scope, rate in (("burst", self.burst), ("sustained", self.sustained)):
            if rate is None:
                continue
            if not self._allow(scope, key, rate, now):
                refused = True
                if self._wait is not None:
                    waits.append(self._wait)
        if refused:
            raise throttled(max(waits, default=None))

    def check_ai(self, user: str, *, research: bool) -> None:
        """PostHog AI's per-user throttles of conversation create: raise the 429."""
        if not (self.ai_research_enabled if research else self.ai_enabled):
            return
        now = self.clock()
        throttles: Sequence[tuple[str, ThrottleRate | None]]
        if research:
            throttles = (
                ("ai_research_burst", self.ai_research_burst),
                ("ai_research_sustained", self.ai_research_sustained),
            )
        else:
            throttles = (("ai_burst", self.ai_burst), ("ai_sustained", self.ai_sustained))
        for scope, rate in throttles:
            if rate is None:
                continue
            if not self._allow(scope, user, rate, now):
                raise throttled(self._wait, ai_detail(self._wait, research=research))


class _HasThrottles(Protocol):
    throttles: FakeThrottles


class ThrottleLimit:
    """
    A FakePostHog attribute for the request count of one throttle of `fake.throttles`
    (`fake.ai_burst_limit = 2`); None turns the throttle off, a number keeps its window.
    """

    def __init__(self, name: str) -> None:
        if name not in _RATES:
            raise ValueError(f"no throttle is named {name!r}")
        self._name = name
        self._window = {"ai_burst": 60.0, "ai_research_burst": 60.0}.get(name, 86400.0)

    @overload
    def __get__(self, fake: None, owner: type | None = None) -> ThrottleLimit: ...
    @overload
    def __get__(self, fake: _HasThrottles, owner: type | None = None) -> int | None: ...
    def __get__(
        self, fake: _HasThrottles | None, owner: type | None = None
    ) -> ThrottleLimit | int | None:
        if fake is None:
            return self
        rate: ThrottleRate | None = getattr(fake.throttles, self._name)
        return None if rate is None else int(rate[0])

    def __set__(self, fake: _HasThrottles, limit: int | None) -> None:
        rate: ThrottleRate | None = getattr(fake.throttles, self._name)
        window = self._window if rate is None else rate[1]
        setattr(fake.throttles, self._name, None if limit is None else (limit, window))
