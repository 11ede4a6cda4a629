"""Handlers for the workflow tests (tests/test_workflows.py): TASKQ_REDIS_URL names one server or a
cluster. Each run of `callback` is counted in Redis (`<ns>:test:callback-runs`, a key of its own:
any slot), so a test can prove a chord's callback ran exactly once."""

from __future__ import annotations

from typing import Any

from taskq_cli import TaskQueue, current_task

tq = TaskQueue(backoff_base=0.05, backoff_max=0.2)


@tq.task(name="step")
def step(n: int = 0) -> int:
    return n


@tq.task(name="add")
def add(n: int = 0) -> int:
    """Its dependencies' results summed, plus n (a chain adds up as it goes)."""
    ctx = current_task()
    assert ctx is not None
    return n + sum(int(v or 0) for v in ctx.dependency_results.values())


@tq.task(name="callback")
def callback() -> dict[str, Any]:
    ctx = current_task()
    assert ctx is not None
    tq.broker.client.incr(f"{tq.settings.namespace}:test:callback-runs")
    values = list(ctx.dependency_results.values())
    return {"count": len(values), "sum": sum(int(v or 0) for v in values)}


@tq.task(name="results")
def results() -> dict[str, Any]:
    """Its dependencies' results as the handler reads them: {id: result}."""
    ctx = current_task()
    assert ctx is not None
    return dict(ctx.dependency_results)
