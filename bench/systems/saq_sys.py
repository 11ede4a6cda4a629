"""saq (Redis queue): asyncio; at-least-once via the sweep of stuck jobs."""

from __future__ import annotations

import asyncio
import os
import time

from saq import Queue

from bench.systems.common import WARMUP, WARMUP_PAUSE, apaced, record_latency, url

queue = Queue.from_url(url())


async def noop(ctx: dict) -> None:
    return None


async def lat(ctx: dict, *, sent: float) -> None:
    record_latency(sent)


settings = {
    "queue": queue,
    "functions": [noop, lat],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "1")),
}


async def enqueue(n: int) -> float:
    await queue.enqueue("noop")
    began = time.perf_counter()
    for _ in range(n):
        await queue.enqueue("noop")
    return time.perf_counter() - began


async def fill(n: int) -> None:
    for start in range(0, n, 100):
        await asyncio.gather(*(queue.enqueue("noop") for _ in range(min(100, n - start))))


async def latency(n: int, rate: float) -> None:
    await queue.enqueue("lat", sent=WARMUP)
    await asyncio.sleep(WARMUP_PAUSE)
    async for _ in apaced(n, rate):
        await queue.enqueue("lat", sent=time.monotonic())


ACTIONS = {"enqueue": enqueue, "fill": fill, "latency": latency}
