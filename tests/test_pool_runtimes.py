"""Every pool kind is the one place that records run times: each outcome's run time goes into
`pool.runtimes` before the pool's callback hears of it (the worker's prefetch reads the overall
average, the process pool's placement the average per task name). Pools driven in process, no Redis."""

from __future__ import annotations

import json
import os
import queue
import time
from typing import Any

import pytest

from taskq_cli import TaskQueue
from taskq_cli.models import Outcome, OutcomeKind
from taskq_cli.pool import Pool
from taskq_cli.pools import POOL_KINDS, make_pool
from taskq_cli.runner import Execution

app = TaskQueue(redis_url="redis://127.0.0.1:1/0", namespace="unused")


@app.task(name="nap")
def nap(seconds: float) -> None:
    time.sleep(seconds)


@app.task(name="die")
def die() -> None:
    os._exit(7)


Seen = tuple[str, Outcome, int, float | None]  # name, outcome, samples and its name's average then


def execution(name: str, payload: dict[str, Any], timeout: float | None = 10) -> Execution:
    return Execution(f"id-{name}", name, "default", 1, 0, json.dumps(payload), timeout, f"token-{name}")


def started(kind: str) -> tuple[Pool, queue.Queue[Seen]]:
    """A pool whose callback notes what its runtimes held at the moment it was called."""
    pool = make_pool(kind, 2, app.registry, None)
    seen: queue.Queue[Seen] = queue.Queue()

    def on_done(execution: Execution, outcome: Outcome) -> None:
        seen.put((execution.name, outcome, pool.runtimes.samples, pool.runtimes.of(execution.name)))

    pool.start(on_done)
    return pool, seen


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_each_pool_records_an_outcomes_run_time_before_its_callback_hears_of_it(kind: str) -> None:
    pool, seen = started(kind)
    try:
        # When a task of ours runs
        pool.submit(execution("nap", {"seconds": 0.05}))
        name, outcome, samples, average = seen.get(timeout=10)
        # Then the callback finds its run time recorded, overall and under its name
        assert (name, outcome.kind) == ("nap", OutcomeKind.SUCCESS)
        assert samples == 1 and average == outcome.runtime >= 0.05
        assert pool.runtimes.overall == pytest.approx(outcome.runtime * 0.2)

        # When a task no handler has runs (names come from Redis): overall only
        pool.submit(execution("stranger", {}))
        name, outcome, samples, average = seen.get(timeout=10)
        assert (name, samples, average) == ("stranger", 2, None)
    finally:
        pool.close()


@pytest.mark.parametrize(("kind", "task"), [("threads", "nap"), ("processes", "die")])
def test_an_outcome_the_pool_made_up_counts_overall_but_teaches_nothing_about_its_task(
    kind: str, task: str
) -> None:
    # Given a task the pool ends itself: a thread past its timeout, a child that died under it
    pool, seen = started(kind)
    try:
        pool.submit(execution(task, {"seconds": 1.0} if task == "nap" else {}, timeout=0.1))
        name, outcome, samples, average = seen.get(timeout=10)
        # Then it counts in the overall average, but gives no guess of its task's run time
        assert (name, outcome.kind, samples, average) == (task, OutcomeKind.ERROR, 1, None)
    finally:
        pool.close()
