"""Security basics, on a Redis of our own: payloads are JSON and reach Lua only as arguments,
namespaces are isolated, a Redis ACL user confined to one namespace's keys can run everything, and
`rediss://` verifies the server's certificate and host name."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.admin import Admin
from taskq_cli.errors import UsageError
from taskq_cli.protocol.scripts import load_scripts
from tests.support import ROOT, RedisDidNotStart, RedisServer, make_tls_files

BASIC = "tests.apps.basic"


def taskq(
    url: str, namespace: str, *args: str, timeout: float = 60, input: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    environ.update(
        TASKQ_REDIS_URL=url,
        TASKQ_NAMESPACE=namespace,
        NO_COLOR="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "taskq_cli", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=environ,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def private_redis(tmp_path: Path) -> RedisServer:
    srv = RedisServer(tmp_path / "redis").start()
    yield srv  # type: ignore[misc]
    srv.stop()


# -- payloads ---------------------------------------------------------------------------------------

HOSTILE = [
    "'); redis.call('FLUSHALL') --",
    "]] redis.call('SET', 'pwned', '1') [[",
    '"} ; return redis.call("KEYS", "*") --',
    "\\x00 \x00 \n\r end end end",
    "{" * 50,
]


def test_hostile_payload_text_reaches_lua_only_as_arguments_and_the_script_cache_holds_only_taskqs_scripts(
    private_redis: RedisServer,
) -> None:
    # Given a Redis of our own with a canary key, and payloads made to break out of a Lua string
    client = private_redis.client()
    client.set("canary", "alive")
    ns = "sec"
    lines = "".join(json.dumps({"name": "echo", "payload": {"text": t}}) + "\n" for t in HOSTILE)
    ids = ok(taskq(private_redis.url, ns, "enqueue", "--file", "-", input=lines)).split()
    # When a worker runs them
    ok(taskq(private_redis.url, ns, "worker", "--app", BASIC, "--burst", "--concurrency", "2"))
    # Then each ran with its exact text as the argument, nothing else in Redis changed, and every
    # script Redis ever compiled is one of taskq's files (a payload pasted into a script would have
    # made a new one)
    results = client.hgetall(f"{ns}:{{default}}:results")
    assert [json.loads(results[i]) for i in ids] == HOSTILE
    shown = json.loads(ok(taskq(private_redis.url, ns, "task", "show", ids[0], "--json")))
    assert shown["state"] == "done" and shown["payload"] == {"text": HOSTILE[0]}
    assert client.get("canary") == "alive" and client.get("pwned") is None
    known = {s.sha for s in load_scripts().values()}
    cached = int(client.info("memory")["number_of_cached_scripts"])
    assert all(client.script_exists(*known))
    assert cached == len(known), f"{cached} scripts compiled, taskq has {len(known)}"
    assert not [k for k in client.scan_iter() if k != "canary" and not k.startswith(f"{ns}:")]
    client.close()


def test_a_pickled_payload_planted_in_redis_is_never_unpickled_the_task_goes_dead_as_not_json(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    # Given a task whose payload someone replaced with a pickle that would create a file when loaded
    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    ns = "sec"
    task_id = ok(taskq(private_redis.url, ns, "enqueue", "ok", "{}")).strip()
    raw = redis.Redis.from_url(private_redis.url)  # bytes in, bytes out
    raw.hset(f"{ns}:{{default}}:payloads", task_id, pickle.dumps(Exploit()))
    # When a worker takes it
    ok(taskq(private_redis.url, ns, "worker", "--app", BASIC, "--burst", "--concurrency", "1"))
    # Then it is dead as a malformed payload, and nothing was unpickled
    shown = json.loads(ok(taskq(private_redis.url, ns, "task", "show", task_id, "--json")))
    assert shown["state"] == "dead" and shown["last_error"]["type"] == "MalformedPayload", shown
    assert not marker.exists()
    raw.close()


def test_taskq_never_imports_pickle_and_payloads_are_encoded_with_json_only() -> None:
    package = ROOT / "taskq_cli"
    sources = {p: p.read_text() for p in package.rglob("*.py")}
    assert not [
        p
        for p, text in sources.items()
        if re.search(r"^\s*(import|from)\s+(c?pickle|dill|shelve)\b", text, re.M)
    ]
    lua = "\n".join(p.read_text() for p in (package / "protocol" / "lua").glob("*.lua"))
    assert not re.search(r"\b(loadstring|dofile|require|setfenv)\s*\(", lua), (
        "no Lua code is ever built from data"
    )


# -- namespaces ---------------------------------------------------------------------------------------


def test_two_namespaces_on_one_redis_never_see_or_touch_each_others_tasks(private_redis: RedisServer) -> None:
    url = private_redis.url
    a, b = TaskQueue(redis_url=url, namespace="ns-a"), TaskQueue(redis_url=url, namespace="ns-b")
    # Given the same queue name in two namespaces, each with a waiting task and one that will die
    a_ids = [a.enqueue("ok", {}), a.enqueue("give_up", {})]
    b_ids = [b.enqueue("ok", {}), b.enqueue("give_up", {})]
    # When a burst worker serves namespace a, and a's dead-letter queue is purged and its queue cleared
    ok(taskq(url, "ns-a", "worker", "--app", BASIC, "--burst", "--concurrency", "1"))
    assert len(Admin(a.broker).dlq_purge(None).handled) == 1
    assert Admin(a.broker).clear("default") == 1
    # Then b's tasks were never run nor touched, and neither namespace can see the other's
    [stats_b] = b.broker.queue_stats(["default"])
    assert (stats_b.pending, stats_b.processed) == (2, 0)
    assert all(a.get_task(i) is None for i in b_ids) and all(b.get_task(i) is None for i in a_ids)
    assert [t.state for t in (b.get_task(i) for i in b_ids) if t] == ["pending", "pending"]
    client = private_redis.client()
    assert all(k.startswith(("ns-a:", "ns-b:")) for k in client.scan_iter())
    client.close()
    a.close()
    b.close()


@pytest.mark.parametrize("name", ["a*", "a:b", "{x}", "a b", "x?", "a[b]"])
def test_a_namespace_that_could_match_or_reach_other_keys_is_refused(name: str) -> None:
    with pytest.raises(UsageError):
        TaskQueue(redis_url="redis://127.0.0.1:1/0", namespace=name)


def test_the_cli_refuses_such_a_namespace_before_touching_redis(private_redis: RedisServer) -> None:
    done = taskq(private_redis.url, "placeholder", "--namespace", "a*", "enqueue", "ok")
    assert done.returncode == 2, done.stderr
    client = private_redis.client()
    assert client.dbsize() == 0
    client.close()


# -- Redis ACL users ------------------------------------------------------------------------------------

# What a taskq user needs: its own keys, data commands, scripts, transactions, TIME; no admin command,
# nothing dangerous (KEYS, FLUSHALL, CONFIG, DEBUG ...).
ACL_RULES = (
    "on >s3cret resetkeys ~{ns}:* resetchannels -@all +@read +@write +@scripting +@transaction +@connection"
    " +time -@admin -@dangerous"
)


def test_a_redis_acl_user_confined_to_its_namespaces_keys_can_enqueue_run_and_operate(
    private_redis: RedisServer,
) -> None:
    # Given an ACL user allowed only the keys `jobs:*` and no admin or dangerous command
    admin = private_redis.client()
    admin.execute_command("ACL", "SETUSER", "taskq", *ACL_RULES.format(ns="jobs").split())
    admin.set("other:secret", "x")
    url = f"redis://taskq:s3cret@127.0.0.1:{private_redis.port}/0"
    # When it enqueues, runs a worker, inspects and operates the queue
    tq = TaskQueue(redis_url=url, namespace="jobs")
    tq.enqueue("ok", {"value": 1})
    dead = tq.enqueue("give_up", {})
    ok(taskq(url, "jobs", "worker", "--app", BASIC, "--burst", "--concurrency", "1"))
    ok(taskq(url, "jobs", "stats", "--json"))
    [stats] = tq.broker.queue_stats(["default"])
    admin_ops = Admin(tq.broker)
    listed = admin_ops.dead_tasks(None, None, 10)
    retried = admin_ops.dlq_retry([dead]).handled
    cleared = admin_ops.clear("default")
    tq.close()
    # Then everything worked ...
    assert (stats.processed, stats.dead) == (2, 1)
    assert [t.id for t in listed] == [dead] and retried == [dead] and cleared == 2
    # ... and the same user can reach no other namespace: a clear one-line error, exit 1
    other = taskq(url, "other", "enqueue", "ok", "{}")
    assert (
        other.returncode == 1
        and "no permissions" in other.stderr
        and len(other.stderr.strip().splitlines()) == 1
    )
    user = redis.Redis.from_url(url, decode_responses=True)
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.get("other:secret")
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.flushall()
    user.close()
    admin.close()


# -- TLS --------------------------------------------------------------------------------------------------


@pytest.fixture
def tls_redis(tmp_path: Path) -> RedisServer:
    files = make_tls_files(tmp_path / "tls", san="DNS:localhost")
    srv = RedisServer(tmp_path / "redis", tls=files)
    try:
        srv.start()
    except RedisDidNotStart as exc:
        if "tls" in str(exc).lower() or "bad directive" in str(exc).lower():
            pytest.skip(f"this redis-server has no TLS support (built without BUILD_TLS): {exc}")
        raise
    yield srv  # type: ignore[misc]
    srv.stop()


def test_rediss_works_with_a_trusted_certificate_and_is_refused_with_an_unknown_ca_or_a_wrong_host_name(
    tls_redis: RedisServer, tmp_path: Path
) -> None:
    port, ca = tls_redis.port, str(tls_redis.tls.ca if tls_redis.tls else "")
    good = f"rediss://localhost:{port}/0"
    ns = f"tls-{uuid.uuid4().hex[:6]}"
    # Given the CA is trusted (SSL_CERT_FILE), a worker and the CLI work over TLS
    task_id = ok(taskq(good, ns, "enqueue", "ok", '{"value": 3}', SSL_CERT_FILE=ca)).strip()
    ok(taskq(good, ns, "worker", "--app", BASIC, "--burst", "--concurrency", "1", SSL_CERT_FILE=ca))
    shown = json.loads(ok(taskq(good, ns, "task", "show", task_id, "--json", SSL_CERT_FILE=ca)))
    assert shown["state"] == "done" and shown["result"] == {"value": 3}
    # (the CA can also be named in the URL itself)
    ok(taskq(f"{good}?ssl_ca_certs={ca}", ns, "stats"))
    # When the CA is not trusted, or the host name is not the certificate's (127.0.0.1 is not in it)
    other_ca = make_tls_files(tmp_path / "other", san="DNS:localhost").ca
    untrusted = taskq(good, ns, "stats", SSL_CERT_FILE=str(other_ca))
    wrong_host = taskq(f"rediss://127.0.0.1:{port}/0", ns, "stats", SSL_CERT_FILE=ca)
    # Then the connection is refused: exit 1 with one line saying why
    for done in (untrusted, wrong_host):
        assert done.returncode == 1, done.stdout
        assert "certificate" in done.stderr.lower() or "ssl" in done.stderr.lower(), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
