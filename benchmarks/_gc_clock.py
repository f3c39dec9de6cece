"""The garbage collector's time, shared by the benchmarks that report its share."""

from __future__ import annotations

import gc
import time

__all__ = ["GCClock"]


class GCClock:
    """Time spent in the garbage collector, from gc.callbacks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def reset(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
