"""The maintainer: the scheduler's maintenance (promote due tasks, recover lost ones) and cron, for
the worker's queues, in a thread of its own so a slow pass never delays a lease renewal."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from taskq_cli.outage import REDIS_ERRORS, Outage

log = logging.getLogger("taskq.worker")


class QueueMaintenance(Protocol):
    def tick(self, queues: Sequence[str]) -> float: ...


class CronTicks(Protocol):
    def tick(self) -> float: ...


class Maintainer:
    def __init__(
        self,
        maintenance: QueueMaintenance,
        cron: CronTicks | None,
        queues: Sequence[str],
        *,
        period: float,
        stopping: threading.Event,
        outage: Outage,
    ) -> None:
        self.maintenance, self.cron, self.queues = maintenance, cron, queues
        self.period, self.stopping, self.outage = period, stopping, outage
        self.poked = threading.Event()  # wakes its thread early
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time of the next pass

    def poke(self, now: float, delay: float) -> None:
        """Run a pass within `delay` seconds (a retry or delay just became due sooner than the pass
        planned). Any thread."""
        with self._lock:
            self._next = min(self._next, now + delay)
        self.poked.set()

    def tick(self, now: float) -> float:
        with self._lock:
            due = self._next <= now
            if due:
                self._next = now + self.period
        if due and not self.stopping.is_set():
            self._pass(now)
        with self._lock:
            return max(self._next - now, 0.0)

    def _pass(self, now: float) -> None:
        try:
            wait = self.maintenance.tick(self.queues)
            if self.cron is not None:
                wait = min(wait, self.cron.tick())
        except REDIS_ERRORS as exc:
            wait = self.outage.failed("maintenance", exc)
        except Exception:  # a bug: loud, but the loop goes on
            log.exception("maintenance: unexpected error; retrying")
            wait = self.outage.failed("maintenance", RuntimeError("unexpected error"))
        else:
            self.outage.ok("maintenance")
        self.poke(now, wait)
