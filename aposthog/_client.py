"""
`Client`: configuration, the session's lifetime and the resources. How requests are
sent (throttle, limiter, timeouts, retries) is in `_pipeline`; the client has one,
shared with its `with_options()` views, and hands each resource the view's `Api`.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar

import anyio
import attrs

from . import _config
from ._api import NOT_GIVEN, Api, NotGiven
from ._config import ClientConfig, resolve_config
from ._debug_log import DebugLog
from ._errors import ClientStateError, ConfigurationError, ConfigurationTypeError
from ._http import Secret
from ._limiter import RateLimiter, RateLimitStore, make_rate_limiter
from ._observe import WaitCallback, wait_hook
from ._pipeline import Pipeline, running_loop
from ._ratelimit import RateLimits
from ._retry import RetryPolicy
from ._tracing import default_observer
from ._transport import ClientSession, Transport

if TYPE_CHECKING:
    from .resources.batch_exports import BatchExports
    from .resources.conversations import Conversations
    from .resources.customer_profile_configs import CustomerProfileConfigs

__all__ = ["NOT_GIVEN", "Client", "NotGiven"]


_C = TypeVar("_C", bound="Client")


class Client:
    """
    An async client for PostHog's environment-scoped API.

    Create one, share it between every task, close it once (`async with` or `aclose()`).

    Args:
        api_key: a personal API key; else `POSTHOG_PERSONAL_API_KEY`.
        host: `"us"`, `"eu"` or a URL; else `POSTHOG_HOST`; default `https://us.posthog.com`.
        project_id: the environment's id; else `POSTHOG_PROJECT_ID`; default `"@current"`.
        max_concurrency: requests in flight at once across every task using this client
            (a conversation stream holds a place only while it opens or re-attaches: open
            streams are not bounded by it).
        timeout: seconds for one attempt of a call: connecting, sending, and reading the
            whole answer (for a stream: until PostHog starts answering). None: no limit.
            Per call: `timeout=`. Retries add attempts: `RetryPolicy.deadline` bounds
            when the last one may start, so a call takes at most about
            `deadline + timeout`.
        connect_timeout: seconds to open a connection.
        stream_idle_timeout: seconds a conversation stream may go without a byte
            (PostHog sends a keepalive every 15 s of silence).
        max_retries: retries after the first attempt (0 turns retrying off).
        retry: a full `RetryPolicy` (its `max_retries` is overridden by `max_retries`).
        session: an `aiohttp.ClientSession` to borrow; the client never closes it.
        allow_insecure_http: allow an `http://` host that is not loopback (the key then
            travels in cleartext: for a self-hosted PostHog on a private network only).
        on_wait: a function called with an `aposthog.Wait` before every wait this client
            takes (retry backoffs, PostHog's 429 waits, the rate limiter's waits), the
            waits of conversation streams included: to tell a user "waiting 3 s".
        rate_limits: `"auto"` (PostHog Cloud's published throttles on the `us`/`eu`
            hosts, none elsewhere: `RateLimits.posthog_cloud()`, whose AI windows
            outside research mode are off, as PostHog's are for paying
            organizations), None (off) or an `aposthog.RateLimits`. Before each
            request the client waits for room in its windows, holding no connection
            and no concurrency slot; a 429 holds back its bucket as long as PostHog asks.
        rate_limit_store: where the windows are counted: this process (default), or an
            `aposthog.RedisRateLimitStore` shared by every process and machine using
            the key.
        max_response_size: bytes a response body may have once decoded (default 32 MiB);
            a larger one (a gzip bomb, say) raises `ResponseTooLargeError` after reading
            about that much. A conversation stream is bounded per event (16 MiB), and
            what it keeps (its final messages, the text given out: not every
            snapshot) by this size; it streams for as long as its answer runs.

    Example:
        ```python
        async with aposthog.Client(host="eu", project_id=12345) as ph:
            async for config in ph.customer_profile_configs.list():
                print(config.scope, config.id)
        ```
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str | None = None,
        project_id: str | int | None = None,
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
    ) -> None:
        given: object = api_key  # typed `str | None`, checked for callers who are not
        if isinstance(api_key, str):
            # From here on, this frame shows the key as '<redacted>' (say, in a traceback
            # printed with its locals after a configuration error).
            api_key = given = Secret(api_key)
        elif given is not None:
            # Refused here, not left in this frame (bytes read from a file are the key too).
            kind = type(given).__name__
            api_key = given = None
            raise ConfigurationTypeError(f"api_key must be a str, got {kind}")
        config = resolve_config(
            api_key=api_key,
            host=host,
            project_id=project_id,
            max_concurrency=max_concurrency,
            timeout=timeout,
            connect_timeout=connect_timeout,
            stream_idle_timeout=stream_idle_timeout,
            retry=retry,
            max_retries=max_retries,
            max_response_size=max_response_size,
            allow_insecure_http=allow_insecure_http,
        )
        transport = Transport(
            session=session,
            connect_timeout=config.connect_timeout,
            max_response_size=config.max_response_size,
        )
        proxy_problem = transport.proxy_problem(config.base_url)
        if proxy_problem is not None:
            raise ConfigurationError(proxy_problem)
        # DEBUG lines around OpenTelemetry spans (`aposthog[otel]`): a call is handed no
        # observer at all unless the `aposthog` logger is at DEBUG or a tracer records.
        observer = wait_hook(on_wait, DebugLog(default_observer()))
        # Last of the checks: the limiter registers with its store (one made from a URL
        # disconnects when its last client closes), which a refused client must not.
        throttle = make_rate_limiter(
            rate_limits, rate_limit_store, base_url=config.base_url, api_key=config.api_key
        )
        pipeline = Pipeline(
            transport,
            api_key=config.api_key,
            base_url=config.base_url,
            api_prefix=config.api_prefix,
            max_concurrency=config.max_concurrency,
            throttle=throttle,
        )
        # Dropped unclosed (no `async with`, no `aclose()`): said so, naming the fix, and
        # the session it made closed without awaiting (see `_dropped_unclosed`).
        pipeline.finalizer.detach()
        pipeline.finalizer = weakref.finalize(pipeline, _dropped_unclosed, transport)
        pipeline.finalizer.atexit = False  # the interpreter's end closes everything anyway
        self._bind(Api(pipeline, config, observer))

    def _view(self: _C, api: Api) -> _C:
        """
        This client over another `Api` of its pipeline: what `with_options()` returns.

        The view has a subclass's own attributes (set in its `__init__`), as its type
        says: this client's instance attributes, shared (only the binding to the pipeline
        changes), without the copy protocol (a subclass may refuse pickling, or relay
        `__getattr__` to what its `__init__` set). A `functools.cached_property` value
        is not taken: the view computes its own, with its own options.
        """
        cls = type(self)
        view = cls.__new__(cls)
        cached = {
            name
            for klass in cls.__mro__
            for name, value in vars(klass).items()
            if isinstance(value, functools.cached_property)
        }
        state = getattr(self, "__dict__", None)
        if state is not None:
            view.__dict__.update((k, v) for k, v in state.items() if k not in cached)
        for klass in cls.__mro__:
            slots = vars(klass).get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if name.startswith("__") and not name.endswith("__"):
                    name = f"_{klass.__name__.lstrip('_')}{name}"  # a private name's slot
                if name in ("__dict__", "__weakref__") or not hasattr(self, name):
                    continue
                object.__setattr__(view, name, getattr(self, name))
        view._bind(api)
        return view

    def _bind(self, api: Api) -> None:
        from .resources.batch_exports import BatchExports
        from .resources.conversations import Conversations
        from .resources.customer_profile_configs import CustomerProfileConfigs

        self._api = api
        self.batch_exports: BatchExports = BatchExports(api)
        self.conversations: Conversations = Conversations(api)
        self.customer_profile_configs: CustomerProfileConfigs = CustomerProfileConfigs(api)

    # ----------------------------------------------------------------- configuration

    @property
    def config(self) -> ClientConfig:
        """The resolved configuration (its repr never shows the key)."""
        return self._api.config

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The rate limiter every task and `with_options()` view shares (None: off)."""
        throttle = self._api.pipeline.throttle
        return throttle if isinstance(throttle, RateLimiter) else None

    @property
    def base_url(self) -> str:
        """The PostHog host this client talks to."""
        return self._api.config.base_url

    @property
    def project_id(self) -> str:
        """The environment (project) id, or `@current`."""
        return self._api.config.project_id

    def with_options(
        self: _C,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
        stream_idle_timeout: float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry: RetryPolicy | NotGiven = NOT_GIVEN,
        on_wait: WaitCallback | NotGiven | None = NOT_GIVEN,
    ) -> _C:
        """
        A view of this client (of its class: a subclass's view is one too) with other
        timeouts, retries or `on_wait`, sharing its session, limiter and rate limiter
        (closing either closes both).

        Example:
            ```python
            fast = ph.with_options(timeout=2, max_retries=0)
            export = await fast.batch_exports.get(export_id)
            ```
        """
        api = self._api.with_timeouts(timeout, stream_idle_timeout)
        policy = _config.retry_policy(
            api.config.retry if isinstance(retry, NotGiven) else retry,
            None if isinstance(max_retries, NotGiven) else max_retries,
        )
        observer = (
            api.observer
            if isinstance(on_wait, NotGiven)
            else wait_hook(on_wait, DebugLog(default_observer()))
        )
        return self._view(Api(api.pipeline, attrs.evolve(api.config, retry=policy), observer))

    def __repr__(self) -> str:
        api: Api | None = getattr(self, "_api", None)
        if api is None:  # its construction failed (a traceback printing its locals)
            return "<aposthog.Client (not configured)>"
        state = "closed" if api.pipeline.closed else "open"
        config = api.config
        return (
            f"<aposthog.Client {state} base_url={config.base_url!r} "
            f"project_id={config.project_id!r}>"
        )

    # ----------------------------------------------------------------- lifetime

    async def __aenter__(self: _C) -> _C:
        self._api.pipeline.check_usable()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """
        Close every open stream and the session (if the client created it). Idempotent:
        a close that was itself cancelled midway is finished by the next `aclose()`.

        Shared views from `with_options()` close together with their client.
        """
        pipeline = self._api.pipeline
        if pipeline.close_finished:
            return
        if pipeline.loop is not None and pipeline.loop is not running_loop():
            if pipeline.loop.is_closed():
                # Its loop has ended (a test's loop, an `asyncio.run()` before this one):
                # nothing can run there, so nothing of it is awaited. Closed for good.
                _abandon(pipeline)
                return
            # Its session and streams belong to that loop: closed there, or not at all.
            raise ClientStateError(
                "this aposthog.Client belongs to another event loop: close it from there"
            )
        # Everything that ends at once, before the first await: a close cancelled while
        # it awaits (asyncio's own cancellation, which anyio's shield does not stop) has
        # ended every wait already, and the next aclose() finishes the rest.
        pipeline.closed = True
        # Streams first: a stream's wait (to retry its message, or for the rate limiter)
        # ends by its own close, and its reader hears what a closed stream says.
        for stream in list(pipeline.streams):
            # Its reader, if any, is told: the run may not have ended.
            stream.close("its aposthog.Client was closed")
        pipeline.sleeps.wake_all()  # a call waiting to retry: it raises `ClientStateError` at once
        throttle = pipeline.throttle
        if isinstance(throttle, RateLimiter):
            throttle.close()  # a call waiting for the rate limiter: the same
        with anyio.CancelScope(shield=True):
            await pipeline.transport.aclose()
            if isinstance(throttle, RateLimiter):
                await throttle.aclose()
        pipeline.close_finished = True
        pipeline.finalizer.detach()

    @property
    def closed(self) -> bool:
        """Whether `aclose()` was called."""
        return self._api.pipeline.closed

    @property
    def open_streams(self) -> int:
        """
        How many conversation streams of this client (its `with_options()` views
        included) are open now: from the first iteration (or `async with`) until the
        answer ends, fails or is closed. A stream never iterated holds no connection and
        is not counted.

        Every way out of a stream closes it (the end, `break`, an exception, a
        cancellation, `aclose()`), so a count that keeps growing in a long-running
        process means streams left half-read and never closed. A health check or a
        test can assert on it.

        Example:
            ```python
            async for text in ph.conversations.create("Top pages?").text_deltas():
                break
            assert ph.open_streams == 0  # the break closed the response
            ```
        """
        return len(self._api.pipeline.streams)


def _abandon(pipeline: Pipeline) -> None:
    """
    Close a client whose event loop has ended: nothing of it can be awaited, and nothing
    can run there. Its streams and waits are marked closed, its session's connections
    dropped (see `Transport.abandon`); the client is closed for good.
    """
    pipeline.closed = True
    for stream in list(pipeline.streams):
        with contextlib.suppress(Exception):  # its response belongs to the ended loop
            stream.close("its aposthog.Client was closed")
    throttle = pipeline.throttle
    if isinstance(throttle, RateLimiter):
        with contextlib.suppress(Exception):
            throttle.close()
    pipeline.transport.abandon()
    pipeline.close_finished = True
    pipeline.finalizer.detach()


def _dropped_unclosed(transport: Transport) -> None:
    """A client's pipeline was collected before `aclose()`: warn, and close its session."""
    if not transport.holds_session():
        return  # never sent anything: it held nothing
    warnings.warn(
        "an aposthog.Client was garbage-collected unclosed: use 'async with "
        "aposthog.Client(...) as ph:' or 'await ph.aclose()'",
        ResourceWarning,
        stacklevel=2,
    )
    transport.abandon()
