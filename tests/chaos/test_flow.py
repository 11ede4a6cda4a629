"""Queue limits under faults, with real workers and a Redis of our own: workers SIGKILLed under a
concurrency limit (the lost slots come back through lease recovery, nothing is lost, the limit is
never passed), and a rate limit held by three workers (counted per window from the execution
ledger and from the starts Redis recorded). Each prints one line of figures."""

from __future__ import annotations

import bisect
import json
import threading
import time

from tests.apps.chaos import read_ledger
from tests.chaos.conftest import Lab
from tests.support.keys import final_states, queue_counts
from tests.support.polling import until


class ActiveWatch(threading.Thread):
    """Every 10 ms: how many tasks of the queue are active (the most seen)."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(name="active-watch", daemon=True)
        self.client, self.key = lab.client, f"{lab.namespace}:{{default}}:active"
        self.most = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.01):
            self.most = max(self.most, int(self.client.zcard(self.key)))

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=5)
        return self.most


def holder_pid(lab: Lab) -> int | None:
    """The pid of a live worker holding an active task of the queue, if any."""
    active = lab.client.zrange(f"{lab.namespace}:{{default}}:active", 0, -1)
    holders = (
        {
            json.loads(raw).get("worker")
            for raw in lab.client.hmget(f"{lab.namespace}:{{default}}:tasks", active)
            if raw
        }
        if active
        else set()
    )
    pids = {w["id"]: w["pid"] for w in lab.producer.broker.live_workers()}
    live = {m.pid for m in lab.fleet.live("worker")}
    found = [pids[h] for h in holders if h in pids and pids[h] in live]
    return found[0] if found else None


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def most_in_window(times: list[float], window: float) -> int:
    """The most of `times` (sorted) within any half-open window of that length."""
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def test_workers_sigkilled_under_a_concurrency_limit_lose_nothing_and_their_slots_come_back(lab: Lab) -> None:
    # Given a queue limited to 2 active tasks, three workers of 3 slots each and 60 tasks of 150 ms
    lab.producer.set_queue_limits("default", concurrency=2)
    ids = lab.producer.enqueue_many([("work", {"ms": 150}) for _ in range(60)])
    for _ in range(3):
        lab.fleet.worker(concurrency=3, lease="1s")
    watch = ActiveWatch(lab)
    watch.start()
    # When two workers are SIGKILLed while they hold tasks, and replaced
    kills = 0
    for _ in range(2):
        until(lambda: holder_pid(lab) is not None, 10, what="a task is active", logs=lab.fleet.logs)
        pid = holder_pid(lab)
        victim = next(m for m in lab.fleet.live("worker") if m.pid == pid)
        lab.fleet.kill(victim)
        kills += 1
        lab.fleet.worker(concurrency=3, lease="1s")
    # Then every task ends done (the killed workers' slots came back), never more than 2 at once
    took = until(
        lambda: queue_counts(lab.client, lab.namespace)["done"] == len(ids),
        60,
        what="all done",
        logs=lab.fleet.logs,
    )
    most = watch.stop()
    final = final_states(lab.client, lab.namespace, ids)
    assert all(final[i][0] == "done" for i in ids), "a task was lost"
    events = read_ledger(lab.fleet.ledger)
    starts = {(e.task_id, e.attempt, e.pid): e.at for e in events if e.kind == "start"}
    runs = [(starts[(e.task_id, e.attempt, e.pid)], e.at) for e in events if e.kind == "end"]
    overlap = most_at_once(runs)
    assert most <= 2 and overlap <= 2, (most, overlap)
    lab.figure(
        f"concurrency limit 2 under {kills} SIGKILLs: 60/60 done in {took:.1f}s, most active seen "
        f"{most}, most completed executions overlapping {overlap}"
    )


def test_a_rate_limit_is_held_across_three_workers(lab: Lab) -> None:
    # Given a queue limited to 20 starts per second and 100 instant tasks
    lab.producer.set_queue_limits("default", rate="20/s")
    ids = lab.producer.enqueue_many([("work", {}) for _ in range(100)])
    # When three workers serve it
    began = time.monotonic()
    for _ in range(3):
        lab.fleet.worker(concurrency=4)
    until(
        lambda: queue_counts(lab.client, lab.namespace)["done"] == len(ids),
        60,
        what="all done",
        logs=lab.fleet.logs,
    )
    # Then no window of 1 s holds more than 20 starts on Redis's clock (the records' started_at, set
    # by the fetch the limiter admitted), and the ledger agrees: each handler started once, a little
    # after its fetch. That "little" is measured, not assumed: a handler's start lags its fetch by
    # `lag` (its ledger time, CLOCK_MONOTONIC, minus its started_at), so ledger starts within a window
    # of 1 s less the lags' spread were fetched within 1 s (a loaded machine widens the spread).
    records = [lab.client.hget(f"{lab.namespace}:{{default}}:tasks", i) for i in ids]
    started = {i: json.loads(r)["started_at"] / 1000 for i, r in zip(ids, records, strict=True) if r}
    redis_starts = sorted(started.values())
    events = [e for e in read_ledger(lab.fleet.ledger) if e.kind == "start"]
    ledger = sorted(e.at for e in events)
    lags = [e.at - started[e.task_id] for e in events]
    spread = max(lags) - min(lags)
    in_redis = most_in_window(redis_starts, 1.0)
    in_ledger = most_in_window(ledger, max(1.0 - spread, 0.0))
    span = ledger[-1] - ledger[0]
    assert len(ledger) == 100 and {e.task_id for e in events} == set(ids), len(ledger)
    assert in_redis <= 20 and in_ledger <= 20, (in_redis, in_ledger, f"lag spread {spread:.3f}s")
    assert span >= 4.0, f"100 starts at 20/s took {span:.2f}s"  # 5 windows: at least 4 s apart
    rate = (len(ledger) - 20) / span  # the first window's burst aside
    lab.figure(
        f"rate limit 20/s, 3 workers: most starts in any 1 s window {in_redis} (Redis clock), "
        f"{in_ledger} (ledger, {max(1.0 - spread, 0.0):.2f} s); 100 starts over {span:.2f}s "
        f"({rate:.1f}/s after the first window; {time.monotonic() - began:.1f}s in all)"
    )


def all_done(lab: Lab, ids: list[str]) -> bool:
    return queue_counts(lab.client, lab.namespace)["done"] == len(ids)
