"""The retry backoff, drawn by the protocol (lua/_lib.lua `backoff_ms`, its one formula): a failure
reported without a delay is retried after a delay uniform in [d/2, d], d = min(backoff_max,
backoff_base * 2**(attempt-1)), on a real Redis with the scripts' clock driven by the test."""

from __future__ import annotations

import json

from taskq_cli.protocol import Broker, Fetched, NewTask

from .conftest import Clock

ERROR = {"type": "ValueError", "message": "boom", "traceback": ""}
BASE, CAP = 5.0, 3600.0


def run_once(broker: Broker, clock: Clock, task_id: str) -> Fetched:
    """Promote what is due and fetch `task_id` (a new attempt)."""
    clock.advance(CAP + 1)
    broker.promote("default")
    [job] = broker.fetch_many("default", 1, 30.0, "w")
    assert isinstance(job, Fetched) and job.id == task_id
    return job


def test_a_failure_without_a_delay_is_retried_after_the_jittered_capped_backoff(
    broker: Broker, clock: Clock
) -> None:
    delays: dict[int, list[float]] = {}
    for n in range(40):
        task_id = f"t{n}"
        broker.enqueue([NewTask(task_id, "default", {"name": "t"}, json.dumps({}))])
        for attempt in range(1, 14):
            job = run_once(broker, clock, task_id)
            state = broker.fail(job, ERROR, final=False, delay=None, max_retries=20, backoff=(BASE, CAP))
            assert state == "scheduled" and state.retry_in is not None
            delays.setdefault(attempt, []).append(state.retry_in)
            assert broker.find_task(task_id).meta["run_at"] == clock.ms + round(state.retry_in * 1000)
        broker.fail(run_once(broker, clock, task_id), ERROR, final=True, delay=0, max_retries=20)
    for attempt, seen in delays.items():
        d = min(CAP, BASE * 2 ** (attempt - 1))
        assert all(d / 2 <= s <= d for s in seen), (attempt, seen)
        assert max(seen) - min(seen) > d / 8, f"jitter is present at attempt {attempt}"


def test_an_explicit_delay_is_used_as_given_and_not_capped(broker: Broker, clock: Clock) -> None:
    broker.enqueue([NewTask("a", "default", {"name": "t"}, json.dumps({}))])
    job = run_once(broker, clock, "a")
    state = broker.fail(job, ERROR, final=False, delay=CAP * 3, max_retries=3, backoff=(BASE, CAP))
    assert (state, state.retry_in) == ("scheduled", CAP * 3)
