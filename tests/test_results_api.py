"""GET /tasks/{id}/result?wait=SECONDS (SPEC "Results and the asyncio client", docs/api.md)."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from taskq_cli import TaskQueue
from taskq_cli.api import create_app
from taskq_cli.protocol import Broker

with warnings.catch_warnings():  # as tests/test_api.py: httpx works the same as httpx2
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

LOCAL = "http://localhost"


@pytest.fixture
def client(tq: TaskQueue) -> Iterator[TestClient]:
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as test_client:
        yield test_client


def end(broker: Broker, result: object = None, *, fail: bool = False) -> None:
    job = broker.fetch("default", 30, "w-api")
    assert job is not None
    if fail:
        error = {"type": "KeyError", "message": "'user'", "traceback": "tb"}
        broker.fail(job, error, final=True, delay=None, max_retries=0)  # type: ignore[arg-type]
    else:
        broker.ack(job, json.dumps(result), 60)  # type: ignore[arg-type]


def test_result_of_a_done_task_is_200(client, tq, broker):
    task_id = tq.enqueue("t")
    end(broker, {"ok": True})
    answer = client.get(f"/tasks/{task_id}/result")
    assert answer.status_code == 200
    assert answer.json() == {"id": task_id, "state": "done", "result": {"ok": True}}


def test_result_waits_for_the_task_to_end(client, tq, broker):
    task_id = tq.enqueue("t")
    timer = threading.Timer(0.3, end, args=(broker, 7))
    timer.start()
    started = time.monotonic()
    answer = client.get(f"/tasks/{task_id}/result", params={"wait": 10})
    timer.join()
    assert answer.status_code == 200 and answer.json()["result"] == 7
    assert time.monotonic() - started < 3


def test_result_of_a_dead_task_is_409_with_its_error(client, tq, broker):
    task_id = tq.enqueue("t")
    end(broker, fail=True)
    answer = client.get(f"/tasks/{task_id}/result", params={"wait": 1})
    assert answer.status_code == 409
    assert answer.json()["error"]["type"] == "KeyError"


def test_result_not_ready_within_wait_is_408(client, tq):
    task_id = tq.enqueue("t")
    answer = client.get(f"/tasks/{task_id}/result", params={"wait": 0.2})
    assert answer.status_code == 408
    assert "did not finish" in answer.json()["detail"]


def test_result_of_an_unknown_id_is_404(client):
    assert client.get("/tasks/nope/result").status_code == 404


@pytest.mark.parametrize("wait", ["-1", "61", "soon", "nan"])
def test_a_wait_out_of_bounds_is_422(client, tq, wait):
    task_id = tq.enqueue("t")
    assert client.get(f"/tasks/{task_id}/result", params={"wait": wait}).status_code == 422


def test_the_task_route_still_answers_the_task(client, tq):
    task_id = tq.enqueue("t")
    assert client.get(f"/tasks/{task_id}").json()["id"] == task_id
