"""Workers against Redis errors other than a lost connection (an ACL change: NOPERM; the same path
serves OOM, READONLY, MISCONF, BUSY) and against Redis going away, with real processes and a Redis of
our own: every loop survives and says when Redis answers again, a lease the worker cannot renew stops
the execution it covers before anyone else can run it, and an outage costs a few log lines, not five a
second.

The `long` handler writes a `tick` to the ledger every 50 ms, so each execution's events show when it
ran and when it stopped: two executions of one task that overlap in time show there."""

from __future__ import annotations

import itertools
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.apps.chaos import Event, read_ledger
from tests.chaos.conftest import Lab
from tests.chaos.harness import Member
from tests.support import ROOT, final_states, until

pytestmark = pytest.mark.chaos

# A worker's user: its namespace's keys and the commands taskq needs (see test_security.py).
ACL_RULES = (
    "on >s3cret resetkeys ~{ns}:* resetchannels -@all +@read +@write +@scripting +@transaction +@connection"
    " +time -@admin -@dangerous"
)
TROUBLE = ("redis", "nopermission", "noperm", "unreachable")


def worker_user(lab: Lab) -> str:
    """An ACL user `w` for the test's namespace; returns its URL."""
    lab.client.execute_command("ACL", "SETUSER", "w", *ACL_RULES.format(ns=lab.namespace).split())
    return f"redis://w:s3cret@127.0.0.1:{lab.server.port}/0"


def acl(lab: Lab, *rules: str) -> None:
    lab.client.execute_command("ACL", "SETUSER", "w", *rules)


def executions(lab: Lab, task_id: str) -> dict[tuple[int, int], list[Event]]:
    """(pid, attempt) -> the events of that execution of the task, in time order."""
    found: dict[tuple[int, int], list[Event]] = {}
    for event in read_ledger(lab.fleet.ledger):
        if event.task_id == task_id:
            found.setdefault((event.pid, event.attempt), []).append(event)
    return found


def started(lab: Lab, task_id: str, attempt: int) -> bool:
    return any(a == attempt for _, a in executions(lab, task_id))


def assert_never_concurrent(lab: Lab, task_id: str) -> None:
    spans = sorted((evs[0].at, evs[-1].at, key) for key, evs in executions(lab, task_id).items())
    for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
        print(f"{task_id}: {first} stopped {begin - end:.2f}s before {second} began")
        assert end < begin, (
            f"executions {first} and {second} of {task_id} ran at once ({end:.3f} >= {begin:.3f})\n"
            f"{lab.fleet.logs()}"
        )


def trouble_lines(member: Member) -> list[str]:
    return [line for line in member.log().splitlines() if any(w in line.lower() for w in TROUBLE)]


def up(member: Member) -> bool:
    return "serving" in member.log()


# -- point 1: every loop survives every Redis error; a lease that cannot be renewed stops its execution


def test_a_heartbeat_denied_a_command_for_a_while_survives_renews_again_and_its_long_task_runs_once(
    lab: Lab,
) -> None:
    # Given worker a (an ACL user, lease 3 s) running a 9 s task, and worker b that would recover it
    url = worker_user(lab)
    [task_id] = lab.enqueue([("long", {"seconds": 9})])
    a = lab.fleet.worker("a", concurrency=2, lease="3s", redis_url=url)
    until(lambda: started(lab, task_id, 1), 20, what="a started the task", logs=lab.fleet.logs)
    b = lab.fleet.worker("b", concurrency=1, lease="3s")
    until(lambda: up(b), 20, what="b serving", logs=lab.fleet.logs)

    # When the heartbeat's worker registration (SET) is refused for 2 s, then allowed again
    acl(lab, "-set")
    until(
        lambda: "NOPERM" in a.log() or "no permissions" in a.log(),
        10,
        what="a hit NOPERM",
        logs=lab.fleet.logs,
    )
    time.sleep(2)  # the length of the fault, as in the report
    acl(lab, "+set")

    # Then a's heartbeat logs that Redis answers again and keeps the lease: the task runs once
    until(lambda: "again" in a.log(), 10, what="a says Redis answers again", logs=lab.fleet.logs)
    until(
        lambda: final_states(lab.client, lab.namespace, [task_id]).get(task_id, ("",))[0] == "done",
        20,
        what="task done",
        logs=lab.fleet.logs,
    )
    assert final_states(lab.client, lab.namespace, [task_id])[task_id] == ("done", 1), lab.fleet.logs()
    assert len(executions(lab, task_id)) == 1, lab.fleet.logs()
    assert "Traceback" not in a.log(), a.log()
    assert a.alive() and b.alive()


def test_a_worker_that_cannot_renew_a_lease_before_it_expires_stops_that_execution_itself(
    lab: Lab,
) -> None:
    # Given worker a (an ACL user, lease 3 s) running a 6 s task, and worker b (another user)
    url = worker_user(lab)
    [task_id] = lab.enqueue([("long", {"seconds": 6})])
    a = lab.fleet.worker("a", concurrency=2, lease="3s", redis_url=url)
    until(lambda: started(lab, task_id, 1), 20, what="a started the task", logs=lab.fleet.logs)
    b = lab.fleet.worker("b", concurrency=1, lease="3s")
    until(lambda: up(b), 20, what="b serving", logs=lab.fleet.logs)

    # When a may run no script (renew, fetch) for longer than its lease: b recovers and runs the task
    acl(lab, "-evalsha", "-eval")
    until(lambda: started(lab, task_id, 2), 20, what="b started attempt 2", logs=lab.fleet.logs)
    acl(lab, "+evalsha", "+eval")

    # Then a stopped its execution itself, said so, and before b's began; b's run completes
    until(
        lambda: "stopping it" in a.log() and "renew" in a.log(),
        5,
        what="a logged why it stopped",
        logs=lab.fleet.logs,
    )
    until(
        lambda: final_states(lab.client, lab.namespace, [task_id]).get(task_id, ("",))[0] == "done",
        20,
        what="task done",
        logs=lab.fleet.logs,
    )
    assert final_states(lab.client, lab.namespace, [task_id])[task_id] == ("done", 2), lab.fleet.logs()
    assert_never_concurrent(lab, task_id)
    ends = [e for evs in executions(lab, task_id).values() for e in evs if e.kind == "end"]
    assert len(ends) == 1, lab.fleet.logs()
    assert a.alive(), a.log()
    assert "Traceback" not in a.log(), a.log()


# -- point 11: an outage costs a few lines, and the end of it is said ---------------------------------------


def test_a_worker_logs_an_outage_once_a_few_reminders_at_most_and_once_when_redis_is_back(lab: Lab) -> None:
    # Given an idle worker
    w = lab.fleet.worker("w", concurrency=2, lease="2s")
    until(lambda: up(w), 20, what="worker serving", logs=lab.fleet.logs)
    before = len(trouble_lines(w))

    # When Redis is gone for 6 s, then back
    lab.server.shutdown()
    until(lambda: len(trouble_lines(w)) > before, 10, what="the outage logged", logs=lab.fleet.logs)
    time.sleep(6)  # the length of the outage
    lab.server.start()
    until(
        lambda: "reachable again after" in w.log(),
        15,
        what="the end of the outage logged",
        logs=lab.fleet.logs,
    )

    # Then the whole outage took a few lines (one, a reminder or two, and the one that says it is over)
    lines = trouble_lines(w)[before:]
    print("\n".join(lines))
    assert 2 <= len(lines) <= 5, "\n".join(lines)
    assert sum("reachable again after" in line for line in lines) == 1, "\n".join(lines)
    assert "Traceback" not in w.log() and w.alive(), w.log()
    # ... and the worker serves again
    [task_id] = lab.enqueue([("work", {"ms": 1})])
    until(
        lambda: final_states(lab.client, lab.namespace, [task_id])[task_id][0] == "done",
        15,
        what="a task after the outage",
        logs=lab.fleet.logs,
    )


def read_pty(fd: int, seen: bytearray, until_text: bytes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while until_text not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"not within {timeout}s: {until_text!r}\n{bytes(seen[-3000:])!r}")
        if select.select([fd], [], [], min(left, 0.2))[0]:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the process is gone
                raise AssertionError(f"ended before {until_text!r}\n{bytes(seen[-3000:])!r}") from None


def test_stats_watch_keeps_running_through_an_outage_shows_redis_unreachable_then_recovers(
    lab: Lab, tmp_path: Path
) -> None:
    # Given `taskq stats --watch` on a terminal (a pty), showing a queue
    lab.enqueue([("work", {"ms": 1})])
    controller, terminal = pty.openpty()
    errors = tmp_path / "stderr"
    with open(errors, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskq_cli", "stats", "--watch", "--interval", "0.2"],
            stdin=terminal,
            stdout=terminal,
            stderr=stderr,
            cwd=ROOT,
            env=lab.fleet.env(COLUMNS="120", LINES="40", TERM="xterm"),
            start_new_session=True,
        )
    os.close(terminal)
    seen = bytearray()
    try:
        read_pty(controller, seen, b"default", 15)

        # When Redis goes away, then comes back
        lab.server.shutdown()
        read_pty(controller, seen, b"unreachable", 15)
        mark = len(seen)
        lab.server.start()
        lab.producer.enqueue("work", {"ms": 1}, queue="afterwards")  # only a fresh snapshot shows it

        # Then the view said so and shows the queue again, and the command still runs
        del seen[:mark]
        read_pty(controller, seen, b"afterwards", 15)
        assert proc.poll() is None, errors.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        os.close(controller)
