"""
Parsing JSON from PostHog, in one place.

Every body the client parses (a response, an error body, one stream event) goes through
`loads`, so the parser can be swapped (the `speedups` extra) and every way a hostile body
can break parsing ends in one exception type: `ValueError`. That includes nesting too
deep for the parser, which the standard library reports as `RecursionError`.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(data: bytes | str) -> Any:
    """Parse a JSON document; `ValueError` for anything that is not one (never another error)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None
