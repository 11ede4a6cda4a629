"""Every check, in order: the facts gathered through the protocol's probes, judged by the pure
checks of `server` and `namespace`."""

from __future__ import annotations

from taskq_cli.doctor.findings import Finding
from taskq_cli.doctor.namespace import (
    HANDOFF_GRACE_MS,
    LEASE_GRACE_MS,
    check_dependencies,
    check_keys,
    check_leases,
    check_registry,
    check_workers,
    serving,
)
from taskq_cli.doctor.server import (
    PINGS,
    REQUIRED_COMMANDS,
    check_clock,
    check_slots,
    check_topology,
    server_findings,
)
from taskq_cli.protocol import Broker, probes


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
