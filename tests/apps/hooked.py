"""An app with middleware, for tests/test_middleware.py. Every hook call is recorded in Redis (list
`<ns>:test:hooks`, one JSON object each, with the pid of the process it ran in), so tests see what ran
where across processes. Payload fields steer the failures: `refuse` (before_enqueue raises),
`break_before` (before_run raises RuntimeError), `fail_before` (before_run raises Fail),
`break_after` (after_run raises)."""

from __future__ import annotations

import json
import os
from typing import Any

import redis

from taskq_cli import Fail, Middleware, RunOutcome, TaskInfo, TaskQueue, current_task

tq = TaskQueue(backoff_base=0.05, backoff_max=0.1)
_clients: dict[str, redis.Redis] = {}


def hooks_key(namespace: str) -> str:
    return f"{namespace}:test:hooks"


def note(**event: Any) -> None:
    """Recorded where the app's TaskQueue points now (a test may `configure` it)."""
    url = tq.settings.redis_url
    client = _clients.get(url) or _clients.setdefault(url, redis.Redis.from_url(url, decode_responses=True))
    client.rpush(hooks_key(tq.settings.namespace), json.dumps({**event, "pid": os.getpid()}))


def _seen(hook: str, task: TaskInfo, **more: Any) -> None:
    note(
        hook=hook,
        id=task.id,
        name=task.name,
        queue=task.queue,
        attempt=task.attempt,
        headers=dict(task.headers),
        payload=task.payload,
        **more,
    )


class Recorder(Middleware):
    def before_enqueue(self, task: TaskInfo) -> None:
        task.headers["tenant"] = "acme"
        _seen("before_enqueue", task)

    def before_run(self, task: TaskInfo) -> None:
        _seen("before_run", task)

    def after_run(self, task: TaskInfo, outcome: RunOutcome) -> None:
        error = None if outcome.error is None else f"{type(outcome.error).__name__}: {outcome.error}"
        _seen(
            "after_run",
            task,
            status=outcome.status,
            result=outcome.result,
            error=error,
            duration=outcome.duration,
        )


class Breaker(Middleware):
    """Added second: its before hooks run after the Recorder's, its after_run before."""

    def before_enqueue(self, task: TaskInfo) -> None:
        if task.payload.get("refuse"):
            raise PermissionError("tenant over quota")

    def before_run(self, task: TaskInfo) -> None:
        if task.payload.get("break_before"):
            raise RuntimeError("no database connection")
        if task.payload.get("fail_before"):
            raise Fail("tenant suspended")

    def after_run(self, task: TaskInfo, outcome: RunOutcome) -> None:
        note(hook="breaker_after_run", id=task.id)
        if task.payload.get("break_after"):
            raise ValueError("report server down")


tq.add_middleware(Recorder())
tq.add_middleware(Breaker())


@tq.task(name="work", max_retries=1)
def work(
    value: int = 0,
    refuse: bool = False,
    break_before: bool = False,
    fail_before: bool = False,
    break_after: bool = False,
) -> dict[str, int]:
    note(hook="handler", id=_my_id())
    return {"value": value}


@tq.task(name="awork", max_retries=1)
async def awork(value: int = 0) -> int:
    note(hook="handler", id=_my_id())
    return value * 2


def _my_id() -> str:
    ctx = current_task()
    assert ctx is not None
    return ctx.id
