"""FakePostHog's batch exports beyond the client's happy paths: PostHog's checks and knobs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import aposthog
from aposthog._http import Route
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc
POSTGRES = {
    "type": "Postgres",
    "config": {
        "host": "db.example.com",
        "port": 5432,
        "database": "analytics",
        "user": "posthog",
        "password": "hunter2",
    },
}


async def raw(ph: aposthog.Client, method: str, *parts: str, **kwargs: Any) -> Any:
    # Bodies the typed methods would refuse to send: straight through the pipeline.
    route = Route(method, "/".join(("batch_exports", *parts)), repeatable=False)
    return await ph._api.request_json(route, **kwargs)


async def create(ph: aposthog.Client, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "pg")
    body.setdefault("destination", POSTGRES)
    body.setdefault("interval", "hour")
    result: dict[str, Any] = await raw(ph, "POST", json=body)
    return result


async def bad_request(ph: aposthog.Client, method: str, *parts: str, **kwargs: Any) -> Any:
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, method, *parts, **kwargs)
    return info.value


# ---------------------------------------------------------------------------------- serializer


async def test_required_fields_and_first_error_only(ph: aposthog.Client) -> None:
    """A body without name, destination and interval: drf-exceptions-hog reports `name`."""
    error = await bad_request(ph, "POST", json={})
    assert (error.type, error.code, error.attr, error.detail) == (
        "validation_error",
        "required",
        "name",
        "This field is required.",
    )


async def test_field_errors_in_serializer_order(ph: aposthog.Client) -> None:
    """Blank names, unknown intervals and destination types: PostHog's codes and attrs."""
    error = await bad_request(
        ph, "POST", json={"name": " ", "destination": POSTGRES, "interval": "hour"}
    )
    assert (error.code, error.attr) == ("blank", "name")
    error = await bad_request(
        ph, "POST", json={"name": "x", "destination": POSTGRES, "interval": "monthly"}
    )
    assert (error.code, error.attr, error.detail) == (
        "invalid_choice",
        "interval",
        '"monthly" is not a valid choice.',
    )
    error = await bad_request(
        ph,
        "POST",
        json={"name": "x", "destination": {"type": "Kafka", "config": {}}, "interval": "day"},
    )
    assert (error.code, error.attr) == ("invalid_choice", "destination__type")


async def test_config_type_checks_and_coercion(fake: FakePostHog, ph: aposthog.Client) -> None:
    """A port sent as "5433" is coerced to 5433; a list is refused with PostHog's message."""
    config = {**POSTGRES["config"], "port": "5433"}
    created = await create(ph, destination={"type": "Postgres", "config": config})
    assert fake.batch_exports[created["id"]]["destination"]["config"]["port"] == 5433

    config = {**POSTGRES["config"], "port": [1]}
    error = await bad_request(
        ph,
        "POST",
        json={
            "name": "x",
            "destination": {"type": "Postgres", "config": config},
            "interval": "hour",
        },
    )
    assert error.detail == "Configuration has invalid type: got 'list', expected 'int'"


async def test_secrets_are_stripped_per_destination_type(ph: aposthog.Client) -> None:
    """Postgres loses user and password; BigQuery its key material; HTTP its token."""
    pg = await create(ph)
    assert pg["destination"]["config"] == {
        "host": "db.example.com",
        "port": 5432,
        "database": "analytics",
    }
    bigquery = await create(
        ph,
        destination={
            "type": "BigQuery",
            "config": {
                "project_id": "p",
                "dataset_id": "d",
                "private_key": "k",
                "private_key_id": "i",
                "token_uri": "t",
                "client_email": "e",
            },
        },
    )
    assert bigquery["destination"]["config"] == {"project_id": "p", "dataset_id": "d"}
    http = await create(
        ph,
        destination={
            "type": "HTTP",
            "config": {"url": "https://eu.i.posthog.com/batch/", "token": "phc"},
        },
    )
    assert http["destination"]["config"] == {"url": "https://eu.i.posthog.com/batch/"}


async def test_http_destinations_are_restricted(ph: aposthog.Client) -> None:
    """Only PostHog's own batch URLs, and only the events model."""
    body = {"name": "x", "interval": "hour"}
    error = await bad_request(
        ph,
        "POST",
        json={
            **body,
            "destination": {"type": "HTTP", "config": {"url": "http://127.0.0.1/", "token": "t"}},
        },
    )
    assert (error.attr, error.detail) == (
        "destination",
        "Invalid destination URL: http://127.0.0.1/",
    )
    http = {"type": "HTTP", "config": {"url": "https://us.i.posthog.com/batch/", "token": "t"}}
    error = await bad_request(ph, "POST", json={**body, "model": "persons", "destination": http})
    assert (error.attr, error.detail) == (
        "non_field_errors",
        "HTTP batch exports only support the events model",
    )


async def test_hogql_model_needs_the_flag_and_hogql_query_sets_the_schema(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """model=hogql is a 403 without its flag; a HogQL query becomes the schema."""
    with pytest.raises(aposthog.PermissionDeniedError) as info:
        await create(ph, model="hogql")
    assert info.value.detail == "HogQL batch exports are not enabled for this team."

    fake.batch_export_flags.add("hogql-batch-exports")
    created = await create(ph, model="hogql", hogql_query="SELECT event FROM events")
    assert created["schema"]["hogql_query"] == "SELECT event FROM events"
    assert "hogql_query" not in created  # PostHog does not render it back


async def test_filters_are_checked(ph: aposthog.Client) -> None:
    """Filters must be a list of objects, and not data-interval bounds."""
    error = await bad_request(
        ph, "POST", json={"name": "x", "destination": POSTGRES, "interval": "hour", "filters": {}}
    )
    assert error.detail == "'filters' should be an array of filters"
    error = await bad_request(
        ph,
        "POST",
        json={
            "name": "x",
            "destination": POSTGRES,
            "interval": "hour",
            "filters": [{"data_interval_start": "2024-01-01"}],
        },
    )
    assert error.attr == "filters"


async def test_missing_config_is_a_server_error(ph: aposthog.Client) -> None:
    """PostHog reads destination["config"] unchecked: without it, its 500."""
    with pytest.raises(aposthog.InternalServerError):
        await raw(
            ph, "POST", json={"name": "x", "destination": {"type": "NoOp"}, "interval": "hour"}
        )


async def test_put_replaces_and_requires_the_whole_config(ph: aposthog.Client) -> None:
    """PUT checks required config fields on what is sent; PATCH does not."""
    created = await create(ph)
    error = await bad_request(
        ph,
        "PUT",
        created["id"],
        json={
            "name": "y",
            "interval": "day",
            "destination": {"type": "Postgres", "config": {"port": 1}},
        },
    )
    assert error.detail == "Configuration missing required field: 'user'"

    replaced = await raw(
        ph, "PUT", created["id"], json={"name": "y", "interval": "day", "destination": POSTGRES}
    )
    assert (replaced["name"], replaced["interval"], replaced["offset_hour"]) == ("y", "day", 0)


async def test_patch_deep_merges_nested_objects(fake: FakePostHog, ph: aposthog.Client) -> None:
    """Nested config objects merge key by key; a scalar replaced by an object is overwritten."""
    created = await create(
        ph,
        destination={
            "type": "S3",
            "config": {
                "bucket_name": "b",
                "region": "r",
                "prefix": "p",
                "include_events": ["a"],
                "batch_export_schema": {"x": {"y": 1}},
            },
        },
    )
    await raw(
        ph,
        "PATCH",
        created["id"],
        json={"destination": {"type": "S3", "config": {"batch_export_schema": {"x": {"z": 2}}}}},
    )
    config = fake.batch_exports[created["id"]]["destination"]["config"]
    assert config["batch_export_schema"] == {"x": {"y": 1, "z": 2}}
    assert config["include_events"] == ["a"]


async def test_patch_offsets_follow_posthog(ph: aposthog.Client) -> None:
    """Offsets need the interval beside them; an hour alone resets the weekday to Sunday."""
    created = await create(ph, interval="week", offset_day=3, offset_hour=2)
    assert (created["offset_day"], created["offset_hour"]) == (3, 2)
    with pytest.raises(aposthog.InternalServerError):  # offsets without an interval
        await raw(ph, "PATCH", created["id"], json={"offset_hour": 7})
    patched = await raw(ph, "PATCH", created["id"], json={"interval": "week", "offset_hour": 9})
    assert (patched["offset_day"], patched["offset_hour"]) == (0, 9)
    hourly = await raw(ph, "PATCH", created["id"], json={"interval": "hour"})
    assert (hourly["offset_day"], hourly["offset_hour"]) == (None, None)


async def test_scopes(fake: FakePostHog) -> None:
    """batch_export:read may list and test but not write; logs refuse every scoped key."""
    async with fake.client(max_retries=0) as ph:
        created = await create(ph)
    reader = fake.add_key(scopes=["batch_export:read"])
    async with fake.client(api_key=reader, max_retries=0) as ph:
        assert len(await ph.batch_exports.list().to_list()) == 1
        assert await ph.batch_exports.test(destination="S3")
        with pytest.raises(aposthog.PermissionDeniedError) as info:
            await ph.batch_exports.pause(created["id"])
        assert info.value.detail == "API key missing required scope 'batch_export:write'"
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.batch_exports.logs(created["id"])


# ---------------------------------------------------------------------------------- tests


async def test_run_test_step_merges_the_stored_config(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Stored secrets count for the test; the request's config overrides, nothing is saved."""
    s3 = {
        "bucket_name": "b",
        "region": "r",
        "prefix": "p",
        "aws_access_key_id": "k",
        "aws_secret_access_key": "s",
    }
    created = await create(ph, destination={"type": "S3", "config": s3})
    step = await ph.batch_exports.run_test_step(created["id"], step=0)
    assert step.result is not None
    assert step.result.status == "Passed"

    stripped = await create(
        ph, destination={"type": "S3", "config": {"bucket_name": "b", "region": "r", "prefix": "p"}}
    )
    step = await ph.batch_exports.run_test_step(stripped["id"], step=0)
    assert step.result is not None
    assert (step.result.status, step.result.message) == (
        "Failed",
        "The test step cannot run as it's not configured.",
    )
    step = await ph.batch_exports.run_test_step(
        stripped["id"], step=0, config={"aws_access_key_id": "k", "aws_secret_access_key": "s"}
    )
    assert step.result is not None
    assert step.result.status == "Passed"
    assert "aws_access_key_id" not in fake.batch_exports[stripped["id"]]["destination"]["config"]


async def test_run_test_step_without_config_or_out_of_range_is_a_500(ph: aposthog.Client) -> None:
    """PostHog's unchecked lookups: a missing destination.config, an index past the steps."""
    s3 = {"bucket_name": "b", "region": "r", "prefix": "p"}
    created = await create(ph, destination={"type": "S3", "config": s3})
    with pytest.raises(aposthog.InternalServerError):
        await raw(ph, "POST", created["id"], "run_test_step", json={"step": 0, "name": "x"})
    with pytest.raises(aposthog.InternalServerError):
        await ph.batch_exports.run_test_step(created["id"], step=5)


async def test_scripted_and_default_step_results(fake: FakePostHog, ph: aposthog.Client) -> None:
    """BigQuery's impersonation steps skip by default; a scripted result wins."""
    bigquery = {
        "type": "BigQuery",
        "config": {
            "project_id": "p",
            "dataset_id": "d",
            "table_id": "t",
            "private_key": "k",
            "private_key_id": "i",
            "token_uri": "u",
            "client_email": "e",
        },
    }
    statuses = []
    for step in range(5):
        result = (await ph.batch_exports.run_test_step_new(step=step, destination=bigquery)).result
        assert result is not None
        statuses.append(result.status)
    assert statuses == ["Skipped", "Skipped", "Passed", "Passed", "Passed"]

    fake.set_batch_export_test_result(
        "BigQuery", 3, status="Failed", message="Dataset 'd' could not be found"
    )
    step = await ph.batch_exports.run_test_step_new(step=3, destination=bigquery)
    assert step.name == "Verify BigQuery dataset"
    assert step.result is not None
    assert (step.result.status, step.result.message) == ("Failed", "Dataset 'd' could not be found")


@pytest.mark.parametrize(
    ("destination", "names"),
    [
        ("S3", ["Check S3 bucket exists"]),
        ("S3Compatible", ["Check S3 bucket exists"]),
        (
            "Snowflake",
            [
                "Establish connection to Snowflake",
                "Verify Snowflake warehouse",
                "Verify Snowflake database",
                "Verify Snowflake schema",
            ],
        ),
    ],
)
async def test_step_lists(ph: aposthog.Client, destination: str, names: list[str]) -> None:
    """The steps of each testable type, in PostHog's order."""
    assert [s.name for s in await ph.batch_exports.test(destination=destination)] == names


async def test_test_answers_with_empty_bodies(fake: FakePostHog, ph: aposthog.Client) -> None:
    """A missing destination parameter is a bare 400; an untestable type a bare 404."""
    for query, status in ((None, 400), ({"destination": "HTTP"}, 404)):
        with pytest.raises(aposthog.APIStatusError) as info:
            await raw(ph, "GET", "test", params=query)
        assert (info.value.status, info.value.body, info.value.detail) == (status, None, None)


# ---------------------------------------------------------------------------------- knobs


async def test_log_knobs_and_deleted_exports(fake: FakePostHog, ph: aposthog.Client) -> None:
    """add_batch_export_logs takes messages or mappings; deleted exports' logs are a 404."""
    created = await create(ph)
    added = fake.add_batch_export_logs(
        created["id"], ["one", {"message": "two", "level": "warning", "instance_id": "r"}]
    )
    assert [e["message"] for e in added] == ["one", "two"]
    entries = await ph.batch_exports.logs(created["id"]).to_list()
    assert [(e.message, e.level) for e in entries] == [("two", "WARNING"), ("one", "INFO")]

    await ph.batch_exports.delete(created["id"])
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.logs(created["id"])
    with pytest.raises(KeyError):
        fake.add_batch_export_log("missing", "x")


async def test_logs_parameters_are_validated_by_the_fake(ph: aposthog.Client) -> None:
    """The fake answers PostHog's 400s to a client that skips the checks."""
    created = await create(ph)
    for params, attr, code in (
        ({"limit": "501"}, "limit", "max_value"),
        ({"limit": "0"}, "limit", "min_value"),
        ({"limit": "x"}, "limit", "invalid_input"),
        ({"after": "yesterday"}, "after", "invalid_input"),
    ):
        error = await bad_request(ph, "GET", created["id"], "logs", params=params)
        assert (error.attr, error.code) == (attr, code)


async def test_latest_runs_are_the_ten_newest(fake: FakePostHog, ph: aposthog.Client) -> None:
    """An export carries its ten newest runs, newest first."""
    created = await create(ph)
    runs = [fake.add_batch_export_run(created["id"]) for _ in range(12)]
    export = await ph.batch_exports.get(created["id"])
    assert [r.id for r in export.latest_runs] == [r["id"] for r in reversed(runs)][:10]


async def test_project_id_and_team_id(ph: aposthog.Client) -> None:
    """The export belongs to the fake's environment."""
    created = await create(ph)
    assert created["team_id"] == 1
