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


def pytest_configure(config: pytest.Config) -> None:
    """Register the `fake_posthog` marker (so that `--strict-markers` accepts it)."""
    config.addinivalue_line(
        "markers",
        "fake_posthog(**options): how the fake_posthog fixture's FakePostHog is made "
        "(api_key, project_id, page_size, latency)",
    )


@pytest.fixture
def fake_posthog(request: pytest.FixtureRequest) -> Iterator[FakePostHog]:
    """
    A started `FakePostHog`, stopped after the test; `fake_posthog.client()` gives a
    client for it (keyword arguments pass through to `aposthog.Client`).

    Create the client inside the test (it belongs to the test's event loop) and close
    it there (`async with`). Knobs may be set at any time; read recorded state
    (`requests`, `customer_profile_configs`, …) after the calls it records have returned.
    `@pytest.mark.fake_posthog(page_size=2, project_id=7)` passes options to the fake.
    """
    from ._in_thread import serve_in_thread

    marker = request.node.get_closest_marker("fake_posthog")
    if marker is not None and marker.args:
        raise pytest.UsageError(
            "@pytest.mark.fake_posthog takes keyword arguments only (FakePostHog's), "
            f"got {len(marker.args)} positional"
        )
    options = dict(marker.kwargs) if marker is not None else {}
    with serve_in_thread(**options) as fake:
        yield fake
