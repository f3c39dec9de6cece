"""serve_in_thread(): a FakePostHog on a thread and event loop of its own."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.parse

import pytest

import aposthog
from aposthog.testing import FakePostHog, serve_in_thread


def _port(url: str) -> int:
    port = urllib.parse.urlsplit(url).port
    assert port is not None
    return port


def _accepts(url: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", _port(url)), timeout=2):
            return True
    except OSError:
        return False


def test_serves_a_client_on_another_loop_and_stops_on_exit() -> None:
    """A client on the caller's loop talks to it; leaving the block stops server and thread."""
    threads_before = set(threading.enumerate())
    with serve_in_thread(project_id=7, page_size=2) as fake:
        assert isinstance(fake, FakePostHog)
        assert "7" == fake.project_id
        assert _accepts(fake.url)
        assert len(set(threading.enumerate()) - threads_before) == 1

        async def main() -> list[str]:
            async with fake.client() as ph:
                for _ in range(3):
                    await ph.customer_profile_configs.create(scope="person")
                page = await ph.customer_profile_configs.list()
                assert 2 == len(page.results)  # page_size reached the fake
                return [c.id async for c in ph.customer_profile_configs.list()]

        ids = asyncio.run(main())
        assert sorted(ids) == sorted(fake.customer_profile_configs)
        url = fake.url
    assert not _accepts(url)
    assert set(threading.enumerate()) == threads_before


def test_knobs_set_from_the_callers_thread_take_effect() -> None:
    """throttle_next, fail_next and script_answer, called from the test's thread, all apply."""
    with serve_in_thread() as fake:
        fake.throttle_next(1, wait=0)
        fake.fail_next(1, status=503, body={"type": "server_error", "detail": "Try later."})
        fake.script_answer("Hello from the fake thread", chunk_size=4)

        async def main() -> str:
            policy = aposthog.RetryPolicy(initial_backoff=0.001, max_retry_after=0.01)
            ph: aposthog.Client  # FakePostHog.client() is typed Any
            async with fake.client(retry=policy) as ph:
                await ph.customer_profile_configs.create(scope="person")
                result = await ph.conversations.create("Hi").until_done()
                return result.text

        assert "Hello from the fake thread" == asyncio.run(main())
        assert 1 == fake.status_counts[503]
        assert 1 == fake.status_counts[429]
        assert not fake.ai_scripts


def test_an_error_in_the_block_still_stops_the_fake() -> None:
    """An exception leaving the block propagates unchanged, and the fake is stopped."""
    with pytest.raises(LookupError, match="boom"), serve_in_thread() as fake:
        url = fake.url
        raise LookupError("boom")
    assert not _accepts(url)
