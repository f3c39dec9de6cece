"""
`ConversationStream`: a PostHog AI answer as an async iterator.

The stream owns one HTTP response at a time and guarantees it never outlives its use:
`break`, leaving `async with`, an exception in the consumer and cancelling the consuming
task all close it at once, in a shielded cleanup, and cancellation is re-raised, never
swallowed. A stream that is never iterated never connects. The machinery (connecting,
reading, timeouts, re-attaching) is in `_stream_engine`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType

from ._http import segment
from ._stream_engine import DEFAULT_MAX_REATTACH_ATTEMPTS, StreamEngine
from .models.conversations import ConversationResult, ConversationSummary
from .models.events import StreamEvent
from .models.messages import Message

__all__ = ["DEFAULT_MAX_REATTACH_ATTEMPTS", "ConversationStream"]


class ConversationStream(StreamEngine):
    """
    One streamed PostHog AI answer. Created by `ph.conversations.create(...)` or
    `ph.conversations.stream(id)`, with no I/O: the request goes out on the first
    iteration, or on `async with`.

    Iterate it for typed events (`ConversationEvent`, `MessageEvent`, `StatusEvent`,
    `UpdateEvent`, `UnknownEvent`), or use `text_deltas()` for the answer's text and
    `until_done()` for the final messages. Leaving the loop early (`break`) closes the
    stream; `async with` closes it deterministically.

    Example:
        ```python
        async with ph.conversations.create("How many signups last week?") as stream:
            async for text in stream.text_deltas():
                print(text, end="", flush=True)
        ```
    """

    # ------------------------------------------------------------------ information

    @property
    def conversation_id(self) -> str:
        """The conversation's UUID, known before anything is sent."""
        return self._conversation_id

    @property
    def trace_id(self) -> str:
        """The trace id of the latest request (each re-attach gets a fresh one)."""
        return self._trace_id

    @property
    def conversation(self) -> ConversationSummary | None:
        """The latest `conversation` event's record (PostHog sends it for new ones only)."""
        return self._state.conversation

    @property
    def messages(self) -> tuple[Message, ...]:
        """The final messages received so far, each once."""
        return self._state.messages

    @property
    def closed(self) -> bool:
        """Whether the stream is over: ended, closed, cancelled or failed."""
        return self._closed or self._finished

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif self._finished:
            state = "finished"
        elif self._started:
            state = "open"
        else:
            state = "not started"
        return f"<ConversationStream {state} conversation_id={self._conversation_id!r}>"

    # ------------------------------------------------------------------ protocols

    async def __aenter__(self) -> ConversationStream:
        """Send the request; pre-stream errors (400, 402, 409, 429, …) raise here."""
        if not self._started and not self.closed:
            try:
                await self._pump()
            except BaseException:
                await self.aclose()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        # A fresh generator per loop: when a `break` drops it, Python finalizes it at once
        # and its `finally` closes the response. A plain iterator would stay open.
        return self._events()

    async def __anext__(self) -> StreamEvent:
        """The next event (`anext(stream)` pulls one without ending the stream)."""
        return (await self._next()).event

    async def _events(self) -> AsyncGenerator[StreamEvent, None]:
        try:
            while (delivery := await self._next_or_none()) is not None:
                yield delivery.event
        finally:
            await self.aclose()

    # ------------------------------------------------------------------ helpers

    async def text_deltas(self) -> AsyncGenerator[str, None]:
        """
        Only the new text of the assistant's answer, as it arrives.

        `"".join(deltas)` is `until_done().text`: the final text of this run's assistant
        messages, joined by a blank line. Snapshots PostHog replays after a re-attach, and
        final messages that replace snapshots, never repeat text. Leaving the loop early
        closes the stream.

        Example:
            ```python
            async for text in ph.conversations.create("Top pages today?").text_deltas():
                print(text, end="", flush=True)
            ```
        """
        try:
            while (delivery := await self._next_or_none()) is not None:
                if delivery.text:
                    yield delivery.text
        finally:
            await self.aclose()

    async def until_done(self) -> ConversationResult:
        """
        Consume the rest of the stream; return the run's final messages and outcome.

        An in-band failure (`ai/failure`, `status: generation_error`) is reported in the
        result (`.failed`, `.failure`), not raised; transport errors raise.

        Example:
            ```python
            result = await ph.conversations.create("Summarise yesterday").until_done()
            print(result.text if not result.failed else "PostHog AI failed")
            ```
        """
        while await self._next_or_none() is not None:
            pass
        return self.result()

    def result(self) -> ConversationResult:
        """What the stream has accumulated so far (`until_done()` waits for the end first)."""
        return self._state.result(
            self._conversation_id, complete=self._complete, cancelled=self._cancelled
        )

    async def cancel(self) -> None:
        """
        Stop the generation on the server (`PATCH conversations/{id}/cancel/`), then close.

        Without this, closing the stream only disconnects: PostHog keeps generating.
        A stream that never started, or whose request PostHog refused (a 409 while another
        generation runs, say), sends nothing. PostHog's cancel action refuses scoped
        personal API keys (`PermissionDeniedError`); the stream is closed all the same.
        """
        self._cancelled = True
        try:
            if self._started and not self._complete and not self._refused:
                await self._client.request_json(
                    "PATCH", "conversations", segment(self._conversation_id), "cancel"
                )
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP response now (the server sees the disconnect). Idempotent."""
        await self._close()
