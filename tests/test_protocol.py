"""The Redis protocol, step by step, with the scripts' clock driven by the test: the contract every
backend taskq runs on must keep. Each test runs on each backend (the module's `redis_url` param):

- `redis`: the suite's real Redis;
- `embedded`: the server `taskq dev` runs when no redis-server is installed (fakeredis's Redis
  protocol over TCP, Lua through lupa), one per module; it lacks no command the protocol sends;
- `cluster`: the session's local 3-primary Redis Cluster (tests/cluster/servers.py), marked
  `cluster` (deselect with `-m "not cluster"`; CI runs it), skipped where it cannot start.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.config import RetryDefaults
from taskq_cli.protocol import WAKE_DUE, Broker, Fetched, Malformed, NewTask
from taskq_cli.protocol.keys import QUEUE_KEY_ORDER, QueueKeys

from .conftest import Clock
from .support.servers import RedisServer

DEFAULTS = RetryDefaults(max_retries=3, backoff_base=5.0, backoff_max=3600.0)

EMBEDDED = all(importlib.util.find_spec(m) is not None for m in ("fakeredis", "lupa"))
BACKENDS = [
    pytest.param("redis", id="redis"),
    pytest.param(
        "embedded",
        id="embedded",
        marks=pytest.mark.skipif(not EMBEDDED, reason="the embedded server needs fakeredis[lua]"),
    ),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
]


@pytest.fixture(scope="module", params=BACKENDS)
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend the contract runs on (overrides the suite's `redis_url` for this module)."""
    if request.param == "redis":
        yield request.getfixturevalue("suite_redis_url")
    elif request.param == "cluster":
        yield request.getfixturevalue("cluster").url
    else:
        from taskq_cli.dev import EmbeddedRedis

        server = EmbeddedRedis.start(port=0)
        yield server.url
        server.stop()


def new(
    task_id: str, queue: str = "default", *, delay_ms: int | None = None, custom: bool = False, **meta: object
) -> NewTask:
    return NewTask(
        id=task_id,
        queue=queue,
        meta={"name": "t", "queue": queue, **meta},
        payload_json=json.dumps({"n": task_id}),
        delay_ms=delay_ms,
        custom_id=custom,
    )


def fetch(broker: Broker, queue: str = "default", lease: float = 30.0) -> Fetched:
    got = broker.fetch(queue, lease, "w1")
    assert isinstance(got, Fetched), got
    return got


def meta(raw: redis.Redis, ns: str, task_id: str, queue: str = "default") -> dict[str, object]:
    text = raw.hget(QueueKeys(ns, queue).tasks, task_id)
    assert text is not None, f"no record for {task_id}"
    return dict(json.loads(text))


def test_every_key_of_a_queue_shares_one_hash_tag() -> None:
    keys = QueueKeys("taskq", "emails").script_keys()
    assert len(keys) == len(QUEUE_KEY_ORDER)
    assert all(k.startswith("taskq:{emails}:") for k in keys)


def test_enqueue_then_fetch_leases_the_task_and_counts_the_attempt(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    [result] = broker.enqueue([new("a")])
    assert (result.state, result.duplicate) == ("pending", False)
    job = fetch(broker, lease=30)
    assert job.id == "a" and json.loads(job.payload_json) == {"n": "a"}
    assert job.meta["attempts"] == 1 and job.meta["state"] == "active"
    k = QueueKeys(namespace, "default")
    assert raw.zscore(k.active, "a") == clock.ms + 30_000
    assert raw.llen(k.pending) == 0
    assert broker.fetch("default", 30, "w1") is None


def test_fetch_is_first_in_first_out(broker: Broker, clock: Clock) -> None:
    broker.enqueue([new("1"), new("2")])
    broker.enqueue([new("3")])
    assert [fetch(broker).id for _ in range(3)] == ["1", "2", "3"]


def test_ack_marks_done_keeps_result_and_counts(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    broker.enqueue([new("a")])
    job = fetch(broker)
    assert broker.ack(job, '{"ok":1}', result_ttl=600)
    record = broker.find_task("a")
    assert record is not None and record.meta["state"] == "done"
    assert record.result_json == '{"ok":1}'
    k = QueueKeys(namespace, "default")
    assert raw.zcard(k.active) == 0 and raw.hget(k.counters, "processed") == "1"
    assert broker.ack(job, '{"ok":1}', result_ttl=600), "a repeated ack of the same attempt is fine"


def test_done_records_expire_after_result_ttl(broker: Broker, clock: Clock) -> None:
    broker.enqueue([new("a")])
    broker.ack(fetch(broker), None, result_ttl=10)
    clock.advance(9)
    broker.promote("default")
    assert broker.find_task("a") is not None
    clock.advance(2)
    broker.promote("default")
    assert broker.find_task("a") is None


def test_failed_attempt_is_scheduled_after_the_delay_then_promoted(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    broker.enqueue([new("a")])
    job = fetch(broker)
    error = {"type": "ValueError", "message": "bad", "traceback": "tb"}
    assert broker.fail(job, error, final=False, delay=7, max_retries=3) == "scheduled"
    m = meta(raw, namespace, "a")
    assert m["state"] == "scheduled" and m["run_at"] == clock.ms + 7000
    assert m["last_error"] == error
    clock.advance(6.9)
    assert broker.promote("default")[0] == 0
    clock.advance(0.2)
    moved, _ = broker.promote("default")
    assert moved == 1
    assert fetch(broker).meta["attempts"] == 2
    counters = raw.hgetall(QueueKeys(namespace, "default").counters)
    assert counters == {"processed": "1", "failed": "1"}


def test_attempts_are_bounded_by_max_retries_plus_one(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    broker.enqueue([new("a")])
    states = []
    for _ in range(3):
        job = fetch(broker)
        states.append(
            broker.fail(
                job, {"type": "E", "message": "", "traceback": ""}, final=False, delay=0, max_retries=2
            )
        )
        broker.promote("default")
    assert states == ["scheduled", "scheduled", "dead"]
    m = meta(raw, namespace, "a")
    assert m["attempts"] == 3 and m["state"] == "dead"
    assert raw.zscore(QueueKeys(namespace, "default").dead, "a") == clock.ms


def test_a_final_failure_goes_dead_at_once(broker: Broker, clock: Clock) -> None:
    broker.enqueue([new("a")])
    job = fetch(broker)
    assert (
        broker.fail(
            job, {"type": "Fail", "message": "no", "traceback": ""}, final=True, delay=0, max_retries=3
        )
        == "dead"
    )


def test_delayed_tasks_are_not_fetched_before_they_are_due(broker: Broker, clock: Clock) -> None:
    [result] = broker.enqueue([new("a", delay_ms=5000)])
    assert result.state == "scheduled"
    broker.promote("default")
    assert broker.fetch("default", 30, "w1") is None
    clock.advance(4.999)
    broker.promote("default")
    assert broker.fetch("default", 30, "w1") is None
    clock.advance(0.001)
    assert broker.promote("default") == (1, None)
    assert fetch(broker).id == "a"


def test_promote_reports_when_the_next_task_is_due(broker: Broker, clock: Clock) -> None:
    broker.enqueue([new("a", delay_ms=5000), new("b", delay_ms=2000)])
    assert broker.promote("default") == (0, 2.0)


def test_promote_moves_at_most_one_batch_per_call(
    broker: Broker, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskq_cli.protocol.broker.PROMOTE_BATCH", 3)
    broker.enqueue([new(str(i), delay_ms=1) for i in range(5)])
    clock.advance(1)
    assert broker.promote("default")[0] == 3
    assert broker.promote("default")[0] == 2


def test_an_expired_lease_is_recovered_as_a_failed_attempt(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    broker.enqueue([new("a")])
    fetch(broker, lease=10)
    clock.advance(9.9)
    assert broker.recover("default", DEFAULTS) == (0, 0), "a live lease is never recovered"
    clock.advance(0.2)
    assert broker.recover("default", DEFAULTS) == (1, 0)
    m = meta(raw, namespace, "a")
    assert m["state"] == "scheduled"
    assert isinstance(m["last_error"], dict) and m["last_error"]["type"] == "WorkerLost"
    delay = int(m["run_at"]) - clock.ms  # type: ignore[call-overload]
    assert 2500 <= delay <= 5000, "first retry backoff is in [base/2, base]"
    assert raw.hgetall(QueueKeys(namespace, "default").counters) == {"processed": "1", "failed": "1"}


def test_a_task_that_keeps_losing_its_worker_ends_dead(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    broker.enqueue([new("a", max_retries=1, backoff_base=1, backoff_max=1)])
    results = []
    for _ in range(2):
        fetch(broker, lease=1)
        clock.advance(2)
        results.append(broker.recover("default", DEFAULTS))
        clock.advance(2)
        broker.promote("default")
    assert results == [(1, 0), (0, 1)]
    assert meta(raw, namespace, "a")["state"] == "dead"


def test_renewal_keeps_a_long_task_from_being_recovered(broker: Broker, clock: Clock) -> None:
    broker.enqueue([new("a")])
    job = fetch(broker, lease=10)
    for _ in range(10):
        clock.advance(5)
        assert broker.renew({"default": [(job.id, job.token)]}, 10) == []
        assert broker.recover("default", DEFAULTS) == (0, 0)
    assert broker.ack(job, None, 600)


def test_a_late_worker_cannot_finish_or_fail_a_recovered_attempt(broker: Broker, clock: Clock) -> None:
    broker.enqueue([new("a")])
    old = fetch(broker, lease=1)
    clock.advance(2)
    broker.recover("default", DEFAULTS)
    clock.advance(10)
    broker.promote("default")
    new_attempt = fetch(broker, lease=30)
    assert new_attempt.token != old.token
    assert not broker.ack(old, None, 600)
    assert (
        broker.fail(old, {"type": "E", "message": "", "traceback": ""}, final=True, delay=0, max_retries=3)
        == ""
    )
    assert broker.renew({"default": [(old.id, old.token)]}, 30) == ["a"]
    assert not broker.requeue(old)
    assert broker.ack(new_attempt, None, 600), "the current attempt is untouched"


def test_requeue_returns_the_task_to_the_head_without_using_an_attempt(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    broker.enqueue([new("a"), new("b")])
    job = fetch(broker)
    assert job.id == "a"
    assert broker.requeue(job)
    m = meta(raw, namespace, "a")
    assert m["state"] == "pending" and m["attempts"] == 0
    again = fetch(broker)
    assert again.id == "a" and again.meta["attempts"] == 1


def test_custom_id_is_idempotent_while_unfinished(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    first = broker.enqueue([new("order-1", custom=True)])[0]
    again = broker.enqueue([new("order-1", custom=True)])[0]
    assert (again.id, again.state, again.duplicate) == ("order-1", "pending", True)
    job = fetch(broker)
    assert broker.enqueue([new("order-1", custom=True)])[0].state == "active"
    assert raw.llen(QueueKeys(namespace, "default").pending) == 0
    broker.ack(job, None, 600)
    reborn = broker.enqueue([new("order-1", custom=True)])[0]
    assert (reborn.state, reborn.duplicate) == ("pending", False)
    assert first.duplicate is False


def test_a_dead_custom_id_is_replaced_and_leaves_the_dead_set(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    broker.enqueue([new("x", custom=True)])
    broker.fail(
        fetch(broker), {"type": "E", "message": "", "traceback": ""}, final=True, delay=0, max_retries=3
    )
    k = QueueKeys(namespace, "default")
    assert raw.zcard(k.dead) == 1
    assert broker.enqueue([new("x", custom=True)])[0].duplicate is False
    assert raw.zcard(k.dead) == 0
    assert meta(raw, namespace, "x")["attempts"] == 0


def test_duplicates_inside_one_batch_are_added_once(broker: Broker, raw: redis.Redis, namespace: str) -> None:
    results = broker.enqueue([new("same", custom=True), new("same", custom=True)])
    assert [r.duplicate for r in results] == [False, True]
    assert raw.llen(QueueKeys(namespace, "default").pending) == 1


def test_plain_tasks_written_in_bulk_read_as_if_written_one_by_one(
    broker: Broker, raw: redis.Redis, namespace: str
) -> None:
    """enqueue.lua writes plain tasks in chunks (FLUSH_AT) and flushes them before any other task,
    which may read them: a custom id repeated across plain ones is still added once, pending keeps
    the input order across chunks, every record and payload is there."""
    tasks = [new(f"p{i}") for i in range(2500)]
    tasks[1200:1200] = [new("c", custom=True), new("later", delay_ms=60_000)]
    tasks.append(new("c", custom=True))
    results = broker.enqueue(tasks)
    assert [r.duplicate for r in results].count(True) == 1 and results[-1].duplicate
    assert [r.state for r in results[1200:1202]] == ["pending", "scheduled"]
    k = QueueKeys(namespace, "default")
    expected = [t.id for t in tasks if t.id != "later"][:-1]
    assert raw.lrange(k.pending, 0, -1) == expected[::-1]  # LPUSH: the newest first
    assert raw.hlen(k.tasks) == raw.hlen(k.payloads) == 2502
    record = meta(raw, namespace, "p2499")
    assert (record["id"], record["state"], record["attempts"], record["name"]) == ("p2499", "pending", 0, "t")
    assert json.loads(raw.hget(k.payloads, "p0")) == {"n": "p0"}


def test_a_batch_across_queues_keeps_input_order(broker: Broker, raw: redis.Redis, namespace: str) -> None:
    tasks = [new(f"t{i}", "a" if i % 2 else "b") for i in range(1203)]
    results = broker.enqueue(tasks)
    assert [r.id for r in results] == [t.id for t in tasks]
    assert [r.queue for r in results] == [t.queue for t in tasks]
    assert raw.llen(QueueKeys(namespace, "a").pending) == 601
    assert sorted(broker.known_queues()) == ["a", "b"]


def test_a_pending_entry_without_a_record_is_buried_as_malformed(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    k = QueueKeys(namespace, "default")
    raw.lpush(k.pending, '{"legacy": "body"}')
    broker.enqueue([new("good")])
    got = broker.fetch("default", 30, "w1")
    assert isinstance(got, Malformed)
    record = broker.find_task(got.dead_id)
    assert record is not None
    assert record.meta["name"] == "<malformed>" and record.meta["raw"] == '{"legacy": "body"}'
    assert record.meta["state"] == "dead" and record.meta["last_error"]["type"] == "MalformedMessage"
    assert fetch(broker).id == "good", "the queue keeps serving"


def test_a_corrupt_record_is_buried_with_its_raw_text(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    broker.enqueue([new("a")])
    raw.hset(QueueKeys(namespace, "default").tasks, "a", "{not json")
    got = broker.fetch("default", 30, "w1")
    assert isinstance(got, Malformed) and got.dead_id == "a"
    assert meta(raw, namespace, "a")["raw"] == "{not json"


def test_the_dead_set_is_trimmed_by_count(
    tq_small_dead: Broker, raw: redis.Redis, namespace: str, clock_small: Clock
) -> None:
    broker = tq_small_dead
    broker.enqueue([new(str(i)) for i in range(5)])
    for _ in range(5):
        broker.fail(
            fetch(broker), {"type": "E", "message": "", "traceback": ""}, final=True, delay=0, max_retries=0
        )
        clock_small.advance(1)
    k = QueueKeys(namespace, "default")
    assert raw.zrange(k.dead, 0, -1) == ["2", "3", "4"]
    assert raw.hexists(k.tasks, "0") is False, "trimmed records are deleted"
    assert raw.hexists(k.payloads, "0") is False


def test_the_dead_set_is_trimmed_by_age(
    tq_small_dead: Broker, raw: redis.Redis, namespace: str, clock_small: Clock
) -> None:
    broker = tq_small_dead
    broker.enqueue([new("old"), new("young")])
    broker.fail(
        fetch(broker), {"type": "E", "message": "", "traceback": ""}, final=True, delay=0, max_retries=0
    )
    clock_small.advance(3601)
    broker.fail(
        fetch(broker), {"type": "E", "message": "", "traceback": ""}, final=True, delay=0, max_retries=0
    )
    assert raw.zrange(QueueKeys(namespace, "default").dead, 0, -1) == ["young"]


def test_scripts_are_reloaded_after_the_script_cache_is_flushed(
    broker: Broker, raw: redis.Redis, redis_url: str, suite_redis_url: str, tmp_path: Path
) -> None:
    if redis_url == suite_redis_url:  # SCRIPT FLUSH is server-wide: not on the Redis other tests share
        server = RedisServer(tmp_path / "redis").start()
        tq, client = TaskQueue(redis_url=server.url, namespace="flush"), server.client()
        try:
            _enqueue_flush_and_fetch(tq.broker, client)
        finally:
            client.close()
            tq.close()
            server.stop()
    else:
        _enqueue_flush_and_fetch(broker, raw)


def _enqueue_flush_and_fetch(broker: Broker, raw: redis.Redis) -> None:
    broker.enqueue([new("a")])
    raw.script_flush()
    broker.enqueue([new("b")])
    raw.script_flush()
    assert broker.fetch("default", 30, "w1") is not None


def test_stats_count_each_state_and_the_oldest_pending(broker: Broker, clock: Clock) -> None:
    broker.enqueue([new("a"), new("b"), new("c", delay_ms=60_000)])
    clock.advance(5)
    job = fetch(broker)
    broker.fail(job, {"type": "E", "message": "", "traceback": ""}, final=True, delay=0, max_retries=0)
    [s] = broker.queue_stats(["default"])
    assert (s.pending, s.scheduled, s.active, s.dead, s.processed, s.failed) == (1, 1, 0, 1, 1, 1)
    assert s.oldest_pending_ms == clock.ms - 5000


def test_two_namespaces_never_see_each_other(redis_url: str, namespace: str) -> None:
    from taskq_cli import TaskQueue

    a = TaskQueue(redis_url=redis_url, namespace=namespace)
    b = TaskQueue(redis_url=redis_url, namespace=namespace + "-other")
    try:
        a.enqueue("t", {})
        assert b.broker.fetch("default", 30, "w") is None
        assert b.broker.known_queues() == []
    finally:
        b.broker.client.delete(*b.broker.client.keys(f"{namespace}-other:*") or ["-"])
        a.close()
        b.close()


@pytest.fixture
def tq_small_dead(redis_url: str, namespace: str) -> Broker:
    from taskq_cli import TaskQueue

    return TaskQueue(redis_url=redis_url, namespace=namespace, dead_max=3, dead_ttl=3600).broker


@pytest.fixture
def clock_small(tq_small_dead: Broker) -> Clock:
    fake = Clock(tq_small_dead.redis_time_ms())
    tq_small_dead.clock = fake
    return fake


def test_a_task_due_sooner_than_any_other_wakes_an_idle_worker(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    wake = QueueKeys(namespace, "default").wake
    broker.enqueue([new("later", delay_ms=10_000)])
    assert raw.lpop(wake) == "due", "the first scheduled task wakes a worker to re-plan"
    broker.enqueue([new("even-later", delay_ms=20_000)])
    assert raw.llen(wake) == 0, "a task due after the earliest one changes no plan"
    broker.enqueue([new("sooner", delay_ms=1_000)])
    assert raw.llen(wake) == 1


def test_the_wake_token_says_whether_a_promote_pass_is_wanted(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    """A plain enqueue's token ('1') asks the woken worker for a fetch only; a task due sooner than
    planned leaves 'due' (a promote pass too), which replaces a waiting '1' and is never replaced by
    one; there is never more than one token."""
    wake = QueueKeys(namespace, "default").wake
    one_server = not broker.cluster  # a cluster's Waker cannot tell tokens apart: each counts as due
    broker.enqueue([new("now")])
    assert raw.lrange(wake, 0, -1) == ["1"]
    if one_server:
        assert broker.wait_for_work(["default"], 5.0) == "1"
        assert broker.wait_for_work(["default"], 0.01) is None, "the token was taken"
    else:
        raw.delete(wake)
    broker.enqueue([new("now-too")])
    broker.enqueue([new("sooner", delay_ms=1_000)])
    assert raw.lrange(wake, 0, -1) == ["due"]
    broker.enqueue([new("now-again")])
    assert raw.lrange(wake, 0, -1) == ["due"]
    assert broker.wait_for_work(["default"], 5.0) == WAKE_DUE


def test_an_empty_queue_is_forgotten_by_recover_and_a_new_queue_past_the_bound_is_refused(
    broker: Broker,
) -> None:
    """Issue 13: the queue registry stays bounded (on a cluster the registry and each queue live in
    different slots, hence the two steps of forget_if_empty)."""
    from dataclasses import replace

    from taskq_cli.errors import UsageError

    broker.settings = replace(broker.settings, max_queues=2)
    broker.enqueue([new("a1", "a"), new("b1", "b")])
    with pytest.raises(UsageError, match="too many queues"):
        broker.enqueue([new("a2", "a"), new("c1", "c")])
    assert broker.known_queues() == ["a", "b"] and broker.records("a", ["a2"]) == [None]
    broker.cancel("b", "b1")  # b holds nothing now
    assert broker.recover("b", DEFAULTS) == (0, 0) and broker.recover("a", DEFAULTS) == (0, 0)
    assert broker.known_queues() == ["a"]
    broker.enqueue([new("c1", "c")])  # room again
    assert broker.known_queues() == ["a", "c"]
