"""`taskq task wait` and `taskq enqueue --wait` (SPEC "Results and the asyncio client"): every exit
code against a real Redis and a real worker process."""

from __future__ import annotations

import json

from taskq_cli import TaskQueue

CRASHY = "tests.apps.crashy"


def test_task_wait_prints_the_result_of_a_task_a_worker_did(tq: TaskQueue, run_cli, spawn):
    task_id = tq.enqueue("ok", {"value": 5})
    spawn("worker", "--app", CRASHY, "--concurrency", "1")
    done = run_cli("task", "wait", task_id, "--timeout", "30s")
    assert (done.returncode, json.loads(done.stdout), done.stderr) == (0, {"value": 5}, "")


def test_task_wait_json_prints_the_whole_task(tq: TaskQueue, run_cli, spawn):
    task_id = tq.enqueue("echo", {"text": "ab", "times": 2})
    spawn("worker", "--app", CRASHY, "--concurrency", "1")
    done = run_cli("task", "wait", task_id, "--json", "--queue", "default")
    task = json.loads(done.stdout)
    assert done.returncode == 0
    assert (task["id"], task["state"], task["result"]) == (task_id, "done", "abab")


def test_task_wait_of_a_dead_task_exits_3_with_its_last_error(tq: TaskQueue, run_cli, spawn):
    task_id = tq.enqueue("give_up")
    spawn("worker", "--app", CRASHY, "--concurrency", "1")
    dead = run_cli("task", "wait", task_id, "--timeout", "30s")
    assert dead.returncode == 3
    assert dead.stdout == ""
    assert dead.stderr.count("\n") == 1 and "Fail: no point trying again" in dead.stderr


def test_task_wait_exits_4_when_the_task_does_not_finish_in_time(tq: TaskQueue, run_cli):
    task_id = tq.enqueue("ok")
    late = run_cli("task", "wait", task_id, "--timeout", "0.3s")
    assert (late.returncode, late.stdout) == (4, "")
    assert "did not finish within" in late.stderr


def test_task_wait_of_an_unknown_id_exits_1_at_once(run_cli):
    unknown = run_cli("task", "wait", "no-such-id", timeout=10)
    assert unknown.returncode == 1
    assert "not found" in unknown.stderr


def test_task_wait_with_a_bad_timeout_is_bad_usage(tq: TaskQueue, run_cli):
    task_id = tq.enqueue("ok")
    bad = run_cli("task", "wait", task_id, "--timeout", "soon")
    assert bad.returncode == 2


def test_enqueue_wait_prints_the_result_and_the_id_on_stderr(run_cli, spawn, tq: TaskQueue):
    spawn("worker", "--app", CRASHY, "--concurrency", "1")
    done = run_cli("enqueue", "ok", '{"value": 3}', "--wait", "30s")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"value": 3}
    task_id = done.stderr.split()[-1]
    assert tq.get_task(task_id) is not None


def test_enqueue_wait_exit_codes_for_dead_and_timeout(run_cli, spawn):
    late = run_cli("enqueue", "ok", "--wait", "0.2s")
    assert late.returncode == 4
    spawn("worker", "--app", CRASHY, "--concurrency", "1")
    dead = run_cli("enqueue", "give_up", "--wait", "30s")
    assert dead.returncode == 3 and "Fail" in dead.stderr


def test_enqueue_wait_refuses_a_bad_duration_and_writes_nothing(run_cli, raw, namespace):
    bad = run_cli("enqueue", "ok", "--wait", "whenever")
    assert bad.returncode == 2
    assert raw.keys(f"{namespace}:*") == []
