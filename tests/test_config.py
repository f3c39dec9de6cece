"""Configuration: arguments, then environment variables, then defaults."""

from __future__ import annotations

import pytest

import aposthog
from aposthog._config import resolve_config, resolve_host


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
        ("posthog.example.com", "https://posthog.example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://example.com/posthog/", "https://example.com/posthog"),
    ],
)
def test_hosts(host: str, expected: str) -> None:
    """Aliases and URLs become a base URL without a trailing slash."""
    assert expected == resolve_host(host)


@pytest.mark.parametrize("host", ["", "ftp://x", "https://user:pw@x", "https://x/?a=1", "http://"])
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


def test_project_id_is_percent_encoded_in_the_prefix() -> None:
    """A project id is one path segment whatever it contains."""
    config = resolve_config(api_key="k", project_id="a/b", environ={})
    assert "/api/environments/a%2Fb" == config.api_prefix
