"""Bounded messages: str(), repr() and log lines stay small whatever PostHog sends."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

import aposthog
from aposthog._errors import MAX_SHOWN, clip, error_from_response

from .web_server import serve

pytestmark = pytest.mark.anyio

HUGE = 20_000_000
#: "A few KiB": the bound every message, repr and log line must respect.
FEW_KIB = 8 * 1024


def _huge_envelope(size: int = HUGE) -> bytes:
    detail = "d" * size
    return json.dumps(
        {"type": "server_error", "code": "c", "detail": detail, "attr": "a" * 10_000}
    ).encode()


def test_clip_marks_what_was_left_out() -> None:
    assert "abc" == clip("abc")
    cut = clip("x" * HUGE)
    assert cut.startswith("x" * MAX_SHOWN)
    assert cut.endswith(f"… [{HUGE - MAX_SHOWN:,} more characters]")
    assert "19,998,000 more characters" in cut


@given(text=st.text(max_size=60), limit=st.integers(0, 50))
def test_clip_keeps_exactly_limit_characters(text: str, limit: int) -> None:
    """Up to `limit` characters come back unchanged; beyond, exactly `limit` and a count."""
    if len(text) <= limit:
        assert text == clip(text, limit)
    else:
        assert f"{text[:limit]}… [{len(text) - limit:,} more characters]" == clip(text, limit)
    assert "x" * MAX_SHOWN == clip("x" * MAX_SHOWN)


def test_a_huge_type_code_and_path_give_small_messages() -> None:
    """Not only the detail: every server- or caller-sent part of a message is bounded."""
    big = 100_000
    body = json.dumps({"type": "t" * big, "code": "c" * big, "detail": "d", "attr": None})
    err = error_from_response(400, {}, body.encode(), method="GET", path="/p/" * big)
    for text in (str(err), repr(err), *map(str, err.args)):
        assert len(text) < FEW_KIB
    assert big == len(err.code or "")
    assert big == len(err.type or "")


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
def test_a_20_mb_detail_gives_small_messages_and_keeps_the_body(status: int) -> None:
    err = error_from_response(status, {}, _huge_envelope(), method="GET", path="/api/x/")
    for text in (str(err), repr(err), *map(str, err.args)):
        assert len(text) < FEW_KIB
    assert "more characters]" in str(err)
    assert "more characters]" in repr(err)
    # The whole of it stays reachable.
    assert err.detail is not None
    assert HUGE == len(err.detail)
    assert HUGE == len(err.body["detail"])
    # And survives pickling with it.
    copy = pickle.loads(pickle.dumps(err))
    assert HUGE == len(copy.detail)
    assert len(str(copy)) < FEW_KIB


def test_a_huge_non_json_body_gives_small_messages() -> None:
    err = error_from_response(502, {}, b"<html>" + b"z" * HUGE)
    assert len(str(err)) < FEW_KIB
    assert len(repr(err)) < FEW_KIB
    assert isinstance(err.body, str)
    assert HUGE + 6 == len(err.body)


def test_connection_and_decode_errors_are_bounded_too() -> None:
    conn = aposthog.APIConnectionError("reset: " + "r" * HUGE, method="GET", path="/x/")
    decode = aposthog.ResponseDecodeError("bad: " + "b" * HUGE, body={"k": "v" * HUGE})
    for err in (conn, decode):
        assert len(str(err)) < FEW_KIB
        assert len(repr(err)) < FEW_KIB
    assert HUGE == len(decode.body["k"])


@given(
    detail=st.text(min_size=0, max_size=20_000),
    code=st.text(max_size=5_000),
    attr=st.text(max_size=5_000),
)
def test_any_envelope_gives_a_bounded_one_line_message(detail: str, code: str, attr: str) -> None:
    body = json.dumps({"type": "t", "code": code, "detail": detail, "attr": attr}).encode()
    err = error_from_response(400, {}, body)
    assert len(str(err)) < FEW_KIB
    assert len(repr(err)) < 4 * FEW_KIB
    assert "\n" not in str(err)
    assert detail == (err.detail or "")


@pytest.fixture
async def huge_error_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server whose every answer is a 503 with a 20 MB detail."""
    body = _huge_envelope()
    hits: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(status=503, body=body, content_type="application/json")

    async with serve(handler) as url:
        yield url, hits


async def test_retry_log_lines_are_bounded(
    huge_error_server: tuple[str, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    """A 20 MB detail is logged as a few KiB on each retry, and raised whole."""
    url, hits = huge_error_server
    policy = aposthog.RetryPolicy(max_retries=3, initial_backoff=0.001, max_backoff=0.002)
    caplog.set_level(logging.DEBUG, logger="aposthog")
    async with aposthog.Client(api_key="phx_k", host=url, project_id=1, retry=policy) as ph:
        with pytest.raises(aposthog.InternalServerError) as info:
            await ph.batch_exports.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    assert 4 == len(hits)
    retry_lines = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert 3 == len(retry_lines)
    for record in caplog.records:
        assert len(record.getMessage()) < FEW_KIB
    assert "more characters]" in retry_lines[0].getMessage()
    assert info.value.detail is not None
    assert HUGE == len(info.value.detail)
    assert len(str(info.value)) < FEW_KIB
