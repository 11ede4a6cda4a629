"""Where a drained task's time goes: one taskq worker drains N no-op tasks on a redis-server of its own,
and this prints per task the wall time, the CPU of the worker and its children, Redis's CPU and its
script calls, and (with --py-spy) a sampled breakdown by cost (bench/profile_summary.py).

    python bench/profile_drain.py --pool processes --concurrency 1 --tasks 20000 [--py-spy]
    python bench/profile_drain.py --site /tmp/proto ...   # a prototype's taskq_cli (PATH/taskq_cli)
    python bench/profile_drain.py --callgrind --tasks 2000 --concurrency 1   # instructions per task

--callgrind counts the instructions (valgrind's callgrind, every process of the worker: the worker,
its children, the fork server) of two burst drains, of --callgrind-base and of --tasks tasks, and
prints the difference per task: start-up and exit cancel out. Unlike wall or CPU time, the count
hardly moves with the load of other processes, so it compares two builds on a busy machine (run
both the same way; valgrind runs one thread at a time, so batches differ from a native run).
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import BENCH, ROOT, redis_server, variant_site


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", default="processes")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--site", help="a directory holding the taskq_cli to profile (default: this repo's)")
    parser.add_argument("--py-spy", action="store_true", help="sample with py-spy (slows the run down)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions per task (valgrind)")
    parser.add_argument("--callgrind-base", type=int, default=200, help="tasks of the baseline drain")
    args = parser.parse_args()
    site = variant_site("profile", Path(args.site)) if args.site else ROOT
    if args.callgrind:
        callgrind(args, site)
        return
    with redis_server() as (url, _port):
        env = dict(os.environ, TASKQ_REDIS_URL=url, TASKQ_NAMESPACE="prof", PYTHONPATH=str(site))
        subprocess.run(
            [sys.executable, "-m", "bench.systems.drive", "taskq", "fill", "--n", str(args.tasks)],
            cwd=site,
            env={**env, "BENCH_REDIS_URL": url},
            check=True,
            capture_output=True,
        )
        client = redis.Redis.from_url(url, decode_responses=True)
        client.config_resetstat()
        cpu_before = client.info("cpu")
        worker = worker_command(args)
        raw = Path(tempfile.mkdtemp()) / "profile.txt"
        if args.py_spy:
            worker = [
                "py-spy",
                "record",
                "--gil",
                "--nonblocking",
                "-r",
                "250",
                "--subprocesses",
                "--format",
                "raw",
                "-o",
                str(raw),
                "--",
                *worker,
            ]
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        subprocess.run(worker, cwd=site, env=env, check=True, capture_output=args.py_spy)
        wall = time.perf_counter() - began
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_after = client.info("cpu")
        stats = client.info("commandstats")
        processed = int(client.hget("prof:{default}:counters", "processed") or 0)
    n = processed or args.tasks
    us = 1e6 / n
    worker_cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    redis_cpu = sum(float(cpu_after[k]) - float(cpu_before[k]) for k in ("used_cpu_user", "used_cpu_sys"))
    print(
        f"{args.pool} pool, concurrency {args.concurrency}, {n} tasks"
        f"{' (under py-spy)' if args.py_spy else ''}; load {os.getloadavg()[0]:.2f}"
    )
    print(f"  wall, worker start to exit   {wall * us:8.1f} µs/task   ({n / wall:,.0f} tasks/s)")
    user = (usage.ru_utime - usage_before.ru_utime) * us
    system = (usage.ru_stime - usage_before.ru_stime) * us
    print(
        f"  CPU, worker + its children   {worker_cpu * us:8.1f} µs/task   (user {user:.0f}, sys {system:.0f})"
    )
    print(f"  CPU, redis-server            {redis_cpu * us:8.1f} µs/task")
    for name, value in sorted(stats.items()):
        calls = int(value["calls"])
        if calls >= n / 100:
            per_call = float(value["usec_per_call"])
            print(f"    {name[8:]:<12} {calls / n:6.2f} calls/task  {per_call:7.1f} µs/call")
    if args.py_spy:
        print()
        subprocess.run(
            [sys.executable, str(BENCH / "profile_summary.py"), str(raw), "--top", "25"], check=True
        )


def worker_command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "taskq_cli",
        "worker",
        "--app",
        "bench.taskq_app",
        "--burst",
        "--concurrency",
        str(args.concurrency),
        "--pool",
        args.pool,
        "--log-level",
        "warning",
    ]


def fill(site: Path, env: dict[str, str], url: str, n: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench.systems.drive", "taskq", "fill", "--n", str(n)],
        cwd=site,
        env={**env, "BENCH_REDIS_URL": url},
        check=True,
        capture_output=True,
    )


def callgrind_drain(site: Path, args: argparse.Namespace, n: int) -> tuple[int, int]:
    """Instructions of every process of one burst drain of `n` tasks, and the tasks it processed."""
    out = Path(tempfile.mkdtemp(prefix="taskq-callgrind-"))
    with redis_server() as (url, _port):
        env = dict(os.environ, TASKQ_REDIS_URL=url, TASKQ_NAMESPACE="prof", PYTHONPATH=str(site))
        fill(site, env, url, n)
        valgrind = [
            "valgrind",
            "--tool=callgrind",
            "--trace-children=yes",
            f"--callgrind-out-file={out}/cg.%p",
        ]
        subprocess.run([*valgrind, *worker_command(args)], cwd=site, env=env, check=True, capture_output=True)
        client = redis.Redis.from_url(url, decode_responses=True)
        processed = int(client.hget("prof:{default}:counters", "processed") or 0)
    counts = []
    for path in glob.glob(str(out / "cg.*")):
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                counts.append(int(line.split()[1]))
                break
    if os.environ.get("PROFILE_VERBOSE"):
        print(f"  {n} tasks: instructions per process {sorted(counts, reverse=True)}")
    return sum(counts), processed


def callgrind(args: argparse.Namespace, site: Path) -> None:
    base, base_n = callgrind_drain(site, args, args.callgrind_base)
    full, full_n = callgrind_drain(site, args, args.tasks)
    per_task = (full - base) / max(full_n - base_n, 1)
    print(
        f"{args.pool} pool, concurrency {args.concurrency}: {per_task:,.0f} instructions per task "
        f"(callgrind: {full:,} for {full_n} tasks, {base:,} for {base_n}; load {os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
