"""
FakePostHog's batch-export fields that tie to the export's model, as PostHog's
`BatchExportSerializer` checks them: `model` (fixed once created), `hogql_query` and its
modifiers and keys, `incremental_mode`, `filters` and `timezone`.
"""

from __future__ import annotations

from typing import Any

import pytest

import aposthog
from aposthog._http import Route
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

NOOP = {"type": "NoOp", "config": {}}
QUERY = "SELECT event, uuid AS id, timestamp FROM events"
EVENT_FILTER = {"key": "$browser", "operator": "exact", "type": "event", "value": ["Firefox"]}


async def raw(ph: aposthog.Client, method: str, *parts: str, **kwargs: Any) -> Any:
    # Bodies the typed methods would refuse to send: straight through the pipeline.
    route = Route(method, "/".join(("batch_exports", *parts)), repeatable=False)
    return await ph._api.request_json(route, **kwargs)


async def create(ph: aposthog.Client, **body: Any) -> dict[str, Any]:
    body = {"name": "x", "destination": NOOP, "interval": "hour", **body}
    result: dict[str, Any] = await raw(ph, "POST", json=body)
    return result


async def refused(ph: aposthog.Client, *parts: str, method: str = "POST", **body: Any) -> Any:
    if method == "POST":
        body = {"name": "x", "destination": NOOP, "interval": "hour", **body}
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, method, *parts, json=body)
    return info.value


@pytest.fixture
def hogql(fake: FakePostHog) -> None:
    fake.batch_export_flags.add("hogql-batch-exports")


# ---------------------------------------------------------------------------------- model


async def test_the_model_cannot_change(ph: aposthog.Client) -> None:
    """PATCHing another model is a 400 on `model`; the same model passes; null is DRF's."""
    export = await create(ph, model="persons")
    error = await refused(ph, export["id"], method="PATCH", model="events")
    assert (error.attr, error.detail) == (
        "model",
        "Changing models is not supported. Create a new batch export instead.",
    )
    assert (await raw(ph, "PATCH", export["id"], json={"model": "persons"}))["model"] == "persons"
    error = await refused(ph, export["id"], method="PATCH", model=None)
    assert (error.attr, error.code, error.detail) == (
        "model",
        "null",
        "This field may not be null.",
    )
    error = await refused(ph, export["id"], method="PATCH", model="")
    assert (error.code, error.detail) == ("invalid_choice", '"" is not a valid choice.')


# ---------------------------------------------------------------------------------- hogql_query


@pytest.mark.parametrize("model", ["events", "persons", "sessions"])
async def test_a_query_needs_the_hogql_model(ph: aposthog.Client, model: str) -> None:
    """Without a grandfathered schema, only a hogql export takes a query; None passes."""
    error = await refused(ph, model=model, hogql_query=QUERY)
    assert (error.attr, error.detail) == (
        "hogql_query",
        f"'hogql_query' is only supported for 'hogql' not '{model}' model",
    )
    assert (await create(ph, model=model, hogql_query=None))["schema"] is None


async def test_a_grandfathered_team_keeps_events_queries(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A team with a custom-schema export may set one on events exports, and clear it."""
    old = await create(ph)
    fake.batch_exports[old["id"]]["schema"] = {"fields": [], "values": {}}
    export = await create(ph, hogql_query=QUERY)
    assert export["schema"]["hogql_query"] == QUERY
    assert export["hogql_query"] is None  # the events query lives in the schema
    cleared = await raw(ph, "PATCH", export["id"], json={"hogql_query": None})
    assert cleared["schema"] is None
    error = await refused(ph, model="persons", hogql_query=QUERY)
    assert error.attr == "hogql_query"
    # The query must still parse: PostHog compiles it into the schema.
    error = await refused(ph, hogql_query="events")
    assert (error.attr, error.detail) == (None, "Failed to parse query")


async def test_a_deleted_custom_schema_export_still_grandfathers_the_team(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog counts deleted exports too when it looks for a custom schema."""
    old = await create(ph)
    fake.batch_exports[old["id"]]["schema"] = {"fields": [], "values": {}}
    await ph.batch_exports.delete(old["id"])
    assert (await create(ph, hogql_query=QUERY))["schema"]["hogql_query"] == QUERY


@pytest.mark.usefixtures("hogql")
async def test_a_hogql_export_needs_its_query(ph: aposthog.Client) -> None:
    """Create without a query, or clear it later: 400 on `hogql_query`."""
    required = ("hogql_query", "'hogql_query' is required when 'model' is 'hogql'")
    error = await refused(ph, model="hogql")
    assert (error.attr, error.detail) == required
    export = await create(ph, model="hogql", hogql_query=QUERY)
    error = await refused(ph, export["id"], method="PATCH", hogql_query=None)
    assert (error.attr, error.detail) == required
    error = await refused(ph, model="hogql", hogql_query="  ")
    assert (error.attr, error.code) == ("hogql_query", "blank")


@pytest.mark.usefixtures("hogql")
async def test_a_hogql_export_stores_its_source(ph: aposthog.Client) -> None:
    """Query, modifiers, keys and mode are returned as sent; a PATCH changes what it names."""
    export = await create(
        ph,
        model="hogql",
        hogql_query=QUERY,
        hogql_modifiers={"convertToProjectTimezone": False, "personsOnEventsMode": None},
        primary_key=["id"],
        version_key=["timestamp"],
        incremental_mode="MERGE",
    )
    assert {k: export[k] for k in ("hogql_query", "hogql_modifiers", "schema")} == {
        "hogql_query": QUERY,
        "hogql_modifiers": {"convertToProjectTimezone": False},  # stored without nulls
        "schema": None,
    }
    assert (export["primary_key"], export["version_key"]) == (["id"], ["timestamp"])
    assert export["incremental_mode"] == "MERGE"
    patched = await raw(ph, "PATCH", export["id"], json={"version_key": None})
    assert (patched["primary_key"], patched["version_key"]) == (["id"], None)
    assert patched["incremental_mode"] == "MERGE"


@pytest.mark.usefixtures("hogql")
async def test_merge_needs_a_primary_key(ph: aposthog.Client) -> None:
    """MERGE without a primary key, sent or stored, is a 400 on `primary_key`."""
    message = ("primary_key", "'primary_key' is required when 'incremental_mode' is 'MERGE'")
    error = await refused(ph, model="hogql", hogql_query=QUERY, incremental_mode="MERGE")
    assert (error.attr, error.detail) == message
    export = await create(ph, model="hogql", hogql_query=QUERY)
    assert export["incremental_mode"] == "APPEND"  # PostHog's default
    error = await refused(ph, export["id"], method="PATCH", incremental_mode="MERGE")
    assert (error.attr, error.detail) == message
    # A stored MERGE counts too: its primary key cannot be cleared.
    merge = await create(
        ph, model="hogql", hogql_query=QUERY, incremental_mode="MERGE", primary_key=["id"]
    )
    error = await refused(ph, merge["id"], method="PATCH", primary_key=None)
    assert (error.attr, error.detail) == message


@pytest.mark.parametrize("name", ["hogql_modifiers", "primary_key", "version_key"])
async def test_source_fields_need_the_hogql_model(ph: aposthog.Client, name: str) -> None:
    """Modifiers and keys are refused on other models; null passes."""
    value: Any = {"convertToProjectTimezone": False} if name == "hogql_modifiers" else ["id"]
    error = await refused(ph, **{name: value})
    assert (error.attr, error.detail) == (
        name,
        f"'{name}' is only supported for 'hogql' not 'events' model",
    )
    assert (await create(ph, **{name: None}))[name] is None


@pytest.mark.parametrize(
    ("body", "attr", "code", "detail"),
    [
        ({"primary_key": "id"}, "primary_key", "not_a_list", 'got type "str".'),
        ({"primary_key": []}, "primary_key", "empty", "This list may not be empty."),
        ({"version_key": ["id", ""]}, "version_key__1", "blank", "This field may not be blank."),
        ({"version_key": [None]}, "version_key__0", "null", "This field may not be null."),
        ({"incremental_mode": "UPSERT"}, "incremental_mode", "invalid_choice", "valid choice."),
        ({"incremental_mode": None}, "incremental_mode", "null", "may not be null."),
        ({"hogql_modifiers": [1]}, "hogql_modifiers", "invalid_input", "valid dictionary"),
        ({"hogql_query": True}, "hogql_query", "invalid_input", "Not a valid string."),
    ],
)
async def test_source_field_types(
    ph: aposthog.Client, body: dict[str, Any], attr: str, code: str, detail: str
) -> None:
    """DRF's ListField, ChoiceField and PostHog's modifiers field, with their messages."""
    error = await refused(ph, **body)
    assert (error.attr, error.code) == (attr, code)
    assert detail in error.detail


# ---------------------------------------------------------------------------------- filters


async def test_each_filter_needs_a_known_type(ph: aposthog.Client) -> None:
    """A filter without type event, hogql or person is refused."""
    for bad in ({"key": "$browser"}, {**EVENT_FILTER, "type": "cohort"}):
        error = await refused(ph, filters=[EVENT_FILTER, bad])
        assert (error.attr, error.detail) == (
            "filters",
            "Each filter must have a 'type' of one of: 'event', 'hogql', 'person'",
        )
    assert (await create(ph, filters=[EVENT_FILTER]))["filters"] == [EVENT_FILTER]


async def test_filters_need_the_events_model(ph: aposthog.Client) -> None:
    """Filters on a persons export are refused; null passes, on create and on update."""
    error = await refused(ph, model="persons", filters=[EVENT_FILTER])
    assert (error.attr, error.detail) == (
        "filters",
        "'filters' is only supported for 'events' not 'persons' model",
    )
    export = await create(ph, model="persons", filters=None)
    error = await refused(ph, export["id"], method="PATCH", filters=[EVENT_FILTER])
    assert error.attr == "filters"
    # Only null passes: an empty list is still filters.
    error = await refused(ph, export["id"], method="PATCH", filters=[])
    assert error.attr == "filters"


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        ("$browser", "Each filter must be an object"),
        (
            {"data_interval_end": "2024-01-01"},
            "'data_interval_start' and 'data_interval_end' are run attributes and not "
            "'filters'. Trigger a backfill if you wish to manually control which periods "
            "to batch export.",
        ),
    ],
)
async def test_each_filter_is_an_object_and_no_run_attribute(
    ph: aposthog.Client, bad: Any, detail: str
) -> None:
    """A filter that is no object, or that names a data-interval bound, is refused."""
    error = await refused(ph, filters=[EVENT_FILTER, bad])
    assert (error.attr, error.detail) == ("filters", detail)


# ---------------------------------------------------------------------------------- timezone


@pytest.mark.parametrize("timezone", ["Mars/Olympus_Mons", "", "utc", 5, "localtime"])
async def test_unknown_timezones_are_refused(ph: aposthog.Client, timezone: Any) -> None:
    """Only pytz's names: anything else is DRF's invalid_choice."""
    error = await refused(ph, timezone=timezone)
    assert (error.attr, error.code, error.detail) == (
        "timezone",
        "invalid_choice",
        f'"{timezone}" is not a valid choice.',
    )


async def test_known_timezones_and_null(ph: aposthog.Client) -> None:
    """IANA names and their old links pass; null means UTC."""
    assert (await create(ph, timezone="America/Argentina/Buenos_Aires"))["timezone"] == (
        "America/Argentina/Buenos_Aires"
    )
    assert (await create(ph, timezone="US/Eastern"))["timezone"] == "US/Eastern"
    assert (await create(ph, timezone=None))["timezone"] == "UTC"


# ---------------------------------------------------------------------------------- tests


async def test_the_legacy_s3_type_has_no_test(ph: aposthog.Client) -> None:
    """PostHog's destination-test lookup no longer knows `S3`: a bare 404."""
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.test(destination="S3")
    assert await ph.batch_exports.test(destination="AwsS3")


async def test_run_test_step_validates_as_a_new_export(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog's run_test_step serializer has no instance: another model is no change."""
    keys = {"aws_access_key_id": "k", "aws_secret_access_key": "s"}
    pk = fake.add_integration("aws-s3", sensitive_config=keys)["id"]
    s3 = {
        "type": "AwsS3",
        "config": {"bucket_name": "b", "region": "r", "prefix": "p"},
        "integration": pk,
    }
    export = await create(ph, model="persons", destination=s3)
    body = {"name": "x", "interval": "hour", "model": "events", "destination": s3, "step": 1}
    step = await raw(ph, "POST", export["id"], "run_test_step", json=body)
    assert step["name"] == "Check S3 bucket exists"
    # The model rules see a new (events) export too: filters pass on a persons export's test.
    body = {"name": "x", "interval": "hour", "destination": s3, "filters": [EVENT_FILTER]}
    step = await raw(ph, "POST", export["id"], "run_test_step", json={**body, "step": 1})
    assert step["name"] == "Check S3 bucket exists"
