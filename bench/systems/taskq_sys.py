"""taskq's driver: the library as an application uses it (handlers known, payloads validated)."""

from __future__ import annotations

import time

from bench.systems.common import paced, url


def _app():  # type: ignore[no-untyped-def]
    from bench import taskq_app

    taskq_app.tq.configure(redis_url=url())  # the namespace: TASKQ_NAMESPACE
    return taskq_app


def enqueue(n: int) -> float:
    app = _app()
    app.noop.enqueue()  # connect, load the scripts
    began = time.perf_counter()
    for _ in range(n):
        app.noop.enqueue()
    return time.perf_counter() - began


def bulk(n: int) -> float:
    app = _app()
    app.noop.enqueue()
    items = [("noop", {})] * n
    began = time.perf_counter()
    app.tq.enqueue_many(items)
    return time.perf_counter() - began


def fill(n: int) -> None:
    app = _app()
    for start in range(0, n, 5000):
        app.tq.enqueue_many([("noop", {})] * min(5000, n - start))


def latency(n: int, rate: float) -> None:
    app = _app()
    for _ in paced(n, rate):
        app.lat.enqueue(sent=time.monotonic())


ACTIONS = {"enqueue": enqueue, "bulk": bulk, "fill": fill, "latency": latency}
