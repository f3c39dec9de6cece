"""
The conversation state of a FakePostHog: its conversations, the scripted answers waiting
for the next messages, what it saw of its event streams, and its users.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import anyio

from ._ai_runs import AIScript, StreamStats
from ._conversation_checks import uuid_text
from ._conversations import FakeConversation

__all__ = ["ConversationsKnobs"]


class ConversationsKnobs:
    """
    The conversation state of a FakePostHog, which exposes it as its own attributes and
    methods (`fake.conversations`, `fake.script_answer(...)`); the scalar knobs
    (`keepalive_interval`, `ai_burst_limit`, …) are plain attributes of the fake.

    Attributes:
        conversations: every conversation by id (deleted ones stay, flagged).
        ai_scripts: the queued answers (`script_answer`); a default answer when empty.
        ai_streams: what the fake saw of its event streams (opened, open, completed,
            disconnected by the client, dropped by a script).
    """

    def __init__(self) -> None:
        self.conversations: dict[str, FakeConversation] = {}
        self.ai_scripts: collections.deque[AIScript] = collections.deque()
        self.ai_streams = StreamStats()
        self._users: dict[str, dict[str, Any]] = {}

    def script_answer(self, text: str | None = None, **options: Any) -> AIScript:
        """
        Queue how PostHog AI answers the next message (see `AIScript` for the options).

        `text` is the answer's text (None: `AIScript`'s default answer); anything else is
        a `TypeError`. A script built beforehand is queued with `fake.ai_scripts.append`.

        Example:
            ```python
            fake.script_answer("Hello! 👋", chunk_size=3, delay=0.01, tool="search")
            fake.script_answer("never finished", fail="Oops! Something went wrong.")
            fake.script_answer("I'll create it.", approval="create_feature_flag")
            ```

        With `approval=TOOL` the run ends awaiting the user's approval of that tool's call
        (a pending card in the conversation's `pending_approvals`, the conversation idle);
        `create(None, conversation=id, resume_payload={"action": "approve" | "reject",
        "proposal_id": ...})` then records the decision and runs the next script. As in
        PostHog, a resume whose proposal is not pending (unknown, or decided already)
        fails the run: its stream holds only `{"type": "ai/failure", "content": "Oops!
        Something went wrong. Please try again.", "id": ...}` and it spends no script;
        and a new message instead of a decision marks the pending cards `auto_rejected`.
        """
        # Refused here: queued, a non-str text failed only at the next message, as a 500.
        given: object = text  # typed str | None, checked for callers who are not
        if isinstance(given, AIScript):
            raise TypeError(
                "text must be a str or None, got an AIScript: "
                "queue a ready script with fake.ai_scripts.append(script)"
            )
        if given is not None and not isinstance(given, str):
            raise TypeError(f"text must be a str or None, got {given!r}")
        # No text: `AIScript`'s own default answer.
        script = AIScript(**options) if text is None else AIScript(text=text, **options)
        self.ai_scripts.append(script)
        return script

    def seed_conversation(
        self,
        *,
        title: str | None = "A seeded conversation",
        user: str = "user-1",
        messages: Iterable[Mapping[str, Any]] = (),
        pending_approvals: Iterable[Mapping[str, Any]] = (),
        type: str = "assistant",
        is_internal: bool = False,
        id: str | None = None,
        agent_runtime: str = "langgraph",
    ) -> FakeConversation:
        """
        Add an idle conversation with these messages (dicts with `type`; ids are added).

        `pending_approvals` are its approval cards as PostHog's serializer shows them
        (`proposal_id`, `decision_status`, `tool_name`, `preview`, `payload`,
        `original_tool_call_id`, `message_id`): one whose `decision_status` is "pending"
        is a tool call awaiting approval, which a resume may approve or reject.

        `agent_runtime` is PostHog's: `langgraph`, or `sandbox` for a conversation its
        `open/` endpoint serves (`POST conversations/` refuses it, `cancel/` stops nothing;
        without messages it has none and a null `agent_mode`, as one born on the sandbox
        runtime; with them it plays an old thread converted to it). Anything else is a
        `ValueError`. `id` is any spelling of a UUID, kept in its canonical form (as
        PostHog's `UUIDField` stores it); a `ValueError` if it is none.
        """
        # Checked here: a value PostHog's model cannot hold would be served as a body
        # PostHog never sends, and read by the client as its error, not the test's.
        given: dict[str, object] = {"title": title, "user": user, "type": type}
        for name, value in given.items():
            if value is None and name == "title":
                continue
            if not isinstance(value, str) or (name != "title" and not value):
                wanted = "a str or None" if name == "title" else "a non-empty str"
                raise TypeError(f"{name} must be {wanted}, got {value!r}")
        internal: object = is_internal
        if not isinstance(internal, bool):
            raise TypeError(f"is_internal must be a bool, got {is_internal!r}")
        messages = list(messages)
        pending_approvals = list(pending_approvals)
        for name, records in (("messages", messages), ("pending_approvals", pending_approvals)):
            for record in records:
                if not isinstance(record, Mapping):
                    raise TypeError(f"{name} must hold mappings (dicts), got {record!r}")
        if any("type" not in message for message in messages):
            raise ValueError("each of messages must have a 'type' (such as 'human' or 'ai')")
        conversation = FakeConversation(
            id=str(uuid.uuid4()) if id is None else _canonical_id(id),
            user=user,
            title=title,
            type=type,
            is_internal=is_internal,
            agent_runtime=agent_runtime,
            messages=[{"id": str(uuid.uuid4()), **m} for m in messages],
            pending_approvals=[dict(p) for p in pending_approvals],
        )
        self.conversations[conversation.id] = conversation
        return conversation

    async def wait_for_streams_closed(self, timeout: float = 2.0) -> None:
        """Wait until the fake has no event stream open (it saw every client leave)."""
        with anyio.fail_after(timeout):
            # Polling keeps StreamStats a plain record, creatable outside an event loop.
            while self.ai_streams.open:  # noqa: ASYNC110
                await anyio.sleep(0.005)

    def user_basic(self, user: str) -> dict[str, Any]:
        """The `UserBasic` record of a user of the fake (made up on first use)."""
        if user not in self._users:
            number = len(self._users) + 1
            self._users[user] = {
                "id": number,
                "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-posthog-user:{user}")),
                "distinct_id": f"distinct-{user}",
                "first_name": user,
                "last_name": "",
                "email": f"{user}@example.com",
                "is_email_verified": True,
                "hedgehog_config": None,
                "role_at_organization": None,
            }
        return self._users[user]


def _canonical_id(value: str) -> str:
    try:
        return uuid_text(value)
    except ValueError:
        raise ValueError(f"id must be a UUID, got {value!r:.60}") from None
