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

# The plugin itself is the top-level module `_aposthog_pytest_plugin` (see its
# docstring): registering this module (`-p aposthog.testing.pytest_plugin`,
# `pytest_plugins = [...]`) registers the same fixture and marker.
from _aposthog_pytest_plugin import fake_posthog
from _aposthog_pytest_plugin import pytest_configure as pytest_configure  # pytest's hook

__all__ = ["fake_posthog"]
