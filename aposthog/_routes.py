"""
Every PostHog endpoint aposthog calls, with its retry rule and rate-limit bucket.

`repeatable=True`: sending it twice has the effect of sending it once, so it is retried
after a failure that may have reached PostHog (a reset, a timeout, a 502/504).
`repeatable=False`: it starts work, and is retried only when PostHog certainly did not
act on it (refused connection, 429, PostHog's own 503). Buckets follow PostHog's throttles: every
endpoint counts against the personal API key's windows (`"api"`), except conversation
create, which counts against the user's PostHog AI windows (`"ai"`, or `"ai_research"`
in research mode, chosen per request).
"""

from __future__ import annotations

from ._http import Route

__all__ = [
    "BACKFILLS",
    "BACKFILL_CANCEL",
    "BACKFILL_CREATE",
    "BACKFILL_GET",
    "CONVERSATIONS",
    "CONVERSATION_APPEND",
    "CONVERSATION_CANCEL",
    "CONVERSATION_CREATE",
    "CONVERSATION_DELETE",
    "CONVERSATION_GET",
    "CONVERSATION_QUEUE",
    "CONVERSATION_QUEUE_ADD",
    "CONVERSATION_QUEUE_CLEAR",
    "CONVERSATION_QUEUE_REMOVE",
    "CONVERSATION_QUEUE_UPDATE",
    "CONVERSATION_REATTACH",
    "EXPORTS",
    "EXPORT_CREATE",
    "EXPORT_DELETE",
    "EXPORT_GET",
    "EXPORT_LOGS",
    "EXPORT_PAUSE",
    "EXPORT_REPLACE",
    "EXPORT_TEST",
    "EXPORT_TEST_STEP",
    "EXPORT_TEST_STEP_NEW",
    "EXPORT_UNPAUSE",
    "EXPORT_UNPAUSE_BACKFILL",
    "EXPORT_UPDATE",
    "PROFILE_CONFIGS",
    "PROFILE_CONFIG_CREATE",
    "PROFILE_CONFIG_DELETE",
    "PROFILE_CONFIG_GET",
    "PROFILE_CONFIG_REPLACE",
    "PROFILE_CONFIG_UPDATE",
    "RUNS",
    "RUN_CANCEL",
    "RUN_GET",
    "RUN_RETRY",
]

# ---------------------------------------------------------------- batch exports
EXPORTS = Route("GET", "batch_exports", repeatable=True)
EXPORT_CREATE = Route("POST", "batch_exports", repeatable=False)
EXPORT_GET = Route("GET", "batch_exports/{id}", repeatable=True)
# A partial update sets the same fields to the same values however often it lands.
EXPORT_UPDATE = Route("PATCH", "batch_exports/{id}", repeatable=True)
# So does a PUT: it writes what it is given, whatever was there.
EXPORT_REPLACE = Route("PUT", "batch_exports/{id}", repeatable=True)
# Repeated after a lost answer, a delete that went through finds nothing: done, not an error.
EXPORT_DELETE = Route("DELETE", "batch_exports/{id}", repeatable=True, gone_is_done=True)
# Pausing a paused export does nothing (PostHog returns early); so does unpausing an
# unpaused one, unless it backfills: that starts runs, and twice would start them twice.
EXPORT_PAUSE = Route("POST", "batch_exports/{id}/pause", repeatable=True)
EXPORT_UNPAUSE = Route("POST", "batch_exports/{id}/unpause", repeatable=True)
EXPORT_UNPAUSE_BACKFILL = Route("POST", "batch_exports/{id}/unpause", repeatable=False)
EXPORT_LOGS = Route("GET", "batch_exports/{id}/logs", repeatable=True)
EXPORT_TEST = Route("GET", "batch_exports/test", repeatable=True)
# A test step connects to the destination and may write a test object: not repeated.
EXPORT_TEST_STEP = Route("POST", "batch_exports/{id}/run_test_step", repeatable=False)
EXPORT_TEST_STEP_NEW = Route("POST", "batch_exports/run_test_step_new", repeatable=False)

RUNS = Route("GET", "batch_exports/{id}/runs", repeatable=True)
RUN_GET = Route("GET", "batch_exports/{id}/runs/{run_id}", repeatable=True)
RUN_RETRY = Route("POST", "batch_exports/{id}/runs/{run_id}/retry", repeatable=False)
# A second cancel of a cancelled run is a 400: the first one's success would be lost.
RUN_CANCEL = Route("POST", "batch_exports/{id}/runs/{run_id}/cancel", repeatable=False)
BACKFILLS = Route("GET", "batch_exports/{id}/backfills", repeatable=True)
BACKFILL_CREATE = Route("POST", "batch_exports/{id}/backfills", repeatable=False)
BACKFILL_GET = Route("GET", "batch_exports/{id}/backfills/{backfill_id}", repeatable=True)
BACKFILL_CANCEL = Route(
    "POST", "batch_exports/{id}/backfills/{backfill_id}/cancel", repeatable=False
)

# ---------------------------------------------------------------- conversations
CONVERSATIONS = Route("GET", "conversations", repeatable=True)
CONVERSATION_GET = Route("GET", "conversations/{id}", repeatable=True)
# Sending a message starts a run; PostHog AI's own windows count it.
CONVERSATION_CREATE = Route("POST", "conversations", repeatable=False, bucket="ai")
# `content: null` only attaches to the running generation (PostHog replays it): safe to
# repeat. It is the create endpoint, so the AI windows count it too.
CONVERSATION_REATTACH = Route("POST", "conversations", repeatable=True, bucket="ai")
# Cancelling an idle conversation is a no-op 204 (PostHog: idempotent).
CONVERSATION_CANCEL = Route("PATCH", "conversations/{id}/cancel", repeatable=True)
CONVERSATION_APPEND = Route("POST", "conversations/{id}/append_message", repeatable=False)
CONVERSATION_DELETE = Route("DELETE", "conversations/{id}", repeatable=True, gone_is_done=True)
# The message queue: ordinary API throttles, not PostHog AI's (it starts no run itself).
CONVERSATION_QUEUE = Route("GET", "conversations/{id}/queue", repeatable=True)
# Each add queues one more message: sent twice, it would be queued twice.
CONVERSATION_QUEUE_ADD = Route("POST", "conversations/{id}/queue", repeatable=False)
CONVERSATION_QUEUE_UPDATE = Route("PATCH", "conversations/{id}/queue/{message_id}", repeatable=True)
# Repeated after a lost answer, a removal that went through is a 404 (the message is gone);
# not `gone_is_done`, as the call's result is the queue, which a 404 does not give.
CONVERSATION_QUEUE_REMOVE = Route(
    "DELETE", "conversations/{id}/queue/{message_id}", repeatable=True
)
CONVERSATION_QUEUE_CLEAR = Route("POST", "conversations/{id}/queue/clear", repeatable=True)

# ---------------------------------------------------------------- customer profile configs
PROFILE_CONFIGS = Route("GET", "customer_profile_configs", repeatable=True)
PROFILE_CONFIG_CREATE = Route("POST", "customer_profile_configs", repeatable=False)
PROFILE_CONFIG_GET = Route("GET", "customer_profile_configs/{id}", repeatable=True)
PROFILE_CONFIG_UPDATE = Route("PATCH", "customer_profile_configs/{id}", repeatable=True)
PROFILE_CONFIG_REPLACE = Route("PUT", "customer_profile_configs/{id}", repeatable=True)
PROFILE_CONFIG_DELETE = Route(
    "DELETE", "customer_profile_configs/{id}", repeatable=True, gone_is_done=True
)
