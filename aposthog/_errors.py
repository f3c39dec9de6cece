"""
The exception tree, and the pure function that turns an HTTP error response into one.

```
PostHogError
├── ConfigurationError            bad or missing configuration (also a ValueError)
├── ClientStateError              used after close, or from another event loop (also a RuntimeError)
├── APIConnectionError            network failure, also mid-stream
│   ├── APITimeoutError           (also a builtin TimeoutError)
│   └── IncompleteStreamError     a stream ended before its run did, re-attaches spent
├── APIStatusError                .status .type .code .detail .attr .body
│   ├── BadRequestError           400
│   ├── AuthenticationError       401
│   ├── QuotaLimitError           402
│   ├── PermissionDeniedError     403
│   ├── NotFoundError             404
│   ├── ConflictError             409
│   ├── UnprocessableEntityError  422
│   ├── RateLimitError            429 (.retry_after)
│   └── InternalServerError       5xx (.retry_after)
└── ResponseDecodeError           the body is not what the record expects
    └── ResponseTooLargeError     the decoded body passed max_response_size
```

PostHog answers errors in three shapes, and all of them end up in the same attributes:
the drf-exceptions-hog envelope `{"type", "code", "detail", "attr"}`, the bare
`{"error": "…"}` bodies of some conversation endpoints, and empty bodies (the
destination-test endpoint answers 400 and 404 with nothing at all).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from . import _json
from ._retry import parse_retry_after, parse_throttle_detail

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientStateError",
    "ConfigurationError",
    "ConflictError",
    "IncompleteStreamError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "PostHogError",
    "QuotaLimitError",
    "RateLimitError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "UnprocessableEntityError",
    "clip",
    "error_from_response",
    "header_text",
]

#: The most characters of server-sent text a message, a repr or a log line shows.
MAX_SHOWN = 2000


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """
    `text` cut to `limit` characters, with a marker saying how much was left out.

    Whatever a server sends ends up in messages and log lines; a 20 MB `detail` must
    not become a 20 MB log line on every retry.

    Example:
        >>> clip("x" * 2010, limit=10)
        'xxxxxxxxxx… [2,000 more characters]'
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit:,} more characters]"


_SURROGATES = re.compile("[\ud800-\udfff]")
# A header's control characters (a tab is the only one HTTP allows there) shown escaped.
_HEADER_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
# A message's, C1 controls too (U+009B starts a terminal escape as ESC [ does): every
# line break `str.splitlines()` knows becomes a space, a tab stays, the rest is escaped.
_LINE_BREAKS = (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)
_MESSAGE_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x09}
_MESSAGE_CONTROLS.update(dict.fromkeys(_LINE_BREAKS, " "))


def header_text(value: str, limit: int = 300) -> str:
    """
    A response header's value as a message quotes it: at most `limit` characters, its
    bytes that were not UTF-8 (lone surrogates, as aiohttp decodes them) shown as U+FFFD
    and its control characters escaped, so the message can be written anywhere (a UTF-8
    log file, a JSON line) and stays one line.
    """
    if len(value) > limit:
        value = value[:limit] + "…"
    return _SURROGATES.sub("\ufffd", value).translate(_HEADER_CONTROLS)


def _clip_repr(value: Any) -> str:
    return clip(repr(value))


class PostHogError(Exception):
    """
    The base of every exception aposthog raises.

    Example:
        ```python
        try:
            await ph.batch_exports.get(export_id)
        except aposthog.NotFoundError:
            ...
        except aposthog.PostHogError as err:
            log.warning("PostHog call failed: %s", err)
        ```
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # Worker pools pickle errors. The default calls `cls(*args)`, which keyword-only
        # constructors refuse: rebuilt from `args` without `__init__`, then every
        # attribute restored as it was (notes added with `add_note()` included).
        return (_rebuild_error, (type(self), self.args), self.__dict__.copy())


def _rebuild_error(cls: type[PostHogError], args: tuple[Any, ...]) -> PostHogError:
    error = cls.__new__(cls, *args)
    error.args = args  # `OSError.__new__` (a timeout's base) leaves them to `__init__`
    return error


class ConfigurationError(PostHogError, ValueError):
    """The client was given (or found in the environment) a configuration it cannot use."""


class ConfigurationTypeError(ConfigurationError, TypeError):
    """
    A client argument of a type it cannot use (`session=` that is no
    `aiohttp.ClientSession`, `on_wait=` that is no plain function): a
    `ConfigurationError`, and a `TypeError` too.
    """


class ClientStateError(PostHogError, RuntimeError):
    """
    The client was used after `aclose()`, from an event loop other than its own, or where
    no asyncio event loop runs (under trio: aposthog runs on asyncio).
    """


class APIConnectionError(PostHogError):
    """
    No usable HTTP response: the connection failed, was reset, or dropped mid-stream.

    Attributes:
        method: the HTTP method of the request.
        path: the request's path (no host, no query, never the key).
        reached_server: False when the request certainly never reached PostHog (the
            connection could not be made); True when it may have.
    """

    def __init__(
        self, message: str, *, method: str = "", path: str = "", reached_server: bool = True
    ) -> None:
        message = clip(message)
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.reached_server = reached_server

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method else ""
        return f"{self.message}{where}"


class APITimeoutError(APIConnectionError, TimeoutError):
    """A connect, call or stream-idle timeout expired."""


class IncompleteStreamError(APIConnectionError):
    """
    A conversation stream ended without its run's end — no final message and no in-band
    failure — and re-attaching did not bring the rest. What did arrive stays readable on
    the stream (`stream.result()`, with `complete=False`); it is never reported as a
    finished answer.
    """


class APIStatusError(PostHogError):
    """
    PostHog answered with an error status (or, for a `RateLimitError`, this client's rate
    limiter refused the call before sending it).

    Attributes:
        status: the HTTP status code.
        type: PostHog's error type (`validation_error`, `authentication_error`, …) or None.
        code: PostHog's error code (`invalid_choice`, `not_found`, …) or None.
        detail: the human-readable explanation, or None.
        attr: the request field the error is about (nested fields joined by `__`), or None.
        body: the decoded JSON body, the raw text, or None when the body was empty.
        method, path: the request that failed (the path carries no query and no key).
    """

    def __init__(
        self,
        *,
        status: int,
        type: str | None = None,
        code: str | None = None,
        detail: str | None = None,
        attr: str | None = None,
        body: Any = None,
        method: str = "",
        path: str = "",
    ) -> None:
        self.status = status
        self.type = type
        self.code = code
        self.detail = detail
        self.attr = attr
        self.body = body
        self.method = method
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Error"
        parts = [f"{self.status} {phrase}"]
        if self.code:
            parts.append(f"[{self.code}]")
        if self.method:
            parts.append(f"on {self.method} {self.path}")
        line = clip(" ".join(parts), 500)
        detail = clip(self.detail) if self.detail else "(no detail in the response body)"
        if self.attr:
            detail = f"{detail} (field: {clip(self.attr, 200)})"
        # One line of a few KiB at most, whatever the server put in the detail; the
        # whole of it stays in `.detail` and `.body`. Line breaks become spaces, other
        # control characters are shown escaped (no terminal escape reaches a log), and
        # lone surrogates (a JSON `\ud800`) U+FFFD, so the line can be written as UTF-8.
        return _SURROGATES.sub("\ufffd", f"{line}: {detail}").translate(_MESSAGE_CONTROLS)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, type={_clip_repr(self.type)}, "
            f"code={_clip_repr(self.code)}, detail={_clip_repr(self.detail)}, "
            f"attr={_clip_repr(self.attr)})"
        )


class BadRequestError(APIStatusError):
    """400: the request was invalid (a `validation_error`, or an `{"error": …}` body)."""


class AuthenticationError(APIStatusError):
    """401: no key was sent, or the key is invalid."""


class QuotaLimitError(APIStatusError):
    """402: the organisation reached a usage quota (AI credits, for example)."""


class PermissionDeniedError(APIStatusError):
    """403: the key lacks a scope, cannot reach the project, or the action refuses scoped keys."""


class NotFoundError(APIStatusError):
    """404: no such object (or not visible to this key)."""


class ConflictError(APIStatusError):
    """409: the object is busy, e.g. a conversation that is still generating."""


class UnprocessableEntityError(APIStatusError):
    """422: PostHog understood the request but could not carry it out."""


class RateLimitError(APIStatusError):
    """
    429: throttled, by PostHog, or by this client's rate limiter before sending.

    The client's own refusal (a wait the call may not take: see `RetryPolicy.deadline`
    and `max_retry_after`) sends nothing: its `body`, `type` and `code` are None and
    `retry_after` is the wait it refused.

    Attributes:
        retry_after: seconds PostHog asked to wait, from a `Retry-After` header or from
            the "Expected available in N seconds." text of the detail (the longer, where
            both say one: a proxy's `Retry-After: 0` does not cut PostHog's wait); None
            if it said neither.
    """

    def __init__(self, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)


def name_request(error: APIStatusError, method: str, path: str) -> None:
    """Give an error raised before its request was sent (a refused rate-limit wait) the
    request's method and path, as one built from a response has."""
    if not error.method:
        error.method, error.path = method, path
        error.args = (str(error),)


class InternalServerError(APIStatusError):
    """
    5xx: PostHog (or a gateway in front of it) failed.

    Attributes:
        retry_after: seconds the server asked to wait (a 503's `Retry-After` header,
            seconds or an HTTP date), or None if it named no wait. When the wait is longer
            than `RetryPolicy.max_retry_after`, the error is raised at once and this is
            when to come back.
    """

    def __init__(self, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)


class ResponseDecodeError(PostHogError):
    """
    A successful response whose body does not fit the record it should become.

    The message quotes the first paths of bad fields, e.g. `$.results[3].created_at`,
    and counts the items of lists it does not explain: of any list (a page's results, a
    record's `latest_runs`), only the first 10 items that do not fit are explained, so
    that a hostile body of a million bad items costs about its size.

    Attributes:
        paths: the JSON paths of the bad fields it explains.
        body: the decoded JSON body (or the raw text when it was not JSON).
        status: the HTTP status of the answer whose body this is (200, say, for a
            proxy's login page), or None for a stream's event read after its start.
    """

    def __init__(
        self,
        message: str,
        *,
        paths: tuple[str, ...] = (),
        body: Any = None,
        path: str = "",
        status: int | None = None,
    ) -> None:
        # The message quotes what did not fit; the whole body stays in `.body`.
        super().__init__(clip(message))
        self.paths = paths
        self.body = body
        self.path = path
        self.status = status


class ResponseTooLargeError(ResponseDecodeError):
    """
    A response body grew past the client's `max_response_size` once decoded (a gzip bomb,
    or an answer no PostHog endpoint gives). Reading stopped there; nothing is retried.

    Attributes:
        limit: the `max_response_size` in bytes.
    """

    def __init__(
        self, message: str, *, limit: int, path: str = "", status: int | None = None
    ) -> None:
        super().__init__(message, path=path, status=status)
        self.limit = limit


_BY_STATUS: Mapping[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: QuotaLimitError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


#: How deep `_render` follows nested lists and objects before writing "…".
_RENDER_DEPTH = 20


def _is_code(value: object) -> bool:
    """Whether `value` reads as an error code (`queue_full`), not a sentence."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 100
        and value.isascii()
        and value.replace("_", "").isalnum()
        and value.islower()
    )


def _render(value: Any, depth: int, out: list[str], budget: list[int]) -> None:
    """Append a JSON-like rendering of `value` to `out`, depth- and size-bounded."""
    if budget[0] <= 0:
        return
    if isinstance(value, (list, tuple, dict)):
        if depth >= _RENDER_DEPTH:
            text = "[…]" if not isinstance(value, dict) else "{…}"
        else:
            is_map = isinstance(value, dict)
            out.append("{" if is_map else "[")
            budget[0] -= 1
            items: Iterable[Any] = value.items() if isinstance(value, dict) else value
            for index, item in enumerate(items):
                if budget[0] <= 0:
                    break
                if index:
                    out.append(", ")
                    budget[0] -= 2
                if is_map:
                    key, item = item
                    _render(str(key), depth + 1, out, budget)
                    out.append(": ")
                    budget[0] -= 2
                _render(item, depth + 1, out, budget)
            text = "}" if is_map else "]"
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (RecursionError, TypeError, ValueError):
            text = repr(value)
        text = text[: max(budget[0], 0)]
    out.append(text)
    budget[0] -= len(text)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    # DRF sometimes nests lists of messages; keep them readable on one line.
    try:
        return json.dumps(value, ensure_ascii=False)
    except (RecursionError, TypeError, ValueError):
        # Too deep (or not encodable): a bounded rendering, never an untyped error.
        out: list[str] = []
        _render(value, 0, out, [MAX_SHOWN])
        return "".join(out)


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str = "",
    path: str = "",
) -> APIStatusError:
    """
    Build the exception for an error response (pure: no I/O).

    Args:
        status: the HTTP status (>= 400).
        headers: the response headers (case-insensitive lookups for `Retry-After` are done here).
        body: the raw body, possibly empty or not JSON.
        method, path: the request, for the message.
    """
    decoded: Any = None
    # "utf-8-sig": a BOM a proxy put in front is not part of the JSON (as in a 2xx body).
    text = body.decode("utf-8-sig", errors="replace").strip() if body else ""
    if text:
        try:
            decoded = _json.loads(text)
        except ValueError:
            decoded = text

    err_type = code = detail = attr = None
    if isinstance(decoded, dict):
        err_type = _text(decoded.get("type"))
        code = _text(decoded.get("code"))
        detail = _text(decoded.get("detail"))
        attr = _text(decoded.get("attr"))
        if detail is None and "error" in decoded:
            # Conversation endpoints answer {"error": "…"}.
            detail = _text(decoded["error"])
        elif code is None and _is_code(decoded.get("error")):
            # … or {"error": "queue_full", "detail": "…"}: a code beside the explanation.
            code = decoded["error"]
        if detail is None and decoded and not {"type", "code", "attr"} & decoded.keys():
            # A plain DRF serializer error map such as {"name": ["This field is required."]}.
            field, messages = next(iter(decoded.items()))
            attr = attr or str(field)
            detail = _text(messages[0] if isinstance(messages, list) and messages else messages)
    elif isinstance(decoded, list) and decoded:
        detail = _text(decoded[0])
    elif isinstance(decoded, str):
        detail = decoded[:500]

    if 500 <= status < 600:
        # Not past 599: a status HTTP does not define (aiohttp reads any three digits) is
        # no server error, and its Retry-After is no server's either.
        cls: type[APIStatusError] = InternalServerError
    else:
        cls = _BY_STATUS.get(status, APIStatusError)

    kwargs: dict[str, Any] = {
        "status": status,
        "type": err_type,
        "code": code,
        "detail": detail,
        "attr": attr,
        "body": decoded,
        "method": method,
        "path": path,
    }
    if cls is RateLimitError:
        wait = parse_retry_after(_header(headers, "retry-after"))
        told = parse_throttle_detail(detail)
        if wait is None or (told is not None and told > wait):
            # PostHog's own 429 names its wait in the detail alone. A header beside it
            # that says less (`0`, a date already past: a proxy's, or a skewed clock)
            # would send every retry into the same throttle at once, with no jitter.
            wait = told
        return RateLimitError(retry_after=wait, **kwargs)
    if cls is InternalServerError:
        return InternalServerError(
            retry_after=parse_retry_after(_header(headers, "retry-after")), **kwargs
        )
    return cls(**kwargs)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None
