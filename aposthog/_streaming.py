"""
`ConversationStream`: a PostHog AI answer as an async iterator.

The stream owns one HTTP response at a time and guarantees it never outlives its use:
`break`, leaving `async with`, an exception in the consumer and cancelling the consuming
task all close it at once, in a shielded cleanup, and cancellation is re-raised, never
swallowed. A stream that is never iterated never connects. The machinery (connecting,
reading, timeouts, re-attaching) is its `StreamEngine` (`_stream_engine`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _routes as routes
from ._errors import ClientStateError
from ._http import segment
from ._stream_engine import StreamEngine
from .models.conversations import (
    Conversation,
    ConversationResult,
    ConversationSummary,
    PendingApproval,
)
from .models.events import StreamEvent
from .models.messages import AssistantMessage, HumanMessage, Message

if TYPE_CHECKING:
    from ._api import Api

__all__ = ["BatchLoop", "ConversationStream", "StreamLoop"]

T = TypeVar("T", StreamEvent, str)


class ConversationStream:
    """
    One streamed PostHog AI answer. Created by `ph.conversations.create(...)` or
    `ph.conversations.stream(id)`, with no I/O: the request goes out on the first
    iteration, or on `async with`.

    Iterate it for typed events (`ConversationEvent`, `MessageEvent`, `StatusEvent`,
    `UpdateEvent`, `UnknownEvent`), or use `text_deltas()` for the answer's text and
    `until_done()` for the final messages. Leaving the loop early (`break`) closes the
    stream; `async with` closes it deterministically. Messages queued behind the answer
    (`ph.conversations.queue`) run on the same stream, each a `MessageEvent` with its
    `HumanMessage`, then its answer: the stream ends when PostHog's queue is empty.

    Example:
        ```python
        async with ph.conversations.create("How many signups last week?") as stream:
            async for text in stream.text_deltas():
                print(text, end="", flush=True)
        ```
    """

    __slots__ = ("__weakref__", "_engine")

    def __init__(
        self,
        api: Api,
        *,
        conversation_id: str,
        body: dict[str, Any],
        trace_id: str,
        session_id: str | None = None,
        max_reattach_attempts: int | None = None,
        bucket: str = "ai",
    ) -> None:
        self._engine = StreamEngine(
            api,
            conversation_id=conversation_id,
            body=body,
            trace_id=trace_id,
            session_id=session_id,
            max_reattach=max_reattach_attempts,
            bucket=bucket,
        )

    # ------------------------------------------------------------------ information

    @property
    def conversation_id(self) -> str:
        """The conversation's UUID, known before anything is sent."""
        return self._engine.conversation_id

    @property
    def trace_id(self) -> str:
        """The trace id of the latest request (each re-attach gets a fresh one)."""
        return self._engine.trace_id

    @property
    def conversation(self) -> ConversationSummary | None:
        """The latest `conversation` event's record (PostHog sends it for new ones only)."""
        return self._engine.state.conversation

    @property
    def messages(self) -> tuple[Message, ...]:
        """The final messages received so far, each once."""
        return self._engine.state.messages

    @property
    def question(self) -> HumanMessage | None:
        """
        The `HumanMessage` of the turn being streamed: your message's echo, then each
        queued message's once its run begins on this stream; None until the first
        arrives (or on a `stream(id)` that joined a run after its echo). It follows what
        the reader has been handed, not what the stream has decoded: text read before a
        queued message's `HumanMessage` is the earlier turn's even when both came in one
        piece of the body.

        Read it as each delta arrives to tell the answers apart, say to relay each as its
        own reply: a turn's deltas all arrive after its `HumanMessage`. When text came
        before, the first delta of a turn begins with the blank line that joins it to
        that text (`"".join(deltas)` is `result().text`); strip it for a reply of its own.

        Example:
            ```python
            replies: dict[str, str] = {}  # each message's answer, by the message's id
            async for text in stream.text_deltas():
                turn = (stream.question.id or "") if stream.question else ""
                if turn not in replies and any(replies.values()):
                    text = text.removeprefix("\\n\\n")  # joined it to the answer before
                replies[turn] = replies.get(turn, "") + text
            ```

        An answer that ended while the connection was down (a queued message's run began
        before the re-attach) gave out only the text streamed before the drop: its whole
        text is in `result().turns` once the loop ends, to complete that reply from.
        """
        return self._engine.turn

    @property
    def closed(self) -> bool:
        """Whether the stream is over: ended, closed, cancelled or failed."""
        engine = self._engine
        return engine.closed or engine.finished

    def __repr__(self) -> str:
        engine = self._engine
        if engine.closed:
            state = "closed"
        elif engine.finished:
            state = "finished"
        elif engine.started:
            state = "open"
        else:
            state = "not started"
        return f"<ConversationStream {state} conversation_id={engine.conversation_id!r}>"

    # ------------------------------------------------------------------ protocols

    async def __aenter__(self) -> ConversationStream:
        """Send the request; pre-stream errors (400, 402, 409, 429, …) raise here."""
        if not self._engine.started and not self.closed:
            await self._engine.open()  # closes the stream on any failure
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> StreamLoop[StreamEvent]:
        # A fresh iterator per loop, closing the stream when the loop ends however it ends:
        # when a `break` drops it, its `__del__` closes the response at once (an async
        # generator would be finalized by the event loop, turns later).
        return StreamLoop(self, text=False)

    async def __anext__(self) -> StreamEvent:
        """The next event (`anext(stream)` pulls one without ending the stream)."""
        return (await self._engine.next()).event

    # ------------------------------------------------------------------ helpers

    def text_deltas(self) -> StreamLoop[str]:
        """
        Only the new text of the assistant's answer, as it arrives.

        When the loop ends without an exception the run is complete, and `"".join(deltas)`
        is `result().streamed_text`; for a run that did not fail, that is `result().text`
        (the final text of this run's assistant messages, joined by a blank line), unless
        PostHog rewrote text it had already streamed, which then shows as
        `result().streamed_text != result().text`. A run that fails in-band
        (`result().failed`) also ends the loop without an exception, after the part of the
        answer it streamed, which `result().text` does not hold: check `failed` before
        presenting the text as an answer. A stream that ends before its run's final
        message raises `IncompleteStreamError` once re-attaching cannot complete it; one
        closed under its reader (the client closed, a read cancelled or failed) raises
        `ClientStateError` at the next read.
        Snapshots PostHog replays after a re-attach, and final messages that replace
        snapshots, never repeat text. Leaving the loop early closes the stream (a later
        read raises `ClientStateError`).

        Example:
            ```python
            async for text in ph.conversations.create("Top pages today?").text_deltas():
                print(text, end="", flush=True)
            ```
        """
        return StreamLoop(self, text=True)

    def text_batches(self) -> StreamLoop[str]:
        """
        The new text of the answer, as `text_deltas()` gives it, but every delta already
        received when the loop asks for the next comes joined into one piece.

        For a consumer that takes its time between pieces: a chat platform that allows
        one message edit a second gets, at each step, all the text that arrived while it
        waited, instead of falling further behind one delta at a time. Nothing waits for
        more text: a piece is ready as soon as one delta is, so the first comes as early
        as with `text_deltas()`. A piece never spans two turns: the text of a queued
        message's answer starts a new piece, read with `question` (its first piece
        begins with the blank line that joins it to the text before, as with deltas).
        `"".join(pieces)` is what `"".join(deltas)` would be; leaving the loop early
        closes the stream.

        Example:
            ```python
            reply = ""
            async for text in stream.text_batches():
                reply += text
                await chat.edit_message(message_id, reply)  # the platform's own limit
                await anyio.sleep(1)
            ```
        """
        return BatchLoop(self)

    async def until_done(self) -> ConversationResult:
        """
        Consume the rest of the stream; return the run's final messages and outcome.

        An in-band failure (`ai/failure`) is reported in the result (`.failed`,
        `.failure`), not raised, as is a `status: generation_error` (`.generation_error`);
        transport errors raise, and so does a stream that ended before its run did
        (`IncompleteStreamError`): an incomplete answer is never returned as a finished
        one.

        Example:
            ```python
            result = await ph.conversations.create("Summarise yesterday").until_done()
            print(result.text if not result.failed else "PostHog AI failed")
            ```
        """
        engine = self._engine
        while engine.take() or await engine.next_or_none() is not None:
            pass
        # Everything is read: a turn a loop held back (`text_batches()`) is read too.
        engine.turn = engine.state.question or engine.turn
        return self.result()

    def result(self) -> ConversationResult:
        """What the stream has accumulated so far (`until_done()` waits for the end first)."""
        engine = self._engine
        return engine.state.result(
            engine.conversation_id, complete=engine.complete, cancelled=engine.cancelled
        )

    async def pending_approval(self) -> PendingApproval | None:
        """
        The approval PostHog AI's run ended waiting for, once the stream has ended; else None.

        A run whose tool call needs the user's approval (creating a feature flag, say)
        ends at the message calling the tool, and PostHog streams nothing about it: the
        card is kept with the conversation (`Conversation.pending_approvals`). When, and
        only when, the run ended at a tool call, this returns the card of that call still
        `pending`, as the conversation showed it when the stream confirmed that end (it
        fetches the conversation to tell such an end from a cut connection; else once
        here). Resume the run with the user's decision; a new message instead makes
        PostHog reject the card.

        None, with no request, for a run that ended any other way (an answer, a failure,
        a cancel) or a stream closed before its end. `ClientStateError` while the stream
        is open or not yet read: its end decides.

        Example:
            ```python
            print((await stream.until_done()).text)
            approval = await stream.pending_approval()
            if approval is not None and await ask_user(approval.tool_name, approval.preview):
                stream = ph.conversations.create(
                    None,
                    conversation=stream.conversation_id,
                    resume_payload={"action": "approve", "proposal_id": approval.proposal_id},
                )
            ```
        """
        engine = self._engine
        if not engine.finished:
            raise ClientStateError(
                "pending_approval() reads how the run ended: read the stream to its end first"
                " (until_done())"
            )
        result = self.result()
        if not result.complete or result.cancelled or result.failed:
            return None
        if not engine.state.awaits_user:
            return None
        conversation = engine.ended_with
        if conversation is None:
            fetched: Conversation = await engine.api.fetch(
                Conversation, routes.CONVERSATION_GET, segment(engine.conversation_id)
            )
            conversation = fetched
        # The card of a call of this run (or, for a resume, of the message it continued:
        # its next call may wait too): one left from an earlier run is not this one's.
        calls = {
            call.id
            for message in result.messages
            if isinstance(message, AssistantMessage)
            for call in message.tool_calls or ()
        } | engine.resumed_calls(conversation)
        return next(
            (
                approval
                for approval in conversation.pending_approvals
                if approval.decision_status == "pending"
                and (
                    approval.original_tool_call_id is None
                    or approval.original_tool_call_id in calls
                )
            ),
            None,
        )

    async def cancel(self) -> None:
        """
        Stop the generation on the server (`PATCH conversations/{id}/cancel/`), then close.

        Without this, closing the stream only disconnects: PostHog keeps generating.
        A stream none of whose requests may have started a run sends nothing: one never
        started, one whose request PostHog refused (a 409 while another generation runs, a
        429 while throttled), or one cancelled while it waits to retry such a refusal or a
        connection that never reached PostHog. PostHog's cancel action refuses scoped
        personal API keys (`PermissionDeniedError`); the stream is closed all the same.
        Called from another task while the message is being sent, it first waits for
        PostHog's answer (at most the stream's `timeout`), which is when the run starts.
        """
        engine = self._engine
        engine.check_loop()  # before anything changes: a stream of another loop is left as it is
        engine.cancelled = True
        try:
            # Called from another task while the message's POST is on its way: PostHog
            # creates the conversation and starts the run only as it answers, so a PATCH
            # now would overtake it (a 404, or nothing to stop) and the run would go on
            # unread. Wait for the answer first, as long as the attempt may take.
            await engine.answered()
            if engine.run_may_exist and not engine.complete:
                await engine.api.request_json(
                    routes.CONVERSATION_CANCEL, segment(engine.conversation_id)
                )
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP response now (the server sees the disconnect). Idempotent."""
        await self._engine.aclose()


class StreamLoop(AsyncIterator[T], Generic[T]):
    """
    One loop over a `ConversationStream`: its events (`async for event in stream`) or the
    new text of its answer (`stream.text_deltas()`).

    The loop owns the stream's end: when it finishes, raises, or is left by `break` (the
    iterator is dropped, and its `__del__` closes the response there and then, with no
    event-loop turn in between), the stream is closed. `aclose()` closes it explicitly.
    After a loop left early, a read of a run that had not ended raises `ClientStateError`
    (the stream's end was not its reader's explicit choice, as `aclose()` is).
    """

    __slots__ = ("_engine", "_take", "_text", "_wait")

    def __init__(self, stream: ConversationStream, *, text: bool) -> None:
        engine = stream._engine
        self._engine: StreamEngine | None = engine
        self._take, self._wait = engine.take, engine.next_or_none
        self._text = text

    def __aiter__(self) -> StreamLoop[T]:
        return self

    async def __anext__(self) -> T:
        try:
            delivery = self._take() or await self._wait()
            if self._text:
                while delivery is not None and not delivery.text:
                    delivery = self._take() or await self._wait()
                if delivery is not None:
                    return delivery.text  # type: ignore[return-value]
            elif delivery is not None:
                return delivery.event  # type: ignore[return-value]
        except ClientStateError:
            # Another task is reading the stream: it stays theirs, open.
            self._engine = None
            raise
        # The end (an error or a cancellation escaping the engine has closed it already).
        if self._engine is not None:
            self._engine.close()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Close the stream now (idempotent)."""
        if self._engine is not None:
            self._engine.close()

    def __del__(self) -> None:
        # `break` drops the loop's iterator: close the response now, not turns later. A
        # later read raises if the run had not ended (see `StreamEngine._after_close`).
        engine = getattr(self, "_engine", None)
        if engine is not None and not engine.closed:
            engine.left_early = True
            engine.close()


class BatchLoop(StreamLoop[str]):
    """`text_batches()`: the text deltas already received, joined, one turn at a time."""

    __slots__ = ("_held", "_turns")

    def __init__(self, stream: ConversationStream) -> None:
        super().__init__(stream, text=True)
        self._turns = stream._engine
        # A new turn's `HumanMessage`, taken while joining: it begins the next piece.
        self._held: HumanMessage | None = None

    async def __anext__(self) -> str:
        engine = self._turns
        held, self._held = self._held, None
        if held is not None:
            engine.turn = held  # the next piece is the new turn's
        first = await super().__anext__()
        turn = engine.turn
        pieces = [first]
        take = self._take
        try:
            while (delivery := take()) is not None:
                if delivery.text:
                    pieces.append(delivery.text)
                elif engine.turn is not turn:
                    # A queued message's turn begins: not in this piece, which stays the
                    # turn `question` names.
                    self._held, engine.turn = engine.turn, turn
                    break
        except ClientStateError:
            # Closed under the loop (the client closed) or taken by another task: what was
            # taken already is handed out; the next read raises the error again.
            pass
        return pieces[0] if len(pieces) == 1 else "".join(pieces)
