"""
The typing contract as a user meets it: code written the way the README, DESIGN.md and
the examples write it (a web handler, a worker pool, a chat-bot relay), checked by
`mypy --strict` with `typing.assert_type` (no `reveal_type`), and run against
FakePostHog so that the objects seen at run time are those the annotations promise.

`mypy --strict tests/test_typing_contract.py` must stay clean: each `assert_type` is a
claim about the public types, and each runtime check below a claim that the values
returned are of them.
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import sys
import types
import typing
import uuid
from collections.abc import AsyncIterator
from typing import Any

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # anyio and cattrs bring typing_extensions on Python 3.10
    from typing_extensions import assert_type

import attrs
import pytest

import aposthog
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc


# --------------------------------------------------------------------------- helpers


def _mismatches(value: object, annotation: Any, where: str) -> list[str]:
    """Where `value` is not of `annotation` (attrs records walked field by field)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return []
    if origin is typing.ClassVar:
        return _mismatches(value, args[0], where)
    if origin is typing.Union or origin is types.UnionType:
        if any(not _mismatches(value, arg, where) for arg in args):
            return []
        return [f"{where}: {type(value).__name__} {value!r:.60} is not {annotation}"]
    if annotation is type(None):
        return [] if value is None else [f"{where}: {value!r:.60} is not None"]
    if origin in (list, tuple, dict, cabc.Mapping):
        if not isinstance(value, origin):
            return [f"{where}: {type(value).__name__} is not {annotation}"]
        found: list[str] = []
        if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
            for i, item in enumerate(typing.cast("cabc.Iterable[object]", value)):
                found += _mismatches(item, args[0], f"{where}[{i}]")
        elif origin is tuple:
            for i, (item, arg) in enumerate(
                zip(typing.cast("tuple[object, ...]", value), args, strict=True)
            ):
                found += _mismatches(item, arg, f"{where}[{i}]")
        else:
            for key, item in typing.cast("cabc.Mapping[object, object]", value).items():
                found += _mismatches(key, args[0], f"{where} key")
                found += _mismatches(item, args[1], f"{where}[{key!r}]")
        return found
    if isinstance(annotation, type):
        if annotation is float and type(value) is int:
            return []  # PEP 484's numeric tower
        if not isinstance(value, annotation):
            return [f"{where}: {type(value).__name__} {value!r:.60} is not {annotation.__name__}"]
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return [f"{where}: a naive datetime (the README promises timezone-aware ones)"]
        if attrs.has(type(value)):
            return record_mismatches(value, where)
        return []
    return [f"{where}: cannot check {annotation!r}"]


def record_mismatches(record: object, where: str = "") -> list[str]:
    """Every field (and public property) of an attrs record checked against its annotation."""
    cls = type(record)
    where = where or cls.__name__
    hints = typing.get_type_hints(cls)
    found: list[str] = []
    for field in attrs.fields(typing.cast(Any, cls)):
        found += _mismatches(
            getattr(record, field.name), hints[field.name], f"{where}.{field.name}"
        )
    for name in dir(cls):
        prop = getattr(cls, name, None)
        if isinstance(prop, property) and not name.startswith("_") and prop.fget is not None:
            returns = typing.get_type_hints(prop.fget).get("return")
            if returns is not None:
                found += _mismatches(getattr(record, name), returns, f"{where}.{name}")
    return found


def all_mismatches(records: cabc.Iterable[object], where: str) -> list[str]:
    found: list[str] = []
    for i, record in enumerate(records):
        found += record_mismatches(record, f"{where}[{i}]")
    return found


async def new_export(ph: aposthog.Client, fake: FakePostHog) -> aposthog.BatchExport:
    integration = fake.add_integration("aws-s3")["id"]
    assert isinstance(integration, int)
    return await ph.batch_exports.create(
        name="Events to S3",
        destination=aposthog.BatchExportDestination(
            type="AwsS3",
            config={"bucket_name": "archive", "region": "eu-west-1", "prefix": "events/"},
            integration=integration,
        ),
        interval=aposthog.BatchExportInterval.HOUR,
    )


# ------------------------------------------------------------ what users write


async def web_handler(ph: aposthog.Client, question: str) -> tuple[str, bool]:
    """A request handler relaying an answer (examples/web_relay.py's shape)."""
    stream = ph.conversations.create(question)
    assert_type(stream, aposthog.ConversationStream)
    async with stream as opened:
        assert_type(opened, aposthog.ConversationStream)
        assert_type(opened.conversation_id, str)
        relayed: list[str] = []
        async for delta in opened.text_deltas():
            assert_type(delta, str)
            question_now = opened.question
            assert_type(question_now, aposthog.HumanMessage | None)
            relayed.append(delta)
    result = stream.result()
    assert_type(result, aposthog.ConversationResult)
    assert_type(result.failure, aposthog.FailureMessage | None)
    return "".join(relayed), result.failed


async def chat_bot_turns(ph: aposthog.Client, text: str) -> list[str]:
    """A chat bot answering each queued message apart (README: result.turns)."""
    replies: list[str] = []
    async with ph.conversations.create(text) as stream:
        async for event in stream:
            assert_type(event, aposthog.StreamEvent)
            if isinstance(event, aposthog.MessageEvent):
                assert_type(event.message, aposthog.Message)
                if isinstance(event.message, aposthog.AssistantMessage):
                    assert_type(event.message.tool_calls, list[aposthog.ToolCall] | None)
            elif isinstance(event, aposthog.UpdateEvent):
                assert_type(event.content, str | dict[str, Any] | None)
        result = await stream.until_done()
    for turn in result.turns:
        assert_type(turn, aposthog.ConversationTurn)
        asked = turn.question.content if turn.question else None
        assert_type(asked, str | None)
        replies.append(turn.failure.content or "" if turn.failure else turn.text)
    return replies


async def worker_pool_pass(ph: aposthog.Client, export_id: str) -> int:
    """A worker reading logs, runs and pages (examples/worker_pool.py's shape)."""
    seen = 0
    paginator = ph.batch_exports.logs(export_id, level=["ERROR", "WARNING"], limit=100)
    assert_type(paginator, aposthog.AsyncPaginator[aposthog.BatchExportLogEntry])
    first = await paginator
    assert_type(first, aposthog.Page[aposthog.BatchExportLogEntry])
    assert_type(first.results, list[aposthog.BatchExportLogEntry])
    assert_type(first.count, int | None)
    async for entry in paginator:
        assert_type(entry, aposthog.BatchExportLogEntry)
        assert_type(entry.timestamp, dt.datetime)
        assert_type(entry.level, aposthog.BatchExportLogLevel | str)
        seen += 1
    runs = ph.batch_exports.list_runs(export_id, status=["failed", "completed"])
    async for page in runs.prefetch(2).pages():
        assert_type(page, aposthog.Page[aposthog.BatchExportRun])
        for run in page:
            assert_type(run, aposthog.BatchExportRun)
            assert_type(run.status, aposthog.BatchExportRunStatus | str)
            seen += 1
    everything = await ph.batch_exports.list().prefetch(2).to_list()
    assert_type(everything, list[aposthog.BatchExport])
    rest = ph.batch_exports.list().resume_from(ph.batch_exports.list().next_url or "")
    assert_type(rest, aposthog.AsyncPaginator[aposthog.BatchExport])
    return seen


# --------------------------------------------------------------------- the tests


async def test_the_client_context_manager_and_views_keep_their_types(fake: FakePostHog) -> None:
    async with fake.client() as ph:
        assert_type(ph, aposthog.Client)
        fast = ph.with_options(timeout=2, max_retries=0)
        assert_type(fast, aposthog.Client)
        assert_type(ph.rate_limiter, aposthog.RateLimiter | None)
        assert_type(ph.config, aposthog.ClientConfig)
        assert_type(ph.open_streams, int)
        assert isinstance(ph.project_id, str)
        assert_type(aposthog.RateLimits.posthog_cloud().api, tuple[aposthog.Rate, ...])
        assert isinstance(aposthog.RateLimits(api=[aposthog.Rate(10, per=1)]).api, tuple)


async def test_a_web_handler_relay_is_typed_and_its_result_matches(fake: FakePostHog) -> None:
    fake.script_answer("Hello there!", chunk_size=3)
    async with fake.client() as ph:
        text, failed = await web_handler(ph, "Hi")
    assert ("Hello there!", False) == (text, failed)


async def test_a_chat_bot_relay_is_typed_and_its_records_match(fake: FakePostHog) -> None:
    fake.script_answer("Searching", chunk_size=3, tool="search", tool_text="t", updates=["u"])
    async with fake.client() as ph:
        replies = await chat_bot_turns(ph, "Hi")
        assert replies[-1].endswith("Searching")
        fake.script_answer("half", fail="Oops! Something went wrong.")
        stream = ph.conversations.create("Again?")
        events = [event async for event in stream]
        result = stream.result()
        conversation = await ph.conversations.get(stream.conversation_id)
        summaries = await ph.conversations.list().to_list()
    found = all_mismatches(events, "events") + record_mismatches(result)
    found += [m for turn in result.turns for m in record_mismatches(turn, "turn")]
    found += record_mismatches(conversation) + all_mismatches(summaries, "summaries")
    assert [] == found
    assert result.failed


async def test_a_worker_pool_pass_is_typed_and_its_records_match(fake: FakePostHog) -> None:
    async with fake.client() as ph:
        export = await new_export(ph, fake)
        fake.add_batch_export_run(export.id, records_completed=3)
        fake.add_batch_export_run(export.id, status="Failed", latest_error="boom")
        fake.add_batch_export_log(export.id, "disk full", level="ERROR")
        fake.add_batch_export_backfill(
            export.id,
            start_at=dt.datetime(2024, 1, 1, tzinfo=UTC),
            end_at=dt.datetime(2024, 1, 2, tzinfo=UTC),
        )
        assert 3 == await worker_pool_pass(ph, export.id)
        await ph.batch_exports.pause(export.id)
        await ph.batch_exports.unpause(export.id, backfill=True)
        runs = await ph.batch_exports.list_runs(export.id).to_list()
        run = await ph.batch_exports.get_run(export.id, runs[0].id)
        backfills = await ph.batch_exports.list_backfills(export.id).to_list()
        backfill = await ph.batch_exports.get_backfill(export.id, backfills[0].id)
        logs = await ph.batch_exports.logs(export.id).to_list()
        steps = await ph.batch_exports.test(destination="AwsS3")
        step = await ph.batch_exports.run_test_step(export.id, step=0)
        assert_type(step.result, aposthog.BatchExportTestStepResult | None)
        assert_type(
            await ph.batch_exports.create_backfill(
                export.id,
                start_at=dt.datetime(2024, 2, 1, tzinfo=UTC),
                end_at=dt.datetime(2024, 2, 2, tzinfo=UTC),
            ),
            str,
        )
        fetched = await ph.batch_exports.get(export.id)
    found = record_mismatches(fetched) + all_mismatches(runs, "runs") + record_mismatches(run)
    found += all_mismatches(backfills, "backfills") + record_mismatches(backfill)
    found += all_mismatches(logs, "logs") + all_mismatches(steps, "steps") + record_mismatches(step)
    assert [] == found


async def test_profile_configs_are_typed_and_match(fake: FakePostHog) -> None:
    async with fake.client() as ph:
        config = await ph.customer_profile_configs.create(
            scope=aposthog.ProfileScope.PERSON, content={"properties": ["email", "plan"]}
        )
        assert_type(config.scope, aposthog.ProfileScope | str)
        assert_type(config.created_at, dt.datetime)
        updated = await ph.customer_profile_configs.update(config.id, sidebar=["plan"])
        replaced = await ph.customer_profile_configs.replace(config.id, scope="group_0")
        listed = [each async for each in ph.customer_profile_configs.list()]
    found = record_mismatches(config) + record_mismatches(updated) + record_mismatches(replaced)
    assert [] == found + all_mismatches(listed, "configs")
    assert aposthog.ProfileScope.GROUP_0 is replaced.scope


async def test_conversation_ids_typed_str_or_uuid_take_a_uuid(fake: FakePostHog) -> None:
    """`ConversationId` is `str | uuid.UUID`: a UUID object works, as the type says."""
    fake.script_answer("Hi!")
    async with fake.client() as ph:
        result = await ph.conversations.create("Hello?", trace_id=uuid.uuid4()).until_done()
        conversation = await ph.conversations.get(uuid.UUID(result.conversation_id))
    assert result.conversation_id == conversation.id


async def test_export_and_config_ids_typed_str_or_uuid_take_a_uuid(fake: FakePostHog) -> None:
    """A worker pool keeping ids as UUIDs (its database's column type) passes them as they are."""
    async with fake.client() as ph:
        export = await new_export(ph, fake)
        export_id = uuid.UUID(export.id)
        fake.add_batch_export_run(export.id, records_completed=3)
        fake.add_batch_export_backfill(
            export.id,
            start_at=dt.datetime(2024, 1, 1, tzinfo=UTC),
            end_at=dt.datetime(2024, 1, 2, tzinfo=UTC),
        )
        assert export.id == (await ph.batch_exports.get(export_id)).id
        await ph.batch_exports.pause(export_id)
        runs = await ph.batch_exports.list_runs(export_id).to_list()
        run = await ph.batch_exports.get_run(export_id, uuid.UUID(runs[0].id))
        backfills = await ph.batch_exports.list_backfills(export_id).to_list()
        backfill_id = uuid.UUID(backfills[0].id)
        backfill = await ph.batch_exports.get_backfill(export_id, backfill_id)
        config = await ph.customer_profile_configs.create(scope="person")
        fetched = await ph.customer_profile_configs.get(uuid.UUID(config.id))
    assert (runs[0].id, backfills[0].id, config.id) == (run.id, backfill.id, fetched.id)


class TeamClient(aposthog.Client):
    """An application's client: its own state, set in its own `__init__`."""

    def __init__(self, *, team: str, api_key: str, host: str, project_id: str | int) -> None:
        super().__init__(api_key=api_key, host=host, project_id=project_id)
        self.team = team


async def test_a_subclass_view_has_the_attributes_its_type_promises(fake: FakePostHog) -> None:
    """
    `with_options()` returns `_C`, the subclass (its docstring: "a subclass's view is one
    too"), so a type checker types `fast.team` as `str`: the view has the attribute the
    subclass's `__init__` set, not only the client's own.
    """
    async with TeamClient(
        team="growth", api_key=fake.api_key, host=fake.url, project_id=fake.project_id
    ) as ph:
        fast = ph.with_options(timeout=2)
        assert_type(fast, TeamClient)
        assert isinstance(fast, TeamClient)
        assert "growth" == getattr(fast, "team", None)


async def _unused(ph: aposthog.Client) -> AsyncIterator[str]:  # pragma: no cover
    """`text_batches()` is typed as an async iterator of str, as `text_deltas()` is."""
    async for piece in ph.conversations.create("x").text_batches():
        assert_type(piece, str)
        yield piece
