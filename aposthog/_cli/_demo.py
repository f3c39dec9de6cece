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


TOURS: list[Tour] = [_profile_configs_tour]


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
