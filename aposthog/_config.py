"""
Client configuration: arguments first, then the environment, then defaults. Pure.

Resolution happens once, at construction, so a missing key is reported where the
client is built (naming the variable to set), not on the first request deep inside a
request handler.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Final

import attrs

from ._errors import ConfigurationError, ConfigurationTypeError
from ._http import PATH_CHARS, Secret
from ._proxy import is_loopback, non_canonical_ipv4, redact
from ._retry import RetryPolicy, as_seconds

__all__ = [
    "ACCEPTED_HOSTS",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HOST",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "DEFAULT_PROJECT_ID",
    "DEFAULT_STREAM_IDLE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "ENV_API_KEY",
    "ENV_HOST",
    "ENV_PROJECT_ID",
    "HOST_ALIASES",
    "ClientConfig",
    "hide_keys",
    "is_loopback",
    "resolve_config",
    "resolve_host",
    "retry_policy",
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
#: No PostHog answer these endpoints give comes near this; a bigger body is hostile.
DEFAULT_MAX_RESPONSE_SIZE = 32 * 1024 * 1024
ACCEPTED_HOSTS = 'use "us", "eu" or an http(s) URL such as "https://posthog.example.com"'
_NO_KEY = f"pass api_key=... or set the {ENV_API_KEY} environment variable to a personal API key"


def resolve_host(host: object, *, allow_insecure_http: bool = False, source: str = "host") -> str:
    """
    Turn `"us"`, `"eu"` or an http(s) URL into a base URL without a trailing slash.

    Anything else is a `ConfigurationError` that lists the accepted forms: a bare word
    such as `"uk"` is refused rather than guessed into `https://uk`, which would fail
    later with a name-resolution error that hides the mistake. An `http://` URL whose
    host is not loopback is refused unless `allow_insecure_http` is true, because every
    request carries the API key.

    Example:
        >>> resolve_host("eu")
        'https://eu.posthog.com'
        >>> resolve_host("https://posthog.example.com/")
        'https://posthog.example.com'
        >>> resolve_host("http://127.0.0.1:8000")
        'http://127.0.0.1:8000'
    """
    if not isinstance(host, str):
        raise ConfigurationTypeError(f"{source} must be a str, got {type(host).__name__}")
    value = host.strip()
    if not value:
        raise ConfigurationError(f"{source} must not be empty: {ACCEPTED_HOSTS}")
    if not value.isprintable() or any(ch.isspace() for ch in value):
        # A CR/LF would split a request line or header; never pass it on.
        raise ConfigurationError(f"{source} contains whitespace or control characters")
    alias = HOST_ALIASES.get(value.lower())
    if alias is not None:
        return alias
    # Refused URLs are quoted without their credentials, query or fragment (a token may
    # ride in either).
    shown = shown_value(redact(value).partition("?")[0].partition("#")[0])
    if "://" not in value:
        raise ConfigurationError(f"{source} {shown} is not accepted: {ACCEPTED_HOSTS}")
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        # The parser's words are not shown: they quote what it misread as the port,
        # which may be a password with a `/` in it.
        raise ConfigurationError(
            f"{source} {shown} is not a valid URL: its port is not a number from 0 to "
            "65535, or its brackets (an IPv6 address) do not close"
        ) from None
    if parts.scheme.lower() not in ("http", "https") or not hostname:
        raise ConfigurationError(f"{source} {shown} is not accepted: {ACCEPTED_HOSTS}")
    if port == 0:
        raise ConfigurationError(f"{source} {shown} has port 0: use a port from 1 to 65535")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"{source} must not carry credentials: pass api_key instead")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{source} {shown} must not have a query or fragment")
    problem = _host_problem(parts.netloc, hostname, port)
    if problem is not None:
        raise ConfigurationError(f"{source} {shown} is not a valid URL: {problem}")
    scheme = parts.scheme.lower()
    if scheme == "http" and not allow_insecure_http and not is_loopback(hostname):
        raise ConfigurationError(
            f"{source} {shown} is plain http to a host that is not loopback: every request "
            "would send the API key in cleartext. Use https, or pass "
            "allow_insecure_http=True for a self-hosted PostHog on a private network"
        )
    path = parts.path.rstrip("/")
    if any(urllib.parse.unquote(part) in (".", "..") for part in path.split("/")):
        # Sent as written, and read by a server or proxy that tidies paths as another
        # path: PostHog's `next` links then name the tidied one, which is not the list.
        raise ConfigurationError(
            f"{source} {shown} has a '.' or '..' segment in its path: write the path it stands for"
        )
    if _BAD_ESCAPE.search(path):
        raise ConfigurationError(
            f"{source} {shown} has a '%' in its path that is not an escape such as '%20': "
            "write a '%' itself as '%25'"
        )
    # Sent as written (a request line is ASCII): what is not ASCII or not allowed in a
    # path is escaped once, and escapes already there are kept, so PostHog's `next`
    # links, which name the same path, start with it.
    path = urllib.parse.quote(path, safe=_PATH_SAFE)
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


#: A `%` that does not start an escape.
_BAD_ESCAPE: Final = re.compile("%(?![0-9A-Fa-f]{2})")
#: What a path keeps as it is written: its own characters, and '%', whose escapes are
#: checked above.
_PATH_SAFE: Final = PATH_CHARS + "%"


def _host_problem(netloc: str, hostname: str, port: int | None) -> str | None:
    """
    What makes a URL's host one no request can be sent to, or None. The URL parser
    aiohttp uses reads some netlocs otherwise than the standard library does (text
    around a bracketed IPv6 address), and the name must be one DNS can carry.
    """
    host = f"[{hostname}]" if ":" in hostname else hostname
    expected = host if port is None else f"{host}:{port}"
    if netloc.lower() != expected.lower():
        return "its host and port are not where a URL has them"
    if ":" in hostname:
        if "%" in hostname:
            # A zone (`[fe80::1%25eth0]`): no request can name one (aiohttp looks the
            # text up as a host name).
            return "an IPv6 address with a zone ('%') is not one a request can reach"
        return None  # an IPv6 address (the parser checked it)
    if not hostname.isascii():
        # Sent as it is written (aiohttp does not encode it), so the `Host` header would
        # carry raw UTF-8; and which ASCII name it stands for depends on the IDNA
        # edition (`faß.de` is `fass.de` to Python's codec, another domain today).
        return "its host name is not ASCII: write it in its ASCII (IDNA, 'xn--…') form"
    if non_canonical_ipv4(hostname):
        # aiohttp reads such a host as an IPv4 address, and refuses every form but the
        # canonical one (`127.1`, `01.2.3.4`, `1.2.3.4.` ...) when a request is made.
        return (
            "a host of digits and dots must be an IPv4 address as four numbers from "
            "0 to 255, without leading zeros or a final dot"
        )
    # IDNA's label separators: the full stop and its ideographic and fullwidth forms.
    labels = re.split("[.\u3002\uff0e\uff61]", hostname)
    if len(labels) > 1 and not labels[-1]:
        labels.pop()  # the root's dot, `localhost.`
    name = ".".join(labels)
    if len(name) > 253:
        return "its host name is longer than 253 characters"
    if any(not 0 < len(label) <= 63 for label in labels):
        return "its host name has an empty label or one longer than 63 characters"
    if any(ch.isascii() and not (ch.isalnum() or ch in "-_.") for ch in name):
        return "its host name has a character no host name has"
    try:
        name.encode("idna")
    except UnicodeError:
        return "its host name is not one DNS can carry"
    return None


#: What a PostHog key or token looks like (`phx_…` personal API keys, `phc_…` project
#: tokens, and their kin): a value a message quotes shows none of it.
_KEY_SHAPED = re.compile(r"ph[a-z]_[A-Za-z0-9_-]{6,}")


def hide_keys(text: str) -> str:
    """`text` with anything shaped as a PostHog key (`phx_…`, `phc_…`) as `<redacted>`."""
    return _KEY_SHAPED.sub("<redacted>", text)


def shown_value(value: str) -> str:
    """
    A refused value as a message quotes it: enough to recognise it, never a whole pasted
    document, and never a key pasted into the wrong setting (a swapped `.env` line).
    """
    value = hide_keys(value)
    return repr(value if len(value) <= 200 else value[:200] + "…")


def _seconds(name: str, value: object, *, allow_none: bool = True) -> float | None:
    """
    A timeout in seconds: positive; None or `math.inf` mean no limit.

    NaN, zero, negatives, booleans and non-numbers are refused. An int beyond a float's
    range is infinity.
    """
    if value is None:
        if allow_none:
            return None
        raise ConfigurationError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationTypeError(
            f"{name} must be a number of seconds or None, got {type(value).__name__}"
        )
    value = as_seconds(value)
    if math.isnan(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    if math.isinf(value):
        if allow_none:
            return None
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)


# Kept for callers of the earlier name.
_positive = _seconds


def _count(name: str, value: object, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationTypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ConfigurationError(f"{name} must be >= {low}, got {value!r}")
    return value


def retry_policy(retry: object = None, max_retries: object = None) -> RetryPolicy:
    """A `RetryPolicy` from `retry` (None: the default one) with `max_retries` applied."""
    if retry is None:
        policy = RetryPolicy()
    elif isinstance(retry, RetryPolicy):
        policy = retry
    else:
        raise ConfigurationTypeError(
            f"retry must be an aposthog.RetryPolicy or None, got {type(retry).__name__}"
        )
    if max_retries is None:
        return policy
    return attrs.evolve(policy, max_retries=_count("max_retries", max_retries, low=0))


def _api_key(value: object, source: str) -> str:
    # Never echo the value: it is (or was meant to be) the secret.
    if not isinstance(value, str):
        raise ConfigurationTypeError(f"{source} must be a str, got {type(value).__name__}")
    key = Secret(value.strip())  # '<redacted>' in any repr: this frame's locals included
    if not key:
        raise ConfigurationError(f"{source} is empty: {_NO_KEY}")
    if unsendable_key(key):
        # A header-injection attempt or a pasted line break.
        raise ConfigurationError(
            f"the PostHog API key ({source}) contains whitespace, control or non-ASCII characters"
        )
    return key


def unsendable_key(key: str) -> bool:
    """Whether `key` (stripped) has what no header may carry: whitespace, controls, non-ASCII."""
    return not key.isascii() or not key.isprintable() or any(ch.isspace() for ch in key)


#: The largest id PostHog's database holds (a signed 64-bit integer).
_LARGEST_ID: Final = 2**63 - 1


def _project_id(value: object, source: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigurationTypeError(
            f"{source} must be an int, a string of digits or '@current', got {type(value).__name__}"
        )
    if isinstance(value, int):
        if value < 1:
            raise ConfigurationError(f"{source} must be a positive int, got {value!r}")
        if value > _LARGEST_ID:
            # (and past 4300 digits, `str()` itself would refuse it, naming nothing)
            raise ConfigurationError(
                f"{source} must be a project's id, at most {_LARGEST_ID}: got an int of "
                f"{value.bit_length()} bits"
            )
        return str(int(value))  # (an IntEnum's str() is its name before Python 3.11)
    text = value.strip()
    if text == DEFAULT_PROJECT_ID:
        return text
    # Without leading zeros: PostHog reads the id as a number ("007" is project 7), and
    # one form keeps what is keyed by it (rate-limit windows, paths matched) the same.
    digits = text.lstrip("0") if text.isascii() and text.isdigit() else ""
    if digits and len(digits) <= 19 and int(digits) <= _LARGEST_ID:
        return digits
    # "." or ".." would climb out of /api/environments/ once a proxy normalises the path.
    raise ConfigurationError(
        f"{source} must be a positive int, a string of digits or '@current', "
        f"got {shown_value(text)}"
    )


@attrs.frozen(kw_only=True)
class ClientConfig:
    """
    Everything a `Client` needs to know, resolved. The key never appears in the repr.

    Attributes:
        api_key: the personal API key (sent as `Authorization: Bearer …`).
        base_url: scheme and host (and a path prefix, for self-hosted installs behind one).
        project_id: the environment (project) id (digits), or `@current`.
        max_concurrency: in-flight requests across every task sharing the client (a
            conversation stream holds a place only while it opens or re-attaches).
        timeout: seconds for one attempt (connecting, sending, reading the answer); None = none.
        connect_timeout: seconds to open a connection.
        stream_idle_timeout: seconds a conversation stream may stay silent (keepalives count).
        retry: the retry policy.
        max_response_size: bytes of a decoded response body before a typed error.
        allow_insecure_http: whether an http:// host that is not loopback was allowed.
    """

    api_key: str = attrs.field(repr=False)
    base_url: str
    project_id: str
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    timeout: float | None = DEFAULT_TIMEOUT
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT
    stream_idle_timeout: float | None = DEFAULT_STREAM_IDLE_TIMEOUT
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE
    allow_insecure_http: bool = False

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
    max_retries: int | None = None,
    max_response_size: int | None = None,
    allow_insecure_http: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ClientConfig:
    """
    Resolve arguments, then environment variables, then defaults, into a `ClientConfig`.

    Every value is checked here, so a bad one fails where the client is built: the
    `ConfigurationError` names the argument (and the environment variable, when the
    value came from one) and never repeats the key. A timeout of None or `math.inf`
    means no limit.
    """
    env = os.environ if environ is None else environ
    env_key = env.get(ENV_API_KEY)
    env_host, env_project = env.get(ENV_HOST), env.get(ENV_PROJECT_ID)
    # No local holds the environment or the key in clear from here on: a traceback printed
    # with its frames' locals after an error below shows the key only as '<redacted>'.
    del env
    if env_key is not None:
        env_key = Secret(env_key)
    # Typed narrowly, checked as anything: callers pass values straight from config files.
    if api_key is not None:
        key = _api_key(api_key, "api_key")
    elif env_key is not None:
        key = _api_key(env_key, f"the {ENV_API_KEY} environment variable")
    else:
        raise ConfigurationError(f"no PostHog personal API key: {_NO_KEY}")

    if not isinstance(allow_insecure_http, bool):
        raise ConfigurationTypeError(
            f"allow_insecure_http must be a bool, got {type(allow_insecure_http).__name__}"
        )
    if host is not None:
        base_url = resolve_host(host, allow_insecure_http=allow_insecure_http)
    elif env_host == "":
        # Set but empty: most often a deployment's template whose value did not expand.
        # The default would send a self-hosted instance's key to PostHog Cloud.
        raise ConfigurationError(
            f"the {ENV_HOST} environment variable is set but empty: unset it for PostHog"
            " Cloud (US), or set it to 'us', 'eu' or your instance's URL"
        )
    elif env_host is not None:
        base_url = resolve_host(
            env_host,
            allow_insecure_http=allow_insecure_http,
            source=f"host (from {ENV_HOST})",
        )
    else:
        base_url = DEFAULT_HOST

    if project_id is not None:
        project = _project_id(project_id, "project_id")
    elif env_project:
        project = _project_id(env_project, f"project_id (from {ENV_PROJECT_ID})")
    else:
        project = DEFAULT_PROJECT_ID

    concurrency = _count(
        "max_concurrency",
        DEFAULT_MAX_CONCURRENCY if max_concurrency is None else max_concurrency,
        low=1,
    )
    response_size = _count(
        "max_response_size",
        DEFAULT_MAX_RESPONSE_SIZE if max_response_size is None else max_response_size,
        low=1,
    )

    return ClientConfig(
        api_key=key,
        base_url=base_url,
        project_id=project,
        max_concurrency=concurrency,
        timeout=_seconds("timeout", timeout),
        connect_timeout=_seconds("connect_timeout", connect_timeout),
        stream_idle_timeout=_seconds("stream_idle_timeout", stream_idle_timeout),
        retry=retry_policy(retry, max_retries),
        max_response_size=response_size,
        allow_insecure_http=allow_insecure_http,
    )
