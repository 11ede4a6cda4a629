"""Redis URLs for a cluster and for Sentinel: parsed into hosts, path and redis-py's own options,
bad ones refused as usage errors (exit 2) before anything is written; and unix:// URLs against a
redis-server of the test's own on a unix socket."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from taskq_cli.errors import InvalidRedisUrl, UsageError
from taskq_cli.protocol import connect
from taskq_cli.protocol.topology import check_url, parse_multi_host_url
from tests.conftest import ROOT, cli_env
from tests.support import RedisServer


def test_a_cluster_url_lists_its_startup_nodes_and_keeps_credentials_and_options() -> None:
    parsed = parse_multi_host_url(
        "redis+cluster://bob:s%40cret@10.0.0.1:7000,10.0.0.2,[::1]:7002?socket_timeout=3", 6379
    )
    assert parsed.hosts == [("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)]
    assert parsed.tls is False and parsed.path == []
    assert parsed.options["username"] == "bob" and parsed.options["password"] == "s@cret"
    assert parsed.options["socket_timeout"] == 3.0


def test_tls_variants_are_recognised() -> None:
    assert parse_multi_host_url("rediss+cluster://h:7000", 6379).tls is True
    assert parse_multi_host_url("rediss+sentinel://h:26379/svc", 26379).tls is True


def test_a_sentinel_url_names_the_service_and_optionally_the_database() -> None:
    parsed = parse_multi_host_url("redis+sentinel://s1:26379,s2/mymaster/2", 26379)
    assert parsed.hosts == [("s1", 26379), ("s2", 26379)]
    assert parsed.path == ["mymaster", "2"]


def test_a_sentinel_client_connects_lazily_through_the_sentinels_with_tls_when_asked() -> None:
    plain = connect("redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc/3")
    tls = connect("rediss+sentinel://127.0.0.1:1/svc?sentinel_password=pw")
    try:
        assert plain.connection_pool.connection_class is SentinelManagedConnection  # type: ignore[union-attr]
        assert plain.connection_pool.connection_kwargs["db"] == 3  # type: ignore[union-attr]
        assert tls.connection_pool.connection_class is SentinelManagedSSLConnection  # type: ignore[union-attr]
        sentinels = tls.connection_pool.sentinel_manager.sentinels  # type: ignore[union-attr]
        assert sentinels[0].connection_pool.connection_kwargs["password"] == "pw"
    finally:
        plain.close()
        tls.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://127.0.0.1:26379", "needs the service name"),
        ("redis+sentinel://127.0.0.1:26379/svc/x", "invalid database"),
        ("redis+cluster://127.0.0.1:7000/3", "only database 0"),
        ("redis+cluster://", "no host"),
        ("redis+cluster://h:99999", "invalid port"),
    ],
)
def test_malformed_urls_are_usage_errors(url: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        connect(url)


def test_the_cli_refuses_a_malformed_url_with_exit_2_and_hides_the_password() -> None:
    env = cli_env("redis+sentinel://:hunter2@127.0.0.1:26379", "urls")
    proc = subprocess.run(
        [sys.executable, "-m", "taskq_cli", "enqueue", "t"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "needs the service name" in proc.stderr and "hunter2" not in proc.stderr


def test_an_unreachable_cluster_is_the_usual_cannot_reach_redis_exit_1() -> None:
    env = cli_env("redis+cluster://127.0.0.1:1", "urls")
    proc = subprocess.run(
        [sys.executable, "-m", "taskq_cli", "stats"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("taskq: error: cannot reach Redis") and proc.stderr.count("\n") == 1


# -- unix:// and malformed URLs, through the CLI ---------------------------------------------------


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own listening only on a unix socket (no TCP port)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    server = RedisServer(tmp_path / "redis", unixsocket=tmp_path / "redis.sock").start()
    yield server
    server.stop()


def taskq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskq_cli", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_a_unix_socket_url_serves_enqueue_stats_and_a_burst_worker(unix_redis: RedisServer) -> None:
    env = cli_env(unix_redis.url, "unix")

    fast = taskq(env, "enqueue", "ok", '{"value": 1}')  # the fast path
    typer = taskq(env, "enqueue", "--app", "tests.apps.basic", "ok", '{"value": 2}')  # the Typer command
    assert (fast.returncode, typer.returncode) == (0, 0), fast.stderr + typer.stderr
    stats = taskq(env, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["queues"]["default"]["pending"] == 2
    worker = taskq(env, "worker", "--app", "tests.apps.basic", "--burst", "--concurrency", "1")
    assert worker.returncode == 0, worker.stderr

    for proc, value in ((fast, 1), (typer, 2)):
        shown = taskq(env, "task", "show", proc.stdout.strip(), "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["result"] == {"value": value}


MALFORMED = [
    "http://x",
    "redis://:::",
    "redis://127.0.0.1:abc/0",
    "redis://h/abc",
    "unix://",
    "redis://h?bogus=1",
]
COMMANDS = [
    ("enqueue", "t"),  # the fast path
    ("enqueue", "t", "--durable"),  # the Typer command
    ("stats",),
    ("queue", "list"),
    ("worker", "--app", "tests.apps.basic", "--burst"),
    ("api", "--port", "1"),
]


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_redis_url_is_refused_before_anything_connects(url: str) -> None:
    with pytest.raises(InvalidRedisUrl):
        check_url(url)


@pytest.mark.parametrize("index", range(len(MALFORMED)), ids=MALFORMED)
def test_a_malformed_redis_url_is_bad_usage_on_one_line_for_every_command(index: int) -> None:
    """Every command checks the URL in one place (cli/shared.py's make_queue, check_url above), so
    each URL goes to two commands, one from the environment and one as --redis-url, and each
    command meets two URLs, one of each way: 12 processes instead of the 36 of every pair."""
    url = MALFORMED[index]
    for offset in (0, len(COMMANDS) // 2):
        command = COMMANDS[(index + offset) % len(COMMANDS)]
        from_env = offset > 0
        env = cli_env(url if from_env else "redis://127.0.0.1:6379/0", "urls")
        args = command if from_env else (*command, "--redis-url", url)

        proc = taskq(env, *args)

        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("taskq: error: invalid Redis URL"), (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and proc.stdout == "", (args, proc.stderr)
