"""Request building: percent-encoded segments, queries, JSON, next URLs (no I/O)."""

from __future__ import annotations

import platform
import urllib.parse
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aposthog._http import (
    Request,
    Secret,
    encode_json,
    is_request_url,
    join_path,
    query_items,
    same_origin_url,
    segment,
    user_agent,
)
from aposthog._version import __version__


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", "abc"),
        ("../x", "..%2Fx"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a?b#c", "a%3Fb%23c"),
        ("100%", "100%25"),
        ("é", "%C3%A9"),
        (12, "12"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_segment_encoding(value: object, expected: str) -> None:
    """Path parameters are percent-encoded so they stay inside their segment."""
    assert expected == segment(value)


@given(st.text(min_size=1))
def test_any_segment_round_trips_and_has_no_slash(text: str) -> None:
    """Whatever the id, the segment has no '/', is no dot-segment, and decodes back."""
    encoded = segment(text)
    assert "/" not in encoded
    assert encoded not in (".", "..")
    assert text == urllib.parse.unquote(encoded)


@pytest.mark.parametrize("value", ["", None, True, 1.5, b"x"])
def test_bad_segments(value: object) -> None:
    """Empty or non-id values are refused before any request."""
    with pytest.raises((TypeError, ValueError)):
        segment(value)


def test_join_path_adds_posthogs_trailing_slash() -> None:
    """Paths end with a slash, as PostHog's router prefers."""
    assert "/api/environments/1/batch_exports/x/logs/" == join_path(
        "/api/environments/1", "batch_exports", "x", "logs"
    )
    # A prefix given with its own slash still gives single slashes.
    assert "/api/environments/1/x/" == join_path("/api/environments/1/", "x")


def test_query_items() -> None:
    """None is dropped, bools are lower-case words, sequences repeat the key."""
    items = query_items({"a": None, "b": True, "c": 3, "d": ["x", "y"], "e": "z"})
    assert (("b", "true"), ("c", "3"), ("d", "x"), ("d", "y"), ("e", "z")) == items


def test_query_items_keep_floats_and_falsy_values() -> None:
    """A float is one value (not iterated); 0, False and "" are sent, only None is left out."""
    items = query_items({"f": 0.5, "zero": 0, "no": False, "empty": "", "t": (1, 2)})
    assert (
        ("f", "0.5"),
        ("zero", "0"),
        ("no", "false"),
        ("empty", ""),
        ("t", "1"),
        ("t", "2"),
    ) == (items)


def test_user_agent_names_both_versions_and_the_transport() -> None:
    """The User-Agent carries aposthog's and Python's versions, plus only what is added."""
    base = f"aposthog/{__version__} Python/{platform.python_version()}"
    assert base == user_agent()
    assert base == user_agent("")
    assert f"{base} aiohttp/3.9" == user_agent("aiohttp/3.9")


def test_encode_json_is_compact_utf8() -> None:
    """Bodies are compact and keep non-ASCII text as UTF-8."""
    assert '{"a":"é","b":[1,2]}'.encode() == encode_json({"a": "é", "b": [1, 2]})
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_json({"x": float("nan")})


@pytest.mark.parametrize(
    ("base", "url", "expected"),
    [
        (
            "https://us.posthog.com",
            "https://us.posthog.com/api/x/?limit=2&offset=2",
            "https://us.posthog.com/api/x/?limit=2&offset=2",
        ),
        (
            "https://us.posthog.com",
            "http://internal:8000/api/x/?cursor=abc",
            "https://us.posthog.com/api/x/?cursor=abc",
        ),
        (
            "https://x.example/posthog",
            "https://x.example/api/x/?o=1",
            "https://x.example/posthog/api/x/?o=1",
        ),
        (
            "https://x.example/posthog",
            "https://x.example/posthog/api/x/",
            "https://x.example/posthog/api/x/",
        ),
        # A path that only starts with the prefix's text is not under the prefix.
        (
            "https://x.example/ph",
            "https://x.example/phx/api/x/",
            "https://x.example/ph/phx/api/x/",
        ),
        # No path: the root, not a query glued to the host.
        (
            "https://us.posthog.com",
            "https://us.posthog.com?cursor=1",
            "https://us.posthog.com/?cursor=1",
        ),
        # A fragment is never part of a request.
        (
            "https://us.posthog.com",
            "https://us.posthog.com/api/x/?c=1#frag",
            "https://us.posthog.com/api/x/?c=1",
        ),
    ],
)
def test_next_urls_stay_on_the_configured_host(base: str, url: str, expected: str) -> None:
    """A `next` link is followed on the configured origin, so the key never goes elsewhere."""
    assert expected == same_origin_url(base, url)


@pytest.mark.parametrize(
    "url",
    [
        "https://h/api/a\x00b/",
        "https://h/api/a\x0bb/",
        "https://h/api/a\x7fb/",
        "https://h/api/a b/",
        "https://h/api/x/?q=a b",
        "https://h/api/\u00e9/",
        "http://[::1/second",
    ],
)
def test_next_urls_that_cannot_be_requested_are_refused(url: str) -> None:
    """Control characters, whitespace, non-ASCII or an unparseable URL: never sent as is."""
    assert not is_request_url(url)
    with pytest.raises(ValueError, match="not a URL that can be requested"):
        same_origin_url("https://us.posthog.com", url)


def test_refused_next_url_message_is_bounded() -> None:
    """A huge `next` link is cut short in the error, which ends up in logs."""
    url = "https://h/api/" + "x" * 10_000 + " "
    with pytest.raises(ValueError, match="not a URL that can be requested") as info:
        same_origin_url("https://us.posthog.com", url)
    assert len(str(info.value)) < 300
    assert str(info.value).endswith("...'")


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)))
def test_printable_ascii_next_urls_are_followed(tail: str) -> None:
    """Anything urlsplit takes without whitespace, control characters or non-ASCII goes."""
    url = "https://h/" + tail
    try:
        urllib.parse.urlsplit(url)
    except ValueError:
        return
    assert is_request_url(url)
    assert same_origin_url("https://us.posthog.com", url).startswith("https://us.posthog.com/")


def test_request_repr_has_no_headers_secret() -> None:
    """A Request never holds the Authorization header: the transport adds it when sending."""
    request = Request(method="GET", url="https://us.posthog.com/api/x/")
    assert "authorization" not in repr(request).lower()
    assert "/api/x/" == request.path


def test_a_requests_full_url_is_its_url_with_its_query_encoded() -> None:
    """What a page's `next` would name: the query built from `params`, percent-encoded."""
    bare = Request(method="GET", url="https://us.posthog.com/api/x/")
    assert "https://us.posthog.com/api/x/" == bare.full_url()
    request = Request(
        method="GET", url="https://us.posthog.com/api/x/", params=(("limit", "10"), ("q", "a b&c"))
    )
    assert "https://us.posthog.com/api/x/?limit=10&q=a+b%26c" == request.full_url()


def test_a_requests_repr_gives_its_bodys_size_alone() -> None:
    """A body may hold a destination's secrets: a traceback's locals show its size."""
    request = Request(method="POST", url="https://us.posthog.com/api/x/", body=b'{"token":"t"}')
    assert "body=<13 bytes>" in repr(request)
    assert "token" not in repr(request)


def test_secret_is_its_text_but_never_its_repr() -> None:
    """The key goes on the wire as itself; any repr (and so any container's) hides it."""
    secret = Secret("phx_secret_key")
    assert "phx_secret_key" == secret
    assert "Bearer phx_secret_key" == f"Bearer {secret}"
    assert "'<redacted>'" == repr(secret)
    assert "phx_secret_key" not in repr({"Authorization": secret})
    assert "phx_secret_key" not in repr([("Authorization", secret)])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://internal:8000/api/environments/1/x/",
            "https://h.example/api/api/environments/1/x/",
        ),
        (
            "https://h.example/api/api/environments/1/x/",
            "https://h.example/api/api/environments/1/x/",
        ),
    ],
)
def test_a_prefix_of_api_is_added_once(url: str, expected: str) -> None:
    """Behind a prefix of `/api`, PostHog's `/api/environments/…` still needs it."""
    assert expected == same_origin_url("https://h.example/api", url)
