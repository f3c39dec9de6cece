"""FakePostHog's batch exports."""

from __future__ import annotations

from ._wire import Route

__all__ = ["ROUTES", "BatchExportsFake"]


class BatchExportsFake:
    """The batch-export state and knobs of FakePostHog."""

    def _init_batch_exports(self) -> None:
        """Set up the in-memory state."""


ROUTES: list[Route] = []
