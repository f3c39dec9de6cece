"""Every record aposthog returns: frozen attrs classes, structured by aposthog's converter."""

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

__all__ = [
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
    "CustomerProfileConfig",
    "ProfileScope",
]
