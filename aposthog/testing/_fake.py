"""
`FakePostHog`: a real HTTP server on 127.0.0.1 that behaves like PostHog's
environment-scoped API, with in-memory state and knobs for tests.

The order of checks follows Django and DRF: the URL must resolve (404), then the
`Accept` header must let PostHog answer in JSON (406), then the key must be valid (401,
with `WWW-Authenticate`), then the key's scopes must allow the action (403), then
throttles apply (429), and only then does the view run. Faults a test injects with
`fail_next()` and `drop_next()` act before all of that, like a load balancer would.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import re
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

import anyio
import attrs

from .. import _config
from .._client import NOT_GIVEN, Client, NotGiven
from .._config import _LARGEST_ID, unsendable_key
from .._http import Secret
from .._limiter import RateLimitStore
from .._observe import WaitCallback
from .._ratelimit import RateLimits
from .._retry import RetryPolicy
from .._transport import ClientSession
from . import _batch_exports, _conversations, _profile_configs
from ._conversation_knobs import ConversationsKnobs
from ._loopback import LoopbackServer, ServerReply, ServerRequest
from ._throttle import FakeThrottles, ThrottleLimit, throttled
from ._wire import FakeRequest, HTTPError, Route, accepts_json, error, json_reply, server_error

__all__ = ["FakePostHog", "RecordedRequest"]

_log = logging.getLogger("aposthog.testing")
_BEARER = re.compile(r"^Bearer\s+(\S.+)$")
_READ_ACTIONS = frozenset({"GET", "HEAD", "OPTIONS"})
_SCOPE = re.compile(r"\*|[a-z][a-z_]*:(?:read|write)")
_WWW_AUTHENTICATE = 'Bearer resource_metadata="{base}/.well-known/oauth-protected-resource"'


@attrs.frozen
class RecordedRequest:
    """A request the fake received, for assertions."""

    method: str
    path: str  # raw, percent-encoded, as sent
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (None when empty)."""
        import json

        return json.loads(self.body) if self.body else None


@attrs.define
class _Fault:
    kind: str  # "throttle" | "fail" | "drop"
    remaining: int
    status: int = 500
    wait: float | None = 1
    body: Any = None
    method: str | None = None
    path: str | None = None
    after: bool = False  # a drop after the request was carried out

    def matches(self, raw: ServerRequest) -> bool:
        if self.method is not None and raw.method != self.method.upper():
            return False
        return self.path is None or self.path in urllib.parse.unquote(raw.raw_path)


@attrs.define
class _Key:
    scopes: tuple[str, ...] | None
    user: str


#: PostHog's own 503: DRF's `ServiceUnavailable` in PostHog's error envelope.
_SERVICE_UNAVAILABLE = {
    "type": "server_error",
    "code": "service_unavailable",
    "detail": "Service temporarily unavailable, try again later.",
    "attr": None,
}


class FakePostHog:
    """
    A fake PostHog on 127.0.0.1 (an ephemeral port) for tests and demos.

    Example:
        ```python
        async with FakePostHog() as fake, fake.client() as ph:
            config = await ph.customer_profile_configs.create(scope="person")
            fake.throttle_next(2)            # the next two requests get PostHog's 429
            assert (await ph.customer_profile_configs.get(config.id)).id == config.id
        ```

    Attributes:
        url: the base URL, once started.
        api_key: a legacy, unscoped personal API key (may do anything).
        project_id: the environment id it serves (`@current` works too).
        requests: every request received, in order (none with `record_requests=False`,
            for a fake left serving other processes, where nobody reads them).
        status_counts: how many answers had each status (0: connection dropped).
        in_flight: the requests it is handling now (a streamed answer until its stream
            ends).
        max_in_flight: the most requests it has been handling at once.
        latency: seconds every request waits before it is handled.
        environments_rewritten: whether a page's `next` and `previous` name
            `/api/projects/<id>/…`, as a current PostHog writes them (the default), or
            the `/api/environments/<id>/…` path asked, as older versions did.

    Batch exports: `batch_exports`, `batch_export_runs`, `batch_export_backfills`,
    `batch_export_logs`, `batch_export_flags`, `integrations`, `add_integration()`,
    `add_batch_export_run()` and its siblings (see `BatchExportsKnobs`), and
    `max_concurrent_backfills` (running backfills allowed before a 429; None: no limit).
    Conversations: `conversations`, `ai_scripts`, `ai_streams`, `script_answer()`,
    `seed_conversation()`, `wait_for_streams_closed()` (see `ConversationsKnobs`), and
    the knobs `keepalive_interval` (seconds of silence before a `: keepalive` comment;
    None: never), `ai_burst_limit`, `ai_daily_limit` (10 a minute, 100 a day),
    `ai_research_burst_limit`, `ai_research_daily_limit` (3, 10; None turns one off;
    shorthands for `throttles`), `ai_quota_exceeded` (answer create with 402) and
    `conversations_list_includes_messages` (list like older PostHog versions did).
    Approvals follow PostHog's runner: a script's `approval=TOOL` ends a run awaiting
    approval (a pending card in `pending_approvals`, its own uuid4 `message_id`); a
    `resume_payload` approve/reject of a pending card records `approved`/`rejected`, of
    any other proposal fails the run (an `ai/failure` message only); a new message marks
    pending cards `auto_rejected` (and the queue then runs as after any run).
    Throttles: `throttles` (`FakeThrottles`), PostHog's per-user AI throttles and its
    per-key throttles (off until `throttles.rate_limit_enabled`).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        project_id: int = 1,
        port: int = 0,
        page_size: int = 100,
        latency: float = 0.0,
        record_requests: bool = True,
    ) -> None:
        given_key: object = api_key  # typed, checked for callers who are not
        if given_key is not None and (
            not isinstance(given_key, str) or not given_key or unsendable_key(given_key)
        ):
            # An empty key would silently be a random one; blanks, controls or non-ASCII,
            # a key no client sends (it refuses it where it is made).
            raise ValueError(
                "api_key must be None (a random key) or a non-empty str without blanks, "
                f"control or non-ASCII characters, got {type(given_key).__name__}"
            )
        ident: object = project_id
        if isinstance(ident, bool) or not isinstance(ident, int) or not 0 < ident <= _LARGEST_ID:
            # What every client refuses to address: a fake no client could reach.
            raise ValueError(f"project_id must be an int from 1 to 2**63 - 1, got {project_id!r}")
        self.api_key = api_key or f"phx_fake_{secrets.token_hex(16)}"
        self.project_id = str(project_id)
        self.page_size = page_size
        given_port: object = port  # (the same)
        if isinstance(given_port, bool) or not isinstance(given_port, int):
            # (None would be aiohttp's default, 8080: not a free port.)
            raise TypeError(f"port must be an int from 0 (any free port) to 65535, got {port!r}")
        if not 0 <= given_port <= 65535:
            raise ValueError(f"port must be an int from 0 (any free port) to 65535, got {port!r}")
        self.latency = latency
        #: Links as a current PostHog writes them: it serves `/api/environments/<id>/…`
        #: through the `/api/projects/<id>/…` viewset, rewriting the path first, so a
        #: page's `next` and `previous` name `/api/projects/…`. False: as older versions,
        #: the path the request named.
        self.environments_rewritten = True
        self.requests: list[RecordedRequest] = []
        #: Whether `requests` keeps each request (off: a server left running for others).
        self.record_requests = record_requests
        self.status_counts: collections.Counter[int] = collections.Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._keys: dict[str, _Key] = {self.api_key: _Key(scopes=None, user="user-1")}
        self._faults: list[_Fault] = []
        self.throttles = FakeThrottles()  # PostHog's throttles; per-key ones start off
        self._server = LoopbackServer(self._handle, port=port)
        self.url = ""
        # Each resource module brings its routes and its state; the fake dispatches.
        self._routes: list[Route] = [
            *_profile_configs.ROUTES,
            *_batch_exports.ROUTES,
            *_conversations.ROUTES,
        ]
        self.customer_profile_configs: dict[str, dict[str, Any]] = {}

        exports = _batch_exports.BatchExportsKnobs(self)
        self.batch_exports = exports.batch_exports
        self.batch_export_runs = exports.batch_export_runs
        self.batch_export_backfills = exports.batch_export_backfills
        self.batch_export_logs = exports.batch_export_logs
        self.batch_export_flags = exports.batch_export_flags
        self.max_concurrent_backfills: int | None = None
        self.add_batch_export_run = exports.add_batch_export_run
        self.add_batch_export_backfill = exports.add_batch_export_backfill
        self.add_batch_export_log = exports.add_batch_export_log
        self.add_batch_export_logs = exports.add_batch_export_logs
        self.set_batch_export_test_result = exports.set_batch_export_test_result
        self.integrations = exports.integrations
        self.add_integration = exports.add_integration
        self._batch_export_test_results = exports.test_results
        self._batch_export_now = exports.now

        conversations = ConversationsKnobs()
        self.conversations = conversations.conversations
        self.ai_scripts = conversations.ai_scripts
        self.ai_streams = conversations.ai_streams
        self.script_answer = conversations.script_answer
        self.seed_conversation = conversations.seed_conversation
        self.wait_for_streams_closed = conversations.wait_for_streams_closed
        self._user_basic = conversations.user_basic
        self._keepalive_interval: float | None = 15.0
        self.ai_quota_exceeded = False
        self.conversations_list_includes_messages = False

    @property
    def page_size(self) -> int:
        """The most records a list's page holds (PostHog's default limit)."""
        return self._page_size

    @page_size.setter
    def page_size(self, size: int) -> None:
        value: object = size  # typed an int, checked for callers who are not
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            # 0 would serve empty pages whose `next` names the same page, without end.
            raise ValueError(f"page_size must be an int >= 1, got {size!r}")
        self._page_size = value

    @property
    def latency(self) -> float:
        """Seconds every request waits before it is handled (0: none)."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        value: object = seconds  # typed a number, checked for callers who are not
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"latency must be a number of seconds, got {type(value).__name__}")
        if not 0 <= value < math.inf:  # NaN too
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {value!r}")
        self._latency = float(value)

    @property
    def keepalive_interval(self) -> float | None:
        """Seconds of silence before a stream's `: keepalive` comment (None: never)."""
        return self._keepalive_interval

    @keepalive_interval.setter
    def keepalive_interval(self, seconds: float | None) -> None:
        # 0 would write keepalives without pause, megabytes a second: refused.
        value: object = seconds  # typed a number, checked for callers who are not
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
        ):
            raise ValueError(f"keepalive_interval must be > 0 seconds or None, got {seconds!r}")
        self._keepalive_interval = seconds

    # Request counts of the AI throttles in `throttles` (their windows stay as set).
    ai_burst_limit = ThrottleLimit("ai_burst")
    ai_daily_limit = ThrottleLimit("ai_sustained")
    ai_research_burst_limit = ThrottleLimit("ai_research_burst")
    ai_research_daily_limit = ThrottleLimit("ai_research_sustained")

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> FakePostHog:
        """Start serving; `url` is set when this returns."""
        self.url = await self._server.start()
        return self

    async def aclose(self) -> None:
        """Stop serving and drop every connection."""
        await self._server.stop()

    async def __aenter__(self) -> FakePostHog:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def client(
        self,
        *,
        api_key: str | NotGiven | None = NOT_GIVEN,
        project_id: str | int | NotGiven | None = NOT_GIVEN,
        max_concurrency: int | None = None,
        timeout: float | None = _config.DEFAULT_TIMEOUT,
        connect_timeout: float | None = _config.DEFAULT_CONNECT_TIMEOUT,
        stream_idle_timeout: float | None = _config.DEFAULT_STREAM_IDLE_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        session: ClientSession | None = None,
        on_wait: WaitCallback | None = None,
        rate_limits: RateLimits | Literal["auto"] | None = "auto",
        rate_limit_store: RateLimitStore | None = None,
        max_response_size: int = _config.DEFAULT_MAX_RESPONSE_SIZE,
        allow_insecure_http: bool = False,
    ) -> Client:
        """
        An `aposthog.Client` for this fake: its `host` is the fake's URL, and `api_key`
        and `project_id` are the fake's unless given (None reads the environment, as
        `Client` does). The other arguments are `Client`'s, with its defaults.
        """
        # Client's keyword parameters, spelled out so that they are type-checked.
        return Client(
            api_key=self.api_key if isinstance(api_key, NotGiven) else api_key,
            host=self.url,
            project_id=self.project_id if isinstance(project_id, NotGiven) else project_id,
            max_concurrency=max_concurrency,
            timeout=timeout,
            connect_timeout=connect_timeout,
            stream_idle_timeout=stream_idle_timeout,
            max_retries=max_retries,
            retry=retry,
            session=session,
            on_wait=on_wait,
            rate_limits=rate_limits,
            rate_limit_store=rate_limit_store,
            max_response_size=max_response_size,
            allow_insecure_http=allow_insecure_http,
        )

    def __repr__(self) -> str:
        return f"<FakePostHog {self.url or '(not started)'} project_id={self.project_id}>"

    # ------------------------------------------------------------------ keys and knobs

    def add_key(self, *, scopes: Sequence[str] | None = None, user: str = "user-1") -> str:
        """
        Make another personal API key.

        Args:
            scopes: e.g. `["batch_export:read"]` or `["*"]`; None or empty: a legacy
                unscoped key, which may do anything.
            user: whose key it is (conversations are private to their user).
        """
        if isinstance(scopes, str):
            raise TypeError(
                f"scopes must be a sequence of scopes, such as [{scopes!r}], not one str"
            )
        given: object = scopes  # typed a sequence of str, checked for callers who are not
        if given is not None:
            if isinstance(given, (bytes, bytearray)) or not isinstance(given, Sequence):
                raise TypeError(f"scopes must be a sequence of str, got {type(given).__name__}")
            for scope in given:
                # PostHog's key serializer refuses any other ("Invalid scope"): a typo
                # would make a key refused everywhere, for the wrong reason.
                if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
                    raise ValueError(
                        "each scope must be '*' or '<object>:read' or '<object>:write' "
                        f"(such as 'batch_export:read'), got {scope!r}"
                    )
        key = f"phx_fake_{secrets.token_hex(16)}"
        self._keys[key] = _Key(scopes=tuple(scopes) if scopes else None, user=user)
        return key

    def throttle_next(
        self,
        n: int = 1,
        *,
        wait: float | None = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """
        Answer the next `n` matching requests with PostHog's 429 (no Retry-After header),
        whose text names `wait` seconds (None: no time).
        """
        seconds: object = wait  # typed a number, checked for callers who are not
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 <= seconds < math.inf
        ):
            raise ValueError(f"wait must be None or a finite number of seconds >= 0, got {wait!r}")
        self._add_fault(_Fault("throttle", n, wait=wait, method=method, path=path))

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        body: Any = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """
        Answer the next `n` matching requests with `status` and `body`: JSON (a value
        `json.dumps` takes, NaN and infinities refused as the fake's encoder refuses them,
        checked here), or bytes sent as they are (a proxy's HTML page). Without a body, a
        503 is PostHog's own (its JSON error: refused before any work, so the client
        retries any request), and any other status has an empty body; a proxy's 503, which
        may follow a request PostHog received, is `body=b"..."`.
        """
        code: object = status  # typed an int, checked for callers who are not
        if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 599:
            # (Another number makes no status line a client reads as an answer.)
            raise ValueError(f"status must be an int from 200 to 599, got {status!r}")
        if not isinstance(body, (bytes, type(None))):
            # A TypeError or ValueError now, not a 500 at the next request.
            json.dumps(body, allow_nan=False)
        self._add_fault(_Fault("fail", n, status=status, body=body, method=method, path=path))

    def drop_next(
        self,
        n: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        after: bool = False,
    ) -> None:
        """
        Close the connection of the next `n` matching requests without answering.

        Args:
            after: carry each request out first (its export or config made, changed or
                deleted; a conversation's run begun), as when PostHog acted and the
                answer was lost on the way back; by default nothing is done.
        """
        self._add_fault(_Fault("drop", n, method=method, path=path, after=after))

    def _add_fault(self, fault: _Fault) -> None:
        """Queue `fault`, its count and filters checked first (not at every request)."""
        count: object = fault.remaining
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"n must be an int >= 0 (how many requests), got {count!r}")
        for name in ("method", "path"):
            value: object = getattr(fault, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
        if count:
            self._faults.append(fault)

    def reset_stats(self) -> None:
        """
        Forget recorded requests, status counts, the in-flight high-water mark and the
        event-stream counters (streams still open stay counted in `ai_streams.open`).
        """
        self.requests.clear()
        self.status_counts.clear()
        stats = self.ai_streams
        stats.opened = stats.open
        stats.completed = stats.disconnected = stats.dropped = 0
        self.max_in_flight = self.in_flight

    def _take_fault(self, raw: ServerRequest, kinds: tuple[str, ...]) -> _Fault | None:
        for fault in self._faults:
            if fault.kind in kinds and fault.remaining > 0 and fault.matches(raw):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------------ dispatch

    async def _handle(self, raw: ServerRequest) -> ServerReply:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        streaming = False
        try:
            if self.record_requests:
                headers = dict(raw.headers)
                if "authorization" in headers:
                    # The key a test sent may be the real one (`POSTHOG_PERSONAL_API_KEY`
                    # in a CI job): its text as sent, `'<redacted>'` in any repr.
                    headers["authorization"] = Secret(headers["authorization"])
                self.requests.append(
                    RecordedRequest(raw.method, raw.raw_path, raw.query, headers, raw.body)
                )
            if self.latency:
                await anyio.sleep(self.latency)
            try:
                reply = await self._dispatch(raw)
            except HTTPError as exc:
                reply = exc.reply
            except Exception:
                # What the fake's code did not expect is PostHog's answer to what its view
                # did not catch: drf-exceptions-hog's JSON 500 (logged, as PostHog reports it).
                _log.exception("FakePostHog: %s %s failed", raw.method, raw.raw_path)
                reply = server_error().reply
            # 0 counts connections dropped without an answer.
            self.status_counts[0 if reply.drop else reply.status] += 1
            if reply.stream is not None:
                # A streamed answer is being handled until its stream ends.
                reply = attrs.evolve(reply, stream=_CountedStream(reply.stream, self._done))
                streaming = True
            return reply
        finally:
            if not streaming:
                self._done()

    def _done(self) -> None:
        self.in_flight -= 1

    def _resolve(self, raw: ServerRequest) -> tuple[list[Route], tuple[str, ...], str]:
        parts = [urllib.parse.unquote(p) for p in raw.raw_path.split("/")]
        if parts and parts[-1] == "":
            parts.pop()  # PostHog's trailing slash is optional
        if (
            len(parts) < 4
            or parts[:2] != ["", "api"]
            or parts[2] not in ("environments", "projects")
        ):
            raise HTTPError(error(404, "invalid_request", "not_found", "Not found."))
        segments = tuple(parts[4:])
        matching = [r for r in self._routes if _match(r.pattern, segments) is not None]
        if matching:
            # Like DRF's router, a literal segment (`test`) wins over a parameter (`{id}`).
            best = min(matching, key=lambda r: sum(p.startswith("{") for p in r.pattern)).pattern
            matching = [r for r in matching if r.pattern == best]
        return matching, segments, parts[3]

    async def _dispatch(self, raw: ServerRequest) -> ServerReply:
        fault = self._take_fault(raw, ("drop", "fail"))
        if fault is not None and fault.kind == "drop":
            if fault.after:
                await self._carried_out(raw)
            return ServerReply(drop=True)
        if fault is not None:
            if fault.body is None and fault.status == 503:
                return json_reply(503, _SERVICE_UNAVAILABLE)
            if fault.body is None:
                return ServerReply(status=fault.status, body=b"")
            if isinstance(fault.body, bytes):
                headers = {"Content-Type": "text/html; charset=utf-8"}
                return ServerReply(status=fault.status, body=fault.body, headers=headers)
            return json_reply(fault.status, fault.body)

        return await self._route(raw)

    async def _carried_out(self, raw: ServerRequest) -> None:
        """Handle `raw` for its effects alone: its answer is never sent."""
        try:
            reply = await self._route(raw)
        except HTTPError:
            return
        stream = reply.stream
        closing = getattr(stream, "aclose", None)
        if closing is not None:
            await closing()  # a stream's reader left at once: its run goes on

    async def _route(self, raw: ServerRequest) -> ServerReply:
        routes, segments, project = self._resolve(raw)
        if not routes:
            raise HTTPError(error(404, "invalid_request", "not_found", "Not found."))
        route = next((r for r in routes if r.method == raw.method), None)
        head = route is None and raw.method == "HEAD"
        if head:
            # DRF's viewsets answer HEAD with the GET action (aiohttp sends no body).
            route = next((r for r in routes if r.method == "GET"), None)
        request = FakeRequest(
            raw=raw,
            method=raw.method,
            segments=segments,
            links_rewritten=self.environments_rewritten,
        )
        if not accepts_json(raw.headers.get("accept")):
            # DRF negotiates the answer's content type first, in `initial()`: before the key.
            raise HTTPError(
                error(
                    406,
                    "invalid_request",
                    "not_acceptable",
                    "Could not satisfy the request Accept header.",
                )
            )
        # DRF authenticates before any permission check: no or a bad key is 401 for any project.
        key = self._authenticate(request)
        if project not in (self.project_id, "@current"):
            raise _forbidden("You don't have access to the project.")
        if route is not None:
            self._authorize(key, route, raw.method)
        elif self._keys[key].scopes is not None:
            # No action for the method: no scope to require (`_get_required_scopes`
            # finds none), which PostHog refuses to a scoped key before its 405.
            raise _forbidden("This action does not support Personal API Key access")
        throttle = self._take_fault(raw, ("throttle",))
        if throttle is not None:
            raise throttled(throttle.wait)  # DRF's Throttled, as `throttle_next` promises
        if (route or routes[0]).key_throttled:
            self.throttles.check_api(key)
        if route is None:
            # DRF finds no handler only after `initial()`: a method the view does not take
            # was authenticated and throttled (and counted) first.
            raise HTTPError(
                error(
                    405,
                    "invalid_request",
                    "method_not_allowed",
                    f'Method "{raw.method}" not allowed.',
                )
            )
        request.params = _match(route.pattern, segments) or {}
        request.user_key = self._keys[key].user
        reply = await route.handler(self, request)
        if head and reply.stream is None and not reply.drop:
            return attrs.evolve(reply, body=b"")
        return reply

    def _authenticate(self, request: FakeRequest) -> str:
        """
        `PersonalAPIKeyAuthentication`: the key of an `Authorization: Bearer` header, else
        (no such header) a `personal_api_key` in the body (which DRF parses for it: a bad
        body is its 400 or 415 now), else in the query string; the first found is the one
        tried. None: PostHog's 401 "not provided"; an unknown one: its 401 naming where
        the key was found.
        """
        raw = request.raw
        www = {"WWW-Authenticate": _WWW_AUTHENTICATE.format(base=raw.base_url)}
        found = _find_key(request)
        if found is None:
            raise HTTPError(
                error(
                    401,
                    "authentication_error",
                    "not_authenticated",
                    "Authentication credentials were not provided.",
                    headers=www,
                )
            )
        key, source = found
        if not isinstance(key, str):
            raise server_error()  # PostHog hashes the value as text: its 500
        if key not in self._keys:
            raise HTTPError(
                error(
                    401,
                    "authentication_error",
                    "authentication_failed",
                    f"Personal API key found in request {source} is invalid.",
                    headers=www,
                )
            )
        return key

    def _authorize(self, key: str, route: Route, method: str) -> None:
        scopes = self._keys[key].scopes
        if scopes is None:
            return  # a legacy key with no scopes may do anything
        if route.scope is None:
            raise _forbidden("This action does not support Personal API Key access")
        level = "read" if method in _READ_ACTIONS else "write"
        needed = f"{route.scope}:{level}"
        allowed = set(scopes)
        if "*" in allowed or needed in allowed or f"{route.scope}:write" in allowed:
            return
        raise _forbidden(f"API key missing required scope '{needed}'")


class _CountedStream:
    """
    A streamed answer's chunks, calling `done` once when the stream ends: exhausted,
    failed, or closed (also before its first chunk, which an async generator's `finally`
    would miss).
    """

    def __init__(self, stream: AsyncIterator[bytes], done: Callable[[], None]) -> None:
        self._stream = stream
        self._done: Callable[[], None] | None = done

    def __aiter__(self) -> _CountedStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._stream.__anext__()
        except BaseException:
            self._finish()
            raise

    async def aclose(self) -> None:
        self._finish()
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()

    def _finish(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done()


def _find_key(request: FakeRequest) -> tuple[Any, str] | None:
    """`PersonalAPIKeyAuthentication.find_key_with_source`: (key, where it was found)."""
    match = _BEARER.match(request.raw.headers.get("authorization", ""))
    if match is not None:
        return match.group(1).strip(), "Authorization header"
    data = request.json()
    # PostHog's own test, as it is: a body that is no object may fail it (its 500).
    if data and "personal_api_key" in data:
        return data["personal_api_key"], "body"
    if any(name == "personal_api_key" for name, _ in request.query):
        return request.arg("personal_api_key"), "query string"
    return None


def _forbidden(detail: str) -> HTTPError:
    return HTTPError(error(403, "authentication_error", "permission_denied", detail))


def _match(pattern: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(pattern, segments, strict=True):
        if expected.startswith("{"):
            if not actual:
                return None
            params[expected[1:-1]] = actual
        elif expected != actual:
            return None
    return params
