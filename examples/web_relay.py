"""
An aiohttp.web app that relays PostHog AI's answers to browsers as its own
server-sent-event stream, with one `aposthog.Client` shared by every request.

    python examples/web_relay.py [--port N]       # against an embedded FakePostHog
    POSTHOG_PERSONAL_API_KEY=… POSTHOG_PROJECT_ID=… python examples/web_relay.py

It serves on 127.0.0.1 and prints its URL; open it in a browser (the chat page is
web_relay.html, beside this file), or:

    curl -N 'http://127.0.0.1:8080/ask?q=Top+pages+yesterday%3F'

`GET /ask?q=…[&conversation=…]` answers `text/event-stream`:

    event: delta     data: {"text": "…"}            the answer's new text, as it arrives
    event: wait      data: {"reason": "rate_limit", "seconds": 12.0, "attempt": 2}
                     the client waits before trying again ("rate_limit" or "retry")
    event: approval  data: {"proposal": "…", "tool": "…", "preview": "…", "conversation": "…"}
                     the answer ended asking the user to approve a tool call (before `done`)
    event: done      data: {"conversation": "…"}    pass it back as `conversation=` to continue
    event: error     data: {"message": "…", "conversation": "…"}   a polite apology
                     (with "refused": true when PostHog refused the request before any
                     answer: a decision refused so may be made again)

`GET /ask?conversation=…&proposal=…&decision=approve|reject` sends the user's decision
instead of a question, and relays the rest of the run the same way. (A new question
instead makes PostHog reject what it asked.)

A browser that goes away mid-answer cancels the generation on PostHog (PATCH
…/cancel/): the server runs with `handler_cancellation=True`, so aiohttp cancels the
handler the moment the connection drops, and the cancel is sent in a shielded cleanup.
(The page closes its EventSource on `pagehide` and `offline`: a page kept in the
back/forward cache would otherwise keep the connection, and the generation, going.)
While the client waits for a rate limit or before a retry, `Client.with_options(on_wait=)`
tells the relay, and the browser hears how long (a `wait` event); a wait longer than the
client's `RetryPolicy.max_retry_after` (60 s) is not waited: the browser is told at once
when to try again. Shutting down cancels every answer still being relayed, and tells its
browser so.
With no POSTHOG_* variables (or with `--scripted`) it embeds a FakePostHog whose
answers stream slowly enough to watch (`--delay` seconds between tokens). Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import pathlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping

import anyio
from aiohttp import web
from anyio.streams.memory import MemoryObjectSendStream

import aposthog
from aposthog.testing import FakePostHog

logger = logging.getLogger("web_relay")

CLIENT = web.AppKey("client", aposthog.Client)
"""The one client, created at startup and closed at cleanup."""
RELAYS = web.AppKey("relays", set[aposthog.ConversationStream])
"""The streams being relayed now (what is left open, for tests and for shutdown)."""
CANCEL_TIMEOUT = 10.0
"""How long the shielded cleanup may spend telling PostHog to stop generating."""
KEEPALIVE = 15.0
"""Seconds between SSE comments to the browser: while PostHog AI works without a word (a
long tool run, a wait for a rate limit), a proxy or load balancer before this server
would cut a connection idle for its timeout (often 60 s). Browsers ignore comments."""
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-like proxies not to buffer the stream
}
PAGE = pathlib.Path(__file__).with_name("web_relay.html")
"""The chat page, a static file beside this one."""
DECISIONS = frozenset({"approve", "reject"})
"""What `/ask?decision=` takes: PostHog's `resume_payload` actions."""
FAILED = "Sorry, PostHog AI couldn't answer that just now — please try again."
STOPPING = "Sorry, this server is restarting — please ask again in a moment."

ClientFactory = Callable[[], aposthog.Client]


def sse(event: str, data: Mapping[str, object]) -> bytes:
    """One server-sent event (JSON data is a single line, so one `data:` field)."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def in_words(seconds: float) -> str:
    """`in 45 seconds`, `in 3 minutes`, `in about 2 hours`: when to try again."""
    if seconds <= 1:
        return "in a second"
    if seconds < 90:
        return f"in {math.ceil(seconds)} seconds"
    if seconds < 90 * 60:
        return f"in {math.ceil(seconds / 60)} minutes"
    if seconds < 2 * 3600:
        return "in about an hour"
    return f"in about {round(seconds / 3600)} hours"


def polite(error: aposthog.PostHogError) -> str:
    """What to tell the user when PostHog refused or failed (details go to the log)."""
    if isinstance(error, aposthog.RateLimitError):  # longer than the client would wait
        if error.retry_after is None:
            return "PostHog AI is busy right now — please try again in a moment."
        when = in_words(error.retry_after)
        if error.retry_after < 5 * 60:
            return f"PostHog AI is busy right now — please try again {when}."
        return f"You have reached PostHog AI's usage limit for now — please try again {when}."
    if isinstance(error, aposthog.QuotaLimitError):
        return "PostHog AI has reached its usage limit for now — please try again later."
    if isinstance(error, aposthog.ConflictError):
        return "PostHog AI is still answering in this conversation — please wait a moment."
    return FAILED


async def ask(request: web.Request) -> web.StreamResponse:
    """`GET /ask?q=…[&conversation=…]`: relay one answer as server-sent events."""
    # Every event for the browser goes through one channel, in order, written by this
    # task alone. Unbounded: an answer is a few kilobytes.
    events, outbox = anyio.create_memory_object_stream[bytes](math.inf)

    def waiting(wait: aposthog.Wait) -> None:
        # The client calls this (synchronously) before it sleeps: for a rate limit or
        # before a retry, when opening the stream or re-attaching to it.
        logger.info("waiting %.1f s (%s, attempt %d)", wait.seconds, wait.reason, wait.attempt)
        notice = {"reason": wait.reason, "seconds": round(wait.seconds, 1), "attempt": wait.attempt}
        # Once the answer is over (a cancel being retried at shutdown), nobody is listening.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            events.send_nowait(sse("wait", notice))

    # A view of the shared client, for this request alone: same session, same limits.
    client = request.app[CLIENT].with_options(on_wait=waiting)
    with events, outbox:
        try:
            stream = start(client, request.query)
        except ValueError as err:  # a blank question, a conversation id that is not a UUID
            raise web.HTTPBadRequest(text=f"{err}\n") from None
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        # If the browser goes away, aiohttp cancels this handler (or a write fails): the
        # task group then cancels relay(), whose cleanup stops the generation on PostHog.
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay, request.app[RELAYS], stream, events)
            tg.start_soon(keep_alive, events)
            try:
                async for event in outbox:
                    await response.write(event)
            except ConnectionResetError:
                # The browser left between two writes (before aiohttp noticed): as when it
                # cancels the handler, relay()'s cleanup stops the generation. No error.
                tg.cancel_scope.cancel()
                return response
            tg.cancel_scope.cancel()  # the answer is over (relay closed `events`): the ticks too
    await response.write_eof()
    return response


def start(client: aposthog.Client, query: Mapping[str, str]) -> aposthog.ConversationStream:
    """
    The stream `/ask` relays: a question (`q`), or a decision on what PostHog AI asked
    (`decision` and `proposal`, in the `conversation`). `ValueError` for anything else.
    """
    conversation = query.get("conversation") or None
    if "decision" not in query and "proposal" not in query:
        return client.conversations.create(query.get("q", ""), conversation=conversation)
    decision = query.get("decision")
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(sorted(DECISIONS))}")
    proposal = query.get("proposal", "").strip()
    if not proposal or "q" in query or conversation is None:
        raise ValueError("a decision takes a proposal and a conversation, and no question")
    return client.conversations.create(
        None,
        conversation=conversation,
        resume_payload={"action": decision, "proposal_id": proposal},
    )


async def keep_alive(events: MemoryObjectSendStream[bytes]) -> None:
    """An SSE comment to the browser every `KEEPALIVE` seconds, until cancelled."""
    while True:
        await anyio.sleep(KEEPALIVE)
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            events.send_nowait(b": keepalive\n\n")


async def relay(
    relays: set[aposthog.ConversationStream],
    stream: aposthog.ConversationStream,
    events: MemoryObjectSendStream[bytes],
) -> None:
    """Send the answer's text to `events` as it arrives, then one `done` or `error`."""
    relays.add(stream)
    opened = False
    with events:
        try:
            async with stream, contextlib.aclosing(stream.text_deltas()) as deltas:
                opened = True
                async for text in deltas:
                    events.send_nowait(sse("delta", {"text": text}))
        except aposthog.PostHogError as err:
            # Refused before the stream (429, 402, 409…) or failed mid-stream. A run that
            # failed mid-stream is ours and goes on without a reader (the browser's next
            # message would get a 409): stopped. `cancel()` sends nothing for a refused
            # request, so after a 409 the generation running (another request's) is spared.
            logger.warning("conversation %s: %s", stream.conversation_id, err)
            await stop_generation(stream)
            apology: dict[str, object] = {
                "message": polite(err),
                "conversation": stream.conversation_id,
            }
            if not opened:
                # Nothing reached PostHog's run: a decision refused may be made again.
                apology["refused"] = True
            end = sse("error", apology)
        except BaseException:
            # The browser went away. Stop the generation on PostHog too; the exception is
            # re-raised, never swallowed.
            await stop_generation(stream)
            raise
        else:
            result = stream.result()
            if result.cancelled:  # by stop_relays(): the server is shutting down
                end = sse("error", {"message": STOPPING, "conversation": stream.conversation_id})
            elif result.failed:  # an in-band ai/failure: not raised
                logger.warning("conversation %s: PostHog AI failed", stream.conversation_id)
                end = sse("error", {"message": FAILED, "conversation": stream.conversation_id})
            else:
                await ask_approval(stream, events)
                end = sse("done", {"conversation": stream.conversation_id})
        finally:
            relays.discard(stream)
        events.send_nowait(end)


async def ask_approval(
    stream: aposthog.ConversationStream, events: MemoryObjectSendStream[bytes]
) -> None:
    """An `approval` event if the answer ended waiting for the user to approve a tool call."""
    try:
        approval = await stream.pending_approval()
    except aposthog.PostHogError as err:  # the card could not be read: an answer as it is
        logger.warning("conversation %s: %s", stream.conversation_id, err)
        return
    if approval is not None:
        card = {
            "proposal": approval.proposal_id,
            "tool": approval.tool_name,
            "preview": approval.preview_text,
            "conversation": stream.conversation_id,
        }
        events.send_nowait(sse("approval", card))


async def stop_generation(stream: aposthog.ConversationStream) -> None:
    """
    Stop the stream's run on PostHog: shielded, so it runs even though the task is being
    cancelled, and bounded, so shutdown never hangs on it.
    """
    with anyio.move_on_after(CANCEL_TIMEOUT, shield=True):
        try:
            await stream.cancel()
        except aposthog.PostHogError as err:
            logger.warning("could not cancel %s: %s", stream.conversation_id, err)


async def stop_relays(app: web.Application) -> None:
    """
    At shutdown, before aiohttp waits for handlers: stop every answer being relayed, on
    PostHog too. Each handler then ends its browser's stream with an apology, promptly.
    """

    async def stop(stream: aposthog.ConversationStream) -> None:
        try:
            await stream.cancel()
        except aposthog.PostHogError as err:
            logger.warning("could not cancel %s: %s", stream.conversation_id, err)

    relays = app[RELAYS]
    with anyio.move_on_after(CANCEL_TIMEOUT):
        async with anyio.create_task_group() as tg:
            for stream in list(relays):  # a copy: handlers remove theirs as they end
                tg.start_soon(stop, stream)


async def index(request: web.Request) -> web.FileResponse:
    """The chat page: it asks, and shows the answer as it streams (EventSource)."""
    return web.FileResponse(PAGE)


def make_app(client_factory: ClientFactory = aposthog.Client) -> web.Application:
    """
    The app. `client_factory()` makes the one client at startup (the default reads
    POSTHOG_PERSONAL_API_KEY, POSTHOG_HOST and POSTHOG_PROJECT_ID); it is closed at cleanup.
    """

    async def one_client(app: web.Application) -> AsyncIterator[None]:
        async with client_factory() as ph:
            app[CLIENT] = ph
            yield

    app = web.Application()
    app[RELAYS] = set()
    app.cleanup_ctx.append(one_client)
    app.on_shutdown.append(stop_relays)
    app.router.add_get("/", index)
    app.router.add_get("/ask", ask)
    return app


class CannotServe(Exception):
    """The relay could not listen where it was asked to."""


@contextlib.asynccontextmanager
async def serve(app: web.Application, port: int = 0) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 (port 0: any free port); yields its URL."""
    # handler_cancellation: a dropped connection cancels its handler at once (aiohttp
    # 3.7+ leaves it off by default and would only notice on the next write).
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        except OSError as err:  # the port is taken, or not ours to bind
            raise CannotServe(f"cannot serve on 127.0.0.1:{port}: {err.strerror or err}") from None
        host, bound = runner.addresses[0][:2]
        yield f"http://{host}:{bound}/"
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


@contextlib.asynccontextmanager
async def posthog(scripted: bool, delay: float) -> AsyncIterator[tuple[ClientFactory, str]]:
    """The real PostHog of the environment, or an embedded FakePostHog with slow answers."""
    if not scripted:
        yield aposthog.Client, "PostHog (from POSTHOG_* variables)"
        return
    async with FakePostHog() as fake:
        fake.ai_burst_limit = None  # a human clicking around is no abuse
        answers = itertools.cycle(DEMO_ANSWERS)
        for _ in range(100):
            fake.script_answer(next(answers), delay=delay, token_size=3)
        yield fake.client, f"an embedded FakePostHog at {fake.url}"


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more (else a usage error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (else a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {value}")
    return value


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--port", type=_port, default=8080, help="0 picks a free port")
    parser.add_argument("--scripted", action="store_true", help="use a FakePostHog anyway")
    parser.add_argument("--delay", type=_seconds, default=0.05, help="FakePostHog's token delay")
    args = parser.parse_args(argv)
    scripted = args.scripted or not os.environ.get("POSTHOG_PERSONAL_API_KEY")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        return await _serve_until_stopped(scripted, args.delay, args.port)
    except CannotServe as err:  # a one-line error, not a traceback
        print(f"web_relay: {err}", file=sys.stderr)
        return 1


async def _serve_until_stopped(scripted: bool, delay: float, port: int) -> int:
    async with (
        posthog(scripted, delay) as (factory, where),
        serve(make_app(factory), port) as url,
    ):
        banner = f"web_relay: serving {url} against {where}; Ctrl-C stops"
        try:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                print(banner, flush=True)  # once Ctrl-C is handled: it always stops cleanly
                async for _ in signals:
                    break
        except NotImplementedError:  # no signal handlers (Windows): Ctrl-C interrupts
            print(banner, flush=True)
            await anyio.sleep_forever()
    print("web_relay: stopped", flush=True)
    return 0


DEMO_ANSWERS = (
    "Yesterday your most viewed page was /pricing (1,204 views), then /docs (980) "
    "and the home page (871). Pricing views are up 12% on last week.",
    "Signups came mostly from organic search (41%), then direct visits (27%) and "
    "the newsletter (15%).",
)

if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(0)
