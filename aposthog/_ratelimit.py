"""
PostHog's rate limits as data (`Rate`, `RateLimits`), and the pure sliding-window log
that counts requests the way PostHog's server does. No I/O, no event loop, no clock:
every function takes `now`.

PostHog throttles with Django REST framework's `SimpleRateThrottle`. For each throttle
and bucket it keeps the times of the requests it let through (the "history"), drops the
times at or before `now - duration`, and refuses a request while the history still holds
`num_requests` times. That is a sliding log, not fixed buckets: a window that was full
a minute ago frees one place each time its oldest request turns `duration` old. The log
here keeps the same history, so it admits a request exactly when PostHog would, and it
knows the exact moment the next place frees.
"""

from __future__ import annotations

import bisect
import collections
import math
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from ._config import shown_value
from ._errors import ConfigurationError, ConfigurationTypeError
from ._retry import as_seconds

__all__ = [
    "BUCKETS",
    "DEFAULT_MARGIN",
    "LONGEST_WINDOW",
    "POSTHOG_CLOUD_HOSTS",
    "BucketLog",
    "Rate",
    "RateLimits",
    "WindowLog",
    "resolve_rate_limits",
]

#: The throttle buckets of PostHog's API: every endpoint but conversation create
#: (per key), conversation create (per user), conversation create in research mode.
BUCKETS = ("api", "ai", "ai_research")

#: Seconds added to every window on the client side. A request is counted when the
#: client lets it go and by PostHog when it arrives; the two moments differ by the wait
#: for a connection slot and the trip across the network, and by more for some requests
#: than for others. Counting each request a little longer covers that spread.
DEFAULT_MARGIN = 0.5

#: The hosts whose throttles `RateLimits.posthog_cloud()` describes.
POSTHOG_CLOUD_HOSTS = frozenset({"us.posthog.com", "eu.posthog.com", "app.posthog.com"})


def _limit(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Rate {attribute.name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"Rate {attribute.name} must be at least 1, got {value!r}")


#: The longest window (and margin) a rate limit takes, and the longest pause a store
#: writes: ten years. A store counts in whole microseconds (Redis's integers, exact in
#: Lua's numbers); a longer time could not be counted there.
LONGEST_WINDOW: Final = 10 * 365.25 * 86400


def _seconds(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Rate per must be a number of seconds, got {value!r}")
    value = as_seconds(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"Rate per must be a positive number of seconds, got {value!r}")
    if value > LONGEST_WINDOW:
        raise ValueError(
            f"Rate per must be at most ten years ({LONGEST_WINDOW:.0f} seconds), got {value!r}"
        )
    return float(value)


@attrs.frozen
class Rate:
    """
    One window: at most `limit` requests in any `per` seconds.

    Example:
        >>> Rate(480, per=60)
        Rate(limit=480, per=60.0)
    """

    limit: int = attrs.field(validator=_limit)
    per: float = attrs.field(converter=_seconds)


def _rates(rates: Rate | Iterable[Rate] | None) -> tuple[Rate, ...]:
    value: object = rates  # typed for callers, checked as anything
    if value is None:
        return ()
    if isinstance(value, Rate):
        return (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"rate limits must be Rate objects, got {value!r}")
    found = tuple(value)
    for rate in found:
        if not isinstance(rate, Rate):
            raise TypeError(f"rate limits must be Rate objects, got {rate!r}")
    return found


def _margin(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"RateLimits margin must be a number of seconds, got {value!r}")
    value = as_seconds(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"RateLimits margin must be >= 0 seconds, got {value!r}")
    if value > LONGEST_WINDOW:
        raise ValueError(
            f"RateLimits margin must be at most ten years ({LONGEST_WINDOW:.0f} seconds), "
            f"got {value!r}"
        )
    return float(value)


@attrs.frozen
class RateLimits:
    """
    The windows a client waits for before each request, per bucket.

    Attributes:
        api: the windows of every endpoint but conversation create (PostHog counts
            them per personal API key).
        ai: the windows of `conversations.create()` and `conversations.stream()`
            (PostHog counts them per user).
        ai_research: the same in research mode (`agent_mode="research"`).
        margin: seconds added to every window on the client side, to cover the time
            between the client letting a request go and PostHog counting it.

    Each accepts a `Rate`, several, or none (that bucket is not limited; a 429 still
    makes it wait as long as PostHog asked).

    Example:
        ```python
        limits = aposthog.RateLimits(api=(aposthog.Rate(240, per=60),), margin=1.0)
        async with aposthog.Client(rate_limits=limits) as ph:
            ...
        ```
    """

    api: tuple[Rate, ...] = attrs.field(default=(), converter=_rates)
    ai: tuple[Rate, ...] = attrs.field(default=(), converter=_rates)
    ai_research: tuple[Rate, ...] = attrs.field(default=(), converter=_rates)
    margin: float = attrs.field(default=DEFAULT_MARGIN, converter=_margin)

    @classmethod
    def posthog_cloud(cls, *, margin: float = DEFAULT_MARGIN, paying: bool = True) -> RateLimits:
        """
        PostHog Cloud's published throttles: 480 requests a minute and 4800 an hour per
        key, and PostHog AI messages in research mode 3 a minute and 10 a day per user.

        PostHog throttles PostHog AI messages in the other modes (10 a minute, 100 a
        day per user) only for an organization that does not pay: it skips them for one
        with a billing customer. The client cannot tell which, and must not refuse what
        PostHog allows, so these windows are off unless `paying=False` says the
        organization meets them. Left off, a free organization's eleventh message in a
        minute meets PostHog's 429 instead, and the client waits as long as PostHog asks.
        """
        if not isinstance(paying, bool):
            raise TypeError(f"paying must be a bool, got {paying!r}")
        return cls(
            api=(Rate(480, per=60), Rate(4800, per=3600)),
            ai=() if paying else (Rate(10, per=60), Rate(100, per=86400)),
            ai_research=(Rate(3, per=60), Rate(10, per=86400)),
            margin=margin,
        )

    def windows(self, bucket: str) -> tuple[Rate, ...]:
        """The windows of `bucket` (`"api"`, `"ai"` or `"ai_research"`)."""
        if bucket == "api":
            return self.api
        if bucket == "ai":
            return self.ai
        if bucket == "ai_research":
            return self.ai_research
        raise ValueError(f"unknown rate-limit bucket {bucket!r}: expected one of {BUCKETS}")


def resolve_rate_limits(
    rate_limits: RateLimits | str | None, base_url: str, *, store_given: bool = False
) -> RateLimits | None:
    """
    What `Client(rate_limits=...)` means for `base_url`: `RateLimits`, or None (no limiter).

    `"auto"` is `RateLimits.posthog_cloud()` on PostHog Cloud (US or EU): its AI windows
    outside research mode are off, as PostHog's are for paying organizations. Elsewhere a
    self-hosted instance usually runs with throttling off, so there are no windows; but
    with a store given explicitly the client still joins it with no windows, so that a
    429 one process meets pauses the bucket for every process sharing the store.
    """
    value: object = rate_limits  # typed for callers, checked as anything
    if value is None or isinstance(value, RateLimits):
        return value
    if value == "auto":
        # (A fully qualified name's final dot names the same host.)
        if (urllib.parse.urlsplit(base_url).hostname or "").rstrip(".") in POSTHOG_CLOUD_HOSTS:
            return RateLimits.posthog_cloud()
        return RateLimits() if store_given else None
    # A str is shown without anything shaped as a key (the key passed in the wrong place).
    shown = shown_value(value) if isinstance(value, str) else type(value).__name__
    error = ConfigurationError if isinstance(value, str) else ConfigurationTypeError
    raise error(f"rate_limits must be 'auto', None or an aposthog.RateLimits, got {shown}")


class WindowLog:
    """
    The history of one window, oldest first: DRF's history, read from the other end.

    Attributes:
        limit: requests allowed in any `span` seconds.
        span: the window's length in seconds (the server's `duration`, plus any margin).
        times: the moments of the requests let through, not yet `span` old.
    """

    __slots__ = ("limit", "span", "times")

    def __init__(self, limit: int, span: float) -> None:
        self.limit = limit
        self.span = span
        self.times: collections.deque[float] = collections.deque()

    def expire(self, now: float) -> None:
        """Forget the times at or before `now - span`, as DRF does."""
        times = self.times
        horizon = now - self.span
        while times and times[0] <= horizon:
            times.popleft()

    def wait(self, now: float) -> float:
        """0 if a request may go at `now`, else the seconds until a place frees."""
        self.expire(now)
        return self.wait_as(now, self.limit, self.span)

    def wait_as(self, now: float, limit: int, span: float) -> float:
        """
        `wait(now)` for a client that counts this history with its own `limit` and a
        `span` no longer than the log's (clients sharing a store, each with its margin).
        Call `expire(now)` first.
        """
        times = self.times
        first = bisect.bisect_right(times, now - span) if span < self.span else 0
        excess = len(times) - first - limit
        if excess < 0:
            return 0.0
        # Once this time turns `span` old, at most `limit - 1` remain. In floats
        # `t + span - now` can be 0 while `t > now - span` (it is kept): the time is
        # still in the window, so the wait is the least step of the clock, never 0.
        return max(times[first + excess] + span - now, math.ulp(now))

    def record(self, now: float) -> None:
        """Count a request let through at `now` (times arrive in order)."""
        self.times.append(now)


class BucketLog:
    """
    Every window of one bucket, and the pause a 429 imposed on it.

    A request is let through only when every window has room, and then it is counted
    in all of them at once: a request the client holds back is never sent, so unlike
    on the server (where a request refused by one throttle still counts in the others)
    nothing is recorded for it.
    """

    __slots__ = ("_history", "_margin", "_widest", "_windows", "blocked_until", "logs")

    def __init__(self, windows: Sequence[Rate] = (), margin: float = 0.0) -> None:
        self._windows = tuple(windows)
        self._margin = margin
        #: One history per window length: clients sharing it count the same requests,
        #: each request in every window any of them named.
        self.logs: dict[float, WindowLog] = {
            rate.per: WindowLog(rate.limit, rate.per + margin) for rate in windows
        }
        # Every request let through, as long as the widest window counts it: a window a
        # client names later starts from the requests already in its span.
        self._history: collections.deque[float] = collections.deque()
        self._widest = max((log.span for log in self.logs.values()), default=0.0)
        self.blocked_until = -math.inf

    def try_acquire(
        self, now: float, windows: Sequence[Rate] | None = None, margin: float | None = None
    ) -> float:
        """
        Count a request at `now` and return 0, or return the seconds to wait first.

        `windows` and `margin` are the asking client's when not the log's own: clients
        that share a store (one key) count the same history, each with its limits and
        its margin, so they are one budget however each counts.
        """
        if windows is None:
            windows = self._windows
        if margin is None:
            margin = self._margin
        wait = self.blocked_until - now
        counted: dict[float, WindowLog] = {}
        for rate in windows:
            span = rate.per + margin
            log = self.logs.get(rate.per)
            if log is None:
                log = self.logs[rate.per] = WindowLog(rate.limit, span)
                log.times.extend(t for t in self._history if t > now - span)
                self._widest = max(self._widest, span)
            elif span > log.span:
                log.span = span  # kept as long as the client with the widest margin needs
                self._widest = max(self._widest, span)
            log.expire(now)
            wait = max(wait, log.wait_as(now, rate.limit, span))
            counted[rate.per] = log
        if len(counted) < len(self.logs):
            # Windows another client sharing the store named (PostHog counts every
            # request of the key in each of its throttles): with their own limits.
            for per, log in self.logs.items():
                if per not in counted:
                    wait = max(wait, log.wait(now))
                    counted[per] = log
        if wait > 0:
            return wait
        for log in counted.values():
            log.record(now)
        history = self._history
        history.append(now)
        horizon = now - self._widest
        while history[0] <= horizon:
            history.popleft()
            if not history:
                break
        return 0.0

    def idle(self, now: float) -> bool:
        """Whether nothing of this bucket matters at `now`: no pause, nothing counted."""
        if self.blocked_until > now:
            return False
        for log in self.logs.values():
            log.expire(now)
            if log.times:
                return False
        return True

    def penalize(self, now: float, seconds: float) -> None:
        """Let nothing through for `seconds` from `now` (PostHog answered 429)."""
        self.blocked_until = max(self.blocked_until, now + seconds)
