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

The package: `findings` (Finding, its statuses), `server` (the server and deployment checks),
`namespace` (workers, leases, dependencies, keys, queues) and `checks` (run_checks: gather, then judge).
"""

from taskq_cli.doctor.checks import run_checks
from taskq_cli.doctor.findings import SHOWN, Finding, Status, failed, plural
from taskq_cli.doctor.namespace import (
    HANDOFF_GRACE_MS,
    LEASE_GRACE_MS,
    STALE_HEARTBEAT_MS,
    alive,
    check_dependencies,
    check_keys,
    check_leases,
    check_registry,
    check_workers,
    serving,
)
from taskq_cli.doctor.server import (
    CLOCK_WARN_MS,
    LATENCY_WARN_MS,
    MIN_VERSION,
    PINGS,
    REQUIRED_COMMANDS,
    check_clock,
    check_commands,
    check_eviction,
    check_latency,
    check_persistence,
    check_slots,
    check_topology,
    check_version,
    merge_servers,
    parse_version,
    server_findings,
)
from taskq_cli.protocol.probes import (
    DependencyFacts,
    ExpiredLeases,
    KeyCensus,
    KeyLayout,
    Registration,
    take_census,
)

__all__ = [
    "CLOCK_WARN_MS",
    "HANDOFF_GRACE_MS",
    "LATENCY_WARN_MS",
    "LEASE_GRACE_MS",
    "MIN_VERSION",
    "PINGS",
    "REQUIRED_COMMANDS",
    "SHOWN",
    "STALE_HEARTBEAT_MS",
    "DependencyFacts",
    "ExpiredLeases",
    "Finding",
    "KeyCensus",
    "KeyLayout",
    "Registration",
    "Status",
    "alive",
    "check_clock",
    "check_commands",
    "check_dependencies",
    "check_eviction",
    "check_keys",
    "check_latency",
    "check_leases",
    "check_persistence",
    "check_registry",
    "check_slots",
    "check_topology",
    "check_version",
    "check_workers",
    "failed",
    "merge_servers",
    "parse_version",
    "plural",
    "run_checks",
    "server_findings",
    "serving",
    "take_census",
]
