"""
Argument types for the command line, built on the checks the resources use.

argparse reports a refused value as a one-line usage error (exit status 2), naming
the option; every command checks a limit, an id or an enum value the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from .._config import unsendable_key
from .._errors import clip
from .._json import stdlib_loads
from ..models.batch_exports import BatchExportLogLevel, BatchExportRunStatus
from ..models.customer_profile_configs import ProfileScope
from ..resources import _checks

__all__ = [
    "FAKE_INTEGRATION_KINDS",
    "LOG_LEVELS",
    "RUN_STATUSES",
    "SCOPES",
    "closed_choice",
    "content",
    "json_container",
    "log_levels",
    "non_negative",
    "open_choice",
    "port",
    "positive",
    "uuid",
]

#: The integration kinds `serve-fake --integration` seeds: those batch-export destinations
#: need (the fake's own list, kept here so that building the parser loads no test kit).
FAKE_INTEGRATION_KINDS = (
    "aws-redshift",
    "aws-s3",
    "azure-blob",
    "databricks",
    "google-cloud-service-account",
    "postgresql",
    "s3-compatible",
    "snowflake",
)

SCOPES = tuple(item.value for item in ProfileScope)
LOG_LEVELS = tuple(item.value for item in BatchExportLogLevel)
#: The library passes an unknown status on (PostHog adds some); the command line knows
#: which ones it can show, and refuses a typo with the list rather than send it.
RUN_STATUSES = tuple(item.value for item in BatchExportRunStatus)


def _type(name: str, check: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return check(text)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse names the type in some messages
    return convert


def _whole_number(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"not a whole number: {clip(repr(text), 60)}") from None


def positive(high: int | None = None) -> Callable[[str], int]:
    """A limit: a whole number from 1 (to `high`)."""
    return _type("limit", lambda text: _checks.int_in_range("value", _whole_number(text), 1, high))


def _fake_key(text: str) -> str:
    """A key for `serve-fake` to accept: one a client can send (checked as clients check)."""
    if not text:
        raise ValueError("the key must not be empty")
    if unsendable_key(text):
        raise ValueError("the key must not contain whitespace, control or non-ASCII characters")
    return text


#: `serve-fake --api-key`.
fake_key = _type("key", _fake_key)


def _non_negative(text: str) -> int:
    return _checks.int_in_range("value", _whole_number(text), 0)


def _port(text: str) -> int:
    return _checks.int_in_range("port", _whole_number(text), 0, 65535)


non_negative = _type("index", _non_negative)
"""An index: a whole number from 0."""
port = _type("port", _port)
"""A TCP port, or 0 for any free one."""


def uuid(name: str) -> Callable[[str], str]:
    """An id PostHog stores as a UUID."""
    return _type("uuid", lambda text: _checks.uuid_id(name, text))


def closed_choice(name: str, allowed: Iterable[str]) -> Callable[[str], str]:
    """One of `allowed`, in any case; anything else is refused with the list."""
    values = tuple(allowed)
    return _type(name, lambda text: _checks.choice(name, text, values))


def open_choice(name: str, allowed: Iterable[str]) -> Callable[[str], str]:
    """A value of an enum PostHog keeps growing: a known one in its spelling, or as given."""
    values = tuple(allowed)
    return _type(name, lambda text: _checks.choice(name, text, values, open_enum=True))


def _log_levels(text: str) -> str:
    levels = [item for item in (part.strip() for part in text.split(",")) if item]
    if not levels:
        raise ValueError(f"name at least one level: {', '.join(LOG_LEVELS)}")
    return ",".join(_checks.choice("level", item, LOG_LEVELS) for item in levels)


def _json_container(text: str) -> Any:
    try:
        # Not json.loads: nested too deep for its parser (a generated file pasted in),
        # it raises RecursionError, which stdlib_loads turns into ValueError.
        value = stdlib_loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, (dict, list)):
        raise ValueError(f"must be a JSON object or array, got {type(value).__name__}: {text}")
    _checks.check_json("value", value)
    return value


def content(limit: int) -> Callable[[str], str]:
    """A message: not blank, at most `limit` characters."""

    def check(text: str) -> str:
        if not text.strip():
            raise ValueError("the message must not be empty")
        if len(text.strip()) > limit:
            raise ValueError(
                f"the message is {len(text.strip())} characters; PostHog takes {limit}"
            )
        return text

    return _type("message", check)


def _proposal(text: str) -> str:
    if not text.strip() or text != text.strip():
        raise ValueError("name the proposal_id PostHog AI gave (not blank, no spaces around it)")
    return text


proposal = _type("proposal", _proposal)
"""An approval's `proposal_id`, as `chat` printed it."""
log_levels = _type("levels", _log_levels)
"""`ERROR` or `info,warning`: known levels only, in any case."""
json_container = _type("JSON", _json_container)
"""A JSON object or array (PostHog refuses other JSON values here)."""
