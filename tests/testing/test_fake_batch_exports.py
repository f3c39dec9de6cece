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
# The integrations the autouse fixture seeds, by id: PostHog needs one per export type.
PG_INTEGRATION, AWS_INTEGRATION, R2_INTEGRATION, GCP_INTEGRATION, SNOWFLAKE_INTEGRATION = (
    1,
    2,
    3,
    4,
    5,
)
POSTGRES: dict[str, Any] = {
    "type": "Postgres",
    "config": {
        "host": "db.example.com",
        "port": 5432,
        "database": "analytics",
        "user": "posthog",
        "password": "hunter2",
    },
    "integration": PG_INTEGRATION,
}
S3_CONFIG = {"bucket_name": "b", "region": "r", "prefix": "p"}
POSTGRES_BODY: dict[str, Any] = {"name": "x", "destination": POSTGRES, "interval": "hour"}


@pytest.fixture(autouse=True)
def integrations(fake: FakePostHog) -> None:
    keys = {"aws_access_key_id": "k", "aws_secret_access_key": "s"}
    fake.add_integration("postgresql", config={"host": "db.example.com"})
    fake.add_integration("aws-s3", config={"aws_account_id": "123456789012"}, sensitive_config=keys)
    fake.add_integration(
        "s3-compatible", config={"endpoint_url": "https://r2.example.com"}, sensitive_config=keys
    )
    fake.add_integration("google-cloud-service-account")
    fake.add_integration(
        "snowflake",
        config={"account": "acme", "user": "posthog", "authentication_type": "password"},
        sensitive_config={"password": "hunter2"},
    )
    assert sorted(fake.integrations) == [1, 2, 3, 4, 5]


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


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # `name` is declared before `destination`: its blank error comes first.
        ({"name": " ", "interval": "hour"}, ("blank", "name")),
        # `model` is declared before `destination` too.
        ({"name": "x", "model": "clicks", "interval": "hour"}, ("invalid_choice", "model")),
        # `destination` is declared before `interval`.
        (
            {"name": "x", "destination": {"type": "Kafka", "config": {}}},
            ("invalid_choice", "destination__type"),
        ),
    ],
)
async def test_a_missing_field_is_reported_in_its_place_in_field_order(
    ph: aposthog.Client, body: dict[str, Any], expected: tuple[str, str]
) -> None:
    """
    DRF validates field by field in `Meta.fields` order (name, model, destination,
    interval, ...), a missing required field included (its `required` error is raised by
    that field's own `run_validation`), and drf-exceptions-hog reports the first error of
    that order. So a blank `name` with no `destination` is the `name` error, not
    "destination: This field is required.".
    """
    error = await bad_request(ph, "POST", json=body)
    assert (error.code, error.attr) == expected


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
    # A name must be a string (DRF's CharField refuses a bool, and null), a destination a
    # dict with a type.
    error = await bad_request(
        ph, "POST", json={"name": None, "destination": POSTGRES, "interval": "hour"}
    )
    assert (error.code, error.attr) == ("null", "name")
    error = await bad_request(
        ph, "POST", json={"name": True, "destination": POSTGRES, "interval": "hour"}
    )
    assert (error.code, error.attr, error.detail) == (
        "invalid_input",
        "name",
        "Not a valid string.",
    )
    error = await bad_request(
        ph, "POST", json={"name": "x", "destination": [POSTGRES], "interval": "hour"}
    )
    assert (error.attr, error.detail) == (
        "destination__non_field_errors",
        "Invalid data. Expected a dictionary, but got list.",
    )
    error = await bad_request(
        ph, "POST", json={"name": "x", "destination": {"config": {}}, "interval": "hour"}
    )
    assert (error.code, error.attr) == ("required", "destination__type")


async def test_a_null_destination_is_drfs_null_error(ph: aposthog.Client) -> None:
    """
    `destination` is a nested `BatchExportDestinationSerializer` (required, not
    `allow_null`): DRF's `Field.validate_empty_values` refuses None before
    `to_internal_value` runs, with `{"destination": ["This field may not be null."]}`
    (code `null`), as the fake already answers for a null `name`. The fake treated None
    as a non-dict body ("Expected a dictionary, but got NoneType.", on
    `destination__non_field_errors`), which PostHog never says.
    """
    error = await bad_request(
        ph, "POST", json={"name": "x", "destination": None, "interval": "hour"}
    )
    assert (error.code, error.attr, error.detail) == (
        "null",
        "destination",
        "This field may not be null.",
    )
    # A partial update checks null the same way: `partial` only lets a field be left out.
    created = await create(ph)
    error = await bad_request(ph, "PATCH", created["id"], json={"destination": None})
    assert (error.code, error.attr, error.detail) == (
        "null",
        "destination",
        "This field may not be null.",
    )


@pytest.mark.parametrize(
    "when",
    [
        "2024-02-30T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T10:00:00z",
        " 2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z ",
    ],
)
async def test_an_unreal_datetime_is_drfs_wrong_format_error(
    ph: aposthog.Client, when: str
) -> None:
    """
    DRF's `DateTimeField` calls Django's `parse_datetime` under
    `contextlib.suppress(ValueError, TypeError)`: a well-formed but unreal value (Feb 30,
    hour 24 on Python 3.13) falls through to `fail("invalid")`, the same "Datetime has
    wrong format. …" as `garbage`, and so does a lower-case `z`, which neither
    `fromisoformat` nor Django's zone pattern (`Z|[+-]…`) reads. The fake answered with
    Python's own text ("day is out of range for month", "hour must be in 0..23"), and
    took the `z` (201, 200), for `start_at` as for the logs' `after`. Blanks around the
    text too: DRF hands it over as it came (only `CharField` trims), and neither parser
    takes them; the fake stripped them and took the value.
    """
    wrong = (
        "Datetime has wrong format. Use one of these formats instead: "
        "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
    )
    error = await bad_request(ph, "POST", json={**POSTGRES_BODY, "start_at": when})
    assert (error.attr, error.detail) == ("start_at", wrong)
    export = await raw(ph, "POST", json=POSTGRES_BODY)
    error = await bad_request(ph, "GET", export["id"], "logs", params={"after": when})
    assert (error.attr, error.detail) == ("after", wrong)


async def test_config_type_checks_and_coercion(fake: FakePostHog, ph: aposthog.Client) -> None:
    """A flag sent as "true" is coerced to True; a list is refused with PostHog's message."""
    config: dict[str, Any] = {**POSTGRES["config"], "has_self_signed_cert": "true"}
    created = await create(ph, destination={**POSTGRES, "config": config})
    stored = fake.batch_exports[created["id"]]["destination"]["config"]
    assert stored["has_self_signed_cert"] is True
    # The text is compared case-insensitively, as PostHog's try_convert_to_type does.
    config = {**POSTGRES["config"], "has_self_signed_cert": "FALSE"}
    created = await create(ph, destination={**POSTGRES, "config": config})
    assert (
        fake.batch_exports[created["id"]]["destination"]["config"]["has_self_signed_cert"] is False
    )

    config = {**POSTGRES["config"], "has_self_signed_cert": [1]}
    error = await bad_request(
        ph,
        "POST",
        json={"name": "x", "destination": {**POSTGRES, "config": config}, "interval": "hour"},
    )
    assert error.detail == "Configuration has invalid type: got 'list', expected 'bool'"


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
            "integration": GCP_INTEGRATION,
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
    # A secret is left out whatever its value, an object too.
    config = {**POSTGRES["config"], "password": {"vault": "ref"}}
    pg = await create(ph, destination={**POSTGRES, "config": config})
    assert "password" not in pg["destination"]["config"]


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
        None,
        "HTTP batch exports only support the events model",
    )


async def test_hogql_model_needs_the_flag_and_keeps_its_query_in_its_source(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """model=hogql is a 403 without its flag; its query is returned, and makes no schema."""
    with pytest.raises(aposthog.PermissionDeniedError) as info:
        await create(ph, model="hogql")
    assert info.value.detail == "HogQL batch exports are not enabled for this team."

    fake.batch_export_flags.add("hogql-batch-exports")
    created = await create(ph, model="hogql", hogql_query="SELECT event FROM events")
    assert created["hogql_query"] == "SELECT event FROM events"
    assert created["schema"] is None


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


async def test_missing_config_is_required_but_a_patch_without_it_is_a_server_error(
    ph: aposthog.Client,
) -> None:
    """`config` is a required JSONField: left out of a create or a PUT, or null, DRF's 400;
    PostHog's `validate()` then reads `attrs["config"].keys()` unchecked, so a PATCH that
    leaves it out, or a config that is not an object, is its 500."""
    for method, parts in (("POST", ()), ("PUT", ((await create(ph))["id"],))):
        body = {"name": "x", "destination": {"type": "NoOp"}, "interval": "hour"}
        error = await bad_request(ph, method, *parts, json=body)
        assert (error.code, error.attr, error.detail) == (
            "required",
            "destination__config",
            "This field is required.",
        )
    created = await create(ph)
    null = {"name": "x", "destination": {"type": "NoOp", "config": None}, "interval": "hour"}
    error = await bad_request(ph, "POST", json=null)
    assert (error.code, error.attr) == ("null", "destination__config")
    error = await bad_request(ph, "PATCH", created["id"], json={"destination": null["destination"]})
    assert (error.code, error.attr) == ("null", "destination__config")
    with pytest.raises(aposthog.InternalServerError):
        await raw(ph, "PATCH", created["id"], json={"destination": {"type": "Postgres"}})
    with pytest.raises(aposthog.InternalServerError):
        await raw(
            ph,
            "POST",
            json={"name": "x", "destination": {"type": "NoOp", "config": []}, "interval": "hour"},
        )


@pytest.mark.parametrize(
    ("backfill", "backfills"),
    [(True, 1), ("tRUe", 1), ("yes", 1), (1, 1), ("ON", 1), (False, 0), ("False", 0), (0, 0)],
)
async def test_unpause_reads_backfill_as_drf_reads_a_boolean(
    fake: FakePostHog, ph: aposthog.Client, backfill: Any, backfills: int
) -> None:
    created = await create(ph)
    await raw(ph, "POST", created["id"], "pause")
    assert {"paused": False} == await raw(
        ph, "POST", created["id"], "unpause", json={"backfill": backfill}
    )
    assert backfills == len(fake.batch_export_backfills)


@pytest.mark.parametrize(
    ("backfill", "code", "detail"),
    [
        ("maybe", "invalid_input", "Must be a valid boolean."),
        ([True], "invalid_input", "Must be a valid boolean."),
        (2, "invalid_input", "Must be a valid boolean."),
        (None, "null", "This field may not be null."),
    ],
)
async def test_unpause_refuses_what_is_not_a_boolean_before_the_lookup(
    fake: FakePostHog, ph: aposthog.Client, backfill: Any, code: str, detail: str
) -> None:
    """PostHog checks the body before it looks the export up: an unknown id is a 400 too."""
    created = await create(ph)
    await raw(ph, "POST", created["id"], "pause")
    for export_id in (created["id"], "00000000-0000-0000-0000-000000000000"):
        error = await bad_request(ph, "POST", export_id, "unpause", json={"backfill": backfill})
        assert (error.code, error.attr, error.detail) == (code, "backfill", detail)
    assert fake.batch_exports[created["id"]]["paused"] is True
    assert {} == fake.batch_export_backfills


async def test_paused_is_read_as_drf_reads_a_boolean(ph: aposthog.Client) -> None:
    assert (await create(ph, paused="yes"))["paused"] is True
    assert (await create(ph, paused=0))["paused"] is False
    error = await bad_request(
        ph, "POST", json={"name": "x", "destination": POSTGRES, "interval": "hour", "paused": None}
    )
    assert (error.code, error.attr) == ("null", "paused")
    error = await bad_request(
        ph, "POST", json={"name": "x", "destination": POSTGRES, "interval": "hour", "paused": "2"}
    )
    assert (error.code, error.attr, error.detail) == (
        "invalid_input",
        "paused",
        "Must be a valid boolean.",
    )
    # An earlier field's error is the one reported, not the boolean's.
    error = await bad_request(
        ph, "POST", json={"name": " ", "destination": POSTGRES, "interval": "hour", "paused": "2"}
    )
    assert (error.code, error.attr) == ("blank", "name")


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
    assert error.detail == "Configuration missing required field: 'database'"

    replaced = await raw(
        ph, "PUT", created["id"], json={"name": "y", "interval": "day", "destination": POSTGRES}
    )
    assert (replaced["name"], replaced["interval"], replaced["offset_hour"]) == ("y", "day", 0)


async def test_patch_deep_merges_nested_objects(fake: FakePostHog, ph: aposthog.Client) -> None:
    """Nested config objects merge key by key; a scalar replaced by an object is overwritten."""
    created = await create(
        ph,
        destination={
            "type": "AwsS3",
            "config": {
                **S3_CONFIG,
                "include_events": ["a"],
                "batch_export_schema": {"x": {"y": 1}},
            },
            "integration": AWS_INTEGRATION,
        },
    )
    await raw(
        ph,
        "PATCH",
        created["id"],
        json={"destination": {"type": "AwsS3", "config": {"batch_export_schema": {"x": {"z": 2}}}}},
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


async def test_an_interval_alone_keeps_or_resets_the_offsets_as_posthog_does(
    ph: aposthog.Client,
) -> None:
    """A PATCH of the interval alone keeps the offset; a PUT without offsets resets it."""
    daily = await create(ph, interval="day", offset_hour=5)
    patched = await raw(ph, "PATCH", daily["id"], json={"interval": "day"})
    assert patched["offset_hour"] == 5
    weekly = await create(ph, interval="week", offset_day=3, offset_hour=2)
    patched = await raw(ph, "PATCH", weekly["id"], json={"interval": "week"})
    assert (patched["offset_day"], patched["offset_hour"]) == (3, 2)
    replaced = await raw(
        ph, "PUT", weekly["id"], json={"name": "pg", "interval": "week", "destination": POSTGRES}
    )
    assert (replaced["offset_day"], replaced["offset_hour"]) == (0, 0)


@pytest.mark.parametrize(
    ("body", "attr", "code", "detail"),
    [
        (
            {"interval": "week", "offset_day": 7},
            "offset_day",
            "max_value",
            "less than or equal to 6.",
        ),
        ({"interval": "day", "offset_hour": 24}, "offset_hour", "max_value", "or equal to 23."),
        ({"interval": "day", "offset_hour": -1}, "offset_hour", "min_value", "or equal to 0."),
        ({"interval": "day", "offset_hour": 1.5}, "offset_hour", "invalid_input", "integer"),
        ({"interval": "day", "offset_hour": True}, "offset_hour", "invalid_input", "integer"),
    ],
)
async def test_offsets_are_drf_integers_in_range(
    ph: aposthog.Client, body: dict[str, Any], attr: str, code: str, detail: str
) -> None:
    """offset_day is 0-6, offset_hour 0-23; a fraction or a bool is no integer for DRF."""
    error = await bad_request(ph, "POST", json={"name": "x", "destination": POSTGRES, **body})
    assert (error.attr, error.code) == (attr, code)
    assert detail in error.detail


async def test_offsets_at_their_bounds_and_null_ones_pass(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Zero is a valid offset; a null offset passes whatever the interval, and is stored null."""
    unset = await create(ph, interval="day")
    assert fake.batch_exports[unset["id"]]["interval_offset"] is None
    daily = await create(ph, interval="day", offset_hour=0)
    assert daily["offset_hour"] == 0
    weekly = await create(ph, interval="week", offset_day=6, offset_hour=23)
    assert (weekly["offset_day"], weekly["offset_hour"]) == (6, 23)
    hourly = await create(ph, interval="hour", offset_day=None, offset_hour=None)
    assert (hourly["offset_day"], hourly["offset_hour"]) == (None, None)


async def test_offsets_with_a_zero_fraction_are_integers(ph: aposthog.Client) -> None:
    """DRF strips a zero fraction (`re_decimal`) before int(): 2.0 and "2.0" are 2."""
    for hour, read in [(2.0, 2), ("2.0", 2), ("3.", 3), (" 4.00 ", 4)]:
        assert (await create(ph, interval="day", offset_hour=hour))["offset_hour"] == read


@pytest.mark.parametrize(
    "start_at", ["2024/01/01 00:00", "2024-01-01T00:00:00 UTC", "yesterday", 1704067200]
)
async def test_datetimes_must_be_iso_8601(ph: aposthog.Client, start_at: Any) -> None:
    """start_at and end_at are DRF DateTimeFields: only the ISO 8601 shapes it parses."""
    error = await bad_request(ph, "POST", json={**POSTGRES_BODY, "start_at": start_at})
    assert (error.code, error.attr, error.detail) == (
        "invalid_input",
        "start_at",
        "Datetime has wrong format. Use one of these formats instead: "
        "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
    )


async def test_create_answers_201_with_posthogs_defaults(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A create left to defaults: a 201, the events model, UTC, unpaused, the name trimmed."""
    created = await create(ph, name="  pg  ")
    assert fake.status_counts[201] == 1
    assert (created["name"], created["model"], created["timezone"], created["paused"]) == (
        "pg",
        "events",
        "UTC",
        False,
    )


async def test_workflows_exports_are_left_out_of_the_list(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog's list hides the exports its Workflows product makes."""
    shown = await create(ph, name="shown")
    hidden = await create(ph, name="hidden")
    fake.batch_exports[hidden["id"]]["destination"] = {
        "type": "Workflows",
        "config": {},
        "integration": None,
    }
    listed = await raw(ph, "GET")
    assert (listed["count"], [e["id"] for e in listed["results"]]) == (1, [shown["id"]])


async def test_writes_stamp_the_export_and_delete_pauses_it(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    An update moves last_updated_at on; unpausing a running export changes nothing (no
    backfill either); a delete pauses the schedule as it marks the export deleted.
    """
    created = await create(ph)
    patched = await raw(ph, "PATCH", created["id"], json={"name": "renamed"})
    # Python 3.10's fromisoformat does not read a `Z`.
    assert dt.datetime.fromisoformat(
        patched["last_updated_at"].replace("Z", "+00:00")
    ) > dt.datetime.fromisoformat(created["last_updated_at"].replace("Z", "+00:00"))
    stored = fake.batch_exports[created["id"]]
    stamp = stored["last_updated_at"]
    assert {"paused": False} == await raw(
        ph, "POST", created["id"], "unpause", json={"backfill": True}
    )
    assert (stored["last_updated_at"], fake.batch_export_backfills) == (stamp, {})
    await ph.batch_exports.delete(created["id"])
    assert (stored["deleted"], stored["paused"]) == (True, True)


async def test_runs_still_going_have_no_finished_at(fake: FakePostHog, ph: aposthog.Client) -> None:
    """add_batch_export_run leaves finished_at null for a Starting or Running run only."""
    created = await create(ph)
    for status in ("Starting", "Running", "Failed", "Completed"):
        run = fake.add_batch_export_run(created["id"], status=status)
        assert (run["finished_at"] is None) is (status in ("Starting", "Running"))


async def test_integration_id_wins_over_integration(ph: aposthog.Client) -> None:
    """`integration_id`, the write-only alias declared after `integration`, is the one kept."""
    destination = {**POSTGRES, "integration": AWS_INTEGRATION, "integration_id": PG_INTEGRATION}
    created = await create(ph, destination=destination)
    assert created["destination"]["integration"] == PG_INTEGRATION


async def test_scopes(fake: FakePostHog) -> None:
    """batch_export:read may list and test but not write; logs refuse every scoped key."""
    async with fake.client(max_retries=0) as ph:
        created = await create(ph)
    reader = fake.add_key(scopes=["batch_export:read"])
    async with fake.client(api_key=reader, max_retries=0) as ph:
        assert len(await ph.batch_exports.list().to_list()) == 1
        assert await ph.batch_exports.test(destination="AwsS3")
        with pytest.raises(aposthog.PermissionDeniedError) as info:
            await ph.batch_exports.pause(created["id"])
        assert info.value.detail == "API key missing required scope 'batch_export:write'"
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.batch_exports.logs(created["id"])


# ---------------------------------------------------------------------------------- tests


async def test_run_test_step_merges_the_stored_config(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Stored config counts for the test; the request's config overrides, nothing is saved."""
    bigquery = {"project_id": "p", "dataset_id": "d", "table_id": "t"}
    created = await create(
        ph, destination={"type": "BigQuery", "config": bigquery, "integration": GCP_INTEGRATION}
    )
    step = await ph.batch_exports.run_test_step(created["id"], step=2)
    assert step.result is not None
    assert step.result.status == "Passed"

    # Without a project (the integration holds none here) the project step is not
    # configured (`BigQueryProjectTestStep._is_configured`).
    stripped = await create(
        ph,
        destination={
            "type": "BigQuery",
            "config": {"dataset_id": "d", "table_id": "t"},
            "integration": GCP_INTEGRATION,
        },
    )
    step = await ph.batch_exports.run_test_step(stripped["id"], step=2)
    assert step.result is not None
    assert (step.result.status, step.result.message) == (
        "Failed",
        "The test step cannot run as it's not configured.",
    )
    step = await ph.batch_exports.run_test_step(stripped["id"], step=2, config={"project_id": "p"})
    assert step.result is not None
    assert step.result.status == "Passed"
    assert "project_id" not in fake.batch_exports[stripped["id"]]["destination"]["config"]


async def test_run_test_step_without_config_or_out_of_range_is_a_500(ph: aposthog.Client) -> None:
    """PostHog's unchecked lookups: a missing destination.config, an index past the steps."""
    created = await create(
        ph,
        destination={"type": "S3Compatible", "config": S3_CONFIG, "integration": R2_INTEGRATION},
    )
    with pytest.raises(aposthog.InternalServerError):
        await raw(ph, "POST", created["id"], "run_test_step", json={"step": 0, "name": "x"})
    with pytest.raises(aposthog.InternalServerError):
        await ph.batch_exports.run_test_step(created["id"], step=5)


async def test_scripted_and_default_step_results(fake: FakePostHog, ph: aposthog.Client) -> None:
    """
    BigQuery's impersonation steps skip for an integration holding a key (and run for
    one PostHog impersonates: `integration.has_key()`); a scripted result wins.
    """
    keyed = fake.add_integration(
        "google-cloud-service-account",
        config={"project_id": "p", "service_account_email": "sa@p.iam.gserviceaccount.com"},
        sensitive_config={"private_key": "k", "private_key_id": "i", "token_uri": "u"},
    )
    config = {"project_id": "p", "dataset_id": "d", "table_id": "t"}
    for integration, expected in (
        (keyed["id"], ["Skipped", "Skipped", "Passed", "Passed", "Passed"]),
        (GCP_INTEGRATION, ["Passed"] * 5),
    ):
        bigquery = {"type": "BigQuery", "config": config, "integration": integration}
        statuses = []
        for number in range(5):
            result = (
                await ph.batch_exports.run_test_step_new(step=number, destination=bigquery)
            ).result
            assert result is not None
            statuses.append(result.status)
        assert statuses == expected

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
    for query, status in (
        (None, 400),
        ({"destination": ""}, 400),  # an empty value is missing too
        ({"destination": "HTTP"}, 404),
        ({"destination": "S3"}, 404),
    ):
        with pytest.raises(aposthog.APIStatusError) as info:
            await raw(ph, "GET", "test", params=query)
        assert (info.value.status, info.value.body, info.value.detail) == (status, None, None)


# ---------------------------------------------------------------------------------- knobs


async def test_run_knob_intervals_follow_the_export(fake: FakePostHog, ph: aposthog.Client) -> None:
    """A run's data interval ends at the start of its hour and spans the export's interval."""
    created = await create(ph, interval="day")
    run = fake.add_batch_export_run(
        created["id"], created_at=dt.datetime(2024, 1, 2, 10, 30, tzinfo=UTC)
    )
    assert (run["data_interval_start"], run["data_interval_end"]) == (
        dt.datetime(2024, 1, 1, 10, tzinfo=UTC),
        dt.datetime(2024, 1, 2, 10, tzinfo=UTC),
    )


async def test_the_list_pages_by_the_fakes_page_size() -> None:
    """`page_size` is the list's default limit, with a link to the next page."""
    noop = {"type": "NoOp", "config": {}}
    async with FakePostHog(page_size=1) as fake, fake.client() as ph:
        for name in ("a", "b"):
            await create(ph, name=name, destination=noop)
        page = await raw(ph, "GET")
    assert (page["count"], len(page["results"]), page["next"] is not None) == (2, 1, True)


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
        ({"limit": "1.5"}, "limit", "invalid_input"),
        ({"after": "yesterday"}, "after", "invalid_input"),
        ({"before": "yesterday"}, "before", "invalid_input"),
    ):
        error = await bad_request(ph, "GET", created["id"], "logs", params=params)
        assert (error.attr, error.code) == (attr, code)


async def test_logs_limit_defaults_to_50_and_takes_1_to_500(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Without a limit PostHog fetches 50 entries; 1 and 500 are both accepted."""
    created = await create(ph)
    fake.add_batch_export_logs(created["id"], [f"m{i}" for i in range(51)])
    assert len(await ph.batch_exports.logs(created["id"]).to_list()) == 50
    for limit, count in (("500", 51), ("1", 1)):
        page = await raw(ph, "GET", created["id"], "logs", params={"limit": limit})
        assert (page["count"], len(page["results"])) == (count, count)


async def test_logs_after_and_before_are_exclusive(fake: FakePostHog, ph: aposthog.Client) -> None:
    """ClickHouse's `timestamp > after AND timestamp < before`: the bounds themselves are out."""
    created = await create(ph)
    base = dt.datetime(2024, 5, 1, tzinfo=UTC)
    for minute in range(5):
        fake.add_batch_export_log(
            created["id"], f"m{minute}", timestamp=base + dt.timedelta(minutes=minute)
        )
    entries = await ph.batch_exports.logs(
        created["id"], after=base + dt.timedelta(minutes=1), before=base + dt.timedelta(minutes=3)
    ).to_list()
    assert [e.message for e in entries] == ["m2"]
    only_after = await ph.batch_exports.logs(
        created["id"], after=base + dt.timedelta(minutes=3)
    ).to_list()
    assert [e.message for e in only_after] == ["m4"]
    only_before = await ph.batch_exports.logs(
        created["id"], before=base + dt.timedelta(minutes=1)
    ).to_list()
    assert [e.message for e in only_before] == ["m0"]
    # On the wire, DRF's DateTimeField writes UTC with a Z.
    page = await raw(ph, "GET", created["id"], "logs", params={"limit": "1"})
    assert page["results"][0]["timestamp"] == "2024-05-01T00:04:00Z"


async def test_logs_match_level_and_search_in_any_case(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """`upper(level) IN` the upper-cased levels, and `message ILIKE`: case never matters."""
    created = await create(ph)
    fake.add_batch_export_logs(
        created["id"],
        [
            {"message": "Export FAILED", "level": "error"},
            {"message": "export failed again", "level": "ERROR"},
            {"message": "Export done", "level": "info"},
        ],
    )
    params = {"level": "error", "search": "export Failed"}
    page = await raw(ph, "GET", created["id"], "logs", params=params)
    assert [(e["message"], e["level"]) for e in page["results"]] == [
        ("export failed again", "ERROR"),
        ("Export FAILED", "ERROR"),
    ]


async def test_logs_are_the_exports_own(fake: FakePostHog, ph: aposthog.Client) -> None:
    """Only the entries whose log_source_id is this export come back."""
    first, second = await create(ph), await create(ph, name="other")
    fake.add_batch_export_log(first["id"], "mine")
    fake.add_batch_export_log(second["id"], "theirs")
    entries = await ph.batch_exports.logs(first["id"]).to_list()
    assert [(e.message, e.log_source_id) for e in entries] == [("mine", first["id"])]


async def test_logs_of_an_unknown_export_are_a_404_before_the_parameters(
    ph: aposthog.Client,
) -> None:
    """`logs` calls get_object() before it checks its parameters: 404, not 400."""
    with pytest.raises(aposthog.NotFoundError):
        await raw(ph, "GET", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "logs", params={"limit": "0"})


async def test_logs_pages_hold_the_fakes_page_size(fake: FakePostHog, ph: aposthog.Client) -> None:
    """
    The fetched entries go through the viewset's limit/offset pages. `next` carries
    `limit=<page size>`, which is also the fetch's LIMIT: it reaches no further entry.
    """
    created = await create(ph)
    fake.page_size = 2
    fake.add_batch_export_logs(created["id"], ["a", "b", "c"])
    first = await ph.batch_exports.logs(created["id"])
    assert (len(first.results), first.count, first.has_next_page()) == (2, 3, True)
    every = await ph.batch_exports.logs(created["id"]).to_list()
    assert [e.message for e in every] == ["c", "b"]
    assert ("limit", "2") in fake.requests[-1].query


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(
            {"level": "INFO, ERROR"},
            ["abc"],
        ),
        pytest.param(
            {"level": ","},
            [],
        ),
        pytest.param(
            {"level": ["INFO", "ERROR"]},
            ["a_c done"],
        ),
        pytest.param(
            {"search": "a_c"},
            ["a_c done", "abc"],
        ),
        pytest.param({"level": "warning"}, ["x"]),
    ],
)
async def test_logs_filters_read_as_posthogs_newest_logs_action(
    fake: FakePostHog, ph: aposthog.Client, params: dict[str, Any], expected: list[str]
) -> None:
    """
    PostHog's `logs` (posthog/api/log_entries.py @ d96a6558): `level` is one CharField,
    split on ',' as is, and `search` goes into `message ILIKE '%<search>%'`.
    """
    created = await create(ph)
    fake.add_batch_export_logs(
        created["id"],
        [
            {"message": "abc", "level": "INFO"},
            {"message": "a_c done", "level": "ERROR"},
            {"message": "x", "level": "WARNING"},
        ],
    )
    page = await raw(ph, "GET", created["id"], "logs", params=params)
    assert [e["message"] for e in page["results"]] == expected


async def test_a_whole_number_limit_with_a_decimal_point_is_read(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """IntegerField strips a trailing `.0*` before int(): limit=2.0 fetches two entries."""
    created = await create(ph)
    fake.add_batch_export_logs(created["id"], ["a", "b", "c"])
    page = await raw(ph, "GET", created["id"], "logs", params={"limit": "2.0"})
    assert [e["message"] for e in page["results"]] == ["c", "b"]


@pytest.mark.parametrize("name", ["level", "search", "instance_id"])
async def test_a_blank_logs_filter_is_a_400(ph: aposthog.Client, name: str) -> None:
    """`?search=` is DRF's "This field may not be blank.", not "no filter"."""
    created = await create(ph)
    error = await bad_request(ph, "GET", created["id"], "logs", params={name: ""})
    assert (error.attr, error.code, error.detail) == (
        name,
        "blank",
        "This field may not be blank.",
    )


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
    noop = {"type": "NoOp", "config": {}}
    async with FakePostHog(project_id=42) as other, other.client() as client:
        assert (await create(client, destination=noop))["team_id"] == 42


BIGQUERY: dict[str, Any] = {
    "type": "BigQuery",
    "config": {"project_id": "p", "dataset_id": "d", "table_id": "t"},
    "integration": GCP_INTEGRATION,
}
BIGQUERY_KEYS = {"private_key": "k", "private_key_id": "i", "token_uri": "u", "client_email": "e"}


async def test_unreadable_test_requests_are_posthogs_server_error(ph: aposthog.Client) -> None:
    """A step that is no index, a destination that is no object: drf-exceptions-hog's 500."""
    created = await create(ph, destination=BIGQUERY)
    requests: list[tuple[list[str], dict[str, Any]]] = [
        (["run_test_step_new"], {**POSTGRES_BODY, "destination": BIGQUERY, "step": "first"}),
        ([created["id"], "run_test_step"], {"destination": "BigQuery", "step": 0}),
        ([created["id"], "run_test_step"], {"destination": 5, "step": 0}),
    ]
    for parts, body in requests:
        with pytest.raises(aposthog.InternalServerError) as info:
            await raw(ph, "POST", *parts, json=body)
        assert (info.value.type, info.value.detail) == ("server_error", "A server error occurred.")


async def test_step_lists_and_the_default_step(fake: FakePostHog, ph: aposthog.Client) -> None:
    """
    `test` lists each step with a null result; a body without `step` runs the first; a
    negative step counts from the end, as PostHog's list indexing does, scripts included.
    """
    steps = (await raw(ph, "GET", "test", params={"destination": "BigQuery"}))["steps"]
    assert [step["result"] for step in steps] == [None] * len(steps)
    body = {**POSTGRES_BODY, "destination": BIGQUERY}
    first = await raw(ph, "POST", "run_test_step_new", json=body)
    assert first["name"] == steps[0]["name"]
    fake.set_batch_export_test_result("BigQuery", len(steps) - 1, status="Failed", message="no")
    last = await raw(ph, "POST", "run_test_step_new", json={**body, "step": -1})
    assert (last["name"], last["result"]) == (
        steps[-1]["name"],
        {"status": "Failed", "message": "no"},
    )


async def test_run_test_step_takes_the_sent_config_over_the_stored_one(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    The request's config wins key by key over the stored one (a null key is then missing),
    and stored keys the destination no longer declares are left out, not refused.
    """
    created = await create(
        ph, destination={**BIGQUERY, "config": {**BIGQUERY["config"], **BIGQUERY_KEYS}}
    )
    step = await ph.batch_exports.run_test_step(created["id"], step=2, config={"project_id": None})
    assert step.result is not None
    assert (step.result.status, step.result.message) == (
        "Failed",
        "The test step cannot run as it's not configured.",
    )
    fake.batch_exports[created["id"]]["destination"]["config"]["retired_setting"] = "x"
    step = await ph.batch_exports.run_test_step(created["id"], step=2)
    assert step.result is not None
    assert step.result.status == "Passed"


async def test_run_test_step_new_sees_the_teams_flags(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A high-frequency interval is tested like any once the team has the flag."""
    fake.batch_export_flags.add("high-frequency-batch-exports")
    body = {**POSTGRES_BODY, "destination": BIGQUERY, "interval": "every 5 minutes", "step": 2}
    assert (await raw(ph, "POST", "run_test_step_new", json=body))["result"] is not None


SNOWFLAKE: dict[str, Any] = {
    "type": "Snowflake",
    "config": {"database": "db", "warehouse": "wh", "schema": "s"},
    "integration": SNOWFLAKE_INTEGRATION,
}
HTTP: dict[str, Any] = {
    "type": "HTTP",
    "config": {"url": "https://us.i.posthog.com/batch/", "token": "phc"},
}


@pytest.mark.parametrize(
    ("destination", "drop", "extra", "detail"),
    [
        (
            {"type": "AwsS3", "config": S3_CONFIG, "integration": AWS_INTEGRATION},
            "prefix",
            {},
            "Configuration missing required field: 'prefix'",
        ),
        (SNOWFLAKE, "warehouse", {}, "Configuration missing required field: 'warehouse'"),
        (HTTP, "token", {}, "Configuration missing required field: 'token'"),
        (
            BIGQUERY,
            None,
            {"use_json_type": "yes"},
            "Configuration has invalid type: got 'str', expected 'bool'",
        ),
        (
            {"type": "NoOp", "config": {}},
            None,
            {"arg": 5},
            "Configuration has invalid type: got 'int', expected 'str'",
        ),
    ],
)
async def test_config_fields_follow_each_types_inputs(
    ph: aposthog.Client,
    destination: dict[str, Any],
    drop: str | None,
    extra: dict[str, Any],
    detail: str,
) -> None:
    """Each destination type's required fields and declared types, as its inputs declare."""
    config = {k: v for k, v in destination["config"].items() if k != drop}
    error = await bad_request(
        ph,
        "POST",
        json={**POSTGRES_BODY, "destination": {**destination, "config": {**config, **extra}}},
    )
    assert (error.attr, error.detail) == ("destination__non_field_errors", detail)


async def test_optional_and_base_config_fields_pass(fake: FakePostHog, ph: aposthog.Client) -> None:
    """
    Optional fields (a Snowflake role) and the base inputs every destination shares pass;
    a Snowflake key's passphrase, still in an old export's config, is never returned.
    """
    snowflake = await create(
        ph, destination={**SNOWFLAKE, "config": {**SNOWFLAKE["config"], "role": "r"}}
    )
    assert snowflake["destination"]["config"]["role"] == "r"
    base = {"exclude_events": ["$pageview"], "is_earliest_backfill": False}
    noop = await create(ph, destination={"type": "NoOp", "config": base})
    assert noop["destination"]["config"] == base
    fake.batch_exports[snowflake["id"]]["destination"]["config"]["private_key_passphrase"] = "p"
    config = (await raw(ph, "GET", snowflake["id"]))["destination"]["config"]
    assert "private_key_passphrase" not in config


async def test_the_shorter_intervals_and_space_separated_datetimes(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """'every 15 minutes' is an interval too (with the flag); DRF reads a space for the T."""
    fake.batch_export_flags.add("high-frequency-batch-exports")
    created = await create(ph, interval="every 15 minutes", start_at="2024-01-01 12:00")
    assert (created["interval"], created["start_at"]) == (
        "every 15 minutes",
        "2024-01-01T12:00:00Z",
    )


# ---------------------------------------------------------------------------------- integrations


async def legacy_s3_export(fake: FakePostHog, ph: aposthog.Client) -> str:
    """An export of the retired `S3` type, as PostHog still stores and returns some."""
    created = await create(
        ph, destination={"type": "AwsS3", "config": S3_CONFIG, "integration": AWS_INTEGRATION}
    )
    fake.batch_exports[created["id"]]["destination"] = {
        "type": "S3",
        "config": {**S3_CONFIG, "aws_access_key_id": "k", "aws_secret_access_key": "s"},
        "integration": None,
    }
    return str(created["id"])


async def test_legacy_s3_writes_are_refused_but_reads_work(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Creating, updating or testing an `S3` destination is a 400; reading one still parses."""
    refused = (
        "The 'S3' destination type is deprecated and can no longer be used. "
        "Use 'AwsS3' for AWS S3, or 'S3Compatible' for S3-compatible storage."
    )
    legacy = {"type": "S3", "config": {**S3_CONFIG, "aws_access_key_id": "k"}}
    error = await bad_request(
        ph, "POST", json={"name": "x", "destination": legacy, "interval": "hour"}
    )
    assert (error.type, error.code, error.attr, error.detail) == (
        "validation_error",
        "invalid_input",
        "destination",
        refused,
    )
    step = {"step": 0, "name": "x", "interval": "hour", "destination": legacy}
    error = await bad_request(ph, "POST", "run_test_step_new", json=step)
    assert error.detail == refused
    # The client refuses it unsent, naming the types to use.
    sent = len(fake.requests)
    with pytest.raises(ValueError, match="'S3' is the legacy type"):
        await ph.batch_exports.run_test_step_new(step=0, destination=legacy)
    assert len(fake.requests) == sent

    export_id = await legacy_s3_export(fake, ph)
    error = await bad_request(
        ph, "PATCH", export_id, json={"destination": {"type": "S3", "config": {"prefix": "v2/"}}}
    )
    assert (error.attr, error.detail) == ("destination", refused)
    assert fake.batch_exports[export_id]["destination"]["config"]["prefix"] == "p"

    export = await ph.batch_exports.get(export_id)
    assert export.destination.type == aposthog.BatchExportDestinationType.S3
    assert export.destination.config == S3_CONFIG  # the keys are secrets: never returned
    assert [e.id for e in await ph.batch_exports.list().to_list()] == [export_id]
    # Writes that leave the destination alone are not destination writes.
    renamed = await raw(ph, "PATCH", export_id, json={"name": "renamed"})
    assert renamed["destination"]["type"] == "S3"


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("AwsS3", S3_CONFIG),
        ("S3Compatible", S3_CONFIG),
        ("Postgres", {"database": "analytics"}),
        ("BigQuery", {"dataset_id": "d"}),
        ("Snowflake", {"database": "db", "warehouse": "wh", "schema": "s"}),
    ],
)
async def test_integration_backed_types_need_an_integration(
    ph: aposthog.Client, kind: str, config: dict[str, Any]
) -> None:
    """New exports of these types are refused without an integration, even a null one."""
    for destination in (
        {"type": kind, "config": config},
        {"type": kind, "config": config, "integration": None},
    ):
        error = await bad_request(
            ph, "POST", json={"name": "x", "destination": destination, "interval": "hour"}
        )
        assert (error.code, error.attr, error.detail) == (
            "invalid_input",
            "destination",
            f"Integration is required for {kind} batch exports",
        )


async def test_the_integration_must_exist(ph: aposthog.Client) -> None:
    """`integration` and `integration_id` are team-scoped primary keys: DRF's errors."""
    body = {"name": "x", "interval": "hour"}
    for key, value, code, detail in (
        ("integration", 99, "does_not_exist", 'Invalid pk "99" - object does not exist.'),
        ("integration_id", "99", "does_not_exist", 'Invalid pk "99" - object does not exist.'),
        ("integration", "x", "incorrect_type", "Incorrect type. Expected pk value, received str."),
        (
            "integration",
            True,
            "incorrect_type",
            "Incorrect type. Expected pk value, received bool.",
        ),
    ):
        destination = {"type": "AwsS3", "config": S3_CONFIG, key: value}
        error = await bad_request(ph, "POST", json={**body, "destination": destination})
        assert (error.code, error.attr, error.detail) == (code, f"destination__{key}", detail)
    created = await create(
        ph, destination={"type": "AwsS3", "config": S3_CONFIG, "integration_id": AWS_INTEGRATION}
    )
    assert created["destination"]["integration"] == AWS_INTEGRATION


@pytest.mark.parametrize(
    ("kind", "config", "integration", "detail"),
    [
        (
            "AwsS3",
            S3_CONFIG,
            R2_INTEGRATION,
            "Integration provided is not an AWS S3 integration (got kind='s3-compatible')",
        ),
        (
            "S3Compatible",
            S3_CONFIG,
            AWS_INTEGRATION,
            "Integration provided is not an AWS S3 integration (got kind='aws-s3')",
        ),
        (
            "Postgres",
            {"database": "analytics"},
            AWS_INTEGRATION,
            "Integration is not a PostgreSQL integration.",
        ),
        (
            "BigQuery",
            {"dataset_id": "d"},
            PG_INTEGRATION,
            "Integration is not a Google Cloud service account integration.",
        ),
        (
            "Snowflake",
            {"database": "db", "warehouse": "wh", "schema": "s"},
            GCP_INTEGRATION,
            "Integration provided is not a Snowflake integration "
            "(got kind='google-cloud-service-account')",
        ),
    ],
)
async def test_the_integration_must_be_of_the_destinations_kind(
    ph: aposthog.Client, kind: str, config: dict[str, Any], integration: int, detail: str
) -> None:
    """An integration of another kind is refused with PostHog's per-type message."""
    destination = {"type": kind, "config": config, "integration": integration}
    error = await bad_request(
        ph, "POST", json={"name": "x", "destination": destination, "interval": "hour"}
    )
    assert (error.attr, error.detail) == ("destination", detail)


@pytest.mark.parametrize(
    ("kind", "extra", "unknown"),
    [
        (
            "AwsS3",
            {"aws_access_key_id": "k", "aws_secret_access_key": "s"},
            "'aws_access_key_id', 'aws_secret_access_key'",
        ),
        ("S3Compatible", {"aws_secret_access_key": "s"}, "'aws_secret_access_key'"),
        ("S3Compatible", {"endpoint_url": "https://r2.example.com"}, "'endpoint_url'"),
        ("S3Compatible", {"encryption": "aws:kms"}, "'encryption'"),
    ],
)
async def test_s3_family_credentials_belong_in_the_integration(
    ph: aposthog.Client, kind: str, extra: dict[str, Any], unknown: str
) -> None:
    """Inline keys and endpoints are no AwsS3/S3Compatible config fields: unknown fields."""
    integration = AWS_INTEGRATION if kind == "AwsS3" else R2_INTEGRATION
    destination = {"type": kind, "config": {**S3_CONFIG, **extra}, "integration": integration}
    error = await bad_request(
        ph, "POST", json={"name": "x", "destination": destination, "interval": "hour"}
    )
    assert (error.attr, error.detail) == (
        "destination__non_field_errors",
        f"Configuration has unknown field/s: {unknown}",
    )


async def test_s3_family_input_checks(ph: aposthog.Client) -> None:
    """Blank bucket, region or prefix; file formats and compressions PostHog supports."""
    body = {"name": "x", "interval": "hour"}
    for config, detail in (
        (
            {**S3_CONFIG, "bucket_name": "", "region": " "},
            "The following inputs are empty: ['bucket_name', 'region']",
        ),
        ({**S3_CONFIG, "prefix": "\t"}, "The following inputs are empty: ['prefix']"),
        (
            {**S3_CONFIG, "file_format": "CSV"},
            "File format CSV is not supported. Supported file formats are ['Parquet', 'JSONLines']",
        ),
        (
            {**S3_CONFIG, "compression": "zstd"},
            "Compression zstd is not supported for file format JSONLines. "
            "Supported compressions are ['gzip', 'brotli']",
        ),
    ):
        destination = {"type": "AwsS3", "config": config, "integration": AWS_INTEGRATION}
        error = await bad_request(ph, "POST", json={**body, "destination": destination})
        assert (error.attr, error.detail) == ("destination", detail)
    parquet = {**S3_CONFIG, "file_format": "Parquet", "compression": "zstd"}
    assert await create(
        ph, destination={"type": "AwsS3", "config": parquet, "integration": AWS_INTEGRATION}
    )


LEGACY_PARQUET_REFUSED = (
    "'legacy_parquet_extension' can only stay on for an export that already writes the "
    "compression codec into its Parquet file names. It cannot be turned on for a new "
    "export, or turned back on once an export moved to the standard '.parquet' extension."
)


@pytest.mark.parametrize(
    ("kind", "integration"), [("AwsS3", AWS_INTEGRATION), ("S3Compatible", R2_INTEGRATION)]
)
async def test_s3_family_parquet_file_names(
    fake: FakePostHog, ph: aposthog.Client, kind: str, integration: int
) -> None:
    """New exports write `.parquet`; only an export already on codec names may keep them."""
    base = {"type": kind, "integration": integration}
    parquet = {**S3_CONFIG, "file_format": "Parquet", "compression": "zstd"}
    for flag in (True, "true"):
        error = await bad_request(
            ph,
            "POST",
            json={
                "name": "x",
                "interval": "hour",
                "destination": {**base, "config": {**parquet, "legacy_parquet_extension": flag}},
            },
        )
        assert (error.attr, error.detail) == ("destination", LEGACY_PARQUET_REFUSED)
    created = await create(ph, destination={**base, "config": parquet})
    assert created["destination"]["config"] == {**parquet, "legacy_parquet_extension": False}
    turn_on = {"destination": {**base, "config": {"legacy_parquet_extension": True}}}
    error = await bad_request(ph, "PATCH", created["id"], json=turn_on)
    assert error.detail == LEGACY_PARQUET_REFUSED

    # An export from before the setting, already writing `.parquet.zst`, keeps its names,
    # even when its stored value reads back as PostHog's encrypted field stores it.
    stored = fake.batch_exports[created["id"]]["destination"]
    del stored["config"]["legacy_parquet_extension"]
    patched = await raw(ph, "PATCH", created["id"], json=turn_on)
    assert patched["destination"]["config"]["legacy_parquet_extension"] is True
    stored["config"]["legacy_parquet_extension"] = "False"
    error = await bad_request(ph, "PATCH", created["id"], json=turn_on)
    assert error.detail == LEGACY_PARQUET_REFUSED
    # One on JSON Lines is pinned to the new names before an update moves it to Parquet.
    stored["config"] = dict(S3_CONFIG)
    to_parquet = {
        "destination": {**base, "config": {"file_format": "Parquet", "compression": "lz4"}}
    }
    patched = await raw(ph, "PATCH", created["id"], json=to_parquet)
    assert patched["destination"]["config"]["legacy_parquet_extension"] is False
    # Any update pins what an export from before the setting writes: the codec names for
    # compressed Parquet, the standard ones for uncompressed Parquet.
    rename = {"destination": {**base, "config": {"prefix": "q"}}}
    for compression, legacy in (("zstd", True), (None, False)):
        stored["config"] = {**S3_CONFIG, "file_format": "Parquet", "compression": compression}
        patched = await raw(ph, "PATCH", created["id"], json=rename)
        assert patched["destination"]["config"]["legacy_parquet_extension"] is legacy


async def test_snowflake_needs_a_complete_integration_on_every_write(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    Snowflake credentials live only in a snowflake integration holding the account, user
    and authentication type; an export from before integrations must adopt one to change.
    """
    config = {"database": "db", "warehouse": "wh", "schema": "s"}
    body = {"name": "x", "interval": "hour"}
    inline = {"account": "acme", "user": "u", "password": "p", "authentication_type": "password"}
    destination = {"type": "Snowflake", "config": {**config, **inline}}
    for integration in (None, SNOWFLAKE_INTEGRATION):
        error = await bad_request(
            ph, "POST", json={**body, "destination": {**destination, "integration": integration}}
        )
        assert (error.attr, error.detail) == (
            "destination__non_field_errors",
            "Configuration has unknown field/s: "
            "'account', 'authentication_type', 'password', 'user'",
        )
    for integration_config, missing in (
        ({"user": "u", "authentication_type": "keypair"}, "account"),
        ({"account": "acme", "authentication_type": "keypair"}, "user"),
        ({"account": "acme", "user": "u"}, "authentication_type"),
    ):
        pk = fake.add_integration("snowflake", config=integration_config)["id"]
        destination = {"type": "Snowflake", "config": config, "integration": pk}
        error = await bad_request(ph, "POST", json={**body, "destination": destination})
        assert (error.attr, error.detail) == (
            "destination",
            f"Snowflake integration is not valid: '{missing}' missing",
        )

    created = await create(
        ph,
        destination={"type": "Snowflake", "config": config, "integration": SNOWFLAKE_INTEGRATION},
    )
    fake.batch_exports[created["id"]]["destination"] = {
        "type": "Snowflake",
        "config": {**config, **inline},
        "integration": None,
    }
    error = await bad_request(
        ph,
        "PATCH",
        created["id"],
        json={"destination": {"type": "Snowflake", "config": {"schema": "t"}}},
    )
    assert error.detail == "Integration is required for Snowflake batch exports"
    adopted = await raw(
        ph,
        "PATCH",
        created["id"],
        json={
            "destination": {
                "type": "Snowflake",
                "config": {"schema": "t"},
                "integration_id": SNOWFLAKE_INTEGRATION,
            }
        },
    )
    assert adopted["destination"]["integration"] == SNOWFLAKE_INTEGRATION
    assert adopted["destination"]["config"] == {
        **config,
        "schema": "t",
        "account": "acme",  # an old inline config is merged into, never cleaned
        "authentication_type": "password",
    }


async def test_responses_restore_declared_types(fake: FakePostHog, ph: aposthog.Client) -> None:
    """
    Every response turns text back into the bool or int a field is declared as, Optional
    ints included: PostHog's encrypted config stores every scalar as text.
    """
    aws = {"type": "AwsS3", "integration": AWS_INTEGRATION}
    created = await create(
        ph, destination={**aws, "config": {**S3_CONFIG, "max_file_size_mb": "64"}}
    )
    assert created["destination"]["config"]["max_file_size_mb"] == 64
    pg = await create(
        ph, destination={**POSTGRES, "config": {**POSTGRES["config"], "port": "5433"}}
    )
    assert pg["destination"]["config"]["port"] == 5433

    r2 = await create(
        ph, destination={"type": "S3Compatible", "config": S3_CONFIG, "integration": R2_INTEGRATION}
    )
    fake.batch_exports[r2["id"]]["destination"]["config"] = {
        **S3_CONFIG,
        "use_virtual_style_addressing": "True",
        "legacy_parquet_extension": "false",
        "max_file_size_mb": "1_000",
        "compression": "100",  # declared `str | None`: left alone
        "team_id": "1",
        "is_backfill": "yes",  # only "true" reads as True
    }
    export = await raw(ph, "GET", r2["id"])
    assert export["destination"]["config"] == {
        **S3_CONFIG,
        "use_virtual_style_addressing": True,
        "legacy_parquet_extension": False,
        "max_file_size_mb": 1000,
        "compression": "100",
        "team_id": 1,
        "is_backfill": False,
    }
    # Text that is no int stays text; the retired `S3` type is read back as stored.
    fake.batch_exports[created["id"]]["destination"]["config"]["max_file_size_mb"] = "big"
    assert (await raw(ph, "GET", created["id"]))["destination"]["config"]["max_file_size_mb"] == (
        "big"
    )
    legacy = await legacy_s3_export(fake, ph)
    fake.batch_exports[legacy]["destination"]["config"].update(max_file_size_mb="64", team_id="1")
    legacy_config = (await raw(ph, "GET", legacy))["destination"]["config"]
    assert (legacy_config["max_file_size_mb"], legacy_config["team_id"]) == ("64", "1")


async def test_updates_keep_or_drop_the_integration_as_posthog_does(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    S3 family and Snowflake: left out, the stored integration stays; null is refused.
    BigQuery: every destination write names one. Postgres exports made before integrations
    stay editable without one; Snowflake ones no longer are.
    """
    for kind, config, integration in (
        ("AwsS3", S3_CONFIG, AWS_INTEGRATION),
        ("Snowflake", {"database": "db", "warehouse": "wh", "schema": "s"}, SNOWFLAKE_INTEGRATION),
    ):
        created = await create(
            ph, destination={"type": kind, "config": config, "integration": integration}
        )
        patched = await raw(
            ph, "PATCH", created["id"], json={"destination": {"type": kind, "config": {}}}
        )
        assert patched["destination"]["integration"] == integration
        error = await bad_request(
            ph,
            "PATCH",
            created["id"],
            json={"destination": {"type": kind, "config": {}, "integration": None}},
        )
        assert error.detail == f"Integration is required for {kind} batch exports"

    created = await create(
        ph,
        destination={
            "type": "BigQuery",
            "config": {"dataset_id": "d"},
            "integration": GCP_INTEGRATION,
        },
    )
    error = await bad_request(
        ph,
        "PATCH",
        created["id"],
        json={"destination": {"type": "BigQuery", "config": {"table_id": "t"}}},
    )
    assert error.detail == "Integration is required for BigQuery batch exports"

    legacy = await create(ph)
    fake.batch_exports[legacy["id"]]["destination"]["integration"] = None
    patched = await raw(
        ph, "PATCH", legacy["id"], json={"destination": {"type": "Postgres", "config": {}}}
    )
    assert patched["destination"]["integration"] is None


async def test_the_integration_lends_its_credentials_to_destination_tests(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog configures a test with the integration's config and secrets."""
    step = await ph.batch_exports.run_test_step_new(
        step=0,
        destination={"type": "S3Compatible", "config": S3_CONFIG, "integration": R2_INTEGRATION},
    )
    assert step.result is not None
    assert step.result.status == "Passed"
    bare = fake.add_integration("s3-compatible")
    step = await ph.batch_exports.run_test_step_new(
        step=0,
        destination={"type": "S3Compatible", "config": S3_CONFIG, "integration": bare["id"]},
    )
    assert step.result is not None
    assert (step.result.status, step.result.message) == (
        "Failed",
        "The test step cannot run as it's not configured.",
    )
    assert bare == {
        "id": 6,
        "kind": "s3-compatible",
        "integration_id": None,
        "config": {},
        "sensitive_config": {},
    }


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_name_with_a_nul_is_a_400_as_in_posthog(ph: aposthog.Client, method: str) -> None:
    """
    BatchExportSerializer takes `name` from the model (a TextField), so DRF builds a
    CharField for it, and every CharField carries ProhibitNullCharactersValidator: "Null
    characters are not allowed." (code `null_characters_not_allowed`), as the fake
    already answers for a conversation's `content` and the logs' `search`.
    """
    created = await create(ph)
    parts = () if method == "POST" else (created["id"],)
    body: dict[str, Any] = {"name": "night\x00ly"}
    if method == "POST":
        body.update(destination=POSTGRES, interval="hour")
    error = await bad_request(ph, method, *parts, json=body)
    assert (error.code, error.attr, error.detail) == (
        "null_characters_not_allowed",
        "name",
        "Null characters are not allowed.",
    )


@pytest.mark.parametrize(
    ("name", "when"),
    [("end_at", "9999-12-31T23:59:59-01:00"), ("start_at", "0001-01-01T00:00:00+01:00")],
)
async def test_a_datetime_beyond_utcs_range_is_drfs_overflow_400(
    fake: FakePostHog, ph: aposthog.Client, name: str, when: str
) -> None:
    """
    DRF's DateTimeField converts an aware value to the current timezone (UTC) and answers
    a value that leaves datetime's range there with its `overflow` error: PostHog's 400
    "Datetime value out of the range." on the field, as the fake now does, storing
    nothing. The fake used to take the value, store it, and crash rendering the export:
    aiohttp's text/plain 500 (an InternalServerError for the client, not the
    BadRequestError PostHog raises), and from then on every `get()` and `list()` of
    exports crashed too.
    """
    created = await create(ph)
    with pytest.raises(aposthog.BadRequestError) as info:
        if name == "end_at":
            await ph.batch_exports.update(created["id"], end_at=when)
        else:
            await ph.batch_exports.update(created["id"], start_at=when)
    assert (info.value.attr, info.value.code, info.value.detail) == (
        name,
        "overflow",
        "Datetime value out of the range.",
    )
    assert (await ph.batch_exports.get(created["id"])).id == created["id"]
    assert len(await ph.batch_exports.list().to_list()) == 1


@pytest.mark.parametrize("knob", ["run", "log"])
async def test_a_naive_datetime_given_to_a_knob_is_read_as_utc(
    fake: FakePostHog, ph: aposthog.Client, knob: str
) -> None:
    """
    `add_batch_export_run(created_at=...)` and `add_batch_export_log(timestamp=...)` take
    a datetime, and `datetime(2024, 5, 1)` (naive) is what a test most often writes. The
    knobs read it as UTC, as PostHog's `USE_TZ` does. The fake used to store it, then
    compare it with its own aware times: every later `list_runs()` (or `logs()` of an
    export with another entry) was aiohttp's 500, an `InternalServerError` for the client,
    far from the call that caused it. (Rendered, a naive time was also read in the
    machine's local zone.)
    """
    created = await create(ph)
    # Naive (the point of the test), an hour ago in UTC whatever the machine's zone.
    naive = dt.datetime.now(UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
    if knob == "run":
        fake.add_batch_export_run(created["id"], created_at=naive)
        runs = await ph.batch_exports.list_runs(created["id"]).to_list()
        assert [r.created_at for r in runs] == [naive.replace(tzinfo=UTC)]
    else:
        earlier = fake.add_batch_export_log(created["id"], "earlier")
        fake.add_batch_export_log(created["id"], "naive", timestamp=naive)
        entries = await ph.batch_exports.logs(created["id"]).to_list()
        assert [(e.message, e.timestamp) for e in entries] == [
            ("earlier", earlier["timestamp"]),
            ("naive", naive.replace(tzinfo=UTC)),
        ]


@pytest.mark.parametrize("name", ["after", "before"])
async def test_a_logs_bound_beyond_utcs_range_is_drfs_overflow_400(
    ph: aposthog.Client, name: str
) -> None:
    """The logs' `after`/`before` are DRF DateTimeFields too: the same overflow 400."""
    created = await create(ph)
    with pytest.raises(aposthog.BadRequestError) as info:
        await raw(ph, "GET", created["id"], "logs", params={name: "9999-12-31T23:59:59-01:00"})
    assert (info.value.attr, info.value.code, info.value.detail) == (
        name,
        "overflow",
        "Datetime value out of the range.",
    )


async def test_a_knob_refuses_an_aware_datetime_utc_cannot_hold(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Stored, it would crash every later answer showing it: a ValueError where it is given."""
    created = await create(ph)
    far = dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.timezone(-dt.timedelta(hours=2)))
    with pytest.raises(ValueError, match="timestamp"):
        fake.add_batch_export_log(created["id"], "far", timestamp=far)
    with pytest.raises(ValueError, match="end_at"):
        fake.add_batch_export_backfill(created["id"], end_at=far)
    assert fake.batch_export_logs == []
    assert fake.batch_export_backfills == {}


async def test_an_export_id_in_any_uuid_spelling_finds_the_export_and_its_runs(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    A batch export's (and a run's) id is a Django `UUIDField` primary key: PostHog looks
    `/batch_exports/<id>/` up with `filter(pk=<id>)`, which reads any spelling
    `uuid.UUID` takes (upper case, no hyphens), and the runs list filters on
    `batch_export_id=<id>` the same way. The fake's profile configs and conversations do
    this already; its batch exports answer 404 (and an empty runs list) instead.
    """
    created = await create(ph)
    run = fake.add_batch_export_run(created["id"])
    for form in (created["id"].upper(), created["id"].replace("-", "")):
        assert (await raw(ph, "GET", form))["id"] == created["id"], form
        runs = await raw(ph, "GET", form, "runs")
        assert [r["id"] for r in runs["results"]] == [run["id"]], form
        got = await raw(ph, "GET", created["id"], "runs", run["id"].upper())
        assert got["id"] == run["id"]


async def test_last_paused_at_is_a_writable_datetime_field(ph: aposthog.Client) -> None:
    """
    `last_paused_at` is in `BatchExportSerializer.Meta.fields` and not in its
    `read_only_fields`, so the ModelSerializer makes it a writable, nullable DRF
    `DateTimeField`: a value that is no datetime is DRF's 400 on the field, and a valid
    one is stored and shown. The fake drops the field whatever it holds.
    """
    error = await bad_request(ph, "POST", json={**POSTGRES_BODY, "last_paused_at": "not a time"})
    assert (error.code, error.attr) == ("invalid_input", "last_paused_at")
    assert error.detail.startswith("Datetime has wrong format.")
    created = await create(ph, last_paused_at="2024-01-02T03:04:05Z")
    assert created["last_paused_at"] == "2024-01-02T03:04:05Z"


async def test_log_entries_given_as_one_str_are_refused_not_split_into_letters(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `entries` is typed `Iterable[str | Mapping]`, which a plain str satisfies. The fake
    added one entry per character ("e", "x", "p", …: 13 for "export failed"), so a test
    asserting on its code's handling of that log saw thirteen one-letter logs instead.
    `script_answer(updates="text")` is refused for the same reason; this knob should be too.
    """
    created = await create(ph)
    with pytest.raises(TypeError, match="entries"):
        fake.add_batch_export_logs(created["id"], "export failed")
    assert [] == fake.batch_export_logs
