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
from ._pagination import AsyncPaginator, Page
from ._retry import RetryPolicy
from ._version import __version__
from .models import (
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
    CustomerProfileConfig,
    ProfileScope,
)

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
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
    "CustomerProfileConfig",
    "InternalServerError",
    "NotFoundError",
    "NotGiven",
    "Page",
    "PermissionDeniedError",
    "PostHogError",
    "ProfileScope",
    "QuotaLimitError",
    "RateLimitError",
    "ResponseDecodeError",
    "RetryPolicy",
    "UnprocessableEntityError",
    "__version__",
]
