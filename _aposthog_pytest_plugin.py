"""
aposthog's pytest plugin, registered through the `pytest11` entry point: the
`fake_posthog` fixture (documented at `aposthog.testing.pytest_plugin`).

It lives beside the `aposthog` package rather than inside it because pytest loads every
installed plugin in every run: importing the package (aiohttp, aiohttp.web, the fake and
everything else) would cost each pytest run of any project where aposthog is installed
some tenths of a second, used or not. Here it imports pytest alone; the fixture imports
the kit when a test asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from aposthog.testing import FakePostHog

__all__ = ["fake_posthog", "pytest_configure"]


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
    from aposthog.testing import serve_in_thread

    marker = request.node.get_closest_marker("fake_posthog")
    if marker is not None and marker.args:
        raise pytest.UsageError(
            "@pytest.mark.fake_posthog takes keyword arguments only (FakePostHog's), "
            f"got {len(marker.args)} positional"
        )
    options = dict(marker.kwargs) if marker is not None else {}
    with serve_in_thread(**options) as fake:
        yield fake
