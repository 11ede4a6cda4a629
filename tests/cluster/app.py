"""Handlers for the scale-out tests. TASKQ_REDIS_URL names the deployment (a cluster or a Sentinel
group); each task's result is the time it ran on this host's clock, so tests can measure pickup
latency and execution order from the results alone."""

from __future__ import annotations

import time

from taskq_cli import TaskQueue

tq = TaskQueue(backoff_base=0.2, backoff_max=1.0)


@tq.task(name="stamp", max_retries=20)
def stamp(n: int = 0, seconds: float = 0.0) -> float:
    started = time.time()
    time.sleep(seconds)
    return started


@tq.task(name="noop")
def noop() -> None:
    """For throughput measurements (tests/cluster/bench.py)."""
