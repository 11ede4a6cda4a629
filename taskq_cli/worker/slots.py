"""The worker's slots: which attempts it holds (leased, running or awaiting their report), and how
many it may hold (its capacity, with the honest prefetch). One lock guards all of it; every method
takes it, so no caller ever holds it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from taskq_cli.models import Options
from taskq_cli.protocol import Fetched
from taskq_cli.runtime import Runtimes

# Honest prefetch: a worker holds ahead (leased, not started) only tasks that start within about
# PREFETCH_WINDOW: while recent tasks ran shorter than that on average, up to PREFETCH_WINDOW / average
# run time per slot (at most MAX_AHEAD_PER_SLOT), so a slot never waits for a round trip to Redis.
# With tasks of PREFETCH_WINDOW or longer it holds exactly as many tasks as it has slots.
PREFETCH_WINDOW = 0.05
MAX_AHEAD_PER_SLOT = 16
HELD_LONG = 0.5  # seconds; a slot whose task was fetched this long ago may not free up soon
RUNTIME_SAMPLES = 8  # tasks seen before prefetching starts


@dataclass
class Running:
    """One attempt this worker holds."""

    job: Fetched
    options: Options
    started: float  # monotonic
    lease_until: float  # monotonic; Redis's lease ends no sooner (counted from before the request)
    finished: bool = False  # the outcome is known; only its report may still be in flight
    # the handler's retry policy (max_retries, backoff_base, backoff_max) to record on the task for
    # recovery, when the producer did not write it; sent with the next renewal, then None
    pin: tuple[int, float, float] | None = None


class Slots:
    def __init__(
        self, concurrency: int, runtimes: Runtimes, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.concurrency = concurrency
        self.runtimes = runtimes  # read only: whoever sees outcomes records into it
        self.clock = clock
        self._changed = threading.Condition()  # guards _running; notified on every change
        self._running: dict[str, Running] = {}  # task id -> its attempt held here
        self._busy = False  # an attempt held here is running (not finished)
        self._unfinished = 0  # attempts held and not finished: `_busy` without a scan per change
        # told (under the lock: it must only set a flag) when the worker goes busy or idle
        self.on_busy_change: Callable[[], None] = lambda: None

    def __len__(self) -> int:
        with self._changed:
            return len(self._running)

    def running_by_queue(self) -> dict[str, int]:
        """Attempts held and not finished, per queue (the metrics' taskq_tasks_running)."""
        counts: dict[str, int] = {}
        with self._changed:
            for running in self._running.values():
                if not running.finished:
                    counts[running.job.queue] = counts.get(running.job.queue, 0) + 1
        return counts

    def free(self, freed: int = 0) -> int:
        """How many more tasks to fetch once `freed` held attempts are reported."""
        with self._changed:
            return max(self._capacity() - (len(self._running) - freed), 0)

    def _capacity(self) -> int:
        """How many leased tasks this worker may hold. Tasks ahead are held only for slots that free
        up soon: a slot held by a task for over HELD_LONG (a long task among short ones, or tasks
        already waiting too long) gets none, so a worker whose slots are all taken by long tasks holds
        nothing that an idle worker could run."""
        average = self.runtimes.overall
        if self.runtimes.samples < RUNTIME_SAMPLES or average >= PREFETCH_WINDOW:
            return self.concurrency
        ahead = min(MAX_AHEAD_PER_SLOT, max(1, int(PREFETCH_WINDOW / max(average, 1e-6))))
        held_since = self.clock() - HELD_LONG
        long_held = sum(1 for r in self._running.values() if not r.finished and r.started < held_since)
        return self.concurrency + ahead * max(self.concurrency - long_held, 0)

    def take(self, runs: Sequence[Running], reported: Iterable[Running] = ()) -> None:
        """Hold fetched attempts in place of `reported` ones, in one step: those slots are never seen
        free and unfilled in between."""
        with self._changed:
            for running in reported:
                self._forget(running.job)
            for running in runs:
                replaced = self._running.get(running.job.id)
                if replaced is not None and not replaced.finished:
                    self._unfinished -= 1
                self._running[running.job.id] = running
                self._unfinished += not running.finished
            self._changed.notify_all()
            self._check_busy()

    def finish(self, task_id: str, token: str) -> None:
        """The outcome of this attempt is known; it stays held until it is reported."""
        with self._changed:
            running = self._running.get(task_id)
            if running is not None and running.job.token == token and not running.finished:
                running.finished = True
                self._unfinished -= 1
                self._check_busy()

    def held(self, task_id: str, token: str) -> Running | None:
        """This attempt (not an earlier or later one of the same task) when it is held."""
        with self._changed:
            return self._running[task_id] if self._holds(task_id, token) else None

    def busy(self) -> bool:
        with self._changed:
            return self._busy

    def _check_busy(self) -> None:
        busy = self._unfinished > 0
        if busy != self._busy:
            self._busy = busy
            self.on_busy_change()

    def unfinished(self) -> list[Running]:
        with self._changed:
            return [r for r in self._running.values() if not r.finished]

    def renewed(self, runs: Sequence[Running], lost_ids: set[str], lease_until: float) -> list[Running]:
        """Record a renewal of `runs`: those not lost are leased until `lease_until`; returns the lost
        ones still running (one that finished meanwhile was reported, not lost)."""
        lost: list[Running] = []
        with self._changed:
            for running in runs:
                if not self._holds(running.job.id, running.job.token):
                    continue
                if running.job.id not in lost_ids:
                    running.lease_until = lease_until
                    running.pin = None  # recorded with this renewal
                elif not running.finished:
                    lost.append(running)
        return lost

    def drop(self, jobs: Iterable[Fetched]) -> None:
        """Let go of these attempts (stopped, returned to their queue)."""
        with self._changed:
            for job in jobs:
                self._forget(job)
            self._changed.notify_all()
            self._check_busy()

    def wait_empty(self, deadline: float) -> bool:
        """Wait until nothing is held or the deadline passes; True when nothing is held."""
        with self._changed:
            while self._running and self.clock() < deadline:
                self._changed.wait(min(0.1, max(deadline - self.clock(), 0)))
            return not self._running

    def wait_change(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)

    def _holds(self, task_id: str, token: str) -> bool:
        running = self._running.get(task_id)
        return running is not None and running.job.token == token

    def _forget(self, job: Fetched) -> None:
        """Drop this attempt's entry, never a newer attempt of the same task."""
        if self._holds(job.id, job.token):
            self._unfinished -= not self._running.pop(job.id).finished
