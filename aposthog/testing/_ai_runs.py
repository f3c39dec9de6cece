"""
FakePostHog's PostHog AI runs: scripted answers, their timeline, and the event stream.

A run is generated "server-side" without a background task: its events are laid out on
a timeline when the run starts (event i is due `i * delay` seconds later), and every
connection reads that timeline. So the generation goes on when a client disconnects, and
a cancel simply ends the timeline. Nothing outlives the fake.

A re-attach reads the run's stream as PostHog's Redis stream holds it. PostHog deletes
that stream whenever a reader goes away (`AgentExecutor.stream_conversation` ends with
`finally: await self._redis_stream.delete_stream()`, `ee/hogai/core/executor.py`); the
workflow's later events create it anew, and a re-attach reads it from its start
(`read_stream(start_id="0")`). So a connection that ends before the run does (the client
closed it, or a script's `drop_after` cut it) deletes every event produced by then, and a
re-attach replays only what the run produced after that, then follows live. Events
produced before the drop that the dropped connection had not written yet (with
`delay=0`, all of them but the held end) are lost for good: a final message among them
reaches the client only through `GET conversations/{id}/`. The script's
`keep_stream_on_disconnect` restores the replay of the whole run (a server that keeps
the stream, or a proxy that keeps reading PostHog), and `stream_max_length` caps a
replay.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import anyio
import attrs

from ._loopback import DropConnection

__all__ = ["FAILURE_TEXT", "AIScript", "Run", "StreamStats", "failed_run", "sse_event"]

KEEPALIVE = b": keepalive\n\n"
STREAM_MAX_LENGTH = 1000
"""PostHog's `CONVERSATION_STREAM_MAX_LENGTH`: the events of a run its Redis stream keeps."""
FAILURE_TEXT = "Oops! Something went wrong. Please try again."
"""`AgentExecutor._failure_message()`: what the stream sends when the workflow failed."""


def sse_event(name: str, data: str) -> bytes:
    """One event exactly as PostHog frames it."""
    return f"event: {name}\ndata: {data}\n\n".encode()


def message_json(message: dict[str, Any]) -> str:
    """A message as pydantic's `model_dump_json(exclude_none=True)` writes it."""
    return json.dumps(
        {k: v for k, v in message.items() if v is not None},
        separators=(",", ":"),
        ensure_ascii=False,
        sort_keys=True,
    )


def conversation_json(conversation: dict[str, Any]) -> str:
    """A conversation as `json.dumps(serializer.data)` writes it: spaces, nulls, ASCII."""
    return json.dumps(conversation)


def _at_least(low: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator: a finite number (not a bool) of at least `low`."""

    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        # (Not infinite: a run whose events never come holds its stream open for good.)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{attribute.name} must be a number >= {low}, got {value!r}")
        if not low <= value < math.inf:  # NaN too
            raise ValueError(f"{attribute.name} must be a finite number >= {low}, got {value!r}")

    return check


def _count(low: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator: an int (not a bool) of at least `low`."""

    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attribute.name} must be an int >= {low}, got {value!r}")
        if value < low:
            raise ValueError(f"{attribute.name} must be an int >= {low}, got {value!r}")

    return check


def _drop_points(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """`drop_after`: None, a count of events, or a sequence of them (one per connection)."""
    if value is None:
        return
    points = value if isinstance(value, Sequence) and not isinstance(value, str) else (value,)
    for point in points:
        if isinstance(point, bool) or not isinstance(point, int) or point < 0:
            raise TypeError(
                f"{attribute.name} must be None, an int >= 0 or a sequence of them, got {value!r}"
            )


def _instance(kind: type, name: str) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator: an instance of `kind` (named `name` in the error)."""

    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, kind):
            raise TypeError(f"{attribute.name} must be {name}, got {type(value).__name__}")

    return check


def _raw_events(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """`raw_events`: a sequence of `(name, data)` pairs of str."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{attribute.name} must be a sequence of (name, data) pairs, got {value!r}")
    for event in value:
        if (
            isinstance(event, str)
            or not isinstance(event, Sequence)
            or len(event) != 2
            or not all(isinstance(part, str) for part in event)
        ):
            raise TypeError(
                f"{attribute.name} must be a sequence of (name, data) pairs of str, "
                f"got {event!r} in it"
            )


_TEXT = _instance(str, "a str")


def _name(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A str or None."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str or None, got {type(value).__name__}")


def _cap(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """`stream_max_length`: None (no cap) or a count of at least 1."""
    if value is not None:
        _count(1)(_, attribute, value)


def _texts(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, str) or not all(isinstance(text, str) for text in value):
        raise TypeError(f"{attribute.name} must be a sequence of str, got {value!r}")


def _no_false(value: str | bool | None) -> str | bool | None:
    return None if value is False else value


@attrs.frozen(kw_only=True)
class AIScript:
    """
    How the fake PostHog AI answers one message: `fake.script_answer(text, **options)`
    builds and queues one; a script built beforehand goes in `fake.ai_scripts.append`.

    Attributes:
        text: the final answer.
        token_size: characters each in-progress snapshot adds.
        delay: seconds between events.
        chunk_size: bytes per network write (None: one write per event); small values
            split multi-byte characters across writes.
        chunk_delay: seconds between the writes of one event.
        title: the title PostHog generates for a new conversation ("" derives one from
            the question; None never sets one, so the conversation stays unfetchable).
        tool: the name of a tool the assistant calls before answering, or None.
        tool_text: the text of the assistant message that calls the tool (an earlier
            answer of the run), streamed as snapshots of `token_size` characters, then
            its final message with the tool call.
        updates: progress texts of that tool call (`update` events).
        fail: end with an in-band `ai/failure` instead of the final answer: its text, or
            True for PostHog's bare failure (no content, no id).
        fail_after: snapshots streamed before the failure (default: half of them).
        generation_error: send `status: generation_error` before the answer, as PostHog
            does when an insight it generated fails its schema check and it generates it
            again; the run then goes on (with `fail`, to its failure, as PostHog ends a
            run whose retries failed too).
        drop_after: cut the connection after this many events (the run goes on
            server-side); a sequence cuts the first connections one after another.
        raw_events: `(name, data)` events sent as they are after the echo of the
            question, to play a newer (or broken) server.
        end_after_connections: the run's final event (its end) is not produced before
            this many connections have read it: the run stays in progress until the
            client has re-attached (or attached) that often, however slow the machine.
            0: the end is due on the timeline like every other event.
        stream_max_length: the events PostHog's Redis stream keeps (its cap, 1000; None:
            all). A later connection (a re-attach) replays only the last this many
            events produced when it opens, so past the cap it starts mid-run: without
            the `conversation` event and the echo, maybe mid-answer. (The fake trims
            exactly and only where a replay starts; Redis trims approximately, keeping
            at least this many, and a reader never falls that far behind here.)
        approval: the name of a tool whose call needs the user's approval: the run ends
            awaiting it, as PostHog's does when the tool calls `interrupt()` with an
            `ApprovalRequest`. After the echo (and `tool`, if any) it streams `text` as
            snapshots, then the final `ai` message whose `tool_calls` call this tool
            (`args`: `approval_payload`), and ends there (no answer follows; the approval
            event itself never reaches HTTP clients). The conversation is then idle with a
            pending approval card in `pending_approvals`: `proposal_id` (a new UUID),
            `decision_status` "pending", `tool_name`, `preview` (`approval_preview`),
            `payload`, `original_tool_call_id` (the call's id) and `message_id` (a uuid4 of
            its own, not the message's id). Approve or reject it with `content: null` and
            `resume_payload: {"action": "approve" | "reject", "proposal_id": ...}`; a new
            message instead marks it `auto_rejected`. Not with `fail` or `generation_error`.
        approval_preview: the card's `preview` text.
        approval_payload: the card's `payload` (and the tool call's `args`).
        keep_stream_on_disconnect: a connection that ends early leaves the run's stream
            whole, so a re-attach replays the run from its start (up to
            `stream_max_length`). PostHog deletes the stream when its reader goes away
            (see the module's docstring); this plays a server that does not notice the
            disconnect (a proxy that drops the client's side only and keeps reading
            PostHog), or one that does not delete the stream. Default False: PostHog's
            behaviour, where a re-attach replays only what was produced after the drop.
    """

    text: str = attrs.field(default="This is the fake PostHog AI's answer.", validator=_TEXT)
    token_size: int = attrs.field(default=4, validator=_count(1))
    delay: float = attrs.field(default=0.0, validator=_at_least(0))
    chunk_size: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_count(1))
    )
    chunk_delay: float = attrs.field(default=0.0, validator=_at_least(0))
    title: str | None = attrs.field(default="", validator=_name)
    tool: str | None = attrs.field(default=None, validator=_name)
    tool_text: str = attrs.field(default="", validator=_TEXT)
    updates: Sequence[str] = attrs.field(default=(), validator=_texts)
    # `fail=False` is no failure, as None is (a test parametrized over True and False).
    fail: str | bool | None = attrs.field(default=None, converter=_no_false)
    fail_after: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_count(0))
    )
    generation_error: bool = False
    drop_after: int | Sequence[int] | None = attrs.field(default=None, validator=_drop_points)
    raw_events: Sequence[tuple[str, str]] = attrs.field(default=(), validator=_raw_events)
    end_after_connections: int = attrs.field(default=0, validator=_count(0))
    stream_max_length: int | None = attrs.field(default=STREAM_MAX_LENGTH, validator=_cap)
    keep_stream_on_disconnect: bool = False
    approval: str | None = attrs.field(default=None, validator=_name)
    approval_preview: str = attrs.field(default="", validator=_TEXT)
    approval_payload: Mapping[str, Any] = attrs.field(
        factory=dict, validator=_instance(Mapping, "a mapping")
    )

    def __attrs_post_init__(self) -> None:
        if self.approval is not None and (self.fail is not None or self.generation_error):
            raise ValueError("approval ends the run awaiting a decision: not with a failure")

    def drop_point(self, connection: int) -> int | None:
        """After how many events connection number `connection` (0-based) is cut."""
        if self.drop_after is None:
            return None
        if isinstance(self.drop_after, int):
            return self.drop_after if connection == 0 else None
        points = list(self.drop_after)
        return points[connection] if connection < len(points) else None


@attrs.define
class TimedEvent:
    """One event of a run: due `at` seconds after the run starts."""

    at: float
    data: bytes
    final: dict[str, Any] | None = None  # a message to store in the conversation
    title: str | None = None  # the title set at this moment
    approval: dict[str, Any] | None = None  # an approval card stored at this moment


@attrs.define
class StreamStats:
    """What FakePostHog saw of its event streams (for tests to assert on)."""

    opened: int = 0
    open: int = 0
    completed: int = 0
    disconnected: int = 0  # the client went away (closed, cancelled, timed out)
    dropped: int = 0  # cut by a script's `drop_after`


@attrs.define(eq=False)
class Run:
    """One generation: its timeline, and whether it was cancelled."""

    script: AIScript
    events: list[TimedEvent]
    start: float = attrs.field(factory=time.monotonic)
    cancelled_at: float | None = None
    connections: int = 0
    session_id: str | None = None
    # Set (and replaced) on a change. asyncio's: the fake serves on asyncio (aiohttp), and a
    # run is built and stepped outside a running loop too, where older anyio releases
    # refuse to create their Event.
    changed: asyncio.Event = attrs.field(factory=asyncio.Event)
    released_at: float | None = None  # when the end stopped being held (script's option)
    # Where each connection's replay began: the index of its first event (0: the start).
    replay_starts: list[int] = attrs.field(factory=list)
    # Events at the start of the timeline no longer in the run's stream: a reader that went
    # away deleted them (PostHog's `delete_stream()` when a request's reader ends).
    deleted: int = 0
    # The run PostHog went on with in this run's stream once it ended (a queued message), and
    # the conversation's hook that starts it, which a reader at the end calls first.
    successor: Run | None = attrs.field(default=None, repr=False)
    on_end: Callable[[], None] | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.script.end_after_connections <= 0:
            self.released_at = self.start

    def due_at(self, event: TimedEvent) -> float:
        """When `event` is due: the last one not before the end is released."""
        at = self.start + event.at
        if self.events and event is self.events[-1]:
            return max(at, float("inf") if self.released_at is None else self.released_at)
        return at

    @property
    def end(self) -> float:
        """When the last event is due (or when it was cancelled)."""
        last = self.due_at(self.events[-1]) if self.events else self.start
        return last if self.cancelled_at is None else min(last, self.cancelled_at)

    def _changed(self) -> None:
        # Wakes every stream sleeping until its next event; later sleeps wait on a new one.
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def active(self, now: float | None = None) -> bool:
        """Whether it is still generating."""
        return (time.monotonic() if now is None else now) < self.end

    def due(self, now: float | None = None) -> list[TimedEvent]:
        """The events produced by now."""
        moment = time.monotonic() if now is None else now
        limit = min(moment, self.end)
        return [e for e in self.events if self.due_at(e) <= limit]

    def cancel(self) -> None:
        """Stop generating now; open streams end."""
        if self.active():
            self.cancelled_at = time.monotonic()
        self._changed()

    def reader_gone(self) -> None:
        """
        A connection ended before the run did: PostHog deletes the run's stream, every
        event produced by now (unless the script keeps it, see `AIScript`).
        """
        if not self.script.keep_stream_on_disconnect and self.active():
            self.deleted = max(self.deleted, len(self.due()))

    def stream(
        self, stats: StreamStats, keepalive: Callable[[], float | None]
    ) -> AsyncIterator[bytes]:
        """
        The bytes of one connection: the run's stream as it is now, from its oldest event
        (the run's start, or, for a re-attach, the first event produced after the last
        reader went away, or the oldest one the capped stream kept), then live, then on into
        the `successor` its conversation started from its queue, if any.
        """
        start = 0
        cap = self.script.stream_max_length
        if self.connections:
            start = self.deleted
            if cap is not None:
                # Before this connection releases a held end: produced after it opens.
                start = max(start, len(self.due()) - max(0, cap))
        return _stream(self, stats, keepalive, self.attach(start), start)

    def attach(self, start: int) -> int | None:
        """A reader joins at event `start`: its drop point (enough readers release the end)."""
        drop = self.script.drop_point(self.connections)
        self.replay_starts.append(start)
        self.connections += 1
        if self.released_at is None and self.connections >= self.script.end_after_connections:
            self.released_at = time.monotonic()
            self._changed()
        return drop


async def _sleep_until(run: Run, moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        with anyio.move_on_after(delay):
            await run.changed.wait()


async def _stream(
    run: Run,
    stats: StreamStats,
    keepalive: Callable[[], float | None],
    drop: int | None,
    start: int = 0,
) -> AsyncIterator[bytes]:
    stats.opened += 1
    stats.open += 1
    outcome = "disconnected"
    written = 0
    last_write = time.monotonic()
    try:
        while True:
            for event in run.events[start:]:
                if drop is not None and run.due_at(event) == float("inf"):
                    # The held end waits for a re-attach, which waits for this cut: cut now
                    # (sooner than `drop` when the replay held fewer events: a deleted stream).
                    outcome = "dropped"
                    raise DropConnection
                while True:
                    due = run.due_at(event)  # the end moves when it is released
                    now = time.monotonic()
                    if run.cancelled_at is not None and due > run.cancelled_at:
                        outcome = "completed"
                        return
                    if now >= due:
                        break
                    interval = keepalive()
                    if interval is not None and now - last_write >= interval:
                        yield KEEPALIVE
                        last_write = time.monotonic()
                        continue
                    wake = due if interval is None else min(due, last_write + interval)
                    await _sleep_until(run, wake)
                if drop is not None and written >= drop:
                    outcome = "dropped"
                    raise DropConnection
                size = run.script.chunk_size or len(event.data)
                for i in range(0, len(event.data), size):
                    if i and run.script.chunk_delay:
                        await anyio.sleep(run.script.chunk_delay)
                    yield event.data[i : i + size]
                written += 1
                last_write = time.monotonic()
            if run.on_end is not None:
                run.on_end()  # the conversation starts its next queued message, if any
            if run.successor is None:
                break
            # PostHog's workflow left its stream open for the queued run: the reader reads on.
            run, written = run.successor, 0
            start = run.deleted
            drop = run.attach(start)
        outcome = "completed"
    finally:
        if outcome != "completed":
            run.reader_gone()  # PostHog's request handler deletes the run's stream
        stats.open -= 1
        setattr(stats, outcome, getattr(stats, outcome) + 1)


def build_run(
    script: AIScript,
    *,
    content: str | None,
    human_id: str | None,
    trace_id: str,
    conversation: Callable[[str | None], dict[str, Any]] | None,
    ui_context: Any = None,
) -> Run:
    """
    Lay out a run the way PostHog streams one (reference §3.5).

    `conversation(title)` renders the conversation for the `conversation` events; None
    when the conversation is not new (PostHog sends the event only for new ones).
    """
    events: list[TimedEvent] = []
    clock = [0.0]

    def add(name: str, data: str, *, advance: bool = True, **extra: Any) -> None:
        events.append(TimedEvent(clock[0], sse_event(name, data), **extra))
        if advance:
            clock[0] += script.delay

    title = script.title
    if title == "" and content:
        title = content.strip().splitlines()[0][:60]
    if conversation is not None:
        # Sent with the echo at once: PostHog has created and stored both before it streams.
        add("conversation", conversation_json(conversation(None)), advance=False)
    if content is not None and human_id is not None:
        human: dict[str, Any] = {
            "type": "human",
            "content": content,
            "id": human_id,
            "trace_id": trace_id,
        }
        if ui_context is not None:  # pydantic's dump leaves out only what is None
            human["ui_context"] = ui_context
        add("message", message_json(human), final=human)
    for name, data in script.raw_events:
        add(name, data)
    titled = conversation is None or not title

    def maybe_title() -> None:
        nonlocal titled
        if not titled and conversation is not None and title:
            add("conversation", conversation_json(conversation(title)), title=title)
            titled = True

    size = max(1, script.token_size)
    if script.tool:
        # The message that calls the tool streams its text as any answer does: cumulative
        # snapshots without an id, then the final message with its tool call.
        tool_text = script.tool_text
        for n, cut in enumerate(range(size, len(tool_text), size)):
            add("message", message_json({"type": "ai", "content": tool_text[:cut]}))
            if n == 0:
                maybe_title()
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        calls = [{"id": call_id, "name": script.tool, "args": {}, "type": "tool_call"}]
        ai = {
            "type": "ai",
            "content": script.tool_text,
            "id": str(uuid.uuid4()),
            "tool_calls": calls,
        }
        add("message", message_json(ai), final=ai)
        maybe_title()
        for text in script.updates:
            update = {"id": ai["id"], "tool_call_id": call_id, "content": text}
            add("update", message_json(update))
        tool = {"type": "tool", "content": "done", "tool_call_id": call_id, "id": str(uuid.uuid4())}
        add("message", message_json(tool), final=tool)

    text = script.text
    cuts = list(range(size, len(text), size)) + ([len(text)] if text else [])
    if script.approval is not None:
        _awaiting_approval(script, add, maybe_title, cuts)
        return Run(script, events)
    if script.generation_error:
        add("status", message_json({"type": "generation_error"}))
    if script.fail is not None:
        keep = script.fail_after if script.fail_after is not None else len(cuts) // 2
        cuts = cuts[:keep]
    for n, cut in enumerate(cuts):
        add("message", message_json({"type": "ai", "content": text[:cut]}))
        if n == 0:
            maybe_title()
    maybe_title()
    if script.fail is not None:
        failure: dict[str, Any] = {"type": "ai/failure"}
        if isinstance(script.fail, str):
            failure.update(content=script.fail, id=str(uuid.uuid4()))
        add("message", message_json(failure), final=failure)
    else:
        ai = {"type": "ai", "content": text, "id": str(uuid.uuid4())}
        add("message", message_json(ai), final=ai)
    return Run(script, events)


def _awaiting_approval(
    script: AIScript,
    add: Callable[..., None],
    maybe_title: Callable[[], None],
    cuts: list[int],
) -> None:
    """
    The end of a run whose tool call needs approval: the text's snapshots, then the
    message calling the tool, stored with its pending approval card (PostHog's
    `_store_approval_card_data`, after its `ApprovalPayload` with a message id of its own).
    """
    assert script.approval is not None
    text = script.text
    for n, cut in enumerate(cuts):
        add("message", message_json({"type": "ai", "content": text[:cut]}))
        if n == 0:
            maybe_title()
    maybe_title()
    call_id = f"call_{uuid.uuid4().hex[:12]}"
    payload = dict(script.approval_payload)
    calls = [{"id": call_id, "name": script.approval, "args": payload, "type": "tool_call"}]
    ai = {"type": "ai", "content": text, "id": str(uuid.uuid4()), "tool_calls": calls}
    card = {
        "proposal_id": str(uuid.uuid4()),
        "decision_status": "pending",
        "tool_name": script.approval,
        "preview": script.approval_preview,
        "payload": payload,
        "original_tool_call_id": call_id,
        "message_id": str(uuid.uuid4()),
    }
    add("message", message_json(ai), final=ai, approval=card)


def failed_run() -> Run:
    """
    A run whose workflow failed before it streamed anything (PostHog's runner raised in
    `_init_or_update_state`): the stream holds only `AgentExecutor._failure_message()`,
    which the conversation does not store.
    """
    failure = {"type": "ai/failure", "content": FAILURE_TEXT, "id": str(uuid.uuid4())}
    return Run(AIScript(), [TimedEvent(0.0, sse_event("message", message_json(failure)))])
