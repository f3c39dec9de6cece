"""The resource groups of a `Client` (`ph.batch_exports`, `ph.conversations`, …)."""

from .batch_exports import BatchExports
from .conversation_queue import ConversationQueue
from .conversations import Conversations
from .customer_profile_configs import CustomerProfileConfigs

__all__ = ["BatchExports", "ConversationQueue", "Conversations", "CustomerProfileConfigs"]
