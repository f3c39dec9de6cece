"""
aposthog: an async client for PostHog's REST API.

Batch exports, PostHog AI conversations (with streamed answers) and customer profile
configs, on aiohttp, attrs, cattrs and anyio.

Example:
    ```python
    import aposthog

    # Configured from POSTHOG_PERSONAL_API_KEY, POSTHOG_HOST and POSTHOG_PROJECT_ID.
    async with aposthog.Client() as ph:
        async for config in ph.customer_profile_configs.list():
            print(config.scope)
    ```
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._client import NOT_GIVEN, Client, NotGiven
from ._config import ClientConfig
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientStateError,
    ConfigurationError,
    ConfigurationTypeError,
    ConflictError,
    IncompleteStreamError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PostHogError,
    QuotaLimitError,
    RateLimitError,
    ResponseDecodeError,
    ResponseTooLargeError,
    UnprocessableEntityError,
)
from ._limiter import InProcessRateLimitStore, RateLimiter, RateLimitStore, RateLimitStoreError
from ._observe import Wait
from ._pagination import AsyncPaginator, Page
from ._ratelimit import Rate, RateLimits
from ._retry import RetryPolicy
from ._version import __version__

if TYPE_CHECKING:
    from . import models as models
    from . import resources as resources
    from . import sse as sse
    from . import testing as testing
    from ._closing import ClosingIterator
    from ._redis_store import RedisRateLimitStore
    from ._streaming import ConversationStream
    from .models import (
        AgentMode,
        ArtifactMessage,
        AssistantMessage,
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
        ContextMessage,
        Conversation,
        ConversationEvent,
        ConversationResult,
        ConversationStatus,
        ConversationSummary,
        ConversationTurn,
        ConversationType,
        CustomerProfileConfig,
        FailureMessage,
        HumanMessage,
        Message,
        MessageEvent,
        MessageQueue,
        MultiVisualizationMessage,
        NotebookUpdateMessage,
        PendingApproval,
        PlanningMessage,
        ProfileScope,
        QueuedMessage,
        ReasoningMessage,
        StatusEvent,
        StreamEvent,
        TaskExecutionMessage,
        ToolCall,
        ToolCallMessage,
        UnknownEvent,
        UnknownMessage,
        UpdateEvent,
        UserBasic,
        VisualizationMessage,
    )

# Loaded on first use: conversations (their records, the stream machinery) cost a
# program that never talks to PostHog AI a sixth of its start-up. The testing kit
# (`aposthog.testing`) and the command line are separate modules, never loaded here.
_LAZY: dict[str, str] = {
    "BatchExport": ".models",
    "BatchExportBackfill": ".models",
    "BatchExportBackfillProgress": ".models",
    "BatchExportDestination": ".models",
    "BatchExportDestinationType": ".models",
    "BatchExportIncrementalMode": ".models",
    "BatchExportInterval": ".models",
    "BatchExportLogEntry": ".models",
    "BatchExportLogLevel": ".models",
    "BatchExportModel": ".models",
    "BatchExportRun": ".models",
    "BatchExportRunStatus": ".models",
    "BatchExportTestStep": ".models",
    "BatchExportTestStepResult": ".models",
    "BatchExportTestStepStatus": ".models",
    "CustomerProfileConfig": ".models",
    "ProfileScope": ".models",
    "ClosingIterator": "._closing",
    "ConversationStream": "._streaming",
    # A rate budget shared through Redis (the `redis` extra), for those who use one.
    "RedisRateLimitStore": "._redis_store",
    "AgentMode": ".models",
    "ArtifactMessage": ".models",
    "AssistantMessage": ".models",
    "ContextMessage": ".models",
    "Conversation": ".models",
    "ConversationEvent": ".models",
    "ConversationResult": ".models",
    "ConversationStatus": ".models",
    "ConversationSummary": ".models",
    "ConversationTurn": ".models",
    "ConversationType": ".models",
    "FailureMessage": ".models",
    "HumanMessage": ".models",
    "Message": ".models",
    "MessageEvent": ".models",
    "MultiVisualizationMessage": ".models",
    "NotebookUpdateMessage": ".models",
    "MessageQueue": ".models",
    "PendingApproval": ".models",
    "QueuedMessage": ".models",
    "PlanningMessage": ".models",
    "ReasoningMessage": ".models",
    "StatusEvent": ".models",
    "StreamEvent": ".models",
    "TaskExecutionMessage": ".models",
    "ToolCall": ".models",
    "ToolCallMessage": ".models",
    "UnknownEvent": ".models",
    "UnknownMessage": ".models",
    "UpdateEvent": ".models",
    "UserBasic": ".models",
    "VisualizationMessage": ".models",
}

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AgentMode",
    "ArtifactMessage",
    "AssistantMessage",
    "AsyncPaginator",
    "AuthenticationError",
    "BadRequestError",
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
    "Client",
    "ClientConfig",
    "ClientStateError",
    "ClosingIterator",
    "ConfigurationError",
    "ConfigurationTypeError",
    "ConflictError",
    "ContextMessage",
    "Conversation",
    "ConversationEvent",
    "ConversationResult",
    "ConversationStatus",
    "ConversationStream",
    "ConversationSummary",
    "ConversationTurn",
    "ConversationType",
    "CustomerProfileConfig",
    "FailureMessage",
    "HumanMessage",
    "InProcessRateLimitStore",
    "IncompleteStreamError",
    "InternalServerError",
    "Message",
    "MessageEvent",
    "MessageQueue",
    "MultiVisualizationMessage",
    "NotFoundError",
    "NotGiven",
    "NotebookUpdateMessage",
    "Page",
    "PendingApproval",
    "PermissionDeniedError",
    "PlanningMessage",
    "PostHogError",
    "ProfileScope",
    "QueuedMessage",
    "QuotaLimitError",
    "Rate",
    "RateLimitError",
    "RateLimitStore",
    "RateLimitStoreError",
    "RateLimiter",
    "RateLimits",
    "ReasoningMessage",
    "RedisRateLimitStore",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "StatusEvent",
    "StreamEvent",
    "TaskExecutionMessage",
    "ToolCall",
    "ToolCallMessage",
    "UnknownEvent",
    "UnknownMessage",
    "UnprocessableEntityError",
    "UpdateEvent",
    "UserBasic",
    "VisualizationMessage",
    "Wait",
    "__version__",
]


#: The public submodules, reached as attributes too (`aposthog.testing.FakePostHog`
#: after a plain `import aposthog`), loaded on first use.
_SUBMODULES = frozenset({"models", "resources", "sse", "testing"})


if not TYPE_CHECKING:  # type checkers see the names imported above, not this hook

    def __getattr__(name: str) -> Any:
        if name in _SUBMODULES:
            # import_module binds it in this namespace too: later lookups find it there.
            return importlib.import_module(f".{name}", __name__)
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
