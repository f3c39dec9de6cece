"""An incomplete stream is never a complete answer: re-attached, then IncompleteStreamError."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest

import aposthog
from aposthog.testing import LoopbackServer, ServerReply, ServerRequest

pytestmark = pytest.mark.anyio

FAST = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01)
HUMAN = b'event: message\ndata: {"type":"human","content":"q","id":"h1"}\n\n'
FINAL = b'event: message\ndata: {"type":"ai","content":"Hello there","id":"a1"}\n\n'
SNAPSHOT = b'event: message\ndata: {"type":"ai","content":"Hello"}\n\n'


def history(body: bytes) -> bytes:
    """`GET conversations/{id}/`'s body for a conversation holding `body`'s final messages."""
    messages = []
    for event in body.split(b"\n\n"):
        name, _, data = event.partition(b"\ndata: ")
        if name == b"event: message":
            message = json.loads(data)
            if message.get("id"):
                messages.append(message)
    conversation = {"id": "c1", "status": "idle", "title": "q", "messages": messages}
    return json.dumps(conversation).encode()


class ScriptedPostHog:
    """
    Answers each `POST conversations/` with the next body of `bodies` (the last repeats),
    and `GET conversations/{id}/` with 404 (untitled), or with the final messages of
    `conversation`: the whole run, as PostHog stores it.
    """

    def __init__(self, *bodies: bytes, conversation: bytes | None = None) -> None:
        self.bodies = bodies
        self.conversation = conversation
        self.posts: list[dict[str, object]] = []
        self.server = LoopbackServer(self.handle)

    async def handle(self, request: ServerRequest) -> ServerReply:
        if request.method == "GET":  # the catch-up read of the conversation
            if self.conversation is not None:
                return ServerReply(
                    body=history(self.conversation),
                    headers={"Content-Type": "application/json"},
                )
            return ServerReply(status=404, body=b'{"detail":"Not found."}')
        self.posts.append(json.loads(request.body))
        body = self.bodies[min(len(self.posts), len(self.bodies)) - 1]

        async def chunks() -> AsyncIterator[bytes]:
            yield body

        return ServerReply(stream=chunks(), headers={"Content-Type": "text/event-stream"})

    async def __aenter__(self) -> ScriptedPostHog:
        await self.server.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.server.stop()


def _client(posthog: ScriptedPostHog) -> aposthog.Client:
    return aposthog.Client(api_key="phx_x", host=posthog.server.url, retry=FAST)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(HUMAN + b'event: message\ndata: {"type":"ai","content":"Hel', id="mid-event"),
        pytest.param(b"garbage\n\n\xff\xfe nonsense\n\n", id="garbage"),
        pytest.param(HUMAN + SNAPSHOT, id="snapshot-only"),
        pytest.param(HUMAN, id="echo-only"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_a_stream_cut_short_is_reattached_then_reported_incomplete(body: bytes) -> None:
    async with ScriptedPostHog(body) as posthog:
        policy = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01, max_reattaches=2)
        client = aposthog.Client(api_key="phx_x", host=posthog.server.url, retry=policy)
        async with client as ph:
            stream = ph.conversations.create("q")
            with anyio.fail_after(5), pytest.raises(aposthog.IncompleteStreamError) as info:
                await stream.until_done()
            result = stream.result()
    assert isinstance(info.value, aposthog.APIConnectionError)
    assert "before the run's final message" in str(info.value)
    assert not result.complete
    assert ["q", None, None] == [p["content"] for p in posthog.posts]


async def test_a_reattach_that_brings_the_rest_completes_the_answer() -> None:
    cut = HUMAN + SNAPSHOT
    whole = HUMAN + SNAPSHOT + FINAL
    async with (
        ScriptedPostHog(cut, whole, conversation=whole) as posthog,
        _client(posthog) as ph,
    ):
        stream = ph.conversations.create("q")
        deltas = [text async for text in stream.text_deltas()]
        result = stream.result()
    assert result.complete
    assert "Hello there" == result.text == "".join(deltas)
    assert ["q", None] == [p["content"] for p in posthog.posts]


async def test_a_reattached_run_that_the_conversation_cannot_confirm_is_incomplete() -> None:
    """The re-attach brought the run's end, but a re-attach may have lost final messages
    (PostHog deletes a run's stream when its reader goes away) and the conversation, which
    would show them, cannot be read (404: untitled): not reported as a complete answer."""
    cut = HUMAN + SNAPSHOT
    whole = HUMAN + SNAPSHOT + FINAL
    async with ScriptedPostHog(cut, whole) as posthog, _client(posthog) as ph:
        stream = ph.conversations.create("q")
        deltas: list[str] = []
        with pytest.raises(aposthog.IncompleteStreamError) as info:
            async for text in stream.text_deltas():
                deltas.append(text)  # noqa: PERF401 (the list must survive the raise)
        result = stream.result()
    assert isinstance(info.value.__cause__, aposthog.NotFoundError)
    assert not result.complete
    assert "Hello there" == result.text == "".join(deltas)  # what arrived stays readable
    assert ["q", None] == [p["content"] for p in posthog.posts]


async def test_an_in_band_failure_is_a_complete_run() -> None:
    failure = HUMAN + b'event: message\ndata: {"type":"ai/failure","content":"Oops","id":"f1"}\n\n'
    async with ScriptedPostHog(failure) as posthog, _client(posthog) as ph:
        result = await ph.conversations.create("q").until_done()
    assert result.complete
    assert result.failed
    assert 1 == len(posthog.posts)


async def test_without_reattaches_an_incomplete_stream_raises_at_once() -> None:
    async with ScriptedPostHog(HUMAN + SNAPSHOT) as posthog, _client(posthog) as ph:
        stream = ph.conversations.create("q", max_reattach_attempts=0)
        deltas: list[str] = []
        with pytest.raises(aposthog.IncompleteStreamError):
            async for text in stream.text_deltas():
                deltas.append(text)  # noqa: PERF401 (the list must survive the raise)
    assert ["Hello"] == deltas  # what arrived was given out, and is not called the answer
    assert 1 == len(posthog.posts)


class IdleOnReattach(ScriptedPostHog):
    """Answers the first POST with `bodies[0]`, and every re-attach with PostHog's 400 for
    a conversation whose run is over (say another client cancelled it meanwhile)."""

    async def handle(self, request: ServerRequest) -> ServerReply:
        if request.method == "POST" and self.posts:
            self.posts.append(json.loads(request.body))
            detail = {"detail": "Cannot continue streaming from an idle conversation"}
            return ServerReply(
                status=400,
                body=json.dumps(detail).encode(),
                headers={"Content-Type": "application/json"},
            )
        return await super().handle(request)


async def test_a_run_over_without_its_answer_is_not_caught_up_as_complete() -> None:
    """Cut mid-answer; the re-attach finds the run over, and the conversation holds the
    question but no answer (the run was cancelled): nothing ended the run, so the stream
    is not complete, and the error that cut it is raised."""
    async with (
        IdleOnReattach(HUMAN + SNAPSHOT, conversation=HUMAN) as posthog,
        _client(posthog) as ph,
    ):
        stream = ph.conversations.create("q")
        deltas: list[str] = []
        with pytest.raises(aposthog.IncompleteStreamError) as info:
            async for text in stream.text_deltas():
                deltas.append(text)  # noqa: PERF401 (the list must survive the raise)
        result = stream.result()
    assert isinstance(info.value.__cause__, aposthog.BadRequestError)
    assert not result.complete
    assert ["Hello"] == deltas
    assert ["q", None] == [p["content"] for p in posthog.posts]


_PROGRESS = {
    "reasoning": {"type": "ai/reasoning", "content": "Picking relevant events", "id": "r1"},
    "reasoning-idless": {"type": "ai/reasoning", "content": "Picking relevant events"},
}


@pytest.mark.parametrize("progress", list(_PROGRESS))
async def test_a_stream_cut_after_a_progress_message_is_not_a_finished_run(progress: str) -> None:
    """PostHog (older versions) sends `ai/reasoning` messages mid-run (reference §3.5):
    progress steps ("Picking relevant events"), the answer comes after them.
    A body that ends cleanly right after one was cut short: it must be re-attached (and
    here the re-attach brings the answer), not reported complete with no answer."""
    message = b"event: message\ndata: " + json.dumps(_PROGRESS[progress]).encode() + b"\n\n"
    cut = HUMAN + message
    whole = HUMAN + message + SNAPSHOT + FINAL
    async with (
        ScriptedPostHog(cut, whole, conversation=whole) as posthog,
        _client(posthog) as ph,
    ):
        with anyio.fail_after(5):
            result = await ph.conversations.create("q").until_done()
    assert ["q", None] == [p["content"] for p in posthog.posts]  # re-attached
    assert result.complete
    assert result.text == "Hello there"


def _sse(message: dict[str, object]) -> bytes:
    return b"event: message\ndata: " + json.dumps(message).encode() + b"\n\n"


_SEARCH = [{"id": "srvtoolu_1", "name": "web_search", "args": {"query": "flags"}}]
#: An answer PostHog split at two web searches, as it streams it: each part's text starts
#: again after an empty snapshot, and the parts' finals come at the end.
_SPLIT_RUN = [
    HUMAN,
    _sse({"type": "ai", "content": "Let me look."}),
    _sse({"type": "ai", "content": "Let me look.", "server_tool_calls": _SEARCH}),
    _sse({"type": "ai", "content": ""}),
    _sse({"type": "ai", "content": "Searched."}),
    _sse({"type": "ai", "content": "Searched.", "server_tool_calls": _SEARCH}),
    _sse({"type": "ai", "content": ""}),
    _sse({"type": "ai", "content": "Flags are"}),
    _sse({"type": "ai", "content": "Flags are evaluated."}),
    _sse({"type": "ai", "content": "Let me look.", "id": "u0", "server_tool_calls": _SEARCH}),
    _sse({"type": "ai", "content": "Searched.", "id": "u1", "server_tool_calls": _SEARCH}),
    _sse({"type": "ai", "content": "Flags are evaluated.", "id": "u2"}),
]


@pytest.mark.parametrize("cut", range(2, 9))
async def test_a_replayed_split_answer_is_handed_out_once_and_reattached_a_bounded_number_of_times(
    cut: int,
) -> None:
    """
    A re-attach replays the run from its start. The parts of an answer split at a web
    search do not extend one another, so their replayed snapshots were taken for new
    ones: handed out again (the text of a part too), each counted as progress, so a body
    cut at the same place on every re-attach was re-attached for ever.
    """
    whole = b"".join(_SPLIT_RUN)
    one = b"".join(_SPLIT_RUN[:cut])
    async with ScriptedPostHog(whole) as posthog, _client(posthog) as ph:
        expected = [event async for event in ph.conversations.create("q")]
    async with ScriptedPostHog(one, whole, conversation=whole) as posthog, _client(posthog) as ph:
        stream = ph.conversations.create("q")
        events = [event async for event in stream]
    assert events == expected
    assert stream.result().complete

    policy = aposthog.RetryPolicy(initial_backoff=0.001, max_backoff=0.01, max_reattaches=2)
    async with ScriptedPostHog(one) as posthog:
        client = aposthog.Client(api_key="phx_x", host=posthog.server.url, retry=policy)
        async with client as ph:
            stream = ph.conversations.create("q")
            with anyio.fail_after(5), pytest.raises(aposthog.IncompleteStreamError):
                await stream.until_done()
    assert len(posthog.posts) == 3  # the run, and its two re-attaches
