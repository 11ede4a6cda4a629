"""Recent handler run times: measured once, where outcomes arrive (the pool), and read by the
worker's prefetch (the overall average) and by the process pool's placement (per task name)."""

from __future__ import annotations

import threading

WEIGHT = 0.2  # of the newest sample in each moving average


class Runtimes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.samples = 0  # outcomes recorded so far
        self.overall = 0.0  # moving average over every task (s)
        self._by_name: dict[str, float] = {}

    def record(self, name: str | None, seconds: float) -> None:
        """One outcome's run time; `name` None counts it in the overall average only (a time the
        pool did not measure, or a name no handler has: per-name averages are for known tasks)."""
        with self._lock:
            self.samples += 1
            self.overall += (seconds - self.overall) * WEIGHT
            if name is not None:
                last = self._by_name.get(name, seconds)
                self._by_name[name] = last + (seconds - last) * WEIGHT

    def of(self, name: str) -> float | None:
        """The moving average of `name`'s run times, None before its first outcome."""
        return self._by_name.get(name)
