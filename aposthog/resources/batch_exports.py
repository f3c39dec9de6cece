"""`ph.batch_exports`: batch exports, their logs, runs and backfills."""

from __future__ import annotations

from ._base import Resource

__all__ = ["BatchExports"]


class BatchExports(Resource):
    """Batch exports (`/api/environments/<project>/batch_exports/`)."""

    __slots__ = ()
