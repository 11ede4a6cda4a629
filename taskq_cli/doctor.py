"""`taskq doctor`: what silently breaks queues in production, each finding with how to fix it.

Pure logic, no Typer or Rich: `run_checks(broker)` gathers facts from Redis (read-only, apart from
loading taskq's own Lua scripts into the script cache, as every worker does) and the `check_*`
functions turn facts into findings, so each can be tested with made-up INFO/CONFIG values.

Severities: `fail` loses or stalls tasks now (Redis older than 6.2 or missing commands, an evicting
`maxmemory-policy` with a memory limit, leases expired long ago that nobody recovers, keys in the
namespace that are not taskq's, a cluster that does not serve every slot, a queue whose keys span
slots); `warn` is a risk or could not be checked (persistence off, round-trip latency, clock offset,
workers that stopped heartbeating, queues missing from the registry, an evicting policy without a
memory limit, CONFIG refused, sentinels not answering). Redis unreachable is not a finding: the
client's ConnectionError reaches the CLI, which exits 1 with one line.

On a Redis Cluster the server checks (version, commands, eviction, persistence, latency) run on every
primary and are reported as one finding per check: the worst result, naming the primaries it comes
from; SCAN covers every primary.
"""

from __future__ import annotations

import inspect
import json
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.crc import key_slot
from redis.exceptions import ResponseError

from taskq_cli.config import check_name
from taskq_cli.errors import UsageError
from taskq_cli.protocol import Broker
from taskq_cli.protocol.keys import QUEUE_KEY_ORDER, NamespaceKeys, QueueKeys
from taskq_cli.protocol.scripts import load_scripts
from taskq_cli.protocol.topology import Topology, describe, server_clients

Status = Literal["ok", "warn", "fail"]

MIN_VERSION = (6, 2, 0)
REQUIRED_COMMANDS = ("LMOVE", "BLMOVE", "BLPOP", "EVALSHA", "SCRIPT", "TIME")
PINGS = 20
LATENCY_WARN_MS = 5.0
CLOCK_WARN_MS = 1000.0
STALE_HEARTBEAT_MS = 60_000  # a worker beats every lease/3 (10 s by default)
LEASE_GRACE_MS = 10_000  # recovery runs every second wherever a worker or scheduler serves the queue
SHOWN = 5  # ids, keys or queues named in one message

_MARK = "\x00"  # cannot occur in a namespace or queue name: marks the variable part of a key


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    message: str
    fix: str | None = None  # one line; None when there is nothing to do

    def as_json(self) -> dict[str, str | None]:
        return {"check": self.check, "status": self.status, "message": self.message, "fix": self.fix}


def failed(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.status == "fail"]


# -- Redis server -----------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split(".")[:3])
    except ValueError:
        return None


def check_version(info: Mapping[str, Any]) -> Finding:
    """From INFO server: Redis (or Valkey, which reports a compatible redis_version) 6.2+."""
    raw = str(info.get("redis_version", ""))
    version = parse_version(raw)
    name = f"Redis {raw}"
    if info.get("valkey_version"):
        name = f"Valkey {info['valkey_version']} (Redis {raw} compatible)"
    if version is None:
        return Finding(
            "redis-version",
            "warn",
            f"could not read the server version ({raw or 'no redis_version in INFO'})",
            "make sure the server is Redis 6.2+ or Valkey",
        )
    if version < MIN_VERSION:
        return Finding(
            "redis-version",
            "fail",
            f"{name}: taskq needs Redis 6.2+ (LMOVE/BLMOVE, ZRANGE BYSCORE, Lua scripts)",
            "upgrade the server to Redis 6.2 or later (or Valkey)",
        )
    return Finding("redis-version", "ok", name)


def check_commands(missing: Sequence[str], refused: Mapping[str, str], listed: bool = True) -> Finding:
    """`missing`: commands the server does not know; `refused`: probes that failed, with the error;
    `listed`: whether COMMAND INFO answered (some managed servers refuse it)."""
    problems = [f"{c} unknown" for c in missing] + [f"{what}: {why}" for what, why in refused.items()]
    if problems:
        return Finding(
            "redis-commands",
            "fail",
            "; ".join(problems),
            "allow these commands for taskq's user (ACL, rename-command) or use a server that has them",
        )
    if not listed:
        return Finding(
            "redis-commands", "ok", "ZRANGE BYSCORE and taskq's Lua scripts work (COMMAND INFO refused)"
        )
    return Finding("redis-commands", "ok", "LMOVE, BLMOVE, ZRANGE BYSCORE and taskq's Lua scripts work")


def check_eviction(policy: str | None, maxmemory: int | None, reason: str | None = None) -> Finding:
    """`policy` None: it could not be read (`reason` says why)."""
    if policy is None:
        return Finding(
            "maxmemory-policy",
            "warn",
            f"could not be checked ({reason or 'not reported'})",
            "make sure the server's maxmemory-policy is noeviction (managed Redis: the provider's settings)",
        )
    if policy == "noeviction":
        return Finding("maxmemory-policy", "ok", "noeviction: a full Redis refuses writes, it drops nothing")
    fix = "CONFIG SET maxmemory-policy noeviction (and put it in redis.conf), or give taskq its own Redis"
    if not maxmemory:
        return Finding(
            "maxmemory-policy",
            "warn",
            f"{policy}: nothing is evicted while maxmemory is 0, but with a limit tasks would be dropped",
            fix,
        )
    return Finding(
        "maxmemory-policy",
        "fail",
        f"{policy} with maxmemory {maxmemory / 2**20:.0f} MB: when memory is full Redis deletes keys "
        "(lost tasks)",
        fix,
    )


def check_persistence(save: str | None, aof: bool | None, reason: str | None = None) -> Finding:
    """`save`: CONFIG GET save ('' = no RDB save points, None = unknown); `aof`: INFO aof_enabled."""
    if aof:
        return Finding("persistence", "ok", "AOF is on")
    if save:
        return Finding("persistence", "ok", f"RDB snapshots (save {save}); AOF is off")
    fix = "turn on AOF (appendonly yes) or RDB snapshots (save 60 1000) in redis.conf or CONFIG SET"
    if save is None or aof is None:
        aof_state = "AOF is off" if aof is False else "the AOF state could not be read"
        save_state = "no RDB save points" if save == "" else "the RDB save points could not be read"
        return Finding(
            "persistence",
            "warn",
            f"{aof_state} and {save_state} ({reason or 'not reported'})",
            "make sure the server persists data with AOF or RDB snapshots (managed Redis: provider settings)",
        )
    return Finding(
        "persistence", "warn", "no RDB save points and AOF is off: a Redis restart loses every task", fix
    )


def check_latency(samples_ms: Sequence[float]) -> Finding:
    p50, worst = statistics.median(samples_ms), max(samples_ms)
    message = f"PING x{len(samples_ms)}: p50 {p50:.2f} ms, max {worst:.2f} ms"
    if p50 > LATENCY_WARN_MS:
        return Finding(
            "latency",
            "warn",
            f"{message} (above {LATENCY_WARN_MS:g} ms: every fetch, ack and renewal waits that long)",
            "run workers and producers close to Redis (same zone and network)",
        )
    return Finding("latency", "ok", message)


def check_clock(offset_ms: float) -> Finding:
    """`offset_ms`: Redis's clock minus this host's."""
    side = "behind" if offset_ms > 0 else "ahead of"
    size = f"{abs(offset_ms):.0f} ms" if abs(offset_ms) < 1000 else f"{abs(offset_ms) / 1000:.1f} s"
    message = f"this host's clock is {size} {side} Redis's"
    if abs(offset_ms) > CLOCK_WARN_MS:
        return Finding(
            "clock",
            "warn",
            message + " (taskq times leases and delays on Redis's clock: only --at from this host is off)",
            "sync this host's clock with NTP (chrony or systemd-timesyncd)",
        )
    return Finding("clock", "ok", message)


# -- the deployment -------------------------------------------------------------------------


def check_topology(topology: Topology) -> Finding:
    """What the URL reaches: one server, a Sentinel-managed primary or a Redis Cluster."""
    if topology.kind == "cluster":
        replicas = ", ".join(str(n) for n in topology.replicas)
        count = len(topology.primaries)
        message = (
            f"Redis Cluster: {count} primar{'y' if count == 1 else 'ies'} "
            f"({', '.join(topology.primaries)}) with {replicas} replica(s); "
            f"{topology.slots_covered} of 16384 slots served"
        )
        fix = "check CLUSTER INFO and CLUSTER NODES; every slot must be served (redis-cli --cluster fix)"
    elif topology.kind == "sentinel":
        message = (
            f"Sentinel service {topology.service}: primary {topology.primaries[0]} with "
            f"{topology.replicas[0]} replica(s); {topology.sentinels} of {topology.sentinels_configured} "
            "sentinels answer"
        )
        fix = "check the sentinels' logs and SENTINEL MASTER <service>"
    else:
        message = f"one server at {topology.primaries[0]} with {topology.replicas[0]} replica(s)"
        fix = "point TASKQ_REDIS_URL at the primary"
    if topology.problems:
        return Finding("topology", "fail", f"{message}: {'; '.join(topology.problems)}", fix)
    if topology.kind == "sentinel" and topology.replicas[0] == 0:
        return Finding(
            "topology",
            "warn",
            f"{message}: no replica, so nothing to fail over to and durable enqueues fail",
            "add a replica (replicaof <primary host> <port>) and let the sentinels discover it",
        )
    if topology.kind == "sentinel" and topology.sentinels < topology.sentinels_configured:
        return Finding("topology", "warn", message, "start the sentinels that do not answer, or fix the URL")
    return Finding("topology", "ok", message)


def check_slots(queue_slots: Mapping[str, set[int]], owners: Mapping[str, str] | None) -> Finding:
    """`queue_slots`: the hash slots of each queue's keys (one each: every script touches one slot);
    `owners`: on a cluster, the primary serving each queue's slot."""
    split = sorted(q for q, slots in queue_slots.items() if len(slots) != 1)
    if split:
        return Finding(
            "slots",
            "fail",
            f"{len(split)} queue{_s(len(split))} whose keys span several hash slots (their scripts fail "
            f"with CROSSSLOT on a cluster): {', '.join(split[:SHOWN])}",
            "every key of a queue must carry the hash tag {<queue>} (protocol/keys.py)",
        )
    count = len(queue_slots)
    if not count:
        return Finding("slots", "ok", "no queues yet")
    message = f"{count} queue{_s(count)}, each with all its keys in one hash slot"
    if owners is None:
        return Finding("slots", "ok", message + " (ready for Redis Cluster)")
    by_node: dict[str, list[str]] = {}
    for queue, node in sorted(owners.items()):
        by_node.setdefault(node, []).append(queue)
    where = "; ".join(
        f"{node}: {', '.join(qs[:SHOWN])}{f' and {len(qs) - SHOWN} more' if len(qs) > SHOWN else ''}"
        for node, qs in sorted(by_node.items())
    )
    return Finding("slots", "ok", f"{message}; {where}")


def merge_servers(check: str, results: Sequence[tuple[str, Finding]]) -> Finding:
    """One finding for a check run on each primary of a cluster: the worst status, naming the
    primaries with that result (all of them when they agree)."""
    if len(results) == 1:
        return results[0][1]
    rank = {"ok": 0, "warn": 1, "fail": 2}
    worst = max((f.status for _, f in results), key=rank.__getitem__)
    if len({f.message for _, f in results}) == 1:
        first = results[0][1]
        return Finding(check, worst, f"all {len(results)} primaries: {first.message}", first.fix)
    chosen = [(name, f) for name, f in results if f.status == worst]
    message = "; ".join(f"{name}: {f.message}" for name, f in chosen)
    return Finding(check, worst, message, next((f.fix for _, f in chosen if f.fix), None))


# -- the namespace ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """One member of `<ns>:workers`: its heartbeat score and its description (None: expired)."""

    id: str
    heartbeat_ms: int
    info: dict[str, Any] | None

    def alive(self, now_ms: int) -> bool:
        return self.info is not None and now_ms - self.heartbeat_ms <= STALE_HEARTBEAT_MS


def check_workers(registrations: Sequence[Registration], now_ms: int) -> Finding:
    stale = [r for r in registrations if not r.alive(now_ms)]
    live = len(registrations) - len(stale)
    if not stale:
        return Finding("workers", "ok", f"{live} live worker{_s(live)}")
    described = []
    for r in stale[:SHOWN]:
        if r.info is None:
            described.append(f"{r.id} (registration expired)")
        else:
            where = f"{r.info.get('host', '?')} pid {r.info.get('pid', '?')}"
            described.append(f"{r.id} ({where}, last heartbeat {(now_ms - r.heartbeat_ms) / 1000:.0f} s ago)")
    more = f" and {len(stale) - SHOWN} more" if len(stale) > SHOWN else ""
    return Finding(
        "workers",
        "warn",
        f"{len(stale)} worker{_s(len(stale))} stopped heartbeating ({live} live): "
        f"{', '.join(described)}{more}",
        "if they should run, restart them and find why they stopped (OOM killer, kill -9, network); "
        "their tasks come back through their leases",
    )


@dataclass(frozen=True)
class ExpiredLeases:
    """Active tasks of one queue whose lease ended more than LEASE_GRACE_MS ago."""

    count: int
    oldest_deadline_ms: int


def check_leases(
    expired: Mapping[str, ExpiredLeases], serving: Mapping[str, int], now_ms: int
) -> list[Finding]:
    """`serving`: live workers per queue. A lease expired for longer than the grace means nobody ran
    recovery for that queue (workers and schedulers do it every second)."""
    findings = []
    for queue, leases in sorted(expired.items()):
        if leases.count == 0:
            continue
        age = (now_ms - leases.oldest_deadline_ms) / 1000
        tasks = f"queue {queue}: {leases.count} active task{_s(leases.count)} whose lease expired"
        if serving.get(queue):
            message = f"{tasks} up to {age:.0f} s ago, although {serving[queue]} live worker(s) serve it"
            fix = "check those workers' logs (can they reach Redis?), or run `taskq scheduler`"
        else:
            message = (
                f"{tasks} up to {age:.0f} s ago and nobody recovers them (no live worker serves {queue})"
            )
            fix = f"run `taskq scheduler` or a worker for queue {queue} (taskq worker --queues {queue})"
        findings.append(Finding("leases", "fail", message, fix))
    if not findings:
        findings.append(
            Finding("leases", "ok", f"no lease expired more than {LEASE_GRACE_MS // 1000} s ago unrecovered")
        )
    return findings


class KeyLayout:
    """Recognises the keys keys.py produces for one namespace, derived from keys.py itself: every
    per-queue part in QUEUE_KEY_ORDER, every NamespaceKeys property (a fixed key) and every
    NamespaceKeys method taking one name (a family of keys, like `worker(id)`)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        ns = NamespaceKeys(namespace)
        self.fixed: set[str] = set()
        self.families: list[tuple[str, str]] = []
        for name, attr in vars(NamespaceKeys).items():
            if name.startswith("_"):
                continue
            if isinstance(attr, property):
                self.fixed.add(str(getattr(ns, name)))
            elif inspect.isfunction(attr) and len(inspect.signature(attr).parameters) == 2:
                self.families.append(_split(str(getattr(ns, name)(_MARK))))
        self.queue_parts = [_split(QueueKeys(namespace, _MARK).key(part)) for part in QUEUE_KEY_ORDER]

    def queue_of(self, key: str) -> str | None:
        """The queue a per-queue key belongs to, or None."""
        for prefix, suffix in self.queue_parts:
            name = _between(key, prefix, suffix)
            if name is not None and _valid_name(name):
                return name
        return None

    def is_namespace_key(self, key: str) -> bool:
        return key in self.fixed or any(_between(key, p, s) is not None for p, s in self.families)


@dataclass(frozen=True)
class KeyCensus:
    total: int
    unknown: list[str]  # a sorted sample of at most UNKNOWN_KEPT
    unknown_count: int
    queues: set[str]  # queues that have keys


UNKNOWN_KEPT = 100


def take_census(layout: KeyLayout, keys: Iterable[str]) -> KeyCensus:
    total, unknown_count = 0, 0
    unknown: list[str] = []
    queues: set[str] = set()
    for key in keys:
        total += 1
        queue = layout.queue_of(key)
        if queue is not None:
            queues.add(queue)
        elif not layout.is_namespace_key(key):
            unknown_count += 1
            if len(unknown) < UNKNOWN_KEPT:
                unknown.append(key)
    return KeyCensus(total, sorted(unknown), unknown_count, queues)


def check_keys(namespace: str, census: KeyCensus) -> Finding:
    if not census.unknown:
        return Finding("keys", "ok", f"all {census.total} keys of namespace {namespace} are taskq's")
    shown = ", ".join(census.unknown[:SHOWN])
    count = census.unknown_count
    more = f" and {count - SHOWN} more" if count > SHOWN else ""
    return Finding(
        "keys",
        "fail",
        f"{count} key{_s(count)} in namespace {namespace} that taskq does not use: {shown}{more}",
        f"another program writes under '{namespace}:': give one of them its own prefix (--namespace), "
        "or delete these keys",
    )


def check_registry(registry_key: str, census: KeyCensus, known: Sequence[str]) -> Finding:
    missing = sorted(census.queues - set(known))
    if not missing:
        return Finding("queues", "ok", f"{len(known)} queue{_s(len(known))} registered")
    more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    return Finding(
        "queues",
        "warn",
        f"{len(missing)} queue{_s(len(missing))} with keys but missing from {registry_key} "
        f"(`taskq scheduler` and `taskq stats` do not see them): {', '.join(missing[:SHOWN])}{more}",
        f"redis-cli SADD {registry_key} {' '.join(missing)}",
    )


# -- gathering --------------------------------------------------------------------------------


def run_checks(broker: Broker, *, pings: int = PINGS) -> list[Finding]:
    """Every check, in order. Connection errors propagate (the CLI exits 1)."""
    client: Any = broker.client
    servers = server_clients(client)

    def each(check: str, probe: Callable[[Any], Finding]) -> Finding:
        return merge_servers(check, [(name, probe(server)) for name, server in servers])

    findings = [check_topology(describe(client))]
    findings.append(each("redis-version", lambda server: check_version(server.info("server"))))
    findings.append(each("redis-commands", lambda server: _commands(broker, server)))
    findings.append(each("maxmemory-policy", _eviction))
    findings.append(each("persistence", _persistence))
    findings.append(each("latency", lambda server: check_latency(_ping_ms(server, pings))))
    findings.append(check_clock(_clock_offset_ms(client)))
    now_ms = broker.redis_time_ms()
    registrations = _registrations(broker)
    findings.append(check_workers(registrations, now_ms))
    layout = KeyLayout(broker.settings.namespace)
    census = take_census(layout, (str(k) for k in client.scan_iter(match=broker.ns.pattern(), count=1000)))
    known = broker.known_queues()
    serving: dict[str, int] = {}
    for r in registrations:
        if r.alive(now_ms) and r.info is not None:
            for queue in r.info.get("queues") or []:
                serving[str(queue)] = serving.get(str(queue), 0) + 1
    queues = sorted(set(known) | census.queues)
    findings += check_leases(_expired_leases(broker, queues, now_ms), serving, now_ms)
    findings.append(check_keys(broker.settings.namespace, census))
    findings.append(check_registry(broker.ns.queues, census, known))
    findings.append(check_slots(*_slots(broker, queues)))
    return findings


def _slots(broker: Broker, queues: Sequence[str]) -> tuple[dict[str, set[int]], dict[str, str] | None]:
    """The hash slot of every key of every queue (CRC16 as Redis computes it), and on a cluster the
    primary that serves each queue's slot, from the client's slot map."""
    slots = {q: {key_slot(k.encode()) for k in broker.keys(q).script_keys()} for q in queues}
    if not broker.cluster:
        return slots, None
    cluster: Any = broker.client
    return slots, {q: str(cluster.get_node_from_key(broker.keys(q).tasks).name) for q in queues}


def _commands(broker: Broker, server: Any) -> Finding:
    """`server`: one primary (the commands and the script cache are per server)."""
    client: Any = broker.client
    refused: dict[str, str] = {}
    missing: list[str] = []
    listed = True
    try:
        # one word "COMMAND INFO" keeps redis-py from parsing the reply (it cannot parse unknown ones)
        replies = server.execute_command("COMMAND INFO", *REQUIRED_COMMANDS)
        missing = [c for c, reply in zip(REQUIRED_COMMANDS, replies, strict=False) if reply is None]
    except ResponseError:
        listed = False  # not a problem in itself: the probes below still run
    try:
        client.zrange(broker.ns.workers, "-inf", "+inf", byscore=True, offset=0, num=1)
    except ResponseError as exc:
        refused["ZRANGE BYSCORE"] = _first_line(exc)
    for script in load_scripts().values():
        try:
            server.script_load(script.source)
        except ResponseError as exc:
            refused[f"Lua script {script.name}"] = _first_line(exc)
            break
    return check_commands(missing, refused, listed)


def _eviction(client: Any) -> Finding:
    """CONFIG GET first; managed Redis often refuses CONFIG, then INFO memory (which most allow)."""
    reason = None
    try:
        config = client.config_get("maxmemory*")
        if "maxmemory-policy" in config:
            return check_eviction(str(config["maxmemory-policy"]), _int(config.get("maxmemory")))
    except ResponseError as exc:
        reason = f"CONFIG GET refused: {_first_line(exc)}"
    memory = client.info("memory")
    if "maxmemory_policy" in memory:
        return check_eviction(str(memory["maxmemory_policy"]), _int(memory.get("maxmemory")))
    return check_eviction(None, None, reason)


def _persistence(client: Any) -> Finding:
    info = client.info("persistence")
    aof = None if "aof_enabled" not in info else bool(int(info["aof_enabled"]))
    try:
        config = client.config_get("save")
        save = str(config["save"]).strip() if "save" in config else None
        reason = None if save is not None else "CONFIG GET save returned nothing"
    except ResponseError as exc:
        save, reason = None, f"CONFIG GET refused: {_first_line(exc)}"
    return check_persistence(save, aof, reason)


def _ping_ms(client: Any, pings: int) -> list[float]:
    samples = []
    for _ in range(max(pings, 1)):
        start = time.perf_counter()
        client.ping()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _clock_offset_ms(client: Any) -> float:
    before = time.time()
    seconds, micros = client.time()
    after = time.time()
    return (int(seconds) * 1000 + int(micros) / 1000) - (before + after) / 2 * 1000


def _registrations(broker: Broker) -> list[Registration]:
    """`<ns>:workers` with each worker's description, read without pruning (doctor only reads).
    The heartbeat is the worker host's clock, compared with Redis's."""
    client: Any = broker.client
    entries = [(str(i), int(score)) for i, score in client.zrange(broker.ns.workers, 0, -1, withscores=True)]
    if not entries:
        return []
    pipe = client.pipeline(transaction=False)  # one GET per worker: MGET cannot span cluster slots
    for worker_id, _ in entries:
        pipe.get(broker.ns.worker(worker_id))
    infos = pipe.execute()
    found = []
    for (worker_id, heartbeat), raw in zip(entries, infos, strict=True):
        info: dict[str, Any] | None = None
        if raw is not None:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            info = parsed if isinstance(parsed, dict) else {}
        found.append(Registration(worker_id, heartbeat, info))
    return found


def _expired_leases(broker: Broker, queues: Sequence[str], now_ms: int) -> dict[str, ExpiredLeases]:
    if not queues:
        return {}
    client: Any = broker.client
    pipe = client.pipeline(transaction=False)
    cutoff = now_ms - LEASE_GRACE_MS
    for queue in queues:
        active = broker.keys(queue).active
        pipe.zcount(active, "-inf", cutoff)
        pipe.zrange(active, 0, 0, withscores=True)
    replies = pipe.execute()
    expired = {}
    for i, queue in enumerate(queues):
        count, oldest = int(replies[2 * i]), replies[2 * i + 1]
        if count and oldest:
            expired[queue] = ExpiredLeases(count, int(oldest[0][1]))
    return expired


def _split(template: str) -> tuple[str, str]:
    prefix, _, suffix = template.partition(_MARK)
    return prefix, suffix


def _between(key: str, prefix: str, suffix: str) -> str | None:
    if len(key) > len(prefix) + len(suffix) and key.startswith(prefix) and key.endswith(suffix):
        return key[len(prefix) : len(key) - len(suffix)]
    return None


def _valid_name(name: str) -> bool:
    try:
        check_name("queue", name)
    except UsageError:
        return False
    return True


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _s(count: int) -> str:
    return "" if count == 1 else "s"
