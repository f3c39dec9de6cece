"""
`Client`: configuration, the session's lifetime and the resources. How requests are
sent (limiter, timeouts, retries) is in `_sending`.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from . import _config
from ._config import ClientConfig, resolve_config
from ._limiter import RateLimiter, RateLimitStore, make_rate_limiter
from ._ratelimit import RateLimits
from ._retry import RetryPolicy
from ._sending import NOT_GIVEN, NotGiven, Sender, _Shared
from ._transport import ClientSession, Transport

if TYPE_CHECKING:
    from .resources.batch_exports import BatchExports
    from .resources.conversations import Conversations
    from .resources.customer_profile_configs import CustomerProfileConfigs

__all__ = ["NOT_GIVEN", "Client", "NotGiven"]


class Client(Sender):
    """
    An async client for PostHog's environment-scoped API.

    Create one, share it between every task, close it once (`async with` or `aclose()`).

    Args:
        api_key: a personal API key; else `POSTHOG_PERSONAL_API_KEY`.
        host: `"us"`, `"eu"` or a URL; else `POSTHOG_HOST`; default `https://us.posthog.com`.
        project_id: the environment's id; else `POSTHOG_PROJECT_ID`; default `"@current"`.
        max_concurrency: requests in flight at once across every task using this client.
        timeout: seconds for a whole JSON call (None: no limit). Per call: `timeout=`.
        connect_timeout: seconds to open a connection.
        stream_idle_timeout: seconds a conversation stream may go without a byte
            (PostHog sends a keepalive every 15 s of silence).
        max_retries: retries after the first attempt (0 turns retrying off).
        retry: a full `RetryPolicy` (its `max_retries` is overridden by `max_retries`).
        session: an `aiohttp.ClientSession` to borrow; the client never closes it.
        rate_limits: `"auto"` (PostHog Cloud's published throttles on the `us`/`eu`
            hosts, none elsewhere), None (off) or an `aposthog.RateLimits`. Before each
            request the client waits for room in its windows, holding no connection
            and no concurrency slot; a 429 holds back its bucket as long as PostHog asks.
        rate_limit_store: where the windows are counted: this process (default), or an
            `aposthog.RedisRateLimitStore` shared by every process and machine using
            the key.

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
        rate_limits: RateLimits | str | None = "auto",
        rate_limit_store: RateLimitStore | None = None,
    ) -> None:
        policy = retry if retry is not None else RetryPolicy()
        if max_retries is not None:
            policy = attrs.evolve(policy, max_retries=max_retries)
        self._config = resolve_config(
            api_key=api_key,
            host=host,
            project_id=project_id,
            max_concurrency=max_concurrency,
            timeout=timeout,
            connect_timeout=connect_timeout,
            stream_idle_timeout=stream_idle_timeout,
            retry=policy,
        )
        throttle = make_rate_limiter(
            rate_limits,
            rate_limit_store,
            base_url=self._config.base_url,
            api_key=self._config.api_key,
        )
        transport = Transport(session=session, connect_timeout=self._config.connect_timeout)
        self._shared = _Shared(transport, self._config.max_concurrency, throttle)
        self._header_cache: dict[tuple[str, bool], dict[str, str]] = {}
        self._init_resources()

    def _init_resources(self) -> None:
        from .resources.batch_exports import BatchExports
        from .resources.conversations import Conversations
        from .resources.customer_profile_configs import CustomerProfileConfigs

        self.batch_exports: BatchExports = BatchExports(self)
        self.conversations: Conversations = Conversations(self)
        self.customer_profile_configs: CustomerProfileConfigs = CustomerProfileConfigs(self)

    # ----------------------------------------------------------------- configuration

    @property
    def config(self) -> ClientConfig:
        """The resolved configuration (its repr never shows the key)."""
        return self._config

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The rate limiter every task and `with_options()` view shares (None: off)."""
        return self._shared.throttle

    @property
    def base_url(self) -> str:
        """The PostHog host this client talks to."""
        return self._config.base_url

    @property
    def project_id(self) -> str:
        """The environment (project) id, or `@current`."""
        return self._config.project_id

    def with_options(
        self,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
        stream_idle_timeout: float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry: RetryPolicy | NotGiven = NOT_GIVEN,
    ) -> Client:
        """
        A view of this client with other timeouts or retries, sharing its session and limiter.

        Example:
            ```python
            fast = ph.with_options(timeout=2, max_retries=0)
            export = await fast.batch_exports.get(export_id)
            ```
        """
        changes: dict[str, Any] = {}
        if not isinstance(timeout, NotGiven):
            changes["timeout"] = _config._positive("timeout", timeout)
        if not isinstance(stream_idle_timeout, NotGiven):
            changes["stream_idle_timeout"] = _config._positive(
                "stream_idle_timeout", stream_idle_timeout
            )
        policy = self._config.retry if isinstance(retry, NotGiven) else retry
        if not isinstance(max_retries, NotGiven):
            policy = attrs.evolve(policy, max_retries=max_retries)
        changes["retry"] = policy
        view = object.__new__(Client)
        view._config = attrs.evolve(self._config, **changes)
        view._shared = self._shared
        view._header_cache = self._header_cache
        view._init_resources()
        return view

    def __repr__(self) -> str:
        state = "closed" if self._shared.closed else "open"
        return (
            f"<aposthog.Client {state} base_url={self._config.base_url!r} "
            f"project_id={self._config.project_id!r}>"
        )

    # ----------------------------------------------------------------- lifetime

    async def __aenter__(self) -> Client:
        self._check_usable()
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
        Close every open stream and the session (if the client created it). Idempotent.

        Shared views from `with_options()` close together with their client.
        """
        shared = self._shared
        if shared.closed:
            return
        shared.closed = True
        with anyio.CancelScope(shield=True):
            for stream in list(shared.streams):
                await stream.aclose()
            await shared.transport.aclose()
            if shared.throttle is not None:
                await shared.throttle.aclose()

    @property
    def closed(self) -> bool:
        """Whether `aclose()` was called."""
        return self._shared.closed
