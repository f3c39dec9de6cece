"""
PostHog-shaped records for the benchmarks (the shapes of posthog-api.md §2.2, §2.6, §4).

Deterministic: record `i` is always the same, so both sides of a comparison read the
same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

_EPOCH = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
_STATUSES = ["Completed", "Completed", "Completed", "Failed", "Running", "FailedRetryable"]
_INTERVALS = ["hour", "day", "week", "every 5 minutes"]


def _uuid(kind: int, i: int) -> str:
    return str(uuid.UUID(int=(kind << 96) | i))


def _ts(seconds: float) -> str:
    # DRF's format: microseconds and a `Z`.
    return (_EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def batch_export_run(i: int, export: int = 0) -> dict[str, Any]:
    # Runs of different exports cover the same hours (the same interval boundaries) but
    # were created, finished and updated at their own moments.
    start = 3600 * i
    jitter = 0.017 * export
    status = _STATUSES[i % len(_STATUSES)]
    finished = status != "Running"
    return {
        "id": _uuid(2, export * 100 + i),
        "status": status,
        "records_completed": None if not finished else 1000 + 37 * i,
        "records_failed": 0 if finished else None,
        "latest_error": "NoSuchBucket: The specified bucket does not exist"
        if status.startswith("Failed")
        else None,
        "data_interval_start": _ts(start),
        "data_interval_end": _ts(start + 3600),
        "cursor": None,
        "created_at": _ts(start + 3605.123456 + jitter),
        "finished_at": _ts(start + 3700.5 + 3 * jitter) if finished else None,
        "last_updated_at": _ts(start + 3700.5 + 3 * jitter),
        "records_total_count": 1000 + 37 * i,
        "bytes_exported": 250_000 + 913 * i if finished else None,
        "batch_export": _uuid(1, export),
        "backfill": None,
    }


def batch_export(i: int) -> dict[str, Any]:
    """A batch export as `GET batch_exports/` returns it: S3, with up to 10 latest runs."""
    runs = [batch_export_run(r, i) for r in range(i % 6)]
    return {
        "id": _uuid(1, i),
        "team_id": 1,
        "name": f"S3 export {i} of events to the data lake",
        "model": "events",
        "destination": {
            "type": "S3",
            "config": {
                "bucket_name": f"acme-posthog-events-{i}",
                "region": "eu-west-1",
                "prefix": "posthog/events/{year}/{month}/{day}/",
                "compression": "gzip",
                "encryption": "AES256",
                "kms_key_id": None,
                "endpoint_url": None,
                "exclude_events": ["$feature_flag_called", "$pageleave"],
                "include_events": [],
                "file_format": "Parquet",
                "max_file_size_mb": 500,
                "use_virtual_style_addressing": False,
            },
            "integration": None,
        },
        "interval": _INTERVALS[i % len(_INTERVALS)],
        "paused": i % 5 == 0,
        "created_at": _ts(-86400 * 30 - i),
        "last_updated_at": _ts(-86400 + i),
        "last_paused_at": _ts(-3600 * i) if i % 5 == 0 else None,
        "start_at": None,
        "end_at": None,
        "latest_runs": runs,
        "hogql_query": "SELECT event, distinct_id, timestamp, properties FROM events",
        # PostHog's newest serializer also answers a `hogql` export's source fields.
        "hogql_modifiers": None,
        "primary_key": None,
        "version_key": None,
        "incremental_mode": "APPEND",
        "schema": None,
        "filters": None,
        "timezone": "UTC",
        "offset_day": None,
        "offset_hour": None,
    }


def profile_config(i: int) -> dict[str, Any]:
    """A customer profile config (posthog-api.md §4)."""
    return {
        "id": _uuid(3, i),
        "scope": "person" if i % 3 else "group_0",
        "content": {"properties": ["email", "plan", f"p{i}"]},
        "sidebar": {},
        "created_at": _ts(i),
        "updated_at": _ts(i + 60) if i % 2 else None,
    }


_TOKENS = ["The", " pageview", " trend", " rose", " 12%", " week", " over", " week,", " and"]
_TOKENS += [" the", " funnel", " from", " signup", " to", " activation", " held", " at"]
_TOKENS += [" 41%.", " Café", " naïve", " 數據", " 📈", "\n\n-", " Retention", " is", " flat."]


def _event(name: str, data: dict[str, Any], *, compact: bool = True) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")
    text = json.dumps(data, ensure_ascii=False, separators=separators)
    return f"event: {name}\ndata: {text}\n\n".encode()


def human_echo() -> bytes:
    return _event("message", {"type": "human", "content": "How is my funnel?", "id": "h-1"})


def snapshot_event(text: str) -> bytes:
    """An in-progress assistant message: the whole text so far, no id."""
    return _event("message", {"type": "ai", "content": text})


def final_event(text: str, ident: str = "a-final") -> bytes:
    """A final assistant message: it replaces the snapshots and ends the run."""
    return _event("message", {"type": "ai", "content": text, "id": ident})


def answer_stream(messages: int, snapshots: int) -> bytes:
    """
    A PostHog AI answer as PostHog streams it (posthog-api.md §3.5): the `conversation`
    event, the human echo, then `messages` assistant messages, each as `snapshots`
    cumulative snapshots (one token more each) and its final message with an id, an
    `update` event between messages, and a keepalive comment now and then.
    """
    conversation = {
        "id": "c-1",
        "status": "in_progress",
        "title": None,
        "created_at": "2025-03-01T00:00:00Z",
        "updated_at": "2025-03-01T00:00:00Z",
        "type": "assistant",
    }
    parts = [_event("conversation", conversation, compact=False), human_echo()]
    for m in range(messages):
        text = ""
        for s in range(snapshots):
            text += _TOKENS[(m + s) % len(_TOKENS)]
            parts.append(snapshot_event(text))
            if s % 50 == 49:
                parts.append(b": keepalive\n\n")
        parts.append(_event("message", {"type": "ai", "content": text, "id": f"a-{m}"}))
        update = {"id": f"a-{m}", "tool_call_id": f"call-{m}", "content": "Querying events"}
        parts.append(_event("update", update))
    return b"".join(parts)


def answer_events(messages: int, snapshots: int) -> int:
    """The events `answer_stream(messages, snapshots)` holds (comments not counted)."""
    return 2 + messages * (snapshots + 2)
