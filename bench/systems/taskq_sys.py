"""taskq's driver: the library as an application uses it (handlers known, payloads validated)."""

from __future__ import annotations

import time

from bench.systems.common import WARMUP, WARMUP_PAUSE, paced, url


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


async def aenqueue(n: int, coroutines: int = 64) -> float:
    """N enqueues by `aenqueue` (redis.asyncio) from 64 coroutines at once, each awaiting its own one
    by one: what an asyncio web app under load does. Time of the N alone, after a warm-up."""
    import asyncio

    app = _app()
    await app.noop.aenqueue()  # connect, load the scripts
    share = [n // coroutines + (1 if i < n % coroutines else 0) for i in range(coroutines)]

    async def one(count: int) -> None:
        for _ in range(count):
            await app.noop.aenqueue()

    began = time.perf_counter()
    await asyncio.gather(*(one(k) for k in share))
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
    app.lat.enqueue(sent=WARMUP)
    time.sleep(WARMUP_PAUSE)
    for _ in paced(n, rate):
        app.lat.enqueue(sent=time.monotonic())


ACTIONS = {"enqueue": enqueue, "aenqueue": aenqueue, "bulk": bulk, "fill": fill, "latency": latency}
