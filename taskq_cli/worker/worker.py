"""The worker: fetch -> run -> report, under leases kept by their own thread; drains on SIGTERM.

Threads of the worker process, each a small object with a `tick(now)`:
- the waiter (main thread): while the queues are dry, waits on Redis for a wake-up and passes it on
  to the reporter; a burst worker exits here once nothing is left;
- the pool (pool.py / prefork/) runs tasks and hands back outcomes;
- the reporter (reporter.py) is the only one to report and fetch: outcomes and a refill of the slots
  they free go in one round trip;
- the lease keeper (leases.py) renews leases and registers the worker, and nothing else;
- the lease guard (leases.py) stops an execution whose lease could not be renewed in time;
- the maintainer (maintainer.py) promotes due tasks, recovers lost ones and fires cron.
`Slots` (slots.py) holds what they share. Every loop outlives every Redis error: it logs it (once per
outage, see outage.py), backs off, goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from taskq_cli.config import RetryDefaults, kill_after_ack
from taskq_cli.errors import UsageError
from taskq_cli.models import Options, Outcome
from taskq_cli.outage import REDIS_ERRORS, Outage, describe
from taskq_cli.pool import Pool
from taskq_cli.pools import POOL_KINDS, make_pool
from taskq_cli.protocol import WAKE_DUE, FailState, Fetched, Postpone, Report
from taskq_cli.protocol.record import TaskMeta
from taskq_cli.runner import Execution, freeze_startup_heap
from taskq_cli.scheduler import CronRunner, Maintenance
from taskq_cli.stopsignals import StopSignals
from taskq_cli.worker.broker import WorkerBroker
from taskq_cli.worker.handoff import HandOff
from taskq_cli.worker.leases import LeaseGuard, LeaseKeeper, describe_worker
from taskq_cli.worker.maintainer import Maintainer
from taskq_cli.worker.plan import QueuePlan
from taskq_cli.worker.reporter import STOP, Reporter, log_outcome
from taskq_cli.worker.slots import Running, Slots

if TYPE_CHECKING:
    from taskq_cli.metrics import MetricsServer, WorkerMetrics
    from taskq_cli.queue import TaskQueue

log = logging.getLogger("taskq.worker")

IDLE_BLOCK = 1.0  # longest BLPOP on the wake keys; bounds how long a stop request waits


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
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
    ) -> None:
        _check(concurrency, lease, pool, max_tasks_per_child, max_memory_per_child)
        self.tq = tq
        self.broker: WorkerBroker = tq.broker  # mypy: the real Broker has what the loops need
        self.plan, self.concurrency, self.burst = plan, concurrency, burst
        self.grace, self.lease, self.pool_kind = grace, lease, pool
        self.pool: Pool = make_pool(
            pool,
            concurrency,
            tq.registry,
            tq.app_spec,
            tq.middleware,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
        )
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.stopping = threading.Event()  # no new tasks
        self._halted = threading.Event()  # the worker is gone: its loops end
        self.outage = Outage(log)  # what the loops log about Redis trouble
        # the one record of run times: the pool records every outcome into it, the prefetch reads it
        self.runtimes = self.pool.runtimes
        self.slots = Slots(concurrency, self.runtimes)
        self.reporter = Reporter(
            self.broker,
            plan,
            self.slots,
            worker_id=self.id,
            lease=lease,
            prepare=self._prepare,
            launch=self._launch,
            on_result=self._reported,
            stopping=self.stopping,
            outage=self.outage,
            burst=burst,
        )
        self.leases = LeaseKeeper(
            self.broker,
            self.slots,
            lease=lease,
            description=describe_worker(self.id, plan.names, concurrency, pool, list(tq.registry)),
            stop_runs=self._stop_runs,
            outage=self.outage,
        )
        self.metrics: WorkerMetrics | None = None
        self.metrics_server: MetricsServer | None = None
        if metrics_port is not None:  # imported only when asked for: a worker without it loads none of it
            from taskq_cli.metrics import MetricsServer, WorkerMetrics

            self.metrics = WorkerMetrics(plan.names, tq.registry, self.slots.running_by_queue)
            self.metrics_server = MetricsServer(self.metrics, metrics_host, metrics_port)
        self.guard = LeaseGuard(self.slots, lease=lease, pool_kind=pool, stop_runs=self._stop_runs)
        self.handoff = HandOff(tq.broker.dependencies.drain, self.outage, kill_after_ack=kill_after_ack())
        self.maintainer = Maintainer(
            Maintenance(tq.broker, tq.settings.defaults),
            CronRunner(tq.broker) if cron else None,
            plan.names,
            period=lease / 3,
            stopping=self.stopping,
            outage=self.outage,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        StopSignals(self._on_first_signal).install()
        freeze_startup_heap()  # before forking: children inherit it (and share those pages longer)
        self.pool.start(self._on_done)  # children first, while this process has one thread
        if self.metrics_server is not None:
            try:
                self.metrics_server.start()
            except BaseException:
                self.pool.close()
                raise
            log.info("metrics on http://%s:%d/metrics", self.metrics_server.host, self.metrics_server.port)
        threads = [
            threading.Thread(target=self.reporter.run, name="taskq-reporter", daemon=True),
            _loop_thread("taskq-heartbeat", self.leases.tick, self._halted, self.leases.poked),
            _loop_thread("taskq-lease-guard", self.guard.tick, self._halted),
            _loop_thread("taskq-maintainer", self.maintainer.tick, self._halted, self.maintainer.poked),
            _loop_thread("taskq-handoff", self.handoff.tick, self._halted, self.handoff.poked),
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
            code = self._wait_loop()
        finally:
            self.stopping.set()  # the reporter refills no more
            self._drain()
            self.reporter.inbox.put(STOP)
            self._halted.set()
            self.maintainer.poked.set()
            self.leases.poked.set()
            self.handoff.poked.set()
            for thread in threads:
                thread.join(timeout=5)
            self.pool.close()
            self._unregister()
            if self.metrics_server is not None:
                self.metrics_server.stop()
        return code

    def stop(self) -> None:
        """Take no new tasks; `run` returns once in-flight tasks finish or the grace runs out."""
        self.stopping.set()
        self.reporter.idle.set()  # the waiter looks at `stopping` now

    def _on_first_signal(self) -> None:
        log.info(
            "stopping: no new tasks; waiting up to %gs for %d running (signal again to stop at once)",
            self.grace,
            len(self.slots),
        )
        self.stopping.set()

    def poke_maintenance(self, delay: float) -> None:
        self.maintainer.poke(time.monotonic(), delay)

    # -- waiting for work (main thread) -------------------------------------------------------

    def _wait_loop(self) -> int:
        while not self.stopping.is_set():
            if not self.reporter.idle.wait(0.5):
                continue  # the reporter is busy: tasks are pending
            try:
                if self.burst:
                    if self._burst_done():
                        log.info("burst: nothing left to do")
                        return 0
                    continue
                woken = self.broker.wait_for_work(self.plan.names, IDLE_BLOCK)
                self.outage.ok("dispatcher")
            except REDIS_ERRORS as exc:
                if self.burst:
                    log.error("%s", describe(exc))
                    return 1
                self.stopping.wait(self.outage.failed("dispatcher", exc))
                continue
            self.reporter.idle.clear()
            # woken by a task scheduled sooner than the maintainer knew: a pass, after the fetch (a
            # plain enqueue's token asks for none: a pass per pickup doubled an idle worker's work)
            self.reporter.wake(then=(lambda: self.poke_maintenance(0)) if woken == WAKE_DUE else None)
        return 1 if self.reporter.failure else 0

    def _burst_done(self) -> bool:
        """A burst worker is done once nothing is held and nothing became due."""
        if len(self.slots):
            self.slots.wait_change(0.05)
            return False
        if self.reporter.limited:  # tasks are pending, held back by a queue's limits: wait for them
            retry = self.reporter.limited_retry
            self.broker.wait_for_work(
                self.plan.names, IDLE_BLOCK if retry is None else min(retry, IDLE_BLOCK)
            )
            self.reporter.idle.clear()
            self.reporter.wake()
            return False
        if sum(self.broker.promote(q)[0] for q in self.plan.names):
            self.reporter.idle.clear()
            self.reporter.wake()
            return False
        return not len(self.slots) and self.reporter.idle.is_set()

    # -- starting tasks (reporter thread) -------------------------------------------------------

    def _prepare(self, job: Fetched, leased_at: float) -> Running:
        record = job.record
        handler = self.tq.registry.get(record.name)
        if record.unreadable:  # a record written by something else: run it, without those
            log.warning("task %s: unreadable options in its record; using the defaults", job.id)
        defaults = self.tq.settings.defaults
        options = Options.resolve(record.given, handler.retry if handler else None, defaults)
        return Running(
            job, options, time.monotonic(), leased_at + self.lease, pin=_pin(record, options, defaults)
        )

    def _launch(self, runs: list[Running]) -> None:
        if not runs:
            return
        if log.isEnabledFor(logging.INFO):  # skip building the records: a few µs of every short task
            for running in runs:
                _log_started(running.job)
        lease = self.lease
        results = self._dependency_results(runs)
        self.pool.submit_many(  # one hand-off for the batch (one lock, one message per child)
            [
                Execution(
                    r.job.id,
                    r.job.record.name,
                    r.job.queue,
                    r.job.record.attempts,
                    r.options.max_retries,
                    r.job.payload_json,
                    r.options.timeout,
                    r.job.token,
                    lease,
                    results.get(r.job.token, "{}"),
                    r.job.record.headers,
                )
                for r in runs
            ]
        )

    def _dependency_results(self, runs: list[Running]) -> dict[str, str | None]:
        """The results of the dependencies of the tasks about to start (by lease token), as JSON
        objects by id: one read for the whole batch; None for each when Redis refused it."""
        wanted = [r.job for r in runs if r.job.meta.get("deps")]
        if not wanted:
            return {}
        try:
            found = self.tq.broker.dependencies.results([(job.queue, job.id) for job in wanted])
        except REDIS_ERRORS as exc:
            log.warning("could not read dependency results (%s); those attempts fail and are retried", exc)
            return dict.fromkeys(job.token for job in wanted)
        return {job.token: json.dumps(values) for job, values in zip(wanted, found, strict=True)}

    # -- outcomes -----------------------------------------------------------------------------

    def _on_done(self, execution: Execution, outcome: Outcome) -> None:
        """Called by the pool from its own thread; never blocks. The slot frees once the reporter
        has recorded the outcome: a worker never holds more leased tasks than its capacity."""
        self.slots.finish(execution.task_id, execution.token)
        self.reporter.deliver(execution, outcome)

    def _reported(self, running: Running, outcome: Outcome, report: Report, result: bool | str) -> None:
        self._log_outcome(running, outcome, report, result)
        self.handoff.after_report(running.job, result)
        if self.metrics is not None:
            self.metrics.finished(running.job, running.started, outcome, report, result)
        if isinstance(result, FailState) and result.retry_in is not None:
            self.poke_maintenance(result.retry_in)
        elif isinstance(report, Postpone) and result:  # promote it when the limiter lets it pass
            self.poke_maintenance(report.delay)

    _log_outcome = staticmethod(log_outcome)  # an attribute: tests slow it down

    def _stop_runs(self, jobs: list[Fetched]) -> None:
        self.pool.abort([job.token for job in jobs])
        self.slots.drop(jobs)

    # -- stopping ---------------------------------------------------------------------------

    def _drain(self) -> None:
        """Give running tasks the grace period, then stop the rest and put them back at the head of
        their queues without using up an attempt."""
        self.slots.wait_empty(time.monotonic() + self.grace)
        # finished ones only await their report: the reporter still sends it before the worker exits
        unfinished = self.slots.unfinished()
        if not unfinished:
            return
        self.pool.abort([r.job.token for r in unfinished])
        returned = 0
        for running in unfinished:
            try:
                returned += bool(self.broker.requeue(running.job))
            except REDIS_ERRORS as exc:
                log.error("could not return task %s (%s); its lease will bring it back", running.job.id, exc)
        self.slots.drop([r.job for r in unfinished])
        log.warning(
            "grace over: returned %d of %d unfinished tasks to their queues", returned, len(unfinished)
        )

    def _unregister(self) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            self.broker.unregister_worker(self.id)
            self.broker.live_workers()  # and sweep out workers that died without a word


def _pin(record: TaskMeta, options: Options, defaults: RetryDefaults) -> tuple[int, float, float] | None:
    """The retry policy to record on the task for crash recovery: only when the producer did not
    write one and the handler's differs from the defaults that recovery applies otherwise."""
    policy = (options.max_retries, options.backoff_base, options.backoff_max)
    if record.given.retry_policy_given or policy == (
        defaults.max_retries,
        defaults.backoff_base,
        defaults.backoff_max,
    ):
        return None
    return policy


def _loop_thread(
    name: str, tick: Callable[[float], float], halted: threading.Event, poked: threading.Event | None = None
) -> threading.Thread:
    """A thread running `tick` until `halted`, sleeping what it asks between ticks (or until
    `poked`)."""

    def loop() -> None:
        while not halted.is_set():
            wait = tick(time.monotonic())
            if poked is None:
                halted.wait(wait)
            else:
                poked.wait(max(wait, 0.005))
                poked.clear()

    return threading.Thread(target=loop, name=name, daemon=True)


def _log_started(job: Fetched) -> None:
    name, attempt = job.record.name, job.record.attempts
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


def _check(
    concurrency: int,
    lease: float,
    pool: str,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
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
