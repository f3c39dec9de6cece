"""
Client configuration: arguments first, then the environment, then defaults. Pure.

Resolution happens once, at construction, so a missing key is reported where the
client is built (naming the variable to set), not on the first request deep inside a
request handler.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Mapping

import attrs

from ._errors import ConfigurationError
from ._retry import RetryPolicy

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HOST",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_PROJECT_ID",
    "DEFAULT_STREAM_IDLE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "ENV_API_KEY",
    "ENV_HOST",
    "ENV_PROJECT_ID",
    "HOST_ALIASES",
    "ClientConfig",
    "resolve_config",
    "resolve_host",
]

ENV_API_KEY = "POSTHOG_PERSONAL_API_KEY"
ENV_HOST = "POSTHOG_HOST"
ENV_PROJECT_ID = "POSTHOG_PROJECT_ID"

HOST_ALIASES: Mapping[str, str] = {
    "us": "https://us.posthog.com",
    "eu": "https://eu.posthog.com",
}
DEFAULT_HOST = HOST_ALIASES["us"]
DEFAULT_PROJECT_ID = "@current"
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
# PostHog writes a keepalive comment after 15 s of silence; three missed ones is a dead stream.
DEFAULT_STREAM_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_CONCURRENCY = 16


def resolve_host(host: str) -> str:
    """
    Turn `"us"`, `"eu"` or a URL into a base URL without a trailing slash.

    Example:
        >>> resolve_host("eu")
        'https://eu.posthog.com'
        >>> resolve_host("posthog.example.com/")
        'https://posthog.example.com'
    """
    value = host.strip()
    if not value:
        raise ConfigurationError("host must not be empty: use 'us', 'eu' or a URL")
    alias = HOST_ALIASES.get(value.lower())
    if alias is not None:
        return alias
    if "://" not in value:
        value = f"https://{value}"
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"host {host!r} is not 'us', 'eu' or an http(s) URL")
    if parts.username or parts.password:
        raise ConfigurationError("host must not carry credentials: pass api_key instead")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"host {host!r} must not have a query or fragment")
    path = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _positive(name: str, value: float | None, *, allow_none: bool = True) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ConfigurationError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value!r}")
    return float(value)


@attrs.frozen(kw_only=True)
class ClientConfig:
    """
    Everything a `Client` needs to know, resolved. The key never appears in the repr.

    Attributes:
        api_key: the personal API key (sent as `Authorization: Bearer …`).
        base_url: scheme and host (and a path prefix, for self-hosted installs behind one).
        project_id: the environment (project) id, or `@current`.
        max_concurrency: in-flight requests across every task sharing the client.
        timeout: seconds for one attempt (connecting, sending, reading the answer); None = none.
        connect_timeout: seconds to open a connection.
        stream_idle_timeout: seconds a conversation stream may stay silent (keepalives count).
        retry: the retry policy.
    """

    api_key: str = attrs.field(repr=False)
    base_url: str
    project_id: str
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    timeout: float | None = DEFAULT_TIMEOUT
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT
    stream_idle_timeout: float | None = DEFAULT_STREAM_IDLE_TIMEOUT
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)

    @property
    def api_prefix(self) -> str:
        """The path prefix of every environment-scoped endpoint, percent-encoded."""
        project = urllib.parse.quote(self.project_id, safe="@")
        return f"/api/environments/{project}"


def resolve_config(
    *,
    api_key: str | None = None,
    host: str | None = None,
    project_id: str | int | None = None,
    max_concurrency: int | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    stream_idle_timeout: float | None = DEFAULT_STREAM_IDLE_TIMEOUT,
    retry: RetryPolicy | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Resolve arguments, then environment variables, then defaults, into a `ClientConfig`."""
    env = os.environ if environ is None else environ

    key = api_key if api_key is not None else env.get(ENV_API_KEY)
    if key is None or not key.strip():
        raise ConfigurationError(
            "no PostHog personal API key: pass api_key=... or set the "
            f"{ENV_API_KEY} environment variable"
        )
    key = key.strip()
    if any(ch in key for ch in "\r\n\t ") or not key.isprintable():
        # A header-injection attempt or a pasted line break; never echo the key itself.
        raise ConfigurationError("the PostHog API key contains whitespace or control characters")

    base_url = resolve_host(host if host is not None else env.get(ENV_HOST) or DEFAULT_HOST)

    project: str | int | None = project_id
    if project is None:
        project = env.get(ENV_PROJECT_ID) or DEFAULT_PROJECT_ID
    if isinstance(project, bool) or not isinstance(project, (str, int)):
        raise ConfigurationError(f"project_id must be a string or an int, got {project!r}")
    project = str(project).strip()
    if not project:
        raise ConfigurationError("project_id must not be empty")

    # Typed as int, checked as anything: callers pass values straight from config files.
    concurrency: object = DEFAULT_MAX_CONCURRENCY if max_concurrency is None else max_concurrency
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"max_concurrency must be an int >= 1, got {concurrency!r}")

    return ClientConfig(
        api_key=key,
        base_url=base_url,
        project_id=project,
        max_concurrency=concurrency,
        timeout=_positive("timeout", timeout),
        connect_timeout=_positive("connect_timeout", connect_timeout),
        stream_idle_timeout=_positive("stream_idle_timeout", stream_idle_timeout),
        retry=RetryPolicy() if retry is None else retry,
    )
