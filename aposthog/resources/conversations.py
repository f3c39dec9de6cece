"""`ph.conversations`: PostHog AI conversations and their streamed answers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .. import _routes as routes
from .._client import NOT_GIVEN, NotGiven
from .._errors import NotFoundError, ResponseDecodeError
from .._http import segment
from .._pagination import AsyncPaginator
from .._streaming import ConversationStream
from ..models.conversations import AgentMode, Conversation, ConversationSummary, ConversationType
from ._base import Resource, check_paging
from ._checks import check_bool, header_value, int_in_range, uuid_id, uuid_segment
from ._messages import MAX_CONTENT_LENGTH, json_object, message_options
from ._messages import content as check_content
from .conversation_queue import ConversationQueue

__all__ = ["MAX_APPEND_LENGTH", "MAX_CONTENT_LENGTH", "Conversations"]

_PATH = "conversations"
MAX_APPEND_LENGTH = 10000
"""The longest message `append_message()` sends."""
Timeout = float | None | NotGiven
ConversationId = str | uuid.UUID


def _uuid(name: str, value: ConversationId | None) -> str:
    """A client-minted id must be a UUID: PostHog rejects anything else with a 400."""
    if value is None:
        return str(uuid.uuid4())
    return uuid_id(name, value)


def _reattaches(value: object) -> int | None:
    if value is None:
        return None  # the client's RetryPolicy.max_reattaches
    return int_in_range("max_reattach_attempts", value, 0)


class Conversations(Resource):
    """
    PostHog AI conversations (`/api/environments/<project>/conversations/`).

    Example:
        ```python
        stream = ph.conversations.create("Which pages had the most views yesterday?")
        async with stream:
            async for text in stream.text_deltas():
                print(text, end="", flush=True)
        again = ph.conversations.create("And before?", conversation=stream.conversation_id)
        ```
    """

    __slots__ = ()

    @property
    def queue(self) -> ConversationQueue:
        """Messages waiting for a conversation's running answer (see `ConversationQueue`)."""
        return ConversationQueue(self._api)

    def _note_research(self, conversation_id: str, research: bool) -> None:
        # Shared by every `with_options()` view, as the rate limits are.
        self._api.pipeline.note_research(conversation_id, research)

    def _bucket(self, conversation_id: str, *, requested: bool) -> str:
        known = conversation_id in self._api.pipeline.research_conversations
        return "ai_research" if requested or known else "ai"

    def list(
        self, *, limit: int | None = None, offset: int | None = None, timeout: Timeout = NOT_GIVEN
    ) -> AsyncPaginator[ConversationSummary]:
        """
        Your titled conversations, most recently updated first (without their messages).

        Example:
            ```python
            async for conversation in ph.conversations.list():
                print(conversation.title, conversation.status)
            ```
        """
        check_paging(limit, offset)
        return self._api.paginate(
            ConversationSummary,
            routes.CONVERSATIONS,
            params={"limit": limit, "offset": offset},
            timeout=timeout,
            on_results=self._note_listed,
        )

    def _note_listed(self, conversations: Sequence[ConversationSummary]) -> None:
        for conversation in conversations:
            if conversation.type is not None:
                research = conversation.type == ConversationType.DEEP_RESEARCH
                self._note_research(conversation.id, research)

    async def get(self, id: ConversationId, *, timeout: Timeout = NOT_GIVEN) -> Conversation:
        """
        A conversation with its messages and pending approvals.

        `NotFoundError` until PostHog has generated its title (a few seconds after the
        first answer starts), and for deleted conversations.
        """
        conversation: Conversation = await self._api.fetch(
            Conversation, routes.CONVERSATION_GET, uuid_segment("id", id), timeout=timeout
        )
        if conversation.type is not None:
            research = conversation.type == ConversationType.DEEP_RESEARCH
            self._note_research(conversation.id, research)
        return conversation

    def create(
        self,
        content: str | None,
        *,
        conversation: ConversationId | None = None,
        agent_mode: AgentMode | str | None = None,
        contextual_tools: Mapping[str, Any] | None = None,
        ui_context: Mapping[str, Any] | None = None,
        billing_context: Any = None,
        trace_id: ConversationId | None = None,
        session_id: str | None = None,
        deep_research_mode: bool = False,
        resume_payload: Mapping[str, Any] | None = None,
        max_reattach_attempts: int | None = None,
        timeout: Timeout = NOT_GIVEN,
        stream_idle_timeout: Timeout = NOT_GIVEN,
    ) -> ConversationStream:
        """
        Send a message and stream PostHog AI's answer. Returns at once; the request goes
        out when the stream is iterated or entered (`async with`), and errors PostHog
        gives before streaming (400, 402, 409 while it is still answering, 429) raise there.
        While it answers, `queue.add()` queues a message instead; PostHog streams each
        queued message's run on after the answer, on the same stream.

        Args:
            content: your message (at most 40000 characters, not blank). None continues
                a conversation without a new message: with `resume_payload`, or see `stream()`.
            conversation: the id of a conversation to continue; None starts a new one (its
                UUID is minted here: `stream.conversation_id`).
            agent_mode: an `AgentMode` or any mode string PostHog knows (but `sandbox`:
                PostHog opens those conversations elsewhere, and refuses it here, so it is
                a `ValueError` before sending). PostHog counts a
                message in research mode, or to a `deep_research` conversation (one this
                client created in research mode, or fetched or listed), in its research rate
                windows; the client waits for those.
            contextual_tools: passed to PostHog as it is.
            ui_context: what the user is looking at, a JSON object (PostHog's `MaxUIContext`:
                `dashboards`, `insights`, `events`, `actions`, `error_tracking_issues`,
                `evaluations`, `notebooks`, `form_answers`, `voice_mode`; versions differ),
                passed to PostHog as it is. PostHog validates it with the message and
                answers 400 (`BadRequestError`, "Invalid message content.") for an unknown
                key or a value of the wrong type; with `content=None` it is not used.
            billing_context: passed to PostHog as it is.
            trace_id: the request's trace id (a UUID); minted when None.
            session_id: a PostHog session id, sent as the `X-POSTHOG-SESSION-ID` header.
            deep_research_mode: the research flag of older PostHog versions; newer ones
                use `agent_mode="research"` (and ignore the flag). A message with it counts
                in PostHog's chat rate windows, not the research ones, in every version.
            resume_payload: an approval decision, e.g. `{"action": "approve",
                "proposal_id": ...}` (see `Conversation.pending_approvals`). While the
                conversation answers another message (sent from elsewhere), PostHog
                streams that run instead and does not apply the decision: the stream
                raises `ConflictError` then (told by that run's human message, or at the
                latest when that run ends, by the approval still `pending` or
                `auto_rejected`: a run PostHog replays from its middle may have given
                out some of its text first). A resume's stream that ends fetches the
                conversation once to tell this.
            max_reattach_attempts: how many times in a row a dropped (or silent)
                connection is re-attached before the error is raised (0: never; None:
                the client's `RetryPolicy.max_reattaches`).
            timeout: this stream's `timeout` (None: no limit), in place of the client's:
                each attempt to open the stream, until PostHog starts answering, and each
                request the stream makes (to catch up with a run that ended while it was
                away, and `stream.cancel()`'s, which also waits at most this long for
                PostHog to answer a message on its way).
            stream_idle_timeout: this stream's `stream_idle_timeout` (None: no limit), in
                place of the client's: how long it may go silent before it is treated
                like a dropped connection (PostHog sends a keepalive every 15 s).

        Example:
            ```python
            stream = ph.conversations.create("What is our weekly retention?", agent_mode="sql")
            result = await stream.until_done()
            print(result.text)
            ```
        """
        if content is None:
            if conversation is None:
                raise ValueError("content=None continues a conversation: pass conversation=")
        else:
            content = check_content(content, limit=MAX_CONTENT_LENGTH)
        conversation_id = _uuid("conversation", conversation)
        body: dict[str, Any] = {"content": content, "conversation": conversation_id}
        body.update(
            message_options(
                agent_mode=agent_mode,
                contextual_tools=contextual_tools,
                ui_context=ui_context,
                billing_context=billing_context,
            )
        )
        if body.get("agent_mode") == AgentMode.SANDBOX.value:
            # PostHog's `create()` refuses it in every version (its 400 "Sandbox
            # conversations must be opened via the open endpoint.", after the AI throttle
            # counted the message; or, before sandboxes, an unknown mode).
            raise ValueError(
                "agent_mode 'sandbox' is not one create() can send: PostHog opens sandbox "
                "conversations through their own endpoint, and refuses it here"
            )
        if session_id is not None:
            body["session_id"] = header_value("session_id", session_id)
        if check_bool("deep_research_mode", deep_research_mode):
            body["deep_research_mode"] = True
        if resume_payload is not None:
            body["resume_payload"] = json_object("resume_payload", resume_payload)
        # Every argument is checked before the research tracking below changes: a call
        # refused here leaves it as it was.
        checked_trace_id = _uuid("trace_id", trace_id)
        reattaches = _reattaches(max_reattach_attempts)
        api = self._api.with_timeouts(timeout, stream_idle_timeout)
        # PostHog AI counts research runs in windows of their own (reference §1.6): a
        # message in research mode, or any request to a `deep_research` conversation.
        requested = body.get("agent_mode") == "research"
        # (The older research flag never counted in those windows: PostHog applies its
        # chat throttles to such a message, in every version.)
        bucket = self._bucket(conversation_id, requested=requested)
        if requested:
            # A new conversation is created `deep_research` (an existing one keeps its type:
            # counting it as research errs toward the stricter windows).
            self._note_research(conversation_id, True)
        elif content is not None and resume_payload is None:
            # A new message turns an idle research conversation into a chat (this message
            # still counts as research).
            self._note_research(conversation_id, False)
        return ConversationStream(
            api,
            conversation_id=conversation_id,
            body=body,
            trace_id=checked_trace_id,
            session_id=session_id,
            max_reattach_attempts=reattaches,
            bucket=bucket,
        )

    def stream(
        self,
        id: ConversationId,
        *,
        session_id: str | None = None,
        max_reattach_attempts: int | None = None,
        timeout: Timeout = NOT_GIVEN,
        stream_idle_timeout: Timeout = NOT_GIVEN,
    ) -> ConversationStream:
        """
        Re-attach to the answer PostHog is generating now (`content: null`).

        PostHog replays what its stream of the run holds (the whole run, or what it
        produced since its last reader left), then streams it live; the stream
        de-duplicates as usual, and a run whose start it did not see is checked against
        the conversation when it ends. `BadRequestError` (on iteration) if the conversation is
        idle: use `get()` for a finished one. `max_reattach_attempts`, `timeout` and
        `stream_idle_timeout` are as for `create()`.

        The run is the conversation's, not this reader's: `stream.cancel()` stops it for
        every reader (another device's, which then meets the end of an answer cut short).
        A reader that only watched, whose user goes away, closes its stream (`aclose()`).

        Example:
            ```python
            conversation = await ph.conversations.get(conversation_id)
            if conversation.status == "in_progress":
                async for text in ph.conversations.stream(conversation_id).text_deltas():
                    print(text, end="")
            ```
        """
        conversation_id = uuid_id("id", id)
        if session_id is not None:
            header_value("session_id", session_id)
        return ConversationStream(
            self._api.with_timeouts(timeout, stream_idle_timeout),
            conversation_id=conversation_id,
            body={"content": None, "conversation": conversation_id},
            trace_id=str(uuid.uuid4()),
            session_id=session_id,
            max_reattach_attempts=_reattaches(max_reattach_attempts),
            bucket=self._bucket(conversation_id, requested=False),
        )

    async def append_message(
        self, id: ConversationId, content: str, *, timeout: Timeout = NOT_GIVEN
    ) -> str:
        """
        Add an assistant message to a conversation without running the AI; returns its id.

        `content` may be at most 10000 characters (checked before sending). PostHog
        refuses this action to scoped personal API keys (`PermissionDeniedError`).
        """
        text = check_content(content, limit=MAX_APPEND_LENGTH)
        new_id: str = await self._api.request_json(
            routes.CONVERSATION_APPEND,
            uuid_segment("id", id),
            json={"content": text},
            timeout=timeout,
            expect=_message_id,
        )
        return new_id

    async def cancel(self, id: ConversationId, *, timeout: Timeout = NOT_GIVEN) -> None:
        """
        Stop the conversation's running generation. Idempotent: an idle one stays idle.

        PostHog refuses this action to scoped personal API keys (`PermissionDeniedError`),
        and answers `UnprocessableEntityError` (422) when it fails to stop the run.

        This client's own streams of the conversation end as after `stream.cancel()`
        (quietly, `cancelled`): PostHog ends their body, which is no cut to re-attach
        after. As `stream.cancel()` does, it first waits for a POST of theirs on its way
        (at most that stream's `timeout`): the run starts only as PostHog answers it.

        A conversation PostHog does not know (or deleted) is a `NotFoundError`, unless
        this client's streams of it have sent nothing that may have started a run (their
        first message waits to be sent again, after a 429, say): then nothing runs, and
        they end `cancelled`, the message unsent.
        """
        conversation_id = uuid_id("id", id)
        api = self._api
        mine = [
            stream
            for stream in list(api.pipeline.streams)
            if stream.conversation_id == conversation_id and not stream.closed
        ]
        for stream in mine:
            stream.begin_cancel()
        try:
            for stream in mine:
                await stream.answered()
            await api.request_json(
                routes.CONVERSATION_CANCEL, segment(conversation_id, name="id"), timeout=timeout
            )
        except NotFoundError:
            if not mine or any(stream.run_may_exist for stream in mine):
                for stream in mine:  # (a conversation deleted under a run that goes on)
                    stream.settle_cancel(stopped=False)
                raise
            # PostHog has no such conversation yet, and this client's streams of it sent
            # nothing that may have started a run (their message waits to be sent again,
            # after a 429, say). Stopped: it never is.
        except BaseException:
            for stream in mine:  # not stopped: they read on, and re-attach if cut
                stream.settle_cancel(stopped=False)
            raise
        for stream in mine:
            stream.settle_cancel(stopped=True)

    async def delete(self, id: ConversationId, *, timeout: Timeout = NOT_GIVEN) -> None:
        """
        Delete a conversation (PostHog keeps it, flagged deleted: it is gone from the API).

        `NotFoundError` for an unknown id; a retry that finds it gone after an attempt
        PostHog may have carried out (its answer lost) is the delete's success.
        """
        conversation_id = uuid_id("id", id)
        await self._api.request_json(
            routes.CONVERSATION_DELETE, segment(conversation_id, name="id"), timeout=timeout
        )
        self._note_research(conversation_id, False)


def _message_id(body: Any) -> str:
    """The id of the message `append_message` added."""
    new_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(new_id, str):
        raise ResponseDecodeError(
            "append_message answered without a message id", body=body, path=_PATH
        )
    return new_id
