"""The Broker: one typed method per operation on one namespace.

Every state change is one Lua script over one queue's keys (see keys.py for the layout and lua/ for
the scripts); the reads it inherits (reads.py) are pipelined. Every public method raises taskq's
BrokerUnavailable or BrokerError in place of redis-py's errors (failures.py).
"""

from __future__ import annotations

import json
import os
import random
import secrets
from collections.abc import Sequence
from typing import Any

from taskq_cli.errors import TooManyQueues, UsageError
from taskq_cli.protocol.dependencies import Dependencies, Link
from taskq_cli.protocol.failures import translating
from taskq_cli.protocol.fastpipe import hot_pipeline
from taskq_cli.protocol.reads import Reads
from taskq_cli.protocol.record import compact_json_encoder
from taskq_cli.protocol.scripts import ScriptArg, execute_with_scripts, load_scripts
from taskq_cli.protocol.topology import Client
from taskq_cli.protocol.types import (
    HANDED_OFF,
    Ack,
    BrokerSettings,
    EnqueueResult,
    FailState,
    Failure,
    Fetched,
    Limited,
    Malformed,
    NewTask,
    NotReplicated,
    Postpone,
    QueueLimits,
    Report,
    RetryFallbacks,
    TaskRecord,
)
from taskq_cli.protocol.waits import block_args, queue_watch, watched_record
from taskq_cli.protocol.waker import Waker

# Compact, as enqueue.lua joins the task record onto it; one encoder (json.dumps with options builds
# a new one per call).
_encode_meta = compact_json_encoder(allow_nan=True)
PROMOTE_BATCH = 500
RECOVER_BATCH = 500
DURABLE_TIMEOUT = 5.0  # seconds a durable enqueue waits for a replica to acknowledge it
# the wake token of a scheduled task due sooner than planned (_lib.lua's schedule): a promote pass
WAKE_DUE = "due"


@translating
class Broker(Reads):
    """Typed access to one namespace: the reads of `Reads`, and every write."""

    def __init__(self, client: Client, settings: BrokerSettings) -> None:
        super().__init__(client, settings)
        self.durable_timeout = DURABLE_TIMEOUT
        self._scripts = load_scripts()
        self._waker: Waker | None = None
        self._registered: set[str] = set()  # queue names this broker saw in <ns>:queues
        self.dependencies = Dependencies(self)

    def close(self) -> None:
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        self.client.close()

    # -- scripts and limits ----------------------------------------------------------------

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
        refs = self._dependency_refs(tasks)
        self._check_queue_limit(list(by_queue))
        pipe = hot_pipeline(self.client)
        for queue, indexes in by_queue.items():
            args = enqueue_args(self._now(), [tasks[i] for i in indexes], [refs[i] for i in indexes])
            self._scripts["enqueue"].queue(pipe, self.keys(queue).script_keys(), args)
        # the names after the tasks: a queue forgotten meanwhile as empty (forget_if_empty) is named
        # again once its tasks are there
        pipe.sadd(self.ns.queues, *by_queue)
        owners = self._add_waits(pipe, list(by_queue)) if durable else {}
        replies = execute_with_scripts(pipe, self.client)
        self._registered.update(by_queue)
        written = decode_enqueue(tasks, by_queue, replies[: len(by_queue)])
        if any(refs):
            written = self._link(written, refs)
        if durable:
            acked = [int(r) for r in replies[1 + len(by_queue) :]]
            moved = owners != self._owners(list(by_queue))
            if moved or min(acked) < 1:
                raise NotReplicated(written, self.durable_timeout, moved)
        return written

    def _dependency_refs(self, tasks: Sequence[NewTask]) -> list[tuple[str, ...]]:
        """Each task's dependencies as refs; an id of an earlier task of the batch needs no lookup.
        Raises UsageError (nothing written) for an unknown or dead dependency."""
        if not any(t.after for t in tasks):
            return [()] * len(tasks)
        batch = {t.id for t in tasks}
        known: dict[str, str] = {}  # ids of earlier tasks of the batch: only those may be named
        for task in tasks:
            for dep in task.after:
                if dep == task.id:
                    raise UsageError(f"after: task {dep} cannot wait for itself; nothing written")
                if dep in batch and dep not in known:
                    raise UsageError(
                        f"after: task {dep} is not enqueued before task {task.id}; nothing written"
                    )
            known.setdefault(task.id, task.queue)
        return self.dependencies.resolve([t.after for t in tasks], known)

    def _link(self, written: list[EnqueueResult], refs: list[tuple[str, ...]]) -> list[EnqueueResult]:
        """Link the new waiting tasks to their dependencies (dependencies.py); a task released or
        buried on the way answers its new state."""
        links = [
            Link(r.queue, r.id, deps)
            for r, deps in zip(written, refs, strict=True)
            if deps and not r.duplicate and r.state == "waiting"
        ]
        changed = self.dependencies.link(links)
        if not changed:
            return written
        fresh = self.records_states({(q, i) for q, i in changed})
        return [
            EnqueueResult(r.id, r.queue, fresh.get((r.queue, r.id), r.state), r.duplicate) for r in written
        ]

    def records_states(self, tasks: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The state of each (queue, id) that has a record."""
        order = sorted(tasks)
        pipe = self.client.pipeline(transaction=False)
        for queue, task_id in order:
            pipe.hget(self.keys(queue).tasks, task_id)
        out: dict[tuple[str, str], str] = {}
        for key, raw in zip(order, pipe.execute(), strict=True):
            if raw is not None:
                try:
                    out[key] = str(json.loads(raw).get("state"))
                except (ValueError, AttributeError):
                    continue
        return out

    def _check_queue_limit(self, queues: Sequence[str]) -> None:
        """Refuse (TooManyQueues, nothing written) a batch that would bring the namespace past
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
        check_new_queues(int(count), unknown, members, self.settings, self._registered)

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
        return enqueue_args(self._now(), tasks, [()] * len(tasks))

    # -- waiting for outcomes (waits.py) ------------------------------------------------------

    def watch(self, queue: str, task_id: str, *, register: bool) -> TaskRecord | None:
        """The task's record (None: not there); `register`: as a waiter, before `block_outcome`."""
        pipe = self.client.pipeline(transaction=False)
        queue_watch(pipe, self.keys(queue), task_id, register)
        return watched_record(pipe.execute(), task_id, queue)

    def block_outcome(self, queue: str, task_id: str, seconds: float) -> bool:
        """Block until the task ends or `seconds` (at most WAIT_BLOCK_S) pass; True when notified."""
        key, timeout = block_args(self.keys(queue), task_id, seconds)
        # redis-py types the timeout as int; Redis takes decimal seconds
        return self.client.blmove(key, key, timeout, "LEFT", "RIGHT") is not None  # type: ignore[arg-type]

    # -- consuming --------------------------------------------------------------------------

    def fetch(self, queue: str, lease: float, worker_id: str) -> Fetched | Malformed | None:
        found = [f for f in self.fetch_many(queue, 1, lease, worker_id) if not isinstance(f, Limited)]
        return found[0] if found else None

    def fetch_many(
        self, queue: str, count: int, lease: float, worker_id: str
    ) -> list[Fetched | Malformed | Limited]:
        """Up to `count` tasks of one queue in one script call, each under its own lease; a last
        `Limited` when the queue's limits held pending tasks back."""
        if count <= 0:
            return []
        tokens = random_tokens(count)
        reply = self._run("fetch", queue, *self._fetch_args(lease, worker_id, queue, tokens))
        return _decode_fetch(queue, reply, tokens)

    def report_and_fetch(
        self, reports: Sequence[Report], queue: str | None, count: int, lease: float, worker_id: str
    ) -> tuple[list[bool | str], list[Fetched | Malformed | Limited]]:
        """`report(reports)` and, when `queue` is given, `fetch_many(queue, count, ...)`, in one round
        trip: a worker refills the slots its outcomes free without waiting for another."""
        pipe = hot_pipeline(self.client)
        calls = self._queue_reports(pipe, reports)
        tokens = random_tokens(count) if queue is not None else []
        if queue is not None and tokens:
            args = self._fetch_args(lease, worker_id, queue, tokens)
            self._scripts["fetch"].queue(pipe, self.keys(queue).script_keys(), args)
        replies = execute_with_scripts(pipe, self.client)
        results = _decode_reports(reports, calls, replies[: len(calls)])
        if queue is None or not tokens:
            return results, []
        return results, _decode_fetch(queue, replies[-1], tokens)

    def _fetch_args(self, lease: float, worker_id: str, queue: str, tokens: list[str]) -> list[ScriptArg]:
        return [self._now(), int(lease * 1000), worker_id, queue, *self._dead_limits, *tokens]

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> str | None:
        """Block until a producer or a promotion wakes an idle worker, or the timeout passes. Returns
        None on timeout, else the token taken: WAKE_DUE when a scheduled task became due sooner than
        the workers planned (the one woken should run a promote pass too), else "1" (fetch). One
        server: one BLPOP over the queues' wake keys. A cluster, where one BLPOP cannot span the
        queues' slots: a Waker, one blocking thread per queue (see waker.py), whose wake-ups all
        count as WAKE_DUE."""
        wake_keys = [self.keys(q).wake for q in queues]
        if not self.cluster:
            reply = self.client.blpop(wake_keys, timeout=max(timeout, 0.01))
            if reply is None:
                return None
            token = reply[1]
            return WAKE_DUE if token in (WAKE_DUE, WAKE_DUE.encode()) else "1"
        if self._waker is None or self._waker.keys != tuple(wake_keys):
            if self._waker is not None:
                self._waker.close()
            self._waker = Waker(self.client, wake_keys)
        return WAKE_DUE if self._waker.wait(timeout) else None

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
        self,
        job: Fetched,
        error: dict[str, str],
        *,
        final: bool,
        delay: float | None,
        max_retries: int,
        backoff: tuple[float, float] = (0.0, 0.0),
    ) -> FailState:
        """Report a failed attempt; returns the new state, or '' when the lease was lost. `delay`
        None: after the backoff (base, max) the protocol draws."""
        answer = self.report([Failure(job, error, final, delay, max_retries, *backoff)])[0]
        assert isinstance(answer, FailState)
        return answer

    def report(self, reports: Sequence[Report]) -> list[bool | str]:
        """Outcomes of attempts, in one round trip. Per report: an Ack answers True (False when the
        lease was lost; HANDED_OFF when the task's outcome went to the outbox for its dependents:
        drain it), a Failure the new state ('scheduled' or 'dead'; '' when the lease was lost)."""
        pipe = hot_pipeline(self.client)
        calls = self._queue_reports(pipe, reports)
        return _decode_reports(reports, calls, execute_with_scripts(pipe, self.client))

    def _queue_reports(self, pipe: Any, reports: Sequence[Report]) -> list[list[int]]:
        """Queue one `ack` call per queue for all its acks and one `fail` call per failure; returns
        the indexes of the reports each call answers."""
        calls: list[list[int]] = []
        acks: dict[str, list[ScriptArg]] = {}
        acked: dict[str, list[int]] = {}
        for index, item in enumerate(reports):
            job = item.job
            if isinstance(item, Postpone):
                again: list[ScriptArg] = [job.id, job.token, int(item.delay * 1000), self._now()]
                self._scripts["requeue"].queue(pipe, self.keys(job.queue).script_keys(), again)
                calls.append([index])
                continue
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
                "" if item.delay is None else int(item.delay * 1000),
                item.max_retries,
                *self._dead_limits,
                int(item.backoff_base * 1000),
                int(item.backoff_max * 1000),
                random.random(),
            ]
            self._scripts["fail"].queue(pipe, self.keys(job.queue).script_keys(), fail_args)
            calls.append([index])
        for queue, args in acks.items():
            self._scripts["ack"].queue(pipe, self.keys(queue).script_keys(), args)
            calls.append(acked[queue])
        return calls

    def set_limits(self, queue: str, limits: QueueLimits) -> None:
        """Set a queue's limits as given (None clears one); an idle worker of the queue looks again."""
        conc: ScriptArg = "-" if limits.concurrency is None else limits.concurrency
        rate: ScriptArg = "-" if limits.rate is None else limits.rate
        window: ScriptArg = "" if limits.window is None else int(limits.window * 1000)
        self._run("limits", queue, conc, rate, window)
        self.client.sadd(self.ns.queues, queue)

    # -- per-key limiters ------------------------------------------------------------------

    def limiter_acquire(
        self, key: str, pass_id: str, rate: tuple[int, float] | None, concurrency: int | None, ttl: float
    ) -> float | None:
        """Take a pass of a per-key limiter: None when it passes (holding a permit for `ttl` seconds
        when it has a concurrency), else seconds until it may pass."""
        count, window = ("", "") if rate is None else (rate[0], int(rate[1] * 1000))
        conc = "" if concurrency is None else concurrency
        args = ["acquire", self._now(), pass_id, count, window, conc, int(ttl * 1000)]
        reply = self._scripts["limiter"](self.client, self._limiter_keys(key), args)
        return None if int(reply[0]) == 1 else int(reply[1]) / 1000

    def _limiter_keys(self, key: str) -> list[str]:
        return [self.ns.limiter_starts(key), self.ns.limiter_permits(key)]

    def limiter_release(self, key: str, pass_id: str) -> None:
        self._scripts["limiter"](self.client, self._limiter_keys(key), ["release", self._now(), pass_id])

    def limiter_renew(self, key: str, pass_ids: Sequence[str], ttl: float) -> int:
        """Extend permits still held; returns how many were."""
        args: list[ScriptArg] = ["renew", self._now(), int(ttl * 1000), *pass_ids]
        return int(self._scripts["limiter"](self.client, self._limiter_keys(key), args)[0])

    def requeue(self, job: Fetched) -> bool:
        return bool(self._run("requeue", job.queue, job.id, job.token) == 1)

    # -- maintenance ------------------------------------------------------------------------

    def promote(self, queue: str) -> tuple[int, float | None]:
        """Move due scheduled tasks to pending; returns (moved, seconds until the next is due)."""
        moved, wait, _ = self.promote_and_look(queue)
        return moved, wait

    def promote_and_look(self, queue: str) -> tuple[int, float | None, bool]:
        """`promote`, and whether the queue has dependency work for maintenance (an outbox entry
        or an unlinked waiting task: Dependencies.maintain), in the same script call."""
        moved, next_due, now, work = self._run(
            "promote", queue, self._now(), PROMOTE_BATCH, *self._dead_limits
        )
        wait = None if int(next_due) < 0 else max(int(next_due) - int(now), 0) / 1000
        return int(moved), wait, int(work) == 1

    def recover(self, queue: str, fallbacks: RetryFallbacks) -> tuple[int, int]:
        """Expired leases back to scheduled (or dead); returns (retried, buried). `fallbacks`: the
        retry policy of a task that names none of its own. A queue left with nothing in it is
        forgotten (forget_if_empty), so names used once do not slow every pass."""
        retried, buried, empty = self._run(
            "recover",
            queue,
            self._now(),
            RECOVER_BATCH,
            random.random(),
            fallbacks.max_retries,
            fallbacks.backoff_base,
            fallbacks.backoff_max,
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

    # -- operating: dead-letter queue, cancel, pause, clear -----------------------------------

    def dlq_retry(self, queue: str, ids: Sequence[str]) -> list[str]:
        """Dead tasks back to pending; per id 'ok', 'missing' or 'malformed'. A task with
        dependencies waits again for those not done (linked here; 'ok' too)."""
        if not ids:
            return []
        answers = [str(r) for r in self._run("dlq_retry", queue, self._now(), *ids)]
        waiting = [task_id for task_id, answer in zip(ids, answers, strict=True) if answer == "waiting"]
        if waiting:
            pipe = self.client.pipeline(transaction=False)
            for task_id in waiting:
                pipe.smembers(self.keys(queue).deps(task_id))
            refs = pipe.execute()
            pairs = zip(waiting, refs, strict=True)
            self.dependencies.link([Link(queue, task_id, tuple(sorted(map(str, r)))) for task_id, r in pairs])
        return ["ok" if answer == "waiting" else answer for answer in answers]

    def dlq_purge(self, queue: str, ids: Sequence[str]) -> list[bool]:
        return [r == 1 for r in self._run("dlq_purge", queue, *ids)] if ids else []

    def cancel(self, queue: str, task_id: str) -> str:
        """Remove an unfinished task; returns the state it was in ('done' or 'dead': nothing changed;
        '' no such task). Its dependents, and the dependencies a waiting task was linked to, are
        told at once (the outbox keeps it for the next maintenance pass if this fails)."""
        state = str(self._run("cancel", queue, task_id))
        if state in ("pending", "scheduled", "waiting", "active"):
            self.dependencies.drain([queue], {queue: [task_id]})
        return state

    def run_now(self, queue: str, task_id: str) -> str:
        """A scheduled task (delayed or waiting for its retry) to pending now (run.lua); returns the
        state it was in ('' when there is no such task)."""
        return str(self._run("run", queue, self._now(), task_id))

    def clear(self, queue: str, batch: int = 1000) -> int:
        """Delete every waiting, dead and done task of a queue, in bounded steps; returns how many."""
        total = 0
        while True:
            deleted, left = self._run("clear", queue, batch)
            total += int(deleted)
            if int(left) == 0 or int(deleted) == 0:
                self.dependencies.drain([queue])  # dependents and dependencies of what was cleared
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

    # -- periodic schedules -------------------------------------------------------------------

    def cron_put(self, name: str, definition_json: str) -> None:
        self.client.hset(self.ns.cron, name, definition_json)

    def cron_delete(self, name: str, queue: str) -> bool:
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(self.ns.cron, name)
        pipe.hdel(self.keys(queue).cron, name)
        return bool(pipe.execute()[0])

    def cron_fire(self, name: str, tick_ms: int, task: NewTask) -> tuple[bool, str]:
        """Claim a tick and enqueue its task in one script; (False, '') when it was fired already."""
        pipe = self.client.pipeline(transaction=False)
        args: list[ScriptArg] = [self._now(), name, tick_ms, *self._enqueue_args([task])[2:]]
        self._scripts["cron_fire"].queue(pipe, self.keys(task.queue).script_keys(), args)
        pipe.sadd(self.ns.queues, task.queue)  # after the task (see forget_if_empty)
        reply = execute_with_scripts(pipe, self.client)[0]
        return (reply[0] == "fired", str(reply[1]) if reply[0] == "fired" else "")

    # -- worker registry ---------------------------------------------------------------------

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


def enqueue_args(
    now: ScriptArg, tasks: Sequence[NewTask], refs: Sequence[tuple[str, ...]] | None = None
) -> list[ScriptArg]:
    """enqueue.lua's ARGV for one queue's tasks (Broker and AsyncBroker); `refs`: each task's
    dependencies ("<queue> <id>"): it is enqueued waiting, the list kept in its `after:<id>` key."""
    args: list[ScriptArg] = [now, len(tasks)]
    for t, deps in zip(tasks, refs or [()] * len(tasks), strict=True):
        args += [
            t.id,
            _encode_meta(t.meta),
            t.payload_json,
            "" if t.delay_ms is None else t.delay_ms,
            "" if t.at_ms is None else t.at_ms,
            "1" if t.custom_id else "0",
            "" if t.unique is None else t.unique.encode(),
            "\n".join(deps),
        ]
    return args


def decode_enqueue(
    tasks: Sequence[NewTask], by_queue: dict[str, list[int]], replies: Sequence[Any]
) -> list[EnqueueResult]:
    """enqueue.lua's replies (one per queue, 3 items per task) as results in input order."""
    results: list[EnqueueResult | None] = [None] * len(tasks)
    for indexes, reply in zip(by_queue.values(), replies, strict=True):
        for offset, index in enumerate(indexes):
            task_id, state, duplicate = reply[offset * 3 : offset * 3 + 3]
            results[index] = EnqueueResult(task_id, tasks[index].queue, state, duplicate == 1)
    return [r for r in results if r is not None]


def check_new_queues(
    count: int, unknown: Sequence[str], members: Sequence[Any], settings: BrokerSettings, registered: set[str]
) -> None:
    """The queue limit's decision (Broker._check_queue_limit): `count` names registered, `members`
    whether each unknown name is one of them. Raises TooManyQueues; nothing written."""
    new = [q for q, member in zip(unknown, members, strict=True) if not member]
    limit = settings.max_queues
    if new and count + len(new) > limit:
        raise TooManyQueues(
            f"too many queues: {new[0]!r} would be queue {count + 1} of namespace "
            f"{settings.namespace!r}, at most {limit} (TASKQ_MAX_QUEUES); nothing written"
        )
    if len(registered) > 2 * limit:  # names forgotten since: start again
        registered.clear()


def _decode_fetch(queue: str, reply: list[Any], tokens: list[str]) -> list[Fetched | Malformed | Limited]:
    """fetch.lua's flat reply: 4 items per task taken, in the order of the tokens it used, and a
    last group when the queue's limits held tasks back."""
    found: list[Fetched | Malformed | Limited] = []
    for token, at in zip(tokens, range(0, len(reply), 4), strict=False):
        kind, task_id, meta_json, payload = reply[at : at + 4]
        if kind == "limited":
            found.append(Limited(queue, None if task_id in ("", b"") else int(task_id) / 1000))
        elif kind == "malformed":
            found.append(Malformed(queue, task_id))
        else:
            found.append(Fetched(queue, task_id, json.loads(meta_json), payload, token))
    return found


def _decode_reports(
    reports: Sequence[Report], calls: list[list[int]], replies: list[Any]
) -> list[bool | str]:
    """Per report: ack.lua's 1|0 as a bool (2: HANDED_OFF), fail.lua's {state, delay_ms, fired} as a
    FailState."""
    results: list[bool | str] = [""] * len(reports)
    for indexes, reply in zip(calls, replies, strict=True):
        if isinstance(reports[indexes[0]], Postpone):
            results[indexes[0]] = reply == 1
            continue
        if isinstance(reports[indexes[0]], Failure):
            state, delay_ms = _text(reply[0]), int(reply[1])
            fired = len(reply) > 2 and int(reply[2]) == 1
            results[indexes[0]] = FailState(state, delay_ms / 1000 if state == "scheduled" else None, fired)
            continue
        for index, one in zip(indexes, reply, strict=True):
            results[index] = HANDED_OFF if one == 2 else one == 1
    return results


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def new_id() -> str:
    return os.urandom(16).hex()  # as unique as uuid4().hex, at a third of the cost


def random_tokens(count: int) -> list[str]:
    """Lease tokens: 64 random bits each."""
    raw = secrets.token_hex(8 * count)
    return [raw[i : i + 16] for i in range(0, 16 * count, 16)]
