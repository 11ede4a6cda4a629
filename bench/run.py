"""Side-by-side benchmark of taskq and the Python peers (huey, rq, dramatiq, celery, arq, saq).

    python bench/run.py                       # every scenario, every system (~12 min)
    python bench/run.py --quick               # smaller counts (~3 min)
    python bench/run.py --only drain --only latency --systems taskq,huey
    python bench/run.py --results bench/RESULTS.md   # also write the Markdown report

Run it with the project's interpreter (taskq comes from the project); the peers run from bench/.venv
(`python -m venv bench/.venv && bench/.venv/bin/pip install -r bench/requirements.txt`). One
redis-server is started on a free port (no persistence) and flushed between measurements; every process
started here is stopped before the harness exits. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV = BENCH / ".venv"
VPY = VENV / "bin" / "python"
PY = sys.executable
URL_PLACEHOLDER = "{url}"  # replaced by the server's URL in worker command lines
SCENARIOS = ("enqueue", "aenqueue", "bulk", "drain", "latency", "coldstart", "raw")
LATENCY_KEY = "bench:latency"
FATVENV = BENCH / "results" / "fatvenv"  # bash bench/make_fatvenv.sh
AT_LEAST_ONCE = ("dramatiq", "arq", "saq")  # and every build of taskq
SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
HARNESS_COMMANDS = ("info", "flushall", "ping", "script|load", "config|resetstat")  # not the systems'
AENQUEUE_COROUTINES = 64


# -- systems -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class System:
    name: str
    python: str
    semantics: str
    worker: Callable[[int, str], list[str]]  # (concurrency, pool) -> argv
    remaining: Callable[[redis.Redis, int], int]  # tasks not finished yet
    pools: tuple[str, ...] = ("",)
    env: dict[str, str] = field(default_factory=dict)
    has_bulk: bool = False
    driver_name: str = ""  # bench/systems/<driver_name>_sys.py (default: the system's name)
    root: str = str(ROOT)  # its processes' working directory, first on their sys.path


def _venv_bin(tool: str) -> str:
    return str(VENV / "bin" / tool)


def _int(value: Any) -> int:
    return int(value or 0)


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in [
        System(
            "taskq",
            PY,
            "at-least-once: leases renewed by a heartbeat, fencing tokens, every move one Lua script",
            lambda c, pool: [
                PY,
                "-m",
                "taskq_cli",
                "worker",
                "--app",
                "bench.taskq_app",
                "--concurrency",
                str(c),
                "--pool",
                pool,
                "--log-level",
                "warning",
            ],
            lambda r, n: n - _int(r.hget("bench:{default}:counters", "processed")),
            pools=("processes", "threads"),
            env={"TASKQ_NAMESPACE": "bench"},
            has_bulk=True,
        ),
        System(
            "huey",
            str(VPY),
            "at-most-once: a task is popped off the list before it runs (lost if the worker dies)",
            lambda c, pool: [
                str(VPY),
                "-m",
                "huey.bin.huey_consumer",
                "bench.systems.huey_sys.huey",
                "-w",
                str(c),
                "-k",
                "thread",
                "-q",
                "-n",
            ],
            lambda r, n: _int(r.llen("huey.redis.bench")),
        ),
        System(
            "rq",
            str(VPY),
            "at-most-once by default: a lost worker's job goes to the failed registry, not back to the queue",
            lambda c, pool: (
                [_venv_bin("rq"), "worker", "-q", "-u", URL_PLACEHOLDER, "default"]
                if c == 1
                else [_venv_bin("rq"), "worker-pool", "-q", "-u", URL_PLACEHOLDER, "-n", str(c), "default"]
            ),
            lambda r, n: n - _int(r.zcard("rq:finished:default")) - _int(r.zcard("rq:failed:default")),
            has_bulk=True,
        ),
        System(
            "dramatiq",
            str(VPY),
            "at-least-once: messages are acked after they ran; a dead worker's are requeued",
            lambda c, pool: [_venv_bin("dramatiq"), "bench.systems.dramatiq_sys", "-p", "1", "-t", str(c)],
            lambda r, n: _int(r.hlen("dramatiq:default.msgs")),
        ),
        System(
            "celery",
            str(VPY),
            "at-most-once by default (acks before the task runs; acks_late is opt-in)",
            lambda c, pool: [
                _venv_bin("celery"),
                "-A",
                "bench.systems.celery_sys",
                "worker",
                "-c",
                str(c),
                "-P",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "warning",
            ],
            lambda r, n: _int(r.llen("celery")) + _int(r.hlen("unacked")),
        ),
        System(
            "arq",
            str(VPY),
            "at-least-once: a job stays queued until it finished; polls every 0.5 s",
            lambda c, pool: [_venv_bin("arq"), "bench.systems.arq_sys.WorkerSettings"],
            lambda r, n: _int(r.zcard("arq:queue")),
        ),
        System(
            "saq",
            str(VPY),
            "at-least-once: stuck active jobs are swept back (after their timeout)",
            lambda c, pool: [_venv_bin("saq"), "bench.systems.saq_sys.settings", "--quiet"],
            lambda r, n: _int(r.llen("saq:default:queued")) + _int(r.llen("saq:default:active")),
        ),
    ]
}


def variant_site(name: str, root: Path) -> Path:
    """A directory holding `taskq_cli` from the variant and `bench` from here (symlinks): processes
    started in it import the variant's taskq_cli before the installed one."""
    site = BENCH / "results" / f"site-{name}"
    site.mkdir(parents=True, exist_ok=True)
    for link, target in (("taskq_cli", root / "taskq_cli"), ("bench", BENCH)):
        path = site / link
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)
    return site


def add_variant(spec: str) -> str:
    """`NAME=PATH`: another build of taskq, whose `taskq_cli` package is in PATH (a copy of the repo
    with a change to measure), benchmarked as the system `taskq@NAME` in the same run."""
    name, _, path = spec.partition("=")
    root = Path(path).resolve()
    if not name or not (root / "taskq_cli").is_dir():
        raise SystemExit(f"--taskq-variant {spec!r}: expected NAME=PATH with PATH/taskq_cli")
    base = SYSTEMS["taskq"]
    variant = System(
        f"taskq@{name}",
        base.python,
        base.semantics,
        base.worker,
        base.remaining,
        base.pools,
        base.env,
        base.has_bulk,
        driver_name="taskq",
        root=str(variant_site(name, root)),
    )
    ordered = {k: v for k, v in SYSTEMS.items() if is_taskq(k)}
    ordered[variant.name] = variant
    ordered.update({k: v for k, v in SYSTEMS.items() if not is_taskq(k)})
    SYSTEMS.clear()
    SYSTEMS.update(ordered)
    return variant.name


# -- the Redis server and processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        client.close()
        yield url, port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Harness:
    def __init__(self, url: str, port: int, args: argparse.Namespace) -> None:
        self.url = url
        self.port = port
        self.args = args
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.results: dict[str, Any] = {}
        self.loads: dict[str, str] = {}
        self.log = args.log

    def env(self, system: System, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("OPENBLAS_CORETYPE",):  # nothing here uses numpy; keep the environment plain
            env.pop(name, None)
        env.update(
            PYTHONPATH=system.root,
            BENCH_REDIS_URL=self.url,
            TASKQ_REDIS_URL=self.url,
            PYTHONDONTWRITEBYTECODE="",
            **system.env,
            **extra,
        )
        return env

    def flush(self) -> None:
        self.client.flushall()

    def driver(self, system: System, action: str, n: int, rate: float | None = None) -> dict[str, Any]:
        cmd = [
            system.python,
            "-m",
            "bench.systems.drive",
            system.driver_name or system.name,
            action,
            "--n",
            str(n),
        ]
        if rate is not None:
            cmd += ["--rate", str(rate)]
        out = subprocess.run(
            cmd,
            cwd=system.root,
            env=self.env(system),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{system.name} {action} failed:\n{out.stderr[-3000:]}")
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    @contextlib.contextmanager
    def worker(self, system: System, concurrency: int, pool: str) -> Iterator[subprocess.Popen[bytes]]:
        cmd = [part.replace(URL_PLACEHOLDER, self.url) for part in system.worker(concurrency, pool)]
        self.log.write(f"$ {' '.join(cmd)}\n")
        self.log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=system.root,
            env=self.env(system, BENCH_CONCURRENCY=str(concurrency)),
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,  # its children (forks, pools) form one group we can stop
        )
        try:
            yield proc
        finally:
            stop_group(proc)

    def note_load(self, label: str) -> None:
        self.loads[label] = load()

    def snapshot(self) -> dict[str, Any]:
        """Redis's own CPU (main thread, `INFO cpu`), `INFO commandstats` and `used_memory`."""
        cpu = self.client.info("cpu")
        user = cpu.get("used_cpu_user_main_thread", cpu["used_cpu_user"])
        sys_ = cpu.get("used_cpu_sys_main_thread", cpu["used_cpu_sys"])
        stats = self.client.info("commandstats")
        return {
            "cpu": float(user) + float(sys_),
            "memory": int(self.client.info("memory")["used_memory"]),
            "commands": {
                k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()
            },
        }

    def calibrate_polls(self, system: System, n: int, k: int = 1000) -> dict[str, Any]:
        """What one `system.remaining` poll of the drain loop costs Redis (on the idle server after
        the drain), so the drain's Redis cost can be counted without the harness's polls."""
        before = self.snapshot()
        for _ in range(k):
            system.remaining(self.client, n)
        return scaled(delta(before, self.snapshot()), 1 / k)


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What happened in Redis between two snapshots (the harness's INFO/FLUSHALL left out)."""
    commands: dict[str, tuple[float, float]] = {}
    for name, (calls, usec) in after["commands"].items():
        c0, u0 = before["commands"].get(name, (0, 0))
        if name not in HARNESS_COMMANDS and calls > c0:
            commands[name] = (calls - c0, usec - u0)
    return {
        "cpu": after["cpu"] - before["cpu"],
        "memory": after["memory"] - before["memory"],
        "commands": commands,
    }


def scaled(d: dict[str, Any], factor: float) -> dict[str, Any]:
    return {
        "cpu": d["cpu"] * factor,
        "memory": d["memory"] * factor,
        "commands": {k: (c * factor, u * factor) for k, (c, u) in d["commands"].items()},
    }


def minus(d: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    names = set(d["commands"]) | set(other["commands"])
    commands = {}
    for k in names:
        c0, u0 = d["commands"].get(k, (0, 0))
        c1, u1 = other["commands"].get(k, (0, 0))
        commands[k] = (max(c0 - c1, 0), max(u0 - u1, 0))
    return {"cpu": max(d["cpu"] - other["cpu"], 0.0), "memory": d["memory"], "commands": commands}


def per_task(d: dict[str, Any], tasks: int) -> dict[str, Any]:
    """Redis cost per task: CPU of its main thread (µs), commandstats µs in scripts (EVAL*/FCALL, with
    the commands they call) and outside them (every other command: the commands a script calls are
    counted again here by Redis), calls per task, and the memory delta per 100,000 tasks (bytes)."""
    scripts = sum(u for k, (_, u) in d["commands"].items() if k in SCRIPT_COMMANDS)
    others = sum(u for k, (_, u) in d["commands"].items() if k not in SCRIPT_COMMANDS)
    script_calls = sum(c for k, (c, _) in d["commands"].items() if k in SCRIPT_COMMANDS)
    other_calls = sum(c for k, (c, _) in d["commands"].items() if k not in SCRIPT_COMMANDS)
    top = sorted(d["commands"].items(), key=lambda kv: -kv[1][1])[:8]
    return {
        "cpu_us": d["cpu"] * 1e6 / tasks,
        "scripts_us": scripts / tasks,
        "commands_us": others / tasks,
        "script_calls": script_calls / tasks,
        "command_calls": other_calls / tasks,
        "memory_per_100k": d["memory"] * 100_000 / tasks,
        "top": {k: [round(c / tasks, 3), round(u / tasks, 3)] for k, (c, u) in top},
        "tasks": tasks,
    }


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group, SIGKILL it after 10 s (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (children that ignored SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- scenarios ---------------------------------------------------------------------------------------------


def systems_for(h: Harness) -> list[System]:
    return [SYSTEMS[s] for s in h.args.systems]


Measure = Callable[[], "float | tuple[float, dict[str, Any]]"]


def interleaved(
    h: Harness,
    scenario: str,
    measures: dict[str, tuple[Measure, dict[str, Any]]],
    unit: str = "/s",
    lower_is_better: bool = False,
) -> dict[str, Any]:
    """Run every measure once, then again (--repeat times), so a burst of load from elsewhere hits
    every system alike; the best run of each is its figure. A measure may return (figure, extra): the
    extras of every run are kept under "extras"."""
    runs: dict[str, list[float]] = {label: [] for label in measures}
    extras: dict[str, list[dict[str, Any]]] = {label: [] for label in measures}
    for _ in range(h.args.repeat):
        for label, (fn, _meta) in measures.items():
            h.flush()
            h.note_load(f"{scenario} {label}")
            got = fn()
            if isinstance(got, tuple):
                got, extra = got
                extras[label].append(extra)
            runs[label].append(got)
            progress(scenario, label, {"best": runs[label][-1]}, unit=unit)
    pick = min if lower_is_better else max
    return {
        label: {
            "best": pick(values),
            "median": statistics.median(values),
            "runs": values,
            **({"extras": extras[label]} if extras[label] else {}),
            **measures[label][1],
        }
        for label, values in runs.items()
    }


def scenario_enqueue(h: Harness) -> None:
    """(a) N enqueues one by one from one client, tasks/s; with Redis's CPU and commandstats per task
    and its memory per 100,000 pending tasks (the N + 1 left pending, `used_memory` delta)."""
    n = h.args.tasks

    def once(system: System) -> tuple[float, dict[str, Any]]:
        before = h.snapshot()
        seconds = h.driver(system, "enqueue", n)["seconds"]
        cost = per_task(delta(before, h.snapshot()), n + 1)  # the warm-up enqueue is one more
        return n / seconds, {"redis": cost}

    for system in systems_for(h):  # untimed: the server's one-time allocations (they showed in the
        h.flush()  # first used_memory delta: +12 MB per 100,000) and each driver's caches
        h.driver(system, "enqueue", min(n, 2000))
    measures: dict[str, tuple[Measure, dict[str, Any]]] = {
        s.name: (lambda s=s: once(s), {"system": s.name}) for s in systems_for(h)
    }
    h.results["enqueue"] = interleaved(h, "enqueue", measures)


def costed(h: Harness, n: int, run: Callable[[], float]) -> tuple[float, dict[str, Any]]:
    """`run()` returns the seconds N tasks took: their rate, and Redis's cost per task meanwhile."""
    before = h.snapshot()
    seconds = run()
    return n / seconds, {"redis": per_task(delta(before, h.snapshot()), n)}


def scenario_aenqueue(h: Harness) -> None:
    """(a2) taskq's asyncio client: N `aenqueue`s from 64 coroutines at once, tasks/s. Builds without
    `aenqueue` (older ones) are left out."""
    n = h.args.tasks
    measures: dict[str, tuple[Measure, dict[str, Any]]] = {}
    for s in systems_for(h):
        if not is_taskq(s.name):
            continue
        h.flush()
        try:
            h.driver(s, "aenqueue", AENQUEUE_COROUTINES)
        except RuntimeError as exc:
            print(f"  aenqueue   {s.name}: skipped ({str(exc).strip().splitlines()[-1][:120]})", flush=True)
            continue
        measures[s.name] = (
            lambda s=s: costed(h, n, lambda: h.driver(s, "aenqueue", n)["seconds"]),
            {"system": s.name, "coroutines": AENQUEUE_COROUTINES},
        )
    h.results["aenqueue"] = interleaved(h, "aenqueue", measures)


def scenario_bulk(h: Harness) -> None:
    """(b) bulk enqueue: enqueue_many where a system has one (taskq, rq); `taskq enqueue --file` as a
    whole process."""
    n = h.args.tasks
    path = Path(h.args.workdir) / "batch.jsonl"
    path.write_text('{"name": "noop", "payload": {}}\n' * n)

    def whole_process(system: System) -> float:
        began = time.perf_counter()
        subprocess.run(
            [*taskq_cmd(), "enqueue", "--file", str(path)],
            cwd=system.root,
            env=h.env(system),
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=300,
        )
        return n / (time.perf_counter() - began)

    def ceiling(size: int) -> float:
        out = subprocess.run(
            [PY, str(BENCH / "systems" / "raw.py"), "lpush", str(n), str(size)],
            env=h.env(SYSTEMS["taskq"]),
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        return n / float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])

    measures: dict[str, tuple[Measure, dict[str, Any]]] = {}
    size = task_size(h)
    measures["redis-py pipelined LPUSH"] = (
        lambda: costed(h, n, lambda: n / ceiling(size)),
        {"system": None, "kind": "ceiling", "size": size},
    )
    for s in systems_for(h):
        if s.has_bulk:
            measures[s.name] = (
                lambda s=s: costed(h, n, lambda: h.driver(s, "bulk", n)["seconds"]),
                {"system": s.name, "kind": "library"},
            )
    for s in systems_for(h):
        if is_taskq(s.name):
            measures[f"{s.name} --file"] = (lambda s=s: whole_process(s), {"system": s.name, "kind": "file"})
    h.results["bulk"] = interleaved(h, "bulk", measures)


def task_size(h: Harness) -> int:
    """The bytes taskq stores for one no-op task (its record and payload, the hash values it writes):
    the value size of the pipelined-LPUSH ceiling, so both write as much."""
    h.flush()
    h.driver(SYSTEMS["taskq"], "enqueue", 1)  # the warm-up one and one more: two tasks
    total = 0
    for key in h.client.scan_iter(count=1000):
        if h.client.type(key) == "hash":
            total += sum(len(v.encode()) for v in h.client.hvals(key))
    h.flush()
    return max(total // 2, 1)


def drain_once(h: Harness, system: System, concurrency: int, pool: str) -> dict[str, Any]:
    n = h.args.tasks
    h.flush()
    h.driver(system, "fill", n)
    waiting = system.remaining(h.client, n)
    if waiting != n:
        raise RuntimeError(f"{system.name}: {waiting} tasks waiting after filling {n}")
    cap = h.args.drain_cap
    before = h.snapshot()
    polls = 0
    began = time.perf_counter()
    with h.worker(system, concurrency, pool) as proc:
        while True:
            left = system.remaining(h.client, n)
            polls += 1
            elapsed = time.perf_counter() - began
            if left <= 0 or elapsed > cap or proc.poll() is not None:
                break
            time.sleep(0.002)
        after = h.snapshot()  # before the worker is stopped (its exit is no task's cost)
    done = n - max(left, 0)
    # the Redis cost of fetching and acking: the drain's, less the harness's polls
    cost = minus(delta(before, after), scaled(h.calibrate_polls(system, n), polls))
    return {
        "rate": done / elapsed,
        "seconds": elapsed,
        "done": done,
        "complete": left <= 0,
        "redis": per_task(cost, max(done, 1)),
        "polls": polls,
    }


def scenario_drain(h: Harness) -> None:
    """(c) N pre-enqueued no-op tasks, one worker, from its start until all are done. Repeats are
    interleaved (every system once, then again), so a burst of load from elsewhere hits all alike."""
    out: dict[str, Any] = {}
    for concurrency in (1, 4):
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(h.args.repeat):
            for system in systems_for(h):
                for pool in system.pools:
                    label = f"{system.name} ({pool})" if pool else system.name
                    h.note_load(f"drain c{concurrency} {label}")
                    run = drain_once(h, system, concurrency, pool)
                    runs.setdefault(label, []).append(run)
                    progress(
                        f"drain c{concurrency}", label, {"best": run["rate"], "complete": run["complete"]}
                    )
        for label, got in runs.items():
            system_name, _, pool = label.partition(" (")
            rates = [r["rate"] for r in got]
            out[f"c{concurrency} {label}"] = {
                "best": max(rates),
                "median": statistics.median(rates),
                "runs": rates,
                "extras": [{"redis": r["redis"], "polls": r["polls"], "done": r["done"]} for r in got],
                "complete": all(r["complete"] for r in got),
                "system": system_name,
                "pool": pool.rstrip(")"),
                "concurrency": concurrency,
            }
    h.results["drain"] = out


def latency_once(h: Harness, system: System, pool: str) -> dict[str, Any]:
    h.flush()
    n = h.args.latency_tasks
    with h.worker(system, h.args.latency_concurrency, pool) as proc:
        # warm up: the worker is ready (and idle) once a first task came back
        h.driver(system, "latency", 3, rate=20)
        if not wait_for(lambda: h.client.llen(LATENCY_KEY) >= 3, 60, proc):
            raise RuntimeError(f"{system.name}: the worker never ran the warm-up tasks")
        time.sleep(1.5)  # idle for a while: the worker is blocked/polling for work
        h.client.delete(LATENCY_KEY)
        h.driver(system, "latency", n, rate=100)
        wait_for(lambda: h.client.llen(LATENCY_KEY) >= n, 15, proc)
        in_order = [float(v) for v in h.client.lrange(LATENCY_KEY, 0, -1)]  # the order they started in
        values = sorted(in_order)
    if len(values) < n:
        return {"p50": None, "p99": None, "count": len(values)}
    slowest = sorted(range(len(in_order)), key=lambda i: -in_order[i])[:3]
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "count": len(values),
        "max": values[-1],
        "slowest": [[i, round(in_order[i], 3)] for i in slowest],  # [position, ms]: e.g. the first?
    }


def scenario_latency(h: Harness) -> None:
    """(d) an idle worker (concurrency 4); tasks enqueued at 100/s; enqueue call -> handler start.
    Repeats are interleaved; the run with the best p50 is shown."""
    runs: dict[str, list[dict[str, Any]]] = {}
    meta: dict[str, dict[str, str]] = {}
    for _ in range(h.args.repeat):
        for system in systems_for(h):
            for pool in system.pools:
                label = f"{system.name} ({pool})" if pool else system.name
                h.note_load(f"latency {label}")
                run = latency_once(h, system, pool)
                runs.setdefault(label, []).append(run)
                meta[label] = {"system": system.name, "pool": pool}
                progress("latency", label, run)
    out: dict[str, Any] = {}
    for label, got in runs.items():
        ok = [r for r in got if r["p50"] is not None]
        best = min(ok, key=lambda r: r["p50"]) if ok else got[0]
        out[label] = {**best, "runs": got, **meta[label]}
    h.results["latency"] = out


def percentile(values: list[float], p: float) -> float:
    """Nearest rank on sorted values."""
    rank = max(1, min(len(values), round(p / 100 * len(values) + 0.5)))
    return values[rank - 1]


def wait_for(check: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def taskq_cmd() -> list[str]:
    script = Path(PY).parent / "taskq"
    return [str(script)] if script.exists() else [PY, "-m", "taskq_cli"]


def fat_venv_commands(
    h: Harness, base_env: dict[str, str], peer_env: dict[str, str]
) -> dict[str, tuple[list[str], dict[str, str], str | None]]:
    """The cold start in the fat venv (bench/make_fatvenv.sh), when it exists: `import redis`, each
    build's `taskq enqueue` (the venv's console script, the build's taskq_cli first on the path) and
    `rq enqueue`."""
    out: dict[str, tuple[list[str], dict[str, str], str | None]] = {}
    fat = Path(h.args.fat_venv)
    if (fat / "bin" / "taskq").exists():
        out["fat venv: python -c 'import redis'"] = (
            [str(fat / "bin" / "python"), "-c", "import redis"],
            base_env,
            None,
        )
        for system in systems_for(h):
            if is_taskq(system.name):  # the fat venv's console script, this build's taskq_cli first
                out[f"fat venv: {system.name} enqueue"] = (
                    [str(fat / "bin" / "taskq"), "enqueue", "noop", "{}"],
                    h.env(system),
                    f"fat:{system.name}",
                )
        if (fat / "bin" / "rq").exists() and "rq" in h.args.systems:
            out["fat venv: rq enqueue"] = (
                [
                    str(fat / "bin" / "rq"),
                    "enqueue",
                    "-u",
                    h.url,
                    "-q",
                    "default",
                    "bench.systems.rq_sys.noop",
                ],
                peer_env,
                "fat:rq",
            )
    return out


def scenario_coldstart(h: Harness) -> None:
    """(e) whole processes: `taskq enqueue` next to `python -c 'import redis'` (same interpreter)."""
    runs = h.args.cold_runs
    base_env = h.env(SYSTEMS["taskq"])
    peer_env = h.env(SYSTEMS["rq"])
    commands: dict[str, tuple[list[str], dict[str, str], str | None]] = {
        "python -c 'import redis'": ([PY, "-c", "import redis"], base_env, None),
    }
    for system in systems_for(h):
        if is_taskq(system.name):
            commands[f"{system.name} enqueue"] = (
                [*taskq_cmd(), "enqueue", "noop", "{}"],
                h.env(system),
                system.name,
            )
    commands.update(fat_venv_commands(h, base_env, peer_env))
    if VPY.exists():
        commands["venv python -c 'import redis'"] = ([str(VPY), "-c", "import redis"], peer_env, None)
        if "rq" in h.args.systems:
            commands["rq enqueue"] = (
                [_venv_bin("rq"), "enqueue", "-u", h.url, "-q", "default", "bench.systems.rq_sys.noop"],
                peer_env,
                "rq",
            )
        if "celery" in h.args.systems:
            commands["celery call"] = (
                [_venv_bin("celery"), "-A", "bench.systems.celery_sys", "call", "noop"],
                peer_env,
                "celery",
            )
    out: dict[str, Any] = {}
    h.note_load("coldstart")
    for cmd, env, _ in commands.values():
        subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True, timeout=60)  # warm caches
    times: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(runs):  # interleaved, so a burst of load hits every command alike
        for label, (cmd, env, _) in commands.items():
            began = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True, timeout=60)
            times[label].append((time.perf_counter() - began) * 1000)
    for label, values in times.items():
        out[label] = {
            "median": statistics.median(values),
            "best": min(values),
            "runs": values,
            "system": commands[label][2],
        }
        progress("coldstart", label, out[label], unit="ms")
    h.results["coldstart"] = out


def scenario_raw(h: Harness) -> None:
    """(f) the round-trip limit: redis-benchmark -c 1 -P 1, and a redis-py loop (one call, pipelined)."""
    out: dict[str, Any] = {}
    h.note_load("raw")
    bench = shutil.which("redis-benchmark")
    if bench:
        n = 20000 if h.args.quick else 100000
        text = subprocess.run(
            [bench, "-p", str(h.port), "-c", "1", "-P", "1", "-n", str(n), "-t", "ping,set,lpush", "--csv"],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        for line in text.splitlines()[1:]:
            cells = [c.strip('"') for c in line.split(",")]
            out[f"redis-benchmark {cells[0]}"] = {"best": float(cells[1])}
    script = BENCH / "systems" / "raw.py"
    for label, python in (("redis-py", PY), ("redis-py (bench venv)", str(VPY))):
        if not Path(python).exists():
            continue
        got = json.loads(
            subprocess.run(
                [python, str(script)],
                env=h.env(SYSTEMS["taskq"]),
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        for key, value in got.items():
            out[f"{label} {key}"] = {"best": value}
    for key, value in out.items():
        progress("raw", key, value)
    h.results["raw"] = out


def progress(scenario: str, label: str, value: dict[str, Any], unit: str = "/s") -> None:
    shown = value.get("best") if "best" in value else value.get("p50")
    extra = ""
    if "p99" in value:
        extra = f" p99 {fmt(value['p99'])} ms"
        unit = " ms p50"
    elif "median" in value:
        extra = f" (median {fmt(value['median'])})"
    if value.get("complete") is False:
        extra += " PARTIAL: capped"
    print(f"  {scenario:<10} {label:<34} {fmt(shown)}{unit}{extra}  [load {load()}]", flush=True)


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# -- the report ----------------------------------------------------------------------------------------------


def is_taskq(name: str) -> bool:
    return name == "taskq" or name.startswith("taskq@")


def table(results: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:  # noqa: C901, PLR0912, PLR0915
    """Rows of the main table (the figure per system, the best peer, each taskq's ratio to it) and the
    targets (one row per taskq build: the product, and any --taskq-variant)."""
    present: list[str] = []
    for scenario in results.values():
        for value in scenario.values():
            name = value.get("system") if isinstance(value, dict) else None
            if name and name not in present:
                present.append(name)
    columns = [s for s in SYSTEMS if s in present]
    taskqs = [s for s in columns if is_taskq(s)]
    rows: list[list[str]] = [["scenario", *columns, "best peer", *(f"{t} / best" for t in taskqs)]]
    targets: list[list[str]] = []

    def add(label: str, vals: dict[str, float | None], higher: bool = True) -> dict[str, float | None]:
        peers = {k: v for k, v in vals.items() if not is_taskq(k) and v is not None}
        best_name = None
        if peers:
            best_name = (max if higher else min)(peers, key=lambda k: peers[k])
        best = peers.get(best_name) if best_name else None
        ratios: dict[str, float | None] = {}
        for t in taskqs:
            v = vals.get(t)
            ratios[t] = None if v is None or not best else (v / best if higher else best / v)
        cells = [label] + [fmt(vals.get(s)) if vals.get(s) is not None else "—" for s in columns]
        cells.append(f"{best_name} {fmt(best)}" if best_name else "—")
        cells += [f"{ratios[t]:.2f}x" if ratios[t] else "—" for t in taskqs]
        rows.append(cells)
        return ratios

    def target(who: str, what: str, goal: str, measured: str, ok: bool | None) -> None:
        if ok is None:  # no figure to judge by in this run (e.g. no peer ran)
            return
        targets.append([who, what, goal, measured, "met" if ok else "missed"])

    def ratio_text(r: float | None) -> str:
        return f"{r:.2f}x" if r else "—"

    enq = results.get("enqueue")
    one_peers: dict[str, float] = {}
    if enq:
        vals = {k: v["best"] for k, v in enq.items()}
        ratios = add("(a) enqueue one by one, tasks/s", vals)
        one_peers = {k: v for k, v in vals.items() if not is_taskq(k)}
        for t in taskqs:
            r = ratios.get(t)
            target(
                t, "2. enqueue one by one", "≥ 1.2x best peer", ratio_text(r), None if r is None else r >= 1.2
            )
    aen = results.get("aenqueue")
    if aen:
        vals = {v["system"]: v["best"] for v in aen.values()}
        add(
            f"(a2) taskq `aenqueue`, {AENQUEUE_COROUTINES} coroutines (peers: one by one), tasks/s",
            {**one_peers, **vals},
        )
        if one_peers:
            best_name = max(one_peers, key=lambda k: one_peers[k])
            for t, v in vals.items():
                r = v / one_peers[best_name]
                target(
                    t,
                    f"2. `aenqueue`, {AENQUEUE_COROUTINES} coroutines",
                    "≥ 2x best peer's one by one",
                    f"{r:.2f}x ({fmt(v)} vs {best_name} {fmt(one_peers[best_name])})",
                    r >= 2,
                )
    bulk = results.get("bulk")
    if bulk:
        vals = {v["system"]: v["best"] for v in bulk.values() if v.get("kind") == "library"}
        add("(b) bulk enqueue (enqueue_many), tasks/s", vals)
        files = {v["system"]: v["best"] for v in bulk.values() if v.get("kind") == "file"}
        if files:
            add(
                "(b) bulk: taskq enqueue --file, whole process, tasks/s",
                {**files, **{k: v for k, v in vals.items() if not is_taskq(k)}},
            )
        ceiling = next((v for v in bulk.values() if v.get("kind") == "ceiling"), None)
        if ceiling:
            c = ceiling["best"]
            rows.append(
                [
                    f"(b) enqueue_many vs redis-py pipelined LPUSH of {ceiling['size']} B values, 1,000 per "
                    "pipeline (the ceiling), tasks/s",
                    *(fmt(vals[s]) if is_taskq(s) and s in vals else "—" for s in columns),
                    f"LPUSH {fmt(c)}",
                    *(f"{vals[t] / c:.0%}" if t in vals else "—" for t in taskqs),
                ]
            )
            for t in taskqs:
                if t in vals:
                    r = vals[t] / c
                    target(
                        t,
                        "3. bulk `enqueue_many`",
                        "≥ 50% of redis-py pipelined LPUSH",
                        f"{r:.0%} ({fmt(vals[t])} vs {fmt(c)})",
                        r >= 0.5,
                    )
    drain = results.get("drain")
    if drain:
        for conc in (1, 4):
            entries = [v for v in drain.values() if v["concurrency"] == conc]
            peers = {v["system"]: v["best"] for v in entries if not is_taskq(v["system"])}
            for pool in ("processes", "threads"):
                mine = {
                    v["system"]: v["best"] for v in entries if is_taskq(v["system"]) and v["pool"] == pool
                }
                if not mine:
                    continue
                ratios = add(f"(c) drain c={conc}, taskq {pool} pool, tasks/s", {**peers, **mine})
                tag = "" if pool == "processes" else ", threads pool (shown, not the goal)"
                for t in taskqs:
                    r = ratios.get(t)
                    if t in mine:
                        target(
                            t,
                            f"1. drain c={conc}{tag}",
                            "≥ 2x best peer",
                            ratio_text(r),
                            None if r is None else r >= 2,
                        )
            if not any(is_taskq(v["system"]) for v in entries):
                add(f"(c) drain c={conc}, tasks/s", peers)
    lat = results.get("latency")
    if lat:
        peers50 = {v["system"]: v["p50"] for v in lat.values() if not is_taskq(v["system"])}
        peers99 = {v["system"]: v["p99"] for v in lat.values() if not is_taskq(v["system"])}
        for pool in ("processes", "threads"):
            mine = {v["system"]: v for v in lat.values() if is_taskq(v["system"]) and v["pool"] == pool}
            if not mine:
                continue
            add(
                f"(d) pickup p50, ms (taskq {pool} pool)",
                {**peers50, **{k: v["p50"] for k, v in mine.items()}},
                higher=False,
            )
            add(
                f"(d) pickup p99, ms (taskq {pool} pool)",
                {**peers99, **{k: v["p99"] for k, v in mine.items()}},
                higher=False,
            )
            tag = "" if pool == "processes" else ", threads pool (shown)"
            for t, v in mine.items():
                for p, limit in (("p50", 1.0), ("p99", 2.0)):
                    target(
                        t,
                        f"4. pickup {p}{tag}",
                        f"≤ {limit} ms",
                        f"{fmt(v[p])} ms",
                        v[p] is not None and v[p] <= limit,
                    )
    cold = results.get("coldstart")
    if cold:
        cold_rows(cold, add, rows, columns, taskqs, target)
    costs = redis_costs(results)
    if costs:
        cost_rows(costs, add, taskqs, target)
    bulk_cpu = {
        f"{scenario} {label}": statistics.median(e["redis"]["cpu_us"] for e in v["extras"])
        for scenario in ("aenqueue", "bulk")
        for label, v in results.get(scenario, {}).items()
        if v.get("extras")
    }
    if bulk_cpu:
        rows.append(
            [
                "(g) Redis CPU per task in (a2) `aenqueue` and (b) bulk, µs: "
                + "; ".join(f"{k} {fmt(v)}" for k, v in bulk_cpu.items()),
                *(["—"] * (len(columns) + 1 + len(taskqs))),
            ]
        )
    return rows, targets


def cold_rows(cold, add, rows, columns, taskqs, target) -> None:  # type: ignore[no-untyped-def]
    """(e) the cold start in the project's venv and in the fat one; goal 5."""
    for prefix, tag in (("", ""), ("fat venv: ", "fat:")):
        base_entry = cold.get(f"{prefix}python -c 'import redis'")
        if not base_entry:
            continue
        base = base_entry["median"]
        venv_base = cold.get("venv python -c 'import redis'", {}).get("median") if not prefix else None
        vals = {
            str(v["system"]).removeprefix(tag): v["median"]
            for v in cold.values()
            if v.get("system") and (str(v["system"]).startswith("fat:") == bool(prefix))
        }
        where = " in the fat venv" if prefix else ""
        add(f"(e) CLI enqueue{where}, whole process, ms (median)", vals, higher=False)
        rows.append(
            [
                f"(e) python -c 'import redis'{where}, ms (median"
                + ("; peers: their venv's redis-py)" if not prefix else ")"),
                *(
                    fmt(base)
                    if is_taskq(s) or (prefix and s in vals)
                    else (fmt(venv_base) if venv_base and s in vals else "—")
                    for s in columns
                ),
                *(["—"] * (1 + len(taskqs))),
            ]
        )
        rq = vals.get("rq")
        for t in taskqs:
            if t not in vals:
                continue
            r = vals[t] / base
            target(
                t,
                f"5. `taskq enqueue` cold start{where}",
                "≤ 1.3x `python -c 'import redis'` (same venv)",
                f"{r:.2f}x ({fmt(vals[t])} vs {fmt(base)} ms)",
                r <= 1.3,
            )
            if rq:
                target(
                    t,
                    f"5. `taskq enqueue` vs `rq enqueue`{where}",
                    "faster",
                    f"{fmt(vals[t])} vs {fmt(rq)} ms",
                    vals[t] < rq,
                )


def redis_costs(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per system: Redis's cost per enqueued task (the one-by-one enqueue) and per fetched + acked task
    (the drain at c=1 or c=4, taskq's default pool, the cheaper of the two), each the median run; the
    memory per 100,000 pending tasks of the enqueue's runs, the smallest."""

    def median_run(extras: list[dict[str, Any]]) -> dict[str, Any] | None:
        runs = sorted((e["redis"] for e in extras if e.get("redis")), key=lambda r: r["cpu_us"])
        return runs[(len(runs) - 1) // 2] if runs else None

    out: dict[str, dict[str, Any]] = {}
    for v in results.get("enqueue", {}).values():
        got = median_run(v.get("extras", []))
        if got:
            # memory: the smallest run (a server's first measurements carry one-time allocations)
            memory = min(e["redis"]["memory_per_100k"] for e in v["extras"] if e.get("redis"))
            out.setdefault(v["system"], {})["enqueue"] = {**got, "memory_per_100k": memory}
    for v in results.get("drain", {}).values():
        if v["pool"] not in ("", "processes"):
            continue
        got = median_run(v.get("extras", []))
        if not got:
            continue
        slot = out.setdefault(v["system"], {})
        if "drain" not in slot or got["cpu_us"] < slot["drain"]["cpu_us"]:
            slot["drain"] = {**got, "concurrency": v["concurrency"]}
    return out


def cost_rows(costs, add, taskqs, target) -> None:  # type: ignore[no-untyped-def]
    """(g) Redis CPU and commandstats per task, (h) memory per 100,000 pending tasks; goal 6."""

    def add_some(label: str, vals: dict[str, float | None], higher: bool = False) -> None:
        if vals:  # no row for a stage that was not run
            add(label, vals, higher=higher)

    def pick(stage: str, key: str) -> dict[str, float | None]:
        return {k: v[stage][key] for k, v in costs.items() if stage in v}

    add_some("(g) Redis CPU per enqueue (main thread, INFO cpu), µs", pick("enqueue", "cpu_us"), higher=False)
    add_some(
        "(g) Redis CPU per fetch + ack (drain, best of c=1/c=4), µs", pick("drain", "cpu_us"), higher=False
    )
    total = {
        k: v["enqueue"]["cpu_us"] + v["drain"]["cpu_us"]
        for k, v in costs.items()
        if "enqueue" in v and "drain" in v
    }
    add_some("(g) Redis CPU per task, enqueue + fetch + ack, µs", total, higher=False)
    scripts = {
        k: v["enqueue"]["scripts_us"] + v["drain"]["scripts_us"]
        for k, v in costs.items()
        if "enqueue" in v and "drain" in v
    }
    others = {
        k: v["enqueue"]["commands_us"] + v["drain"]["commands_us"]
        for k, v in costs.items()
        if "enqueue" in v and "drain" in v
    }
    add_some(
        "(g) commandstats per task: in scripts (EVAL*/FCALL, their commands included), µs",
        scripts,
        higher=False,
    )
    add_some(
        "(g) commandstats per task: other commands (those scripts call counted again), µs",
        others,
        higher=False,
    )
    memory = {k: v["enqueue"]["memory_per_100k"] / 1e6 for k, v in costs.items() if "enqueue" in v}
    add_some("(h) Redis memory per 100,000 pending tasks (used_memory delta), MB", memory, higher=False)
    alo = {k: v for k, v in total.items() if k in AT_LEAST_ONCE}
    peers_mem = {k: v for k, v in memory.items() if not is_taskq(k)}
    for t in taskqs:
        if t in total and alo:
            best = min(alo, key=lambda k: alo[k])
            target(
                t,
                "6. Redis CPU per task (enqueue + fetch + ack)",
                "lowest of the at-least-once (" + ", ".join(AT_LEAST_ONCE) + ")",
                f"{fmt(total[t])} µs vs {best} {fmt(alo[best])} µs",
                total[t] < alo[best],
            )
        if t in memory and peers_mem:
            best = min(peers_mem, key=lambda k: peers_mem[k])
            r = memory[t] / peers_mem[best]
            target(
                t,
                "6. Redis memory per 100,000 pending",
                "≤ 1.5x smallest peer",
                f"{r:.2f}x ({fmt(memory[t])} vs {best} {fmt(peers_mem[best])} MB)",
                r <= 1.5,
            )


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def machine() -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout
    info = {
        "cpu": f"{cpu} x {os.cpu_count()}",
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis-server": redis_version.split("v=")[1].split()[0] if "v=" in redis_version else redis_version,
    }
    versions = subprocess.run(
        [
            PY,
            "-c",
            "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in "
            "('taskq-cli','redis','hiredis','pydantic','typer')))",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    info["taskq side"] = versions
    fat = FATVENV / "bin" / "python"
    if fat.exists():
        info["fat venv"] = subprocess.run(
            [
                str(fat),
                "-c",
                "import importlib.metadata as m; d = list(m.distributions()); "
                "print(f'{len(d)} distributions, {sum(len(x.entry_points) for x in d)} entry points "
                "(bench/make_fatvenv.sh)')",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    if VPY.exists():
        info["peers side"] = subprocess.run(
            [
                str(VPY),
                "-c",
                "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in "
                "('huey','rq','dramatiq','celery','kombu','arq','saq','redis','hiredis')))",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    return info


def git_head() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "taskq_cli"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() + (", with uncommitted changes in taskq_cli/" if dirty.stdout.strip() else "")


def cost_report(results: dict[str, Any]) -> list[str]:
    """Where each system's Redis cost goes: commands per task (calls, commandstats µs) by stage."""
    costs = redis_costs(results)
    if not costs:
        return []
    lines = [
        "## Redis's cost per task (g, h)",
        "",
        "Redis CPU is the main thread's (`INFO cpu`, user + sys) over the one-by-one enqueue of N tasks "
        "and over the drain of N (worker start to all done; the harness's own polls are measured on the "
        "idle server afterwards and subtracted); memory is the `used_memory` delta after the N + 1 "
        "enqueues, scaled to 100,000 tasks (the smallest of the runs). `INFO commandstats` counts "
        "a command a script calls both inside the script's time and under its own name: the µs below "
        "are commandstats', per task (calls per task, µs per task). At-least-once: every build of taskq, "
        + ", ".join(AT_LEAST_ONCE)
        + ".",
        "",
        "| system | stage | Redis CPU µs | commands per task (calls, µs) |",
        "|---|---|---|---|",
    ]
    for system, stages in costs.items():
        for stage, got in stages.items():
            where = stage if stage == "enqueue" else f"fetch + ack (drain c={got['concurrency']})"
            top = ", ".join(f"{k} {c:.2f} / {u:.1f}" for k, (c, u) in got["top"].items())
            lines.append(f"| {system} | {where} | {fmt(got['cpu_us'])} | {top} |")
    lines.append("")
    return lines


def report(h: Harness, started: float) -> str:
    rows, targets = table(h.results)
    info = machine()
    lines = ["# taskq benchmark results", ""]
    lines.append(
        f"Produced by `python bench/run.py {' '.join(h.args.argv)}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {time.time() - started:.0f} s."
    )
    lines.append("")
    lines += [f"- **{k}**: {v}" for k, v in info.items()]
    lines.append(
        f"- **tasks per scenario**: {h.args.tasks:,}; pickup latency: {h.args.latency_tasks} tasks at "
        f"100/s; repeats per figure: {h.args.repeat} (best shown); cold start: median of "
        f"{h.args.cold_runs}"
    )
    lines += [
        "",
        "## Targets",
        "",
        markdown_table([["build", "target", "goal", "measured", ""], *targets]),
        "",
    ]
    lines += ["## Figures", "", markdown_table(rows), ""]
    lines += cost_report(h.results)
    raw = h.results.get("raw")
    if raw:
        lines += ["## The round-trip limit (f)", "", "| measurement | ops/s |", "|---|---|"]
        lines += [f"| {k} | {fmt(v['best'])} |" for k, v in raw.items()]
        lines.append("")
    variants = [s for s in SYSTEMS.values() if s.name != "taskq" and is_taskq(s.name)]
    if variants:
        lines += ["## Builds of taskq in this run", ""]
        lines.append(f"- **taskq**: this checkout ({h.args.git_head})")
        lines += [
            f"- **{s.name}**: the `taskq_cli` in `{Path(s.root).joinpath('taskq_cli').resolve()}`"
            for s in variants
        ]
        lines.append("")
    lines += ["## Delivery guarantees in these figures", ""]
    lines += [f"- **{s.name}**: {s.semantics}" for s in SYSTEMS.values()]
    lines += [
        "",
        "taskq's guarantees are on in every figure: each fetch takes a lease with a fresh fencing token "
        "and counts the attempt, each ack presents the token, leases are renewed by the heartbeat, and "
        "every state change is one Lua script. Payloads are validated against the handler's signature "
        "(pydantic) at enqueue and in the worker.",
        "",
        "## Load average (1, 5, 15 min) before each measurement",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in h.loads.items()]
    lines.append("")
    lines.append(
        f"This machine has {os.cpu_count()} cores: whatever else ran on it (the load above) is part of every "
        "figure, and only ratios measured in the same run count."
    )
    lines.append("")
    lines.append("Raw figures of every run: `bench/results/latest.json`.")
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
    )
    parser.add_argument("--systems", help="comma-separated (default: all)")
    parser.add_argument("--quick", action="store_true", help="5,000 tasks, 100 latency tasks, shorter caps")
    parser.add_argument("--tasks", type=int, help="tasks per enqueue/bulk/drain figure (default 20,000)")
    parser.add_argument("--latency-tasks", type=int, help="default 300")
    parser.add_argument(
        "--latency-concurrency",
        type=int,
        default=4,
        help="the idle worker's concurrency in the pickup latency scenario (default 4)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; the best is shown")
    parser.add_argument("--drain-cap", type=float, help="seconds before a drain is cut short (default 30)")
    parser.add_argument("--cold-runs", type=int, help="runs per cold-start command (default 15)")
    parser.add_argument(
        "--fat-venv",
        default=str(FATVENV),
        help="a venv with taskq and many other packages, for the cold start (bench/make_fatvenv.sh); "
        "measured when it exists",
    )
    parser.add_argument("--results", help="write the Markdown report here (e.g. bench/RESULTS.md)")
    parser.add_argument("--json", default=str(BENCH / "results" / "latest.json"), help="raw figures")
    parser.add_argument(
        "--taskq-variant",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also benchmark the taskq_cli found in PATH, as taskq@NAME (repeatable)",
    )
    args = parser.parse_args(argv)
    args.argv = argv
    variants = [add_variant(spec) for spec in args.taskq_variant]
    if args.systems is None:
        args.systems = list(SYSTEMS)
    else:
        args.systems = [s.strip() for s in args.systems.split(",") if s.strip()] + variants
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    if not VPY.exists() and any(not is_taskq(s) for s in args.systems):
        print("bench/.venv is missing: peers skipped (see bench/README.md)", file=sys.stderr)
        args.systems = [s for s in args.systems if is_taskq(s)]
    args.tasks = args.tasks or (5000 if args.quick else 20000)
    args.latency_tasks = args.latency_tasks or (100 if args.quick else 300)
    args.drain_cap = args.drain_cap or (15.0 if args.quick else 30.0)
    args.cold_runs = args.cold_runs or (5 if args.quick else 15)
    args.only = args.only or list(SCENARIOS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.git_head = git_head()  # the build measured, before anyone commits during the run
    started = time.time()
    workdir = Path(args.json).parent
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = str(workdir)
    with open(workdir / "workers.log", "w") as log, redis_server() as (url, port):
        args.log = log
        h = Harness(url, port, args)
        print(f"redis-server on port {port}; load {load()}; systems: {', '.join(args.systems)}", flush=True)
        runners = {
            "enqueue": scenario_enqueue,
            "aenqueue": scenario_aenqueue,
            "bulk": scenario_bulk,
            "drain": scenario_drain,
            "latency": scenario_latency,
            "coldstart": scenario_coldstart,
            "raw": scenario_raw,
        }
        try:
            for name in SCENARIOS:
                if name in args.only:
                    print(f"{name}:", flush=True)
                    runners[name](h)
        except KeyboardInterrupt:
            print("interrupted: reporting what was measured", file=sys.stderr)
        finally:
            h.flush()
    rows, targets = table(h.results)
    print()
    print(text_table(rows))
    print()
    print(text_table([["build", "target", "goal", "measured", ""], *targets]))
    Path(args.json).write_text(
        json.dumps(
            {
                "args": {k: v for k, v in vars(args).items() if k != "log"},
                "loads": h.loads,
                "results": h.results,
            },
            indent=1,
        )
    )
    if args.results:
        Path(args.results).write_text(report(h, started))
        print(f"\nwrote {args.results}")
    print(f"total {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
