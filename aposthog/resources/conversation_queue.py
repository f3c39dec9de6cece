"""`ph.conversations.queue`: messages waiting for a conversation's running answer."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from .. import _routes as routes
from .._client import NOT_GIVEN, NotGiven
from .._http import Route, segment
from ..models.conversations import AgentMode, MessageQueue
from ._base import Resource
from ._checks import header_value, uuid_segment
from ._messages import MAX_CONTENT_LENGTH, message_options
from ._messages import content as check_content

__all__ = ["ConversationQueue"]

Timeout = float | None | NotGiven
ConversationId = str | uuid.UUID


def _message_id(value: Any) -> str:
    """A queued message's id as PostHog routes it: one segment without a dot."""
    if isinstance(value, bool) or not isinstance(value, (str, uuid.UUID)):
        raise TypeError(f"message_id must be a string or a UUID, got {type(value).__name__}")
    text = str(value)
    if "/" in text or "." in text:
        # PostHog's route takes `[^/.]+`: such an id can name no queued message.
        raise ValueError(f"message_id must not contain '/' or '.': {text[:80]!r}")
    return segment(text, name="message_id")


class ConversationQueue(Resource):
    """
    A conversation's message queue (`conversations/<id>/queue/`).

    While PostHog AI is answering, a new message to the conversation is refused
    (`ConflictError`). Queue it instead: when the answer ends, PostHog runs the first queued
    message, and streams that run on the same connection as the answer before it. So a
    `ConversationStream` reading that answer goes on with each queued message (a
    `MessageEvent` with its `HumanMessage`, then its answer) and ends when the queue is
    empty. PostHog holds two at a time (`MessageQueue.max_queue_messages`), for an hour;
    cancelling the conversation clears the queue, as does a tool call that awaits approval,
    and a research run does not run it.

    Every call answers the whole queue as it is after the call. They raise
    `NotFoundError` for an unknown or deleted conversation, `PermissionDeniedError` for
    another user's, and PostHog refuses them to scoped personal API keys
    (`PermissionDeniedError`).

    Example:
        ```python
        try:
            stream = ph.conversations.create(text, conversation=conversation_id)
            await stream.until_done()
        except aposthog.ConflictError:  # still answering the last message
            await ph.conversations.queue.add(conversation_id, text)
        ```
    """

    __slots__ = ()

    async def get(
        self, conversation: ConversationId, *, timeout: Timeout = NOT_GIVEN
    ) -> MessageQueue:
        """The conversation's queued messages, the next to run first."""
        return await self._call(routes.CONVERSATION_QUEUE, conversation, timeout=timeout)

    async def add(
        self,
        conversation: ConversationId,
        content: str,
        *,
        agent_mode: AgentMode | str | None = None,
        contextual_tools: Mapping[str, Any] | None = None,
        ui_context: Mapping[str, Any] | None = None,
        billing_context: Any = None,
        session_id: str | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> MessageQueue:
        """
        Queue a message behind the running answer; the queue comes back with it last.

        The arguments are checked as `ph.conversations.create()` checks them (`content`
        at most 40000 characters, not blank). A full queue is a `ConflictError` with
        `code == "queue_full"`. Not retried after a failure that may have reached
        PostHog: sent twice, the message would be queued twice.

        Queue only while PostHog AI answers: on an idle conversation the message waits
        for the next answer to end, and newer PostHog versions refuse it (no run would
        take it). Send it with `ph.conversations.create()` then.
        """
        body: dict[str, Any] = {"content": check_content(content, limit=MAX_CONTENT_LENGTH)}
        body.update(
            message_options(
                agent_mode=agent_mode,
                contextual_tools=contextual_tools,
                ui_context=ui_context,
                billing_context=billing_context,
            )
        )
        headers: tuple[tuple[str, str], ...] = ()
        if session_id is not None:
            # PostHog reads a queued message's session from the header alone.
            headers = (("X-POSTHOG-SESSION-ID", header_value("session_id", session_id)),)
        return await self._call(
            routes.CONVERSATION_QUEUE_ADD, conversation, json=body, headers=headers, timeout=timeout
        )

    async def update(
        self,
        conversation: ConversationId,
        message_id: str | uuid.UUID,
        content: str,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> MessageQueue:
        """
        Replace a queued message's text (checked as `add()` checks it).

        `NotFoundError` if no queued message has this id: it has started running, or was
        removed.
        """
        message = _message_id(message_id)
        body = {"content": check_content(content, limit=MAX_CONTENT_LENGTH)}
        return await self._call(
            routes.CONVERSATION_QUEUE_UPDATE, conversation, message, json=body, timeout=timeout
        )

    async def remove(
        self,
        conversation: ConversationId,
        message_id: str | uuid.UUID,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> MessageQueue:
        """
        Take a message out of the queue.

        `NotFoundError` if no queued message has this id: it has started running, or was
        removed (a retry after a lost answer included).
        """
        message = _message_id(message_id)
        return await self._call(
            routes.CONVERSATION_QUEUE_REMOVE, conversation, message, timeout=timeout
        )

    async def clear(
        self, conversation: ConversationId, *, timeout: Timeout = NOT_GIVEN
    ) -> MessageQueue:
        """Empty the queue (the running answer goes on)."""
        return await self._call(routes.CONVERSATION_QUEUE_CLEAR, conversation, timeout=timeout)

    async def _call(
        self,
        route: Route,
        conversation: ConversationId,
        *values: str,
        json: Any = None,
        headers: tuple[tuple[str, str], ...] = (),
        timeout: Timeout,
    ) -> MessageQueue:
        queue: MessageQueue = await self._api.fetch(
            MessageQueue,
            route,
            uuid_segment("conversation", conversation),
            *values,
            json=json,
            headers=headers,
            timeout=timeout,
        )
        return queue
