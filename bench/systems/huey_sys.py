"""huey (RedisHuey, blocking dequeue): at-most-once: a task is popped off the list before it runs."""

from __future__ import annotations

import time

from huey import RedisHuey

from bench.systems.common import WARMUP, WARMUP_PAUSE, paced, record_latency, url

huey = RedisHuey("bench", url=url(), results=False)


@huey.task()
def noop() -> None:
    return None


@huey.task()
def lat(sent: float) -> None:
    record_latency(sent)


def enqueue(n: int) -> float:
    noop()
    began = time.perf_counter()
    for _ in range(n):
        noop()
    return time.perf_counter() - began


def fill(n: int) -> None:
    for _ in range(n):
        noop()


def latency(n: int, rate: float) -> None:
    lat(WARMUP)
    time.sleep(WARMUP_PAUSE)
    for _ in paced(n, rate):
        lat(time.monotonic())


ACTIONS = {"enqueue": enqueue, "fill": fill, "latency": latency}
