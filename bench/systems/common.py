"""What every system's driver shares: the command line, the latency recorder, the JSON answer.

A driver runs in its system's own interpreter (taskq: the project's; peers: bench/.venv) as
`python -m bench.systems.<name>_sys ACTION --url URL --n N`, does one thing and prints one JSON object
on its last line. The orchestrator (bench/run.py) starts workers and measures drains itself.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import time
from collections.abc import Callable
from typing import Any

LATENCY_KEY = "bench:latency"
# A latency driver first enqueues one task with `sent=WARMUP` and waits WARMUP_PAUSE: its first call's
# one-time costs (connection, scripts, validators) are no pickup latency (they were ~100 ms for taskq).
WARMUP = -1.0
WARMUP_PAUSE = 0.3
_client: Any = None


def url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def record_latency(sent: float) -> None:
    """Called first thing inside a latency task: how long since the producer called enqueue (ms).
    time.monotonic is CLOCK_MONOTONIC, one clock for every process of the machine."""
    picked = time.monotonic()
    if sent == WARMUP:  # the producer's warm-up task: not a measurement
        return
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(url())
    _client.rpush(LATENCY_KEY, f"{(picked - sent) * 1000:.4f}")


def main(actions: dict[str, Callable[..., Any]]) -> None:
    """ACTION --n N [--rate R]: run the action, print {"seconds": ...} or what it returned."""
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=sorted(actions))
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    fn = actions[args.action]
    kwargs = {"n": args.n}
    if "rate" in inspect.signature(fn).parameters:
        kwargs["rate"] = args.rate
    began = time.perf_counter()
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    elapsed = time.perf_counter() - began
    if result is None:
        result = {"seconds": elapsed}
    elif isinstance(result, int | float):
        result = {"seconds": float(result)}
    print(json.dumps(result), flush=True)


def paced(n: int, rate: float) -> Any:
    """Yield n times at `rate` per second (absolute schedule: no drift)."""
    start = time.monotonic()
    for i in range(n):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield i


async def apaced(n: int, rate: float) -> Any:
    start = time.monotonic()
    for i in range(n):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        yield i
