"""
Building requests: URLs, headers, bodies. Pure: no I/O, no event loop.

Every path parameter goes through `segment()`, which percent-encodes everything that
is not unreserved, including `/`, `?`, `#` and `%`, and spells a segment of dots with
`%2E` so that no URL normaliser can collapse it: an id such as `../x` stays one
segment and can never climb out of the resource it names.
"""

from __future__ import annotations

import json
import platform
import re
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ._version import __version__

__all__ = [
    "Redactor",
    "Request",
    "Route",
    "Secret",
    "encode_json",
    "is_request_url",
    "join_path",
    "query_items",
    "same_origin_url",
    "segment",
    "user_agent",
]

QueryValue = str | int | float | bool | None
Query = Mapping[str, QueryValue | Iterable[str | int]]


def segment(value: object, *, name: str = "id") -> str:
    """
    Percent-encode one path parameter so it stays inside its segment.

    Example:
        >>> segment("../x")
        '..%2Fx'
        >>> segment("..")
        '%2E%2E'
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise TypeError(f"{name} must be a string, an int or a UUID, got {type(value).__name__}")
    text = str(value)
    if not text:
        raise ValueError(f"{name} must not be empty")
    encoded = urllib.parse.quote(text, safe="")
    if encoded.strip(".") == "":
        # "." and ".." are dot-segments (RFC 3986 §5.2.4): a client or proxy would remove them.
        encoded = "%2E" * len(encoded)
    return encoded


def join_path(prefix: str, *parts: str) -> str:
    """Join already-encoded parts under `prefix`, with PostHog's trailing slash."""
    return "/".join((prefix.rstrip("/"), *parts)) + "/"


def query_items(params: Query | None) -> tuple[tuple[str, str], ...]:
    """Flatten query parameters: None is left out, bools are `true`/`false`, lists repeat."""
    if not params:
        return ()
    items: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            items.append((key, "true" if value else "false"))
        elif isinstance(value, (str, int, float)):
            items.append((key, str(value)))
        else:
            items.extend((key, str(v)) for v in value)
    return tuple(items)


def _as_json(value: Any) -> Any:
    """What `json.dumps` does not know, that the argument checks let through: any mapping."""
    if isinstance(value, Mapping):
        return dict(value)  # a read-only mapping (a record's `extra_fields`, say)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON, as PostHog's parsers take it (any `Mapping` as an object)."""
    return json.dumps(
        body, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_as_json
    ).encode()


def user_agent(extra: str | None = None) -> str:
    """`aposthog/<version> Python/<version>` plus what the transport adds."""
    ua = f"aposthog/{__version__} Python/{platform.python_version()}"
    return f"{ua} {extra}" if extra else ua


#: Whitespace and control characters: never valid on a request line as they are.
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


def is_request_url(url: str) -> bool:
    """
    Whether `url` (a `next` link) can be requested as it is: ASCII, with no whitespace
    or control character (those would have to be percent-encoded), and parseable.

    Example:
        >>> is_request_url("https://h/api/x/?cursor=abc")
        True
        >>> is_request_url("https://h/api/a b/"), is_request_url("http://[::1/x")
        (False, False)
    """
    if not url.isascii() or _UNSAFE.search(url) is not None:
        return False
    try:
        urllib.parse.urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return True


def same_origin_url(base_url: str, url: str) -> str:
    """
    The URL to request for a `next` link: its path and query on the configured base.

    PostHog builds `next` from the request it saw, which behind a proxy can carry another
    scheme or host. Only the path and query are taken from it, so the key is only ever
    sent to the host the client was configured with.

    Raises:
        ValueError: `url` cannot be requested as it is (see `is_request_url()`).
    """
    if not is_request_url(url):
        shown = url if len(url) <= 200 else url[:200] + "..."
        raise ValueError(f"not a URL that can be requested: {shown!r}")
    parts = urllib.parse.urlsplit(url)
    base = urllib.parse.urlsplit(base_url)
    path = parts.path or "/"
    # Behind a prefix (`https://host/posthog`), PostHog's own paths (`/api/…`) are under
    # it once it is there: `/posthog/api/…`. (A prefix of `/api` is no exception:
    # `/api/environments/…` from a proxy that strips it still needs it.)
    # Compared decoded: PostHog writes the path as Django escapes it (upper-case escapes,
    # `;` and `=` escaped), which may not be how the prefix was written.
    if base.path:
        prefix = urllib.parse.unquote(base.path)
        decoded = urllib.parse.unquote(path)
        if decoded.startswith(prefix + "/api/"):
            # Under the prefix: sent with the prefix as configured (a `%2F` in it is no
            # `/` to the gateway in front), and the rest as PostHog wrote it.
            path = base.path + _after_prefix(path, prefix)
        else:
            path = base.path + path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def _after_prefix(path: str, prefix: str) -> str:
    """What follows `prefix` (decoded) in `path` (as written), from a `/` on."""
    cut = path.find("/", 1)
    while cut != -1:
        if urllib.parse.unquote(path[:cut]) == prefix:
            return path[cut:]
        cut = path.find("/", cut + 1)
    # No `/` as written where the prefix ends (an escaped one): the rest, escaped anew.
    return urllib.parse.quote(urllib.parse.unquote(path)[len(prefix) :], safe=PATH_CHARS)


#: What a URL's path holds as itself (RFC 3986: unreserved, sub-delims, ':', '@', '/').
PATH_CHARS: Final = "/:@!$&'()*+,;=-._~"


class Secret(str):
    """
    The API key, or the header value that carries it: its own text on the wire and
    wherever it is formatted as text, `'<redacted>'` in every repr. Any container holding
    it (the configuration, the client's header mappings, aiohttp's copies of them) then
    shows no key in a repr: in a traceback printed with its frames' local variables
    (`traceback`'s `capture_locals`, pytest's `--showlocals`, rich, loguru), a debugger or
    a log line of the headers.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"


class _SecretBytes(bytes):
    """A form of the key as bytes: `b'<redacted>'` in any repr, as `Secret` is."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "b'<redacted>'"


_REDACTED: Final = b"<redacted>"


class Redactor:
    """
    Takes the API key out of what a server sent back: an error answer that quotes the
    request's `Authorization` header (a proxy's or a debugging server's 401, an HTML
    page that lists the request's headers) would otherwise carry the key into the
    exception, its message and any log line or terminal that shows it.

    Every form a server may quote is replaced by `<redacted>`: the key as sent; as a
    JSON string spells it (`\\/` for `/`, `\\"` and `\\\\` escaped, `<`, `>` and `&` as
    `\\u003c` as some encoders write them); as HTML escapes it; percent-encoded (a
    `Location` that quotes it), in upper or lower case; and in a header's value, any of
    these in any case (`scrub_folded`: parsers fold some). A key shorter than 8 characters (a
    placeholder in a test, never a PostHog key) is left alone: replacing it would garble
    every message it occurs in.
    """

    __slots__ = ("_folded", "_forms")

    def __init__(self, api_key: str) -> None:
        forms: dict[bytes, None] = {}
        if len(api_key) >= 8:
            in_json = json.dumps(api_key)[1:-1]
            quoted = urllib.parse.quote(api_key, safe="")
            escaped = api_key.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            spelled = (
                api_key,
                in_json,
                in_json.replace("/", "\\/"),
                in_json.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"),
                escaped,  # as HTML escapes it (`html.escape`, without its import's cost)
                escaped.replace('"', "&quot;").replace("'", "&#x27;"),
                quoted,
                re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quoted),
            )
            for form in spelled:
                forms[_SecretBytes(form.encode("utf-8", "surrogatepass"))] = None
        self._forms = tuple(forms)
        # For `scrub_folded` alone, made on its first use (an error's, if ever).
        self._folded: tuple[re.Pattern[str], ...] | None = None

    def __repr__(self) -> str:
        return "<Redactor>"

    def scrub(self, data: bytes) -> bytes:
        """`data` without the key."""
        for form in self._forms:
            if form in data:
                data = data.replace(form, _REDACTED)
        return data

    def scrub_value(self, value: Any) -> Any:
        """
        A parsed JSON value without the key in any of its strings: `value` itself when
        none holds it, else a copy (None when too deep to write again).
        """
        if not self._forms:
            return value
        try:
            data = json.dumps(value).encode()
        except (ValueError, TypeError, RecursionError):
            return None  # kept nowhere rather than with the key
        clean = self.scrub(data)
        return value if clean is data else json.loads(clean)

    def scrub_folded(self, text: str) -> str:
        """A header's value (a Content-Type a parser lower-cased) without the key, in any case."""
        folded = self._folded
        if folded is None:
            folded = self._folded = tuple(
                re.compile(re.escape(form.decode("utf-8", "surrogatepass")), re.IGNORECASE)
                for form in self._forms
            )
        for form in folded:
            text = form.sub("<redacted>", text)
        return text

    def scrub_text(self, text: str) -> str:
        """`text` without the key."""
        if not self._forms:
            return text
        data = text.encode("utf-8", "surrogatepass")
        clean = self.scrub(data)
        return text if clean is data else clean.decode("utf-8", "surrogatepass")


@attrs.frozen(kw_only=True)
class Request:
    """
    One HTTP request, ready for the transport.

    `url` is absolute and already percent-encoded. The `Authorization` header is added by
    the transport at send time from the client's key, so a `Request` (and its repr, and
    any log line made from it) never holds the key.
    """

    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    #: Its repr gives the size alone: a body may hold a destination's secrets.
    body: bytes | None = attrs.field(default=None, repr=lambda body: _sized(body))
    headers: tuple[tuple[str, str], ...] = ()
    #: The path alone: what messages and logs show (derived from `url` when not given).
    path: str = attrs.field(
        default=attrs.Factory(lambda self: urllib.parse.urlsplit(self.url).path, takes_self=True)
    )

    def full_url(self) -> str:
        """`url` with the query `params` make: the address a page's `next` would give."""
        if not self.params:
            return self.url
        return f"{self.url}?{urllib.parse.urlencode(self.params)}"


def _sized(body: bytes | None) -> str:
    return "None" if body is None else f"<{len(body)} bytes>"


@attrs.frozen
class Route:
    """
    One PostHog endpoint, as the pipeline needs to know it.

    Each resource module lists its routes at the top, so the rule that keeps a request
    safe to retry sits next to the path it is about.

    Attributes:
        method: the HTTP method.
        path: the path under `/api/environments/<project>/`, with `{name}` for each
            parameter (filled in order by `fill()`, already percent-encoded).
        repeatable: whether the request may be sent again after it may have reached
            PostHog (a reset, a timeout, a 502/504): true when doing it twice has the
            effect of doing it once (reads, deletes, pausing, cancelling a conversation),
            false when it starts work (creating, backfilling, sending a message). A
            request PostHog certainly did not act on (refused connection, 429, 503) is
            retried either way.
        bucket: the rate-limit bucket PostHog counts it in: `"api"` (the personal API
            key's windows) for everything but conversation create, which is `"ai"` (or
            `"ai_research"` in research mode, chosen per request).
        gone_is_done: a 404 to a retry after an attempt PostHog may have acted on (see
            `repeatable`) is the request's success: a delete whose answer was lost, then
            repeated, finds the thing gone, which is what it asked for. A 404 to the first
            attempt, or after attempts PostHog certainly did not act on, is still an error.
    """

    method: str
    path: str
    repeatable: bool
    bucket: str = "api"
    gone_is_done: bool = False
    _parts: tuple[str, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_parts", tuple(self.path.strip("/").split("/")))

    def fill(self, *values: str) -> tuple[str, ...]:
        """The path's segments with each `{name}` replaced by the next of `values`."""
        if not values and "{" not in self.path:
            return self._parts
        if len(values) != self.path.count("{"):
            raise TypeError(f"{self.path} takes {self.path.count('{')} path values")
        it = iter(values)
        return tuple(next(it) if p.startswith("{") else p for p in self._parts)
