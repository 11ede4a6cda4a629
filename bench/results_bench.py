"""Results and the asyncio client, measured (issue 15).

    python bench/results_bench.py [--url redis://127.0.0.1:6379/0] [--tasks 300] [--enqueues 5000]

1. result latency: a caller blocked in `tq.result(id, wait=30)` on its own thread; the bench plays
   the worker and acks the task (Broker.fetch, then Broker.ack: ack.lua with its notification); the
   time from sending the ack to result() returning, p50/p99 over --tasks tasks.
2. enqueue throughput in one run: sync `enqueue` one by one, then `aenqueue` from 64 coroutines
   in one event loop (--enqueues tasks each).
3. the event loop's longest stall during 10,000 `aenqueue` calls (64 at a time), seen by a ticker
   coroutine that sleeps 1 ms and records the gap between its wake-ups.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taskq_cli import TaskQueue  # noqa: E402
from taskq_cli.protocol import Fetched  # noqa: E402


def result_latency(tq: TaskQueue, tasks: int) -> list[float]:
    broker = tq.broker
    waiter_tq = TaskQueue(redis_url=tq.settings.redis_url, namespace=tq.settings.namespace)
    latencies: list[float] = []
    for _ in range(tasks):
        task_id = tq.enqueue("bench", {})
        job = broker.fetch("default", 30, "bench")
        assert isinstance(job, Fetched)
        returned: list[float] = []
        ready = threading.Event()

        def wait(
            task_id: str = task_id, returned: list[float] = returned, ready: threading.Event = ready
        ) -> None:
            ready.set()
            waiter_tq.result(task_id, wait=30)
            returned.append(time.perf_counter())

        thread = threading.Thread(target=wait)
        thread.start()
        ready.wait()
        _until_blocked(broker.client, task_id)
        sent = time.perf_counter()
        broker.ack(job, json.dumps({"ok": True}), 60)
        thread.join()
        latencies.append((returned[0] - sent) * 1000)
    waiter_tq.close()
    return latencies


def _until_blocked(client: redis.Redis, task_id: str) -> None:
    """The waiter is blocked in BLMOVE on the task's marker (not before, not still reading)."""
    while not any(c.get("cmd") == "blmove" for c in client.client_list()):
        time.sleep(0.0005)


def sync_enqueue(tq: TaskQueue, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        tq.enqueue("bench", {"n": 1})
    return count / (time.perf_counter() - started)


async def async_enqueue(tq: TaskQueue, count: int, concurrency: int = 64) -> tuple[float, float]:
    """Tasks per second, and the longest gap (ms) a 1 ms ticker saw meanwhile."""
    longest = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last - 0.001)
            last = now

    async def producer(share: int) -> None:
        for _ in range(share):
            await tq.aenqueue("bench", {"n": 1})

    await tq.aenqueue("bench", {})  # the pool's first connection, the script cached
    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    shares = [count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)]
    await asyncio.gather(*(producer(s) for s in shares))
    elapsed = time.perf_counter() - started
    stop = True
    await tick
    await tq.aclose()
    return count / elapsed, longest * 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("TASKQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--enqueues", type=int, default=5000)
    args = parser.parse_args()
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    tq = TaskQueue(redis_url=args.url, namespace=namespace)
    try:
        lat = result_latency(tq, args.tasks)
        print(
            f"result latency over {len(lat)} tasks (ack sent -> result() returns): "
            f"p50 {statistics.median(lat):.3f} ms, p99 {percentile(lat, 99):.3f} ms, max {max(lat):.3f} ms"
        )
        sync_rate = sync_enqueue(tq, args.enqueues)
        async_rate, _ = asyncio.run(async_enqueue(tq, args.enqueues))
        print(
            f"enqueue {args.enqueues} tasks: sync one by one {sync_rate:,.0f}/s; "
            f"aenqueue x64 coroutines {async_rate:,.0f}/s ({async_rate / sync_rate:.1f}x)"
        )
        _, stall = asyncio.run(async_enqueue(tq, 10_000))
        print(f"longest event-loop stall during 10,000 aenqueue calls (64 at a time): {stall:.2f} ms")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        client = redis.Redis.from_url(args.url)
        for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            client.delete(key)
        client.close()
        tq.close()


if __name__ == "__main__":
    main()
