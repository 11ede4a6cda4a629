"""Dependencies from the command line and the HTTP API (SPEC "Dependencies: chains, groups,
chords"): `taskq enqueue --after ID` (repeatable), `"after"` in `--file` lines naming ids of earlier
lines, the HTTP field, refusals (exit 2 / HTTP 422, nothing written), `task show` and `task list
--state waiting`."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest
import redis
from starlette.exceptions import StarletteDeprecationWarning

from taskq_cli import TaskQueue
from taskq_cli.protocol import Ack
from tests.support import qkeys

with warnings.catch_warnings():  # starlette asks for httpx2; httpx (the api extra) works the same
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from taskq_cli.api import create_app

LOCAL = "http://localhost"


def test_enqueue_after_is_repeatable_and_task_show_names_after_and_blocked_by(run_cli, tq: TaskQueue) -> None:
    a = tq.enqueue("fetch", {})
    b = tq.enqueue("fetch", {}, queue="other")
    out = run_cli("enqueue", "parse", "{}", "--after", a, "--after", b, "--json")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["state"] == "waiting"
    shown = json.loads(run_cli("task", "show", answer["id"], "--json").stdout)
    assert shown["state"] == "waiting"
    assert shown["after"] == [a, b] and sorted(shown["blocked_by"]) == sorted([a, b])
    listed = json.loads(run_cli("task", "list", "--state", "waiting", "--json").stdout)
    assert [t["id"] for t in listed] == [answer["id"]]


def test_enqueue_after_an_unknown_or_dead_task_exits_2_and_writes_nothing(
    run_cli, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    out = run_cli("enqueue", "parse", "{}", "--after", "no-such-task")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "no-such-task" in out.stderr
    dead = tq.enqueue("x", {})
    job = tq.broker.fetch("default", 30, "w")
    assert job is not None
    error = {"type": "E", "message": "", "traceback": ""}
    tq.broker.fail(job, error, final=True, delay=None, max_retries=0)  # type: ignore[arg-type]
    out = run_cli("enqueue", "parse", "{}", "--after", dead)
    assert out.returncode == 2 and "dead" in out.stderr
    expired = tq.enqueue("x", {})
    job = tq.broker.fetch("default", 30, "w")
    assert job is not None and job.id == expired  # type: ignore[union-attr]
    tq.broker.report([Ack(job, None, 0.0)])  # type: ignore[arg-type]  # a result_ttl of 0: gone at once
    out = run_cli("enqueue", "parse", "{}", "--after", expired)
    assert out.returncode == 2 and "expired" in out.stderr
    assert raw.hlen(qkeys(namespace).tasks) == 1


def test_file_lines_may_name_ids_of_earlier_lines(run_cli, tq: TaskQueue) -> None:
    lines = [
        {"name": "fetch", "payload": {"url": "u"}, "id": "f1"},
        {"name": "parse", "payload": {}, "id": "p1", "after": ["f1"]},
        {"name": "store", "payload": {}, "after": ["p1", "f1"], "queue": "other"},
    ]
    out = run_cli("enqueue", "--file", "-", "--json", input="\n".join(json.dumps(x) for x in lines))
    assert out.returncode == 0, out.stderr
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert [a["state"] for a in answers] == ["pending", "waiting", "waiting"]
    assert tq.broker.dependencies.blocked_by("other", answers[2]["id"]) == ["f1", "p1"]


def test_a_file_line_naming_a_later_line_or_an_unknown_id_writes_nothing(
    run_cli, raw: redis.Redis, namespace: str
) -> None:
    later = [{"name": "a", "after": ["z"]}, {"name": "b", "id": "z"}]
    out = run_cli("enqueue", "--file", "-", input="\n".join(json.dumps(x) for x in later))
    assert out.returncode == 2 and "not enqueued before" in out.stderr
    bad_type = [{"name": "a", "after": "z"}]
    out = run_cli("enqueue", "--file", "-", input=json.dumps(bad_type[0]))
    assert out.returncode == 2 and "line 1" in out.stderr
    assert raw.exists(qkeys(namespace).tasks) == 0


@pytest.fixture
def client(tq: TaskQueue) -> Iterator[TestClient]:
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as test_client:
        yield test_client


def test_http_enqueue_takes_after_and_refuses_an_unknown_id_with_422(
    client: TestClient, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    a = tq.enqueue("fetch", {})
    made = client.post("/enqueue", json={"name": "parse", "after": [a]})
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "waiting"
    shown = client.get(f"/tasks/{made.json()['id']}").json()
    assert shown["after"] == [a] and shown["blocked_by"] == [a]
    refused = client.post("/enqueue", json={"name": "parse", "after": ["missing"]})
    assert refused.status_code == 422 and "missing" in refused.text
    batch = client.post("/enqueue", json=[{"name": "a", "id": "x1"}, {"name": "b", "after": ["x1"]}])
    assert batch.status_code == 201 and [t["state"] for t in batch.json()] == ["pending", "waiting"]
    assert raw.zcard(qkeys(namespace).blocked) == 2


def test_stats_json_counts_waiting_tasks_and_dlq_retry_makes_a_dependent_wait_again(
    run_cli, tq: TaskQueue
) -> None:
    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {}, after=[a])
    stats = json.loads(run_cli("stats", "--json").stdout)
    assert stats["queues"]["default"]["waiting"] == 1
    assert json.loads(run_cli("queue", "list", "--json").stdout)[0]["waiting"] == 1
    job = tq.broker.fetch("default", 30, "w")
    assert job is not None and job.id == a  # type: ignore[union-attr]
    error = {"type": "E", "message": "", "traceback": ""}
    tq.broker.fail(job, error, final=True, delay=None, max_retries=0)  # type: ignore[arg-type]
    tq.broker.dependencies.drain(["default"])
    shown = json.loads(run_cli("task", "show", b, "--json").stdout)
    assert shown["state"] == "dead" and shown["last_error"]["type"] == "DependencyFailed"
    assert run_cli("dlq", "retry", a).returncode == 0
    assert run_cli("dlq", "retry", b).returncode == 0
    shown = json.loads(run_cli("task", "show", b, "--json").stdout)
    assert shown["state"] == "waiting" and shown["blocked_by"] == [a]


def test_listings_carry_after_in_the_cli_and_the_api(  # the API lists dead tasks only
    run_cli, tq: TaskQueue, client: TestClient
) -> None:
    a = tq.enqueue("x", {})
    b = tq.enqueue("x", {}, queue="other")
    c = tq.enqueue("x", {}, after=[b, a])
    listed = json.loads(run_cli("task", "list", "--json").stdout)
    assert {t["id"]: t["after"] for t in listed} == {a: [], b: [], c: [b, a]}
    job = tq.broker.fetch("other", 30, "w")
    assert job is not None and job.id == b  # type: ignore[union-attr]
    error = {"type": "E", "message": "", "traceback": ""}
    tq.broker.fail(job, error, final=True, delay=None, max_retries=0)  # type: ignore[arg-type]
    tq.broker.dependencies.drain(["other"])
    dead = json.loads(run_cli("dlq", "list", "--json").stdout)
    assert {t["id"]: t["after"] for t in dead} == {b: [], c: [b, a]}
    api_dead = client.get("/dlq").json()
    assert {t["id"]: t["after"] for t in api_dead} == {b: [], c: [b, a]}


def test_http_enqueue_after_a_dead_task_or_an_expired_done_one_is_422_and_writes_nothing(
    client: TestClient, tq: TaskQueue, raw: redis.Redis, namespace: str
) -> None:
    dead = tq.enqueue("x", {})
    job = tq.broker.fetch("default", 30, "w")
    assert job is not None and job.id == dead  # type: ignore[union-attr]
    error = {"type": "E", "message": "", "traceback": ""}
    tq.broker.fail(job, error, final=True, delay=None, max_retries=0)  # type: ignore[arg-type]
    expired = tq.enqueue("x", {})
    job = tq.broker.fetch("default", 30, "w")
    assert job is not None and job.id == expired  # type: ignore[union-attr]
    tq.broker.report([Ack(job, None, 0.0)])  # type: ignore[arg-type]  # a result_ttl of 0: gone at once
    for after, why in ((dead, "dead"), (expired, "expired")):
        refused = client.post("/enqueue", json={"name": "parse", "after": [after]})
        assert refused.status_code == 422 and why in refused.text, refused.text
    assert raw.hlen(qkeys(namespace).tasks) == 1  # the dead one only
