"""Fault injection with real processes and a Redis of our own: workers SIGKILLed at random and at
chosen instants, handler children killed like the OOM killer does, Redis crashed and restarted,
connections slowed, stalled and cut by a proxy, workers whose clocks disagree.

Every scenario checks the same things: no task is lost (each enqueued id ends done or dead, or is
still waiting), a task executed to completion more than once was in flight at a fault that reached
its worker, workers come back and keep serving, and no lease stays expired longer than the SPEC's
`lease + 5 s` before its task is recovered (the longest measured is printed). Each prints one line of
figures, gathered at the end of the run under "taskq chaos figures".

Redis runs with AOF and `appendfsync always` (see tests/support/servers.py): a restart keeps every write
that was acknowledged. Without persistence a Redis restart empties the namespace, which no queue
can survive; `taskq doctor` warns about it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from taskq_cli.errors import BrokerUnavailable
from taskq_cli.protocol import Broker, connect
from tests.apps.chaos import Fault, Verdict, judge, read_ledger
from tests.chaos.conftest import Lab
from tests.chaos.harness import ChaosProxy, LeaseWatch
from tests.support import ROOT, final_states, queue_counts, until

pytestmark = pytest.mark.chaos

LEASE = 2.0
RECOVERY_BOUND = LEASE + 5.0  # SPEC: a lost worker's tasks are pending or scheduled again within lease + 5 s


def settle(lab: Lab, total: int, timeout: float) -> float:
    """Wait until every task is done or dead."""

    def finished() -> bool:
        c = queue_counts(lab.client, lab.namespace)
        return c["pending"] + c["scheduled"] + c["active"] == 0 and c["done"] + c["dead"] >= total

    return until(
        finished,
        timeout,
        what=f"all {total} tasks finished",
        logs=lambda: f"{queue_counts(lab.client, lab.namespace)}\n{lab.fleet.logs()}",
    )


def verdict(lab: Lab, ids: list[str], faults: list[Fault]) -> Verdict:
    return judge(ids, final_states(lab.client, lab.namespace, ids), read_ledger(lab.fleet.ledger), faults)


def check(
    lab: Lab, name: str, v: Verdict, watch: LeaseWatch | None, *, bound: float = RECOVERY_BOUND
) -> None:
    worst = watch.stop() if watch else 0.0
    phases = ", ".join(f"{k} {n}" for k, n in v.phases.items() if n)
    line = f"{name}: {v.line()}; longest expired lease {worst:.1f}s" + (
        f"; attempts cut: {phases}" if phases else ""
    )
    lab.figure(line)
    assert not v.lost, f"lost {v.lost[:10]}\n{lab.fleet.logs()}"
    assert not v.unexplained, f"duplicates not explained by a fault: {v.unexplained}\n{lab.fleet.logs()}"
    assert worst <= bound, f"a lease stayed expired {worst:.1f}s (bound {bound}s)\n{lab.fleet.logs()}"


def watch(lab: Lab) -> LeaseWatch:
    w = LeaseWatch(lab.server.client(), lab.key("active"))
    w.start()
    return w


def mixed(
    n: int, rng: random.Random, *, flaky: float = 0.1, doomed: float = 0.02
) -> list[tuple[str, dict[str, object]]]:
    items: list[tuple[str, dict[str, object]]] = []
    for _ in range(n):
        if rng.random() < doomed:
            items.append(("doomed", {}))
        else:
            items.append(
                ("work", {"ms": rng.randint(5, 80), "fail_rate": flaky if rng.random() < 0.3 else 0.0})
            )
    return items


class Feeder(threading.Thread):
    """Enqueues batches over `seconds`, so work keeps arriving while faults happen. Each task has a
    custom id, so a batch whose reply was lost (Redis down) is simply sent again: enqueue is
    idempotent for custom ids."""

    def __init__(
        self, lab: Lab, items: list[tuple[str, dict[str, object]]], seconds: float, batches: int = 20
    ) -> None:
        super().__init__(daemon=True)
        self.lab, self.seconds, self.batches = lab, seconds, batches
        self.items = [(name, payload, {"task_id": f"t{n}"}) for n, (name, payload) in enumerate(items)]
        self.ids: list[str] = []
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        size = -(-len(self.items) // self.batches)
        try:
            for start in range(0, len(self.items), size):
                batch = self.items[start : start + size]
                while True:
                    try:
                        self.ids += self.lab.producer.enqueue_many(batch)
                        break
                    except BrokerUnavailable:
                        self.retries += 1
                        time.sleep(0.2)
                time.sleep(self.seconds / self.batches)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> list[str]:
        self.join(timeout=self.seconds + 30)
        assert self.error is None, self.error
        assert len(self.ids) == len(self.items)
        return self.ids


# -- workers killed -------------------------------------------------------------------------------


def test_workers_sigkilled_at_random_lose_no_task_and_only_tasks_in_flight_at_a_kill_run_twice(
    lab: Lab,
) -> None:
    # Given three workers and a scheduler, and 600 short tasks (some flaky, some doomed) arriving over 8 s
    rng = random.Random(5)
    for _ in range(3):
        lab.fleet.worker(concurrency=2)
    lab.fleet.scheduler()
    w = watch(lab)
    feeder = Feeder(lab, mixed(600, rng), seconds=8)
    feeder.start()
    # When a random worker is SIGKILLed every 0.6-1.4 s for 10 s, and replaced at once
    faults: list[Fault] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.6, 1.4))
        victim = rng.choice(lab.fleet.live("worker"))
        faults.append(Fault("kill", lab.fleet.kill(victim), victim.pid))
        lab.fleet.worker(concurrency=2)
    ids = feeder.finish()
    settle(lab, len(ids), timeout=40)
    # Then nothing is lost, every duplicate was in flight at a kill, and killed workers left no child behind
    v = verdict(lab, ids, faults)
    check(lab, f"random SIGKILL of workers ({len(faults)} kills)", v, w)
    assert sum(v.phases.values()) > 0, "no kill caught a task in flight: the scenario proved nothing"
    assert (
        until(lambda: not lab.fleet.orphans(), 5, what="children of killed workers exit", logs=lab.fleet.logs)
        >= 0
    )


def test_a_process_killed_right_after_fetching_loses_nothing_its_lease_brings_the_task_back(lab: Lab) -> None:
    # Given a task fetched under a 2 s lease by a process that is SIGKILLed right after the fetch
    [task_id] = lab.enqueue([("work", {"ms": 1})])
    code = (
        "import os, signal, sys\n"
        "from taskq_cli.config import Settings\n"
        "from taskq_cli.protocol import Broker, connect\n"
        "b = Broker(connect(sys.argv[1]), Settings(redis_url=sys.argv[1], namespace=sys.argv[2]))\n"
        "assert b.fetch('default', 2.0, 'doomed-fetcher') is not None\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    fetcher = subprocess.run(
        [sys.executable, "-c", code, lab.server.url, lab.namespace],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert fetcher.returncode == -signal.SIGKILL, fetcher.stderr
    killed_at = time.monotonic()
    assert json.loads(str(lab.client.hget(lab.key("tasks"), task_id)))["state"] == "active"
    w = watch(lab)
    # When a worker runs
    lab.fleet.worker(concurrency=1)
    settle(lab, 1, timeout=LEASE + 10)
    waited = time.monotonic() - killed_at
    # Then the task ran once, on its second attempt (the first was the dead fetcher's)
    v = verdict(lab, [task_id], [])
    check(lab, "SIGKILL between fetch and start", v, w)
    starts = [e for e in read_ledger(lab.fleet.ledger) if e.kind == "start"]
    assert [e.attempt for e in starts] == [2]
    assert waited < RECOVERY_BOUND + 2


def test_a_worker_killed_after_its_task_completed_but_before_the_ack_runs_it_again_on_another_worker(
    lab: Lab,
) -> None:
    # Given two workers, and a task whose first attempt completes then SIGKILLs its whole worker
    [victim] = lab.enqueue([("work", {"ms": 1, "die": "worker"})])
    first = lab.fleet.worker(concurrency=1)
    until(lambda: first.popen.poll() is not None, 20, what="the worker kills itself", logs=lab.fleet.logs)
    w = watch(lab)
    lab.fleet.worker(concurrency=1)
    # When the lease expires
    settle(lab, 1, timeout=LEASE + 10)
    # Then the task is done on attempt 2: one duplicate execution, explained by the kill
    events = read_ledger(lab.fleet.ledger)
    died = [Fault("kill", e.at, e.pgid) for e in events if e.kind == "die"]
    v = verdict(lab, [victim], died)
    check(lab, "SIGKILL between execution and ack", v, w)
    assert len(v.duplicated) == 1 and final_states(lab.client, lab.namespace, [victim])[victim] == ("done", 2)


def test_a_handler_child_killed_like_by_the_oom_killer_fails_at_once_and_its_worker_serves_on(
    lab: Lab,
) -> None:
    # Given one worker with a 60 s lease, tasks whose child is SIGKILLed (the OOM killer) or hits a
    # memory limit on their first attempt, and ordinary tasks
    items: list[tuple[str, dict[str, object]]] = [("work", {"ms": 1, "die": "child"}) for _ in range(3)]
    items += [("work", {"ms": 1, "die": "memory"}) for _ in range(3)]
    items += [("work", {"ms": 1}) for _ in range(20)]
    ids = lab.enqueue(items)
    w = watch(lab)
    worker = lab.fleet.worker(concurrency=2, lease="60s")
    # When it runs them
    took = settle(lab, len(ids), timeout=30)
    # Then each failure was reported at once (no 60 s lease to wait for) and retried; the worker lives
    v = verdict(lab, ids, [])
    check(lab, "handler child OOM-killed / out of memory", v, w)
    assert took < 20 and worker.alive()
    states = final_states(lab.client, lab.namespace, ids)
    assert [states[i] for i in ids[:6]] == [("done", 2)] * 6
    errors = {json.loads(str(lab.client.hget(lab.key("tasks"), i)))["last_error"]["type"] for i in ids[:6]}
    assert errors == {"WorkerProcessDied", "MemoryError"}, errors


# -- Redis restarted --------------------------------------------------------------------------------


def test_redis_crashed_and_restarted_twice_loses_no_task_and_workers_reconnect_and_serve_on(lab: Lab) -> None:
    # Given Redis with AOF (fsync always), three workers and a scheduler, and tasks arriving over 9 s
    rng = random.Random(7)
    workers = [lab.fleet.worker(concurrency=2) for _ in range(3)]
    lab.fleet.scheduler()
    w = watch(lab)
    feeder = Feeder(lab, mixed(400, rng), seconds=9, batches=30)
    faults: list[Fault] = []
    feeder.start()
    # When Redis is SIGKILLed, down 2 s, restarted; then shut down cleanly, down 1 s, restarted
    time.sleep(2.5)
    for crash, down in ((True, 2.0), (False, 1.0)):
        began = time.monotonic()
        lab.server.restart(crash=crash, down_for=down)
        faults.append(Fault("redis restart", began, None, until=time.monotonic() + LEASE))
        time.sleep(2.5)
    ids = feeder.finish()
    assert feeder.retries > 0, "the producer never met Redis down: the restarts came too late"
    settle(lab, len(ids), timeout=40)
    # Then nothing is lost, duplicates were in flight at a restart, and the same workers serve on
    v = verdict(lab, ids, faults)
    check(lab, "Redis SIGKILLed and shut down, restarted with AOF", v, w, bound=RECOVERY_BOUND + 2.0)
    assert all(m.alive() for m in workers), lab.fleet.logs()
    assert all("Redis unreachable" in m.log() for m in workers), lab.fleet.logs()
    [late] = lab.enqueue([("work", {"ms": 1})])
    until(
        lambda: final_states(lab.client, lab.namespace, [late]).get(late, ("",))[0] == "done",
        10,
        what="served after restarts",
        logs=lab.fleet.logs,
    )


# -- the network --------------------------------------------------------------------------------------


def test_connections_slowed_stalled_past_the_lease_and_cut_lose_no_task_and_workers_reconnect_with_backoff(
    lab: Lab,
) -> None:
    # Given three workers reaching Redis through a proxy, a scheduler on a direct connection and one
    # through the proxy, and tasks arriving over 11 s
    proxy = ChaosProxy(lab.server.port)
    try:
        workers = [lab.fleet.worker(concurrency=2, redis_url=proxy.url) for _ in range(3)]
        lab.fleet.scheduler()
        lab.fleet.scheduler(redis_url=proxy.url)
        w = watch(lab)
        feeder = Feeder(lab, mixed(500, random.Random(11)), seconds=11, batches=30)
        feeder.start()
        faults: list[Fault] = []
        time.sleep(1.5)
        # When every chunk is delayed 20 ms for 2 s
        proxy.slow(0.02)
        time.sleep(2)
        proxy.resume()
        time.sleep(1)
        # and every byte is held for 3.5 s (longer than the 2 s lease: the direct scheduler recovers)
        began = time.monotonic()
        proxy.stall()
        time.sleep(3.5)
        proxy.resume()
        faults.append(Fault("stall", began, None, until=time.monotonic()))
        time.sleep(1)
        # and every connection is cut, new ones refused for 2.5 s
        began = time.monotonic()
        proxy.refuse(True)
        proxy.cut()
        time.sleep(2.5)
        proxy.refuse(False)
        tries = proxy.refused
        faults.append(Fault("cut", began, None, until=time.monotonic()))
        ids = feeder.finish()
        settle(lab, len(ids), timeout=40)
        # Then nothing is lost, duplicates were in flight at the stall or the cut, the same workers
        # serve on, and each one backed off while it could not reconnect
        v = verdict(lab, ids, faults)
        check(lab, "connections slowed, stalled 3.5 s, cut and refused 2.5 s", v, w)
        assert all(m.alive() for m in workers), lab.fleet.logs()
        for m in workers:  # each one retried, and backed off instead of spinning
            failures = m.log().count("Redis unreachable")
            assert 0 < failures <= 40, f"{failures} failed attempts during a 2.5 s outage\n{m.log()[-3000:]}"
        # about 15 loops through the proxy, each backing off 0.1 s doubling: some 5 tries each in 2.5 s
        assert 0 < tries <= 200, f"{tries} connections tried during a 2.5 s refusal\n{lab.fleet.logs()}"
        [late] = lab.enqueue([("work", {"ms": 1})])
        until(
            lambda: final_states(lab.client, lab.namespace, [late]).get(late, ("",))[0] == "done",
            10,
            what="served after the cut",
            logs=lab.fleet.logs,
        )
    finally:
        proxy.close()


# -- clocks ---------------------------------------------------------------------------------------------


def test_workers_whose_clocks_disagree_by_8_s_never_steal_leases_and_run_delays_on_redis_time(
    lab: Lab,
) -> None:
    # Given two workers, one 4 s ahead and one 4 s behind (a 2 s lease is far shorter than the skew)
    skew_path = os.pathsep.join([str(ROOT / "tests" / "chaos" / "skew"), str(ROOT)])
    ahead = lab.fleet.worker(concurrency=3, PYTHONPATH=skew_path, TASKQ_CHAOS_SKEW="4")
    behind = lab.fleet.worker(concurrency=3, PYTHONPATH=skew_path, TASKQ_CHAOS_SKEW="-4")
    w = watch(lab)
    broker = Broker(connect(lab.server.url), lab.producer.settings)
    pids = {ahead.pid, behind.pid}  # both serving first, else a delay may end before either runs
    until(
        lambda: pids <= {i["pid"] for i in broker.live_workers()},
        30,
        what="both serving",
        logs=lab.fleet.logs,
    )
    # When they run long tasks (2.5 leases each), flaky ones, and tasks delayed 1-2.5 s, one of them
    # enqueued by a producer whose clock is 30 s ahead
    long_ids = lab.enqueue([("work", {"ms": 5000}) for _ in range(4)])
    flaky_ids = lab.enqueue([("work", {"ms": 5, "fail_rate": 0.5}) for _ in range(30)])
    delays = [1.0 + 0.05 * i for i in range(30)]
    delayed_ids = lab.enqueue([("work", {"ms": 1}, {"delay": d}) for d in delays])
    skewed = subprocess.run(
        [sys.executable, "-m", "taskq_cli", "enqueue", "work", '{"ms": 1}', "--delay", "2s"],
        env=lab.fleet.env(PYTHONPATH=skew_path, TASKQ_CHAOS_SKEW="30"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert skewed.returncode == 0, skewed.stderr
    delayed_ids.append(skewed.stdout.strip())
    delays.append(2.0)
    ids = long_ids + flaky_ids + delayed_ids
    settle(lab, len(ids), timeout=30)
    # Then the skew was real (each worker's heartbeat is off Redis's clock by its skew) ...
    now_ms = broker.redis_time_ms()
    beats = {info["pid"]: info["heartbeat_at"] - now_ms for info in broker.live_workers()}
    assert 2500 < beats[ahead.pid] < 6000 and -6000 < beats[behind.pid] < -2500, beats
    # ... no lease was recovered from a live worker, and no delayed task ran early or late
    v = verdict(lab, ids, [])
    check(lab, "workers' clocks 8 s apart", v, w)
    states = final_states(lab.client, lab.namespace, long_ids)
    assert all(states[i] == ("done", 1) for i in long_ids), states
    for task_id, delay in zip(delayed_ids, delays, strict=True):
        meta = json.loads(str(lab.client.hget(lab.key("tasks"), task_id)))
        waited_ms = meta["started_at"] - meta["enqueued_at"]  # whole ms, so the delay in whole ms too
        delay_ms = round(delay * 1000)  # 1.0 + 0.05 * 28 is 2.4000000000000004, not 2.4
        assert delay_ms <= waited_ms < delay_ms + 1500, (task_id, delay_ms, waited_ms)
    broker.client.close()
    lab.fleet.stop_gracefully()
    assert all(m.popen.returncode == 0 for m in (ahead, behind)), lab.fleet.logs()


# -- a stalled thread inside the worker -----------------------------------------------------------------


def test_a_retry_fetched_while_the_reporter_still_handles_the_previous_attempt_is_reported_not_forgotten(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reporter thread is descheduled right after Redis recorded a failure (here: made to sleep
    while it logs). Meanwhile the retry is promoted and the same worker fetches attempt 2 of the same
    task. Attempt 2's outcome must still be reported, and its lease renewed while it runs: a live
    worker's task is never left to lease expiry."""
    from taskq_cli import TaskQueue
    from taskq_cli.worker import QueuePlan, Worker
    from tests.apps import chaos as app

    tq = TaskQueue(redis_url=lab.server.url, namespace=lab.namespace, backoff_base=0.2, backoff_max=1.0)
    tq.registry = app.tq.registry
    worker = Worker(tq, QueuePlan.parse("default"), 2, pool="threads", lease=30.0, grace=1.0)
    log_outcome = worker._log_outcome

    def slow_log(running: object, outcome: object, report: object, result: object) -> None:
        if getattr(running, "job").meta.get("attempts") == 1:  # noqa: B009
            time.sleep(1.0)  # the retry (due in 0.1-0.2 s) is fetched meanwhile
        log_outcome(running, outcome, report, result)  # type: ignore[arg-type]

    monkeypatch.setattr(worker, "_log_outcome", slow_log)
    # Given a task that fails twice (max_retries 1), and a worker with a free slot
    [task_id] = lab.enqueue([("doomed", {})])
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        # Then both attempts are reported: the task is dead within seconds, not after a 30 s lease
        with contextlib.suppress(AssertionError):
            until(lambda: json.loads(str(lab.client.hget(lab.key("tasks"), task_id)))["state"] == "dead", 6)
        meta = json.loads(str(lab.client.hget(lab.key("tasks"), task_id)))
        assert meta["state"] == "dead", f"attempt 2 was never reported: {meta}"
        assert meta["attempts"] == 2 and meta["last_error"]["type"] == "RuntimeError", meta
    finally:
        worker.stop()
        thread.join(timeout=10)
        tq.close()
