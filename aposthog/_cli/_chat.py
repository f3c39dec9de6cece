"""`aposthog chat` and `aposthog conversations …`: PostHog AI from the terminal."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio

from .._client import Client
from .._errors import PostHogError
from .._streaming import ConversationStream
from ..models.conversations import AgentMode
from ..resources.conversations import MAX_CONTENT_LENGTH
from . import _args
from ._commands import COMMANDS, Output, _done, _UsageError
from ._output import cell, json_line, terminal_text

__all__ = ["add_chat_commands", "chat"]

_CONVERSATION_COLUMNS = [
    ("id", "id"),
    ("title", "title"),
    ("status", "status"),
    ("type", "type"),
    ("updated", "updated_at"),
]
_AGENT_MODES = tuple(mode.value for mode in AgentMode)
_CONVERSATION_FIELDS = [*_CONVERSATION_COLUMNS, ("created", "created_at")]


async def chat(ph: Client, args: argparse.Namespace, out: Output) -> int:
    """
    Stream PostHog AI's answer to `args.question` as it arrives.

    Ctrl-C cancels the generation on the server (PATCH …/cancel/) before exiting, so
    nothing is left running there.
    """
    stream = ph.conversations.create(
        args.question, conversation=args.conversation, agent_mode=args.agent_mode
    )
    return await _relay(stream, out)


async def _decide(ph: Client, args: argparse.Namespace, out: Output) -> int:
    """`conversations approve|reject ID PROPOSAL`: decide, and stream the run that goes on."""
    stream = ph.conversations.create(
        None,
        conversation=args.id,
        resume_payload={"action": args.action, "proposal_id": args.proposal},
    )
    return await _relay(stream, out)


async def _relay(stream: ConversationStream, out: Output) -> int:
    """Print `stream`'s answer as it arrives; then what PostHog AI asks approval for, if any."""
    wrote_text = False
    try:
        async with stream:
            if out.as_json:
                async for event in stream:
                    out.line(json_line(event, ascii_only=out.ascii_only))
            else:
                async for delta in stream.text_deltas():
                    out.out.write(terminal_text(delta))
                    out.out.flush()
                    wrote_text = wrote_text or bool(delta)
            result = await stream.until_done()
    except BaseException as exc:
        # Interrupted (Ctrl-C cancels this task) or failed: stop the server's work too.
        refused: str | None = "no answer within 10 s"
        with anyio.move_on_after(10, shield=True):
            try:
                await stream.cancel()
            except PostHogError as error:
                refused = str(error)
            else:
                refused = None
        if wrote_text:
            out.out.write("\n")
            out.out.flush()
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            if refused is None:
                print(f"aposthog: cancelled conversation {stream.conversation_id}", file=sys.stderr)
            else:
                # (A scoped key's cancel is PostHog's 403.) The answer goes on there.
                print(
                    f"aposthog: stopped reading conversation {stream.conversation_id}, but "
                    f"PostHog AI may still be answering: the cancel failed: {cell(refused)}",
                    file=sys.stderr,
                )
        raise
    if wrote_text:
        out.out.write("\n")
        out.out.flush()
    if not out.as_json:
        print(f"conversation: {stream.conversation_id}", file=sys.stderr)
    if result.failed:
        failure = result.failure.content if result.failure and result.failure.content else ""
        print(
            f"aposthog: PostHog AI could not answer: {cell(failure or 'generation error')}",
            file=sys.stderr,
        )
        return 1
    try:
        approval = await stream.pending_approval()
    except PostHogError as exc:
        print(f"aposthog: could not read what PostHog AI asks: {cell(str(exc))}", file=sys.stderr)
        return 1
    if approval is not None:
        # PostHog AI waits for the user: what it asks, and the commands that decide it.
        asked = f"PostHog AI asks to run {cell(approval.tool_name or 'a tool')}"
        preview = approval.preview_text  # encoded on each read: read once
        if preview:
            asked += f": {cell(preview)}"
        # Shown escaped as all the server's text is, and quoted for a shell to paste.
        ids = f"{stream.conversation_id} {shlex.quote(cell(approval.proposal_id))}"
        print(
            f"{asked}\n  approve: aposthog conversations approve {ids}"
            f"\n  reject:  aposthog conversations reject {ids}",
            file=sys.stderr,
        )
    return 0


async def _list(ph: Client, args: argparse.Namespace, out: Output) -> None:
    await out.records(aiter(ph.conversations.list()), _CONVERSATION_COLUMNS, limit=args.limit)


async def _get(ph: Client, args: argparse.Namespace, out: Output) -> None:
    conversation = await ph.conversations.get(args.id)
    if out.as_json:
        out.line(json_line(conversation, ascii_only=out.ascii_only))
        return
    out.record(conversation, _CONVERSATION_FIELDS)
    for message in conversation.messages:
        text = _message_text(message)
        out.line(f"  [{cell(getattr(message, 'type', '?'))}] {text}")
    for approval in conversation.pending_approvals:
        preview = approval.preview_text
        out.line(
            f"  [approval {cell(approval.decision_status)}] {cell(approval.tool_name or 'a tool')}"
            f"{': ' + cell(preview) if preview else ''} (proposal {cell(approval.proposal_id)})"
        )


def _message_text(message: Any) -> str:
    content = getattr(message, "content", None)
    if isinstance(content, str):
        return cell(" ".join(content.split()))
    return "(no text)"


async def _cancel(ph: Client, args: argparse.Namespace, out: Output) -> None:
    await ph.conversations.cancel(args.id)
    _done(out, {"cancelled": args.id})


async def _delete(ph: Client, args: argparse.Namespace, out: Output) -> None:
    await ph.conversations.delete(args.id)
    _done(out, {"deleted": args.id})


_QUEUE_COLUMNS = [("id", "id"), ("queued", "created_at"), ("content", "content")]


async def _queue(ph: Client, args: argparse.Namespace, out: Output) -> None:
    queue = ph.conversations.queue
    if args.agent_mode is not None and args.add is None:
        raise _UsageError("--agent-mode goes with --add (the mode of the message queued)")
    if args.add is not None:
        shown = await queue.add(args.id, args.add, agent_mode=args.agent_mode)
    elif args.clear:
        shown = await queue.clear(args.id)
    else:
        shown = await queue.get(args.id)

    async def messages() -> AsyncIterator[Any]:
        for message in shown.messages:
            yield message

    await out.records(messages(), _QUEUE_COLUMNS)


COMMANDS[("conversations", "list")] = _list
COMMANDS[("conversations", "queue")] = _queue
COMMANDS[("conversations", "get")] = _get
COMMANDS[("conversations", "cancel")] = _cancel
COMMANDS[("conversations", "delete")] = _delete
COMMANDS[("conversations", "approve")] = _decide
COMMANDS[("conversations", "reject")] = _decide


def add_chat_commands(
    commands: argparse._SubParsersAction[Any],
    common: argparse.ArgumentParser,
) -> None:
    """Add `chat` and the `conversations` group."""
    chat_parser = commands.add_parser(
        "chat", help="ask PostHog AI; the answer streams as it arrives", parents=[common]
    )
    chat_parser.add_argument("question", type=_args.content(MAX_CONTENT_LENGTH), help="what to ask")
    chat_parser.add_argument(
        "--conversation",
        type=_args.uuid("--conversation"),
        default=None,
        help="continue this conversation (its id)",
    )
    chat_parser.add_argument(
        "--agent-mode",
        type=_args.open_choice("--agent-mode", _AGENT_MODES),
        default=None,
        help="e.g. product_analytics, sql",
    )

    group = commands.add_parser("conversations", help="PostHog AI conversations", parents=[common])
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="your conversations, newest first", parents=[common])
    listing.add_argument("--limit", type=_args.positive(), default=None, help="print at most N")
    for name, help in (
        ("get", "show a conversation and its messages"),
        ("cancel", "stop a running generation"),
        ("delete", "delete a conversation"),
    ):
        actions.add_parser(name, help=help, parents=[common]).add_argument(
            "id", type=_args.uuid("id"), help="the conversation's id (a UUID)"
        )
    for name, help in (
        ("approve", "approve the tool call PostHog AI asks to run, and stream the rest"),
        ("reject", "reject the tool call PostHog AI asks to run, and stream the rest"),
    ):
        decide = actions.add_parser(name, help=help, parents=[common])
        decide.add_argument("id", type=_args.uuid("id"), help="the conversation's id (a UUID)")
        decide.add_argument(
            "proposal", type=_args.proposal, help="the proposal id `chat` printed for the ask"
        )
    queue = actions.add_parser(
        "queue",
        help="show the messages waiting for the running answer (or add one, or clear them)",
        parents=[common],
    )
    queue.add_argument("id", type=_args.uuid("id"), help="the conversation's id (a UUID)")
    change = queue.add_mutually_exclusive_group()
    change.add_argument(
        "--add",
        type=_args.content(MAX_CONTENT_LENGTH),
        default=None,
        metavar="MESSAGE",
        help="queue this message; PostHog runs it when the answer before it ends",
    )
    change.add_argument("--clear", action="store_true", help="empty the queue")
    queue.add_argument(
        "--agent-mode",
        type=_args.open_choice("--agent-mode", _AGENT_MODES),
        default=None,
        help="the added message's mode, e.g. sql",
    )
