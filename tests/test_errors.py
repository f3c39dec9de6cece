"""error_from_response: PostHog's three error shapes become the right exception (no I/O)."""

from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aposthog
from aposthog._errors import error_from_response, header_text, name_request


def _envelope(type_: str, code: str, detail: str, attr: str | None = None) -> bytes:
    return json.dumps({"type": type_, "code": code, "detail": detail, "attr": attr}).encode()


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, aposthog.BadRequestError),
        (401, aposthog.AuthenticationError),
        (402, aposthog.QuotaLimitError),
        (403, aposthog.PermissionDeniedError),
        (404, aposthog.NotFoundError),
        (409, aposthog.ConflictError),
        (422, aposthog.UnprocessableEntityError),
        (429, aposthog.RateLimitError),
        (500, aposthog.InternalServerError),
        (502, aposthog.InternalServerError),
        (503, aposthog.InternalServerError),
        (418, aposthog.APIStatusError),
        (599, aposthog.InternalServerError),
        (600, aposthog.APIStatusError),  # no status HTTP defines: not a server error
        (999, aposthog.APIStatusError),
    ],
)
def test_status_picks_the_class(status: int, cls: type[aposthog.APIStatusError]) -> None:
    """Each status maps to its class in the tree, and all are APIStatusErrors."""
    err = error_from_response(status, {}, b"")
    assert cls is type(err)
    assert isinstance(err, aposthog.PostHogError)
    assert status == err.status


def test_envelope_fields_and_one_line_message() -> None:
    """The drf-exceptions-hog envelope fills type/code/detail/attr; str() is one line."""
    body = _envelope(
        "validation_error", "invalid_choice", '"quick" is not a valid choice.', "scope"
    )
    err = error_from_response(400, {}, body, method="POST", path="/api/environments/1/x/")

    assert ("validation_error", "invalid_choice", "scope") == (err.type, err.code, err.attr)
    assert '"quick" is not a valid choice.' == err.detail
    assert (
        "400 Bad Request [invalid_choice] on POST /api/environments/1/x/: "
        '"quick" is not a valid choice. (field: scope)'
    ) == str(err)


def test_error_bodies_of_conversation_endpoints() -> None:
    """The non-standard {"error": "…"} bodies become the detail."""
    body = b'{"error": "Cannot access other users\' conversations"}'
    err = error_from_response(400, {}, body)
    assert isinstance(err, aposthog.BadRequestError)
    assert "Cannot access other users' conversations" == err.detail
    assert err.code is None


def test_empty_body_says_so() -> None:
    """An empty body (PostHog's bare 400/404) still gives a readable message."""
    err = error_from_response(404, {}, b"", method="GET", path="/p/")
    assert "404 Not Found on GET /p/: (no detail in the response body)" == str(err)
    assert err.body is None


def test_non_json_body_is_kept_as_text() -> None:
    """An HTML error page from a proxy is kept, shortened, as the detail."""
    err = error_from_response(502, {}, b"<html>Bad gateway</html>")
    assert "<html>Bad gateway</html>" == err.detail
    assert "<html>Bad gateway</html>" == err.body


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("queue_full", "queue_full"),  # the queue's 409
        ("Queue full", None),  # words, not a code
        ("QUEUE_FULL", None),
        ("", None),
        ("x" * 101, None),
        (3, None),
        ("quéue", None),
    ],
)
def test_an_error_token_beside_a_detail_is_the_code(error: object, code: str | None) -> None:
    body = json.dumps({"error": error, "detail": "Only two messages can be queued at a time."})
    err = error_from_response(409, {}, body.encode(), method="POST", path="/q/")
    assert isinstance(err, aposthog.ConflictError)
    assert (err.code, err.detail) == (code, "Only two messages can be queued at a time.")
    if code:
        assert "409 Conflict [queue_full] on POST /q/: Only two messages" in str(err)


def test_an_error_token_of_100_characters_is_still_a_code() -> None:
    body = json.dumps({"error": "x" * 100, "detail": "d"}).encode()
    assert "x" * 100 == error_from_response(409, {}, body).code


def test_plain_serializer_error_map() -> None:
    """A bare DRF field-error map names its first field."""
    err = error_from_response(400, {}, b'{"name": ["This field is required."]}')
    assert ("name", "This field is required.") == (err.attr, err.detail)


@pytest.mark.parametrize(
    ("header", "detail", "wait"),
    [
        (None, "Expected available in 12 seconds.", 12.0),  # PostHog's own 429
        ("20", "Expected available in 12 seconds.", 20.0),
        ("3", "Slow down.", 3.0),
        (None, "Slow down.", None),
        # A header that says less than the detail (a proxy's, a skewed clock's date): the
        # retries went at once into the same throttle, with no jitter, and the error's
        # `retry_after` told the caller to come back now.
        ("0", "Expected available in 3 seconds.", 3.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "Expected available in 3 seconds.", 3.0),
        ("0.001", "Expected available in 3 seconds.", 3.0),
    ],
)
def test_rate_limit_wait_is_the_longer_of_header_and_detail(
    header: str | None, detail: str, wait: float | None
) -> None:
    """A 429's wait: its Retry-After or its detail's, the longer where both say one."""
    headers = {} if header is None else {"Retry-After": header}
    err = error_from_response(429, headers, _envelope("throttled_error", "throttled", detail))
    assert isinstance(err, aposthog.RateLimitError)
    assert wait == err.retry_after


def test_errors_pickle() -> None:
    """Errors survive pickling (process pools send them between processes)."""
    err = error_from_response(429, {}, _envelope("throttled_error", "throttled", "x"))
    copy = pickle.loads(pickle.dumps(err))
    assert type(err) is type(copy)
    assert str(err) == str(copy)


def test_timeout_error_is_a_builtin_timeout_and_a_connection_error() -> None:
    """APITimeoutError is caught by `except TimeoutError` and `except APIConnectionError`."""
    err = aposthog.APITimeoutError("slow", method="GET", path="/x/")
    assert isinstance(err, TimeoutError)
    assert isinstance(err, aposthog.APIConnectionError)
    assert "slow (GET /x/)" == str(err)


@given(status=st.integers(400, 599), body=st.binary(max_size=200))
def test_any_body_gives_a_one_line_message(status: int, body: bytes) -> None:
    """Whatever the server sends, the error builds and its message is a single line."""
    err = error_from_response(status, {}, body)
    assert "\n" not in str(err)
    assert "\r" not in str(err)
    assert str(status) in str(err)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "template",
    [
        b'{"detail": %s}',
        b'{"type": %s, "code": %s, "detail": "x", "attr": %s}',
        b'{"error": %s}',
        b'{"name": [%s]}',
        b"[%s]",
    ],
)
def test_a_deeply_nested_body_gives_a_typed_bounded_error(template: bytes) -> None:
    """JSON nested ~1000 deep (parsed by orjson) is not json.dumps-able: still typed, bounded."""
    deep = _nested(1000)
    body = template % ((deep,) * template.count(b"%s"))
    err = error_from_response(400, {}, body, method="GET", path="/api/x/")
    assert isinstance(err, aposthog.BadRequestError)
    assert len(str(err)) < 8 * 1024
    assert len(repr(err)) < 8 * 1024


def test_detail_too_deep_for_json_dumps_is_rendered_depth_limited() -> None:
    """A value json.dumps cannot encode is shown depth- and size-limited, not raised."""
    from aposthog._errors import _text

    value: list[object] = []
    for _ in range(200_000):  # beyond the encoder's recursion limit on every Python
        value = [value, "message"]
    text = _text({"errors": value})
    assert text is not None
    assert text.startswith('{"errors": [[[')
    assert "…" in text
    assert len(text) <= 2000
    wide: list[object] = [list(range(100_000))]
    for _ in range(200_000):
        wide = [wide]
    text = _text(wide)
    assert text is not None
    assert len(text) <= 2000


def test_an_error_token_does_not_replace_an_explicit_code() -> None:
    """An envelope's own `code` wins over a code-like `error` beside it."""
    body = b'{"code": "conflict", "error": "queue_full", "detail": "Busy."}'
    err = error_from_response(409, {}, body)
    assert ("conflict", "Busy.") == (err.code, err.detail)


def test_an_envelope_without_a_detail_is_not_read_as_a_field_map() -> None:
    """{"type", "code", "detail": null} keeps its fields; its first key is not an `attr`."""
    body = b'{"type": "server_error", "code": "conflict", "detail": null, "attr": null}'
    err = error_from_response(409, {}, body)
    assert ("server_error", "conflict", None, None) == (err.type, err.code, err.detail, err.attr)
    assert str(err).endswith(": (no detail in the response body)")


@pytest.mark.parametrize("body", [b"{}", b"[]", b"null", b" \r\n\t "])
def test_empty_and_blank_bodies_give_a_typed_error_without_detail(body: bytes) -> None:
    """An empty object or list, `null`, or only whitespace: no detail, no crash."""
    err = error_from_response(400, {}, body)
    assert isinstance(err, aposthog.BadRequestError)
    assert (None, None, None) == (err.detail, err.attr, err.code)
    assert "400 Bad Request: (no detail in the response body)" == str(err)


def test_a_list_body_gives_its_first_message() -> None:
    """DRF answers `raise ValidationError("…")` with a bare list of messages."""
    err = error_from_response(400, {}, b'["Destination test failed.", "second"]')
    assert "Destination test failed." == err.detail
    assert ["Destination test failed.", "second"] == err.body


def test_a_text_body_is_trimmed_and_its_detail_cut_to_500_characters() -> None:
    """A proxy's HTML page: surrounding whitespace dropped, the detail is its first 500."""
    page = "<html>" + "z" * 1000 + "</html>"
    err = error_from_response(502, {}, f"\n  {page}\r\n".encode())
    assert page == err.body
    assert page[:500] == err.detail
    short = error_from_response(502, {}, b" Bad gateway\n")
    assert ("Bad gateway", "Bad gateway") == (short.detail, short.body)


def test_nested_messages_are_one_line_of_json_with_their_own_characters() -> None:
    """A list of messages in `detail` reads as JSON, non-ASCII kept as it is."""
    err = error_from_response(400, {}, '{"detail": ["Champ réquis.", "b"]}'.encode())
    assert '["Champ réquis.", "b"]' == err.detail


def test_a_too_deep_value_beside_a_long_text_stays_within_the_budget() -> None:
    """The depth-limited rendering also cuts a long string it meets on the way."""
    from aposthog._errors import _text

    deep: list[object] = []
    for _ in range(200_000):  # beyond the encoder's recursion limit on every Python
        deep = [deep]
    text = _text({"errors": ["x" * 10_000, deep]})
    assert text is not None
    assert text.startswith('{"errors": ["' + "x" * 100)
    # The budget is spent on the text; only the closing brackets may follow it.
    assert len(text) <= 2000 + 4


def test_an_unknown_status_reads_as_error() -> None:
    err = error_from_response(599, {}, b"")
    assert type(err) is aposthog.InternalServerError
    assert "599 Error: (no detail in the response body)" == str(err)


def test_a_connection_error_without_a_request_is_its_message() -> None:
    err = aposthog.APIConnectionError("connection reset")
    assert "connection reset" == str(err)
    assert err.reached_server is True


def test_a_pickled_error_keeps_every_field() -> None:
    """retry_after, body, method and path cross a process boundary too."""
    body = _envelope("throttled_error", "throttled", "Expected available in 7 seconds.", "x")
    err = error_from_response(
        429, {"Retry-After": "3"}, body, method="POST", path="/api/environments/1/x/"
    )
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, aposthog.RateLimitError)
    assert vars(err) == vars(copy)
    assert 7.0 == copy.retry_after  # the longer of header and detail
    assert json.loads(body) == copy.body
    assert ("POST", "/api/environments/1/x/") == (copy.method, copy.path)


def test_a_5xx_error_carries_the_wait_its_retry_after_names() -> None:
    """A 503's `Retry-After` (seconds or an HTTP date) is on the error; without one, None."""
    body = b'{"type":"server_error","detail":"Down for maintenance."}'
    err = error_from_response(503, {"retry-after": "120"}, body, method="GET", path="/a/")
    assert isinstance(err, aposthog.InternalServerError)
    assert 120.0 == err.retry_after
    dated = error_from_response(
        503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, body, method="GET", path="/a/"
    )
    assert isinstance(dated, aposthog.InternalServerError)
    assert 0.0 == dated.retry_after  # a date in the past: come back now
    bare = error_from_response(500, {}, body, method="GET", path="/a/")
    assert isinstance(bare, aposthog.InternalServerError)
    assert bare.retry_after is None
    copy = pickle.loads(pickle.dumps(err))
    assert 120.0 == copy.retry_after


def _every_error() -> list[aposthog.PostHogError]:
    return [
        aposthog.ConfigurationError("no key"),
        aposthog.ClientStateError("closed"),
        aposthog.APIConnectionError("reset", method="GET", path="/a/", reached_server=False),
        aposthog.APITimeoutError("slow", method="GET", path="/a/"),
        aposthog.IncompleteStreamError("cut", method="POST", path="/c/"),
        error_from_response(404, {}, b'{"detail": "Not found."}', method="GET", path="/a/"),
        aposthog.RateLimitError(status=429, retry_after=2.5, detail="wait"),
        aposthog.InternalServerError(status=503, retry_after=30.0, detail="maintenance"),
        aposthog.ResponseDecodeError("bad", paths=("$.id",), body={"id": 1}, path="/a/"),
        aposthog.ResponseTooLargeError("too large", limit=1024, path="/a/"),
    ]


@pytest.mark.parametrize("err", _every_error(), ids=lambda e: type(e).__name__)
def test_every_error_crosses_a_process_boundary_whole(err: aposthog.PostHogError) -> None:
    """Keyword-only constructors and notes (`add_note`) survive pickling, for every class."""
    # What add_note() sets (Python 3.11+). By name, here and below: mypy checks for Python
    # 3.10, whose BaseException has no `__notes__`.
    setattr(err, "__notes__", ["while syncing exports"])  # noqa: B010
    copy = pickle.loads(pickle.dumps(err))
    assert type(err) is type(copy)
    assert vars(err) == vars(copy)
    assert err.args == copy.args
    assert str(err) == str(copy)
    assert repr(err) == repr(copy)
    assert ["while syncing exports"] == getattr(copy, "__notes__")  # noqa: B009


def test_name_request_names_an_unnamed_error_and_leaves_a_named_one() -> None:
    """An error raised before its request was sent gets its method and path, message too."""
    err = aposthog.RateLimitError(status=429, detail="wait", retry_after=5.0)
    name_request(err, "GET", "/api/environments/1/x/")
    assert ("GET", "/api/environments/1/x/") == (err.method, err.path)
    assert "429 Too Many Requests on GET /api/environments/1/x/: wait" == str(err)
    assert (str(err),) == err.args
    named = error_from_response(404, {}, b"", method="DELETE", path="/a/")
    name_request(named, "GET", "/b/")
    assert ("DELETE", "/a/") == (named.method, named.path)
    assert "on DELETE /a/" in named.args[0]


def test_response_too_large_error_keeps_its_limit_and_path() -> None:
    err = aposthog.ResponseTooLargeError("the body passed 1024 bytes", limit=1024, path="/x/")
    assert isinstance(err, aposthog.ResponseDecodeError)
    assert (1024, "/x/", None, ()) == (err.limit, err.path, err.body, err.paths)
    assert "the body passed 1024 bytes" == str(err)


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())), st.integers(1, 50))
def test_a_quoted_header_is_one_line_of_writable_text_within_its_limit(
    value: str, limit: int
) -> None:
    """
    Whatever a header holds (aiohttp keeps bytes that are not UTF-8 as lone surrogates),
    quoted in a message it encodes as UTF-8, has no control character, and is cut.
    """
    shown = header_text(value, limit)
    shown.encode("utf-8")
    assert not [c for c in shown if ord(c) < 0x20 or ord(c) == 0x7F]
    assert len(value) <= limit or shown.endswith("…")
    if value.isprintable() and len(value) <= limit:
        assert value == shown


def test_a_quoted_header_shows_what_it_replaced() -> None:
    assert "a\ufffd\\x1b[2J\\x0abc…" == header_text("a\udcff\x1b[2J\nbcd", 9)


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "invalid_choice"), (429, "too_many_concurrent_backfills")],
)
def test_an_error_body_with_a_utf8_bom_is_read_as_json(status: int, code: str) -> None:
    """
    A 2xx body that starts with a UTF-8 byte order mark is parsed as JSON (`_json.loads`
    takes bytes, as `json.loads` does, and skips it), but an error body is first decoded
    as plain UTF-8, leaving U+FEFF in front, which `json.loads` refuses on a str: the
    whole envelope becomes the detail, and `type`, `code` and `attr` are lost. A 429's
    `too_many_concurrent_backfills` code (a lasting refusal, never retried) is then
    missed, and the call retried as if it were a throttle.
    """
    body = b"\xef\xbb\xbf" + _envelope("validation_error", code, "Nope.", "interval")
    err = error_from_response(status, {}, body)
    assert code == err.code
    assert "Nope." == err.detail
    assert "interval" == err.attr


def test_a_message_quoting_server_text_acts_on_no_terminal() -> None:
    """
    Control characters in PostHog's text are shown escaped in `str(error)` (ESC, BEL,
    C1's CSI): a log line or terminal showing it changes no colour or title. Every line
    break `splitlines()` knows becomes a space; `.detail` keeps the text as sent.
    """
    detail = "a\x1b]0;title\x07b\x9b31mc\u2028d\x0be\x85f\tg"
    error = error_from_response(400, {}, json.dumps({"detail": detail}).encode())
    text = str(error)
    assert "a\\x1b]0;title\\x07b\\x9b31mc d e f\tg" in text
    assert 1 == len(text.splitlines())
    assert error.detail == detail
