"""
FakePostHog's destination tests, as `BatchExportViewSet.test`, `run_test_step` and
`run_test_step_new` behave (PostHog's `destination_tests/`).

`test` answers 400 and 404 with empty bodies; a step PostHog cannot run (an untested
destination type, a step index out of range, a missing `destination.config`) is an
uncaught exception there, so a 500; a failed step is a 200 with `"status": "Failed"`.
A destination's integration lends its `config` and `sensitive_config` to the step's
config, as PostHog configures the test with them (and with the integration itself,
which configures AwsS3's role steps and BigQuery's service-account steps).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._batch_export_destinations import (
    BASE_CONFIG_FIELDS,
    DESTINATIONS,
    NOT_CONFIGURED,
    server_error,
)
from ._batch_export_runs import live_export
from ._batch_export_validation import validate_export
from ._loopback import ServerReply
from ._wire import FakeRequest, Route, empty, json_reply

if TYPE_CHECKING:
    from ._fake import FakePostHog

__all__ = ["ROUTES"]


def _step_dict(
    fake: FakePostHog,
    kind: str,
    step: Any,
    config: Mapping[str, Any],
    integration: Mapping[str, Any] | None,
) -> dict[str, Any]:
    steps = DESTINATIONS[kind].steps
    if steps is None:
        raise server_error()  # get_destination_test raises ValueError: uncaught, a 500
    try:
        spec = steps[step]
    except (IndexError, TypeError):
        raise server_error() from None  # PostHog indexes the list unchecked
    result = fake._batch_export_test_results.get((kind, step % len(steps)))
    if result is None and not spec.is_configured(config, integration):
        result = {"status": "Failed", "message": NOT_CONFIGURED}
    elif result is None and spec.skips_itself(config, integration):
        result = {"status": "Skipped", "message": spec.skipped}
    elif result is None:
        result = {"status": "Passed", "message": None}
    return {"name": spec.name, "description": spec.description, "result": dict(result)}


def _with_integration(
    fake: FakePostHog, destination: Mapping[str, Any]
) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
    """
    The test's configuration (the config, then the integration's config and secrets),
    and the integration, which PostHog also hands the test (`"integration": integration`).
    """
    config = dict(destination["config"])
    pk = destination.get("integration")
    integration = fake.integrations.get(pk) if isinstance(pk, int) else None
    if integration is not None:
        config.update(integration["config"])
        config.update(integration["sensitive_config"])
    return config, integration


async def _test(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    kind = request.arg("destination")
    if not kind:
        return empty(400)
    spec = DESTINATIONS.get(kind)
    if spec is None or spec.steps is None:
        return empty(404)
    steps = [{"name": s.name, "description": s.description, "result": None} for s in spec.steps]
    return json_reply(200, {"steps": steps})


async def _run_test_step_new(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    data = dict(request.body())
    step = data.pop("step", 0)
    clean = validate_export(
        data,
        instance=None,
        partial=False,
        check_required_config=True,
        flags=fake.batch_export_flags,
        integrations=fake.integrations,
    )
    destination = clean["destination"]
    config, integration = _with_integration(fake, destination)
    return json_reply(200, _step_dict(fake, destination["type"], step, config, integration))


async def _run_test_step(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    export = live_export(fake, request.params["id"])
    data = dict(request.body())
    step = data.pop("step", 0)
    kind = export["destination"]["type"]
    known = BASE_CONFIG_FIELDS | DESTINATIONS[kind].fields.keys()
    stored = {k: v for k, v in export["destination"]["config"].items() if k in known}
    try:
        # PostHog reads data["destination"]["config"] unchecked: without it, a 500.
        destination = dict(data["destination"])
        destination["config"] = {**stored, **destination["config"]}
    except (KeyError, TypeError, ValueError):
        raise server_error() from None
    data["destination"] = destination
    clean = validate_export(
        data,
        instance=export,
        partial=False,
        check_required_config=True,
        flags=fake.batch_export_flags,
        integrations=fake.integrations,
        detail_action=True,
    )
    # PostHog configures the test with the integration the request names, not the stored one.
    config, integration = _with_integration(fake, clean["destination"])
    return json_reply(200, _step_dict(fake, kind, step, config, integration))


def _routes() -> list[Route]:
    base = ("batch_exports",)
    scope = "batch_export"
    return [
        Route("GET", (*base, "test"), _test, scope),
        Route("POST", (*base, "run_test_step_new"), _run_test_step_new, scope),
        Route("POST", (*base, "{id}", "run_test_step"), _run_test_step, scope),
    ]


ROUTES = _routes()
