"""examples/web_relay.py: one shared client, answers relayed as SSE, disconnects cancel."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator
from types import ModuleType
from typing import Any
from unittest import mock

import aiohttp
import anyio
import anyio.to_thread
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import aposthog
from aposthog.sse import ServerSentEvent, SSEDecoder
from aposthog.testing import FakePostHog

from .conftest import EXAMPLES, run_example

pytestmark = pytest.mark.anyio


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("web_relay", EXAMPLES / "web_relay.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


web_relay = _load()


@contextlib.asynccontextmanager
async def relay(fake: FakePostHog) -> AsyncIterator[tuple[str, web.Application, list[Any]]]:
    """The example app served on 127.0.0.1, against `fake`; also the clients it made."""
    made: list[aposthog.Client] = []

    def factory() -> aposthog.Client:
        client: aposthog.Client = fake.client()
        made.append(client)
        return client

    app = web_relay.make_app(factory)
    async with web_relay.serve(app) as url:
        yield url, app, made
    assert all(client.closed for client in made)  # closed at the app's cleanup


async def events(response: aiohttp.ClientResponse) -> AsyncGenerator[ServerSentEvent, None]:
    decoder = SSEDecoder()
    async for chunk in response.content.iter_any():
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event


async def ask(url: str, question: str | None, **params: str) -> list[tuple[str, Any]]:
    """One browser: the relayed events as (name, data) pairs (no `q` for None)."""
    query = params if question is None else {"q": question, **params}
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(url + "ask", params=query) as response,
    ):
        assert 200 == response.status
        assert "text/event-stream" == response.content_type
        return [(e.event, json.loads(e.data)) async for e in events(response)]


def _text(relayed: list[tuple[str, Any]]) -> str:
    return "".join(data["text"] for name, data in relayed if name == "delta")


def _cancels(fake: FakePostHog) -> list[str]:
    return [r.path for r in fake.requests if r.method == "PATCH" and r.path.endswith("/cancel/")]


async def test_relays_the_whole_answer_then_done_with_the_conversation_id(
    fake: FakePostHog,
) -> None:
    answer = "Your top page was /pricing — 1,204 views 👋"
    fake.script_answer(answer, delay=0.001, chunk_size=3)
    fake.script_answer("And the day before: /docs.")
    async with relay(fake) as (url, _, made):
        relayed = await ask(url, "Top page yesterday?")
        assert len([name for name, _ in relayed if name == "delta"]) > 5  # streamed, in pieces
        assert answer == _text(relayed)
        assert ("done", {"conversation": fake.requests[0].json()["conversation"]}) == relayed[-1]
        again = await ask(url, "And before?", conversation=relayed[-1][1]["conversation"])
        assert "And the day before: /docs." == _text(again)
        assert relayed[-1] == again[-1]  # the same conversation, continued
        asked = [r.json()["conversation"] for r in fake.requests if r.method == "POST"]
        assert [relayed[-1][1]["conversation"]] * 2 == asked
        assert 1 == len(made)
    assert [] == _cancels(fake)
    assert 2 == fake.ai_streams.completed


async def test_a_quiet_answer_keeps_the_browsers_connection_alive(
    fake: FakePostHog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While PostHog AI works without a word (a long tool run, a wait for a rate limit),
    nothing went to the browser: a proxy before the relay (often 60 s) cut the idle
    connection mid-answer. The relay writes an SSE comment every `KEEPALIVE` seconds,
    which browsers ignore: the answer and its `done` arrive as before."""
    monkeypatch.setattr(web_relay, "KEEPALIVE", 0.05)
    answer = "Signups rose 12% after the pricing change."
    fake.script_answer(answer, delay=0.12, token_size=20)  # quiet gaps past KEEPALIVE
    async with (
        relay(fake) as (url, _, _),
        aiohttp.ClientSession() as browser,
        browser.get(url + "ask", params={"q": "Why?"}) as response,
    ):
        raw = await response.read()
    decoder = SSEDecoder()
    relayed = [(e.event, json.loads(e.data)) for e in [*decoder.feed(raw), *decoder.close()]]
    assert raw.count(b": keepalive\n\n") >= 2
    assert answer == _text(relayed)
    assert "done" == relayed[-1][0]


async def test_two_browsers_at_once_share_the_one_client(fake: FakePostHog) -> None:
    answers = {"The first answer, streamed slowly.", "The second answer, streamed slowly."}
    for answer in sorted(answers):
        fake.script_answer(answer, delay=0.03)
    async with relay(fake) as (url, app, made), aiohttp.ClientSession() as a:
        async with aiohttp.ClientSession() as b:
            one = await a.get(url + "ask", params={"q": "one?"})
            two = await b.get(url + "ask", params={"q": "two?"})
            relayed: list[list[tuple[str, Any]]] = [[], []]
            for n, response in enumerate((one, two)):  # both started, neither finished
                async with contextlib.aclosing(events(response)) as stream:
                    async for event in stream:
                        relayed[n].append((event.event, json.loads(event.data)))
                        break
            assert 2 == fake.ai_streams.open
            assert 2 == len(app[web_relay.RELAYS])
            for n, response in enumerate((one, two)):
                async with response:
                    relayed[n] += [(e.event, json.loads(e.data)) async for e in events(response)]
        assert [app[web_relay.CLIENT]] == made  # one client, made once, used by both
    assert answers == {_text(relayed[0]), _text(relayed[1])}
    assert "done" == relayed[0][-1][0] == relayed[1][-1][0]
    assert relayed[0][-1] != relayed[1][-1]  # two conversations
    assert 2 == fake.ai_streams.completed


async def test_a_browser_that_leaves_mid_answer_cancels_the_generation(fake: FakePostHog) -> None:
    delay = 0.3
    fake.script_answer("A long answer that nobody will read to the end. " * 3, delay=delay)
    async with relay(fake) as (url, app, _), aiohttp.ClientSession() as browser:
        response = await browser.get(url + "ask", params={"q": "A long analysis?"})
        async with contextlib.aclosing(events(response)) as stream:
            first = await anext(stream)
        assert "delta" == first.event
        response.close()  # the browser tab is closed
        conversation = fake.requests[0].json()["conversation"]
        with anyio.fail_after(2):
            while not _cancels(fake) or app[web_relay.RELAYS]:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        await fake.wait_for_streams_closed()
        assert [f"/api/environments/1/conversations/{conversation}/cancel/"] == _cancels(fake)
        run = fake.conversations[conversation].run
        assert run is not None
        assert run.cancelled_at is not None
        # Cancelled at once (handler_cancellation), not at the next delta's write.
        assert run.cancelled_at - run.start < 2 * delay
        assert "idle" == fake.conversations[conversation].status
        assert 0 == fake.ai_streams.completed
        assert 1 == fake.ai_streams.opened
        assert [] == [r for r in fake.requests if r.method == "POST"][1:]  # never re-attached


@pytest.mark.parametrize("how", ["anyio cancel scope", "asyncio task.cancel()"])
async def test_a_cancelled_handler_cancels_posthog_shielded_and_re_raises(
    fake: FakePostHog, ph: aposthog.Client, how: str
) -> None:
    """The handler alone, cancelled while relaying: the cleanup's PATCH still goes out."""
    fake.script_answer("A long answer. " * 10, delay=0.05)
    app = web_relay.make_app(lambda: ph)
    app[web_relay.CLIENT] = ph
    first_delta = anyio.Event()
    scope = anyio.CancelScope()

    async def write(data: bytes) -> None:
        if data.startswith(b"event: delta"):
            first_delta.set()
            scope.cancel()  # no effect outside the scope

    writer = mock.Mock(write=write, write_headers=mock.AsyncMock(), write_eof=mock.AsyncMock())
    request = make_mocked_request("GET", "/ask?q=Long%3F", app=app, writer=writer)
    if how == "anyio cancel scope":  # level-triggered: an unshielded cleanup is cancelled too
        with scope:
            await web_relay.ask(request)
            pytest.fail("the handler's cancellation was swallowed")
    else:  # edge-triggered, what aiohttp's handler_cancellation does
        task = asyncio.ensure_future(web_relay.ask(request))
        await first_delta.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    conversation = fake.requests[0].json()["conversation"]
    assert [f"/api/environments/1/conversations/{conversation}/cancel/"] == _cancels(fake)
    await fake.wait_for_streams_closed()
    assert set() == app[web_relay.RELAYS]


async def test_a_second_browser_in_a_busy_conversation_is_refused_politely(
    fake: FakePostHog,
) -> None:
    fake.script_answer("The first browser's answer, which must not be cut.", delay=0.02)
    async with (
        relay(fake) as (url, _, _),
        aiohttp.ClientSession() as first,
        first.get(url + "ask", params={"q": "Long?"}) as response,
        contextlib.aclosing(events(response)) as stream,
    ):
        assert "delta" == (await anext(stream)).event
        conversation = fake.requests[0].json()["conversation"]
        refused = await ask(url, "Me too?", conversation=conversation)
        rest = [(e.event, json.loads(e.data)) async for e in stream]
    assert [("error", refused[0][1])] == refused
    assert "still answering" in refused[0][1]["message"]
    assert ("done", {"conversation": conversation}) == rest[-1]  # the first was not cancelled
    assert [] == _cancels(fake)
    assert 409 in fake.status_counts


async def test_shutting_down_stops_every_relay_politely_and_at_once(fake: FakePostHog) -> None:
    fake.script_answer("An answer the server will not finish. " * 5, delay=0.1)
    app = web_relay.make_app(fake.client)
    async with aiohttp.ClientSession() as browser, contextlib.AsyncExitStack() as stack:
        async with web_relay.serve(app) as url:
            response = await stack.enter_async_context(browser.get(url + "ask", params={"q": "?"}))
            stream = await stack.enter_async_context(contextlib.aclosing(events(response)))
            assert "delta" == (await anext(stream)).event
            stopping = anyio.current_time()
        seconds = anyio.current_time() - stopping  # serve() is over: the app shut down
        rest = [(e.event, json.loads(e.data)) async for e in stream]
    conversation = fake.requests[0].json()["conversation"]
    assert ("error", {"message": web_relay.STOPPING, "conversation": conversation}) == rest[-1]
    assert seconds < 1  # not aiohttp's graceful wait (2 s) for the handler to end by itself
    assert [f"/api/environments/1/conversations/{conversation}/cancel/"] == _cancels(fake)
    await fake.wait_for_streams_closed()
    assert set() == app[web_relay.RELAYS]


async def test_an_in_band_failure_becomes_a_polite_error_event(fake: FakePostHog) -> None:
    fake.script_answer("Let me look that up for", fail="Oops! Something went wrong.", delay=0.001)
    async with relay(fake) as (url, _, _):
        relayed = await ask(url, "Signups by source?")
    conversation = fake.requests[0].json()["conversation"]
    assert "Let me" in _text(relayed)  # what streamed before the failure
    assert ("error", {"message": web_relay.FAILED, "conversation": conversation}) == relayed[-1]
    assert "Sorry" in web_relay.FAILED
    assert "done" not in [name for name, _ in relayed]
    assert [] == _cancels(fake)  # a failure is not a disconnect


async def test_a_refusal_before_the_stream_becomes_a_polite_error_event(
    fake: FakePostHog,
) -> None:
    fake.ai_quota_exceeded = True
    async with relay(fake) as (url, _, _):
        relayed = await ask(url, "Anything?")
    assert [("error", relayed[0][1])] == relayed
    assert "usage limit" in relayed[0][1]["message"]
    assert relayed[0][1]["refused"]  # before any answer: a decision so refused stays open
    assert [402] == list(fake.status_counts)


async def test_a_blank_question_or_a_bad_conversation_id_is_a_400(fake: FakePostHog) -> None:
    async with relay(fake) as (url, _, _), aiohttp.ClientSession() as browser:
        for params in ({"q": "  "}, {"q": "Hi", "conversation": "not-a-uuid"}):
            async with browser.get(url + "ask", params=params) as response:
                assert 400 == response.status
        async with browser.get(url) as response:
            assert "text/html" == response.content_type
            assert "EventSource" in await response.text()
    assert [] == fake.requests


@pytest.mark.parametrize(("decision", "status"), [("approve", "approved"), ("reject", "rejected")])
async def test_an_approval_posthog_asks_for_goes_to_the_browser_and_its_decision_back(
    fake: FakePostHog, decision: str, status: str
) -> None:
    """A run that needs the user's approval ends at the tool call, and PostHog streams
    nothing about it: the relay sent the question's text and `done`, and the user's "yes"
    could only be a new question, which PostHog answers by rejecting the card. Now an
    `approval` event comes before `done`, and the decision goes back as one."""
    fake.script_answer(
        "Shall I create the flag?",
        approval="create_feature_flag",
        approval_preview="Create the flag new-onboarding",
    )
    fake.script_answer("Done: the flag is live.")
    async with relay(fake) as (url, _, _):
        relayed = await ask(url, "Create a flag for the new onboarding")
        assert "Shall I create the flag?" == _text(relayed)
        conversation = relayed[-1][1]["conversation"]
        card = fake.conversations[conversation].pending_approvals[0]
        assert [
            (
                "approval",
                {
                    "proposal": card["proposal_id"],
                    "tool": "create_feature_flag",
                    "preview": "Create the flag new-onboarding",
                    "conversation": conversation,
                },
            ),
            ("done", {"conversation": conversation}),
        ] == relayed[-2:]
        decided = await ask(
            url, None, conversation=conversation, proposal=card["proposal_id"], decision=decision
        )
        assert "Done: the flag is live." == _text(decided)
        assert ("done", {"conversation": conversation}) == decided[-1]
        assert "approval" not in [name for name, _ in decided]
    assert status == card["decision_status"]
    posts = [r.json() for r in fake.requests if r.method == "POST"]
    assert [None, {"action": decision, "proposal_id": card["proposal_id"]}] == [
        p.get("resume_payload") for p in posts
    ]
    assert [] == _cancels(fake)


async def test_a_decision_that_is_not_one_is_a_400(fake: FakePostHog) -> None:
    conversation = "5f0c6a1e-7a55-4c53-8d1e-0d7e2f9d3b11"
    async with relay(fake) as (url, _, _), aiohttp.ClientSession() as browser:
        for params in (
            {"conversation": conversation, "proposal": "p1", "decision": "maybe"},
            {"conversation": conversation, "proposal": " ", "decision": "approve"},
            {"conversation": conversation, "decision": "approve"},
            {"proposal": "p1", "decision": "approve"},
            {"conversation": conversation, "proposal": "p1"},
            {"q": "Hi", "conversation": conversation, "proposal": "p1", "decision": "reject"},
        ):
            async with browser.get(url + "ask", params=params) as response:
                assert 400 == response.status, params
    assert [] == fake.requests


async def test_a_rate_limit_wait_is_told_to_the_browser_before_the_wait(
    fake: FakePostHog,
) -> None:
    fake.script_answer("The answer, after the wait.")
    fake.throttle_next(1, wait=2, method="POST", path="/conversations/")
    async with (
        relay(fake) as (url, _, _),
        aiohttp.ClientSession() as browser,
        browser.get(url + "ask", params={"q": "Top pages?"}) as response,
        contextlib.aclosing(events(response)) as stream,
    ):
        first = await anext(stream)
        tried = len(fake.requests)  # before the client's wait is over: just the one
        rest = [(e.event, json.loads(e.data)) async for e in stream]
    assert "wait" == first.event
    wait = json.loads(first.data)
    assert {"reason": "rate_limit", "attempt": 2} == {k: wait[k] for k in ("reason", "attempt")}
    assert 2 <= wait["seconds"] <= 2.5  # what PostHog named, spread by the client's jitter
    assert 1 == tried
    assert "The answer, after the wait." == _text(rest)
    assert "done" == rest[-1][0]
    assert 1 == fake.status_counts[429]
    assert 1 == fake.status_counts[200]


async def test_a_browser_that_leaves_during_a_wait_stops_the_retry(fake: FakePostHog) -> None:
    fake.throttle_next(1, wait=1, method="POST", path="/conversations/")
    async with relay(fake) as (url, app, _), aiohttp.ClientSession() as browser:
        response = await browser.get(url + "ask", params={"q": "Top pages?"})
        async with contextlib.aclosing(events(response)) as stream:
            assert "wait" == (await anext(stream)).event
        response.close()  # the browser leaves while the client waits
        with anyio.fail_after(2):
            while app[web_relay.RELAYS]:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        await anyio.sleep(1.5)  # past the wait PostHog named (1 s, spread by up to 20 %)
    posts = [r for r in fake.requests if r.method == "POST"]
    assert 1 == len(posts)  # the retry never went out
    assert 1 == fake.status_counts[429]
    assert 0 == fake.ai_streams.opened  # nothing ran on PostHog


async def test_a_retry_wait_is_told_to_the_browser(fake: FakePostHog) -> None:
    fake.script_answer("The answer, after a retry.")
    fake.fail_next(1, status=503, method="POST", path="/conversations/")
    async with relay(fake) as (url, _, _):
        relayed = await ask(url, "Top pages?")
    name, wait = relayed[0]
    assert ("wait", "retry", 2) == (name, wait["reason"], wait["attempt"])
    assert wait["seconds"] >= 0
    assert "The answer, after a retry." == _text(relayed)
    assert "done" == relayed[-1][0]


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (
            "throttle_next(wait=120)",
            "PostHog AI is busy right now — please try again in 2 minutes.",
        ),
        (
            "ai_daily_limit = 0",
            "You have reached PostHog AI's usage limit for now — "
            "please try again in about 24 hours.",
        ),
    ],
)
async def test_a_wait_longer_than_the_policy_allows_is_an_apology_at_once(
    fake: FakePostHog, limit: str, message: str
) -> None:
    """PostHog names a wait beyond RetryPolicy.max_retry_after (60 s): no wait, no retry."""
    if limit == "ai_daily_limit = 0":
        fake.ai_daily_limit = 0
    else:
        fake.throttle_next(1, wait=120, method="POST", path="/conversations/")
    async with relay(fake) as (url, _, _):
        with anyio.fail_after(10):  # not a minute later
            relayed = await ask(url, "Top pages?")
    conversation = fake.requests[0].json()["conversation"]
    refused = {"message": message, "conversation": conversation, "refused": True}
    assert [("error", refused)] == relayed
    assert 1 == len(fake.requests)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.2, "in a second"),
        (1.0, "in a second"),
        (1.2, "in 2 seconds"),
        (59, "in 59 seconds"),
        (89.5, "in 90 seconds"),
        (90, "in 2 minutes"),
        (3599, "in 60 minutes"),
        (5399, "in 90 minutes"),
        (5400, "in about an hour"),
        (7200, "in about 2 hours"),
        (86399, "in about 24 hours"),
    ],
)
def test_when_to_try_again_in_words(seconds: float, words: str) -> None:
    assert words == web_relay.in_words(seconds)


def test_the_script_serves_an_answer_and_stops_on_sigint() -> None:
    """`python examples/web_relay.py --port 0`, as a user runs it, then Ctrl-C."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    env["PYTHONWARNINGS"] = "error"
    command = [sys.executable, str(EXAMPLES / "web_relay.py"), "--port", "0", "--delay", "0"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        watchdog = threading.Timer(30, process.kill)
        watchdog.start()
        try:
            banner = process.stdout.readline() if process.stdout else ""
            match = re.search(r"http://127\.0\.0\.1:\d+/", banner)
            assert match, banner + (process.stderr.read() if process.stderr else "")
            query = urllib.parse.urlencode({"q": "Top pages?"})
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never proxied
            with direct.open(f"{match.group()}ask?{query}", timeout=10) as response:
                body = response.read()
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            watchdog.cancel()
    relayed = SSEDecoder().feed(body)
    assert "Yesterday your most viewed page" in "".join(
        json.loads(e.data)["text"] for e in relayed if e.event == "delta"
    )
    assert "done" == relayed[-1].event
    assert 0 == process.returncode, stderr
    assert "web_relay: stopped" in stdout
    assert "Traceback" not in stderr, stderr
    assert "Warning" not in stderr, stderr


async def test_an_answer_that_fails_mid_stream_stops_its_own_generation(
    fake: FakePostHog,
) -> None:
    """
    A stream that fails after PostHog started the run (the connection dropped and the
    re-attach budget is spent) is no refusal: the run is this request's, and it goes on
    generating on PostHog after the browser was told sorry ("please try again"). Trying
    again then meets a 409 ("still answering") for an answer nobody will see.
    `stream.cancel()` already sends nothing after a refusal, so cancelling is safe here.
    """
    fake.script_answer("An answer whose connection drops. " * 5, delay=0.05, drop_after=3)
    fake.script_answer("The answer to the retry.")
    policy = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01, max_reattaches=0)
    app = web_relay.make_app(lambda: fake.client(retry=policy))
    async with web_relay.serve(app) as url:
        failed = await ask(url, "A long analysis?")
        name, data = failed[-1]
        assert ("error", web_relay.FAILED) == (name, data["message"])
        again = await ask(url, "A long analysis?", conversation=data["conversation"])
    assert ("done", {"conversation": data["conversation"]}) == again[-1]
    assert "The answer to the retry." == _text(again)


# ------------------------------------------------------------------ QA: wrong arguments


@pytest.mark.parametrize("args", [("--port", "70000"), ("--delay", "-1")])
def test_a_wrong_argument_is_a_usage_error_not_a_traceback(args: tuple[str, str]) -> None:
    result = run_example("web_relay.py", *args)
    assert 2 == result.returncode, result.stderr
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


def _leave_early(host: str, port: int, question: str, after: float) -> None:
    with socket.create_connection((host, port)) as browser:
        browser.sendall(f"GET /ask?q={question} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        browser.recv(200)
        time.sleep(after)  # its buffers fill: the relay waits to write more


async def test_browsers_that_leave_between_two_writes_log_no_error(
    fake: FakePostHog, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A browser that leaves while the answer streams fast makes a write fail before
    aiohttp cancels the handler: the task group's ExceptionGroup reached aiohttp, which
    logged "Error handling request" with a traceback for a routine disconnect. The
    generation is stopped, and nothing is logged as an error.
    """
    caplog.set_level(logging.INFO)
    for _ in range(10):
        fake.script_answer("word " * 3000, delay=0.0002, token_size=3)
    async with relay(fake) as (url, app, _):
        host, port = urllib.parse.urlsplit(url).netloc.split(":")
        for n in range(10):
            # As `curl … | head -c 200` does: the first bytes read, then the socket closed
            # with more of the answer arrived unread (a reset) while the relay writes on.
            await anyio.to_thread.run_sync(_leave_early, host, int(port), f"q{n}", 0.05 * n)
            with anyio.fail_after(5):
                while app[web_relay.RELAYS]:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert [] == [r.getMessage() for r in errors]
    # Each answer begun was stopped, or was over (a browser that left at once, with the
    # relay's headers alone read, may have left before its answer began: a cancel is
    # sent all the same once its message may have reached PostHog).
    assert fake.ai_streams.opened >= 8
    assert len(_cancels(fake)) + fake.ai_streams.completed >= fake.ai_streams.opened


async def test_a_port_in_use_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Its default port (8080) taken: a traceback (`OSError: address already in use`)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with mock.patch.dict(os.environ, {"POSTHOG_PERSONAL_API_KEY": ""}):
            code = await web_relay.main(["--port", str(port)])
    assert 1 == code
    err = capsys.readouterr().err
    assert err.startswith(f"web_relay: cannot serve on 127.0.0.1:{port}: ")
    assert "Traceback" not in err
