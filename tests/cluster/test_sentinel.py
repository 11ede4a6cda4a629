"""taskq on a Sentinel-managed primary with one replica and three sentinels: the primary is killed
with SIGKILL in the middle of a run. The worker and the producer follow the failover to the promoted
replica without being restarted, and every task whose durable enqueue was confirmed runs."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from taskq_cli import TaskQueue
from taskq_cli.errors import BrokerError
from taskq_cli.protocol import Broker, NotReplicated
from tests.support import until

from .servers import SentinelGroup

APP = "tests.cluster.app"
TOTAL = 120  # durable tasks confirmed over the run
KILL_AFTER = 40  # confirmed before the primary is killed


@pytest.fixture
def redis_url(sentinel_group: SentinelGroup) -> str:
    return sentinel_group.url


class Producer(threading.Thread):
    """Enqueues tasks with durable=True and ids of its own, retrying an id until it is confirmed
    (the same id again is safe: a custom id is never added twice)."""

    def __init__(self, tq: TaskQueue) -> None:
        super().__init__(name="producer", daemon=True)
        self.tq = tq
        self.confirmed: list[str] = []
        self.confirmed_at: list[float] = []
        self.errors: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set() and len(self.confirmed) < TOTAL:
            options: dict[str, float] = {"delay": 1.0} if n % 7 == 3 else {}  # some wait in `scheduled`
            payload = {"n": n, "seconds": 0.3 if n % 5 == 0 else 0.0}  # some run across the kill
            try:
                self.tq.enqueue("stamp", payload, task_id=f"t{n}", durable=True, **options)  # type: ignore[arg-type]
            except (BrokerError, NotReplicated) as exc:
                self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
                self.stop.wait(0.1)
                continue
            self.confirmed.append(f"t{n}")
            self.confirmed_at.append(time.monotonic())
            n += 1
            self.stop.wait(0.01)


def done(broker: Broker, ids: list[str]) -> list[str]:
    """The ids not done yet."""
    left = []
    for task_id in ids:
        record = broker.find_task(task_id, "default")
        if record is None or record.meta.get("state") != "done":
            left.append(task_id)
    return left


def ran_at(broker: Broker, task_id: str) -> float:
    record = broker.find_task(task_id, "default")
    assert record is not None and record.result_json is not None
    return float(json.loads(record.result_json))


def test_a_killed_primary_fails_over_and_every_confirmed_durable_task_runs(
    sentinel_group: SentinelGroup,
    tq: TaskQueue,
    broker: Broker,
    spawn: Callable[..., subprocess.Popen[str]],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # Given a healthy group: doctor sees it, and the CLI's durable enqueue is confirmed
    doctor = run_cli("doctor", "--json")
    topology = next(f for f in json.loads(doctor.stdout) if f["check"] == "topology")
    assert topology["status"] == "ok", topology
    assert "Sentinel service mymaster" in topology["message"] and "1 replica(s)" in topology["message"]
    cli = run_cli("enqueue", "stamp", "{}", "--id", "cli-durable", "--durable", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["state"] == "pending"

    # and a worker and a producer running against it
    worker = spawn(
        "worker",
        "--app",
        APP,
        "--queues",
        "default",
        "--concurrency",
        "4",
        "--pool",
        "threads",
        "--lease",
        "3s",
    )
    broker.durable_timeout = 1.0
    producer = Producer(tq)
    producer.start()
    try:
        until(lambda: len(producer.confirmed) >= KILL_AFTER, timeout=20)

        # When the primary dies mid-run
        killed, killed_wall = time.monotonic(), time.time()
        old_port = sentinel_group.primary.port
        sentinel_group.primary.kill()
        until(lambda: sentinel_group.current_primary() != old_port, timeout=20, interval=0.05)
        failover = time.monotonic() - killed
        promoted = sentinel_group.current_primary()  # read now: on a loaded machine the sentinels may
        # later fail back to the restarted old primary, which is theirs to do and loses nothing
        # and comes back (empty) as a replica of the new primary, as an operator would restart it
        # (the sentinels would reconfigure it too, within their 10 s INFO period)
        sentinel_group.primary.directives.append(f"replicaof 127.0.0.1 {sentinel_group.current_primary()}")
        sentinel_group.primary.start()

        # Then the producer gets durable confirmations again, from the new primary and its replica
        until(lambda: len(producer.confirmed) >= TOTAL, timeout=40)
    finally:
        producer.stop.set()
        producer.join(timeout=10)
    first_after = next(t for t in producer.confirmed_at if t > killed) - killed

    # and every confirmed task runs, on the same worker process, never restarted
    ids = ["cli-durable", *producer.confirmed]
    until(lambda: not done(broker, ids), timeout=40, interval=0.2)
    assert worker.poll() is None, "the worker survived the failover"
    assert promoted == sentinel_group.replica.port
    later = [i for i, at in zip(producer.confirmed, producer.confirmed_at, strict=True) if at > killed]
    served = min(ran_at(broker, task_id) for task_id in later)
    print(
        f"failover: replica promoted {failover:.1f}s after the kill; producer's first durable "
        f"confirmation {first_after:.1f}s after it, worker's first task {served - killed_wall:.1f}s after "
        f"it; producer errors meanwhile {producer.errors}; {len(ids)} confirmed tasks all done"
    )
