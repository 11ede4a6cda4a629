"""SPEC "Limits", per key: `tq.limiter(key, rate=..., concurrency=...)` on Redis's clock (a fake
clock drives the protocol), RateLimited rescheduling the task without using an attempt, and a real
worker whose handlers pass a limiter."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable

import pytest
import redis

from taskq_cli import RateLimited, TaskQueue
from taskq_cli.errors import UsageError
from taskq_cli.limiter import Limiter
from taskq_cli.protocol import Broker, Fetched, Postpone
from taskq_cli.protocol.keys import QueueKeys

from .conftest import Clock, wait_until


def test_a_rate_allows_n_passes_in_any_window(tq: TaskQueue, clock: Clock) -> None:
    for _ in range(2):
        with tq.limiter("crm:1", rate="2/10s"):
            pass
    clock.advance(4)
    with pytest.raises(RateLimited) as over, tq.limiter("crm:1", rate="2/10s"):
        raise AssertionError("the block must not run")
    assert over.value.retry_in == pytest.approx(6.0, abs=0.01)  # when the first pass leaves the window
    with tq.limiter("crm:2", rate="2/10s"):  # another key, another limiter
        pass
    clock.advance(6)
    with tq.limiter("crm:1", rate="2/10s"):
        pass


def test_concurrency_allows_n_blocks_at_once(tq: TaskQueue) -> None:
    with tq.limiter("api", concurrency=2), tq.limiter("api", concurrency=2):
        with pytest.raises(RateLimited) as over, tq.limiter("api", concurrency=2):
            pass
        assert 0 < over.value.retry_in <= 1.0
    with tq.limiter("api", concurrency=2):  # the permits came back on leaving the blocks
        pass


def test_a_permit_whose_holder_died_comes_back_with_its_lease(tq: TaskQueue, clock: Clock) -> None:
    held = Limiter(tq.broker, "api", None, 1)
    held.__enter__()  # its holder dies: the block is never left and nothing renews the permit
    from taskq_cli import limiter

    limiter._renewer(tq.broker).drop("api", held.pass_id)
    clock.advance(29)
    with pytest.raises(RateLimited), tq.limiter("api", concurrency=1):
        pass
    clock.advance(1.5)
    with tq.limiter("api", concurrency=1):
        pass


def test_limiter_keys_are_namespace_wide(tq: TaskQueue, raw: redis.Redis, namespace: str) -> None:
    with tq.limiter("k{x}", rate="1/s", concurrency=1):
        assert raw.exists(f"{namespace}:limiter:{{k(x)}}:permits")
    assert raw.keys(f"{namespace}:{{*") == []  # not a queue's


@pytest.mark.parametrize(
    "options", [{}, {"rate": "x"}, {"concurrency": 0}, {"rate": "0/s"}], ids=["none", "rate", "conc", "zero"]
)
def test_bad_limiters_are_refused(tq: TaskQueue, options: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        tq.limiter("k", **options)  # type: ignore[arg-type]


def test_a_postponed_attempt_is_scheduled_uncounted_and_not_an_error(
    tq: TaskQueue, broker: Broker, clock: Clock, raw: redis.Redis, namespace: str
) -> None:
    task_id = tq.enqueue("t", {})
    job = broker.fetch("default", 30.0, "w1")
    assert isinstance(job, Fetched) and job.record.attempts == 1
    assert broker.report([Postpone(job, 5.0)]) == [True]
    task = tq.get_task(task_id)
    assert task is not None
    assert (task.state, task.attempts, task.run_at, task.last_error) == (
        "scheduled",
        0,
        clock.ms + 5000,
        None,
    )
    assert raw.hgetall(QueueKeys(namespace, "default").counters) == {}  # neither processed nor failed
    assert broker.report([Postpone(job, 5.0)]) == [False]  # its lease is gone: a repeat changes nothing


def test_a_worker_reschedules_a_limited_task_without_using_an_attempt(
    tq: TaskQueue, spawn: Callable[..., subprocess.Popen[str]], raw: redis.Redis, namespace: str
) -> None:
    ids = tq.enqueue_many([("limited", {"key": "one", "rate": "1/1s"}) for _ in range(3)])
    spawn("worker", "--app", "tests.apps.flow", "--concurrency", "3")

    def done() -> bool:
        return all((t := tq.get_task(i)) is not None and t.state == "done" for i in ids)

    wait_until(done, timeout=20)
    tasks = [tq.get_task(i) for i in ids]
    assert all(t is not None and t.attempts == 1 and t.last_error is None for t in tasks)  # max_retries=0
    passes = sorted(int(entry.rsplit(":", 1)[1]) for entry in raw.lrange(f"{namespace}:test:passes", 0, -1))
    assert len(passes) == 3
    # 1 per second (recorded just after each pass: a few ms of slack)
    assert all(b - a >= 950 for a, b in itertools.pairwise(passes)), passes
    counters = raw.hgetall(QueueKeys(namespace, "default").counters)
    assert counters.get("failed") in (None, "0") and counters["processed"] == "3"
    assert json.loads(raw.hget(QueueKeys(namespace, "default").tasks, ids[0]) or "{}")["state"] == "done"


def test_doctor_knows_the_limiter_keys(tq: TaskQueue, raw: redis.Redis, namespace: str) -> None:
    from taskq_cli.protocol.probes import KeyLayout, take_census

    with tq.limiter("crm:{7}", rate="5/s", concurrency=1):
        keys = [str(k) for k in raw.scan_iter(match=f"{namespace}:*")]
        census = take_census(KeyLayout(namespace), keys)
    assert len(keys) == 2 and census.unknown == [], census
