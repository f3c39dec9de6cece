"""examples/chat_bot.py: one conversation per user, answers relayed, failures polite."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import anyio
import pytest

import aposthog
from aposthog.testing import FakePostHog

from .conftest import EXAMPLES, run_example

pytestmark = pytest.mark.anyio


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_bot", EXAMPLES / "chat_bot.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chat_bot = _load()


class Chat:
    """A fake chat platform: the user's messages in, the bot's replies (as sent) out."""

    def __init__(self) -> None:
        self.pieces: list[list[str]] = [[]]  # per reply, the pieces as they were sent
        self.on_send: Callable[[], None] = lambda: None

    async def send(self, text: str, *, end: bool = False) -> None:
        self.pieces[-1].append(text)
        self.on_send()
        if end:
            self.pieces.append([])

    @property
    def replies(self) -> list[str]:
        return ["".join(pieces) for pieces in self.pieces[:-1]]


def _asked(fake: FakePostHog) -> list[str]:
    """The conversation id of every message PostHog was asked to answer."""
    return [
        r.json()["conversation"]
        for r in fake.requests
        if r.method == "POST" and r.path.endswith("/conversations/")
    ]


def test_the_script_answers_three_lines_in_one_conversation() -> None:
    stdin = "Top pages yesterday?\nAnd signups?\nAnd the day before?\n"
    result = run_example("chat_bot.py", "--delay", "0.001", input=stdin)
    assert 0 == result.returncode, result.stderr
    replies = [line for line in result.stdout.splitlines() if line.startswith("bot> ")]
    assert 3 == len(replies), result.stdout
    assert "bot> Yesterday your most viewed page was /pricing (1,204 views)." == replies[0]
    assert "bot> The day before, /docs led with 980 views." == replies[2]
    assert f"     {chat_bot.SORRY}" in result.stdout.splitlines()  # after the partial answer
    assert "FakePostHog: 3 messages in 1 conversation(s)" in result.stderr
    assert re.search(r"^conversation: [0-9a-f-]{36}$", result.stderr, re.MULTILINE)
    assert "Traceback" not in result.stderr


def test_the_script_exits_130_on_ctrl_c_mid_answer() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    env["PYTHONWARNINGS"] = "error"
    command = [sys.executable, str(EXAMPLES / "chat_bot.py"), "--delay", "0.2"]
    pipes: dict[str, Any] = {
        "stdin": subprocess.PIPE,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
    }
    with subprocess.Popen(command, text=True, env=env, **pipes) as process:
        watchdog = threading.Timer(30, process.kill)
        watchdog.start()
        try:
            assert process.stdin is not None
            assert process.stdout is not None
            process.stdin.write("A long one?\n")
            process.stdin.flush()
            assert "bot> " == process.stdout.read(5)  # the answer has started
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            watchdog.cancel()
    assert 130 == process.returncode, stderr
    assert "chat_bot: interrupted" in stderr
    assert "Traceback" not in stderr
    assert "conversation:" not in stderr  # it did not carry on to EOF
    assert "bot> " not in stdout  # nor start another reply


async def test_every_message_continues_the_first_conversation(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("First answer 👋, streamed.", chunk_size=2, delay=0.03)
    fake.script_answer("Half an answer that", fail="Oops! Something went wrong.", delay=0.001)
    # An insight generated again after its schema check failed: the answer still comes.
    fake.script_answer("Third answer.", generation_error=True)
    fake.script_answer("Fourth answer.")
    chat = Chat()

    async def messages() -> AsyncIterator[str]:
        for text in ("one?", "two?", "   ", "three?", "four?"):
            yield text

    conversation = await chat_bot.chat_bot(ph, messages(), chat.send)
    assert 4 == len(_asked(fake))  # the blank message was not sent
    assert [conversation] * 4 == _asked(fake)
    assert fake.requests[0].json()["conversation"] == conversation
    assert 1 == len(fake.conversations)
    # Relayed as it streamed (in batches: what arrived while `send` ran comes joined).
    assert len(chat.pieces[0]) > 5
    assert "First answer 👋, streamed." == chat.replies[0]
    assert chat.replies[1].startswith("Half")
    assert chat.replies[1].endswith(f"\n{chat_bot.SORRY}")
    assert "Third answer." == chat.replies[2]  # after a generation_error, no failure
    assert "Fourth answer." == chat.replies[3]
    assert 4 == len(chat.replies)


@pytest.mark.parametrize(("said", "action"), [("Yes.", "approve"), ("no", "reject")])
async def test_an_approval_posthog_asks_for_is_decided_by_the_users_reply(
    fake: FakePostHog, ph: aposthog.Client, said: str, action: str
) -> None:
    """A run that needs the user's approval ends at the tool call (the conversation idle,
    a card pending). The bot relayed the question and then took the user's "yes" for a
    new message, which PostHog answers by auto-rejecting the card: nobody could ever
    approve. Now it says what PostHog asks, and a yes or a no resumes the run with that
    decision; anything else is a new question, as before."""
    fake.script_answer(
        "Shall I create the flag?",
        approval="create_feature_flag",
        approval_preview="Create the flag new-onboarding",
    )
    fake.script_answer("Done.")
    fake.script_answer("Another answer.")
    chat = Chat()

    async def messages() -> AsyncIterator[str]:
        for text in ("Create a flag for the new onboarding", said, "And signups?"):
            yield text

    conversation = await chat_bot.chat_bot(ph, messages(), chat.send)
    assert [
        "Shall I create the flag?",
        "PostHog AI asks to run create_feature_flag: Create the flag new-onboarding. "
        "Reply yes to approve it, or no.",
        "Done.",
        "Another answer.",
    ] == chat.replies
    posts = [r.json() for r in fake.requests if r.method == "POST"]
    assert [p["content"] for p in posts] == [
        "Create a flag for the new onboarding",
        None,
        "And signups?",
    ]
    assert action == posts[1]["resume_payload"]["action"]
    assert conversation is not None
    cards = fake.conversations[conversation].pending_approvals
    assert [action + ("d" if action == "approve" else "ed")] == [
        card["decision_status"] for card in cards
    ]


async def test_refusals_become_polite_replies(fake: FakePostHog, ph: aposthog.Client) -> None:
    ph = ph.with_options(max_retries=0)  # a 429 reaches the bot at once
    chat = Chat()
    async with contextlib.AsyncExitStack() as stack:

        async def messages() -> AsyncIterator[str]:
            yield "Hello?"
            fake.ai_quota_exceeded = True
            yield "Quota?"
            fake.ai_quota_exceeded = False
            fake.throttle_next(1, wait=30, path="/conversations")
            yield "Throttled?"
            # The same user asks on another device: PostHog is busy with the conversation.
            fake.script_answer("Another device's long answer.", delay=0.2)
            busy = ph.conversations.create("Elsewhere", conversation=_asked(fake)[0])
            await stack.enter_async_context(busy)
            stack.push_async_callback(busy.cancel)
            yield "Still there?"

        await chat_bot.chat_bot(ph, messages(), chat.send)
    assert "This is the fake PostHog AI's answer." == chat.replies[0]
    assert "I've reached my usage limit for now — please try again later." == chat.replies[1]
    assert "please try again in 30 seconds." in chat.replies[2]
    assert "I'm still answering your previous message" in chat.replies[3]
    assert 4 == len(chat.replies)
    assert {200: 2, 402: 1, 429: 1, 409: 1, 204: 1} == fake.status_counts  # 204: the cancel
    assert 1 == len(set(_asked(fake)))


async def test_a_refused_message_never_cancels_the_other_devices_answer(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """Even when sending the apology fails, the 409's generation is not the bot's to stop."""
    chat = Chat()
    async with contextlib.AsyncExitStack() as stack:

        async def messages() -> AsyncIterator[str]:
            yield "Hello?"
            fake.script_answer("Another device's long answer.", delay=0.2)
            busy = ph.conversations.create("Elsewhere", conversation=_asked(fake)[0])
            await stack.enter_async_context(busy)
            yield "Still there?"

        async def send(text: str, *, end: bool = False) -> None:
            if "still answering" in text:
                raise ConnectionError("the chat platform is down")
            await chat.send(text, end=end)

        with pytest.raises(ConnectionError):
            await chat_bot.chat_bot(ph, messages(), send)
        assert "in_progress" == fake.conversations[_asked(fake)[0]].status
        assert [] == [r for r in fake.requests if r.method == "PATCH"]
    assert 1 == len(chat.replies)


@pytest.mark.parametrize("how", ["anyio cancel scope", "asyncio task.cancel()"])
async def test_a_cancelled_bot_cancels_the_generation_and_re_raises(
    fake: FakePostHog, ph: aposthog.Client, how: str
) -> None:
    fake.script_answer("A long answer that the platform will not wait for. " * 3, delay=0.05)
    chat = Chat()

    async def messages() -> AsyncIterator[str]:
        yield "A long analysis?"
        yield "Never asked."

    if how == "anyio cancel scope":  # level-triggered: an unshielded cleanup is cancelled too
        with anyio.CancelScope() as scope:
            chat.on_send = scope.cancel
            await chat_bot.chat_bot(ph, messages(), chat.send)
            pytest.fail("the bot's cancellation was swallowed")
    else:  # edge-triggered: a bot that swallowed it would go on to the next message
        sent = asyncio.Event()
        chat.on_send = sent.set
        task = asyncio.ensure_future(chat_bot.chat_bot(ph, messages(), chat.send))
        await sent.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    conversation = _asked(fake)[0]
    cancels = [r.path for r in fake.requests if r.method == "PATCH"]
    assert [f"/api/environments/1/conversations/{conversation}/cancel/"] == cancels
    await fake.wait_for_streams_closed()
    assert 1 == len(_asked(fake))
    assert [] == chat.replies  # no reply was finished
    assert "idle" == fake.conversations[conversation].status


async def test_a_too_long_message_gets_a_polite_reply_and_is_not_sent(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    chat = Chat()

    async def messages() -> AsyncIterator[str]:
        yield "x" * 40001

    assert await chat_bot.chat_bot(ph, messages(), chat.send) is None
    assert ["That message is too long for me — could you shorten it?"] == chat.replies
    assert [] == fake.requests


async def test_an_answer_that_fails_mid_stream_stops_its_own_generation(
    fake: FakePostHog,
) -> None:
    """
    A stream that fails after PostHog started the run (the connection dropped and the
    re-attach budget is spent) is no refusal: the run is the bot's, and it goes on
    generating on PostHog after the bot apologised. The user's next message then meets
    a 409 ("I'm still answering your previous message") for an answer nobody will see.
    `stream.cancel()` already sends nothing after a refusal, so cancelling is safe here.
    """
    fake.script_answer("An answer whose connection drops. " * 5, delay=0.05, drop_after=3)
    fake.script_answer("The next answer.")
    chat = Chat()

    async def messages() -> AsyncIterator[str]:
        yield "A long analysis?"
        yield "And now?"

    policy = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01, max_reattaches=0)
    async with fake.client(retry=policy) as ph:
        conversation = await chat_bot.chat_bot(ph, messages(), chat.send)
    assert conversation is not None
    assert chat_bot.SORRY in chat.replies[0]  # the first answer failed: a polite reply
    assert "still answering" not in chat.replies[1]
    assert "The next answer." == chat.replies[1]


# ------------------------------------------------------------------ QA: what users type


async def test_undecodable_input_never_hangs_the_terminal_bot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stray byte on stdin (a UTF-8 locale reads it strictly) must not freeze the bot."""
    typed = io.TextIOWrapper(io.BytesIO(b"hi\n\xff\xfe oops\nmore\n"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", typed)
    died: list[BaseException | None] = []  # the reader thread's exception, if it dies
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    lines: list[str] = []
    with anyio.move_on_after(0.5) as scope:
        async for line in chat_bot.stdin_lines():
            lines.append(line)  # noqa: PERF401 (the list must survive the cancel)
    assert not scope.cancelled_caught, f"stdin_lines() hung after {lines!r}: {died!r}"
    assert [] == died


async def test_a_short_message_that_cannot_be_sent_is_not_called_too_long(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    chat = Chat()

    async def messages() -> AsyncIterator[str]:
        yield "\udcff oops"  # `printf '\xff oops' | python examples/chat_bot.py` in C.UTF-8

    assert await chat_bot.chat_bot(ph, messages(), chat.send) is None
    assert [] == fake.requests
    assert 1 == len(chat.replies)
    assert "too long" not in chat.replies[0]


async def test_a_yes_retried_after_a_refused_decision_still_decides_the_approval(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """PostHog AI asks for approval; the user's "yes" is refused by a 429 (PostHog's AI
    throttle, nothing sent on): the bot says to try again in a moment, and the card is
    still pending on PostHog. The user tries again with "yes": the bot forgot the
    approval (`pending_approval()` of the refused stream is None), sends "yes" as a new
    message, and PostHog answers that by auto-rejecting the card. Nothing approves it."""
    ph = ph.with_options(max_retries=0)  # the 429 reaches the bot at once
    fake.script_answer("Shall I create the flag?", approval="create_feature_flag")
    fake.script_answer("Done.")
    chat = Chat()

    async def messages() -> AsyncIterator[str]:
        yield "Create a flag for the new onboarding"
        fake.throttle_next(1, wait=30, path="/conversations")
        yield "yes"
        yield "yes"  # as the bot asked: try again

    with anyio.fail_after(5):
        conversation = await chat_bot.chat_bot(ph, messages(), chat.send)
    assert conversation is not None
    posts = [r.json() for r in fake.requests if r.method == "POST"]
    assert [p["content"] for p in posts][-1] is None  # the retried yes is a decision
    assert ["approved"] == [
        c["decision_status"] for c in fake.conversations[conversation].pending_approvals
    ]


async def test_a_decisions_run_cut_midway_still_offers_the_card_it_reached(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """The user approves; the decision's run streams "Created. Shall I start the
    experiment?" and is cut (no re-attach allowed here: `IncompleteStreamError`, the bot
    apologises). PostHog's run went on and ended at the next tool call: a second card,
    pending. `on_offer` looks the conversation up, but only for the card decided already
    (`asked`): the second is never put to the user, whose "yes" (to the question they
    read) goes out as a new message, and PostHog auto-rejects the card."""
    policy = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01, max_reattaches=0)
    ph = ph.with_options(retry=policy)
    fake.script_answer("Shall I create the flag?", approval="create_feature_flag")
    fake.script_answer(
        "Created. Shall I start the experiment?", approval="create_experiment", drop_after=2
    )
    fake.script_answer("Started.")
    chat = Chat()

    async def messages() -> AsyncIterator[str]:
        yield "Create a flag for the new onboarding"
        yield "yes"
        # The run went on without a reader to the next tool call: its card waits.
        (shown,) = fake.conversations.values()
        assert "idle" == shown.status
        assert ["approved", "pending"] == [c["decision_status"] for c in shown.pending_approvals]
        yield "yes"

    with anyio.fail_after(5):
        conversation = await chat_bot.chat_bot(ph, messages(), chat.send)
    assert conversation is not None
    cards = fake.conversations[conversation].pending_approvals
    assert 2 == len(cards)
    assert "create_experiment" == cards[1]["tool_name"]
    assert any("create_experiment" in reply for reply in chat.replies)
    assert ["approved", "approved"] == [card["decision_status"] for card in cards]
