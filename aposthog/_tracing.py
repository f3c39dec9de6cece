"""
The observer every client starts with: OpenTelemetry spans when opentelemetry-api is
installed (`aposthog[otel]`), else none.

The lookup happens once per process and imports nothing when the package is absent, so
without the extra a call carries no observer and pays nothing for tracing.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._observe import Observer

__all__ = ["default_observer"]

_looked_up = False
_default: Observer | None = None


def default_observer() -> Observer | None:
    """The tracing observer (one per process), or None without opentelemetry-api."""
    global _looked_up, _default
    if not _looked_up:
        _default = _load()
        _looked_up = True
    return _default


def _load() -> Observer | None:
    try:
        # `opentelemetry` is a namespace package: finding it imports nothing.
        if importlib.util.find_spec("opentelemetry") is None:
            return None
        from ._otel import TracingObserver
    except ImportError:  # hidden, or another opentelemetry distribution without the API
        return None
    return TracingObserver()
