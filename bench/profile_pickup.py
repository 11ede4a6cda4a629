"""Pickup latency of an idle worker, task by task: which tasks are slow, in which process, when.

Starts a redis-server of its own and `taskq worker --app bench.profile_pickup` (concurrency 4, the
processes pool unless told), warms it up like bench/run.py (3 tasks at 20/s, then 1.5 s idle), then
enqueues --tasks tasks at --rate per second. Each task records (index, enqueue -> handler start in ms,
the pid that ran it); the script prints p50/p99/max and the slowest tasks with their pid and index,
so an outlier can be tied to a child's first task, a maintenance pass or a GC.

    python bench/profile_pickup.py --tasks 300 --rate 100 [--pool threads] [--repeat 3] [--site /tmp/build]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskq_cli import TaskQueue

KEY = "bench:pickup"
tq = TaskQueue()
_client = None


def _trace_gc() -> None:
    """With PICKUP_GC=1 every process that imports this app prints each collection over 1 ms."""
    import gc

    began: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[:] = [time.monotonic()]
        elif began:
            took = (time.monotonic() - began[0]) * 1000
            if took > 1:
                print(
                    f"gc pid {os.getpid()} gen {info['generation']} {took:.1f} ms at {began[0]:.6f} "
                    f"({info['collected']} collected)",
                    file=sys.stderr,
                    flush=True,
                )

    gc.callbacks.append(callback)


if os.environ.get("PICKUP_GC"):
    _trace_gc()


def _trace_calls(path: str) -> None:
    """With PICKUP_TRACE=FILE the worker process appends a line per call of the pickup path's steps
    (name, thread, start and end on the monotonic clock) to FILE; --trace prints the steps that
    overlap each slow task."""
    import functools
    import threading

    from taskq_cli.prefork.supervisor import ProcessPool
    from taskq_cli.protocol.broker import Broker
    from taskq_cli.worker.leases import LeaseKeeper
    from taskq_cli.worker.maintainer import Maintainer
    from taskq_cli.worker.reporter import Reporter

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def wrap(cls: type, name: str) -> None:
        original = getattr(cls, name)

        @functools.wraps(original)
        def traced(*args: object, **kwargs: object) -> object:
            began = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                line = f"{began:.6f} {time.monotonic():.6f} {threading.current_thread().name} {name}\n"
                os.write(fd, line.encode())

        setattr(cls, name, traced)

    for cls, name in [
        (Broker, "wait_for_work"),
        (Broker, "report_and_fetch"),
        (Broker, "register_worker"),
        (Broker, "renew"),
        (ProcessPool, "submit_many"),
        (Maintainer, "_pass"),
        (LeaseKeeper, "tick"),
        (Reporter, "tick"),
    ]:
        wrap(cls, name)


if os.environ.get("PICKUP_TRACE") and "worker" in sys.argv:
    _trace_calls(os.environ["PICKUP_TRACE"])


@tq.task(name="pick")
def pick(sent: float, index: int) -> None:
    picked = time.monotonic()
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(os.environ["TASKQ_REDIS_URL"])
    _client.rpush(KEY, f"{index} {(picked - sent) * 1000:.4f} {os.getpid()} {picked:.6f}")


def percentile(values: list[float], p: float) -> float:
    rank = max(1, min(len(values), round(p / 100 * len(values) + 0.5)))
    return values[rank - 1]


def once(url: str, args: argparse.Namespace) -> list[tuple[int, float, int, float]]:
    import redis

    from bench.run import stop_group

    client = redis.Redis.from_url(url)
    client.flushall()
    env = dict(os.environ, TASKQ_REDIS_URL=url, TASKQ_NAMESPACE="bench")
    root = Path(__file__).resolve().parent.parent
    if args.site:  # the worker imports that build's taskq_cli (bench.run.variant_site)
        from bench.run import variant_site

        root = variant_site(f"pickup-{Path(args.site).name}", Path(args.site))
        env["PYTHONPATH"] = str(root)
    cmd = [sys.executable, "-m", "taskq_cli", "worker", "--app", "bench.profile_pickup"]
    cmd += ["--concurrency", str(args.concurrency), "--pool", args.pool, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=root, env=env, start_new_session=True)
    try:
        tq.configure(redis_url=url, namespace="bench")
        for i in range(3):
            pick.enqueue(sent=time.monotonic(), index=-1 - i)
            time.sleep(0.05)
        deadline = time.monotonic() + 60
        while client.llen(KEY) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.5)
        client.delete(KEY)
        client.config_resetstat()
        start = time.monotonic()
        for i in range(args.tasks):
            wait = start + i / args.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            pick.enqueue(sent=time.monotonic(), index=i)
        deadline = time.monotonic() + 15
        while client.llen(KEY) < args.tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = client.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
        cpu = client.info("cpu")
        print(
            "redis calls per task: "
            + ", ".join(f"{k} {v / args.tasks:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]))
            + f"; redis CPU since start {cpu['used_cpu_user'] + cpu['used_cpu_sys']:.2f} s"
        )
        rows = []
        for raw in client.lrange(KEY, 0, -1):
            i, ms, pid, at = raw.decode().split()
            rows.append((int(i), float(ms), int(pid), float(at)))
        return rows
    finally:
        stop_group(proc)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pool", default="processes")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--show", type=int, default=8, help="how many of the slowest tasks to list")
    parser.add_argument("--trace", action="store_true", help="trace the worker's pickup steps")
    parser.add_argument("--site", help="a directory holding the taskq_cli the worker runs")
    args = parser.parse_args()
    if args.trace:
        os.environ["PICKUP_TRACE"] = trace_path = f"/tmp/pickup-trace-{os.getpid()}.txt"
    from bench.run import redis_server

    with redis_server() as (url, _port):
        for _ in range(args.repeat):
            if args.trace and os.path.exists(trace_path):
                os.unlink(trace_path)
            rows = once(url, args)
            steps = []
            if args.trace:
                with open(trace_path) as f:
                    steps = [(float(a), float(b), t, n) for a, b, t, n in (ln.split() for ln in f)]
            values = sorted(ms for _, ms, _, _ in rows)
            first_of_pid: dict[int, int] = {}
            for i, _ms, pid, _at in sorted(rows):
                first_of_pid.setdefault(pid, i)
            print(
                f"{len(rows)} tasks, p50 {percentile(values, 50):.2f} ms, "
                f"p99 {percentile(values, 99):.2f} ms, max {values[-1]:.2f} ms; "
                f"pids {sorted(first_of_pid)} (load {os.getloadavg()[0]:.2f})"
            )
            for i, ms, pid, at in sorted(rows, key=lambda r: -r[1])[: args.show]:
                first = " (first task of this pid)" if first_of_pid[pid] == i else ""
                print(f"  task {i:4d}  {ms:8.2f} ms  pid {pid}  picked at {at:.6f}{first}")
                sent = at - ms / 1000
                for a, b, thread, name in steps:
                    if b >= sent - 0.002 and a <= at:
                        span = f"{(a - sent) * 1000:8.2f} .. {(b - sent) * 1000:8.2f} ms"
                        print(f"      {span}  {thread} {name}")


if __name__ == "__main__":
    main()
