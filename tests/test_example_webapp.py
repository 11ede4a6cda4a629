"""examples/webapp.py: a FastAPI app that enqueues with aenqueue and answers with aresult, against a
real worker process running examples.tasks."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():  # as tests/test_api.py: httpx works the same as httpx2
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture
def webapp(redis_url: str, namespace: str) -> Iterator[TestClient]:
    from examples import tasks, webapp

    tasks.tq.configure(redis_url=redis_url, namespace=namespace)
    with TestClient(webapp.app, base_url="http://localhost") as client:
        yield client
    tasks.tq.close()


def test_the_webapp_enqueues_and_answers_the_result_of_a_real_worker(webapp, spawn, tmp_path):
    spawn("worker", "--app", "examples.tasks", "--concurrency", "2")

    accepted = webapp.post("/thumbnails", json={"path": "cat.png", "width": 200})
    assert accepted.status_code == 202
    task_id = accepted.json()["id"]
    done = webapp.get(f"/thumbnails/{task_id}", params={"wait": 30})
    assert done.status_code == 200
    assert done.json()["thumbnail"] == {"path": "cat.png", "thumbnail": "cat-200w.png", "size": [200, 112]}

    at_once = webapp.post("/thumbnails/now", json={"path": "dog.jpg", "width": 100})
    assert at_once.status_code == 200 and at_once.json()["thumbnail"]["size"] == [100, 56]

    dead = webapp.post("/thumbnails/now", json={"path": "doc.pdf"})
    assert dead.status_code == 409 and "cannot make" in dead.json()["detail"]


def test_the_webapp_refuses_a_bad_payload_and_answers_unknown_and_unfinished_ids(webapp):
    assert webapp.post("/thumbnails", json={"path": "x.png", "width": 0}).status_code == 422
    assert webapp.get("/thumbnails/nope").status_code == 404
    task_id = webapp.post("/thumbnails", json={"path": "x.png"}).json()["id"]
    assert webapp.get(f"/thumbnails/{task_id}", params={"wait": 0.2}).status_code == 408
