"""
A fault-injecting loopback proxy in front of a FakePostHog (plain aiohttp.web).

Each request is either passed to the FakePostHog behind it and answered faithfully, or
faulted: closed before answering, reset in the middle of the headers or of the body,
stalled, answered slowly, answered 429 (with and without a hint), 5xx, invalid or
hostile JSON (thousands deep, the wrong shape, not UTF-8), a body over the client's
size limit (plain, or a gzip bomb), or, for a conversation
stream, cut in the middle of an event or filled with hostile events.

The proxy also keeps the evidence the chaos run checks: for every non-idempotent
request that carries a per-call marker, the attempts it saw and whether an earlier
attempt may already have been acted on (anything but a refusal: 429 or 503 given
before the request went anywhere).
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import hashlib
import json
import random
import re
import socket
import struct
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["FAULTS", "ChaosProxy"]

#: Fault kinds, each equally likely once a request is chosen to be faulted.
FAULTS = (
    "close_before",
    "reset_mid_headers",
    "reset_mid_body",
    "stall",
    "slow_body",
    "429_hint",
    "429_header",
    "429_bare",
    "500",
    "502",
    "503",
    "504",
    "invalid_json",
    "deep_json",
    "deep_error_json",
    "wrong_shape",
    "not_utf8",
    "oversized",
    "gzip_bomb",
    "cut_stream",
    "hostile_stream",
)
_STREAM_FAULTS = ("cut_stream", "hostile_stream")
#: POSTs that start work on PostHog (reference: creating anything, a message, a test
#: step, a run's retry or cancel, a backfill or its cancel, unpausing with a backfill).
#: PATCH updates, pausing, plain unpausing and cancelling a conversation are idempotent.
_STARTS_WORK = tuple(
    re.compile(pattern)
    for pattern in (
        r"/batch_exports/$",
        r"/batch_exports/[^/]+/unpause/$",
        r"/run_test_step(_new)?/$",
        r"/runs/[^/]+/(retry|cancel)/$",
        r"/backfills/$",
        r"/backfills/[^/]+/cancel/$",
        r"/conversations/$",
        r"/append_message/$",
        r"/customer_profile_configs/$",
    )
)
_REFUSALS = frozenset({"429_hint", "429_header", "429_bare", "503"})
_DEEP = b"[" * 5000 + b"]" * 5000
#: Bodies over the client's max_response_size in the chaos run (1 MiB there), plain
#: and as a gzip bomb (small on the wire, 4 MiB once inflated).
_OVERSIZED = b'{"detail": "' + b"x" * (2 * 1024 * 1024) + b'"}'
_BOMB = gzip.compress(b"[" + b"0," * (2 * 1024 * 1024) + b"0]", compresslevel=9)
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


def _reset(request: web.Request) -> None:
    """Close the connection with a TCP reset (SO_LINGER 0), not a polite FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class _Dropped(Exception):
    """The connection was closed on purpose; there is nothing to answer."""


class ChaosProxy:
    """
    Serve on 127.0.0.1, pass requests to `upstream`, fault a share of them.

    Attributes:
        url: the proxy's base URL once started.
        faults: how often each fault was injected.
        attempts: non-idempotent attempts by marker: a list of outcomes, each
            "refused" (429/503 before acting) or "maybe-acted".
        duplicates: markers that arrived again after a "maybe-acted" attempt.
        requests: how many requests arrived.
    """

    def __init__(
        self, upstream: str, *, seed: int, fault_rate: float = 0.2, stall: float = 5.0
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.seed = seed
        self._seen: collections.Counter[str] = collections.Counter()
        self.fault_rate = fault_rate
        self.stall = stall
        self.url = ""
        self.faults: collections.Counter[str] = collections.Counter()
        self.attempts: dict[str, list[str]] = collections.defaultdict(list)
        self.duplicates: list[str] = []
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a stalled handler ends when its client goes away.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(trust_env=False)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ evidence

    def _marker(self, request: web.Request, body: bytes) -> str | None:
        """
        The per-call marker of a request that starts work on PostHog, so must not be
        repeated once it may have been acted on; None for one that may be repeated.

        Which requests start work is stated here from PostHog's behaviour, not taken
        from the client's route table: the run checks the client against it.
        """
        path = request.path
        if request.method != "POST" or not any(p.search(path) for p in _STARTS_WORK):
            return None
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if path.endswith("/unpause/") and not (
            isinstance(payload, dict) and payload.get("backfill")
        ):
            return None  # unpausing an unpaused export does nothing
        if path.rstrip("/").endswith("/conversations"):
            if not isinstance(payload, dict) or payload.get("content") is None:
                return None  # a re-attach (content: null) starts nothing
            return f"conversation {payload.get('conversation')}"
        return f"{request.method} {path} {body.decode('utf-8', 'replace')}"

    def _record(self, marker: str | None, outcome: str) -> None:
        if marker is None:
            return
        seen = self.attempts[marker]
        if "maybe-acted" in seen:
            self.duplicates.append(marker)
        seen.append(outcome)

    # ------------------------------------------------------------------ handling

    def _fault(self, request: web.Request, body: bytes) -> tuple[str | None, random.Random]:
        """
        The fault for this attempt, from the seed and the request alone: the same calls
        meet the same faults whatever order concurrency gives their requests.
        """
        key = f"{request.method} {request.rel_url.raw_path_qs} {hashlib.sha256(body).hexdigest()}"
        attempt = self._seen[key]
        self._seen[key] += 1
        rng = random.Random(f"{self.seed}:{key}:{attempt}")
        stream = request.method == "POST" and request.path.rstrip("/").endswith("/conversations")
        if rng.random() >= (self.fault_rate * 1.5 if stream else self.fault_rate):
            return None, rng
        if stream:
            return rng.choice((*FAULTS, *_STREAM_FAULTS * 3)), rng
        return rng.choice([f for f in FAULTS if f not in _STREAM_FAULTS]), rng

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        marker = self._marker(request, body)
        fault, rng = self._fault(request, body)
        if fault is not None:
            self.faults[fault] += 1
        self._record(marker, "refused" if fault in _REFUSALS else "maybe-acted")
        try:
            return await self._answer(request, body, fault, rng)
        except _Dropped:
            # The transport is already closed; aiohttp needs a response object anyway.
            return web.Response(status=499)

    async def _answer(
        self, request: web.Request, body: bytes, fault: str | None, rng: random.Random
    ) -> web.StreamResponse:
        if fault == "close_before":
            assert request.transport is not None
            request.transport.close()
            raise _Dropped
        if fault == "stall":
            await asyncio.sleep(self.stall)
            _reset(request)
            raise _Dropped
        if fault is not None and fault.startswith("429"):
            return self._throttled(fault)
        if fault in ("500", "502", "503", "504"):
            text = rng.choice([b"", b"<html>Bad gateway</html>", b'{"detail": "upstream failed"}'])
            return web.Response(status=int(fault), body=text)
        if fault == "oversized":
            return web.Response(status=200, body=_OVERSIZED, content_type="application/json")
        if fault == "gzip_bomb":
            return web.Response(
                status=200,
                body=_BOMB,
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        if fault == "deep_error_json":
            return web.Response(
                status=400, body=b'{"detail": ' + _DEEP + b"}", content_type="application/json"
            )
        if fault == "reset_mid_headers":
            assert request.transport is not None
            request.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: applic")
            _reset(request)
            raise _Dropped

        upstream = await self._forward(request, body)
        status, headers, content_type, payload = upstream
        if content_type.startswith("text/event-stream"):
            return await self._stream(request, status, headers, payload, fault, rng)
        if fault == "reset_mid_body" and payload:
            return await self._partial(request, status, headers, payload)
        if fault == "slow_body":
            return await self._slow(request, status, headers, payload)
        replaced = self._replacement(fault, rng)
        if replaced is not None:
            return web.Response(status=200, body=replaced, content_type="application/json")
        return web.Response(status=status, body=payload, headers=headers)

    def _throttled(self, fault: str) -> web.Response:
        detail = "Request was throttled."
        headers = {}
        if fault == "429_hint":
            detail += " Expected available in 1 second."
        elif fault == "429_header":
            headers["Retry-After"] = "1"
        body = json.dumps(
            {"type": "throttled_error", "code": "throttled", "detail": detail, "attr": None}
        )
        return web.Response(status=429, text=body, content_type="application/json", headers=headers)

    @staticmethod
    def _replacement(fault: str | None, rng: random.Random) -> bytes | None:
        if fault == "invalid_json":
            return rng.choice([b'{"results": [1,', b"not json at all", b"{", b"\x00"])
        if fault == "deep_json":
            return rng.choice([_DEEP, b'{"results": ' + _DEEP + b', "count": 1}'])
        if fault == "wrong_shape":
            return rng.choice(
                [b"[]", b"42", b'"text"', b'{"id": 5, "results": "x"}', b"null", b"{}"]
            )
        if fault == "not_utf8":
            return b'{"name": "\xff\xfe\xfd"}'
        return None

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, dict[str, str], str, Any]:
        assert self._session is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP_HEADERS and k.lower() != "host"
        }
        upstream = await self._session.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            data=body or None,
            headers=headers,
            allow_redirects=False,
        )
        content_type = upstream.headers.get("Content-Type", "")
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
        if content_type.startswith("text/event-stream"):
            return upstream.status, out_headers, content_type, upstream
        try:
            payload = await upstream.read()
        finally:
            upstream.release()
        # Paginated answers carry absolute `next` URLs: keep the client on the proxy.
        payload = payload.replace(self.upstream.encode(), self.url.encode())
        return upstream.status, out_headers, content_type, payload

    async def _partial(
        self, request: web.Request, status: int, headers: dict[str, str], payload: bytes
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(payload)
        await response.prepare(request)
        await response.write(payload[: max(1, len(payload) // 2)])
        _reset(request)
        raise _Dropped

    async def _slow(
        self, request: web.Request, status: int, headers: dict[str, str], payload: bytes
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(payload)
        await response.prepare(request)
        step = max(1, len(payload) // 4)
        for start in range(0, len(payload), step):
            await asyncio.sleep(0.05)
            await response.write(payload[start : start + step])
        await response.write_eof()
        return response

    async def _stream(
        self,
        request: web.Request,
        status: int,
        headers: dict[str, str],
        upstream: aiohttp.ClientResponse,
        fault: str | None,
        rng: random.Random,
    ) -> web.StreamResponse:
        try:
            response = web.StreamResponse(status=status, headers=headers)
            await response.prepare(request)
            if fault == "hostile_stream":
                for data in (_DEEP, b"[1,", b"\xff\xfe", b'{"type": 42}', b"null"):
                    await response.write(b"event: message\ndata: " + data + b"\n\n")
                await response.write_eof()
                return response
            cut_after = rng.randint(1, 2000) if fault == "cut_stream" else None
            sent = 0
            async for chunk in upstream.content.iter_any():
                if cut_after is not None and sent + len(chunk) >= cut_after:
                    # Stop inside an event: half of it goes out, then the connection drops.
                    await response.write(chunk[: max(1, cut_after - sent)])
                    _reset(request)
                    raise _Dropped
                await response.write(chunk)
                sent += len(chunk)
            if cut_after is not None:
                _reset(request)
                raise _Dropped
            await response.write_eof()
            return response
        finally:
            upstream.release()
