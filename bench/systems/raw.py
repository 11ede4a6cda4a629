"""The round-trip limit seen from redis-py: PING one call at a time, and pipelined 100 per round trip.
Prints one JSON object of ops/s.

`raw.py lpush N SIZE`: the bulk ceiling instead: N `LPUSH`es of a SIZE-byte value, pipelined 1,000 per
round trip (no transaction); prints {"seconds": ...}."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import redis


def lpush(n: int, size: int) -> None:
    client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    client.ping()
    value = b"x" * size
    began = time.perf_counter()
    for start in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(1000, n - start)):
            pipe.lpush("bench:ceiling", value)
        pipe.execute()
    print(json.dumps({"seconds": time.perf_counter() - began}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "lpush":
        lpush(int(sys.argv[2]), int(sys.argv[3]))
        return
    client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    client.ping()
    n = 20000
    began = time.perf_counter()
    for _ in range(n):
        client.ping()
    one = n / (time.perf_counter() - began)
    script = client.register_script("return 1")
    script()
    began = time.perf_counter()
    for _ in range(n):
        script()
    evalsha = n / (time.perf_counter() - began)
    began = time.perf_counter()
    for _ in range(n // 100):
        pipe = client.pipeline(transaction=False)
        for _ in range(100):
            pipe.ping()
        pipe.execute()
    piped = n / (time.perf_counter() - began)
    figures = {"PING one by one": one, "EVALSHA 'return 1' one by one": evalsha, "PING pipelined x100": piped}
    figures["asyncio EVALSHA 'return 1', 64 coroutines"] = asyncio.run(aevalsha(n, 64))
    print(json.dumps(figures))


async def aevalsha(n: int, coroutines: int) -> float:
    """The floor of taskq's `aenqueue` from 64 coroutines: redis.asyncio EVALSHA of `return 1`, each
    coroutine one call at a time, over one pool."""
    from redis.asyncio import Redis

    client = Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    sha = await client.script_load("return 1")
    await asyncio.gather(*(client.evalsha(sha, 0) for _ in range(coroutines)))  # open the pool's connections

    async def one(count: int) -> None:
        for _ in range(count):
            await client.evalsha(sha, 0)

    began = time.perf_counter()
    await asyncio.gather(*(one(n // coroutines) for _ in range(coroutines)))
    rate = (n // coroutines) * coroutines / (time.perf_counter() - began)
    await client.aclose()
    return rate


if __name__ == "__main__":
    main()
