"""The worker: fetch -> run -> ack/fail, under leases renewed by a heartbeat; drains on SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

from taskq_cli.config import check_name
from taskq_cli.errors import UsageError
from taskq_cli.models import Options, Outcome, OutcomeKind, backoff_delay
from taskq_cli.pool import ThreadPool
from taskq_cli.protocol import Fetched, Malformed
from taskq_cli.registry import TaskContext
from taskq_cli.runner import run_task
from taskq_cli.scheduler import REDIS_DOWN, Maintenance, redis_backoff

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue

log = logging.getLogger("taskq.worker")
T = TypeVar("T")

IDLE_BLOCK = 1.0  # longest BLPOP on the wake keys; bounds how long a stop request waits


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
    ) -> None:
        if concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if lease < 0.3:
            raise UsageError("--lease must be at least 300ms")
        self.tq = tq
        self.broker = tq.broker
        self.plan = plan
        self.concurrency = concurrency
        self.burst = burst
        self.grace = grace
        self.lease = lease
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.maintenance = Maintenance(self.broker, tq.settings.defaults)
        self.stopping = threading.Event()  # no new tasks
        self._halted = threading.Event()  # heartbeat off: the worker is gone
        self._finished = threading.Event()  # a task just finished
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._inflight: dict[str, Fetched] = {}
        self._started_at = int(time.time() * 1000)
        self._pool: ThreadPool | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signal_handlers()
        self._pool = ThreadPool(self.concurrency)
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="taskq-heartbeat", daemon=True)
        heartbeat.start()
        log.info(
            "worker %s serving %s (concurrency %d, lease %gs)",
            self.id,
            ",".join(self.plan.names),
            self.concurrency,
            self.lease,
        )
        try:
            code = self._dispatch_loop()
        finally:
            self._drain()
            self._halted.set()
            heartbeat.join(timeout=2)
            self._pool.shutdown()
            self._unregister()
        return code

    def stop(self) -> None:
        """Take no new tasks; `run` returns once in-flight tasks finish or the grace runs out."""
        self.stopping.set()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self.stopping.is_set():
                log.warning("second signal: stopping at once; running tasks return through leases")
                os._exit(1)
            log.info(
                "stopping: no new tasks; waiting up to %gs for %d running (signal again to stop at once)",
                self.grace,
                len(self._inflight),
            )
            self.stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # -- fetching ---------------------------------------------------------------------------

    def _dispatch_loop(self) -> int:
        failures = 0
        while not self.stopping.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            try:
                job = self._fetch_next()
                failures = 0
                idle_done = job is None and self._wait_for_work()
            except REDIS_DOWN as exc:
                self._slots.release()
                failures += 1
                if self.burst:
                    log.error("Redis unreachable: %s", exc)
                    return 1
                log.error("Redis unreachable (%s); retrying in %.1fs", exc, redis_backoff(failures))
                self.stopping.wait(redis_backoff(failures))
                continue
            if job is None:
                self._slots.release()
                if idle_done:
                    log.info("burst: nothing left to do")
                    return 0
                continue
            self._start(job)
        return 0

    def _fetch_next(self) -> Fetched | None:
        for queue in self.plan.order():
            for _ in range(100):  # malformed entries are buried on the way; keep fetching
                got = self.broker.fetch(queue, self.lease, self.id)
                if not isinstance(got, Malformed):
                    break
                log.error(
                    "queue %s: malformed message moved to the dead-letter queue as %s", queue, got.dead_id
                )
            if isinstance(got, Fetched):
                return got
        return None

    def _wait_for_work(self) -> bool:
        """Nothing was pending. Returns True when a burst worker is done."""
        if not self.burst:
            self.broker.wait_for_work(self.plan.names, IDLE_BLOCK)
            return False
        if self._inflight:
            self._finished.wait(0.05)
            self._finished.clear()
            return False
        return sum(self.broker.promote(q)[0] for q in self.plan.names) == 0

    # -- executing --------------------------------------------------------------------------

    def _start(self, job: Fetched) -> None:
        with self._lock:
            self._inflight[job.id] = job
        assert self._pool is not None
        self._pool.submit(lambda: self._execute(job))

    def _execute(self, job: Fetched) -> None:
        try:
            name = str(job.meta.get("name", ""))
            handler = self.tq.registry.get(name)
            options = Options.resolve(job.meta, handler.retry if handler else None, self.tq.settings.defaults)
            if handler is not None and "max_retries" not in job.meta:
                self._pin(job, options)
            attempt = int(job.meta.get("attempts", 1))
            ctx = TaskContext(job.id, name, job.queue, attempt, options.max_retries)
            started = time.monotonic()
            outcome = run_task(handler, name, job.payload_json, ctx, options.timeout)
            self._report(job, outcome, options, time.monotonic() - started)
        except Exception:  # never let a slot thread die: the lease brings the task back
            log.exception("task %s: internal error while running it", job.id)
        finally:
            with self._lock:
                self._inflight.pop(job.id, None)
            self._slots.release()
            self._finished.set()

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

    def _report(self, job: Fetched, outcome: Outcome, options: Options, seconds: float) -> None:
        name, attempt = job.meta.get("name"), job.meta.get("attempts")
        if outcome.kind is OutcomeKind.SUCCESS:
            if self._with_redis(lambda: self.broker.ack(job, outcome.result_json, options.result_ttl)):
                log.info("task %s %s attempt %s: done in %.3fs", job.id, name, attempt, seconds)
            else:
                log.warning("task %s: finished but its lease was lost; not recorded", job.id)
            return
        error = outcome.error or {"type": "Error", "message": "", "traceback": ""}
        delay = outcome.delay
        if delay is None:
            delay = backoff_delay(int(attempt or 1), options.backoff_base, options.backoff_max)
        final = outcome.kind is OutcomeKind.FAIL
        state = self._with_redis(
            lambda: self.broker.fail(job, error, final=final, delay=delay, max_retries=options.max_retries)
        )
        if not state:
            log.warning("task %s: failed but its lease was lost; not recorded", job.id)
            return
        then = "dead" if state == "dead" else f"retry in {delay:.1f}s"
        log.warning(
            "task %s %s attempt %s: %s: %s (%s)",
            job.id,
            name,
            attempt,
            error["type"],
            error["message"].splitlines()[0] if error["message"] else "",
            then,
        )

    def _with_redis(self, call: Callable[[], T]) -> T | None:
        """Run a report until Redis answers: a finished attempt's outcome is worth waiting for.
        Gives up only when the worker is gone (the lease then brings the task back)."""
        failures = 0
        while True:
            try:
                return call()
            except REDIS_DOWN as exc:
                failures += 1
                if self._halted.is_set():
                    return None
                log.error("Redis unreachable while reporting (%s); retrying", exc)
                time.sleep(redis_backoff(failures))

    # -- heartbeat and maintenance ----------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        next_beat = next_maintenance = 0.0
        while not self._halted.is_set():
            now = time.monotonic()
            try:
                if now >= next_beat:
                    self._beat()
                    next_beat = now + self.lease / 3
                if now >= next_maintenance and not self.stopping.is_set():
                    wait = self.maintenance.tick(self.plan.names)
                    next_maintenance = now + min(wait, self.lease / 3)
            except REDIS_DOWN as exc:
                log.error("heartbeat: Redis unreachable (%s)", exc)
                next_beat = next_maintenance = now + 0.5
            self._halted.wait(max(min(next_beat, next_maintenance) - time.monotonic(), 0.005))

    def _beat(self) -> None:
        with self._lock:
            running = list(self._inflight.values())
        by_queue: dict[str, list[tuple[str, str]]] = {}
        for job in running:
            by_queue.setdefault(job.queue, []).append((job.id, job.token))
        for lost in self.broker.renew(by_queue, self.lease):
            log.warning("task %s: lease lost (recovered elsewhere); its outcome will be ignored", lost)
        now = int(time.time() * 1000)
        info = {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(self.plan.names),
            "concurrency": self.concurrency,
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

    # -- stopping ---------------------------------------------------------------------------

    def _drain(self) -> None:
        """Give running tasks the grace period, then put the rest back at the head of their
        queues without using up an attempt."""
        deadline = time.monotonic() + self.grace
        while self._inflight and time.monotonic() < deadline:
            self._finished.wait(min(0.1, max(deadline - time.monotonic(), 0)))
            self._finished.clear()
        with self._lock:
            unfinished = list(self._inflight.values())
        returned = 0
        for job in unfinished:
            try:
                returned += bool(self.broker.requeue(job))
            except REDIS_DOWN as exc:
                log.error("could not return task %s (%s); its lease will bring it back", job.id, exc)
        if unfinished:
            log.warning(
                "grace over: returned %d of %d unfinished tasks to their queues", returned, len(unfinished)
            )

    def _unregister(self) -> None:
        with contextlib.suppress(*REDIS_DOWN):
            self.broker.unregister_worker(self.id)
