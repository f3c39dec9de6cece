"""The resource commands: `profile-configs`, `batch-exports` and `conversations`."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TextIO

from .._client import Client
from .._pagination import AsyncPaginator
from . import _args
from ._output import cell, column_widths, format_row, json_line

__all__ = ["COMMANDS", "Output", "add_resource_commands"]

Handler = Callable[[Client, argparse.Namespace, "Output"], Any]
COMMANDS: dict[tuple[str, str], Handler] = {}


class Output:
    """Where command results go: JSON lines with `--json`, aligned tables otherwise."""

    def __init__(self, out: TextIO, *, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        # JSON in ASCII where the output's encoding is not UTF-8 (an `ascii` or Latin-1
        # locale, a redirect on Windows): the same values, written in any encoding.
        encoding = (getattr(out, "encoding", None) or "utf-8").lower().replace("-", "")
        self.ascii_only = not encoding.startswith("utf")

    def line(self, text: str) -> None:
        """Write one line and flush (output may be piped into something waiting for it)."""
        self.out.write(text + "\n")
        self.out.flush()

    def record(self, record: Any, fields: Sequence[tuple[str, str]]) -> None:
        """One record: a JSON object, or `label  value` lines."""
        if self.as_json:
            self.line(json_line(record, ascii_only=self.ascii_only))
            return
        width = max(len(label) for label, _ in fields)
        for label, attribute in fields:
            self.line(f"{label.ljust(width)}  {cell(_get(record, attribute))}")

    async def records(
        self,
        items: AsyncIterator[Any],
        columns: Sequence[tuple[str, str]],
        *,
        limit: int | None = None,
        page_rows: int = 50,
    ) -> int:
        """
        Many records, printed as they arrive: JSON lines, or a table in chunks.

        The table's column widths come from its first chunk; a longer value later is
        cut with "…" so that a long list never has to be held in memory to be aligned.
        """
        count = 0
        widths: list[int] | None = None
        chunk: list[list[str]] = []
        headers = [label for label, _ in columns]

        def flush() -> None:
            nonlocal widths
            if not chunk:
                return
            if widths is None:
                widths = column_widths(chunk, headers)
                self.line(format_row([h.upper() for h in headers], widths))
            written = 0
            try:
                for row in chunk:
                    self.line(format_row(row, widths))
                    written += 1
            finally:
                del chunk[:written]  # a write that fails leaves no row to print twice

        try:
            if limit is None or limit > 0:
                async for item in items:
                    count += 1
                    if self.as_json:
                        self.line(json_line(item, ascii_only=self.ascii_only))
                    else:
                        chunk.append([cell(_get(item, attribute)) for _, attribute in columns])
                        if len(chunk) >= page_rows:
                            flush()
                    if count == limit:
                        break  # before asking for more: that could read another page
        finally:
            # Printed as they came, also when a later page fails (or Ctrl-C): the rows
            # held for the table's widths are not lost with the error.
            flush()
        if not self.as_json and count == 0:
            self.line("(none)")
        return count


def _get(record: Any, attribute: str) -> Any:
    value = record
    for part in attribute.split("."):
        value = None if value is None else getattr(value, part, None)
    return value


def _command(resource: str, action: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[(resource, action)] = handler
        return handler

    return register


async def _listing(
    paginator: AsyncPaginator[Any],
    out: Output,
    columns: Sequence[tuple[str, str]],
    limit: int | None,
) -> None:
    await out.records(aiter(paginator), columns, limit=limit)


# ----------------------------------------------------------------------- profile configs

_CONFIG_FIELDS = [
    ("id", "id"),
    ("scope", "scope"),
    ("content", "content"),
    ("sidebar", "sidebar"),
    ("created", "created_at"),
    ("updated", "updated_at"),
]


@_command("profile-configs", "list")
async def _configs_list(ph: Client, args: argparse.Namespace, out: Output) -> None:
    await _listing(ph.customer_profile_configs.list(), out, _CONFIG_FIELDS[:5], args.limit)


@_command("profile-configs", "get")
async def _configs_get(ph: Client, args: argparse.Namespace, out: Output) -> None:
    out.record(await ph.customer_profile_configs.get(args.id), _CONFIG_FIELDS)


@_command("profile-configs", "create")
async def _configs_create(ph: Client, args: argparse.Namespace, out: Output) -> None:
    config = await ph.customer_profile_configs.create(
        scope=args.scope, content=args.content, sidebar=args.sidebar
    )
    out.record(config, _CONFIG_FIELDS)


@_command("profile-configs", "update")
async def _configs_update(ph: Client, args: argparse.Namespace, out: Output) -> None:
    changes = {
        name: getattr(args, name)
        for name in ("scope", "content", "sidebar")
        if getattr(args, name) is not None
    }
    if not changes:
        raise _UsageError(
            "profile-configs update: give at least one of --scope, --content, --sidebar"
        )
    out.record(await ph.customer_profile_configs.update(args.id, **changes), _CONFIG_FIELDS)


@_command("profile-configs", "delete")
async def _configs_delete(ph: Client, args: argparse.Namespace, out: Output) -> None:
    await ph.customer_profile_configs.delete(args.id)
    _done(out, {"deleted": args.id})


# ----------------------------------------------------------------------- batch exports

_EXPORT_COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("destination", "destination.type"),
    ("interval", "interval"),
    ("model", "model"),
    ("paused", "paused"),
    ("created", "created_at"),
]
_EXPORT_FIELDS = [
    *_EXPORT_COLUMNS,
    ("config", "destination.config"),
    ("timezone", "timezone"),
    ("last paused", "last_paused_at"),
    ("start at", "start_at"),
    ("end at", "end_at"),
    ("updated", "last_updated_at"),
]
_LOG_COLUMNS = [
    ("timestamp", "timestamp"),
    ("level", "level"),
    ("run", "instance_id"),
    ("message", "message"),
]
_RUN_COLUMNS = [
    ("id", "id"),
    ("status", "status"),
    ("interval start", "data_interval_start"),
    ("interval end", "data_interval_end"),
    ("records", "records_completed"),
    ("created", "created_at"),
    ("error", "latest_error"),
]


@_command("batch-exports", "list")
async def _exports_list(ph: Client, args: argparse.Namespace, out: Output) -> None:
    await _listing(ph.batch_exports.list(), out, _EXPORT_COLUMNS, args.limit)


@_command("batch-exports", "get")
async def _exports_get(ph: Client, args: argparse.Namespace, out: Output) -> None:
    out.record(await ph.batch_exports.get(args.id), _EXPORT_FIELDS)


@_command("batch-exports", "pause")
async def _exports_pause(ph: Client, args: argparse.Namespace, out: Output) -> None:
    await ph.batch_exports.pause(args.id)
    _done(out, {"id": args.id, "paused": True})


@_command("batch-exports", "unpause")
async def _exports_unpause(ph: Client, args: argparse.Namespace, out: Output) -> None:
    await ph.batch_exports.unpause(args.id, backfill=args.backfill)
    _done(out, {"id": args.id, "paused": False})


@_command("batch-exports", "logs")
async def _exports_logs(ph: Client, args: argparse.Namespace, out: Output) -> None:
    # PostHog reads one page of `limit` entries (50 unless asked): `--limit` beyond that
    # asks for as many (PostHog's most is 500), unless `--fetch` says otherwise.
    fetch = args.fetch
    if fetch is None and args.limit is not None and args.limit > _LOGS_PAGE:
        fetch = min(args.limit, _LOGS_MOST)
    paginator = ph.batch_exports.logs(
        args.id,
        level=args.level,
        search=args.search,
        instance_id=args.run,
        limit=fetch,
    )
    await _listing(paginator, out, _LOG_COLUMNS, args.limit)


_LOGS_PAGE = 50  # the entries PostHog fetches when no limit is sent
_LOGS_MOST = 500


@_command("batch-exports", "test-step")
async def _exports_test_step(ph: Client, args: argparse.Namespace, out: Output) -> None:
    step = await ph.batch_exports.run_test_step(args.id, step=args.step)
    out.record(
        step,
        [
            ("step", "name"),
            ("description", "description"),
            ("status", "result.status"),
            ("message", "result.message"),
        ],
    )


@_command("batch-exports", "runs")
async def _exports_runs(ph: Client, args: argparse.Namespace, out: Output) -> None:
    paginator = ph.batch_exports.list_runs(args.id, status=args.status or None)
    await _listing(paginator, out, _RUN_COLUMNS, args.limit)


class _UsageError(Exception):
    """A command line the parser accepted but that cannot be run (exit status 2)."""


def _done(out: Output, result: dict[str, Any]) -> None:
    if out.as_json:
        out.line(json.dumps(result))
    else:
        out.line(", ".join(f"{k}: {cell(v)}" for k, v in result.items()))


def add_resource_commands(
    commands: argparse._SubParsersAction[Any],
    common: argparse.ArgumentParser,
) -> None:
    """Add the resource command groups to the top-level parser."""

    def group(name: str, help: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help, parents=[common])
        return parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(
        actions: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        help: str,
        *,
        with_id: bool = True,
        listing: bool = False,
    ) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help, parents=[common])
        if with_id:
            parser.add_argument("id", type=_args.uuid("id"), help="the object's id (a UUID)")
        if listing:
            parser.add_argument(
                "--limit", type=_args.positive(), default=None, help="print at most N records"
            )
        return parser

    configs = group("profile-configs", "customer profile configs")
    action(configs, "list", "list every config", with_id=False, listing=True)
    action(configs, "get", "show one config")
    create = action(configs, "create", "create a config", with_id=False)
    scope = _args.closed_choice("scope", _args.SCOPES)
    json_value = _args.json_container
    create.add_argument("--scope", required=True, type=scope, help="person, group_0 … group_4")
    create.add_argument("--content", type=json_value, default=None, help="JSON object or array")
    create.add_argument("--sidebar", type=json_value, default=None, help="JSON object or array")
    update = action(configs, "update", "change some fields of a config")
    update.add_argument("--scope", type=scope, default=None, help="person, group_0 … group_4")
    update.add_argument("--content", type=json_value, default=None, help="JSON object or array")
    update.add_argument("--sidebar", type=json_value, default=None, help="JSON object or array")
    action(configs, "delete", "delete a config")

    exports = group("batch-exports", "batch exports")
    action(exports, "list", "list batch exports, newest first", with_id=False, listing=True)
    action(exports, "get", "show one batch export")
    action(exports, "pause", "pause a batch export")
    unpause = action(exports, "unpause", "unpause a batch export")
    unpause.add_argument("--backfill", action="store_true", help="backfill what was missed")
    logs = action(exports, "logs", "read a batch export's log, newest first", listing=True)
    logs.add_argument(
        "--level",
        type=_args.log_levels,
        default=None,
        help=f"e.g. error or info,warning (any of {', '.join(_args.LOG_LEVELS)})",
    )
    logs.add_argument(
        "--search",
        default=None,
        help="only messages containing this (PostHog's ILIKE: _ and %% match any character(s))",
    )
    logs.add_argument("--run", type=_args.uuid("--run"), default=None, help="only this run's")
    logs.add_argument(
        "--fetch",
        type=_args.positive(500),
        default=None,
        help="entries PostHog fetches (1-500; default 50, or --limit up to 500)",
    )
    step = action(exports, "test-step", "run one destination test step")
    step.add_argument(
        "--step", type=_args.non_negative, default=0, help="the step's index (default 0)"
    )
    runs = action(exports, "runs", "list a batch export's runs", listing=True)
    runs.add_argument(
        "--status",
        action="append",
        type=_args.closed_choice("status", _args.RUN_STATUSES),
        help=f"only runs with this status (any of {', '.join(_args.RUN_STATUSES)}; any case)",
    )
