"""The client's routes: each one a route FakePostHog (like PostHog) serves, each with its rule."""

from __future__ import annotations

import pytest

from aposthog import _routes
from aposthog._http import Route
from aposthog.testing import FakePostHog

ROUTES = {name: value for name, value in vars(_routes).items() if isinstance(value, Route)}


def test_every_route_is_listed_and_exported() -> None:
    assert sorted(ROUTES) == sorted(_routes.__all__)


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_every_route_exists_on_the_server(name: str) -> None:
    route = ROUTES[name]
    served = {
        (r.method, tuple("{}" if p.startswith("{") else p for p in r.pattern))
        for r in FakePostHog()._routes
    }
    shape = tuple("{}" if p.startswith("{") else p for p in route.path.split("/"))
    assert (route.method, shape) in served


def test_only_work_starting_routes_are_not_repeatable() -> None:
    not_repeatable = {name for name, route in ROUTES.items() if not route.repeatable}
    assert {
        "BACKFILL_CANCEL",
        "BACKFILL_CREATE",
        "CONVERSATION_APPEND",
        "CONVERSATION_CREATE",
        "CONVERSATION_QUEUE_ADD",
        "EXPORT_CREATE",
        "EXPORT_TEST_STEP",
        "EXPORT_TEST_STEP_NEW",
        "EXPORT_UNPAUSE_BACKFILL",
        "PROFILE_CONFIG_CREATE",
        "RUN_CANCEL",
        "RUN_RETRY",
    } == not_repeatable
    # Every read, update, delete and idempotent action may be repeated.
    assert all(route.repeatable for route in ROUTES.values() if route.method in ("GET", "DELETE"))


def test_only_deletes_whose_call_returns_nothing_are_done_when_a_retry_finds_them_gone() -> None:
    """
    The queue's `remove()` is a DELETE too, but its call returns the queue, which a 404
    does not give: a retry that finds the message gone stays a `NotFoundError` there.
    """
    done = {name for name, route in ROUTES.items() if route.gone_is_done}
    assert {"CONVERSATION_DELETE", "EXPORT_DELETE", "PROFILE_CONFIG_DELETE"} == done
    assert all(ROUTES[name].repeatable for name in done)


def test_only_conversation_create_and_its_reattach_count_in_the_ai_bucket() -> None:
    """A re-attach is a POST to `conversations/` too: PostHog throttles it as a create."""
    ai = {name for name, route in ROUTES.items() if route.bucket != "api"}
    assert {"CONVERSATION_CREATE", "CONVERSATION_REATTACH"} == ai


def test_fill_puts_values_in_order_and_checks_their_number() -> None:
    route = _routes.RUN_GET
    assert ("batch_exports", "e", "runs", "r") == route.fill("e", "r")
    with pytest.raises(TypeError, match="takes 2 path values"):
        route.fill("e")
    assert ("batch_exports",) == _routes.EXPORTS.fill()


def test_fill_refuses_missing_or_extra_values() -> None:
    """A route's `{name}` is never sent as is, and no value is silently dropped."""
    with pytest.raises(TypeError, match="takes 2 path values"):
        _routes.RUN_GET.fill()
    with pytest.raises(TypeError, match="takes 2 path values"):
        _routes.RUN_GET.fill("e", "r", "x")
    with pytest.raises(TypeError, match="takes 0 path values"):
        _routes.EXPORTS.fill("e")


def test_fill_ignores_slashes_around_the_path() -> None:
    """A path written with leading or trailing slashes gives no empty segment."""
    route = Route("GET", "/things/{id}/", repeatable=True)
    assert ("things", "v") == route.fill("v")
    assert ("things",) == Route("GET", "/things/", repeatable=True).fill()
