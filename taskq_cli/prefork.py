"""The process pool: supervised child processes that each run one task at a time.

The supervisor (a thread of the worker) hands each idle child an Execution over a pipe and waits on
every child's pipe and process sentinel at once. It knows which child holds which task, so:
- a child that dies (segfault, os._exit, OOM kill) fails its task at once and is replaced;
- a task past its timeout first gets TaskTimeout raised inside it (SIGALRM in the child), and if it
  does not return within KILL_AFTER seconds (a C call, a deadlock) its child is SIGKILLed and replaced;
- children die with the supervisor (PR_SET_PDEATHSIG, and a watcher thread as a fallback), leaving no
  orphans; their tasks come back through lease expiry.
Children never talk to Redis: the worker batches their outcomes into pipelined reports.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import marshal
import multiprocessing
import os
import selectors
import signal
import threading
import time
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from taskq_cli.models import Outcome, OutcomeKind
from taskq_cli.registry import TaskDef
from taskq_cli.runner import Execution, call_with_alarm, run_task

log = logging.getLogger("taskq.pool")

KILL_AFTER = 1.0  # seconds between the soft timeout and the hard kill
SUPERVISOR_TICK = 0.05


@dataclass
class Child:
    process: BaseProcess
    conn: Connection
    execution: Execution | None = None
    hard_deadline: float | None = None
    retiring: bool = False
    started: float = field(default_factory=time.monotonic)


class ProcessPool:
    def __init__(
        self,
        size: int,
        registry: Mapping[str, TaskDef],
        app_spec: str | None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None:
        self.size = size
        self.registry = registry
        self.app_spec = app_spec
        self.max_tasks = max_tasks_per_child
        self.max_memory_mb = max_memory_per_child
        # The first children are forked directly: `start` runs while the worker has one thread, so
        # a fork is safe and fast. Replacements are forked later, when the worker runs threads: with
        # --app they come from a clean single-threaded server that has imported the app.
        self._fork: Any = multiprocessing.get_context("fork")
        self._ctx: Any = self._fork
        if app_spec:
            self._ctx = multiprocessing.get_context("forkserver")
            self._ctx.set_forkserver_preload([app_spec.partition(":")[0]])
        self._children: list[Child] = []
        self._lock = threading.Lock()
        self._backlog: deque[Execution] = deque()
        self._dropped: set[str] = set()
        self._closing = threading.Event()
        self._on_done: Any = None
        self._selector = selectors.DefaultSelector()
        self._supervisor = threading.Thread(target=self._supervise, name="taskq-supervisor", daemon=True)

    # -- Pool interface ---------------------------------------------------------------------

    def start(self, on_done: Any) -> None:
        self._on_done = on_done
        with self._lock:
            for _ in range(self.size):
                self._children.append(self._spawn(self._fork))
        for child in self._children:
            self._watch(child)
        if self._ctx is not self._fork:  # have the server ready before a child needs replacing
            threading.Thread(target=_start_forkserver, name="taskq-forkserver", daemon=True).start()
        self._supervisor.start()

    def submit(self, execution: Execution) -> None:
        with self._lock:
            self._backlog.append(execution)
            self._assign()

    def abort(self, tokens: Collection[str]) -> None:
        with self._lock:
            self._dropped.update(tokens)
            self._backlog = deque(e for e in self._backlog if e.token not in tokens)
            for child in self._children:
                if child.execution is not None and child.execution.token in tokens:
                    child.retiring = True
                    _kill(child.process)

    def _assign(self) -> None:
        """Hand waiting executions to idle children (caller holds the lock). Called on submit and
        the moment a child reports, so a child never waits for the worker to fetch its next task."""
        while self._backlog:
            child = next((c for c in self._children if c.execution is None and not c.retiring), None)
            if child is None:
                return
            execution = self._backlog.popleft()
            child.execution = execution
            if execution.timeout is not None:
                child.hard_deadline = time.monotonic() + execution.timeout + KILL_AFTER
            with contextlib.suppress(OSError):  # it just died: its sentinel fails the execution
                child.conn.send_bytes(marshal.dumps(astuple_execution(execution)))

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            children = list(self._children)
        for child in children:
            with contextlib.suppress(OSError):
                child.conn.send_bytes(b"")
        deadline = time.monotonic() + 3
        for child in children:
            child.process.join(max(deadline - time.monotonic(), 0))
            if child.process.is_alive():
                _kill(child.process)
                child.process.join(1)
        self._supervisor.join(timeout=2)

    def pids(self) -> list[int]:
        with self._lock:
            return [c.process.pid for c in self._children if c.process.pid is not None]

    # -- supervision ------------------------------------------------------------------------

    def _spawn(self, ctx: Any = None) -> Child:
        ctx = ctx or self._ctx
        parent_end, child_end = ctx.Pipe(duplex=True)
        registry = self.registry if ctx is self._fork else None  # a forked child has it already
        process = ctx.Process(
            target=child_main,
            name="taskq-child",
            daemon=True,
            args=(child_end, self.app_spec, registry, os.getpid(), self.max_tasks, self.max_memory_mb),
        )
        process.start()
        child_end.close()
        return Child(process, parent_end)

    def _watch(self, child: Child) -> None:
        self._selector.register(child.conn, selectors.EVENT_READ, (child, "conn"))
        self._selector.register(child.process.sentinel, selectors.EVENT_READ, (child, "exit"))

    def _unwatch(self, child: Child) -> None:
        for handle in (child.conn, child.process.sentinel):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(handle)

    def _supervise(self) -> None:
        """One loop waits on every child's pipe and exit sentinel (registered once per child)."""
        while not self._closing.is_set():
            for key, _ in self._selector.select(timeout=SUPERVISOR_TICK):
                child, kind = key.data
                if kind == "conn":
                    self._receive(child)
                else:
                    self._reap(child)
            self._enforce_deadlines()

    def _receive(self, child: Child) -> None:
        try:
            task_id, kind, result_json, error, delay, runtime, retire = marshal.loads(child.conn.recv_bytes())
        except (EOFError, OSError):
            return  # the child died; its sentinel tells
        outcome = Outcome(OutcomeKind(kind), result_json, error, delay, runtime)
        with self._lock:
            execution, child.execution, child.hard_deadline = child.execution, None, None
            child.retiring = bool(retire)
            self._assign()
        if retire:
            log.info("recycling child %s: %s", child.process.pid, retire)
        if execution is not None and execution.task_id == task_id:
            self._deliver(execution, outcome)

    def _reap(self, child: Child) -> None:
        """A child exited: fail its task at once (no need to wait for the lease) and replace it."""
        while child.conn.poll():  # an outcome it sent just before exiting comes first
            before = child.execution
            self._receive(child)
            if child.execution is before:
                break
        child.process.join(0.5)
        self._unwatch(child)
        replacement = None if self._closing.is_set() else self._spawn()
        with self._lock:
            if child in self._children:
                self._children.remove(child)
            execution = child.execution
            if replacement is not None:
                self._children.append(replacement)
                self._assign()
        if replacement is not None:
            self._watch(replacement)
        child.conn.close()
        if execution is not None:
            reason = describe_exit(child.process.exitcode)
            log.error("child %s running task %s %s", child.process.pid, execution.task_id, reason)
            self._deliver(
                execution,
                Outcome.failure(
                    OutcomeKind.ERROR, "WorkerProcessDied", f"the process running the task {reason}"
                ),
            )

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [
                c
                for c in self._children
                if c.hard_deadline is not None and now >= c.hard_deadline and c.execution is not None
            ]
        for child in late:
            if child.conn.poll():
                continue  # it answered just in time
            execution = child.execution
            assert execution is not None
            log.error(
                "task %s did not stop at its timeout; killing child %s", execution.task_id, child.process.pid
            )
            with self._lock:
                child.execution = None
                child.hard_deadline = None
                child.retiring = True  # never hand it another task: its exit brings a replacement
            _kill(child.process)
            self._deliver(
                execution,
                Outcome.failure(
                    OutcomeKind.ERROR,
                    "TaskTimeout",
                    f"timed out after {execution.timeout:g}s (the process was killed)",
                ),
            )

    def _deliver(self, execution: Execution, outcome: Outcome) -> None:
        if execution.token in self._dropped:
            return
        self._on_done(execution, outcome)


def astuple_execution(e: Execution) -> tuple[str, str, str, int, int, str, float | None, str]:
    """The Execution as a plain tuple (marshal is the cheapest codec for it; order = fields)."""
    return (e.task_id, e.name, e.queue, e.attempt, e.max_retries, e.payload_json, e.timeout, e.token)


def _start_forkserver() -> None:
    from multiprocessing import forkserver

    with contextlib.suppress(Exception):  # a failure here shows again, clearly, at the first respawn
        forkserver.ensure_running()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "disappeared"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (out of memory, or killed from outside)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


def _kill(process: BaseProcess) -> None:
    with contextlib.suppress(ProcessLookupError, OSError):
        if process.pid is not None:
            os.kill(process.pid, signal.SIGKILL)


# -- the child side -------------------------------------------------------------------------------


def child_main(
    conn: Connection,
    app_spec: str | None,
    registry: Mapping[str, TaskDef] | None,
    supervisor_pid: int,
    max_tasks: int | None,
    max_memory_mb: int | None,
) -> None:
    """Run Executions from the pipe, one at a time, until told to stop or the supervisor is gone."""
    _die_with_supervisor(supervisor_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and service managers signal the whole
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # group: the supervisor decides what stops
    if registry is None:
        from taskq_cli.registry import load_app

        assert app_spec is not None
        registry = load_app(app_spec).registry
    done = 0
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not message:  # the supervisor asks us to stop
            return
        execution = Execution(*marshal.loads(message))
        outcome = run_task(registry.get(execution.name), execution, call=call_with_alarm)
        done += 1
        retire = _retire_reason(done, max_tasks, max_memory_mb)
        conn.send_bytes(
            marshal.dumps(
                (
                    execution.task_id,
                    outcome.kind.value,
                    outcome.result_json,
                    outcome.error,
                    outcome.delay,
                    outcome.runtime,
                    retire,
                )
            )
        )
        if retire:
            return


def _retire_reason(done: int, max_tasks: int | None, max_memory_mb: int | None) -> str | None:
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
