"""`taskq dev` as a real process: it starts a Redis of its own (redis-server from PATH, or the embedded
server when PATH has none), a worker on examples/tasks.py and the scheduler; it serves tasks enqueued
by other processes, and a Ctrl-C, a worker's death or its own SIGKILL leaves nothing running.

These tests need no Redis of the suite's: each `taskq dev` brings its own. The redis-server variants
are skipped, saying so, when no redis-server is installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskq_cli import TaskQueue
from taskq_cli.dev import answers_ping

from .conftest import ROOT, cli_env
from .support import free_port, until

HAS_REDIS_SERVER = shutil.which("redis-server") is not None
needs_redis_server = pytest.mark.skipif(not HAS_REDIS_SERVER, reason="no redis-server on PATH")
WITHOUT_REDIS_SERVER = os.pathsep.join(
    d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "redis-server").exists()
)
REDIS_VARIANTS = [
    pytest.param(None, marks=needs_redis_server, id="with redis-server on PATH"),
    pytest.param(WITHOUT_REDIS_SERVER, id="with PATH hiding redis-server, on the embedded server"),
]


@dataclass
class Dev:
    """A running `taskq dev`; its output goes to a file so no pipe ever fills."""

    proc: subprocess.Popen[str]
    log: Path
    port: int
    namespace: str
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=30)


StartDev = Callable[..., Dev]


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def start_dev(tmp_path: Path, outbox: Path) -> Iterator[StartDev]:
    started: list[Dev] = []

    def start(*args: str, path: str | None = None, port: int | None = None) -> Dev:
        port = port or free_port()
        namespace = f"test-{uuid.uuid4().hex[:12]}"
        extra = {"TASKQ_EXAMPLE_OUTBOX": str(outbox)} | ({"PATH": path} if path is not None else {})
        env = cli_env(f"redis://127.0.0.1:{port}/0", namespace, **extra)
        log = tmp_path / f"dev-{len(started)}.log"
        with log.open("w") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "taskq_cli", "dev", "--port", str(port), *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        dev = Dev(proc, log, port, namespace, env)
        started.append(dev)
        return dev

    yield start
    for dev in started:
        if dev.proc.poll() is None:
            os.killpg(dev.proc.pid, signal.SIGKILL)
            dev.proc.wait(timeout=10)


def processes() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, parent pid, process group), from /proc."""
    found: dict[int, tuple[str, int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
            found[int(entry)] = (state, int(ppid), int(pgrp))
    return found


def started_groups(dev: Dev) -> set[int]:
    """The process groups of everything `taskq dev` started (each child leads one)."""
    return {pid for pid, (_, ppid, _) in processes().items() if ppid == dev.proc.pid}


def still_running(groups: set[int]) -> list[int]:
    """Live processes of those groups (a zombie waiting for init to reap it is not running)."""
    return [pid for pid, (state, _, pgrp) in processes().items() if pgrp in groups and state not in "ZX"]


def wait_ready(dev: Dev) -> None:
    """Ready: Redis answers, and the worker has registered itself."""
    until(lambda: "export TASKQ_REDIS_URL=" in dev.output() or dev.proc.poll() is not None, 20)
    assert dev.proc.poll() is None, dev.output()
    tq = TaskQueue(redis_url=dev.url, namespace=dev.namespace)
    try:
        until(tq.broker.live_workers, 20)
    finally:
        tq.close()


def enqueue(dev: Dev, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "taskq_cli", "enqueue", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=dev.env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def wait_for_state(dev: Dev, task_id: str, state: str) -> None:
    tq = TaskQueue(redis_url=dev.url, namespace=dev.namespace)
    try:
        until(lambda: (task := tq.get_task(task_id)) is not None and task.state == state, 20)
    finally:
        tq.close()


@pytest.mark.parametrize("path", REDIS_VARIANTS)
def test_taskq_dev_serves_a_task_enqueued_by_another_process_and_ctrl_c_leaves_nothing_running(
    start_dev: StartDev, outbox: Path, path: str | None
) -> None:
    dev = start_dev("--app", "examples.tasks", path=path)
    wait_ready(dev)
    assert f"export TASKQ_REDIS_URL={dev.url}" in dev.output()
    assert ("embedded" in dev.output()) == (path is not None), dev.output()
    groups = started_groups(dev)

    task_id = enqueue(dev, "send_email", '{"to": "ada@example.com", "subject": "hi"}')
    wait_for_state(dev, task_id, "done")
    assert len(list(outbox.glob("*.eml"))) == 1

    assert dev.interrupt() == 0, dev.output()
    assert "Traceback" not in dev.output()
    assert still_running(groups) == [], dev.output()
    assert not answers_ping(dev.port)


def test_the_readme_quick_start_runs_the_demo_mix_to_the_end_and_exits_0(
    start_dev: StartDev, outbox: Path
) -> None:
    # Given the README's first command: a worker on the example app and the demo mix of tasks
    dev = start_dev("--app", "examples.tasks", "--enqueue", "examples/demo.jsonl", "--exit-when-done")
    # Then it ends on its own once every task is done or dead, showing stats and the dead letters
    assert dev.proc.wait(timeout=60) == 0, dev.output()
    out = dev.output()
    header = re.search(r"^queue\s+pending\b.*$", out, re.MULTILINE)
    row = re.search(r"^default\s.*$", out, re.MULTILINE)
    assert header and row, out
    counts = dict(zip(header.group().split(), row.group().split(), strict=False))  # by name: columns grow
    assert counts["dead"] == "3", out
    assert all(counts[state] == "0" for state in ("pending", "scheduled", "waiting", "active")), out
    for dead in ("down.example.com", "not an e-mail address", "scan.tiff"):
        assert dead in out
    assert "attempt 3: started" in out, "a flaky call was retried"
    assert len(list(outbox.glob("*.eml"))) == 3, "three mails sent, one refused"
    assert "Traceback" not in out


def test_a_worker_that_dies_stops_everything_with_exit_1(start_dev: StartDev) -> None:
    dev = start_dev("--app", "examples.tasks", path=WITHOUT_REDIS_SERVER)
    wait_ready(dev)
    groups = started_groups(dev)
    worker = int(re.findall(r"worker \(pid (\d+)\)", dev.output())[0])

    os.kill(worker, signal.SIGKILL)

    assert dev.proc.wait(timeout=30) == 1
    assert re.search(r"worker \(pid \d+\) exited with code -9; stopping everything", dev.output())
    assert still_running(groups) == []
    assert not answers_ping(dev.port)


@needs_redis_server
def test_a_sigkilled_taskq_dev_takes_redis_and_the_worker_with_it(start_dev: StartDev) -> None:
    dev = start_dev("--app", "examples.tasks")
    wait_ready(dev)
    groups = started_groups(dev)
    assert len(groups) == 3, "redis-server, worker, scheduler"

    os.kill(dev.proc.pid, signal.SIGKILL)
    dev.proc.wait(timeout=10)

    until(lambda: still_running(groups) == [], 10)
    assert not answers_ping(dev.port)


def test_bad_input_starts_nothing_and_says_why_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "send_email", "payload": {"to": "a@example.com"}}\n{"name": "send_email"}\n')
    env = cli_env("redis://127.0.0.1:1/0", "unused")
    cases = [
        (["--app", "examples.tasks", "--enqueue", str(bad)], 2, "line 2"),
        (["--app", "no_such_module"], 2, "cannot import app"),
        (["--port", "70000"], 2, "--port"),
        (["--enqueue", "examples/demo.jsonl", "--exit-when-done"], 2, "without --app no worker"),
        (["--exit-when-done"], 2, "without --app no worker"),
    ]
    for args, code, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "taskq_cli", "dev", *args],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            env=env,
            check=False,
        )
        assert (done.returncode, done.stdout) == (code, ""), (args, done.stderr)
        [line] = done.stderr.splitlines()
        assert line.startswith("taskq: error: ") and message in line, line


@pytest.mark.parametrize("path", REDIS_VARIANTS)
def test_a_port_already_taken_is_refused_with_exit_1(start_dev: StartDev, path: str | None) -> None:
    first = start_dev(path=WITHOUT_REDIS_SERVER)
    until(lambda: answers_ping(first.port), 20)

    second = start_dev(path=path, port=first.port)

    assert second.proc.wait(timeout=30) == 1
    assert f"taskq: error: cannot listen on 127.0.0.1:{first.port}" in second.output()
    assert first.interrupt() == 0


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn")),
    reason="the HTTP API is not installed (pip install -e '.[api]')",
)
def test_with_api_the_http_api_serves_the_dev_redis_and_stops_with_the_rest(start_dev: StartDev) -> None:
    api_port = free_port()
    dev = start_dev("--app", "examples.tasks", "--api", "--api-port", str(api_port))
    wait_ready(dev)
    groups = started_groups(dev)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/healthz", timeout=2) as answer:
                return bool(json.loads(answer.read())["status"] == "ok")
        except OSError:
            return False

    until(healthy, 20)
    assert dev.interrupt() == 0, dev.output()
    assert still_running(groups) == [] and not healthy()
