"""A child of the process pool: it runs the executions its supervisor sends, one at a time, in order.

It writes each outcome to its outcome pipe the moment the task returns (a later crash cannot lose
it), but rings the supervisor (a doorbell) only when it runs out of work or would otherwise hold an
outcome back longer than FLUSH_AFTER: one wake-up per batch, not per task. It shows in shared memory
which execution it took last and since when it runs (see wire.py). It ignores SIGINT and SIGTERM (the
supervisor decides what stops), dies with the supervisor, and never talks to Redis.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from taskq_cli import logs
from taskq_cli.middleware import Chain
from taskq_cli.prefork import wire
from taskq_cli.prefork.wire import BEGAN, CLAIMED, Record
from taskq_cli.registry import TaskDef
from taskq_cli.runner import Execution, call_with_alarm, freeze_startup_heap, run_task

FLUSH_AFTER = 0.002  # seconds a child may hold a finished outcome back while it runs more
FLUSH_COUNT = 16  # outcomes a child may hold back
PIPE_ROOM = 16 * 1024  # bytes a child writes to its outcome pipe before ringing (the pipe holds 64 KB)


def child_main(
    conn: Connection,
    outcomes: Connection,
    progress: Any,
    app_spec: str | None,
    registry: Mapping[str, TaskDef] | None,
    supervisor_pid: int,
    max_tasks: int | None,
    max_memory_mb: int | None,
    middleware: Chain | None = None,
    log_setup: tuple[str, str] | None = None,
) -> None:
    """Run Executions from the pipe, one at a time, until told to stop or the supervisor is gone."""
    _die_with_supervisor(supervisor_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and service managers signal the whole
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # group: the supervisor decides what stops
    if log_setup is not None:  # a child of the fork server: it logs (middleware failures) as the worker
        logs.configure(*log_setup)
    if registry is None:
        from taskq_cli.loading import load_app

        assert app_spec is not None
        app = load_app(app_spec)
        registry, middleware = app.registry, app.middleware
    loop = ChildLoop(conn, outcomes, progress, registry, max_tasks, max_memory_mb)
    loop.middleware = middleware or Chain()
    freeze_startup_heap()  # the app is loaded: a full collection no longer scans it
    loop.serve()


class ChildLoop:
    def __init__(
        self,
        conn: Connection,
        outcomes: Connection,
        progress: Any,
        registry: Mapping[str, TaskDef],
        max_tasks: int | None,
        max_memory_mb: int | None,
    ) -> None:
        self.conn, self.outcomes_fd, self.progress = conn, outcomes.fileno(), progress
        self.doorbell_fd = conn.fileno()  # raw frames to the supervisor (see ProcessPool._receive)
        self._outcomes = outcomes  # keeps the fd open
        self.registry, self.max_tasks, self.max_memory_mb = registry, max_tasks, max_memory_mb
        self.queue: deque[Execution] = deque()
        self.dropped: set[str] = set()
        self.taken = 0
        self.unsent_bytes = self.unsent_count = 0  # written to the outcome pipe since the last doorbell
        self.oldest_unsent = 0.0
        self.last_runtime = 0.0
        self.middleware = Chain()  # the app's: runs around each execution here
        self.poller = select.poll()
        self.poller.register(conn.fileno(), select.POLLIN)

    def serve(self) -> None:
        while True:
            if not self.queue:
                self.ring()  # about to wait: the supervisor gets everything first
                self.dropped.clear()  # nothing held any more
                if not self.receive(block=True):
                    return
            execution = self.queue.popleft()
            self.taken += 1
            self.progress[CLAIMED] = self.taken  # before reading drops: see ProcessPool._drop_from
            if not self.receive(block=False):
                return
            if self.handle(execution):
                self.ring()
                return

    def receive(self, block: bool) -> bool:
        """Take what the supervisor sent (wait for a message if `block`); False: stop now."""
        while block or self.poller.poll(0):
            block = False
            try:
                message = wire.read_message(self.conn.recv_bytes())
            except (EOFError, OSError):
                return False
            if message is None:  # the supervisor asks us to stop
                return False
            executions, dropped = message
            self.queue.extend(executions)
            self.dropped.update(dropped)
        return True

    def handle(self, execution: Execution) -> str | None:
        """Run it (or skip it, aborted) and record its outcome; returns why this child retires."""
        if execution.token in self.dropped:
            self.dropped.discard(execution.token)
            # it counts as taken: the supervisor sends a child exactly max_tasks executions
            retire = retire_reason(self.taken, self.max_tasks, self.max_memory_mb)
            self.record(wire.skipped_record(execution.task_id, retire))
            return retire
        if self.unsent_count and self.should_ring_before_running():
            self.ring()
        self.progress[BEGAN] = time.monotonic()
        outcome = run_task(
            self.registry.get(execution.name), execution, call=call_with_alarm, middleware=self.middleware
        )
        self.last_runtime = outcome.runtime
        retire = retire_reason(self.taken, self.max_tasks, self.max_memory_mb)
        self.record(wire.outcome_record(execution.task_id, outcome, retire))
        self.progress[BEGAN] = 0.0  # after the record: a kill before this still finds the outcome
        return retire

    def should_ring_before_running(self) -> bool:
        """Outcomes held back while the next task runs keep their slots busy: hold them only a
        little (the last task's run time predicts this one's)."""
        held_for = time.monotonic() - self.oldest_unsent + self.last_runtime
        return self.unsent_count >= FLUSH_COUNT or held_for >= FLUSH_AFTER

    def record(self, record: Record) -> None:
        """Write an outcome where a crash of this process cannot lose it: the outcome pipe, which the
        supervisor reads when we ring; one too large for the pipe goes inline with a doorbell."""
        data = wire.frame(record)
        if self.unsent_bytes + len(data) > PIPE_ROOM:
            self.ring()  # never leave more unannounced than the pipe holds: we would block forever
        if len(data) > PIPE_ROOM:
            wire.write_all(self.doorbell_fd, data)
            return
        wire.write_all(self.outcomes_fd, data)
        if not self.unsent_count:
            self.oldest_unsent = time.monotonic()
        self.unsent_bytes += len(data)
        self.unsent_count += 1

    def ring(self) -> None:
        """Tell the supervisor how many bytes of outcomes wait in the pipe."""
        if self.unsent_count:
            wire.write_all(self.doorbell_fd, wire.doorbell(self.unsent_bytes))
            self.unsent_bytes = self.unsent_count = 0


def retire_reason(done: int, max_tasks: int | None, max_memory_mb: int | None) -> str | None:
    if max_tasks is not None and done >= max_tasks:
        return f"ran {done} tasks (--max-tasks-per-child)"
    if max_memory_mb is not None:
        rss = resident_memory_mb()
        if rss is not None and rss > max_memory_mb:
            return f"uses {rss:.0f} MB (--max-memory-per-child {max_memory_mb})"
    return None


def resident_memory_mb() -> float | None:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def _die_with_supervisor(supervisor_pid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with our parent process
    parent = os.getppid()

    def watch() -> None:  # the fallback: our parent changed (we were orphaned) or it is gone
        while True:
            time.sleep(0.5)
            if os.getppid() != parent or not _alive(supervisor_pid):
                os._exit(1)

    threading.Thread(target=watch, name="taskq-watch-supervisor", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
