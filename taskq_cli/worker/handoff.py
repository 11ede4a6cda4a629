"""The hand-off: after this worker ended a task that has dependents (its ack, or its death, wrote the
outcome to its queue's outbox), tell them now, on a thread of its own, so neither the reporter nor
the lease keeper waits for it. If the worker dies first, the next maintenance pass of any worker or
scheduler drains the outbox instead (protocol/dependencies.py): a release is delayed, never lost."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

from taskq_cli.outage import REDIS_ERRORS, Outage
from taskq_cli.protocol import HANDED_OFF, FailState, Fetched

log = logging.getLogger("taskq.worker")

IDLE = 1.0  # seconds between ticks with nothing to hand off (a report that fired pokes it)

Drain = Callable[[list[str], dict[str, list[str]]], int]  # queues, ids by queue -> entries handled


class HandOff:
    def __init__(self, drain: Drain, outage: Outage, *, kill_after_ack: bool = False) -> None:
        self.drain, self.outage, self.kill_after_ack = drain, outage, kill_after_ack
        self.poked = threading.Event()
        self._lock = threading.Lock()
        self._due: dict[str, list[str]] = {}  # queue -> ids whose outcome is in its outbox

    def after_report(self, job: Fetched, result: bool | str) -> None:
        """Called for every reported outcome (reporter thread); never blocks."""
        if not (result == HANDED_OFF or (isinstance(result, FailState) and result.fired)):
            return
        if self.kill_after_ack:  # test-only fault injection (config.kill_after_ack)
            os.kill(os.getpid(), signal.SIGKILL)
        with self._lock:
            self._due.setdefault(job.queue, []).append(job.id)
        self.poked.set()

    def tick(self, now: float) -> float:
        with self._lock:
            due, self._due = self._due, {}
        if not due:
            return IDLE
        try:
            self.drain(list(due), due)
        except REDIS_ERRORS as exc:  # the outbox keeps them: the maintenance pass hands them off
            return self.outage.failed("hand-off", exc)
        self.outage.ok("hand-off")
        return IDLE
