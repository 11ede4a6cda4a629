"""The reporter: the only thread that reports outcomes and fetches tasks. Each tick sends the
outcomes that piled up and fetches as many tasks as there are free slots, in one round trip (more
only when the first queue of the plan runs short); a worker never has two fetchers racing, so a
lower queue's task never starts before a higher one's that was pending first."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

from taskq_cli.models import Decision, Outcome, Verdict, decide
from taskq_cli.outage import REDIS_ERRORS, Outage, describe
from taskq_cli.protocol import Ack, FailState, Failure, Fetched, Limited, Malformed, Postpone, Report
from taskq_cli.runner import Execution
from taskq_cli.states import TaskState
from taskq_cli.worker.broker import WorkerBroker
from taskq_cli.worker.plan import QueuePlan
from taskq_cli.worker.slots import Running, Slots

log = logging.getLogger("taskq.worker")

IDLE: Final = 1.0  # seconds a tick may wait for news when it has nothing to do (any news wakes it)
# seconds a queue held back by its concurrency limit is left out of fetches (a freed slot also pushes
# its wake key): a busy worker does not ask for it on every tick, an idle one still starts its next
# task well within a second of the slot freeing
RECHECK: Final = 0.05
BATCH_MAX = 256  # outcomes per round trip
WAKE: Final = "wake"  # in the inbox: look for tasks now (the waiter saw a wake-up)
STOP: Final = "stop"  # in the inbox: report what is left, then end

Item = tuple[Execution, Outcome] | str
Prepare = Callable[[Fetched, float], Running]  # a fetched task, when its lease began -> its slot
Launch = Callable[[list[Running]], None]
OnResult = Callable[[Running, Outcome, Report, bool | str], None]


class Reporter:
    def __init__(
        self,
        broker: WorkerBroker,
        plan: QueuePlan,
        slots: Slots,
        *,
        worker_id: str,
        lease: float,
        prepare: Prepare,
        launch: Launch,
        on_result: OnResult,
        stopping: threading.Event,
        outage: Outage,
        burst: bool = False,
    ) -> None:
        self.broker, self.plan, self.slots = broker, plan, slots
        self.worker_id, self.lease = worker_id, lease
        self.prepare, self.launch, self.on_result = prepare, launch, on_result
        self.stopping, self.outage, self.burst = stopping, outage, burst
        self.inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.idle = threading.Event()  # the last fetch found nothing pending: the waiter may block
        self.failure: str | None = None  # burst: why it gave up (Redis refused a fetch)
        self.ended = False  # STOP seen and everything before it reported
        self._batch: list[tuple[Execution, Outcome]] = []  # collected, not yet reported
        self._stop_seen = False
        self._after_fetch: Callable[[], None] | None = None  # set by `wake`, run after the next fetch
        # seconds until a rate-limited queue of the plan may start again (None: none is waiting on
        # its rate); a queue waiting on a concurrency slot is woken through its wake key instead
        self.limited_retry: float | None = None
        self.limited = False  # the last fetch was held back by a queue's limits
        self._held_until: dict[str, float] = {}  # queue -> when (monotonic) to ask it again
        self._tick_at = 0.0  # the `now` of the tick running

    def deliver(self, execution: Execution, outcome: Outcome) -> None:
        """An outcome from the pool (any thread; never blocks)."""
        self.inbox.put((execution, outcome))

    def wake(self, then: Callable[[], None] | None = None) -> None:
        """Look for tasks now; `then` runs once that fetch is sent (so that what it starts, such as
        a maintenance pass, does not compete with the pickup)."""
        self._after_fetch = then
        self.inbox.put(WAKE)

    def run(self) -> None:
        wait = 0.0
        while not self.ended:
            self._receive(wait)
            try:
                wait = self.tick(time.monotonic())
            except Exception:  # a bug: without a reporter no slot ever frees; stop instead of hanging
                log.exception("reporter failed; stopping (unreported tasks come back through their leases)")
                self.stopping.set()
                return

    def _receive(self, wait: float) -> None:
        """Block until news arrives or `wait` passes; the tick collects the rest."""
        if wait <= 0:
            return
        with contextlib.suppress(queue.Empty):
            self._note(self.inbox.get(timeout=wait))

    def _note(self, item: Item) -> None:
        if item == STOP:
            self._stop_seen = True
        elif item == WAKE:  # a wake-up (a slot may have freed): ask every queue again
            self._held_until.clear()
        elif not isinstance(item, str):
            self._batch.append(item)

    def tick(self, now: float) -> float:
        """Report what piled up and refill the free slots; returns seconds until it wants to run
        again (news in the inbox wakes it sooner)."""
        self._tick_at = now
        while len(self._batch) < BATCH_MAX:
            try:
                self._note(self.inbox.get_nowait())
            except queue.Empty:
                break
        items = [(r, o) for e, o in self._batch if (r := self.slots.held(e.task_id, e.token)) is not None]
        wanted = 0 if self.stopping.is_set() else self.slots.free(freed=len(items))
        if not items and not wanted:
            self._batch.clear()  # outcomes of attempts no longer held (stopped, lease lost)
            self.ended = self._stop_seen and self.inbox.empty()
            return IDLE
        reports = [_report(running, outcome) for running, outcome in items]
        order = [q for q in self.plan.order() if self._held_until.get(q, 0.0) <= now] if wanted else []
        try:
            results, found, leased_at = self._send(reports, order, wanted)
        except REDIS_ERRORS as exc:
            if self.burst and not reports:
                self.failure = describe(exc)
                self.stopping.set()
                return IDLE
            if self._stop_seen:  # the worker is gone: the leases bring these tasks back
                self.ended = True
            return self.outage.failed("reporter", exc)  # the batch is kept for the next tick
        self.outage.ok("reporter")
        if self._after_fetch is not None:
            after, self._after_fetch = self._after_fetch, None
            after()
        self._batch = []
        for (running, outcome), report, result in zip(items, reports, results, strict=True):
            self.on_result(running, outcome, report, result)
        return self._start(found, leased_at, [running for running, _ in items], wanted, now)

    def _start(
        self,
        found: list[Fetched | Malformed],
        leased_at: float,
        reported: list[Running],
        wanted: int,
        now: float,
    ) -> float:
        """Start what the fetch brought in place of the reported attempts; returns the next wait."""
        jobs = _tasks(found)
        runs = [self.prepare(job, leased_at) for job in jobs]
        self.slots.take(runs, reported=reported)
        self.launch(runs)
        buried = len(found) - len(jobs)
        if wanted and len(found) < wanted:
            self.idle.set()  # the queues ran dry: the waiter watches for new tasks
        if buried or self._stop_seen:
            return 0.0  # behind buried entries more may wait
        return self._next_look(now)

    def _next_look(self, now: float) -> float:
        """IDLE, or sooner: when a queue held back by its limits may be asked again."""
        waits = [until - now for until in self._held_until.values() if until > now]
        return min([IDLE, *waits])

    def _note_limits(self, asked: list[str], held: list[Limited]) -> None:
        """Leave the queues the limits held back out of fetches until they may start a task."""
        now = self._tick_at
        for name in asked:
            self._held_until.pop(name, None)
        for h in held:
            self._held_until[h.queue] = now + (RECHECK if h.retry_in is None else h.retry_in)
        self.limited = bool(self._held_until)
        waits = [h.retry_in for h in held if h.retry_in is not None]
        self.limited_retry = min(waits) if waits else None

    def _send(
        self, reports: list[Report], order: list[str], wanted: int
    ) -> tuple[list[bool | str], list[Fetched | Malformed], float]:
        """One round trip for the reports and the first queue's fetch; then the next queues of the
        plan, while slots are left. Returns the results, what was fetched and when the first lease
        began (monotonic, counted from before the request)."""
        self.idle.clear()
        leased_at = time.monotonic()
        first = order[0] if order else None
        results, got = self.broker.report_and_fetch(reports, first, wanted, self.lease, self.worker_id)
        found, held = _split(got)
        for name in order[1:]:
            if len(found) >= wanted:
                break
            more, limited = _split(
                self.broker.fetch_many(name, wanted - len(found), self.lease, self.worker_id)
            )
            found += more
            held += limited
        if wanted:  # what this fetch learnt of the limits replaces what the last one did
            self._note_limits(order, held)
        return results, found, leased_at


def _report(running: Running, outcome: Outcome) -> Report:
    job, options = running.job, running.options
    decision: Decision = decide(outcome, job.record.attempts, options)
    if decision.verdict is Verdict.ACK:
        return Ack(job, outcome.result_json, options.result_ttl)
    if decision.verdict is Verdict.POSTPONE:
        return Postpone(job, decision.delay or 0.0)
    error = outcome.error or {"type": "Error", "message": "", "traceback": ""}
    return Failure(
        job,
        error,
        decision.verdict is Verdict.DEAD,
        decision.delay,
        options.max_retries,
        options.backoff_base,
        options.backoff_max,
    )


def _split(got: list[Fetched | Malformed | Limited]) -> tuple[list[Fetched | Malformed], list[Limited]]:
    """A fetch's entries, and what its queue's limits held back."""
    found: list[Fetched | Malformed] = []
    held: list[Limited] = []
    for item in got:
        if isinstance(item, Limited):
            held.append(item)
        else:
            found.append(item)
    return found, held


def _tasks(found: list[Fetched | Malformed]) -> list[Fetched]:
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


def log_outcome(running: Running, outcome: Outcome, report: Report, result: bool | str | None) -> None:
    """One line per reported attempt (a lost lease, a failure; a success at INFO)."""
    if result and isinstance(report, Ack) and not log.isEnabledFor(logging.INFO):
        return
    job = running.job
    name, attempt = job.record.name, job.record.attempts
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
    elif isinstance(report, Postpone):
        log.info(
            "task %s %s: held back by a limiter; runs again in %.3fs (no attempt used)",
            job.id,
            name,
            report.delay,
            extra={"fields": {**fields, "event": "postponed"}},
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
        _log_failure(report, result, fields)


def _log_failure(report: Failure, result: bool | str, fields: dict[str, object]) -> None:
    retry_in = result.retry_in if isinstance(result, FailState) else None
    then = "dead" if result == TaskState.DEAD else f"retry in {retry_in or 0:.1f}s"
    message = report.error.get("message") or ""
    first_line = message.splitlines()[:1]
    log.warning(
        "task %s %s attempt %s: %s: %s (%s)",
        fields["task_id"],
        fields["task"],
        fields["attempt"],
        report.error.get("type"),
        first_line[0] if first_line else "",
        then,
        extra={
            "fields": {
                **fields,
                "event": "failed",
                "error": report.error.get("type"),
                "message": message,
                "then": result,
            }
        },
    )
