"""SPEC "Results and the asyncio client": result()/aresult() and their outcomes, the notification
that wakes every waiter, a waiter whose connection drops, and the asyncio enqueue calls. Against the
real Redis; the end-to-end ones with a real worker process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from taskq_cli import ResultTimeout, TaskFailed, TaskNotFound, TaskQueue, UsageError
from taskq_cli.protocol import Broker
from taskq_cli.protocol.waits import WAIT_BLOCK_S
from tests.conftest import wait_until
from tests.support.servers import RedisServer

CRASHY = "tests.apps.crashy"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this module's own: its tests count blocked clients (CLIENT LIST), kill one
    and count BLMOVE calls (INFO commandstats), all server-wide, which the waits of tests running
    beside them (`pytest -n`) on the shared Redis would disturb."""
    server = RedisServer(tmp_path_factory.mktemp("results-redis")).start()
    yield server.url
    server.stop()


def finish(broker: Broker, result: Any = None, *, fail: bool = False) -> None:
    """Play a worker: take the next task of `default` and end it done (or dead)."""
    job = broker.fetch("default", 30, "w-test")
    assert job is not None and not hasattr(job, "reason")
    if fail:
        error = {"type": "ValueError", "message": "bad input", "traceback": ""}
        broker.fail(job, error, final=True, delay=None, max_retries=0)  # type: ignore[arg-type]
    else:
        broker.ack(job, json.dumps(result), 60)  # type: ignore[arg-type]


class Waiter(threading.Thread):
    """tq.result(...) on a thread of its own; `.outcome` is what it returned or raised."""

    def __init__(self, tq: TaskQueue, task_id: str, wait: float) -> None:
        super().__init__(daemon=True)
        self.tq, self.task_id, self.wait = tq, task_id, wait
        self.outcome: Any = None
        self.returned_at = 0.0

    def run(self) -> None:
        try:
            self.outcome = self.tq.result(self.task_id, wait=self.wait)
        except Exception as exc:  # the test looks at it
            self.outcome = exc
        self.returned_at = time.monotonic()


# -- outcomes --------------------------------------------------------------------------------------


def test_result_of_a_done_task_is_the_handlers_value(tq, broker):
    task_id = tq.enqueue("anything", {"x": 1})
    finish(broker, {"answer": 42})
    assert tq.result(task_id) == {"answer": 42}
    assert tq.result(task_id, wait=5) == {"answer": 42}


def test_result_of_a_task_done_without_a_result_is_none(tq, broker, raw, namespace):
    task_id = tq.enqueue("anything")
    job = broker.fetch("default", 30, "w")
    broker.ack(job, None, 60)  # type: ignore[arg-type]
    assert tq.result(task_id) is None


def test_result_of_a_dead_task_raises_task_failed_with_the_last_error(tq, broker):
    task_id = tq.enqueue("anything")
    finish(broker, fail=True)
    with pytest.raises(TaskFailed) as caught:
        tq.result(task_id, wait=5)
    assert caught.value.task.id == task_id
    assert caught.value.task.last_error.type == "ValueError"
    assert caught.value.task.last_error.message == "bad input"


def test_result_of_an_unfinished_task_without_wait_raises_result_timeout_at_once(tq):
    task_id = tq.enqueue("anything")
    started = time.monotonic()
    with pytest.raises(ResultTimeout) as caught:
        tq.result(task_id)
    assert isinstance(caught.value, TimeoutError)
    assert time.monotonic() - started < 1


def test_result_waits_at_most_wait_seconds(tq):
    task_id = tq.enqueue("anything")
    started = time.monotonic()
    with pytest.raises(ResultTimeout):
        tq.result(task_id, wait=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5


def test_result_of_an_unknown_id_raises_task_not_found(tq):
    with pytest.raises(TaskNotFound) as caught:
        tq.result("no-such-task", wait=5)
    assert isinstance(caught.value, LookupError)


def test_result_of_a_done_task_whose_record_expired_raises_task_not_found(tq, broker):
    task_id = tq.enqueue("anything")
    job = broker.fetch("default", 30, "w")
    broker.ack(job, json.dumps(1), 0)  # type: ignore[arg-type]  # result_ttl 0: forgotten at once
    with pytest.raises(TaskNotFound):
        tq.result(task_id, wait=1)


# -- notification: every waiter wakes at once, nothing stays behind -------------------------------------


def test_every_waiter_of_a_task_wakes_when_it_ends_not_after_a_block(tq, broker, raw, namespace):
    task_id = tq.enqueue("anything")
    waiters = [Waiter(tq, task_id, wait=30) for _ in range(5)]
    for w in waiters:
        w.start()
    outcome_key = f"{namespace}:{{default}}:outcome:{task_id}"
    wait_until(lambda: sum(1 for c in raw.client_list() if c.get("cmd") == "blmove") >= 5)
    ended = time.monotonic()
    finish(broker, "hello")
    for w in waiters:
        w.join(10)
        assert w.outcome == "hello"
        # woken by the notification, not by the end of a block (WAIT_BLOCK_S)
        assert w.returned_at - ended < WAIT_BLOCK_S / 2
    # nothing grows: the marker and the waiting flag expire, and none lives longer than its TTL
    for key in raw.scan_iter(match=f"{namespace}:*:*:{task_id}"):
        assert 0 < raw.pttl(key) <= 15_000, key
    assert raw.exists(outcome_key)


def test_a_task_nobody_waits_for_leaves_no_notification_key(tq, broker, raw, namespace):
    task_id = tq.enqueue("anything")
    finish(broker, 1)
    assert tq.result(task_id) == 1
    assert not list(raw.scan_iter(match=f"{namespace}:*:outcome:*"))
    assert not list(raw.scan_iter(match=f"{namespace}:*:waiting:*"))


def test_a_waiter_whose_connection_drops_reads_the_record_again(tq, broker, raw, namespace):
    task_id = tq.enqueue("anything")
    waiter = Waiter(tq, task_id, wait=30)
    waiter.start()

    def blocked() -> list[dict[str, Any]]:
        return [c for c in raw.client_list() if c.get("cmd") == "blmove"]

    wait_until(blocked)
    killed = blocked()[0]["id"]
    raw.client_kill_filter(_id=killed)
    wait_until(lambda: [c for c in blocked() if c["id"] != killed])  # read the record, blocks again
    finish(broker, "after the drop")
    waiter.join(10)
    assert waiter.outcome == "after the drop"


def test_a_retried_dead_task_does_not_wake_its_new_waiters_with_the_old_marker(tq, broker, raw, namespace):
    task_id = tq.enqueue("anything")
    first = Waiter(tq, task_id, wait=30)
    first.start()
    wait_until(lambda: any(c.get("cmd") == "blmove" for c in raw.client_list()))
    finish(broker, fail=True)
    first.join(10)
    assert isinstance(first.outcome, TaskFailed)
    assert broker.dlq_retry("default", [task_id]) == ["ok"]
    before = blmove_calls(raw)
    with pytest.raises(ResultTimeout):
        tq.result(task_id, wait=0.3)  # pending again: the old marker is gone, so it really blocks
    assert blmove_calls(raw) - before <= 2  # a stale marker would wake it again and again


def blmove_calls(raw: redis.Redis) -> int:
    return int(raw.info("commandstats").get("cmdstat_blmove", {}).get("calls", 0))


def test_a_waiter_learns_at_once_when_recovery_buries_the_task(tq, broker, raw, clock):
    task_id = tq.enqueue("anything", max_retries=0)
    assert broker.fetch("default", 1, "w-lost") is not None
    waiter = Waiter(tq, task_id, wait=30)
    waiter.start()
    wait_until(lambda: any(c.get("cmd") == "blmove" for c in raw.client_list()))
    clock.advance(2)  # the lease ran out: its worker is gone
    ended = time.monotonic()
    assert broker.recover("default", tq.settings.defaults) == (0, 1)
    waiter.join(10)
    assert isinstance(waiter.outcome, TaskFailed)
    assert waiter.outcome.task.last_error.type == "WorkerLost"
    assert waiter.returned_at - ended < WAIT_BLOCK_S / 2


def test_a_waiter_learns_at_once_that_its_task_was_cancelled(tq, broker, raw):
    task_id = tq.enqueue("anything")
    waiter = Waiter(tq, task_id, wait=30)
    waiter.start()
    wait_until(lambda: any(c.get("cmd") == "blmove" for c in raw.client_list()))
    ended = time.monotonic()
    assert broker.cancel("default", task_id) == "pending"
    waiter.join(10)
    assert isinstance(waiter.outcome, TaskNotFound)
    assert waiter.returned_at - ended < WAIT_BLOCK_S / 2


# -- with a real worker -------------------------------------------------------------------------------


def test_result_waits_for_a_real_worker(tq, spawn):
    task_id = tq.enqueue("ok", {"value": 7})
    spawn("worker", "--app", CRASHY, "--concurrency", "1")
    assert tq.result(task_id, wait=30) == {"value": 7}


def test_result_of_a_task_a_real_worker_gives_up_on_raises_task_failed(tq, spawn):
    task_id = tq.enqueue("give_up")
    spawn("worker", "--app", CRASHY, "--concurrency", "1")
    with pytest.raises(TaskFailed) as caught:
        tq.result(task_id, wait=30)
    assert caught.value.task.last_error.type == "Fail"


def test_a_caller_waiting_while_its_worker_is_killed_gets_the_result_of_the_retry(tq, spawn, raw, namespace):
    task_id = tq.enqueue("sleep_first", {"seconds": 60})
    first = spawn("worker", "--app", CRASHY, "--concurrency", "1", "--lease", "1s")
    waiter = Waiter(tq, task_id, wait=60)
    waiter.start()
    wait_until(lambda: any(r.endswith(":start") for r in raw.lrange(f"{namespace}:test:runs", 0, -1)), 15)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(5)
    spawn("worker", "--app", CRASHY, "--concurrency", "1", "--lease", "1s")
    waiter.join(60)
    assert waiter.outcome == 2  # the retry's attempt number


# -- asyncio ------------------------------------------------------------------------------------------


def run(coro_factory: Callable[[], Any]) -> Any:
    return asyncio.run(coro_factory())


def test_aenqueue_writes_the_same_task_as_enqueue(tq, broker, raw, namespace):
    @tq.task(name="send")
    def send(to: str, n: int = 1) -> None: ...

    async def main() -> tuple[str, str, list[str]]:
        one = await tq.aenqueue("send", {"to": "a"}, delay=10, max_retries=2)
        two = await send.aenqueue(to="b", queue="mail", task_id="custom-1")
        many = await tq.aenqueue_many([("send", {"to": "c"}), ("send", {"to": "d"}, {"queue": "mail"})])
        await tq.aclose()
        return one, two, many

    one, two, many = run(main)
    a = tq.get_task(one)
    assert a is not None and a.state == "scheduled" and a.max_retries == 2 and a.payload == {"to": "a"}
    b = tq.get_task(two, "mail")
    assert two == "custom-1" and b is not None and b.state == "pending"
    assert [tq.get_task(i).payload["to"] for i in many] == ["c", "d"]  # type: ignore[union-attr]
    assert raw.smembers(f"{namespace}:queues") == {"default", "mail"}


def test_aenqueue_validates_like_enqueue_and_writes_nothing(tq, raw, namespace):
    @tq.task(name="send")
    def send(to: str) -> None: ...

    async def main() -> None:
        try:
            with pytest.raises(UsageError):
                await tq.aenqueue("send", {"wrong": 1})
            with pytest.raises(UsageError):
                await tq.aenqueue_many([("send", {"to": "x"}), ("send", {})])
        finally:
            await tq.aclose()

    run(main)
    assert not list(raw.scan_iter(match=f"{namespace}:*"))


def test_aresult_outcomes(tq, broker):
    done_id = tq.enqueue("anything")
    finish(broker, [1, 2])
    dead_id = tq.enqueue("anything")
    finish(broker, fail=True)
    running_id = tq.enqueue("anything")

    async def main() -> None:
        try:
            assert await tq.aresult(done_id, wait=5) == [1, 2]
            with pytest.raises(TaskFailed):
                await tq.aresult(dead_id, wait=5)
            with pytest.raises(ResultTimeout):
                await tq.aresult(running_id, wait=0.2)
            with pytest.raises(TaskNotFound):
                await tq.aresult("nope")
        finally:
            await tq.aclose()

    run(main)


def test_aresult_wakes_when_the_task_ends_without_blocking_the_loop(tq, broker):
    task_id = tq.enqueue("anything")

    async def main() -> tuple[Any, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        waiting = asyncio.create_task(tq.aresult(task_id, wait=30))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(finish, broker, "late")
        value = await asyncio.wait_for(waiting, WAIT_BLOCK_S / 2)
        tick.cancel()
        await tq.aclose()
        return value, ticks

    value, ticks = run(main)
    assert value == "late"
    assert ticks >= 10  # the loop kept running while aresult waited


def test_one_pool_per_event_loop(tq):
    async def pool_of() -> int:
        first = tq.abroker
        assert tq.abroker is first
        await tq.aenqueue("anything")
        await tq.aclose()
        return id(first)

    assert run(pool_of) != 0
    assert tq._abrokers == {}


def test_concurrent_aenqueue_calls_are_written_together_each_with_its_own_answer(redis_url, namespace, raw):
    tq = TaskQueue(redis_url=redis_url, namespace=namespace, max_queues=2)
    tq.enqueue("t", queue="other")
    tq.enqueue("t", task_id="first")  # the namespace has its 2 queues

    async def main() -> list[Any]:
        try:
            calls = [tq.aenqueue("t", {"n": n}) for n in range(50)]
            calls += [tq.aenqueue("t", task_id="same"), tq.aenqueue("t", task_id="same")]
            calls.append(tq.aenqueue("t", queue="third"))  # past the limit: refused alone
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await tq.aclose()

    answers = run(main)
    ids = answers[:50]
    assert len(set(ids)) == 50 and all(isinstance(i, str) for i in ids)
    assert answers[50] == answers[51] == "same"
    assert isinstance(answers[52], UsageError) and "too many queues" in str(answers[52])
    assert raw.llen(f"{namespace}:{{default}}:pending") == 52
    tq.close()


def test_the_async_calls_never_touch_the_sync_client(tq, broker, monkeypatch):
    # no blocking call on the loop: enqueue, lookup and wait all go through redis.asyncio
    done_id = tq.enqueue("anything")
    finish(broker, "v")
    monkeypatch.setattr(TaskQueue, "broker", property(lambda self: pytest.fail("sync client used")))

    async def main() -> Any:
        try:
            await tq.aenqueue("anything")
            await tq.aenqueue_many([("anything", {})])
            return await tq.aresult(done_id, wait=5)
        finally:
            await tq.aclose()

    assert run(main) == "v"


def test_a_durable_aenqueue_without_a_replica_raises_not_replicated(tq, raw, namespace, monkeypatch):
    from taskq_cli.protocol import NotReplicated, aio

    monkeypatch.setattr(aio, "DURABLE_TIMEOUT", 0.2)  # the test Redis has no replica

    async def main() -> None:
        try:
            with pytest.raises(NotReplicated):
                await tq.aenqueue("anything", durable=True)
        finally:
            await tq.aclose()

    run(main)
    assert raw.llen(f"{namespace}:{{default}}:pending") == 1  # written, not confirmed
