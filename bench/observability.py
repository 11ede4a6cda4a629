"""What observability costs a draining worker (issue 18): the same N pre-enqueued no-op tasks drained
by `taskq worker --burst` with neither, with metrics on (`--metrics-port`), and with the tracing
middleware installed (no exporter configured), interleaved round by round in one run.

    python bench/observability.py --tasks 20000 --rounds 3 --pool processes --pool threads

Per drain: tasks/s from the worker's start to its exit, and CPU per task (user + system of the worker
and its pool's processes, from the rusage of waited children). Prints each round and the medians,
with each variant's cost against "neither".
"""

from __future__ import annotations

import argparse
import os
import resource
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

VARIANTS = {
    "neither": ["--app", "bench.taskq_app"],
    "metrics": ["--app", "bench.taskq_app", "--metrics-port", "0"],
    "tracing": ["--app", "bench.taskq_app_traced"],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def drain(url: str, tasks: int, concurrency: int, pool: str, variant: str) -> tuple[float, float]:
    """(tasks/s, CPU µs per task) of one burst drain."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    tq = TaskQueue(redis_url=url, namespace=namespace)
    for start in range(0, tasks, 5000):
        tq.enqueue_many([("noop", {})] * min(5000, tasks - start))
    env = dict(os.environ, TASKQ_REDIS_URL=url, TASKQ_NAMESPACE=namespace)
    env.pop("TASKQ_METRICS_PORT", None)
    args = ["worker", *VARIANTS[variant], "--burst", "--concurrency", str(concurrency), "--pool", pool]
    cpu_before, began = children_cpu(), time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "taskq_cli", *args, "--log-level", "warning"],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    elapsed, cpu = time.perf_counter() - began, children_cpu() - cpu_before
    [stats] = tq.broker.queue_stats(["default"])
    assert stats.processed == tasks and stats.pending == 0, stats
    client = redis.Redis.from_url(url)
    client.delete(*client.keys(f"{namespace}:*"))
    tq.close()
    return tasks / elapsed, cpu / tasks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", help="a Redis to use [default: a private redis-server on a free port]")
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pool", action="append")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = None
    if args.redis_url is None:  # a shared Redis busy with other work would be measured too
        import socket

        from taskq_cli.dev import start_redis

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = start_redis(port=port)
        args.redis_url = server.url
    try:
        measure(args)
    finally:
        if server is not None:
            server.stop()


def measure(args: argparse.Namespace) -> None:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for pool in args.pool or ["processes", "threads"]:
        runs: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
        for round_ in range(1, args.rounds + 1):
            for variant in VARIANTS:
                rate, cpu = drain(args.redis_url, args.tasks, args.concurrency, pool, variant)
                runs[variant].append((rate, cpu))
                print(
                    f"  {pool} round {round_} {variant:<8} {rate:8.0f} tasks/s {cpu:7.1f} µs CPU/task",
                    flush=True,
                )
        base_rate = statistics.median(r for r, _ in runs["neither"])
        base_cpu = statistics.median(c for _, c in runs["neither"])
        for variant, figures in runs.items():
            rate = statistics.median(r for r, _ in figures)
            cpu = statistics.median(c for _, c in figures)
            print(
                f"{pool:<10} {variant:<8} median {rate:8.0f} tasks/s ({rate / base_rate - 1:+.1%}), "
                f"{cpu:7.1f} µs CPU/task ({cpu / base_cpu - 1:+.1%})",
                flush=True,
            )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
