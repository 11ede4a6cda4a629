"""The worker: fetch -> run -> report, under leases renewed by a heartbeat; drains on SIGTERM.

Threads of the worker process:
- the dispatcher (main thread) fetches as many tasks as there are free slots, in one round trip, and
  submits them to the pool; it waits on Redis when nothing is pending;
- the pool (pool.py / prefork.py) runs them and hands back outcomes;
- the reporter sends the outcomes that have piled up to Redis and, for a worker of one queue, fetches
  as many tasks as that frees slots in the same round trip: one round trip per batch of tasks;
- the heartbeat renews leases, registers the worker, promotes due tasks and recovers lost ones;
- the lease guard stops an execution whose lease could not be renewed in time (Redis unreachable or
  refusing): by the time its lease expires and another worker may take the task, it no longer runs.
Every loop outlives every Redis error: it logs it (once per outage, see outage.py), backs off, goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from taskq_cli.config import check_name
from taskq_cli.errors import UsageError
from taskq_cli.models import Options, Outcome, OutcomeKind, backoff_delay
from taskq_cli.outage import REDIS_ERRORS, Outage, describe
from taskq_cli.pool import POOL_KINDS, Pool, make_pool
from taskq_cli.protocol import Ack, Failure, Fetched, Malformed
from taskq_cli.runner import Execution
from taskq_cli.scheduler import CronRunner, Maintenance
from taskq_cli.stopsignals import StopSignals

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue

log = logging.getLogger("taskq.worker")
T = TypeVar("T")

IDLE_BLOCK = 1.0  # longest BLPOP on the wake keys; bounds how long a stop request waits
# Honest prefetch: a worker holds ahead (leased, not started) only tasks that start within about
# PREFETCH_WINDOW: while recent tasks ran shorter than that on average, up to PREFETCH_WINDOW / average
# run time per slot (at most MAX_AHEAD_PER_SLOT), so a slot never waits for a round trip to Redis.
# With tasks of PREFETCH_WINDOW or longer it holds exactly as many tasks as it has slots.
PREFETCH_WINDOW = 0.05
MAX_AHEAD_PER_SLOT = 16
HELD_LONG = 0.5  # seconds; a slot whose task was fetched this long ago may not free up soon
RUNTIME_SAMPLES = 8  # tasks seen before prefetching starts
PRUNE_EVERY = 15.0  # seconds between sweeps of dead workers out of the worker registry
# The lease guard stops an execution this share of the lease before its lease expires (at most
# GUARD_MARGIN_MAX): a SIGKILL and the end of a handler's thread take a moment.
GUARD_MARGIN = 0.1
GUARD_MARGIN_MAX = 1.0


@dataclass(frozen=True)
class QueuePlan:
    """`a,b,c` (strict priority, in that order) or `a:5,b:1` (weighted random order per fetch)."""

    names: tuple[str, ...]
    weights: tuple[float, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> QueuePlan:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise UsageError("--queues needs at least one queue name")
        names: list[str] = []
        weights: list[float] = []
        for part in parts:
            name, _, weight = part.partition(":")
            names.append(check_name("queue", name))
            weights.append(_weight(part, weight) if weight else 1.0)
        if len(set(names)) != len(names):
            raise UsageError(f"--queues names a queue twice: {text!r}")
        weighted = any(":" in p for p in parts)
        return cls(tuple(names), tuple(weights) if weighted else None)

    def order(self, rng: random.Random | None = None) -> list[str]:
        """The queues to try for this fetch. Weighted: a weighted random permutation, so the first
        non-empty queue is chosen with probability proportional to its weight among non-empty ones."""
        if self.weights is None:
            return list(self.names)
        choose = rng.uniform if rng is not None else random.uniform
        pool = list(zip(self.names, self.weights, strict=True))
        ordered: list[str] = []
        while pool:
            pick = choose(0, sum(w for _, w in pool))
            for index, (name, weight) in enumerate(pool):
                pick -= weight
                if pick <= 0 or index == len(pool) - 1:
                    ordered.append(name)
                    pool.pop(index)
                    break
        return ordered


def _weight(part: str, text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = -1.0
    if not weight > 0:
        raise UsageError(f"invalid queue weight in {part!r}: use name:N with N > 0")
    return weight


@dataclass
class Running:
    job: Fetched
    options: Options
    started: float
    lease_until: float  # monotonic; Redis's lease ends no sooner (counted from before the request)
    finished: bool = False  # the outcome is known; only its report may still be in flight


class Worker:
    def __init__(
        self,
        tq: TaskQueue,
        plan: QueuePlan,
        concurrency: int,
        *,
        burst: bool = False,
        grace: float = 30.0,
        lease: float = 30.0,
        pool: str = "processes",
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        cron: bool = True,
    ) -> None:
        if concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if lease < 0.3:
            raise UsageError("--lease must be at least 300ms")
        if pool not in POOL_KINDS:
            raise UsageError(f"invalid --pool {pool!r}: use {', '.join(POOL_KINDS)}")
        for name, value in (
            ("--max-tasks-per-child", max_tasks_per_child),
            ("--max-memory-per-child", max_memory_per_child),
        ):
            if value is not None and value < 1:
                raise UsageError(f"{name} must be at least 1")
        self.tq = tq
        self.broker = tq.broker
        self.plan = plan
        self.concurrency = concurrency
        self.burst = burst
        self.grace = grace
        self.lease = lease
        self.pool_kind = pool
        self.pool: Pool = make_pool(
            pool,
            concurrency,
            tq.registry,
            tq.app_spec,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
        )
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.maintenance = Maintenance(self.broker, tq.settings.defaults)
        self.cron = CronRunner(self.broker) if cron else None
        self.stopping = threading.Event()  # no new tasks
        self._halted = threading.Event()  # heartbeat off: the worker is gone
        self._slots = threading.Condition()  # guards _running, _avg_runtime
        self._avg_runtime = 0.0  # moving average of handler run times (s)
        self._runtime_samples = 0
        self._running: dict[str, Running] = {}
        self._reserved = 0  # slots a fetch in flight (dispatcher's or reporter's) will fill
        self._woken = False  # the dispatcher's wait on the wake keys ended with a wake-up
        self._outcomes: queue.SimpleQueue[tuple[Execution, Outcome] | None] = queue.SimpleQueue()
        self._started_at = int(time.time() * 1000)
        self._next_maintenance = 0.0  # monotonic time of the next promote/recover pass
        self._poked = threading.Event()  # wakes the heartbeat thread early
        self._next_prune = 0.0
        self.outage = Outage(log)  # what the loops log about Redis trouble
        self._guard_margin = min(lease * GUARD_MARGIN, GUARD_MARGIN_MAX)

    # -- lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signal_handlers()
        self.pool.start(self._on_done)  # children first, while this process has one thread
        threads = [
            threading.Thread(target=self._report_loop, name="taskq-reporter", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name="taskq-heartbeat", daemon=True),
            threading.Thread(target=self._guard_loop, name="taskq-lease-guard", daemon=True),
        ]
        for thread in threads:
            thread.start()
        log.info(
            "worker %s serving %s (%s pool, concurrency %d, lease %gs)",
            self.id,
            ",".join(self.plan.names),
            self.pool_kind,
            self.concurrency,
            self.lease,
        )
        try:
            code = self._dispatch_loop()
        finally:
            self.stopping.set()  # the reporter refills no more
            self._drain()
            self._outcomes.put(None)
            self._halted.set()
            self._poked.set()
            for thread in threads:
                thread.join(timeout=5)
            self.pool.close()
            self._unregister()
        return code

    def stop(self) -> None:
        """Take no new tasks; `run` returns once in-flight tasks finish or the grace runs out."""
        self.stopping.set()
        with self._slots:
            self._slots.notify_all()

    def _install_signal_handlers(self) -> None:
        def on_first() -> None:
            log.info(
                "stopping: no new tasks; waiting up to %gs for %d running (signal again to stop at once)",
                self.grace,
                len(self._running),
            )
            self.stopping.set()

        StopSignals(on_first).install()

    # -- fetching ---------------------------------------------------------------------------

    def _dispatch_loop(self) -> int:
        while not self.stopping.is_set():
            with self._slots:
                wanted = self._reserve(freed=0)
                if wanted <= 0:
                    self._slots.wait(0.5)
                    continue
            try:
                sent = time.monotonic()
                try:
                    jobs, buried = self._fetch(wanted)
                except BaseException:
                    self._unreserve(wanted)
                    raise
                self._take(jobs, reserved=wanted, leased_at=sent)
                if self._woken:  # maybe by a task scheduled sooner than we knew; after the fetch,
                    self._woken = False  # so that the pass does not delay the pickup
                    self.poke_maintenance(0)
                self.outage.ok("dispatcher")
                if not jobs and not buried and self._idle():
                    log.info("burst: nothing left to do")
                    return 0
            except REDIS_ERRORS as exc:
                if self.burst:
                    log.error("%s", describe(exc))
                    return 1
                self.stopping.wait(self.outage.failed("dispatcher", exc))
        return 0

    def _reserve(self, freed: int) -> int:
        """Claim the slots free once `freed` held tasks are reported, for a fetch about to be sent
        (lock held). The dispatcher and the reporter both fetch: a claim keeps them from filling the
        same slots twice until `_take` turns it into running tasks."""
        if self.stopping.is_set():
            return 0
        free = max(self._capacity() - (len(self._running) - freed) - self._reserved, 0)
        self._reserved += free
        return free

    def _unreserve(self, count: int) -> None:
        with self._slots:
            self._reserved -= count
            self._slots.notify_all()

    def _buried(self, found: list[Fetched | Malformed]) -> list[Fetched]:
        """The tasks among fetched entries; logs the malformed ones fetch moved to the dead letters."""
        jobs: list[Fetched] = []
        for got in found:
            if isinstance(got, Malformed):
                log.error(
                    "queue %s: malformed message moved to the dead-letter queue as %s", got.queue, got.dead_id
                )
            else:
                jobs.append(got)
        return jobs

    def _fetch(self, wanted: int) -> tuple[list[Fetched], int]:
        """Up to `wanted` tasks, taking queues in the plan's order for this round; also returns how
        many malformed entries were buried on the way (more may wait behind them)."""
        jobs: list[Fetched] = []
        buried = 0
        for name in self.plan.order():
            found = self.broker.fetch_many(name, wanted - len(jobs), self.lease, self.id)
            taken = self._buried(found)
            buried += len(found) - len(taken)
            jobs += taken
            if len(jobs) >= wanted:
                break
        return jobs, buried

    def _idle(self) -> bool:
        """Nothing was pending. Returns True when a burst worker is done."""
        if not self.burst:
            self._woken = self.broker.wait_for_work(self.plan.names, IDLE_BLOCK)
            return False
        with self._slots:
            if self._running or self._reserved:
                self._slots.wait(0.05)
                return False
        return sum(self.broker.promote(q)[0] for q in self.plan.names) == 0

    # -- executing --------------------------------------------------------------------------

    def _take(
        self, jobs: list[Fetched], reserved: int, leased_at: float, reported: Sequence[Running] = ()
    ) -> None:
        """Start fetched tasks in place of a claim of `reserved` slots (and of `reported` attempts,
        whose outcomes are recorded): in one step under the lock, so those slots are never seen free
        and unfilled in between. `leased_at`: when the fetch that leased them was sent."""
        runs = [self._prepare(job, leased_at) for job in jobs]
        with self._slots:
            self._reserved -= reserved
            for running in reported:
                self._forget(running.job)
            for running in runs:
                self._running[running.job.id] = running
            self._slots.notify_all()
        for running in runs:
            self._launch(running)

    def _prepare(self, job: Fetched, leased_at: float) -> Running:
        handler = self.tq.registry.get(str(job.meta.get("name", "")))
        retry, defaults = handler.retry if handler else None, self.tq.settings.defaults
        try:
            options = Options.resolve(job.meta, retry, defaults)
        except (TypeError, ValueError):  # a record written by something else: run it, with defaults
            log.warning("task %s: unreadable options in its record; using the defaults", job.id)
            options = Options.resolve({}, retry, defaults)
        return Running(job, options, time.monotonic(), leased_at + self.lease)

    def _launch(self, running: Running) -> None:
        job, options = running.job, running.options
        name = str(job.meta.get("name", ""))
        if name in self.tq.registry and "max_retries" not in job.meta:
            self._pin(job, options)
        attempt = int(job.meta.get("attempts", 1))
        if log.isEnabledFor(logging.INFO):  # skip building the record: a few µs of every short task
            self._log_started(job, name, attempt)
        self.pool.submit(
            Execution(
                job.id,
                name,
                job.queue,
                attempt,
                options.max_retries,
                job.payload_json,
                options.timeout,
                job.token,
            )
        )

    @staticmethod
    def _log_started(job: Fetched, name: str, attempt: int) -> None:
        log.info(
            "task %s %s attempt %d: started",
            job.id,
            name,
            attempt,
            extra={
                "fields": {
                    "event": "started",
                    "task_id": job.id,
                    "task": name,
                    "queue": job.queue,
                    "attempt": attempt,
                }
            },
        )

    def _pin(self, job: Fetched, options: Options) -> None:
        """The producer did not know this handler: record its retry policy for crash recovery."""
        d = self.tq.settings.defaults
        if (options.max_retries, options.backoff_base, options.backoff_max) != (
            d.max_retries,
            d.backoff_base,
            d.backoff_max,
        ):
            self._with_redis(
                lambda: self.broker.pin_options(
                    job, options.max_retries, options.backoff_base, options.backoff_max
                )
            )

    def _on_done(self, execution: Execution, outcome: Outcome) -> None:
        """Called by the pool from its own thread; never blocks. The slot frees once the reporter has
        recorded the outcome (`_take` then wakes the dispatcher): a worker never holds more leased tasks
        than its capacity."""
        with self._slots:
            if self._holds(execution.task_id, execution.token):
                self._running[execution.task_id].finished = True
            self._runtime_samples += 1
            self._avg_runtime += (outcome.runtime - self._avg_runtime) * 0.2
        self._outcomes.put((execution, outcome))

    def _capacity(self) -> int:
        """How many leased tasks this worker may hold (caller holds the lock). Tasks ahead are held
        only for slots that free up soon: a slot held by a task for over HELD_LONG (a long task among
        short ones, or tasks already waiting too long) gets none, so a worker whose slots are all
        taken by long tasks holds nothing that an idle worker could run."""
        if self._runtime_samples < RUNTIME_SAMPLES or self._avg_runtime >= PREFETCH_WINDOW:
            return self.concurrency
        ahead = min(MAX_AHEAD_PER_SLOT, max(1, int(PREFETCH_WINDOW / max(self._avg_runtime, 1e-6))))
        held_since = time.monotonic() - HELD_LONG
        long_held = sum(1 for r in self._running.values() if not r.finished and r.started < held_since)
        return self.concurrency + ahead * max(self.concurrency - long_held, 0)

    # -- reporting --------------------------------------------------------------------------

    def _report_loop(self) -> None:
        while True:
            first = self._outcomes.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 256:
                try:
                    more = self._outcomes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._outcomes.put(None)
                    break
                batch.append(more)
            try:
                self._report(batch)
            except Exception:  # a bug: without a reporter no slot ever frees, so stop instead of hanging
                log.exception("reporter failed; stopping (unreported tasks come back through their leases)")
                self.stop()
                return

    def _report(self, batch: list[tuple[Execution, Outcome]]) -> None:
        """Record outcomes and, for a worker of one queue, fetch as many tasks as they free slots in
        the same round trip. A worker of several queues leaves fetching to the dispatcher alone: two
        fetchers racing would break their order (a lower queue's task could start before a higher
        one's that was pending first)."""
        with self._slots:
            items = [(self._running[e.task_id], o) for e, o in batch if self._holds(e.task_id, e.token)]
            refill = self._reserve(freed=len(items)) if len(self.plan.names) == 1 else 0
        reports = [self._report_for(running, outcome) for running, outcome in items]
        queue = self.plan.names[0] if refill else None
        sent = time.monotonic()

        def report_and_fetch() -> tuple[list[bool | str], list[Fetched | Malformed]]:
            nonlocal sent
            sent = time.monotonic()  # of the call that worked: the leases of what it fetched
            return self.broker.report_and_fetch(reports, queue, refill, self.lease, self.id)

        try:
            answer = self._with_redis(report_and_fetch) if reports or refill else None
        except BaseException:
            self._unreserve(refill)
            raise
        results, found = answer if answer is not None else ([""] * len(items), [])
        for (running, outcome), report, result in zip(items, reports, results, strict=True):
            self._log_outcome(running, outcome, report, result)
            if isinstance(report, Failure) and result == "scheduled":
                self.poke_maintenance(report.delay)
        self._take(
            self._buried(found), reserved=refill, leased_at=sent, reported=[running for running, _ in items]
        )

    def _report_for(self, running: Running, outcome: Outcome) -> Ack | Failure:
        job, options = running.job, running.options
        if outcome.kind is OutcomeKind.SUCCESS:
            return Ack(job, outcome.result_json, options.result_ttl)
        error = outcome.error or {"type": "Error", "message": "", "traceback": ""}
        delay = outcome.delay
        if delay is None:
            delay = backoff_delay(int(job.meta.get("attempts", 1)), options.backoff_base, options.backoff_max)
        return Failure(job, error, outcome.kind is OutcomeKind.FAIL, delay, options.max_retries)

    def _log_outcome(
        self, running: Running, outcome: Outcome, report: Ack | Failure, result: bool | str | None
    ) -> None:
        if result and isinstance(report, Ack) and not log.isEnabledFor(logging.INFO):
            return
        job = running.job
        name, attempt = job.meta.get("name"), job.meta.get("attempts")
        fields: dict[str, object] = {
            "task_id": job.id,
            "task": name,
            "queue": job.queue,
            "attempt": attempt,
            "duration": round(time.monotonic() - running.started, 6),
        }
        if not result:
            log.warning(
                "task %s: outcome not recorded: its lease was lost",
                job.id,
                extra={"fields": {**fields, "event": "lease_lost"}},
            )
        elif isinstance(report, Ack):
            log.info(
                "task %s %s attempt %s: done in %.3fs",
                job.id,
                name,
                attempt,
                fields["duration"],
                extra={"fields": {**fields, "event": "done"}},
            )
        else:
            then = "dead" if result == "dead" else f"retry in {report.delay:.1f}s"
            first_line = (report.error.get("message") or "").splitlines()[:1]
            log.warning(
                "task %s %s attempt %s: %s: %s (%s)",
                job.id,
                name,
                attempt,
                report.error.get("type"),
                first_line[0] if first_line else "",
                then,
                extra={
                    "fields": {
                        **fields,
                        "event": "failed",
                        "error": report.error.get("type"),
                        "message": report.error.get("message"),
                        "then": result,
                    }
                },
            )

    def _with_redis(self, call: Callable[[], T]) -> T | None:
        """Run a report until Redis answers: a finished attempt's outcome is worth waiting for.
        Gives up only when the worker is gone (the lease then brings the task back)."""
        loop = "reporter" if threading.current_thread().name == "taskq-reporter" else "dispatcher"
        while True:
            try:
                answer = call()
            except REDIS_ERRORS as exc:
                if self._halted.is_set():
                    return None
                time.sleep(self.outage.failed(loop, exc))
                continue
            self.outage.ok(loop)
            return answer

    # -- heartbeat and maintenance ----------------------------------------------------------

    def poke_maintenance(self, delay: float) -> None:
        """Run the promote/recover pass within `delay` seconds (a retry or delay just became due
        sooner than the pass planned)."""
        with self._slots:
            self._next_maintenance = min(self._next_maintenance, time.monotonic() + delay)
        self._poked.set()

    def _heartbeat_loop(self) -> None:
        """Two loops in one thread, each backing off on its own: the heartbeat (renew leases,
        register) and maintenance (promote, recover, cron)."""
        next_beat = 0.0
        while not self._halted.is_set():
            now = time.monotonic()
            with self._slots:
                maintenance_due = self._next_maintenance <= now
            if now >= next_beat:
                failed = self._survive("heartbeat", self._beat)
                next_beat = now + (self.lease / 3 if failed is None else failed)
            if maintenance_due and not self.stopping.is_set():
                with self._slots:
                    self._next_maintenance = now + self.lease / 3
                failed = self._survive("maintenance", self._maintain)
                if failed is not None:
                    self.poke_maintenance(failed)
            with self._slots:
                wake_at = min(next_beat, self._next_maintenance)
            self._poked.wait(max(wake_at - time.monotonic(), 0.005))
            self._poked.clear()

    def _survive(self, loop: str, step: Callable[[], None]) -> float | None:
        """Run one step of a loop; None when it worked, else how long the loop backs off. Nothing
        stops these loops: without the heartbeat, leases lapse under running tasks."""
        try:
            step()
        except REDIS_ERRORS as exc:
            return self.outage.failed(loop, exc)
        except Exception:  # a bug: loud, but the loop goes on
            log.exception("%s: unexpected error; retrying", loop)
            return self.outage.failed(loop, RuntimeError("unexpected error"))
        self.outage.ok(loop)
        return None

    def _maintain(self) -> None:
        wait = self.maintenance.tick(self.plan.names)
        if self.cron is not None:
            wait = min(wait, self.cron.tick())
        self.poke_maintenance(wait)

    def _beat(self) -> None:
        with self._slots:
            running = [r.job for r in self._running.values() if not r.finished]
        by_queue: dict[str, list[tuple[str, str]]] = {}
        for job in running:
            by_queue.setdefault(job.queue, []).append((job.id, job.token))
        renewed = {job.id: job for job in running}
        sent = time.monotonic()
        lost_ids = set(self.broker.renew(by_queue, self.lease))
        with self._slots:  # a task that finished meanwhile was acked, not lost
            lost = [
                renewed[i]
                for i in lost_ids
                if self._holds(i, renewed[i].token) and not self._running[i].finished
            ]
            for job in running:
                if job.id not in lost_ids and self._holds(job.id, job.token):
                    self._running[job.id].lease_until = sent + self.lease
        if lost:
            self._abandon(lost)
        now = int(time.time() * 1000)
        info = {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(self.plan.names),
            "concurrency": self.concurrency,
            "pool": self.pool_kind,
            "started_at": self._started_at,
            "heartbeat_at": now,
            "active": [
                {
                    "id": j.id,
                    "name": j.meta.get("name"),
                    "queue": j.queue,
                    "started_at": j.meta.get("started_at"),
                }
                for j in running
            ],
        }
        self.broker.register_worker(self.id, info, ttl=max(self.lease, 3.0))
        if time.monotonic() >= self._next_prune:  # drop registry entries of workers that died
            self._next_prune = time.monotonic() + PRUNE_EVERY
            self.broker.live_workers()

    # -- the lease guard -------------------------------------------------------------------

    def _guard_loop(self) -> None:
        """Stop every execution whose lease may be about to expire unrenewed. Its own thread: the
        heartbeat may hang in a call to an unresponsive Redis for longer than the lease."""
        while not self._halted.is_set():
            now = time.monotonic()
            with self._slots:
                held = [r for r in self._running.values() if not r.finished]
            expired = [r for r in held if r.lease_until - self._guard_margin <= now]
            if expired:
                self._expire(expired, now)
            soonest = min((r.lease_until for r in held if r not in expired), default=now + self.lease)
            # a task fetched meanwhile has a whole lease ahead: waking at lease / 3 is soon enough
            self._halted.wait(min(max(soonest - self._guard_margin - now, 0.005), self.lease / 3))

    def _expire(self, runs: list[Running], now: float) -> None:
        # a sync handler in the threads pool cannot be stopped: its thread runs on, its result dropped
        how = (
            "its thread cannot be stopped; dropping its result"
            if self.pool_kind == "threads"
            else "stopping it"
        )
        for running in runs:
            log.warning(
                "task %s: lease not renewed for %.1fs (lease %gs); %s so that it never runs twice at "
                "once (the task comes back once its lease expires)",
                running.job.id,
                now - (running.lease_until - self.lease),
                self.lease,
                how,
                extra={"fields": {"event": "lease_expired", "task_id": running.job.id}},
            )
        self._stop_runs([running.job for running in runs])

    def _abandon(self, jobs: list[Fetched]) -> None:
        """These attempts lost their lease (cancelled, or recovered while this worker was cut off):
        someone else owns the task now, so stop running it."""
        for job in jobs:
            log.warning("task %s: lease lost (cancelled or recovered elsewhere); stopping it", job.id)
        self._stop_runs(jobs)

    def _stop_runs(self, jobs: list[Fetched]) -> None:
        self.pool.abort([job.token for job in jobs])
        with self._slots:
            for job in jobs:
                self._forget(job)
            self._slots.notify_all()

    def _holds(self, task_id: str, token: str) -> bool:
        """Whether this attempt (not an earlier or later one of the same task) is held (lock held)."""
        running = self._running.get(task_id)
        return running is not None and running.job.token == token

    def _forget(self, job: Fetched) -> None:
        """Drop this attempt's entry, never a newer attempt of the same task (lock held)."""
        if self._holds(job.id, job.token):
            del self._running[job.id]

    # -- stopping ---------------------------------------------------------------------------

    def _drain(self) -> None:
        """Give running tasks the grace period, then stop the rest and put them back at the head of
        their queues without using up an attempt."""
        deadline = time.monotonic() + self.grace
        with self._slots:
            while self._running and time.monotonic() < deadline:
                self._slots.wait(min(0.1, max(deadline - time.monotonic(), 0)))
            # finished ones only await their report: the reporter still sends it before the worker exits
            unfinished = [r for r in self._running.values() if not r.finished]
        if not unfinished:
            return
        self.pool.abort([r.job.token for r in unfinished])
        returned = 0
        for running in unfinished:
            try:
                returned += bool(self.broker.requeue(running.job))
            except REDIS_ERRORS as exc:
                log.error("could not return task %s (%s); its lease will bring it back", running.job.id, exc)
        with self._slots:
            for running in unfinished:
                self._forget(running.job)
        log.warning(
            "grace over: returned %d of %d unfinished tasks to their queues", returned, len(unfinished)
        )

    def _unregister(self) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            self.broker.unregister_worker(self.id)
            self.broker.live_workers()  # and sweep out workers that died without a word
