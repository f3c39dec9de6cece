"""`ClosingIterator`: the type of the loops a caller keeps and closes itself."""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["ClosingIterator"]

T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class ClosingIterator(Protocol[T_co]):
    """
    An async iterator with `aclose()`: what `stream.text_deltas()`, `stream.text_batches()`,
    `async for` over a stream or a paginator, and `paginator.pages()` return.

    Annotate a loop kept in a variable (or passed to a function that relays it) with it,
    where `AsyncIterator` has no `aclose()` and these loops are not `AsyncGenerator`s.
    `aclose()` ends the loop: a stream's response is closed, a paginator's fetches ahead
    are cancelled. It may be awaited more than once.

    Example:
        ```python
        async def relay(deltas: aposthog.ClosingIterator[str]) -> None:
            try:
                async for text in deltas:
                    await websocket.send_text(text)
            finally:
                await deltas.aclose()

        await relay(ph.conversations.create("Why did signups drop?").text_deltas())
        ```
    """

    def __aiter__(self) -> ClosingIterator[T_co]: ...

    async def __anext__(self) -> T_co: ...

    async def aclose(self) -> None: ...
