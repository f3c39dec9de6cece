"""ph.batch_exports against FakePostHog: CRUD, pause, logs and destination tests."""

from __future__ import annotations

import datetime as dt
import inspect
import os
import textwrap
import traceback
from types import MappingProxyType
from typing import Any

import pytest

import aposthog
from aposthog._http import Route
from aposthog.models import (
    BatchExport,
    BatchExportDestination,
    BatchExportDestinationType,
    BatchExportIncrementalMode,
    BatchExportInterval,
    BatchExportLogLevel,
    BatchExportModel,
    BatchExportTestStepStatus,
)
from aposthog.resources import BatchExports
from aposthog.resources._batch_export_args import destination_body
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc
S3_CONFIG = {"bucket_name": "events", "region": "eu-west-1", "prefix": "posthog/"}
#: The ids of the integrations the autouse fixture seeds (PostHog keeps credentials there).
AWS_INTEGRATION, PG_INTEGRATION = 1, 2

#: A well-formed id nothing is stored under.
MISSING = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


@pytest.fixture(autouse=True)
def integrations(fake: FakePostHog) -> None:
    keys = {"aws_access_key_id": "AKIA-key-id", "aws_secret_access_key": "very-secret"}
    assert fake.add_integration("aws-s3", sensitive_config=keys)["id"] == AWS_INTEGRATION
    assert fake.add_integration("postgresql")["id"] == PG_INTEGRATION


def s3(**config: Any) -> BatchExportDestination:
    return BatchExportDestination(
        type="AwsS3", config={**S3_CONFIG, **config}, integration=AWS_INTEGRATION
    )


async def make(ph: aposthog.Client, **kwargs: Any) -> BatchExport:
    kwargs.setdefault("name", "Events to S3")
    kwargs.setdefault("destination", s3())
    kwargs.setdefault("interval", "hour")
    return await ph.batch_exports.create(**kwargs)


# ---------------------------------------------------------------------------------- create


async def test_create_sends_the_documented_body_and_returns_the_export(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """create() POSTs every given field in PostHog's names; the 201 body becomes a record."""
    export = await ph.batch_exports.create(
        name="Weekly",
        destination=s3(),
        interval=BatchExportInterval.WEEK,
        model=BatchExportModel.EVENTS,
        paused=True,
        start_at=dt.datetime(2024, 1, 1, tzinfo=UTC),
        end_at="2030-01-01T00:00:00+02:00",
        filters=[{"key": "$browser", "operator": "exact", "type": "event", "value": ["Firefox"]}],
        timezone="Europe/Berlin",
        offset_day=2,
        offset_hour=6,
    )

    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/api/environments/1/batch_exports/")
    assert sent.json() == {
        "name": "Weekly",
        "destination": {"type": "AwsS3", "config": S3_CONFIG, "integration": AWS_INTEGRATION},
        "interval": "week",
        "model": "events",
        "paused": True,
        "start_at": "2024-01-01T00:00:00Z",
        "end_at": "2030-01-01T00:00:00+02:00",
        "filters": [
            {"key": "$browser", "operator": "exact", "type": "event", "value": ["Firefox"]}
        ],
        "timezone": "Europe/Berlin",
        "offset_day": 2,
        "offset_hour": 6,
    }
    assert isinstance(export, BatchExport)
    assert export.interval is BatchExportInterval.WEEK
    assert export.model is BatchExportModel.EVENTS
    assert export.destination.type is BatchExportDestinationType.AWS_S3
    assert export.destination.integration == AWS_INTEGRATION
    assert (export.paused, export.offset_day, export.offset_hour) == (True, 2, 6)
    assert export.end_at == dt.datetime(2029, 12, 31, 22, tzinfo=UTC)
    assert export.created_at is not None
    assert export.created_at.tzinfo is not None


async def test_secret_config_fields_are_sent_but_never_returned(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog keeps a Postgres password and strips it from every response."""
    postgres = BatchExportDestination(
        type="Postgres",
        config={"database": "analytics", "user": "posthog", "password": "hunter2"},
        integration=PG_INTEGRATION,
    )
    export = await make(ph, destination=postgres)

    assert fake.requests[-1].json()["destination"]["config"]["password"] == "hunter2"
    assert export.destination.config == {"database": "analytics"}
    stored = fake.batch_exports[export.id]["destination"]["config"]
    assert stored["password"] == "hunter2"
    fetched = await ph.batch_exports.get(export.id)
    assert "user" not in fetched.destination.config


async def test_create_takes_a_plain_mapping_destination(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A dict destination works too; a missing config is sent as {} (PostHog 500s without)."""
    export = await ph.batch_exports.create(
        name="noop", destination={"type": BatchExportDestinationType.NOOP}, interval="day"
    )
    assert fake.requests[-1].json()["destination"] == {"type": "NoOp", "config": {}}
    assert export.destination.type is BatchExportDestinationType.NOOP
    assert export.offset_hour == 0  # a daily export starts at midnight unless told otherwise


async def test_a_mapping_destination_with_an_integration_id_is_sent_and_read_back(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    The mapping form carries the integration as the record does (its id, an int, now
    checked before sending): PostHog stores it, and the export read back names it.
    """
    destination = {"type": "AwsS3", "config": S3_CONFIG, "integration": AWS_INTEGRATION}
    export = await ph.batch_exports.create(name="S3", destination=destination, interval="hour")

    assert destination == fake.requests[-1].json()["destination"]
    assert AWS_INTEGRATION == fake.batch_exports[export.id]["destination"]["integration"]
    assert AWS_INTEGRATION == export.destination.integration
    fetched = await ph.batch_exports.get(export.id)
    assert AWS_INTEGRATION == fetched.destination.integration
    assert BatchExportDestinationType.AWS_S3 is fetched.destination.type


async def test_create_validation_errors_are_bad_requests(ph: aposthog.Client) -> None:
    """PostHog's messages for an unknown or a missing config field come through intact."""
    with pytest.raises(aposthog.BadRequestError) as info:
        await make(ph, destination=s3(bucket="typo"))
    assert info.value.detail == "Configuration has unknown field/s: 'bucket'"
    assert info.value.attr == "destination__non_field_errors"

    config = {k: v for k, v in S3_CONFIG.items() if k != "bucket_name"}
    with pytest.raises(aposthog.BadRequestError) as info:
        await make(
            ph, destination={"type": "AwsS3", "config": config, "integration": AWS_INTEGRATION}
        )
    assert info.value.detail == "Configuration missing required field: 'bucket_name'"


@pytest.mark.parametrize(
    ("interval", "field", "detail"),
    [
        ("day", "offset_day", "offset_day is not applicable for non-weekly intervals"),
        ("hour", "offset_day", "offset_day is not applicable for non-weekly intervals"),
        ("hour", "offset_hour", "offset_hour is not applicable for non-daily/weekly intervals"),
    ],
)
async def test_offsets_that_do_not_suit_the_interval_are_rejected(
    fake: FakePostHog, ph: aposthog.Client, interval: str, field: str, detail: str
) -> None:
    """
    offset_day needs a weekly export, offset_hour a daily or weekly one: PostHog answers
    400 (`detail`, which FakePostHog gives a body sent as is); the client refuses it,
    unsent, with a `ValueError` naming the field.
    """
    with pytest.raises(ValueError, match=f"^{field} is only for interval"):
        await make(ph, interval=interval, **{field: 1})
    assert [] == fake.requests
    body = {"name": "x", "destination": destination_body(s3()), "interval": interval, field: 1}
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph._api.request_json(Route("POST", "batch_exports", repeatable=False), json=body)
    assert (info.value.attr, info.value.detail) == (field, detail)


async def test_high_frequency_intervals_need_the_flag(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """'every 5 minutes' is a 403 until the team has PostHog's feature flag."""
    with pytest.raises(aposthog.PermissionDeniedError) as info:
        await make(ph, interval=BatchExportInterval.EVERY_5_MINUTES)
    assert info.value.detail == "Higher frequency batch exports are not enabled for this team."

    fake.batch_export_flags.add("high-frequency-batch-exports")
    export = await make(ph, interval=BatchExportInterval.EVERY_5_MINUTES)
    assert export.interval is BatchExportInterval.EVERY_5_MINUTES


# ---------------------------------------------------------------------------------- read


async def test_list_is_newest_first_and_leaves_out_deleted(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """list() pages by limit/offset, newest first, without deleted exports."""
    ids = [(await make(ph, name=f"e{i}")).id for i in range(5)]
    await ph.batch_exports.delete(ids[2])

    page = await ph.batch_exports.list(limit=2)
    assert [e.name for e in page.results] == ["e4", "e3"]
    assert page.count == 4
    assert dict(fake.requests[-1].query) == {"limit": "2"}
    every = await ph.batch_exports.list(limit=2).to_list()
    assert [e.id for e in every] == [ids[4], ids[3], ids[1], ids[0]]


async def test_get_and_delete(fake: FakePostHog, ph: aposthog.Client) -> None:
    """get() fetches by id; delete() is a 204 soft delete, after which get() is a 404."""
    export = await make(ph)
    assert (await ph.batch_exports.get(export.id)).id == export.id
    assert fake.requests[-1].path == f"/api/environments/1/batch_exports/{export.id}/"

    assert await ph.batch_exports.delete(export.id) is None  # type: ignore[func-returns-value]
    assert fake.requests[-1].method == "DELETE"
    assert fake.batch_exports[export.id]["deleted"] is True
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.get(export.id)
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.delete(export.id)


async def test_ids_must_be_uuids(fake: FakePostHog, ph: aposthog.Client) -> None:
    """An id that is not a UUID could only be a 404, or leave its path segment: refused."""
    with pytest.raises(ValueError, match="id must be a UUID"):
        await ph.batch_exports.get("../customer_profile_configs")
    assert fake.requests == []
    upper = MISSING.upper()
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.get(upper)
    assert fake.requests[-1].path == f"/api/environments/1/batch_exports/{MISSING}/"


# ---------------------------------------------------------------------------------- update


async def test_update_patches_only_what_is_given_and_deep_merges_config(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PATCH sends the given fields; PostHog merges destination.config key by key."""
    export = await make(ph)

    updated = await ph.batch_exports.update(
        export.id, name="renamed", destination={"type": "AwsS3", "config": {"prefix": "v2/"}}
    )

    assert fake.requests[-1].method == "PATCH"
    assert fake.requests[-1].json() == {
        "name": "renamed",
        "destination": {"type": "AwsS3", "config": {"prefix": "v2/"}},
    }
    assert updated.name == "renamed"
    assert updated.destination.config == {
        "bucket_name": "events",
        "region": "eu-west-1",
        "prefix": "v2/",
        "legacy_parquet_extension": False,  # set on create: new exports write `.parquet`
    }
    # Keys the PATCH does not mention survive, and so does the integration it leaves out.
    assert fake.batch_exports[export.id]["destination"]["config"]["region"] == "eu-west-1"
    assert updated.destination.integration == AWS_INTEGRATION


async def test_update_can_clear_nullable_fields(fake: FakePostHog, ph: aposthog.Client) -> None:
    """None is sent as null (NOT_GIVEN is what leaves a field out)."""
    export = await make(ph, end_at=dt.datetime(2030, 1, 1, tzinfo=UTC))
    updated = await ph.batch_exports.update(export.id, end_at=None, filters=None)
    assert fake.requests[-1].json() == {"end_at": None, "filters": None}
    assert updated.end_at is None


async def test_filters_given_as_other_mappings_are_sent_as_objects(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Each filter may be any mapping (a read-only view here): it is sent as a JSON object."""
    event = {"key": "$browser", "operator": "exact", "type": "event", "value": ["Firefox"]}
    await make(ph, filters=[MappingProxyType(event)])
    assert fake.requests[-1].json()["filters"] == [event]


async def test_create_sends_a_hogql_source_and_reads_it_back(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A hogql export's query, modifiers, keys and incremental mode go out and come back."""
    fake.batch_export_flags.add("hogql-batch-exports")
    export = await make(
        ph,
        model=BatchExportModel.HOGQL,
        hogql_query="SELECT uuid AS id, timestamp FROM events",
        hogql_modifiers={"convertToProjectTimezone": False},
        primary_key=("id",),
        version_key=["timestamp"],
        incremental_mode=BatchExportIncrementalMode.MERGE,
    )
    sent = fake.requests[-1].json()
    assert {k: sent[k] for k in ("hogql_modifiers", "primary_key", "version_key")} == {
        "hogql_modifiers": {"convertToProjectTimezone": False},
        "primary_key": ["id"],
        "version_key": ["timestamp"],
    }
    assert sent["incremental_mode"] == "MERGE"
    assert export.hogql_query == "SELECT uuid AS id, timestamp FROM events"
    assert export.hogql_modifiers == {"convertToProjectTimezone": False}
    assert (export.primary_key, export.version_key) == (["id"], ["timestamp"])
    assert export.incremental_mode is BatchExportIncrementalMode.MERGE
    assert (await make(ph)).incremental_mode is BatchExportIncrementalMode.APPEND


async def test_merge_without_a_primary_key_is_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog requires primary_key for a MERGE hogql export: say so without a request."""
    sent = len(fake.requests)
    with pytest.raises(ValueError, match="primary_key"):
        await make(ph, model="hogql", hogql_query="SELECT 1", incremental_mode="merge")
    assert len(fake.requests) == sent


async def test_update_can_clear_the_custom_query(fake: FakePostHog, ph: aposthog.Client) -> None:
    """hogql_query=None is sent as null: PostHog drops an events export's custom schema."""
    export = await make(ph)
    fake.batch_exports[export.id]["schema"] = {"fields": [], "values": {}, "hogql_query": "q"}
    updated = await ph.batch_exports.update(export.id, hogql_query=None)
    assert fake.requests[-1].json() == {"hogql_query": None}
    assert updated.schema is None


async def test_update_cannot_change_the_destination_type(ph: aposthog.Client) -> None:
    """Changing the destination's type is PostHog's 400."""
    export = await make(ph)
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.batch_exports.update(export.id, destination={"type": "NoOp", "config": {}})
    assert info.value.attr == "destination"
    assert info.value.detail is not None
    assert info.value.detail.startswith("Cannot change destination type from 'AwsS3' to 'NoOp'.")


async def test_update_interval_and_offsets(ph: aposthog.Client) -> None:
    """Moving to a weekly schedule with offsets; offset_day on a daily export is a 400."""
    export = await make(ph, interval="day", offset_hour=3)
    assert (export.offset_day, export.offset_hour) == (None, 3)

    weekly = await ph.batch_exports.update(export.id, interval="week", offset_day=6)
    assert (weekly.interval, weekly.offset_day, weekly.offset_hour) == ("week", 6, 0)

    daily = await make(ph, interval="day")
    with pytest.raises(ValueError, match=r"^offset_day is only for interval 'week', not 'day'"):
        await ph.batch_exports.update(daily.id, interval="day", offset_day=1)


@pytest.mark.parametrize("wrapped", [f"{{{MISSING}}}", f"urn:uuid:{MISSING}"])
async def test_ids_in_other_uuid_spellings_are_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client, wrapped: str
) -> None:
    """PostHog reads only the plain UUID forms: braces and urn: are a ValueError."""
    with pytest.raises(ValueError, match="id must be a UUID"):
        await ph.batch_exports.get(wrapped)
    assert fake.requests == []


async def test_update_missing_export_is_not_found(ph: aposthog.Client) -> None:
    """PATCH on an unknown id is a 404."""
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.update(MISSING, name="x")


# --------------------------------------------------------------------------------- replace


async def test_replace_puts_the_whole_configuration(fake: FakePostHog, ph: aposthog.Client) -> None:
    """replace() PUTs every given field; the config is checked whole and merged as stored."""
    export = await make(ph)

    replaced = await ph.batch_exports.replace(
        export.id,
        name="Daily to S3",
        destination=s3(prefix="v2/"),
        interval=BatchExportInterval.DAY,
        offset_hour=3,
    )

    request = fake.requests[-1]
    assert (request.method, request.path) == (
        "PUT",
        f"/api/environments/1/batch_exports/{export.id}/",
    )
    assert request.json() == {
        "name": "Daily to S3",
        "destination": {
            "type": "AwsS3",
            "config": {**S3_CONFIG, "prefix": "v2/"},
            "integration": AWS_INTEGRATION,
        },
        "interval": "day",
        "offset_hour": 3,
    }
    assert (replaced.id, replaced.name, replaced.interval) == (export.id, "Daily to S3", "day")
    assert (replaced.offset_day, replaced.offset_hour) == (None, 3)
    assert replaced.destination.config["prefix"] == "v2/"
    assert replaced == await ph.batch_exports.get(export.id)


async def test_replace_requires_every_config_key_that_update_may_leave_out(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A PUT whose config lacks a key its type requires is PostHog's 400; a PATCH is not."""
    export = await make(ph)
    partial = BatchExportDestination(type="AwsS3", config={"prefix": "v3/"})

    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.batch_exports.replace(export.id, name="n", destination=partial, interval="hour")
    assert info.value.detail == "Configuration missing required field: 'bucket_name'"
    assert fake.batch_exports[export.id]["destination"]["config"]["prefix"] == "posthog/"

    updated = await ph.batch_exports.update(export.id, destination=partial)
    assert updated.destination.config["prefix"] == "v3/"


async def test_replace_keeps_what_it_leaves_out_as_posthog_does(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog's PUT writes the fields sent: one left out (end_at, filters) keeps its value."""
    end = dt.datetime(2030, 1, 1, tzinfo=UTC)
    event = {"key": "$browser", "operator": "exact", "type": "event", "value": ["Firefox"]}
    export = await make(ph, end_at=end, filters=[event])

    replaced = await ph.batch_exports.replace(
        export.id, name="renamed", destination=s3(), interval="hour"
    )

    assert set(fake.requests[-1].json()) == {"name", "destination", "interval"}
    assert (replaced.name, replaced.end_at, replaced.filters) == ("renamed", end, [event])


async def test_replace_keeps_the_schedule_offsets_it_leaves_out_or_says_it_does_not(
    ph: aposthog.Client,
) -> None:
    """
    replace()'s docstring: "a field left out keeps its value". A PUT always carries
    `interval`, and PostHog's `_validate_interval_offset` then sets `interval_offset` to
    None when no offset is sent (`elif not self.partial`), so rewriting a daily export's
    bucket moves its 03:00 run to midnight without a word. Either the offset is kept, or
    the docstring (before its example) says that offsets left out are reset.
    """
    export = await make(ph, interval="day", offset_hour=3, timezone="Europe/Berlin")

    replaced = await ph.batch_exports.replace(
        export.id, name=export.name, destination=s3(prefix="v2/"), interval="day"
    )

    assert replaced.timezone == "Europe/Berlin"  # a field left out, kept as documented
    doc = (inspect.getdoc(BatchExports.replace) or "").split("Example:")[0]
    assert replaced.offset_hour == 3 or "offset_hour" in doc


async def test_replace_is_retried_after_a_dropped_connection(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A PUT writes the same export however often it lands, so a lost answer is retried."""
    export = await make(ph)
    fake.drop_next(1, method="PUT")

    replaced = await ph.batch_exports.replace(
        export.id, name="again", destination=s3(), interval="hour"
    )

    assert [r.method for r in fake.requests[-2:]] == ["PUT", "PUT"]
    assert replaced.name == "again"


async def test_replace_cannot_change_the_destination_type(ph: aposthog.Client) -> None:
    """As with update(), a new destination type is PostHog's 400."""
    export = await make(ph)
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.batch_exports.replace(
            export.id, name="n", destination={"type": "NoOp", "config": {}}, interval="hour"
        )
    assert info.value.attr == "destination"


async def test_replace_missing_export_is_not_found(ph: aposthog.Client) -> None:
    """PUT on an unknown id is a 404."""
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.replace(MISSING, name="x", destination=s3(), interval="hour")


# ---------------------------------------------------------------------------------- pause


async def test_pause_and_unpause_are_idempotent(fake: FakePostHog, ph: aposthog.Client) -> None:
    """Pausing twice and unpausing twice succeed; last_paused_at is set by the first pause."""
    export = await make(ph)

    assert await ph.batch_exports.pause(export.id) is None  # type: ignore[func-returns-value]
    assert (fake.requests[-1].method, fake.requests[-1].path) == (
        "POST",
        f"/api/environments/1/batch_exports/{export.id}/pause/",
    )
    first = await ph.batch_exports.get(export.id)
    assert first.paused is True
    assert first.last_paused_at is not None

    await ph.batch_exports.pause(export.id)
    assert (await ph.batch_exports.get(export.id)).last_paused_at == first.last_paused_at

    assert await ph.batch_exports.unpause(export.id) is None  # type: ignore[func-returns-value]
    assert fake.requests[-1].json() == {"backfill": False}
    await ph.batch_exports.unpause(export.id)
    assert (await ph.batch_exports.get(export.id)).paused is False
    assert fake.batch_export_backfills == {}


async def test_unpause_with_backfill_backfills_the_paused_time(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """unpause(backfill=True) starts a backfill from last_paused_at."""
    export = await make(ph)
    await ph.batch_exports.pause(export.id)
    paused_at = (await ph.batch_exports.get(export.id)).last_paused_at

    await ph.batch_exports.unpause(export.id, backfill=True)

    assert fake.requests[-1].json() == {"backfill": True}
    [backfill] = await ph.batch_exports.list_backfills(export.id).to_list()
    assert backfill.start_at == paused_at


async def test_unpause_with_backfill_is_not_sent_twice(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A 502 is retried for a plain unpause, but not for one that starts a backfill."""
    export = await make(ph)
    unpause = f"/api/environments/1/batch_exports/{export.id}/unpause/"

    fake.fail_next(1, status=502, method="POST", path="/unpause/")
    await ph.batch_exports.unpause(export.id)
    assert [r.path for r in fake.requests].count(unpause) == 2

    await ph.batch_exports.pause(export.id)
    fake.requests.clear()
    fake.fail_next(1, status=502, method="POST", path="/unpause/")
    with pytest.raises(aposthog.APIStatusError) as info:
        await ph.batch_exports.unpause(export.id, backfill=True)
    assert info.value.status == 502
    # The export read first (its pause time), then the one unpause.
    assert [r.path for r in fake.requests] == [unpause.removesuffix("unpause/"), unpause]
    assert fake.batch_export_backfills == {}


async def test_pause_unknown_export_is_not_found(ph: aposthog.Client) -> None:
    """pause() on an unknown id is a 404."""
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.pause(MISSING)
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.unpause(MISSING)


# ---------------------------------------------------------------------------------- logs


async def test_logs_newest_first_with_every_filter_on_the_wire(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """logs() sends level as one upper-cased, comma-separated parameter, and the filters."""
    export = await make(ph)
    base = dt.datetime(2024, 5, 1, tzinfo=UTC)
    for minute, level, message, run in [
        (1, "INFO", "Export started", "r1"),
        (2, "ERROR", "Export failed: access denied", "r1"),
        (3, "WARNING", "Retrying", "r2"),
        (4, "ERROR", "Export failed again", "r2"),
        (5, "DEBUG", "noise", "r2"),
    ]:
        fake.add_batch_export_log(
            export.id,
            message,
            level=level,
            instance_id=run,
            timestamp=base + dt.timedelta(minutes=minute),
        )

    entries = await ph.batch_exports.logs(export.id).to_list()
    assert [e.message for e in entries][:2] == ["noise", "Export failed again"]

    page = await ph.batch_exports.logs(
        export.id,
        level=["error", BatchExportLogLevel.WARNING],
        search="FAILED",
        after=base,
        before="2024-05-01T00:10:00Z",
        instance_id="r2",
        limit=10,
    )
    assert [e.message for e in page.results] == ["Export failed again"]
    assert page.results[0].level is BatchExportLogLevel.ERROR
    assert page.results[0].timestamp == base + dt.timedelta(minutes=4)
    assert dict(fake.requests[-1].query) == {
        "level": "ERROR,WARNING",
        "search": "FAILED",
        "after": "2024-05-01T00:00:00Z",
        "before": "2024-05-01T00:10:00Z",
        "instance_id": "r2",
        "limit": "10",
    }
    assert fake.requests[-1].path == f"/api/environments/1/batch_exports/{export.id}/logs/"


async def test_logs_level_as_a_comma_separated_string(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """'info, error' is normalised to INFO,ERROR; the limit bounds what comes back."""
    export = await make(ph)
    for i in range(4):
        fake.add_batch_export_log(export.id, f"m{i}", level="info" if i % 2 else "ERROR")

    entries = await ph.batch_exports.logs(export.id, level="info, error", limit=3).to_list()
    assert dict(fake.requests[-1].query)["level"] == "INFO,ERROR"
    assert [e.message for e in entries] == ["m3", "m2", "m1"]


@pytest.mark.parametrize("limit", [0, 501, -1])
async def test_logs_limit_outside_1_to_500_fails_before_sending(
    fake: FakePostHog, ph: aposthog.Client, limit: int
) -> None:
    """PostHog allows 1-500: the client refuses anything else without a request."""
    sent = len(fake.requests)
    with pytest.raises(ValueError, match="limit"):
        ph.batch_exports.logs(MISSING, limit=limit)
    assert len(fake.requests) == sent


@pytest.mark.parametrize("name", ["search", "instance_id"])
@pytest.mark.parametrize("blank", ["", "  ", "\t"])
async def test_a_blank_text_filter_fails_before_sending(
    fake: FakePostHog, ph: aposthog.Client, name: str, blank: str
) -> None:
    """PostHog answers a blank `search` or `instance_id` with a 400: refused here instead."""
    export = await make(ph)
    sent = len(fake.requests)
    with pytest.raises(ValueError, match=f"{name} must not be blank"):
        filters: dict[str, Any] = {name: blank}
        ph.batch_exports.logs(export.id, **filters)
    assert len(fake.requests) == sent


async def test_logs_search_is_posthogs_ilike_pattern(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """As the docstring says: `_` and `%` are wildcards, and a backslash makes one literal."""
    export = await make(ph)
    for message in ["50% done", "500 done", "5_0 done"]:
        fake.add_batch_export_log(export.id, message)
    found = {
        search: sorted(
            e.message for e in await ph.batch_exports.logs(export.id, search=search).to_list()
        )
        for search in ["50%", r"50\%", "5_0", r"5\_0"]
    }
    assert found == {
        "50%": ["50% done", "500 done"],
        r"50\%": ["50% done"],
        "5_0": ["500 done", "5_0 done"],
        r"5\_0": ["5_0 done"],
    }
    assert dict(fake.requests[-1].query)["search"] == r"5\_0"


async def test_logs_are_refused_to_scoped_keys(fake: FakePostHog) -> None:
    """logs declares no required scopes: a scoped key gets 403, even with '*'."""
    export_id = None
    async with fake.client(max_retries=0) as ph:
        export_id = (await make(ph)).id
    key = fake.add_key(scopes=["*"])
    async with fake.client(api_key=key, max_retries=0) as scoped:
        assert (await scoped.batch_exports.get(export_id)).id == export_id
        with pytest.raises(aposthog.PermissionDeniedError) as info:
            await scoped.batch_exports.logs(export_id)
    assert info.value.detail == "This action does not support Personal API Key access"


async def test_logs_of_unknown_export_are_not_found(ph: aposthog.Client) -> None:
    """logs() of an unknown export is a 404."""
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.logs(MISSING)


# ---------------------------------------------------------------------------------- tests


async def test_test_lists_the_destination_steps(fake: FakePostHog, ph: aposthog.Client) -> None:
    """test() returns PostHog's steps for the type, results empty."""
    steps = await ph.batch_exports.test(destination=BatchExportDestinationType.AWS_S3)

    assert dict(fake.requests[-1].query) == {"destination": "AwsS3"}
    assert [s.name for s in steps] == [
        "Ensure we can assume provided AWS role",
        "Check S3 bucket exists",
    ]
    assert all(s.result is None and s.description for s in steps)


async def test_test_turns_empty_400_and_404_into_useful_errors(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog's bare 400 and 404 become errors that say what was wrong."""
    with pytest.raises(aposthog.NotFoundError) as missing:
        await ph.batch_exports.test(destination="Postgres")
    assert missing.value.detail == "PostHog cannot test destination 'Postgres'"
    assert "Postgres" in str(missing.value)
    assert missing.value.status == 404

    sent = len(fake.requests)
    with pytest.raises(ValueError, match="destination must be one of"):
        await ph.batch_exports.test(destination="")
    assert sent == len(fake.requests)


async def test_test_keeps_other_errors(fake: FakePostHog, ph: aposthog.Client) -> None:
    """An error that has a detail is not rewritten."""
    fake.fail_next(status=404, body={"type": "invalid_request", "code": "x", "detail": "gone"})
    with pytest.raises(aposthog.NotFoundError) as info:
        await ph.batch_exports.test(destination="S3")
    assert info.value.detail == "gone"


async def test_run_test_step_against_the_stored_export(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """run_test_step() posts name, interval, type and the override config; returns the step."""
    export = await make(ph)

    step = await ph.batch_exports.run_test_step(export.id, step=1, config={"region": "us-east-1"})

    sent = fake.requests[-1]
    assert sent.path == f"/api/environments/1/batch_exports/{export.id}/run_test_step/"
    assert sent.json() == {
        "step": 1,
        "name": "Events to S3",
        "interval": "hour",
        "destination": {
            "type": "AwsS3",
            "config": {"region": "us-east-1"},
            "integration": AWS_INTEGRATION,
        },
    }
    assert step.name == "Check S3 bucket exists"
    assert step.result is not None
    assert step.result.status is BatchExportTestStepStatus.PASSED


async def test_a_failed_step_is_data_not_an_exception(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """A Failed result arrives in a 200: no exception, the message is kept."""
    export = await make(ph)
    fake.set_batch_export_test_result(
        "AwsS3", 1, status="Failed", message="Bucket 'events' does not exist"
    )

    step = await ph.batch_exports.run_test_step(export.id, step=1)

    assert step.result is not None
    assert step.result.status == "Failed"
    assert step.result.message == "Bucket 'events' does not exist"


async def test_run_test_step_without_config_overrides_nothing(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Without config, an empty override is sent: the stored config is not echoed back."""
    export = await make(ph)

    await ph.batch_exports.run_test_step(export.id, step=1)

    assert fake.requests[-1].json()["destination"] == {
        "type": "AwsS3",
        "config": {},
        "integration": AWS_INTEGRATION,
    }


async def test_run_test_step_new_validates_like_create(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """run_test_step_new() sends a full create body plus the step; bad configs are 400s."""
    step = await ph.batch_exports.run_test_step_new(step=1, destination=s3())
    assert fake.requests[-1].json() == {
        "name": "Destination test",
        "destination": {"type": "AwsS3", "config": S3_CONFIG, "integration": AWS_INTEGRATION},
        "interval": "hour",
        "step": 1,
    }
    assert step.name == "Check S3 bucket exists"
    assert step.result is not None
    assert step.result.status is BatchExportTestStepStatus.PASSED

    role = await ph.batch_exports.run_test_step_new(step=0, destination=s3())
    assert role.result is not None
    assert role.result.status is BatchExportTestStepStatus.SKIPPED

    with pytest.raises(aposthog.BadRequestError):
        await ph.batch_exports.run_test_step_new(step=0, destination=s3(nope=1))


async def test_run_test_step_new_can_test_a_hogql_exports_destination(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    PostHog validates run_test_step_new's body with the full `BatchExportSerializer`
    (`exports.py`, `run_test_step_new`), whose `validate()` requires `hogql_query` when
    `model` is `hogql` ("'hogql_query' is required when 'model' is 'hogql'"): the test of a
    hogql export's destination carries its query, and one without is refused unsent.
    """
    fake.batch_export_flags.add("hogql-batch-exports")
    step = await ph.batch_exports.run_test_step_new(
        step=1,
        destination=s3(),
        model=BatchExportModel.HOGQL,
        hogql_query="SELECT event AS event FROM events",
    )
    assert step.result is not None
    assert fake.requests[-1].json()["hogql_query"] == "SELECT event AS event FROM events"
    sent_before = len(fake.requests)
    with pytest.raises(ValueError, match="hogql_query is required"):
        await ph.batch_exports.run_test_step_new(step=1, destination=s3(), model="hogql")
    assert len(fake.requests) == sent_before  # refused before anything was sent


async def test_run_test_step_on_an_untestable_destination_is_a_server_error(
    ph: aposthog.Client,
) -> None:
    """PostHog has no test for NoOp: its uncaught error is a 500, not a hang or a 200."""
    with pytest.raises(aposthog.InternalServerError):
        await ph.batch_exports.run_test_step_new(step=0, destination={"type": "NoOp", "config": {}})


async def test_run_test_step_of_unknown_export_is_not_found(ph: aposthog.Client) -> None:
    """The export is fetched first: an unknown id is a 404."""
    with pytest.raises(aposthog.NotFoundError):
        await ph.batch_exports.run_test_step(MISSING, step=0)


@pytest.mark.parametrize("argument", ["name", "search", "instance_id"])
async def test_text_with_a_nul_is_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client, argument: str
) -> None:
    """
    A batch export's `name` (ModelSerializer: a CharField) and the logs' `search` and
    `instance_id` (LogEntryRequestSerializer, posthog/api/log_entries.py: CharFields) all
    carry DRF's ProhibitNullCharactersValidator, so PostHog answers a NUL with a 400.
    README: an argument PostHog would refuse is a ValueError naming it, before sending.
    """
    export = await ph.batch_exports.create(
        name="n", destination=BatchExportDestination(type="NoOp", config={}), interval="hour"
    )
    fake.requests.clear()
    with pytest.raises(ValueError, match=argument):
        if argument == "name":
            await ph.batch_exports.update(export.id, name="night\x00ly")
        elif argument == "search":
            await ph.batch_exports.logs(export.id, search="a\x00b")
        else:
            await ph.batch_exports.logs(export.id, instance_id="a\x00b")
    assert [] == fake.requests


def _docstring_example(doc: str | None) -> str:
    """The Python block of a docstring's `Example:` section, dedented."""
    assert doc is not None
    block = doc.split("```python\n", 1)[1].split("```", 1)[0]
    return textwrap.dedent(block)


async def test_the_replace_docstring_example_runs(ph: aposthog.Client) -> None:
    """
    The example in `BatchExports.replace`'s docstring, run as written against an AwsS3
    export, replaces it. Its config has no `prefix`, a key PostHog's S3-family
    destinations require on a PUT (`S3FamilyDestinationConfigSerializer.prefix`, no
    `required=False`), so the example the reference shows for a PUT is PostHog's 400.
    """
    export = await make(ph)
    # `export` is a parameter: the example rebinds it (`export = await ...replace(export.id`).
    code = "async def example(export):\n" + textwrap.indent(
        _docstring_example(ph.batch_exports.replace.__doc__) + "return export\n", "    "
    )
    namespace: dict[str, Any] = {"ph": ph}
    exec(compile(code, "BatchExports.replace.__doc__", "exec"), namespace)
    replaced = await namespace["example"](export)
    assert ("Events to S3", "day", 3) == (replaced.name, replaced.interval, replaced.offset_hour)


#: The methods DESIGN.md names for runs and backfills, reached on `ph.batch_exports`.
RUNS_AND_BACKFILLS = (
    "list_runs",
    "get_run",
    "retry_run",
    "cancel_run",
    "list_backfills",
    "create_backfill",
    "get_backfill",
    "cancel_backfill",
)


@pytest.mark.parametrize("name", RUNS_AND_BACKFILLS)
async def test_the_runs_and_backfills_methods_are_documented_methods_of_the_class(
    name: str,
) -> None:
    """
    `ph.batch_exports.list_runs` and the seven other run and backfill methods are the
    public contract (DESIGN.md), but `BatchExports` binds them in `__init__` to slots: on
    the class each is a bare `member_descriptor`, so `help(aposthog.resources.BatchExports)`
    lists its name with no signature or docstring, `inspect.signature` fails on it, and
    the reference (`::: aposthog.resources.BatchExports`, `show_if_no_docstring: false`)
    leaves all eight out: their documented argument rules (relative times, `retry_run`'s
    workflow id) are nowhere in the docs.
    """
    member = inspect.getattr_static(BatchExports, name)
    assert inspect.isfunction(member), type(member).__name__
    assert "id" in inspect.signature(member).parameters
    assert inspect.getdoc(member)


async def test_a_search_padded_with_blanks_is_not_silently_trimmed_by_posthog(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    PostHog reads `search` (and `instance_id`) with DRF's `CharField`, which trims it:
    `" failed"` became `"failed"`, so an entry "unfailed retry" matched although it does
    not contain " failed". Refused, naming the argument, before sending.
    """
    export = await make(ph)
    fake.add_batch_export_log(export.id, "upload failed")
    fake.add_batch_export_log(export.id, "unfailed retry")
    sent = len(fake.requests)
    with pytest.raises(ValueError, match="search must not begin or end with blanks"):
        await ph.batch_exports.logs(export.id, search=" failed").to_list()
    with pytest.raises(ValueError, match="instance_id must not begin or end with blanks"):
        await ph.batch_exports.logs(export.id, instance_id="run-1 ").to_list()
    assert len(fake.requests) == sent
    found = await ph.batch_exports.logs(export.id, search="upload failed").to_list()
    assert [e.message for e in found] == ["upload failed"]


async def test_unpause_with_backfill_never_backfills_the_whole_history(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    PostHog backfills from the export's `last_paused_at`, which only `pause()` sets:
    an export created with `paused=True` (or paused by `update(paused=True)`) has none,
    and `backfill_export(start_at=None, …)` is a backfill from the beginning of the data
    (the very thing PostHog otherwise keeps behind a feature flag). The docstring
    promises "the intervals missed while it was paused"; the client refuses (it reads
    `last_paused_at` first) rather than start it.
    """
    export = await make(ph, paused=True)
    assert export.last_paused_at is None
    with pytest.raises(ValueError, match="backfill"):
        await ph.batch_exports.unpause(export.id, backfill=True)
    assert (await ph.batch_exports.get(export.id)).paused  # nothing changed
    assert await ph.batch_exports.list_backfills(export.id).to_list() == []
    # Paused by pause(), it has its pause time: unpaused with a backfill from then.
    await ph.batch_exports.unpause(export.id)
    await ph.batch_exports.pause(export.id)
    await ph.batch_exports.unpause(export.id, backfill=True)
    [backfill] = await ph.batch_exports.list_backfills(export.id).to_list()
    assert backfill.start_at is not None


async def test_logs_can_be_filtered_by_a_level_posthog_writes_beyond_the_enum(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    PostHog's batch-export log handler writes `logging.getLevelName(record.levelno)`, so a
    `logger.critical(...)` in a workflow is a `CRITICAL` line (its own test logs levels
    10 to 50 and expects `CRITICAL` on the topic), and the logs endpoint matches any
    level upper-cased. `BatchExportLogEntry.level` reads such a level as a plain string,
    yet `logs(level="CRITICAL")` was a ValueError before sending: a line seen in the log
    could not be filtered on.
    """
    export = await make(ph)
    fake.add_batch_export_log(export.id, "ok", level="INFO")
    fake.add_batch_export_log(export.id, "disk gone", level="CRITICAL")
    unfiltered = await ph.batch_exports.logs(export.id).to_list()
    assert {e.level for e in unfiltered} == {"INFO", "CRITICAL"}

    entries = await ph.batch_exports.logs(export.id, level="critical").to_list()
    assert [e.message for e in entries] == ["disk gone"]
    assert dict(fake.requests[-1].query)["level"] == "CRITICAL"


async def test_unpause_with_backfill_never_backfills_intervals_the_export_ran(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    `last_paused_at` is set by `pause()` only. An export paused by `pause()` three days
    ago, unpaused, run for two days, then paused by `update(paused=True)` still has the
    old pause time: PostHog's `unpause(backfill=True)` backfills from it, exporting the
    two days of intervals the export had already exported again (duplicates in the
    destination). The client reads the export first, and its `latest_runs` show runs
    of intervals after `last_paused_at`: it must not start that backfill (refuse, as
    for an export without a pause time, or backfill only what was missed).
    """
    now = dt.datetime.now(dt.timezone.utc)
    hour = now.replace(minute=0, second=0, microsecond=0)
    export = await make(ph)
    await ph.batch_exports.pause(export.id)
    await ph.batch_exports.unpause(export.id)
    # That pause() was three days ago (PostHog keeps its time), and the export then ran.
    fake.batch_exports[export.id]["last_paused_at"] = now - dt.timedelta(days=3)
    ran = [
        fake.add_batch_export_run(
            export.id,
            created_at=hour - dt.timedelta(hours=48 - i, minutes=-5),
            data_interval_end=hour - dt.timedelta(hours=48 - i),
        )
        for i in range(24)
    ]
    await ph.batch_exports.update(export.id, paused=True)
    last_exported = max(r["data_interval_end"] for r in ran)

    try:
        await ph.batch_exports.unpause(export.id, backfill=True)
    except ValueError:
        assert (await ph.batch_exports.get(export.id)).paused  # nothing changed
        assert fake.batch_export_backfills == {}
    else:
        backfills = await ph.batch_exports.list_backfills(export.id).to_list()
        assert all(b.start_at is not None and b.start_at >= last_exported for b in backfills)


@pytest.mark.parametrize("query", ["left out", None])
async def test_a_hogql_export_without_its_query_is_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client, query: str | None
) -> None:
    """
    PostHog's `BatchExportSerializer._validate_hogql_query` refuses a new `hogql` export
    without its query ("'hogql_query' is required when 'model' is 'hogql'"; a 403 first
    without the team's flag). `create()`'s docstring says the query is required with that
    model, `run_test_step_new()` refuses the very same body with a `ValueError` unsent, and
    `create()` refuses MERGE without `primary_key` unsent: it should refuse this too,
    naming `hogql_query`, rather than spend a non-repeatable POST on a certain refusal.
    """
    fake.batch_export_flags.add("hogql-batch-exports")
    extra: dict[str, Any] = {} if query == "left out" else {"hogql_query": None}
    sent = len(fake.requests)
    with pytest.raises(ValueError, match="hogql_query"):
        await make(ph, model=BatchExportModel.HOGQL, **extra)
    assert len(fake.requests) == sent


@pytest.mark.parametrize("method", ["create", "replace", "update"])
async def test_an_export_ending_before_it_starts_is_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client, method: str
) -> None:
    """
    `start_at` is the time before which PostHog triggers no run, `end_at` the time after
    which it triggers none (the model's help texts); PostHog's serializer never compares
    them, so an export given `end_at` before `start_at` is stored (201/200) with a Temporal
    schedule that never fires: it silently exports nothing. Both bounds are given in one
    call, so the client can see it: a `ValueError` naming `end_at`, nothing sent.
    """
    start, end = dt.datetime(2030, 1, 1, tzinfo=UTC), dt.datetime(2029, 1, 1, tzinfo=UTC)
    export = await make(ph)
    sent = len(fake.requests)
    with pytest.raises(ValueError, match="end_at"):
        if method == "create":
            await make(ph, start_at=start, end_at=end)
        elif method == "replace":
            await ph.batch_exports.replace(
                export.id,
                name="Events to S3",
                destination=s3(),
                interval="hour",
                start_at=start,
                end_at="2029-01-01T00:00:00Z",
            )
        else:
            await ph.batch_exports.update(export.id, start_at=start, end_at=end)
    assert len(fake.requests) == sent


async def test_logs_with_after_not_before_before_are_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    PostHog keeps entries with `timestamp > after AND timestamp < before` (both exclusive,
    `fetch_log_entries`): with `after` at or past `before` the answer is always an empty
    page, indistinguishable from "no errors logged". Swapped bounds are a caller's bug the
    client can see (two aware datetimes): a `ValueError` naming `before`, nothing sent.
    """
    export = await make(ph)
    now = dt.datetime.now(UTC)
    fake.add_batch_export_log(export.id, "boom", level="ERROR", timestamp=now)
    sent = len(fake.requests)
    with pytest.raises(ValueError, match="before"):
        await ph.batch_exports.logs(
            export.id, after=now + dt.timedelta(hours=1), before=now - dt.timedelta(hours=1)
        ).to_list()
    assert len(fake.requests) == sent


async def test_unpause_with_backfill_never_backfills_an_interval_that_straddled_the_pause(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """
    A daily export paused by `pause()` yesterday at 10:00, unpaused at 11:00 (PostHog keeps
    `last_paused_at`), ran at midnight (the run of yesterday: 00:00 to 00:00), and was then
    paused by `update(paused=True)`. `unpause(backfill=True)` makes PostHog backfill from
    yesterday 10:00: its backfill workflow aligns that start to the interval (yesterday
    00:00) and exports yesterday again, duplicating what the midnight run wrote. The
    client's guard is meant to stop exactly this (a run after the pause time), but it
    only counts runs whose *start* is at or after `last_paused_at`; a run whose interval
    ends after it also ran after the pause (no run's interval ends after the pause time
    unless the export was resumed). It must refuse (nothing changed) or backfill only
    from the end of what was exported.
    """
    now = dt.datetime.now(dt.timezone.utc)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    export = await make(ph, interval="day")
    await ph.batch_exports.pause(export.id)
    await ph.batch_exports.unpause(export.id)
    fake.batch_exports[export.id]["last_paused_at"] = today - dt.timedelta(hours=14)
    ran = fake.add_batch_export_run(export.id, created_at=today, data_interval_end=today)
    assert ran["data_interval_start"] == today - dt.timedelta(days=1)
    await ph.batch_exports.update(export.id, paused=True)

    try:
        await ph.batch_exports.unpause(export.id, backfill=True)
    except ValueError:
        assert (await ph.batch_exports.get(export.id)).paused  # nothing changed
        assert fake.batch_export_backfills == {}
    else:
        backfills = await ph.batch_exports.list_backfills(export.id).to_list()
        assert all(b.start_at is not None and b.start_at >= today for b in backfills)


@pytest.mark.parametrize(
    ("field", "value", "model"),
    [
        ("filters", [], "persons"),
        ("filters", [{"key": "$browser", "type": "event", "value": ["Chrome"]}], "sessions"),
        ("hogql_modifiers", {}, None),  # PostHog's default model: events
        ("primary_key", ["id"], "persons"),
        ("version_key", ["version"], "sessions"),
    ],
)
@pytest.mark.parametrize("call", ["create", "run_test_step_new"])
async def test_a_field_of_another_model_is_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client, field: str, value: Any, model: str | None, call: str
) -> None:
    """
    PostHog's `BatchExportSerializer.validate` takes `filters` for an `events` export
    only, and `hogql_modifiers`, `primary_key` and `version_key` for a `hogql` one ("'filters'
    is only supported for 'events' not 'persons' model", a 400): a new export's model is
    known (given, else `events`), so the client refuses the mix unsent, naming the field
    (the fake's 400 for it sent as it is: `test_fake_batch_export_fields.py`).
    """
    fields: dict[str, Any] = {field: value}
    if model is not None:
        fields["model"] = model
    with pytest.raises(ValueError, match=rf"^{field} is only for an export of model"):
        if call == "create":
            await ph.batch_exports.create(name="n", destination=s3(), interval="hour", **fields)
        else:
            await ph.batch_exports.run_test_step_new(step=0, destination=s3(), **fields)
    assert [] == fake.requests


async def test_a_field_of_its_own_model_is_sent(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.batch_export_flags.add("hogql-batch-exports")
    chrome = [{"key": "$browser", "type": "event", "value": ["Chrome"], "operator": "exact"}]
    events = await ph.batch_exports.create(
        name="e", destination=s3(), interval="hour", filters=chrome
    )
    hogql = await ph.batch_exports.create(
        name="h",
        destination=s3(),
        interval="hour",
        model="hogql",
        hogql_query="SELECT event AS event FROM events",
        primary_key=["event"],
        version_key=["event"],
        hogql_modifiers={},
    )
    assert events.filters is not None
    assert (hogql.primary_key, hogql.version_key) == (["event"], ["event"])


_SECRET = "HTTP-TOKEN-never-printed-7f3a"


@pytest.mark.parametrize("given", ["a destination", "a dict"])
@pytest.mark.parametrize(
    "call", ["create", "update", "replace", "run_test_step", "run_test_step_new"]
)
async def test_a_failed_call_leaves_a_destinations_secret_in_no_local_of_its_traceback(
    fake: FakePostHog, ph: aposthog.Client, given: str, call: str
) -> None:
    """
    The request bodies that carry a destination (and so its `token` or `password`) were
    plain dicts and bytes in the frames of a call that failed: a traceback printed with
    its locals (pytest's --showlocals, rich, an error tracker) showed the secret, which
    a destination's own repr hides. They hide it too now, and a dict the caller passed
    leaves those frames once the body is made.
    """
    config = {"url": "https://us.i.posthog.com/batch/", "token": _SECRET}
    destination: Any = (
        BatchExportDestination(type="HTTP", config=config)
        if given == "a destination"
        else {"type": "HTTP", "config": config}
    )
    export = await ph.batch_exports.create(name="e", destination=destination, interval="hour")
    fake.fail_next(1, status=500)
    with pytest.raises(aposthog.InternalServerError) as info:
        if call == "create":
            await ph.batch_exports.create(name="e", destination=destination, interval="hour")
        elif call == "update":
            await ph.batch_exports.update(export.id, destination=destination)
        elif call == "replace":
            await ph.batch_exports.replace(
                export.id, name="e", destination=destination, interval="hour"
            )
        elif call == "run_test_step":
            fake.fail_next(1, status=500)  # the export's GET goes first
            await ph.batch_exports.run_test_step(export.id, step=0, config=dict(config))
        else:
            await ph.batch_exports.run_test_step_new(
                step=0, name="e", destination=destination, interval="hour"
            )
    # aposthog's frames (this test's own holds the secret it passed, as a caller's would).
    frames = traceback.TracebackException.from_exception(info.value, capture_locals=True).stack
    ours = [
        f"{frame.filename}:{frame.lineno} {name}"
        for frame in frames
        if f"{os.sep}aposthog{os.sep}" in frame.filename
        for name, value in (frame.locals or {}).items()
        if _SECRET in value
    ]
    assert frames
    assert not ours
