"""
Every record aposthog returns: frozen attrs classes, structured by aposthog's converter.

Each module of records loads on first use (`aposthog.models.BatchExport`, or a
resource that returns one): `import aposthog` creates no record class, and a program
that never talks to PostHog AI never loads the conversation records.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .batch_exports import (
        BatchExport,
        BatchExportBackfill,
        BatchExportBackfillProgress,
        BatchExportDestination,
        BatchExportDestinationType,
        BatchExportIncrementalMode,
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
    from .conversations import (
        AgentMode,
        Conversation,
        ConversationResult,
        ConversationStatus,
        ConversationSummary,
        ConversationTurn,
        ConversationType,
        MessageQueue,
        PendingApproval,
        QueuedMessage,
        UserBasic,
    )
    from .customer_profile_configs import CustomerProfileConfig, ProfileScope
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
    "BatchExport": "batch_exports",
    "BatchExportBackfill": "batch_exports",
    "BatchExportBackfillProgress": "batch_exports",
    "BatchExportDestination": "batch_exports",
    "BatchExportDestinationType": "batch_exports",
    "BatchExportIncrementalMode": "batch_exports",
    "BatchExportInterval": "batch_exports",
    "BatchExportLogEntry": "batch_exports",
    "BatchExportLogLevel": "batch_exports",
    "BatchExportModel": "batch_exports",
    "BatchExportRun": "batch_exports",
    "BatchExportRunStatus": "batch_exports",
    "BatchExportTestStep": "batch_exports",
    "BatchExportTestStepResult": "batch_exports",
    "BatchExportTestStepStatus": "batch_exports",
    "CustomerProfileConfig": "customer_profile_configs",
    "ProfileScope": "customer_profile_configs",
    "AgentMode": "conversations",
    "Conversation": "conversations",
    "ConversationResult": "conversations",
    "ConversationStatus": "conversations",
    "ConversationSummary": "conversations",
    "ConversationTurn": "conversations",
    "ConversationType": "conversations",
    "MessageQueue": "conversations",
    "PendingApproval": "conversations",
    "QueuedMessage": "conversations",
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
    "BatchExportIncrementalMode",
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
    "ConversationTurn",
    "ConversationType",
    "CustomerProfileConfig",
    "FailureMessage",
    "HumanMessage",
    "Message",
    "MessageEvent",
    "MessageQueue",
    "MultiVisualizationMessage",
    "NotebookUpdateMessage",
    "PendingApproval",
    "PlanningMessage",
    "ProfileScope",
    "QueuedMessage",
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


if not TYPE_CHECKING:  # type checkers see the names imported above, not this hook

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
