"""taskq on a real 3-primary Redis Cluster: a worker serving queues on different shards keeps strict
priority and picks a task up at once, the cross-queue operations work, and `taskq doctor` shows the
topology and where each queue lives."""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from redis.cluster import RedisCluster

from taskq_cli import TaskQueue
from taskq_cli.protocol import Broker, NewTask, NotReplicated
from taskq_cli.protocol.waker import WAKER_BLOCK, Waker
from tests.conftest import cli_env
from tests.support import until

APP = "tests.cluster.app"


def queues_on_different_shards(broker: Broker, count: int) -> list[str]:
    """Queue names whose slots are owned by `count` different primaries."""
    cluster = broker.client
    assert isinstance(cluster, RedisCluster)
    found: dict[str, str] = {}
    for i in range(1000):
        name = f"q{i}"
        found.setdefault(cluster.get_node_from_key(broker.keys(name).tasks).name, name)
        if len(found) == count:
            return list(found.values())
    raise AssertionError("the cluster has fewer shards than expected")


def ran_at(broker: Broker, task_id: str, queue: str) -> float | None:
    record = broker.find_task(task_id, queue)
    if record is None or record.meta.get("state") != "done" or record.result_json is None:
        return None
    return float(json.loads(record.result_json))


def test_queues_of_one_worker_live_on_different_shards(broker: Broker) -> None:
    queues = queues_on_different_shards(broker, 3)
    cluster = broker.client
    assert isinstance(cluster, RedisCluster)
    for queue in queues:
        slots = {cluster.keyslot(key) for key in broker.keys(queue).script_keys()}
        assert len(slots) == 1, f"queue {queue} spans slots {slots}"


def test_a_worker_serving_shards_keeps_strict_priority(
    tq: TaskQueue, broker: Broker, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    # Given 15 tasks in each of three queues on three shards, the lowest priority enqueued first
    high, mid, low = queues_on_different_shards(broker, 3)
    ids = {
        q: tq.enqueue_many([("stamp", {"n": i}, {"queue": q}) for i in range(15)]) for q in (low, mid, high)
    }
    # When one single-slot worker drains them
    done = run_cli(
        "worker",
        "--app",
        APP,
        "--queues",
        f"{high},{mid},{low}",
        "--concurrency",
        "1",
        "--pool",
        "threads",
        "--burst",
        "--no-cron",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Then every high task ran before every mid one, and every mid one before every low one
    times = {q: [ran_at(broker, i, q) for i in ids[q]] for q in ids}
    assert all(t is not None for q in times for t in times[q]), times
    assert max(times[high]) < min(times[mid]) and max(times[mid]) < min(times[low])  # type: ignore[type-var]


def test_an_idle_worker_picks_up_a_task_on_any_shard_at_once(
    tq: TaskQueue, broker: Broker, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    queues = queues_on_different_shards(broker, 3)
    worker = spawn(
        "worker", "--app", APP, "--queues", ",".join(queues), "--concurrency", "2", "--pool", "threads"
    )
    until(broker.live_workers, timeout=15)
    latencies = []
    for round_ in range(2):
        for queue in reversed(queues):  # the lowest priority first: no queue is favoured
            time.sleep(0.3)  # let the worker go idle (blocked, waiting for a wake-up)
            start = time.time()
            task_id = tq.enqueue("stamp", {"n": round_}, queue=queue)
            until(lambda t=task_id, q=queue: ran_at(broker, t, q) is not None, timeout=5, interval=0.005)
            latencies.append(float(ran_at(broker, task_id, queue) or 0) - start)
    assert worker.poll() is None
    print(
        f"pickup latency over 3 shards: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )
    assert max(latencies) < 1.0, latencies
    assert statistics.median(latencies) < 0.25, f"woken, not polled: {latencies}"


def test_registry_pause_stats_and_workers_work_across_slots(
    tq: TaskQueue, broker: Broker, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    queues = queues_on_different_shards(broker, 3)
    tq.enqueue_many([("stamp", {}, {"queue": q}) for q in queues])
    broker.register_worker("w1", {"id": "w1", "heartbeat_at": 1, "queues": queues}, ttl=30)
    broker.register_worker("w2", {"id": "w2", "heartbeat_at": 1, "queues": queues}, ttl=30)
    assert sorted(w["id"] for w in broker.live_workers()) == ["w1", "w2"]
    assert run_cli("queue", "pause", queues[1]).returncode == 0
    assert broker.paused(queues) == {queues[0]: False, queues[1]: True, queues[2]: False}
    broker.set_paused(queues[1], False)
    assert not any(broker.paused(queues).values())
    stats = run_cli("stats", "--json")
    assert stats.returncode == 0, stats.stderr
    body = json.loads(stats.stdout)
    assert {q: body["queues"][q]["pending"] for q in queues} == dict.fromkeys(queues, 1)
    assert sorted(w["id"] for w in body["workers"]) == ["w1", "w2"]


def test_doctor_reports_the_cluster_and_where_each_queue_lives(
    tq: TaskQueue, broker: Broker, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    queues = queues_on_different_shards(broker, 3)
    tq.enqueue_many([("stamp", {}, {"queue": q}) for q in queues])
    result = run_cli("doctor", "--json")
    findings = {f["check"]: f for f in json.loads(result.stdout)}
    assert result.returncode == 0, result.stdout + result.stderr
    assert findings["topology"]["status"] == "ok"
    assert (
        "Redis Cluster" in findings["topology"]["message"]
        and "3 primaries" in findings["topology"]["message"]
    )
    assert findings["slots"]["status"] == "ok"
    for queue in queues:
        assert queue in findings["slots"]["message"]
    assert findings["keys"]["status"] == "ok", "SCAN covered every primary"


def test_a_durable_enqueue_without_replicas_says_the_task_may_still_be_there(
    tq: TaskQueue, broker: Broker
) -> None:
    broker.durable_timeout = 0.2
    with pytest.raises(NotReplicated, match=r"no replica acknowledged it within 0\.2s") as caught:
        tq.enqueue("stamp", {}, task_id="maybe-there", durable=True)
    assert "most likely there" in str(caught.value)
    record = broker.find_task("maybe-there")
    assert record is not None and record.meta["state"] == "pending"


def test_durable_enqueue_from_the_cli_fails_with_exit_1_when_no_replica_confirms(
    redis_url: str, namespace: str, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    result = run_cli("enqueue", "stamp", "{}", "--id", "x1", "--durable", env=cli_env(redis_url, namespace))
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "durable enqueue not confirmed" in line and "x1" in line


def test_a_script_cache_lost_on_one_shard_reruns_only_that_shards_calls(
    broker: Broker, raw: RedisCluster, namespace: str
) -> None:
    # Given the scripts are loaded everywhere, then one primary loses its cache (a restart, a failover)
    a, b = queues_on_different_shards(broker, 2)
    broker.enqueue([NewTask("warm", a, {"name": "t", "queue": a}, "{}")])
    raw.get_redis_connection(raw.get_node_from_key(broker.keys(b).tasks)).script_flush()
    # When one pipeline enqueues to both shards
    results = broker.enqueue([NewTask(f"x-{q}", q, {"name": "t", "queue": q}, "{}") for q in (a, b)])
    # Then each task is written exactly once: the shard that still had the scripts ran its call once
    assert [r.state for r in results] == ["pending", "pending"]
    assert raw.lrange(broker.keys(a).pending, 0, -1) == ["x-" + a, "warm"]
    assert raw.lrange(broker.keys(b).pending, 0, -1) == ["x-" + b]


def test_the_waker_wakes_on_any_shard_and_passes_on_a_token_it_cannot_use(
    broker: Broker, raw: RedisCluster
) -> None:
    queues = queues_on_different_shards(broker, 3)
    keys = [broker.keys(q).wake for q in queues]
    waker = Waker(broker.client, keys)
    try:
        assert waker.wait(0.2) is False, "nothing to wake for"
        raw.lpush(keys[2], "1")
        started = time.monotonic()
        assert waker.wait(5) is True
        assert time.monotonic() - started < 0.5
        assert raw.llen(keys[2]) == 0, "the token was taken"
        # a token arriving while nobody waits (its BLPOP was still pending) goes back for another worker
        passed_on = threading.Event()
        pass_on = waker._pass_on

        def spy(key: str) -> None:
            pass_on(key)
            passed_on.set()

        waker._pass_on = spy  # type: ignore[method-assign]
        waker.wait(0.05)
        raw.lpush(keys[0], "1")
        # the BLPOP still pending takes it and gives it back (the spy says when; should the BLPOP
        # have ended just before, no thread listens and the token simply stays)
        passed_on.wait(WAKER_BLOCK + 1)
        assert raw.llen(keys[0]) == 1
        assert waker.wait(2) is True and raw.llen(keys[0]) == 0
    finally:
        waker.close()
