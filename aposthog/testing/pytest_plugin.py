"""
aposthog's pytest plugin (registered through the `pytest11` entry point): the
`fake_posthog` fixture.

```python
async def test_profile_page(fake_posthog):
    async with fake_posthog.client() as ph:
        await ph.customer_profile_configs.create(scope="person")
    assert len(fake_posthog.customer_profile_configs) == 1
```

The fixture is synchronous: the fake serves from a thread and event loop of its own
(`aposthog.testing.serve_in_thread`), so it needs no async plugin and works with
pytest-asyncio in strict or auto mode, with anyio's plugin, and in synchronous tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._fake import FakePostHog

__all__ = ["fake_posthog"]


@pytest.fixture
def fake_posthog() -> Iterator[FakePostHog]:
    """
    A started `FakePostHog`, stopped after the test; `fake_posthog.client()` gives a
    client for it (keyword arguments pass through to `aposthog.Client`).

    Create the client inside the test (it belongs to the test's event loop) and close
    it there (`async with`). Knobs may be set at any time; read recorded state
    (`requests`, `customer_profile_configs`, …) after the calls it records have returned.
    """
    from ._in_thread import serve_in_thread

    with serve_in_thread() as fake:
        yield fake
