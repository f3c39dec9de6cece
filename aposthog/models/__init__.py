"""
Every record aposthog returns: frozen attrs classes, structured by aposthog's converter.

The records of conversations (messages, stream events) load on first use: a program
that never talks to PostHog AI does not pay for them at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .batch_exports import (
    BatchExport,
    BatchExportBackfill,
    BatchExportBackfillProgress,
    BatchExportDestination,
    BatchExportDestinationType,
    BatchExportInterval,
    BatchExportLogEntry,
    BatchExportLogLevel,
    BatchExportModel,
    BatchExportRun,
    BatchExportRunStatus,
    BatchExportTestStep,
    BatchExportTestStepResult,
    BatchExportTestStepStatus,
)
from .customer_profile_configs import CustomerProfileConfig, ProfileScope

if TYPE_CHECKING:
    from .conversations import (
        AgentMode,
        Conversation,
        ConversationResult,
        ConversationStatus,
        ConversationSummary,
        ConversationType,
        PendingApproval,
        UserBasic,
    )
    from .events import (
        ConversationEvent,
        MessageEvent,
        StatusEvent,
        StreamEvent,
        UnknownEvent,
        UpdateEvent,
    )
    from .messages import (
        ArtifactMessage,
        AssistantMessage,
        ContextMessage,
        FailureMessage,
        HumanMessage,
        Message,
        MultiVisualizationMessage,
        NotebookUpdateMessage,
        PlanningMessage,
        ReasoningMessage,
        TaskExecutionMessage,
        ToolCall,
        ToolCallMessage,
        UnknownMessage,
        VisualizationMessage,
    )

_LAZY: dict[str, str] = {
    "AgentMode": "conversations",
    "Conversation": "conversations",
    "ConversationResult": "conversations",
    "ConversationStatus": "conversations",
    "ConversationSummary": "conversations",
    "ConversationType": "conversations",
    "PendingApproval": "conversations",
    "UserBasic": "conversations",
    "ConversationEvent": "events",
    "MessageEvent": "events",
    "StatusEvent": "events",
    "StreamEvent": "events",
    "UnknownEvent": "events",
    "UpdateEvent": "events",
    "ArtifactMessage": "messages",
    "AssistantMessage": "messages",
    "ContextMessage": "messages",
    "FailureMessage": "messages",
    "HumanMessage": "messages",
    "Message": "messages",
    "MultiVisualizationMessage": "messages",
    "NotebookUpdateMessage": "messages",
    "PlanningMessage": "messages",
    "ReasoningMessage": "messages",
    "TaskExecutionMessage": "messages",
    "ToolCall": "messages",
    "ToolCallMessage": "messages",
    "UnknownMessage": "messages",
    "VisualizationMessage": "messages",
}

__all__ = [
    "AgentMode",
    "ArtifactMessage",
    "AssistantMessage",
    "BatchExport",
    "BatchExportBackfill",
    "BatchExportBackfillProgress",
    "BatchExportDestination",
    "BatchExportDestinationType",
    "BatchExportInterval",
    "BatchExportLogEntry",
    "BatchExportLogLevel",
    "BatchExportModel",
    "BatchExportRun",
    "BatchExportRunStatus",
    "BatchExportTestStep",
    "BatchExportTestStepResult",
    "BatchExportTestStepStatus",
    "ContextMessage",
    "Conversation",
    "ConversationEvent",
    "ConversationResult",
    "ConversationStatus",
    "ConversationSummary",
    "ConversationType",
    "CustomerProfileConfig",
    "FailureMessage",
    "HumanMessage",
    "Message",
    "MessageEvent",
    "MultiVisualizationMessage",
    "NotebookUpdateMessage",
    "PendingApproval",
    "PlanningMessage",
    "ProfileScope",
    "ReasoningMessage",
    "StatusEvent",
    "StreamEvent",
    "TaskExecutionMessage",
    "ToolCall",
    "ToolCallMessage",
    "UnknownEvent",
    "UnknownMessage",
    "UpdateEvent",
    "UserBasic",
    "VisualizationMessage",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
