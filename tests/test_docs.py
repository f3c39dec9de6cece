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

import aposthog

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
