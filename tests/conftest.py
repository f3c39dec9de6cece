"""Shared fixtures: the asyncio backend for anyio's pytest plugin, a FakePostHog and a client."""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings

import aposthog
from aposthog.testing import FakePostHog

from .redis_server import redis_url  # noqa: F401  (the Redis tests' fixture)

PLUGIN = "aposthog.testing.pytest_plugin"

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fast", parent=settings.get_profile("default"), max_examples=20)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
# A long search for the rare input (HYPOTHESIS_PROFILE=thorough), run by hand before a release.
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    """Run from a checkout that is not installed, the `fake_posthog` plugin is loaded here."""
    manager = config.pluginmanager
    if not manager.has_plugin("aposthog") and not manager.is_blocked("aposthog"):
        # The entry point's name: an installed aposthog registers the same module under it.
        manager.register(importlib.import_module(PLUGIN), "aposthog")


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.fixture
async def fake() -> AsyncIterator[FakePostHog]:
    """A FakePostHog serving on 127.0.0.1."""
    async with FakePostHog() as server:
        yield server


@pytest.fixture
async def ph(fake: FakePostHog) -> AsyncIterator[aposthog.Client]:
    """A client for `fake`, with retries that do not sleep long."""
    policy = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01, max_retry_after=0.01)
    async with fake.client(retry=policy) as client:
        yield client
