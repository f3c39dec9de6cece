"""`ph.conversations`: argument checks before sending, and every route against FakePostHog."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import time
import types
import uuid
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import aposthog
from aposthog._pipeline import RESEARCH_CONVERSATIONS_KEPT
from aposthog.resources._checks import MAX_JSON_DEPTH
from aposthog.testing import FakePostHog

pytestmark = pytest.mark.anyio


def sent(fake: FakePostHog, method: str = "POST") -> list[dict[str, object]]:
    return [r.json() for r in fake.requests if r.method == method]


# ---------------------------------------------------------------------- create()


async def test_create_returns_a_stream_at_once_and_sends_nothing(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    stream = ph.conversations.create("Hello?")
    assert isinstance(stream, aposthog.ConversationStream)
    uuid.UUID(stream.conversation_id)
    uuid.UUID(stream.trace_id)
    assert fake.requests == []
    other = ph.conversations.create("Hello?")
    assert other.conversation_id != stream.conversation_id
    assert other.trace_id != stream.trace_id


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        (" \n\t", "empty"),
        ("x" * 40001, "40001 characters"),
        (" " + "x" * 40001, "40001 characters"),
    ],
)
async def test_create_checks_the_content_before_sending(
    fake: FakePostHog, ph: aposthog.Client, content: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ph.conversations.create(content)
    assert fake.requests == []


async def test_the_longest_message_is_accepted(fake: FakePostHog, ph: aposthog.Client) -> None:
    content = "x" * 40000 + "  "  # PostHog measures the trimmed text
    await ph.conversations.create(content).until_done()
    assert sent(fake)[0]["content"] == content


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"content": None}, ValueError),
        ({"content": 3}, TypeError),
        ({"content": "q", "conversation": "not-a-uuid"}, ValueError),
        ({"content": "q", "trace_id": "nope"}, ValueError),
        ({"content": "q", "agent_mode": 3}, TypeError),
        ({"content": "q", "contextual_tools": [1]}, TypeError),
        ({"content": "q", "contextual_tools": {"search_docs": None}}, ValueError),  # a 400
        ({"content": "q", "session_id": 5}, TypeError),
        ({"content": "q", "session_id": "  "}, ValueError),  # PostHog's 400: blank
        ({"content": "q", "max_reattach_attempts": -1}, ValueError),
        ({"content": "q", "max_reattach_attempts": True}, TypeError),
        ({"content": "q", "timeout": 0}, ValueError),
        ({"content": "q", "timeout": "5"}, TypeError),
        ({"content": "q", "stream_idle_timeout": -1.0}, ValueError),
        ({"content": "q", "stream_idle_timeout": float("nan")}, ValueError),
    ],
)
async def test_create_rejects_bad_arguments(
    fake: FakePostHog, ph: aposthog.Client, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        ph.conversations.create(**kwargs)  # type: ignore[arg-type]
    assert fake.requests == []


@pytest.mark.parametrize("name", ["timeout", "stream_idle_timeout"])
async def test_a_bad_timeout_is_refused_before_anything_changes(
    fake: FakePostHog, ph: aposthog.Client, name: str
) -> None:
    """Refused with an error naming it, before the research tracking notes the message."""
    conversation = str(uuid.uuid4())
    negative: dict[str, Any] = {name: -1}
    with pytest.raises(ValueError, match=name):
        ph.conversations.create("q", conversation=conversation, agent_mode="research", **negative)
    zero: dict[str, Any] = {name: 0}
    with pytest.raises(ValueError, match=name):
        ph.conversations.stream(conversation, **zero)
    assert fake.requests == []
    assert ph.conversations._bucket(conversation, requested=False) == "ai"  # not research


async def test_a_stream_idle_timeout_given_to_create_is_that_streams_alone(
    fake: FakePostHog,
) -> None:
    """
    `create(..., stream_idle_timeout=)` times out that stream's silence; the client's
    setting, and its other streams, are unchanged.
    """
    fake.keepalive_interval = None
    fake.script_answer("slow", token_size=1, delay=0.4)
    fake.script_answer("also slow", token_size=4, delay=0.4)
    async with fake.client() as ph:
        stream = ph.conversations.create("q", stream_idle_timeout=0.05, max_reattach_attempts=0)
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError) as info:
            await stream.until_done()
        assert "stream_idle_timeout" in str(info.value)
        assert ph.config.stream_idle_timeout == 60
        with anyio.fail_after(10):
            result = await ph.conversations.create("q", max_reattach_attempts=0).until_done()
    assert result.text == "also slow"


async def test_a_stream_idle_timeout_given_to_stream_is_that_streams_alone(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    """`stream(id, stream_idle_timeout=)`: a re-attached reader with its own limit."""
    fake.keepalive_interval = None
    fake.script_answer("a slow answer", token_size=2, delay=0.3, end_after_connections=2)
    first = ph.conversations.create("q")
    async with first:
        await anext(first)
        again = ph.conversations.stream(
            first.conversation_id, stream_idle_timeout=0.05, max_reattach_attempts=0
        )
        with anyio.fail_after(5), pytest.raises(aposthog.APITimeoutError) as info:
            await again.until_done()
        assert "stream_idle_timeout" in str(info.value)
        with anyio.fail_after(10):
            assert (await first.until_done()).text == "a slow answer"


async def test_ids_may_be_uuid_objects(fake: FakePostHog, ph: aposthog.Client) -> None:
    conversation, trace = uuid.uuid4(), uuid.uuid4()
    stream = ph.conversations.create("q", conversation=conversation, trace_id=trace)
    assert (stream.conversation_id, stream.trace_id) == (str(conversation), str(trace))
    await stream.until_done()
    assert sent(fake)[0]["trace_id"] == str(trace)


async def test_agent_mode_is_a_free_string(fake: FakePostHog, ph: aposthog.Client) -> None:
    with pytest.raises(aposthog.BadRequestError) as info:
        await ph.conversations.create("q", agent_mode="time_travel").until_done()
    assert info.value.code == "invalid_choice"
    assert sent(fake)[0]["agent_mode"] == "time_travel"


async def test_optional_fields_are_sent_only_when_given(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    await ph.conversations.create("q").until_done()
    await ph.conversations.create(
        "q", deep_research_mode=True, billing_context={"plan": "scale"}
    ).until_done()
    plain, research = sent(fake)
    assert set(plain) == {"content", "conversation", "trace_id"}
    assert research["deep_research_mode"] is True
    assert research["billing_context"] == {"plan": "scale"}


async def test_a_resume_payload_continues_without_a_message(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    # PostHog resumes only a proposal still pending (else the run fails: ai/failure).
    approval = {"proposal_id": "p1", "decision_status": "pending", "tool_name": "create_flag"}
    conversation = fake.seed_conversation(pending_approvals=[approval])
    fake.script_answer("Flag created.")
    payload = {"action": "approve", "proposal_id": "p1"}
    result = await ph.conversations.create(
        None, conversation=conversation.id, resume_payload=payload
    ).until_done()
    assert result.text == "Flag created."
    assert sent(fake)[0] == {
        "content": None,
        "conversation": conversation.id,
        "trace_id": sent(fake)[0]["trace_id"],
        "resume_payload": payload,
    }


async def test_a_follow_up_continues_the_conversation(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("First.")
    fake.script_answer("Second.")
    first = await ph.conversations.create("one").until_done()
    second = await ph.conversations.create("two", conversation=first.conversation_id).until_done()
    assert (first.text, second.text) == ("First.", "Second.")
    assert second.conversation is None  # PostHog announces new conversations only
    conversation = await ph.conversations.get(first.conversation_id)
    assert [m.type for m in conversation.messages] == ["human", "ai", "human", "ai"]


# ---------------------------------------------------------------------- other routes


async def test_list_gives_summaries_newest_first(fake: FakePostHog, ph: aposthog.Client) -> None:
    older = fake.seed_conversation(title="Older")
    newer = fake.seed_conversation(title="Newer")
    newer.updated_at = older.updated_at.replace(year=older.updated_at.year + 1)
    summaries = [c async for c in ph.conversations.list()]
    assert [c.title for c in summaries] == ["Newer", "Older"]
    assert isinstance(summaries[0], aposthog.ConversationSummary)
    assert summaries[0].status is aposthog.ConversationStatus.IDLE
    page = await ph.conversations.list(limit=1)
    assert page.count == 2
    assert len(page.results) == 1


async def test_list_accepts_older_servers_that_include_messages(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.seed_conversation(messages=[{"type": "human", "content": "hi"}])
    fake.conversations_list_includes_messages = True
    (summary,) = [c async for c in ph.conversations.list()]
    assert summary.extra_fields["messages"][0]["content"] == "hi"


async def test_list_checks_paging(ph: aposthog.Client) -> None:
    with pytest.raises(ValueError, match="limit"):
        ph.conversations.list(limit=0)


async def test_get_returns_messages_and_pending_approvals(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    seeded = fake.seed_conversation(
        messages=[
            {"type": "human", "content": "Make a flag"},
            {"type": "ai", "content": "I need your approval."},
            {"type": "ai/brand_new", "payload": 1},
        ],
        pending_approvals=[
            {
                "proposal_id": "p1",
                "decision_status": "pending",
                "tool_name": "create_feature_flag",
                "preview": "Create flag 'beta'",
                "payload": {"key": "beta"},
                "original_tool_call_id": "call_1",
                "message_id": None,
            }
        ],
    )
    conversation = await ph.conversations.get(seeded.id)
    assert isinstance(conversation, aposthog.Conversation)
    assert conversation.title == seeded.title
    kinds = [type(m) for m in conversation.messages]
    assert kinds == [aposthog.HumanMessage, aposthog.AssistantMessage, aposthog.UnknownMessage]
    (approval,) = conversation.pending_approvals
    assert approval.proposal_id == "p1"
    assert approval.payload == {"key": "beta"}
    assert conversation.user is not None
    assert conversation.user.email == "user-1@example.com"


async def test_get_is_not_found_until_titled(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("answer", title=None)
    result = await ph.conversations.create("q").until_done()
    with pytest.raises(aposthog.NotFoundError):
        await ph.conversations.get(result.conversation_id)
    sent = len(fake.requests)
    with pytest.raises(ValueError, match="id must be a UUID"):
        await ph.conversations.get("../../batch_exports")
    assert sent == len(fake.requests)


async def test_append_message_returns_the_new_id(fake: FakePostHog, ph: aposthog.Client) -> None:
    seeded = fake.seed_conversation()
    new_id = await ph.conversations.append_message(seeded.id, "Saved for later.")
    assert seeded.messages[-1] == {"type": "ai", "content": "Saved for later.", "id": new_id}
    conversation = await ph.conversations.get(seeded.id)
    assert conversation.messages[-1].id == new_id


@pytest.mark.parametrize("content", ["", "   ", "x" * 10001])
async def test_append_message_checks_the_content_before_sending(
    fake: FakePostHog, ph: aposthog.Client, content: str
) -> None:
    with pytest.raises(ValueError, match="content"):
        await ph.conversations.append_message(str(uuid.uuid4()), content)
    assert fake.requests == []


async def test_append_message_and_cancel_refuse_scoped_keys(fake: FakePostHog) -> None:
    seeded = fake.seed_conversation()
    key = fake.add_key(scopes=["conversation:write"])
    async with fake.client(api_key=key) as ph:
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.conversations.append_message(seeded.id, "x")
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.conversations.cancel(seeded.id)
        assert (await ph.conversations.get(seeded.id)).id == seeded.id


async def test_cancel_is_idempotent(fake: FakePostHog, ph: aposthog.Client) -> None:
    fake.script_answer("a slow answer", token_size=1, delay=0.05)
    async with ph.conversations.create("q") as stream:
        await anext(stream)
        await ph.conversations.cancel(stream.conversation_id)
        await ph.conversations.cancel(stream.conversation_id)
        assert fake.conversations[stream.conversation_id].status == "idle"
    with pytest.raises(aposthog.NotFoundError):
        await ph.conversations.cancel(str(uuid.uuid4()))


async def test_a_refused_cancel_leaves_no_reader_asleep_forever(fake: FakePostHog) -> None:
    # A scoped key (the README: PostHog refuses `cancel/` to every one of them) and a
    # message whose POST met a 503: the reader backs off to retry it. The bot's /stop
    # handler calls `conversations.cancel(id)` meanwhile; PostHog refuses it (403), and
    # the docstring says the streams "read on". The reader's retry came while the cancel
    # was under way, was withheld (`_Withheld`: it sleeps until the stream is closed),
    # and nothing closes the stream or wakes it: the task hangs, the stream stays in
    # `open_streams`, for as long as the process lives.
    key = fake.add_key(scopes=["conversation:write", "conversation:read"])
    stopping: list[asyncio.Task[None]] = []
    pressed = asyncio.Event()

    def on_wait(wait: aposthog.Wait) -> None:
        # The reader is about to back off (at most 0.05 s): the user presses Stop now,
        # and PostHog takes 0.3 s to refuse it.
        if not stopping:
            fake.latency = 0.3
            stopping.append(asyncio.ensure_future(ph.conversations.cancel(stream.conversation_id)))
            pressed.set()

    policy = aposthog.RetryPolicy(initial_backoff=0.05, max_backoff=0.05)
    async with fake.client(api_key=key, retry=policy, on_wait=on_wait) as ph:
        fake.fail_next(1, status=503, method="POST")
        stream = ph.conversations.create("q")
        reader = asyncio.ensure_future(stream.until_done())
        try:
            await pressed.wait()
            with pytest.raises(aposthog.PermissionDeniedError):
                await stopping[0]
            fake.latency = 0
            done, _ = await asyncio.wait([reader], timeout=0.7)
            assert done, "the reader still sleeps, its stream open"
            assert reader.result().complete
            assert ph.open_streams == 0
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def _reading(stream: aposthog.ConversationStream) -> asyncio.Future[None]:
    """A task reading `stream`'s text, once its first text has come."""
    begun = asyncio.Event()

    async def read() -> None:
        async for _ in stream.text_deltas():
            begun.set()

    reader = asyncio.ensure_future(read())
    await begun.wait()
    return reader


@contextlib.asynccontextmanager
async def _waiting_for_the_only_slot(
    ph: aposthog.Client, fake: FakePostHog, conversation: str | None = None
) -> AsyncIterator[tuple[aposthog.ConversationStream, asyncio.Future[Any]]]:
    """
    A message whose stream waits for the client's only concurrency slot (a slow call
    holds it for a moment, `max_concurrency=1`): the stream, and its reader
    (`until_done()`), cancelled at the end. The slow call is over before the body ends.
    """
    fake.latency = 0.15
    busy = asyncio.ensure_future(ph.conversations.list().to_list())
    await asyncio.sleep(0.02)
    stream = ph.conversations.create("q", conversation=conversation)
    reader: asyncio.Future[Any] = asyncio.ensure_future(stream.until_done())
    await asyncio.sleep(0.02)  # the reader waits for the slot
    try:
        yield stream, reader
        await busy
    finally:
        fake.latency = 0
        reader.cancel()
        await asyncio.gather(reader, busy, return_exceptions=True)


def _scoped(fake: FakePostHog) -> str:
    """A key with scopes: PostHog refuses it the cancel action (403), whatever runs."""
    return fake.add_key(scopes=["conversation:write", "conversation:read"])


@pytest.mark.parametrize("tries", [1, 2])
async def test_a_stop_before_the_message_went_out_leaves_no_reader_asleep_forever(
    fake: FakePostHog, tries: int
) -> None:
    # The user presses Stop right after asking, while the message still waits for the
    # client's only concurrency slot: `conversations.cancel(id)`, then (`tries=2`) again
    # as soon as it is refused (a retry loop, a second /stop). The message's attempt,
    # finding a cancel under way, is withheld. PostHog refuses each PATCH (a scoped key:
    # 403): the message is sent then. It slept until the client was closed; with the
    # second cancel, it took the second's mark for the first's success, and slept on.
    async with (
        fake.client(api_key=_scoped(fake), max_concurrency=1) as ph,
        _waiting_for_the_only_slot(ph, fake) as (stream, reader),
    ):
        for _ in range(tries):
            with pytest.raises(aposthog.PermissionDeniedError):
                await ph.conversations.cancel(stream.conversation_id)
        fake.latency = 0
        done, _ = await asyncio.wait([reader], timeout=0.8)
        assert done, "the reader still sleeps, its stream open"
        assert reader.result().complete
        assert ph.open_streams == 0


@pytest.mark.parametrize("tries", [1, 2])
async def test_a_cut_during_a_refused_cancel_is_no_quiet_end(fake: FakePostHog, tries: int) -> None:
    # While `conversations.cancel(id)` waits for PostHog's answer, PostHog ending the
    # body may be the cancel's end. A real cut in that time (a proxy, the network) was
    # taken for it; PostHog then refuses the cancel (a scoped key: 403), and the reader's
    # loop had ended without an exception on half an answer: `text_deltas()` promises
    # that such an end means the run is complete, and a run that goes on is re-attached
    # after a cut. With the cancel tried again at once (`tries=2`), the reader took the
    # second's mark for the first's success.
    key = fake.add_key(scopes=["conversation:write", "conversation:read"])
    fake.script_answer("one two three four five six seven", token_size=5, delay=0.04, drop_after=4)
    async with fake.client(api_key=key) as ph:
        stream = ph.conversations.create("q")
        deltas: list[str] = []
        begun = asyncio.Event()

        async def read() -> None:
            async for text in stream.text_deltas():
                deltas.append(text)
                begun.set()

        reader = asyncio.ensure_future(read())
        try:
            await begun.wait()
            fake.latency = 0.5 if tries == 1 else 0.4  # slow to refuse; the cut comes meanwhile
            for _ in range(tries):
                with pytest.raises(aposthog.PermissionDeniedError):
                    await ph.conversations.cancel(stream.conversation_id)
                fake.latency = 0
            try:
                await asyncio.wait_for(asyncio.shield(reader), 1.2)
            except aposthog.IncompleteStreamError:
                pass  # an honest end
            else:
                result = stream.result()
                assert result.complete, f"the loop ended quietly on {''.join(deltas)!r}"
                assert "".join(deltas) == result.text
                assert not result.cancelled
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


@pytest.mark.parametrize("then", ["stream.cancel()", "conversations.cancel(id)"])
async def test_a_cancel_that_stops_the_run_while_an_interrupted_one_was_under_way_counts(
    fake: FakePostHog, ph: aposthog.Client, then: str
) -> None:
    # A bot's /stop handler calls `conversations.cancel(id)`; its caller gives up (a
    # timeout, the handler cancelled), while the relay's own clean-up called
    # `stream.cancel()`, or the user pressed /stop again (a second `cancel(id)`). That
    # PATCH is answered 204: PostHog stopped the run. The interrupted cancel(id) un-marked
    # the stream: it ended neither complete nor cancelled, and (the second cancel(id),
    # which took the stream for none of its own) its reader took PostHog's end of the
    # body for a cut, re-attached (a POST PostHog AI's window counts) and raised
    # IncompleteStreamError.
    fake.script_answer("word " * 200, token_size=5, delay=0.02)
    stream = ph.conversations.create("q")
    reader = await _reading(stream)
    try:
        fake.latency = 0.3
        first = asyncio.ensure_future(ph.conversations.cancel(stream.conversation_id))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(
            stream.cancel()
            if then == "stream.cancel()"
            else ph.conversations.cancel(stream.conversation_id)
        )
        await asyncio.sleep(0.05)
        first.cancel()  # its caller gave up
        await asyncio.gather(first, return_exceptions=True)
        await second  # 204: PostHog stopped the run
        fake.latency = 0
        (outcome,) = await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), 2)
        assert outcome is None, repr(outcome)
        assert stream.result().cancelled
        assert len([r for r in fake.requests if r.method == "POST"]) == 1  # no re-attach
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_a_message_withheld_during_a_refused_cancel_is_counted_once(
    fake: FakePostHog,
) -> None:
    # The message waits for the client's only slot while `conversations.cancel(id)` is
    # under way: nothing is sent meanwhile. The cancel is refused (a scoped key: 403)
    # and the message is sent, counted once: counted twice, it was
    # refused by the client's own limiter under PostHog AI's one-a-minute window (a free
    # organization in research mode has 3), "allows no request for 60 s", never sent.
    limits = aposthog.RateLimits(ai=(aposthog.Rate(1, per=60),))
    async with (
        fake.client(api_key=_scoped(fake), max_concurrency=1, rate_limits=limits) as ph,
        _waiting_for_the_only_slot(ph, fake) as (stream, reader),
    ):
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.conversations.cancel(stream.conversation_id)
        fake.latency = 0
        (outcome,) = await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), 1.5)
        assert not isinstance(outcome, BaseException), repr(outcome)
        assert outcome.complete
        assert len([r for r in fake.requests if r.method == "POST"]) == 1


async def test_a_refused_cancel_keeps_the_waiting_messages_place_in_the_line(
    fake: FakePostHog,
) -> None:
    # The message waits for the client's only slot, first in PostHog AI's line; a second
    # conversation's message waits behind it. `conversations.cancel(id)` of the first is
    # under way when the slot comes: the first message, not known to be wanted, keeps
    # its turn, uncounted, until the answer. PostHog refuses the cancel (a scoped key:
    # 403): the first stream reads on "as if no cancel had been asked", and
    # its message goes first. (Had it passed the turn on and joined the line again at
    # its end, the message behind it would take the one-a-minute window and the first
    # be refused by the client's own limiter.)
    limits = aposthog.RateLimits(ai=(aposthog.Rate(1, per=60),))
    policy = aposthog.RetryPolicy(max_retry_after=0.5)
    async with (
        fake.client(
            api_key=_scoped(fake), max_concurrency=1, rate_limits=limits, retry=policy
        ) as ph,
        _waiting_for_the_only_slot(ph, fake) as (stream, reader),
    ):
        second = ph.conversations.create("behind")
        behind: asyncio.Future[Any] = asyncio.ensure_future(second.until_done())
        try:
            with anyio.fail_after(1):
                # The second message waits behind the first.
                while ph.open_streams < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0)
            with pytest.raises(aposthog.PermissionDeniedError):
                await ph.conversations.cancel(stream.conversation_id)
            fake.latency = 0
            first, _ = await asyncio.wait_for(
                asyncio.gather(reader, behind, return_exceptions=True), 1.5
            )
            sent_first = [r.json()["content"] for r in fake.requests if r.method == "POST"][:1]
            assert ["q"] == sent_first, "the message behind the refused cancel's went first"
            assert not isinstance(first, BaseException), repr(first)
            assert first.complete
        finally:
            behind.cancel()
            await asyncio.gather(behind, return_exceptions=True)


async def test_a_stream_closed_while_its_message_waits_in_line_is_not_kept(
    fake: FakePostHog,
) -> None:
    # PostHog AI's one-a-minute window is used: a message sleeps on it at the head of the
    # line (for up to its `max_retry_after`), two more wait behind it. The user closes
    # the first of those two: its place is left, skipped when its turn comes (not
    # searched for), and holds nothing of the stream any more. Were the place to keep
    # the limiter's `wanted` question (its stream's), the closed stream, its body and
    # everything it holds would stay in memory until the head wakes: a minute here,
    # hours behind PostHog AI's daily limit.
    limits = aposthog.RateLimits(ai=(aposthog.Rate(1, per=60),))
    waits: list[aposthog.Wait] = []
    all_wait = asyncio.Event()

    def on_wait(wait: aposthog.Wait) -> None:
        waits.append(wait)
        if len(waits) == 3:
            all_wait.set()

    policy = aposthog.RetryPolicy(max_retry_after=120)
    async with fake.client(rate_limits=limits, retry=policy, on_wait=on_wait) as ph:
        assert (await ph.conversations.create("first").until_done()).complete
        head = ph.conversations.create("asleep at the head of the line")
        readers = [asyncio.ensure_future(head.until_done())]
        closed = ph.conversations.create("closed while it waits")
        closed_reader = asyncio.ensure_future(closed.until_done())
        last = ph.conversations.create("waiting behind it")
        readers.append(asyncio.ensure_future(last.until_done()))
        try:
            await asyncio.wait_for(all_wait.wait(), 1)  # all three wait for the window
            engine = weakref.ref(closed._engine)
            await closed.aclose()
            await asyncio.gather(closed_reader, return_exceptions=True)
            del closed, closed_reader
            gc.collect()
            assert engine() is None, "the stream closed while it waited is kept by the line"
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


async def test_a_message_whose_stream_is_closed_as_its_turn_comes_is_not_counted(
    fake: FakePostHog,
) -> None:
    # Two messages wait for the client's two slots (held here, as two slow calls would):
    # the first heads PostHog AI's line, the second waits behind it. Both slots free
    # at once, and in that same moment the user closes the second stream (`aclose()`,
    # its reader gone). The head, counted, counts the requests next in line while slots
    # are free (`_admit_ahead`), asking each whether it is still wanted: the closed
    # stream's message is not ("not once the stream is cancelled or closed",
    # `_MessageWanted`), and is not counted. Counted (and never sent), it left the
    # window of 2 a minute full with one request sent, and the user's next message was
    # refused. A stream stopped by `stream.cancel()` in the same moment is not counted
    # either.
    limits = aposthog.RateLimits(ai=(aposthog.Rate(2, per=60),))
    policy = aposthog.RetryPolicy(max_retry_after=0)
    async with fake.client(max_concurrency=2, rate_limits=limits, retry=policy) as ph:
        slots = ph._api.pipeline.slots
        assert slots.take_nowait()
        assert slots.take_nowait()
        head = ph.conversations.create("first in line")
        head_reader = asyncio.ensure_future(head.until_done())
        closed = ph.conversations.create("closed as its turn comes")
        closed_reader = asyncio.ensure_future(closed.until_done())
        throttle: Any = ph._api.pipeline.throttle
        try:

            def both_wait() -> bool:
                # The head waits for a slot, the second message in the line behind it.
                line = throttle._lines.get("ai")
                return bool(slots.waiting and line is not None and line.live)

            with anyio.fail_after(1):
                while not both_wait():  # noqa: ASYNC110
                    await asyncio.sleep(0)
            slots.release()
            slots.release()
            await closed.aclose()  # in the same moment: nothing awaited in between
            assert (await asyncio.wait_for(head_reader, 2)).complete
            await asyncio.gather(closed_reader, return_exceptions=True)
            assert [m["content"] for m in sent(fake)] == ["first in line"]
            # One request sent in the window of two: the next message goes.
            assert (
                await asyncio.wait_for(ph.conversations.create("next").until_done(), 2)
            ).complete
        finally:
            head_reader.cancel()
            closed_reader.cancel()
            await asyncio.gather(head_reader, closed_reader, return_exceptions=True)


async def test_aclose_wakes_a_reader_waiting_for_a_cancel_by_ids_answer(fake: FakePostHog) -> None:
    # The module's promise: "`aclose()` from another task (or `Client.aclose()`) wakes a
    # reader at once, whatever it waits for". A connection cut while `conversations.
    # cancel(id)` is under way makes the reader wait for the cancel's answer
    # (`_cancel_refused()`, outside the `_io_scope` that `close()` cancels). The stream
    # closed from another task then leaves the reader asleep until PostHog answers the
    # PATCH: up to the client's `timeout`, or for ever with `timeout=None`.
    fake.script_answer("one two three four five six seven", token_size=5, delay=0.04, drop_after=5)
    async with fake.client() as ph:
        stream = ph.conversations.create("q")
        reader = await _reading(stream)
        fake.latency = 1.0  # PostHog is slow to answer the PATCH
        stop = asyncio.ensure_future(ph.conversations.cancel(stream.conversation_id))
        try:
            await asyncio.sleep(0.4)  # the cut came: the reader waits for the cancel's answer
            assert not reader.done()
            await stream.aclose()
            done, _ = await asyncio.wait([reader], timeout=0.3)
            assert done, "the reader still waits for the cancel's answer after aclose()"
        finally:
            fake.latency = 0
            reader.cancel()
            await asyncio.gather(reader, stop, return_exceptions=True)


async def test_a_message_withheld_by_a_successful_cancel_is_not_counted(
    fake: FakePostHog,
) -> None:
    # The message waits for the client's only slot while `conversations.cancel(id)` is
    # under way: nothing is sent meanwhile. The PATCH succeeds (the conversation exists,
    # idle), and the stream ends cancelled, its message never sent, and not counted by
    # the rate limiter: counted, with PostHog AI's one-a-minute window (a free
    # organization's research mode has 3), the user's next message, the first one
    # actually sent, was refused by the client itself.
    seeded = fake.seed_conversation()
    limits = aposthog.RateLimits(ai=(aposthog.Rate(1, per=60),))
    policy = aposthog.RetryPolicy(max_retry_after=0.5)
    async with (
        fake.client(max_concurrency=1, rate_limits=limits, retry=policy) as ph,
        _waiting_for_the_only_slot(ph, fake, seeded.id) as (_, reader),
    ):
        await ph.conversations.cancel(seeded.id)  # 200: stopped (nothing was running)
        fake.latency = 0
        first = await asyncio.wait_for(reader, 1)
        assert first.cancelled
        assert [r.method for r in fake.requests if r.method == "POST"] == []  # never sent
        result = await ph.conversations.create("next", conversation=seeded.id).until_done()
        assert result.complete


async def test_a_run_ending_during_a_refused_cancel_by_id_is_not_cancelled(
    fake: FakePostHog,
) -> None:
    # `result().cancelled` is "whether `stream.cancel()` was called". A scoped key's
    # `conversations.cancel(id)` (PostHog refuses it: 403) marks the stream cancelled
    # while it waits; the run ends meanwhile and the loop closes the stream, so the
    # refusal's `settle_cancel(stopped=False)` finds it closed and leaves the mark: the
    # complete answer reads as cancelled (and its span's outcome says "cancelled"), though
    # nothing was cancelled. `until_done()` returns that result too.
    key = fake.add_key(scopes=["conversation:write", "conversation:read"])
    fake.script_answer("one two three four five six", token_size=5, delay=0.02)
    async with fake.client(api_key=key) as ph:
        stream = ph.conversations.create("q")
        reader = await _reading(stream)
        fake.latency = 0.4  # PostHog is slow to refuse; the run ends meanwhile
        with pytest.raises(aposthog.PermissionDeniedError):
            await ph.conversations.cancel(stream.conversation_id)
        fake.latency = 0
        await asyncio.wait_for(reader, 1)
        result = stream.result()
        assert result.complete
        assert not result.cancelled, "a refused cancel(id) left the complete run cancelled"


async def test_delete(fake: FakePostHog, ph: aposthog.Client) -> None:
    seeded = fake.seed_conversation()
    await ph.conversations.delete(seeded.id)
    with pytest.raises(aposthog.NotFoundError):
        await ph.conversations.get(seeded.id)
    assert [c async for c in ph.conversations.list()] == []
    with pytest.raises(aposthog.NotFoundError) as info:
        # A deleted conversation cannot be written to either: 404 `{"error": …}`.
        await ph.conversations.create("q", conversation=seeded.id).until_done()
    assert info.value.detail == "Conversation does not exist"


async def test_stream_checks_its_arguments(ph: aposthog.Client) -> None:
    with pytest.raises(ValueError, match="UUID"):
        ph.conversations.stream("not-a-uuid")
    with pytest.raises(TypeError):
        ph.conversations.stream(str(uuid.uuid4()), session_id=1)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- argument details


async def test_ids_are_sent_in_canonical_form(fake: FakePostHog, ph: aposthog.Client) -> None:
    conversation = uuid.uuid4()
    spelled = " " + str(conversation).upper() + "\n"
    stream = ph.conversations.create("q", conversation=spelled, trace_id=conversation.hex)
    assert (stream.conversation_id, stream.trace_id) == (str(conversation), str(conversation))
    await stream.until_done()
    assert sent(fake)[0]["conversation"] == str(conversation)


@pytest.mark.parametrize(
    "spelling",
    ["{{{}}}", "urn:uuid:{}", "{}0", "{}-", "urn:{hex}", "{hex}----", "-{hex}---"],
    ids=["braces", "urn", "long", "dash", "urn-hex", "dashes-after", "dashes-anywhere"],
)
async def test_only_the_plain_uuid_forms_are_ids(
    fake: FakePostHog, ph: aposthog.Client, spelling: str
) -> None:
    id = uuid.uuid4()
    wrong = spelling.format(id, hex=id.hex)
    assert len(wrong) >= 36
    with pytest.raises(ValueError, match="conversation must be a UUID"):
        ph.conversations.create("q", conversation=wrong)
    with pytest.raises(ValueError, match="id must be a UUID"):
        await ph.conversations.get(wrong)
    assert fake.requests == []


async def test_a_long_wrong_value_is_shown_clipped(fake: FakePostHog, ph: aposthog.Client) -> None:
    with pytest.raises(ValueError, match="id must be a UUID") as info:
        await ph.conversations.get("x" * 5000)
    assert len(str(info.value)) < 300
    assert fake.requests == []


@pytest.mark.parametrize("spelling", ["SQL", " Sql ", aposthog.AgentMode.SQL])
async def test_a_known_agent_mode_is_sent_in_posthogs_spelling(
    fake: FakePostHog, ph: aposthog.Client, spelling: str
) -> None:
    await ph.conversations.create("q", agent_mode=spelling).until_done()
    assert sent(fake)[0]["agent_mode"] == "sql"


async def test_agent_mode_may_be_any_enum_member(fake: FakePostHog, ph: aposthog.Client) -> None:
    class Mode(enum.Enum):  # an application's own enum, not a str subclass
        QUERY = "SQL"

    await ph.conversations.create("q", agent_mode=Mode.QUERY).until_done()  # type: ignore[arg-type]
    assert sent(fake)[0]["agent_mode"] == "sql"


@pytest.mark.parametrize("context", ["dashboards", ["dashboards"], 42, True])
async def test_a_ui_context_that_is_no_object_is_refused_unsent(
    fake: FakePostHog, ph: aposthog.Client, context: Any
) -> None:
    """
    PostHog reads `ui_context` as its `MaxUIContext` model in every version: a string, a
    list or a number is a 400 "Invalid message content." naming no field, after the AI
    throttle has counted the message. It was sent; it is a `TypeError` naming the
    argument now, for a new conversation and a queued message alike.
    """
    with pytest.raises(TypeError, match="ui_context must be a mapping"):
        await ph.conversations.create("q", ui_context=context).until_done()
    with pytest.raises(TypeError, match="ui_context must be a mapping"):
        await ph.conversations.queue.add(str(uuid.uuid4()), "next", ui_context=context)
    assert [] == fake.requests


async def test_json_arguments_may_be_any_mapping_and_hold_tuples(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    tools = types.MappingProxyType({"search": {"q": (1, 2)}})
    await ph.conversations.create(
        "q",
        contextual_tools=tools,
        ui_context={"dashboards": ()},
        billing_context=("a", ("b",)),
    ).until_done()
    body = sent(fake)[0]
    assert body["contextual_tools"] == {"search": {"q": [1, 2]}}
    assert body["ui_context"] == {"dashboards": []}
    assert body["billing_context"] == ["a", ["b"]]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"contextual_tools": {"search": {"q": float("nan")}}},
        {"contextual_tools": {"search": {1: "x"}}},
        {"resume_payload": {"payload": float("inf")}},
    ],
)
async def test_json_objects_are_checked_as_json(
    fake: FakePostHog, ph: aposthog.Client, kwargs: dict[str, object]
) -> None:
    (name,) = kwargs
    with pytest.raises((TypeError, ValueError), match=name):
        ph.conversations.create("q", conversation=str(uuid.uuid4()), **kwargs)  # type: ignore[arg-type]
    assert fake.requests == []


def _nested(levels: int) -> list[object]:
    value: list[object] = []
    for _ in range(levels - 1):
        value = [value]
    return value


async def test_json_is_refused_just_past_the_depth_bound(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    deepest = MAX_JSON_DEPTH
    with pytest.raises(ValueError, match="ui_context is nested more than"):
        ph.conversations.create("q", ui_context={"x": _nested(deepest)})
    assert fake.requests == []
    await ph.conversations.create("q", billing_context=_nested(deepest)).until_done()
    assert len(fake.requests) == 1


async def test_json_that_shares_its_parts_is_refused_by_size(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    shared: list[object] = []
    for _ in range(19):  # a million lists, from 20 objects
        shared = [shared, shared]
    with pytest.raises(ValueError, match="billing_context has more than"):
        ph.conversations.create("q", billing_context=shared)
    assert fake.requests == []


async def test_list_sends_the_offset(fake: FakePostHog, ph: aposthog.Client) -> None:
    first = fake.seed_conversation(title="First")
    second = fake.seed_conversation(title="Second")
    second.updated_at = first.updated_at.replace(year=first.updated_at.year + 1)
    page = await ph.conversations.list(limit=1, offset=1)
    assert [c.title for c in page.results] == ["First"]
    assert dict(fake.requests[-1].query)["offset"] == "1"


async def test_session_id_is_sent_as_the_header_and_the_field(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    fake.script_answer("a slow answer", token_size=1, delay=0.05)
    async with ph.conversations.create("q", session_id="session-7") as stream:
        await anext(stream)
        await ph.conversations.stream(stream.conversation_id, session_id="session-8").until_done()
    create, attach = [r for r in fake.requests if r.method == "POST"]
    assert create.json()["session_id"] == "session-7"
    assert create.headers["x-posthog-session-id"] == "session-7"
    assert attach.json()["content"] is None
    assert attach.headers["x-posthog-session-id"] == "session-8"


@pytest.mark.parametrize("session_id", ["café", "a\tb", "a\x7fb", ""])
async def test_session_id_must_be_printable_ascii(
    fake: FakePostHog, ph: aposthog.Client, session_id: str
) -> None:
    conversation = str(uuid.uuid4())
    with pytest.raises(ValueError, match="session_id"):
        ph.conversations.create("q", session_id=session_id)
    with pytest.raises(ValueError, match="session_id"):
        ph.conversations.stream(conversation, session_id=session_id)
    with pytest.raises(ValueError, match="session_id"):
        await ph.conversations.queue.add(conversation, "q", session_id=session_id)
    assert fake.requests == []


async def test_append_message_without_an_id_is_a_decode_error(
    fake: FakePostHog, ph: aposthog.Client
) -> None:
    seeded = fake.seed_conversation()
    fake.fail_next(status=201, body={"ok": True}, path="append_message")
    with pytest.raises(aposthog.ResponseDecodeError, match="without a message id"):
        await ph.conversations.append_message(seeded.id, "Saved for later.")


# ---------------------------------------------------------------------- research conversations


async def test_research_mode_in_any_spelling_makes_a_research_conversation(
    ph: aposthog.Client,
) -> None:
    known = ph._api.pipeline.research_conversations
    stream = ph.conversations.create("dig", agent_mode=" RESEARCH ")
    assert list(known) == [stream.conversation_id]


async def test_an_approval_leaves_a_research_conversation_one(ph: aposthog.Client) -> None:
    known = ph._api.pipeline.research_conversations
    research = ph.conversations.create("dig", agent_mode="research").conversation_id
    payload = {"action": "approve", "proposal_id": "p1"}
    ph.conversations.create("yes", conversation=research, resume_payload=payload)
    ph.conversations.create(None, conversation=research, resume_payload=payload)
    assert list(known) == [research]
    ph.conversations.create("and now a chat", conversation=research)
    assert list(known) == []


async def test_the_research_conversations_kept_are_the_most_recently_seen(
    ph: aposthog.Client,
) -> None:
    known = ph._api.pipeline.research_conversations
    kept = RESEARCH_CONVERSATIONS_KEPT
    ids = [str(uuid.uuid4()) for _ in range(kept)]
    known.update(dict.fromkeys(ids))
    ph.conversations.create("again", conversation=ids[0], agent_mode="research")
    newest = ph.conversations.create("new", agent_mode="research").conversation_id
    assert len(known) == kept
    assert ids[1] not in known  # the least recently seen
    assert list(known)[-2:] == [ids[0], newest]


async def test_the_old_research_flag_counts_in_the_chat_windows(fake: FakePostHog) -> None:
    """
    PostHog applies its chat throttles to a message with `deep_research_mode` (the
    newest versions ignore the flag; none counts it as research). The client counted it
    in the research windows: it held back the fourth such message of a minute, which
    PostHog would take, and never charged the chat window PostHog does count.
    """
    fake.throttles.ai_research_burst = aposthog.Rate(1, per=30)
    fake.throttles.ai_burst = aposthog.Rate(1, per=0.5)
    limits = fake.throttles.rate_limits(margin=0.05)
    async with fake.client(rate_limits=limits, max_retries=0) as ph:
        started = time.monotonic()
        for _ in range(2):
            await ph.conversations.create("dig", deep_research_mode=True).until_done()
        waited = time.monotonic() - started
    assert 0.4 <= waited < 10  # the chat window's wait, not the research window's 30 s
    assert 429 not in fake.status_counts
    assert [True, True] == [r.json().get("deep_research_mode") for r in fake.requests]


@pytest.mark.parametrize("mode", [aposthog.AgentMode.SANDBOX, "sandbox", "Sandbox"])
async def test_the_sandbox_mode_is_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client, mode: Any
) -> None:
    """
    PostHog's `create()` refuses `agent_mode: "sandbox"` in every version (a 400, "must
    be opened via the open endpoint", after its AI throttle counted the message).
    """
    with pytest.raises(ValueError, match="agent_mode 'sandbox'"):
        ph.conversations.create("hi", agent_mode=mode)
    assert [] == fake.requests


@pytest.mark.parametrize("content", ["top\x00pages", "top pages \ud83d"])
async def test_content_posthog_cannot_take_is_refused_before_sending(
    fake: FakePostHog, ph: aposthog.Client, content: str
) -> None:
    """
    PostHog's `content` is a DRF CharField: its ProhibitNullCharactersValidator refuses a
    NUL with a 400 (as FakePostHog does), and a lone surrogate cannot be sent as UTF-8
    at all. As README promises for what PostHog would refuse, either is a ValueError
    naming `content` before anything is sent: not a request that spends one of the
    user's 10-a-minute, 100-a-day AI conversation slots only to be refused.
    """
    with pytest.raises(ValueError, match="content"):
        async with ph.conversations.create(content) as stream:
            await stream.until_done()
    assert [] == fake.requests


@pytest.mark.parametrize(
    "wrong", [{"trace_id": "not-a-uuid"}, {"max_reattach_attempts": -1}], ids=["trace", "reattach"]
)
async def test_a_refused_create_leaves_the_research_conversations_as_they_were(
    ph: aposthog.Client, wrong: dict[str, object]
) -> None:
    """
    A call refused for a wrong argument has no effect. `create()` notes the conversation
    as research (or as a chat again) before it checks `trace_id` and
    `max_reattach_attempts`: after a refused research-mode call, the conversation's next
    chat message waits in the research windows (3 a minute, 10 a day), and after a refused
    chat message to a research conversation, a re-attach is counted outside them.
    """
    known = ph._api.pipeline.research_conversations
    fresh = str(uuid.uuid4())
    with pytest.raises(ValueError, match=r"trace_id|max_reattach_attempts"):
        ph.conversations.create("dig", conversation=fresh, agent_mode="research", **wrong)  # type: ignore[arg-type]
    research = ph.conversations.create("dig", agent_mode="research").conversation_id
    with pytest.raises(ValueError, match=r"trace_id|max_reattach_attempts"):
        ph.conversations.create("now a chat", conversation=research, **wrong)  # type: ignore[arg-type]
    assert list(known) == [research]


async def test_a_refused_research_create_spends_no_research_window(fake: FakePostHog) -> None:
    """
    The same, seen from the rate limits: with room for one research message, a chat
    message to a conversation whose research-mode create() was refused (a bad trace id)
    takes that room, and the next research message, PostHog's first, is refused unsent
    with `RateLimitError`.
    """
    limits = aposthog.RateLimits(ai_research=(aposthog.Rate(1, per=3600),))
    policy = aposthog.RetryPolicy(max_retries=0, max_retry_after=0.01, deadline=0.5)
    async with fake.client(rate_limits=limits, retry=policy) as ph:
        fresh = str(uuid.uuid4())
        with pytest.raises(ValueError, match="trace_id"):
            ph.conversations.create("dig", conversation=fresh, agent_mode="research", trace_id="x")
        await ph.conversations.create("a chat", conversation=fresh).until_done()
        await ph.conversations.create("dig", agent_mode="research").until_done()
