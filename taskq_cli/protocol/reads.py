"""The read-only half of the Broker: lookups, listings and counts, each pipelined into one or two
round trips. (`live_workers` also drops the expired registrations it comes across.)"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from taskq_cli.errors import AmbiguousId
from taskq_cli.protocol.failures import translating
from taskq_cli.protocol.keys import NamespaceKeys, QueueKeys
from taskq_cli.protocol.scripts import execute_with_scripts, load_scripts
from taskq_cli.protocol.topology import Client, is_cluster
from taskq_cli.protocol.types import BrokerSettings, QueueLimits, QueueStats, TaskRecord
from taskq_cli.states import ALL_STATES, TaskState

MIN_PREFIX = 4  # shorter than this, an id is only looked up whole


@translating
class Reads:
    """Typed reads of one namespace. `clock` returns a fixed time in ms for tests, else None
    (scripts then read Redis's own clock, one clock for every worker)."""

    def __init__(self, client: Client, settings: BrokerSettings) -> None:
        self.client = client
        self.settings = settings
        self.ns = NamespaceKeys(settings.namespace)
        self.clock: Callable[[], int | None] = lambda: None
        self._keys: dict[str, QueueKeys] = {}

    def keys(self, queue: str) -> QueueKeys:
        found = self._keys.get(queue)
        if found is None:
            found = self._keys[queue] = QueueKeys(self.settings.namespace, queue)
        return found

    @property
    def cluster(self) -> bool:
        """Whether the client speaks to a Redis Cluster (one queue per slot, shards apart)."""
        return is_cluster(self.client)

    def ping(self) -> None:
        """One round trip to Redis: raises BrokerUnavailable when it cannot be reached."""
        self.client.ping()

    def known_queues(self) -> list[str]:
        return sorted(str(q) for q in self.client.smembers(self.ns.queues))

    def paused(self, queues: Sequence[str]) -> dict[str, bool]:
        if not queues:
            return {}
        pipe = self.client.pipeline(transaction=False)  # one GET per queue: MGET cannot span slots
        for q in queues:
            pipe.get(self.keys(q).paused)
        return {q: flag is not None for q, flag in zip(queues, pipe.execute(), strict=True)}

    def limits(self, queues: Sequence[str]) -> dict[str, QueueLimits]:
        """Each queue's limits (queue limit), in one round trip."""
        if not queues:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            pipe.hmget(self.keys(q).limits, ["concurrency", "rate", "window"])
        out: dict[str, QueueLimits] = {}
        for q, (conc, rate, window) in zip(queues, pipe.execute(), strict=True):
            out[q] = QueueLimits(
                None if conc is None else int(conc),
                None if rate is None else int(rate),
                None if window is None else int(window) / 1000,
            )
        return out

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

    def ids_in_state(self, queue: str, state: str, offset: int, limit: int) -> list[str]:
        """Ids of one state in the order they will be handled (pending: next first; scheduled: due
        first; waiting: enqueued first; active: lease ending first; dead and done: newest first)."""
        k = self.keys(queue)
        end = offset + limit - 1
        if state == TaskState.PENDING:
            ids = self.client.lrange(k.pending, -(end + 1), -(offset + 1)) if limit > 0 else []
            return [str(i) for i in reversed(ids)]
        structures: dict[str, tuple[str, bool]] = {
            TaskState.SCHEDULED: (k.scheduled, False),
            TaskState.WAITING: (k.blocked, False),
            TaskState.ACTIVE: (k.active, False),
            TaskState.DEAD: (k.dead, True),
            TaskState.DONE: (k.done, True),
        }
        if state not in structures:
            raise ValueError(state)
        key, newest_first = structures[state]
        reader = self.client.zrevrange if newest_first else self.client.zrange
        return [str(i) for i in reader(key, offset, end)]

    def dead_newest(
        self,
        queues: Sequence[str],
        before: tuple[int, str, str] | None,
        newest_ms: int | None,
        oldest_ms: int | None,
        limit: int,
    ) -> list[tuple[int, str, str]]:
        """Up to `limit` dead tasks across the queues as (died_at ms, queue, id), newest first
        (ties: queue then id, descending), strictly after the cursor `before` in that order, dead
        no later than `newest_ms` and no earlier than `oldest_ms`. Keyset paging: any depth costs
        what the first page costs. A merge of the queues' dead sets: each round is one pipeline,
        and only queues that may still hold one of the `limit` newest are read again, with
        batches that double (a thousand queues cost a few ids each, not `limit` each)."""
        top = newest_ms if before is None else min(before[0], newest_ms or before[0])
        merge = _DeadMerge(queues, before, limit)
        wanted = dict.fromkeys(queues, min(limit, -(-limit // max(len(queues), 1)) + 1))
        while wanted:
            pipe = self.client.pipeline(transaction=False)
            for q, count in wanted.items():
                pipe.zrevrangebyscore(
                    self.keys(q).dead,
                    "+inf" if top is None else top,
                    "-inf" if oldest_ms is None else oldest_ms,
                    start=merge.read[q],
                    num=count,
                    withscores=True,
                )
            for (q, count), batch in zip(wanted.items(), pipe.execute(), strict=True):
                merge.add(q, [(int(score), q, str(member)) for member, score in batch], count)
            wanted = {q: 2 * wanted.get(q, 1) for q in merge.unsettled()}
        return merge.newest()

    def dead_count(self, queues: Sequence[str], newest_ms: int | None, oldest_ms: int | None) -> int:
        """How many dead tasks the queues hold that died between the two times (None: no bound)."""
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            top = "+inf" if newest_ms is None else newest_ms
            pipe.zcount(self.keys(q).dead, "-inf" if oldest_ms is None else oldest_ms, top)
        return sum(int(n) for n in pipe.execute())

    def metas(
        self, pairs: Sequence[tuple[str, str]], keep: Callable[[str], bool] | None = None
    ) -> list[dict[str, Any] | None]:
        """The metadata of each (queue, id), without payloads or results: what a filter on name or
        error reads (None for one not there, or whose raw JSON text `keep` turns down: a cheap test
        before decoding). One HMGET per queue, in one round trip."""
        by_queue: dict[str, list[str]] = {}
        for q, task_id in pairs:
            by_queue.setdefault(q, []).append(task_id)
        pipe = self.client.pipeline(transaction=False)
        for q, ids in by_queue.items():
            pipe.hmget(self.keys(q).tasks, ids)
        raw = {
            (q, task_id): text
            for (q, ids), texts in zip(by_queue.items(), pipe.execute(), strict=True)
            for task_id, text in zip(ids, texts, strict=True)
        }
        out: list[dict[str, Any] | None] = []
        for q, task_id in pairs:
            text = raw[(q, task_id)]
            wanted = text is not None and (keep is None or keep(str(text)))
            out.append(_parse_meta(text, task_id, q) if wanted else None)
        return out

    def lease_deadlines(self, held: Sequence[tuple[str, str]]) -> list[int | None]:
        """The lease deadline (ms) of each (queue, id) in its queue's active set; None when the
        task is not active (any more). One round trip."""
        if not held:
            return []
        pipe = self.client.pipeline(transaction=False)
        for q, task_id in held:
            pipe.zscore(self.keys(q).active, task_id)
        return [None if score is None else int(score) for score in pipe.execute()]

    def count_in_state(self, queue: str, state: str) -> int:
        """How many ids `ids_in_state` can list for a queue and state."""
        return self.count_in_states([queue], [state])

    def count_in_states(self, queues: Iterable[str], states: Sequence[str]) -> int:
        """How many ids `ids_in_state` can list over every queue and state given: one round trip
        (a pipeline), whatever the number of queues."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            k = self.keys(queue)
            for state in states:
                _count_state(pipe, k, state)
        return sum(int(n) for n in pipe.execute())

    def state_counts(self, queues: Sequence[str], states: Sequence[str]) -> dict[str, dict[str, int]]:
        """queue -> state -> how many tasks: one round trip (a pipeline), whatever the number of
        queues (the API's /metrics)."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            k = self.keys(queue)
            for state in states:
                _count_state(pipe, k, state)
        counts = iter(pipe.execute())
        return {queue: {state: int(next(counts)) for state in states} for queue in queues}

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

    def cron_definitions(self) -> dict[str, str]:
        """Every schedule of the namespace: name -> definition JSON."""
        return {str(k): str(v) for k, v in self.client.hgetall(self.ns.cron).items()}

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
        return [found for info in infos if info is not None and (found := _json_object(info)) is not None]

    def find_task(self, task_id: str, queue: str | None = None, *, prefix: bool = False) -> TaskRecord | None:
        """A task by id, in the given queue or else in any known queue; an id found in several
        queues is refused (AmbiguousId). With `prefix`, an id matching no task exactly may be the
        start of one (see `by_prefix`)."""
        queues = [queue] if queue else self.known_queues()
        found = self.queues_holding([task_id], queues).get(task_id)
        if not found and prefix:
            task_id, found = self.by_prefix(task_id, queues)
        if not found:
            return None
        [record] = self.records(only_queue(task_id, found), [task_id])
        return record

    def by_prefix(self, prefix: str, queues: Sequence[str], *, dead: bool = False) -> tuple[str, list[str]]:
        """The one id starting with `prefix` in the queues (with `dead`, among dead tasks) and the
        queues holding it; ("", []) when none does or the prefix is shorter than MIN_PREFIX.
        Several ids are refused (AmbiguousId naming them). An operator's lookup: it scans the
        queues' task hashes (HSCAN MATCH), never taken on a worker's path."""
        if len(prefix) < MIN_PREFIX:
            return "", []
        pattern = re.sub(r"([\\*?\[\]])", r"\\\1", prefix) + "*"
        holders: dict[str, list[str]] = {}
        for queue in queues:
            for task_id in self._ids_matching(queue, pattern, dead):
                holders.setdefault(task_id, []).append(queue)
        if len(holders) > 1:
            raise AmbiguousId(prefix, sorted({q for qs in holders.values() for q in qs}), list(holders))
        return next(iter(holders.items()), ("", []))

    def _ids_matching(self, queue: str, pattern: str, dead: bool) -> list[str]:
        k = self.keys(queue)
        if dead:
            return [str(member) for member, _ in self.client.zscan_iter(k.dead, match=pattern, count=1000)]
        return [str(field) for field, _ in self.client.hscan_iter(k.tasks, match=pattern, count=1000)]

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
            pipe.zcard(k.blocked)
        replies = pipe.execute()
        stats: list[QueueStats] = []
        oldest_ids: list[tuple[str, str]] = []
        for i, q in enumerate(names):
            pending, scheduled, active, dead, counters, oldest, waiting = replies[i * 7 : i * 7 + 7]
            stats.append(
                QueueStats(
                    q,
                    pending,
                    scheduled,
                    active,
                    dead,
                    int(counters.get("processed", 0)),
                    int(counters.get("failed", 0)),
                    waiting=int(waiting),
                )
            )
            if oldest is not None:
                oldest_ids.append((q, oldest))
        return _with_oldest(stats, self._oldest_ready(oldest_ids))

    def queue_glances(self, queues: Sequence[str]) -> list[tuple[QueueStats, bool, QueueLimits]]:
        """What `queue_stats`, `paused` and `limits` say of each queue, from one script call per
        queue (read_glance.lua) in one pipeline: the dashboard's overview of a thousand queues."""
        if not queues:
            return []
        script = load_scripts()["read_glance"]
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            k = self.keys(q)
            read = [k.tasks, k.pending, k.active, k.scheduled, k.dead, k.counters, k.paused, k.limits]
            script.queue(pipe, [*read, k.blocked], [])
        out = []
        for q, reply in zip(queues, execute_with_scripts(pipe, self.client), strict=True):
            counts, (processed, failed, paused) = reply[:5], reply[5:8]
            conc, rate, window, ready = reply[8:]
            pending, scheduled, active, dead, waiting = (int(n) for n in counts)
            stats = QueueStats(
                q,
                pending,
                scheduled,
                active,
                dead,
                int(processed or 0),
                int(failed or 0),
                int(ready) if ready else None,
                waiting=waiting,
            )
            seconds = int(window) / 1000 if window else None
            limits = QueueLimits(_int_or_none(conc), _int_or_none(rate), seconds)
            out.append((stats, bool(paused), limits))
        return out

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


def _count_state(pipe: Any, k: QueueKeys, state: str) -> None:
    """Queue the count of one queue's tasks in one state (what `ids_in_state` can list)."""
    if state == TaskState.PENDING:
        pipe.llen(k.pending)
    elif state == TaskState.WAITING:
        pipe.zcard(k.blocked)
    elif state in ALL_STATES:
        pipe.zcard(k.key(state))
    else:
        raise ValueError(state)


def _with_oldest(stats: list[QueueStats], ready: dict[str, int]) -> list[QueueStats]:
    return [
        QueueStats(
            s.queue,
            s.pending,
            s.scheduled,
            s.active,
            s.dead,
            s.processed,
            s.failed,
            ready.get(s.queue),
            s.waiting,
        )
        for s in stats
    ]


class _DeadMerge:
    """The k-way merge behind Reads.dead_newest: what each queue's dead set gave so far."""

    def __init__(self, queues: Sequence[str], before: tuple[int, str, str] | None, limit: int) -> None:
        self.before = before
        self.limit = limit
        self.read = dict.fromkeys(queues, 0)  # ids read from each queue (the next ZREVRANGE offset)
        self.last: dict[str, tuple[int, str, str]] = {}  # the oldest key read from each queue
        self.done: set[str] = set()  # queues read to their end
        self.found: list[tuple[int, str, str]] = []

    def add(self, queue: str, batch: list[tuple[int, str, str]], asked: int) -> None:
        self.read[queue] += len(batch)
        if batch:
            self.last[queue] = batch[-1]
        if len(batch) < asked:
            self.done.add(queue)
        self.found += [k for k in batch if self.before is None or k < self.before]

    def unsettled(self) -> list[str]:
        """Queues whose unread keys could still be among the `limit` newest: all that have more when
        fewer than `limit` were found, else those whose oldest read key is newer than the
        `limit`-th newest found (their unread keys are older than that oldest read key)."""
        self.found.sort(reverse=True)
        del self.found[self.limit :]
        open_queues = [q for q in self.read if q not in self.done]
        if len(self.found) < self.limit:
            return open_queues
        cut = self.found[-1]
        return [q for q in open_queues if self.last[q] > cut]

    def newest(self) -> list[tuple[int, str, str]]:
        return self.found[: self.limit]


def _int_or_none(value: Any) -> int | None:
    return int(value) if value else None


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


def _json_object(text: str | bytes) -> dict[str, Any] | None:
    """A JSON object found in Redis, or None for anything else (written by another version or writer)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
