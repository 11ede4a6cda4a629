"""The soak: many tasks through 4 workers that are SIGKILLed at random, a pair of schedulers and a
flaky handler, then a count of what became of every task.

    python tools/soak.py                  # the CI version: 40,000 tasks, about a minute on 2 cores
    python tools/soak.py --long           # the release check: 100,000 tasks (2-3 minutes on 2 cores)
    python tools/soak.py --tasks 20000 --kill-every 2:5 --json-out soak.json

It starts a redis-server of its own on a free port (or uses `--redis-url` with a fresh namespace),
enqueues the tasks while workers run them, kills a random worker (SIGKILL of the worker process; its
children must die with it) every few seconds and starts a new one, kills a scheduler now and then,
waits until every task is done or dead, stops the rest with SIGTERM, and prints:

    enqueued N, done D, dead X, lost 0, duplicated K (all in flight at a kill)

Lost: enqueued ids that ended neither done nor dead nor still waiting. Duplicated: tasks whose
handler completed more than once (every execution is written to a ledger, see tests/apps/chaos.py);
each must have been in flight in a worker that was killed. Exit status 0 only when nothing was lost
and every duplicate is explained.

The task mix: 78% short `work` tasks (0-5 ms), 15% flaky ones (each attempt fails with probability
0.3; 12 retries), 4% delayed by up to 2 s, 2% long (0.2-1 s, so that kills catch them mid-run), 1%
`doomed` (always fail: dead after 2 attempts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from taskq_cli import TaskQueue  # noqa: E402
from tests.apps import chaos as app  # noqa: E402
from tests.chaos.harness import Fleet, LeaseWatch  # noqa: E402
from tests.support import RedisServer, final_states, queue_counts  # noqa: E402

SHORT_TASKS = 40_000
LONG_TASKS = 100_000
BATCH = 500
MAX_BACKLOG = 3_000  # the producer waits while this many tasks are pending


def task_mix(n: int, rng: random.Random) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    items: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for i in range(n):
        roll = rng.random()
        options: dict[str, Any] = {"task_id": f"s{i}"}
        if roll < 0.01:
            items.append(("doomed", {}, options))
            continue
        if roll < 0.03:
            payload: dict[str, Any] = {"ms": rng.randint(200, 1000)}
        elif roll < 0.18:
            payload = {"ms": rng.randint(0, 5), "fail_rate": 0.3}
        elif roll < 0.22:
            payload = {"ms": rng.randint(0, 5)}
            options["delay"] = round(rng.uniform(0.1, 2.0), 3)
        else:
            payload = {"ms": rng.randint(0, 5)}
        items.append(("work", payload, options))
    return items


class Soak:
    def __init__(self, args: argparse.Namespace, redis_url: str, workdir: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.namespace = args.namespace or f"soak-{uuid.uuid4().hex[:8]}"
        self.workdir = workdir
        self.client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=30)
        self.fleet = Fleet(workdir, redis_url, self.namespace, workdir / "ledger")
        self.producer = TaskQueue(redis_url=redis_url, namespace=self.namespace)
        self.producer.registry = app.tq.registry
        self.items = task_mix(args.tasks, self.rng)
        self.ids: list[str] = []
        self.faults: list[app.Fault] = []
        self.kills = 0
        self.scheduler_kills = 0
        self.enqueued = threading.Event()
        self.stop = threading.Event()
        self.watch = LeaseWatch(
            redis.Redis.from_url(redis_url, decode_responses=True), f"{self.namespace}:{{default}}:active"
        )

    # -- the run ----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        for _ in range(self.args.workers):
            self.worker()
        for _ in range(2):
            self.fleet.scheduler()
        self.watch.start()
        producer = threading.Thread(target=self.produce, name="producer", daemon=True)
        killer = threading.Thread(target=self.kill_loop, name="killer", daemon=True)
        producer.start()
        killer.start()
        try:
            self.wait_until_finished(began)
        finally:
            self.stop.set()
            killer.join(timeout=10)
            producer.join(timeout=10)
        ran_for = time.monotonic() - began
        worst = self.watch.stop()
        self.fleet.stop_gracefully(timeout=30)
        return self.report(ran_for, worst)

    def worker(self) -> None:
        self.fleet.worker(concurrency=self.args.concurrency, lease=self.args.lease)

    def produce(self) -> None:
        for start in range(0, len(self.items), BATCH):
            while (
                not self.stop.is_set() and queue_counts(self.client, self.namespace)["pending"] > MAX_BACKLOG
            ):
                time.sleep(0.05)
            if self.stop.is_set():
                return
            self.ids += self.producer.enqueue_many(self.items[start : start + BATCH])
        self.enqueued.set()

    def kill_loop(self) -> None:
        low, high = self.args.kill_every
        while not self.stop.wait(self.rng.uniform(low, high)):
            draining = self.enqueued.is_set() and not self.args.kill_while_draining
            if draining and self.unfinished() == 0:
                return
            workers = self.fleet.live("worker")
            if self.rng.random() < 0.1:
                schedulers = self.fleet.live("scheduler")
                if schedulers:
                    self.fleet.kill(self.rng.choice(schedulers))
                    self.fleet.scheduler()
                    self.scheduler_kills += 1
            if workers:
                victim = self.rng.choice(workers)
                self.faults.append(app.Fault("kill", self.fleet.kill(victim), victim.pid))
                self.kills += 1
                self.worker()

    def unfinished(self) -> int:
        c = queue_counts(self.client, self.namespace)
        return c["pending"] + c["scheduled"] + c["active"]

    def wait_until_finished(self, began: float) -> None:
        last_note = time.monotonic()
        while True:
            c = queue_counts(self.client, self.namespace)
            if self.enqueued.is_set() and c["pending"] + c["scheduled"] + c["active"] == 0:
                return
            if time.monotonic() - began > self.args.timeout:
                raise SystemExit(
                    f"soak: not finished after {self.args.timeout}s: {c}\n{self.fleet.logs(1500)}"
                )
            if time.monotonic() - last_note >= self.args.progress:
                last_note = time.monotonic()
                print(
                    f"soak: {time.monotonic() - began:5.0f}s enqueued {len(self.ids)}, done {c['done']}, "
                    f"dead {c['dead']}, pending {c['pending']}, scheduled {c['scheduled']}, "
                    f"active {c['active']}, kills {self.kills}",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(0.2)

    # -- the count --------------------------------------------------------------------------------

    def report(self, ran_for: float, worst: float) -> dict[str, Any]:
        final = final_states(self.client, self.namespace, self.ids)
        verdict = app.judge(self.ids, final, app.read_ledger(self.fleet.ledger), self.faults)
        counters = {
            k: int(v) for k, v in self.client.hgetall(f"{self.namespace}:{{default}}:counters").items()
        }
        summary = {
            "line": verdict.line("a kill"),
            "enqueued": verdict.enqueued,
            "done": verdict.done,
            "dead": verdict.dead,
            "waiting": verdict.waiting,
            "lost": len(verdict.lost),
            "lost_ids": verdict.lost[:20],
            "duplicated": len(verdict.duplicated),
            "unexplained": sorted(verdict.unexplained)[:20],
            "attempts_cut": verdict.phases,
            "worker_kills": self.kills,
            "scheduler_kills": self.scheduler_kills,
            "seconds": round(ran_for, 1),
            "tasks_per_second": round(verdict.enqueued / ran_for, 1) if ran_for else 0.0,
            "longest_expired_lease": round(worst, 2),
            "counters": counters,
            "namespace": self.namespace,
            "orphans": self.fleet.orphans(),
        }
        return summary

    def close(self) -> None:
        self.fleet.close()
        self.producer.close()
        self.client.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--long", action="store_true", help=f"the release check: {LONG_TASKS:,} tasks")
    parser.add_argument(
        "--tasks", type=int, help=f"how many tasks (default {SHORT_TASKS:,}; --long {LONG_TASKS:,})"
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="slots per worker")
    parser.add_argument("--lease", default="5s")
    parser.add_argument("--kill-every", default="3:6", help="seconds between worker kills, MIN:MAX")
    parser.add_argument(
        "--kill-while-draining", action="store_true", help="keep killing after the last task was enqueued"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--redis-url", help="use this Redis (a fresh namespace) instead of starting one")
    parser.add_argument("--namespace", help="namespace to use (default: a fresh soak-XXXX)")
    parser.add_argument("--keep", action="store_true", help="leave the namespace in Redis afterwards")
    parser.add_argument("--keep-files", action="store_true", help="keep ledger and logs (always on failure)")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    parser.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines")
    parser.add_argument("--json-out", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    if args.tasks is None:
        args.tasks = LONG_TASKS if args.long else SHORT_TASKS
    if args.timeout is None:
        args.timeout = max(300.0, args.tasks / 20)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    low, _, high = args.kill_every.partition(":")
    args.kill_every = (float(low), float(high or low))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="taskq-soak-"))
    server: RedisServer | None = None
    soak: Soak | None = None
    keep_files = args.keep_files
    try:
        if args.redis_url is None:
            server = RedisServer(workdir / "redis").start()
        url = args.redis_url or (server.url if server else "")
        soak = Soak(args, url, workdir)
        print(
            f"soak: {args.tasks:,} tasks, {args.workers} workers x {args.concurrency}, lease {args.lease}, "
            f"a kill every {args.kill_every[0]:g}-{args.kill_every[1]:g}s, seed {args.seed}, "
            f"Redis {url}, namespace {soak.namespace}",
            file=sys.stderr,
            flush=True,
        )
        summary = soak.run()
        extra = ", ".join(f"{k} {n}" for k, n in summary["attempts_cut"].items() if n)
        print(summary["line"])
        print(
            f"soak: {summary['seconds']}s, {summary['tasks_per_second']} tasks/s, "
            f"{summary['worker_kills']} worker kills, {summary['scheduler_kills']} scheduler kills, "
            f"longest expired lease {summary['longest_expired_lease']}s; "
            f"attempts cut by kills: {extra or 'none'}",
            file=sys.stderr,
        )
        if args.json_out:
            args.json_out.write_text(json.dumps(summary, indent=2))
        good = summary["lost"] == 0 and not summary["unexplained"] and summary["waiting"] == 0
        if not good:
            keep_files = True
            print(f"soak: FAILED: {json.dumps(summary)}", file=sys.stderr)
            (workdir / "faults.json").write_text(json.dumps([f.__dict__ for f in soak.faults]))
            print(f"soak: ledger, logs and faults kept in {workdir}", file=sys.stderr)
        if args.redis_url and not args.keep:
            with contextlib.suppress(redis.RedisError):
                keys = list(soak.client.scan_iter(match=f"{soak.namespace}:*", count=1000))
                for start in range(0, len(keys), 1000):
                    soak.client.delete(*keys[start : start + 1000])
        return 0 if good else 1
    finally:
        if soak is not None:
            soak.close()
        if server is not None:
            server.stop()
        if not keep_files:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
