"""Workflows, measured (issue 17).

    python bench/workflows.py [--url redis://127.0.0.1:6379/0] [--steps 1000] [--chord 10000]
                              [--workers 3]

1. A chain of --steps no-op tasks run by one real worker (`taskq worker`, threads, concurrency 1):
   time per hand-off = the next step's start minus this step's ack, both from the task records
   (Redis's clock, ms), p50/p90/max over the chain; and the chain's whole run time per step.
2. A chord: a group of --chord no-op tasks and a callback enqueued after all of them, run by
   --workers workers (threads, concurrency 4 each): the callback's delay = its start minus the
   last group task's ack (records, Redis's clock).

Each run uses a fresh namespace, deleted afterwards.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taskq_cli import TaskQueue  # noqa: E402

APP = "bench.taskq_app"


def start_workers(
    url: str, namespace: str, queues: str, count: int, concurrency: int
) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "TASKQ_REDIS_URL": url, "TASKQ_NAMESPACE": namespace, "PYTHONPATH": str(ROOT)}
    args = [
        "worker",
        "--app",
        APP,
        "--queues",
        queues,
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
    ]
    return [
        subprocess.Popen(
            [sys.executable, "-m", "taskq_cli", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        proc.terminate()
    for proc in workers:
        proc.wait(30)


def records(tq: TaskQueue, queue: str, ids: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        out += [json.loads(raw) for raw in tq.broker.client.hmget(tq.broker.keys(queue).tasks, chunk)]
    return out


def wait_done(tq: TaskQueue, queue: str, task_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = tq.broker.client.hget(tq.broker.keys(queue).tasks, task_id)
        if raw is not None and json.loads(raw)["state"] == "done":
            return
        time.sleep(0.02)
    raise SystemExit(f"task {task_id} not done within {timeout}s")


def chain(url: str, steps: int) -> dict[str, float]:
    namespace = f"bench-wf-{uuid.uuid4().hex[:8]}"
    tq = TaskQueue(redis_url=url, namespace=namespace)
    try:
        ids = tq.chain([("noop", {}) for _ in range(steps)])
        workers = start_workers(url, namespace, "default", 1, 1)
        began = time.monotonic()
        try:
            wait_done(tq, "default", ids[-1], 600)
        finally:
            took = time.monotonic() - began
            stop(workers)
        metas = records(tq, "default", ids)
        gaps = [b["started_at"] - a["finished_at"] for a, b in itertools.pairwise(metas)]
        run = (metas[-1]["finished_at"] - metas[0]["started_at"]) / (steps - 1)
        return {
            "p50": statistics.median(gaps),
            "p90": statistics.quantiles(gaps, n=10)[-1],
            "max": max(gaps),
            "per_step": run,
            "wall": took,
        }
    finally:
        _drop(tq, namespace)


def chord(url: str, size: int, workers_count: int) -> dict[str, float]:
    namespace = f"bench-wf-{uuid.uuid4().hex[:8]}"
    tq = TaskQueue(redis_url=url, namespace=namespace)
    try:
        enqueued = time.monotonic()
        ids = tq.group([("noop", {}) for _ in range(size)])
        callback = tq.enqueue("noop", {}, queue="callback", after=ids)
        enqueue_took = time.monotonic() - enqueued
        workers = start_workers(url, namespace, "default,callback", workers_count, 4)
        try:
            wait_done(tq, "callback", callback, 600)
        finally:
            stop(workers)
        last_ack = max(m["finished_at"] for m in records(tq, "default", ids))
        started = records(tq, "callback", [callback])[0]["started_at"]
        return {"delay": started - last_ack, "enqueue": enqueue_took}
    finally:
        _drop(tq, namespace)


def _drop(tq: TaskQueue, namespace: str) -> None:
    client = tq.broker.client
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    tq.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--chord", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    found = chain(args.url, args.steps)
    print(
        f"chain of {args.steps}: hand-off (ack -> next start) p50 {found['p50']:.1f} ms, "
        f"p90 {found['p90']:.1f} ms, max {found['max']:.0f} ms; {found['per_step']:.2f} ms per step "
        f"(wall {found['wall']:.1f}s with the worker's start)"
    )
    got = chord(args.url, args.chord, args.workers)
    print(
        f"chord of {args.chord} over {args.workers} workers: callback delay after the last ack "
        f"{got['delay']:.0f} ms (enqueue of group and callback {got['enqueue']:.2f}s)"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
