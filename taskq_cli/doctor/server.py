"""The Redis server checks (version, commands, eviction, persistence, latency, clock) and the
deployment's (topology, hash slots): pure functions of the facts the protocol's probes return."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from taskq_cli.doctor.findings import SHOWN, Finding, plural
from taskq_cli.protocol.probes import ServerFacts
from taskq_cli.protocol.topology import Topology

MIN_VERSION = (6, 2, 0)
REQUIRED_COMMANDS = ("LMOVE", "BLMOVE", "BLPOP", "EVALSHA", "SCRIPT", "TIME")
PINGS = 20
LATENCY_WARN_MS = 5.0
CLOCK_WARN_MS = 1000.0


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
            f"{len(split)} queue{plural(len(split))} whose keys span several hash slots (their scripts fail "
            f"with CROSSSLOT on a cluster): {', '.join(split[:SHOWN])}",
            "every key of a queue must carry the hash tag {<queue>} (protocol/keys.py)",
        )
    count = len(queue_slots)
    if not count:
        return Finding("slots", "ok", "no queues yet")
    message = f"{count} queue{plural(count)}, each with all its keys in one hash slot"
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
