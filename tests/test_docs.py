"""
The API reference (docs/, built by `nox -s docs`) covers every public name: each name in
the `__all__` of aposthog and of every public submodule (no component starting with `_`)
is rendered by a `::: dotted.path` directive that leads to the very same object.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import aposthog
from aposthog.testing import FakePostHog

from .stream_helpers import in_flight_with_three_streams_at_one_slot

DOCS = Path(__file__).resolve().parent.parent / "docs"
_DIRECTIVE = re.compile(r"^::: (\S+)\s*$", re.MULTILINE)


def _public_modules() -> list[ModuleType]:
    modules = [aposthog]
    for info in pkgutil.walk_packages(aposthog.__path__, prefix="aposthog."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        modules.append(importlib.import_module(info.name))
    return modules


def _resolve(path: str) -> object:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise AssertionError(f"{path} names nothing")


def _documented() -> dict[int, str]:
    found: dict[int, str] = {}
    for page in sorted(DOCS.rglob("*.md")):
        for path in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            found[id(_resolve(path))] = path
    return found


def test_public_modules_are_found() -> None:
    """The walk finds the public submodules (a broken walk would check nothing)."""
    names = {m.__name__ for m in _public_modules()}
    assert {"aposthog", "aposthog.models", "aposthog.sse", "aposthog.testing"} <= names
    assert {"aposthog.resources", "aposthog.testing.pytest_plugin"} <= names


def test_every_public_module_declares_its_public_names() -> None:
    """A public module without `__all__` would leave the reference's coverage undefined."""
    assert [] == [m.__name__ for m in _public_modules() if not hasattr(m, "__all__")]


def test_every_public_name_is_in_the_reference() -> None:
    """Each name of each public `__all__` is rendered somewhere under docs/."""
    documented = _documented()
    missing = [
        f"{module.__name__}.{name}"
        for module in _public_modules()
        for name in module.__all__
        if not name.startswith("__") and id(getattr(module, name)) not in documented
    ]
    assert [] == missing


def test_the_check_notices_a_missing_name() -> None:
    """The coverage check is not vacuous: a public name no page renders is reported."""
    documented = _documented()
    assert id(aposthog.Client) in documented
    assert id(_resolve("aposthog.sse.SSEDecoder")) in documented
    assert id(_public_modules) not in documented


@pytest.mark.anyio
async def test_response_decode_error_docstring_says_what_it_names() -> None:
    """
    `ResponseDecodeError`'s docstring: the first 10 items of a list that do not fit are
    explained (`paths`), the rest counted in the message. A page of 12 `{}` batch exports
    has 48 missing fields: `paths` names those of the first 10 records, and the message
    counts the last 2.
    """
    from aiohttp import web

    from .web_server import serve

    async def page(request: web.Request) -> web.Response:
        del request
        results: list[dict[str, Any]] = [{} for _ in range(12)]
        return web.json_response({"count": 12, "next": None, "previous": None, "results": results})

    doc = " ".join((aposthog.ResponseDecodeError.__doc__ or "").split())
    assert "only the first 10 items that do not fit are explained" in doc
    async with (
        serve(page) as url,
        aposthog.Client(api_key="phx_docs_contract", host=url, project_id=1, max_retries=0) as ph,
    ):
        with pytest.raises(aposthog.ResponseDecodeError) as caught:
            await ph.batch_exports.list()
    err = caught.value
    fields = ("id", "name", "destination", "interval")
    explained = [f"$.results[{i}].{field}" for i in range(10) for field in fields]
    assert [p for p in explained if p not in err.paths] == []
    assert not [p for p in err.paths if p.startswith(("$.results[10]", "$.results[11]"))]
    assert "(and 2 more items that do not fit)" in str(err)


@pytest.mark.anyio
async def test_client_docstring_max_concurrency_says_what_open_streams_hold(
    fake: FakePostHog,
) -> None:
    """
    `Client` (rendered in docs/reference/client.md): "max_concurrency: requests in flight at
    once across every task using this client." A stream holds its slot only while it opens
    (CHANGELOG; the README row and `ClientConfig`'s docstring were fixed to say so): at
    `max_concurrency=1` three answers stream at once, three requests in flight. The
    `Client` docstring, the one users read in the API reference, still promises the bound.
    """
    # three requests in flight at max_concurrency=1
    assert await in_flight_with_three_streams_at_one_slot(fake) == 3
    doc = aposthog.Client.__doc__ or ""
    entry = doc.split("max_concurrency:", 1)[1].split("timeout:", 1)[0]
    assert "stream" in entry, entry
