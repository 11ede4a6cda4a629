"""SPEC "Limits", per queue: stored in Redis, enforced by fetch.lua across every worker on Redis's
clock (the protocol driven by a fake clock), set and shown by the library and the CLI, and a real
worker serving a limited queue next to another one."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.config import RetryDefaults
from taskq_cli.errors import UsageError
from taskq_cli.protocol import Broker, Fetched, Limited, QueueLimits
from taskq_cli.protocol.keys import QueueKeys

from .conftest import Clock, wait_until

Cli = Callable[..., subprocess.CompletedProcess[str]]
DEFAULTS = RetryDefaults(max_retries=3, backoff_base=5.0, backoff_max=3600.0)


def fill(tq: TaskQueue, n: int, queue: str = "lim") -> list[str]:
    return tq.enqueue_many([("t", {"i": i}, {"queue": queue}) for i in range(n)])


def fetch(
    broker: Broker, count: int, queue: str = "lim", worker: str = "w1"
) -> tuple[list[Fetched], list[Limited]]:
    got = broker.fetch_many(queue, count, 30.0, worker)
    return [g for g in got if isinstance(g, Fetched)], [g for g in got if isinstance(g, Limited)]


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrency_caps_the_active_tasks_across_workers(tq: TaskQueue, broker: Broker) -> None:
    tq.set_queue_limits("lim", concurrency=2)
    ids = fill(tq, 5)
    first, held = fetch(broker, 3, worker="w1")
    assert len(first) == 2 and held == [Limited("lim", None)]
    second, held = fetch(broker, 3, worker="w2")  # another worker: the limit is the queue's
    assert second == [] and held == [Limited("lim", None)]
    waiting = [tq.get_task(i, "lim") for i in ids if i not in {j.id for j in first}]
    assert all(t is not None and t.state == "pending" and t.attempts == 0 for t in waiting)


def test_a_finished_task_frees_its_slot_and_wakes_the_queue(
    tq: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str
) -> None:
    tq.set_queue_limits("lim", concurrency=1)
    fill(tq, 3)
    (job,), _ = fetch(broker, 2)
    raw.delete(QueueKeys(namespace, "lim").wake)
    assert broker.ack(job, None, 600)
    assert raw.llen(QueueKeys(namespace, "lim").wake) == 1  # the ack itself wakes an idle worker
    (nxt,), held = fetch(broker, 2)
    assert held == [Limited("lim", None)]
    broker.fail(nxt, {"type": "E", "message": "", "traceback": ""}, final=False, delay=60, max_retries=3)
    assert len(fetch(broker, 2)[0]) == 1  # a failure frees the slot too


def test_a_lost_workers_slots_come_back_when_its_leases_are_recovered(
    tq: TaskQueue, broker: Broker, clock: Clock
) -> None:
    tq.set_queue_limits("lim", concurrency=1)
    fill(tq, 2)
    assert len(fetch(broker, 1)[0]) == 1
    clock.advance(29)
    broker.recover("lim", DEFAULTS)
    assert fetch(broker, 1) == ([], [Limited("lim", None)])  # the lease still counts
    clock.advance(2)
    assert broker.recover("lim", DEFAULTS) == (1, 0)
    assert len(fetch(broker, 1)[0]) == 1


def test_no_fetch_result_says_limited_when_nothing_is_pending(tq: TaskQueue, broker: Broker) -> None:
    tq.set_queue_limits("lim", concurrency=1)
    fill(tq, 1)
    got, held = fetch(broker, 4)
    assert len(got) == 1 and held == []  # it took all there was
    assert fetch(broker, 4) == ([], [])  # one active, none pending: nothing is held back


# -- rate -------------------------------------------------------------------------------------------


def test_rate_allows_n_starts_in_any_window_on_redis_clock(
    tq: TaskQueue, broker: Broker, clock: Clock
) -> None:
    tq.set_queue_limits("lim", rate="3/10s")
    fill(tq, 10)
    got, held = fetch(broker, 5)
    assert len(got) == 3 and held == [Limited("lim", 10.0)]
    for job in got:
        broker.ack(job, None, 600)  # finishing does not give starts back
    clock.advance(4)
    got, held = fetch(broker, 5)
    assert got == [] and held == [Limited("lim", 6.0)]
    clock.advance(5.999)
    assert fetch(broker, 5)[0] == []
    clock.advance(0.002)
    got, held = fetch(broker, 5)
    assert len(got) == 3 and held[0].retry_in == pytest.approx(10.0, abs=0.01)


def test_a_sliding_window_not_a_fixed_one(tq: TaskQueue, broker: Broker, clock: Clock) -> None:
    tq.set_queue_limits("lim", rate="2/1s")
    fill(tq, 10)
    assert len(fetch(broker, 1)[0]) == 1
    clock.advance(0.9)
    assert len(fetch(broker, 5)[0]) == 1  # the second start of the window
    clock.advance(0.2)  # 1.1 s after the first start: one slot back, not two
    assert len(fetch(broker, 5)[0]) == 1


def test_both_limits_at_once(tq: TaskQueue, broker: Broker, clock: Clock) -> None:
    tq.set_queue_limits("lim", concurrency=1, rate="5/s")
    fill(tq, 5)
    (job,), held = fetch(broker, 3)
    assert held == [Limited("lim", None)]
    broker.ack(job, None, 600)
    assert len(fetch(broker, 3)[0]) == 1


# -- setting and showing -----------------------------------------------------------------------------


def test_set_queue_limits_keeps_what_is_not_given_and_none_clears(tq: TaskQueue, broker: Broker) -> None:
    assert tq.set_queue_limits("lim", concurrency=5, rate="100/s") == QueueLimits(5, 100, 1.0)
    assert tq.set_queue_limits("lim", rate="600/1m") == QueueLimits(5, 600, 60.0)
    assert tq.set_queue_limits("lim", concurrency=None) == QueueLimits(None, 600, 60.0)
    assert tq.set_queue_limits("lim", rate=None) == QueueLimits()
    fill(tq, 3)
    assert len(fetch(broker, 3)[0]) == 3


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": -1},
        {"concurrency": 1.5},
        {"rate": "0/s"},
        {"rate": "5"},
        {"rate": "5/x"},
    ],
)
def test_bad_limits_are_refused_before_anything_is_written(
    tq: TaskQueue, options: dict[str, object], raw: redis.Redis, namespace: str
) -> None:
    with pytest.raises(UsageError):
        tq.set_queue_limits("lim", **options)
    assert raw.keys(f"{namespace}:*") == []


def test_queue_limit_command_sets_clears_and_shows(run_cli: Cli, tq: TaskQueue) -> None:
    done = run_cli("queue", "limit", "emails", "--concurrency", "5", "--rate", "5/10s", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "name": "emails",
        "concurrency_limit": 5,
        "rate_limit": {"limit": 5, "window": 10.0},
    }
    assert run_cli("queue", "limit", "emails").stdout.strip() == "emails: concurrency 5, rate 5/10s"
    tq.enqueue("t", {}, queue="emails")
    tq.enqueue("t", {}, queue="plain")
    rows = {r["name"]: r for r in json.loads(run_cli("queue", "list", "--json").stdout)}
    assert rows["emails"]["concurrency_limit"] == 5 and rows["emails"]["rate_limit"] == {
        "limit": 5,
        "window": 10.0,
    }
    assert rows["plain"]["concurrency_limit"] is None and rows["plain"]["rate_limit"] is None
    stats = json.loads(run_cli("stats", "--json").stdout)["queues"]
    assert stats["emails"]["concurrency_limit"] == 5 and stats["emails"]["rate_limit"]["window"] == 10.0
    assert stats["plain"]["concurrency_limit"] is None and stats["plain"]["rate_limit"] is None
    cleared = run_cli("queue", "limit", "emails", "--clear", "--json")
    assert json.loads(cleared.stdout)["concurrency_limit"] is None
    assert "limits" in run_cli("queue", "list").stdout


@pytest.mark.parametrize("args", [["--concurrency", "0"], ["--rate", "ten/s"], ["--rate", "5/0s"]])
def test_queue_limit_bad_input_exits_2_and_writes_nothing(
    run_cli: Cli, args: list[str], raw: redis.Redis, namespace: str
) -> None:
    done = run_cli("queue", "limit", "emails", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1, (
        done.stderr
    )
    assert raw.keys(f"{namespace}:*") == []


# -- a real worker ---------------------------------------------------------------------------------------


def test_a_worker_serves_other_queues_meanwhile_and_starts_limited_tasks_within_a_second(
    tq: TaskQueue, spawn: Callable[..., subprocess.Popen[str]], run_cli: Cli
) -> None:
    tq.set_queue_limits("lim", concurrency=1)
    lim = tq.enqueue_many([("nap", {"seconds": 0.4}, {"queue": "lim"}) for _ in range(4)])
    other = tq.enqueue_many([("pid", {}, {"queue": "other"}) for _ in range(30)])
    spawn("worker", "--app", "tests.apps.execution", "--queues", "lim,other", "--concurrency", "4")

    def finished(ids: list[str], queue: str) -> bool:
        return all((t := tq.get_task(i, queue)) is not None and t.state == "done" for i in ids)

    wait_until(lambda: finished(lim, "lim"), timeout=20)
    tasks = sorted((tq.get_task(i, "lim") for i in lim), key=lambda t: t.started_at or 0)  # type: ignore[union-attr, return-value]
    for before, after in itertools.pairwise(tasks):
        assert before is not None and after is not None
        assert after.started_at >= before.finished_at  # never two at once  # type: ignore[operator]
        assert after.started_at - before.finished_at < 1000  # type: ignore[operator]
    others = [tq.get_task(i, "other") for i in other]
    assert all(t is not None and t.state == "done" for t in others)
    assert max(t.finished_at for t in others) < tasks[-1].started_at  # type: ignore[union-attr, operator, type-var]
