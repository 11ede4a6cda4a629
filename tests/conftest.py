"""Shared fixtures. Tests run against a real Redis (TASKQ_TEST_REDIS_URL, default the local one);
each test gets its own namespace, deleted afterwards, and every process it starts is killed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.protocol import Broker

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TASKQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis the tests use. When none answers at the default address, start a redis-server
    there for the session (it dies with pytest), or skip saying exactly why."""
    if _answers(REDIS_URL):
        yield REDIS_URL
        return
    if "TASKQ_TEST_REDIS_URL" in os.environ:
        pytest.fail(f"no Redis answers at {REDIS_URL} (TASKQ_TEST_REDIS_URL)")
    if shutil.which("redis-server") is None:
        pytest.skip(
            f"no Redis answers at {REDIS_URL} and no redis-server on PATH to start one "
            "(install redis-server or set TASKQ_TEST_REDIS_URL)"
        )
    from taskq_cli.dev import start_redis

    server = start_redis(port=6379)
    yield server.url
    server.stop()


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    ns = f"test-{uuid.uuid4().hex[:12]}"
    yield ns
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def extra_namespace(redis_url: str) -> Iterator[Callable[[], str]]:
    """Fresh namespaces beyond the test's own, deleted afterwards."""
    made: list[str] = []

    def make() -> str:
        ns = f"test-{uuid.uuid4().hex[:12]}"
        made.append(ns)
        return ns

    yield make
    client = redis.Redis.from_url(redis_url)
    for ns in made:
        keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client for looking at keys directly."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def tq(redis_url: str, namespace: str) -> Iterator[TaskQueue]:
    queue = TaskQueue(redis_url=redis_url, namespace=namespace, backoff_base=0.05, backoff_max=0.2)
    yield queue
    queue.close()


@pytest.fixture
def broker(tq: TaskQueue) -> Broker:
    return tq.broker


class Clock:
    """Drives the scripts' `now` (ms): leases, delays and backoff without sleeping."""

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@pytest.fixture
def clock(broker: Broker) -> Clock:
    fake = Clock(broker.redis_time_ms())
    broker.clock = fake
    return fake


def run_python(code: str, redis_url: str, namespace: str) -> subprocess.CompletedProcess[str]:
    """`python -c CODE` from the project root with the test's Redis and namespace (what a fresh
    process imports, how an entry point exits)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=cli_env(redis_url, namespace),
        timeout=30,
        check=False,
    )


def cli_env(redis_url: str, namespace: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    env.update(
        TASKQ_REDIS_URL=redis_url,
        TASKQ_NAMESPACE=namespace,
        NO_COLOR="1",
        XDG_CONFIG_HOME=str(ROOT / "tests" / "no-such-config-dir"),  # the tester's profiles stay out
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    env.update(extra)
    return env


@pytest.fixture
def run_cli(redis_url: str, namespace: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `taskq ARGS` as a real process in the test's namespace (`entry`: how the interpreter
    starts taskq, `python -m taskq_cli` unless a test says otherwise)."""

    def run(
        *args: str,
        input: str | None = None,
        timeout: float = 30,
        env: dict[str, str] | None = None,
        entry: Sequence[str] = ("-m", "taskq_cli"),
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *entry, *args],
            check=False,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=env or cli_env(redis_url, namespace),
        )

    return run


@pytest.fixture
def spawn(redis_url: str, namespace: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `taskq ARGS` in the background; every process is killed at the end of the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskq_cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env or cli_env(redis_url, namespace),
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll a condition (for real processes only; protocol tests move the clock instead)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
