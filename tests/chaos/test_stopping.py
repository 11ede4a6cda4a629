"""Stopping a worker the way `timeout`, systemd and a terminal do: one SIGTERM to the worker and one
to its whole process group (its pool's children, the fork server that spawns replacements, the resource
tracker), with real processes and a Redis of our own.

- One stop request delivered twice (`timeout` signals the process, then its group) is one request:
  the worker drains and exits 0; only a signal sent again later stops it at once.
- The fork server (with --app, replacements of children come from it) outlives a SIGTERM to the group:
  the children it spawned keep running their tasks through the grace period, and the pool never tries
  to spawn through a dead server (`BrokenPipeError` in `_spawn`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.apps.chaos import read_ledger
from tests.chaos.conftest import Lab
from tests.chaos.harness import APP, Member
from tests.support import ROOT, final_states, until

pytestmark = pytest.mark.chaos


def started(lab: Lab, task_id: str) -> bool:
    return any(e.task_id == task_id and e.kind == "start" for e in read_ledger(lab.fleet.ledger))


def state(lab: Lab, task_id: str) -> tuple[str, int]:
    return final_states(lab.client, lab.namespace, [task_id]).get(task_id, ("", 0))


def stops_cleanly(lab: Lab, worker: Member, task_id: str) -> None:
    code = worker.popen.wait(timeout=20)
    log = worker.log()
    assert code == 0, f"exit {code}\n{log}"
    assert state(lab, task_id) == ("done", 1), log
    for bad in ("Traceback", "Error in", "BrokenPipeError", "WorkerProcessDied", "second signal"):
        assert bad not in log, log


def test_a_sigterm_to_the_worker_then_to_its_group_is_one_stop_request_the_task_finishes_exit_0(
    lab: Lab,
) -> None:
    # Given a worker running a 2 s task
    [task_id] = lab.enqueue([("long", {"seconds": 2})])
    worker = lab.fleet.worker("w", concurrency=1, lease="5s")
    until(lambda: started(lab, task_id), 20, what="task started", logs=lab.fleet.logs)

    # When SIGTERM reaches the worker, and (as `timeout` sends it) its process group right after
    os.kill(worker.pid, signal.SIGTERM)
    until(
        lambda: "stopping: no new tasks" in worker.log(),
        5,
        what="the first signal handled",
        logs=lab.fleet.logs,
    )
    os.killpg(worker.pid, signal.SIGTERM)

    # Then that was one request: the task finishes within the grace and the worker exits 0
    stops_cleanly(lab, worker, task_id)


def test_a_sigterm_to_the_group_leaves_the_fork_server_and_the_children_it_spawned_running(
    lab: Lab,
) -> None:
    # Given a worker with --app whose child was replaced after one task: the replacement comes from
    # the fork server, and runs a 2 s task
    worker = lab.fleet.worker("w", concurrency=1, lease="5s", extra=["--max-tasks-per-child", "1"])
    [first] = lab.enqueue([("work", {"ms": 1})])
    until(lambda: state(lab, first)[0] == "done", 20, what="first task done", logs=lab.fleet.logs)
    until(lambda: "recycling child" in worker.log(), 5, what="child recycled", logs=lab.fleet.logs)
    [task_id] = lab.enqueue([("long", {"seconds": 2})])
    until(lambda: started(lab, task_id), 20, what="task started", logs=lab.fleet.logs)

    # When the whole process group gets SIGTERM (a service manager, `timeout`, `kill -TERM -pgid`)
    os.killpg(worker.pid, signal.SIGTERM)

    # Then the task runs to its end in the grace period and the worker exits 0, without a traceback
    stops_cleanly(lab, worker, task_id)


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout")
def test_timeout_around_a_worker_stops_it_cleanly_every_time(lab: Lab) -> None:
    # Given `timeout -s TERM 3 taskq worker` (with --app and recycled children), run a few times
    lab.fleet.ledger.mkdir(parents=True, exist_ok=True)
    for run in range(4):
        [task_id] = lab.enqueue([("long", {"seconds": 0.5})])
        cmd = ["timeout", "--preserve-status", "-s", "TERM", "3", sys.executable, "-m", "taskq_cli"]
        cmd += ["worker", "--app", APP, "--concurrency", "2", "--max-tasks-per-child", "1", "--grace", "5s"]
        done = subprocess.run(
            cmd, cwd=ROOT, env=lab.fleet.env(), capture_output=True, text=True, timeout=30, check=False
        )
        # Then each run exits 0 (the signal is one stop request) and ran its task once
        assert done.returncode == 0, f"run {run}: exit {done.returncode}\n{done.stderr}"
        assert "Traceback" not in done.stderr and "second signal" not in done.stderr, done.stderr
        assert state(lab, task_id) == ("done", 1), done.stderr
