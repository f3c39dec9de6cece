"""
The conversation-state accumulator: typed events in, what to deliver out. Pure and
synchronous; `ConversationStream` feeds it and only awaits I/O.

PostHog's stream (reference §3.5 to §3.6) has four traits this module exists for:

* An in-progress `ai` message has no `id` and carries the whole text so far (a
  cumulative snapshot). Text deltas are computed here, against the text already given
  out, so a delta never repeats or contradicts earlier ones.
* A final message has an `id`, and replaces the snapshots. Its text usually extends
  what was streamed; only the missing tail is given out then.
* A re-attach replays what PostHog's Redis stream of the run holds: the events produced
  since the last reader went away (PostHog deletes the stream then, and the run's later
  events create it anew), or the whole run from its start when nothing deleted it (a
  proxy that kept reading PostHog). Replayed events must not be
  delivered twice, yet they carry no sequence number. They are recognised by content:
  a final message by its id; a snapshot by its position (snapshots that precede the
  n-th final assistant message belong to it, so once that message is known they are
  replays) or, for the message still in progress, by being a prefix of the last
  snapshot delivered; any other event by being identical to one already delivered.
* PostHog's Redis stream is capped (about 1000 events): the replay of a long run lacks
  its start, maybe every final message already known. A replayed final message places
  the snapshots after it (by its position among the final messages); until one does,
  a snapshot is a replay only if its text (trailing whitespace aside) begins a known
  final assistant message's text, and the first one that begins none is new: the replay
  has passed them. A new final message also ends the replay of those before it. So
  live text never stalls behind a trimmed replay, and none is given out twice: a new
  snapshot mistaken for a replay only defers its text to the next one.
* What the run produced before a drop and had not delivered is gone from the stream,
  final messages included: a re-attached run is reconciled with the conversation when it
  ends (`catch_up`), which puts the missed messages at their places in `messages`.
* A re-attach finds whichever run the conversation has in progress, not necessarily
  this one: when the message's POST never reached PostHog (or its run ended), another
  client's run may be generating. Until this run's human message has been seen
  (`expect_echo()`), the first human message is checked: PostHog stores the trace id
  the message was sent with on it and echoes it (`MessageSerializer.validate`), so one
  with another trace id, or another text, is another run's: `OtherRunError`, and
  nothing of it is taken. An echo without a trace id (older PostHog built the message
  from its content alone) is taken as before: nothing tells the runs apart then.

The deltas rule, exactly: a snapshot's text is given out up to its last non-space
character (trailing whitespace is held back, since a final message may trim it), and
only when it extends the text already given out for that message; a final message
gives out the rest of its text when it extends that text. Text of separate assistant
messages is joined by a blank line. So `"".join(deltas)` equals
`ConversationResult.text` whenever PostHog streams by extension, which is how it
merges chunks. When the server rewrites streamed text (never seen), no delta
contradicts the earlier ones: the stream just stops adding text for that message, and
`ConversationResult.streamed_text` differs from `.text`, so a caller can tell. The same
holds for a final message a re-attach's gap lost and the catch-up recovered ahead of
text already given out (an earlier answer of the run): its text is in `.text`, at its
place, never given out late as a delta. The message after it is new text all the
same: the first assistant text a re-attach brings that does not go on from the text
given out (nor replays it) begins the next message, given out after a blank line.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from ._converter import _NO_EXTRA_FIELDS
from .models.conversations import ConversationResult, ConversationSummary
from .models.events import ConversationEvent, MessageEvent, StatusEvent, StreamEvent
from .models.messages import (
    AssistantMessage,
    FailureMessage,
    HumanMessage,
    Message,
    NotebookUpdateMessage,
    ReasoningMessage,
    TaskExecutionMessage,
    ToolCallMessage,
)

__all__ = ["SEPARATOR", "ConversationState", "Delivery", "OtherRunError", "made_key"]

SEPARATOR = "\n\n"
"""What `text_deltas()` puts between two assistant messages of one run."""


class Delivery(NamedTuple):
    """One event to give the caller, and the text it adds to the answer ("" if none)."""

    # A tuple: one is made per event, and a frozen attrs instance costs twice as much.
    event: StreamEvent
    text: str = ""


class OtherRunError(Exception):
    """
    A re-attach found another run: its human message is not the one this run sent (see
    `ConversationState.expect_echo`). Nothing of that message was taken.
    """

    def __init__(self, message: HumanMessage, *, after_own: bool = False) -> None:
        super().__init__("the conversation's run in progress is another message's")
        self.message = message
        #: This run's own messages came first on the connection (its echo lost in the
        #: gap): `message` starts the run of a message queued behind it, which PostHog
        #: streams on after the run on the same stream.
        self.after_own = after_own


def _sent_as(sent: str) -> str:
    # PostHog's `MessageSerializer.content` is a DRF CharField: it stores the text trimmed.
    return sent.strip()


_new_delivery = tuple.__new__


def made_key(message: Message) -> str | None:
    """
    The key of a message still being made, sent again and again with the whole of it so
    far until its final message (with its own id) comes, each snapshot replacing the one
    before; None for any other message. Such are a notebook being written without an id
    (PostHog's `_stream_notebook_content`: "not providing id to count it as a partial
    message"), and any message but the user's or the assistant's text under a `temp-` id
    (PostHog's notebook artifact being written, `temp-notebook`: "consistent temp ID so
    frontend replaces instead of adds"). The assistant's text has its own path (deltas).
    """
    ident = message.id
    if ident is None:
        if message.__class__ is NotebookUpdateMessage:
            return "notebook " + message.notebook_id
        return None
    if ident.startswith("temp-") and message.__class__ not in (AssistantMessage, HumanMessage):
        return f"{message.type} {ident}"
    return None


_UNPLACED = -1  # `_cursor` after a re-attach, before the replay is placed
#: How many answers left unfinished by a later turn are remembered (each a text).
_UNFINISHED_KEPT = 8
#: How many snapshots of the answer streaming now that a later one did not extend (a
#: rewrite, or an answer split at a web search) are remembered (each a text).
_SUPERSEDED_KEPT = 8


class ConversationState:
    """
    Accumulates one run of a conversation across connections.

    Example:
        >>> from aposthog.models.events import decode_event
        >>> state = ConversationState()
        >>> state.feed(decode_event("message", '{"type":"ai","content":"Hel"}')).text
        'Hel'
        >>> state.feed(decode_event("message", '{"type":"ai","content":"Hello"}')).text
        'lo'
        >>> state.feed(decode_event("message", '{"type":"ai","content":"Hello!","id":"m1"}')).text
        '!'
        >>> state.begin_attempt()  # reconnected: PostHog may replay the run
        >>> state.feed(decode_event("message", '{"type":"ai","content":"Hel"}')) is None
        True
    """

    # Slots: a thousand open streams hold a thousand of these.
    __slots__ = (
        "_answer_snapshots",
        "_arrived",
        "_assistant_ids",
        "_attempt",
        "_being_made",
        "_cursor",
        "_done",
        "_echo",
        "_error_after",
        "_errored_turns",
        "_failed_at",
        "_gap",
        "_humans",
        "_idless_forms",
        "_index",
        "_latest_human",
        "_messages",
        "_nested",
        "_own_seen",
        "_parked",
        "_queued",
        "_replay_count",
        "_replaying",
        "_resume_stream",
        "_resumes",
        "_seen_in",
        "_shown",
        "_snapshot",
        "_streamed",
        "_superseded",
        "_turn",
        "_turnless",
        "_unanswered",
        "_unechoed",
        "_unfinished",
        "conversation",
        "ended",
        "failure",
        "generation_error",
        "human_id",
        "replaced",
    )

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._index: dict[str, int] = {}  # final message id -> position in _messages
        self._assistant_ids: dict[str, int] = {}  # top-level final `ai` id -> its ordinal
        # Ordinal of the message this connection's next snapshot belongs to; _UNPLACED
        # after a re-attach until a replayed final message (or a new snapshot) places it.
        self._cursor = 0
        self._replaying = False
        self._snapshot: AssistantMessage | None = None  # last top-level snapshot delivered
        self._nested: dict[str, AssistantMessage] = {}  # subagent snapshots, by parent call
        # The messages PostHog is making (see `made_key`: a notebook being written, say),
        # the last snapshot of each, by its key, since the last final message.
        self._being_made: dict[str, Message] = {}
        # The current assistant message's text given out so far: _shown[:_done].
        self._shown = ""
        self._done = 0
        self._streamed: list[str] = []
        # Non-message events delivered, by the turn they came in and their wire form: one
        # without an id (a bare failure, `generation_error`) is a replay only within its
        # turn (or before any), since a queued run that fails as the run before it sends
        # the same bytes.
        self._seen_in: set[tuple[str | None, str, str | bytes]] = set()
        #: Every id-less message's content key, whatever its turn (`_idless_final`).
        self._idless_forms: set[str] = set()
        #: The turns (their human message's id) in which PostHog sent `generation_error`.
        self._errored_turns: list[str | None] = []
        #: Those of them in which no new final message of the run followed it (yet).
        self._unanswered: list[str | None] = []
        # Each of those turns' latest generation_error came after this final message (None:
        # before any): where a catch-up that puts missed messages in their places
        # (`_insert_missed`) looks for what followed it.
        self._error_after: dict[str | None, tuple[Message | None, int]] = {}
        # The connection (0: the first) each final message with an id came on; one a
        # catch-up put in its place came on none (it was lost in the gap before the
        # connection of the next message that came).
        self._attempt = 0
        self._arrived: dict[str, int] = {}
        # The human message (id) of the turn the stream is in: the latest one taken, new
        # or replayed (a re-attach keeps it: PostHog's replay after a deleted stream holds
        # no human message; a whole run's replay places itself by each one it repeats).
        self._turn: str | None = None
        # No human message yet on this connection: its events may be a whole replay's of
        # the turn before any human message (an attached stream's first), whatever `_turn`.
        self._turnless = False
        # The texts of answers a later turn left unfinished (a run that failed mid-answer),
        # the latest few: a whole replay repeats their snapshots, which never became final.
        self._unfinished: collections.deque[str] = collections.deque(maxlen=_UNFINISHED_KEPT)
        # The texts of the answer streaming now that a later snapshot did not extend (it
        # rewrote them, or began the next part of an answer split at a web search), the
        # latest few: a replay from the start repeats their snapshots, which the last
        # snapshot does not begin with.
        self._superseded: collections.deque[str] = collections.deque(maxlen=_SUPERSEDED_KEPT)
        # The texts of the parts before the one streaming now of an answer PostHog split
        # at a server tool (a web search), given out, whose finals are still to come (see
        # `_split_off`).
        self._parked: list[str] = []
        # This run's message (as PostHog stores it) and trace id, while its echo is awaited
        # on a re-attach: the first human message must be it (see `expect_echo`).
        self._echo: tuple[str, str] | None = None
        # A resume with no message of its own (see `expect_resume`): until its run began,
        # and for good.
        self._resumes = False
        self._resume_stream = False
        # Messages of this run taken while its echo was awaited (see `OtherRunError`).
        self._unechoed = False
        # Human messages met on this stream after its run's own: queued messages' runs.
        self._queued: set[str | None] = set()
        #: The conversation showed this stream's runs ended while a run went on (see
        #: `ended_meanwhile`).
        self.ended = False
        self._own_seen = False  # a message of this stream's runs came on this connection
        self._gap = False  # re-attached, and no new assistant text taken since (`_after_gap`)
        # Top-level snapshots that came (new ones, each once) since the last final message
        # with an id: a replay from that message on repeats exactly these, in order,
        # however they read (a rewrite, an empty snapshot before and after a web search).
        self._answer_snapshots = 0
        # On a re-attach whose replay brought that final message: the snapshots it has
        # brought since (the first `_answer_snapshots` are replays); else None.
        self._replay_count: int | None = None
        self.human_id: str | None = None
        #: Final messages whose content a later one of the same id replaced, so far.
        self.replaced = 0
        self.conversation: ConversationSummary | None = None
        self.failure: FailureMessage | None = None
        self.generation_error = False
        # Human messages taken (one per run on the stream: queued messages run on it
        # too), and how many there were when the last failure came: a failure ends the
        # run it came in, not the runs queued after it.
        self._humans = 0
        self._failed_at = -1
        self._latest_human: str | None = None  # the id of the latest run's human message

    # ------------------------------------------------------------------ inputs

    def begin_attempt(self) -> None:
        """
        A new connection is starting: expect the run to be replayed, from its start, or
        from anywhere before what was seen (PostHog's capped stream trimmed it), or only
        from after it (PostHog deleted the stream when the last reader went away).
        """
        self._cursor = _UNPLACED
        self._attempt += 1
        self._replaying = True
        self._replay_count = None
        self._turnless = True
        self._gap = True
        self._unechoed = False  # (of this connection: see `OtherRunError.after_own`)
        self._own_seen = False

    def expect_echo(self, sent: str, trace_id: str) -> None:
        """
        Until this run's human message is seen, take a human message as it only when its
        trace id is `trace_id` (the one `sent` was sent with) and its text `sent`: a
        re-attach may find another run in progress. A human message that is not it makes
        `feed()` raise `OtherRunError`, having taken nothing. One without a trace id is
        taken (an older PostHog's). Nothing changes once this run's message was seen.
        """
        if self.human_id is None:
            self._echo = (_sent_as(sent), trace_id)

    def ended_meanwhile(self) -> None:
        """
        The conversation showed this stream's runs ended (caught up), while a run goes on:
        a queued message's, which PostHog streams on after them, or another client's. A
        re-attached connection that brings a human message not seen before ahead of any
        message of these runs brings another run: `feed()` raises `OtherRunError`.
        """
        self.ended = True

    def queued_behind(self, message: HumanMessage) -> None:
        """
        `message`, met on this stream after this run's own messages (`OtherRunError`'s
        `after_own`), starts the run of a message queued behind this one: a catch-up
        counts its run as this stream's, as a connection that streamed it would have.
        """
        self._queued.add(message.id)

    def expect_resume(self) -> None:
        """
        This stream resumes a run (`resume_payload`) and sent no message: its run streams
        no human message before its own events, so a human message before anything else
        is another run's: one PostHog attached the resume to (the conversation was busy,
        the decision unused), or the next run, after the resumed run ended while the
        stream was away. `feed()` then raises `OtherRunError`, having taken nothing (the
        conversation tells which). Human messages after the run's own events (queued
        messages' runs) are taken.
        """
        self._resumes = self._resume_stream = True

    def feed(self, event: StreamEvent, *, raw: bytes | None = None) -> Delivery | None:
        """
        Take one event; return what to deliver, or None for a replayed duplicate.

        Args:
            raw: the event's wire form (name and data), the identity used to recognise a
                replayed non-message event; without it the event's repr is used.
        """
        if event.__class__ is MessageEvent:
            return self.feed_message(event)
        if self._resumes and event.__class__ is not ConversationEvent:
            self._resumes = False  # the resumed run began (a status, an update, ...)
        form: str | bytes
        kind, form = ("raw", raw) if raw is not None else ("repr", repr(event))
        turn = self._turn
        seen = self._seen_in
        # The first turn of an attached or resumed stream has no human message (turn
        # None): a whole replay brings its events back while a later turn is current,
        # before any human message; once this connection had one, an equal event is a
        # new one (a queued run that failed just as the first did).
        if (turn, kind, form) in seen or (
            turn is not None and self._turnless and (None, kind, form) in seen
        ):
            return None
        seen.add((turn, kind, form))
        self._replaying = False
        if isinstance(event, ConversationEvent):
            self.conversation = event.conversation
        elif isinstance(event, StatusEvent) and event.is_error:
            # Not the run's end: PostHog sends it when an insight it generated failed its
            # schema check, and generates it again (an `ai/failure` ends a run whose
            # retries failed too).
            self.generation_error = True
            if turn not in self._errored_turns:
                self._errored_turns.append(turn)
            if turn not in self._unanswered:
                self._unanswered.append(turn)  # until a message of the run follows it
            anchor = self._messages[-1] if self._messages else None
            self._error_after[turn] = (anchor, self._attempt)
        return Delivery(event)

    def catch_up(
        self,
        messages: Sequence[Message],
        *,
        sent: str | None = None,
        trace_id: str | None = None,
        latest: bool = False,
        resumed: bool = False,
        resumed_after: str | None = None,
        decided_call: str | None = None,
    ) -> list[Delivery] | None:
        """
        Deliver the final messages of this run that a conversation fetched after the run
        ended shows and this state never received: the whole end of the run (it ended
        unseen), or messages lost in a re-attach's gap (PostHog deletes a run's stream
        when its reader goes away: a re-attach replays only what came after).

        Only this stream's messages count: those after its human message, up to the next
        human message after the last message it received (the conversation also holds
        earlier runs, and maybe later ones, another client's; the runs of messages queued
        behind this one, which PostHog streams on the same connection, are the stream's
        as far as it received them). When the stream broke before PostHog echoed that message, it
        is recognised by its text, `sent` (as PostHog stores it: trimmed), and the trace
        id of the request that sent it, `trace_id` (PostHog stores it with the message);
        the echo itself is then delivered too. The text alone proves nothing: the same
        question may have been asked before, in a run this client never saw. None when it
        cannot be found (a message PostHog never processed, or one stored without its
        trace id), or when the conversation lacks the last assistant message received
        (it does not show this run as received: its view cannot tell what was missed).
        With `latest` (a stream that sent no message, at its run's end), a run whose human
        message was never seen is the conversation's latest: after its last human message
        (`resumed`: a resume's, after the message holding the tool call it decided,
        `resumed_after` (its id), when the conversation shows it; else from the first
        message it received, if any). The results of that message's other tool calls
        (`decided_call` is the decided one's id) are earlier runs': a call that needed no
        approval returned in the run that asked, and each other approval's call in its
        own resume.

        The messages take their places in the conversation's order (`messages`), not
        after what was received. A missed message after everything received is taken as
        if streamed, its text given out as a delta. One missed before a message received
        (lost in a gap) is delivered (after the events received, so out of order) with
        no text: its text may precede text already given out, so it is in
        `ConversationResult.text`, at its place, but not in the deltas, and
        `streamed_text` shows the difference.
        """
        mine: int | None = None
        skip = 0  # messages[mine] is the run's first, unless it is the decided tool call's
        others: set[str] = set()  # the decided call's message's other calls
        anchor: int | None = None
        if resumed and resumed_after is not None and (latest or self._resume_stream):
            # A resume's run starts after the message whose tool call it decided (a
            # human message after it starts a later run: a queued message's, which this
            # stream may have met, its `human_id`).
            anchor = next((n for n, m in enumerate(messages) if m.id == resumed_after), None)
        if anchor is not None:
            mine, skip, resumed = anchor, 1, False
            calling = messages[anchor]
            if decided_call is not None and isinstance(calling, AssistantMessage):
                others = {c.id for c in calling.tool_calls or ()} - {decided_call}
        elif self.human_id is not None:
            ids = [m.id for m in messages]
            if self.human_id in ids:
                mine = ids.index(self.human_id)
        elif sent is not None and trace_id is not None:
            text = _sent_as(sent)
            for index in range(len(messages) - 1, -1, -1):
                message = messages[index]
                if (
                    isinstance(message, HumanMessage)
                    and message.trace_id == trace_id
                    and message.content == text
                ):
                    mine = index
                    break
        elif latest:
            humans = [n for n, m in enumerate(messages) if isinstance(m, HumanMessage)]
            mine = humans[-1] if humans else None
        if mine is None:
            return None
        known = self._index
        # PostHog streams the runs of queued messages on after this one, on the same
        # stream: what this stream received (a queued message and its answer included)
        # is this stream's, and it ends at the next human message after all of that.
        end = mine + 1
        for index in range(len(messages) - 1, mine, -1):
            if messages[index].id in known:
                end = index + 1
                break
        queued = self._queued
        while end < len(messages) and (
            not isinstance(messages[end], HumanMessage) or messages[end].id in queued
        ):
            end += 1  # the next human message starts another run (unless queued here)
        run = [
            m
            for m in messages[mine + skip : end]
            if m.id is not None
            and not (others and isinstance(m, ToolCallMessage) and m.tool_call_id in others)
        ]
        if resumed and self.human_id is None:
            # A resume whose decided tool call the conversation does not show: what the
            # run did before the approval was the stream before's, not this one's. This
            # one's starts after the last tool call before what it received first (the
            # decided call's message, or one of the resumed run's own, lost in a gap).
            first = next((n for n, m in enumerate(run) if m.id in known), None)
            if first is not None:
                calls = [
                    n
                    for n, m in enumerate(run[:first])
                    if isinstance(m, AssistantMessage) and m.tool_calls
                ]
                run = run[calls[-1] + 1 :] if calls else run[first:]
        answer = self._last_answer()
        if answer is not None and answer not in {m.id for m in run}:
            return None
        last = max((n for n, m in enumerate(run) if m.id in known), default=-1)
        if last > 0:
            out = self._insert_missed(run[:last])
        elif (
            last < 0
            and self.human_id is None
            and (self._messages or self._failed_at == self._humans)
            and run
        ):
            # This run's echo, lost before what was received of the run (none of it with
            # an id: snapshots, a bare failure): its place is the first. After a failure
            # that ended the run, every stored message of the run came before it.
            out = self._insert_missed(run if self._failed_at == self._humans else run[:1])
        else:
            out = []
        for message in run[last + 1 :]:
            delivery = self.feed_message(MessageEvent(message))
            if delivery is not None:
                out.append(delivery)
        return out

    # ------------------------------------------------------------------ outputs

    @property
    def messages(self) -> tuple[Message, ...]:
        """The final messages so far, in order, each once."""
        return tuple(self._messages)

    @property
    def question(self) -> HumanMessage | None:
        """The last `HumanMessage` among the final messages: the turn being answered."""
        for message in reversed(self._messages):
            if isinstance(message, HumanMessage):
                return message
        return None

    @property
    def streamed_text(self) -> str:
        """Every delta given out so far, joined."""
        return "".join(self._streamed)

    @property
    def run_ended(self) -> bool:
        """
        Whether what arrived is a whole run, as PostHog ends one: an in-band failure
        (`ai/failure`; a `generation_error` is none) in the latest run on the stream
        (PostHog goes on with the messages queued behind a failed run), or a final
        message (one with an `id`) after the run's human message with no answer still in
        progress. PostHog sends no end event, so a body that ends short of this was cut,
        however cleanly it ended.

        A run never ends on a progress step (`ai/reasoning`, `ai/task_execution`), nor
        on a step of a tool call (reference §3.5, point 5): an `ai`
        message with `tool_calls` awaits their results, a `tool` result awaits the
        assistant's next message, and a subagent's message (one with a
        `parent_tool_call_id`) belongs to a tool call still running. So the last
        top-level message decides, and it must be none of these. The one exception, a
        run PostHog ends waiting for the user at a tool call (`awaits_user`), is told
        apart only by its conversation's status: the stream's reader checks it.
        """
        if self._failed_at == self._humans:  # a failure in the latest run
            return True
        if self._snapshot is not None or self._being_made:
            return False  # an answer, or a notebook, still being written
        message = self._last_top_level()
        if message is None:
            return False
        if isinstance(message, AssistantMessage):
            return not message.tool_calls
        # Nor on a progress step (`ai/reasoning`, research tasks being executed): the
        # answer comes after it.
        return not isinstance(
            message, (HumanMessage, ToolCallMessage, ReasoningMessage, TaskExecutionMessage)
        )

    def unsaved_failure(self, stored: Sequence[Message]) -> bool:
        """
        Whether the latest run's `ai/failure` is missing from `stored` (the conversation
        as PostHog holds it), whose latest human message is still this run's: what a
        re-attach meets when PostHog gave up waiting for the run's stream (its reader
        left, and the run was quiet for a minute), while the run goes on. Only a
        conversation still in progress says the run did not end with it.
        """
        failure = self.failure
        if failure is None or self._failed_at != self._humans:
            return False
        humans = [m.id for m in stored if isinstance(m, HumanMessage)]
        if humans and humans[-1] != self._latest_human:
            return False  # a queued message's run began: this run did end
        return failure.id is None or all(m.id != failure.id for m in stored)

    def withdraw_failure(self) -> None:
        """
        Forget the latest run's failure: it was the re-attach's, not the run's, and is
        no message of the run either (it was the last one taken).
        """
        failure, self.failure = self.failure, None
        self._failed_at = -1
        messages = self._messages
        if failure is not None and messages and messages[-1] is failure:
            messages.pop()
            if failure.id is not None:
                self._index.pop(failure.id, None)

    @property
    def awaits_user(self) -> bool:
        """
        Whether the run's last assistant message calls tools whose results have not all
        come, and nothing but results of its calls came after it: where PostHog ends a
        run that waits for the user (an approval, a form's answers, a client-side tool's
        result), sending nothing more; its conversation is then idle. The calls of one
        message run side by side: one may have returned (a read) while another waits for
        its approval, or (a resume) the approved call returned and the next approval of
        the same message waits. A stream that holds only tool results (a resume's: the
        message calling them came before it) may be at such an end too. Only the
        conversation's status tells this end from a stream cut at that step.
        """
        if self._snapshot is not None:
            return False
        answered: set[str] = set()
        for message in self._top_level_backwards():
            if isinstance(message, ToolCallMessage):
                answered.add(message.tool_call_id)
                continue
            if isinstance(message, AssistantMessage) and message.tool_calls:
                return any(call.id not in answered for call in message.tool_calls)
            return False
        return bool(answered)

    @property
    def stopped_at_call(self) -> bool:
        """Whether the run's last message (no subagent's) calls tools: none has returned."""
        if self._snapshot is not None:
            return False
        message = self._last_top_level()
        return isinstance(message, AssistantMessage) and bool(message.tool_calls)

    def _last_top_level(self) -> Message | None:
        """The run's last message that is no subagent's (after its human message)."""
        return next(self._top_level_backwards(), None)

    def _top_level_backwards(self) -> Iterator[Message]:
        """The run's messages that are no subagent's (after its human message), last first."""
        start = 0
        if self.human_id is not None and self.human_id in self._index:
            start = self._index[self.human_id] + 1
        messages = self._messages
        for position in range(len(messages) - 1, start - 1, -1):
            message = messages[position]
            if getattr(message, "parent_tool_call_id", None) is not None:  # not on Unknown
                continue  # a subagent's message: its tool call has not returned yet
            yield message

    @property
    def in_progress(self) -> AssistantMessage | None:
        """The top-level snapshot not yet replaced by its final message, if any."""
        return self._snapshot

    def result(
        self, conversation_id: str, *, complete: bool, cancelled: bool
    ) -> ConversationResult:
        """The `ConversationResult` of what was accumulated."""
        return ConversationResult(
            conversation_id=conversation_id,
            messages=self.messages,
            conversation=self.conversation,
            failure=self.failure,
            generation_error=self.generation_error,
            generation_error_turns=tuple(self._errored_turns),
            generation_error_unanswered=tuple(self._unanswered),
            in_progress=self._snapshot,
            streamed_text=self.streamed_text,
            complete=complete,
            cancelled=cancelled,
        )

    # ------------------------------------------------------------------ messages

    def feed_message(self, event: MessageEvent) -> Delivery | None:
        """`feed()` of a `MessageEvent` (recognised by its content, never its wire form)."""
        message = event.message
        if self._resumes:
            if message.__class__ is HumanMessage:
                raise OtherRunError(message)
            self._resumes = False  # the resumed run began
        elif self._echo is not None and message.__class__ is not HumanMessage:
            self._unechoed = True
        if self.ended and not self._own_seen:
            if message.__class__ is HumanMessage and message.id not in self._index:
                raise OtherRunError(message)
            self._own_seen = True
        if message.__class__ is AssistantMessage and message.in_progress:
            if message.parent_tool_call_id is not None:
                return self._nested_snapshot(event, message)
            return self._top_snapshot(event, message)
        being_made = made_key(message)
        if being_made is not None:
            return self._made_snapshot(event, message, being_made)
        if message.id is None:
            return self._idless_final(event, message)
        self._being_made.clear()  # a final message: what was being made is done with
        position = self._index.get(message.id)
        if message.__class__ is HumanMessage:
            self._turn = message.id  # what follows is this turn's, replayed or new
            self._turnless = False
        if position is not None:
            # A replayed final message: the snapshots after it belong to the next one.
            ordinal = self._assistant_ids.get(message.id)
            self._cursor = ordinal + 1 if ordinal is not None else self._answers_through(position)
            if self._replaying and position == len(self._messages) - 1:
                # The replay is where the snapshots of the answer under way began: it
                # repeats them all, counted, and nothing was lost before them.
                self._replay_count = 0
                self._gap = False
            if self._messages[position] == message:
                return None
            self._messages[position] = message  # same id, new content: the newer wins
            self.replaced += 1
            return Delivery(event)
        if self._echo is not None and isinstance(message, HumanMessage):
            self._check_echo(message)  # only while this run's message is awaited
        self._replaying = False
        self._replay_count = None
        self._answer_snapshots = 0
        self._index[message.id] = len(self._messages)
        self._messages.append(message)
        self._arrived[message.id] = self._attempt
        self._note(message)
        if self._unanswered and getattr(message, "parent_tool_call_id", None) is None:
            # The run went on after its generation_error (PostHog generated it again).
            with contextlib.suppress(ValueError):
                self._unanswered.remove(self._turn)
        text = ""
        # A new final message: whatever the replay held before it is behind us.
        self._cursor = len(self._assistant_ids)
        if isinstance(message, AssistantMessage) and message.parent_tool_call_id is None:
            self._assistant_ids[message.id] = len(self._assistant_ids)
            self._cursor = len(self._assistant_ids)
            if not self._earlier_part(message):
                if self._gap and message.content:
                    self._after_gap(message.content)
                text = self._advance(message.content, len(message.content))
                self._snapshot = None
                self._superseded.clear()
                self._shown = ""
                self._done = 0
        elif isinstance(message, AssistantMessage) and message.parent_tool_call_id:
            self._nested.pop(message.parent_tool_call_id, None)
        elif message.__class__ is HumanMessage:
            # A new turn (a queued message's run): an answer the last run left unfinished
            # (it failed mid-answer) is over, and the next one's text is new.
            if self._snapshot is not None:
                self._unfinished.append(self._snapshot.content)
            self._snapshot = None
            self._superseded.clear()
            self._shown = ""
            self._done = 0
            self._parked.clear()
        return Delivery(event, text)

    def _top_snapshot(self, event: MessageEvent, message: AssistantMessage) -> Delivery | None:
        if self._cursor < len(self._assistant_ids):
            # A replayed snapshot of a message that is already final, unless the replay
            # is not placed yet (trimmed) and this one is new.
            if self._cursor != _UNPLACED or self._replays_a_final(message.content):
                return None
            self._cursor = len(self._assistant_ids)
        if self._replay_count is not None:
            self._replay_count += 1
            if self._replay_count <= self._answer_snapshots:
                return None  # one that came before, in its place
            self._replay_count = None  # the first new one
            self._replaying = False
        if self._replaying and self._unfinished and self._replays_unfinished(message):
            return None
        last = self._snapshot
        if last is not None:
            # The texts first: they almost always differ (by length, at once).
            if message.content == last.content and message == last:
                if not self._replaying:
                    self._answer_snapshots += 1  # the same one again, on the same connection
                # Where the previous connection left off: what follows is new.
                self._replaying = False
                self._gap = False  # and no gap: the message goes on
                return None
            if self._replaying and (
                last.content.startswith(message.content)
                or (self._superseded and self._replays_superseded(message.content))
            ):
                if message.content:  # (an empty one, thinking or a tool call, tells nothing)
                    self._gap = False  # the replay of this message: it goes on
                return None
        self._replaying = False
        self._answer_snapshots += 1
        self._snapshot = message
        content = message.content
        if self._gap and content:
            self._after_gap(content)
        end = len(content)
        if content[-1:].isspace():  # held back: found without copying the whole text
            tail = content[-64:]
            kept = len(tail.rstrip())
            end = end - len(tail) + kept if kept else len(content.rstrip())
        shown, done = self._shown, self._done
        text = self._advance(content, end)
        if last is not None and (
            self._shown is not content or shown is not last.content or done != len(shown)
        ):
            # Not the hot path (where `_advance` found this snapshot extends the last one,
            # all of whose text was given out): whether it did is checked here.
            self._supersedes(last.content, content)
        if not text and last is not None and self._split_off(last, content):
            text = self._advance(content, end)
        # The hot path (one per streamed token): the tuple made without NamedTuple's
        # keyword-handling constructor.
        return _new_delivery(Delivery, (event, text))

    def _split_off(self, last: AssistantMessage, content: str) -> bool:
        """
        Whether a snapshot that gave out nothing begins the next part of an answer
        PostHog split at a server tool (a web search), and if so, begin it.

        PostHog splits such an answer into messages, the part before ending with its
        `server_tool_calls`, and streams only the last part (its
        `normalize_ai_message(...)[-1]`): the text starts again, for a new message, with
        no final between (the parts' finals come when the node ends). The part before is
        over (its text given out is parked until its final comes): this one's text
        follows it as the next message's would. Only on the first connection: a replay
        placed wrongly must not read as a new message and give its text again.
        """
        if (
            self._attempt
            or not last.extra_fields.get("server_tool_calls")
            or content.startswith(last.content)
        ):
            return False
        self._parked.append(self._shown[: self._done])
        self._shown = ""
        self._done = 0
        return True

    def _earlier_part(self, message: AssistantMessage) -> bool:
        """
        Whether a final is a part of a split answer (see `_split_off`) before the part
        streaming now: one with server tool calls, its text given out when the next part
        began (parked), or none. Its text is not given out again, and the part streaming
        goes on (its own final follows).
        """
        extra = message.extra_fields
        if extra is _NO_EXTRA_FIELDS or self._snapshot is None:
            return False  # (most finals: no field more)
        if not extra.get("server_tool_calls"):
            return False
        parked = self._parked
        content = message.content.rstrip()
        if parked and parked[0].rstrip() == content:
            del parked[0]
            return True
        return not content

    def _nested_snapshot(self, event: MessageEvent, message: AssistantMessage) -> Delivery | None:
        # A subagent's text is not the reply: no deltas, and no way to place its replayed
        # snapshots, so they are only passed on live (their final message always is).
        parent = message.parent_tool_call_id
        assert parent is not None
        if self._replaying or self._nested.get(parent) == message:
            return None
        self._nested[parent] = message
        return Delivery(event)

    def _made_snapshot(self, event: MessageEvent, message: Message, key: str) -> Delivery | None:
        # A message being made (see `made_key`): each holds the whole of it so far, and
        # its final message (with its own id) follows. Passed on live, never kept among
        # the messages (nor taken for a final one, whose place a replay moves back to):
        # as a subagent's snapshots, a replayed one cannot be placed.
        if self._replaying or self._being_made.get(key) == message:
            return None
        self._being_made[key] = message
        return Delivery(event)

    def _idless_final(self, event: MessageEvent, message: Message) -> Delivery | None:
        # PostHog's bare failure is `{"type":"ai/failure"}`: no id to match a replay by.
        # A replay is an equal message of the same turn (a queued run may fail just as
        # the run before it did), or of the first turn without a human message before
        # this connection had one; on a connection not yet placed in a turn, of any turn.
        # Recognised by a key of its content, in a set (one turn's comparisons with every
        # message before it took minutes for thousands of id-less messages).
        extra = getattr(message, "extra_fields", None)
        form = repr(message) if not extra else f"{message!r} {dict(extra)!r}"
        turn = self._turn
        seen = self._seen_in
        if turn is None:
            if form in self._idless_forms:
                return None
        elif (turn, "message", form) in seen or (
            self._turnless and (None, "message", form) in seen
        ):
            return None
        seen.add((turn, "message", form))
        self._idless_forms.add(form)
        self._replaying = False
        self._messages.append(message)
        self._note(message)
        return Delivery(event)

    def _last_answer(self) -> str | None:
        """The id of the last top-level final assistant message received, if any."""
        return next(reversed(self._assistant_ids), None)

    def _insert_missed(self, run: Sequence[Message]) -> list[Delivery]:
        """
        Put the messages of `run` (this run's, in the conversation's order, each with an
        id) not received yet at their places among those received; deliver them, without
        text (see `catch_up`).
        """
        known = self._index
        missed = [m for m in run if m.id not in known]
        if not missed:
            return []
        merged: list[Message] = []
        received = self._messages
        taken = 0
        for message in run:
            position = known.get(message.id) if message.id is not None else None
            if position is None:
                merged.append(message)
            elif position >= taken:
                merged.extend(received[taken : position + 1])
                taken = position + 1
        merged.extend(received[taken:])
        self._messages = merged
        self._index = {m.id: n for n, m in enumerate(merged) if m.id is not None}
        self._assistant_ids = {}
        for message in merged:
            if (
                isinstance(message, AssistantMessage)
                and message.parent_tool_call_id is None
                and message.id is not None
            ):
                self._assistant_ids[message.id] = len(self._assistant_ids)
        self._cursor = len(self._assistant_ids)
        out: list[Delivery] = []
        for message in missed:
            if isinstance(message, HumanMessage) and self.human_id is None:
                own = self._echo is not None and not self._resume_stream
                self._echo = None  # found by its trace id and text: this run's
                if self._failed_at == self._humans:
                    self._failed_at += 1  # a failure received before it is this run's
                if own:
                    # So is a generation_error received before it: this stream's own echo,
                    # never a queued message's (a resume's first turn has no question).
                    for turns in (self._errored_turns, self._unanswered):
                        if None in turns:
                            turns[turns.index(None)] = message.id
                    if None in self._error_after:
                        self._error_after[message.id] = self._error_after.pop(None)
            self._note(message)
            out.append(Delivery(MessageEvent(message)))
        if self._errored_turns:
            self._recount_unanswered()
        return out

    def _recount_unanswered(self) -> None:
        """
        Which turns' generation_error no message of theirs followed, in the messages'
        order as the conversation shows it: a missed message put in its place may be the
        answer that followed it (lost in a gap after the connection the error came on),
        or the question of a queued run whose answer, received while its question was
        missing, had counted for the turn before. A missed message lost in a gap before
        that connection came before the error, whatever its place: no answer to it.
        """
        messages = self._messages
        arrived = self._arrived
        unanswered: list[str | None] = []
        for turn in self._errored_turns:
            after, attempt = self._error_after.get(turn, (None, 0))
            start = 0
            if after is not None:
                ident = after.id  # (a final message replaced since is the same one)
                start = next(
                    (
                        n + 1
                        for n, m in enumerate(messages)
                        if m is after or (ident is not None and m.id == ident)
                    ),
                    0,
                )
            answered = False
            for n in range(start, len(messages)):
                message = messages[n]
                if message.id is None:
                    continue  # (an id-less final, a bare failure, answers nothing)
                if message.__class__ is HumanMessage:
                    if message.id == turn:
                        continue  # its own question, put before what came after the error
                    break  # the next run's
                if getattr(message, "parent_tool_call_id", None) is not None:
                    continue
                if message.id not in arrived and self._missed_before(n, attempt):
                    continue
                answered = True
                break
            if not answered:
                unanswered.append(turn)
        self._unanswered = unanswered

    def _missed_before(self, position: int, attempt: int) -> bool:
        """
        Whether the missed message at `position` was lost before connection `attempt`
        began: the next message that came (in the conversation's order) came on it or
        before, and a message is lost only between connections.
        """
        arrived = self._arrived
        for message in self._messages[position + 1 :]:
            came = arrived.get(message.id) if message.id is not None else None
            if came is not None:
                return came <= attempt
        return False

    def _supersedes(self, last: str, content: str) -> None:
        """Remember the last snapshot's text `last` if `content`, the next's, rewrote it."""
        if not content.startswith(last) and not (self._superseded and self._superseded[-1] is last):
            self._superseded.append(last)

    def _replays_superseded(self, content: str) -> bool:
        """
        Whether a snapshot of a replay is one of the answer streaming now that a later
        one did not extend: its text begins a text such a snapshot had. A new snapshot
        dropped here by mistake loses nothing: the next one holds its text too.
        """
        return any(text.startswith(content) for text in self._superseded)

    def _replays_unfinished(self, message: AssistantMessage) -> bool:
        """
        Whether a snapshot of a replay is one of an answer a later turn left unfinished:
        taken in an earlier turn than the latest (a whole replay going through it), or
        its text begins such an answer's. A new snapshot dropped here by mistake loses
        nothing: the next one holds its text too.
        """
        if self._turn is not None and self._turn != self._latest_human:
            return True  # a turn that is over sends nothing new
        content = message.content
        return any(text.startswith(content) for text in self._unfinished)

    def _replays_a_final(self, content: str) -> bool:
        """
        Whether a snapshot from an unplaced replay may be one of a final assistant
        message's: its text, trailing whitespace aside (a final may trim it), begins one.
        Only on a re-attach, before anything places the replay.
        """
        messages, index = self._messages, self._index
        stripped = content.rstrip() if content[-1:].isspace() else content
        for answer_id in self._assistant_ids:
            final = messages[index[answer_id]]
            if isinstance(final, AssistantMessage) and final.content.startswith(stripped):
                return True
        return False

    def _answers_through(self, position: int) -> int:
        """How many final top-level assistant messages are at `position` or before it."""
        ids = self._assistant_ids
        return sum(1 for m in self._messages[: position + 1] if m.id in ids)

    def _check_echo(self, message: HumanMessage) -> None:
        """Take `message` as this run's human message, or raise `OtherRunError`."""
        echo = self._echo
        assert echo is not None
        sent, trace_id = echo
        if message.trace_id is not None and (
            message.trace_id != trace_id or message.content != sent
        ):
            raise OtherRunError(message, after_own=self._unechoed)
        self._echo = None

    def _note(self, message: Message) -> None:
        if isinstance(message, HumanMessage):
            self._humans += 1
            self._latest_human = message.id
            if self.human_id is None:
                self.human_id = message.id
        elif isinstance(message, FailureMessage) and message.parent_tool_call_id is None:
            # (A subagent's failure belongs to its tool call, which returns to the run.)
            self.failure = message
            self._failed_at = self._humans

    def _after_gap(self, content: str) -> None:
        """
        The first new assistant text after a re-attach: when it does not go on from the
        text given out, the message before it ended in the gap (its final lost with the
        stream PostHog deleted), and this is the next message, all of it new text.
        """
        self._gap = False
        done = self._done
        if done and not content.startswith(self._shown[:done]):
            self._shown = ""
            self._done = 0

    def _advance(self, target: str, end: int) -> str:
        """
        Give out `target[:end]` beyond what was given out, if it extends that.

        The check compares the whole text given out so far with the start of `target`,
        once per snapshot: a memcmp, the one pass over the text beyond parsing it. No
        exact check can compare less: a rewrite may change any character, and one not
        compared could have changed. Comparing with the previous snapshot or its wire
        bytes instead costs as much, and trusting the length or the last characters
        would let a rewritten middle through as a delta that contradicts what was given
        out. The text given out is kept as the snapshot it came from and a length, so
        neither holding back trailing whitespace nor the check copies the text, unless
        the server trimmed whitespace that was held back.
        """
        done = self._done
        if end <= done:
            return ""
        shown = self._shown
        if not target.startswith(shown) and (
            done == len(shown) or not target.startswith(shown[:done])
        ):
            return ""
        text = target[done:end]
        if not done and self._streamed:
            text = SEPARATOR + text
        self._shown = target
        self._done = end
        self._streamed.append(text)
        return text
