"""celery (Redis broker, no result backend, default early acks: at-most-once for a lost worker)."""

from __future__ import annotations

import time

from celery import Celery

from bench.systems.common import WARMUP, WARMUP_PAUSE, paced, record_latency, url

app = Celery("bench", broker=url())
app.conf.update(
    task_ignore_result=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True
)


@app.task(name="noop")
def noop() -> None:
    return None


@app.task(name="lat")
def lat(sent: float) -> None:
    record_latency(sent)


def enqueue(n: int) -> float:
    noop.delay()
    began = time.perf_counter()
    for _ in range(n):
        noop.delay()
    return time.perf_counter() - began


def fill(n: int) -> None:
    for _ in range(n):
        noop.delay()


def latency(n: int, rate: float) -> None:
    lat.delay(WARMUP)
    time.sleep(WARMUP_PAUSE)
    for _ in paced(n, rate):
        lat.delay(time.monotonic())


ACTIONS = {"enqueue": enqueue, "fill": fill, "latency": latency}
