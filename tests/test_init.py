"""
The package's front door: every public name importable, and a plain `import aposthog`
loading neither the testing kit, the command line, the records, the converter nor the
conversation machinery (each loads when first used).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import aposthog
import aposthog.models

ROOT = Path(__file__).resolve().parent.parent


def _fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    return done.stdout


def test_import_loads_only_what_a_plain_client_needs() -> None:
    loaded = set(
        json.loads(_fresh("import sys, json, aposthog; print(json.dumps(sorted(sys.modules)))"))
    )
    for lazy in (
        "aposthog.testing",
        "aposthog._cli",
        "aposthog._streaming",
        "aposthog._stream_engine",
        "aposthog.models.messages",
        "aposthog.models.conversations",
        "aposthog.models.events",
        "aposthog.models.batch_exports",
        "aposthog.models.customer_profile_configs",
        "aposthog._converter",
        "cattrs",
        "aiohttp.web",
        "aposthog._redis_store",  # a rate budget shared through Redis: for those who use one
        "aposthog._closing",  # a type for annotations
    ):
        assert lazy not in loaded, lazy
    assert "aiohttp" in loaded  # what a Client cannot do without


def test_a_first_list_loads_the_records_and_the_converter(
    tmp_path: Path,
) -> None:
    script = tmp_path / "first_list.py"
    script.write_text(
        "import asyncio, sys\n"
        "import aposthog\n"
        "from aposthog.testing import FakePostHog\n"
        "async def main():\n"
        "    async with FakePostHog() as fake, fake.client() as ph:\n"
        "        fake.customer_profile_configs['c1'] = {'id': 'c1', 'scope': 'person',\n"
        "            'content': {}, 'sidebar': {}, 'created_at': '2024-01-01T00:00:00Z'}\n"
        "        page = await ph.customer_profile_configs.list()\n"
        "        print(type(page.results[0]).__name__, page.results[0].scope)\n"
        "asyncio.run(main())\n"
    )
    out = _fresh(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')")
    assert "CustomerProfileConfig person" == out.strip()


@pytest.mark.parametrize("module", [aposthog, aposthog.models], ids=["aposthog", "models"])
def test_every_public_name_is_importable(module: object) -> None:
    names: list[str] = module.__all__  # type: ignore[attr-defined]
    assert names
    for name in names:
        assert getattr(module, name) is not None, name
    assert set(names) <= set(dir(module))


def test_dir_lists_the_lazy_records_before_any_is_loaded() -> None:
    """`dir(aposthog.models)` (what completion shows) lists every record up front, not
    only those already loaded."""
    out = _fresh(
        "import sys, aposthog.models as m; "
        "print(sorted(set(m.__all__) - set(dir(m))), 'aposthog.models.messages' in sys.modules)"
    )
    assert "[] False" == out.strip()


def test_lazy_names_are_the_classes_of_their_modules() -> None:
    from aposthog import ConversationStream, HumanMessage
    from aposthog._streaming import ConversationStream as Stream
    from aposthog.models.messages import HumanMessage as Human

    assert (ConversationStream, HumanMessage) == (Stream, Human)
    assert aposthog.models.UserBasic.__module__ == "aposthog.models.conversations"


def test_star_import_in_a_fresh_interpreter() -> None:
    out = _fresh(
        "from aposthog import *; from aposthog.models import *; "
        "print(ConversationStream.__name__, UnknownEvent.__name__, BatchExport.__name__)"
    )
    assert "ConversationStream UnknownEvent BatchExport" == out.strip()


@pytest.mark.parametrize("module", [aposthog, aposthog.models], ids=["aposthog", "models"])
def test_an_unknown_name_is_an_attribute_error(module: object) -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = module.no_such_name  # type: ignore[attr-defined]


def test_the_public_submodules_are_reached_from_a_plain_import() -> None:
    """
    The README writes `with aposthog.testing.serve_in_thread() as fake:`, DESIGN.md calls
    `aposthog.sse` public, and the models' docstring says `aposthog.models.BatchExport`
    loads on first use. After `import aposthog` alone, `mypy --strict` accepts each of
    them, and each raises `AttributeError` at run time (no module imports them). Loaded on
    first use, as the lazy records are, they would cost a plain import nothing.
    """
    out = _fresh(
        "import aposthog\n"
        "names = ('sse', 'models', 'testing', 'resources')\n"
        "print([name for name in names if not hasattr(aposthog, name)])\n"
    )
    assert "[]" == out.strip()


def test_a_type_checker_sees_the_public_names_and_no_others(tmp_path: Path) -> None:
    """
    After a plain `import aposthog`, a type checker knows the submodules' types (the
    README's `aposthog.testing.serve_in_thread()` gives a `FakePostHog`, not `Any`, so the
    calls made on its client are checked) and refuses a misspelt name, as the run time
    does: the lazy-loading `__getattr__` hooks are hidden from it.
    """
    from mypy import api  # the tests' dependency group installs it

    module = tmp_path / "users_module.py"
    module.write_text(
        "import aposthog\n"
        "import aposthog.models\n"
        "\n"
        "\n"
        "async def main() -> None:\n"
        "    with aposthog.testing.serve_in_thread() as fake:\n"
        "        reveal_type(fake)\n"
        "        async with fake.client() as ph:\n"
        "            await ph.batch_exports.get('x', no_such_argument=True)\n"
        "    aposthog.Clinet()\n"
        "    aposthog.models.BatchExprt\n"
        "    aposthog.Client(rate_limits='off')\n"
        "    aposthog.sse.SSEDecoder().feed(bytearray(b'data: x'))\n",
        encoding="utf-8",
    )
    report, errors, _ = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--follow-imports",
            "silent",
            str(module),
        ]
    )
    assert "" == errors
    found = sorted(
        (int(line.split(":")[1]), line.split(": ", 2)[1])
        for line in report.splitlines()
        if line.startswith(str(module))
    )
    assert [7, 9, 10, 11, 12] == sorted({number for number, _ in found}), report
    assert 'Revealed type is "aposthog.testing._fake.FakePostHog"' in report
    assert "no_such_argument" in report
    assert 'has no attribute "Clinet"' in report
    assert 'has no attribute "BatchExprt"' in report
    assert "rate_limits" in report
