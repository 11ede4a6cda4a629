"""Facts about the Redis deployment and one namespace, for `taskq doctor` to judge.

Read-only, apart from loading taskq's own Lua scripts into the script cache (as every worker does).
Each function returns data (dataclasses, numbers, strings): what a server answered, or that it
refused to answer (a refusal is a fact too, e.g. CONFIG renamed away on managed Redis). Redis
unreachable is not a fact: it raises BrokerUnavailable, like every Broker call.

On a Redis Cluster the server facts are gathered on every primary, and SCAN covers every primary.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.crc import key_slot
from redis.exceptions import RedisError, ResponseError

from taskq_cli.protocol.failures import translated
from taskq_cli.protocol.keys import QUEUE_KEY_ORDER, NamespaceKeys, QueueKeys, split_ref
from taskq_cli.protocol.reads import Reads
from taskq_cli.protocol.scripts import load_scripts
from taskq_cli.protocol.topology import Topology, describe, server_clients

# What a queue or namespace name may be (config.check_name refuses any other): a key part.
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_MARK = "\x00"  # cannot occur in a namespace or queue name: marks the variable part of a key
UNKNOWN_KEPT = 100


# -- each server --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commands:
    """`missing`: commands the server does not know; `refused`: probes that failed, with the error;
    `listed`: whether COMMAND INFO answered (some managed servers refuse it)."""

    missing: list[str]
    refused: dict[str, str]
    listed: bool


@dataclass(frozen=True)
class Eviction:
    """`policy` None: it could not be read (`reason` says why)."""

    policy: str | None
    maxmemory: int | None
    reason: str | None = None


@dataclass(frozen=True)
class Persistence:
    """`save`: CONFIG GET save ('' = no RDB save points, None = unknown); `aof`: INFO aof_enabled."""

    save: str | None
    aof: bool | None
    reason: str | None = None


@dataclass(frozen=True)
class ServerFacts:
    """One primary: `name` is its host:port on a cluster, '' for the one server otherwise."""

    name: str
    info: dict[str, Any]  # INFO server
    commands: Commands
    eviction: Eviction
    persistence: Persistence
    pings_ms: list[float]


@translated  # redis-py's errors leave as taskq's (BrokerUnavailable, BrokerError)
def topology(broker: Reads) -> Topology:
    """What the URL reaches: one server, a Sentinel-managed primary or a Redis Cluster."""
    return describe(broker.client)


@translated
def servers(broker: Reads, commands: Sequence[str], pings: int) -> list[ServerFacts]:
    """The facts of every primary. `commands`: those to look up in COMMAND INFO; `pings`: how many
    PINGs to time."""
    return [
        ServerFacts(
            name,
            dict(server.info("server")),
            _commands(broker, server, commands),
            _eviction(server),
            _persistence(server),
            _ping_ms(server, pings),
        )
        for name, server in server_clients(broker.client)
    ]


def _commands(broker: Reads, server: Any, names: Sequence[str]) -> Commands:
    """`server`: one primary (the commands and the script cache are per server)."""
    client: Any = broker.client
    refused: dict[str, str] = {}
    missing: list[str] = []
    listed = True
    try:
        # one word "COMMAND INFO" keeps redis-py from parsing the reply (it cannot parse unknown ones)
        replies = server.execute_command("COMMAND INFO", *names)
        missing = [c for c, reply in zip(names, replies, strict=False) if reply is None]
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
    return Commands(missing, refused, listed)


def _eviction(client: Any) -> Eviction:
    """CONFIG GET first; managed Redis often refuses CONFIG, then INFO memory (which most allow)."""
    reason = None
    try:
        config = client.config_get("maxmemory*")
        if "maxmemory-policy" in config:
            return Eviction(str(config["maxmemory-policy"]), _int(config.get("maxmemory")))
    except ResponseError as exc:
        reason = f"CONFIG GET refused: {_first_line(exc)}"
    memory = client.info("memory")
    if "maxmemory_policy" in memory:
        return Eviction(str(memory["maxmemory_policy"]), _int(memory.get("maxmemory")))
    return Eviction(None, None, reason)


def _persistence(client: Any) -> Persistence:
    info = client.info("persistence")
    aof = None if "aof_enabled" not in info else bool(int(info["aof_enabled"]))
    try:
        config = client.config_get("save")
        save = str(config["save"]).strip() if "save" in config else None
        reason = None if save is not None else "CONFIG GET save returned nothing"
    except ResponseError as exc:
        save, reason = None, f"CONFIG GET refused: {_first_line(exc)}"
    return Persistence(save, aof, reason)


def _ping_ms(client: Any, pings: int) -> list[float]:
    samples = []
    for _ in range(max(pings, 1)):
        start = time.perf_counter()
        client.ping()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


@translated
def clock_offset_ms(broker: Reads) -> float:
    """Redis's clock minus this host's, in ms (this host's read halfway through the round trip)."""
    client: Any = broker.client
    before = time.time()
    seconds, micros = client.time()
    after = time.time()
    return (int(seconds) * 1000 + int(micros) / 1000) - (before + after) / 2 * 1000


def server_pid(host: str, port: int, timeout: float = 0.5) -> int | None:
    """The process id of the Redis server answering on host:port, None while none answers (`taskq
    dev` waits for its own redis-server this way: another server on the port answers another pid)."""
    client = redis.Redis(host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return int(client.info("server")["process_id"])
    except (RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        client.close()


# -- the namespace ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """One member of `<ns>:workers`: its heartbeat score (the worker host's clock, ms) and its
    description (None: expired)."""

    id: str
    heartbeat_ms: int
    info: dict[str, Any] | None


@translated
def registrations(broker: Reads) -> list[Registration]:
    """`<ns>:workers` with each worker's description, read without pruning (unlike live_workers)."""
    client: Any = broker.client
    entries = [(str(i), int(score)) for i, score in client.zrange(broker.ns.workers, 0, -1, withscores=True)]
    if not entries:
        return []
    pipe = client.pipeline(transaction=False)  # one GET per worker: MGET cannot span cluster slots
    for worker_id, _ in entries:
        pipe.get(broker.ns.worker(worker_id))
    found = []
    for (worker_id, heartbeat), raw in zip(entries, pipe.execute(), strict=True):
        info: dict[str, Any] | None = None
        if raw is not None:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            info = parsed if isinstance(parsed, dict) else {}
        found.append(Registration(worker_id, heartbeat, info))
    return found


@dataclass(frozen=True)
class ExpiredLeases:
    """Active tasks of one queue whose lease ended before a given time."""

    count: int
    oldest_deadline_ms: int


@translated
def expired_leases(broker: Reads, queues: Sequence[str], before_ms: int) -> dict[str, ExpiredLeases]:
    """Per queue with any, the attempts whose lease ended before `before_ms` (Redis's clock)."""
    if not queues:
        return {}
    client: Any = broker.client
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        active = broker.keys(queue).active
        pipe.zcount(active, "-inf", before_ms)
        pipe.zrange(active, 0, 0, withscores=True)
    replies = pipe.execute()
    expired = {}
    for i, queue in enumerate(queues):
        count, oldest = int(replies[2 * i]), replies[2 * i + 1]
        if count and oldest:
            expired[queue] = ExpiredLeases(count, int(oldest[0][1]))
    return expired


@dataclass(frozen=True)
class DependencyFacts:
    """One queue's dependency bookkeeping, for doctor: outbox entries (and the oldest written, ms),
    waiting tasks whose links were not confirmed before `before_ms`, and waiting tasks (of those
    sampled) whose remaining dependencies name a task that no longer exists: (id, dependency id)."""

    outbox: int
    oldest_outbox_ms: int | None
    unlinked: int
    orphans: list[tuple[str, str]]


ORPHAN_SAMPLE = 200  # waiting tasks per queue whose dependencies doctor looks up


@translated
def dependency_facts(broker: Reads, queues: Sequence[str], before_ms: int) -> dict[str, DependencyFacts]:
    """Per queue with any dependency bookkeeping, what doctor judges (three round trips)."""
    if not queues:
        return {}
    client: Any = broker.client
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        k = broker.keys(queue)
        pipe.hlen(k.outbox)
        pipe.hscan(k.outbox, 0, count=100)
        pipe.zcount(k.unlinked, "-inf", before_ms)
        pipe.zrange(k.blocked, 0, ORPHAN_SAMPLE - 1)
    replies = pipe.execute()
    orphans = _orphans(broker, {q: [str(i) for i in replies[4 * n + 3]] for n, q in enumerate(queues)})
    facts: dict[str, DependencyFacts] = {}
    for n, queue in enumerate(queues):
        outbox, (_, sample), unlinked = int(replies[4 * n]), replies[4 * n + 1], int(replies[4 * n + 2])
        times = [_int(str(v).rpartition("|")[2]) for v in sample.values()]
        oldest = min((t for t in times if t is not None), default=None)
        if outbox or unlinked or orphans.get(queue):
            facts[queue] = DependencyFacts(outbox, oldest, unlinked, orphans.get(queue, []))
    return facts


def _orphans(broker: Reads, waiting: dict[str, list[str]]) -> dict[str, list[tuple[str, str]]]:
    """Waiting tasks whose remaining dependencies include a task that is gone (two round trips)."""
    client: Any = broker.client
    pipe = client.pipeline(transaction=False)
    order = [(q, i) for q, ids in waiting.items() for i in ids]
    for queue, task_id in order:
        pipe.smembers(broker.keys(queue).deps(task_id))
    pairs = [
        (queue, task_id, split_ref(str(ref)))
        for (queue, task_id), refs in zip(order, pipe.execute(), strict=True)
        for ref in refs
    ]
    if not pairs:
        return {}
    pipe = client.pipeline(transaction=False)
    for _, _, (dep_queue, dep_id) in pairs:
        pipe.hexists(broker.keys(dep_queue).tasks, dep_id)
        pipe.hexists(broker.keys(dep_queue).outbox, dep_id)  # gone, its dependents not told yet
    replies = pipe.execute()
    found: dict[str, list[tuple[str, str]]] = {}
    for n, (queue, task_id, (_, dep_id)) in enumerate(pairs):
        if not replies[2 * n] and not replies[2 * n + 1]:
            found.setdefault(queue, []).append((task_id, dep_id))
    return found


@translated
def queue_slots(broker: Reads, queues: Sequence[str]) -> tuple[dict[str, set[int]], dict[str, str] | None]:
    """The hash slot of every key of every queue (CRC16 as Redis computes it), and on a cluster the
    primary that serves each queue's slot, from the client's slot map."""
    slots = {q: {key_slot(k.encode()) for k in broker.keys(q).script_keys()} for q in queues}
    if not broker.cluster:
        return slots, None
    cluster: Any = broker.client
    return slots, {q: str(cluster.get_node_from_key(broker.keys(q).tasks).name) for q in queues}


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
        # per-task keys of a queue (QueueKeys methods taking one name: waiting(id), outcome(id)):
        # the queue sits between the prefix and the part, the task id follows
        self.task_parts = [
            _split(str(getattr(QueueKeys(namespace, _MARK), name)("")))
            for name, attr in vars(QueueKeys).items()
            if not name.startswith("_")
            and name != "key"
            and inspect.isfunction(attr)
            and len(inspect.signature(attr).parameters) == 2
        ]

    def queue_of(self, key: str) -> str | None:
        """The queue a per-queue key belongs to, or None."""
        for prefix, suffix in self.queue_parts:
            name = _between(key, prefix, suffix)
            if name is not None and _NAME.fullmatch(name):
                return name
        for prefix, part in self.task_parts:
            name, found, task_id = key.removeprefix(prefix).partition(part)
            if key.startswith(prefix) and found and task_id and _NAME.fullmatch(name):
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


@translated
def key_census(broker: Reads) -> KeyCensus:
    """Every key of the namespace (SCAN, on every primary of a cluster), sorted into taskq's own
    (and the queues they belong to) and the others."""
    client: Any = broker.client
    keys = (str(k) for k in client.scan_iter(match=broker.ns.pattern(), count=1000))
    return take_census(KeyLayout(broker.settings.namespace), keys)


def _split(template: str) -> tuple[str, str]:
    prefix, _, suffix = template.partition(_MARK)
    return prefix, suffix


def _between(key: str, prefix: str, suffix: str) -> str | None:
    if len(key) > len(prefix) + len(suffix) and key.startswith(prefix) and key.endswith(suffix):
        return key[len(prefix) : len(key) - len(suffix)]
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
