"""
`ClosingIterator`: every loop a caller keeps and closes itself is one, for the type
checker and at run time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

import aposthog
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio


def _seed(fake: FakePostHog, n: int) -> None:
    for i in range(n):
        config_id = str(uuid.UUID(int=i + 1))
        fake.customer_profile_configs[config_id] = {
            "id": config_id,
            "scope": "person",
            "content": {"i": i},
            "sidebar": {},
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": None,
        }


async def _first_then_close(loop: aposthog.ClosingIterator[object]) -> object:
    """What a relay does with a loop it was handed: read, then close it (twice is fine)."""
    try:
        return await loop.__anext__()
    finally:
        await loop.aclose()
        await loop.aclose()


async def test_a_streams_loops_are_closing_iterators(fake: FakePostHog) -> None:
    fake.script_answer("Signups fell on Tuesday.")
    async with fake.client() as ph:
        makers: list[Callable[[aposthog.ConversationStream], aposthog.ClosingIterator[object]]]
        makers = [lambda s: s.text_deltas(), lambda s: s.text_batches(), aiter]
        for make in makers:
            stream = ph.conversations.create("Why did signups drop?")
            loop = make(stream)
            assert isinstance(loop, aposthog.ClosingIterator)
            assert await _first_then_close(loop) is not None
            assert stream.closed
        deltas: aposthog.ClosingIterator[str] = ph.conversations.create("Again?").text_deltas()
        assert isinstance(await _first_then_close(deltas), str)


async def test_a_paginators_loops_are_closing_iterators(fake: FakePostHog) -> None:
    _seed(fake, 5)
    async with fake.client() as ph:
        configs = ph.customer_profile_configs
        records: aposthog.ClosingIterator[aposthog.CustomerProfileConfig] = aiter(
            configs.list(limit=2)
        )
        pages: aposthog.ClosingIterator[aposthog.Page[aposthog.CustomerProfileConfig]] = (
            configs.list(limit=2).prefetch(2).pages()
        )
        for loop in (records, pages, configs.list(limit=2).pages()):
            assert isinstance(loop, aposthog.ClosingIterator)
            assert await _first_then_close(loop) is not None
        # Closed, a loop ends: nothing more is fetched or handed out.
        with pytest.raises(StopAsyncIteration):
            await pages.__anext__()


def test_other_objects_are_not_closing_iterators() -> None:
    assert not isinstance([], aposthog.ClosingIterator)

    class NoClose:
        def __aiter__(self) -> NoClose:
            return self

        async def __anext__(self) -> int:
            raise StopAsyncIteration

    assert not isinstance(NoClose(), aposthog.ClosingIterator)
