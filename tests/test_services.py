"""The service layer (taskq_cli/services) the CLI and the HTTP API share, called directly against a
real Redis: the shapes it returns and the dead-letter selections and bulk operations it performs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest
import redis

from taskq_cli.errors import NotFound, UsageError
from taskq_cli.producer import EnqueueRequest
from taskq_cli.protocol import Fetched
from taskq_cli.protocol.keys import NamespaceKeys
from taskq_cli.queue import TaskQueue
from taskq_cli.services import cron, dlq, queues, stats, tasks
from taskq_cli.services.enqueue import EnqueueAnswer, submit
from taskq_cli.services.shapes import PurgeAnswer, RetryAnswer
from tests.conftest import Clock

NO_LIMITS = {"concurrency_limit": None, "rate_limit": None}


def bury(tq: TaskQueue, name: str, queue: str, message: str = "gave up") -> str:
    """A task of this name that failed for good in this queue (nothing else pending there)."""
    task_id = tq.enqueue(name, {"n": 1}, queue=queue)
    job = tq.broker.fetch(queue, 30, "test-worker")
    assert isinstance(job, Fetched) and job.id == task_id
    failure = {"type": "Fail", "message": message, "traceback": ""}
    assert tq.broker.fail(job, failure, final=True, delay=0, max_retries=3) == "dead"
    return task_id


def submit_one(tq: TaskQueue) -> list[EnqueueAnswer]:
    """One task through the service's enqueue, with its own max_retries."""
    return submit(tq, [EnqueueRequest("x", {}, max_retries=7)])


def register_worker(tq: TaskQueue, now_ms: int) -> None:
    info = {
        "id": "w1",
        "host": "h",
        "pid": 42,
        "queues": ["a"],
        "concurrency": 2,
        "pool": "threads",
        "started_at": now_ms,
        "heartbeat_at": now_ms,
        "active": [{"id": "t1", "name": "x", "queue": "a", "started_at": now_ms}],
    }
    tq.broker.register_worker("w1", info, ttl=30)


# -- stats and workers ----------------------------------------------------------------------------------


def test_stats_counts_every_queue_and_lists_live_workers_and_the_limits(tq):
    # Given two pending and one scheduled task in a, one dead in b, and one live worker
    bury(tq, "x", "b")
    tq.enqueue("x", {}, queue="a")
    tq.enqueue("x", {}, queue="a")
    tq.enqueue("x", {}, queue="a", delay=3600)
    register_worker(tq, tq.broker.redis_time_ms())

    found = stats.collect(tq).to_json()

    assert list(found) == ["queues", "workers", "limits"]
    assert list(found["queues"]) == ["a", "b"]
    a, b = found["queues"]["a"], found["queues"]["b"]
    assert list(a) == [*stats.COUNT_FIELDS, "oldest_pending_age", "paused", "concurrency_limit", "rate_limit"]
    assert (a["pending"], a["scheduled"], a["dead"], a["paused"]) == (2, 1, 0, False)
    assert isinstance(a["oldest_pending_age"], float) and a["oldest_pending_age"] >= 0
    assert (b["pending"], b["dead"], b["failed"], b["oldest_pending_age"]) == (0, 1, 1, None)
    [worker] = found["workers"]
    assert list(worker) == [
        "id", "host", "pid", "queues", "concurrency", "started_at", "heartbeat_at", "pool", "active",
        "tasks", "state",
    ]  # fmt: skip
    assert worker["active"][0]["started_at"].endswith("Z") and worker["heartbeat_at"].endswith("Z")
    assert found["limits"] == {"dead_max": tq.settings.dead_max, "dead_ttl": tq.settings.dead_ttl}
    assert stats.collect(tq, "b").to_json()["queues"] == {"b": b}
    assert [w.to_json() for w in stats.workers(tq)] == found["workers"]


def test_stats_of_a_queue_never_used_is_not_found(tq):
    tq.enqueue("x", {}, queue="a")
    stats.check_queue(tq, "a")
    stats.check_queue(tq, None)
    with pytest.raises(NotFound, match="queue 'nope' not found"):
        stats.check_queue(tq, "nope")


# -- the dead-letter queue --------------------------------------------------------------------------------


def test_dead_tasks_are_selected_by_queue_and_name_newest_first(tq):
    a_x, a_y, b_x = bury(tq, "x", "a"), bury(tq, "y", "a"), bury(tq, "x", "b")

    def ids(queue: str | None, name: str | None, limit: int = 50, offset: int = 0) -> set[str]:
        return {t.id for t in dlq.dead_tasks(tq, queue, name, limit, offset)}

    assert ids(None, None) == {a_x, a_y, b_x}
    assert ids("a", None) == {a_x, a_y}
    assert ids(None, "x") == {a_x, b_x}
    assert ids("a", "x") == {a_x}
    listed = dlq.dead_tasks(tq, None, None, 50)
    assert [t.died_at for t in listed] == sorted((t.died_at for t in listed), reverse=True)
    assert len(ids(None, None, limit=2)) == 2 and len(ids(None, None, offset=2)) == 1
    with pytest.raises(NotFound):
        dlq.dead_tasks(tq, "nope", None, 50)
    assert dlq.dead_task(tq, b_x).to_json()["last_error"]["message"] == "gave up"


def test_a_bounded_listing_cuts_long_texts_and_says_so(tq):
    long = bury(tq, "x", "a", message="m" * 5000)
    short = bury(tq, "x", "b")

    shown = {t.id: t.to_json() for t in dlq.dead_tasks(tq, None, None, 50, bounded=True)}

    assert len(shown[long]["last_error"]["message"]) == dlq.MAX_LISTED_TEXT
    assert shown[long]["last_error_truncated"] is True and list(shown[long])[-1] == "last_error_truncated"
    assert "last_error_truncated" not in shown[short]
    assert dlq.dead_task(tq, long).to_json()["last_error"]["message"] == "m" * 5000


def test_bulk_retry_reports_what_it_retried_and_what_was_missing(tq):
    a1, a2, b1 = bury(tq, "x", "a"), bury(tq, "y", "a"), bury(tq, "x", "b")

    by_id = dlq.retry(tq, [a1, "nope", a1])
    assert RetryAnswer.of(by_id).to_json() == {"retried": 1, "ids": [a1], "missing": ["nope"], "refused": []}

    by_name = dlq.retry(tq, None, name="x")
    assert (by_name.handled, by_name.missing) == ([b1], [])

    by_queue = dlq.retry(tq, None, queue="a")
    assert by_queue.handled == [a2]
    counts = stats.collect(tq).queues
    assert (counts["a"].pending, counts["a"].dead, counts["b"].pending, counts["b"].dead) == (2, 0, 1, 0)


def test_bulk_purge_by_age_deletes_only_the_tasks_dead_long_enough(tq, clock: Clock):
    old = bury(tq, "x", "a")
    clock.advance(7200)
    fresh = bury(tq, "x", "a")
    steps: list[tuple[int, int]] = []

    report = dlq.purge(tq, None, older_than=3600, progress=lambda done, total: steps.append((done, total)))

    assert PurgeAnswer.of(report).to_json() == {"purged": 1, "ids": [old], "missing": [], "refused": []}
    assert steps == [(1, 1)]
    assert [t.id for t in dlq.dead_tasks(tq, None, None, 50)] == [fresh]
    assert dlq.purge(tq, [old, fresh]).handled == [fresh]


# -- tasks, queues, cron, enqueue ---------------------------------------------------------------------------


def test_a_task_shows_its_options_and_their_source_and_cancels_once(tq):
    [answer] = submit_one(tq)
    assert answer.to_json() == {"id": answer.id, "queue": "default", "state": "pending", "duplicate": False}

    shown = tasks.show(tq, answer.id).to_json()
    assert (shown["max_retries"], shown["options_source"]) == (
        7,
        {"max_retries": "enqueue", "timeout": "default"},
    )
    assert [t.id for t in tasks.list_tasks(tq, "default", "pending", 10)] == [answer.id]

    assert tasks.cancel(tq, answer.id).to_json() == {"id": answer.id, "cancelled": True, "state": "pending"}
    with pytest.raises(NotFound):
        tasks.cancel(tq, answer.id)
    with pytest.raises(UsageError):
        tasks.list_tasks(tq, "default", "lost", 10)


def test_queues_are_listed_paused_resumed_and_cleared(tq):
    tq.enqueue("x", {}, queue="a")
    bury(tq, "x", "b")

    answer, known = queues.set_paused(tq, "a", True)
    assert (answer.to_json(), known) == ({"name": "a", "paused": True}, True)
    assert queues.set_paused(tq, "never", False)[1] is False
    assert [q.to_json() for q in queues.list_queues(tq)] == [
        {
            "name": "a",
            "paused": True,
            "pending": 1,
            "scheduled": 0,
            "waiting": 0,
            "active": 0,
            "dead": 0,
            **NO_LIMITS,
        },
        {
            "name": "b",
            "paused": False,
            "pending": 0,
            "scheduled": 0,
            "waiting": 0,
            "active": 0,
            "dead": 1,
            **NO_LIMITS,
        },
    ]
    assert queues.clear(tq, "b") == 1
    with pytest.raises(NotFound):
        queues.require(tq, "never")


def test_cron_describes_each_schedule_with_its_next_run(tq):
    added = cron.add(tq, "nightly", "@daily", "report", {"kind": "daily"})
    assert added.next_run_ms > tq.broker.redis_time_ms()

    [row] = [s.to_json() for s in cron.describe(tq)]

    assert row["name"] == "nightly" and row["schedule"] == "@daily" and row["payload"] == {"kind": "daily"}
    assert row["next_run"].endswith("Z") and row["last_run"] is None and row["last_task_state"] is None


def test_stats_and_workers_take_worker_descriptions_of_any_shape_without_failing(
    tq: TaskQueue,
    raw: redis.Redis,
    namespace: str,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # Given descriptions another version or writer left: fields missing, the wrong type, not JSON
    tq.broker.register_worker("sparse", {"id": "sparse", "heartbeat_at": 1, "queues": ["a"]}, ttl=30)
    keys = NamespaceKeys(namespace)
    for worker_id, text in (
        ("odd", '{"id": "odd", "pid": "x", "active": "x"}'),
        ("list", "[1, 2]"),
        ("bad", "{"),
    ):
        raw.set(keys.worker(worker_id), text, px=30_000)
        raw.zadd(keys.workers, {worker_id: 1})
    # When stats and workers read them, Then they answer, with what fits and nulls for what is missing
    for args in (("stats", "--json"), ("workers", "--json"), ("stats",), ("workers",)):
        shown = run_cli(*args)
        assert shown.returncode == 0, shown.stderr
        assert "Traceback" not in shown.stderr
    workers = json.loads(run_cli("workers", "--json").stdout)
    assert [(w["id"], w["host"], w["pid"]) for w in workers] == [("sparse", None, None)]
