"""Drain throughput of taskq's pools: N pre-enqueued no-op tasks, one `taskq worker --burst`,
timed from the worker's start until it exits (all done).

    python bench/drain.py --tasks 20000 --concurrency 4 --pool processes --pool threads
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taskq_cli import TaskQueue  # noqa: E402


def drain(url: str, tasks: int, concurrency: int, pool: str) -> float:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    tq = TaskQueue(redis_url=url, namespace=namespace)
    for start in range(0, tasks, 5000):
        tq.enqueue_many([("noop", {})] * min(5000, tasks - start))
    env = dict(os.environ, TASKQ_REDIS_URL=url, TASKQ_NAMESPACE=namespace)
    began = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "taskq_cli",
            "worker",
            "--app",
            "bench.taskq_app",
            "--burst",
            "--concurrency",
            str(concurrency),
            "--pool",
            pool,
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - began
    [stats] = tq.broker.queue_stats(["default"])
    assert stats.processed == tasks and stats.pending == 0, stats
    client = redis.Redis.from_url(url)
    client.delete(*client.keys(f"{namespace}:*"))
    tq.close()
    return tasks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default=os.environ.get("TASKQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument("--pool", action="append")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for concurrency in args.concurrency or [1, 4]:
        for pool in args.pool or ["processes", "threads"]:
            rates = [drain(args.redis_url, args.tasks, concurrency, pool) for _ in range(args.repeat)]
            print(
                f"pool={pool:<10} concurrency={concurrency}  {max(rates):8.0f} tasks/s "
                f"(best of {args.repeat}: {', '.join(f'{r:.0f}' for r in rates)})",
                flush=True,
            )


if __name__ == "__main__":
    main()
