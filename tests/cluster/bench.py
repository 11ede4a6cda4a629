"""Drain throughput of a multi-queue load on one Redis server and on a 3-primary Redis Cluster, each
started on loopback for the run. Not a test (pytest does not collect it); run it by hand:

    python -m tests.cluster.bench [--tasks 5000] [--queues 4] [--pools threads,processes] [--repeat 2]

For each deployment and pool: enqueue `queues` x `tasks` no-op tasks (enqueue_many), then time one
`taskq worker --queues q1,...,qN --concurrency 4 --burst` from its start to its exit (process start-up
included), and check that every task was processed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from taskq_cli import TaskQueue
from tests.cluster.servers import Cluster, node
from tests.conftest import ROOT, cli_env
from tests.support import free_port


def drain(url: str, queues: list[str], tasks: int, pool: str) -> tuple[float, dict[str, str]]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    tq = TaskQueue(redis_url=url, namespace=namespace)
    try:
        for queue in queues:
            for start in range(0, tasks, 5000):
                tq.enqueue_many([("noop", {}, {"queue": queue})] * min(5000, tasks - start))
        env = cli_env(url, namespace)
        began = time.monotonic()
        worker = subprocess.run(
            [sys.executable, "-m", "taskq_cli", "worker", "--app", "tests.cluster.app", "--queues",
             ",".join(queues), "--concurrency", "4", "--burst", "--pool", pool, "--no-cron",
             "--log-level", "warning"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        elapsed = time.monotonic() - began
        if worker.returncode != 0:
            raise SystemExit(f"worker failed: {worker.stderr[-2000:]}")
        processed = sum(s.processed for s in tq.broker.queue_stats(queues))
        if processed != tasks * len(queues):
            raise SystemExit(f"processed {processed} of {tasks * len(queues)}")
        owners: dict[str, str] = {}
        if tq.broker.cluster:
            client = tq.broker.client
            owners = {q: client.get_node_from_key(tq.broker.keys(q).tasks).name for q in queues}  # type: ignore[union-attr]
        return elapsed, owners
    finally:
        tq.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per queue")
    parser.add_argument("--queues", type=int, default=4)
    parser.add_argument("--pools", default="threads,processes")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    queues = [f"q{i + 1}" for i in range(args.queues)]
    total = args.tasks * args.queues
    print(
        f"{args.queues} queues x {args.tasks} no-op tasks, one worker --concurrency 4 --burst; "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        single = node(Path(tmp) / "single", free_port(), []).start()
        cluster = Cluster(Path(tmp) / "cluster").start()
        try:
            deployments = (("1 primary  ", f"redis://{single.address}/0"), ("3 primaries", cluster.url))
            for pool in args.pools.split(","):
                runs: dict[str, list[tuple[float, dict[str, str]]]] = {label: [] for label, _ in deployments}
                for _ in range(args.repeat):  # interleaved, so a busy moment of the host hits both alike
                    for label, url in deployments:
                        runs[label].append(drain(url, queues, args.tasks, pool))
                for label, got in runs.items():
                    best = min(t for t, _ in got)
                    median = statistics.median(t for t, _ in got)
                    where = got[0][1]
                    placement = f"  ({', '.join(f'{q}@{n}' for q, n in where.items())})" if where else ""
                    print(
                        f"{label} {pool:9}: best {best:6.2f}s = {total / best:7.0f} tasks/s, "
                        f"median {median:6.2f}s{placement}"
                    )
        finally:
            single.kill()
            cluster.stop()


if __name__ == "__main__":
    main()
