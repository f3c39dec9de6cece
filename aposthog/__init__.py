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
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PostHogError,
    QuotaLimitError,
    RateLimitError,
    ResponseDecodeError,
    UnprocessableEntityError,
)
from ._limiter import InProcessRateLimitStore, RateLimiter, RateLimitStore, RateLimitStoreError
from ._observe import Wait
from ._pagination import AsyncPaginator, Page
from ._ratelimit import Rate, RateLimits
from ._redis_store import RedisRateLimitStore
from ._retry import RetryPolicy
from ._streaming import ConversationStream
from ._version import __version__
from .models import (
    AgentMode,
    ArtifactMessage,
    AssistantMessage,
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
    ContextMessage,
    Conversation,
    ConversationEvent,
    ConversationResult,
    ConversationStatus,
    ConversationSummary,
    ConversationType,
    CustomerProfileConfig,
    FailureMessage,
    HumanMessage,
    Message,
    MessageEvent,
    MultiVisualizationMessage,
    NotebookUpdateMessage,
    PendingApproval,
    PlanningMessage,
    ProfileScope,
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
    "ConfigurationError",
    "ConflictError",
    "ContextMessage",
    "Conversation",
    "ConversationEvent",
    "ConversationResult",
    "ConversationStatus",
    "ConversationStream",
    "ConversationSummary",
    "ConversationType",
    "CustomerProfileConfig",
    "FailureMessage",
    "HumanMessage",
    "InProcessRateLimitStore",
    "InternalServerError",
    "Message",
    "MessageEvent",
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
