"""
FakePostHog's PostHog AI conversations, as `ConversationViewSet` behaves (reference §3).

The streamed answers themselves (scripts, timelines, keepalives, replays) live in
`_ai_runs`; this module holds the conversations, the checks `POST conversations/` makes
before it streams, and the other routes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from . import _conversation_queue
from ._ai_runs import AIScript, Run, build_run, failed_run
from ._conversation_checks import (
    QUOTA_DETAIL,
    MessageBody,
    uuid_text,
    validate_message,
    validate_text,
)
from ._loopback import ServerReply
from ._wire import (
    FakeRequest,
    HTTPError,
    Route,
    empty,
    error,
    iso,
    json_reply,
    not_found,
    now,
    offset_page,
    utc_datetime,
    validation_error,
)

if TYPE_CHECKING:
    from ._fake import FakePostHog

__all__ = ["AGENT_RUNTIMES", "ROUTES", "AIScript", "FakeConversation"]

AGENT_RUNTIMES = ("langgraph", "sandbox")
"""PostHog's `Conversation.AgentRuntime` values: who owns a conversation's runs."""

_LISTED_TYPES = frozenset({"assistant", "deep_research", "slack"})
# Fields `model_dump()` writes as null when unset: GET shows them, the stream leaves them out.
_NULL_FIELDS: Mapping[str, tuple[str, ...]] = {
    "human": ("ui_context", "trace_id"),
    "ai": ("tool_calls", "meta"),
    "tool": ("ui_payload",),
    "ai/failure": ("content",),
}


def _agent_mode_or_default(mode: str | None) -> str:
    """
    The `agent_mode` PostHog's conversation serializer shows: its graph state's
    `agent_mode_or_default`. A LangGraph conversation always has a state (with no
    checkpoint yet, an empty one), so this is null only for sandbox conversations.
    """
    if mode is None or mode in ("execution", "research"):  # not modes the agent stays in
        return "product_analytics"
    if mode == "plan":
        return "sql"
    return mode


def _check_runtime(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in AGENT_RUNTIMES:
        raise ValueError(f"{attribute.name} must be one of {AGENT_RUNTIMES}, got {value!r}")


def _created_at(value: dt.datetime) -> dt.datetime:
    return utc_datetime(value, "created_at")


def _updated_at(value: dt.datetime) -> dt.datetime:
    return utc_datetime(value, "updated_at")


@attrs.define(eq=False)
class FakeConversation:
    """
    One conversation in the fake's memory (`fake.conversations[id]`).

    A `sandbox` conversation (`agent_runtime`) is one PostHog's `open/` endpoint serves: the
    LangGraph routes refuse it (`POST conversations/`) or leave it be (`cancel/`). Without
    messages it plays one born on the sandbox runtime (GET shows no messages and a null
    `agent_mode`: its history lives in the tasks logs); with messages, an old thread the web
    app converted, which keeps its LangGraph history.

    A naive datetime set as `created_at` or `updated_at` is read as UTC, as PostHog reads
    one; an aware one that UTC cannot hold is a `ValueError`.
    """

    id: str
    user: str
    # `title`, `updated_at` and `messages` are read through properties that first apply
    # what the current run has produced by then (`refresh()`): a test reads the record as
    # PostHog's database holds it, also after its reader left a run that went on.
    _title: str | None = attrs.field(default=None, alias="title")
    type: str = "assistant"
    created_at: dt.datetime = attrs.field(factory=now, converter=_created_at)
    _updated_at: dt.datetime = attrs.field(factory=now, alias="updated_at", converter=_updated_at)
    deleted: bool = False
    is_internal: bool = False
    agent_mode: str | None = None  # the graph state's; GET shows `agent_mode_or_default`
    agent_runtime: str = attrs.field(default="langgraph", validator=_check_runtime)
    _messages: list[dict[str, Any]] = attrs.field(factory=list, alias="messages")
    pending_approvals: list[dict[str, Any]] = attrs.field(factory=list)
    run: Run | None = None
    queue: list[dict[str, Any]] = attrs.field(factory=list)  # `…/queue/`: the next runs
    # How a run that ended starts the first queued message (set when a message is queued).
    drain: Callable[[Run], Run | None] | None = attrs.field(default=None, repr=False)
    # Whether `run` is the research workflow's, which leaves the queue alone. PostHog picks
    # the workflow per request: a conversation's `type` does not tell.
    research_run: bool = False
    _applied: int = 0  # events of `run` already applied to the state above
    _settled: bool = False  # the end of `run` was seen (and the queue drained then)

    @property
    def title(self) -> str | None:
        """The conversation's title (PostHog AI's, once its first run names it)."""
        self.refresh()
        return self._title

    @title.setter
    def title(self, value: str | None) -> None:
        self._title = value

    @property
    def updated_at(self) -> dt.datetime:
        """When the conversation last changed."""
        self.refresh()
        return self._updated_at

    @updated_at.setter
    def updated_at(self, value: dt.datetime) -> None:
        self._updated_at = value

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The stored messages (the graph state's), a run's final ones included."""
        self.refresh()
        return self._messages

    @messages.setter
    def messages(self, value: list[dict[str, Any]]) -> None:
        self._messages = value

    @property
    def status(self) -> str:
        """`in_progress` while a run generates, else `idle` (a cancel is instantaneous)."""
        return "in_progress" if self.run is not None and self.run.active() else "idle"

    def refresh(self) -> None:
        """Apply what the current run has produced by now; once it ended, drain the queue."""
        while self.run is not None:
            moment = time.monotonic()  # one moment: the end is seen after the events before it
            due = self.run.due(moment)
            for event in due[self._applied :]:
                if event.final is not None:
                    self._messages.append(event.final)
                if event.approval is not None:
                    self.pending_approvals.append(dict(event.approval))
                if event.title is not None:
                    self._title = event.title
                self._updated_at = now()
            self._applied = len(due)
            if self._settled or self.run.active(moment):
                return
            self._settled = True
            follower = None if self.drain is None else self.drain(self.run)
            if follower is None:
                return
            self.run.successor = follower
            self._begin(follower)

    def start(self, run: Run, *, research: bool = False) -> None:
        """Make `run` the current generation (`research`: the research workflow's)."""
        self.refresh()
        self._begin(run, research=research)

    def _begin(self, run: Run, *, research: bool = False) -> None:
        # A queued message's run (`research` False) is always the chat workflow's.
        run.on_end = self.refresh  # a reader at its end lets a queued message start
        self.run, self._applied, self._settled = run, 0, False
        self.research_run = research

    @property
    def has_state(self) -> bool:
        """Whether the conversation has a LangGraph state: all but a born-sandbox one."""
        return self.agent_runtime != "sandbox" or bool(self.messages)

    def minimal(
        self, user: dict[str, Any], *, title: Any = ..., status: str | None = None
    ) -> dict[str, Any]:
        """`ConversationMinimalSerializer(...).data`."""
        return {
            "id": self.id,
            "status": status or self.status,
            "title": self.title if title is ... else title,
            "topic": None,
            "user": user,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "type": self.type,
            "is_internal": self.is_internal,
            "slack_thread_key": None,
            "slack_workspace_domain": None,
            "task": None,
        }

    def full(self, user: dict[str, Any]) -> dict[str, Any]:
        """`ConversationSerializer(...).data`: messages written with their null fields."""
        messages = []
        for message in self.messages if self.has_state else ():
            if not _shown(message):
                continue
            nulls = _NULL_FIELDS.get(message.get("type", ""), ())
            messages.append({"parent_tool_call_id": None, **dict.fromkeys(nulls), **message})
        return {
            **self.minimal(user),
            "messages": messages,
            "has_unsupported_content": False,
            "agent_mode": _agent_mode_or_default(self.agent_mode) if self.has_state else None,
            "agent_runtime": self.agent_runtime,
            "is_sandbox": self.agent_runtime == "sandbox",
            "pending_approvals": list(self.pending_approvals),
        }


def _shown(message: Mapping[str, Any]) -> bool:
    """
    PostHog's `should_output_assistant_message`, which the serializer's messages pass:
    an assistant message with no content, no tool calls and no `meta` (an empty answer)
    and a context message are left out.
    """
    kind = message.get("type")
    if kind == "ai":
        return bool(message.get("content") or message.get("tool_calls")) or (
            message.get("meta") is not None
        )
    return kind != "context"


# ---------------------------------------------------------------------- handlers


def _check_ai_throttle(fake: FakePostHog, user: str, body: dict[str, Any]) -> None:
    # PostHog looks the conversation up by its UUIDField, which takes any spelling of the
    # id; one that is no UUID at all is simply not research (the serializer refuses it).
    existing = None
    if conversation_id := body.get("conversation"):
        with contextlib.suppress(ValueError):
            existing = fake.conversations.get(uuid_text(conversation_id))
    research = body.get("agent_mode") == "research" or (
        existing is not None and not existing.deleted and existing.type == "deep_research"
    )
    fake.throttles.check_ai(user, research=research)


def _own(fake: FakePostHog, request: FakeRequest) -> FakeConversation:
    # Every action but `retrieve` is filtered to the caller's own conversations.
    conversation = _conversation_queue.stored(fake, request)
    if conversation is None or conversation.deleted or conversation.user != request.user_key:
        raise not_found()
    conversation.refresh()
    return conversation


async def _create(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    body = request.body()
    user = request.user_key
    _check_ai_throttle(fake, user, body)
    if fake.ai_quota_exceeded:
        raise HTTPError(error(402, "server_error", "quota_limit_exceeded", QUOTA_DETAIL))
    message = validate_message(body)
    conversation = fake.conversations.get(message.conversation)
    is_new = False
    if conversation is not None:
        if conversation.user != user:
            return json_reply(400, {"error": "Cannot access other users' conversations"})
        if conversation.deleted:
            return json_reply(404, {"error": "Conversation does not exist"})
        conversation.refresh()
    else:
        if message.content is None:
            return json_reply(400, {"error": "Cannot stream from non-existent conversation"})
        kind = "deep_research" if message.agent_mode == "research" else "assistant"
        conversation = FakeConversation(id=message.conversation, user=user, type=kind)
        fake.conversations[conversation.id] = conversation
        is_new = True
    # A sandbox conversation (a re-attach to one included) or a sandbox-signalling body.
    if (
        conversation.agent_runtime == "sandbox"
        or message.is_sandbox
        or message.agent_mode == "sandbox"
    ):
        raise validation_error("Sandbox conversations must be opened via the open endpoint.")
    idle = conversation.status == "idle"
    # The research workflow runs for research mode (an `assistant` conversation stays one)
    # and on a `deep_research` conversation, unless a new message on it, idle, carries on
    # as a plain chat.
    research = message.agent_mode == "research"
    if conversation.type == "deep_research":
        research = (
            is_new or not idle or message.content is None or message.resume_payload is not None
        )
        if not research:
            conversation.type = "assistant"
            conversation.updated_at = now()
    if message.content is not None and not idle:
        detail = "Cannot resume streaming with a new message"
        raise HTTPError(error(409, "server_error", "conflict", detail))
    if message.content is None and idle and message.resume_payload is None:
        raise validation_error("Cannot continue streaming from an idle conversation")
    if idle:
        _start_run(fake, conversation, message, is_new, request, research=research)
    run = conversation.run
    assert run is not None
    return ServerReply(
        status=200,
        headers={"Content-Type": "text/event-stream"},
        stream=run.stream(fake.ai_streams, lambda: fake.keepalive_interval),
    )


def _start_run(
    fake: FakePostHog,
    conversation: FakeConversation,
    message: MessageBody,
    is_new: bool,
    request: FakeRequest,
    *,
    research: bool,
) -> None:
    if not _decide_approvals(conversation, message.resume_payload):
        # PostHog's runner raised before the graph ran: no echo, nothing stored, no
        # script spent; the stream holds the executor's failure message only.
        conversation.start(failed_run(), research=research)
        return
    script = fake.ai_scripts.popleft() if fake.ai_scripts else AIScript()
    if message.agent_mode is not None:
        conversation.agent_mode = message.agent_mode
    user = fake._user_basic(conversation.user)

    def render(title: str | None) -> dict[str, Any]:
        return conversation.minimal(user, title=title, status="in_progress")

    run = build_run(
        script,
        content=message.content,
        human_id=str(uuid.uuid4()),
        trace_id=message.trace_id,
        conversation=render if is_new else None,
        ui_context=message.ui_context,
    )
    run.session_id = request.raw.headers.get("x-posthog-session-id")
    conversation.start(run, research=research)


def _decide_approvals(conversation: FakeConversation, resume_payload: Any) -> bool:
    """
    What `BaseAgentRunner._init_or_update_state` (ee/hogai/core/runner.py) does with the
    conversation's approval cards before a run; False when it raises instead.

    An approve/reject `resume_payload` must name a proposal still pending (PostHog looks
    it up among the checkpoint's pending `ApprovalRequest` interrupts): it then records
    the decision (`_update_approval_decision_status`); for any other proposal (unknown, or
    decided already) it expires that proposal if pending (`_expire_pending_approvals`)
    and raises "Approval does not match a pending operation". A run without a resume
    payload (a new message, a queued one) starts afresh and marks every pending card
    `auto_rejected` (`_expire_pending_approvals()`); another resume payload (a form's
    answers) resumes the graph and leaves the cards be.
    """
    cards = conversation.pending_approvals
    if isinstance(resume_payload, dict) and resume_payload.get("action") in ("approve", "reject"):
        proposal = resume_payload.get("proposal_id")
        card = next(
            (
                c
                for c in cards
                if c.get("proposal_id") == proposal and c.get("decision_status") == "pending"
            ),
            None,
        )
        if card is None:
            return False
        card["decision_status"] = (
            "approved" if resume_payload["action"] == "approve" else "rejected"
        )
        return True
    if not resume_payload:
        for card in cards:
            if card.get("decision_status") == "pending":
                card["decision_status"] = "auto_rejected"
    return True


async def _list(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    visible = []
    for conversation in fake.conversations.values():
        conversation.refresh()
        if (
            conversation.user == request.user_key
            and not conversation.deleted
            and conversation.title is not None
            and conversation.type in _LISTED_TYPES
            and not conversation.is_internal
        ):
            visible.append(conversation)
    visible.sort(key=lambda c: c.updated_at, reverse=True)
    items = []
    for conversation in visible:
        user = fake._user_basic(conversation.user)
        if fake.conversations_list_includes_messages:
            items.append(conversation.full(user))
        else:
            items.append(conversation.minimal(user))
    return offset_page(request, items, page_size=fake.page_size)


async def _retrieve(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    # Any user's conversation of the team, once it has a title. Only `list` and `retrieve`
    # filter out internal conversations; the other actions (cancel, append_message, destroy,
    # create) reach them like any other of the caller's conversations.
    conversation = _conversation_queue.stored(fake, request)
    if conversation is not None:
        conversation.refresh()
    if (
        conversation is None
        or conversation.deleted
        or conversation.title is None
        or conversation.type not in _LISTED_TYPES
        or conversation.is_internal  # hidden from customers, as in `list`
    ):
        raise not_found()
    return json_reply(200, conversation.full(fake._user_basic(conversation.user)))


async def _destroy(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    conversation = _own(fake, request)
    conversation.deleted = True  # a soft delete
    return empty(204)


async def _cancel(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    # `AgentExecutor.cancel_workflow`, for any conversation: it cancels the LangGraph
    # workflows (a sandbox conversation has none: its runs cancel through the tasks API, so
    # this stops nothing), clears the queue, and saves the status twice (`canceling`, then
    # `idle`), `updated_at` with it.
    conversation = _own(fake, request)
    if conversation.run is not None:
        conversation.run.cancel()
        conversation.refresh()
    conversation.queue.clear()
    conversation.updated_at = now()
    return empty(204)


async def _append_message(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    conversation = _own(fake, request)
    content = validate_text(request.body(), "content", max_length=10000, allow_null=False)
    message = {"type": "ai", "content": content, "id": str(uuid.uuid4())}
    # PostHog updates the graph state only (its checkpoint tables): `updated_at`, and so the
    # conversation's place in `list()`, stays as it was.
    conversation.messages.append(message)
    return json_reply(201, {"id": message["id"]})


def _routes() -> list[Route]:
    base = ("conversations",)
    item = (*base, "{conversation}")
    scope = "conversation"
    return [
        Route("GET", base, _list, scope),
        Route("POST", base, _create, scope, key_throttled=False),
        Route("GET", item, _retrieve, scope),
        Route("DELETE", item, _destroy, scope),
        # Custom actions without required_scopes: scoped personal API keys get 403.
        Route("PATCH", (*item, "cancel"), _cancel, None),
        Route("POST", (*item, "append_message"), _append_message, None),
        *_conversation_queue.routes(item),
    ]


ROUTES = _routes()
