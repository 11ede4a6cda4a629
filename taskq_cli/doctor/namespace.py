"""The namespace checks: workers heartbeating, leases recovered, dependents not stuck waiting, keys
that are taskq's, queues registered. Pure functions of the facts the protocol's probes return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from taskq_cli.doctor.findings import SHOWN, Finding, plural
from taskq_cli.protocol.probes import DependencyFacts, ExpiredLeases, KeyCensus, Registration

STALE_HEARTBEAT_MS = 60_000  # a worker beats every lease/3 (10 s by default)
LEASE_GRACE_MS = 10_000  # recovery runs every second wherever a worker or scheduler serves the queue


def alive(registration: Registration, now_ms: int) -> bool:
    """Registered and heartbeating: its description is there and its last beat is recent."""
    return registration.info is not None and now_ms - registration.heartbeat_ms <= STALE_HEARTBEAT_MS


def check_workers(registrations: Sequence[Registration], now_ms: int) -> Finding:
    stale = [r for r in registrations if not alive(r, now_ms)]
    live = len(registrations) - len(stale)
    if not stale:
        return Finding("workers", "ok", f"{live} live worker{plural(live)}")
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
        f"{len(stale)} worker{plural(len(stale))} stopped heartbeating ({live} live): "
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
        tasks = f"queue {queue}: {leases.count} active task{plural(leases.count)} whose lease expired"
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
        f"{count} key{plural(count)} in namespace {namespace} that taskq does not use: {shown}{more}",
        f"another program writes under '{namespace}:': give one of them its own prefix (--namespace), "
        "or delete these keys",
    )


def check_registry(registry_key: str, census: KeyCensus, known: Sequence[str]) -> Finding:
    missing = sorted(census.queues - set(known))
    if not missing:
        return Finding("queues", "ok", f"{len(known)} queue{plural(len(known))} registered")
    more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    return Finding(
        "queues",
        "warn",
        f"{len(missing)} queue{plural(len(missing))} with keys but missing from {registry_key} "
        f"(`taskq scheduler` and `taskq stats` do not see them): {', '.join(missing[:SHOWN])}{more}",
        f"redis-cli SADD {registry_key} {' '.join(missing)}",
    )


def serving(registrations: Sequence[Registration], now_ms: int) -> dict[str, int]:
    """Live workers per queue they serve."""
    counts: dict[str, int] = {}
    for r in registrations:
        if alive(r, now_ms) and r.info is not None:
            for queue in r.info.get("queues") or []:
                counts[str(queue)] = counts.get(str(queue), 0) + 1
    return counts
