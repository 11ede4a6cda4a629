"""End-to-end tests of `taskq worker` and `taskq scheduler` as real processes on a real Redis.

Tasks are enqueued through the CLI, run by worker processes started from the CLI, and checked in
Redis. The handlers (tests/apps/basic.py, tests/apps/crashy.py) record every execution as
`task_id:attempt[:tag]` in the list `<ns>:test:runs`. Every wait is bounded, and every assertion
message carries the stderr of the processes involved.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from tests.support import Proc, Procs, counters, nskeys, qkeys, record, state_of, until, worker_ids

BASIC = "tests.apps.basic"
CRASHY = "tests.apps.crashy"
UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused at once

RunCli = Callable[..., subprocess.CompletedProcess[str]]
Start = Callable[..., Proc]


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def start(procs: Procs) -> Callable[..., Proc]:
    """Start `taskq ARGS` in the background as a Proc. At teardown the whole process group is
    killed, so no child a worker may have left behind outlives the test."""

    def run(label: str, *args: str) -> Proc:
        return procs.start(*args, label=label)

    return run


def logs(*procs: Proc) -> str:
    return "\n".join(p.report() for p in procs)


def cli(run_cli: RunCli, *args: str, input: str | None = None) -> str:
    """Run a CLI command that must succeed; its stdout."""
    done = run_cli(*args, input=input)
    assert done.returncode == 0, f"taskq {' '.join(args)} -> {done.returncode}\n{done.stderr}"
    return done.stdout


def enqueue(run_cli: RunCli, *args: str) -> str:
    return cli(run_cli, "enqueue", *args).strip()


MARKER = "marker"  # a queue served after `default`, for tasks that show a worker has moved on


def moved_on(run_cli: RunCli, raw: redis.Redis, ns: str, procs: Sequence[Proc], *options: str) -> str:
    """Run one task on the MARKER queue (served after `default`) and wait until it is done: the
    worker has fetched again, so whatever `default` still held would have run first. Its id."""
    marker = enqueue(run_cli, "ok", '{"value": 0}', "--app", BASIC, "--queue", MARKER, *options)
    until(lambda: state_of(raw, ns, marker, MARKER) == "done", 10, logs=procs, what="a marker task done")
    return marker


def meta(raw: redis.Redis, ns: str, task_id: str, queue: str = "default") -> dict[str, Any]:
    return record(raw, ns, task_id, queue) or {}


def runs(raw: redis.Redis, ns: str) -> list[str]:
    return list(raw.lrange(f"{ns}:test:runs", 0, -1))


def error_type(task: dict[str, Any]) -> str | None:
    return (task.get("last_error") or {}).get("type")


def worker_id_of(raw: redis.Redis, ns: str, proc: Proc) -> str | None:
    """The id under which this process registered itself in `<ns>:workers`, if it did."""
    for worker_id in worker_ids(raw, ns):
        info = raw.get(nskeys(ns).worker(worker_id))
        if info and json.loads(info).get("pid") == proc.pid:
            return worker_id
    return None


def registered(raw: redis.Redis, ns: str, proc: Proc) -> bool:
    return worker_id_of(raw, ns, proc) is not None


def recovered(task: dict[str, Any], attempt: int) -> bool:
    """Attempt `attempt` has been taken back from its lost worker (retry scheduled, or dead)."""
    return task.get("attempts") == attempt and task.get("state") in ("scheduled", "pending", "dead")


def redis_failures(log: str) -> list[str]:
    """The log lines that report a failure to reach Redis."""
    words = ("unreachable", "cannot reach", "refused")
    return [line for line in log.splitlines() if any(w in line.lower() for w in words)]


def burst(run_cli: RunCli, *extra: str, app: str = BASIC) -> subprocess.CompletedProcess[str]:
    return run_cli("worker", "--app", app, "--burst", "--concurrency", "1", *extra, timeout=30)


# -- the happy path -----------------------------------------------------------------------------


def test_a_burst_worker_runs_an_enqueued_task_stores_its_result_and_exits_0(
    run_cli: RunCli, raw: redis.Redis, namespace: str
) -> None:
    task_id = enqueue(run_cli, "ok", '{"value": 7}', "--app", BASIC)
    assert state_of(raw, namespace, task_id) == "pending"

    done = burst(run_cli)

    assert done.returncode == 0, done.stderr
    assert runs(raw, namespace) == [f"{task_id}:1"], done.stderr
    shown = json.loads(cli(run_cli, "task", "show", task_id, "--json"))
    assert shown["state"] == "done", done.stderr
    assert shown["result"] == {"value": 7}
    assert shown["attempts"] == 1
    assert shown["payload"] == {"value": 7}
    assert shown["finished_at"].endswith("Z")
    stats = json.loads(cli(run_cli, "stats", "--json"))["queues"]["default"]
    assert stats["processed"] == 1, (stats, done.stderr)
    assert stats["failed"] == 0
    assert (stats["pending"], stats["active"], stats["scheduled"], stats["dead"]) == (0, 0, 0, 0)


def test_an_async_handler_runs_and_its_result_is_stored(
    run_cli: RunCli, raw: redis.Redis, namespace: str
) -> None:
    task_id = enqueue(run_cli, "async_ok", '{"value": 21}', "--app", BASIC)

    done = burst(run_cli)

    assert done.returncode == 0, done.stderr
    shown = json.loads(cli(run_cli, "task", "show", task_id, "--json"))
    assert (shown["state"], shown["result"]) == ("done", 42), done.stderr
    assert runs(raw, namespace) == [f"{task_id}:1"]


# -- failures and retries -----------------------------------------------------------------------


def test_a_failing_task_runs_max_retries_plus_one_times_then_is_dead_with_its_traceback(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    task_id = enqueue(run_cli, "boom", "--app", BASIC)  # max_retries=2
    worker = start("worker", "worker", "--app", BASIC, "--concurrency", "2", "--queues", f"default,{MARKER}")

    until(lambda: state_of(raw, namespace, task_id) == "dead", 10, logs=[worker], what="boom dead")
    moved_on(run_cli, raw, namespace, [worker])  # a fourth execution would come first

    mine = [r for r in runs(raw, namespace) if r.split(":")[0] == task_id]
    assert mine == [f"{task_id}:1", f"{task_id}:2", f"{task_id}:3"], worker.report()
    task = meta(raw, namespace, task_id)
    assert task["attempts"] == 3, worker.report()
    assert task["last_error"]["type"] == "RuntimeError"
    assert task["last_error"]["message"] == "boom"
    assert "Traceback" in task["last_error"]["traceback"]
    assert "RuntimeError: boom" in task["last_error"]["traceback"]
    assert raw.zscore(qkeys(namespace).dead, task_id) is not None
    assert counters(raw, namespace) == {"processed": 3, "failed": 3}, worker.report()


def test_retry_delays_follow_the_jittered_exponential_backoff_capped_at_backoff_max(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    # backoff_base 0.05 s, backoff_max 0.2 s, max_retries 4: d = 50, 100, 200, 200 (capped) ms.
    task_id = enqueue(run_cli, "backoff_probe", "--app", CRASHY)
    worker = start("worker", "worker", "--app", CRASHY, "--concurrency", "1")

    until(lambda: state_of(raw, namespace, task_id) == "dead", 10, logs=[worker], what="probe dead")

    entries = runs(raw, namespace)
    assert len(entries) == 5, (entries, worker.report())
    assert entries[0] == f"{task_id}:1"
    for retry, (entry, d) in enumerate(zip(entries[1:], (50, 100, 200, 200), strict=True), start=1):
        tid, attempt, tag = entry.split(":", 2)
        assert (tid, attempt) == (task_id, str(retry + 1)), entries
        fields = dict(part.split("=") for part in tag.split(","))
        delay, gap = int(fields["delay"]), int(fields["gap"])
        assert d // 2 - 1 <= delay <= d, f"retry {retry}: delay {delay} ms not in [{d / 2}, {d}]\n{entries}"
        assert gap >= delay, f"retry {retry}: ran {gap} ms after the failure, before its delay {delay}"
        # the worker that scheduled the retry plans its promote pass for the due time: not a second late
        assert gap <= delay + 400, f"retry {retry}: ran {gap - delay} ms late\n{worker.report()}"


def test_retry_with_an_explicit_delay_runs_again_after_that_delay_uncapped(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    # Two retries of 0.3 s each: above backoff_max (0.2 s), so a cap would show.
    task_id = enqueue(run_cli, "retry_later", '{"times": 2, "delay": 0.3}', "--app", BASIC)
    worker = start("worker", "worker", "--app", BASIC, "--concurrency", "1")

    until(lambda: state_of(raw, namespace, task_id) == "done", 10, logs=[worker], what="retry_later done")

    assert runs(raw, namespace) == [f"{task_id}:1", f"{task_id}:2", f"{task_id}:3"], worker.report()
    task = meta(raw, namespace, task_id)
    assert task["attempts"] == 3
    assert task["finished_at"] - task["enqueued_at"] >= 600, (task, worker.report())
    assert task["last_error"]["type"] == "Retry"
    assert json.loads(raw.hget(qkeys(namespace).results, task_id)) == "done on attempt 3"
    assert counters(raw, namespace) == {"processed": 3, "failed": 2}


def test_fail_sends_the_task_straight_to_the_dead_letter_queue_after_one_attempt(
    run_cli: RunCli, raw: redis.Redis, namespace: str
) -> None:
    task_id = enqueue(run_cli, "give_up", "--app", BASIC)

    done = burst(run_cli)

    assert done.returncode == 0, done.stderr
    task = meta(raw, namespace, task_id)
    assert task["state"] == "dead", done.stderr
    assert task["attempts"] == 1
    assert task["last_error"]["type"] == "Fail"
    assert task["last_error"]["message"] == "no point trying again"
    assert runs(raw, namespace) == [f"{task_id}:1"]


def test_a_payload_the_worker_cannot_validate_goes_dead_after_one_attempt_without_running(
    run_cli: RunCli, raw: redis.Redis, namespace: str
) -> None:
    # Without --app the producer cannot validate, so the worker is the first to see the bad payload.
    bad_type = enqueue(run_cli, "ok", '{"value": "seven"}')
    unknown_field = enqueue(run_cli, "ok", '{"nope": 1}')

    done = burst(run_cli)

    assert done.returncode == 0, done.stderr
    for task_id, field in ((bad_type, "value"), (unknown_field, "nope")):
        task = meta(raw, namespace, task_id)
        assert task["state"] == "dead", (task, done.stderr)
        assert task["attempts"] == 1
        assert task["last_error"]["type"] == "ValidationError"
        assert field in task["last_error"]["message"]
    assert runs(raw, namespace) == [], done.stderr


def test_a_task_no_worker_knows_is_retried_then_dead_as_unknown(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    task_id = enqueue(run_cli, "no_such_task", "--max-retries", "1")
    worker = start("worker", "worker", "--app", BASIC, "--concurrency", "1", "--queues", f"default,{MARKER}")

    until(lambda: state_of(raw, namespace, task_id) == "dead", 10, logs=[worker], what="unknown task dead")
    moved_on(run_cli, raw, namespace, [worker])  # a third attempt would come first

    task = meta(raw, namespace, task_id)
    assert task["attempts"] == 2, worker.report()
    assert task["last_error"]["type"] == "UnknownTask"
    assert "no_such_task" in task["last_error"]["message"]
    assert counters(raw, namespace) == {"processed": 2, "failed": 2}, worker.report()


def test_a_record_with_unreadable_options_runs_with_the_defaults_and_the_worker_keeps_serving(
    run_cli: RunCli, raw: redis.Redis, namespace: str
) -> None:
    odd = enqueue(run_cli, "ok", '{"value": 1}')
    record = meta(raw, namespace, odd)
    record.update(max_retries="many", timeout={"s": 1}, backoff_base=None)  # written by something else
    raw.hset(qkeys(namespace).tasks, odd, json.dumps(record))
    good = enqueue(run_cli, "ok", '{"value": 2}')

    done = burst(run_cli)

    assert done.returncode == 0, done.stderr
    assert state_of(raw, namespace, odd) == "done", done.stderr
    assert state_of(raw, namespace, good) == "done", done.stderr
    assert sorted(runs(raw, namespace)) == sorted([f"{odd}:1", f"{good}:1"])
    assert "unreadable options" in done.stderr


def test_a_malformed_message_goes_dead_as_raw_text_and_the_worker_serves_the_next_task(
    run_cli: RunCli, raw: redis.Redis, namespace: str
) -> None:
    raw.lpush(qkeys(namespace).pending, "not-a-task {garbage")
    good = enqueue(run_cli, "ok", '{"value": 1}', "--app", BASIC)  # behind the garbage

    done = burst(run_cli)

    assert done.returncode == 0, done.stderr
    assert state_of(raw, namespace, good) == "done", done.stderr
    assert runs(raw, namespace) == [f"{good}:1"]
    dead = raw.zrange(qkeys(namespace).dead, 0, -1)
    assert len(dead) == 1, (dead, done.stderr)
    shown = json.loads(cli(run_cli, "task", "show", dead[0], "--json"))
    assert shown["name"] == "<malformed>"
    assert shown["raw"] == "not-a-task {garbage"
    assert shown["queue"] == "default"
    assert shown["state"] == "dead"
    assert shown["last_error"]["type"] == "MalformedMessage"
    assert raw.llen(qkeys(namespace).pending) == 0


# -- time ---------------------------------------------------------------------------------------


def test_delayed_and_at_tasks_do_not_run_before_their_time_and_run_after_it(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    worker = start("worker", "worker", "--app", BASIC, "--concurrency", "2")
    until(lambda: registered(raw, namespace, worker), 10, logs=[worker], what="worker registered")

    at = (datetime.now(UTC) + timedelta(seconds=5.5)).isoformat(timespec="milliseconds")
    delayed = enqueue(run_cli, "ok", '{"value": 1}', "--app", BASIC, "--delay", "5s")
    timed = enqueue(run_cli, "ok", '{"value": 2}', "--app", BASIC, "--at", at)
    assert state_of(raw, namespace, delayed) == "scheduled"
    assert state_of(raw, namespace, timed) == "scheduled"

    # not before their time: each record's start (Redis's clock, as the run_at) is after its run_at
    until(lambda: len(runs(raw, namespace)) == 2, 8, logs=[worker], what="both delayed tasks ran")
    until(lambda: state_of(raw, namespace, timed) == "done", 2, logs=[worker], what="at task done")

    first, second = meta(raw, namespace, delayed), meta(raw, namespace, timed)
    assert first["run_at"] - first["enqueued_at"] == 5000, first
    assert first["started_at"] >= first["run_at"], first
    at_ms = int(datetime.fromisoformat(at).timestamp() * 1000)
    assert second["run_at"] == at_ms, second
    assert second["started_at"] >= at_ms, second
    assert sorted(runs(raw, namespace)) == sorted([f"{delayed}:1", f"{timed}:1"])


# -- crashes and stopping -----------------------------------------------------------------------


@pytest.mark.soak
def test_a_sigkilled_workers_task_is_left_alone_while_it_lives_then_recovered_by_another_worker(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    lease = 1.0
    first = start("worker A", "worker", "--app", CRASHY, "--lease", "1s", "--concurrency", "1")
    task_id = enqueue(run_cli, "sleep_first", '{"seconds": 30}', "--app", CRASHY)
    until(lambda: f"{task_id}:1:start" in runs(raw, namespace), 10, logs=[first], what="attempt 1 started")
    first_id = worker_id_of(raw, namespace, first)
    assert first_id is not None and meta(raw, namespace, task_id)["worker"] == first_id, first.report()

    # A live worker keeps its task, however long it runs past its lease, with a rival worker idle.
    second = start("worker B", "worker", "--app", CRASHY, "--lease", "1s", "--concurrency", "1")
    until(lambda: registered(raw, namespace, second), 10, logs=[first, second], what="worker B registered")
    # the lease deadline is the clock: renewed three leases on, the task was held past its lease all along
    active = qkeys(namespace).active
    deadline = float(raw.zscore(active, task_id) or 0)
    until(
        lambda: float(raw.zscore(active, task_id) or 0) >= deadline + 3 * lease * 1000,
        10,
        logs=[first, second],
        what="the lease renewed three leases on",
    )
    task = meta(raw, namespace, task_id)
    assert (task["state"], task["attempts"], error_type(task)) == ("active", 1, None), logs(first, second)

    first.send(signal.SIGKILL)
    assert first.wait(5) == -signal.SIGKILL

    took = until(
        lambda: error_type(meta(raw, namespace, task_id)) == "WorkerLost",
        lease + 5,
        logs=[second],
        what="the killed worker's task recovered within lease + 5 s",
    )
    assert took <= lease + 5
    until(lambda: state_of(raw, namespace, task_id) == "done", 5, logs=[second], what="attempt 2 done")

    task = meta(raw, namespace, task_id)
    assert task["attempts"] == 2, logs(first, second)
    assert error_type(task) == "WorkerLost"
    assert task["worker"] == worker_id_of(raw, namespace, second)
    assert json.loads(raw.hget(qkeys(namespace).results, task_id)) == 2
    assert runs(raw, namespace) == [f"{task_id}:1:start", f"{task_id}:2:start", f"{task_id}:2:end"]
    assert counters(raw, namespace) == {"processed": 2, "failed": 1}, logs(first, second)


@pytest.mark.soak
def test_a_task_that_kills_its_worker_every_time_ends_dead_instead_of_looping(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    task_id = enqueue(run_cli, "sleep", '{"seconds": 30}', "--app", BASIC, "--max-retries", "1")
    scheduler = start("scheduler", "scheduler")
    workers: list[Proc] = []
    for attempt in (1, 2):
        worker = start(f"worker {attempt}", "worker", "--app", BASIC, "--lease", "1s", "--concurrency", "1")
        workers.append(worker)
        until(
            lambda a=attempt: f"{task_id}:{a}:start" in runs(raw, namespace),
            10,
            logs=[scheduler, *workers],
            what=f"attempt {attempt} started",
        )
        worker.send(signal.SIGKILL)
        assert worker.wait(5) == -signal.SIGKILL
        until(
            lambda a=attempt: recovered(meta(raw, namespace, task_id), a),
            1 + 5,
            logs=[scheduler, *workers],
            what=f"attempt {attempt} recovered within lease + 5 s",
        )
        assert error_type(meta(raw, namespace, task_id)) == "WorkerLost", logs(scheduler, *workers)

    until(
        lambda: state_of(raw, namespace, task_id) == "dead", 5, logs=[scheduler], what="dead after 2 losses"
    )
    task = meta(raw, namespace, task_id)
    assert task["attempts"] == 2, (task, logs(scheduler, *workers))
    assert error_type(task) == "WorkerLost"
    assert runs(raw, namespace) == [f"{task_id}:1:start", f"{task_id}:2:start"]
    assert counters(raw, namespace) == {"processed": 2, "failed": 2}, logs(scheduler, *workers)


def test_sigterm_lets_an_in_flight_task_finish_within_grace_takes_no_new_one_and_exits_0(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    slow = enqueue(run_cli, "sleep", '{"seconds": 1}', "--app", BASIC)
    waiting = enqueue(run_cli, "ok", "--app", BASIC)
    worker = start("worker", "worker", "--app", BASIC, "--concurrency", "1", "--grace", "5s")
    until(lambda: f"{slow}:1:start" in runs(raw, namespace), 10, logs=[worker], what="sleep started")

    worker.send(signal.SIGTERM)
    stopped = time.monotonic()
    code = worker.wait(5)

    assert code == 0, worker.report()
    assert time.monotonic() - stopped < 5
    assert state_of(raw, namespace, slow) == "done", worker.report()
    assert runs(raw, namespace) == [f"{slow}:1:start", f"{slow}:1:end"], worker.report()
    left = meta(raw, namespace, waiting)
    assert (left["state"], left["attempts"]) == ("pending", 0), worker.report()


def test_sigterm_past_grace_puts_the_task_back_at_the_head_of_its_queue_without_using_an_attempt(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    slow = enqueue(run_cli, "sleep", '{"seconds": 30}', "--app", BASIC)
    behind = enqueue(run_cli, "ok", "--app", BASIC)
    worker = start("worker", "worker", "--app", BASIC, "--concurrency", "1", "--grace", "1s")
    until(lambda: f"{slow}:1:start" in runs(raw, namespace), 10, logs=[worker], what="sleep started")

    worker.send(signal.SIGTERM)
    stopped = time.monotonic()
    code = worker.wait(5)
    took = time.monotonic() - stopped

    assert code == 0, worker.report()
    assert 0.9 <= took <= 1 + 1.5, f"exited {took:.2f}s after SIGTERM with --grace 1s\n{worker.report()}"
    task = meta(raw, namespace, slow)
    assert (task["state"], task["attempts"]) == ("pending", 0), (task, worker.report())
    assert raw.zscore(qkeys(namespace).active, slow) is None
    assert raw.lrange(qkeys(namespace).pending, 0, -1) == [behind, slow]  # RPOP end = head
    assert state_of(raw, namespace, behind) == "pending"
    assert runs(raw, namespace) == [f"{slow}:1:start"]
    assert counters(raw, namespace).get("failed", 0) == 0


def test_a_second_sigint_stops_at_once_with_exit_1_and_the_task_returns_through_its_lease(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    lease = 1.0
    slow = enqueue(run_cli, "sleep", '{"seconds": 30}', "--app", BASIC)
    worker = start(
        "worker", "worker", "--app", BASIC, "--concurrency", "1", "--grace", "30s", "--lease", "1s"
    )
    until(lambda: f"{slow}:1:start" in runs(raw, namespace), 10, logs=[worker], what="sleep started")

    worker.send(signal.SIGINT)
    until(lambda: "stopping:" in worker.stderr, 5, logs=[worker], what="the first SIGINT handled")
    assert worker.popen.poll() is None, f"the first SIGINT must wait for the task\n{worker.report()}"
    worker.send(signal.SIGINT)  # at once: a second Ctrl-C is never taken for a repeated delivery
    stopped = time.monotonic()
    code = worker.wait(3)

    assert code == 1, worker.report()
    assert time.monotonic() - stopped < 2
    task = meta(raw, namespace, slow)
    assert (task["state"], task["attempts"]) == ("active", 1), (task, worker.report())

    scheduler = start("scheduler", "scheduler")
    until(
        lambda: state_of(raw, namespace, slow) in ("scheduled", "pending"),
        lease + 5,
        logs=[worker, scheduler],
        what="task back through its lease",
    )
    task = meta(raw, namespace, slow)
    assert error_type(task) == "WorkerLost", (task, scheduler.report())
    assert task["attempts"] == 1
    until(lambda: state_of(raw, namespace, slow) == "pending", 3, logs=[scheduler], what="retry promoted")


# -- several processes --------------------------------------------------------------------------


@pytest.mark.soak
def test_two_schedulers_and_a_worker_racing_over_200_delayed_tasks_run_each_exactly_once(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    schedulers = [start(f"scheduler {i}", "scheduler") for i in (1, 2)]
    worker = start("worker", "worker", "--app", BASIC, "--concurrency", "4", "--queues", f"default,{MARKER}")
    everyone = (*schedulers, worker)
    for s in schedulers:
        until(lambda s=s: "scheduler started" in s.stderr, 10, logs=everyone, what=f"{s.label} up")
    until(lambda: registered(raw, namespace, worker), 10, logs=everyone, what="worker registered")

    # Due times spread over one second, so the three processes keep promoting at the same moments.
    lines = "".join(
        json.dumps({"name": "ok", "payload": {"value": i}, "delay": round(1 + i * 0.005, 3)}) + "\n"
        for i in range(200)
    )
    ids = cli(run_cli, "enqueue", "--app", BASIC, "--file", "-", input=lines).split()
    assert len(set(ids)) == 200

    until(lambda: len(runs(raw, namespace)) >= 200, 15, logs=everyone, what="200 executions")
    until(lambda: counters(raw, namespace).get("processed") == 200, 5, logs=everyone, what="200 acks")
    # duplicates would land before a task due after every one of them has run
    after = moved_on(run_cli, raw, namespace, everyone, "--delay", "1s")

    executed = Counter(entry.split(":")[0] for entry in runs(raw, namespace) if not entry.startswith(after))
    twice = {tid: n for tid, n in executed.items() if n > 1}
    assert not twice, f"executed more than once: {twice}\n{logs(*everyone)}"
    assert set(executed) == set(ids)
    assert all(entry.endswith(":1") for entry in runs(raw, namespace) if not entry.startswith(after))
    assert counters(raw, namespace) == {"processed": 200}, logs(*everyone)
    assert raw.zcard(qkeys(namespace).scheduled) == 0
    assert raw.llen(qkeys(namespace).pending) == 0


@pytest.mark.parametrize("pool", ["processes", "threads"])
def test_strict_priority_runs_every_high_task_before_any_low_task(
    pool: str, run_cli: RunCli, raw: redis.Redis, namespace: str
) -> None:
    # enough tasks that the worker prefetches deeply (short tasks) while both queues hold some
    lines = "".join(
        json.dumps({"name": "ok", "payload": {"value": i}, "queue": "low" if i % 2 == 0 else "high"}) + "\n"
        for i in range(80)
    )
    ids = cli(run_cli, "enqueue", "--app", BASIC, "--file", "-", input=lines).split()
    low, high = set(ids[0::2]), set(ids[1::2])

    done = burst(run_cli, "--queues", "high,low", "--pool", pool)

    assert done.returncode == 0, done.stderr
    order = [entry.split(":")[0] for entry in runs(raw, namespace)]
    assert len(order) == 80, (order, done.stderr)
    assert set(order[:40]) == high, f"order {order}\nhigh {high}\n{done.stderr}"
    assert set(order[40:]) == low


def test_a_running_worker_is_registered_and_gone_after_a_clean_stop(
    run_cli: RunCli, start: Start, raw: redis.Redis, namespace: str
) -> None:
    worker = start("worker", "worker", "--app", BASIC, "--concurrency", "3", "--queues", "a,b")
    until(lambda: registered(raw, namespace, worker), 10, logs=[worker], what="worker registered")

    (worker_id,) = worker_ids(raw, namespace)
    assert raw.exists(nskeys(namespace).worker(worker_id)), worker.report()
    shown = json.loads(cli(run_cli, "stats", "--json"))["workers"]
    assert len(shown) == 1, (shown, worker.report())
    info = shown[0]
    assert (info["id"], info["pid"], info["queues"], info["concurrency"]) == (
        worker_id,
        worker.pid,
        ["a", "b"],
        3,
    )
    assert info["active"] == []
    assert info["heartbeat_at"].endswith("Z")

    worker.send(signal.SIGTERM)
    assert worker.wait(5) == 0, worker.report()
    assert worker_ids(raw, namespace) == []
    assert not raw.exists(nskeys(namespace).worker(worker_id))
    assert json.loads(cli(run_cli, "stats", "--json"))["workers"] == []


# -- Redis unreachable --------------------------------------------------------------------------


def test_a_burst_worker_exits_1_with_an_error_line_when_redis_is_unreachable(run_cli: RunCli) -> None:
    began = time.monotonic()
    done = run_cli("worker", "--app", BASIC, "--burst", "--redis-url", UNREACHABLE, timeout=30)

    assert done.returncode == 1, done.stderr
    assert redis_failures(done.stderr), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert time.monotonic() - began < 10


def test_a_worker_keeps_retrying_while_redis_is_unreachable_and_says_so_once(start: Start) -> None:
    worker = start("worker", "worker", "--app", BASIC, "--redis-url", UNREACHABLE)

    until(lambda: redis_failures(worker.stderr), 5, logs=[worker], what="the outage logged")
    # its loops retry with backoff, and the log reminds of the outage 5 s into it, not before
    took = until(lambda: len(redis_failures(worker.stderr)) >= 2, 8, logs=[worker], what="the first reminder")
    assert took >= 4, worker.report()
    assert worker.popen.poll() is None, worker.report()
    assert len(redis_failures(worker.stderr)) == 2, worker.report()
    assert "Traceback" not in worker.stderr, worker.report()

    worker.send(signal.SIGTERM)
    assert worker.wait(5) == 0, worker.report()
