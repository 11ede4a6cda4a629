"""The Redis protocol: the only code that sends commands to Redis.

One typed method per operation. Every state change is one Lua script over one queue's keys
(see keys.py for the layout and lua/ for the scripts); reads are pipelined.
"""

from __future__ import annotations

import json
import os
import random
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskq_cli.config import RetryDefaults, Settings
from taskq_cli.errors import AmbiguousId, TaskqError, UsageError
from taskq_cli.protocol.keys import NamespaceKeys, QueueKeys
from taskq_cli.protocol.record import TaskMeta
from taskq_cli.protocol.scripts import ScriptArg, execute_with_scripts, load_scripts
from taskq_cli.protocol.topology import Client, connect, is_cluster
from taskq_cli.protocol.waker import Waker

# Compact, as enqueue.lua joins the task record onto it; one encoder (json.dumps with options builds
# a new one per call).
_encode_meta = json.JSONEncoder(separators=(",", ":")).encode
PROMOTE_BATCH = 500
RECOVER_BATCH = 500
DURABLE_TIMEOUT = 5.0  # seconds a durable enqueue waits for a replica to acknowledge it

__all__ = [
    "Ack",
    "Broker",
    "EnqueueResult",
    "Failure",
    "Fetched",
    "Malformed",
    "NewTask",
    "NotReplicated",
    "QueueStats",
    "TaskRecord",
    "connect",
]


class NotReplicated(TaskqError):
    """A durable enqueue that no replica confirmed in time (CLI exit 1). The primary took the tasks,
    so they are most likely there and will run; only a failover before they replicate loses them."""

    def __init__(self, results: Sequence[EnqueueResult], timeout: float, moved: bool = False) -> None:
        self.results = list(results)
        ids = [r.id for r in self.results]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        why = (
            "a queue's slot moved to another node during the write, so the replicas could not be asked"
            if moved
            else f"no replica acknowledged it within {timeout:g}s"
        )
        super().__init__(
            f"durable enqueue not confirmed: {why}. The task(s) {shown} were written to the primary and "
            "are most likely there (they run as usual) but are lost if it fails before they replicate; "
            "check its replicas (INFO replication). Enqueueing again with the same --id/task_id is safe."
        )


@dataclass(frozen=True)
class NewTask:
    """A validated task ready to be written; `meta` holds name, queue and explicit options."""

    id: str
    queue: str
    meta: dict[str, Any]
    payload_json: str
    delay_ms: int | None = None
    at_ms: int | None = None
    custom_id: bool = False


@dataclass(frozen=True)
class EnqueueResult:
    id: str
    queue: str
    state: str
    duplicate: bool


@dataclass(frozen=True)
class Fetched:
    """One attempt handed to this worker: `token` fences every later report of it."""

    queue: str
    id: str
    meta: dict[str, Any]
    payload_json: str
    token: str
    record: TaskMeta = field(init=False, repr=False, compare=False)  # `meta`, typed, decoded once

    def __post_init__(self) -> None:
        object.__setattr__(self, "record", TaskMeta.decode(self.meta))


@dataclass(frozen=True)
class Ack:
    """Report: the attempt succeeded."""

    job: Fetched
    result_json: str | None
    result_ttl: float


@dataclass(frozen=True)
class Failure:
    """Report: the attempt failed; `final` buries it, otherwise retry after `delay` if attempts remain."""

    job: Fetched
    error: dict[str, str]
    final: bool
    delay: float
    max_retries: int


@dataclass(frozen=True)
class Malformed:
    queue: str
    dead_id: str


@dataclass(frozen=True)
class TaskRecord:
    meta: dict[str, Any]
    payload_json: str | None
    result_json: str | None
    truncated: frozenset[str] = frozenset()  # "payload", "result": too long to read (left None)


@dataclass(frozen=True)
class QueueStats:
    queue: str
    pending: int
    scheduled: int
    active: int
    dead: int
    processed: int
    failed: int
    oldest_pending_ms: int | None = None  # when the oldest pending task became ready


class Broker:
    """Typed access to one namespace. `clock` returns a fixed time in ms for tests, else None
    (scripts then read Redis's own clock, one clock for every worker)."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.ns = NamespaceKeys(settings.namespace)
        self.clock: Callable[[], int | None] = lambda: None
        self.durable_timeout = DURABLE_TIMEOUT
        self._scripts = load_scripts()
        self._keys: dict[str, QueueKeys] = {}
        self._waker: Waker | None = None
        self._registered: set[str] = set()  # queue names this broker saw in <ns>:queues

    def close(self) -> None:
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        self.client.close()

    @property
    def cluster(self) -> bool:
        """Whether the client speaks to a Redis Cluster (one queue per slot, shards apart)."""
        return is_cluster(self.client)

    # -- keys -------------------------------------------------------------------------------

    def keys(self, queue: str) -> QueueKeys:
        found = self._keys.get(queue)
        if found is None:
            found = self._keys[queue] = QueueKeys(self.settings.namespace, queue)
        return found

    def _now(self) -> ScriptArg:
        now = self.clock()
        return "" if now is None else now

    def _run(self, name: str, queue: str, *args: ScriptArg) -> Any:
        return self._scripts[name](self.client, self.keys(queue).script_keys(), args)

    @property
    def _dead_limits(self) -> tuple[int, int]:
        return self.settings.dead_max, int(self.settings.dead_ttl * 1000)

    # -- producing --------------------------------------------------------------------------

    def enqueue(self, tasks: Sequence[NewTask], *, durable: bool = False) -> list[EnqueueResult]:
        """Write tasks in one round trip, one script call per queue: each queue's share of a batch is
        atomic, a batch spanning queues is written queue by queue (on a cluster each queue has its own
        slot, often on another shard). Results come back in input order.

        `durable`: the same round trip ends with a WAIT on every primary written to (on the
        connection that wrote), and NotReplicated is raised unless at least one replica of each
        acknowledged the writes within `durable_timeout`."""
        if not tasks:
            return []
        by_queue: dict[str, list[int]] = {}
        for index, task in enumerate(tasks):
            by_queue.setdefault(task.queue, []).append(index)
        self._check_queue_limit(list(by_queue))
        pipe = self.client.pipeline(transaction=False)
        for queue, indexes in by_queue.items():
            args = self._enqueue_args([tasks[i] for i in indexes])
            self._scripts["enqueue"].queue(pipe, self.keys(queue).script_keys(), args)
        # the names after the tasks: a queue forgotten meanwhile as empty (forget_if_empty) is named
        # again once its tasks are there
        pipe.sadd(self.ns.queues, *by_queue)
        owners = self._add_waits(pipe, list(by_queue)) if durable else {}
        replies = execute_with_scripts(pipe, self.client)
        self._registered.update(by_queue)
        results: list[EnqueueResult | None] = [None] * len(tasks)
        for indexes, reply in zip(by_queue.values(), replies[: len(by_queue)], strict=True):
            for offset, index in enumerate(indexes):
                task_id, state, duplicate = reply[offset * 3 : offset * 3 + 3]
                results[index] = EnqueueResult(task_id, tasks[index].queue, state, duplicate == 1)
        written = [r for r in results if r is not None]
        if durable:
            acked = [int(r) for r in replies[1 + len(by_queue) :]]
            moved = owners != self._owners(list(by_queue))
            if moved or min(acked) < 1:
                raise NotReplicated(written, self.durable_timeout, moved)
        return written

    def _check_queue_limit(self, queues: Sequence[str]) -> None:
        """Refuse (UsageError, nothing written) a batch that would bring the namespace past
        `max_queues` queues: every maintenance pass visits each queue, so their number bounds how
        soon a lost worker's tasks are recovered. One round trip, only for names this broker has not
        registered yet; concurrent producers may overshoot by the new names each brings at once."""
        unknown = [q for q in queues if q not in self._registered]
        if not unknown:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.scard(self.ns.queues)
        pipe.smismember(self.ns.queues, unknown)
        count, members = pipe.execute()
        new = [q for q, member in zip(unknown, members, strict=True) if not member]
        limit = self.settings.max_queues
        if new and int(count) + len(new) > limit:
            raise UsageError(
                f"too many queues: {new[0]!r} would be queue {int(count) + 1} of namespace "
                f"{self.settings.namespace!r}, at most {limit} (TASKQ_MAX_QUEUES); nothing written"
            )
        if len(self._registered) > 2 * limit:  # names forgotten since: start again
            self._registered.clear()

    def _add_waits(self, pipe: Any, queues: Sequence[str]) -> dict[str, str]:
        """Add WAIT 1 for each primary the pipeline writes to. On a cluster each WAIT is routed to
        the node owning the slot, so it shares the connection (and the write offset) of the writes;
        returns which node owns each key written, to notice a slot that moved meanwhile."""
        timeout_ms = int(self.durable_timeout * 1000)
        if not self.cluster:
            pipe.execute_command("WAIT", 1, timeout_ms)
            return {}
        owners = self._owners(queues)
        cluster: Any = self.client
        for name in dict.fromkeys(owners.values()):
            pipe.execute_command("WAIT", 1, timeout_ms, target_nodes=cluster.get_node(node_name=name))
        return owners

    def _owners(self, queues: Sequence[str]) -> dict[str, str]:
        if not self.cluster:
            return {}
        cluster: Any = self.client
        keys = [self.ns.queues, *(self.keys(q).tasks for q in queues)]
        return {key: str(cluster.get_node_from_key(key).name) for key in keys}

    def _enqueue_args(self, tasks: Sequence[NewTask]) -> list[ScriptArg]:
        args: list[ScriptArg] = [self._now(), len(tasks)]
        for t in tasks:
            args += [
                t.id,
                _encode_meta(t.meta),
                t.payload_json,
                "" if t.delay_ms is None else t.delay_ms,
                "" if t.at_ms is None else t.at_ms,
                "1" if t.custom_id else "0",
            ]
        return args

    # -- consuming --------------------------------------------------------------------------

    def fetch(self, queue: str, lease: float, worker_id: str) -> Fetched | Malformed | None:
        found = self.fetch_many(queue, 1, lease, worker_id)
        return found[0] if found else None

    def fetch_many(self, queue: str, count: int, lease: float, worker_id: str) -> list[Fetched | Malformed]:
        """Up to `count` tasks of one queue in one script call, each under its own lease."""
        if count <= 0:
            return []
        tokens = random_tokens(count)
        reply = self._run("fetch", queue, *self._fetch_args(lease, worker_id, queue, tokens))
        return _decode_fetch(queue, reply, tokens)

    def report_and_fetch(
        self, reports: Sequence[Ack | Failure], queue: str | None, count: int, lease: float, worker_id: str
    ) -> tuple[list[bool | str], list[Fetched | Malformed]]:
        """`report(reports)` and, when `queue` is given, `fetch_many(queue, count, ...)`, in one round
        trip: a worker refills the slots its outcomes free without waiting for another."""
        pipe = self.client.pipeline(transaction=False)
        calls = self._queue_reports(pipe, reports)
        tokens = random_tokens(count) if queue is not None else []
        if queue is not None and tokens:
            args = self._fetch_args(lease, worker_id, queue, tokens)
            self._scripts["fetch"].queue(pipe, self.keys(queue).script_keys(), args)
        replies = execute_with_scripts(pipe, self.client)
        results = _decode_reports(len(reports), calls, replies[: len(calls)])
        if queue is None or not tokens:
            return results, []
        return results, _decode_fetch(queue, replies[-1], tokens)

    def _fetch_args(self, lease: float, worker_id: str, queue: str, tokens: list[str]) -> list[ScriptArg]:
        return [self._now(), int(lease * 1000), worker_id, queue, *self._dead_limits, *tokens]

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until a producer or a promotion wakes an idle worker, or the timeout passes. One
        server: one BLPOP over the queues' wake keys. A cluster, where one BLPOP cannot span the
        queues' slots: a Waker, one blocking thread per queue (see waker.py)."""
        wake_keys = [self.keys(q).wake for q in queues]
        if not self.cluster:
            return self.client.blpop(wake_keys, timeout=max(timeout, 0.01)) is not None
        if self._waker is None or self._waker.keys != tuple(wake_keys):
            if self._waker is not None:
                self._waker.close()
            self._waker = Waker(self.client, wake_keys)
        return self._waker.wait(timeout)

    def renew(
        self,
        leases: dict[str, list[tuple[str, str]]],
        lease: float,
        pins: dict[str, tuple[int, float, float]] | None = None,
    ) -> list[str]:
        """Extend the leases of running attempts ({queue: [(id, token)]}); returns the lost ids.
        `pins`: id -> (max_retries, backoff_base, backoff_max) to record on the task for recovery."""
        if not leases:
            return []
        pins = pins or {}
        pipe = self.client.pipeline(transaction=False)
        for queue, held in leases.items():
            args: list[ScriptArg] = [self._now(), int(lease * 1000)]
            for task_id, token in held:
                policy = pins.get(task_id)
                args += [task_id, token, "" if policy is None else " ".join(map(repr, policy))]
            self._scripts["renew"].queue(pipe, self.keys(queue).script_keys(), args)
        return [task_id for lost in execute_with_scripts(pipe, self.client) for task_id in lost]

    def ack(self, job: Fetched, result_json: str | None, result_ttl: float) -> bool:
        return bool(self.report([Ack(job, result_json, result_ttl)])[0])

    def fail(
        self, job: Fetched, error: dict[str, str], *, final: bool, delay: float, max_retries: int
    ) -> str:
        """Report a failed attempt; returns the new state, or '' when the lease was lost."""
        return str(self.report([Failure(job, error, final, delay, max_retries)])[0])

    def report(self, reports: Sequence[Ack | Failure]) -> list[bool | str]:
        """Outcomes of attempts, in one round trip. Per report: an Ack answers True (False when the
        lease was lost), a Failure the new state ('scheduled' or 'dead'; '' when the lease was lost)."""
        pipe = self.client.pipeline(transaction=False)
        calls = self._queue_reports(pipe, reports)
        return _decode_reports(len(reports), calls, execute_with_scripts(pipe, self.client))

    def _queue_reports(self, pipe: Any, reports: Sequence[Ack | Failure]) -> list[list[int]]:
        """Queue one `ack` call per queue for all its acks and one `fail` call per failure; returns
        the indexes of the reports each call answers."""
        calls: list[list[int]] = []
        acks: dict[str, list[ScriptArg]] = {}
        acked: dict[str, list[int]] = {}
        for index, item in enumerate(reports):
            job = item.job
            if isinstance(item, Ack):
                args = acks.setdefault(job.queue, [self._now()])
                args += [job.id, job.token, item.result_json or "", int(item.result_ttl * 1000)]
                acked.setdefault(job.queue, []).append(index)
                continue
            fail_args: list[ScriptArg] = [
                self._now(),
                job.id,
                job.token,
                json.dumps(item.error),
                "dead" if item.final else "retry",
                int(item.delay * 1000),
                item.max_retries,
                *self._dead_limits,
            ]
            self._scripts["fail"].queue(pipe, self.keys(job.queue).script_keys(), fail_args)
            calls.append([index])
        for queue, args in acks.items():
            self._scripts["ack"].queue(pipe, self.keys(queue).script_keys(), args)
            calls.append(acked[queue])
        return calls

    def requeue(self, job: Fetched) -> bool:
        return bool(self._run("requeue", job.queue, job.id, job.token) == 1)

    # -- maintenance ------------------------------------------------------------------------

    def promote(self, queue: str) -> tuple[int, float | None]:
        """Move due scheduled tasks to pending; returns (moved, seconds until the next is due)."""
        moved, next_due, now = self._run("promote", queue, self._now(), PROMOTE_BATCH, *self._dead_limits)
        wait = None if int(next_due) < 0 else max(int(next_due) - int(now), 0) / 1000
        return int(moved), wait

    def recover(self, queue: str, defaults: RetryDefaults) -> tuple[int, int]:
        """Expired leases back to scheduled (or dead); returns (retried, buried). A queue left with
        nothing in it is forgotten (forget_if_empty), so names used once do not slow every pass."""
        retried, buried, empty = self._run(
            "recover",
            queue,
            self._now(),
            RECOVER_BATCH,
            random.random(),
            defaults.max_retries,
            defaults.backoff_base,
            defaults.backoff_max,
            *self._dead_limits,
        )
        if int(empty):
            self.forget_if_empty(queue)
        return int(retried), int(buried)

    def forget_if_empty(self, queue: str) -> bool:
        """Take an empty queue's name out of <ns>:queues; False when it holds something (tasks,
        counters, a pause, a cron claim) or a schedule targets it. In two steps, since the name and
        the queue live in different slots on a cluster: SREM, then the queue's own script checks it
        is still empty, else the name goes back. Producers add the name after writing their tasks,
        so whatever the interleaving, a queue with tasks ends up named."""
        if not self.client.srem(self.ns.queues, queue):
            return False  # not registered (a worker's queue nobody enqueued to): nothing to do
        if self._run("forget", queue) == 1 and not self._cron_targets(queue):
            self._registered.discard(queue)
            return True
        self.client.sadd(self.ns.queues, queue)
        return False

    def _cron_targets(self, queue: str) -> bool:
        """Whether a periodic schedule enqueues into this queue (one not fired yet has no claim)."""
        for definition in self.client.hvals(self.ns.cron):
            try:
                target = json.loads(definition).get("queue")
            except (ValueError, AttributeError):
                continue
            if target == queue:
                return True
        return False

    # -- operating: dead-letter queue, cancel, pause, clear --------------------------------------

    def dlq_retry(self, queue: str, ids: Sequence[str]) -> list[str]:
        """Dead tasks back to pending; per id 'ok', 'missing' or 'malformed'."""
        return [str(r) for r in self._run("dlq_retry", queue, self._now(), *ids)] if ids else []

    def dlq_purge(self, queue: str, ids: Sequence[str]) -> list[bool]:
        return [r == 1 for r in self._run("dlq_purge", queue, *ids)] if ids else []

    def dead_ids(self, queue: str, died_before_ms: int | None = None) -> list[str]:
        """Every dead id of a queue, newest first (or only those that died before a time)."""
        if died_before_ms is None:
            return [str(i) for i in self.client.zrevrange(self.keys(queue).dead, 0, -1)]
        return [
            str(i) for i in self.client.zrevrangebyscore(self.keys(queue).dead, f"({died_before_ms}", "-inf")
        ]

    def queues_holding_dead(self, ids: Sequence[str], queues: Sequence[str]) -> dict[str, str]:
        """For each id, the queue whose dead set holds it (ids found nowhere are left out); an id
        dead in several of the queues is refused (AmbiguousId)."""
        holders = self.queues_holding(ids, queues, dead=True)
        return {task_id: only_queue(task_id, found) for task_id, found in holders.items()}

    def queues_holding(
        self, ids: Sequence[str], queues: Sequence[str], *, dead: bool = False
    ) -> dict[str, list[str]]:
        """For each id, every one of the queues that has a task with it (with `dead`, a dead one);
        ids found nowhere are left out."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            for task_id in ids:
                if dead:
                    pipe.zscore(self.keys(queue).dead, task_id)
                else:
                    pipe.hexists(self.keys(queue).tasks, task_id)
        replies = iter(pipe.execute())
        found: dict[str, list[str]] = {}
        for queue in queues:
            for task_id in ids:
                if next(replies) not in (None, False, 0):
                    found.setdefault(task_id, []).append(queue)
        return found

    def cancel(self, queue: str, task_id: str) -> str:
        return str(self._run("cancel", queue, task_id))

    def clear(self, queue: str, batch: int = 1000) -> int:
        """Delete every waiting, dead and done task of a queue, in bounded steps; returns how many."""
        total = 0
        while True:
            deleted, left = self._run("clear", queue, batch)
            total += int(deleted)
            if int(left) == 0 or int(deleted) == 0:
                return total

    def set_paused(self, queue: str, paused: bool) -> None:
        k = self.keys(queue)
        pipe = self.client.pipeline(transaction=False)  # registry and queue: two slots on a cluster
        pipe.sadd(self.ns.queues, queue)
        if paused:
            pipe.set(k.paused, "1")
        else:
            pipe.delete(k.paused)
            pipe.delete(k.wake)
            pipe.lpush(k.wake, "1")  # idle workers look again at once
        pipe.execute()

    def paused(self, queues: Sequence[str]) -> dict[str, bool]:
        if not queues:
            return {}
        pipe = self.client.pipeline(transaction=False)  # one GET per queue: MGET cannot span slots
        for q in queues:
            pipe.get(self.keys(q).paused)
        return {q: flag is not None for q, flag in zip(queues, pipe.execute(), strict=True)}

    def ids_in_state(self, queue: str, state: str, offset: int, limit: int) -> list[str]:
        """Ids of one state in the order they will be handled (pending: next first; scheduled: due
        first; active: lease ending first; dead and done: newest first)."""
        k = self.keys(queue)
        end = offset + limit - 1
        if state == "pending":
            ids = self.client.lrange(k.pending, -(end + 1), -(offset + 1)) if limit > 0 else []
            return [str(i) for i in reversed(ids)]
        structures = {
            "scheduled": (k.scheduled, False),
            "active": (k.active, False),
            "dead": (k.dead, True),
            "done": (k.done, True),
        }
        if state not in structures:
            raise ValueError(state)
        key, newest_first = structures[state]
        reader = self.client.zrevrange if newest_first else self.client.zrange
        return [str(i) for i in reader(key, offset, end)]

    def records(
        self, queue: str, ids: Sequence[str], max_value: int | None = None
    ) -> list[TaskRecord | None]:
        """The tasks' records (None for an id not there). `max_value`: payloads and results longer
        than this many bytes are not read at all (a listing stays small whatever was stored): they
        are left None and named in `truncated`; one more round trip."""
        if not ids:
            return []
        if max_value is not None:
            return self._bounded_records(queue, ids, max_value)
        k = self.keys(queue)
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(k.tasks, list(ids))
        pipe.hmget(k.payloads, list(ids))
        pipe.hmget(k.results, list(ids))
        metas, payloads, results = pipe.execute()
        return [
            None if meta is None else TaskRecord(_parse_meta(meta, task_id, queue), payload, result)
            for task_id, meta, payload, result in zip(ids, metas, payloads, results, strict=True)
        ]

    def _bounded_records(self, queue: str, ids: Sequence[str], max_value: int) -> list[TaskRecord | None]:
        k = self.keys(queue)
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(k.tasks, list(ids))
        for task_id in ids:
            pipe.hstrlen(k.payloads, task_id)
            pipe.hstrlen(k.results, task_id)
        metas, *lengths = pipe.execute()
        fields = ((k.payloads, "payload"), (k.results, "result"))
        wanted = [
            (task_id, key, field)
            for i, task_id in enumerate(ids)
            for j, (key, field) in enumerate(fields)
            if 0 < int(lengths[2 * i + j]) <= max_value
        ]
        pipe = self.client.pipeline(transaction=False)
        for task_id, key, _ in wanted:
            pipe.hget(key, task_id)
        values = {(task_id, field): v for (task_id, _, field), v in zip(wanted, pipe.execute(), strict=True)}
        out: list[TaskRecord | None] = []
        for i, (task_id, meta) in enumerate(zip(ids, metas, strict=True)):
            if meta is None:
                out.append(None)
                continue
            long = frozenset(f for j, (_, f) in enumerate(fields) if int(lengths[2 * i + j]) > max_value)
            payload, result = values.get((task_id, "payload")), values.get((task_id, "result"))
            out.append(TaskRecord(_parse_meta(meta, task_id, queue), payload, result, long))
        return out

    # -- periodic schedules -------------------------------------------------------------------

    def cron_definitions(self) -> dict[str, str]:
        """Every schedule of the namespace: name -> definition JSON."""
        return {str(k): str(v) for k, v in self.client.hgetall(self.ns.cron).items()}

    def cron_put(self, name: str, definition_json: str) -> None:
        self.client.hset(self.ns.cron, name, definition_json)

    def cron_delete(self, name: str, queue: str) -> bool:
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(self.ns.cron, name)
        pipe.hdel(self.keys(queue).cron, name)
        return bool(pipe.execute()[0])

    def cron_last(self, schedules: Sequence[tuple[str, str]]) -> list[tuple[int, str] | None]:
        """For (name, queue) pairs: the last tick fired (ms) and the task id it enqueued."""
        if not schedules:
            return []
        pipe = self.client.pipeline(transaction=False)
        for name, queue in schedules:
            pipe.hget(self.keys(queue).cron, name)
        out: list[tuple[int, str] | None] = []
        for value in pipe.execute():
            tick, _, task_id = str(value or "").partition(":")
            out.append((int(tick), task_id) if tick.isdigit() else None)
        return out

    def cron_fire(self, name: str, tick_ms: int, task: NewTask) -> tuple[bool, str]:
        """Claim a tick and enqueue its task in one script; (False, '') when it was fired already."""
        pipe = self.client.pipeline(transaction=False)
        args: list[ScriptArg] = [self._now(), name, tick_ms, *self._enqueue_args([task])[2:]]
        self._scripts["cron_fire"].queue(pipe, self.keys(task.queue).script_keys(), args)
        pipe.sadd(self.ns.queues, task.queue)  # after the task (see forget_if_empty)
        reply = execute_with_scripts(pipe, self.client)[0]
        return (reply[0] == "fired", str(reply[1]) if reply[0] == "fired" else "")

    # -- registry and inspection ------------------------------------------------------------

    def known_queues(self) -> list[str]:
        return sorted(str(q) for q in self.client.smembers(self.ns.queues))

    def register_worker(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.ns.worker(worker_id), json.dumps(info), px=int(ttl * 1000))
        pipe.zadd(self.ns.workers, {worker_id: int(info["heartbeat_at"])})
        # The list expires with its last writer's description, so it cannot outlive every worker; live
        # workers sweep dead members meanwhile. (With mixed leases a long-lease worker may be missing
        # from listings for a moment after a short-lease one stops, until its next beat.)
        pipe.pexpire(self.ns.workers, int(ttl * 1000))
        pipe.execute()

    def unregister_worker(self, worker_id: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.ns.worker(worker_id))
        pipe.zrem(self.ns.workers, worker_id)
        pipe.execute()

    def live_workers(self) -> list[dict[str, Any]]:
        ids = [str(i) for i in self.client.zrange(self.ns.workers, 0, -1)]
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)  # one GET per worker: MGET cannot span slots
        for worker_id in ids:
            pipe.get(self.ns.worker(worker_id))
        infos = pipe.execute()
        gone = [i for i, info in zip(ids, infos, strict=True) if info is None]
        if gone:
            self.client.zrem(self.ns.workers, *gone)  # their description expired: they are dead
        return [json.loads(info) for info in infos if info is not None]

    def find_task(self, task_id: str, queue: str | None = None) -> TaskRecord | None:
        """A task by id, in the given queue or else in any known queue; an id found in several
        queues is refused (AmbiguousId)."""
        found = self.queues_holding([task_id], [queue] if queue else self.known_queues()).get(task_id)
        if not found:
            return None
        [record] = self.records(only_queue(task_id, found), [task_id])
        return record

    def queue_stats(self, queues: Iterable[str]) -> list[QueueStats]:
        names = list(queues)
        pipe = self.client.pipeline(transaction=False)
        for q in names:
            k = self.keys(q)
            pipe.llen(k.pending)
            pipe.zcard(k.scheduled)
            pipe.zcard(k.active)
            pipe.zcard(k.dead)
            pipe.hgetall(k.counters)
            pipe.lindex(k.pending, -1)
        replies = pipe.execute()
        stats: list[QueueStats] = []
        oldest_ids: list[tuple[str, str]] = []
        for i, q in enumerate(names):
            pending, scheduled, active, dead, counters, oldest = replies[i * 6 : i * 6 + 6]
            stats.append(
                QueueStats(
                    q,
                    pending,
                    scheduled,
                    active,
                    dead,
                    int(counters.get("processed", 0)),
                    int(counters.get("failed", 0)),
                )
            )
            if oldest is not None:
                oldest_ids.append((q, oldest))
        return _with_oldest(stats, self._oldest_ready(oldest_ids))

    def _oldest_ready(self, heads: list[tuple[str, str]]) -> dict[str, int]:
        if not heads:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for q, task_id in heads:
            pipe.hget(self.keys(q).tasks, task_id)
        ready: dict[str, int] = {}
        for (q, task_id), raw in zip(heads, pipe.execute(), strict=True):
            if raw is not None:
                meta = _parse_meta(raw, task_id, q)
                # ready since it was enqueued, became due, or came back from the dead-letter queue
                ready[q] = max(int(meta.get(f) or 0) for f in ("enqueued_at", "run_at", "retried_at"))
        return ready

    def redis_time_ms(self) -> int:
        fixed = self.clock()
        if fixed is not None:
            return fixed
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000


def _decode_fetch(queue: str, reply: list[Any], tokens: list[str]) -> list[Fetched | Malformed]:
    """fetch.lua's flat reply: 4 items per task taken, in the order of the tokens it used."""
    found: list[Fetched | Malformed] = []
    for token, at in zip(tokens, range(0, len(reply), 4), strict=False):
        kind, task_id, meta_json, payload = reply[at : at + 4]
        if kind == "malformed":
            found.append(Malformed(queue, task_id))
        else:
            found.append(Fetched(queue, task_id, json.loads(meta_json), payload, token))
    return found


def _decode_reports(count: int, calls: list[list[int]], replies: list[Any]) -> list[bool | str]:
    """Per report: ack.lua's 1|0 as a bool, fail.lua's new state as a string."""
    results: list[bool | str] = [""] * count
    for indexes, reply in zip(calls, replies, strict=True):
        if isinstance(reply, list):
            for index, one in zip(indexes, reply, strict=True):
                results[index] = one == 1
        else:
            results[indexes[0]] = str(reply)
    return results


def _with_oldest(stats: list[QueueStats], ready: dict[str, int]) -> list[QueueStats]:
    return [
        QueueStats(
            s.queue, s.pending, s.scheduled, s.active, s.dead, s.processed, s.failed, ready.get(s.queue)
        )
        for s in stats
    ]


def only_queue(task_id: str, queues: Sequence[str]) -> str:
    """The one queue an id was found in. Ids are unique per queue only: every lookup by id that was
    not given the queue comes here, and one found in several queues is refused, never picked."""
    if len(queues) > 1:
        raise AmbiguousId(task_id, list(queues))
    return queues[0]


def _parse_meta(raw: str, task_id: str, queue: str) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        return {"id": task_id, "queue": queue, "name": "<malformed>", "state": "dead", "raw": raw}
    meta.setdefault("id", task_id)
    meta.setdefault("queue", queue)
    return meta


def new_id() -> str:
    return os.urandom(16).hex()  # as unique as uuid4().hex, at a third of the cost


def random_tokens(count: int) -> list[str]:
    """Lease tokens: 64 random bits each."""
    raw = secrets.token_hex(8 * count)
    return [raw[i : i + 16] for i in range(0, 16 * count, 16)]
