"""Model-based tests of the Redis protocol: hypothesis drives random sequences of every operation
against a real Redis, with the scripts' clock driven by the test (leases, delays, backoff and expiry
without sleeping), and compares Redis with a plain Python model after every step.

Operations: enqueue (plain, delayed, custom id, unique keys held until finished or started, capped
by unique_for, debounced; in batches), fetch, ack, fail, a handler's retry request, a worker crash
(its handles dropped, the lease left to expire), renew, a graceful requeue, time passing, promote,
recover, dlq retry and purge, cancel, pause and resume, clear, queue limits (concurrency and rate).

After every step: each task is in exactly one structure, the one its record's state names; the
pending order, due times, lease deadlines and tokens, death and expiry times, payloads, results and
counters equal the model's; attempts never exceed max_retries + 1; nothing disappears except by
cancel, purge, clear, expiry of a done record or the dead set's bounds; the namespace holds no key
but the protocol's. A unique key is held exactly while its holder is unfinished (and, for
'started', not yet fetched; within its unique_for); a queue never has more active tasks than its
concurrency limit lets a fetch start; no window of a rate limit's length holds more starts than it.

DependencyMachine: random small DAGs (after=) over two queues with crashes between every pair of
steps (a producer dead between enqueue and link, a worker dead between its report and the hand-off,
a lost lease), cancels and dlq retries: every dependent ends done or dead, never stuck in waiting.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

import pytest
import redis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from taskq_cli import TaskQueue
from taskq_cli.config import RetryDefaults
from taskq_cli.protocol import Fetched, NewTask, QueueLimits, UniqueLock
from taskq_cli.protocol.keys import QUEUE_KEY_ORDER, QueueKeys
from tests.conftest import REDIS_URL

QUEUES = ("a", "b")
CUSTOM_IDS = ("c1", "c2", "c3")
UNIQUE_KEYS = ("k1", "k2")
DEBOUNCE_MS = 2_000
HOLD_MS = 3_000
DEFAULTS = RetryDefaults(max_retries=2, backoff_base=1.0, backoff_max=8.0)
DEAD_MAX = 2
DEAD_TTL_MS = 120_000
START_MS = 1_800_000_000_000
ERROR = {"type": "RuntimeError", "message": "boom", "traceback": "tb"}

Key = tuple[str, str]  # (queue, id)


@dataclass
class ModelTask:
    queue: str
    id: str
    payload: str
    max_retries: int | None  # in the record; None: the defaults apply
    backoff: tuple[float, float] | None  # (base, max) in the record; None: the defaults apply
    state: str = "pending"
    attempts: int = 0
    lease: str | None = None  # the record's `lease`: the token of the last attempt that reported
    token: str | None = None  # the live lease token (active only)
    deadline: int | None = None
    due: int | None = None
    died: int | None = None
    expires: int | None = None
    result: str | None = None
    ukey: str | None = None  # its unique key
    until: str = "finished"
    uexp: int | None = None  # when its hold of the key ends at the latest (unique_for)
    released: bool = False  # a script gave its key up (finished, started, ...)

    @property
    def limit(self) -> int:
        return DEFAULTS.max_retries if self.max_retries is None else self.max_retries


@dataclass(frozen=True)
class Spec:
    queue: str
    custom: str | None
    delay_ms: int
    max_retries: int | None
    backoff: bool
    ukey: str | None = None
    until: str = "finished"
    hold: bool = False
    debounce: bool = False


specs = st.builds(
    Spec,
    queue=st.sampled_from(QUEUES),
    custom=st.none() | st.sampled_from(CUSTOM_IDS),
    delay_ms=st.sampled_from([0, 0, 0, 500, 5_000]),
    max_retries=st.none() | st.integers(0, 2),
    backoff=st.booleans(),
    ukey=st.none() | st.none() | st.sampled_from(UNIQUE_KEYS),
    until=st.sampled_from(["finished", "finished", "started"]),
    hold=st.booleans(),
    debounce=st.booleans(),
)


class Clock:
    def __init__(self) -> None:
        self.ms = START_MS

    def __call__(self) -> int:
        return self.ms


class ProtocolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ns = f"test-stateful-{uuid.uuid4().hex[:10]}"
        self.tq = TaskQueue(
            redis_url=REDIS_URL, namespace=self.ns, dead_max=DEAD_MAX, dead_ttl=DEAD_TTL_MS / 1000
        )
        self.broker = self.tq.broker
        self.clock = Clock()
        self.broker.clock = self.clock
        self.raw = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        self.tasks: dict[Key, ModelTask] = {}
        self.pending: dict[str, list[str]] = {q: [] for q in QUEUES}  # next to fetch first
        self.held: list[Fetched] = []  # attempts some worker believes it holds
        self.paused: set[str] = set()
        self.counters = {q: {"processed": 0, "failed": 0} for q in QUEUES}
        self.serial = 0
        self.holders: dict[Key, str] = {}  # (queue, unique key) -> id: the queue's `unique` hash
        self.limits: dict[str, tuple[int | None, tuple[int, int] | None]] = {q: (None, None) for q in QUEUES}
        self.starts: dict[str, list[int]] = {q: [] for q in QUEUES}  # the rate's log, as Redis trims it
        self.history: dict[str, list[int]] = {q: [] for q in QUEUES}  # every start under the rate

    def teardown(self) -> None:
        keys = list(self.raw.scan_iter(match=f"{self.ns}:*", count=1000))
        if keys:
            self.raw.delete(*keys)
        self.raw.close()
        self.tq.close()

    # -- helpers ------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.clock.ms

    def of_state(self, queue: str, state: str) -> list[ModelTask]:
        return [t for t in self.tasks.values() if t.queue == queue and t.state == state]

    def forget(self, task: ModelTask) -> None:
        del self.tasks[(task.queue, task.id)]
        if task.id in self.pending[task.queue]:
            self.pending[task.queue].remove(task.id)

    def count(self, queue: str, failed: bool) -> None:
        self.counters[queue]["processed"] += 1
        self.counters[queue]["failed"] += int(failed)

    def to_dead(self, task: ModelTask) -> None:
        self.unlock(task)
        task.state, task.died, task.due, task.token, task.deadline = "dead", self.now, None, None, None
        dead = sorted(self.of_state(task.queue, "dead"), key=lambda t: (t.died or 0, t.id))
        for old in [t for t in dead if (t.died or 0) <= self.now - DEAD_TTL_MS][:100]:
            self.forget(old)
            dead.remove(old)
        for old in dead[: min(max(len(dead) - DEAD_MAX, 0), 100)]:
            self.forget(old)

    def sweep_done(self, queue: str, limit: int) -> None:
        expired = sorted(
            (t for t in self.of_state(queue, "done") if (t.expires or 0) <= self.now),
            key=lambda t: (t.expires or 0, t.id),
        )
        for task in expired[:limit]:
            self.forget(task)

    def unlock(self, task: ModelTask) -> None:
        """The script that ends a hold gives the key up, if this task still holds it."""
        task.released = True
        if task.ukey is not None and self.holders.get((task.queue, task.ukey)) == task.id:
            del self.holders[(task.queue, task.ukey)]

    def holder(self, queue: str, key: str) -> ModelTask | None:
        task_id = self.holders.get((queue, key))
        task = self.tasks.get((queue, task_id)) if task_id is not None else None
        if task is None or task.ukey != key or task.state not in ("pending", "scheduled", "active"):
            return None
        return task if task.uexp is None or self.now < task.uexp else None

    def pick(self, index: int) -> Fetched:
        return self.held[index % len(self.held)]

    def live(self, job: Fetched) -> ModelTask | None:
        """The model task whose live lease this handle holds, if it still does."""
        task = self.tasks.get((job.queue, job.id))
        return task if task is not None and task.state == "active" and task.token == job.token else None

    # -- producing ----------------------------------------------------------------------------

    @rule(batch=st.lists(specs, min_size=1, max_size=4))
    def enqueue(self, batch: list[Spec]) -> None:
        new_tasks = [self.new_task(spec) for spec in batch]
        results = self.broker.enqueue(new_tasks)
        for spec, task, result in zip(batch, new_tasks, results, strict=True):
            existing = self.tasks.get((task.queue, task.id))
            if existing is not None and existing.state in ("pending", "scheduled", "active"):
                assert (result.id, result.state, result.duplicate) == (task.id, existing.state, True)
                continue
            if existing is not None:
                self.unlock(existing)
                self.forget(existing)  # a done or dead task with this custom id is replaced
            holder = self.holder(task.queue, spec.ukey) if spec.ukey is not None else None
            if holder is not None:
                self.debounce(spec, holder, task.payload_json)
                assert (result.id, result.state, result.duplicate) == (holder.id, holder.state, True)
                continue
            model = self.model_task(spec, task)
            self.tasks[(task.queue, task.id)] = model
            assert (result.id, result.state, result.duplicate) == (task.id, model.state, False)

    def new_task(self, spec: Spec) -> NewTask:
        self.serial += 1
        meta: dict[str, object] = {"name": "t", "queue": spec.queue}
        if spec.max_retries is not None:
            meta["max_retries"] = spec.max_retries
        if spec.backoff:
            meta["backoff_base"], meta["backoff_max"] = 0.5, 2.0
        lock = None
        if spec.ukey is not None:
            hold = HOLD_MS if spec.hold else None
            lock = UniqueLock(spec.ukey, spec.until, hold, DEBOUNCE_MS if spec.debounce else None)
        return NewTask(
            id=spec.custom or f"t{self.serial}",
            queue=spec.queue,
            meta=meta,
            payload_json=json.dumps({"n": self.serial}),
            delay_ms=spec.delay_ms or None,
            custom_id=spec.custom is not None,
            unique=lock,
        )

    def debounce(self, spec: Spec, holder: ModelTask, payload: str) -> None:
        """A debounced enqueue of a held key: a holder not started yet takes the payload and waits
        DEBOUNCE_MS from now."""
        if spec.debounce and holder.state in ("pending", "scheduled") and holder.attempts == 0:
            if holder.state == "pending":
                self.pending[holder.queue].remove(holder.id)
            holder.state, holder.due, holder.payload = "scheduled", self.now + DEBOUNCE_MS, payload

    def model_task(self, spec: Spec, task: NewTask) -> ModelTask:
        model = ModelTask(
            task.queue, task.id, task.payload_json, spec.max_retries, (0.5, 2.0) if spec.backoff else None
        )
        if spec.ukey is not None:
            self.holders[(task.queue, spec.ukey)] = task.id
            model.ukey, model.until = spec.ukey, spec.until
            model.uexp = self.now + HOLD_MS if spec.hold else None
        if spec.ukey is not None and spec.debounce:
            model.state, model.due = "scheduled", self.now + DEBOUNCE_MS
        elif spec.delay_ms:
            model.state, model.due = "scheduled", self.now + spec.delay_ms
        else:
            self.pending[task.queue].append(task.id)
        return model

    # -- consuming ----------------------------------------------------------------------------

    @rule(queue=st.sampled_from(QUEUES), lease=st.sampled_from([1.0, 10.0]))
    def fetch(self, queue: str, lease: float) -> None:
        got = self.broker.fetch(queue, lease, "w")
        if queue in self.paused or not self.pending[queue] or not self.allowed(queue):
            assert got is None
            return
        assert isinstance(got, Fetched), got
        expected = self.pending[queue].pop(0)
        assert got.id == expected
        task = self.tasks[(queue, expected)]
        task.state, task.attempts, task.token, task.lease = "active", task.attempts + 1, got.token, got.token
        if task.until == "started":
            self.unlock(task)
        self.started(queue)
        task.deadline = self.now + int(lease * 1000)
        assert got.meta["attempts"] == task.attempts and got.payload_json == task.payload
        self.held.append(got)

    @rule(
        queue=st.sampled_from(QUEUES),
        lease=st.sampled_from([1.0, 10.0]),
        outcome=st.sampled_from(["ack", "ack", "fail", "final", "retry", "crash", "hold"]),
        ttl=st.sampled_from([0, 5, 600]),
    )
    def work(self, queue: str, lease: float, outcome: str, ttl: int) -> None:
        """A worker's usual round: fetch, run, report (or die, or keep running)."""
        held = len(self.held)
        self.fetch(queue, lease)
        if len(self.held) == held or outcome == "hold":
            return
        last = len(self.held) - 1
        if outcome == "ack":
            self.ack(last, ttl, result=True, keep=False)
        elif outcome == "crash":
            self.crash(last)
        else:
            delay = {"fail": 0.3, "final": 0.0, "retry": 5.0}[outcome]
            self.fail(last, final=outcome == "final", delay=delay, keep=False)

    @precondition(lambda self: self.held)
    @rule(
        op=st.sampled_from(["ack", "fail", "final", "retry", "crash", "requeue", "renew"]),
        index=st.integers(0, 50),
        ttl=st.sampled_from([0, 5, 600]),
        flag=st.booleans(),
        lease=st.sampled_from([1.0, 10.0]),
    )
    def report(self, op: str, index: int, ttl: int, flag: bool, lease: float) -> None:
        """What happens to an attempt a worker holds: it reports success or failure (`final`: `Fail`;
        `retry`: a handler's `Retry(delay=...)`), perhaps twice (`flag`: the handle is kept), its
        worker crashes, gives it back while stopping, or renews every lease it holds."""
        if op == "ack":
            self.ack(index, ttl, result=flag, keep=flag)
        elif op in ("fail", "final", "retry"):
            delay = {"fail": 0.3, "final": 0.0, "retry": 2.0}[op]
            self.fail(index, final=op == "final", delay=delay, keep=flag)
        elif op == "crash":
            self.crash(index)
        elif op == "requeue":
            self.requeue(index)
        else:
            self.renew(lease)

    def ack(self, index: int, ttl: int, result: bool, keep: bool) -> None:
        job = self.pick(index)
        result_json = json.dumps({"r": job.token}) if result else None
        answer = self.broker.ack(job, result_json, ttl)
        task, stored = self.live(job), self.tasks.get((job.queue, job.id))
        if task is not None:
            assert answer is True
            self.count(job.queue, failed=False)
            self.unlock(task)
            if ttl <= 0:
                self.forget(task)
            else:
                task.state, task.expires, task.result = "done", self.now + ttl * 1000, result_json
                task.token = task.deadline = None
            self.sweep_done(job.queue, 4)
        elif stored is not None and stored.state == "done" and stored.lease == job.token:
            assert answer is True, "a repeated ack of the same attempt is accepted"
        else:
            assert answer is False, "an attempt that lost its lease cannot be acked"
        if not keep:
            self.held.remove(job)

    def fail(self, index: int, final: bool, delay: float, keep: bool) -> None:
        """A failed attempt: an exception with the worker's backoff, `Fail` (final), or a handler's
        `Retry(delay=...)` (the same report with the handler's delay)."""
        job = self.pick(index)
        stored = self.tasks.get((job.queue, job.id))
        limit = stored.limit if stored is not None else DEFAULTS.max_retries
        answer = self.broker.fail(job, ERROR, final=final, delay=delay, max_retries=limit)
        task = self.live(job)
        if task is not None:
            self.count(job.queue, failed=True)
            task.token = task.deadline = None
            if final or task.attempts >= task.limit + 1:
                self.to_dead(task)
                assert answer == "dead"
            else:
                task.state, task.due = "scheduled", self.now + int(delay * 1000)
                assert answer == "scheduled"
        elif stored is not None and stored.lease == job.token and stored.state in ("scheduled", "dead"):
            assert answer == stored.state, "a repeated report of the same attempt answers the same"
        else:
            assert answer == "", "an attempt that lost its lease cannot fail the task"
        if not keep:
            self.held.remove(job)

    def allowed(self, queue: str) -> bool:
        """Whether the queue's limits let one more task start now (trimming the rate's log as the
        fetch does)."""
        concurrency, rate = self.limits[queue]
        if concurrency is not None and len(self.of_state(queue, "active")) >= concurrency:
            return False
        if rate is None:
            return True
        count, window = rate
        self.starts[queue] = [t for t in self.starts[queue] if t > self.now - window]
        return len(self.starts[queue]) < count

    def started(self, queue: str) -> None:
        """A start under the queue's limits: never past its concurrency, never past its rate."""
        concurrency, rate = self.limits[queue]
        if concurrency is not None:
            assert len(self.of_state(queue, "active")) <= concurrency
        if rate is not None:
            count, window = rate
            self.starts[queue].append(self.now)
            self.history[queue].append(self.now)
            in_window = [t for t in self.history[queue] if t > self.now - window]
            assert len(in_window) <= count, f"{len(in_window)} starts within {window} ms, rate {count}"

    @rule(
        queue=st.sampled_from(QUEUES),
        concurrency=st.none() | st.integers(1, 2),
        rate=st.none() | st.sampled_from([(2, 1_000), (3, 20_000)]),
    )
    def limit(self, queue: str, concurrency: int | None, rate: tuple[int, int] | None) -> None:
        """An operator sets or clears a queue's limits."""
        window = None if rate is None else rate[1] / 1000
        self.broker.set_limits(queue, QueueLimits(concurrency, None if rate is None else rate[0], window))
        if rate is None or rate != self.limits[queue][1]:
            self.history[queue] = []  # windows are judged under one rate
        if rate is None:
            self.starts[queue] = []  # clearing the rate drops its log
        self.limits[queue] = (concurrency, rate)

    def crash(self, index: int) -> None:
        """The worker holding this attempt dies: nobody reports it; only its lease can bring it back."""
        self.held.remove(self.pick(index))

    def renew(self, lease: float) -> None:
        by_queue: dict[str, list[tuple[str, str]]] = {}
        for job in self.held:
            by_queue.setdefault(job.queue, []).append((job.id, job.token))
        lost = self.broker.renew(by_queue, lease)
        expected_lost = []
        for queue in by_queue:  # the broker answers queue by queue, in the order first held
            for job in [j for j in self.held if j.queue == queue]:
                task = self.live(job)
                if task is None:
                    expected_lost.append(job.id)
                else:
                    task.deadline = self.now + int(lease * 1000)
        assert lost == expected_lost
        self.held = [j for j in self.held if self.live(j) is not None]  # the worker abandons the lost

    def requeue(self, index: int) -> None:
        """A stopping worker gives the attempt back (head of the queue, attempt not counted)."""
        job = self.pick(index)
        task = self.live(job)
        assert self.broker.requeue(job) is (task is not None)
        if task is not None:
            task.state, task.attempts = "pending", max(task.attempts - 1, 0)
            task.token = task.deadline = task.lease = None
            self.pending[job.queue].insert(0, job.id)
        self.held.remove(job)

    # -- time and maintenance -----------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 3.0, 10.0, 60.0, 200.0]))
    def advance(self, seconds: float) -> None:
        self.clock.ms += int(seconds * 1000)

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0]), queues=st.sampled_from([QUEUES, QUEUES[:1]]))
    def tick(self, seconds: float, queues: tuple[str, ...]) -> None:
        """Time passes, then a worker's or scheduler's maintenance pass: promote, then recover."""
        self.advance(seconds)
        for queue in queues:
            self.promote(queue)
            self.recover(queue)

    def promote(self, queue: str) -> None:
        moved, wait = self.broker.promote(queue)
        due = sorted(
            (t for t in self.of_state(queue, "scheduled") if (t.due or 0) <= self.now),
            key=lambda t: (t.due or 0, t.id),
        )[:500]
        for task in due:
            task.state, task.due = "pending", None
            self.pending[queue].append(task.id)
        self.sweep_done(queue, 100)
        assert moved == len(due)
        later = [t.due or 0 for t in self.of_state(queue, "scheduled")]
        assert wait == (None if not later else max(min(later) - self.now, 0) / 1000)

    def recover(self, queue: str) -> None:
        retried, buried = self.broker.recover(queue, DEFAULTS)
        expired = sorted(
            (t for t in self.of_state(queue, "active") if (t.deadline or 0) <= self.now),
            key=lambda t: (t.deadline or 0, t.id),
        )[:500]
        scheduled = self.raw.zrange(QueueKeys(self.ns, queue).scheduled, 0, -1, withscores=True)
        run_at = {member: int(score) for member, score in scheduled}
        expect_retried = expect_buried = 0
        for task in expired:
            self.count(queue, failed=True)
            task.token = task.deadline = task.lease = None
            if task.attempts >= task.limit + 1:
                self.to_dead(task)
                expect_buried += 1
                continue
            base, cap = task.backoff or (DEFAULTS.backoff_base, DEFAULTS.backoff_max)
            d = min(cap * 1000, base * 1000 * 2 ** (max(task.attempts, 1) - 1))
            delay = run_at[task.id] - self.now
            assert d / 2 - 1 <= delay <= d, f"recovery backoff {delay} ms outside [{d / 2}, {d}]"
            task.state, task.due = "scheduled", run_at[task.id]
            expect_retried += 1
        assert (retried, buried) == (expect_retried, expect_buried)
        assert not [t for t in self.of_state(queue, "active") if (t.deadline or 0) <= self.now], (
            "an expired lease survived a recovery pass"
        )

    # -- operating ----------------------------------------------------------------------------

    @rule(
        op=st.sampled_from(["dlq_retry", "dlq_purge", "cancel", "pause", "clear"]),
        queue=st.sampled_from(QUEUES),
        which=st.lists(st.integers(0, 50), min_size=1, max_size=3, unique=True),
        flag=st.booleans(),
        go=st.integers(0, 3),
    )
    def operate(self, op: str, queue: str, which: list[int], flag: bool, go: int) -> None:
        """What an operator does (one rule, so that it is drawn as often as one worker operation)."""
        if op == "dlq_retry":
            self.dlq_retry(queue, which, missing=flag)
        elif op == "dlq_purge":
            self.dlq_purge(queue, which, missing=flag)
        elif op == "cancel":
            self.cancel(queue, which[0], missing=flag and go == 0)
        elif op == "pause":
            self.pause(queue, paused=flag and go == 0)  # paused one time in eight, else resumed
        elif go == 0:
            self.clear(queue)  # clearing wipes what the other rules built: one time in four

    def dlq_retry(self, queue: str, which: list[int], missing: bool) -> None:
        dead = sorted(t.id for t in self.of_state(queue, "dead"))
        ids = list(dict.fromkeys(dead[i % len(dead)] for i in which)) if dead else []
        if missing:
            ids.append("nope")
        answers = self.broker.dlq_retry(queue, ids)
        expected = []
        for task_id in ids:
            task = self.tasks.get((queue, task_id))
            if task is None or task.state != "dead":
                expected.append("missing")
                continue
            task.state, task.attempts, task.died, task.lease = "pending", 0, None, None
            self.pending[queue].append(task_id)
            expected.append("ok")
        assert answers == expected

    def dlq_purge(self, queue: str, which: list[int], missing: bool) -> None:
        dead = sorted(t.id for t in self.of_state(queue, "dead"))
        ids = list(dict.fromkeys(dead[i % len(dead)] for i in which)) if dead else []
        if missing:
            ids.append("nope")
        answers = self.broker.dlq_purge(queue, ids)
        expected = []
        for task_id in ids:
            task = self.tasks.get((queue, task_id))
            expected.append(task is not None and task.state == "dead")
            if task is not None and task.state == "dead":
                self.unlock(task)
                self.forget(task)
        assert answers == expected

    def cancel(self, queue: str, index: int, missing: bool) -> None:
        ids = sorted(t.id for t in self.tasks.values() if t.queue == queue)
        task_id = "nope" if missing or not ids else ids[index % len(ids)]
        answer = self.broker.cancel(queue, task_id)
        task = self.tasks.get((queue, task_id))
        if task is None:
            assert answer == ""
        elif task.state in ("done", "dead"):
            assert answer == task.state, "a finished task is not cancelled"
        else:
            assert answer == task.state
            self.unlock(task)
            self.forget(task)

    def pause(self, queue: str, paused: bool) -> None:
        self.broker.set_paused(queue, paused)
        (self.paused.add if paused else self.paused.discard)(queue)

    def clear(self, queue: str) -> None:
        gone = [t for t in self.tasks.values() if t.queue == queue and t.state != "active"]
        assert self.broker.clear(queue) == len(gone)
        for task in gone:
            self.unlock(task)
            self.forget(task)

    # -- invariants ---------------------------------------------------------------------------

    @initialize()
    def register_queues(self) -> None:
        self.raw.sadd(self.broker.ns.queues, *QUEUES)

    @invariant()
    def redis_matches_the_model(self) -> None:
        for queue in QUEUES:
            self.check_queue(queue)
        self.check_keys()

    def check_queue(self, queue: str) -> None:
        k = QueueKeys(self.ns, queue)
        pipe = self.raw.pipeline(transaction=True)
        pipe.lrange(k.pending, 0, -1)
        for name in ("scheduled", "active", "dead", "done"):
            pipe.zrange(k.key(name), 0, -1, withscores=True)
        for name in ("leases", "tasks", "payloads", "results", "counters", "unique"):
            pipe.hgetall(k.key(name))
        pipe.llen(k.wake)
        pending, scheduled, active, dead, done, leases, records, payloads, results, counters, unique, wake = (
            pipe.execute()
        )
        mine = {t.id: t for t in self.tasks.values() if t.queue == queue}

        # each task in exactly one structure, the one its record's state names
        places = [
            list(pending),
            [m for m, _ in scheduled],
            [m for m, _ in active],
            [m for m, _ in dead],
            [m for m, _ in done],
        ]
        everywhere = [i for place in places for i in place]
        assert len(everywhere) == len(set(everywhere)), f"a task is in two places: {places}"
        assert set(everywhere) == set(mine) == set(records), "a task appeared or disappeared"
        for state, place in zip(("pending", "scheduled", "active", "dead", "done"), places, strict=True):
            for task_id in place:
                assert json.loads(records[task_id])["state"] == state

        # the model's order, times, tokens and records
        assert list(reversed(pending)) == self.pending[queue], "pending order"
        assert {m: int(s) for m, s in scheduled} == {
            t.id: t.due for t in mine.values() if t.state == "scheduled"
        }
        assert {m: int(s) for m, s in active} == {
            t.id: t.deadline for t in mine.values() if t.state == "active"
        }
        assert leases == {t.id: t.token for t in mine.values() if t.state == "active"}
        assert {m: int(s) for m, s in dead} == {t.id: t.died for t in mine.values() if t.state == "dead"}
        assert {m: int(s) for m, s in done} == {t.id: t.expires for t in mine.values() if t.state == "done"}
        assert payloads == {t.id: t.payload for t in mine.values()}, "every task keeps its payload"
        assert results == {
            t.id: t.result for t in mine.values() if t.state == "done" and t.result is not None
        }
        for task in mine.values():
            meta = json.loads(records[task.id])
            assert (meta["attempts"], meta.get("lease")) == (task.attempts, task.lease), task
            assert task.attempts <= task.limit + 1, (
                f"{task.id}: {task.attempts} attempts, max_retries {task.limit}"
            )

        # unique keys: the hash is the model's, and a key is held exactly while its holder is
        # unfinished (and, for 'started', not yet fetched)
        assert unique == {key: i for (q, key), i in self.holders.items() if q == queue}
        for key, task_id in unique.items():
            holder = mine[task_id]
            assert holder.ukey == key and holder.state in ("pending", "scheduled", "active"), holder
            assert holder.until == "finished" or holder.state != "active", holder
        for task in mine.values():
            holding = task.state in ("pending", "scheduled", "active") and not task.released
            if task.ukey is not None and holding and (task.uexp is None or self.now < task.uexp):
                assert unique.get(task.ukey) == task.id, (
                    f"{task.id} lost its key {task.ukey} while unfinished"
                )

        # counters: two fields, whatever the number of tasks
        assert {f: int(v) for f, v in counters.items()} == {
            f: n for f, n in self.counters[queue].items() if n
        }
        assert wake <= 1
        [stats] = self.broker.queue_stats([queue])
        counts = {
            s: len([t for t in mine.values() if t.state == s])
            for s in ("pending", "scheduled", "active", "dead")
        }
        assert (stats.pending, stats.scheduled, stats.active, stats.dead) == tuple(counts.values())

    def check_keys(self) -> None:
        allowed = {self.broker.ns.queues} | {
            QueueKeys(self.ns, q).key(p) for q in QUEUES for p in QUEUE_KEY_ORDER
        }
        present = set(self.raw.scan_iter(match=f"{self.ns}:*", count=1000))
        assert present <= allowed, f"unexpected keys: {present - allowed}"
        for queue in QUEUES:
            assert (QueueKeys(self.ns, queue).paused in present) is (queue in self.paused)


def machine_settings(examples: int, steps: int) -> settings:
    """No shrinking unless TASKQ_STATEFUL_SHRINK=1: a failure prints its whole sequence at once,
    where shrinking it against a real Redis could outlast the test's timeout."""
    phases = list(Phase) if os.environ.get("TASKQ_STATEFUL_SHRINK") == "1" else [Phase.generate]
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        phases=phases,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# The full run is 200 sequences of 60 steps and 8 of 400. The default run does a quarter of it; the
# soak run (marker `soak`, which CI runs) the other three quarters, so CI still runs all of it.
SHORT, LONG = (200, 60), (8, 400)
DEFAULT_SHARE = 4  # 1/4 in the default run
# Bounded by their example counts; the suite's 120 s timeout (for hangs) is too short for a run of
# thousands of round trips on a loaded machine (seconds on CI's 2 cores).
LOADED = pytest.mark.timeout(900)


@LOADED
def test_random_sequences_of_every_protocol_operation_keep_redis_equal_to_a_simple_model(
    redis_url: str,
) -> None:
    assert redis_url == REDIS_URL
    examples, steps = SHORT
    run_state_machine_as_test(ProtocolMachine, settings=machine_settings(examples // DEFAULT_SHARE, steps))


@LOADED
def test_a_few_long_random_runs_keep_redis_equal_to_the_model(redis_url: str) -> None:
    """Long sequences reach deep retry chains, a full dead set and many expiries."""
    examples, steps = LONG
    run_state_machine_as_test(ProtocolMachine, settings=machine_settings(examples // DEFAULT_SHARE, steps))


@pytest.mark.soak
@LOADED
@pytest.mark.parametrize(("examples", "steps"), [SHORT, LONG], ids=["short", "long"])
def test_the_rest_of_the_full_random_run_keeps_redis_equal_to_the_model(
    redis_url: str, examples: int, steps: int
) -> None:
    assert redis_url == REDIS_URL
    rest = examples - examples // DEFAULT_SHARE
    run_state_machine_as_test(ProtocolMachine, settings=machine_settings(rest, steps))


# -- dependencies ------------------------------------------------------------------------------------

CUSTOM_IDS = ("r1-a", "r2-a", "r1-b", "r2-b")  # the custom ids the enqueue rule takes (`custom`)
DEP_DEFAULTS = RetryDefaults(max_retries=1, backoff_base=1.0, backoff_max=4.0)


class DependencyMachine(RuleBasedStateMachine):
    """Random small DAGs across two queues (two slots on a cluster) with crashes between every pair
    of steps: a producer that dies between writing a waiting task and linking it, a worker that dies
    between its ack (or a death) and the hand-off, a worker lost with its lease; cancels and dlq
    retries in between. After every step the waiting state is consistent (each waiting task is in
    its queue's `blocked` set and waits for something); at the end, once time passes and maintenance
    runs while workers take whatever is pending, no task is left waiting and no bookkeeping is left."""

    def __init__(self) -> None:
        super().__init__()
        self.ns = f"test-stateful-deps-{uuid.uuid4().hex[:10]}"
        self.tq = TaskQueue(redis_url=REDIS_URL, namespace=self.ns)
        self.broker = self.tq.broker
        self.clock = Clock()
        self.broker.clock = self.clock
        self.raw = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        self.ids: list[str] = []  # every id enqueued, in order
        self.held: list[Fetched] = []
        # A custom id taken again makes a new task: generations tell them apart. A dependent waits
        # for its dependency's generation at its enqueue or a later one (a link made again later, by
        # maintenance or a dlq retry, finds the task by that id then), never an earlier one.
        self.generation: dict[tuple[str, str], int] = {}  # (queue, id) -> its current generation
        self.waits_for: dict[tuple[str, str], dict[tuple[str, str], int]] = {}  # dependent -> deps
        self.done: set[tuple[str, str, int]] = set()  # (queue, id, generation) acked done

    def teardown(self) -> None:
        try:
            self.settle()
        finally:
            keys = list(self.raw.scan_iter(match=f"{self.ns}:*", count=1000))
            if keys:
                self.raw.delete(*keys)
            self.raw.close()
            self.tq.close()

    def maintenance(self) -> None:
        from taskq_cli.scheduler import Maintenance

        Maintenance(self.broker, DEP_DEFAULTS).tick(list(QUEUES))

    @rule(
        queue=st.sampled_from(QUEUES),
        picks=st.lists(st.integers(0, 30) | st.sampled_from(CUSTOM_IDS), max_size=3),
        delay=st.sampled_from([None, 2.0]),
        crash=st.booleans(),
        custom=st.sampled_from([None, None, None, "r1", "r2"]),
    )
    def enqueue(
        self, queue: str, picks: list[int | str], delay: float | None, crash: bool, custom: str | None
    ) -> None:
        """`custom`: a custom id, taken again once its task has finished (maybe before the hand-off
        of its outcome: each outcome must reach only its own dependents)."""
        from taskq_cli.errors import UsageError

        known = [p for p in picks if isinstance(p, str) and p in self.ids]  # a custom id, often reused
        indexes = [p for p in picks if isinstance(p, int)]
        after = list(
            dict.fromkeys(known + ([self.ids[p % len(self.ids)] for p in indexes] if self.ids else []))
        )
        custom = custom and f"{custom}-{queue}"  # one queue per custom id: never ambiguous
        after = [i for i in after if i != custom]
        if crash and after:  # the producer dies after the enqueue, before the links
            self.broker.dependencies.link = lambda links: {}  # type: ignore[method-assign]
        from taskq_cli.producer import EnqueueRequest

        found = [self._generation_of(dep) for dep in after]
        before = dict(f for f in found if f is not None)
        request = EnqueueRequest("x", {}, queue=queue, after=after or None, delay=delay, task_id=custom)
        try:
            [written] = self.tq.submit([request])
        except UsageError:
            return  # a dependency dead or gone (cancelled, expired): refused, nothing written
        finally:
            self.broker.dependencies.__dict__.pop("link", None)
        self.ids.append(written.id)
        if not written.duplicate:
            key = (written.queue, written.id)
            self.generation[key] = self.generation.get(key, 0) + 1
            self.waits_for[key] = before

    def _generation_of(self, task_id: str) -> tuple[tuple[str, str], int] | None:
        """(queue, id) of the one task by this id (ids are never in two queues here) and its
        generation; None for an id no longer known."""
        for queue in QUEUES:
            if (queue, task_id) in self.generation:
                return (queue, task_id), self.generation[(queue, task_id)]
        return None

    def _acked(self, job: Fetched, answer: object) -> None:
        from taskq_cli.protocol import HANDED_OFF

        if answer is True or answer == HANDED_OFF:
            self.done.add((job.queue, job.id, self.generation[(job.queue, job.id)]))

    @rule(queue=st.sampled_from(QUEUES))
    def fetch(self, queue: str) -> None:
        job = self.broker.fetch(queue, 10.0, "w")
        if isinstance(job, Fetched):
            self.held.append(job)

    @rule(
        index=st.integers(0, 10),
        outcome=st.sampled_from(["ack", "ack", "retry", "dead"]),
        ttl=st.sampled_from([0.0, 5.0, 600.0]),
        hand_off=st.booleans(),
    )
    def report(self, index: int, outcome: str, ttl: float, hand_off: bool) -> None:
        from taskq_cli.protocol import Ack

        if not self.held:
            return
        job = self.held.pop(index % len(self.held))
        if outcome == "ack":
            self._acked(job, self.broker.report([Ack(job, "1", ttl)])[0])
        else:
            self.broker.fail(job, ERROR, final=outcome == "dead", delay=1.0, max_retries=1)
        if hand_off:  # else the worker died right after its report
            self.broker.dependencies.drain([job.queue])

    @rule(index=st.integers(0, 10))
    def crash(self, index: int) -> None:
        if self.held:
            self.held.pop(index % len(self.held))  # its lease expires; recovery retries or buries it

    @rule(index=st.integers(0, 30), hand_off=st.booleans())
    def cancel(self, index: int, hand_off: bool) -> None:
        if self.ids:
            task_id = self.ids[index % len(self.ids)]
            for queue in QUEUES:
                self.broker.cancel(queue, task_id)
                if hand_off:
                    self.broker.dependencies.drain([queue])

    @rule(index=st.integers(0, 30))
    def dlq_retry(self, index: int) -> None:
        if self.ids:
            task_id = self.ids[index % len(self.ids)]
            for queue in QUEUES:
                self.broker.dlq_retry(queue, [task_id])

    @rule(seconds=st.sampled_from([0.5, 3.0, 12.0]))
    def advance(self, seconds: float) -> None:
        self.clock.ms += int(seconds * 1000)

    @rule()
    def maintain(self) -> None:
        self.maintenance()

    @invariant()
    def waiting_is_consistent(self) -> None:
        for queue in QUEUES:
            k = QueueKeys(self.ns, queue)
            blocked = set(self.raw.zrange(k.blocked, 0, -1))
            records = {i: json.loads(r) for i, r in self.raw.hgetall(k.tasks).items()}
            waiting = {i for i, m in records.items() if m.get("state") == "waiting"}
            assert blocked == waiting, (queue, blocked, waiting)
            for task_id in waiting:
                assert self.raw.scard(k.deps(task_id)) > 0, f"{task_id} waits for nothing"
            assert set(self.raw.zrange(k.unlinked, 0, -1)) <= blocked

    @invariant()
    def released_after_their_dependencies(self) -> None:
        """A task released from waiting had every dependency done: the generation it waited for,
        or a later one; never an earlier task by the same custom id."""
        for queue in QUEUES:
            k = QueueKeys(self.ns, queue)
            for task_id, raw in self.raw.hgetall(k.tasks).items():
                meta = json.loads(raw)
                if "released_at" not in meta or meta.get("state") == "waiting":
                    continue
                for (dep_queue, dep_id), generation in self.waits_for.get((queue, task_id), {}).items():
                    done = {g for q, i, g in self.done if (q, i) == (dep_queue, dep_id)}
                    assert any(g >= generation for g in done), (
                        f"{queue} {task_id} released, but {dep_queue} {dep_id} generation "
                        f">= {generation} never ended done (done: {sorted(done)})"
                    )

    def settle(self) -> None:
        """Time passes, maintenance runs and workers take everything: nothing may stay waiting."""
        from taskq_cli.protocol import Ack

        self.held.clear()
        for _ in range(40):
            self.clock.ms += 15_000  # past leases, retries, delays and the link grace
            self.maintenance()
            while isinstance(job := self.broker.fetch(QUEUES[_ % 2], 10.0, "w"), Fetched):
                self._acked(job, self.broker.report([Ack(job, "1", 600.0)])[0])
                self.broker.dependencies.drain([job.queue])
                self.released_after_their_dependencies()
            stats = self.broker.queue_stats(QUEUES)
            if not any(s.pending or s.scheduled or s.active or s.waiting for s in stats):
                break
        for queue in QUEUES:
            k = QueueKeys(self.ns, queue)
            left = self.raw.zrange(k.blocked, 0, -1)
            assert left == [], f"queue {queue}: stuck waiting: {left}"
            assert self.raw.hlen(k.outbox) == 0 and self.raw.zcard(k.unlinked) == 0
        for kind in ("deps", "dependents", "unlink"):  # memory stays bounded: no link outlives its use
            stray = [key for key in self.raw.scan_iter(match=f"{self.ns}:*:{kind}:*", count=1000)]
            assert stray == [], stray


@LOADED
def test_random_dags_with_crashes_between_steps_never_leave_a_dependent_waiting(redis_url: str) -> None:
    assert redis_url == REDIS_URL
    run_state_machine_as_test(DependencyMachine, settings=machine_settings(50, 40))


@pytest.mark.soak
@LOADED
def test_more_random_dags_release_nothing_early_and_leave_nothing_behind(redis_url: str) -> None:
    """Four times the default run's sequences (the soak run): the release invariant needs a few
    hundred to meet its rarer paths (a custom id reused before its hand-off, a dead dependency)."""
    assert redis_url == REDIS_URL
    run_state_machine_as_test(DependencyMachine, settings=machine_settings(200, 40))
