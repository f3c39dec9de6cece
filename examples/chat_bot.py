"""
A chat-bot backend: every message a user sends continues ONE PostHog AI conversation,
the answer is relayed as it streams, and a failure becomes a polite reply, never a crash.

    printf 'Top pages yesterday?\\nAnd signups?\\nAnd the day before?\\n' \\
        | python examples/chat_bot.py                  # against an embedded FakePostHog
    python examples/chat_bot.py                        # type messages; Ctrl-D ends
    POSTHOG_PERSONAL_API_KEY=… POSTHOG_PROJECT_ID=… python examples/chat_bot.py

Messages arrive one per line on stdin, as a chat platform's webhook would deliver them;
replies go to stdout as they stream ("bot> …"). `chat_bot(ph, messages, send)` is the
part a real platform adapter plugs into: an async iterator of the user's messages in,
a `send` callback out. When PostHog AI asks for approval of a tool call (creating a
feature flag, say), the bot says so, and the user's yes or no decides it. With no
POSTHOG_* variables (or with `--scripted`) it embeds a
FakePostHog whose answers are scripted, the second one failing (`--delay` seconds
between tokens); at EOF it prints the conversation id on stderr, to continue it with
`aposthog chat --conversation ID`. Ctrl-C cancels the answer being generated, exits 130.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

import anyio

import aposthog
from aposthog.testing import FakePostHog

logger = logging.getLogger("chat_bot")

SORRY = "Sorry, I couldn't answer that just now — please try again."
CANCEL_TIMEOUT = 10.0
"""How long the shielded cleanup may spend telling PostHog to stop generating."""
MAX_MESSAGE = 40_000
"""PostHog's limit on a message's length, in characters."""
YES = frozenset({"yes", "y", "ok", "approve", "go ahead", "sure"})
NO = frozenset({"no", "n", "reject", "don't", "cancel"})
"""The replies that decide an approval PostHog AI asked for (any other message is a new
question, which PostHog takes as a rejection)."""


class Send(Protocol):
    """
    How replies reach the user: `text` is the next piece of the current reply (as it
    streams); `end=True` says the reply is complete (a platform would post or finalize it).
    """

    async def __call__(self, text: str, *, end: bool = False) -> None: ...


def polite(error: aposthog.PostHogError) -> str:
    """What to tell the user when PostHog refused or failed (details go to the log)."""
    if isinstance(error, aposthog.RateLimitError):
        wait = f" in {error.retry_after:.0f} seconds" if error.retry_after else " in a moment"
        return f"I'm getting a lot of questions right now — please try again{wait}."
    if isinstance(error, aposthog.QuotaLimitError):
        return "I've reached my usage limit for now — please try again later."
    if isinstance(error, aposthog.ConflictError):
        return "I'm still answering your previous message — please wait a moment and try again."
    return SORRY


async def chat_bot(ph: aposthog.Client, messages: AsyncIterable[str], send: Send) -> str | None:
    """
    Answer each message in one conversation; return its id (None if nothing was asked).

    Example:
        ```python
        async def send(text: str, *, end: bool = False) -> None:
            print(text, end="\\n" if end else "", flush=True)

        conversation = await chat_bot(ph, platform.messages(), send)
        ```
    """
    conversation: str | None = None
    pending: aposthog.PendingApproval | None = None  # what PostHog AI asked us to approve
    async for message in messages:
        if not message.strip():
            continue
        asked = pending  # the approval on offer as this message came
        decision = _decision(message) if pending is not None else None
        try:
            if pending is not None and decision is not None:
                # The user decided: the run goes on from the tool call (or drops it).
                payload = {"action": decision, "proposal_id": pending.proposal_id}
                stream = ph.conversations.create(
                    None, conversation=conversation, resume_payload=payload
                )
            else:
                # The first message starts the conversation (the client mints its id,
                # and PostHog creates it on first use); every later one continues it.
                stream = ph.conversations.create(message, conversation=conversation)
        except ValueError:  # refused before sending (blank ones were skipped above)
            if len(message) > MAX_MESSAGE:
                await send("That message is too long for me — could you shorten it?", end=True)
            else:  # text no request can carry (a lone surrogate from a stray byte, say)
                await send("I couldn't read that message — could you type it again?", end=True)
            continue
        conversation = stream.conversation_id
        await reply(stream, send)
        pending = await on_offer(ph, stream, asked)
        if pending is not None and (asked is None or pending.proposal_id != asked.proposal_id):
            preview = pending.preview_text
            await send(
                f"PostHog AI asks to run {pending.tool_name or 'a tool'}"
                f"{': ' + preview if preview else ''}. "
                "Reply yes to approve it, or no.",
                end=True,
            )
    return conversation


async def on_offer(
    ph: aposthog.Client, stream: aposthog.ConversationStream, asked: aposthog.PendingApproval | None
) -> aposthog.PendingApproval | None:
    """
    The approval on offer after `stream`'s answer: the one its run ended waiting for (a
    run that needs the user's approval ends at the tool call; PostHog keeps the question
    with the conversation, not in the stream). When the stream did not reach its end (a
    refused decision, a cut), what the conversation shows pending: `asked`, the one on
    offer before, if PostHog did not take it; else the one the run, gone on without a
    reader, stopped at.
    """
    result = stream.result()
    if not result.complete and asked is None and not result.messages and not result.in_progress:
        return None  # refused before anything streamed (a 429, say): nothing was asked
    try:
        if result.complete:
            return await stream.pending_approval()
        shown = await ph.conversations.get(stream.conversation_id)
    except aposthog.NotFoundError:
        return None  # a conversation PostHog has not created (or titled) yet: nothing asked
    except aposthog.PostHogError as err:
        logger.warning("conversation %s: %s", stream.conversation_id, err)
        return asked  # not known: a yes tries it again (PostHog refuses what it cannot take)
    pending = [a for a in shown.pending_approvals if a.decision_status == "pending"]
    again = [a for a in pending if asked is not None and a.proposal_id == asked.proposal_id]
    if shown.status != aposthog.ConversationStatus.IDLE:
        pending = again  # a run goes on: where it stops is not known yet
    return next(iter(again or pending), None)


def _decision(message: str) -> str | None:
    """`approve` or `reject` for a yes or a no, else None (a new question)."""
    said = message.strip().lower().rstrip(".!")
    if said in YES:
        return "approve"
    if said in NO:
        return "reject"
    return None


async def reply(stream: aposthog.ConversationStream, send: Send) -> None:
    """Relay one answer as it streams; an apology instead when PostHog fails or refuses."""
    streamed = False
    try:
        # Batches: a platform that rate-limits its posts makes `send` slow; each piece then
        # holds all the text that arrived meanwhile, so the reply never falls behind.
        async with stream, contextlib.aclosing(stream.text_batches()) as pieces:
            async for text in pieces:
                await send(text)
                streamed = True
    except aposthog.PostHogError as err:
        # Refused (429, 402, 409…) or failed mid-stream. A run that failed mid-stream is
        # ours and goes on without a reader (the next message would get a 409): stopped.
        # `cancel()` sends nothing for a refused request, so after a 409 the generation
        # running (the user's other device's) is spared.
        logger.warning("conversation %s: %s", stream.conversation_id, err)
        await stop_generation(stream)
        apology = polite(err)
    except BaseException:
        # Cancelled (the platform shuts down, Ctrl-C) or `send` failed: stop the generation
        # on PostHog too, then re-raise.
        await stop_generation(stream)
        raise
    else:
        # An in-band `ai/failure` is a result, not an exception.
        apology = SORRY if stream.result().failed else ""
    if apology:
        await send(f"\n{apology}" if streamed else apology)
    await send("", end=True)


async def stop_generation(stream: aposthog.ConversationStream) -> None:
    """
    Stop the stream's run on PostHog: shielded, so it runs in a cancelled task too, and
    bounded, so a shutdown never hangs on it.
    """
    with anyio.move_on_after(CANCEL_TIMEOUT, shield=True):
        try:
            await stream.cancel()
        except aposthog.PostHogError as err:
            logger.warning("could not cancel %s: %s", stream.conversation_id, err)


# ---------------------------------------------------------------------- the terminal adapter


async def stdin_lines() -> AsyncIterator[str]:
    """Lines of stdin, read by a daemon thread (a blocked read never holds up exit)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    # A byte the locale's encoding cannot decode becomes U+FFFD, not an error that ends
    # the reading thread (and leaves the bot waiting for a line that never comes).
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):  # (a stream that cannot)
            reconfigure(errors="replace")

    def read() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError) as exc:  # stdin unreadable: the end of the input
            logger.warning("stdin: %s", exc)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line.rstrip("\r\n")


class Terminal:
    """`send` for a terminal: each reply on its own "bot> " line, flushed as it streams."""

    def __init__(self) -> None:
        self.started = False

    async def __call__(self, text: str, *, end: bool = False) -> None:
        if not self.started:
            sys.stdout.write("bot> ")
            self.started = True
        sys.stdout.write(text.replace("\n", "\n     "))
        if end:
            sys.stdout.write("\n")
            self.started = False
        sys.stdout.flush()


@contextlib.asynccontextmanager
async def posthog(
    scripted: bool, delay: float
) -> AsyncIterator[tuple[aposthog.Client, FakePostHog | None]]:
    """A client of the real PostHog (from the environment), or of a scripted FakePostHog."""
    if not scripted:
        async with aposthog.Client() as ph:
            yield ph, None
        return
    async with FakePostHog() as fake, fake.client() as ph:
        fake.ai_burst_limit = None  # a quick typist is no abuse
        fake.script_answer(
            "Yesterday your most viewed page was /pricing (1,204 views).", delay=delay
        )
        # The second answer fails half-way, as PostHog AI sometimes does.
        fake.script_answer("Signups by source: organic", fail="Oops! Something…", delay=delay)
        fake.script_answer("The day before, /docs led with 980 views.", delay=delay)
        yield ph, fake


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more (else a usage error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--scripted", action="store_true", help="use a FakePostHog anyway")
    parser.add_argument("--delay", type=_seconds, default=0.03, help="FakePostHog's token delay")
    args = parser.parse_args(argv)
    scripted = args.scripted or not os.environ.get("POSTHOG_PERSONAL_API_KEY")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    async with posthog(scripted, args.delay) as (ph, fake):
        conversation = await chat_bot(ph, stdin_lines(), Terminal())
        if fake is not None:
            asked = [r.json()["conversation"] for r in fake.requests if r.method == "POST"]
            summary = f"{len(asked)} messages in {len(set(asked))} conversation(s)"
            print(f"FakePostHog: {summary}", file=sys.stderr)
    if conversation is not None:
        print(f"conversation: {conversation}", file=sys.stderr)
    return 0


async def run() -> int:
    """`main()`, with Ctrl-C (and SIGTERM) cancelling it so that its cleanup runs."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    # Installed explicitly: a process started with SIGINT ignored (a background job, a
    # service manager) would otherwise never see Ctrl-C at all.
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, task.cancel)
    try:
        return await main()
    except asyncio.CancelledError:  # the answer being generated was cancelled on the way out
        print("\nchat_bot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
