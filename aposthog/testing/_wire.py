"""
FakePostHog's request and reply vocabulary, modelled on what PostHog's Django REST
framework stack really sends: the drf-exceptions-hog error envelope, compact JSON,
limit/offset pages with absolute `next` URLs, and opaque cursor pages without `count`.
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import email.parser
import email.policy
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

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
    "parse_body",
    "server_error",
    "text_problem",
    "utc_datetime",
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


def utc_datetime(value: dt.datetime, name: str) -> dt.datetime:
    """
    A datetime a knob was given, as PostHog (`USE_TZ`, `TIME_ZONE` UTC) reads one: a naive
    one means UTC. An aware one keeps its zone, but must name a time UTC can hold: one past
    year 9999 (or before year 1) there is a `ValueError` where it is given, not a 500 at
    every later answer that shows it.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=dt.timezone.utc)
    try:
        value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError(f"{name}={value!r} is out of the range of datetimes in UTC") from None
    return value


def _dumps(body: Any) -> bytes:
    # DRF's JSONRenderer: compact separators, UTF-8 kept as is, except U+2028 and U+2029,
    # which it escapes (so the JSON is also valid JavaScript, and no line-oriented reader
    # splits a body at them). Raw, they can only be inside a string: replacing is safe.
    # Like DRF's (`STRICT_JSON`), it refuses NaN and the infinities (a ValueError: the
    # view's 500), so a reply is never invalid JSON.
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


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


def accepts_json(accept: str | None) -> bool:
    """
    Whether DRF's content negotiation finds PostHog's one renderer (`SafeJSONRenderer`,
    `application/json`) for a request's `Accept` header: some media type in it (its
    parameters, `q` included, ignored) is `application/json`, `application/*` or `*/*`.
    No header at all is `*/*`. PostHog's `ConversationViewSet` has that renderer alone
    too, its answer's event stream being a Django response DRF does not render.
    """
    if accept is None:
        return True
    for token in accept.split(","):
        main, _, sub = token.partition(";")[0].strip().lower().partition("/")
        if main in ("application", "*") and sub.strip() in ("json", "*"):
            return True
    return False


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


def server_error() -> HTTPError:
    """What drf-exceptions-hog answers for an uncaught exception in a view."""
    return HTTPError(error(500, "server_error", "error", "A server error occurred."))


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

# DRF's default parsers, in its order: the media type each reads.
_PARSERS = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")
# Django's MultiPartParser: the boundaries it takes.
_BOUNDARY = re.compile(r"[ -~]{0,200}[!-~]")


def _parse_error(detail: str) -> HTTPError:
    return HTTPError(error(400, "invalid_request", "parse_error", detail))


def _media_type(header: str) -> tuple[str, str, dict[str, str]]:
    """
    (main type, subtype, parameters) of a Content-Type, as Django's
    `parse_header_parameters` and DRF's `_MediaType` read it: the type lower-cased.
    """
    full, _, rest = header.partition(";")
    main, _, sub = full.strip().lower().partition("/")
    params = {}
    for item in rest.split(";"):
        name, eq, value = item.partition("=")
        if eq:
            params[name.strip().lower()] = value.strip().strip('"')
    return main, sub, params


def _parser_for(main: str, sub: str) -> str | None:
    """DRF's `select_parser`: the first parser whose media type the request's matches."""
    for parser in _PARSERS:
        parser_main, _, parser_sub = parser.partition("/")
        if sub in ("*", parser_sub) and main in ("*", parser_main):
            return parser
    return None


def _encoding(params: Mapping[str, str]) -> str:
    # Django's `request.encoding`: the `charset` parameter when Python knows the codec.
    charset = params.get("charset")
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            return "utf-8"
        return charset
    return "utf-8"


def _form(body: bytes, encoding: str) -> dict[str, str]:
    """Django's `QueryDict(body, encoding)`."""
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        text = body.decode("iso-8859-1")
    # A serializer reads a QueryDict's field with `.get()`: its last value, which dict()
    # keeps too.
    return dict(
        urllib.parse.parse_qsl(text, keep_blank_values=True, encoding=encoding, errors="replace")
    )


def _multipart(body: bytes, header: str, params: Mapping[str, str], encoding: str) -> Any:
    """Django's `MultiPartParser`, its fields only (DRF's `request.data` also holds files)."""
    boundary = params.get("boundary")
    if not boundary or _BOUNDARY.fullmatch(boundary) is None:
        raise _parse_error(
            f"Multipart form parse error - Invalid boundary in multipart: {boundary}"
        )
    head = b"Content-Type: " + header.encode("latin-1", "replace") + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: list[tuple[str, str]] = []
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        fields.append((name, raw.decode(part.get_content_charset() or encoding, "replace")))
    return dict(fields)  # each field's last value, as for a form


def _strict_constant(constant: str) -> Any:
    # DRF's `strict_constant`, the JSONParser's `parse_constant` under `STRICT_JSON`.
    raise ValueError(f"Out of range float values are not JSON compliant: {constant!r}")


def parse_body(raw: ServerRequest) -> Any:
    """
    DRF's `Request._parse`: no body is {}; else the parser the Content-Type names reads
    it (a JSON body in the header's `charset`, UTF-8 by default), and a type no parser
    reads, or none at all (DRF reads a missing header as ""), is its 415. JSON is read
    strictly, as DRF's `STRICT_JSON` does: `NaN`, `Infinity` and `-Infinity` are its 400
    parse error.
    """
    if not raw.body:
        return {}
    header = raw.headers.get("content-type", "")
    main, sub, params = _media_type(header)
    parser = _parser_for(main, sub)
    if parser is None:
        raise HTTPError(
            error(
                415,
                "invalid_request",
                "unsupported_media_type",
                f'Unsupported media type "{header}" in request.',
            )
        )
    encoding = _encoding(params)
    if parser == "application/x-www-form-urlencoded":
        return _form(raw.body, encoding)
    if parser == "multipart/form-data":
        return _multipart(raw.body, header, params, encoding)
    try:
        return json.loads(raw.body.decode(encoding), parse_constant=_strict_constant)
    except ValueError as exc:  # UnicodeDecodeError included, as DRF's stream reader raises it
        raise _parse_error(f"JSON parse error - {exc}") from None


_ENVIRONMENTS: Final = "/api/environments/"
_PROJECTS: Final = "/api/projects/"


@attrs.define
class FakeRequest:
    """A parsed API request: path parameters decoded, JSON body parsed."""

    raw: ServerRequest
    method: str
    segments: tuple[str, ...]  # decoded segments after /api/environments/<project>/
    params: dict[str, str] = attrs.field(factory=dict)  # path parameters by name
    user_key: str = ""
    #: Whether links name `/api/projects/` for a path asked at `/api/environments/` (see
    #: `FakePostHog.environments_rewritten`).
    links_rewritten: bool = False
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
        The body as DRF's `request.data` holds it ({} when there is none), parsed by the
        parser its Content-Type names: JSON (a bad body, blanks included, is PostHog's 400
        parse error), a form or multipart form (a dict of each field's last value, as a
        serializer reads a `QueryDict`; uploaded files are left out). A body of any other
        type, or with no Content-Type at all, is DRF's 415.
        """
        if self._json is _MISSING:
            self._json = parse_body(self.raw)
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
        path = self.raw.raw_path
        if self.links_rewritten and path.startswith(_ENVIRONMENTS):
            path = _PROJECTS + path.removeprefix(_ENVIRONMENTS)
        return f"{self.raw.base_url}{path}" + (f"?{query}" if query else "")


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


#: DRF's `CursorPagination.offset_cutoff`: a cursor's offset is read as at most this.
_CURSOR_OFFSET_CUTOFF = 1000


def _decode_cursor(text: str) -> tuple[int, bool, str | None]:
    """DRF's `decode_cursor`: (offset, reverse, position); a 404 for anything else."""
    try:
        querystring = base64.b64decode(text.encode("ascii")).decode("ascii")
        tokens = urllib.parse.parse_qs(querystring, keep_blank_values=True)
        offset = int(tokens.get("o", ["0"])[0])
        if offset < 0:
            raise ValueError(offset)
        reverse = bool(int(tokens.get("r", ["0"])[0]))
        position = tokens.get("p", [None])[0]
    except ValueError:  # binascii.Error and UnicodeError are ValueErrors too
        raise HTTPError(error(404, "invalid_request", "not_found", "Invalid cursor")) from None
    return min(offset, _CURSOR_OFFSET_CUTOFF), reverse, position


def _cursor_url(request: FakeRequest, offset: int, reverse: bool, position: str | None) -> str:
    """DRF's `encode_cursor`: the request's URL with this cursor."""
    tokens = {}
    if offset:
        tokens["o"] = str(offset)
    if reverse:
        tokens["r"] = "1"
    if position is not None:
        tokens["p"] = position
    query = urllib.parse.urlencode(tokens).encode("ascii")
    return request.url_with(cursor=base64.b64encode(query).decode("ascii"))


def _position_of(item: Mapping[str, Any], name: str) -> str:
    # DRF's `_get_position_from_instance`: `str()` of the model's value (a datetime's
    # `2026-01-02 03:04:05.123456+00:00`, or "None").
    return str(item[name])


def _position_key(position: str) -> dt.datetime:
    """A cursor's position as the database reads it for the comparison."""
    try:
        value = dt.datetime.fromisoformat(position)
    except ValueError:
        # Django's "… value has an invalid format" escapes the view: PostHog's 500.
        raise server_error() from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def _marker(
    records: Iterable[Mapping[str, Any]], field: str, compare: str | None
) -> tuple[int, str | None, bool]:
    """
    DRF's walk for a link's cursor: along `records` (from the page's end the link leaves
    by), the first position that differs from the one after it, the records passed on
    the way (they share the position that follows), and whether one was found.
    """
    skip = 0
    for item in records:
        marker = _position_of(item, field)
        if marker != compare:
            return skip, marker, True
        compare, skip = marker, skip + 1
    return skip, None, False


def cursor_page(
    request: FakeRequest,
    items: Sequence[Mapping[str, Any]],
    *,
    ordering: str,
    page_size: int,
    present: Callable[[Any], Any],
) -> ServerReply:
    """
    DRF's `CursorPagination`: `{"next", "previous", "results"}`, no count, opaque cursors.

    `items` are records in the list's order, whose first ordering term is `ordering`
    (`-created_at`: a timestamp field, newest first); `present` turns one into its JSON.
    As in DRF, a cursor holds the position of a page's last record (that field's value)
    and the next page is the records past it, so a record created meanwhile shifts
    nothing: no record is listed twice or skipped (an offset counts the records that
    share the position). `previous` links read backwards the same way.
    """
    field = ordering.lstrip("-")
    descending = ordering.startswith("-")
    text = request.arg("cursor")
    cursor = None if text is None else _decode_cursor(text)
    offset, reverse, position = cursor if cursor is not None else (0, False, None)
    rows = list(reversed(items)) if reverse else list(items)
    if position is not None:
        key = _position_key(position)
        # In SQL a NULL compares as neither: such a record is past no position.
        if reverse != descending:
            rows = [r for r in rows if r[field] is not None and r[field] < key]
        else:
            rows = [r for r in rows if r[field] is not None and r[field] > key]
    fetched = rows[offset : offset + page_size + 1]
    page = fetched[:page_size]
    following = _position_of(fetched[-1], field) if len(fetched) > len(page) else None
    if reverse:
        page.reverse()
        has_next, has_previous = position is not None or offset > 0, following is not None
        next_position, previous_position = position, following
    else:
        has_next, has_previous = following is not None, position is not None or offset > 0
        next_position, previous_position = following, position
    next_url = previous = None
    compare: str | None
    if has_next:
        # DRF's get_next_link: the last record whose position differs from the one after
        # it marks the page's end; the records after it that share the next position
        # are counted in the offset.
        if page and cursor is not None and reverse and offset:
            compare = _position_of(page[-1], field)
        else:
            compare = next_position
        skip, marker, unique = _marker(reversed(page), field, compare)
        if page and not unique:
            if not has_previous:
                skip, marker = page_size, None
            elif reverse:
                skip, marker = 0, previous_position
            else:
                skip, marker = offset + page_size, previous_position
        if not page:
            marker = next_position
        next_url = _cursor_url(request, skip, False, marker)
    if has_previous:
        # DRF's get_previous_link, the same walk from the page's first record.
        if page and cursor is not None and not reverse and offset:
            compare = _position_of(page[0], field)
        else:
            compare = previous_position
        skip, marker, unique = _marker(page, field, compare)
        if page and not unique:
            if not has_next:
                skip, marker = page_size, None
            elif reverse:
                skip, marker = offset + page_size, next_position
            else:
                skip, marker = 0, next_position
        if not page:
            marker = previous_position
        previous = _cursor_url(request, skip, True, marker)
    results = [present(item) for item in page]
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
