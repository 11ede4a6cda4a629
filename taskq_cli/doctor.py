"""`taskq doctor`: what silently breaks queues in production, each finding with how to fix it.

Pure logic, no Typer or Rich, no Redis: `run_checks(broker)` gathers facts through the protocol's
probes (protocol/probes.py: read-only, apart from loading taskq's own Lua scripts into the script
cache, as every worker does) and the `check_*` functions turn facts into findings, so each can be
tested with made-up INFO/CONFIG values.

Severities: `fail` loses or stalls tasks now (Redis older than 6.2 or missing commands, an evicting
`maxmemory-policy` with a memory limit, leases expired long ago that nobody recovers, keys in the
namespace that are not taskq's, a cluster that does not serve every slot, a queue whose keys span
slots, waiting tasks stuck on their dependencies: outcomes nobody hands off, links never made, a
dependency that no longer exists); `warn` is a risk or could not be checked (persistence off,
round-trip latency, clock offset, workers that stopped heartbeating, queues missing from the
registry, an evicting policy without a memory limit, CONFIG refused, sentinels not answering).
Redis unreachable is not a finding: the probes' BrokerUnavailable reaches the CLI, which exits 1
with one line.

On a Redis Cluster the server checks (version, commands, eviction, persistence, latency) run on every
primary and are reported as one finding per check: the worst result, naming the primaries it comes
from; SCAN covers every primary.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from taskq_cli.protocol import Broker, probes
from taskq_cli.protocol.probes import (
    DependencyFacts,
    ExpiredLeases,
    KeyCensus,
    KeyLayout,
    Registration,
    ServerFacts,
    take_census,
)
from taskq_cli.protocol.topology import Topology

__all__ = ["DependencyFacts", "ExpiredLeases", "KeyCensus", "KeyLayout", "Registration", "take_census"]

Status = Literal["ok", "warn", "fail"]

MIN_VERSION = (6, 2, 0)
REQUIRED_COMMANDS = ("LMOVE", "BLMOVE", "BLPOP", "EVALSHA", "SCRIPT", "TIME")
PINGS = 20
LATENCY_WARN_MS = 5.0
CLOCK_WARN_MS = 1000.0
STALE_HEARTBEAT_MS = 60_000  # a worker beats every lease/3 (10 s by default)
LEASE_GRACE_MS = 10_000  # recovery runs every second wherever a worker or scheduler serves the queue
SHOWN = 5  # ids, keys or queues named in one message


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


def alive(registration: Registration, now_ms: int) -> bool:
    """Registered and heartbeating: its description is there and its last beat is recent."""
    return registration.info is not None and now_ms - registration.heartbeat_ms <= STALE_HEARTBEAT_MS


def check_workers(registrations: Sequence[Registration], now_ms: int) -> Finding:
    stale = [r for r in registrations if not alive(r, now_ms)]
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


HANDOFF_GRACE_MS = 10_000  # every maintenance pass (each second) drains outboxes and relinks


def check_dependencies(
    facts: Mapping[str, DependencyFacts], serving: Mapping[str, int], now_ms: int
) -> list[Finding]:
    """Dependents that may be stuck in `waiting`: outcomes nobody handed off (no maintenance runs for
    the queue), links nobody confirmed, or a dependency that no longer exists (and was never handed
    off: a record deleted by hand, or by another program)."""
    findings = []
    for queue, found in sorted(facts.items()):
        nobody = "" if serving.get(queue) else f" (no live worker serves {queue})"
        stale = found.oldest_outbox_ms is not None and now_ms - found.oldest_outbox_ms > HANDOFF_GRACE_MS
        if stale or found.unlinked:
            what = f"{found.outbox} finished task(s) whose dependents were not told" if stale else ""
            if found.unlinked:
                what += ("; " if what else "") + f"{found.unlinked} waiting task(s) never linked"
            findings.append(
                Finding(
                    "dependencies",
                    "fail",
                    f"queue {queue}: {what}{nobody}",
                    f"run `taskq scheduler` or a worker for queue {queue}: its maintenance hands them off",
                )
            )
        if found.orphans:
            shown = ", ".join(f"{t} (after {d})" for t, d in found.orphans[:SHOWN])
            more = f" and {len(found.orphans) - SHOWN} more" if len(found.orphans) > SHOWN else ""
            findings.append(
                Finding(
                    "dependencies",
                    "fail",
                    f"queue {queue}: {len(found.orphans)} waiting task(s) wait for a task that no longer "
                    f"exists: {shown}{more}",
                    f"cancel them (taskq task cancel ID --queue {queue}) and enqueue them again",
                )
            )
    if not findings:
        findings.append(Finding("dependencies", "ok", "no waiting task is stuck on its dependencies"))
    return findings


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
    """Every check, in order. BrokerUnavailable propagates (the CLI exits 1)."""
    findings = [check_topology(probes.topology(broker))]
    findings += server_findings(probes.servers(broker, REQUIRED_COMMANDS, pings))
    findings.append(check_clock(probes.clock_offset_ms(broker)))
    now_ms = broker.redis_time_ms()
    registrations = probes.registrations(broker)
    findings.append(check_workers(registrations, now_ms))
    census = probes.key_census(broker)
    known = broker.known_queues()
    queues = sorted(set(known) | census.queues)
    expired = probes.expired_leases(broker, queues, now_ms - LEASE_GRACE_MS)
    findings += check_leases(expired, serving(registrations, now_ms), now_ms)
    facts = probes.dependency_facts(broker, queues, now_ms - HANDOFF_GRACE_MS)
    findings += check_dependencies(facts, serving(registrations, now_ms), now_ms)
    findings.append(check_keys(broker.settings.namespace, census))
    findings.append(check_registry(broker.ns.queues, census, known))
    findings.append(check_slots(*probes.queue_slots(broker, queues)))
    return findings


def server_findings(servers: Sequence[ServerFacts]) -> list[Finding]:
    """The server checks, each one finding over every primary (see merge_servers). The facts' fields
    are named as the checks' parameters."""

    def each(check: str, judge: Callable[[ServerFacts], Finding]) -> Finding:
        return merge_servers(check, [(server.name, judge(server)) for server in servers])

    return [
        each("redis-version", lambda s: check_version(s.info)),
        each("redis-commands", lambda s: check_commands(**asdict(s.commands))),
        each("maxmemory-policy", lambda s: check_eviction(**asdict(s.eviction))),
        each("persistence", lambda s: check_persistence(**asdict(s.persistence))),
        each("latency", lambda s: check_latency(s.pings_ms)),
    ]


def serving(registrations: Sequence[Registration], now_ms: int) -> dict[str, int]:
    """Live workers per queue they serve."""
    counts: dict[str, int] = {}
    for r in registrations:
        if alive(r, now_ms) and r.info is not None:
            for queue in r.info.get("queues") or []:
                counts[str(queue)] = counts.get(str(queue), 0) + 1
    return counts


def _s(count: int) -> str:
    return "" if count == 1 else "s"
