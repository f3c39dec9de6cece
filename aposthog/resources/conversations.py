"""`ph.conversations`: PostHog AI conversations and their streamed answers."""

from __future__ import annotations

from ._base import Resource

__all__ = ["Conversations"]


class Conversations(Resource):
    """PostHog AI conversations (`/api/environments/<project>/conversations/`)."""

    __slots__ = ()
