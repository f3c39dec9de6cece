"""
`StreamEngine`, what a `ConversationStream` has underneath: one HTTP response at a time,
read chunk by chunk into the SSE decoder and the `ConversationState` accumulator, and
re-attached when it drops.

Opening the stream and every re-attach are attempts of one `Call` (see `_pipeline`):
the same policy decides whether to try again and after how long. A connection that
drops mid-answer, or goes silent for longer than `stream_idle_timeout`, is re-attached
(`content: null`, a fresh trace id) up to `RetryPolicy.max_reattaches` times in a row
(an event arriving starts the count over). PostHog replays what its Redis stream of the
run holds, then follows live. When a reader goes away PostHog deletes that stream
(`AgentExecutor.stream_conversation`'s `finally: delete_stream()`, `ee/hogai/core/
executor.py`), and the run's later events create it anew: so a re-attach replays only
what the run produced after the drop (up to the stream's cap of about 1000 events), and
what it produced before the drop but had not delivered is gone from the stream, final
messages included. (A server that keeps the stream, or a proxy that keeps reading PostHog
when the client's side drops, replays the run from its start instead.)
`ConversationState` recognises replayed events, so callers see each once. A re-attach
that finds the run over (400) catches up from the conversation, if this run's human
message is in it: the one sent with this stream's trace id, never an earlier one with the
same text.

So a stream that re-attached (at least once) reconciles with the conversation when its
run ends (`GET conversations/{id}/`) before it reports it complete: every final message
of this run it did not receive is delivered (after the events received; in `messages`,
at its place in the conversation), see `ConversationState.catch_up` for their text. When
the GET fails, or the conversation does not show this run (its human message, or the
last answer received), nothing proves no message was lost: `IncompleteStreamError`, the
stream not complete, as for a run whose end never arrived. A stream that never
re-attached received every event of its run: it sends no GET, and nothing changes on
its reading path.

A re-attach before this run's human message was seen may find another run in progress:
the message's POST never reached PostHog (or its run ended meanwhile), and another client
sent one. Its replay starts with that run's human message, with that request's trace id
(PostHog echoes the one the message was sent with): the stream takes nothing of it. It
catches up from the conversation if this run's message is there (a run that ended),
else raises the error that lost the echo (the POST's `APIConnectionError`, with
`reached_server=True`): PostHog never processed the message. `cancel()` then stops
nothing (the run is another client's). Events before that human message are delivered
before it is known to be another run's: only its `conversation` event (when that run
created the conversation), which describes the conversation, this stream's too, not
the run (its title is null until after the message). An echo without a trace id (older
PostHog) is taken as this run's, as before: nothing tells the runs apart then.

`aclose()` from another task (or `Client.aclose()`) wakes a reader at once, whatever it
waits for: a chunk (closing the response wakes that read), or a connection or a backoff
(those run inside `_io_scope`, which it cancels). Every error and every cancellation that
escapes `next()` closes the response first, in a shielded scope, and is then re-raised:
cancellation is never swallowed.

Reading is the steady state of a thousand open streams, so a waiting stream holds as
little as possible: one plain await per chunk (no cancel scope, no async generator
between the consumer and the socket), no wire copy of a message event, and no queue
(an exhausted iterator). Message events are parsed from the decoder's raw bytes
(`SSEDecoder.feed_wire`, `_stream_events.wire_message`): on a long answer, decoding each
snapshot to text first cost more than everything else the client does with it.

What a stream keeps is bounded by `max_response_size`, as a JSON answer is: each event
is bounded by the decoder (16 MiB), and what the stream holds on to (its final messages,
the other events it must recognise if replayed, the text it gave out) is counted in wire
bytes, plus a little for each piece. A snapshot counts only for the text it adds (it
replaces the one before). A stream whose count passes the limit, which no PostHog answer
comes near, delivers what it decoded and then raises `ResponseTooLargeError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import attrs

from . import _routes as routes
from ._conversation_state import ConversationState, Delivery, OtherRunError, made_key
from ._deadlines import COUNTS_CANCELLATIONS, apart
from ._errors import (
    APIConnectionError,
    APIStatusError,
    BadRequestError,
    ClientStateError,
    ConflictError,
    IncompleteStreamError,
    NotFoundError,
    PostHogError,
    RateLimitError,
    ResponseDecodeError,
    ResponseTooLargeError,
)
from ._http import Request, segment
from ._observe import IGNORED, StreamObserver
from ._pipeline import Call, Failure, Unsent, Unwanted, is_research_429, running_loop
from ._stream_events import wire_message
from ._stream_failures import dropped_failure, nothing_started
from ._transport import StreamResponse
from .models.conversations import Conversation, ConversationStatus, PendingApproval
from .models.events import MessageEvent, decode_event
from .models.messages import AssistantMessage, HumanMessage
from .sse import SSEDecoder, SSEError

if TYPE_CHECKING:
    from ._api import Api

__all__ = ["StreamEngine"]

#: The longest a cancel waits for the answer to a POST on its way when the client has no
#: `timeout` (which bounds that wait otherwise): `answered()`.
_LONGEST_SEND = 30.0

_PIECE = 64
logger = logging.getLogger("aposthog")


_CONTRADICTED = frozenset({("approved", "reject"), ("rejected", "approve")})
"""An approval's status, and a resume's action, that tell another decision was applied."""


class _Withheld(Unsent):
    """A message's attempt found its stream cancelled: nothing was sent (nor counted)."""


class _MessageWanted:
    """
    Whether a stream's message is still wanted when the rate limiter is about to count
    it: not once the stream is cancelled or closed; not known while a
    `conversations.cancel(id)` of it is under way (until its answer).
    """

    __slots__ = ("_engine",)

    def __init__(self, engine: StreamEngine) -> None:
        self._engine = engine

    def now(self) -> bool | None:
        engine = self._engine
        if engine.cancelled or engine.closed:
            return False
        return None if engine._cancels else True

    async def decided(self) -> None:
        await self._engine._cancel_refused()


class _RunGoesOn(Exception):
    """A re-attached stream ended, but its run goes on: re-attach again."""


"""Bytes counted for each piece a stream keeps, beyond its own size: the objects' cost."""


_LEFT_EARLY: Final = (
    "this ConversationStream was closed before PostHog ended it, when a loop over it was "
    "left early (a break, or anext(aiter(stream)), whose loop is dropped at once; "
    "anext(stream) reads one event and leaves the stream open); result() holds what "
    "arrived"
)


class StreamEngine:
    """The connection, reading and re-attach machinery of one `ConversationStream`."""

    # Slots: a thousand open streams hold a thousand of these (a dict costs each 1 KB).
    __slots__ = (
        "__weakref__",
        "_answered",
        "_awaited",
        "_bucket",
        "_busy",
        "_call",
        "_cancel_pending",
        "_cancels",
        "_closed_why",
        "_decoder",
        "_echo_lost",
        "_ended",
        "_failure",
        "_first_token",
        "_io_scope",
        "_kept",
        "_max_reattach",
        "_message_trace_id",
        "_nested_sizes",
        "_not_a_stream",
        "_observer",
        "_other_run",
        "_path",
        "_pending",
        "_post_status",
        "_queued_met",
        "_reattached",
        "_response",
        "_resume",
        "_session_id",
        "_too_large",
        "api",
        "body",
        "cancelled",
        "closed",
        "complete",
        "conversation_id",
        "ended_with",
        "finished",
        "left_early",
        "run_may_exist",
        "sending",
        "started",
        "state",
        "trace_id",
        "turn",
    )

    def __init__(
        self,
        api: Api,
        *,
        conversation_id: str,
        body: dict[str, Any],
        trace_id: str,
        session_id: str | None = None,
        max_reattach: int | None = None,
        bucket: str = "ai",
    ) -> None:
        self.api = api
        self.conversation_id = conversation_id
        self.body = body
        self.trace_id = trace_id
        # The trace id the message is sent with (re-attaches get fresh ones): PostHog
        # stores it with the human message, which a catch-up finds this run's by.
        self._message_trace_id = trace_id
        # The failure after which this run's echo was awaited on a re-attach (the error to
        # raise if the run found is another's), and whether one was found.
        self._echo_lost: Failure | None = None
        self._other_run = False
        self._queued_met = False  # the human message met after this run's own messages
        self._session_id = session_id
        self._max_reattach = (
            api.config.retry.max_reattaches if max_reattach is None else max_reattach
        )
        self._bucket = bucket
        self.state = ConversationState()
        # A resume with no message of its own: whether PostHog applied its decision (or
        # streamed another run) is told by the conversation (`_not_applied`).
        self._resume = body.get("content") is None and "resume_payload" in body
        if self._resume:
            self.state.expect_resume()
        # The `HumanMessage` of the turn the reader is in: that of the last one handed out
        # (the state has seen the whole chunk, which may already hold the next turn's).
        self.turn: HumanMessage | None = None
        # Decoded, not yet given out: an iterator over one chunk's deliveries (a deque
        # would cost 760 bytes to every waiting stream; an exhausted iterator holds none).
        self._pending: Iterator[Delivery] = iter(())
        self._response: StreamResponse | None = None
        self._decoder = SSEDecoder()
        self._io_scope: anyio.CancelScope | None = None
        self._busy = False  # a task is inside pump (reading, connecting or backing off)
        self._call: Call | None = None
        self._observer: StreamObserver | None = None
        self._first_token = False
        self._answered = False  # PostHog answered an attempt with its 200 stream
        self._post_status: int | None = None  # the status of the last POST PostHog refused
        # The error of an attempt answered with something that is no event stream (a
        # proxy's login page): its status is the stream's, on its span.
        self._not_a_stream: ResponseDecodeError | None = None
        self._ended = False  # the call's end was reported (to its observer)
        self._failure: BaseException | None = None
        # Bytes kept (see the module's docstring), the size of the last snapshot of each
        # subagent (the growth of its text is what it keeps), and the error for a stream
        # that kept too much, raised once its deliveries are taken.
        self._kept = 0
        self._nested_sizes: dict[str, int] | None = None
        self._too_large: ResponseTooLargeError | None = None
        self._path = ""  # the request's path, for messages
        self.started = False
        # Whether an attempt may have started a run on PostHog (its POST may have reached
        # the server and was not refused): only then has cancel() anything to stop.
        self.run_may_exist = False
        # An attempt's POST is on its way, unanswered; `answered()` waits for it.
        self.sending = False
        self._awaited: anyio.Event | None = None
        self.finished = False
        self.complete = False
        self.closed = False
        # The conversation as fetched to confirm the run's end, if it was (a run that ended
        # at a tool call, a resume): it shows what the run ended waiting for.
        self.ended_with: Conversation | None = None
        # Why the stream was closed, when its reader did not close it (the client was
        # closed, a read was cancelled or failed): a later read raises, as the run may
        # not have ended. None for a close the reader made (`aclose()`, a loop left).
        self._closed_why: str | None = None
        # Whether a loop left early closed it (`StreamLoop`, dropped), not `aclose()`.
        self.left_early = False
        self.cancelled = False
        # Set while `conversations.cancel(id)` waits for PostHog's answer (`begin_cancel`):
        # a cut meanwhile, or an attempt withheld, waits for it to tell stopped from refused.
        self._cancel_pending: anyio.Event | None = None
        self._cancels = 0  # how many `conversations.cancel(id)` are under way for it
        # A re-attach replayed the run: events may have been lost in its gap, so the end
        # of the run is checked against the conversation (see the module's docstring).
        self._reattached = False

    async def answered(self) -> None:
        """
        Wait until the POST on its way, if any, is answered or fails: only then has
        PostHog created what it starts (a cancel waits for it). At most the stream's
        `timeout` (an attempt's longest), or `_LONGEST_SEND` without one.
        """
        if not self.sending:
            return
        if self._awaited is None:
            self._awaited = anyio.Event()
        with anyio.move_on_after(self.api.config.timeout or _LONGEST_SEND):
            await self._awaited.wait()

    async def aclose(self) -> None:
        """
        Close the response now. Idempotent; safe from any task of the client's event
        loop (`ClientStateError` from another, as `Client.aclose()` says; from a loop
        that has ended, the stream is closed without touching its connection, which went
        with it). A finalizer calls `close()`.
        """
        home = self.api.pipeline.loop
        if home is not None and home is not running_loop():
            if not home.is_closed():
                self.check_loop()  # raises
            with contextlib.suppress(Exception):  # its response belongs to the ended loop
                self.close()
            return
        self.close()

    def check_loop(self) -> None:
        """
        `ClientStateError` when the stream is used from an event loop its client does not
        belong to: its connection is that loop's (asyncio's own `RuntimeError` escaped).
        """
        home = self.api.pipeline.loop
        if home is not None and home is not running_loop():
            raise ClientStateError(
                "this ConversationStream belongs to another event loop (its client's):"
                " read, cancel and close it there"
            )

    def begin_cancel(self) -> None:
        """
        `conversations.cancel(id)` asks PostHog to stop this stream's run: until
        `settle_cancel()`, PostHog ending the body may be the cancel's end, so a cut, or a
        message's attempt, waits for the answer (`_cancel_refused`). Several may be under
        way at once (a user's /stop pressed twice, a cancel retried).
        """
        self._cancels += 1
        if self._cancel_pending is None:
            self._cancel_pending = anyio.Event()

    def settle_cancel(self, *, stopped: bool) -> None:
        """
        The answer to a `begin_cancel()`'s request: `stopped`, the stream is closed as
        cancelled. Else (refused, failed, or its caller cancelled) it is one cancel fewer
        under way; when none is left, a read or an attempt waiting for this goes on, as
        if no cancel had been asked.
        """
        self._cancels -= 1
        if stopped:
            self.cancelled = True
            self.close()  # wakes what waits
        elif not self._cancels:
            self._wake_cancel_waiters()

    def _wake_cancel_waiters(self) -> None:
        pending, self._cancel_pending = self._cancel_pending, None
        if pending is not None:
            pending.set()

    @property
    def _cancelling(self) -> bool:
        """Whether the stream is cancelled, or a `conversations.cancel(id)` of it under way."""
        return self.cancelled or self._cancels > 0

    async def _cancel_refused(self) -> bool:
        """
        Once every `conversations.cancel(id)` under way is answered: whether they were
        all refused (the stream reads on). False for a stream cancelled (`stream.cancel()`
        closes it, refused or not) or closed meanwhile.
        """
        while self._cancels and not self.closed:
            pending = self._cancel_pending
            assert pending is not None  # set while a cancel is under way, until a close
            await pending.wait()
        return not (self.cancelled or self.closed)

    def close(self, why: str | None = None) -> None:
        """
        `aclose()` without awaiting: a loop's iterator calls it when dropped. `why`: the
        stream is closed under its reader (see `_after_close`), for this reason.
        """
        if self.closed:
            return
        if why is not None:
            self._closed_why = why
        self.closed = True
        self.finished = True
        self._wake_cancel_waiters()  # a read waiting for a cancel's answer: closed, it ends
        if self._io_scope is not None:
            # Another task is connecting or waiting to re-attach: cancelling its scope
            # wakes it, and it stops. One waiting for a chunk is woken by the close below.
            self._io_scope.cancel()
        self._drop_connection()
        self.api.pipeline.streams.discard(self)
        if self._answered:
            if why is not None and not self.complete:
                # Closed under its reader (the client closed): as a call the close cuts
                # short, the span's error is the ClientStateError its reader meets.
                self._end(ClientStateError(f"the stream was closed before its end: {why}"))
            else:
                self._end(None)  # left early: the call ended with the 200 it was answered
        self._report_outcome()

    def __del__(self) -> None:
        # Dropped open: neither read to its end nor closed (a loop closes it when it ends
        # or is left). Closed here all the same; the warning points at the leak.
        if not getattr(self, "started", False) or self.finished:
            return
        warnings.warn(
            f"unclosed conversation stream {self.conversation_id}: close it (`async with`, "
            "`aclose()`, `cancel()`) or read it to the end; PostHog may still be generating",
            ResourceWarning,
            source=self,
            stacklevel=1,
        )
        with contextlib.suppress(RuntimeError):  # its event loop is already closed
            self.close()

    async def next(self) -> Delivery:
        """The next delivery; `StopAsyncIteration` at the end."""
        delivery = await self.next_or_none()
        if delivery is None:
            raise StopAsyncIteration
        return delivery

    def take(self) -> Delivery | None:
        """
        A delivery already decoded, without awaiting (None: await `next_or_none()`).
        One chunk holds many events: readers take them here before awaiting the next.
        """
        if self._busy:
            raise ClientStateError("this ConversationStream is being read by another task")
        self.check_loop()
        if self.closed:
            return self._after_close()
        delivery = next(self._pending, None)
        if delivery is not None and not delivery.text:  # a turn's start has no text
            self._note_turn(delivery)
        return delivery

    def _note_turn(self, delivery: Delivery) -> None:
        message = getattr(delivery.event, "message", None)
        if isinstance(message, HumanMessage):
            self.turn = message

    async def next_or_none(self) -> Delivery | None:
        """The next delivery, or None at the end."""
        if self._busy:
            # Outside the try: the stream belongs to the task already reading it.
            raise ClientStateError("this ConversationStream is being read by another task")
        self.check_loop()  # outside too: nothing of the stream is touched from there
        try:
            while True:
                if self.closed:
                    break
                delivery = next(self._pending, None)
                if delivery is not None:
                    if not delivery.text:
                        self._note_turn(delivery)
                    return delivery
                if self.finished:
                    return None
                if self._too_large is not None:
                    raise self._too_large
                response = self._response
                if response is None:
                    await self.pump()  # connect
                    continue
                self._busy = True
                try:
                    chunk = await response.read_chunk()
                except APIConnectionError as exc:
                    chunk, dropped = None, exc
                finally:
                    self._busy = False
                if self._closed_meanwhile():
                    continue  # closed by another task, whose close woke this read
                if chunk is None:
                    if self._cancelling and not await self._cancel_refused():
                        self.close()  # `cancel()` from another task: PostHog ends the body
                        continue
                    await self.pump(dropped_failure(dropped, self.api.config.stream_idle_timeout))
                elif chunk:
                    self._decode(chunk)
                else:
                    self._decode(None)
                    if not self.state.run_ended:
                        if self._cancelling and not await self._cancel_refused():
                            # `cancel()` from another task: PostHog ends the run's body
                            # before it answers the cancel, which then closes the stream.
                            self.close()
                            continue
                        await self.pump(self._cut_short())
                    elif self._reattached:
                        await self.pump(reconcile=True)
                    elif self._resume:
                        await self.pump(confirm=True)
                    else:
                        self._finish()
        except BaseException as exc:
            # An error, or the consuming task was cancelled: the response must not outlive
            # it. The exception is always re-raised.
            self._fail(exc, "a read of it")
            raise
        # Outside the try: what a closed stream says is not a failure of this read.
        return self._after_close()

    async def open(self) -> None:
        """
        Send the request and wait for the answer's headers (`async with stream:`): a
        refusal, a lost connection or a cancellation closes the stream, reported as a
        read that met it would be (its span and log line say failed or cancelled).
        """
        try:
            await self.pump()
        except BaseException as exc:
            self._fail(exc, "opening it")
            raise

    def _fail(self, exc: BaseException, doing: str) -> None:
        """`exc` ended the stream while `doing`: record it, and close the stream."""
        self._failure = exc
        self._end(exc)
        if not self.closed:
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            what = "was cancelled" if cancelled else f"failed ({type(exc).__name__})"
            self.close(f"{doing} {what}, which closes the stream")

    def _after_close(self) -> Delivery | None:
        """
        A read of the closed stream. Closed by `aclose()`, the loop just ends (None): its
        reader chose to stop. Closed under it (`_closed_why`), what was already received
        is still handed out, and then the end is None only for a run that ended: for any
        other a read raises, so that no reader takes an answer cut short for a finished
        one. So does a read after a loop over the stream was left early (`left_early`)
        and closed it before its end, which no `aclose()` said: `until_done()` or a new
        loop would take what came before for the whole answer.
        """
        why = self._closed_why
        if why is None:
            if self.left_early and not (self.complete or self.cancelled):
                raise ClientStateError(_LEFT_EARLY)
            return None
        delivery = next(self._pending, None)
        if delivery is not None:
            if not delivery.text:
                self._note_turn(delivery)
            return delivery
        if self.complete:
            return None
        raise ClientStateError(
            f"this ConversationStream was closed before PostHog ended it: {why}; "
            "result() holds what arrived"
        )

    def _cut_short(self) -> Failure:
        # The body ended cleanly, but short of the run's end (a proxy or PostHog cut it,
        # or it was garbage): an incomplete answer is never a finished one.
        short = IncompleteStreamError(
            "PostHog ended the stream before the run's final message",
            method="POST",
            path=self._path,
        )
        return Failure.connection(short)

    def _closed_meanwhile(self) -> bool:
        # A call, not the attribute: type checkers keep `self.closed` narrowed across awaits.
        return self.closed

    async def pump(
        self, failure: Failure | None = None, *, reconcile: bool = False, confirm: bool = False
    ) -> None:
        """
        Connect (the first time), re-attach after `failure`, or check a re-attached run's
        end against the conversation (`reconcile`): cancellable by aclose().

        Python 3.10 tasks count no cancellations: the close's cancellation of the scope
        the work runs in (`_io_scope`) and the reader's own, landing in the same loop
        step, would be one to that scope, which would swallow both (the reader's loop
        ending quietly, its task going on). There the work runs as a task of its own.
        """
        if COUNTS_CANCELLATIONS:
            await self._pump(failure, reconcile, confirm)
        else:
            running_loop()  # before the coroutine is made: no asyncio loop, no task for it
            await apart(self._pump(failure, reconcile, confirm))

    async def _pump(self, failure: Failure | None, reconcile: bool, confirm: bool) -> None:
        self._busy = True
        try:
            with anyio.CancelScope() as scope:
                self._io_scope = scope
                if self.closed:
                    scope.cancel()
                if reconcile:
                    await self._reconcile()
                elif confirm:
                    await self._confirm_resume()
                elif failure is not None:
                    await self._reattach(failure)
                elif not self.started:
                    self.started = True
                    await self._start()
                elif self._other_run:
                    await self._disown()
        finally:
            self._io_scope = None
            self._busy = False

    async def _start(self) -> None:
        api = self.api
        # Open from now on, also while it waits for the rate limiter: counted, and closed
        # (its wait ended) by `Client.aclose()`.
        api.pipeline.streams.add(self)
        if api.observer is not None:
            observer = api.observer.stream(self.conversation_id, api.config.base_url)
            # Nobody records this stream: no report per chunk either.
            self._observer = None if observer is IGNORED else observer
        # Sending a message (or a resume decision) starts work: never sent twice. A bare
        # attach (`stream(id)`) only listens, and may be repeated.
        starts_work = self.body.get("content") is not None or "resume_payload" in self.body
        route = routes.CONVERSATION_CREATE if starts_work else routes.CONVERSATION_REATTACH
        # An attach (`stream(id)`) joins a run whose stream a reader that left may have
        # cut short: its end is checked against the conversation, as after a re-attach.
        self._reattached = not starts_work
        call = self._call = api.call(route, bucket=self._bucket, observer=self._observer or IGNORED)
        # Built (and its body encoded) before the rate limiter counts the request: a body
        # that cannot be sent fails here, having spent none of the `ai` windows.
        first = self._request(dict(self.body))

        async def first_attempt() -> StreamResponse | Failure:
            return await self._attempt(first, starts_work=starts_work)

        # The rate limiter asks before it counts the message: while a cancel of its stream
        # is under way the message keeps its turn until the answer; once the stream is
        # cancelled or closed it leaves the line uncounted (`_MessageWanted`).
        wanted = _MessageWanted(self) if starts_work else None
        withheld = False
        try:
            while True:
                try:
                    response = await call.run(
                        first_attempt, repeatable=route.repeatable, counted=withheld, wanted=wanted
                    )
                    break
                except (_Withheld, Unwanted) as exc:
                    # A cancel is under way. Stopped, it closes the stream, which cancels
                    # this wait (`_io_scope`); refused (`conversations.cancel(id)` only),
                    # the message, never sent, is sent now: withheld once the rate limiter
                    # had counted it (a cancel begun in the same moment), it is not
                    # counted again.
                    if not await self._cancel_refused():
                        await anyio.sleep_forever()
                    withheld = isinstance(exc, _Withheld)
        except RateLimitError as exc:
            if self._bucket == "ai" and is_research_429(exc):
                # A research conversation this client did not know as one: its next
                # messages wait in the research windows, where PostHog counts them.
                api.pipeline.note_research(self.conversation_id, True)
            raise
        except APIConnectionError as exc:
            if not exc.reached_server:
                raise
            # The POST may have started the run: re-attaching (never re-sending the
            # message) finds out, and streams it if so.
            await self._reattach(Failure.connection(exc))
            return
        self._adopt(response)

    async def _reattach_attempt(self) -> StreamResponse | Failure:
        # Only what a re-attach needs: a resume_payload sent again on a conversation
        # that finished meanwhile would start a second run.
        self.trace_id = str(uuid.uuid4())
        if self._observer is not None:
            self._observer.reattach(self._reattaches)
        return await self._attempt(
            self._request({"content": None, "conversation": self.conversation_id})
        )

    def _request(self, body: dict[str, Any]) -> Request:
        body["trace_id"] = self.trace_id
        route = routes.CONVERSATION_CREATE
        request = self.api.pipeline.request(route, route.fill(), json=body)
        self._path = request.path
        if self._session_id is not None:
            # PostHog reads the session from this header, not from the body field.
            request = attrs.evolve(request, headers=(("X-POSTHOG-SESSION-ID", self._session_id),))
        return request

    async def _attempt(
        self, request: Request, *, starts_work: bool = False
    ) -> StreamResponse | Failure:
        if self.closed:
            # Closed while the attempt waited (for a slot, say): the close cancelled its
            # scope. Nothing is sent, and a closed stream is not counted open again.
            await anyio.lowlevel.checkpoint_if_cancelled()
        if starts_work and self._cancelling:
            # `cancel()` from another task while this attempt waited (to retry a 503,
            # say): sent now, the message would start the very run it stops, after its
            # PATCH, with nobody to read it. Nothing is sent, and the slot this attempt
            # holds goes back at once (`cancel()`'s PATCH may wait for it): see `_start`.
            raise _Withheld
        self.api.pipeline.streams.add(self)
        # From the moment the POST is sent until its answer proves otherwise, it may have
        # started a run (an attempt cut off by a cancellation stays "may have").
        before, self.run_may_exist = self.run_may_exist, True
        self.sending = True
        try:
            with self.api.pipeline.transport.writing() as began:
                try:
                    result = await self.api.open_attempt(request)
                except BaseException:
                    if not began[0]:
                        # Cut off (cancelled) before a byte of it was written, while it
                        # connected: it started nothing, and `cancel()` must not stop a
                        # run it did not start (another device's, on this conversation).
                        self.run_may_exist = before
                    raise
        except ResponseDecodeError as exc:
            self._not_a_stream = exc
            raise
        finally:
            self.sending = False
            awaited, self._awaited = self._awaited, None
            if awaited is not None:
                awaited.set()
        if isinstance(result, Failure):
            if isinstance(result.error, APIStatusError):
                self._post_status = result.error.status
            if nothing_started(result):
                self.run_may_exist = before
        return result

    def _adopt(self, response: StreamResponse) -> None:
        if self.closed:  # closed by another task just as the headers arrived
            response.close()
            return
        self._decoder = SSEDecoder()
        self._response = response
        self._answered = True

    @property
    def _reattaches(self) -> int:
        return 0 if self._call is None else self._call.retries

    async def _reattach(self, failure: Failure) -> None:
        self._drop_connection()
        sent = self.body.get("content")
        if self.state.awaits_user:
            # The stream stopped (its body ended, or its connection broke) at a tool call
            # that may wait for the user, where PostHog ends such a run: the conversation
            # (a GET, in the ordinary window) tells that end from a cut before a
            # re-attach is sent, which PostHog's AI throttle and the client's `ai` window
            # count as a message. Whatever else it shows (the run going on, or no
            # answer), the re-attach decides.
            try:
                if await self._catch_up(latest=not isinstance(sent, str), idle_only=True):
                    return
            except ConflictError:
                raise  # a resume PostHog did not apply: no re-attach tells more
            except (_RunGoesOn, PostHogError):
                pass
        if self._echo_lost is None and self.state.human_id is None and isinstance(sent, str):
            # This run's message unseen: the run found may be another client's.
            self._echo_lost = failure
            self.state.expect_echo(sent, self._message_trace_id)
        call = self._call
        assert call is not None
        call.dropped(limit=self._max_reattach)
        try:
            response = await call.run(self._reattach_attempt, repeatable=True, after=failure)
        except BadRequestError as exc:
            # "Cannot continue streaming from an idle conversation": the run ended
            # while we were away. Its final messages are in the conversation; for a
            # stream that sent no message (`stream(id)`, a resume), its run is the
            # conversation's latest.
            if not await self._catch_up(latest=not isinstance(self.body.get("content"), str)):
                raise failure.error from exc
            return
        self.state.begin_attempt()  # PostHog replays what its stream of the run holds
        self._reattached = True
        self._adopt(response)

    def _decode(self, chunk: bytes | None) -> None:
        """Feed a chunk (None: the end of the body) to the decoder and the accumulator."""
        events: list[tuple[str, bytes]] = []
        try:
            if chunk is None:
                self._decoder.close()  # an unterminated last event is dropped: always []
            else:
                events = self._decoder.feed_wire(chunk)
        except SSEError as exc:
            raise ResponseDecodeError(f"unreadable event stream from PostHog: {exc}") from exc
        if self._observer is not None and chunk is not None:
            # Heard before its events are taken: a first token comes after its chunk.
            self._observer.received(len(events), len(chunk))
        # Called only once every delivery before was taken.
        deliveries: list[Delivery] = []
        state = self.state
        replaced = state.replaced
        kept = self._kept
        try:
            for name, data in events:
                if name == "message":  # recognised by its content
                    event = wire_message(data)
                    if event.__class__ is MessageEvent:
                        delivery = state.feed_message(event)
                    else:  # unreadable: an UnknownEvent, recognised by its wire form
                        delivery = state.feed(event, raw=b"message\n" + data)
                else:  # recognised by its wire form: as many bytes kept as were counted
                    text = data.decode("utf-8", "replace")
                    delivery = state.feed(decode_event(name, text), raw=f"{name}\n".encode() + data)
                if delivery is not None:
                    event = delivery.event
                    if (
                        event.__class__ is MessageEvent
                        and (message := event.message).__class__ is AssistantMessage
                        and message.in_progress
                    ):  # a snapshot: it replaces the one before
                        parent = message.parent_tool_call_id
                        if parent is None:  # kept: the text it adds
                            kept += len(delivery.text) + _PIECE
                        else:
                            kept += self._subagent_growth(parent, len(data))
                    elif (
                        event.__class__ is MessageEvent
                        and (being_made := made_key(event.message)) is not None
                    ):  # a notebook being written (say): it replaces the one before
                        kept += self._subagent_growth(being_made, len(data))
                    else:  # a message, or an event kept in its wire form, name included
                        kept += len(data) + _PIECE + (0 if name == "message" else len(name))
                    deliveries.append(delivery)
                    if not self._first_token and delivery.text:
                        self._first_token = True
                        if self._observer is not None:
                            self._observer.first_token()
        except OtherRunError as met:
            # Another client's run (this run's message was never seen): read no more of
            # it. The next pump catches up, or raises the error that lost the echo. (Or
            # a queued message's run, after this run's own messages: see `_disown`.)
            self._drop_connection()
            self._other_run = True
            if met.after_own:
                self._queued_met = True
                self.state.queued_behind(met.message)
            self.run_may_exist = False  # the run found is not ours: cancel() must spare it
        self._kept = kept
        limit = self.api.config.max_response_size
        if kept > limit and self._too_large is None:
            self._too_large = ResponseTooLargeError(
                f"the stream of conversation {self.conversation_id} kept more than "
                f"max_response_size ({limit} bytes) of messages and events; reading "
                "stopped there",
                limit=limit,
                path=self._path,
            )
        if deliveries:
            self._pending = iter(deliveries)
            if self._call is not None and len(deliveries) > state.replaced - replaced:
                # Progress: a later drop gets the whole re-attach budget again. Not for a
                # known message's content replaced alone (a replay that swaps two messages
                # under one id brings nothing new, however often it comes).
                self._call.progress()

    def _subagent_growth(self, parent: str, size: int) -> int:
        """
        Bytes a subagent's snapshot (or a notebook's being written) adds to what is kept:
        its growth over the last one.
        """
        sizes = self._nested_sizes
        if sizes is None:
            sizes = self._nested_sizes = {}
        previous = sizes.get(parent)
        sizes[parent] = size
        return size + _PIECE if previous is None else max(0, size - previous)

    def _finish(self) -> None:
        # PostHog has no end event: the end of the body is the end of the run.
        self.finished = True
        self.complete = True
        self._drop_connection()
        self.api.pipeline.streams.discard(self)
        self._end(None)
        self._report_outcome()

    def _drop_connection(self) -> None:
        # The stream may go on (a re-attach): it stays among the client's open streams,
        # for `open_streams` and for `Client.aclose()` to wake it while it waits.
        response, self._response = self._response, None
        if response is not None:
            response.close()

    def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        if self._call is not None and self._call.observed:
            # The span is the conversation POST's: only a POST's answer is its status
            # (the GET of a catch-up has a span of its own).
            if (
                isinstance(error, APIStatusError)
                and error.method == "POST"
                and error.path == self._path
            ):
                status: int | None = error.status
            elif self._not_a_stream is not None and error is self._not_a_stream:
                status = self._not_a_stream.status  # an answer that was no event stream
            elif self._answered:
                # Ended on a stream PostHog answered (done, a timeout's cancellation, a
                # body over max_response_size, a re-attach that failed to connect, a
                # catch-up's failure): the 200 it was answered with is kept.
                status = 200
            elif error is not None:
                status = self._post_status  # the last answer a POST had (a 400), if any
            else:
                status = None  # done from the conversation alone: no POST was answered
            self._call.end(status, error)

    def _report_outcome(self) -> None:
        observer, self._observer = self._observer, None
        if observer is None:
            return
        # (`asyncio`'s class, not anyio's lookup: a stream the collector closes may be
        # closed outside any task, or after its loop ended; aiohttp runs on asyncio.)
        if self.cancelled or isinstance(self._failure, asyncio.CancelledError):
            observer.outcome("cancelled")
        elif self._failure is not None or (self._closed_why is not None and not self.complete):
            observer.outcome("failed")  # (closed under its reader: by the client's close)
        elif not self.complete:
            observer.outcome("incomplete")
        elif self.state.result(self.conversation_id, complete=True, cancelled=False).failed:
            observer.outcome("failed")
        else:
            observer.outcome("done")

    async def _disown(self) -> None:
        """
        The re-attach found another run: catch up if this run ended meanwhile, else raise
        the error that lost its echo (PostHog never processed the message).
        """
        self._other_run = False
        queued, self._queued_met = self._queued_met, False
        if self.state.ended:
            # The conversation showed this stream's runs ended, caught up; the run the
            # re-attach met is another client's.
            self._finish()
            return
        failure = self._echo_lost
        if queued and failure is not None:
            # This run's own messages came first: the human message met starts the run of
            # a message queued behind it, streamed on after it. This run's echo, lost in
            # the gap, is caught up; the re-attach streams the queued run on.
            if not await self._catch_up(found_only=True):
                raise failure.error
            await self._reattach(self._cut_short())
            return
        if failure is None:
            # A resume that met another run first: one PostHog attached it to (the
            # decision unused), or the next, after the resumed run ended unseen. The
            # conversation tells which (`_catch_up` raises `ConflictError` for the first).
            if not await self._catch_up(latest=True, other_run=True):
                raise self._unverified("the conversation does not show the resumed run")
            return
        if not await self._catch_up():
            raise failure.error

    async def _confirm_resume(self) -> None:
        """
        A resume's stream ended with a whole run: finished, once the conversation shows
        PostHog applied the decision. A resume PostHog attached to another message's run
        streams that run, from its middle when its stream was trimmed (no human message
        tells it then): the decision still `pending`, or `auto_rejected` by that message.
        A run that failed is its own answer; a conversation that cannot be fetched leaves
        the run as received.
        """
        if self.state.failure is None:
            try:
                conversation: Conversation = await self.api.fetch(
                    Conversation, routes.CONVERSATION_GET, segment(self.conversation_id)
                )
            except PostHogError as exc:
                logger.info(
                    "conversation %s: whether the resume was applied is unconfirmed (%s)",
                    self.conversation_id,
                    type(exc).__name__,
                )
            else:
                error = self._not_applied(conversation, self._decided(conversation), other_run=True)
                if error is not None:
                    raise error
                self.ended_with = conversation
        self._finish()

    def _not_applied(
        self, conversation: Conversation, decided: PendingApproval | None, *, other_run: bool
    ) -> ConflictError | None:
        """
        For a resume, the error saying PostHog did not apply its decision, when the
        conversation shows that: its card (`decided`) `auto_rejected` (a newer message
        replaced it, or it was no longer pending), or still `pending` while another run
        goes on (or was met: `other_run`). A card still `pending` in an idle
        conversation, with no other run met, is a resume PostHog never processed: None
        (the caller's error stands).
        """
        if not self._resume or decided is None:
            return None
        payload = self.body.get("resume_payload")
        action = payload.get("action") if isinstance(payload, dict) else None
        # Decided the other way: another client's decision (the user's, in PostHog's app)
        # came first, and this resume was attached to its run.
        contradicted = (decided.decision_status, action) in _CONTRADICTED
        if decided.decision_status not in ("pending", "auto_rejected") and not contradicted:
            return None
        if (
            decided.decision_status == "pending"
            and conversation.status == ConversationStatus.IDLE
            and not other_run
        ):
            return None
        # The run met is another's: nothing of this stream's to stop (`cancel()`).
        self.run_may_exist = False
        if contradicted:
            why = (
                "another decision of it came first (from PostHog's app, say), whose run the "
                "stream met instead of the resumed one"
            )
        else:
            why = (
                "the conversation was answering another message, whose run the stream met "
                "instead of the resumed one (a pending approval can be decided again once "
                "the conversation is idle)"
            )
        return ConflictError(
            status=409,
            code="conflict",
            detail=(
                f"PostHog did not apply the decision (its approval is "
                f"{decided.decision_status}): {why}"
            ),
            method="POST",
            path=self._path,
        )

    async def _reconcile(self) -> None:
        """
        The run ended on a re-attached stream: deliver the final messages of it that the
        conversation shows and the stream lost, then finish; or, when that cannot be
        known, raise `IncompleteStreamError`.
        """
        try:
            caught_up = await self._catch_up(untitled_ok=False, latest=True)
        except _RunGoesOn:
            await self._reattach(self._cut_short())
            return
        except ConflictError:
            raise  # a resume PostHog did not apply (`_not_applied`)
        except PostHogError as exc:
            raise self._unverified("fetching the conversation failed") from exc
        if not caught_up:
            raise self._unverified("the conversation does not show the run")

    def _decided(self, conversation: Conversation) -> PendingApproval | None:
        """For a resume, the approval its `resume_payload` decided, as the conversation shows it."""
        payload = self.body.get("resume_payload")
        proposal = payload.get("proposal_id") if isinstance(payload, dict) else None
        if not isinstance(proposal, str):
            return None
        return next((a for a in conversation.pending_approvals if a.proposal_id == proposal), None)

    def resumed_calls(self, conversation: Conversation) -> set[str]:
        """
        For a resume, the ids of the tool calls of the message it continued (the run
        starts at the decided call: the message calling it came before the stream), as
        the conversation shows it; else none.
        """
        decided = self._decided(conversation)
        message_id = None if decided is None else self._decided_message(conversation, decided)
        if message_id is None:
            return set()
        for message in conversation.messages:
            if message.id == message_id and isinstance(message, AssistantMessage):
                return {call.id for call in message.tool_calls or ()}
        return set()

    @staticmethod
    def _decided_message(conversation: Conversation, approval: PendingApproval) -> str | None:
        """
        The id of the message holding the tool call `approval` is about (where the resumed
        run starts), as the conversation shows it; else None. PostHog gives each approval
        card an id of its own (`message_id`, a fresh uuid4 in `BaseAgentRunner.astream`),
        which names no message: the call is found by `original_tool_call_id`, and
        `message_id` counts only where it names a message.
        """
        messages = conversation.messages
        if approval.message_id is not None and any(m.id == approval.message_id for m in messages):
            return approval.message_id
        call = approval.original_tool_call_id
        if call is None:
            return None
        for message in reversed(messages):
            if isinstance(message, AssistantMessage) and any(
                c.id == call for c in message.tool_calls or ()
            ):
                return message.id
        return None

    def _unverified(self, why: str) -> IncompleteStreamError:
        return IncompleteStreamError(
            "the run ended after a re-attach, but messages lost while the stream was away "
            f"could not be recovered: {why}",
            method="POST",
            path=self._path,
        )

    async def _catch_up(
        self,
        *,
        untitled_ok: bool = True,
        latest: bool = False,
        other_run: bool = False,
        idle_only: bool = False,
        found_only: bool = False,
    ) -> bool:
        """
        Deliver what the conversation shows of this run that the stream lost; True when
        that ends the run (finished). `idle_only`: only in an idle conversation (a GET
        before any re-attach: one in progress goes on, a queued message's run perhaps,
        which the re-attach streams). `found_only`: True once the conversation shows this
        run (its missed messages delivered, whether it ended or not), never finished.
        """
        sent = self.body.get("content")
        at_end = latest  # a re-attached stream's body ended: the run's end is checked
        # A stream that sent no message (`stream(id)`, a resume) and never saw its run's
        # human message: at the end of its run (`latest`), the run is the conversation's
        # latest; otherwise its messages cannot be told apart.
        latest = latest and not isinstance(sent, str)
        if self.state.human_id is None and not isinstance(sent, str) and not latest:
            return False
        try:
            conversation: Conversation = await self.api.fetch(
                Conversation, routes.CONVERSATION_GET, segment(self.conversation_id)
            )
        except NotFoundError:
            if not untitled_ok:
                raise
            return False  # not titled yet: PostHog will not show it
        decided = self._decided(conversation)
        error = self._not_applied(conversation, decided, other_run=other_run)
        if error is not None:
            raise error
        if decided is not None and decided.decision_status == "pending":
            # PostHog records the decision before the resumed run starts: the conversation
            # shows nothing of a resume it never processed, and the run before's end is
            # not this one's.
            return False
        deliveries = self.state.catch_up(
            conversation.messages,
            sent=sent if isinstance(sent, str) else None,
            trace_id=self._message_trace_id,
            latest=latest,
            resumed="resume_payload" in self.body,
            resumed_after=None if decided is None else self._decided_message(conversation, decided),
            decided_call=None if decided is None else decided.original_tool_call_id,
        )
        if deliveries is None:
            return False
        self._pending = iter([*self._pending, *deliveries])
        if found_only:
            return True  # this run found (and its missed messages delivered): no more
        if (
            at_end
            and conversation.status == ConversationStatus.IN_PROGRESS
            and self.state.unsaved_failure(conversation.messages)
        ):
            # After a drop PostHog deletes the run's stream; a re-attach waits a minute
            # for the run to write again, then sends a failure of its own and ends, while
            # the run goes on (the conversation is still in progress, and holds no such
            # failure). It is no end of the run: re-attach.
            logger.info(
                "conversation %s: the re-attach's failure is PostHog's, not the run's;"
                " re-attaching",
                self.conversation_id,
            )
            self.state.withdraw_failure()
            raise _RunGoesOn
        if not self.state.run_ended and not self._ended_awaiting(conversation):
            return False  # the conversation holds no end of this run either
        if idle_only and conversation.status != ConversationStatus.IDLE:
            # A run goes on: a queued message's, which the re-attach streams (its replay
            # begins with this run's messages), or another client's (`ended_meanwhile`).
            self.state.ended_meanwhile()
            return False
        self.ended_with = conversation
        self._finish()
        return True

    def _ended_awaiting(self, conversation: Conversation) -> bool:
        """
        Whether PostHog ended the run at a tool call that waits for the user (an approval,
        a form, a client-side tool): it sends nothing more, and the conversation is idle
        until `create(resume_payload=...)` or an answer goes on with it. A run whose last
        message calls tools (none answered) ends there in an idle conversation; one whose
        last message is a tool result (another call of the same message returned, or a
        resume's approved call) only at an approval the conversation shows pending: a run
        that failed there (a failure PostHog never stores, lost with the connection) also
        leaves an idle conversation.
        """
        state = self.state
        if conversation.status != ConversationStatus.IDLE or not state.awaits_user:
            return False
        if state.stopped_at_call:
            return True
        return any(a.decision_status == "pending" for a in conversation.pending_approvals)
