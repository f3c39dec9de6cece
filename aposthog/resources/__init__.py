"""The resource groups of a `Client` (`ph.batch_exports`, `ph.conversations`, …)."""

from .batch_exports import BatchExports
from .conversations import Conversations
from .customer_profile_configs import CustomerProfileConfigs

__all__ = ["BatchExports", "Conversations", "CustomerProfileConfigs"]
