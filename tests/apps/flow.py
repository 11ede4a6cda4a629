"""Handlers for the flow-control tests (tests/test_limiter.py, tests/chaos/test_flow.py): work under
a per-key limiter, each pass recorded in Redis (list `<ns>:test:passes`, entries
`task_id:attempt:redis_ms`) so tests see across processes when each one passed."""

from __future__ import annotations

import time

import redis

from taskq_cli import TaskQueue, current_task

tq = TaskQueue(backoff_base=0.05, backoff_max=0.2)
_client = redis.Redis.from_url(tq.settings.redis_url, decode_responses=True)


def _record(tag: str) -> None:
    ctx = current_task()
    assert ctx is not None
    seconds, micros = _client.time()
    _client.rpush(
        f"{tq.settings.namespace}:test:{tag}", f"{ctx.id}:{ctx.attempt}:{seconds * 1000 + micros // 1000}"
    )


@tq.task(name="limited", max_retries=0)
def limited(key: str, rate: str | None = None, concurrency: int | None = None, hold: float = 0.0) -> None:
    """Passes the limiter (no retries: a RateLimited that counted as a failure would bury it)."""
    with tq.limiter(key, rate=rate, concurrency=concurrency):
        _record("passes")
        time.sleep(hold)
