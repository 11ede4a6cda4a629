"""Flow control figures (issue 16), in one run:

1. Fetch throughput of a queue with a concurrency limit above what is in flight, next to the same
   queue with no limit, rounds interleaved: (a) the protocol alone, one process fetching batches of
   16 and acking them in the next round trip, as a worker's reporter does; (b) end to end, N no-op
   tasks drained by one `taskq worker --burst`.
2. A rate limit of R/s held by three workers: starts per second from the tasks' records (each
   attempt's `started_at`, on Redis's clock), the most in any 1 s window, and the rate held.

    python bench/flow.py --tasks 10000 --rounds 3 --rate 200 --rate-tasks 2000
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taskq_cli import TaskQueue  # noqa: E402

WORKER = [sys.executable, "-m", "taskq_cli", "worker", "--app", "bench.taskq_app", "--log-level", "warning"]


def fresh(url: str) -> tuple[TaskQueue, dict[str, str]]:
    namespace = f"bench-flow-{uuid.uuid4().hex[:8]}"
    return TaskQueue(redis_url=url, namespace=namespace), dict(
        os.environ, TASKQ_REDIS_URL=url, TASKQ_NAMESPACE=namespace
    )


def cleanup(url: str, tq: TaskQueue) -> None:
    client = redis.Redis.from_url(url)
    keys = client.keys(f"{tq.settings.namespace}:*")
    if keys:
        client.delete(*keys)
    tq.close()


def drain(url: str, tasks: int, concurrency: int, limit: int | None) -> float:
    tq, env = fresh(url)
    if limit is not None:
        tq.set_queue_limits("default", concurrency=limit)
    for start in range(0, tasks, 5000):
        tq.enqueue_many([("noop", {})] * min(5000, tasks - start))
    began = time.perf_counter()
    args = [*WORKER, "--burst", "--concurrency", str(concurrency), "--pool", "threads"]
    subprocess.run(args, env=env, cwd=ROOT, check=True, timeout=600)
    elapsed = time.perf_counter() - began
    [stats] = tq.broker.queue_stats(["default"])
    assert stats.processed == tasks and stats.pending == 0, stats
    cleanup(url, tq)
    return tasks / elapsed


def fetch_loop(url: str, tasks: int, limit: int | None, batch: int = 16) -> float:
    """Tasks/s of fetch + ack round trips, as the reporter sends them, on one queue."""
    from taskq_cli.protocol import Ack, Fetched

    tq, _ = fresh(url)
    if limit is not None:
        tq.set_queue_limits("default", concurrency=limit)
    for start in range(0, tasks, 5000):
        tq.enqueue_many([("noop", {})] * min(5000, tasks - start))
    broker = tq.broker
    held: list[Fetched] = []
    done = 0
    began = time.perf_counter()
    while done < tasks:
        reports = [Ack(job, None, 0) for job in held]
        _, got = broker.report_and_fetch(reports, "default", batch, 30.0, "bench")
        done += len(held)
        held = [g for g in got if isinstance(g, Fetched)]
    elapsed = time.perf_counter() - began
    cleanup(url, tq)
    return tasks / elapsed


def most_in_window(times: list[float], window: float) -> int:
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def rate_run(url: str, rate: int, tasks: int, workers: int) -> dict[str, float]:
    tq, env = fresh(url)
    tq.set_queue_limits("default", rate=f"{rate}/s")
    ids = tq.enqueue_many([("noop", {})] * tasks)
    procs = [
        subprocess.Popen([*WORKER, "--concurrency", "8", "--pool", "threads"], env=env, cwd=ROOT)
        for _ in range(workers)
    ]
    try:
        deadline = time.monotonic() + 10 + 3 * tasks / rate
        while tq.broker.queue_stats(["default"])[0].processed < tasks:
            if time.monotonic() > deadline:
                raise SystemExit("the rate run did not finish in time")
            time.sleep(0.2)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
    client = redis.Redis.from_url(url, decode_responses=True)
    records = client.hmget(f"{tq.settings.namespace}:{{default}}:tasks", ids)
    starts = sorted(json.loads(r)["started_at"] / 1000 for r in records if r)
    cleanup(url, tq)
    span = starts[-1] - starts[0]
    first = starts[0]
    seconds = [0] * (int(span) + 1)
    for t in starts:
        seconds[int(t - first)] += 1
    whole = seconds[1:-1]  # whole seconds only: the first is a burst of R, the last partial
    return {
        "starts": len(starts),
        "span": span,
        "most_in_1s": most_in_window(starts, 1.0),
        "held": (len(starts) - rate) / span,  # after the first window's burst
        "per_second_min": min(whole) if whole else 0,
        "per_second_max": max(whole) if whole else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default=os.environ.get("TASKQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--rate-tasks", type=int, default=2000)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    limit = args.concurrency * 16  # above what is in flight: never reached, always checked
    plain: list[float] = []
    limited: list[float] = []
    for _ in range(args.rounds):
        plain.append(fetch_loop(args.redis_url, args.tasks, None))
        limited.append(fetch_loop(args.redis_url, args.tasks, limit))
    p, q = statistics.median(plain), statistics.median(limited)
    print(f"fetch+ack best of each: {max(limited) / max(plain):.3f} limited / unlimited")
    rounds = ", ".join(f"{r:.0f}" for r in plain)
    print(f"fetch+ack, no limit:              {p:8.0f} tasks/s (rounds: {rounds})")
    rounds = ", ".join(f"{r:.0f}" for r in limited)
    print(f"fetch+ack, concurrency limit {limit:3d}: {q:8.0f} tasks/s (rounds: {rounds})")
    print(f"limited / unlimited: {q / p:.3f}", flush=True)
    plain, limited = [], []
    for _ in range(args.rounds):
        plain.append(drain(args.redis_url, args.tasks, args.concurrency, None))
        limited.append(drain(args.redis_url, args.tasks, args.concurrency, limit))
    p, q = statistics.median(plain), statistics.median(limited)
    rounds = ", ".join(f"{r:.0f}" for r in plain)
    print(f"drain, no limit:              {p:8.0f} tasks/s (rounds: {rounds})")
    rounds = ", ".join(f"{r:.0f}" for r in limited)
    print(f"drain, concurrency limit {limit:3d}: {q:8.0f} tasks/s (rounds: {rounds})")
    print(f"limited / unlimited: {q / p:.3f}", flush=True)
    r = rate_run(args.redis_url, args.rate, args.rate_tasks, 3)
    print(
        f"rate {args.rate}/s, 3 workers: {r['starts']:.0f} starts over {r['span']:.2f}s; most in any 1 s "
        f"window {r['most_in_1s']:.0f}; held {r['held']:.1f}/s ({r['held'] / args.rate:.3f} of the limit); "
        f"whole seconds {r['per_second_min']:.0f}-{r['per_second_max']:.0f} starts"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
