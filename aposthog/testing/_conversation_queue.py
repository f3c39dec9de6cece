"""
FakePostHog's PostHog AI message queue, as `ConversationViewSet`'s `queue`, `queue_item` and
`clear_queue` actions serve it (`ee/api/conversation.py`, `ee/hogai/queue.py`): up to two
messages a user sends while PostHog AI answers.

When a run ends, PostHog's chat workflow starts the first queued message as the next run
(`process_chat_agent_activity`, `posthog/temporal/ai/chat_agent.py`): a human message with a
new trace id, in the same Redis stream, which it leaves open, so a reader of the run that
ended reads on into the next one. The fake does the same when it sees a run's end (its
conversation's `refresh()`, which every route and every reader at the end of a run calls).
A cancelled run starts nothing (and a cancel clears the queue), an approval still pending at
a run's end (the run ended awaiting it; a run without a resume payload first marks the cards
still pending from before it `auto_rejected`) clears the queue instead, and a research run
leaves it alone (the research workflow does not drain it): what counts is the workflow the
run was started in, which PostHog picks per request (research mode on an `assistant`
conversation runs the research workflow and keeps the type; a new message on an idle
`deep_research` one runs the chat workflow), not the conversation's type.

Not modelled: the queue's one-hour cache timeout; the newest store's "drain closed" flag,
which refuses a message queued after the last run ended with an empty queue (how the view
answers that is not known: here such a message waits for the next run to end); and a
`billing_context` PostHog cannot parse as `MaxBillingContext`, which it stores as null (the
fake keeps what was sent).
"""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING, Any

import attrs

from ._ai_runs import AIScript, Run, build_run
from ._conversation_checks import (
    uuid_text,
    validate_agent_mode,
    validate_context_fields,
    validate_human_message,
    validate_text,
)
from ._loopback import ServerReply
from ._wire import FakeRequest, HTTPError, Route, json_reply, now

if TYPE_CHECKING:
    from ._conversations import FakeConversation
    from ._fake import FakePostHog

__all__ = ["MAX_QUEUE_MESSAGES", "routes", "stored"]

MAX_QUEUE_MESSAGES = 2
"""PostHog's `MAX_QUEUE_MESSAGES`: the messages a conversation's queue holds at once."""
_MAX_LENGTH = 40000  # the serializers' `content` max_length
_FULL = {"error": "queue_full", "detail": "Only two messages can be queued at a time."}


def stored(fake: FakePostHog, request: FakeRequest) -> FakeConversation | None:
    """
    The conversation the URL names, in any spelling of its id (Django's `UUIDField` reads
    upper case, no hyphens, braces), or None (an id that is no UUID is none).
    """
    try:
        return fake.conversations.get(uuid_text(request.params["conversation"]))
    except ValueError:
        return None


def _conversation(fake: FakePostHog, request: FakeRequest) -> FakeConversation:
    # `_ensure_queue_access`, every action's first step: any non-deleted conversation by id
    # (no title needed), then the owner. Not the usual envelope: the view's own bodies.
    conversation = stored(fake, request)
    if conversation is None or conversation.deleted:
        raise HTTPError(json_reply(404, {"error": "Conversation not found"}))
    if conversation.user != request.user_key:
        raise HTTPError(json_reply(403, {"error": "Cannot access other users' conversations"}))
    conversation.refresh()  # a run that ended by now has started the first queued message
    return conversation


def _reply(conversation: FakeConversation) -> ServerReply:
    body = {"messages": conversation.queue, "max_queue_messages": MAX_QUEUE_MESSAGES}
    return json_reply(200, body)


def _find(conversation: FakeConversation, request: FakeRequest) -> int:
    queue_id = request.params["queue_id"]
    for index, message in enumerate(conversation.queue):
        if message["id"] == queue_id:
            return index
    raise HTTPError(json_reply(404, {"detail": "Queue message not found."}))


async def _list(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    return _reply(_conversation(fake, request))


async def _enqueue(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    conversation = _conversation(fake, request)
    body = request.body()
    # QueueMessageSerializer's fields in declaration order (drf-exceptions-hog reports the
    # first failing one), then its validate(); unknown keys are ignored.
    content = validate_text(body, "content", max_length=_MAX_LENGTH, allow_null=False)
    validate_context_fields(body)
    mode = validate_agent_mode(body)
    validate_human_message(body.get("ui_context"))
    message: dict[str, Any] = {  # `build_queue_message`
        "id": str(uuid.uuid4()),
        "content": content,
        "created_at": now().isoformat(),  # Django's `timezone.now().isoformat()`: +00:00
        "contextual_tools": body.get("contextual_tools"),
        "ui_context": body.get("ui_context"),
        "billing_context": body.get("billing_context"),
        "agent_mode": mode,
        "session_id": request.raw.headers.get("x-posthog-session-id"),
    }
    if len(conversation.queue) >= MAX_QUEUE_MESSAGES:
        return json_reply(409, _FULL)
    conversation.queue.append(message)
    conversation.drain = functools.partial(_drain, fake, conversation)
    return _reply(conversation)


async def _update(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    conversation = _conversation(fake, request)
    index = _find(conversation, request)  # before the body: an unknown id is 404 whatever it is
    content = validate_text(request.body(), "content", max_length=_MAX_LENGTH, allow_null=False)
    conversation.queue[index] = {**conversation.queue[index], "content": content}
    return _reply(conversation)


async def _delete(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    conversation = _conversation(fake, request)
    del conversation.queue[_find(conversation, request)]
    return _reply(conversation)  # 200 with what is left, not a 204


async def _clear(fake: FakePostHog, request: FakeRequest) -> ServerReply:
    conversation = _conversation(fake, request)
    conversation.queue.clear()
    return _reply(conversation)


def _drain(fake: FakePostHog, conversation: FakeConversation, ended: Run) -> Run | None:
    """The run PostHog starts for the first queued message once `ended` has ended, if any."""
    if ended.cancelled_at is not None or conversation.research_run:
        return None
    if any(a.get("decision_status") == "pending" for a in conversation.pending_approvals):
        conversation.queue.clear()  # the chat workflow clears it rather than run past them
        return None
    if not conversation.queue:
        return None
    message = conversation.queue.pop(0)
    # As `POST conversations/` would start it on the idle conversation: the next scripted
    # answer, the message's mode kept by the graph state (else the last one stays).
    script = fake.ai_scripts.popleft() if fake.ai_scripts else AIScript()
    if message["agent_mode"] is not None:
        conversation.agent_mode = message["agent_mode"]
    run = build_run(
        script,
        content=message["content"],
        human_id=str(uuid.uuid4()),
        trace_id=str(uuid.uuid4()),  # the workflow's own: the queue keeps none
        conversation=None,  # not a new conversation: no `conversation` events
        ui_context=message["ui_context"],
    )
    run.session_id = message["session_id"] or ended.session_id
    # It starts when `ended` ended (however late the fake notices), its timeline with it.
    return attrs.evolve(run, start=ended.end)


def routes(item: tuple[str, ...]) -> list[Route]:
    """The queue's routes under a conversation's `item` pattern."""
    queue = (*item, "queue")
    message = (*queue, "{queue_id}")
    # Custom actions without required_scopes (scoped personal API keys get 403); the
    # ordinary API throttles. `queue/clear/` is matched before `queue/{queue_id}/`.
    return [
        Route("GET", queue, _list, None),
        Route("POST", queue, _enqueue, None),
        Route("PATCH", message, _update, None),
        Route("DELETE", message, _delete, None),
        Route("POST", (*queue, "clear"), _clear, None),
    ]
