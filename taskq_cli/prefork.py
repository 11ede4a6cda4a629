"""The process pool: supervised child processes that each run one task at a time.

The supervisor (a thread of the worker) sends Executions to the children over a pipe and waits on every
child's pipe and process sentinel at once. A busy child is sent its next executions behind the running
one (up to AHEAD, several per message), so it goes from one task to the next without waiting for the
supervisor. A child writes each outcome to an outcome pipe the moment its task returns, so a later
crash cannot lose it, but wakes the supervisor to read them (a doorbell) only when it runs out of work
or would otherwise hold an outcome back longer than FLUSH_AFTER: one wake-up per batch, not per task.
Each child also shows in shared memory which execution it runs and since when.

So the supervisor knows which child holds which executions and which one is running:
- a child that dies (segfault, os._exit, OOM kill) fails the execution it was running at once and is
  replaced; what it held but had not started goes to another child;
- a task past its timeout first gets TaskTimeout raised inside it (SIGALRM in the child), and if it
  does not return within KILL_AFTER seconds (a C call, a deadlock) its child is SIGKILLed and replaced;
- an aborted execution is skipped by its child if it has not started, else its child is SIGKILLed;
- children die with the supervisor (PR_SET_PDEATHSIG, and a watcher thread as a fallback), leaving no
  orphans; their tasks come back through lease expiry.
Executions queued in a child wait for the task it runs, so the supervisor queues them only where the
wait is short: tiny tasks go to a child that is awake if what it holds is expected to take under
PACK_BUDGET in all (each task name's recent run time is the guess), else to an idle child, else one
behind a task that began under QUEUE_BEHIND ago (the worker holds more than one task per slot only
while tasks are short).
Children never talk to Redis: the worker batches their outcomes into pipelined reports.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import marshal
import multiprocessing
import os
import select
import selectors
import signal
import threading
import time
from collections import deque
from collections.abc import Collection, Iterable, Mapping
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
AHEAD = 4  # executions a child may hold behind its running one (tiny tasks; else 1)
PACK_BUDGET = 0.0005  # seconds of expected work that may wait in one child rather than wake another
QUEUE_BEHIND = 0.02  # seconds a task may have run and still get one queued behind it
AHEAD_PAYLOAD = 16 * 1024  # larger payloads go to idle children only: a busy child's pipe stays small
FLUSH_AFTER = 0.002  # seconds a child may hold a finished outcome back while it runs more
FLUSH_COUNT = 16  # outcomes a child may hold back
PIPE_ROOM = 16 * 1024  # bytes a child writes to its outcome pipe before ringing (the pipe holds 64 KB)

RUN, DROP = 0, 1  # kinds of message to a child; an empty message asks it to stop
CLAIMED, BEGAN = 0, 1  # a child's shared progress: the number of the execution it took last, and
# when that one began to run (0.0 while it runs nothing); executions are numbered from 1, in order sent

Record = tuple[str, str, str | None, dict[str, str] | None, float | None, float, str | None]
# (task id, outcome kind or "" for an execution skipped as aborted, result, error, delay, runtime,
#  why the child retires after it or None)


@dataclass(eq=False)
class Child:
    process: BaseProcess
    conn: Connection  # executions and drops to the child; its doorbells back (raw frames)
    outcomes: Connection  # the read end of its outcome pipe (read raw, see _ChildLoop.record)
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
            # the signal setting first: a SIGTERM to the group while the app imports must not kill it
            self._ctx.set_forkserver_preload(["taskq_cli.forkserver_signals", app_spec.partition(":")[0]])
        self._children: list[Child] = []
        self._lock = threading.Lock()
        self._backlog: deque[Execution] = deque()
        self._dropped: set[str] = set()
        self._runtimes: dict[str, float] = {}  # task name -> recent run time (moving average)
        self._closing = threading.Event()
        self._on_done: Any = None
        self._selector = selectors.DefaultSelector()
        self._next_deadline_check = 0.0
        self._missing = 0  # children that died and could not be replaced yet
        self._next_spawn = 0.0
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
                child.conn.send_bytes(b"")
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
        shares: dict[Child, list[Execution]] = {}
        now = time.monotonic()
        while self._backlog:
            child = self._place(self._backlog[0], now)
            if child is None:
                break
            execution = self._backlog.popleft()
            child.held.append(execution)
            child.sent += 1
            shares.setdefault(child, []).append(execution)
        for child, executions in shares.items():
            with contextlib.suppress(OSError):  # it just died: its sentinel settles what it held
                child.conn.send_bytes(marshal.dumps((RUN, [astuple_execution(e) for e in executions])))

    def _place(self, execution: Execution, now: float) -> Child | None:
        """The child to run this execution next, or None: it waits for one to report.
        1. A busy child, if the work queued there, this one included, is expected to take under
           PACK_BUDGET: a child that is awake runs tiny tasks back to back, and waking an idle
           one costs more than such a task (a context switch, cold caches, one more doorbell).
        2. An idle child.
        3. One behind the running task of a child that holds nothing else, if that task began
           under QUEUE_BEHIND ago, so that the child goes on without waiting for the supervisor.
        A large payload goes to an idle child only: a busy child's pipe stays small, so sending
        to it never blocks."""
        queueable = len(execution.payload_json) <= AHEAD_PAYLOAD
        packed = idle = behind = None
        for child in self._children:
            if child.retiring or (self.max_tasks is not None and child.sent >= self.max_tasks):
                continue  # (a child retiring after N tasks is sent exactly N)
            held = len(child.held)
            if not held:
                idle = idle or child
            elif queueable and held <= AHEAD:
                if (packed is None or held > len(packed.held)) and self._packable(child, execution, now):
                    packed = child
                if held == 1 and _running_for(child, now) < QUEUE_BEHIND:
                    behind = behind or child
        return packed or idle or behind

    def _packable(self, child: Child, execution: Execution, now: float) -> bool:
        if _running_for(child, now) >= PACK_BUDGET:
            return False
        expected = 0.0
        for held in (*child.held, execution):
            runtime = self._runtimes.get(held.name)
            if runtime is None:
                return False
            expected += runtime
        return expected < PACK_BUDGET

    def _drop_from(self, child: Child, tokens: list[str]) -> None:
        """Aborted executions a child holds: it skips those it has not taken yet. The child marks
        an execution taken (CLAIMED) before it reads its pipe for drops, and we read CLAIMED after
        sending the drop: so either it sees the drop, or we see it took the execution and kill it."""
        with contextlib.suppress(OSError):
            child.conn.send_bytes(marshal.dumps((DROP, tokens)))
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
        registry = self.registry if ctx is self._fork else None  # a forked child has it already
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
        messages, child.inbox = _frames(child.inbox + data)
        self._settle(child, _records(child, messages))

    def _settle(self, child: Child, records: Iterable[Record]) -> None:
        """Match outcomes to the executions the child held (in the order sent) and deliver them."""
        done: list[tuple[Execution, Outcome]] = []
        with self._lock:
            for record in records:
                task_id, kind, result_json, error, delay, runtime, retire = record
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
                if kind:  # else it skipped the execution, aborted
                    done.append((execution, Outcome(OutcomeKind(kind), result_json, error, delay, runtime)))
                    self._learn(execution.name, runtime)
            self._assign()
        for execution, outcome in done:
            self._deliver(execution, outcome)

    def _learn(self, name: str, runtime: float) -> None:
        if name in self.registry:  # names from Redis are not ours to count
            last = self._runtimes.get(name, runtime)
            self._runtimes[name] = last + (runtime - last) * 0.2

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
        self._on_done(execution, outcome)


def _running_for(child: Child, now: float) -> float:
    """How long the child's current task has run (0.0 when it runs none; approximate: it may
    have just begun another)."""
    began: float = child.progress[BEGAN]
    return now - began if began else 0.0


def _frames(data: bytes) -> tuple[list[Any], bytes]:
    """The messages in `data` (each a 4-byte length, then marshal), and what is left of an
    incomplete last one."""
    messages, offset = [], 0
    while offset + 4 <= len(data):
        end = offset + 4 + int.from_bytes(data[offset : offset + 4], "little")
        if end > len(data):
            break
        messages.append(marshal.loads(data[offset + 4 : end]))
        offset = end
    return messages, data[offset:]


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "little") + data


def _records(child: Child, doorbells: list[int | Record]) -> list[Record]:
    """The outcomes doorbells announce, in order: a number of bytes of them in the outcome pipe
    (written before the doorbell, so reading them never waits), or one record sent inline (too
    large for the pipe)."""
    records: list[Record] = []
    announced = 0
    for doorbell in [*doorbells, None]:
        if isinstance(doorbell, int):
            announced += doorbell
            continue
        if announced:
            records += _frames(_read(child.outcomes.fileno(), announced))[0]
            announced = 0
        if doorbell is not None:
            records.append(doorbell)
    return records


def _read(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0 and (chunk := os.read(fd, size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_all(fd: int) -> bytes:
    """What a dead process left in a pipe (no wait: another holder of its write end cannot hang us)."""
    chunks = []
    while select.select([fd], [], [], 0)[0] and (chunk := os.read(fd, 65536)):
        chunks.append(chunk)
    return b"".join(chunks)


def _last_records(child: Child) -> list[Record]:
    """Everything a dead child sent: its last doorbells, then what it wrote to the outcome pipe
    without ringing (finished outcomes are never lost; a record cut short by the kill is dropped)."""
    with contextlib.suppress(OSError):
        doorbells, child.inbox = _frames(child.inbox + _read_all(child.conn.fileno()))
        return _records(child, doorbells) + _frames(_read_all(child.outcomes.fileno()))[0]
    return []


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
    outcomes: Connection,
    progress: Any,
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
        from taskq_cli.loading import load_app

        assert app_spec is not None
        registry = load_app(app_spec).registry
    _ChildLoop(conn, outcomes, progress, registry, max_tasks, max_memory_mb).serve()


class _ChildLoop:
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
                message = self.conn.recv_bytes()
            except (EOFError, OSError):
                return False
            if not message:  # the supervisor asks us to stop
                return False
            kind, body = marshal.loads(message)
            if kind == RUN:
                self.queue.extend(Execution(*fields) for fields in body)
            else:
                self.dropped.update(body)
        return True

    def handle(self, execution: Execution) -> str | None:
        """Run it (or skip it, aborted) and record its outcome; returns why this child retires."""
        if execution.token in self.dropped:
            self.dropped.discard(execution.token)
            # it counts as taken: the supervisor sends a child exactly max_tasks executions
            retire = _retire_reason(self.taken, self.max_tasks, self.max_memory_mb)
            self.record((execution.task_id, "", None, None, None, 0.0, retire))
            return retire
        if self.unsent_count and self.should_ring_before_running():
            self.ring()
        self.progress[BEGAN] = time.monotonic()
        outcome = run_task(self.registry.get(execution.name), execution, call=call_with_alarm)
        self.last_runtime = outcome.runtime
        retire = _retire_reason(self.taken, self.max_tasks, self.max_memory_mb)
        self.record(
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
        data = _frame(marshal.dumps(record))
        if self.unsent_bytes + len(data) > PIPE_ROOM:
            self.ring()  # never leave more unannounced than the pipe holds: we would block forever
        if len(data) > PIPE_ROOM:
            _write(self.doorbell_fd, data)
            return
        _write(self.outcomes_fd, data)
        if not self.unsent_count:
            self.oldest_unsent = time.monotonic()
        self.unsent_bytes += len(data)
        self.unsent_count += 1

    def ring(self) -> None:
        """Tell the supervisor how many bytes of outcomes wait in the pipe."""
        if self.unsent_count:
            _write(self.doorbell_fd, _frame(marshal.dumps(self.unsent_bytes)))
            self.unsent_bytes = self.unsent_count = 0


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
