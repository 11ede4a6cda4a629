"""The execution engine, end to end: `taskq worker` as real processes on a real Redis, running the
handlers of tests/apps/execution.py (which record every execution, and the pid that ran it, in
`<ns>:test:runs`). Covers the pools (processes, threads, asyncio), hard timeouts, crash isolation,
supervisor death, graceful drain, child recycling, honest prefetch and structured logs; the pools
are also driven directly, in process, without Redis.

Every wait is bounded. Processes are found through /proc (psutil is not installed): each worker is
started in a session of its own, so its process group holds everything it started (forkserver,
resource tracker, children), and every process a test starts carries the environment variable
EXECUTION_TEST=<namespace>, checked at teardown so that nothing outlives a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.models import Outcome, OutcomeKind
from taskq_cli.pool import AsyncPool
from taskq_cli.pools import make_pool
from taskq_cli.prefork import KILL_AFTER, ProcessPool
from taskq_cli.runner import Execution
from taskq_cli.worker import MAX_AHEAD_PER_SLOT
from tests.conftest import cli_env
from tests.support import Proc, Procs, until, worker_ids

APP = "tests.apps.execution"
MARK = "EXECUTION_TEST"
SLACK = 0.75  # seconds allowed on top of a deadline for reporting and a loaded machine


# -- processes --------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def pgid_of(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[2] if stat else None


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet is not running)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (a worker's group keeps its descendants, reparented or not)."""
    return [pid for pid in _all_pids() if (s := _stat(pid)) and s[2] == pgid and s[0] not in ("Z", "X")]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def marked(mark: str) -> list[int]:
    """Live processes started (directly or not) by this test."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for pid in _all_pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ and alive(pid):
            found.append(pid)
    return found


def describe(pids: list[int]) -> str:
    return "\n".join(f"  {pid}: {cmdline(pid)[:160]}" for pid in pids)


Start = Callable[..., Proc]


@pytest.fixture
def worker(procs: Procs, redis_url: str, namespace: str) -> Iterator[Start]:
    """Start `taskq worker --app tests.apps.execution ARGS`. At teardown every process group a test
    started is killed, and no process carrying the test's mark may be left."""

    def run(*args: str, label: str = "worker") -> Proc:
        env = cli_env(redis_url, namespace, **{MARK: namespace})
        return procs.start("worker", "--app", APP, *args, env=env, label=label)

    yield run
    procs.close()
    with contextlib.suppress(AssertionError):  # the group's last processes take a moment to go
        until(lambda: not marked(namespace), 3)
    left = marked(namespace)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind by the test:\n{describe(left)}"


def logs(*procs: Proc) -> str:
    return "\n".join(p.report() for p in procs)


def registered(raw: redis.Redis, ns: str, proc: Proc) -> bool:
    return any(worker_id.split(":")[-2] == str(proc.pid) for worker_id in worker_ids(raw, ns))


# -- Redis ------------------------------------------------------------------------------------------


def runs(raw: redis.Redis, ns: str, task_id: str | None = None) -> list[tuple[str, int, str]]:
    """(task id, attempt, tag) of every recorded execution step, in order."""
    out = []
    for entry in raw.lrange(f"{ns}:test:runs", 0, -1):
        tid, attempt, *tag = str(entry).split(":", 2)
        if task_id is None or tid == task_id:
            out.append((tid, int(attempt), tag[0] if tag else ""))
    return out


def pid_of(tag: str) -> int:
    """The pid in a `pid=N[,more]` tag."""
    first = tag.split(",", maxsplit=1)[0]
    assert first.startswith("pid="), tag
    return int(first[4:])


def pids(raw: redis.Redis, ns: str, task_id: str) -> list[int]:
    return [pid_of(tag) for _, _, tag in runs(raw, ns, task_id) if tag.startswith("pid=")]


def tags(raw: redis.Redis, ns: str, task_id: str) -> list[str]:
    return [tag for _, _, tag in runs(raw, ns, task_id)]


def task(tq: TaskQueue, task_id: str) -> dict[str, Any]:
    found = tq.get_task(task_id)
    assert found is not None, task_id
    return found.model_dump()


def state(tq: TaskQueue, task_id: str) -> str | None:
    found = tq.get_task(task_id)
    return found.state if found else None


def in_state(tq: TaskQueue, task_id: str, *states: str) -> Callable[[], bool]:
    return lambda: state(tq, task_id) in states


def error_type(info: dict[str, Any]) -> str | None:
    return (info.get("last_error") or {}).get("type")


def error_message(info: dict[str, Any]) -> str:
    return (info.get("last_error") or {}).get("message") or ""


def ran_for(info: dict[str, Any]) -> float:
    """Seconds between the last attempt's fetch and its outcome (Redis clock)."""
    return (info["finished_at"] - info["started_at"]) / 1000


# -- hard timeouts ----------------------------------------------------------------------------------

TIMEOUT = 1.0  # the hanging handlers' decorator timeout


@pytest.mark.parametrize(
    ("name", "soft", "retries"),
    [
        pytest.param("spin", True, 1, id="busy-loop"),
        pytest.param("polite_sleep", True, 0, id="sleep-that-lets-TaskTimeout-through"),
        pytest.param("stubborn_spin", False, 0, id="busy-loop-after-swallowing-TaskTimeout"),
        pytest.param(
            "stubborn_sleep",
            False,
            1,
            id="C-call-in-a-loop-ignoring-every-exception",
            marks=pytest.mark.soak,
        ),
        pytest.param("deadlock", False, 0, id="deadlock-with-SIGALRM-blocked"),
    ],
)
def test_a_task_past_its_timeout_is_stopped_within_timeout_plus_1s_fails_as_timed_out_and_the_pool_serves_on(
    name: str, soft: bool, retries: int, worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    proc = worker("--concurrency", "1")
    hung = tq.enqueue(name, {}, max_retries=retries)

    until(in_state(tq, hung, "dead"), 4 + 3 * (retries + 1), logs=[proc], what=f"{name} dead")
    info = task(tq, hung)
    assert info["attempts"] == retries + 1, logs(proc)  # a timeout follows the retry rules
    assert error_type(info) == "TaskTimeout", (info["last_error"], logs(proc))
    assert f"timed out after {TIMEOUT:g}s" in error_message(info), info["last_error"]
    assert TIMEOUT - 0.05 <= ran_for(info) <= TIMEOUT + KILL_AFTER + SLACK, (ran_for(info), logs(proc))
    assert [a for _, a, t in runs(raw, namespace, hung) if "start" in t] == list(range(1, retries + 2))
    hung_pids = pids(raw, namespace, hung)
    if name in ("polite_sleep", "stubborn_spin", "stubborn_sleep"):  # soft first: inside the handler
        assert "caught=TaskTimeout" in tags(raw, namespace, hung), tags(raw, namespace, hung)
    assert "caught-by-except-Exception" not in tags(raw, namespace, hung)

    after = tq.enqueue("pid", {})
    until(in_state(tq, after, "done"), 5, logs=[proc], what="the next task done")
    (next_pid,) = pids(raw, namespace, after)
    if soft:  # stopped by the exception alone: its child lives on and runs the next task
        assert next_pid == hung_pids[-1], logs(proc)
    else:  # killed: a new child runs the next task, the killed ones are gone
        assert next_pid not in hung_pids, logs(proc)
        assert not any(alive(p) for p in hung_pids), describe([p for p in hung_pids if alive(p)])
        assert "killing child" in proc.stderr
    assert proc.running(), logs(proc)


@pytest.mark.soak
def test_tasks_waiting_behind_a_hard_killed_task_run_normally_and_the_worker_survives(
    worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    """The slot of a killed task frees at once; the next task must go to a live child, not to the
    one being killed (where it would fail as WorkerProcessDied, or the worker would hit a broken pipe)."""
    proc = worker("--concurrency", "1")
    ids = tq.enqueue_many([("stubborn_sleep", {}, {"max_retries": 0}), ("pid", {}, {"max_retries": 0})] * 2)
    hung, behind = ids[0::2], ids[1::2]  # run in this order: each pid task waits behind a hung one

    until(
        lambda: not proc.running() or all(state(tq, i) in ("done", "dead") for i in ids),
        10,
        logs=[proc],
        what="all four ended",
    )
    assert proc.running(), logs(proc)
    for task_id in hung:
        assert error_type(task(tq, task_id)) == "TaskTimeout", logs(proc)
    for task_id in behind:
        info = task(tq, task_id)
        assert (info["state"], info["attempts"], info["last_error"]) == ("done", 1, None), (info, logs(proc))
    assert proc.running(), logs(proc)


# -- crash isolation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("exit_now", "exited with code 1", id="os._exit"),
        pytest.param("kill_self", "killed by SIGKILL", id="self-SIGKILL"),
        pytest.param("segfault", "killed by SIGSEGV", id="segfault"),
    ],
)
def test_a_handler_that_kills_its_child_fails_at_once_is_retried_then_dead_and_only_its_child_dies(
    name: str, reason: str, worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    proc = worker("--concurrency", "2", "--lease", "30s")
    until(lambda: registered(raw, namespace, proc), 10, logs=[proc], what="worker up")
    neighbour = tq.enqueue("nap", {"seconds": 1.5})
    until(lambda: runs(raw, namespace, neighbour), 5, logs=[proc], what="the neighbour started")
    crasher = tq.enqueue(name, {})  # decorator: max_retries=1

    # both attempts fail at once: waiting for the 30 s lease would blow this bound
    until(in_state(tq, crasher, "dead"), 6, logs=[proc], what=f"{name} dead")
    info = task(tq, crasher)
    assert info["attempts"] == 2, info
    assert error_type(info) == "WorkerProcessDied", info["last_error"]
    assert reason in error_message(info), info["last_error"]
    assert ran_for(info) < 2, info
    crashed = pids(raw, namespace, crasher)
    assert len(crashed) == 2, runs(raw, namespace)

    # the task running next to it in another child was not disturbed
    until(in_state(tq, neighbour, "done"), 5, logs=[proc], what="the neighbour done")
    neighbour_info = task(tq, neighbour)
    assert neighbour_info["attempts"] == 1, neighbour_info
    assert len(set(pids(raw, namespace, neighbour))) == 1, runs(raw, namespace, neighbour)

    # the worker lives on with fresh children
    after = tq.enqueue("pid", {})
    until(in_state(tq, after, "done"), 5, logs=[proc], what="a task after the crashes")
    (next_pid,) = pids(raw, namespace, after)
    assert next_pid not in crashed
    assert not any(alive(p) for p in crashed), describe([p for p in crashed if alive(p)])
    assert proc.running(), logs(proc)


def test_a_child_sigkilled_from_outside_fails_its_task_at_once_and_is_replaced(
    worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    proc = worker("--concurrency", "1", "--lease", "30s")
    victim = tq.enqueue("nap", {"seconds": 30}, max_retries=0)
    until(lambda: pids(raw, namespace, victim), 10, logs=[proc], what="the task started")
    (child,) = pids(raw, namespace, victim)
    assert pgid_of(child) == proc.pid  # a process of this worker

    os.kill(child, signal.SIGKILL)
    took = until(in_state(tq, victim, "dead"), 5, logs=[proc], what="the task dead")
    assert took < 2, took
    info = task(tq, victim)
    assert error_type(info) == "WorkerProcessDied", info["last_error"]
    assert "SIGKILL" in error_message(info), info["last_error"]

    after = tq.enqueue("pid", {})
    until(in_state(tq, after, "done"), 5, logs=[proc], what="the next task done")
    assert pids(raw, namespace, after) != [child]
    assert proc.running(), logs(proc)


# -- supervisor death -------------------------------------------------------------------------------


@pytest.mark.soak
def test_a_sigkilled_worker_leaves_no_child_or_forkserver_behind_and_its_tasks_return_through_the_lease(
    worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    first = worker("--concurrency", "2", "--lease", "1s", label="killed worker")
    ids = [tq.enqueue("nap_first", {"seconds": 60}) for _ in range(2)]
    until(lambda: all(pids(raw, namespace, i) for i in ids), 10, logs=[first], what="both tasks started")
    children = [pids(raw, namespace, i)[0] for i in ids]
    family = [p for p in group_members(first.pid) if p != first.pid]
    assert set(children) <= set(family), describe(family)
    forkservers = [p for p in family if "forkserver" in cmdline(p)]
    assert forkservers, f"no forkserver among the worker's processes:\n{describe(family)}"

    first.popen.kill()
    assert first.wait(5) == -signal.SIGKILL
    until(
        lambda: not group_members(first.pid), 3, logs=[first], what="every process of the killed worker gone"
    )
    assert not any(alive(p) for p in children + forkservers)

    second = worker("--concurrency", "2", "--lease", "1s", label="second worker")
    for task_id in ids:
        until(in_state(tq, task_id, "done"), 12, logs=[second], what=f"{task_id} recovered and done")
        info = task(tq, task_id)
        assert info["attempts"] == 2, info
        second_pid = pids(raw, namespace, task_id)[-1]
        assert pgid_of(second_pid) in (None, second.pid)  # run by the second worker


# -- graceful drain ---------------------------------------------------------------------------------


def test_sigterm_lets_a_running_task_finish_within_grace_fetches_nothing_new_and_exits_0(
    worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    proc = worker("--concurrency", "2", "--grace", "5s")
    running = tq.enqueue("nap", {"seconds": 1.0})
    until(lambda: runs(raw, namespace, running), 10, logs=[proc], what="the task started")

    proc.send(signal.SIGTERM)
    until(lambda: "stopping" in proc.stderr, 3, logs=[proc], what="the stop was logged")
    late = tq.enqueue("pid", {})  # a free slot, but the worker is stopping

    assert proc.wait(6) == 0, logs(proc)
    info = task(tq, running)
    assert info["state"] == "done" and info["attempts"] == 1, info
    assert [t.split(",")[-1] for t in tags(raw, namespace, running)] == ["start", "end"]
    late_info = task(tq, late)
    assert late_info["state"] == "pending" and late_info["attempts"] == 0, late_info
    assert not runs(raw, namespace, late)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_task_still_running_when_grace_runs_out_is_stopped_and_pending_again_with_no_attempt_used(
    sig: signal.Signals, worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    proc = worker("--concurrency", "1", "--grace", "1s", "--lease", "30s")
    long = tq.enqueue("nap", {"seconds": 30})
    until(lambda: pids(raw, namespace, long), 10, logs=[proc], what="the task started")
    (child,) = pids(raw, namespace, long)

    began = time.monotonic()
    proc.send(sig)
    assert proc.wait(4) == 0, logs(proc)
    took = time.monotonic() - began
    assert 0.9 <= took <= 3, (took, logs(proc))  # it had its grace, and no more than that

    info = task(tq, long)  # back at once, not through the 30 s lease
    assert info["state"] == "pending" and info["attempts"] == 0, info
    assert raw.lrange(f"{namespace}:{{default}}:pending", 0, -1) == [long]
    assert raw.zcard(f"{namespace}:{{default}}:active") == 0
    assert tags(raw, namespace, long) == [f"pid={child},start"]  # stopped, not finished
    until(lambda: not alive(child), 2, logs=[proc], what="the child running it gone")


@pytest.mark.soak
def test_a_second_sigint_stops_at_once_with_exit_1_and_the_task_comes_back_through_its_lease(
    worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    proc = worker("--concurrency", "1", "--grace", "30s", "--lease", "1s", label="stopped worker")
    long = tq.enqueue("nap_first", {"seconds": 60})
    until(lambda: pids(raw, namespace, long), 10, logs=[proc], what="the task started")
    (child,) = pids(raw, namespace, long)

    proc.send(signal.SIGINT)
    until(lambda: "stopping" in proc.stderr, 3, logs=[proc], what="the first stop was logged")
    began = time.monotonic()
    proc.send(signal.SIGINT)
    assert proc.wait(3) == 1, logs(proc)
    assert time.monotonic() - began < 1.5
    until(lambda: not group_members(proc.pid), 3, logs=[proc], what="no child left behind")
    assert not alive(child)

    rescuer = worker("--concurrency", "1", "--lease", "1s", label="rescuer")
    until(in_state(tq, long, "done"), 12, logs=[proc, rescuer], what="the task recovered and done")
    info = task(tq, long)
    assert info["attempts"] == 2, info  # the interrupted attempt counted, like a crash


# -- pools ------------------------------------------------------------------------------------------


def test_async_handlers_run_concurrently_on_one_event_loop_under_the_asyncio_pool(
    worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    proc = worker("--pool", "asyncio", "--concurrency", "10")
    until(lambda: registered(raw, namespace, proc), 10, logs=[proc], what="worker up")
    ids = tq.enqueue_many([("async_nap", {"seconds": 0.5})] * 10)

    until(lambda: all(state(tq, i) == "done" for i in ids), 5, logs=[proc], what="all 10 done")
    infos = [task(tq, i) for i in ids]
    span = (max(i["finished_at"] for i in infos) - min(i["started_at"] for i in infos)) / 1000
    assert span < 2.0, span  # 10 x 0.5 s one after the other would take 5 s
    starts = [t for _, _, t in runs(raw, namespace) if t.endswith("start") or "start," in t]
    assert len(starts) == 10
    assert {pid_of(t) for t in starts} == {proc.pid}  # all in the worker process itself
    assert len({t.split("thread=")[1] for t in starts}) == 1  # on one event loop thread
    assert all(i["result"] == proc.pid for i in infos)


def test_the_thread_pool_runs_sync_handlers_concurrently_in_the_worker_process(
    worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    proc = worker("--pool", "threads", "--concurrency", "4")
    until(lambda: registered(raw, namespace, proc), 10, logs=[proc], what="worker up")
    ids = tq.enqueue_many([("nap", {"seconds": 0.5})] * 4)

    until(lambda: all(state(tq, i) == "done" for i in ids), 5, logs=[proc], what="all 4 done")
    infos = [task(tq, i) for i in ids]
    span = (max(i["finished_at"] for i in infos) - min(i["started_at"] for i in infos)) / 1000
    assert span < 1.5, span
    assert {p for i in ids for p in pids(raw, namespace, i)} == {proc.pid}
    assert not [p for p in group_members(proc.pid) if p != proc.pid], "threads need no child process"


def test_max_tasks_per_child_replaces_each_child_after_that_many_tasks_without_failing_any(
    worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    proc = worker("--concurrency", "1", "--max-tasks-per-child", "2")
    ids = tq.enqueue_many([("pid", {})] * 6)

    until(lambda: all(state(tq, i) == "done" for i in ids), 10, logs=[proc], what="all 6 done")
    order = [pid_of(t) for _, _, t in runs(raw, namespace)]
    assert len(order) == 6, order
    a, b, c = order[0], order[2], order[4]
    assert order == [a, a, b, b, c, c] and len({a, b, c}) == 3, order
    assert all(task(tq, i)["attempts"] == 1 for i in ids)
    until(lambda: not alive(a) and not alive(b), 2, logs=[proc], what="retired children gone")
    assert "recycling child" in proc.stderr


def test_max_memory_per_child_replaces_a_child_that_grew_past_the_limit_after_its_task(
    worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    proc = worker("--concurrency", "1", "--max-memory-per-child", "80")
    ids = tq.enqueue_many(
        [("pid", {}), ("pid", {}), ("hog", {"mb": 100}), ("pid", {}), ("pid", {}), ("pid", {})]
    )

    until(lambda: all(state(tq, i) == "done" for i in ids), 10, logs=[proc], what="all done")
    order = [pid_of(t) for _, _, t in runs(raw, namespace)]
    first, second = order[0], order[3]
    assert order == [first] * 3 + [second] * 3 and first != second, order  # small tasks stay under
    assert task(tq, ids[2])["attempts"] == 1  # the hog itself succeeded
    until(lambda: not alive(first), 2, logs=[proc], what="the grown child gone")
    assert "max-memory-per-child" in proc.stderr


@pytest.mark.parametrize(
    ("name", "payload", "count", "may_hold"),
    [
        # Tasks of 50 ms or more: exactly one leased task per slot.
        pytest.param("nap", {"seconds": 0.2}, 24, 2, id="tasks-of-200ms"),
        # Tasks of a few ms: up to 16 more per slot may be fetched ahead, as many as start within
        # about 50 ms (docs/workers.md, "honest prefetch"); enough tasks that a hoarding worker would starve
        # the other.
        pytest.param("pid", {}, 200, 2 * (1 + MAX_AHEAD_PER_SLOT), id="tasks-of-a-few-ms"),
    ],
)
def test_a_worker_never_holds_more_leased_tasks_than_it_can_start_soon_so_an_idle_worker_takes_the_rest(
    name: str,
    payload: dict[str, Any],
    count: int,
    may_hold: int,
    worker: Start,
    tq: TaskQueue,
    raw: redis.Redis,
    namespace: str,
) -> None:
    one = worker("--concurrency", "2", label="worker one")
    two = worker("--concurrency", "2", label="worker two")
    until(lambda: registered(raw, namespace, one) and registered(raw, namespace, two), 10, logs=[one, two])
    ids = tq.enqueue_many([(name, payload)] * count)

    active_key, tasks_key = f"{namespace}:{{default}}:active", f"{namespace}:{{default}}:tasks"
    most: dict[str, int] = {}  # worker id -> most tasks it held at once
    most_active = 0
    deadline = time.monotonic() + 15
    for sample in itertools.count():  # as fast as Redis answers: over-holding may last a round trip
        held = raw.zrange(active_key, 0, -1)
        most_active = max(most_active, len(held))
        per_worker: dict[str, int] = {}
        for text in raw.hmget(tasks_key, held) if held else []:
            meta = json.loads(text) if text else {}
            if meta.get("state") == "active":
                per_worker[meta["worker"]] = per_worker.get(meta["worker"], 0) + 1
        for worker_id, held_now in per_worker.items():
            most[worker_id] = max(most.get(worker_id, 0), held_now)
        if sample % 20 == 0:
            metas = [json.loads(t) for t in raw.hmget(tasks_key, ids) if t]
            if len(metas) == len(ids) and all(m["state"] == "done" for m in metas):
                break
            assert time.monotonic() < deadline, logs(one, two)

    # (the sampler may miss a worker that held tasks only briefly; the done records below do not)
    assert all(held_most <= may_hold for held_most in most.values()), (most, "held per worker, concurrency 2")
    assert most_active <= 2 * may_hold, most_active
    assert len({m["worker"] for m in metas}) == 2  # the idle one took its share


def test_a_worker_whose_slots_are_all_taken_by_long_tasks_holds_no_short_ones_an_idle_worker_could_run(
    worker: Start, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    one = worker("--concurrency", "2", label="worker one")
    warm = tq.enqueue_many([("pid", {})] * 20)  # its recent tasks are short: it prefetches deeply
    until(lambda: all(state(tq, i) == "done" for i in warm), 15, logs=[one], what="warm-up done")
    # the naps outlast the test (its processes are killed after): however slow the machine, the short
    # tasks are all done while both of worker one's slots are still taken
    naps = tq.enqueue_many([("nap", {"seconds": 50})] * 2)
    until(lambda: all(state(tq, i) == "active" for i in naps), 5, logs=[one], what="both slots taken")
    two = worker("--concurrency", "2", label="worker two")
    until(lambda: registered(raw, namespace, two), 10, logs=[one, two], what="worker two serving")
    time.sleep(0.6)  # the naps are now held longer than a short task takes

    short = tq.enqueue_many([("pid", {})] * 30)
    until(lambda: all(state(tq, i) == "done" for i in short), 15, logs=[one, two], what="short tasks done")

    by = [task(tq, i)["worker"] for i in short]
    assert all(state(tq, i) == "active" for i in naps), logs(one, two)  # all ran while one was busy
    assert len(set(by)) == 1 and str(two.pid) in by[0], (by, logs(one, two))


# -- structured logs --------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_each_tasks_start_finish_and_failure(
    run_cli: Callable[..., subprocess.CompletedProcess[str]], tq: TaskQueue
) -> None:
    ok = tq.enqueue("pid", {})
    crash = tq.enqueue("exit_now", {}, max_retries=0)
    done = run_cli("worker", "--app", APP, "--burst", "--concurrency", "1", "--log-format", "json")
    assert done.returncode == 0, done.stderr

    entries = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert all(isinstance(e, dict) and {"ts", "level", "message"} <= e.keys() for e in entries)
    events = {(e.get("task_id"), e.get("event")): e for e in entries if "event" in e}
    for task_id, name in ((ok, "pid"), (crash, "exit_now")):
        started = events[(task_id, "started")]
        assert (started["task"], started["attempt"]) == (name, 1), started
    finished = events[(ok, "done")]
    assert (finished["task"], finished["attempt"]) == ("pid", 1), finished
    assert isinstance(finished["duration"], float) and 0 <= finished["duration"] < 5, finished
    failed = events[(crash, "failed")]
    assert (failed["task"], failed["attempt"], failed["error"]) == ("exit_now", 1, "WorkerProcessDied")
    assert isinstance(failed["duration"], float), failed
    assert failed["level"] in ("warning", "error")


def test_text_logs_name_each_tasks_id_name_attempt_and_duration(
    run_cli: Callable[..., subprocess.CompletedProcess[str]], tq: TaskQueue
) -> None:
    ok = tq.enqueue("pid", {})
    done = run_cli("worker", "--app", APP, "--burst", "--concurrency", "1")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if ok in line]
    assert any("pid" in line and "attempt 1" in line and "started" in line for line in lines), lines
    assert any("attempt 1" in line and "done in" in line for line in lines), lines
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


# -- the pools in process, without Redis ------------------------------------------------------------

local = TaskQueue(redis_url="redis://127.0.0.1:1/0", namespace="unused")


@local.task(name="double")
def double(value: int) -> int:
    return value * 2


@local.task(name="wait")
def wait(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@local.task(name="swallow")
def swallow() -> None:
    try:
        time.sleep(30)
    except BaseException:
        while True:
            pass


@local.task(name="die")
def die() -> None:
    os._exit(7)


@local.task(name="async_wait")
async def async_wait(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


class Meeting:
    """What the in-process pool tests' handlers meet on, so that "at once" and "aborted while it
    ran" are proved by events, not by timing them on a loaded machine. Each test sets its own."""

    threads = threading.Barrier(1)
    tasks: asyncio.Barrier | None = None
    started = threading.Event()
    release = threading.Event()
    ran_on: list[threading.Thread] = []


@local.task(name="meet")
def meet() -> str:
    """Returns once every handler of the meeting runs at the same time (it fails after 10 s)."""
    Meeting.threads.wait(timeout=10)
    return "met"


@local.task(name="async_meet")
async def async_meet() -> str:
    assert Meeting.tasks is not None
    await asyncio.wait_for(Meeting.tasks.wait(), 10)
    return "met"


@local.task(name="held")
def held() -> str:
    """Says it started, then runs until released."""
    Meeting.ran_on.append(threading.current_thread())
    Meeting.started.set()
    Meeting.release.wait(10)
    return "released"


@local.task(name="async_held")
async def async_held() -> str:
    Meeting.started.set()
    await asyncio.sleep(30)
    return "released"


def execution(name: str, payload: dict[str, Any], timeout: float | None = 10, task_id: str = "") -> Execution:
    # the lease token doubles as the id here: pools abort attempts by token
    return Execution(task_id or name, name, "default", 1, 0, json.dumps(payload), timeout, task_id or name)


class Collector:
    def __init__(self) -> None:
        self.outcomes: queue.Queue[tuple[Execution, Outcome]] = queue.Queue()

    def __call__(self, execution: Execution, outcome: Outcome) -> None:
        self.outcomes.put((execution, outcome))

    def next(self, timeout: float = 5) -> tuple[str, Outcome]:
        execution, outcome = self.outcomes.get(timeout=timeout)
        return execution.task_id, outcome

    def next_result(self, timeout: float = 5) -> tuple[str, OutcomeKind, str | None]:
        task_id, outcome = self.next(timeout)
        return task_id, outcome.kind, outcome.result_json

    def gather(self, count: int, timeout: float = 5) -> dict[str, Outcome]:
        deadline = time.monotonic() + timeout
        return dict(self.next(max(deadline - time.monotonic(), 0.01)) for _ in range(count))


def results(outcomes: dict[str, Outcome]) -> set[tuple[OutcomeKind, str | None]]:
    return {(o.kind, o.result_json) for o in outcomes.values()}


SUCCESS = OutcomeKind.SUCCESS


def test_the_process_pool_in_process_kills_a_hung_child_replaces_a_dead_one_and_closes_clean() -> None:
    pool = make_pool("processes", 1, local.registry, None)
    assert isinstance(pool, ProcessPool)
    got = Collector()
    pool.start(got)
    try:
        pool.submit(execution("double", {"value": 21}))
        assert got.next_result() == ("double", SUCCESS, "42")
        (first,) = pool.pids()

        began = time.monotonic()
        pool.submit(execution("swallow", {}, timeout=0.5))
        task_id, outcome = got.next(timeout=5)
        assert time.monotonic() - began <= 0.5 + KILL_AFTER + SLACK
        assert (task_id, outcome.kind) == ("swallow", OutcomeKind.ERROR)
        assert outcome.error is not None and outcome.error["type"] == "TaskTimeout", outcome
        until(lambda: pool.pids() and pool.pids() != [first], 3, what="the hung child replaced")
        assert not alive(first)

        (second,) = pool.pids()
        pool.submit(execution("die", {}))
        _, outcome = got.next()
        assert outcome.error is not None and outcome.error["type"] == "WorkerProcessDied", outcome
        assert "exited with code 7" in outcome.error["message"]

        pool.submit(execution("double", {"value": 1}))
        assert got.next_result() == ("double", SUCCESS, "2")
        assert pool.pids() != [second]
    finally:
        children = pool.pids()
        pool.close()
    assert not any(alive(p) for p in children)
    assert got.outcomes.empty()


def test_the_thread_pool_in_process_runs_tasks_at_once_and_drops_aborted_outcomes() -> None:
    pool = make_pool("threads", 3, local.registry, None)
    got = Collector()
    pool.start(got)
    Meeting.threads = threading.Barrier(3)  # at once: one after the other, none would return
    for n in range(3):
        pool.submit(execution("meet", {}, task_id=f"t{n}"))
    assert results(got.gather(3, timeout=15)) == {(SUCCESS, '"met"')}

    Meeting.started.clear()
    Meeting.release.clear()
    Meeting.ran_on.clear()
    pool.submit(execution("held", {}, task_id="aborted"))
    assert Meeting.started.wait(10)
    pool.abort(["aborted"])
    Meeting.release.set()
    [thread] = Meeting.ran_on
    thread.join(10)  # its handler returned and the pool was done with its outcome
    assert not thread.is_alive()
    assert got.outcomes.empty()
    pool.close()


def test_the_asyncio_pool_in_process_runs_many_async_handlers_at_once_and_cancels_aborted_ones() -> None:
    pool = make_pool("asyncio", 10, local.registry, None)
    assert isinstance(pool, AsyncPool)
    got = Collector()
    pool.start(got)
    try:
        Meeting.tasks = asyncio.Barrier(10)  # at once: one after the other, none would return
        for n in range(10):
            pool.submit(execution("async_meet", {}, task_id=f"a{n}"))
        assert results(got.gather(10, timeout=15)) == {(SUCCESS, '"met"')}

        Meeting.started.clear()
        pool.submit(execution("async_held", {}, task_id="aborted"))
        assert Meeting.started.wait(10)
        pool.abort(["aborted"])  # returns once the cancellation is on the loop
        # the loop runs callbacks in order: once a task submitted after the abort is reported, the
        # aborted one has had its cancellation, and it reported nothing
        pool.submit(execution("double", {"value": 2}, task_id="after"))
        assert got.next_result() == ("after", SUCCESS, "4")
        assert got.outcomes.empty()
    finally:
        close_async_pool(pool)


def close_async_pool(pool: AsyncPool) -> bool:
    """Close the pool; True when that released its event loop (closed here otherwise, so that its
    sockets do not leak into the rest of the session)."""
    pool.close()
    loop = pool._loop
    released = loop.is_closed()
    if not released and not loop.is_running():
        loop.close()
    return released


def test_closing_the_asyncio_pool_releases_its_event_loop() -> None:
    """Pool.close: "release everything". An event loop left open keeps its self-pipe sockets."""
    pool = make_pool("asyncio", 10, local.registry, None)
    assert isinstance(pool, AsyncPool)
    got = Collector()
    pool.start(got)
    pool.submit(execution("async_wait", {"seconds": 0.01}))
    assert got.next_result() == ("async_wait", SUCCESS, "0.01")
    assert close_async_pool(pool), "AsyncPool.close() stopped its event loop but left it open"
