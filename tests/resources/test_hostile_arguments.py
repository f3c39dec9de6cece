"""
Every public method of every resource, driven with wrong types and values: only a
TypeError or ValueError naming the argument comes out, and no request reaches PostHog.
"""

from __future__ import annotations

import datetime as dt
import inspect
import types
from collections.abc import Callable, Iterator
from typing import Any

import anyio.from_thread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aposthog
from aposthog import AsyncPaginator, ConversationStream
from aposthog.testing import FakePostHog

from .wrong_values import KINDS

ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
OTHER_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"
NOOP = {"type": "NoOp", "config": {}}
WHEN = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

# ------------------------------------------------------------------ every public method

Spec = dict[str, tuple[Any, str]]
#: method -> argument -> (a good value, the kind of wrong values it is driven with)
METHODS: dict[str, Spec] = {
    "batch_exports.list": {
        "limit": (None, "limit"),
        "offset": (None, "offset"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.get": {"id": (ID, "uuid"), "timeout": (5, "timeout")},
    "batch_exports.create": {
        "name": ("n", "text"),
        "destination": (NOOP, "destination"),
        "interval": ("hour", "open_enum"),
        "model": ("events", "open_enum"),
        "paused": (False, "bool"),
        "start_at": (WHEN, "timestamp"),
        "end_at": (WHEN + dt.timedelta(days=1), "timestamp"),
        "hogql_query": ("select 1", "query"),
        "hogql_modifiers": (None, "modifiers"),
        "primary_key": (None, "columns"),
        "version_key": (None, "columns"),
        "incremental_mode": ("APPEND", "open_enum"),
        "filters": ([], "filters"),
        "timezone": ("UTC", "opt_str"),
        "offset_day": (None, "offset_day"),
        "offset_hour": (None, "offset_hour"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.update": {
        "id": (ID, "uuid"),
        "name": ("n", "text"),
        "destination": (NOOP, "destination"),
        "interval": ("day", "open_enum"),
        "model": ("events", "open_enum"),
        "paused": (True, "bool"),
        "start_at": (None, "timestamp"),
        "end_at": ("2024-02-01T00:00:00Z", "timestamp"),
        "hogql_query": (None, "query"),
        "hogql_modifiers": ({"convertToProjectTimezone": False}, "modifiers"),
        "primary_key": (["id"], "columns"),
        "version_key": (None, "columns"),
        "incremental_mode": ("MERGE", "open_enum"),
        "filters": (None, "filters"),
        "timezone": (None, "opt_str"),
        "offset_hour": (3, "offset_hour"),
        "offset_day": (None, "offset_day"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.replace": {
        "id": (ID, "uuid"),
        "name": ("n", "text"),
        "destination": (NOOP, "destination"),
        "interval": ("week", "open_enum"),
        "model": ("events", "open_enum"),
        "paused": (False, "bool"),
        "start_at": (WHEN, "timestamp"),
        "end_at": (None, "timestamp"),
        "hogql_query": ("select 1", "query"),
        "hogql_modifiers": (None, "modifiers"),
        "primary_key": (None, "columns"),
        "version_key": (["v"], "columns"),
        "incremental_mode": ("APPEND", "open_enum"),
        "filters": ([], "filters"),
        "timezone": ("UTC", "opt_str"),
        "offset_day": (2, "offset_day"),
        "offset_hour": (None, "offset_hour"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.delete": {"id": (ID, "uuid"), "timeout": (5, "timeout")},
    "batch_exports.pause": {"id": (ID, "uuid"), "timeout": (5, "timeout")},
    "batch_exports.unpause": {
        "id": (ID, "uuid"),
        "backfill": (False, "bool"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.logs": {
        "id": (ID, "uuid"),
        "level": ("error", "level"),
        "search": (None, "filter_text"),
        "after": (None, "timestamp"),
        "before": (WHEN, "timestamp"),
        "instance_id": (None, "filter_text"),
        "limit": (10, "logs_limit"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.test": {"destination": ("S3", "open_enum"), "timeout": (5, "timeout")},
    "batch_exports.run_test_step": {
        "id": (ID, "uuid"),
        "step": (0, "step"),
        "config": (None, "mapping"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.run_test_step_new": {
        "step": (0, "step"),
        "destination": (NOOP, "destination"),
        "name": ("t", "text"),
        "interval": ("hour", "open_enum"),
        "model": ("events", "open_enum"),
        "hogql_query": ("select 1", "query"),
        "hogql_modifiers": (None, "modifiers"),
        "primary_key": (None, "columns"),
        "version_key": (None, "columns"),
        "incremental_mode": ("APPEND", "open_enum"),
        "filters": ([], "filters"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.list_runs": {
        "id": (ID, "uuid"),
        "status": ("failed", "status"),
        "after": ("-7d", "relative_timestamp"),
        "before": (None, "relative_timestamp"),
        "start": (None, "relative_timestamp"),
        "end": (None, "relative_timestamp"),
        "ordering": ("-created_at", "closed_enum"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.get_run": {
        "id": (ID, "uuid"),
        "run_id": (OTHER_ID, "uuid"),
        "after": (None, "relative_timestamp"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.retry_run": {
        "id": (ID, "uuid"),
        "run_id": (OTHER_ID, "uuid"),
        "after": (None, "relative_timestamp"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.cancel_run": {
        "id": (ID, "uuid"),
        "run_id": (OTHER_ID, "uuid"),
        "after": (None, "relative_timestamp"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.list_backfills": {
        "id": (ID, "uuid"),
        "ordering": (None, "closed_enum"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.create_backfill": {
        "id": (ID, "uuid"),
        "start_at": ("2024-01-01", "backfill_bound"),
        "end_at": (dt.date(2024, 1, 2), "backfill_bound"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.get_backfill": {
        "id": (ID, "uuid"),
        "backfill_id": (OTHER_ID, "uuid"),
        "timeout": (5, "timeout"),
    },
    "batch_exports.cancel_backfill": {
        "id": (ID, "uuid"),
        "backfill_id": (OTHER_ID, "uuid"),
        "timeout": (5, "timeout"),
    },
    "conversations.list": {
        "limit": (5, "limit"),
        "offset": (0, "offset"),
        "timeout": (5, "timeout"),
    },
    "conversations.get": {"id": (ID, "uuid"), "timeout": (5, "timeout")},
    "conversations.create": {
        "content": ("hello", "content"),
        "conversation": (None, "opt_uuid"),
        "agent_mode": ("SQL", "open_enum"),
        "contextual_tools": (None, "mapping"),
        "ui_context": (None, "mapping"),
        "billing_context": ({"a": [1]}, "json"),
        "trace_id": (None, "opt_uuid"),
        "session_id": (None, "session_id"),
        "deep_research_mode": (False, "bool"),
        "resume_payload": (None, "mapping"),
        "max_reattach_attempts": (2, "reattach"),
        "timeout": (5, "timeout"),
        "stream_idle_timeout": (5, "timeout"),
    },
    "conversations.stream": {
        "id": (ID, "uuid"),
        "session_id": ("s-1", "session_id"),
        "max_reattach_attempts": (0, "reattach"),
        "timeout": (5, "timeout"),
        "stream_idle_timeout": (5, "timeout"),
    },
    "conversations.append_message": {
        "id": (ID, "uuid"),
        "content": ("hi", "append_content"),
        "timeout": (5, "timeout"),
    },
    "conversations.cancel": {"id": (ID, "uuid"), "timeout": (5, "timeout")},
    "conversations.delete": {"id": (ID, "uuid"), "timeout": (5, "timeout")},
    "conversations.queue.get": {"conversation": (ID, "uuid"), "timeout": (5, "timeout")},
    "conversations.queue.add": {
        "conversation": (ID, "uuid"),
        "content": ("next", "content"),
        "agent_mode": ("sql", "open_enum"),
        "contextual_tools": ({"t": 1}, "mapping"),
        "ui_context": ({"dashboards": []}, "mapping"),
        "billing_context": (None, "json"),
        "session_id": ("s-1", "session_id"),
        "timeout": (5, "timeout"),
    },
    "conversations.queue.update": {
        "conversation": (ID, "uuid"),
        "message_id": (OTHER_ID, "message_id"),
        "content": ("again", "content"),
        "timeout": (5, "timeout"),
    },
    "conversations.queue.remove": {
        "conversation": (ID, "uuid"),
        "message_id": ("m-1", "message_id"),
        "timeout": (5, "timeout"),
    },
    "conversations.queue.clear": {"conversation": (ID, "uuid"), "timeout": (5, "timeout")},
    "customer_profile_configs.list": {
        "limit": (None, "limit"),
        "offset": (3, "offset"),
        "timeout": (5, "timeout"),
    },
    "customer_profile_configs.create": {
        "scope": ("person", "closed_enum"),
        "content": ({"a": 1}, "json_container"),
        "sidebar": (None, "json_container"),
        "timeout": (5, "timeout"),
    },
    "customer_profile_configs.get": {"id": (ID, "uuid"), "timeout": (5, "timeout")},
    "customer_profile_configs.update": {
        "id": (ID, "uuid"),
        "scope": ("Group_2", "closed_enum"),
        "content": ([1], "json_container"),
        "sidebar": ({}, "json_container"),
        "timeout": (5, "timeout"),
    },
    "customer_profile_configs.replace": {
        "id": (ID, "uuid"),
        "scope": ("person", "closed_enum"),
        "content": (None, "json_container"),
        "sidebar": (None, "json_container"),
        "timeout": (5, "timeout"),
    },
    "customer_profile_configs.delete": {"id": (ID, "uuid"), "timeout": (5, "timeout")},
}
# Arguments whose wrong value is only detectable beside another one.
_ALSO: dict[tuple[str, str], dict[str, Any]] = {
    ("batch_exports.update", "offset_day"): {"interval": "week"},
}


_RESOURCES = ("batch_exports", "conversations", "conversations.queue", "customer_profile_configs")


def _resource(client: aposthog.Client, path: str) -> Any:
    found: Any = client
    for name in path.split("."):
        found = getattr(found, name)
    return found


def _public_methods(client: aposthog.Client) -> set[str]:
    found = set()
    for resource in _RESOURCES:
        # Methods of the class and methods reached through it (runs, backfills).
        for name, member in inspect.getmembers(_resource(client, resource)):
            if not name.startswith("_") and inspect.ismethod(member):
                found.add(f"{resource}.{name}")
    return found


# ------------------------------------------------------------------ the harness


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Callable[..., Any], FakePostHog, aposthog.Client]]:
    """A FakePostHog and a client on an event loop of their own (Hypothesis runs sync)."""
    with anyio.from_thread.start_blocking_portal() as portal:
        fake = FakePostHog()
        portal.call(fake.start)

        async def make() -> aposthog.Client:
            return fake.client(max_retries=0)

        client = portal.call(make)
        try:
            yield portal.call, fake, client
        finally:
            portal.call(client.aclose)
            portal.call(fake.__aexit__, None, None, None)


async def _invoke(client: aposthog.Client, method: str, kwargs: dict[str, Any]) -> None:
    resource, name = method.rsplit(".", 1)
    result = getattr(_resource(client, resource), name)(**kwargs)
    if isinstance(result, ConversationStream):
        async with result:
            pass
    elif isinstance(result, AsyncPaginator):
        await result
    else:
        await result


def test_every_public_method_is_driven(
    served: tuple[Callable[..., Any], FakePostHog, aposthog.Client],
) -> None:
    """The table below covers every public method and every one of its arguments."""
    _, _, client = served
    assert _public_methods(client) == set(METHODS)
    for method, spec in METHODS.items():
        resource, name = method.rsplit(".", 1)
        params = inspect.signature(getattr(_resource(client, resource), name)).parameters
        assert set(params) == set(spec), method


def test_good_arguments_pass_the_checks(
    served: tuple[Callable[..., Any], FakePostHog, aposthog.Client],
) -> None:
    """The good values are good: with them, each method does reach PostHog."""
    call, fake, client = served
    for method, spec in METHODS.items():
        kwargs = {name: good for name, (good, _) in spec.items()}
        before = len(fake.requests)
        try:
            call(_invoke, client, method, kwargs)
        except aposthog.PostHogError:
            pass  # PostHog's answer (a 404, say) is not the point
        assert len(fake.requests) > before, method


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_wrong_arguments_fail_before_sending(
    served: tuple[Callable[..., Any], FakePostHog, aposthog.Client], data: st.DataObject
) -> None:
    call, fake, client = served
    method = data.draw(st.sampled_from(sorted(METHODS)), label="method")
    spec = METHODS[method]
    argument = data.draw(st.sampled_from(sorted(spec)), label="argument")
    wrong = data.draw(KINDS[spec[argument][1]], label="value")
    kwargs = {name: good for name, (good, _) in spec.items()}
    kwargs.update(_ALSO.get((method, argument), {}))
    kwargs[argument] = wrong
    before = len(fake.requests)
    with pytest.raises((TypeError, ValueError)) as info:
        call(_invoke, client, method, kwargs)
    assert not isinstance(info.value, aposthog.APIStatusError)
    assert argument in str(info.value), (method, argument, wrong, str(info.value))
    assert len(str(info.value)) < 1000
    assert len(fake.requests) == before, (method, argument, wrong)


# ------------------------------------------------------------------ read-only mappings

#: A JSON argument holding a read-only mapping (a record's `extra_fields` is one) one level
#: down: each call below sends it, or refuses it naming the argument.
_NESTED = types.MappingProxyType({"b": 1})
_SENDERS: dict[str, Callable[[aposthog.Client], Any]] = {
    "content": lambda ph: ph.customer_profile_configs.create(
        scope="person", content={"a": _NESTED}
    ),
    "destination": lambda ph: ph.batch_exports.create(
        name="n", destination={"type": "NoOp", "config": {"a": _NESTED}}, interval="hour"
    ),
    "filters": lambda ph: ph.batch_exports.create(
        name="n",
        destination=NOOP,
        interval="hour",
        filters=[{"key": "k", "type": "event", "value": _NESTED}],
    ),
    "ui_context": lambda ph: ph.conversations.create("hi", ui_context={"a": _NESTED}).until_done(),
}


@pytest.mark.anyio
@pytest.mark.parametrize("argument", sorted(_SENDERS))
async def test_a_nested_read_only_mapping_is_sent_or_refused_by_name(
    fake: FakePostHog, ph: aposthog.Client, argument: str
) -> None:
    """
    `check_json` takes any `Mapping` inside a JSON argument (its docstring: "dicts …"),
    but the body is encoded by `json.dumps`, which knows only dicts: a
    `types.MappingProxyType` inside a config (a copied `extra_fields`, say) passed the
    check and then failed with "Object of type mappingproxy is not JSON serializable",
    a `TypeError` that names no argument (DESIGN.md: "TypeError naming the argument").
    """
    refused: TypeError | None = None
    try:
        await _SENDERS[argument](ph)
    except TypeError as exc:
        refused = exc
    except aposthog.BadRequestError:
        pass  # sent: PostHog's answer to what it holds (an unknown key, say)
    if refused is None:
        assert fake.requests
    else:
        assert argument in str(refused), str(refused)
        assert not fake.requests


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "argument"),
    [
        ("batch_exports.list", "offset"),
        ("batch_exports.list", "limit"),
        ("conversations.list", "offset"),
        ("customer_profile_configs.list", "limit"),
    ],
)
async def test_a_paging_int_too_long_to_write_is_refused_by_name(
    fake: FakePostHog, ph: aposthog.Client, method: str, argument: str
) -> None:
    """
    The CHANGELOG: an int Python refuses to write as text (past 4,300 digits) is a
    ValueError naming where it is, before sending; `project_id` too. `limit` and `offset`
    are checked by `int_in_range`, which takes any int above its low bound (offset) or
    formats the int into its own message (limit above its bound): both fail with
    Python's "Exceeds the limit (4300 digits) for integer string conversion", naming
    no argument (nothing is sent, at least).
    """
    owner, name = method.split(".")
    bound = getattr(getattr(ph, owner), name)
    with pytest.raises(ValueError, match=argument) as caught:
        await bound(**{argument: 10**5000}).to_list()
    message = str(caught.value)
    assert "Exceeds the limit" not in message, message  # Python's own words, naming nothing
    assert argument in message, message
    assert fake.requests == []


@pytest.mark.parametrize(("low", "high"), [(0, None), (0, 6), (1, 100)])
def test_int_in_range_refuses_an_int_too_long_to_write_by_name(low: int, high: int | None) -> None:
    """
    The check behind every int argument (`limit`, `offset`, `offset_day`, `offset_hour`,
    a destination test's `step`, `max_reattach_attempts`): without an upper bound a
    5,000-digit int passes and fails later, as the query or body is written; with one,
    the refusal's own message (`got {value}`) fails with Python's "Exceeds the limit
    (4300 digits)", naming nothing.
    """
    from aposthog.resources._checks import int_in_range

    with pytest.raises(ValueError, match="offset_day") as caught:
        int_in_range("offset_day", 10**5000, low, high)
    message = str(caught.value)
    assert "Exceeds the limit" not in message, message
    assert "offset_day" in message, message
