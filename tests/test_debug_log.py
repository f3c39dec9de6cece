"""The `aposthog` logger's DEBUG lines: one per call and one per conversation stream."""

from __future__ import annotations

import logging
import re

import pytest

import aposthog
from aposthog import _routes as routes
from aposthog._debug_log import _duration, _ended
from aposthog.testing import FakePostHog

from .stream_helpers import FAST

pytestmark = pytest.mark.anyio

MISSING = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
CONFIGS = "/api/environments/1/customer_profile_configs/"


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]


async def test_each_call_is_one_line_with_its_path_status_time_and_attempts(
    fake: FakePostHog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aposthog")
    async with fake.client(retry=FAST) as ph:
        config = await ph.customer_profile_configs.create(scope="person")
        await ph.customer_profile_configs.list()
        with pytest.raises(aposthog.NotFoundError):
            await ph.customer_profile_configs.get(MISSING)
        fake.fail_next(1, status=503)
        await ph.customer_profile_configs.get(config.id)
    ms = r"[0-9.]+ (ms|s)"
    patterns = [
        rf"POST {CONFIGS}: 201 in {ms}",
        rf"GET {CONFIGS}: 200 in {ms}",
        rf"GET {CONFIGS}{MISSING}/: 404 NotFoundError in {ms}",
        rf"GET {CONFIGS}{config.id}/: 200 in {ms}, 2 attempts",
    ]
    lines = _lines(caplog)
    assert len(lines) == len(patterns), lines
    for line, pattern in zip(lines, patterns, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)
    # The retry itself is logged when it happens, at INFO.
    assert any(r.levelno == logging.INFO and "retrying" in r.getMessage() for r in caplog.records)


async def test_a_call_the_rate_limiter_refused_is_no_429_and_says_it_was_not_sent(
    fake: FakePostHog, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A call refused before sending (its rate-limit wait is longer than it may wait) got
    no response: its line names the error without a status, and says it was not sent.
    It read "429 RateLimitError", as if PostHog had throttled the key.
    """
    caplog.set_level(logging.DEBUG, logger="aposthog")
    limits = aposthog.RateLimits(api=(aposthog.Rate(1, per=60),), margin=0)
    policy = aposthog.RetryPolicy(max_retry_after=1)
    async with fake.client(rate_limits=limits, retry=policy) as ph:
        await ph.customer_profile_configs.list()
        with pytest.raises(aposthog.RateLimitError):
            await ph.customer_profile_configs.list()
    lines = [line for line in _lines(caplog) if line.startswith("GET")]
    assert 2 == len(lines), lines
    assert re.fullmatch(rf"GET {CONFIGS}: RateLimitError in [0-9.]+ (ms|s), not sent", lines[1])


async def test_a_call_that_never_got_an_answer_names_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aposthog")
    async with FakePostHog() as fake:
        url = fake.url
    # Nothing listens there any more: the connection is refused.
    async with aposthog.Client(api_key="phx_k", host=url, project_id=1, max_retries=0) as ph:
        with pytest.raises(aposthog.APIConnectionError):
            await ph.customer_profile_configs.list()
    assert re.fullmatch(
        rf"GET {CONFIGS}: APIConnectionError in [0-9.]+ (ms|s)", _lines(caplog)[-1]
    ), _lines(caplog)


async def test_each_stream_is_one_line_with_its_outcome(
    fake: FakePostHog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aposthog")
    async with fake.client(retry=FAST) as ph:
        fake.script_answer("Hello there", token_size=3)
        done = ph.conversations.create("hi")
        await done.until_done()
        fake.script_answer("a slow answer", token_size=1, delay=0.05)
        left = ph.conversations.create("again", conversation=done.conversation_id)
        await anext(left)
        refused = ph.conversations.create("meanwhile", conversation=done.conversation_id)
        with pytest.raises(aposthog.ConflictError):
            await refused.until_done()
        await left.aclose()
    lines = [line for line in _lines(caplog) if line.startswith("conversation ")]
    assert len(lines) == 3, lines
    first, conflict, closed = lines
    assert re.fullmatch(
        rf"conversation {done.conversation_id}: done in [0-9.]+ (ms|s), [0-9]+ events "
        r"\([0-9.]+ KB\), first token after [0-9.]+ (ms|s)",
        first,
    ), first
    refusal = f"conversation {refused.conversation_id}: failed (409 ConflictError)"
    assert conflict.startswith(refusal), conflict
    assert " 0 events (0.0 KB)" in conflict
    assert closed.startswith(f"conversation {left.conversation_id}: incomplete in ")


def _seconds(duration: str) -> float:
    number, unit = duration.split()
    return float(number) / (1000 if unit == "ms" else 1)


async def test_a_reattached_stream_line_counts_the_reattach(
    fake: FakePostHog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aposthog")
    # The run's end waits for the re-attach: it is never caught up from an idle one.
    fake.script_answer(
        "one two three", token_size=2, delay=0.003, drop_after=3, end_after_connections=2
    )
    async with fake.client(retry=FAST) as ph:
        stream = ph.conversations.create("q")
        await stream.until_done()
    (line,) = [line for line in _lines(caplog) if line.startswith("conversation ")]
    ms = r"[0-9.]+ (?:ms|s)"
    match = re.fullmatch(
        rf"conversation {stream.conversation_id}: done in (?P<took>{ms}), [0-9]+ events "
        rf"\([0-9.]+ KB\), first token after (?P<first>{ms}), 1 re-attach",
        line,
    )
    assert match, line
    # The first token came after the opening, within the stream's time.
    assert _seconds(match["first"]) <= _seconds(match["took"])


async def test_on_wait_keeps_the_path_in_the_line(
    fake: FakePostHog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aposthog")
    waits: list[aposthog.Wait] = []
    async with fake.client(retry=FAST, on_wait=waits.append) as ph:
        config = await ph.customer_profile_configs.create(scope="person")
        fake.fail_next(1, status=503)
        await ph.with_options(on_wait=waits.append).customer_profile_configs.get(config.id)
    assert ["retry"] == [w.reason for w in waits]
    assert re.fullmatch(
        rf"GET {CONFIGS}{config.id}/: 200 in [0-9.]+ (ms|s), 2 attempts", _lines(caplog)[-1]
    ), _lines(caplog)


async def test_with_debug_off_a_call_carries_no_observer_and_logs_nothing(
    fake: FakePostHog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aposthog")
    async with fake.client() as ph:
        # The fast path of an unobserved call (`Api.send`) stays the path taken.
        assert ph._api._watch(routes.PROFILE_CONFIGS, CONFIGS) is None
        await ph.customer_profile_configs.list()
        await ph.conversations.create("hi").until_done()
    assert _lines(caplog) == []


async def test_the_key_never_appears_in_a_debug_line(
    fake: FakePostHog, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "phx_SENTINEL_never_in_a_log_line_4242"
    caplog.set_level(logging.DEBUG, logger="aposthog")
    async with fake.client(api_key=secret, retry=FAST) as ph:
        with pytest.raises(aposthog.AuthenticationError):
            await ph.customer_profile_configs.list()
        with pytest.raises(aposthog.AuthenticationError):
            await ph.conversations.create("hi").until_done()
    assert len(_lines(caplog)) == 2
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.args)


def test_durations_and_endings_read_plainly() -> None:
    assert _duration(0.0123) == "12.3 ms"
    assert _duration(2.54) == "2.5 s"
    assert _duration(0.9994) == "999.4 ms"
    assert _duration(1.0) == "1.0 s"
    assert _ended(204, None) == "204"
    error = aposthog.NotFoundError(status=404, detail="gone")
    assert _ended(404, error) == "404 NotFoundError"
    assert _ended(None, aposthog.APITimeoutError("slow")) == "APITimeoutError"
