"""The process pool's supervisor: a thread of the worker that keeps `size` child processes (child.py),
hands them Executions (where: placement.py), and turns what they send back (wire.py) into Outcomes.

It waits on every child's pipe and process sentinel at once. A busy child is sent its next executions
behind the running one (several per message), so it goes from one task to the next without waiting
for the supervisor. So the supervisor knows which child holds which executions and which one runs:
- a child that dies (segfault, os._exit, OOM kill) fails the execution it was running at once and is
  replaced; what it held but had not started goes to another child;
- a task past its timeout first gets TaskTimeout raised inside it (SIGALRM in the child), and if it
  does not return within KILL_AFTER seconds (a C call, a deadlock) its child is SIGKILLed and replaced;
- an aborted execution is skipped by its child if it has not started, else its child is SIGKILLed;
- children die with the supervisor (PR_SET_PDEATHSIG, and a watcher thread as a fallback), leaving no
  orphans; their tasks come back through lease expiry.
Every outcome's run time goes to `runtimes` before the worker hears of it: placement reads it per
task name, the worker's prefetch overall. Children never talk to Redis: the worker batches their
outcomes into pipelined reports.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import selectors
import signal
import threading
import time
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from taskq_cli import logs
from taskq_cli.middleware import Chain
from taskq_cli.models import Outcome, OutcomeKind
from taskq_cli.pool import OnDone, known_name
from taskq_cli.prefork import wire
from taskq_cli.prefork.child import child_main
from taskq_cli.prefork.placement import ChildState, place
from taskq_cli.prefork.wire import BEGAN, CLAIMED, Record
from taskq_cli.registry import TaskDef
from taskq_cli.runner import Execution
from taskq_cli.runtime import Runtimes

log = logging.getLogger("taskq.pool")

KILL_AFTER = 1.0  # seconds between the soft timeout and the hard kill
SUPERVISOR_TICK = 0.05


@dataclass(eq=False)
class Child:
    process: BaseProcess
    conn: Connection  # executions and drops to the child; its doorbells back (raw frames)
    outcomes: Connection  # the read end of its outcome pipe (read raw, see ChildLoop.record)
    progress: Any  # shared doubles, indexed by CLAIMED and BEGAN
    held: deque[Execution] = field(default_factory=deque)  # sent, outcome not received yet, in order
    received: int = 0  # outcomes received: held[0] is execution number received + 1
    inbox: bytes = b""  # the start of a doorbell not read whole yet
    sent: int = 0
    retiring: bool = False  # takes nothing more: it retires, was killed or died
    kill_reason: str | None = None  # why we SIGKILLed it ("timeout" or "abort"), and for which
    killed_for: str | None = None  # execution (its token)
    started: float = field(default_factory=time.monotonic)

    def claimed(self) -> tuple[int, float]:
        """(number of the execution it took last, when that began or 0.0), read consistently."""
        while True:
            number, began = self.progress[CLAIMED], self.progress[BEGAN]
            if self.progress[CLAIMED] == number:
                return int(number), began

    def running(self) -> tuple[Execution, float] | None:
        """The execution it runs now and when that began (caller holds the pool's lock)."""
        number, began = self.claimed()
        index = number - self.received - 1
        if began and 0 <= index < len(self.held):
            return self.held[index], began
        return None

    def accepts(self, max_tasks: int | None) -> bool:
        """Whether it takes more work (a child retiring after N tasks is sent exactly N)."""
        return not self.retiring and (max_tasks is None or self.sent < max_tasks)

    def running_for(self, now: float) -> float:
        """How long its current task has run (0.0 when it runs none; approximate: it may have just
        begun another)."""
        began: float = self.progress[BEGAN]
        return now - began if began else 0.0


class ProcessPool:
    def __init__(
        self,
        size: int,
        registry: Mapping[str, TaskDef],
        app_spec: str | None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        middleware: Chain | None = None,
    ) -> None:
        self.size = size
        self.registry = registry
        self.middleware = middleware or Chain()
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
            # the signal setting first: a SIGTERM to the group while the app imports must not kill it
            self._ctx.set_forkserver_preload(["taskq_cli.forkserver_signals", app_spec.partition(":")[0]])
        self._children: list[Child] = []
        self._lock = threading.Lock()
        self._backlog: deque[Execution] = deque()
        self._dropped: set[str] = set()
        self.runtimes = Runtimes()
        self._closing = threading.Event()
        self._on_done: OnDone | None = None
        self._selector = selectors.DefaultSelector()
        self._next_deadline_check = 0.0
        self._missing = 0  # children that died and could not be replaced yet
        self._next_spawn = 0.0
        self._supervisor = threading.Thread(target=self._supervise, name="taskq-supervisor", daemon=True)

    # -- Pool interface ---------------------------------------------------------------------

    def start(self, on_done: OnDone) -> None:
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
        self.submit_many((execution,))

    def submit_many(self, executions: Sequence[Execution]) -> None:
        with self._lock:
            self._backlog.extend(executions)
            self._assign()

    def abort(self, tokens: Collection[str]) -> None:
        with self._lock:
            self._dropped.update(tokens)
            self._backlog = deque(e for e in self._backlog if e.token not in tokens)
            for child in self._children:
                if child.kill_reason is None and any(e.token in tokens for e in child.held):
                    self._drop_from(child, [e.token for e in child.held if e.token in tokens])

    def close(self) -> None:
        self._closing.set()
        # the supervisor first: a replacement it is spawning now is then in the list and told to stop
        self._supervisor.join(timeout=5)
        with self._lock:
            children = list(self._children)
        for child in children:
            with contextlib.suppress(OSError):
                child.conn.send_bytes(wire.STOP)
        deadline = time.monotonic() + 3
        for child in children:
            child.process.join(max(deadline - time.monotonic(), 0))
            if child.process.is_alive():
                _kill(child.process)
                child.process.join(1)
        for child in children:
            child.conn.close()
            child.outcomes.close()

    def pids(self) -> list[int]:
        with self._lock:
            return [c.process.pid for c in self._children if c.process.pid is not None]

    # -- handing out work (callers hold the lock) ---------------------------------------------

    def _assign(self) -> None:
        """Hand waiting executions out, each child's share in one message. Called on submit and
        whenever a child reports, so a busy child has its next task before it finishes this one."""
        if not self._backlog:
            return
        now = time.monotonic()
        children = self._children
        states = [self._state(child, now) for child in children]
        shares: dict[Child, list[Execution]] = {}
        while self._backlog:
            execution = self._backlog[0]
            expected = self.runtimes.of(execution.name)
            index = place(states, expected, len(execution.payload_json))
            if index is None:
                break
            self._backlog.popleft()
            child = children[index]
            child.held.append(execution)
            child.sent += 1
            states[index] = states[index].given(expected, child.accepts(self.max_tasks))
            shares.setdefault(child, []).append(execution)
        for child, executions in shares.items():
            with contextlib.suppress(OSError):  # it just died: its sentinel settles what it held
                child.conn.send_bytes(wire.run_message(executions))

    def _state(self, child: Child, now: float) -> ChildState:
        """The child as placement sees it: what it holds is expected to take the sum of each task
        name's recent run time (None if one has none yet)."""
        if not child.accepts(self.max_tasks):
            return ChildState(accepts=False)
        expected = 0.0
        for execution in child.held:
            runtime = self.runtimes.of(execution.name)
            if runtime is None:
                return ChildState(len(child.held), None, child.running_for(now))
            expected += runtime
        return ChildState(len(child.held), expected, child.running_for(now))

    def _drop_from(self, child: Child, tokens: list[str]) -> None:
        """Aborted executions a child holds: it skips those it has not taken yet. The child marks
        an execution taken (CLAIMED) before it reads its pipe for drops, and we read CLAIMED after
        sending the drop: so either it sees the drop, or we see it took the execution and kill it."""
        with contextlib.suppress(OSError):
            child.conn.send_bytes(wire.drop_message(tokens))
        number, _ = child.claimed()
        index = number - child.received - 1
        if 0 <= index < len(child.held) and child.held[index].token in tokens:
            self._kill(child, "abort", child.held[index])

    def _kill(self, child: Child, reason: str, execution: Execution) -> None:
        child.retiring = True
        child.kill_reason, child.killed_for = reason, execution.token
        _kill(child.process)

    # -- supervision ------------------------------------------------------------------------

    def _spawn(self, ctx: Any = None) -> Child:
        ctx = ctx or self._ctx
        parent_end, child_end = ctx.Pipe(duplex=True)
        outcomes_in, outcomes_out = ctx.Pipe(duplex=False)
        progress = ctx.RawArray(ctypes.c_double, 2)
        # a forked child has the registry and middleware already; one from the fork server loads the app
        registry = self.registry if ctx is self._fork else None
        middleware = self.middleware if ctx is self._fork else None
        process = ctx.Process(
            target=child_main,
            name="taskq-child",
            daemon=True,
            args=(
                child_end,
                outcomes_out,
                progress,
                self.app_spec,
                registry,
                os.getpid(),
                self.max_tasks,
                self.max_memory_mb,
                middleware,
                logs.current_setup(),
            ),
        )
        process.start()
        child_end.close()
        outcomes_out.close()  # the child holds the only write end: its exit ends the pipe
        return Child(process, parent_end, outcomes_in, progress)

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
            if time.monotonic() >= self._next_deadline_check:
                self._next_deadline_check = time.monotonic() + SUPERVISOR_TICK
                self._enforce_deadlines()
            if self._missing and time.monotonic() >= self._next_spawn and not self._closing.is_set():
                self._replace()

    def _receive(self, child: Child) -> None:
        """A child rang: take the outcomes it announced, and give it more work. Every doorbell
        waiting is read at once, and the outcomes they announce with one more read."""
        try:
            data = os.read(child.conn.fileno(), 65536)
        except OSError:
            return  # the child died; its sentinel tells
        doorbells, child.inbox = wire.unframe(child.inbox + data)
        self._settle(child, _announced(child, doorbells))

    def _settle(self, child: Child, records: Iterable[Record]) -> None:
        """Match outcomes to the executions the child held (in the order sent) and deliver them."""
        done: list[tuple[Execution, Outcome]] = []
        with self._lock:
            for record in records:
                task_id, *_, retire = record
                if not child.held or child.held[0].task_id != task_id:
                    log.error(
                        "child %s sent an outcome for task %s it does not hold", child.process.pid, task_id
                    )
                    continue
                execution = child.held.popleft()
                child.received += 1
                if retire:
                    child.retiring = True
                    log.info("recycling child %s: %s", child.process.pid, retire)
                outcome = wire.record_outcome(record)
                if outcome is not None:  # else it skipped the execution, aborted
                    done.append((execution, outcome))
                    self._learn(execution.name, outcome.runtime)
            self._assign()
        for execution, outcome in done:
            self._deliver(execution, outcome)

    def _learn(self, name: str, runtime: float) -> None:
        """A run time measured in a child (placement's guess for the next of this name)."""
        self.runtimes.record(known_name(self.registry, name), runtime)

    def _reap(self, child: Child) -> None:
        """A child exited: settle what it finished, fail the task it was running at once (no need
        to wait for the lease), hand what it had not started to another child, and replace it."""
        with self._lock:
            child.retiring = True
        self._settle(child, _last_records(child))
        child.process.join(0.5)
        self._unwatch(child)
        with self._lock:
            if child in self._children:
                self._children.remove(child)
            failed = self._requeue_held(child)
            self._missing += 1
        if not self._closing.is_set():
            self._replace()
        child.conn.close()
        child.outcomes.close()
        if failed is not None:
            self.runtimes.record(None, failed[1].runtime)  # not measured: no per-name guess from it
            self._deliver(*failed)

    def _replace(self) -> None:
        """Spawn the children missing. A spawn can fail (the fork server is gone, no memory): the
        supervisor must live on, so it says so and tries again a second later."""
        while self._missing and not self._closing.is_set():
            try:
                replacement = self._spawn()
            except (OSError, EOFError) as exc:
                log.error(
                    "could not start a child process (%s: %s); trying again in 1s", type(exc).__name__, exc
                )
                self._next_spawn = time.monotonic() + 1.0
                return
            with self._lock:
                self._missing -= 1
                self._children.append(replacement)
                self._assign()
            self._watch(replacement)

    def _requeue_held(self, child: Child) -> tuple[Execution, Outcome] | None:
        """Put back in the backlog what a dead child held but had not started (caller holds the
        lock); return the execution it was running, with its outcome."""
        held = list(child.held)
        child.held.clear()
        number, began = child.claimed()
        failed = None
        if held and began and number == child.received + 1:  # it died running held[0]
            outcome = self._fate(child, held[0])
            if outcome is not None:
                failed = (held.pop(0), outcome)
        self._backlog.extendleft(reversed([e for e in held if e.token not in self._dropped]))
        return failed

    def _fate(self, child: Child, execution: Execution) -> Outcome | None:
        """How an execution ends whose child died under it; None: it goes back to the backlog."""
        if child.killed_for is not None and child.killed_for != execution.token:
            return None  # we killed the child for another execution; this one just began
        if child.kill_reason == "timeout":
            return Outcome.failure(
                OutcomeKind.ERROR,
                "TaskTimeout",
                f"timed out after {execution.timeout:g}s (the process was killed)",
            )
        reason = describe_exit(child.process.exitcode)
        if execution.token not in self._dropped:
            log.error("child %s running task %s %s", child.process.pid, execution.task_id, reason)
        return Outcome.failure(
            OutcomeKind.ERROR, "WorkerProcessDied", f"the process running the task {reason}"
        )

    def _enforce_deadlines(self) -> None:
        """SIGKILL a child whose task ran KILL_AFTER past its timeout (SIGALRM did not stop it);
        its exit settles the rest."""
        now = time.monotonic()
        with self._lock:
            for child in self._children:
                running = None if child.kill_reason else child.running()
                if running is None or running[0].timeout is None:
                    continue
                execution, began = running
                if now >= began + (execution.timeout or 0) + KILL_AFTER:
                    log.error(
                        "task %s did not stop at its timeout; killing child %s",
                        execution.task_id,
                        child.process.pid,
                    )
                    self._kill(child, "timeout", execution)

    def _deliver(self, execution: Execution, outcome: Outcome) -> None:
        if execution.token in self._dropped:
            return
        if self._on_done is not None:
            self._on_done(execution, outcome)


def _announced(child: Child, doorbells: list[int | Record]) -> list[Record]:
    """The records a child's doorbells announce (read from its outcome pipe, or inline)."""
    fd = child.outcomes.fileno()
    return wire.announced_records(doorbells, lambda size: wire.read_exactly(fd, size))


def _last_records(child: Child) -> list[Record]:
    """Everything a dead child sent: its last doorbells, then what it wrote to the outcome pipe
    without ringing (finished outcomes are never lost; a record cut short by the kill is dropped)."""
    with contextlib.suppress(OSError):
        doorbells, child.inbox = wire.unframe(child.inbox + wire.read_available(child.conn.fileno()))
        announced = _announced(child, doorbells)  # first: they are the start of the outcome pipe
        return announced + wire.unframe(wire.read_available(child.outcomes.fileno()))[0]
    return []


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
