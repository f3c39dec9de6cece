"""Configuration: arguments, then environment variables, then defaults."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import yarl
from hypothesis import given
from hypothesis import strategies as st

import aposthog
from aposthog._config import DEFAULT_MAX_RESPONSE_SIZE, resolve_config, resolve_host

from .test_key_secrecy import printed_with_locals


def test_defaults_when_only_the_key_is_given() -> None:
    """us.posthog.com and @current by default."""
    config = resolve_config(api_key="phx_k", environ={})
    assert "https://us.posthog.com" == config.base_url
    assert "@current" == config.project_id
    assert "/api/environments/@current" == config.api_prefix


def test_environment_fills_what_arguments_leave_out() -> None:
    """POSTHOG_* variables are read when arguments are absent."""
    env = {
        "POSTHOG_PERSONAL_API_KEY": "phx_env",
        "POSTHOG_HOST": "eu",
        "POSTHOG_PROJECT_ID": "42",
    }
    config = resolve_config(environ=env)
    assert ("phx_env", "https://eu.posthog.com", "42") == (
        config.api_key,
        config.base_url,
        config.project_id,
    )


def test_arguments_win_over_the_environment() -> None:
    """An explicit argument beats its environment variable."""
    env = {"POSTHOG_PERSONAL_API_KEY": "phx_env", "POSTHOG_HOST": "eu", "POSTHOG_PROJECT_ID": "1"}
    config = resolve_config(api_key="phx_arg", host="us", project_id=7, environ=env)
    assert ("phx_arg", "https://us.posthog.com", "7") == (
        config.api_key,
        config.base_url,
        config.project_id,
    )


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constructing a client without a key fails at once and says what to set."""
    monkeypatch.delenv("POSTHOG_PERSONAL_API_KEY", raising=False)
    with pytest.raises(aposthog.ConfigurationError, match="POSTHOG_PERSONAL_API_KEY"):
        aposthog.Client()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("us", "https://us.posthog.com"),
        ("EU", "https://eu.posthog.com"),
        ("https://posthog.example.com/", "https://posthog.example.com"),
        ("HTTPS://posthog.example.com", "https://posthog.example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.8.9.10", "http://127.8.9.10"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("https://example.com/posthog/", "https://example.com/posthog"),
    ],
)
def test_hosts(host: str, expected: str) -> None:
    """Aliases and URLs become a base URL without a trailing slash."""
    assert expected == resolve_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "ftp://x",
        "https://user:pw@x",
        "https://phx_key@x",  # a user name alone is a credential too
        "https://x/?a=1",
        "https://x/#f",
        "http://",
        "https://x:0",
    ],
)
def test_bad_hosts(host: str) -> None:
    """Unusable hosts are configuration errors."""
    with pytest.raises(aposthog.ConfigurationError):
        resolve_host(host)


def test_key_is_not_in_the_repr_and_bad_keys_are_not_echoed() -> None:
    """The key never shows in the config's repr or in a configuration error."""
    config = resolve_config(api_key="phx_secret_value", environ={})
    assert "phx_secret_value" not in repr(config)
    with pytest.raises(aposthog.ConfigurationError) as info:
        resolve_config(api_key="phx_secret\nInjected: 1", environ={})
    assert "phx_secret" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrency": 0},
        {"max_concurrency": True},
        {"max_concurrency": "8"},
        {"timeout": 0},
        {"timeout": -1},
        {"connect_timeout": float("nan")},
        {"project_id": ""},
        {"project_id": 1.5},
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, object]) -> None:
    """Plainly wrong settings are configuration errors at construction."""
    with pytest.raises(aposthog.ConfigurationError):
        resolve_config(api_key="k", environ={}, **kwargs)  # type: ignore[arg-type]


def assert_names(exc: Exception, name: str) -> None:
    """The message of a refusal names the argument."""
    assert name in str(exc)


# ------------------------------------------------------------------ hosts


@pytest.mark.parametrize(
    "host",
    [
        "javascript:alert(1)",
        "http://h:99999",
        "http://h:abc",
        "http://h:0",
        "https://posthog.example.com\r\nX-Injected: 1",
        "https://post hog.example.com",
        "http://[::1",
        "uk",
        "posthog.example.com",
        "file:///etc/passwd",
        "https://",
        "https://:8000",
        "https://x\x00y",
    ],
)
def test_hostile_hosts_are_refused_at_construction(host: str) -> None:
    """Each of these once built a client that failed with a raw exception later."""
    with pytest.raises(aposthog.ConfigurationError, match=r"^host"):
        aposthog.Client(api_key="phx_k", host=host)


@pytest.mark.parametrize("host", ["uk", "posthog.example.com", "javascript:alert(1)"])
def test_a_host_without_a_scheme_lists_the_accepted_forms(host: str) -> None:
    """A bare word is not guessed into https://uk: the error says what is accepted."""
    with pytest.raises(aposthog.ConfigurationError) as info:
        resolve_host(host)
    message = str(info.value)
    assert '"us"' in message
    assert '"eu"' in message
    assert "http(s) URL" in message
    assert repr(host) in message


@pytest.mark.parametrize("host", [None, 42, b"https://x", ["us"], 1.5])
def test_a_host_that_is_not_a_string_is_refused(host: object) -> None:
    """No AttributeError or TypeError from inside the URL parser."""
    with pytest.raises(aposthog.ConfigurationError, match="host must be a str"):
        resolve_host(host)
    if host is not None:  # None means "not given"
        with pytest.raises(aposthog.ConfigurationError, match="host must be a str"):
            aposthog.Client(api_key="phx_k", host=host)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "host", ["http://192.0.2.2", "http://posthog.internal:8000", "http://[2001:db8::1]/"]
)
def test_plain_http_to_a_remote_host_needs_the_opt_in(host: str) -> None:
    """The key would travel in cleartext: refused, saying why and naming the opt-in."""
    with pytest.raises(aposthog.ConfigurationError) as info:
        aposthog.Client(api_key="phx_k", host=host)
    message = str(info.value)
    assert "allow_insecure_http=True" in message
    assert "cleartext" in message
    client = aposthog.Client(api_key="phx_k", host=host, allow_insecure_http=True)
    assert client.base_url == host.rstrip("/")
    assert client.config.allow_insecure_http is True


@pytest.mark.parametrize("host", ["HTTP://192.0.2.2", "Http://posthog.internal:8000"])
def test_an_uppercase_http_scheme_still_needs_the_opt_in(host: str) -> None:
    """The cleartext check reads the scheme case-insensitively, as the URL parser does."""
    with pytest.raises(aposthog.ConfigurationError, match="cleartext"):
        resolve_host(host)
    assert resolve_host(host, allow_insecure_http=True).startswith("http://")


def test_a_long_host_is_shown_shortened_in_the_refusal() -> None:
    host = "h" * 100_000
    with pytest.raises(aposthog.ConfigurationError) as info:
        resolve_host(host)
    message = str(info.value)
    assert repr("h" * 200 + "…") in message
    assert len(message) < 1000


def test_the_opt_in_applies_to_a_host_from_the_environment() -> None:
    env = {"POSTHOG_HOST": "http://10.0.0.1:8000/"}
    config = resolve_config(api_key="k", allow_insecure_http=True, environ=env)
    assert "http://10.0.0.1:8000" == config.base_url


def test_an_empty_project_id_variable_means_unset() -> None:
    """POSTHOG_PROJECT_ID= (set but empty) falls back to the default."""
    config = resolve_config(api_key="k", environ={"POSTHOG_PROJECT_ID": ""})
    assert ("https://us.posthog.com", "@current") == (config.base_url, config.project_id)


def test_an_empty_host_variable_is_refused_not_taken_for_cloud() -> None:
    """
    POSTHOG_HOST= (a template that did not expand) is refused by name: the default would
    send a self-hosted instance's key to PostHog Cloud. A `host` argument still wins.
    """
    with pytest.raises(aposthog.ConfigurationError, match=r"POSTHOG_HOST.*empty") as info:
        resolve_config(api_key="phx_secret_value", environ={"POSTHOG_HOST": ""})
    assert "phx_secret_value" not in str(info.value)
    config = resolve_config(api_key="k", host="eu", environ={"POSTHOG_HOST": ""})
    assert "https://eu.posthog.com" == config.base_url


def test_allow_insecure_http_must_be_a_bool() -> None:
    with pytest.raises(aposthog.ConfigurationError, match="allow_insecure_http"):
        resolve_config(api_key="k", allow_insecure_http="yes", environ={})  # type: ignore[arg-type]


def test_a_bad_host_from_the_environment_names_the_variable() -> None:
    with pytest.raises(aposthog.ConfigurationError, match="POSTHOG_HOST"):
        resolve_config(api_key="k", environ={"POSTHOG_HOST": "uk"})
    with pytest.raises(aposthog.ConfigurationError, match="POSTHOG_HOST"):
        resolve_config(api_key="k", environ={"POSTHOG_HOST": "http://10.0.0.1"})


@given(st.text(max_size=60))
def test_any_host_text_is_a_base_url_or_a_configuration_error(text: str) -> None:
    """Whatever the text, the outcome is an http(s) base URL or a ConfigurationError."""
    try:
        base = resolve_host(text, allow_insecure_http=True)
    except aposthog.ConfigurationError:
        return
    assert base.startswith(("https://", "http://"))
    assert base.isprintable()
    assert not any(ch.isspace() for ch in base)


@given(
    st.builds(
        "{}://{}{}".format,
        st.sampled_from(["http", "https", "HTTP", "ftp", "javascript", ""]),
        st.text(st.characters(codec="utf-8"), max_size=30),
        st.sampled_from(["", "/", ":8000", ":99999", ":abc", "/p/", "?q=1", "#f", "]"]),
    )
)
def test_any_url_like_host_is_a_base_url_or_a_configuration_error(text: str) -> None:
    """
    And a base URL the configuration accepts is one aiohttp's URL parser (yarl) reads
    as well, to the same host: its requests cannot fail on the URL, nor go elsewhere.
    """
    try:
        base = resolve_host(text, allow_insecure_http=True)
    except aposthog.ConfigurationError:
        return
    assert base.startswith(("https://", "http://"))
    url = yarl.URL(base + "/api/")
    expected = urllib.parse.urlsplit(base).hostname
    assert expected is not None
    assert url.host is not None
    assert url.raw_host == expected.encode("idna").decode() or url.host == expected


@pytest.mark.parametrize(
    "host",
    [
        "http://[::1]evil.example:8000",  # urllib: host ::1 (loopback); yarl: "Invalid IPv6 URL"
        "http://127.0.0.1[::1]:8000",
        "http://[::1]]:8000",
        "https://posthog..example.com",  # an empty label: IDNA refuses it
        "https://" + "a" * 64 + ".example.com",  # a label over 63 characters
        "http://[::1%25lo]:8000",  # a zone: looked up as a name, never reached
        "http://[fe80::1%25eth0]:8000",
    ],
)
def test_a_host_no_request_can_be_sent_to_is_refused_at_construction(host: str) -> None:
    """
    Configuration is checked in full at construction (CHANGELOG: an unclosed `[::1` is
    refused), so a host that urllib parses but that aiohttp cannot send a request to is
    a `ConfigurationError` here, not a `ValueError` or `UnicodeError` from inside aiohttp
    on every call.
    """
    with pytest.raises(aposthog.ConfigurationError):
        resolve_host(host)


# ------------------------------------------------------------------ the key

SENTINEL = "phx_SENTINEL_never_shown"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "   ",
        f"{SENTINEL}\r\nX-Injected: 1",
        f"{SENTINEL} extra",
        f"{SENTINEL}\x00",
        f"{SENTINEL}é",
    ],
)
def test_bad_keys_are_refused_without_being_echoed(key: str) -> None:
    with pytest.raises(aposthog.ConfigurationError, match="api_key") as info:
        resolve_config(api_key=key, environ={})
    assert SENTINEL not in str(info.value)
    assert SENTINEL not in repr(info.value)


@pytest.mark.parametrize("key", [42, b"phx_SENTINEL_never_shown", ["phx"], 1.5, True])
def test_a_key_that_is_not_a_string_is_refused(key: object) -> None:
    with pytest.raises(aposthog.ConfigurationError, match="api_key must be a str") as info:
        aposthog.Client(api_key=key)  # type: ignore[arg-type]
    assert SENTINEL not in str(info.value)


_KEYS = {"host": SENTINEL, "key": f"{SENTINEL}\nX-Injected: 1"}


@pytest.mark.parametrize("source", ["argument", "environment"])
@pytest.mark.parametrize("bad", ["host", "key"])
def test_configuration_errors_print_no_key_with_the_traceback_locals(
    source: str, bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused key, or a bad host after a good one: no frame shows the key in clear."""
    # The keys stay globals: a local of this frame (printed too) would show them.
    host = "ftp://example.com" if bad == "host" else None
    monkeypatch.setenv("POSTHOG_PERSONAL_API_KEY", _KEYS[bad])
    with pytest.raises(aposthog.ConfigurationError) as info:
        if source == "argument":
            aposthog.Client(api_key=_KEYS[bad], host=host)
        else:
            aposthog.Client(host=host)
    text = printed_with_locals(info.value)
    assert ("_api_key" if bad == "key" else "resolve_config") in text  # frames that held it
    assert "<aposthog.Client (not configured)>" in text  # its repr works half-built
    assert SENTINEL not in text


def test_a_key_is_trimmed_from_an_argument_or_the_environment() -> None:
    """A key read from a file often ends in a newline; it is sent without it."""
    assert "phx_k" == resolve_config(api_key="  phx_k\n", environ={}).api_key
    env = {"POSTHOG_PERSONAL_API_KEY": "phx_env\n"}
    assert "phx_env" == resolve_config(environ=env).api_key


def test_the_resolved_key_is_redacted_in_reprs() -> None:
    config = resolve_config(api_key=SENTINEL, environ={})
    assert config.api_key == SENTINEL
    assert SENTINEL not in repr(config.api_key)
    assert SENTINEL not in repr(config)


def test_a_bad_key_from_the_environment_names_the_variable() -> None:
    env = {"POSTHOG_PERSONAL_API_KEY": f"{SENTINEL}\nX: 1"}
    with pytest.raises(aposthog.ConfigurationError, match="POSTHOG_PERSONAL_API_KEY") as info:
        resolve_config(environ=env)
    assert SENTINEL not in str(info.value)
    with pytest.raises(aposthog.ConfigurationError, match="POSTHOG_PERSONAL_API_KEY"):
        resolve_config(environ={"POSTHOG_PERSONAL_API_KEY": ""})


@given(st.text(max_size=40))
def test_no_key_is_ever_echoed(text: str) -> None:
    """A key is accepted as given (trimmed) or refused without its text in the message."""
    key = f"phx_{text}_SECRET"
    try:
        config = resolve_config(api_key=key, environ={})
    except aposthog.ConfigurationError as exc:
        message = str(exc)
    else:
        message = ""
        assert config.api_key == key.strip()
        assert "_SECRET" not in repr(config)
    assert "_SECRET" not in message


# ------------------------------------------------------------------ project id


@pytest.mark.parametrize(
    ("project_id", "expected"),
    [(7, "7"), ("12345", "12345"), (" 42 ", "42"), ("@current", "@current")],
)
def test_good_project_ids(project_id: object, expected: str) -> None:
    config = resolve_config(api_key="k", project_id=project_id, environ={})  # type: ignore[arg-type]
    assert expected == config.project_id
    assert f"/api/environments/{expected}" == config.api_prefix


@pytest.mark.parametrize(
    "project_id",
    [
        ".",
        "..",
        "../customer_profile_configs",
        "a/b",
        "abc",
        "-1",
        "0",
        0,
        -5,
        "1.5",
        "\uff11\uff12",  # fullwidth digits
        "@Current",
        True,  # an int to isinstance, never project "True"
    ],
)
def test_bad_project_ids_are_refused(project_id: object) -> None:
    """'.' and '..' once climbed out of /api/environments/; now only ids are accepted."""
    with pytest.raises(aposthog.ConfigurationError, match="project_id"):
        resolve_config(api_key="k", project_id=project_id, environ={})  # type: ignore[arg-type]


def test_a_bad_project_id_from_the_environment_names_the_variable() -> None:
    with pytest.raises(aposthog.ConfigurationError, match="POSTHOG_PROJECT_ID"):
        resolve_config(api_key="k", environ={"POSTHOG_PROJECT_ID": ".."})


@given(st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.none(), st.binary()))
def test_a_project_id_is_digits_or_current(value: object) -> None:
    try:
        config = resolve_config(api_key="k", project_id=value, environ={})  # type: ignore[arg-type]
    except aposthog.ConfigurationError as exc:
        assert_names(exc, "project_id")
        return
    assert config.project_id == "@current" or (
        config.project_id.isascii() and config.project_id.isdigit()
    )


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize("name", ["timeout", "connect_timeout", "stream_idle_timeout"])
def test_an_infinite_timeout_means_no_limit(name: str) -> None:
    """inf is the same as None: no limit (never an OverflowError on the first call)."""
    config = resolve_config(api_key="k", environ={}, **{name: float("inf")})  # type: ignore[arg-type]
    assert getattr(config, name) is None


@pytest.mark.parametrize("name", ["timeout", "connect_timeout", "stream_idle_timeout"])
@pytest.mark.parametrize("value", [float("nan"), 0, -1, -float("inf"), "5", True, [1]])
def test_bad_timeouts_are_refused(name: str, value: object) -> None:
    with pytest.raises(aposthog.ConfigurationError, match=rf"^{name} "):
        aposthog.Client(api_key="k", **{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, 1.5, "3", True, None])
def test_bad_max_retries_are_refused(value: object) -> None:
    if value is None:
        assert resolve_config(api_key="k", max_retries=None, environ={}).retry.max_retries == 3
        return
    with pytest.raises(aposthog.ConfigurationError, match=r"^max_retries"):
        aposthog.Client(api_key="k", max_retries=value)  # type: ignore[arg-type]


def test_max_retries_overrides_the_policy() -> None:
    policy = aposthog.RetryPolicy(max_retries=5, initial_backoff=0.01)
    config = resolve_config(api_key="k", retry=policy, max_retries=0, environ={})
    assert (0, 0.01) == (config.retry.max_retries, config.retry.initial_backoff)
    with pytest.raises(aposthog.ConfigurationError, match=r"^retry must be"):
        resolve_config(api_key="k", retry={"max_retries": 1}, environ={})  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_with_options_checks_the_same_way() -> None:
    async with aposthog.Client(api_key="k") as ph:
        with pytest.raises(aposthog.ConfigurationError, match=r"^max_retries"):
            ph.with_options(max_retries=-1)
        with pytest.raises(aposthog.ConfigurationError, match=r"^timeout"):
            ph.with_options(timeout=float("nan"))
        assert ph.with_options(timeout=float("inf")).config.timeout is None
        with pytest.raises(aposthog.ConfigurationError, match=r"^stream_idle_timeout"):
            ph.with_options(stream_idle_timeout=-1)
        view = ph.with_options(stream_idle_timeout=float("inf"))
        assert view.config.stream_idle_timeout is None


def test_default_limits() -> None:
    """60 s a call, 10 s to connect, 60 s of stream silence, 16 requests in flight."""
    config = resolve_config(api_key="k", environ={})
    assert (60.0, 10.0, 60.0) == (
        config.timeout,
        config.connect_timeout,
        config.stream_idle_timeout,
    )
    assert (16, 3, False) == (
        config.max_concurrency,
        config.retry.max_retries,
        config.allow_insecure_http,
    )
    assert 1 == resolve_config(api_key="k", max_concurrency=1, environ={}).max_concurrency


def test_max_response_size() -> None:
    """32 MiB unless set; a positive int of bytes."""
    assert 32 * 1024 * 1024 == DEFAULT_MAX_RESPONSE_SIZE
    assert DEFAULT_MAX_RESPONSE_SIZE == resolve_config(api_key="k", environ={}).max_response_size
    config = resolve_config(api_key="k", max_response_size=1024, environ={})
    assert 1024 == config.max_response_size
    for bad in (0, -1, 1.5, "1024", True):
        with pytest.raises(aposthog.ConfigurationError, match=r"^max_response_size"):
            resolve_config(api_key="k", max_response_size=bad, environ={})  # type: ignore[arg-type]
        with pytest.raises(aposthog.ConfigurationError, match=r"^max_response_size"):
            aposthog.Client(api_key="k", max_response_size=bad)  # type: ignore[arg-type]
    assert 2048 == aposthog.Client(api_key="k", max_response_size=2048).config.max_response_size


@given(
    st.one_of(
        st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=3), st.none(), st.booleans()
    )
)
def test_max_concurrency_is_an_int_of_at_least_one(value: object) -> None:
    try:
        config = resolve_config(api_key="k", max_concurrency=value, environ={})  # type: ignore[arg-type]
    except aposthog.ConfigurationError as exc:
        assert_names(exc, "max_concurrency")
        return
    assert config.max_concurrency >= 1
    assert isinstance(value, int) or value is None


@pytest.mark.parametrize("name", ["timeout", "connect_timeout", "stream_idle_timeout"])
def test_a_timeout_too_large_for_a_float_is_no_limit_as_infinity_is(name: str) -> None:
    """
    A timeout is any positive number, `math.inf` meaning no limit; an int beyond a
    float's range (10**400, from a config file, say) is read as infinity, where it
    raised `OverflowError` (neither a `ConfigurationError` nor caught by `except
    ValueError`).
    """
    huge = resolve_config(api_key="k", environ={}, **{name: 10**400})  # type: ignore[arg-type]
    assert getattr(huge, name) is None
    infinite = resolve_config(api_key="k", environ={}, **{name: math.inf})  # type: ignore[arg-type]
    assert getattr(infinite, name) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda v: aposthog.RetryPolicy(deadline=v),
        lambda v: aposthog.RetryPolicy(max_backoff=v),
        lambda v: aposthog.Rate(1, per=v),
        lambda v: aposthog.RateLimits(margin=v),
    ],
)
def test_a_setting_that_must_be_finite_refuses_an_int_too_large_for_a_float(
    make: Callable[[object], object],
) -> None:
    """As it refuses `math.inf`: a `ValueError` saying so, never an `OverflowError`."""
    for value in (math.inf, 10**400):
        with pytest.raises(ValueError, match="got inf"):
            make(value)


_BYTES_KEY = SENTINEL.encode()


def test_a_key_given_as_bytes_is_not_printed_with_the_traceback_locals() -> None:
    """
    A key read with `Path.read_bytes()` (or from a bytes environment) is refused as not a
    str; the README promises the key never shows in a traceback printed with its frames'
    local variables, and a refused key is still the secret.
    """
    # The key stays a global: a local of this frame (printed too) would show it.
    with pytest.raises(aposthog.ConfigurationError, match="api_key must be a str") as info:
        aposthog.Client(api_key=_BYTES_KEY)  # type: ignore[arg-type]
    assert SENTINEL not in printed_with_locals(info.value)


def test_a_huge_int_project_id_is_a_configuration_error() -> None:
    """
    Every bad `project_id` is a `ConfigurationError` naming it; an int of more than 4300
    digits fails in `str(value)` with Python's own "Exceeds the limit (4300 digits) for
    integer string conversion", which names no argument.
    """
    with pytest.raises(aposthog.ConfigurationError, match="project_id"):
        resolve_config(api_key="phx_test", project_id=10**5000, environ={})


@pytest.mark.parametrize("value", [2**63, str(2**63), "9" * 5000])
def test_a_project_id_past_the_largest_id_is_refused(value: int | str) -> None:
    """Past a signed 64-bit id (as an int, or as digits), no project has it."""
    with pytest.raises(aposthog.ConfigurationError, match="project_id"):
        resolve_config(api_key="phx_test", project_id=value, environ={})


def test_the_largest_project_id_is_taken() -> None:
    config = resolve_config(api_key="phx_test", project_id=2**63 - 1, environ={})
    assert config.project_id == str(2**63 - 1)


_HOST_SECRET = "phx_hostpw_SENTINEL_7f3a9c"


@pytest.mark.parametrize(
    "host",
    [
        f"htps://user:{_HOST_SECRET}@posthog.example.com",  # a typo in the scheme
        f"https://user:{_HOST_SECRET}@posthog.example.com:0",
        f"https://user:{_HOST_SECRET}@posthog.example.com:99999",
        f"https://user:{_HOST_SECRET}/x@posthog.example.com",  # a '/' in the password
        f"https://{_HOST_SECRET}@[::1",
    ],
)
@pytest.mark.parametrize("source", ["argument", "environment"])
def test_a_refused_host_never_echoes_the_credentials_it_carries(host: str, source: str) -> None:
    """
    A host URL with user info is refused without repeating it ("must not carry
    credentials"), but a URL refused earlier for another fault (its scheme, its port,
    a '/' or '#' in the password that moves the netloc) is quoted whole, the password
    (or a key pasted as `https://phx_…@host`) with it, in the ConfigurationError and
    thus in the command line's one-line error.
    """
    with pytest.raises(aposthog.ConfigurationError) as info:
        if source == "argument":
            resolve_config(api_key="phx_key_value", host=host, environ={})
        else:
            resolve_config(api_key="phx_key_value", environ={"POSTHOG_HOST": host})
    assert _HOST_SECRET not in str(info.value)
    assert _HOST_SECRET not in repr(info.value.args)


# A personal API key pasted into the wrong variable (swapped lines in a `.env` file) or
# carried as a URL's token: a value of the key's shape is the key, wherever it was given.
_PASTED_KEY = "phx_SENTINELpasted0123456789abcdefghijklmnopq"


@pytest.mark.parametrize(
    "environ",
    [
        {"POSTHOG_HOST": _PASTED_KEY},
        {"POSTHOG_HOST": f"https://posthog.example.com/?token={_PASTED_KEY}"},
        {"POSTHOG_HOST": f"https://posthog.example.com:{_PASTED_KEY}"},
        {"POSTHOG_PROJECT_ID": _PASTED_KEY},
    ],
    ids=["host", "host-query", "host-port", "project-id"],
)
def test_a_personal_api_key_in_the_wrong_variable_is_not_echoed(environ: dict[str, str]) -> None:
    """
    The refusal names the variable (and says what it expects) but does not repeat a
    value shaped as a personal API key: a configuration error is what a deploy's log, CI
    output and an error tracker record, and the README promises that a configuration
    error "never repeats the key" (credentials in a host's user info are already left out).
    """
    with pytest.raises(aposthog.ConfigurationError) as info:
        resolve_config(api_key="phx_the_right_key_0123", environ=environ)
    (name,) = environ
    assert name in str(info.value)
    assert _PASTED_KEY not in str(info.value)
    assert _PASTED_KEY not in repr(info.value)


# ------------------------------------------------------------------ what goes on the wire

_EMPTY_PAGE = b'{"count":0,"next":null,"previous":null,"results":[]}'


@contextlib.asynccontextmanager
async def _raw_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """
    A raw loopback HTTP server (or HTTP proxy: it answers absolute-form requests alike):
    its port, and the head (request line and headers) of every request, as received.
    """
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            data = await reader.readuntil(b"\r\n\r\n")
        heads.append(data)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_EMPTY_PAGE), _EMPTY_PAGE)
        )
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()
        await server.wait_closed()


async def _head_of_first_request(host: str, heads: list[bytes], **kwargs: Any) -> bytes:
    """What the server got for a client of `host` listing profile configs; b"" if refused."""
    try:
        client = aposthog.Client(
            api_key="phx_wire_test_key",
            host=host,
            project_id=1,
            max_retries=0,
            rate_limits=None,
            **kwargs,
        )
    except aposthog.ConfigurationError as exc:
        refusal: str | None = str(exc)
    else:
        refusal = None
    if refusal is not None:
        assert "host" in refusal
        return b""
    async with client:
        await client.customer_profile_configs.list()
    assert heads, "no request reached the server"
    return heads[0]


@pytest.mark.anyio
async def test_a_non_ascii_host_is_sent_as_its_idna_name_or_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    `resolve_host` checks that a non-ASCII host name can be IDNA-encoded, then accepts it
    and keeps it in Unicode; the transport parses the request URL with
    `URL(..., encoded=True)`, which skips IDNA, so the `Host` header (and an HTTP proxy's
    request line) carries raw UTF-8 bytes: not valid HTTP (a server or proxy answers 400
    or routes by a name other than the one DNS and TLS used; for `faß.de`, Python's
    IDNA 2003 connects to `fass.de`, another domain, while the header says `faß.de`).
    Either the client refuses such a host at construction, or it sends the A-label.
    An HTTP proxy on loopback receives the request: nothing is looked up or leaves the
    machine.
    """
    for name in ("HTTPS_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with _raw_server() as (port, heads):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")  # read at construction
        head = await _head_of_first_request(
            "http://pöst.example:8000", heads, allow_insecure_http=True
        )
    if head:  # accepted: then the request's head is ASCII, the host its IDNA name
        assert head.isascii(), head
        assert b"\r\nHost: xn--pst-sna.example:8000\r\n" in head


@pytest.mark.anyio
async def test_a_path_prefix_of_the_host_is_sent_percent_encoded_or_refused() -> None:
    """
    A path prefix (a self-hosted PostHog behind `https://host/pöst`) is kept in the base
    URL as typed (`Pipeline` says it is "percent-encoded once"; it is not), and the
    transport sends `origin + prefix + /api/…` with `URL(..., encoded=True)`: the request
    line carries raw UTF-8 bytes (RFC 9112's request-target is ASCII; a server or proxy
    answers 400), and PostHog's `next` link, percent-encoded (`/p%C3%B6st/api/…`), no
    longer starts with the prefix, so a second page is refused as "not a page of the
    list". The prefix must go out as `/p%C3%B6st/`, or be refused at construction.
    """
    async with _raw_server() as (port, heads):
        head = await _head_of_first_request(f"http://127.0.0.1:{port}/pöst", heads)
    if head:
        request_line = head.split(b"\r\n", 1)[0]
        assert request_line.startswith(b"GET /p%C3%B6st/api/environments/1/"), request_line


@pytest.mark.parametrize(
    "host",
    [
        "https://999.1.1.1",  # an octet over 255
        "https://1.2.3.4.5",  # five parts
        "https://127.1",  # a legacy short form
        "https://01.2.3.4",  # a leading zero (octal to some parsers)
        "http://127.0.0.1.:8000",  # the root's dot: taken for loopback, so plain http too
    ],
)
def test_a_numeric_host_aiohttp_refuses_is_refused_at_construction(host: str) -> None:
    """
    aiohttp reads a host of digits and dots as an IPv4 address and refuses every one that
    is not a canonical dotted quad (`InvalidUrlClientError`, before connecting). The
    configuration lets these through, so the client is built and each call ends in an
    `APIConnectionError` "the URL is not one aiohttp can use" only after `max_retries`
    backoffs (three `on_wait` "retry" waits, 1-3 s, for a URL that can never work).
    As for the hosts of `test_a_host_no_request_can_be_sent_to_is_refused_at_construction`,
    the `ConfigurationError` belongs at construction, naming `host`.
    """
    with pytest.raises(aposthog.ConfigurationError, match="host"):
        resolve_host(host)


async def _list_two_pages_behind(
    prefix: str, *, routed: bool, error: type[aposthog.PostHogError]
) -> tuple[list[str], list[str]]:
    """
    Profile configs listed one a page from a loopback PostHog behind the host prefix
    `prefix`, whose `next` link is built as Django builds it (the decoded path, escaped
    again); when `routed`, a gateway answers 404 to any path not under `prefix + /api/`.
    The raw paths requested, and the ids listed before any `error`.
    """
    from aiohttp import web

    from .web_server import serve

    config: dict[str, Any] = {
        "id": "7b0c",
        "scope": "person",
        "content": {},
        "sidebar": [],
        "created_at": "2024-05-01T12:00:00Z",
        "updated_at": None,
    }
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        if routed and not request.raw_path.startswith(prefix + "/api/"):  # the gateway's route
            return web.json_response({"detail": "Not found."}, status=404)
        offset = int(request.query.get("offset", "0"))
        # Django's `request.build_absolute_uri()`: the decoded path, escaped again.
        path = urllib.parse.quote(urllib.parse.unquote(request.path), safe="/:@&+$,-_.!~*'()")
        nxt = f"http://{request.host}{path}?limit=1&offset=1" if offset == 0 else None
        body = {
            "count": 2,
            "next": nxt,
            "previous": None,
            "results": [dict(config, id=f"c{offset}")],
        }
        return web.json_response(body)

    ids: list[str] = []
    async with (
        serve(handler) as url,
        aposthog.Client(
            api_key="phx_k", host=url + prefix, project_id=1, allow_insecure_http=True
        ) as ph,
    ):
        with contextlib.suppress(error):
            async for c in ph.customer_profile_configs.list(limit=1):
                ids.append(c.id)  # noqa: PERF401 (what came before the error is kept)
    return seen, ids


@pytest.mark.anyio
@pytest.mark.parametrize(
    "prefix",
    [
        "/p%c3%b6st",  # lower-case escapes: the same path as /p%C3%B6st (RFC 3986, 6.2.2.1)
        "/ph;x=1",  # ';' and '=' stay as typed here; Django's escape_uri_path encodes them
    ],
)
async def test_a_second_page_behind_a_prefix_with_its_own_escapes_is_followed(
    prefix: str,
) -> None:
    """
    `resolve_host` keeps the escapes already in a host's path prefix as typed and sends
    the prefix so. PostHog (Django, under `SCRIPT_NAME`) builds `next` from the decoded
    path, escaped again by `escape_uri_path`: upper-case escapes, and `;`/`=` encoded.
    `same_origin_url` compares the prefix byte for byte, so the link does not "start with
    the prefix", the prefix is put before it once more, and the second page is refused
    ("'next' names '/pöst/pöst/api/…', not a page of the list"), as the CHANGELOG says
    `/pöst` was before it was encoded.
    """
    seen, ids = await _list_two_pages_behind(
        prefix, routed=False, error=aposthog.ResponseDecodeError
    )
    assert len(seen) == 2, seen
    assert urllib.parse.unquote(seen[1]).startswith(
        urllib.parse.unquote(prefix) + "/api/environments/1/"
    ), seen
    assert ids == ["c0", "c1"]


@pytest.mark.anyio
async def test_a_second_page_behind_a_prefix_with_an_escaped_slash_stays_under_it() -> None:
    """
    A host prefix `/a%2Fb` (one path segment, `a/b`: RFC 3986 does not make `%2F` the
    same as `/`) on a gateway that routes by that segment. PostHog (Django) builds `next`
    from the decoded path, escaped again, so the link reads `/a/b/api/…`. Matched to the
    prefix decoded, the link is taken as already under it and requested as PostHog wrote
    it: the second page goes to `/a/b/api/…`, a path the gateway does not route to
    PostHog (404). The configured prefix must stay as configured.
    """
    prefix = "/a%2Fb"
    # The symptom: page 2 is a 404.
    seen, ids = await _list_two_pages_behind(prefix, routed=True, error=aposthog.NotFoundError)
    assert len(seen) == 2, seen
    assert seen[1].startswith(prefix + "/api/environments/1/"), seen
    assert ids == ["c0", "c1"]


@pytest.mark.anyio
async def test_a_project_id_with_leading_zeros_names_the_same_project() -> None:
    """README: project_id is "an int, a string of digits, or '@current'". A string of digits
    with leading zeros is accepted at construction (`" 7"` is even canonicalised to `"7"`),
    but `"007"` goes on the wire as `/api/environments/007/` and every call is refused."""
    from aposthog.testing import FakePostHog

    async with FakePostHog(project_id=7) as fake, fake.client(project_id="007") as ph:
        assert ph.project_id == "7"
        await ph.customer_profile_configs.create(scope="person")
    assert len(fake.customer_profile_configs) == 1


@pytest.mark.parametrize(
    "host",
    [
        "https://posthog.example.com/a/../posthog",
        "https://posthog.example.com/./posthog",
        "https://posthog.example.com/posthog/%2e%2e/x",
        "https://posthog.example.com/posthog/%2E",
    ],
)
def test_a_path_prefix_with_dot_segments_is_refused(host: str) -> None:
    """
    Sent as written, such a prefix is read by a server or proxy that tidies paths as
    another path: PostHog's `next` links then name the tidied one, and every list failed
    after its first page (`'next' names ..., not a page of the list`).
    """
    with pytest.raises(aposthog.ConfigurationError, match=re.escape("'.' or '..' segment")):
        resolve_host(host)
    assert (
        resolve_host("https://posthog.example.com/a.b/..c") == "https://posthog.example.com/a.b/..c"
    )


def test_an_int_enum_project_id_is_its_number() -> None:
    """Before Python 3.11 an IntEnum's str() is its name: the prefix was `.../Projects.MAIN`."""
    import enum

    class Projects(enum.IntEnum):
        MAIN = 12345

    config = resolve_config(api_key="phx_k", project_id=Projects.MAIN, environ={})
    assert "/api/environments/12345" == config.api_prefix


def test_a_cloud_host_with_a_final_dot_is_still_posthog_cloud() -> None:
    """`eu.posthog.com.` names the same host: `rate_limits="auto"` knows its throttles, and
    it shares a store's budget with clients of `eu.posthog.com`."""
    from aposthog._limiter import _instance
    from aposthog._ratelimit import RateLimits, resolve_rate_limits

    dotted = resolve_host("https://eu.posthog.com.")
    assert RateLimits.posthog_cloud() == resolve_rate_limits("auto", dotted, store_given=False)
    assert _instance(dotted) == _instance("https://eu.posthog.com")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": 42},
        {"api_key": 42},
        {"project_id": 1.5},
        {"max_concurrency": "4"},
        {"max_retries": "3"},
        {"max_response_size": "1"},
        {"allow_insecure_http": "yes"},
        {"retry": "x"},
        {"rate_limits": 5},
        {"rate_limit_store": "redis://localhost"},
    ],
)
def test_an_argument_of_the_wrong_type_is_a_type_error_too(kwargs: dict[str, Any]) -> None:
    """As `timeout="5"` or `session="s"` are: `except TypeError` catches each."""
    kwargs.setdefault("api_key", "phx_k")
    with pytest.raises(aposthog.ConfigurationError) as info:
        aposthog.Client(**kwargs)
    assert isinstance(info.value, TypeError)
    assert next(iter(kwargs)) in str(info.value).replace("the PostHog API key", "api_key")


def test_a_blank_proxy_variable_is_refused_naming_it() -> None:
    """A template that did not expand: every call failed after its retries, through the
    proxy `http://  `."""
    from aposthog._proxy import Proxies

    for value in ("  ", "http://  "):
        problem = Proxies({"HTTPS_PROXY": value}).problem("https://eu.posthog.com")
        assert problem == "HTTPS_PROXY is set but blank: unset it, or name the proxy"
