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


async def test_chat_prints_the_answers_lines_and_escapes_its_control_characters(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """
    The answer's lines and tabs are printed as they are; an escape sequence in it (or in
    a failure's text) is shown escaped, so it cannot clear or retitle the user's terminal.
    """
    fake.script_answer("line one\n\tline two \x1b[2J")
    result = await run_cli("chat", "Hello")
    assert (0, "line one\n\tline two \\x1b[2J\n") == (result.returncode, result.stdout)
    fake.script_answer("", fail="gone \x1b]0;pwned\x07")
    failed = await run_cli("chat", "Again")
    assert "aposthog: PostHog AI could not answer: gone \\x1b]0;pwned\\x07" in failed.stderr
    assert "\x1b" not in result.stderr + failed.stdout + failed.stderr


async def _interrupted_chat(
    fake: FakePostHog, key: str, stop: signal.Signals = signal.SIGINT
) -> tuple[bytes, int, bytes]:
    """`aposthog chat` with `key`, sent `stop` once the answer has started: its first
    output, exit code and stderr."""
    fake.script_answer("word " * 400, delay=0.02)
    env = {
        **os.environ,
        "POSTHOG_HOST": fake.url,
        "POSTHOG_PERSONAL_API_KEY": key,
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
            process.send_signal(stop)
            code = await process.wait()
            stderr = b""
            async for chunk in process.stderr:
                stderr += chunk
    return first, code, stderr


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_an_interrupt_cancels_the_generation_on_the_server(
    fake: FakePostHog, stop: signal.Signals, status: int
) -> None:
    """
    SIGINT mid-answer (Ctrl-C): PATCH …/cancel/ reaches PostHog, the stream closes, exit
    130. SIGTERM (a container or service manager stopping `chat`) cleans up the same way
    and exits 143, as a shell reports it (128 + 15): it exited 130, Ctrl-C's status.
    """
    first, code, stderr = await _interrupted_chat(fake, fake.api_key, stop)
    assert first.startswith(b"word")
    assert status == code
    cancels = [r for r in fake.requests if r.method == "PATCH" and r.path.endswith("/cancel/")]
    assert 1 == len(cancels)
    (conversation,) = fake.conversations.values()
    assert "idle" == conversation.status
    await fake.wait_for_streams_closed()
    assert b"aposthog: cancelled conversation" in stderr


async def test_ctrl_c_with_a_key_posthog_refuses_the_cancel_says_so(fake: FakePostHog) -> None:
    """
    PostHog refuses the cancel to every scoped key (a 403): the answer goes on there.
    `chat` said "cancelled conversation" all the same; it says the cancel failed now.
    """
    key = fake.add_key(scopes=["conversation:write"])
    first, code, stderr = await _interrupted_chat(fake, key)
    assert first.startswith(b"word")
    assert 130 == code
    assert 403 in fake.status_counts
    (conversation,) = fake.conversations.values()
    assert "in_progress" == conversation.status  # still answering
    assert b"cancelled conversation" not in stderr
    assert b"PostHog AI may still be answering: the cancel failed: 403" in stderr


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


async def test_chat_sends_the_agent_mode(fake: FakePostHog, run_cli: RunCli) -> None:
    """--agent-mode reaches PostHog with the message; a mode the CLI does not know is sent
    as given (PostHog adds modes), and PostHog's refusal is an API error (exit 1)."""
    fake.script_answer("SELECT 1")
    known = await run_cli("chat", "Write SQL", "--agent-mode", "SQL")
    assert 0 == known.returncode, known.stderr
    assert "sql" == fake.requests[-1].json()["agent_mode"]
    newer = await run_cli("chat", "Hi", "--agent-mode", "future_mode")
    assert 1 == newer.returncode, newer.stderr
    assert "future_mode" == fake.requests[-1].json()["agent_mode"]
    assert newer.stderr.startswith("aposthog: error: 400 Bad Request")


def test_a_question_may_be_as_long_as_posthog_takes() -> None:
    """MAX_CONTENT_LENGTH characters are accepted, one more is refused."""
    from aposthog._cli import build_parser
    from aposthog.resources.conversations import MAX_CONTENT_LENGTH

    longest = "x" * MAX_CONTENT_LENGTH
    assert longest == build_parser().parse_args(["chat", longest]).question
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["chat", longest + "x"])
    assert 2 == refused.value.code


async def test_chat_json_leaves_stderr_empty(fake: FakePostHog, run_cli: RunCli) -> None:
    """With --json the conversation id is in the events; nothing is added on stderr."""
    fake.script_answer("Hi there")
    result = await run_cli("chat", "Hello", "--json")
    assert (0, "") == (result.returncode, result.stderr)


async def test_conversations_get_shows_each_message_on_one_line(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """A message's text is folded onto its line; --json prints the conversation as one object."""
    seeded = fake.seed_conversation(
        messages=[
            {"type": "human", "content": "Top pages\nlast   week?"},
            {"type": "ai", "content": "/pricing,\n\n/docs"},
        ]
    )
    shown = await run_cli("conversations", "get", seeded.id)
    assert 0 == shown.returncode, shown.stderr
    lines = shown.stdout.splitlines()
    assert ["  [human] Top pages last week?", "  [ai] /pricing, /docs"] == lines[-2:]
    as_json = await run_cli("conversations", "get", seeded.id, "--json")
    (line,) = as_json.stdout.splitlines()
    conversation = json.loads(line)
    assert seeded.id == conversation["id"]
    assert ["human", "ai"] == [m["type"] for m in conversation["messages"]]


async def test_conversations_list_limit(fake: FakePostHog, run_cli: RunCli) -> None:
    """--limit N prints N conversations at most."""
    for _ in range(3):
        fake.seed_conversation()
    listed = await run_cli("conversations", "list", "--limit", "2", "--json")
    assert 0 == listed.returncode, listed.stderr
    assert 2 == len(listed.stdout.splitlines())


@pytest.mark.parametrize(("action", "status"), [("approve", "approved"), ("reject", "rejected")])
async def test_chat_shows_what_posthog_ai_asks_approval_for_and_a_command_decides_it(
    fake: FakePostHog, run_cli: RunCli, action: str, status: str
) -> None:
    """A run that needs the user's approval ends at the tool call, and PostHog streams
    nothing about it: `chat` printed the question's text and exited as if answered, and no
    command could decide it. Now it says what PostHog AI asks and how to decide; `get`
    lists the card, and `conversations approve|reject` sends the decision and streams the
    rest of the run."""
    fake.script_answer(
        "Shall I create the flag?",
        approval="create_feature_flag",
        approval_preview="Create the flag new-onboarding",
    )
    fake.script_answer("Done: the flag is live.")
    asked = await run_cli("chat", "Create a flag for the new onboarding")
    assert (0, "Shall I create the flag?\n") == (asked.returncode, asked.stdout), asked.stderr
    conversation = _conversation_of(asked.stderr)
    card = fake.conversations[conversation].pending_approvals[0]
    ids = f"{conversation} {card['proposal_id']}"
    assert (
        "PostHog AI asks to run create_feature_flag: Create the flag new-onboarding\n"
        f"  approve: aposthog conversations approve {ids}\n"
        f"  reject:  aposthog conversations reject {ids}\n"
    ) in asked.stderr

    shown = await run_cli("conversations", "get", conversation)
    assert (
        "  [approval pending] create_feature_flag: Create the flag new-onboarding"
        f" (proposal {card['proposal_id']})"
    ) in shown.stdout.splitlines()

    decided = await run_cli("conversations", action, conversation, card["proposal_id"])
    assert (0, "Done: the flag is live.\n") == (decided.returncode, decided.stdout), decided.stderr
    assert "asks to run" not in decided.stderr
    assert status == card["decision_status"]
    resumed = [r.json() for r in fake.requests if r.method == "POST"][-1]
    assert (None, {"action": action, "proposal_id": card["proposal_id"]}) == (
        resumed["content"],
        resumed["resume_payload"],
    )


async def test_conversations_get_shows_a_structured_preview_as_json_escaped(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """An approval card whose `preview` is a JSON object was listed with no preview at
    all: it is shown as its JSON now, whose escapes keep a control character off the
    terminal."""
    card = {
        "proposal_id": "p1",
        "decision_status": "pending",
        "tool_name": "create_feature_flag",
        "preview": {"key": "beta\x1b[2J", "rollout": 50},
        "payload": {"key": "beta"},
    }
    seeded = fake.seed_conversation(pending_approvals=[card])
    shown = await run_cli("conversations", "get", seeded.id)
    assert 0 == shown.returncode, shown.stderr
    assert (
        '  [approval pending] create_feature_flag: {"key": "beta\\u001b[2J", "rollout": 50}'
        " (proposal p1)"
    ) in shown.stdout.splitlines(), shown.stdout


async def test_a_decision_without_a_proposal_is_a_usage_error(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    conversation = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    for args in ((conversation,), (conversation, " "), ("not-a-uuid", "p1")):
        refused = await run_cli("conversations", "approve", *args)
        assert 2 == refused.returncode, args
    assert [] == fake.requests


async def test_a_decision_posthog_refuses_is_an_error_exit(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """An idle conversation with no such card: PostHog's resumed run fails at once (exit
    1, one line), and a conversation that does not exist is PostHog's 404 (exit 1)."""
    seeded = fake.seed_conversation()
    failed = await run_cli("conversations", "reject", seeded.id, "no-such-proposal")
    assert 1 == failed.returncode
    assert "aposthog: PostHog AI could not answer: " in failed.stderr
    missing = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    refused = await run_cli("conversations", "approve", missing, "p1")
    assert 1 == refused.returncode
    assert refused.stderr.startswith("aposthog: error:"), refused.stderr
    assert "Traceback" not in failed.stderr + refused.stderr


async def test_chat_prints_a_hostile_proposal_id_escaped(
    fake: FakePostHog, run_cli: RunCli
) -> None:
    """Every text of the server's the command line prints goes through `cell()`
    (`conversations get` shows this very proposal escaped), but `chat`'s "approve:" and
    "reject:" lines put `approval.proposal_id` on stderr as it came: a server's (or a
    proxy's) ESC sequences retitle or clear the user's terminal."""
    from aiohttp import web

    from ..web_server import serve

    conversation = "6f1d0c4e-0a55-4c53-8d1e-0d7e2f9d3b11"
    proposal = "p1\x1b]0;pwned\x07\x1b[2J"
    call = {"id": "call_1", "name": "create_feature_flag", "args": {}, "type": "tool_call"}
    human = {"type": "human", "content": "q", "id": "h1"}
    asked = {"type": "ai", "content": "Shall I?", "id": "a1", "tool_calls": [call]}

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            card = {
                "proposal_id": proposal,
                "decision_status": "pending",
                "tool_name": "create_feature_flag",
                "original_tool_call_id": "call_1",
            }
            return web.json_response(
                {
                    "id": conversation,
                    "status": "idle",
                    "messages": [human, asked],
                    "pending_approvals": [card],
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for message in (human, asked):
            await response.write(f"event: message\ndata: {json.dumps(message)}\n\n".encode())
        return response

    async with serve(handler) as url:
        asked_run = await run_cli(
            "chat", "q", "--conversation", conversation, env={"POSTHOG_HOST": url}
        )
    assert 0 == asked_run.returncode, asked_run.stderr
    assert "PostHog AI asks to run create_feature_flag" in asked_run.stderr
    assert "\x1b" not in asked_run.stderr
