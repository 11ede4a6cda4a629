"""`taskq doctor`: the checks as pure functions (made-up INFO/CONFIG values), the command against the
real Redis in a namespace of its own, and against a private redis-server configured badly on purpose
(the shared server's config is never changed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.doctor import (
    ExpiredLeases,
    KeyLayout,
    Registration,
    check_clock,
    check_eviction,
    check_latency,
    check_leases,
    check_persistence,
    check_version,
    check_workers,
    take_census,
)
from taskq_cli.protocol import Broker, Fetched
from taskq_cli.protocol.keys import NamespaceKeys, QueueKeys
from tests.conftest import Clock, cli_env
from tests.support import RedisServer, free_port

RunCli = Callable[..., subprocess.CompletedProcess[str]]
FIELDS = {"check", "status", "message", "fix"}


def doctor_json(
    run_cli: RunCli, **kwargs: Any
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    proc = run_cli("doctor", "--json", **kwargs)
    return proc, json.loads(proc.stdout)


def by_check(findings: list[dict[str, Any]], check: str) -> list[dict[str, Any]]:
    return [f for f in findings if f["check"] == check]


# -- the checks on made-up facts ---------------------------------------------------------------


def test_redis_older_than_6_2_fails_and_the_version_is_reported() -> None:
    finding = check_version({"redis_version": "6.0.16"})
    assert finding.status == "fail"
    assert "6.0.16" in finding.message
    assert finding.fix and "6.2" in finding.fix
    assert check_version({"redis_version": "6.2.0"}).status == "ok"


def test_valkey_is_named_with_its_own_version() -> None:
    finding = check_version({"redis_version": "7.2.4", "valkey_version": "8.0.1"})
    assert finding.status == "ok"
    assert "Valkey 8.0.1" in finding.message


def test_an_evicting_policy_with_a_memory_limit_fails() -> None:
    finding = check_eviction("allkeys-lru", 64 * 2**20)
    assert finding.status == "fail"
    assert "allkeys-lru" in finding.message
    assert finding.fix and "noeviction" in finding.fix


def test_an_evicting_policy_without_a_memory_limit_is_only_a_warning() -> None:
    assert check_eviction("volatile-lru", 0).status == "warn"


def test_noeviction_passes() -> None:
    assert check_eviction("noeviction", 64 * 2**20).status == "ok"


def test_a_refused_config_get_is_a_warning_that_says_it_could_not_be_checked() -> None:
    finding = check_eviction(None, None, "CONFIG GET refused: unknown command 'CONFIG'")
    assert finding.status == "warn"
    assert "could not be checked" in finding.message
    assert "CONFIG GET refused" in finding.message


def test_no_save_points_and_aof_off_warn_that_a_restart_loses_every_task() -> None:
    finding = check_persistence("", False)
    assert finding.status == "warn"
    assert "restart loses every task" in finding.message
    assert finding.fix and "appendonly" in finding.fix


def test_either_rdb_snapshots_or_aof_count_as_persistence() -> None:
    assert check_persistence("3600 1 300 100", False).status == "ok"
    assert check_persistence("", True).status == "ok"
    assert check_persistence(None, True).status == "ok"


def test_unreadable_save_points_with_aof_off_warn_that_they_could_not_be_read() -> None:
    finding = check_persistence(None, False, "CONFIG GET refused: NOPERM")
    assert finding.status == "warn"
    assert "could not be read" in finding.message


def test_an_unknown_aof_state_is_never_reported_as_aof_off() -> None:
    finding = check_persistence("", None, "INFO persistence without aof_enabled")
    assert finding.status == "warn"
    assert finding.message.startswith("the AOF state could not be read and no RDB save points")


def test_latency_above_5_ms_warns_and_reports_p50_and_max() -> None:
    slow = check_latency([6.0] * 19 + [40.0])
    assert slow.status == "warn"
    assert "p50 6.00 ms" in slow.message
    assert "max 40.00 ms" in slow.message
    assert check_latency([0.2] * 20).status == "ok"


def test_a_clock_offset_above_a_second_warns_and_explains_it_only_matters_for_at() -> None:
    finding = check_clock(2500.0)
    assert finding.status == "warn"
    assert "2.5 s behind" in finding.message
    assert "--at" in finding.message
    assert check_clock(-30.0).status == "ok"


def test_a_worker_whose_registration_expired_or_stopped_beating_is_reported() -> None:
    now = 1_000_000_000
    registrations = [
        Registration("alive", now - 1000, {"host": "h", "pid": 1}),
        Registration("expired", now - 1000, None),
        Registration("silent", now - 120_000, {"host": "box", "pid": 42}),
    ]
    finding = check_workers(registrations, now)
    assert finding.status == "warn"
    assert "expired (registration expired)" in finding.message
    assert "silent (box pid 42, last heartbeat 120 s ago)" in finding.message
    assert "alive" not in finding.message.split(":", 1)[1]


def test_leases_expired_beyond_the_grace_fail_and_name_the_queue_in_the_fix() -> None:
    now = 1_000_000_000
    expired = {"mail": ExpiredLeases(3, now - 45_000)}
    (finding,) = check_leases(expired, {}, now)
    assert finding.status == "fail"
    assert "queue mail: 3 active tasks" in finding.message
    assert "45 s ago" in finding.message
    assert finding.fix == "run `taskq scheduler` or a worker for queue mail (taskq worker --queues mail)"


def test_leases_expired_on_a_queue_with_live_workers_point_at_those_workers() -> None:
    now = 1_000_000_000
    (finding,) = check_leases({"mail": ExpiredLeases(1, now - 45_000)}, {"mail": 2}, now)
    assert finding.status == "fail"
    assert "2 live worker(s) serve it" in finding.message


def test_the_key_layout_recognises_every_key_that_keys_py_produces() -> None:
    layout = KeyLayout("ns")
    queue_keys = QueueKeys("ns", "mail.v2").script_keys()
    ns = NamespaceKeys("ns")
    per_task = [QueueKeys("ns", "mail.v2").waiting("t:1"), QueueKeys("ns", "mail.v2").outcome("t:1")]
    census = take_census(layout, [*queue_keys, *per_task, ns.queues, ns.workers, ns.worker("w-1")])
    assert census.unknown == []
    assert census.queues == {"mail.v2"}


def test_the_key_layout_flags_keys_outside_the_layout() -> None:
    layout = KeyLayout("ns")
    strays = ["ns:leftover", "ns:{mail}:bogus", "ns:worker:", "ns:{}:tasks", "ns:queues:old"]
    strays += ["ns:{m}:waiting:", "ns:{}:outcome:t1"]
    census = take_census(layout, strays)
    assert census.unknown == sorted(strays)
    assert census.queues == set()


# -- the command against the shared Redis ------------------------------------------------------


def test_a_healthy_namespace_with_every_kind_of_task_passes_with_exit_0(
    tq: TaskQueue, broker: Broker, run_cli: RunCli
) -> None:
    tq.enqueue("send", {"n": 1})
    tq.enqueue("send", {"n": 2})
    tq.enqueue("send", {"n": 3})
    tq.enqueue("send", {"n": 4}, delay=600)
    done = broker.fetch("default", lease=30, worker_id="w-1")
    dead = broker.fetch("default", lease=30, worker_id="w-1")
    running = broker.fetch("default", lease=30, worker_id="w-1")
    assert isinstance(done, Fetched)
    assert isinstance(dead, Fetched)
    assert isinstance(running, Fetched)
    assert broker.ack(done, '{"ok": true}', 600)
    error = {"type": "E", "message": "m", "traceback": ""}
    assert broker.fail(dead, error, final=True, delay=0, max_retries=0) == "dead"
    broker.set_paused("reports", True)
    now = broker.redis_time_ms()
    info = {"id": "w-1", "host": "h", "pid": 1, "queues": ["default"], "heartbeat_at": now, "active": []}
    broker.register_worker("w-1", info, ttl=30)

    proc, findings = doctor_json(run_cli)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert [f for f in findings if f["status"] == "fail"] == []
    assert by_check(findings, "keys")[0]["status"] == "ok"
    assert by_check(findings, "workers")[0]["message"] == "1 live worker"
    assert by_check(findings, "redis-version")[0]["message"].startswith(("Redis ", "Valkey "))


def test_json_output_is_a_list_of_findings_with_check_status_message_and_fix(run_cli: RunCli) -> None:
    proc, findings = doctor_json(run_cli)
    assert proc.returncode == 0
    assert isinstance(findings, list)
    assert findings
    for finding in findings:
        assert set(finding) == FIELDS
        assert finding["status"] in ("ok", "warn", "fail")
        assert isinstance(finding["message"], str)
        assert finding["fix"] is None or isinstance(finding["fix"], str)
    checks = {f["check"] for f in findings}
    expected = {"redis-version", "redis-commands", "maxmemory-policy", "persistence", "latency", "clock"}
    assert expected | {"workers", "leases", "keys", "queues"} <= checks


def test_the_table_for_people_lists_every_check_with_its_fix(run_cli: RunCli) -> None:
    proc = run_cli("doctor")
    assert proc.returncode == 0
    header, *rows = proc.stdout.splitlines()
    assert header.split() == ["check", "status", "message", "fix"]
    assert {row.split()[0] for row in rows} >= {"redis-version", "latency", "leases", "keys"}


def test_an_unknown_key_in_the_namespace_fails_and_is_named(
    namespace: str, raw: redis.Redis, run_cli: RunCli
) -> None:
    raw.set(f"{namespace}:leftover", "1")
    raw.hset(f"{namespace}:{{default}}:extra", "a", "1")

    proc, findings = doctor_json(run_cli)

    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "keys" in proc.stderr
    (keys,) = by_check(findings, "keys")
    assert keys["status"] == "fail"
    assert f"{namespace}:leftover" in keys["message"]
    assert f"{namespace}:{{default}}:extra" in keys["message"]
    assert keys["fix"]


def test_a_stale_worker_registration_is_reported_and_left_in_place(
    broker: Broker, raw: redis.Redis, run_cli: RunCli
) -> None:
    raw.zadd(broker.ns.workers, {"gone-worker": broker.redis_time_ms()})

    proc, findings = doctor_json(run_cli)

    assert proc.returncode == 0  # a warning: its tasks come back through their leases
    (workers,) = by_check(findings, "workers")
    assert workers["status"] == "warn"
    assert "gone-worker (registration expired)" in workers["message"]
    assert workers["fix"]
    assert raw.zscore(broker.ns.workers, "gone-worker") is not None  # doctor only reads


def test_a_worker_whose_heartbeat_is_a_minute_old_is_reported(broker: Broker, run_cli: RunCli) -> None:
    old = broker.redis_time_ms() - 120_000
    info = {"id": "slow", "host": "box", "pid": 7, "queues": ["default"], "heartbeat_at": old, "active": []}
    broker.register_worker("slow", info, ttl=30)

    proc, findings = doctor_json(run_cli)

    assert proc.returncode == 0
    (workers,) = by_check(findings, "workers")
    assert workers["status"] == "warn"
    assert "slow (box pid 7, last heartbeat" in workers["message"]


def test_an_active_task_with_a_long_expired_lease_and_nobody_to_recover_it_fails_with_the_fix(
    tq: TaskQueue, broker: Broker, clock: Clock, run_cli: RunCli
) -> None:
    tq.enqueue("send", {}, queue="mail")
    clock.advance(-60)  # fetched a minute ago with a 1 s lease, by a worker that then vanished
    assert broker.fetch("mail", lease=1, worker_id="lost") is not None

    proc, findings = doctor_json(run_cli)

    assert proc.returncode == 1
    assert "leases" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    (leases,) = by_check(findings, "leases")
    assert leases["status"] == "fail"
    assert "queue mail: 1 active task whose lease expired" in leases["message"]
    assert "no live worker serves mail" in leases["message"]
    assert "taskq scheduler" in leases["fix"]
    assert "worker for queue mail" in leases["fix"]


def test_a_lease_that_expired_only_moments_ago_is_not_a_failure(
    tq: TaskQueue, broker: Broker, clock: Clock, run_cli: RunCli
) -> None:
    tq.enqueue("send", {})
    clock.advance(-3)
    assert broker.fetch("default", lease=1, worker_id="w") is not None  # expired 2 s ago

    proc, findings = doctor_json(run_cli)

    assert proc.returncode == 0
    assert by_check(findings, "leases")[0]["status"] == "ok"


def test_keys_of_a_queue_missing_from_the_registry_are_a_warning_with_the_command_to_fix_it(
    broker: Broker, raw: redis.Redis, run_cli: RunCli
) -> None:
    raw.lpush(broker.keys("ghost").pending, "some-id")

    proc, findings = doctor_json(run_cli)

    assert proc.returncode == 0
    (queues,) = by_check(findings, "queues")
    assert queues["status"] == "warn"
    assert "ghost" in queues["message"]
    assert queues["fix"] == f"redis-cli SADD {broker.ns.queues} ghost"
    assert by_check(findings, "keys")[0]["status"] == "ok"


def test_unreachable_redis_exits_1_with_one_line(namespace: str, run_cli: RunCli) -> None:
    env = cli_env(f"redis://127.0.0.1:{free_port()}/0", namespace)
    proc = run_cli("doctor", env=env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("taskq: error: cannot reach Redis")
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


# -- the command against a private, badly configured redis-server ------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start a redis-server of our own with the given options; every one is stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    servers: list[RedisServer] = []

    def start(*options: str) -> str:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", args=options)
        servers.append(server)
        return server.start().url

    yield start
    for server in servers:
        server.shutdown()


def test_an_evicting_redis_without_persistence_fails_on_eviction_and_warns_on_persistence(
    private_redis: Callable[..., str], namespace: str, run_cli: RunCli
) -> None:
    url = private_redis(
        "--save", "", "--appendonly", "no", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"
    )

    proc, findings = doctor_json(run_cli, env=cli_env(url, namespace))

    assert proc.returncode == 1
    assert proc.stderr.strip() == "taskq: error: 1 check failed: maxmemory-policy"
    (eviction,) = by_check(findings, "maxmemory-policy")
    assert eviction["status"] == "fail"
    assert "allkeys-lru" in eviction["message"]
    assert "noeviction" in eviction["fix"]
    (persistence,) = by_check(findings, "persistence")
    assert persistence["status"] == "warn"
    assert "restart loses every task" in persistence["message"]


def test_a_redis_that_refuses_config_is_still_checked_through_info_and_never_crashes(
    private_redis: Callable[..., str], namespace: str, run_cli: RunCli
) -> None:
    url = private_redis(
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory-policy",
        "noeviction",
        "--rename-command",
        "CONFIG",
        "",
    )

    proc, findings = doctor_json(run_cli, env=cli_env(url, namespace))

    assert proc.returncode == 0, proc.stderr
    assert by_check(findings, "maxmemory-policy")[0]["status"] == "ok"  # read from INFO memory
    (persistence,) = by_check(findings, "persistence")
    assert persistence["status"] == "warn"
    assert "could not be read" in persistence["message"]
    assert "CONFIG GET refused" in persistence["message"]
