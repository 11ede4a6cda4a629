"""rq: the default Worker forks a work horse per job; `rq worker-pool` for concurrency > 1."""

from __future__ import annotations

import time

from redis import Redis
from rq import Queue

from bench.systems.common import WARMUP, WARMUP_PAUSE, paced, record_latency, url


def noop() -> None:
    return None


def lat(sent: float) -> None:
    record_latency(sent)


NOOP = "bench.systems.rq_sys.noop"  # by name: rq refuses functions of __main__
LAT = "bench.systems.rq_sys.lat"


def _queue() -> Queue:
    return Queue("default", connection=Redis.from_url(url()))


def enqueue(n: int) -> float:
    q = _queue()
    q.enqueue(NOOP)
    began = time.perf_counter()
    for _ in range(n):
        q.enqueue(NOOP)
    return time.perf_counter() - began


def bulk(n: int) -> float:
    q = _queue()
    q.enqueue(NOOP)
    began = time.perf_counter()
    for start in range(0, n, 1000):  # one pipeline per 1,000 (one for everything would be no faster)
        q.enqueue_many([Queue.prepare_data(NOOP) for _ in range(min(1000, n - start))])
    return time.perf_counter() - began


def fill(n: int) -> None:
    q = _queue()
    for start in range(0, n, 1000):
        q.enqueue_many([Queue.prepare_data(NOOP) for _ in range(min(1000, n - start))])


def latency(n: int, rate: float) -> None:
    q = _queue()
    q.enqueue(LAT, WARMUP)
    time.sleep(WARMUP_PAUSE)
    for _ in paced(n, rate):
        q.enqueue(LAT, time.monotonic())


ACTIONS = {"enqueue": enqueue, "bulk": bulk, "fill": fill, "latency": latency}
