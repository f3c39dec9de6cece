"""
FakePostHog's request and reply vocabulary, modelled on what PostHog's Django REST
framework stack really sends: the drf-exceptions-hog error envelope, compact JSON,
limit/offset pages with absolute `next` URLs, and opaque cursor pages without `count`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._loopback import ServerReply, ServerRequest

if TYPE_CHECKING:
    from ._fake import FakePostHog

__all__ = [
    "FakeRequest",
    "HTTPError",
    "Route",
    "boolean_field",
    "cursor_page",
    "empty",
    "error",
    "integer_field",
    "iso",
    "json_reply",
    "now",
    "offset_page",
    "text_problem",
    "validation_error",
]


def now() -> dt.datetime:
    """The current UTC time."""
    return dt.datetime.now(dt.timezone.utc)


def iso(value: dt.datetime | None) -> str | None:
    """Render a datetime the way DRF does (`…Z` for UTC)."""
    if value is None:
        return None
    text = value.astimezone(dt.timezone.utc).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _dumps(body: Any) -> bytes:
    # DRF's JSONRenderer: compact separators, UTF-8 kept as is.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> ServerReply:
    """A JSON reply."""
    return ServerReply(
        status=status,
        body=_dumps(body),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def empty(status: int = 204) -> ServerReply:
    """A reply with no body (204 after a delete, or PostHog's bare 400/404s)."""
    return ServerReply(status=status, body=b"")


def error(
    status: int,
    type: str,
    code: str,
    detail: str,
    attr: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ServerReply:
    """An error in the drf-exceptions-hog envelope."""
    return json_reply(
        status, {"type": type, "code": code, "detail": detail, "attr": attr}, headers=headers
    )


class HTTPError(Exception):
    """Raised by a handler to answer with `reply` at once."""

    def __init__(self, reply: ServerReply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def validation_error(
    detail: str, *, attr: str | None = None, code: str = "invalid_input"
) -> HTTPError:
    """
    A 400 validation error, ready to raise, as drf-exceptions-hog renders it: a top-level
    non-field error has no `attr`, and DRF's `invalid` code reads `invalid_input`.
    """
    if attr in ("non_field_errors", "__all__"):
        attr = None
    if code == "invalid":
        code = "invalid_input"
    return HTTPError(error(400, "validation_error", code, detail, attr))


# DRF's TRUE_VALUES and FALSE_VALUES (3.17, which lowercases a string first); `1` stands
# for True and 1.0 too, `0` for False and 0.0 (equal, and equally hashed, in a set).
_TRUE: frozenset[object] = frozenset({"t", "y", "yes", "true", "on", "1", 1})
_FALSE: frozenset[object] = frozenset({"f", "n", "no", "false", "off", "0", 0})


def boolean_field(value: Any, attr: str) -> bool:
    """
    A value DRF's `BooleanField` (not nullable) reads: its true and false spellings in any
    case, numbers equal to 1 or 0 included; else the field's 400 ("This field may not be
    null." for null, "Must be a valid boolean." for anything else).
    """
    if value is None:
        raise validation_error("This field may not be null.", attr=attr, code="null")
    if isinstance(value, str):
        value = value.lower()
    if isinstance(value, (str, int, float)):  # an object or an array is never one
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    raise validation_error("Must be a valid boolean.", attr=attr, code="invalid")


_ZERO_FRACTION = re.compile(r"\.0*\s*$")


def integer_field(value: Any) -> int:
    """
    A value as DRF's `IntegerField` reads it: its text, a zero fraction (`2.0`, `"3."`)
    dropped, through `int()`, so a bool, `1.5` or `"x"` is refused (`ValueError`). Not
    null: the caller decides what null means.
    """
    return int(_ZERO_FRACTION.sub("", str(value)))


def not_found() -> HTTPError:
    """PostHog's 404, ready to raise."""
    return HTTPError(error(404, "invalid_request", "not_found", "Not found."))


_MISSING = object()


@attrs.define
class FakeRequest:
    """A parsed API request: path parameters decoded, JSON body parsed."""

    raw: ServerRequest
    method: str
    segments: tuple[str, ...]  # decoded segments after /api/environments/<project>/
    params: dict[str, str] = attrs.field(factory=dict)  # path parameters by name
    user_key: str = ""
    _json: Any = _MISSING

    @property
    def query(self) -> Sequence[tuple[str, str]]:
        """The query items, in order."""
        return self.raw.query

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The last value of a query parameter (as Django's QueryDict.get does)."""
        value = default
        for key, item in self.raw.query:
            if key == name:
                value = item
        return value

    def args(self, name: str) -> list[str]:
        """Every value of a repeated query parameter."""
        return [item for key, item in self.raw.query if key == name]

    def json(self) -> Any:
        """
        The JSON body ({} when there is none); a bad body, blanks included, raises
        PostHog's 400 parse error (DRF parses any body that has a length).
        """
        if self._json is _MISSING:
            if not self.raw.body:
                self._json = {}
            else:
                try:
                    self._json = json.loads(self.raw.body)
                except ValueError as exc:
                    raise HTTPError(
                        error(400, "invalid_request", "parse_error", f"JSON parse error - {exc}")
                    ) from None
        return self._json

    def body(self) -> dict[str, Any]:
        """The JSON body, which must be an object."""
        data = self.json()
        if not isinstance(data, dict):
            raise validation_error(
                f"Invalid data. Expected a dictionary, but got {type(data).__name__}.",
                attr="non_field_errors",
            )
        return data

    def url_with(self, **changes: str | None) -> str:
        """The absolute URL of this request with query parameters replaced (None removes)."""
        items = [(k, v) for k, v in self.raw.query if k not in changes]
        items.extend((k, v) for k, v in changes.items() if v is not None)
        query = urllib.parse.urlencode(items)
        return f"{self.raw.base_url}{self.raw.raw_path}" + (f"?{query}" if query else "")


def _positive_int(value: str | None, default: int, *, cutoff: int | None = None) -> int:
    # DRF's _positive_int(strict=True): anything unparsable or < 1 means "use the default".
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    if number <= 0:
        return default
    return min(number, cutoff) if cutoff else number


def offset_page(
    request: FakeRequest,
    items: Sequence[Any],
    *,
    page_size: int = 100,
    max_limit: int | None = None,
) -> ServerReply:
    """DRF's LimitOffsetPagination: `{"count", "next", "previous", "results"}`."""
    limit = _positive_int(request.arg("limit"), page_size, cutoff=max_limit)
    try:
        offset = max(0, int(request.arg("offset") or 0))
    except ValueError:
        offset = 0
    count = len(items)
    results = list(items[offset : offset + limit])
    next_url = (
        request.url_with(limit=str(limit), offset=str(offset + limit))
        if offset + limit < count
        else None
    )
    if offset <= 0:
        previous = None
    elif offset - limit <= 0:
        previous = request.url_with(limit=str(limit), offset=None)
    else:
        previous = request.url_with(limit=str(limit), offset=str(offset - limit))
    return json_reply(
        200, {"count": count, "next": next_url, "previous": previous, "results": results}
    )


def _encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p={position}".encode()).decode()


def cursor_page(request: FakeRequest, items: Sequence[Any], *, page_size: int) -> ServerReply:
    """DRF's CursorPagination: `{"next", "previous", "results"}`, no count, opaque cursors."""
    cursor = request.arg("cursor")
    position = 0
    if cursor:
        try:
            decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
            position = int(decoded.removeprefix("p="))
        except ValueError:
            raise HTTPError(error(404, "invalid_request", "not_found", "Invalid cursor")) from None
    results = list(items[position : position + page_size])
    next_url = (
        request.url_with(cursor=_encode_cursor(position + page_size))
        if position + page_size < len(items)
        else None
    )
    previous = (
        request.url_with(cursor=_encode_cursor(max(0, position - page_size))) if position else None
    )
    return json_reply(200, {"next": next_url, "previous": previous, "results": results})


Handler = Callable[["FakePostHog", FakeRequest], Awaitable[ServerReply]]


@attrs.frozen
class Route:
    """
    One endpoint of the fake.

    `scope` is the scope object (`batch_export`, …): read for GET, write otherwise. None
    models a custom action without `required_scopes`, which PostHog refuses to scoped
    personal API keys (legacy unscoped keys may use it). `key_throttled` is False for a
    view whose `get_throttles()` drops PostHog's per-key throttles (conversation create
    applies its own per-user ones).
    """

    method: str
    pattern: tuple[str, ...]
    handler: Handler
    scope: str | None
    key_throttled: bool = True


def text_problem(text: str) -> tuple[str, str] | None:
    """
    What the validators every DRF `CharField` carries say of `text` (detail, code), or
    None: Django's `ProhibitNullCharactersValidator`, then DRF's
    `ProhibitSurrogateCharactersValidator`.
    """
    if "\x00" in text:
        return "Null characters are not allowed.", "null_characters_not_allowed"
    surrogate = next((ord(c) for c in text if 0xD800 <= ord(c) <= 0xDFFF), None)
    if surrogate is not None:
        return (
            f"Surrogate characters are not allowed: U+{surrogate:X}.",
            "surrogate_characters_not_allowed",
        )
    return None
