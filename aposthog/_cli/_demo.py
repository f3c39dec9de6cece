"""
`aposthog demo`: the main job, end to end, on an embedded FakePostHog (no credentials).

Each tour drives one resource through the public API only, exactly as a user's code
would, and prints what happened.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TextIO

import attrs

from .._client import Client
from ..models.batch_exports import BatchExportDestination
from ..testing import FakePostHog
from ._output import Styler, cell, format_table

__all__ = ["run_demo"]


@attrs.define
class _Summary:
    lines: list[str] = attrs.field(factory=list)
    requests: int = 0


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.style = Styler(out)

    def __call__(self, text: str = "", *, end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def heading(self, text: str) -> None:
        self()
        self(self.style.bold(f"== {text} =="))

    def step(self, text: str) -> None:
        self(self.style.green("▸ ") + text)

    def table(self, rows: list[list[object]], headers: list[str]) -> None:
        for line in format_table(rows, headers):
            self("    " + line)


Tour = Callable[[Client, FakePostHog, _Printer, _Summary], Awaitable[None]]


async def _profile_configs_tour(
    ph: Client, fake: FakePostHog, say: _Printer, summary: _Summary
) -> None:
    say.heading("Customer profile configs")
    person = await ph.customer_profile_configs.create(
        scope="person", content={"properties": ["email", "plan"]}
    )
    say.step(f"created a config for scope {cell(person.scope)}: {person.id}")
    for scope in ("group_0", "group_1", "group_2", "person"):
        await ph.customer_profile_configs.create(scope=scope, sidebar={"pinned": ["name"]})
    say.step("created four more; listing them all:")
    configs = await ph.customer_profile_configs.list().to_list()
    say.table(
        [[c.id[:8], c.scope, c.content, c.sidebar, c.created_at] for c in configs],
        ["id", "scope", "content", "sidebar", "created"],
    )

    updated = await ph.customer_profile_configs.update(
        person.id, sidebar={"pinned": ["plan", "mrr"]}
    )
    say.step(f"updated {updated.id[:8]} (PATCH): sidebar is now {updated.sidebar}")
    replaced = await ph.customer_profile_configs.replace(person.id, scope="group_3")
    say.step(f"replaced it (PUT): scope {cell(replaced.scope)}, content {replaced.content}")

    say.step("paging two at a time, following PostHog's `next` links:")
    async for page in ph.customer_profile_configs.list(limit=2).pages():
        ids = ", ".join(c.id[:8] for c in page.results)
        more = "next page follows" if page.has_next_page() else "last page"
        say(f"    page of {len(page.results)} (of {page.count}): {ids}  — {more}")

    fake.throttle_next(1, wait=1)
    say.step("PostHog throttles the next request (429, no Retry-After header)…")
    started = time.monotonic()
    again = await ph.customer_profile_configs.get(person.id)
    say(
        f"    …retried after the wait the detail text asked for: got {again.id[:8]} "
        f"in {time.monotonic() - started:.1f} s"
    )

    for config in configs:
        await ph.customer_profile_configs.delete(config.id)
    left = await ph.customer_profile_configs.list()
    say.step(f"deleted all {len(configs)}; {left.count} left")
    summary.lines.append(
        f"customer profile configs: {len(configs)} created, 1 updated, 1 replaced, "
        f"paged, {len(configs)} deleted"
    )


async def _batch_exports_tour(
    ph: Client, fake: FakePostHog, say: _Printer, summary: _Summary
) -> None:
    say.heading("Batch exports")
    # PostHog keeps AWS keys in an integration (made in its UI), which the export names.
    integration = fake.add_integration(
        "aws-s3",
        config={"aws_account_id": "123456789012"},
        sensitive_config={"aws_access_key_id": "AKIA-DEMO", "aws_secret_access_key": "demo-secret"},
    )
    export = await ph.batch_exports.create(
        name="Events to S3",
        destination=BatchExportDestination(
            type="AwsS3",
            config={
                "bucket_name": "analytics-archive",
                "region": "eu-west-1",
                "prefix": "posthog/events/",
            },
            integration=integration["id"],
        ),
        interval="hour",
    )
    say.step(
        f"created {export.name!r} ({cell(export.destination.type)}, every {cell(export.interval)})"
    )
    say(
        f"    its AWS keys stay in integration {export.destination.integration} "
        "(PostHog keeps them there, never in the export)"
    )

    await ph.batch_exports.pause(export.id)
    paused = await ph.batch_exports.get(export.id)
    say.step(f"paused it: paused={paused.paused}, last paused at {cell(paused.last_paused_at)}")
    await ph.batch_exports.unpause(export.id)
    say.step(f"unpaused it: paused={(await ph.batch_exports.get(export.id)).paused}")

    # The fake stands in for PostHog's scheduler: a few runs and their log lines.
    failed = fake.add_batch_export_run(
        export.id, status="Failed", latest_error="NoSuchBucket: analytics-archive"
    )
    fake.add_batch_export_run(export.id, status="Completed", records_completed=1520)
    fake.add_batch_export_logs(
        export.id,
        [
            {"message": "Batch export run started", "instance_id": failed["id"]},
            {
                "message": "NoSuchBucket: analytics-archive",
                "level": "ERROR",
                "instance_id": failed["id"],
            },
            "Batch export run started",
            "Exported 1520 records",
        ],
    )
    errors = await ph.batch_exports.logs(export.id, level=["ERROR", "WARNING"]).to_list()
    say.step(f"its log, errors and warnings only ({len(errors)} of 4 lines):")
    say.table(
        [[e.timestamp, e.level, e.message] for e in errors], ["timestamp", "level", "message"]
    )

    step = await ph.batch_exports.run_test_step(export.id, step=0)
    status = step.result.status if step.result is not None else "not run"
    say.step(f"destination test step 0, {step.name!r}: {cell(status)}")

    runs = await ph.batch_exports.list_runs(export.id).to_list()
    say.step(f"its runs (cursor pages, newest first): {len(runs)}")
    say.table(
        [[r.id[:8], r.status, r.records_completed, r.latest_error] for r in runs],
        ["run", "status", "records", "error"],
    )
    # The failed run named the bucket: write the configuration whole (PUT), checked as a
    # new one is; the AWS keys stay in the integration, which PostHog keeps.
    fixed = await ph.batch_exports.replace(
        export.id,
        name="Events to S3",
        destination=BatchExportDestination(
            type="AwsS3",
            config={
                "bucket_name": "analytics-archive-eu",
                "region": "eu-west-1",
                "prefix": "posthog/events/",
            },
        ),
        interval="day",
        offset_hour=3,
    )
    say.step(
        f"pointed it at bucket {fixed.destination.config['bucket_name']!r}, every "
        f"{cell(fixed.interval)} at hour {cell(fixed.offset_hour)} (replace: a PUT, checked whole)"
    )
    await ph.batch_exports.delete(export.id)
    say.step("deleted it")
    summary.lines.append(
        "batch exports: created, paused, unpaused, logs filtered, a test step run, "
        f"{len(runs)} runs listed, reconfigured, deleted"
    )


async def _conversations_tour(
    ph: Client, fake: FakePostHog, say: _Printer, summary: _Summary
) -> None:
    say.heading("PostHog AI conversations")
    question = "Which pages had the most views yesterday?"
    fake.script_answer(
        "Yesterday your top pages were /pricing (1,204 views), /docs (987) and /blog (612). "
        "/pricing grew 18% on the day before — the new plan page is pulling its weight. 📈",
        delay=0.02,
        tool="query_insights",
        updates=("Running a trends query…",),
        title="Top pages yesterday",
    )
    say.step(f"you: {question}")
    say("    PostHog AI: ", end="")
    stream = ph.conversations.create(question)
    async with stream:
        async for text in stream.text_deltas():  # cumulative snapshots → only the new text
            say(text, end="")
    say()
    result = await stream.until_done()
    say.step(
        f"{len(result.messages)} final messages in conversation {stream.conversation_id[:8]}; "
        f"the streamed text equals the final answer: {result.streamed_text == result.text}"
    )

    fake.script_answer("The day before, /docs was first with 1,101 views.", delay=0.01)
    follow_up = ph.conversations.create("And the day before?", conversation=stream.conversation_id)
    answer = await follow_up.until_done()
    say.step(f"a follow-up in the same conversation: {answer.text}")

    fake.script_answer("Signups rose 9% week over week.", delay=0.05)
    fake.script_answer("Most came from organic search (61%).", delay=0.01)
    busy = ph.conversations.create("How did signups do?", conversation=stream.conversation_id)
    async with busy:
        await anext(busy)  # PostHog AI is answering: a new message would be a 409
        queue = await ph.conversations.queue.add(busy.conversation_id, "Where from?")
        say.step(
            f"a message sent while PostHog AI answers waits in the queue "
            f"({len(queue.messages)} of {queue.max_queue_messages})"
        )
        both = await busy.until_done()
    turns = [f'"{t.question.content if t.question else ""}": {t.text}' for t in both.turns]
    say.step(f"PostHog runs it next, on the same stream: {' / '.join(turns)}")

    fake.script_answer("Let me look at every event since 2019", delay=0.05)
    long_one = ph.conversations.create("Analyse every event since 2019")
    async with long_one:
        async for _ in long_one.text_deltas():
            await long_one.cancel()  # the user changed their mind: stop PostHog's work too
            break
    await fake.wait_for_streams_closed()
    status = fake.conversations[long_one.conversation_id].status
    say.step(f"a third question, cancelled mid-answer: the conversation is {status} on PostHog")

    fake.script_answer("Half an ans", fail="Oops! Something went wrong. Please try again.")
    failed = await ph.conversations.create("Break, please").until_done()
    reason = failed.failure.content if failed.failure is not None else "generation error"
    say.step(f"an in-band failure is a result, not an exception: failed={failed.failed} ({reason})")

    listed = await ph.conversations.list().to_list()
    say.step(f"your conversations: {', '.join(repr(c.title) for c in listed)}")
    summary.lines.append(
        "PostHog AI: an answer streamed live, a follow-up, a queued message, a cancel, "
        "an in-band failure"
    )


TOURS: list[Tour] = [_profile_configs_tour, _batch_exports_tour, _conversations_tour]


async def run_demo(out: TextIO) -> int:
    """Run every tour against an embedded FakePostHog; returns the exit status."""
    say = _Printer(out)
    summary = _Summary()
    started = time.monotonic()
    async with FakePostHog() as fake:
        say(say.style.bold("aposthog demo") + say.style.dim(f" — a fake PostHog on {fake.url}"))
        async with fake.client() as ph:
            for tour in TOURS:
                await tour(ph, fake, say, summary)
        summary.requests = len(fake.requests)
    say.heading("Summary")
    for line in summary.lines:
        say(f"  ✓ {line}")
    say(f"  {summary.requests} requests in {time.monotonic() - started:.1f} s, no credentials used")
    return 0
