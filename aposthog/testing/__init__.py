"""
Test helpers: `FakePostHog`, a real HTTP server on 127.0.0.1 that behaves like PostHog.

Use it in your own tests instead of mocking aposthog (or aiohttp):

```python
from aposthog.testing import FakePostHog

async def test_profile_page():
    async with FakePostHog() as fake, fake.client() as ph:
        await ph.customer_profile_configs.create(scope="person")
        assert len(fake.customer_profile_configs) == 1
```

`serve_in_thread()` runs one on a thread and event loop of its own (what the `fake_posthog`
pytest fixture does, so that it needs no async plugin). `python -m aposthog.testing`
serves one standalone and prints its URL and key.
"""

from ._ai_runs import AIScript, StreamStats
from ._conversations import FakeConversation
from ._fake import FakePostHog, RecordedRequest
from ._in_thread import serve_in_thread
from ._loopback import DropConnection, LoopbackServer, ServerReply, ServerRequest
from ._throttle import FakeThrottles

__all__ = [
    "AIScript",
    "DropConnection",
    "FakeConversation",
    "FakePostHog",
    "FakeThrottles",
    "LoopbackServer",
    "RecordedRequest",
    "ServerReply",
    "ServerRequest",
    "StreamStats",
    "serve_in_thread",
]
