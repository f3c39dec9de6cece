"""Tests for the pure retry policy in aposthog._retry (no event loop needed)."""

from __future__ import annotations

import datetime
import email.utils
import math
import random
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aposthog import _retry
from aposthog._retry import (
    IDEMPOTENT_METHODS,
    ConnectionOutcome,
    Outcome,
    RetryPolicy,
    StatusOutcome,
    backoff,
    is_retryable,
    may_have_acted,
    parse_retry_after,
    parse_throttle_detail,
    retry_delay,
)

UTC = datetime.timezone.utc
ALL_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST", "PATCH")
IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
NON_IDEMPOTENT = ("POST", "PATCH")

# The statuses each method may retry, written out rather than derived from the module.
RETRIED_FOR: dict[int, tuple[str, ...]] = {
    429: ALL_METHODS,
    503: ALL_METHODS,
    502: IDEMPOTENT,
    504: IDEMPOTENT,
    500: (),
    501: (),
    505: (),
    400: (),
    401: (),
    403: (),
    404: (),
    405: (),
    408: (),
    409: (),
    413: (),
    422: (),
    425: (),
    499: (),
    200: (),
    204: (),
    301: (),
    304: (),
}

STATUS_TABLE = [
    pytest.param(status, method, method in retried, id=f"{status}-{method}")
    for status, retried in RETRIED_FOR.items()
    for method in ALL_METHODS
]

CONNECTION_TABLE = [
    pytest.param(method, reached, expected, id=f"{method}-reached={reached}")
    for method in ALL_METHODS
    for reached, expected in ((False, True), (True, method in IDEMPOTENT))
]


class TopOfRange(random.Random):
    """A Random whose uniform() always returns the upper bound, exposing the backoff ceiling."""

    def uniform(self, a: float, b: float) -> float:
        """Return the upper bound ``b``."""
        return b


def _delay(
    policy: RetryPolicy,
    method: str,
    outcome: Outcome,
    *,
    retries_done: int = 0,
    elapsed: float = 0.0,
) -> float | None:
    """Call retry_delay with a seeded rng and the usual defaults."""
    return retry_delay(
        policy,
        method=method,
        outcome=outcome,
        retries_done=retries_done,
        elapsed=elapsed,
        rng=random.Random(0),
    )


# --- classification ---------------------------------------------------------------------


def test_idempotent_methods_are_exactly_the_safe_ones() -> None:
    """IDEMPOTENT_METHODS holds GET, HEAD, OPTIONS, PUT and DELETE, and not POST or PATCH."""
    assert frozenset(IDEMPOTENT) == IDEMPOTENT_METHODS
    assert isinstance(IDEMPOTENT_METHODS, frozenset)


@pytest.mark.parametrize(("status", "method", "expected"), STATUS_TABLE)
def test_is_retryable_by_status_and_method(status: int, method: str, expected: bool) -> None:
    """Each status and method is classified as the rules table says."""
    assert is_retryable(method, StatusOutcome(status)) is expected


@pytest.mark.parametrize(("status", "method", "expected"), STATUS_TABLE)
def test_retry_delay_follows_the_status_table(status: int, method: str, expected: bool) -> None:
    """retry_delay gives a wait exactly for the retryable status/method combinations."""
    delay = _delay(RetryPolicy(), method, StatusOutcome(status))
    assert (delay is not None) is expected


@pytest.mark.parametrize(("method", "reached", "expected"), CONNECTION_TABLE)
def test_connection_outcome_by_method(method: str, reached: bool, expected: bool) -> None:
    """A connection failure retries every method if unsent, only idempotent ones if maybe sent."""
    outcome = ConnectionOutcome(reached_server=reached)
    assert is_retryable(method, outcome) is expected
    assert (_delay(RetryPolicy(), method, outcome) is not None) is expected


@pytest.mark.parametrize(
    ("method", "outcome", "expected"),
    [
        ("post", StatusOutcome(429), True),
        ("get", StatusOutcome(502), True),
        ("Post", StatusOutcome(502), False),
        ("delete", ConnectionOutcome(reached_server=True), True),
        ("patch", ConnectionOutcome(reached_server=True), False),
        ("oPtIoNs", StatusOutcome(504), True),
    ],
)
def test_method_comparison_is_case_insensitive(
    method: str, outcome: Outcome, expected: bool
) -> None:
    """Lower- and mixed-case methods are classified like their upper-case forms."""
    assert is_retryable(method, outcome) is expected


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", ""])
def test_unknown_methods_are_not_idempotent(method: str) -> None:
    """A method outside IDEMPOTENT_METHODS gets the cautious POST treatment."""
    assert not is_retryable(method, ConnectionOutcome(reached_server=True))
    assert not is_retryable(method, StatusOutcome(502))
    assert is_retryable(method, StatusOutcome(503))
    assert is_retryable(method, ConnectionOutcome(reached_server=False))


def test_outcome_alias_covers_both_outcome_classes() -> None:
    """The Outcome alias works with isinstance for both outcome kinds."""
    assert isinstance(StatusOutcome(429), Outcome)
    assert isinstance(ConnectionOutcome(reached_server=False), Outcome)
    assert not isinstance(429, Outcome)


# --- budgets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "outcome",
    [
        StatusOutcome(429),
        StatusOutcome(429, retry_after=1.0),
        StatusOutcome(503),
        StatusOutcome(502),
        ConnectionOutcome(reached_server=False),
        ConnectionOutcome(reached_server=True),
    ],
)
def test_max_retries_zero_never_retries(outcome: Outcome) -> None:
    """With max_retries=0 even a retryable failure is raised at once."""
    assert _delay(RetryPolicy(), "GET", outcome) is not None
    assert _delay(RetryPolicy(max_retries=0), "GET", outcome) is None


def test_max_retries_counts_retries_after_the_first_attempt() -> None:
    """max_retries=3 allows retries 1, 2 and 3 and refuses a fourth."""
    policy = RetryPolicy(max_retries=3, deadline=None)
    outcome = StatusOutcome(503)
    allowed = [_delay(policy, "GET", outcome, retries_done=n) is not None for n in range(6)]
    assert allowed == [True, True, True, False, False, False]


def test_deadline_stops_a_wait_that_would_end_past_it() -> None:
    """A wait ending after the deadline gives None; one ending exactly on it is allowed."""
    policy = RetryPolicy(deadline=10.0, retry_after_jitter=0)
    outcome = StatusOutcome(429, retry_after=2.0)
    assert _delay(policy, "POST", outcome, elapsed=8.0) == 2.0
    assert _delay(policy, "POST", outcome, elapsed=8.5) is None
    assert _delay(policy, "POST", outcome, elapsed=50.0) is None


def test_deadline_applies_to_jittered_backoff() -> None:
    """A jittered backoff that would overrun the deadline gives None."""
    policy = RetryPolicy(initial_backoff=4.0, max_backoff=4.0, deadline=10.0)
    outcome = ConnectionOutcome(reached_server=False)
    expected = random.Random(0).uniform(0.0, 4.0)
    assert _delay(policy, "POST", outcome, elapsed=10.0 - expected) == expected
    assert _delay(policy, "POST", outcome, elapsed=10.0 - expected / 2) is None


def test_no_deadline_means_elapsed_time_is_ignored() -> None:
    """With deadline=None a retry is allowed however long ago the first attempt started."""
    policy = RetryPolicy(deadline=None)
    assert _delay(policy, "GET", StatusOutcome(503), elapsed=1e9) is not None


def test_zero_deadline_allows_only_immediate_retries() -> None:
    """deadline=0 is a deadline, not "no deadline": only a wait of 0 is allowed."""
    policy = RetryPolicy(deadline=0, retry_after_jitter=0)
    assert _delay(policy, "GET", StatusOutcome(429, retry_after=0.0)) == 0.0
    assert _delay(policy, "GET", StatusOutcome(429, retry_after=1.0)) is None
    assert _delay(policy, "GET", StatusOutcome(503)) is None  # a jittered backoff above 0
    assert _delay(RetryPolicy(deadline=0, initial_backoff=0), "GET", StatusOutcome(503)) == 0.0


def test_server_hint_is_used_as_is_without_spread() -> None:
    """With retry_after_jitter=0 a server-requested wait under the cap is returned unchanged."""
    policy = RetryPolicy(max_retry_after=60.0, retry_after_jitter=0)
    assert _delay(policy, "POST", StatusOutcome(429, retry_after=5.0)) == 5.0
    assert _delay(policy, "POST", StatusOutcome(503, retry_after=0.0)) == 0.0
    assert _delay(policy, "GET", StatusOutcome(429, retry_after=30.5), retries_done=2) == 30.5


class _Extreme(random.Random):
    def __init__(self, longest: bool) -> None:
        super().__init__(0)
        self.longest = longest

    def uniform(self, a: float, b: float) -> float:
        return b if self.longest else a


def test_server_hint_gets_a_spread_proportional_to_it() -> None:
    """The default spread is up to a fifth of the wait on top: 1 s becomes 1 to 1.2 s."""
    policy = RetryPolicy()
    for wait in (1.0, 10.0, 50.0):
        outcome = StatusOutcome(429, retry_after=wait)
        low = retry_delay(
            policy, method="GET", outcome=outcome, retries_done=0, elapsed=0, rng=_Extreme(False)
        )
        high = retry_delay(
            policy, method="GET", outcome=outcome, retries_done=0, elapsed=0, rng=_Extreme(True)
        )
        assert (wait, wait * 1.2) == (low, high)
    rng = random.Random(1)
    waits = [_delay_with(policy, rng, 1.0) for _ in range(200)]
    assert all(1.0 <= w <= 1.2 for w in waits)
    assert max(waits) - min(waits) > 0.1  # a herd comes back over a tenth of a second or more


def _delay_with(policy: RetryPolicy, rng: random.Random, wait: float) -> float:
    delay = retry_delay(
        policy,
        method="GET",
        outcome=StatusOutcome(429, retry_after=wait),
        retries_done=0,
        elapsed=0,
        rng=rng,
    )
    assert delay is not None
    return delay


def test_a_hint_above_max_retry_after_is_raised_at_once() -> None:
    """A wait longer than max_retry_after is not shortened: retrying early meets another 429."""
    policy = RetryPolicy(max_retry_after=60.0, deadline=None)
    assert _delay(policy, "POST", StatusOutcome(429, retry_after=3600.0)) is None
    assert _delay(policy, "POST", StatusOutcome(429, retry_after=math.inf)) is None
    assert _delay(policy, "GET", StatusOutcome(503, retry_after=60.5)) is None
    assert _delay(policy, "GET", StatusOutcome(429, retry_after=60.0)) is not None


def test_server_hint_still_respects_the_deadline() -> None:
    """A server-named wait counts against the deadline like any other wait."""
    policy = RetryPolicy(max_retry_after=60.0, deadline=120.0, retry_after_jitter=0)
    outcome = StatusOutcome(429, retry_after=60.0)
    assert _delay(policy, "POST", outcome, elapsed=60.0) == 60.0
    assert _delay(policy, "POST", outcome, elapsed=61.0) is None


def test_the_route_decides_not_the_method() -> None:
    """repeatable=True lets a dropped POST be retried; repeatable=False stops a dropped GET."""
    dropped = ConnectionOutcome(reached_server=True)
    policy = RetryPolicy()
    assert (
        retry_delay(
            policy, method="PATCH", outcome=dropped, retries_done=0, elapsed=0, repeatable=True
        )
        is not None
    )
    assert (
        retry_delay(
            policy, method="GET", outcome=dropped, retries_done=0, elapsed=0, repeatable=False
        )
        is None
    )
    assert (
        retry_delay(
            policy,
            method="GET",
            outcome=StatusOutcome(504),
            retries_done=0,
            elapsed=0,
            repeatable=False,
        )
        is None
    )
    refused = ConnectionOutcome(reached_server=False)
    assert (
        retry_delay(
            policy, method="POST", outcome=refused, retries_done=0, elapsed=0, repeatable=False
        )
        is not None
    )


def test_max_retries_can_be_replaced_per_call() -> None:
    """A stream's re-attach budget replaces the policy's max_retries for that call."""
    policy = RetryPolicy(max_retries=0)
    outcome = ConnectionOutcome(reached_server=True)
    assert (
        retry_delay(policy, method="GET", outcome=outcome, retries_done=1, elapsed=0, max_retries=2)
        is not None
    )
    assert (
        retry_delay(policy, method="GET", outcome=outcome, retries_done=2, elapsed=0, max_retries=2)
        is None
    )


def test_a_lasting_refusal_is_never_retried() -> None:
    """A 429 that is no throttle (too many concurrent backfills) is raised at once."""
    lasting = StatusOutcome(429, None, lasting=True)
    for method in ("GET", "POST"):
        assert not is_retryable(method, lasting)
        policy = RetryPolicy()
        delay = retry_delay(policy, method=method, outcome=lasting, retries_done=0, elapsed=0)
        assert delay is None
    assert is_retryable("POST", StatusOutcome(429))


def test_server_hint_does_not_make_a_non_retryable_status_retryable() -> None:
    """A 500 or a POST's 502 with a Retry-After is still raised."""
    assert _delay(RetryPolicy(), "POST", StatusOutcome(500, retry_after=1.0)) is None
    assert _delay(RetryPolicy(), "POST", StatusOutcome(502, retry_after=1.0)) is None


# --- backoff and jitter -------------------------------------------------------------------


def test_backoff_ceiling_doubles_up_to_max_backoff() -> None:
    """The ceilings for retries 1..7 are 0.5, 1, 2, 4, 8, 8, 8 with the default policy."""
    policy = RetryPolicy()
    ceilings = [backoff(policy, n, TopOfRange()) for n in range(1, 8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_uses_the_given_rng() -> None:
    """backoff draws from the rng it is given, so a seeded rng makes it reproducible."""
    policy = RetryPolicy()
    assert backoff(policy, 3, random.Random(42)) == random.Random(42).uniform(0.0, 2.0)


@pytest.mark.parametrize("retry_number", [1_100, 5_000, 10**6, 10**30, 2**64 + 1])
def test_backoff_does_not_overflow_for_huge_retry_numbers(retry_number: int) -> None:
    """Huge retry numbers give the max_backoff ceiling instead of an OverflowError."""
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0)
    assert backoff(policy, retry_number, TopOfRange()) == 8.0
    assert 0.0 <= backoff(policy, retry_number, random.Random(1)) <= 8.0


def test_backoff_with_zero_initial_backoff_is_zero() -> None:
    """initial_backoff=0 means retrying immediately, for any retry number."""
    policy = RetryPolicy(initial_backoff=0.0)
    assert backoff(policy, 1, TopOfRange()) == 0.0
    assert backoff(policy, 10**9, TopOfRange()) == 0.0


@pytest.mark.parametrize(("retry_number", "error"), [(0, ValueError), (-3, ValueError)])
def test_backoff_rejects_retry_numbers_below_one(retry_number: int, error: type[Exception]) -> None:
    """retry_number is 1-based, so 0 and negatives are errors."""
    with pytest.raises(error, match="retry_number"):
        backoff(RetryPolicy(), retry_number, random.Random(0))


def test_retry_delay_uses_retries_done_plus_one_for_backoff() -> None:
    """After 2 retries the next wait is drawn with the ceiling of retry number 3."""
    policy = RetryPolicy(deadline=None)
    delay = retry_delay(
        policy,
        method="GET",
        outcome=StatusOutcome(503),
        retries_done=2,
        elapsed=0.0,
        rng=TopOfRange(),
    )
    assert delay == 2.0


def test_retry_delay_without_rng_uses_the_module_rng(monkeypatch: pytest.MonkeyPatch) -> None:
    """rng=None draws from the module's own Random instance, not the global random functions."""
    assert isinstance(_retry._RNG, random.Random)
    monkeypatch.setattr(_retry, "_RNG", TopOfRange())
    delay = retry_delay(
        RetryPolicy(),
        method="GET",
        outcome=StatusOutcome(503),
        retries_done=0,
        elapsed=0.0,
    )
    assert delay == 0.5


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"retries_done": -1}, ValueError, "retries_done"),
        ({"retries_done": 1.0}, TypeError, "retries_done"),
        ({"retries_done": True}, TypeError, "retries_done"),
        ({"elapsed": -0.1}, ValueError, "elapsed"),
        ({"elapsed": math.nan}, ValueError, "elapsed"),
    ],
)
def test_retry_delay_rejects_bad_counters(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    """A negative or non-integer retries_done, or a negative/NaN elapsed, is an error."""
    args: dict[str, object] = {"retries_done": 0, "elapsed": 0.0, **kwargs}
    with pytest.raises(error, match=name):
        retry_delay(RetryPolicy(), method="GET", outcome=StatusOutcome(503), **args)  # type: ignore[arg-type]


# --- RetryPolicy and outcome validation ---------------------------------------------------


def test_retry_policy_defaults() -> None:
    """The defaults are 3 retries, 0.5 s initial, 8 s max backoff, 60 s hint cap, 120 s deadline.

    A server-named wait is spread by up to a fifth, and a stream re-attaches 5 times in a row.
    """
    policy = RetryPolicy()
    assert policy.max_retries == 3
    assert policy.initial_backoff == 0.5
    assert policy.max_backoff == 8.0
    assert policy.max_retry_after == 60.0
    assert policy.deadline == 120.0
    assert policy.retry_after_jitter == 0.2
    assert policy.max_reattaches == 5


def test_retry_policy_accepts_zeros_ints_and_no_deadline() -> None:
    """Zero values, int seconds and deadline=None are all valid."""
    policy = RetryPolicy(
        max_retries=0, initial_backoff=0, max_backoff=0, max_retry_after=0, deadline=None
    )
    assert policy.deadline is None
    assert RetryPolicy(deadline=0).deadline == 0


def test_retry_policy_is_frozen_and_keyword_only() -> None:
    """RetryPolicy cannot be mutated or built positionally."""
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_retries = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": 1.5}, TypeError, "max_retries"),
        ({"max_retries": 2.0}, TypeError, "max_retries"),
        ({"max_retries": True}, TypeError, "max_retries"),
        ({"max_retries": "3"}, TypeError, "max_retries"),
        ({"max_retries": None}, TypeError, "max_retries"),
        ({"initial_backoff": -0.5}, ValueError, "initial_backoff"),
        ({"initial_backoff": math.nan}, ValueError, "initial_backoff"),
        ({"initial_backoff": math.inf}, ValueError, "initial_backoff"),
        ({"initial_backoff": "0.5"}, TypeError, "initial_backoff"),
        ({"initial_backoff": None}, TypeError, "initial_backoff"),
        ({"max_backoff": -1.0}, ValueError, "max_backoff"),
        ({"max_backoff": math.inf}, ValueError, "max_backoff"),
        ({"max_backoff": False}, TypeError, "max_backoff"),
        ({"max_retry_after": -60}, ValueError, "max_retry_after"),
        ({"max_retry_after": math.nan}, ValueError, "max_retry_after"),
        ({"max_retry_after": [60]}, TypeError, "max_retry_after"),
        ({"deadline": -1.0}, ValueError, "deadline"),
        ({"deadline": math.inf}, ValueError, "deadline"),
        ({"deadline": "120"}, TypeError, "deadline"),
        ({"deadline": True}, TypeError, "deadline"),
        ({"retry_after_jitter": -0.1}, ValueError, "retry_after_jitter"),
        ({"retry_after_jitter": math.nan}, ValueError, "retry_after_jitter"),
        ({"retry_after_jitter": math.inf}, ValueError, "retry_after_jitter"),
        ({"retry_after_jitter": "0.2"}, TypeError, "retry_after_jitter"),
        ({"max_reattaches": -1}, ValueError, "max_reattaches"),
    ],
)
def test_retry_policy_rejects_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    """Each bad argument raises the right error type with a message naming the argument."""
    with pytest.raises(error, match=name):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_bad_retry_after_jitter_is_named_as_a_fraction_not_seconds() -> None:
    """`retry_after_jitter` is a fraction of the wait: its errors said "number of seconds"."""
    with pytest.raises(ValueError, match="finite fraction of the wait >= 0") as negative:
        RetryPolicy(retry_after_jitter=-0.1)
    with pytest.raises(TypeError, match="must be a fraction of the wait, got str") as text:
        RetryPolicy(retry_after_jitter="0.2")  # type: ignore[arg-type]
    assert "seconds" not in str(negative.value) + str(text.value)


@pytest.mark.parametrize("value", [True, False, 1.5, 5.0, "5", None])
def test_retry_policy_rejects_a_non_int_max_reattaches(value: object) -> None:
    """max_reattaches must be a real int: a bool, float, string or None is rejected."""
    with pytest.raises(TypeError, match="max_reattaches must be an int"):
        RetryPolicy(max_reattaches=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda: StatusOutcome("429"), TypeError, "status"),  # type: ignore[arg-type]
        (lambda: StatusOutcome(True), TypeError, "status"),
        (lambda: StatusOutcome(429, retry_after=-1.0), ValueError, "retry_after"),
        (lambda: StatusOutcome(429, retry_after=math.nan), ValueError, "retry_after"),
        (lambda: StatusOutcome(429, retry_after="5"), TypeError, "retry_after"),  # type: ignore[arg-type]
        (lambda: StatusOutcome(429, retry_after=True), TypeError, "retry_after"),
        (lambda: ConnectionOutcome(reached_server=1), TypeError, "reached_server"),  # type: ignore[arg-type]
        (lambda: ConnectionOutcome(reached_server=None), TypeError, "reached_server"),  # type: ignore[arg-type]
    ],
)
def test_outcomes_reject_bad_arguments(
    build: Callable[[], object], error: type[Exception], name: str
) -> None:
    """Outcomes reject a non-int status, a negative/NaN/non-number wait and a non-bool flag."""
    with pytest.raises(error, match=name):
        build()


# --- parse_retry_after --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("120", 120.0),
        ("  7 ", 7.0),
        ("007", 7.0),
        ("1.5", 1.5),
        ("0.25", 0.25),
        (None, None),
        ("", None),
        ("   ", None),
        ("-1", None),
        ("-0.5", None),
        ("+5", None),
        ("abc", None),
        ("5 seconds", None),
        ("1.5.2", None),
        ("1.", None),
        (".5", None),
        ("1e3", None),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("Infinity", None),
        ("9" * 400, 2147483648.0),  # past a float: the longest wait, as RFC 9111 reads it
        ("9" * 12, 2147483648.0),
        ("2147483647", 2147483647.0),
        ("٣", None),
    ],
)
def test_parse_retry_after_delta_seconds(value: str | None, expected: float | None) -> None:
    """Delta-seconds parse to floats; negatives, non-finite numbers and garbage give None."""
    assert parse_retry_after(value) == expected


def test_parse_retry_after_future_http_date() -> None:
    """A future HTTP-date gives the seconds from the injected now."""
    now = datetime.datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 08:27:30 GMT", now=now) == 3630.0


def test_parse_retry_after_past_http_date_clamps_to_zero() -> None:
    """An HTTP-date in the past (relative to now) gives 0, not a negative wait."""
    now = datetime.datetime(2015, 10, 21, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT") == 0.0


def test_parse_retry_after_http_date_with_default_now() -> None:
    """Without now, a far-future date is a large positive wait from the current time."""
    seconds = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT")
    assert seconds is not None
    assert seconds > 365 * 24 * 3600


def test_parse_retry_after_http_date_honours_offsets_and_naive_now() -> None:
    """A date with a numeric zone is converted, and a naive now is taken as UTC."""
    naive_now = datetime.datetime(2015, 10, 21, 7, 0, 0)
    assert parse_retry_after("Wed, 21 Oct 2015 09:00:10 +0200", now=naive_now) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:10 -0000", now=naive_now) == 10.0


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "Wed, 21 Foo 2015 07:28:00 GMT",
        "Wed, 21 Oct 2015 25:28:00 GMT",
        "Wed, 21 Oct 99999 07:28:00 GMT",
        "Wed, 21 Oct",
        "tomorrow",
        "Wed, 21 Oct 2015 07:28:00 +99999999999999",  # the zone overflows a C int
        "Wed, 21 Oct 2015 07:28:00 -99999999999999",
    ],
)
def test_parse_retry_after_bad_http_dates(value: str) -> None:
    """Malformed HTTP-dates give None instead of raising."""
    assert parse_retry_after(value, now=datetime.datetime(2015, 1, 1, tzinfo=UTC)) is None


# --- parse_throttle_detail ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("Request was throttled. Expected available in 12 seconds.", 12.0),
        ("Request was throttled. Expected available in 1 second.", 1.0),
        ("Request was throttled. Expected available in 0 seconds.", 0.0),
        ("Request was throttled. Expected available in 2.5 seconds.", 2.5),
        ("Request was throttled. expected available in 30 seconds", 30.0),
        (
            "You've reached PostHog AI's usage limit for the moment. Please try again in "
            "45 seconds. Expected available in 44 seconds.",
            44.0,
        ),
        (
            "You've reached PostHog AI's usage limit for the moment. "
            "Please try again in 7 seconds.",
            7.0,
        ),
        ("Please try again in 1 second.", 1.0),
        ("Please try again in 1.5 seconds.", 1.5),
        ("PLEASE TRY AGAIN IN 8 SECONDS.", 8.0),
        ("Expected available in 5 seconds. Expected available in 9 seconds.", 9.0),
        ("Try again in 5 seconds, or try again in 6 seconds.", 6.0),
        ("Rate limit exceeded 3 times. Expected available in 9 seconds.", 9.0),
        ("Request was throttled.", None),
        ("Expected available in a few seconds.", None),
        ("Expected available in -3 seconds.", None),
        ("Please try again later.", None),
        ("Expected available in 5 minutes.", None),
        ("Expected available in " + "9" * 400 + " seconds.", 2147483648.0),
        ("", None),
        (None, None),
    ],
)
def test_parse_throttle_detail(detail: str | None, expected: float | None) -> None:
    """DRF's singular/plural suffix and the PostHog AI text give the wait; anything else None."""
    assert parse_throttle_detail(detail) == expected


# --- properties ---------------------------------------------------------------------------

seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
policies = st.builds(
    RetryPolicy,
    max_retries=st.integers(min_value=0, max_value=50),
    initial_backoff=seconds,
    max_backoff=seconds,
    max_retry_after=seconds,
    deadline=st.none() | seconds,
)
methods = st.sampled_from(ALL_METHODS) | st.sampled_from(ALL_METHODS).map(str.lower) | st.text()
hints = st.none() | seconds | st.just(math.inf)
outcomes: st.SearchStrategy[Outcome] = st.one_of(
    st.builds(StatusOutcome, st.integers(min_value=100, max_value=599), hints),
    st.builds(StatusOutcome, st.sampled_from([429, 500, 502, 503, 504]), hints),
    st.builds(ConnectionOutcome, st.booleans()),
)
retry_numbers = st.integers(min_value=1, max_value=2_000) | st.integers(min_value=1)
rngs = st.integers(min_value=0, max_value=2**32).map(random.Random)


@given(policy=policies, retry_number=retry_numbers, rng=rngs)
def test_backoff_stays_within_its_ceiling(
    policy: RetryPolicy, retry_number: int, rng: random.Random
) -> None:
    """backoff is always within [0, min(max_backoff, initial_backoff * 2**(n-1))]."""
    delay = backoff(policy, retry_number, rng)
    if policy.initial_backoff == 0:
        ceiling = 0.0
    elif retry_number - 1 > 2_100:
        ceiling = policy.max_backoff  # even the smallest float times 2**2100 exceeds any float
    else:
        exact = Fraction(policy.initial_backoff) * 2 ** (retry_number - 1)  # no float overflow
        ceiling = policy.max_backoff if exact >= policy.max_backoff else float(exact)
    assert 0.0 <= delay <= ceiling


@given(
    policy=policies,
    method=methods,
    outcome=outcomes,
    retries_done=st.integers(min_value=0, max_value=60),
    elapsed=seconds,
    rng=rngs,
)
def test_retry_delay_is_never_negative_nor_above_the_caps(
    policy: RetryPolicy,
    method: str,
    outcome: Outcome,
    retries_done: int,
    elapsed: float,
    rng: random.Random,
) -> None:
    """Any wait is in [0, max(max_backoff, max_retry_after * (1 + retry_after_jitter))]."""
    delay = retry_delay(
        policy, method=method, outcome=outcome, retries_done=retries_done, elapsed=elapsed, rng=rng
    )
    if delay is not None:
        ceiling = policy.max_retry_after * (1 + policy.retry_after_jitter)
        assert 0.0 <= delay <= max(policy.max_backoff, ceiling)
        if isinstance(outcome, StatusOutcome) and outcome.retry_after is not None:
            assert outcome.retry_after <= policy.max_retry_after
        assert is_retryable(method, outcome)
        assert retries_done < policy.max_retries


@given(
    policy=policies,
    method=st.sampled_from(NON_IDEMPOTENT)
    | st.sampled_from(NON_IDEMPOTENT).map(str.lower)
    | st.text().filter(lambda m: m.upper() not in IDEMPOTENT_METHODS),
    retries_done=st.integers(min_value=0, max_value=60),
    elapsed=seconds,
    rng=rngs,
)
def test_non_idempotent_request_that_reached_the_server_is_never_retried(
    policy: RetryPolicy, method: str, retries_done: int, elapsed: float, rng: random.Random
) -> None:
    """A POST-like request that may have been sent and got no answer is always raised."""
    outcome = ConnectionOutcome(reached_server=True)
    delay = retry_delay(
        policy, method=method, outcome=outcome, retries_done=retries_done, elapsed=elapsed, rng=rng
    )
    assert delay is None


@given(
    policy=st.builds(
        RetryPolicy,
        max_retries=st.integers(min_value=0, max_value=50),
        initial_backoff=seconds,
        max_backoff=seconds,
        max_retry_after=seconds,
        deadline=seconds,
    ),
    method=methods,
    failures=st.lists(st.tuples(outcomes, seconds), min_size=1, max_size=60),
    rng=rngs,
)
def test_total_wait_of_a_retry_sequence_never_exceeds_the_deadline(
    policy: RetryPolicy,
    method: str,
    failures: list[tuple[Outcome, float]],
    rng: random.Random,
) -> None:
    """In a simulated retry sequence no attempt starts after the deadline; waits sum below it."""
    assert policy.deadline is not None
    elapsed = 0.0  # seconds since the first attempt started
    total_wait = 0.0
    for retries_done, (outcome, attempt_duration) in enumerate(failures):
        assert elapsed <= policy.deadline  # an attempt starts here
        elapsed += attempt_duration
        delay = retry_delay(
            policy,
            method=method,
            outcome=outcome,
            retries_done=retries_done,
            elapsed=elapsed,
            rng=rng,
        )
        if delay is None:
            break
        total_wait += delay
        elapsed += delay
    assert total_wait <= policy.deadline + 1e-9


@given(value=st.text() | st.none())
def test_parse_retry_after_never_raises_on_arbitrary_text(value: str | None) -> None:
    """parse_retry_after on any string gives None or a finite non-negative float."""
    result = parse_retry_after(value, now=datetime.datetime(2024, 1, 1, tzinfo=UTC))
    assert result is None or (math.isfinite(result) and result >= 0.0)


@given(
    value=st.from_regex(
        r"\A[A-Za-z]{0,4},? ?[0-9]{0,5} [A-Za-z]{0,4} [0-9]{0,6} "
        r"[0-9]{0,3}:[0-9]{0,3}(:[0-9]{0,3})? [A-Za-z+\-0-9]{0,6}\Z"
    )
)
def test_parse_retry_after_never_raises_on_date_like_text(value: str) -> None:
    """Near-miss HTTP-dates (odd days, years, times and zones) never make it raise."""
    for now in (datetime.datetime(2024, 1, 1, tzinfo=UTC), datetime.datetime(1, 1, 1), None):
        result = parse_retry_after(value, now=now)
        assert result is None or (math.isfinite(result) and result >= 0.0)


@given(
    seconds_=st.integers(min_value=0, max_value=10**12)
    | st.integers(min_value=0, max_value=10**400)
)
def test_parse_retry_after_reads_any_integer(seconds_: int) -> None:
    """Any non-negative integer delta-seconds parses to its value, at most 2**31 (RFC 9111)."""
    assert parse_retry_after(str(seconds_)) == float(min(seconds_, 2**31))


@given(offset=st.integers(min_value=-(10**8), max_value=10**8))
def test_parse_retry_after_round_trips_http_dates(offset: int) -> None:
    """An HTTP-date `offset` seconds from now parses back to max(0, offset)."""
    now = datetime.datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
    header = email.utils.format_datetime(now + datetime.timedelta(seconds=offset), usegmt=True)
    assert parse_retry_after(header, now=now) == max(0.0, float(offset))


@given(detail=st.text() | st.none())
def test_parse_throttle_detail_never_raises(detail: str | None) -> None:
    """parse_throttle_detail on any string gives None or a finite non-negative float."""
    result = parse_throttle_detail(detail)
    assert result is None or (math.isfinite(result) and result >= 0.0)


@given(wait=st.integers(min_value=0, max_value=10**9), prefix=st.text())
def test_parse_throttle_detail_reads_drf_suffix_after_any_text(wait: int, prefix: str) -> None:
    """Whatever detail DRF's suffix follows, its number is the result."""
    unit = "second" if wait == 1 else "seconds"
    assert parse_throttle_detail(f"{prefix} Expected available in {wait} {unit}.") == wait


@given(st.integers(min_value=100, max_value=599))
def test_only_a_gateway_status_may_have_been_acted_on(status: int) -> None:
    """
    Of the statuses, only a gateway's 502 or 504 may have followed work PostHog did; a
    429 or 503 came before any work, and any other status is PostHog's own answer.
    """
    assert may_have_acted(StatusOutcome(status)) is (status in (502, 504))


@pytest.mark.parametrize("reached", [True, False])
def test_a_connection_failure_may_have_been_acted_on_if_it_may_have_reached_posthog(
    reached: bool,
) -> None:
    assert may_have_acted(ConnectionOutcome(reached_server=reached)) is reached


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE"])
def test_a_proxys_503_is_a_gateways_answer(method: str) -> None:
    """A 503 a proxy wrote may follow a forwarded request: retried only when repeatable."""
    proxy = StatusOutcome(503, proxy=True)
    own = StatusOutcome(503)
    idempotent = method in ("GET", "DELETE")
    assert is_retryable(method, proxy) is idempotent
    assert is_retryable(method, own)
    assert may_have_acted(proxy)
    assert not may_have_acted(own)
    assert is_retryable(method, proxy, repeatable=True)
    assert not is_retryable(method, proxy, repeatable=False)


def test_parse_retry_after_caps_a_far_http_date_too() -> None:
    """The changelog: "Any value past 2**31 seconds reads as 2**31". A delta-seconds value
    does; a Retry-After HTTP-date thousands of years ahead reads as its full distance
    (2.5e11 s), so `RateLimitError.retry_after` and the limiter's pause differ by the form
    the server chose for the same answer."""
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=now) == 2.0**31
