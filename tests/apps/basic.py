"""Handlers for worker tests. Each execution is recorded in Redis (list `<ns>:test:runs`, entries
`task_id:attempt`), so tests can count runs across processes."""

from __future__ import annotations

import os
import time

import redis

from taskq_cli import Fail, Retry, TaskQueue, current_task

tq = TaskQueue(backoff_base=0.05, backoff_max=0.2)
_clients: list[redis.Redis] = []  # made at the first record: importing the app connects nothing


def _client() -> redis.Redis:
    if not _clients:
        _clients.append(redis.Redis.from_url(tq.settings.redis_url, decode_responses=True))
    return _clients[0]


def record(tag: str = "") -> None:
    ctx = current_task()
    assert ctx is not None
    entry = f"{ctx.id}:{ctx.attempt}" + (f":{tag}" if tag else "")
    _client().rpush(f"{tq.settings.namespace}:test:runs", entry)


@tq.task(name="ok")
def ok(value: int = 0) -> dict[str, int]:
    record()
    return {"value": value}


@tq.task(name="echo")
def echo(text: str, times: int = 1) -> str:
    record()
    return text * times


@tq.task(name="boom", max_retries=2)
def boom() -> None:
    record()
    raise RuntimeError("boom")


@tq.task(name="give_up")
def give_up() -> None:
    record()
    raise Fail("no point trying again")


@tq.task(name="retry_later", max_retries=5)
def retry_later(times: int = 1, delay: float = 0.05) -> str:
    record()
    ctx = current_task()
    assert ctx is not None
    if ctx.attempt <= times:
        raise Retry(delay=delay)
    return f"done on attempt {ctx.attempt}"


@tq.task(name="sleep", timeout=60)
def sleep(seconds: float) -> None:
    record("start")
    time.sleep(seconds)
    record("end")


@tq.task(name="slow_timeout", timeout=0.3, max_retries=0)
def slow_timeout() -> None:
    record()
    time.sleep(5)


@tq.task(name="async_ok")
async def async_ok(value: int) -> int:
    import asyncio

    record()
    await asyncio.sleep(0.01)
    return value * 2


@tq.task(name="exit_hard")
def exit_hard() -> None:
    record()
    os._exit(3)
