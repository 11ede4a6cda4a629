"""A custom id is unique per queue, so one id may name a task in each of two queues. SPEC "Custom ids
and enqueue": every lookup by id (`task show/cancel`, `dlq show/retry/purge`, the HTTP API) searches
every queue unless the queue is given, and refuses an id found in more than one: exit 2 naming the
queues on stderr, HTTP 409 with the queues in the JSON error. Real processes and a real Redis."""

from __future__ import annotations

import json
import subprocess
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from starlette.exceptions import StarletteDeprecationWarning

from taskq_cli import TaskQueue
from taskq_cli.errors import AmbiguousId
from taskq_cli.protocol import Fetched

with warnings.catch_warnings():  # starlette asks for httpx2; httpx (the api extra) works the same
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from taskq_cli.api import create_app

Cli = Callable[..., subprocess.CompletedProcess[str]]
DUP = "dup-1"


def bury(tq: TaskQueue, queue: str, task_id: str = DUP) -> None:
    """A dead task with this id in this queue (the queue has nothing else pending)."""
    tq.enqueue("t", {"queue": queue}, queue=queue, task_id=task_id)
    job = tq.broker.fetch(queue, 30, "test-worker")
    assert isinstance(job, Fetched) and job.id == task_id
    assert tq.broker.fail(
        job, {"type": "Fail", "message": "no", "traceback": ""}, final=True, delay=0, max_retries=3
    )


def snapshot(raw: redis.Redis, namespace: str) -> dict[str, Any]:
    readers: dict[str, Callable[[str], Any]] = {
        "hash": raw.hgetall,
        "list": lambda k: raw.lrange(k, 0, -1),
        "zset": lambda k: raw.zrange(k, 0, -1),
        "set": raw.smembers,
        "string": raw.get,
    }
    return {k: readers[raw.type(k)](k) for k in raw.scan_iter(match=f"{namespace}:*")}


def assert_ambiguous(result: subprocess.CompletedProcess[str]) -> None:
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"taskq: error: task id {DUP} is in 2 queues: a, b"), line


@pytest.fixture
def client(tq: TaskQueue) -> Iterator[TestClient]:
    # without a token the API answers only the Host names it listens on
    with TestClient(create_app(tq, token=""), base_url="http://localhost") as test_client:
        yield test_client


# -- the core ------------------------------------------------------------------------------------


def test_the_library_refuses_an_ambiguous_id_and_finds_it_in_the_queue_given(tq):
    tq.enqueue("t", {"n": 1}, queue="a", task_id=DUP)
    tq.enqueue("t", {"n": 2}, queue="b", task_id=DUP)

    with pytest.raises(AmbiguousId) as refused:
        tq.get_task(DUP)

    assert refused.value.queues == ["a", "b"]
    found = tq.get_task(DUP, "b")
    assert found is not None and found.payload == {"n": 2}


# -- the CLI ------------------------------------------------------------------------------------------


def test_task_show_and_cancel_refuse_an_id_in_two_queues_unless_the_queue_is_given(
    tq, raw, namespace, run_cli
):
    tq.enqueue("t", {"n": 1}, queue="a", task_id=DUP)
    tq.enqueue("t", {"n": 2}, queue="b", task_id=DUP)
    before = snapshot(raw, namespace)

    assert_ambiguous(run_cli("task", "show", DUP))
    assert_ambiguous(run_cli("task", "show", DUP, "--json"))
    assert_ambiguous(run_cli("task", "cancel", DUP))
    assert snapshot(raw, namespace) == before

    shown = run_cli("task", "show", DUP, "--queue", "b", "--json")
    assert json.loads(shown.stdout)["payload"] == {"n": 2}
    cancelled = run_cli("task", "cancel", DUP, "-q", "a")
    assert cancelled.returncode == 0, cancelled.stderr
    assert tq.get_task(DUP) is not None and tq.get_task(DUP).queue == "b"  # now only in b


def test_dlq_show_retry_and_purge_refuse_an_id_dead_in_two_queues_unless_the_queue_is_given(
    tq, raw, namespace, run_cli
):
    bury(tq, "a")
    bury(tq, "b")
    before = snapshot(raw, namespace)

    assert_ambiguous(run_cli("dlq", "show", DUP))
    assert_ambiguous(run_cli("dlq", "retry", DUP))
    assert_ambiguous(run_cli("dlq", "purge", DUP, "other-id", "--yes"))
    assert snapshot(raw, namespace) == before

    assert json.loads(run_cli("dlq", "show", DUP, "--queue", "a", "--json").stdout)["queue"] == "a"
    assert run_cli("dlq", "retry", DUP, "--queue", "a").returncode == 0
    assert tq.get_task(DUP, "a").state == "pending" and tq.get_task(DUP, "b").state == "dead"
    # dead in b only now: the DLQ lookups need no queue any more
    assert run_cli("dlq", "purge", DUP, "--yes").returncode == 0
    assert tq.get_task(DUP, "b") is None


# -- the HTTP API ---------------------------------------------------------------------------------


def test_the_api_answers_409_with_the_queues_for_an_ambiguous_id(tq, raw, namespace, client):
    tq.enqueue("t", {"n": 1}, queue="a", task_id=DUP)
    tq.enqueue("t", {"n": 2}, queue="b", task_id=DUP)
    bury(tq, "c", "dead-1")
    bury(tq, "d", "dead-1")
    before = snapshot(raw, namespace)

    answers = [
        client.get(f"/tasks/{DUP}"),
        client.delete(f"/tasks/{DUP}"),
        client.post("/dlq/retry", json={"ids": ["dead-1"]}),
        client.delete("/dlq", params={"id": "dead-1"}),
    ]

    for answer, queues in zip(answers, (["a", "b"], ["a", "b"], ["c", "d"], ["c", "d"]), strict=True):
        assert answer.status_code == 409, answer.text
        assert answer.json()["queues"] == queues
        assert "2 queues" in answer.json()["detail"]
    assert snapshot(raw, namespace) == before
    assert client.get(f"/tasks/{DUP}", params={"queue": "b"}).json()["payload"] == {"n": 2}
    assert client.post("/dlq/retry", json={"ids": ["dead-1"], "queue": "d"}).json()["retried"] == 1
