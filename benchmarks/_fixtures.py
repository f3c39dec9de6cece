"""
PostHog-shaped records for the benchmarks (the shapes of posthog-api.md §2.2, §2.6, §4).

Deterministic: record `i` is always the same, so both sides of a comparison read the
same bytes.
"""

from __future__ import annotations

import datetime as dt
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
