"""dramatiq (RedisBroker): at-least-once, messages acked after they ran."""

from __future__ import annotations

import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.systems.common import WARMUP, WARMUP_PAUSE, paced, record_latency, url

broker = RedisBroker(url=url())
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def noop() -> None:
    return None


@dramatiq.actor(max_retries=0)
def lat(sent: float) -> None:
    record_latency(sent)


def enqueue(n: int) -> float:
    noop.send()
    began = time.perf_counter()
    for _ in range(n):
        noop.send()
    return time.perf_counter() - began


def fill(n: int) -> None:
    for _ in range(n):
        noop.send()


def latency(n: int, rate: float) -> None:
    lat.send(WARMUP)
    time.sleep(WARMUP_PAUSE)
    for _ in paced(n, rate):
        lat.send(time.monotonic())


ACTIONS = {"enqueue": enqueue, "fill": fill, "latency": latency}
