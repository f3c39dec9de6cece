"""
PostHog AI conversations: the list record, the full record and their parts.

PostHog's list serializer (`ConversationMinimal`) has grown from six fields to a dozen;
the newer ones default here, so an older server's records decode too. Older servers
also put `messages` in list records: that key lands in `extra_fields`.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping
from typing import Any

import attrs

from .._json import too_deep
from ._common import extra_fields_field
from .messages import AssistantMessage, FailureMessage, HumanMessage, Message

__all__ = [
    "AgentMode",
    "Conversation",
    "ConversationResult",
    "ConversationStatus",
    "ConversationSummary",
    "ConversationTurn",
    "ConversationType",
    "MessageQueue",
    "PendingApproval",
    "QueuedMessage",
    "UserBasic",
]


class _StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


class ConversationStatus(_StrEnum):
    """Whether the conversation is generating. Members are strs: compare with plain strings."""

    IDLE = "idle"
    IN_PROGRESS = "in_progress"
    CANCELING = "canceling"


class ConversationType(_StrEnum):
    """Which kind of conversation it is (a newer kind arrives as its plain string)."""

    ASSISTANT = "assistant"
    TOOL_CALL = "tool_call"
    DEEP_RESEARCH = "deep_research"
    SLACK = "slack"


class AgentMode(_StrEnum):
    """
    The agent modes known to this version. PostHog adds modes (and drops some) often, so
    `create(agent_mode=...)` takes any string, and a record keeps an unknown mode as its string.
    `ONBOARDING` is gone from newer PostHog versions, which refuse it (400); it stays for
    older ones.
    """

    PRODUCT_ANALYTICS = "product_analytics"
    SQL = "sql"
    SESSION_REPLAY = "session_replay"
    ERROR_TRACKING = "error_tracking"
    PLAN = "plan"
    EXECUTION = "execution"
    SURVEY = "survey"
    #: Dropped by PostHog: newer servers refuse it (400 `invalid_choice`). Kept for
    #: older servers and for records that still carry it.
    ONBOARDING = "onboarding"
    RESEARCH = "research"
    FLAGS = "flags"
    LLM_ANALYTICS = "llm_analytics"
    USER_INTERVIEW = "user_interview"
    CUSTOMER_ANALYTICS = "customer_analytics"
    SANDBOX = "sandbox"


@attrs.frozen(kw_only=True)
class UserBasic:
    """
    The user a conversation belongs to (PostHog's `UserBasic`).

    Attributes:
        id: the user's numeric id.
        uuid: the user's UUID.
        email: the user's email address.
    """

    id: int | None = None
    uuid: str | None = None
    distinct_id: str | None = None
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    is_email_verified: bool | None = None
    hedgehog_config: dict[str, Any] | None = None
    role_at_organization: str | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()


@attrs.frozen(kw_only=True)
class ConversationSummary:
    """
    A conversation as listed (PostHog's `ConversationMinimal`), and as the stream's
    `conversation` event carries it.

    Attributes:
        id: the conversation's UUID.
        status: `ConversationStatus` (or a newer status's string).
        title: the generated title; None until PostHog has made one (the conversation
            cannot be fetched or listed before that).
        user: who started it.
        created_at, updated_at: timestamps (timezone-aware), when sent.
        type: `ConversationType` (or a newer type's string), when sent.
        extra_fields: fields this version does not know (and `messages` from older servers).
    """

    id: str
    status: ConversationStatus | str = ConversationStatus.IDLE
    title: str | None = None
    user: UserBasic | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    topic: str | None = None
    type: ConversationType | str | None = None
    is_internal: bool | None = None
    slack_thread_key: str | None = None
    slack_workspace_domain: str | None = None
    task: dict[str, Any] | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()


@attrs.frozen(kw_only=True)
class PendingApproval:
    """
    A tool call waiting for the user's approval (resume it with `create(resume_payload=…)`).

    Attributes:
        proposal_id: what `resume_payload["proposal_id"]` names.
        decision_status: `pending`, `approved`, `rejected` or `auto_rejected`.
        tool_name: the tool that asks.
        preview: what the UI shows the user.
        payload: the proposed arguments.
    """

    proposal_id: str
    decision_status: str = "pending"
    tool_name: str = ""
    preview: Any = None
    payload: Any = None
    original_tool_call_id: str | None = None
    message_id: str | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()

    @property
    def preview_text(self) -> str:
        """
        `preview` as text to show the user: PostHog's string as it came, any other JSON
        value (a structured preview) as compact JSON (non-ASCII kept), and "" when there
        is none (None), encoded anew on each read. Not escaped for any medium: a
        terminal, HTML or a chat service's markup is the caller's to escape.
        """
        preview = self.preview
        if preview is None:
            return ""
        if isinstance(preview, str):
            return str(preview)  # a str subclass (an enum's member) as its plain text
        if too_deep(preview):
            return _TOO_DEEP
        try:
            return json.dumps(preview, ensure_ascii=False, separators=(", ", ": "))
        except (TypeError, ValueError, RecursionError):
            # Not JSON (a record built by hand around another object): its text.
            return str(preview)


_TOO_DEEP = "(a preview nested too deeply to show)"


@attrs.frozen(kw_only=True)
class Conversation(ConversationSummary):
    """
    A conversation with its messages (`GET conversations/{id}/`).

    Attributes:
        messages: every message, oldest first (`Message` union; unknown types are
            `UnknownMessage`).
        pending_approvals: tool calls waiting for approval.
        agent_mode: `AgentMode` (or a newer mode's string) the agent is in:
            `product_analytics` when none was chosen (and after `research` or
            `execution`), `sql` after `plan`; None for a sandbox conversation.
        agent_runtime: `langgraph` or `sandbox`, when sent.
    """

    messages: list[Message] = attrs.field(factory=list)
    pending_approvals: list[PendingApproval] = attrs.field(factory=list)
    has_unsupported_content: bool = False
    agent_mode: AgentMode | str | None = None
    agent_runtime: str | None = None
    is_sandbox: bool = False


@attrs.frozen(kw_only=True)
class QueuedMessage:
    """
    A message waiting in a conversation's queue (`ph.conversations.queue`).

    Attributes:
        id: the id PostHog gave it (what `queue.update()` and `queue.remove()` take).
        content: the message.
        created_at: when it was queued (timezone-aware), when sent.
        agent_mode: `AgentMode` (or a newer mode's string) it runs in, or None.
        contextual_tools, ui_context, billing_context: as queued, or None.
        session_id: the PostHog session id it was queued with, or None.
    """

    id: str
    content: str
    created_at: dt.datetime | None = None
    agent_mode: AgentMode | str | None = None
    contextual_tools: dict[str, Any] | None = None
    ui_context: Any = None
    billing_context: Any = None
    session_id: str | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()


@attrs.frozen(kw_only=True)
class MessageQueue:
    """
    A conversation's queued messages, as every queue call answers them.

    Attributes:
        messages: the queued messages, the next to run first.
        max_queue_messages: how many PostHog holds at a time (2 today), when sent.
    """

    messages: list[QueuedMessage] = attrs.field(factory=list)
    max_queue_messages: int | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()


def _answer_text(messages: tuple[Message, ...]) -> str:
    """The text of the final top-level assistant messages among `messages`, blank-line joined."""
    return "\n\n".join(
        m.content
        for m in messages
        if isinstance(m, AssistantMessage) and m.content and m.parent_tool_call_id is None
    )


@attrs.frozen(kw_only=True)
class ConversationTurn:
    """
    One message sent to PostHog AI and what answered it: a part of a `ConversationResult`.

    A stream carries one turn per message it ran: yours, then each message queued behind
    it (`ph.conversations.queue`). `ConversationResult.turns` splits its messages so.

    Example:
        ```python
        result = await stream.until_done()
        for turn in result.turns:  # yours first, then each queued message's
            question = turn.question.content if turn.question else "(joined mid-answer)"
            print(question, "->", turn.text)
        ```

    Attributes:
        question: the `HumanMessage` that started the turn, or None for messages the
            stream received before any (one re-attached by `stream(id)` after the echo).
        messages: the turn's final messages, oldest first, `question` first when there
            is one.
        generation_error: whether PostHog sent `status: generation_error` in this turn.
        generation_error_unanswered: whether no message of the run followed it (the run
            neither generated the insight again nor went on).
    """

    question: HumanMessage | None
    messages: tuple[Message, ...]
    generation_error: bool = False
    generation_error_unanswered: bool = False

    @property
    def text(self) -> str:
        """The turn's answer: its final assistant messages' text, joined by a blank line."""
        return _answer_text(self.messages)

    @property
    def failure(self) -> FailureMessage | None:
        """
        The turn's in-band `ai/failure` message (the last one), or None. A subagent's
        failure (one with `parent_tool_call_id`) belongs to its tool call, which returns
        to the run: it is not the turn's.
        """
        return next(
            (
                m
                for m in reversed(self.messages)
                if isinstance(m, FailureMessage) and m.parent_tool_call_id is None
            ),
            None,
        )

    @property
    def failed(self) -> bool:
        """
        Whether PostHog reported this turn failed: an `ai/failure`, or a
        `generation_error` (PostHog generating an insight again) that no message of the
        run followed.
        """
        return self.failure is not None or self.generation_error_unanswered


@attrs.frozen(kw_only=True)
class ConversationResult:
    """
    What one streamed run produced: `await stream.until_done()` returns it.

    Example:
        ```python
        result = await ph.conversations.create("Signups last week?").until_done()
        if result.failed:
            print("PostHog AI failed:", result.failure.content if result.failure else "")
        else:
            print(result.text)
        ```

    Attributes:
        conversation_id: the conversation's UUID.
        messages: this run's final messages, oldest first (the echo of your message
            first), each once: replayed events are de-duplicated by id, and in-progress
            snapshots are not included (their final messages are). Messages queued
            behind yours (`ph.conversations.queue`) run on the same stream: each run's
            messages follow, its `HumanMessage` first (`turns` splits them).
        conversation: the latest `conversation` event, or None (PostHog sends it only for
            a new conversation).
        failure: the in-band `ai/failure` message, or None.
        generation_error: whether PostHog sent `status: generation_error`.
        generation_error_turns: the turns it was sent in, by the id of their question
            (None: the turn without one); `turns` gives each its `generation_error`.
        generation_error_unanswered: those of them in which no message of the run
            followed it: the run ended there (`failed`).
        in_progress: the last in-progress snapshot, when the stream ended before its final
            message (after a cancel, say); else None.
        streamed_text: exactly the text `text_deltas()` gave out (`"".join(deltas)`).
        complete: whether the stream reached its end (PostHog closes it when the run is
            over); False after `aclose()`, `cancel()` or an error.
        cancelled: whether `stream.cancel()` was called.
    """

    conversation_id: str
    messages: tuple[Message, ...] = ()
    conversation: ConversationSummary | None = None
    failure: FailureMessage | None = None
    generation_error: bool = False
    generation_error_turns: tuple[str | None, ...] = ()
    generation_error_unanswered: tuple[str | None, ...] = ()
    in_progress: AssistantMessage | None = None
    streamed_text: str = ""
    complete: bool = False
    cancelled: bool = False

    @property
    def failed(self) -> bool:
        """
        Whether PostHog reported a failure in the stream: an `ai/failure`, or a
        `generation_error` in a turn that has no answer. PostHog sends `generation_error`
        when an insight it generated failed its schema check, and generates it again: a
        turn answered after it did not fail.
        """
        if self.failure is not None:
            return True
        if not self.generation_error:
            return False
        if not self.generation_error_turns:  # a result made by hand: is there an answer?
            return not self.text
        return bool(self.generation_error_unanswered)

    @property
    def text(self) -> str:
        """
        The assistant's answer: the text of the final assistant messages, joined by a
        blank line (those of every turn, when queued messages ran on the stream: see
        `turns` for each answer apart). Equals `streamed_text` unless PostHog rewrote
        text it had already streamed, the run failed after streaming part of an answer,
        an answer ended while the connection was down (its final message recovered
        after the re-attach is here, the text it added is not in `text_deltas()`), or
        the stream was left before the run's final message (`cancel()`, `aclose()`,
        a `break`: `complete` is then False, and the text streamed so far is only in
        `streamed_text`).
        """
        return _answer_text(self.messages)

    @property
    def turns(self) -> tuple[ConversationTurn, ...]:
        """
        `messages` split at each `HumanMessage`: your message's turn, then one for each
        message queued behind it that ran on the stream, in order. Messages before the
        first `HumanMessage` (a stream re-attached after the echo) are a turn without a
        question. Empty when no message arrived.
        """
        turns: list[ConversationTurn] = []
        question: HumanMessage | None = None
        start = 0
        messages = self.messages
        errors = self.generation_error_turns
        unanswered = self.generation_error_unanswered

        def turn(question: HumanMessage | None, part: tuple[Message, ...]) -> ConversationTurn:
            ident = question.id if question is not None else None
            return ConversationTurn(
                question=question,
                messages=part,
                generation_error=ident in errors,
                generation_error_unanswered=ident in unanswered,
            )

        for position, message in enumerate(messages):
            if isinstance(message, HumanMessage):
                if position > start:
                    turns.append(turn(question, messages[start:position]))
                question, start = message, position
        if start < len(messages):
            turns.append(turn(question, messages[start:]))
        return tuple(turns)
