"""The one-minute soak (tools/soak.py) on a Redis of its own, then what the namespace holds afterwards:
Redis memory stays bounded (done tasks and results expire, dead workers leave the registry, counters
do not grow per task)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from taskq_cli import TaskQueue
from tests.conftest import FIGURE
from tests.support import ROOT, RedisServer, until

NS = "soak"
RESULT_TTL = 3600  # tests/apps/chaos.py keeps results that long, so the soak can count every done task
REGISTRY_TTL = 5.0  # the soak's lease: a worker's description lives max(lease, 3 s) past its last beat


def key(part: str) -> str:
    return f"{NS}:{{default}}:{part}"


def namespace_keys(client: redis.Redis) -> dict[str, str]:
    return {k: str(client.type(k)) for k in client.scan_iter(match=f"{NS}:*", count=1000)}


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_the_one_minute_soak_loses_no_task_and_every_duplicate_was_in_flight_at_a_kill(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    client = server.client()
    try:
        # Given the soak: 4 workers SIGKILLed at random, two schedulers, a flaky handler
        out = tmp_path / "soak.json"
        began = time.monotonic()
        done = subprocess.run(
            [
                *(sys.executable, "tools/soak.py", "--redis-url", server.url, "--namespace", NS, "--keep"),
                *("--json-out", str(out), "--timeout", "200"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=260,
            check=False,
        )
        took = time.monotonic() - began
        request.node.user_properties.append((FIGURE, f"soak ({took:.0f}s): {done.stdout.strip()}"))
        # Then its report says nothing was lost and every duplicate was in flight at a kill
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        summary = json.loads(out.read_text())
        assert summary["line"] == done.stdout.strip()
        assert summary["lost"] == 0 and not summary["unexplained"] and summary["waiting"] == 0
        assert " lost 0, " in done.stdout and "(all in flight at a kill)" in done.stdout
        assert summary["worker_kills"] >= 5 and sum(summary["attempts_cut"].values()) > 0, summary
        assert summary["dead"] > 0 and summary["orphans"] == [], summary
        check_bounded_memory(server, client, summary)
    finally:
        client.close()
        server.stop()


def check_bounded_memory(server: RedisServer, client: redis.Redis, summary: dict[str, object]) -> None:
    done_count, dead_count = int(str(summary["done"])), int(str(summary["dead"]))
    # Every task's record, payload and result are there, and nothing else per task
    assert client.hlen(key("tasks")) == client.hlen(key("payloads")) == done_count + dead_count
    assert client.hlen(key("results")) == client.zcard(key("done")) == done_count
    assert client.zcard(key("dead")) == dead_count
    # Counters: two fields whatever the number of tasks; successes are exactly the done tasks
    counters = {k: int(v) for k, v in client.hgetall(key("counters")).items()}
    assert set(counters) == {"processed", "failed"}
    assert counters["processed"] - counters["failed"] == done_count
    # Once result_ttl has passed (driven through the scripts' clock), done tasks and results are gone
    tq = TaskQueue(redis_url=server.url, namespace=NS)
    later = tq.broker.redis_time_ms() + (RESULT_TTL + 1) * 1000
    tq.broker.clock = lambda: later
    for _ in range(done_count // 100 + 10):
        if client.zcard(key("done")) == 0:
            break
        tq.broker.promote("default")
    tq.close()
    assert client.hlen(key("tasks")) == client.hlen(key("payloads")) == dead_count
    # Dead workers leave the registry: their descriptions expire, and their entries in the list of
    # workers with them (no `taskq stats` needed to clean up after them)
    until(
        lambda: not [k for k in namespace_keys(client) if k.startswith((f"{NS}:worker:", f"{NS}:workers"))],
        REGISTRY_TTL + 5,
        what="the dead workers' descriptions and entries expired",
    )
    keys = namespace_keys(client)
    assert client.llen(key("wake")) <= 1
    assert not [k for k in keys if k.startswith(f"{NS}:worker:")], keys
    stale = client.zrange(f"{NS}:workers", 0, -1)
    assert set(keys) - {key("wake")} == {
        f"{NS}:queues",
        key("tasks"),
        key("payloads"),
        key("dead"),
        key("counters"),
    }, f"{len(stale)} killed workers still listed in {NS}:workers, their descriptions long expired: {stale}"
