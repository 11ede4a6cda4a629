"""The process pool driven directly, in process, without Redis: children that hold executions queued
behind the one they run, and return outcomes in batches. What a child held but had not started must
run elsewhere when it crashes, is hard-killed, retires or has an execution aborted; what it finished
must be reported even if it dies before telling; every execution gets exactly one outcome.

The pool queues executions in a busy child only when it expects them to start soon (tiny tasks); the
tests widen that budget (PACK_BUDGET) so that a child holds several executions whatever the machine's
speed, and check that it did before the interesting part happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskq_cli import TaskQueue, prefork
from taskq_cli.models import Outcome, OutcomeKind
from taskq_cli.prefork import KILL_AFTER, ProcessPool, placement
from taskq_cli.prefork import child as child_side
from taskq_cli.runner import Execution
from tests.support import until

SLACK = 1.0  # seconds allowed on top of a deadline on a loaded machine

app = TaskQueue(redis_url="redis://127.0.0.1:1/0", namespace="unused")


_hoard: list[bytes] = []


@app.task(name="step")
def step(
    action: str = "ok", seconds: float = 0.0, mark: str = "", mb: int = 0, pad: str = "", size: int = 0
) -> Any:
    """Returns the pid that ran it (with `size` characters of padding: [pid, padding]); `mark`
    names a file created when it starts."""
    if mark:
        Path(mark).touch()
    _hoard.append(b"\x01" * (mb << 20))  # resident: every page written
    if action == "sleep":
        time.sleep(seconds)
    elif action == "die":
        time.sleep(seconds)
        os._exit(3)
    elif action == "fail":
        raise ValueError("failed on purpose" + "!" * size)
    elif action == "hang":  # past SIGALRM too: only the hard kill stops it
        while True:
            with contextlib.suppress(BaseException):
                time.sleep(30)
    return [os.getpid(), "x" * size] if size else os.getpid()


_ids = iter(range(10**9))


def execution(action: str = "ok", *, timeout: float | None = 30, **payload: Any) -> Execution:
    n = next(_ids)
    body = json.dumps({"action": action, **payload})
    return Execution(f"t{n}", "step", "default", 1, 0, body, timeout, f"token-{n}")


class Collector:
    def __init__(self) -> None:
        self.outcomes: queue.Queue[tuple[Execution, Outcome]] = queue.Queue()

    def __call__(self, execution: Execution, outcome: Outcome) -> None:
        self.outcomes.put((execution, outcome))

    def gather(self, count: int, timeout: float = 10) -> dict[str, Outcome]:
        """Exactly `count` outcomes, keyed by task id (a second outcome for one id fails)."""
        deadline = time.monotonic() + timeout
        got: dict[str, Outcome] = {}
        for _ in range(count):
            execution, outcome = self.outcomes.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert execution.task_id not in got, f"two outcomes for {execution.task_id}"
            got[execution.task_id] = outcome
        return got

    def nothing_more(self, pool: ProcessPool) -> None:
        """No outcome beyond those gathered. Not proved by sleeping: a probe submitted now must come
        back first. The supervisor is one thread that delivers every outcome in the order its
        children's pipes and exit sentinels became ready, and everything a test waited for has
        happened before the probe is even sent."""
        probe = execution()
        pool.submit(probe)
        first, _ = self.outcomes.get(timeout=10)
        assert first.task_id == probe.task_id, f"an outcome for {first.task_id} came after the test"
        assert self.outcomes.empty(), self.outcomes.get_nowait()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def pid_of(outcome: Outcome) -> int:
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    assert outcome.result_json is not None
    return int(outcome.result_json)


def error_type(outcome: Outcome) -> str:
    assert outcome.error is not None, outcome
    return outcome.error["type"]


def error_message(outcome: Outcome) -> str:
    assert outcome.error is not None, outcome
    return outcome.error["message"]


@contextlib.contextmanager
def running_pool(
    size: int, flush_after: float | None = None, **options: Any
) -> Iterator[tuple[ProcessPool, Collector]]:
    """A started pool whose children queue several executions (and, with `flush_after`, hold their
    outcomes back that long); closed, with no child left, after."""
    saved = placement.PACK_BUDGET, child_side.FLUSH_AFTER
    placement.PACK_BUDGET = 60.0
    child_side.FLUSH_AFTER = flush_after or child_side.FLUSH_AFTER  # children are forked with it
    pool = ProcessPool(size, app.registry, None, **options)
    got = Collector()
    pool.start(got)
    seen: set[int] = set()
    try:
        pool.submit(execution())  # teaches the pool that `step` is a tiny task
        got.gather(1)
        yield pool, got
    finally:
        seen.update(pool.pids())
        pool.close()
        placement.PACK_BUDGET, child_side.FLUSH_AFTER = saved
    assert not [pid for pid in seen if alive(pid)], "children outlived the pool"


def submit_to_one_child(pool: ProcessPool, executions: list[Execution]) -> int:
    """Submit them; they all land in one child (the first runs, the rest wait in it): its pid. They
    are placed in one hold of the pool's lock, as submits with no outcome in between would be: on a
    busy machine a tiny first task could otherwise finish before the next one is submitted."""
    with pool._lock:
        pool._backlog.extend(executions)
        pool._assign()
        holders = [c for c in pool._children if c.held]
        assert len(holders) == 1 and list(holders[0].held) == executions, "not queued in one child"
        pid = holders[0].process.pid
    assert pid is not None
    return pid


def test_a_crash_fails_only_the_running_execution_and_the_ones_queued_behind_it_run_elsewhere() -> None:
    with running_pool(2) as (pool, got):
        crash = execution("die", seconds=0.3)
        behind = [execution() for _ in range(3)]
        dead = submit_to_one_child(pool, [crash, *behind])

        outcomes = got.gather(4)
        assert error_type(outcomes[crash.task_id]) == "WorkerProcessDied"
        assert "exited with code 3" in error_message(outcomes[crash.task_id])
        assert all(pid_of(outcomes[e.task_id]) != dead for e in behind)
        assert not alive(dead)
        got.nothing_more(pool)


def test_an_outcome_finished_but_not_yet_sent_survives_the_crash_of_its_child_in_the_next_task() -> None:
    with running_pool(2, flush_after=60) as (pool, got):
        first, crash, last = execution(), execution("die", seconds=0.3), execution()
        dead = submit_to_one_child(pool, [first, crash, last])

        outcomes = got.gather(3)
        assert pid_of(outcomes[first.task_id]) == dead  # it ran there, and was reported after the crash
        assert error_type(outcomes[crash.task_id]) == "WorkerProcessDied"
        assert pid_of(outcomes[last.task_id]) != dead
        got.nothing_more(pool)


def test_a_hard_timeout_kills_only_the_task_past_it_and_the_ones_queued_behind_it_run_elsewhere() -> None:
    with running_pool(2) as (pool, got):
        before, hung, behind = execution(), execution("hang", timeout=0.3), [execution() for _ in range(2)]
        began = time.monotonic()
        hung_pid = submit_to_one_child(pool, [before, hung, *behind])

        outcomes = got.gather(4, timeout=0.3 + KILL_AFTER + SLACK + 5)
        assert time.monotonic() - began <= 0.3 + KILL_AFTER + SLACK
        assert pid_of(outcomes[before.task_id]) == hung_pid
        timed_out = outcomes[hung.task_id]
        assert error_type(timed_out) == "TaskTimeout" and "killed" in error_message(timed_out)
        assert all(pid_of(outcomes[e.task_id]) != hung_pid for e in behind)
        assert not alive(hung_pid)
        got.nothing_more(pool)


def test_an_aborted_execution_queued_in_a_child_never_runs_and_the_child_lives_on(tmp_path: Path) -> None:
    with running_pool(1) as (pool, got):
        marks = [tmp_path / "aborted", tmp_path / "kept"]
        running = execution("sleep", seconds=0.4)
        aborted, kept = (execution(mark=str(mark)) for mark in marks)
        pid = submit_to_one_child(pool, [running, aborted, kept])
        pool.abort([aborted.token])

        outcomes = got.gather(2)
        assert set(outcomes) == {running.task_id, kept.task_id}
        assert pid_of(outcomes[running.task_id]) == pid_of(outcomes[kept.task_id]) == pid
        assert marks[1].exists() and not marks[0].exists()
        assert pool.pids() == [pid]
        got.nothing_more(pool)


def test_aborting_the_running_execution_kills_its_child_and_the_ones_queued_behind_it_run_elsewhere(
    tmp_path: Path,
) -> None:
    with running_pool(1) as (pool, got):
        begun = tmp_path / "begun"
        running, behind = execution("sleep", seconds=30, mark=str(begun)), execution()
        pid = submit_to_one_child(pool, [running, behind])
        until(begun.exists, 10, what="the running execution has begun")
        began = time.monotonic()
        pool.abort([running.token])

        outcomes = got.gather(1)
        assert time.monotonic() - began < 1 + SLACK
        assert pid_of(outcomes[behind.task_id]) != pid
        assert not alive(pid)
        got.nothing_more(pool)


def test_max_tasks_per_child_recycles_each_child_after_exactly_that_many_tasks_with_several_queued() -> None:
    with running_pool(1, max_tasks_per_child=3) as (pool, got):
        (first_child,) = pool.pids()  # it ran the warm-up task: 2 more to go
        batch = [execution() for _ in range(8)]
        for e in batch:
            pool.submit(e)
        with pool._lock:
            assert len(pool._children[0].held) == 2  # queued, and no more than it may run

        outcomes = got.gather(8)
        order = [pid_of(outcomes[e.task_id]) for e in batch]
        second, third = order[2], order[5]
        assert order == [first_child] * 2 + [second] * 3 + [third] * 3, order
        assert len({first_child, second, third}) == 3
        with contextlib.suppress(AssertionError):
            until(lambda: not alive(first_child) and not alive(second), 3)
        assert not alive(first_child) and not alive(second)
        got.nothing_more(pool)


def test_soft_timeouts_stop_each_task_at_its_own_deadline_when_tasks_run_back_to_back() -> None:
    """A child sets its SIGALRM timer only when it would go off too late: one left over from an
    earlier task must neither stop a later one early nor let a shorter timeout pass."""
    with running_pool(1) as (pool, got):
        batch = [
            execution(timeout=600),
            execution("sleep", seconds=2, timeout=0.2),  # the timer of the one before goes off too late
            execution(timeout=0.1),
            execution("sleep", seconds=0.3, timeout=30),  # the timer of the one before goes off early
        ]
        pid = submit_to_one_child(pool, batch)

        outcomes = got.gather(4)
        assert pid_of(outcomes[batch[0].task_id]) == pid
        stopped = outcomes[batch[1].task_id]
        assert error_type(stopped) == "TaskTimeout" and "killed" not in error_message(stopped)
        assert pid_of(outcomes[batch[2].task_id]) == pid_of(outcomes[batch[3].task_id]) == pid
        got.nothing_more(pool)


def test_a_child_retiring_for_memory_hands_the_executions_queued_behind_to_its_replacement() -> None:
    rss = prefork.resident_memory_mb()
    assert rss is not None
    with running_pool(1, max_memory_per_child=int(rss) + 40) as (pool, got):
        hog, behind = execution(mb=80), [execution() for _ in range(2)]
        retired = submit_to_one_child(pool, [hog, *behind])

        outcomes = got.gather(3)
        assert pid_of(outcomes[hog.task_id]) == retired
        assert all(pid_of(outcomes[e.task_id]) != retired for e in behind)
        got.nothing_more(pool)


def test_large_payloads_and_outcomes_travel_whole_between_small_ones() -> None:
    """A large payload waits for an idle child (a busy child's pipe stays small); an outcome too
    large for the outcome pipe goes inline, in its place among the others."""
    with running_pool(2) as (pool, got):
        big = 300_000
        batch = [
            execution(),
            execution(pad="p" * big),
            execution(size=big),
            execution("fail", size=big),
            execution(size=100),
            *[execution(size=6000) for _ in range(5)],  # together more than the pipe's share
            execution(),
        ]
        for e in batch:
            pool.submit(e)

        outcomes = got.gather(len(batch))
        assert [o.kind for o in outcomes.values()].count(OutcomeKind.SUCCESS) == len(batch) - 1
        pid, padding = json.loads(outcomes[batch[2].task_id].result_json or "null")
        assert padding == "x" * big and pid in pool.pids()
        assert error_message(outcomes[batch[3].task_id]) == "failed on purpose" + "!" * big
        for e, size in zip(batch[4:10], [100] + [6000] * 5, strict=True):
            assert json.loads(outcomes[e.task_id].result_json or "null")[1] == "x" * size
        got.nothing_more(pool)


ACTIONS = ["ok", "ok", "ok", "fail", "die", "sleep"]
EXPECTED = {"ok": "success", "sleep": "success", "fail": "ValueError", "die": "WorkerProcessDied"}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(1, 3),
    actions=st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=25),
    hang=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_under_a_random_mix_every_execution_gets_exactly_one_outcome_or_none_once_aborted(
    size: int, actions: list[str], hang: bool, seed: int
) -> None:
    rnd = random.Random(seed)
    batch = [execution(a, seconds=rnd.choice([0, 0.01, 0.05])) for a in actions]
    if hang:  # one task past its timeout: a hard kill with executions queued
        batch.insert(rnd.randrange(len(batch) + 1), execution("hang", timeout=0.2))
    aborted = {e.token for e in rnd.sample(batch, rnd.randrange(len(batch) // 3 + 1))}
    with running_pool(size) as (pool, got):
        for index, e in enumerate(batch):
            pool.submit(e)
            if aborted and index == len(batch) // 2:
                pool.abort(aborted)  # some queued, some running, some done, some not submitted yet
        if aborted:
            pool.abort(aborted)

        kept = [e for e in batch if e.token not in aborted]
        outcomes = got.gather(len(kept), timeout=30)
        late: dict[str, Outcome] = {}
        with contextlib.suppress(queue.Empty):  # aborted ones may have ended before their abort
            while True:
                execution_, outcome = got.outcomes.get(timeout=0.5)
                assert execution_.token in aborted, f"an outcome nobody expects: {execution_}"
                assert execution_.task_id not in outcomes and execution_.task_id not in late
                late[execution_.task_id] = outcome
        for e in kept:
            action = json.loads(e.payload_json)["action"]
            outcome = outcomes[e.task_id]
            got_kind = "success" if outcome.kind is OutcomeKind.SUCCESS else error_type(outcome)
            assert got_kind == EXPECTED.get(action, "TaskTimeout"), (action, outcome)


@pytest.fixture(autouse=True)
def _no_setting_leaks() -> Iterator[None]:
    saved = placement.PACK_BUDGET, child_side.FLUSH_AFTER
    yield
    assert saved == (placement.PACK_BUDGET, child_side.FLUSH_AFTER)


def test_a_child_that_cannot_be_replaced_leaves_the_supervisor_alive_it_tries_again_and_serves_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with running_pool(1) as (pool, got):
        # Given the next spawn fails as it did when the fork server was gone (BrokenPipeError)
        real_spawn, failures = pool._spawn, [BrokenPipeError(32, "Broken pipe")]

        def spawn(ctx: Any = None) -> Any:
            if failures:
                raise failures.pop()
            return real_spawn(ctx)

        monkeypatch.setattr(pool, "_spawn", spawn)
        # When its only child dies under a task
        dying = execution("die")
        pool.submit(dying)
        assert error_type(got.gather(1)[dying.task_id]) == "WorkerProcessDied"
        # Then the supervisor says so, replaces the child a moment later, and the next task runs
        after = execution()
        pool.submit(after)
        pid_of(got.gather(1, timeout=5)[after.task_id])
        assert not failures
        assert any("could not start a child process" in r.getMessage() for r in caplog.records)


def test_a_child_replaced_while_the_pool_closes_is_stopped_with_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = ProcessPool(1, app.registry, None)
    got = Collector()
    pool.start(got)
    real_spawn = pool._spawn
    spawning = threading.Event()

    def slow_spawn(ctx: Any = None) -> Any:  # the close begins while a replacement is being spawned
        spawning.set()
        assert pool._closing.wait(10), "the pool was not closed"
        return real_spawn(ctx)

    monkeypatch.setattr(pool, "_spawn", slow_spawn)
    dying = execution("die")
    pool.submit(dying)
    assert spawning.wait(10)
    pool.close()
    children = pool.pids()
    assert children, "the replacement was not kept"
    assert not [pid for pid in children if alive(pid)], "a replacement outlived the pool"
