"""Retry policy: which failed requests may be repeated, and how long to wait first.

This module only *decides*. It does no I/O, never sleeps and knows nothing about
asyncio; the client's request loop asks :func:`retry_delay` after each failed
attempt and either sleeps for the returned number of seconds or raises the
failure when it gets ``None``. Keeping the policy pure makes every rule below
testable without a network or an event loop.

Why these rules:

* **A request that may have started work must not be repeated.** Repeating a
  ``POST`` (or ``PATCH``) that the server already acted on can create a second
  batch export, send a second message to a PostHog AI conversation, and so on.
  So a non-idempotent request is retried only when we know the server did not
  act on it: when the connection failed before the request could reach the
  server (refused, DNS failure, connect timeout), or when the server said so
  with its status. A request that may have been sent and got no answer (reset,
  read timeout, disconnect) is retried only for idempotent methods, where
  doing it twice has the same effect as doing it once.
* **429 and PostHog's own 503 mean the server refused the request**: it was
  throttled or the service was unavailable before any work started, so they are
  safe to retry for every method (except a 429 that is no throttle: too many
  concurrent backfills stands until a running backfill ends). 502 and 504 come
  from a gateway that may already have forwarded the request to a backend that is
  still working on it, so they are retried only for idempotent methods, and so is
  a 503 that a proxy wrote (no PostHog error body, no ``Retry-After``): PostHog
  Cloud's proxy answers 503 also when PostHog reset the connection after the
  request was forwarded ("upstream connect error or disconnect/reset before
  headers"), by when it may have acted. A 500 may mean the work started and then
  failed halfway; it is never retried, and neither is any other 4xx: asking again
  will not fix a bad request.
* **PostHog's 429s carry no ``Retry-After`` header.** PostHog throttles with
  Django REST framework, which puts the wait only in the JSON ``detail`` text
  ("... Expected available in 12 seconds."); :func:`parse_throttle_detail`
  reads it, :func:`parse_retry_after` reads the standard header for servers and
  proxies that do send one. A wait the server asked for is honoured (capped by
  :attr:`RetryPolicy.max_retry_after`) rather than replaced by our own guess,
  since retrying sooner would only be throttled again. A wait longer than
  ``max_retry_after`` is not shortened: the failure is raised at once, since an
  early retry would only meet another 429.
* **A server-named wait is spread.** :attr:`RetryPolicy.retry_after_jitter` (a
  fraction, 0.2 by default) adds a uniform ``[0, 0.2 * wait]`` on top, so a
  hundred workers throttled in the same second come back over a fifth of the wait
  (a 1-second wait over 0.2 s) instead of in the same millisecond.
* **Full jitter.** Without a server hint the wait is drawn uniformly from
  ``[0, min(max_backoff, initial_backoff * 2**(n-1))]``. Many worker tasks that
  fail together (a thundering herd hitting the same rate limit) then spread
  their retries out instead of all coming back at the same instant.
* **Budgets.** :attr:`RetryPolicy.max_retries` bounds the number of retries and
  :attr:`RetryPolicy.deadline` bounds the time from the first attempt's start
  to the last attempt's start, so a caller is never stuck retrying forever. A
  conversation stream that drops mid-answer is re-attached up to
  :attr:`RetryPolicy.max_reattaches` times in a row (the count and the deadline start
  again whenever an event arrives).
* **Per route, not per method.** Whether a request that may have reached the server
  can be repeated is a property of its route (``repeatable``); the HTTP method's
  idempotency is only the default for callers that name no route.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import re
from typing import TypeAlias

import attrs

__all__ = [
    "IDEMPOTENT_METHODS",
    "ConnectionOutcome",
    "Outcome",
    "RetryPolicy",
    "StatusOutcome",
    "as_seconds",
    "backoff",
    "is_retryable",
    "may_have_acted",
    "parse_retry_after",
    "parse_throttle_detail",
    "retry_delay",
]

IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""HTTP methods whose repetition has the same effect as a single request (RFC 9110 §9.2.2).

``POST`` and ``PATCH`` are deliberately absent: repeating them may do the work twice.
"""

_ALWAYS_RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 503})
"""Statuses by which the server refused the request before doing any work."""

_IDEMPOTENT_RETRYABLE_STATUSES: frozenset[int] = frozenset({502, 504})
"""Gateway statuses: the request may have been forwarded, so only idempotent methods repeat."""

_RNG = random.Random()
"""The jitter source used when :func:`retry_delay` is not given one."""


def as_seconds(value: float) -> float:
    """
    A number of seconds (an int or a float) as a float: an int beyond a float's range
    (`10**400`) is infinity, which each setting reads as it reads `math.inf`, where
    `float()` and `math.isfinite()` raise `OverflowError`.
    """
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _check_seconds(
    name: str, value: object, *, allow_none: bool = False, noun: str = "number of seconds"
) -> None:
    """Raise TypeError/ValueError unless ``value`` is a finite, non-negative number of seconds."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        expected = f"a {noun} or None" if allow_none else f"a {noun}"
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}: {value!r}")
    value = as_seconds(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite {noun} >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Which failures are retried and how long to wait.

    All durations are in seconds and must be finite and non-negative.
    """

    max_retries: int = 3
    """Retries after the first attempt; 0 turns retrying off."""

    initial_backoff: float = 0.5
    """Backoff ceiling of the first retry; the ceiling doubles with each further retry."""

    max_backoff: float = 8.0
    """Cap for the computed (jittered) backoff."""

    max_retry_after: float = 60.0
    """Cap on a wait the server asked for (Retry-After header or PostHog's detail text)."""

    deadline: float | None = 120.0
    """Seconds from the first attempt's start to the last attempt's start; None for no limit.

    No attempt starts later than this, and no wait is begun that would end after it;
    the last attempt then has its own `timeout`. So a call takes at most about
    `deadline + timeout` once first sent. Its wait for a concurrency slot before the
    first attempt is not part of it; a wait for the rate limit before it is bounded as
    a retry's is: one longer than `max_retry_after` or than `deadline` is not begun
    (`RateLimitError`, unsent)."""

    retry_after_jitter: float = 0.2
    """Spread added to a wait the server named: uniform in `[0, retry_after_jitter * wait]`."""

    max_reattaches: int = 5
    """Re-attaches in a row of a conversation stream that dropped (0: never re-attach)."""

    def __attrs_post_init__(self) -> None:
        """Reject arguments that would make the policy meaningless."""
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError(
                f"max_retries must be an int, got {type(self.max_retries).__name__}: "
                f"{self.max_retries!r}"
            )
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries!r}")
        reattaches: object = self.max_reattaches  # checked as anything: configs pass raw values
        if isinstance(reattaches, bool) or not isinstance(reattaches, int):
            raise TypeError(
                f"max_reattaches must be an int, got {type(reattaches).__name__}: {reattaches!r}"
            )
        if reattaches < 0:
            raise ValueError(f"max_reattaches must be >= 0, got {reattaches!r}")
        # A fraction of the wait, not seconds: 0.2 spreads a 1 s wait over 1 to 1.2 s.
        _check_seconds("retry_after_jitter", self.retry_after_jitter, noun="fraction of the wait")
        _check_seconds("initial_backoff", self.initial_backoff)
        _check_seconds("max_backoff", self.max_backoff)
        _check_seconds("max_retry_after", self.max_retry_after)
        _check_seconds("deadline", self.deadline, allow_none=True)


@attrs.frozen
class StatusOutcome:
    """An attempt the server answered with an HTTP status."""

    status: int
    """The HTTP status code of the response."""

    retry_after: float | None = None
    """The server's requested wait in seconds, already parsed, or None when it gave none."""

    proxy: bool = False
    """A 503 written by a proxy, not PostHog (no error body, no ``Retry-After``): it may
    have forwarded the request first, so it counts as a gateway's 502 or 504 does."""

    lasting: bool = False
    """A refusal that holds until something else changes, not a throttle: PostHog's 429
    `too_many_concurrent_backfills` stands until one of the team's running backfills
    ends (minutes or hours), so it is never retried."""

    def __attrs_post_init__(self) -> None:
        """Reject a non-integer status or a negative/NaN wait."""
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise TypeError(
                f"status must be an int, got {type(self.status).__name__}: {self.status!r}"
            )
        if self.retry_after is not None:
            if isinstance(self.retry_after, bool) or not isinstance(self.retry_after, (int, float)):
                raise TypeError(
                    "retry_after must be a number of seconds or None, got "
                    f"{type(self.retry_after).__name__}: {self.retry_after!r}"
                )
            if math.isnan(as_seconds(self.retry_after)) or self.retry_after < 0:
                raise ValueError(f"retry_after must be >= 0 seconds, got {self.retry_after!r}")


@attrs.frozen
class ConnectionOutcome:
    """An attempt that received no HTTP response at all."""

    reached_server: bool
    """Whether the request may have reached the server.

    False: it certainly did not (connection refused, DNS failure, connect timeout),
    so repeating it is safe for every method. True: it may have been sent (reset after
    sending, read timeout, server disconnected), so only idempotent methods repeat.
    """

    def __attrs_post_init__(self) -> None:
        """Reject anything but a bool, so a truthy object cannot pick the wrong rule."""
        if not isinstance(self.reached_server, bool):
            raise TypeError(
                "reached_server must be a bool, got "
                f"{type(self.reached_server).__name__}: {self.reached_server!r}"
            )


Outcome: TypeAlias = StatusOutcome | ConnectionOutcome
"""How an attempt failed: with a status from the server, or without any response."""


def is_retryable(method: str, outcome: Outcome, *, repeatable: bool | None = None) -> bool:
    """Whether a failed attempt may be repeated at all, ignoring every budget.

    429 and PostHog's 503 are retryable for every request (but a lasting refusal, such as
    too many concurrent backfills, never is), 502, 504 and a proxy's 503
    for repeatable ones only; a connection failure is retryable for every request if it
    never reached the server, otherwise for repeatable ones only. Everything else, including 500,
    is not. ``repeatable`` is the route's rule; when None, the method decides
    (compared case-insensitively against :data:`IDEMPOTENT_METHODS`).
    """
    idempotent = method.upper() in IDEMPOTENT_METHODS if repeatable is None else repeatable
    if isinstance(outcome, ConnectionOutcome):
        return idempotent or not outcome.reached_server
    if outcome.proxy:
        return idempotent
    if outcome.lasting:
        return False
    if outcome.status in _ALWAYS_RETRYABLE_STATUSES:
        return True
    return idempotent and outcome.status in _IDEMPOTENT_RETRYABLE_STATUSES


def may_have_acted(outcome: Outcome) -> bool:
    """
    Whether PostHog may have acted on the request of an attempt that failed this way:
    one that may have been sent and got no answer, or a gateway's 502, 504 or 503. A
    refused connection, a 429 or PostHog's 503 came before any work (and any other
    status is final).
    """
    if isinstance(outcome, ConnectionOutcome):
        return outcome.reached_server
    return outcome.proxy or outcome.status in _IDEMPOTENT_RETRYABLE_STATUSES


def _backoff_ceiling(policy: RetryPolicy, retry_number: int) -> float:
    """``min(max_backoff, initial_backoff * 2**(retry_number-1))`` without overflowing."""
    try:
        raw = math.ldexp(policy.initial_backoff, retry_number - 1)
    except OverflowError:
        # Past the float range: certainly above any finite max_backoff.
        return float(policy.max_backoff)
    return float(min(policy.max_backoff, raw))


def backoff(policy: RetryPolicy, retry_number: int, rng: random.Random) -> float:
    """A full-jitter wait in seconds before retry number ``retry_number`` (1-based).

    Uniform in ``[0, min(max_backoff, initial_backoff * 2**(retry_number-1))]``; any
    ``retry_number`` works, however large, without overflowing.
    """
    if isinstance(retry_number, bool) or not isinstance(retry_number, int):
        raise TypeError(
            f"retry_number must be an int, got {type(retry_number).__name__}: {retry_number!r}"
        )
    if retry_number < 1:
        raise ValueError(f"retry_number is 1-based and must be >= 1, got {retry_number!r}")
    ceiling = _backoff_ceiling(policy, retry_number)
    # rng.uniform(0, c) is 0 + c * random() with random() < 1, so it stays within [0, c].
    return rng.uniform(0.0, ceiling)


def retry_delay(
    policy: RetryPolicy,
    *,
    method: str,
    outcome: Outcome,
    retries_done: int,
    elapsed: float,
    rng: random.Random | None = None,
    repeatable: bool | None = None,
    max_retries: int | None = None,
) -> float | None:
    """Seconds to wait before the next attempt, or None when the failure must be raised.

    ``retries_done`` is how many retries already happened (0 after the first attempt
    failed); ``elapsed`` is the seconds since the first attempt started. The wait is the
    server's hint capped at ``policy.max_retry_after`` when the outcome carries one, else
    the jittered :func:`backoff`. None when the outcome is not retryable, when
    ``policy.max_retries`` retries were already done, when the server asked for
    longer than ``policy.max_retry_after``, or when waiting would start the next
    attempt after ``policy.deadline``. ``rng`` defaults to a module-level
    :class:`random.Random`; ``repeatable`` is the route's rule (see
    :func:`is_retryable`); ``max_retries`` replaces the policy's (a stream's re-attaches
    are counted against ``policy.max_reattaches``).
    """
    if isinstance(retries_done, bool) or not isinstance(retries_done, int):
        raise TypeError(
            f"retries_done must be an int, got {type(retries_done).__name__}: {retries_done!r}"
        )
    if retries_done < 0:
        raise ValueError(f"retries_done must be >= 0, got {retries_done!r}")
    if math.isnan(elapsed) or elapsed < 0:
        raise ValueError(f"elapsed must be >= 0 seconds, got {elapsed!r}")
    if not is_retryable(method, outcome, repeatable=repeatable):
        return None
    if retries_done >= (policy.max_retries if max_retries is None else max_retries):
        return None
    source = _RNG if rng is None else rng
    if isinstance(outcome, StatusOutcome) and outcome.retry_after is not None:
        if outcome.retry_after > policy.max_retry_after:
            return None
        wait = float(outcome.retry_after)
        delay = wait + source.uniform(0.0, wait * policy.retry_after_jitter)
    else:
        delay = backoff(policy, retries_done + 1, source)
    if policy.deadline is not None and elapsed + delay > policy.deadline:
        return None
    return delay


_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
"""A Retry-After delta-seconds value: digits, optionally with a decimal part."""


_LONGEST_DELTA = 2147483648.0
"""What a delta-seconds value too large to represent reads as (RFC 9111, section 1.2.2)."""


def _seconds(digits: str) -> float:
    """
    ``float(digits)`` for a string of digits with an optional decimal part, at most 2**31
    seconds. One too long for a float (over 308 digits) is that longest wait, as HTTP
    caches read it, not no wait at all: the caller raises at once instead of retrying
    into the same 429 after a backoff of its own.
    """
    return min(float(digits), _LONGEST_DELTA)


def parse_retry_after(value: str | None, *, now: datetime.datetime | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header value, or None if unusable.

    Accepts delta-seconds (a non-negative integer, or a decimal such as ``"1.5"``) or
    an HTTP-date, which becomes the seconds from ``now`` (default: the current UTC
    time; a naive ``now`` or date is taken as UTC), clamped at 0 for a date in the past.
    Returns None for None, empty, negative, non-finite or unparseable values; it never
    raises on any string. A wait past 2**31 seconds (a number, even one too large for a
    float, or a date) reads as 2**31 seconds, as RFC 9111 has caches read it.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return _seconds(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)
    try:
        seconds = (when - now).total_seconds()
    except OverflowError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), _LONGEST_DELTA)  # as far as delta-seconds may say


_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
"""A captured integer or decimal number of seconds."""

_EXPECTED_AVAILABLE = re.compile(rf"expected available in {_NUMBER} seconds?\b", re.IGNORECASE)
"""Django REST framework's throttle suffix: "Expected available in N second(s)."."""

_TRY_AGAIN = re.compile(rf"try again in {_NUMBER} seconds?\b", re.IGNORECASE)
"""The fallback phrase of PostHog AI's throttle text: "Please try again in N seconds."."""


def parse_throttle_detail(detail: str | None) -> float | None:
    """Seconds to wait from the ``detail`` text of a PostHog 429 response, or None.

    PostHog sends its 429s without a Retry-After header; Django REST framework ends
    the detail with "Expected available in N seconds." (or "... in 1 second."). That
    number is preferred (the last one, since DRF appends it); if only PostHog AI's
    "try again in N seconds" phrase is present, that number is used. N may be an
    integer or a decimal. None when there is no such number.
    """
    if not detail:
        return None
    for pattern in (_EXPECTED_AVAILABLE, _TRY_AGAIN):
        matches = pattern.findall(detail)
        if matches:
            return _seconds(matches[-1])
    return None
