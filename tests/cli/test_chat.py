"""`aposthog chat` and `aposthog conversations …`, as subprocesses against FakePostHog."""

from __future__ import annotations

import json
import os
import signal
import sys

import anyio
import pytest

from aposthog.testing import FakePostHog

from .conftest import RunCli

pytestmark = pytest.mark.anyio

ANSWER = "Your busiest page was /pricing — 1,204 views. 🚀"


def _conversation_of(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if line.startswith("conversation: ")]
    return line.removeprefix("conversation: ")


async def test_chat_streams_the_answer(fake: FakePostHog, run_cli: RunCli) -> None:
    """The answer is printed whole, and the conversation id is given for follow-ups."""
    fake.script_answer(ANSWER, chunk_size=3)
    result = await run_cli("chat", "Which page was busiest?")
    assert 0 == result.returncode, result.stderr
    assert ANSWER + "\n" == result.stdout
    conversation = _conversation_of(result.stderr)
    assert conversation in fake.conversations


async def test_chat_continues_a_conversation(fake: FakePostHog, run_cli: RunCli) -> None:
    """--conversation sends the follow-up into the same conversation."""
    fake.script_answer("First.")
    first = await run_cli("chat", "One?")
    conversation = _conversation_of(first.stderr)
    fake.script_answer("Second.")
    second = await run_cli("chat", "Two?", "--conversation", conversation)
    assert ("Second.\n", conversation) == (second.stdout, _conversation_of(second.stderr))
    posts = [r.json() for r in fake.requests if r.method == "POST"]
    assert [conversation, conversation] == [body["conversation"] for body in posts]


async def test_chat_json_prints_events(fake: FakePostHog, run_cli: RunCli) -> None:
    """--json prints one JSON object per event."""
    fake.script_answer("Hi there")
    result = await run_cli("chat", "Hello", "--json")
    assert 0 == result.returncode, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events
    assert "Hi there" in [e.get("message", {}).get("content") for e in events]


async def test_chat_reports_an_in_band_failure(fake: FakePostHog, run_cli: RunCli) -> None:
    """An ai/failure inside the 200 stream is one line on stderr and exit 1."""
    fake.script_answer("partial", fail="Oops! Something went wrong. Please try again.")
    result = await run_cli("chat", "Break")
    assert 1 == result.returncode
    assert (
        "aposthog: PostHog AI could not answer: Oops! Something went wrong. Please try again."
        in result.stderr
    )


async def test_ctrl_c_cancels_the_generation_on_the_server(fake: FakePostHog) -> None:
    """SIGINT mid-answer: PATCH …/cancel/ reaches PostHog, the stream closes, exit 130."""
    fake.script_answer("word " * 400, delay=0.02)
    env = {
        **os.environ,
        "POSTHOG_HOST": fake.url,
        "POSTHOG_PERSONAL_API_KEY": fake.api_key,
        "POSTHOG_PROJECT_ID": fake.project_id,
        "PYTHONWARNINGS": "error",
    }
    async with await anyio.open_process(
        [sys.executable, "-m", "aposthog", "chat", "Write a long essay"], env=env
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        with anyio.fail_after(20):
            first = await process.stdout.receive()  # the answer has started
            process.send_signal(signal.SIGINT)
            code = await process.wait()
            stderr = b""
            async for chunk in process.stderr:
                stderr += chunk
    assert first.startswith(b"word")
    assert 130 == code
    cancels = [r for r in fake.requests if r.method == "PATCH" and r.path.endswith("/cancel/")]
    assert 1 == len(cancels)
    (conversation,) = fake.conversations.values()
    assert "idle" == conversation.status
    await fake.wait_for_streams_closed()
    assert b"aposthog: cancelled conversation" in stderr


async def test_conversations_commands(fake: FakePostHog, run_cli: RunCli) -> None:
    """list, get, cancel and delete."""
    fake.script_answer("An answer.", title="A titled chat")
    created = await run_cli("chat", "Question?")
    conversation = _conversation_of(created.stderr)

    listed = await run_cli("conversations", "list", "--json")
    assert [conversation] == [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    table = await run_cli("conversations", "list")
    assert "A titled chat" in table.stdout

    shown = await run_cli("conversations", "get", conversation)
    assert "title    A titled chat" in shown.stdout.splitlines()
    assert "  [ai] An answer." in shown.stdout.splitlines()

    cancelled = await run_cli("conversations", "cancel", conversation)
    assert (0, f"cancelled: {conversation}\n") == (cancelled.returncode, cancelled.stdout)

    deleted = await run_cli("conversations", "delete", conversation)
    assert 0 == deleted.returncode
    gone = await run_cli("conversations", "get", conversation)
    assert 1 == gone.returncode
    assert "404 Not Found" in gone.stderr


async def test_conversations_queue_command(fake: FakePostHog, run_cli: RunCli) -> None:
    """Show the queue, add a message to it (with a mode), clear it."""
    seeded = fake.seed_conversation()
    empty = await run_cli("conversations", "queue", seeded.id, "--json")
    assert (0, "") == (empty.returncode, empty.stdout)

    added = await run_cli(
        "conversations", "queue", seeded.id, "--add", "And last month?", "--agent-mode", "sql",
        "--json",
    )  # fmt: skip
    assert 0 == added.returncode, added.stderr
    (line,) = added.stdout.splitlines()
    queued = json.loads(line)
    assert (queued["content"], queued["agent_mode"]) == ("And last month?", "sql")
    assert [m["id"] for m in fake.conversations[seeded.id].queue] == [queued["id"]]

    table = await run_cli("conversations", "queue", seeded.id)
    assert queued["id"] in table.stdout
    assert "And last month?" in table.stdout

    cleared = await run_cli("conversations", "queue", seeded.id, "--clear", "--json")
    assert (0, "") == (cleared.returncode, cleared.stdout)
    assert [] == fake.conversations[seeded.id].queue

    sent = len(fake.requests)
    for misuse, message in (
        (("--agent-mode", "sql"), "--agent-mode goes with --add"),
        (("--add", "x", "--clear"), "not allowed with argument"),
        (("--add", "   "), "argument --add: the message must not be empty"),
    ):
        refused = await run_cli("conversations", "queue", seeded.id, *misuse)
        assert 2 == refused.returncode, misuse
        assert message in refused.stderr, refused.stderr
    assert sent == len(fake.requests)  # refused before sending
