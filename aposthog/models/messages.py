"""
PostHog AI messages: a union keyed by the JSON `type` field.

The stream sends them compact with null fields left out; `GET conversations/{id}/`
sends them with every null field written out. Both decode to the same records.

PostHog adds message types and reshapes old ones often (`ai/reasoning`, `ai/planning`
and `ai/viz` have come and gone), so decoding never fails on a message: a type this
version does not know, or a known type whose fields no longer fit, becomes an
`UnknownMessage` that keeps the raw dict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Union

import attrs
from cattrs.errors import ClassValidationError, IterableValidationError

from .._converter import (
    _copy_json,
    converter,
    record_unstructure_hook,
    register_structure_hook,
    register_unstructure_hook,
    register_unstructure_hook_factory,
    unstructure,
)
from .._errors import clip
from ._common import extra_fields_field

__all__ = [
    "ArtifactMessage",
    "AssistantMessage",
    "ContextMessage",
    "FailureMessage",
    "HumanMessage",
    "Message",
    "MultiVisualizationMessage",
    "NotebookUpdateMessage",
    "PlanningMessage",
    "ReasoningMessage",
    "TaskExecutionMessage",
    "ToolCall",
    "ToolCallMessage",
    "UnknownMessage",
    "VisualizationMessage",
    "message_from_dict",
    "message_to_dict",
]

logger = logging.getLogger("aposthog")


@attrs.frozen(kw_only=True)
class ToolCall:
    """
    A tool the assistant decided to call (`AssistantToolCall`).

    Attributes:
        id: the call's id, which `ToolCallMessage.tool_call_id` and
            `UpdateEvent.tool_call_id` refer to.
        name: the tool's name, e.g. `create_insight`.
        args: the arguments, as JSON.
        type: always `tool_call` (the OpenAI shape LangChain expects).
    """

    id: str
    name: str
    args: dict[str, Any] = attrs.field(factory=dict)
    type: str = "tool_call"
    extra_fields: Mapping[str, Any] = extra_fields_field()


@attrs.frozen(kw_only=True)
class _BaseMessage:
    """What every message carries: an `id` once final, and the tool call it belongs to."""

    id: str | None = None
    parent_tool_call_id: str | None = None
    extra_fields: Mapping[str, Any] = extra_fields_field()

    @property
    def in_progress(self) -> bool:
        """
        Whether this is a snapshot of a message still being made rather than final: a
        `temp-` id, as PostHog's notebook being written (an `ai/artifact` with the id
        `temp-notebook`, sent again and again with the whole notebook so far, then the
        final artifact with its own id). An `ai` or `ai/notebook` message without an id
        is one too.
        """
        ident = self.id
        return ident is not None and ident.startswith("temp-")


@attrs.frozen(kw_only=True)
class HumanMessage(_BaseMessage):
    """
    The user's message (`human`). The stream echoes it first, with the id PostHog gave it.

    Attributes:
        content: the text the user sent.
        ui_context: the UI context sent along with it, if any.
        trace_id: the trace id of the request that sent it.
    """

    type: ClassVar[str] = "human"
    content: str
    ui_context: Any = None
    trace_id: str | None = None


@attrs.frozen(kw_only=True)
class AssistantMessage(_BaseMessage):
    """
    The assistant's text (`ai`), possibly with tool calls.

    While the answer streams, PostHog sends it again and again without an `id`, each
    time with the whole text so far (a cumulative snapshot, not a delta); the final
    message has an `id`. `ConversationStream.text_deltas()` turns the snapshots into deltas.

    Attributes:
        content: the text (so far, for an in-progress snapshot).
        tool_calls: tools the assistant calls, or None.
        meta: extra data such as `form` options or `thinking` blocks, or None.
    """

    type: ClassVar[str] = "ai"
    content: str = ""
    tool_calls: list[ToolCall] | None = None
    meta: dict[str, Any] | None = None

    @property
    def in_progress(self) -> bool:
        """Whether this is a streaming snapshot (no id, or a `temp-` id) rather than final."""
        return self.id is None or self.id.startswith("temp-")


@attrs.frozen(kw_only=True)
class ReasoningMessage(_BaseMessage):
    """A reasoning step (`ai/reasoning`; deprecated by PostHog, kept for older servers)."""

    type: ClassVar[str] = "ai/reasoning"
    content: str = ""
    substeps: list[str] | None = None


@attrs.frozen(kw_only=True)
class VisualizationMessage(_BaseMessage):
    """A generated insight (`ai/viz`; the legacy visualization message)."""

    type: ClassVar[str] = "ai/viz"
    query: str | None = None
    plan: str | None = None
    answer: Any = None
    initiator: str | None = None
    short_id: str | None = None


@attrs.frozen(kw_only=True)
class MultiVisualizationMessage(_BaseMessage):
    """Several generated insights with commentary (`ai/multi_viz`)."""

    type: ClassVar[str] = "ai/multi_viz"
    visualizations: list[Any] = attrs.field(factory=list)
    commentary: str | None = None


@attrs.frozen(kw_only=True)
class ArtifactMessage(_BaseMessage):
    """
    An artifact the assistant made (`ai/artifact`): a visualization or a notebook.

    Attributes:
        artifact_id: the artifact's id.
        source: where it lives: `artifact`, `insight` or `state`.
        content: `{"content_type": "visualization", "query": …}` or
            `{"content_type": "notebook", "blocks": …}`.
    """

    type: ClassVar[str] = "ai/artifact"
    artifact_id: str
    source: str = "artifact"
    content: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class FailureMessage(_BaseMessage):
    """
    The generation failed (`ai/failure`). It arrives inside a 200 stream, which then ends.

    Attributes:
        content: what went wrong, for the user; None for PostHog's bare failure.
    """

    type: ClassVar[str] = "ai/failure"
    content: str | None = None


@attrs.frozen(kw_only=True)
class NotebookUpdateMessage(_BaseMessage):
    """
    A notebook the assistant is writing (`ai/notebook`).

    While it writes one, PostHog sends it again and again without an `id`, each time the
    whole notebook so far; the final message has an `id`. A stream passes those on as
    they come, and keeps only the final one among its messages.

    Attributes:
        notebook_id: the notebook's short id.
        content: the notebook as ProseMirror JSON.
    """

    type: ClassVar[str] = "ai/notebook"
    notebook_id: str
    content: dict[str, Any] = attrs.field(factory=dict)
    notebook_type: str | None = None
    conversation_notebooks: list[Any] | None = None
    current_run_notebooks: list[Any] | None = None
    tool_calls: list[ToolCall] | None = None

    @property
    def in_progress(self) -> bool:
        """Whether this is a snapshot of the notebook being written (no id, or a `temp-` id)."""
        return self.id is None or self.id.startswith("temp-")


@attrs.frozen(kw_only=True)
class PlanningMessage(_BaseMessage):
    """A research plan (`ai/planning`; deprecated by PostHog)."""

    type: ClassVar[str] = "ai/planning"
    steps: list[Any] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class TaskExecutionMessage(_BaseMessage):
    """Research tasks being executed (`ai/task_execution`; deprecated by PostHog)."""

    type: ClassVar[str] = "ai/task_execution"
    tasks: list[Any] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class ToolCallMessage(_BaseMessage):
    """
    A tool's result (`tool`). PostHog's UI shows it only when `ui_payload` is set.

    Attributes:
        content: the tool's output, for the model.
        tool_call_id: the `ToolCall.id` this answers.
        ui_payload: data for the frontend (contextual tools), or None.
    """

    type: ClassVar[str] = "tool"
    content: str = ""
    tool_call_id: str
    ui_payload: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class ContextMessage(_BaseMessage):
    """Context given to the model (`context`); PostHog normally filters it out."""

    type: ClassVar[str] = "context"
    content: str = ""
    meta: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class UnknownMessage:
    """
    A message this version cannot type: a newer `type`, or a known one that no longer fits.

    Attributes:
        type: the `type` field as sent ("" when missing).
        id: the message's id, if it had a string one.
        data: the whole message as PostHog sent it.
    """

    type: str
    id: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)

    @property
    def in_progress(self) -> bool:
        """Whether this is a snapshot of a message still being made (a `temp-` id)."""
        ident = self.id
        return ident is not None and ident.startswith("temp-")


Message = Union[  # noqa: UP007 (a runtime alias: cattrs dispatches on this exact object)
    HumanMessage,
    AssistantMessage,
    FailureMessage,
    ToolCallMessage,
    ArtifactMessage,
    NotebookUpdateMessage,
    VisualizationMessage,
    MultiVisualizationMessage,
    ReasoningMessage,
    PlanningMessage,
    TaskExecutionMessage,
    ContextMessage,
    UnknownMessage,
]
"""Any message of a conversation; `type` tells which."""

_KNOWN: tuple[Any, ...] = (
    HumanMessage,
    AssistantMessage,
    FailureMessage,
    ToolCallMessage,
    ArtifactMessage,
    NotebookUpdateMessage,
    VisualizationMessage,
    MultiVisualizationMessage,
    ReasoningMessage,
    PlanningMessage,
    TaskExecutionMessage,
    ContextMessage,
)
_BY_TYPE: dict[str, Any] = {cls.type: cls for cls in _KNOWN}
_KNOWN_SET: frozenset[Any] = frozenset(_KNOWN)
_HOOKS: dict[Any, Callable[[Any, Any], Any]] = {}  # each known class's structure hook


# AttributeError: a list where a mapping belongs; RecursionError: nesting too deep to walk.
_NOT_FITTING = (
    ClassValidationError,
    IterableValidationError,
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
    RecursionError,
)


def message_from_dict(data: Any) -> Message:
    """
    Decode one message dict; never fails on a dict (see `UnknownMessage`).

    Example:
        >>> message_from_dict({"type": "ai", "content": "Hi", "id": "m1"}).content
        'Hi'
        >>> message_from_dict({"type": "ai/hologram", "id": "m1"}).type
        'ai/hologram'
    """
    if not isinstance(data, dict):
        raise TypeError(f"expected a message object, got {type(data).__name__}")
    kind = data.get("type")
    cls = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    if cls is not None:
        hook = _HOOKS.get(cls)
        if hook is None:
            hook = _HOOKS[cls] = converter.get_structure_hook(cls)
        try:
            # `type` is the key the class was chosen by: its hook reads past it.
            message: Message = hook(data, cls)
            return message
        except _NOT_FITTING as exc:
            # A known type reshaped by a newer PostHog: keep it whole rather than fail.
            logger.debug(
                "message of type %s does not fit %s: %s",
                clip(repr(kind), 100),
                cls.__name__,
                clip(str(exc)),
            )
    ident = data.get("id")
    return UnknownMessage(
        type=kind if isinstance(kind, str) else "",
        id=ident if isinstance(ident, str) else None,
        data=data,
    )


def message_to_dict(message: Message) -> dict[str, Any]:
    """The message as JSON-ready data, with its `type` and without null fields (as streamed)."""
    return {k: v for k, v in unstructure(message).items() if v is not None}


def _structure_message(data: Any, _: Any) -> Message:
    return message_from_dict(data)


def _unstructure_message_hook(cls: Any) -> Callable[[Any], dict[str, Any]]:
    """
    The unstructure hook of a known message class, made on first use (generating all
    twelve at import time would cost every `import aposthog` several milliseconds).
    """
    record = record_unstructure_hook(cls)
    kind = cls.type

    def unstructure_message(message: Any) -> dict[str, Any]:
        out: dict[str, Any] = record(message)
        out["type"] = kind  # a class attribute, which attrs does not see
        return out

    return unstructure_message


register_structure_hook(Message, _structure_message)
register_unstructure_hook_factory(_KNOWN_SET.__contains__, _unstructure_message_hook)
# A copy level by level, as a known message's: the dict is the caller's to edit.
register_unstructure_hook(UnknownMessage, lambda message: _copy_json(message.data))
