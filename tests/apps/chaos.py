"""Handlers for the fault-injection tests (tests/chaos/) and the soak (tools/soak.py).

Every execution is written to a ledger: one file per process in the directory `TASKQ_CHAOS_LEDGER`,
one line per event, `event task_id attempt pid pgid monotonic`, appended with a single write. Files
survive whatever happens to Redis, and CLOCK_MONOTONIC is one clock for every process of the machine
(even those whose wall clock a test skews). Events: `start`; `end` (the handler completed and is about
to return: a second `end` for a task is a duplicate execution); `fail` (it raised on purpose); `die`
(it is about to kill itself or its worker); `tick` (a long task is still running).

`read_ledger` and `Verdict` turn the ledger and the queue's final state into the figures every chaos
test and the soak report: lost, duplicated, and whether each duplicate is explained by a fault.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from taskq_cli import TaskQueue, current_task

LEDGER_ENV = "TASKQ_CHAOS_LEDGER"

# Short backoff so recovered and failed tasks come back quickly; results kept long enough for the
# final check of a run to see every done task (their expiry is proven separately).
tq = TaskQueue(backoff_base=0.2, backoff_max=1.0, result_ttl=3600)

_ledger_fd: int | None = None
_ledger_pid: int | None = None


def _write(event: str) -> None:
    global _ledger_fd, _ledger_pid
    ctx = current_task()
    folder = os.environ.get(LEDGER_ENV)
    if ctx is None or not folder:
        return
    pid = os.getpid()
    if _ledger_fd is None or _ledger_pid != pid:  # a forked child opens its own file
        _ledger_fd = os.open(Path(folder) / f"{pid}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _ledger_pid = pid
    line = f"{event} {ctx.id} {ctx.attempt} {pid} {os.getpgid(0)} {time.monotonic():.6f}\n"
    os.write(_ledger_fd, line.encode())


def chance(task_id: str, attempt: int, salt: str = "") -> float:
    """A number in [0, 1) fixed by the task and attempt: flaky failures are reproducible."""
    digest = hashlib.blake2b(f"{salt}{task_id}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@tq.task(name="work", max_retries=12, timeout=120)
def work(ms: float = 0.0, fail_rate: float = 0.0, die: str = "") -> int:
    """Sleeps `ms`, fails with probability `fail_rate` per attempt, and on its first attempt may
    `die`: `child` (the OOM killer's SIGKILL of the child process), `memory` (a memory limit in the
    child: the allocation fails), `worker` (SIGKILL of the whole worker after completing, before
    the ack can be sent)."""
    ctx = current_task()
    assert ctx is not None
    _write("start")
    first = ctx.attempt == 1
    if die == "child" and first:
        _write("die")
        os.kill(os.getpid(), signal.SIGKILL)
    if die == "memory" and first:
        _exhaust_memory()
    if ms:
        time.sleep(ms / 1000)
    if fail_rate and chance(ctx.id, ctx.attempt) < fail_rate:
        _write("fail")
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    _write("end")
    if die == "worker" and first:
        _write("die")
        os.killpg(os.getpgid(0), signal.SIGKILL)  # the worker, its children and its fork server
    return ctx.attempt


def _exhaust_memory() -> None:
    """Allocate past an address-space limit set for this child only; the limit is lifted again."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (size + 64 * 1024 * 1024, hard))
    try:
        _write("fail")
        hog = bytearray(1024 * 1024 * 1024)  # MemoryError: the limit is far below 1 GiB more
        del hog
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@tq.task(name="long", max_retries=3, timeout=120)
def long(seconds: float) -> int:
    """Runs `seconds`, writing a `tick` every 50 ms: an execution's events show when it stopped, so
    two executions of one task that overlap in time show in the ledger."""
    ctx = current_task()
    assert ctx is not None
    _write("start")
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(0.05)
        _write("tick")
    _write("end")
    return ctx.attempt


@tq.task(name="doomed", max_retries=1, timeout=60)
def doomed() -> None:
    """Always fails: dead after 2 attempts."""
    _write("start")
    _write("fail")
    raise RuntimeError("doomed")


# -- reading the ledger ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    kind: str
    task_id: str
    attempt: int
    pid: int
    pgid: int
    at: float  # CLOCK_MONOTONIC seconds


def read_ledger(folder: Path) -> list[Event]:
    events: list[Event] = []
    for path in sorted(folder.glob("*.log")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 6:
                continue  # a line cut short by a kill in the middle of the write
            kind, task_id, attempt, pid, pgid, at = parts
            events.append(Event(kind, task_id, int(attempt), int(pid), int(pgid), float(at)))
    events.sort(key=lambda e: e.at)
    return events


@dataclass(frozen=True)
class Fault:
    """Something that happened to the system at `at` (CLOCK_MONOTONIC): a worker group killed
    (`pgid`), or a fault that hit every worker at once (`pgid` None: Redis restarted, connections
    cut or stalled)."""

    kind: str
    at: float
    pgid: int | None = None
    until: float | None = None  # the end of a fault that lasts (a stall, a cut, Redis down)


@dataclass
class Verdict:
    """What became of every enqueued task, from the queue's final state and the ledger."""

    enqueued: int
    done: int
    dead: int
    waiting: int
    lost: list[str]
    duplicated: dict[str, list[Event]]  # task id -> every completed execution but the acked one
    unexplained: dict[str, list[Event]]
    phases: dict[str, int] = field(default_factory=dict)

    def line(self, cause: str = "a fault") -> str:
        why = (
            f"all in flight at {cause}"
            if not self.unexplained
            else f"{len(self.unexplained)} NOT explained by {cause}"
        )
        return (
            f"enqueued {self.enqueued}, done {self.done}, dead {self.dead}, lost {len(self.lost)}, "
            f"duplicated {len(self.duplicated)} ({why})"
            + (f", still waiting {self.waiting}" if self.waiting else "")
        )


def judge(
    enqueued: Iterable[str],
    final: Mapping[str, tuple[str, int]],
    events: list[Event],
    faults: list[Fault],
) -> Verdict:
    """`final`: task id -> (state, attempts) as Redis holds it at the end. A completed execution
    whose attempt is not the one that was acked is a duplicate. It is explained when the worker that
    ran it was killed before the task's next attempt began, or when a fault that hit every worker
    (Redis down, connections cut or stalled) overlapped it and came before the next attempt."""
    ids = list(dict.fromkeys(enqueued))
    states = {i: final[i][0] for i in ids if i in final}
    lost = [i for i in ids if states.get(i) not in ("done", "dead", "pending", "scheduled", "active")]
    by_task: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_task[event.task_id].append(event)
    duplicated: dict[str, list[Event]] = {}
    unexplained: dict[str, list[Event]] = {}
    for task_id, evs in by_task.items():
        acked = final[task_id][1] if states.get(task_id) == "done" else None
        extra = [e for e in evs if e.kind == "end" and e.attempt != acked]
        if states.get(task_id) == "done" and extra:
            duplicated[task_id] = extra
            bad = [e for e in extra if not _explained(e, evs, faults)]
            if bad:
                unexplained[task_id] = bad
    return Verdict(
        enqueued=len(ids),
        done=sum(1 for s in states.values() if s == "done"),
        dead=sum(1 for s in states.values() if s == "dead"),
        waiting=sum(1 for s in states.values() if s in ("pending", "scheduled", "active")),
        lost=lost,
        duplicated=duplicated,
        unexplained=unexplained,
        phases=_phases(final, by_task, ids),
    )


def _explained(execution: Event, task_events: list[Event], faults: list[Fault]) -> bool:
    later = [e.at for e in task_events if e.kind == "start" and e.attempt > execution.attempt]
    horizon = min(later) if later else float("inf")
    start = min(
        (e.at for e in task_events if e.kind == "start" and e.attempt == execution.attempt),
        default=execution.at,
    )
    for fault in faults:
        if fault.pgid is not None:
            # The worker that leased this attempt was killed before the task's next attempt began.
            # (Its child may still start or finish the attempt a moment after the kill: the signal
            # takes microseconds to land, and a child learns of its worker's death within 0.5 s.)
            if fault.pgid == execution.pgid and fault.at <= horizon:
                return True
        elif fault.at <= horizon and (fault.until or fault.at) >= start:
            return True  # Redis or the network failed everyone while the attempt ran
    return False


def _phases(
    final: Mapping[str, tuple[str, int]], by_task: Mapping[str, list[Event]], ids: list[str]
) -> dict[str, int]:
    """Where the attempts that did not finish normally were cut off: leased but never started,
    stopped mid-execution, or completed but never acknowledged."""
    phases = {"leased, never started": 0, "cut mid-execution": 0, "completed, not acked": 0}
    for task_id in ids:
        if task_id not in final:
            continue
        state, attempts = final[task_id]
        evs = by_task.get(task_id, [])
        last = attempts if state in ("done", "dead") else attempts - 1
        for attempt in range(1, last + 1):
            kinds = {e.kind for e in evs if e.attempt == attempt}
            if state == "done" and attempt == attempts:
                continue
            if not kinds:
                phases["leased, never started"] += 1
            elif "end" in kinds:
                phases["completed, not acked"] += 1
            elif not kinds & {"fail", "die"}:
                phases["cut mid-execution"] += 1
    return phases
