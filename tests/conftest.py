"""Shared fixtures. Tests run against a real Redis (TASKQ_TEST_REDIS_URL, default the local one);
each test gets its own namespace, deleted afterwards, and every process it starts is killed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.protocol import Broker
from taskq_cli.protocol.keys import NamespaceKeys
from taskq_cli.protocol.topology import Client, connect
from tests.cluster.servers import Cluster, Unsupported
from tests.support import ROOT, Procs, taskq_env, until

__all__ = ["FIGURE", "ROOT", "Clock", "cli_env", "run_python", "wait_until"]
REDIS_URL = os.environ.get("TASKQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: on a local 3-primary Redis Cluster (CI still runs them)")


FIGURE = "taskq_figure"  # a test's `record_property(FIGURE, line)`: a line of the run's figures
_figures: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Gather the figures tests recorded; an xdist worker's arrive here with its reports."""
    if report.when == "call":
        _figures.extend(str(value) for name, value in report.user_properties if name == FIGURE)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _figures:
        terminalreporter.section("taskq figures")
        for line in _figures:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def suite_redis_url() -> Iterator[str]:
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


@pytest.fixture(scope="session")
def redis_url(suite_redis_url: str) -> str:
    """The Redis a test runs on; tests/cluster and the protocol contract point it elsewhere."""
    return suite_redis_url


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-primary Redis Cluster on loopback for the whole session, started when first needed."""
    deployment = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        deployment.start()
    except Unsupported as exc:
        deployment.stop()
        pytest.skip(f"no Redis Cluster: {exc}")
    except BaseException:
        deployment.stop()
        raise
    yield deployment
    deployment.stop()


def _client(url: str) -> Client:
    """A plain decoding client for a single Redis, taskq's own for a cluster or Sentinel URL."""
    if url.partition("://")[0].lower() in ("redis", "rediss", "unix"):
        return redis.Redis.from_url(url, decode_responses=True)
    return connect(url)


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    ns = f"test-{uuid.uuid4().hex[:12]}"
    yield ns
    client = _client(redis_url)
    try:
        keys = list(client.scan_iter(match=NamespaceKeys(ns).pattern(), count=1000))  # every primary
        if keys:
            client.delete(*keys)  # a cluster client deletes slot by slot
    finally:
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
    client = _client(redis_url)
    try:
        for ns in made:
            keys = list(client.scan_iter(match=NamespaceKeys(ns).pattern(), count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client for looking at keys directly (a cluster client on a cluster)."""
    client = _client(redis_url)
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


cli_env = taskq_env  # the name the tests have always used


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
def procs(redis_url: str, namespace: str) -> Iterator[Procs]:
    """Background `taskq` processes (tests/support/procs.py), each process group killed at the end."""
    started = Procs(cli_env(redis_url, namespace))
    yield started
    started.close()


@pytest.fixture
def spawn(procs: Procs) -> Callable[..., subprocess.Popen[str]]:
    """Start `taskq ARGS` in the background as a bare Popen; killed (its whole group) at the end."""

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return procs.popen(*args, env=env)

    return start


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll a condition (for real processes only; protocol tests move the clock instead)."""
    until(predicate, timeout, interval=interval)
