"""The `fake_posthog` pytest fixture (aposthog's `pytest11` plugin)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

import aposthog
from aposthog.testing import FakePostHog

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # pytest's own dependency on 3.10

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_registers_the_plugin_module() -> None:
    """Installing aposthog registers the plugin under the name `aposthog`, wheel included."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    assert {"aposthog": "_aposthog_pytest_plugin"} == project["entry-points"]["pytest11"]
    build = pyproject["tool"]["hatch"]["build"]["targets"]
    assert "_aposthog_pytest_plugin.py" in build["wheel"]["force-include"]
    assert "_aposthog_pytest_plugin.py" in build["sdist"]["include"]


def test_loading_the_plugin_imports_neither_aposthog_nor_aiohttp(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    pytest loads every installed plugin in every run. The plugin's module was inside
    the package: loading it imported aposthog, aiohttp, aiohttp.web and the fake (some
    180 modules, about 0.3 s) in each pytest run of any project where aposthog is
    installed, its fixture used or not. Loading it imports pytest alone now; the
    fixture imports the kit when a test asks for it.
    """
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        """
        import sys

        HEAVY = ("aposthog", "aiohttp", "cattrs", "attrs", "anyio")

        def test_untouched():
            assert [] == sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)

        def test_the_fixture_still_serves(fake_posthog):
            assert fake_posthog.url.startswith("http://127.0.0.1:")
            assert "aposthog.testing" in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "_aposthog_pytest_plugin", "-W", "error")
    result.assert_outcomes(passed=2)


def test_fixture_in_a_synchronous_test(fake_posthog: FakePostHog) -> None:
    """A started fake, served from its own thread: a synchronous test may drive a client."""
    import asyncio

    async def main() -> str:
        ph: aposthog.Client  # FakePostHog.client() is typed Any
        async with fake_posthog.client() as ph:
            return (await ph.customer_profile_configs.create(scope="person")).id

    config_id = asyncio.run(main())
    assert [config_id] == list(fake_posthog.customer_profile_configs)


@pytest.mark.anyio
async def test_fixture_in_an_anyio_test(fake_posthog: FakePostHog) -> None:
    """Under anyio's plugin the client lives on the test's loop, the fake on its own."""
    fake_posthog.script_answer("Streamed across threads", chunk_size=5)
    async with fake_posthog.client() as ph:
        stream = ph.conversations.create("Hello?")
        deltas = [text async for text in stream.text_deltas()]
    assert "Streamed across threads" == "".join(deltas)
    assert len(deltas) > 1
    assert fake_posthog.requests[-1].path.endswith("/conversations/")
    # Awaited on the test's loop, it watches the fake's thread until the stream is gone.
    await fake_posthog.wait_for_streams_closed()
    assert (1, 0) == (fake_posthog.ai_streams.opened, fake_posthog.ai_streams.open)


@pytest.mark.fake_posthog(project_id=42, page_size=1, api_key="phx_fake_marked")
@pytest.mark.anyio
async def test_marker_options_make_the_fake(fake_posthog: FakePostHog) -> None:
    """The `fake_posthog` marker's keyword arguments are the FakePostHog's."""
    assert ("42", "phx_fake_marked") == (fake_posthog.project_id, fake_posthog.api_key)
    async with fake_posthog.client() as ph:
        for _ in range(2):
            await ph.customer_profile_configs.create(scope="person")
        page = await ph.customer_profile_configs.list()
    assert 1 == len(page.results)
    assert page.has_next_page()
    assert fake_posthog.requests[-1].path.startswith("/api/environments/42/")


@pytest.mark.anyio
async def test_fixture_errors_reach_the_test(fake_posthog: FakePostHog) -> None:
    """Faults injected from the test's thread produce the typed error on the test's loop."""
    fake_posthog.fail_next(status=403, body={"detail": "You do not have access."})
    async with fake_posthog.client() as ph:
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.customer_profile_configs.get("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")


def _register_plugin(pytester: pytest.Pytester) -> None:
    """A conftest that loads the plugin in the project pytester makes (if not already)."""
    pytester.makeconftest(
        """
        import importlib

        def pytest_configure(config):
            if not config.pluginmanager.has_plugin("aposthog"):
                plugin = importlib.import_module("aposthog.testing.pytest_plugin")
                config.pluginmanager.register(plugin, "aposthog")
        """
    )


def test_fixture_is_torn_down_after_each_test(pytester: pytest.Pytester) -> None:
    """In a project of its own: each test gets a new fake, stopped when the test ends."""
    _register_plugin(pytester)
    pytester.makepyfile(
        """
        import asyncio
        import socket
        import urllib.parse

        import pytest

        seen = []

        @pytest.fixture
        def anyio_backend():
            # Named: some anyio releases run a marked test on every backend by default.
            return "asyncio"

        def _accepts(url):
            port = urllib.parse.urlsplit(url).port
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return True
            except OSError:
                return False

        @pytest.mark.anyio
        async def test_one(fake_posthog):
            async with fake_posthog.client() as ph:
                await ph.customer_profile_configs.create(scope="person")
            seen.append(fake_posthog)

        def test_two(fake_posthog):
            assert fake_posthog is not seen[0]
            assert fake_posthog.customer_profile_configs == {}
            assert not _accepts(seen[0].url)
            assert _accepts(fake_posthog.url)
        """
    )
    before = threading.active_count()
    # pytest-asyncio, where installed, is not what this project tests; pytest-randomly would
    # run test_two before the test_one it checks.
    result = pytester.runpytest_inprocess(
        "-p", "anyio", "-p", "no:asyncio", "-p", "no:randomly", "-W", "error"
    )
    result.assert_outcomes(passed=2)
    assert before == threading.active_count()


def test_positional_marker_arguments_are_refused(pytester: pytest.Pytester) -> None:
    """
    `@pytest.mark.fake_posthog({"page_size": 1})` (a dict where keywords belong) must not
    silently give the default fake: the test would pass or fail for the wrong reason.
    """
    _register_plugin(pytester)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.fake_posthog({"page_size": 1})
        def test_marked(fake_posthog):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-p", "no:randomly", "-W", "error")
    result.assert_outcomes(errors=1)
