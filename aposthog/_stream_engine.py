"""
The engine under `ConversationStream`: one HTTP response at a time, read chunk by chunk
into the SSE decoder and the `ConversationState` accumulator, re-attached when it drops.

Every await that touches the network runs inside `_io_scope`, so `aclose()` from another
task (or `Client.aclose()`) can wake a reader blocked on a silent stream at once. Every
error and every cancellation that escapes `_next()` closes the response first, in a
shielded scope, and is then re-raised: cancellation is never swallowed.

Timeouts suit a 30-minute answer: no total timeout; the client's `stream_idle_timeout`
(aiohttp's socket-read timeout, which PostHog's 15-second keepalive comments reset)
raises `APITimeoutError`; opening the connection is bounded by `connect_timeout`.

A connection that drops mid-answer is re-attached (`content: null`, a fresh trace id,
bounded attempts with jittered backoff). PostHog then replays the run from its start;
`ConversationState` recognises the replayed events, so callers see each one once.
"""

from __future__ import annotations

import collections
import logging
import random
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ._conversation_state import ConversationState, Delivery
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    ClientStateError,
    NotFoundError,
    ResponseDecodeError,
)
from ._http import segment
from ._retry import backoff
from ._transport import StreamResponse
from .models.conversations import Conversation
from .models.events import decode_event
from .sse import SSEDecoder, SSEError

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["DEFAULT_MAX_REATTACH_ATTEMPTS", "StreamEngine"]

logger = logging.getLogger("aposthog")
DEFAULT_MAX_REATTACH_ATTEMPTS = 5
_RNG = random.Random()
_EVENT_STREAM = "text/event-stream"


class StreamEngine:
    """The connection, reading and re-attach machinery of `ConversationStream`."""

    def __init__(
        self,
        client: Client,
        *,
        conversation_id: str,
        body: dict[str, Any],
        trace_id: str,
        session_id: str | None = None,
        max_reattach_attempts: int = DEFAULT_MAX_REATTACH_ATTEMPTS,
    ) -> None:
        self._client = client
        self._conversation_id = conversation_id
        self._body = body
        self._trace_id = trace_id
        self._session_id = session_id
        self._max_reattach = max_reattach_attempts
        self._state = ConversationState()
        self._pending: collections.deque[Delivery] = collections.deque()
        self._response: StreamResponse | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._decoder = SSEDecoder()
        self._io_scope: anyio.CancelScope | None = None
        self._busy = False  # a task is inside _pump (reading, connecting or backing off)
        self._started = False
        self._refused = False
        self._finished = False
        self._complete = False
        self._closed = False
        self._cancelled = False
        self._failed_reattaches = 0

    async def _close(self) -> None:
        # Idempotent; safe from any task, and from a generator being finalized.
        if self._closed:
            return
        self._closed = True
        self._finished = True
        if self._io_scope is not None:
            # Another task is reading: cancelling its scope wakes it, and it stops.
            self._io_scope.cancel()
        chunks = self._drop_connection()
        if chunks is not None and not self._busy:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    async def _next_or_none(self) -> Delivery | None:
        try:
            return await self._next()
        except StopAsyncIteration:
            return None

    async def _next(self) -> Delivery:
        if self._busy:
            # Outside the try: the stream belongs to the task already reading it.
            raise ClientStateError("this ConversationStream is being read by another task")
        try:
            while True:
                if self._closed:
                    raise StopAsyncIteration
                if self._pending:
                    return self._pending.popleft()
                if self._finished:
                    raise StopAsyncIteration
                await self._pump()
        except StopAsyncIteration:
            raise
        except BaseException:
            # An error, or the consuming task was cancelled: the response must not outlive
            # it. _close() shields its own await; the exception is always re-raised.
            await self._close()
            raise

    async def _pump(self) -> None:
        """Make progress: connect, or read one chunk, or re-attach."""
        self._busy = True
        try:
            with anyio.CancelScope() as scope:
                self._io_scope = scope
                if self._closed:
                    scope.cancel()
                await self._step()
        finally:
            self._io_scope = None
            self._busy = False

    async def _step(self) -> None:
        if not self._started:
            self._started = True
            try:
                await self._connect(first=True)
            except APIStatusError as exc:
                # Refused before any run began (a 409 means someone else's run is going):
                # a cancel() now must not stop a generation this stream never started.
                self._refused = exc.status < 500
                raise
            except APIConnectionError as exc:
                if not exc.reached_server:
                    raise
                # The POST may have started the run: re-attaching (never re-sending the
                # message) finds out, and streams it if so.
                await self._reattach(exc)
            return
        chunks = self._chunks
        assert chunks is not None
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            self._decode(None)
            self._finish()
            return
        except APITimeoutError as exc:
            idle = self._client.config.stream_idle_timeout
            raise APITimeoutError(
                f"PostHog sent nothing for {idle} s (stream_idle_timeout)",
                method="POST",
                path=exc.path,
            ) from exc
        except APIConnectionError as exc:
            await self._reattach(exc)
            return
        self._decode(chunk)

    def _decode(self, chunk: bytes | None) -> None:
        """Feed a chunk (None: the end of the body) to the decoder and the accumulator."""
        try:
            events = self._decoder.close() if chunk is None else self._decoder.feed(chunk)
        except SSEError as exc:
            raise ResponseDecodeError(f"unreadable event stream from PostHog: {exc}") from exc
        for sse in events:
            event = decode_event(sse.event, sse.data)
            delivery = self._state.feed(event, raw=f"{sse.event}\n{sse.data}")
            if delivery is not None:
                self._pending.append(delivery)
                self._failed_reattaches = 0  # progress: a later drop gets fresh attempts

    def _finish(self) -> None:
        # PostHog has no end event: the end of the body is the end of the run.
        self._finished = True
        self._complete = True
        self._drop_connection()

    def _drop_connection(self) -> AsyncIterator[bytes] | None:
        response, chunks = self._response, self._chunks
        self._response = self._chunks = None
        self._client._unregister_stream(self)
        if response is not None:
            response.close()
        return chunks

    async def _connect(self, *, first: bool) -> None:
        if first:
            body = dict(self._body)
        else:
            # Only what a re-attach needs: a resume_payload sent again on a conversation
            # that finished meanwhile would start a second run.
            body = {"content": None, "conversation": self._conversation_id}
            self._trace_id = str(uuid.uuid4())
        body["trace_id"] = self._trace_id
        request = self._client.build_request("POST", "conversations", json=body)
        if self._session_id is not None:
            # PostHog reads the session from this header, not from the body field.
            request = attrs.evolve(request, headers=(("X-POSTHOG-SESSION-ID", self._session_id),))
        self._client._register_stream(self)
        if not first:
            self._state.begin_attempt()  # PostHog replays the run from its start
        self._decoder = SSEDecoder()
        response = await self._client.open_stream(request)
        if self._closed:  # closed by another task just as the headers arrived
            response.close()
            return
        if response.content_type != _EVENT_STREAM:
            snippet = await _snippet(response)
            raise ResponseDecodeError(
                f"PostHog answered POST {request.path} with {response.status} "
                f"{response.content_type or 'no content type'}, not {_EVENT_STREAM}",
                body=snippet,
                path=request.path,
            )
        self._response = response
        self._chunks = response.chunks()

    async def _reattach(self, error: APIConnectionError) -> None:
        self._drop_connection()
        policy = self._client.config.retry
        while True:
            self._failed_reattaches += 1
            if self._failed_reattaches > self._max_reattach:
                raise error
            delay = backoff(policy, self._failed_reattaches, _RNG)
            logger.info(
                "re-attaching to conversation %s in %.2f s (attempt %d of %d) after: %s",
                self._conversation_id,
                delay,
                self._failed_reattaches,
                self._max_reattach,
                error,
            )
            await anyio.sleep(delay)
            try:
                await self._connect(first=False)
                return
            except APIConnectionError as exc:
                error = exc
            except BadRequestError as exc:
                # "Cannot continue streaming from an idle conversation": the run ended
                # while we were away. Its final messages are in the conversation.
                if not await self._catch_up():
                    raise error from exc
                return

    async def _catch_up(self) -> bool:
        sent = self._body.get("content")
        if self._state.human_id is None and not isinstance(sent, str):
            return False  # nothing seen of this run: its messages cannot be told apart
        try:
            conversation: Conversation = await self._client.fetch(
                Conversation, "GET", "conversations", segment(self._conversation_id)
            )
        except NotFoundError:
            return False  # not titled yet: PostHog will not show it
        deliveries = self._state.catch_up(
            conversation.messages, sent=sent if isinstance(sent, str) else None
        )
        if deliveries is None:
            return False
        self._pending.extend(deliveries)
        self._finish()
        return True


async def _snippet(response: StreamResponse, limit: int = 500) -> str:
    """The start of an unexpected body, for the error message; the response is closed."""
    data = b""
    chunks = response.chunks()
    try:
        async for chunk in chunks:
            data += chunk
            if len(data) >= limit:
                break
    except APIConnectionError:
        pass
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        response.close()
    return data[:limit].decode("utf-8", errors="replace")
