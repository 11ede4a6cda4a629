"""arq: asyncio; workers poll the queue (poll_delay 0.5 s by default); at-least-once via in-progress keys."""

from __future__ import annotations

import asyncio
import os
import time

from arq import create_pool
from arq.connections import RedisSettings

from bench.systems.common import WARMUP, WARMUP_PAUSE, apaced, record_latency, url

SETTINGS = RedisSettings.from_dsn(url())


async def noop(ctx: dict) -> None:
    return None


async def lat(ctx: dict, sent: float) -> None:
    record_latency(sent)


class WorkerSettings:
    functions = [noop, lat]
    redis_settings = SETTINGS
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "1"))


async def enqueue(n: int) -> float:
    pool = await create_pool(SETTINGS)
    await pool.enqueue_job("noop")
    began = time.perf_counter()
    for _ in range(n):
        await pool.enqueue_job("noop")
    return time.perf_counter() - began


async def fill(n: int) -> None:
    pool = await create_pool(SETTINGS)
    for start in range(0, n, 100):
        await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(min(100, n - start))))


async def latency(n: int, rate: float) -> None:
    pool = await create_pool(SETTINGS)
    await pool.enqueue_job("lat", WARMUP)
    await asyncio.sleep(WARMUP_PAUSE)
    async for _ in apaced(n, rate):
        await pool.enqueue_job("lat", time.monotonic())


ACTIONS = {"enqueue": enqueue, "fill": fill, "latency": latency}
