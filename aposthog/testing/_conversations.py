"""FakePostHog's PostHog AI conversations."""

from __future__ import annotations

from ._wire import Route

__all__ = ["ROUTES", "ConversationsFake"]


class ConversationsFake:
    """The conversation state and knobs of FakePostHog."""

    def _init_conversations(self) -> None:
        """Set up the in-memory state."""


ROUTES: list[Route] = []
