"""
`RedisRateLimitStore`: the windows of a key in Redis, shared by every process and
machine that uses the key.

Each check-and-count is one Lua script, so it is atomic on the server, and it reads
Redis's clock (`TIME`), so machines whose clocks disagree still agree on the windows.
A window is a sorted set of request times (microseconds), trimmed and counted by the
script exactly like the in-process log; a 429's pause is one more key. Keys name a hash
of the host and the API key, never the key, and expire once their window has passed.
They carry a `{…}` hash tag (one slot for all of a key's windows, as a script touching
several keys needs on a Redis Cluster), but the store takes one Redis, not a cluster:
a `RedisCluster` client is refused.

redis-py (`pip install 'aposthog[redis]'`) is imported only when a store is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import math
import os
import secrets
import sys
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import anyio

from ._deadlines import COUNTS_CANCELLATIONS, apart
from ._limiter import RateLimitStore, RateLimitStoreError
from ._proxy import redact
from ._ratelimit import LONGEST_WINDOW, Rate
from ._retry import as_seconds

__all__ = ["RedisRateLimitStore"]

# KEYS: the pause, then per window its sorted set and the widest span counted in it,
# then the bucket's line: its requests by the time they came, and by the time each must
# be heard of again by.
# ARGV: the request's unique member (its ticket), then a limit and a span (µs) per window,
# then how late (µs) a request in the line may be heard of again before it is dropped
# from it, the µs since the request came (-1: it asks once, and does not join the line),
# the number of requests waiting behind it in its process followed by each one's
# ticket and µs since it came, then the number of its process's requests that left the
# line since its last question followed by their tickets (out of the line first: one
# that left as its turn came was ahead of the asker, and the removal sent on its own
# may reach Redis after this question).
# Returns 0 once the request is counted, else the µs to wait before asking again.
# Clients sharing a key may count with margins of their own: each counts the entries of
# its own span, and the set keeps them for the widest span asked with lately (its key
# lives as long as that span, renewed by the clients that ask with it).
# The line serves the fleet in the order its requests came: a place that frees is for
# the request that waited longest, however far from Redis its process is. Each process's
# requests ask in turn, one at a time, and bring the ones waiting behind them into the
# line. A request's wait counts those ahead of it as if counted already, so the line
# wakes one place at a time. A request not heard of in time (its process ended) leaves.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local line, asks = KEYS[#KEYS - 1], KEYS[#KEYS]
local member = ARGV[1]
-- Counted already by an earlier run for this request, whose answer never came (a
-- client that sends the script again after a timeout or a lost connection): it goes,
-- counted once, and leaves the line. (A request asks again only after a wait > 0,
-- when it was not counted: its member is in the bucket's history only once counted.)
if redis.call('ZSCORE', string.sub(KEYS[1], 1, -6) .. 'history', member) then
  redis.call('ZREM', line, member)
  redis.call('ZREM', asks, member)
  return 0
end
local windows = (#KEYS - 3) / 2
local base = 2 * windows + 2
local late = tonumber(ARGV[base])
local gone = redis.call('ZRANGEBYSCORE', asks, '-inf', now)
for i = 1, #gone do redis.call('ZREM', line, gone[i]) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', asks, '-inf', now) end
-- this request, and those waiting behind it in its process, by when each came (a
-- request that asks only once, age < 0, yields to the line but does not join it)
local age = tonumber(ARGV[base + 1])
local waiting = {}
local first = 0  -- no earlier than the asker: they came after it (its first question
if age >= 0 then  -- may have been slow, a connection opened, and placed it late)
  redis.call('ZADD', line, 'NX', now - age, member)
  waiting[1] = member
  first = tonumber(redis.call('ZSCORE', line, member))
end
-- Those behind it, in the order they came in its process, where none can go before the
-- one ahead of it: each no earlier than the one before. Placed by earlier questions,
-- whose round trips took longer or shorter, one may sit before a request that came
-- before it there (or before the asker): it moves up to it, or the asker would count
-- as ahead of itself a request that waits for it, and wait for good.
local behind = tonumber(ARGV[base + 2])
local floor = first
for i = 1, behind do
  local other = ARGV[base + 1 + 2 * i]
  local placed = redis.call('ZSCORE', line, other)
  if placed then
    placed = tonumber(placed)
    if placed < floor then
      redis.call('ZADD', line, 'XX', floor, other)
      placed = floor
    end
  else
    placed = math.max(now - tonumber(ARGV[base + 2 + 2 * i]), floor)
    redis.call('ZADD', line, placed, other)
  end
  floor = placed
  waiting[#waiting + 1] = other
end
local left = base + 3 + 2 * behind
for i = left + 1, left + tonumber(ARGV[left] or '0') do
  redis.call('ZREM', line, ARGV[i])
  redis.call('ZREM', asks, ARGV[i])
end
local ahead
if age >= 0 then
  ahead = redis.call('ZCOUNT', line, '-inf', string.format('(%d', first))
else
  ahead = redis.call('ZCARD', line)
end
local wait = 0
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
if blocked > now then wait = blocked - now end
-- The asker's windows, then those another client sharing the store named (registered
-- in a hash, window key -> "limit span until"): PostHog counts every request of the
-- key in each of its throttles. A window named for the first time starts from the
-- bucket's history of requests.
local stem = string.sub(KEYS[1], 1, -6)
local registry, history = stem .. 'windows', stem .. 'history'
local wins, mine, known = {}, {}, {}
for w = 1, windows do
  wins[w] = {KEYS[2 * w], tonumber(ARGV[2 * w]), tonumber(ARGV[2 * w + 1])}
  mine[KEYS[2 * w]] = true
end
local reg = redis.call('HGETALL', registry)
for i = 1, #reg, 2 do
  known[reg[i]] = true
  if not mine[reg[i]] then
    local limit, span, till = string.match(reg[i + 1], '^(%d+) (%d+) (%d+)$')
    if till and tonumber(till) > now then
      wins[#wins + 1] = {reg[i], tonumber(limit), tonumber(span)}
    else
      redis.call('HDEL', registry, reg[i])
    end
  end
end
for w = 1, windows do
  if not known[KEYS[2 * w]] then
    local past = redis.call(
      'ZRANGEBYSCORE', history, string.format('(%d', now - wins[w][3]), '+inf', 'WITHSCORES')
    for i = 1, #past, 2 do redis.call('ZADD', KEYS[2 * w], 'NX', past[i + 1], past[i]) end
  end
end
local widest = {}
local widest_all = 0
for w = 1, #wins do
  local key = wins[w][1]
  local limit = wins[w][2]
  local span = wins[w][3]
  if w <= windows then
    widest[w] = math.max(span, tonumber(redis.call('GET', KEYS[2 * w + 1]) or '0'))
  else
    widest[w] = span
  end
  if widest[w] > widest_all then widest_all = widest[w] end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - widest[w]))
  local after = string.format('(%d', now - span)
  local count = redis.call('ZCOUNT', key, after, '+inf')
  local place = count + ahead - limit
  if place >= 0 then
    local free = span
    if place < count then
      local entry = redis.call(
        'ZRANGEBYSCORE', key, after, '+inf', 'WITHSCORES', 'LIMIT', place, 1)
      free = tonumber(entry[2]) + span - now
    end
    if free > wait then wait = free end
  end
end
if wait > 0 and ahead > 0 then
  -- One ahead may be a request whose process ended: ask again once it may be dropped.
  local before = '+inf'
  if first > 0 then before = string.format('(%d', first) end
  local others = redis.call('ZRANGEBYSCORE', line, '-inf', before, 'LIMIT', 0, 64)
  local placed = {}
  for i = 1, #waiting do placed[waiting[i]] = true end
  for i = 1, #others do
    local due = redis.call('ZSCORE', asks, others[i])
    if due then
      local dropped = tonumber(due) - now + 1000
      if dropped > 0 and dropped < wait then wait = dropped end
    elseif not placed[others[i]] then
      -- In the line with no time to be heard of by (this run's own get theirs below):
      -- left by a store of an earlier version, which forgot a request in two steps. No
      -- sweep would ever drop it: it goes now (the next question counts without it).
      redis.call('ZREM', line, others[i])
    end
  end
end
local expiry = math.ceil((wait + late) / 1000) + 1000
for i = 1, #waiting do redis.call('ZADD', asks, now + wait + late, waiting[i]) end
for _, key in ipairs({line, asks}) do
  if redis.call('PTTL', key) < expiry then redis.call('PEXPIRE', key, expiry) end
end
if wait > 0 then return wait end
for w = 1, #wins do
  local span = wins[w][3]
  local expiry = math.ceil(widest[w] / 1000) + 1000
  if w <= windows then
    if span >= widest[w] then
      redis.call('SET', KEYS[2 * w + 1], string.format('%d', span), 'PX', expiry)
    end
    redis.call('HSET', registry, wins[w][1],
      string.format('%d %d %d', wins[w][2], span, now + widest[w]))
  end
  redis.call('ZADD', wins[w][1], now, member)
  redis.call('PEXPIRE', wins[w][1], expiry)
end
if #wins > 0 then
  local expiry = math.ceil(widest_all / 1000) + 1000
  redis.call('ZADD', history, now, member)
  redis.call('ZREMRANGEBYSCORE', history, '-inf', string.format('%d', now - widest_all))
  redis.call('PEXPIRE', history, expiry)
  if redis.call('PTTL', registry) < expiry then redis.call('PEXPIRE', registry, expiry) end
end
if age >= 0 then
  redis.call('ZREM', line, member)
  redis.call('ZREM', asks, member)
end
return 0
"""

# KEYS: the bucket's line, by the time each request came and by the time each must be
# heard of again by. ARGV: how late (µs) a request may be heard of again, then the
# tickets of requests that still wait. Each one still in the line is to be heard of
# again no earlier than that late from now; one the line dropped (or that left it) is
# not placed again: it takes its place again when it asks (see `_ACQUIRE`).
_KEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local line, asks = KEYS[1], KEYS[2]
local due = now + tonumber(ARGV[1])
local kept = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', line, ARGV[i]) then
    local was = redis.call('ZSCORE', asks, ARGV[i])
    if not was or tonumber(was) < due then redis.call('ZADD', asks, due, ARGV[i]) end
    kept = kept + 1
  end
end
if kept > 0 then
  local expiry = math.ceil(tonumber(ARGV[1]) / 1000) + 1000
  for _, key in ipairs({line, asks}) do
    if redis.call('PTTL', key) < expiry then redis.call('PEXPIRE', key, expiry) end
  end
end
return kept
"""

#: How late a request in the fleet's line may ask again (after the wait it was told)
#: before the line forgets it: its process ended, or its event loop is that busy. Such a
#: request, when it asks again, takes its place again (by when it came).
_LATE = 2.0

# KEYS: the sorted sets a request is to leave (its windows, the bucket's history, the
# line and its times to be heard of by). ARGV: its ticket. In one step: removed from the
# line and its times apart, a question of the line's head arriving between the two (one
# that named it, sent before it left) would place it again in the line without a time,
# where no sweep finds it, and every request of the fleet would count it ahead for good.
_FORGET = """
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 0
"""

# KEYS: the pause. ARGV: its length in µs. Extends the pause, never shortens it.
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local length = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + length > current then
  local expiry = math.ceil(length / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%d', now + length), 'PX', expiry)
end
return 0
"""

_NOT_SENT = "the request was not sent"
_NOT_STORED = "the pause was not stored"

#: The longest pause the store writes: ten years, in seconds, as a window's longest.
_LONGEST_PAUSE = LONGEST_WINDOW

_MISSING_EXTRA = (
    "RedisRateLimitStore needs redis-py: install the extra with `pip install 'aposthog[redis]'`"
)


#: How long a request counted but never sent is tried to be taken back (seconds).
_FORGET_WITHIN = 3.0


class AsyncRedis(Protocol):
    """What the store uses of a `redis.asyncio.Redis` (typed without importing redis-py)."""

    @property
    def connection_pool(self) -> Any: ...

    def register_script(self, script: str) -> Any: ...

    # Not `async def`: redis-py types its commands as returning an Awaitable, which a
    # coroutine-typed member would refuse (`RedisRateLimitStore(redis.asyncio.Redis())`).
    def zrem(self, name: str, *values: str) -> Awaitable[Any]: ...

    def hkeys(self, name: str) -> Awaitable[Any]: ...


def _redis_module() -> Any:
    # By name: redis-py is an optional extra, absent from many installs and type checks.
    try:
        importlib.import_module("redis.asyncio")
        return importlib.import_module("redis")
    except ImportError as exc:
        raise ModuleNotFoundError(_MISSING_EXTRA, name="redis") from exc


def _safe_location(url: str) -> str:
    """The URL without its password, for messages and reprs."""
    url = redact(url)  # only what follows the last `@` (see there)
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.hostname or ""
    except ValueError:  # not even a URL: nothing of it is shown
        return "(an unreadable URL)"
    try:
        port = parts.port
    except ValueError:  # `host:abc`: the port is not shown
        port = None
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _without_frames(exc: BaseException, outside: BaseException | None) -> BaseException:
    """
    `exc`, and every exception in its cause and context chain, without their tracebacks:
    redis-py's frames hold the password (`auth_args` while it authenticates), and a
    traceback printed with its locals (pytest's `--showlocals`, rich, Sentry) shows them.
    The exceptions themselves (their types and messages) stay. `outside` (the exception
    the caller was handling when it called the store, which Python chains to) is the
    caller's: it and what it chains to are left as they are.
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set() if outside is None else {id(outside)}
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        pending += [e for e in (error.__cause__, error.__context__) if e is not None]
    return exc


def _micros(seconds: float) -> int:
    """Seconds (>= 0) as whole microseconds."""
    return max(0, round(seconds * 1_000_000))


class _Pool:
    """A redis-py client and the store's scripts on it: one event loop's connections."""

    __slots__ = ("acquire", "asking", "forget", "keep", "penalize", "redis")

    def __init__(self, redis: AsyncRedis) -> None:
        self.redis = redis
        #: Questions to Redis under way on these connections (a request's, a pause's).
        self.asking = 0
        self.acquire = redis.register_script(_ACQUIRE)
        self.penalize = redis.register_script(_PENALIZE)
        self.keep = redis.register_script(_KEEP)
        self.forget = redis.register_script(_FORGET)


class RedisRateLimitStore(RateLimitStore):
    """
    Rate-limit windows in Redis: one budget per key for every process and machine.

    Args:
        redis: a URL (`"redis://host:6379/0"`, `"rediss://…"`, `"unix://…"`) or a
            `redis.asyncio.Redis` client. A store made from a URL owns its connections
            (one pool per event loop that uses it: clients on loops of their own, in
            threads, share it) and closes them when the last client using it closes; a
            client passed in is borrowed, never closed, and works on one event loop at a
            time (another loop's request fails with `RateLimitStoreError`).
        prefix: the start of every Redis key the store writes.
        timeout: seconds a request waits for Redis's answer, connecting included, with
            a client passed in too (whose own `socket_timeout` is None unless set).

    If Redis cannot be reached, requests fail with `aposthog.RateLimitStoreError` (an
    `APIConnectionError`): they are never sent past the limits silently.

    Example:
        ```python
        store = aposthog.RedisRateLimitStore("redis://redis.internal:6379/0")
        async with aposthog.Client(rate_limit_store=store) as ph:
            ...
        ```
    """

    def __init__(
        self, redis: str | AsyncRedis, *, prefix: str = "aposthog:ratelimit", timeout: float = 5.0
    ) -> None:
        module = _redis_module()
        given: object = prefix  # typed as str, checked as anything
        if not isinstance(given, str):
            raise TypeError(f"prefix must be a non-empty string, got {type(given).__name__}")
        if not given:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
        seconds: object = timeout  # (the same)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, got {type(seconds).__name__}")
        timeout = as_seconds(seconds)
        if not (0 < timeout < math.inf):  # (NaN too)
            raise ValueError(
                f"timeout must be a positive, finite number of seconds, got {seconds!r}"
            )
        # Made from a URL, the store owns its connections (new ones for each loop).
        self._connect: Callable[[], AsyncRedis] | None = None
        if isinstance(redis, str):
            url = redis

            retry = importlib.import_module("redis.asyncio.retry").Retry
            no_backoff = importlib.import_module("redis.backoff").NoBackoff

            def connect() -> AsyncRedis:
                # A pooled connection the server closed (Redis restarted, failed over)
                # is found out on use: the command is sent once more, on a new one. The
                # script counts a request once, run again or not (see `_ACQUIRE`).
                client: AsyncRedis = module.asyncio.Redis.from_url(
                    url,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    retry=retry(no_backoff(), 1, supported_errors=(module.ConnectionError,)),
                    retry_on_error=[module.ConnectionError],  # (redis-py 5 reads this)
                )
                return client

            try:
                client = connect()  # the URL is checked here, once
            except ValueError as exc:
                message = f"redis URL {_safe_location(redis)!r}: "
                if "@" in redis:
                    # redis-py's words may quote what it misread as the port: the password.
                    message += "not a URL redis-py reads (check its port and database)"
                else:
                    message += str(exc)
                # Not left in this frame (a traceback printed with its locals): the
                # URL holds the password.
                redis = url = ""
                raise ValueError(message) from None
            self._location = _safe_location(redis)
            self._connect = connect
        elif isinstance(redis, module.asyncio.Redis):
            client = redis
            kwargs = client.connection_pool.connection_kwargs
            self._location = (
                f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}"
            )
        else:
            raise TypeError(
                f"redis must be a URL or a redis.asyncio.Redis client, got {type(redis).__name__}"
            )
        # The connections of each event loop that used the store; the first, made above,
        # goes to the first loop that asks.
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = (
            weakref.WeakKeyDictionary()
        )
        self._unused: _Pool | None = _Pool(client)
        #: Clients made inside each event loop that use the store (`_attach`).
        self._loop_users: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = (
            weakref.WeakKeyDictionary()
        )
        self._prefix = prefix
        self._timeout = timeout
        # Members of a sorted set must be unique: this store's id and a counter, the id
        # drawn again in a process forked from this one (which copies both).
        self._member_prefix = secrets.token_hex(6)
        self._pid = os.getpid()
        self._counter = itertools.count()
        self._users = 0
        # Its tasks in the background, by what they do: requests forgotten, and places
        # in a line kept (see `_settle`).
        self._forgetting: set[asyncio.Task[None]] = set()
        self._renewing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        # `getattr`: a store refused by `__init__` is shown too (a traceback's locals).
        location = getattr(self, "_location", "(not configured)")
        return f"<RedisRateLimitStore {location} prefix={getattr(self, '_prefix', None)!r}>"

    def _pool(self, outcome: str) -> _Pool:
        """
        The Redis connections of the running event loop (redis-py's are bound to one);
        `outcome`: what a refusal says became of the request.
        """
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None:
            return pool
        pool, self._unused = self._unused, None
        if pool is None:
            if self._connect is not None:
                self._forget_ended_loops()
                pool = _Pool(self._connect())
            else:
                # A borrowed client: its connections belong to the loop that used it.
                home, pool = next(iter(self._pools.items()))
                if not home.is_closed():
                    raise RateLimitStoreError(
                        f"the rate-limit store (Redis at {self._location}) was given a "
                        "redis.asyncio.Redis client that another running event loop uses: "
                        f"give each event loop its own store, or the store a URL; {outcome}"
                    )
                del self._pools[home]
        self._pools[loop] = pool
        return pool

    def _key(self, scope: str, bucket: str, name: str) -> str:
        return f"{self._prefix}:{{{scope}}}:{bucket}:{name}"

    async def try_acquire(
        self, scope: str, bucket: str, windows: tuple[Rate, ...], margin: float
    ) -> float:
        # Asked once (it may never ask again): it yields to the fleet's line, not joins it.
        return await self._ask(scope, bucket, windows, margin, self._ticket(), -1.0)

    def _ticket(self) -> str:
        if self._pid != os.getpid():  # forked (a `--preload`ed app's worker, a pool)
            self._pid = os.getpid()
            self._member_prefix = secrets.token_hex(6)
        return f"{self._member_prefix}:{next(self._counter)}"

    async def _ask(
        self,
        scope: str,
        bucket: str,
        windows: tuple[Rate, ...],
        margin: float,
        ticket: str,
        age: float = 0.0,
        waiting: tuple[tuple[str, float], ...] = (),
        left: tuple[str, ...] = (),
    ) -> float:
        keys = [self._key(scope, bucket, "pause")]
        member = ticket
        args: list[str | int] = [member]
        for rate in windows:
            window = self._key(scope, bucket, f"{round(rate.per * 1000)}ms")
            keys += [window, f"{window}-widest"]
            args += [rate.limit, math.ceil((rate.per + margin) * 1_000_000)]
        keys += [self._key(scope, bucket, "line"), self._key(scope, bucket, "line-asks")]
        args += [math.ceil(_LATE * 1_000_000), _micros(age) if age >= 0 else -1, len(waiting)]
        for other, since in waiting:
            args += [other, _micros(since)]
        args += [len(left), *left]
        outside = sys.exc_info()[1]  # the caller's, chained to any error of redis-py's
        pool = self._pool(_NOT_SENT)
        pool.asking += 1
        try:
            # The store's own bound, for a borrowed client too (redis-py waits for an
            # answer without end by default): a Redis that stopped answering fails the
            # request here, not a call's whole deadline later, or never.
            wait = await self._bounded(pool.acquire(keys=keys, args=args))
        except Exception as exc:
            # Redis's errors, and redis-py's own on a server that answers as Redis does
            # not (the wrong service on the port, a proxy in a bad state). An answer that
            # came too late (the store's `timeout`) or a connection lost after sending
            # may follow a script that counted the request: taken back, as below.
            self._take_back(pool, keys, member)
            raise self._failure(exc, _NOT_SENT) from _without_frames(exc, outside)
        except BaseException:
            # Cancelled while the script ran: it may have counted a request that will
            # never be sent. Take it back, in the background (this task is cancelled).
            self._take_back(pool, keys, member)
            raise
        finally:
            pool.asking -= 1
        if wait.__class__ is not int or wait < 0:  # the script answers microseconds, >= 0
            problem = ValueError(f"its answer is no wait in microseconds: {wait!r:.60}")
            raise self._failure(problem, _NOT_SENT) from None
        return wait / 1_000_000

    def _take_back(self, pool: _Pool, keys: list[str], member: str) -> None:
        """Forget, in the background, a request the script may have counted (never sent)."""
        if len(keys) > 3:  # its windows' entries, and its place in the line
            stem = keys[0][: -len("pause")]  # the bucket's: its history, and the windows
            keys = [*keys[1:-2:2], *keys[-2:], f"{stem}history"]  # others named
            forget = self._forget(pool, keys, member, registry=f"{stem}windows")
            self._in_background(forget, self._forgetting)

    def _leave(self, scope: str, bucket: str, ticket: str) -> None:
        # In the background (the request is refused, or cancelled): the line's next
        # request need not wait for it to be forgotten (`_LATE` after its last wait).
        try:
            pool = self._pools.get(asyncio.get_running_loop())
        except RuntimeError:
            return
        if pool is None:
            return
        keys = [self._key(scope, bucket, "line"), self._key(scope, bucket, "line-asks")]
        self._in_background(self._forget(pool, keys, ticket), self._forgetting)

    def _keep_every(self) -> float:
        # Four times in each `_LATE`: a renewal delayed by a busy event loop, or lost
        # with a connection, still comes in time.
        return _LATE / 4

    def _keep(self, scope: str, bucket: str, tickets: tuple[str, ...]) -> None:
        # In the background, as `_leave`: the head's wait goes on meanwhile, and a
        # renewal that fails leaves the next question to the store to find that out. On
        # the loop's connections, made again if they were closed (by a client of the
        # loop that closed while another, made outside any loop, still waits), as a
        # question to the store makes them.
        if not tickets:
            return
        try:
            pool = self._pool(_NOT_SENT)
        except RateLimitStoreError:  # a borrowed client another running loop uses
            return
        keys = [self._key(scope, bucket, "line"), self._key(scope, bucket, "line-asks")]
        args: list[str | int] = [math.ceil(_LATE * 1_000_000), *tickets]
        self._in_background(self._renew(pool, keys, args), self._renewing)

    @staticmethod
    def _in_background(work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _renew(self, pool: _Pool, keys: list[str], args: list[str | int]) -> None:
        with contextlib.suppress(Exception):  # a task of its own: its failure has no reader
            await self._bounded(pool.keep(keys=keys, args=args))

    async def _forget(
        self, pool: _Pool, keys: list[str], member: str, *, registry: str | None = None
    ) -> None:
        # Tried again a little later while Redis is slow or away (a request counted by a
        # script whose answer came too late met the same slowness), for a few seconds:
        # `aclose()` waits for it that long at most.
        loop = asyncio.get_running_loop()
        end = loop.time() + _FORGET_WITHIN
        pause = 0.25
        while True:
            try:
                await asyncio.wait_for(
                    self._zrem(pool, keys, member, registry), timeout=max(end - loop.time(), 0.0)
                )
                return
            except Exception:  # a task of its own: its failure has no reader
                if loop.time() + pause >= end:
                    return  # the place frees when the window passes
            await asyncio.sleep(pause)
            pause *= 2

    @staticmethod
    async def _zrem(pool: _Pool, keys: list[str], member: str, registry: str | None) -> None:
        if registry is not None:  # the windows other clients named count it too
            named = await pool.redis.hkeys(registry)
            keys = [*keys, *(k.decode() if isinstance(k, bytes) else str(k) for k in named)]
        await pool.forget(keys=keys, args=[member])  # in one step (see `_FORGET`)

    async def penalize(self, scope: str, bucket: str, seconds: float) -> None:
        # At most ten years: the script's microseconds stay exact in Lua's numbers (a
        # pause past about 3e11 s was dropped, or made the script fail), and no wait of
        # that length is begun anyway (`RetryPolicy.max_retry_after`).
        micros = math.ceil(min(seconds, _LONGEST_PAUSE) * 1_000_000)
        outside = sys.exc_info()[1]
        pool = self._pool(_NOT_STORED)
        pool.asking += 1
        try:
            await self._bounded(
                pool.penalize(keys=[self._key(scope, bucket, "pause")], args=[micros])
            )
        except Exception as exc:  # (as in `try_acquire`)
            raise self._failure(exc, _NOT_STORED) from _without_frames(exc, outside)
        finally:
            pool.asking -= 1

    async def _bounded(self, command: Awaitable[Any]) -> Any:
        """
        `command` (a request to Redis), within the store's `timeout`: `TimeoutError` when
        no answer came. On Python 3.10, whose tasks count no cancellations, in a task of
        its own (`apart`): a cancellation of the caller landing in the loop step where
        the time runs out would be taken for the timeout's, and lost.
        """
        if COUNTS_CANCELLATIONS:
            return await self._within(command)
        return await apart(self._within(command))

    async def _within(self, command: Awaitable[Any]) -> Any:
        with anyio.fail_after(self._timeout):
            return await command

    def _failure(self, exc: BaseException, outcome: str) -> RateLimitStoreError:
        if isinstance(exc, TimeoutError) and not str(exc):  # the store's own bound
            what = f"no answer within {self._timeout:g} s"
        else:
            what = f"{type(exc).__name__}: {exc}"
        return RateLimitStoreError(
            f"the rate-limit store (Redis at {self._location}) failed: {what}; {outcome}"
        )

    def _attach(self) -> None:
        self._users += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a client made outside any event loop
            return
        self._loop_users[loop] = self._loop_users.get(loop, 0) + 1

    async def _detach(self) -> None:
        self._users = max(0, self._users - 1)
        loop = asyncio.get_running_loop()
        left = self._loop_users.pop(loop, 0) - 1
        if left > 0:
            self._loop_users[loop] = left
        if self._users == 0:
            await self.aclose()
        elif left <= 0 and self._connect is not None:
            # Clients of other loops still use the store, none made in this one: this
            # loop's connections close with its client, and the store lets the loop go
            # (a thread's `asyncio.run()` per request ends it next).
            await self._settle(loop)  # (nothing of the loop's left on the connections)
            pool = self._pools.get(loop)
            if pool is not None:
                if not pool.asking:
                    del self._pools[loop]
                # Else a client made outside any event loop asks Redis on them now: the
                # connection it holds is the loop's still, closed with that client (a
                # pool let go then would never close it: `ResourceWarning`).
                await pool.redis.connection_pool.disconnect(inuse_connections=False)

    async def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """
        Before this loop's connections close: its renewals end now (the closing clients'
        requests leave their places anyway), and its requests being forgotten are waited
        for, a while. Another loop's tasks are that loop's to end.
        """
        renewals = [task for task in self._renewing if task.get_loop() is loop]
        if renewals:
            for task in renewals:
                task.cancel()
            await asyncio.wait(renewals)  # (a cancelled command closes its connection)
        forgetting = [task for task in self._forgetting if task.get_loop() is loop]
        if forgetting:
            await asyncio.wait(forgetting, timeout=_FORGET_WITHIN + 1)

    def _forget_ended_loops(self) -> None:
        for loop in [loop for loop in self._pools if loop.is_closed()]:
            del self._pools[loop]

    async def aclose(self) -> None:
        """
        Close the connections of a store made from a URL on this event loop, and forget
        those of loops that have ended (it reconnects if used again).
        """
        await self._settle(asyncio.get_running_loop())
        if self._connect is None:  # a borrowed client: never closed here
            return
        self._forget_ended_loops()
        pool = self._pools.pop(asyncio.get_running_loop(), None) or self._unused
        self._unused = None
        if pool is not None:
            await pool.redis.connection_pool.disconnect()
