"""Dependencies (`after=`), SPEC "Dependencies: chains, groups, chords", step by step on a real Redis
with the scripts' clock driven by the test: waiting, release through the outbox, failure
propagation, `dlq retry`, the crash windows of enqueue-then-link and ack-then-hand-off, and that
nothing is left behind."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.config import RetryDefaults
from taskq_cli.errors import AmbiguousId, UsageError
from taskq_cli.protocol import HANDED_OFF, Broker, Fetched
from taskq_cli.protocol.keys import QueueKeys
from taskq_cli.scheduler import Maintenance

from .conftest import Clock

DEFAULTS = RetryDefaults(max_retries=3, backoff_base=5.0, backoff_max=3600.0)


def take(broker: Broker, queue: str = "default") -> Fetched:
    got = broker.fetch(queue, 30.0, "w1")
    assert isinstance(got, Fetched), got
    return got


def run_one(broker: Broker, expect: str, queue: str = "default", result: object = None) -> str | bool:
    """Fetch the next task (it must be `expect`) and ack it; returns the ack's answer."""
    job = take(broker, queue)
    assert job.id == expect
    return broker.report([_ack(job, result)])[0]


def _ack(job: Fetched, result: object = None, ttl: float = 600.0) -> object:
    from taskq_cli.protocol import Ack

    return Ack(job, None if result is None else json.dumps(result), ttl)


def fail_final(broker: Broker, expect: str, queue: str = "default") -> None:
    job = take(broker, queue)
    assert job.id == expect
    error = {"type": "Boom", "message": "x", "traceback": ""}
    assert broker.fail(job, error, final=True, delay=None, max_retries=0) == "dead"


def state(tq: TaskQueue, task_id: str) -> str | None:
    task = tq.get_task(task_id)
    return None if task is None else task.state


def test_a_task_after_another_waits_and_is_released_when_it_is_done(tq: TaskQueue, broker: Broker) -> None:
    a = tq.enqueue("fetch", {"url": "u"})
    b = tq.enqueue("parse", {}, after=[a])
    assert state(tq, b) == "waiting"
    assert broker.fetch("default", 30.0, "w1").id == a  # type: ignore[union-attr]
    assert broker.fetch("default", 30.0, "w1") is None  # the waiting one is not handed out
    assert broker.dependencies.blocked_by("default", b) == [a]


def test_the_ack_of_a_task_with_dependents_hands_off_and_the_drain_releases_them(
    tq: TaskQueue, broker: Broker
) -> None:
    a = tq.enqueue("fetch", {})
    b = tq.enqueue("parse", {}, after=[a])
    assert run_one(broker, a) == HANDED_OFF
    assert state(tq, b) == "waiting"  # until the outbox is drained
    assert broker.dependencies.drain(["default"]) == 1
    assert state(tq, b) == "pending"
    assert broker.dependencies.drain(["default"]) == 0  # idempotent: nothing left
    assert run_one(broker, b) is True  # no dependents: a plain ack


def test_the_last_of_several_dependencies_in_other_queues_releases(tq: TaskQueue, broker: Broker) -> None:
    a = tq.enqueue("x", {}, queue="qa")
    b = tq.enqueue("x", {}, queue="qb")
    c = tq.enqueue("x", {}, queue="qc", after=[a, b])
    run_one(broker, a, "qa")
    broker.dependencies.drain(["qa"])
    assert state(tq, c) == "waiting"
    assert broker.dependencies.blocked_by("qc", c) == [b]
    run_one(broker, b, "qb")
    broker.dependencies.drain(["qb"])
    assert state(tq, c) == "pending"


def test_a_delayed_dependent_is_scheduled_on_release_when_its_delay_has_not_passed(
    tq: TaskQueue, broker: Broker
) -> None:
    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {}, after=[a], delay=3600)
    run_one(broker, a)
    broker.dependencies.drain(["default"])
    assert state(tq, b) == "scheduled"


def test_a_dependency_already_done_at_enqueue_releases_at_once(tq: TaskQueue, broker: Broker) -> None:
    a = tq.enqueue("x", {})
    run_one(broker, a)  # no dependents yet: a plain ack
    b = tq.submit([_request("x", after=[a])])[0]
    assert b.state == "pending"
    assert state(tq, b.id) == "pending"


def _request(name: str, **options: object) -> object:
    from taskq_cli.producer import EnqueueRequest

    return EnqueueRequest(name, {}, **options)  # type: ignore[arg-type]


def test_unknown_dead_or_ambiguous_dependencies_are_refused_and_nothing_is_written(
    tq: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str
) -> None:
    with pytest.raises(UsageError, match="no task nope"):
        tq.enqueue("x", {}, after=["nope"])
    d = tq.enqueue("x", {})
    fail_final(broker, d)
    with pytest.raises(UsageError, match="is dead"):
        tq.enqueue("x", {}, after=[d])
    tq.enqueue("x", {}, task_id="twin", queue="q1")
    tq.enqueue("x", {}, task_id="twin", queue="q2")
    with pytest.raises(AmbiguousId):
        tq.enqueue("x", {}, after=["twin"])
    assert raw.zcard(QueueKeys(namespace, "default").blocked) == 0
    assert raw.hlen(QueueKeys(namespace, "default").tasks) == 1


def test_a_batch_may_name_earlier_tasks_of_it_but_never_later_ones(tq: TaskQueue) -> None:
    ids = tq.enqueue_many([("x", {}, {"task_id": "first"}), ("x", {}, {"after": ["first"]})])
    assert state(tq, ids[1]) == "waiting"
    with pytest.raises(UsageError, match="not enqueued before"):
        tq.enqueue_many([("x", {}, {"after": ["later"]}), ("x", {}, {"task_id": "later"})])
    with pytest.raises(UsageError, match="itself"):
        tq.enqueue("x", {}, task_id="self", after=["self"])


def test_a_dead_dependency_buries_its_dependents_recursively(tq: TaskQueue, broker: Broker) -> None:
    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {}, after=[a], queue="other")
    c = tq.enqueue("x", {}, after=[b])
    fail_final(broker, a)
    broker.dependencies.drain(["default"])
    for task_id in (b, c):
        task = tq.get_task(task_id)
        assert task is not None and task.state == "dead"
        assert task.last_error is not None and task.last_error.type == "DependencyFailed"
    assert a in tq.get_task(b).last_error.message  # type: ignore[union-attr]
    assert b in tq.get_task(c).last_error.message  # type: ignore[union-attr]


def test_a_cancelled_dependency_buries_its_dependents(tq: TaskQueue, broker: Broker) -> None:
    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {}, after=[a])
    c = tq.enqueue("x", {}, after=[b], queue="other")
    d = tq.enqueue("x", {}, after=[c])
    assert broker.cancel("default", b) == "waiting"  # a waiting task can be cancelled itself
    broker.dependencies.drain(["default"])
    assert state(tq, b) is None
    for task_id, named in ((c, b), (d, c)):  # and so do its own dependents, recursively
        task = tq.get_task(task_id)
        assert task is not None and task.state == "dead"
        assert task.last_error is not None and task.last_error.type == "DependencyFailed"
        assert named in task.last_error.message
    assert "cancelled" in tq.get_task(c).last_error.message  # type: ignore[union-attr]
    assert broker.cancel("default", a) == "pending"  # its link to b is stale: telling b is a no-op
    broker.dependencies.drain(["default"])
    assert broker.dependencies.drain(["default"]) == 0


def test_dlq_retry_of_a_dependent_waits_again_for_what_is_not_done(tq: TaskQueue, broker: Broker) -> None:
    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {})
    c = tq.enqueue("x", {}, after=[a, b])
    run_one(broker, a)
    fail_final(broker, b)
    broker.dependencies.drain(["default"])
    assert state(tq, c) == "dead"
    assert broker.dlq_retry("default", [b]) == ["ok"]
    assert broker.dlq_retry("default", [c]) == ["ok"]
    assert state(tq, c) == "waiting"
    assert broker.dependencies.blocked_by("default", c) == [b]  # a is done: not waited for again
    run_one(broker, b)
    broker.dependencies.drain(["default"])
    assert state(tq, c) == "pending"


def test_a_dependent_retried_while_its_dependency_is_still_dead_ends_dead_again(
    tq: TaskQueue, broker: Broker
) -> None:
    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {}, after=[a])
    fail_final(broker, a)
    broker.dependencies.drain(["default"])
    broker.dlq_retry("default", [b])
    assert state(tq, b) == "dead"


def test_results_are_kept_while_dependents_wait_then_expire_after_their_ttl(
    tq: TaskQueue, broker: Broker, clock: Clock, raw: redis.Redis, namespace: str
) -> None:
    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {}, after=[a])
    job = take(broker)
    broker.report([_ack(job, {"v": 1}, ttl=10)])
    done = QueueKeys(namespace, "default").done
    assert float(raw.zscore(done, a) or 0) > clock.ms + 10**12  # kept: no expiry while b waits
    clock.advance(60)  # longer than its ttl: still kept
    Maintenance(broker, DEFAULTS).tick(["nothing-here"])
    broker.promote("default")
    assert tq.result(a) == {"v": 1}
    broker.dependencies.drain(["default"])
    assert float(raw.zscore(done, a) or 0) == clock.ms + 10_000  # the ttl starts at the release
    assert state(tq, b) == "pending"


def test_a_worker_lost_between_ack_and_hand_off_delays_the_release_never_loses_it(
    tq: TaskQueue, broker: Broker
) -> None:
    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {}, after=[a])
    assert run_one(broker, a) == HANDED_OFF  # ...and nobody drains
    Maintenance(broker, DEFAULTS).tick(["default"])  # any worker's or scheduler's next pass
    assert state(tq, b) == "pending"


def test_a_producer_lost_between_enqueue_and_link_is_linked_again_by_maintenance(
    tq: TaskQueue, broker: Broker, clock: Clock, raw: redis.Redis, namespace: str
) -> None:
    done_dep = tq.enqueue("x", {})
    run_one(broker, done_dep, result=1)
    a = tq.enqueue("x", {})
    run_one_fetch = take(broker)
    assert run_one_fetch.id == a
    # the producer wrote b waiting and died before linking it (no dependents:<a> entry)
    broker.dependencies.link = lambda links: {}  # type: ignore[method-assign]
    b = tq.enqueue("x", {}, after=[a, done_dep])
    del broker.dependencies.link
    k = QueueKeys(namespace, "default")
    assert raw.exists(k.dependents(a)) == 0 and raw.zscore(k.unlinked, b) is not None
    Maintenance(broker, DEFAULTS).tick(["default"])
    assert raw.zscore(k.unlinked, b) is not None  # within its grace: the producer may be linking
    clock.advance(3)
    Maintenance(broker, DEFAULTS).tick(["default"])
    assert raw.zscore(k.unlinked, b) is None and raw.exists(k.dependents(a)) == 1
    assert broker.dependencies.blocked_by("default", b) == [a]  # the done one counted at once
    assert broker.report([_ack(run_one_fetch)])[0] == HANDED_OFF
    broker.dependencies.drain(["default"])
    assert state(tq, b) == "pending"


def test_concurrent_drains_release_once_and_leave_no_bookkeeping_behind(
    tq: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str
) -> None:
    parents = tq.enqueue_many([("x", {}) for _ in range(5)])
    child = tq.enqueue("x", {}, after=parents, queue="callback")
    for _ in parents:
        job = take(broker)
        broker.report([_ack(job, ttl=0)])
    other = TaskQueue(redis_url=tq.settings.redis_url, namespace=namespace)
    try:
        other.broker.dependencies.drain(["default"])
        broker.dependencies.drain(["default"])
    finally:
        other.close()
    assert raw.llen(QueueKeys(namespace, "callback").pending) == 1
    run_one(broker, child, "callback")
    leftovers = [
        key
        for key in raw.scan_iter(match=f"{namespace}:*")
        if any(part in key for part in ("deps:", "dependents:", "outbox", "unlinked", "blocked"))
    ]
    assert leftovers == []


def test_a_waiting_task_blocks_its_custom_id_and_its_unique_key(tq: TaskQueue) -> None:
    a = tq.enqueue("x", {})
    tq.enqueue("x", {}, after=[a], task_id="w")
    again = tq.submit([_request("x", after=[a], task_id="w")])[0]
    assert again.duplicate and again.state == "waiting"
    tq.enqueue("x", {}, after=[a], unique_key="k")
    held = tq.submit([_request("x", unique_key="k")])[0]
    assert held.duplicate and held.state == "waiting"


def test_aenqueue_takes_after_too(tq: TaskQueue) -> None:
    async def go() -> None:
        a = await tq.aenqueue("x", {})
        b = await tq.aenqueue("x", {}, after=[a])
        assert state(tq, b) == "waiting"
        with pytest.raises(UsageError):
            await tq.aenqueue("x", {}, after=["missing"])
        await tq.aclose()

    asyncio.run(go())


def test_doctor_names_waiting_tasks_stuck_on_a_dependency_that_no_longer_exists(
    tq: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str
) -> None:
    from taskq_cli.doctor import check_dependencies
    from taskq_cli.protocol import probes

    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {}, after=[a])
    now = broker.redis_time_ms()
    assert (
        check_dependencies(probes.dependency_facts(broker, ["default"], now - 10_000), {}, now)[0].status
        == "ok"
    )
    raw.hdel(QueueKeys(namespace, "default").tasks, a)  # deleted by hand: b would wait forever
    [finding] = check_dependencies(probes.dependency_facts(broker, ["default"], now - 10_000), {}, now)
    assert finding.status == "fail" and b in finding.message and a in finding.message


def test_doctor_names_outcomes_nobody_handed_off(tq: TaskQueue, broker: Broker, clock: Clock) -> None:
    from taskq_cli.doctor import check_dependencies
    from taskq_cli.protocol import probes

    a = tq.enqueue("x", {})
    tq.enqueue("x", {}, after=[a])
    run_one(broker, a)  # the worker died before the hand-off, and nothing maintains the queue
    clock.advance(30)
    facts = probes.dependency_facts(broker, ["default"], clock.ms - 10_000)
    [finding] = check_dependencies(facts, {}, clock.ms)
    assert finding.status == "fail" and "not told" in finding.message and "no live worker" in finding.message


def test_a_done_dependency_whose_record_expired_is_refused(tq: TaskQueue, broker: Broker) -> None:
    a = tq.enqueue("x", {})
    job = take(broker)
    broker.report([_ack(job, ttl=0)])  # a result_ttl of 0: the record goes at once
    with pytest.raises(UsageError, match="expired"):
        tq.enqueue("x", {}, after=[a])


def _bookkeeping(raw: redis.Redis, namespace: str) -> list[str]:
    parts = ("deps:", "dependents:", "unlink:", "outbox", "unlinked", "blocked")
    return sorted(k for k in raw.scan_iter(match=f"{namespace}:*") if any(p in k for p in parts))


def test_a_cancelled_waiting_task_leaves_its_dependencies_and_their_hand_off_never_names_it(
    tq: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str
) -> None:
    a = tq.enqueue("x", {}, queue="qa")
    b = tq.enqueue("x", {})
    tq.enqueue("x", {}, after=[a, b], task_id="c")
    assert broker.cancel("default", "c") == "waiting"
    assert (
        raw.exists(QueueKeys(namespace, "qa").dependents(a), QueueKeys(namespace, "default").dependents(b))
        == 0
    )
    assert _bookkeeping(raw, namespace) == []  # memory stays bounded: nothing of c is left
    tq.enqueue("x", {}, after=[b], task_id="c")  # the id again, now after b only
    fail_final(broker, a, "qa")
    broker.dependencies.drain(["qa"])
    assert state(tq, "c") == "waiting"  # a's death is no concern of the new c
    run_one(broker, b)
    broker.dependencies.drain(["default"])
    assert state(tq, "c") == "pending"


def test_clearing_a_queue_unlinks_its_waiting_tasks_from_dependencies_in_other_queues(
    tq: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str
) -> None:
    a = tq.enqueue("x", {}, queue="qa")
    tq.enqueue("x", {}, after=[a], queue="qc")
    broker.clear("qc")
    assert raw.exists(QueueKeys(namespace, "qa").dependents(a)) == 0
    assert _bookkeeping(raw, namespace) == []
    assert run_one(broker, a, "qa") is True  # no dependents left: a plain ack, nothing to hand off


def test_a_stale_link_never_buries_a_task_that_does_not_wait_for_that_dependency(
    tq: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str
) -> None:
    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {})
    c = tq.enqueue("x", {}, after=[b])
    raw.sadd(QueueKeys(namespace, "default").dependents(a), f"default {c}")  # as a lost unlink leaves it
    fail_final(broker, a)
    broker.dependencies.drain(["default"])
    assert state(tq, c) == "waiting"
    k = QueueKeys(namespace, "default")
    assert _bookkeeping(raw, namespace) == sorted([k.blocked, k.deps(c), k.dependents(b)])


def test_a_dependency_retried_before_its_death_is_handed_off_keeps_its_dependents_waiting(
    tq: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str
) -> None:
    a = tq.enqueue("x", {}, queue="qa")
    b = tq.enqueue("x", {}, after=[a])
    fail_final(broker, a, "qa")  # ...and the worker died before the hand-off
    assert broker.dlq_retry("qa", [a]) == ["ok"]  # before any drain
    Maintenance(broker, DEFAULTS).tick(["qa", "default"])
    assert state(tq, b) == "waiting"  # a is not dead now: b waits for how it ends
    assert run_one(broker, a, "qa") == HANDED_OFF
    broker.dependencies.drain(["qa"])
    assert state(tq, b) == "pending"
    assert _bookkeeping(raw, namespace) == []


@pytest.mark.parametrize("outcome", ["done", "dead"])
def test_a_custom_id_taken_again_before_its_hand_off_keeps_each_outcome_with_its_own_dependents(
    tq: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str, outcome: str
) -> None:
    tq.enqueue("x", {}, queue="qp", task_id="p")
    c = tq.enqueue("x", {}, after=["p"])
    if outcome == "done":
        assert run_one(broker, "p", "qp") == HANDED_OFF  # ...and nobody drained yet
    else:
        fail_final(broker, "p", "qp")
    again = tq.submit([_request("x", queue="qp", task_id="p")])[0]
    assert not again.duplicate and again.state == "pending"  # a finished id makes a new task
    d = tq.enqueue("x", {}, after=["p"])  # after the new p
    Maintenance(broker, DEFAULTS).tick(["qp", "default"])
    assert state(tq, c) == ("pending" if outcome == "done" else "dead")  # the earlier p's outcome
    assert state(tq, d) == "waiting"  # the new p has not ended
    if outcome == "done":
        fail_final(broker, "p", "qp")
    else:
        assert run_one(broker, "p", "qp") == HANDED_OFF
    Maintenance(broker, DEFAULTS).tick(["qp", "default"])
    assert state(tq, d) == ("dead" if outcome == "done" else "pending")  # the new p's outcome
    assert state(tq, c) == ("pending" if outcome == "done" else "dead")  # untouched by it
    leftovers = [k for k in _bookkeeping(raw, namespace) if "blocked" not in k]
    assert leftovers == []


def test_a_cancelled_waiting_id_taken_again_before_its_unlink_is_drained_keeps_the_new_links(
    tq: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = tq.enqueue("x", {}, queue="qa")
    b = tq.enqueue("x", {}, queue="qa")
    tq.enqueue("x", {}, after=[a], task_id="c")
    with monkeypatch.context() as patched:  # the canceller dies before its drain
        patched.setattr(broker.dependencies, "drain", lambda *args, **kwargs: 0)
        assert broker.cancel("default", "c") == "waiting"
    tq.enqueue("x", {}, after=[a, b], task_id="c")  # the id again, after a and b
    Maintenance(broker, DEFAULTS).tick(["qa", "default"])
    ref = "default c"
    assert raw.smembers(QueueKeys(namespace, "qa").dependents(a)) == {ref}  # the new c's link stays
    run_one(broker, a, "qa")
    run_one(broker, b, "qa")
    broker.dependencies.drain(["qa"])
    assert state(tq, "c") == "pending"
    assert _bookkeeping(raw, namespace) == []


def test_a_group_is_one_batch_of_independent_tasks_and_a_chain_waits_step_by_step(
    tq: TaskQueue, broker: Broker
) -> None:
    ids = tq.group([("resize", {"size": s}) for s in (64, 128, 256)])
    assert [state(tq, i) for i in ids] == ["pending"] * 3  # independent: none waits for another
    chained = tq.chain([("fetch", {"url": "u"}), ("parse", {}), ("store", {}, {"queue": "other"})])
    assert [state(tq, i) for i in chained] == ["pending", "waiting", "waiting"]
    lists = broker.dependencies.after([("default", chained[1]), ("other", chained[2])])
    assert lists == [[f"default {chained[0]}"], [f"default {chained[1]}"]]  # each after the one before
    done = tq.enqueue("notify", {}, after=ids)  # a chord
    assert broker.dependencies.blocked_by("default", done) == sorted(ids)
    with pytest.raises(UsageError):
        tq.group([])


def test_dependency_results_are_the_results_of_its_dependencies_by_id(tq: TaskQueue, broker: Broker) -> None:
    a = tq.enqueue("x", {}, queue="qa")
    b = tq.enqueue("x", {})
    c = tq.enqueue("x", {}, after=[a, b])
    run_one(broker, a, "qa", result={"v": 1})
    run_one(broker, b)  # a handler that returned nothing
    broker.dependencies.drain(["qa", "default"])
    assert broker.dependencies.results([("default", c)]) == [{a: {"v": 1}, b: None}]
