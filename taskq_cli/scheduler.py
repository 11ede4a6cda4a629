"""Maintenance of queues: promote due scheduled tasks and recover attempts whose lease expired.
Workers run it for their own queues; `taskq scheduler` runs it for every known queue. Any number of
them may run at once: each step is one atomic script."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from taskq_cli.config import RetryDefaults
from taskq_cli.outage import REDIS_ERRORS, Outage
from taskq_cli.protocol import NewTask, RetryFallbacks

if TYPE_CHECKING:
    from taskq_cli.cron import Schedule

log = logging.getLogger("taskq.scheduler")

MAX_IDLE = 1.0  # seconds between passes at most: a lost worker is recovered within lease + 1 s


class DependencyUpkeep(Protocol):
    def maintain(self, queues: Sequence[str]) -> int: ...


class SchedulerBroker(Protocol):
    """What maintenance and cron need of the protocol. Tests drive them by ticks against an
    in-memory fake whose clock is Redis's (tests/test_scheduler_ticks.py); `taskq_cli.protocol.Broker`
    satisfies it (mypy checks that where the real one is passed)."""

    @property
    def dependencies(self) -> DependencyUpkeep: ...

    def known_queues(self) -> list[str]: ...

    def promote(self, queue: str) -> tuple[int, float | None]: ...

    def promote_and_look(self, queue: str) -> tuple[int, float | None, bool]:
        """`promote`, and whether the queue has dependency work (outbox, unlinked tasks)."""

    def recover(self, queue: str, fallbacks: RetryFallbacks) -> tuple[int, int]: ...

    def redis_time_ms(self) -> int: ...

    def cron_definitions(self) -> dict[str, str]: ...

    def cron_last(self, schedules: Sequence[tuple[str, str]]) -> list[tuple[int, str] | None]: ...

    def cron_fire(self, name: str, tick_ms: int, task: NewTask) -> tuple[bool, str]: ...


class Maintenance:
    def __init__(self, broker: SchedulerBroker, defaults: RetryDefaults) -> None:
        self.broker = broker
        self.defaults = defaults

    def tick(self, queues: Iterable[str]) -> float:
        """One pass over the queues; returns the seconds until the next scheduled task is due."""
        wait = MAX_IDLE
        busy: list[str] = []  # queues with dependency work
        for queue in queues:
            moved, next_due, work = self.broker.promote_and_look(queue)
            if work:
                busy.append(queue)
            retried, buried = self.broker.recover(queue, self.defaults)
            if buried and not work:  # a buried task may have dependents: its outbox entry is new
                busy.append(queue)
            if moved:
                log.debug("queue %s: promoted %d due tasks", queue, moved)
            if retried or buried:
                log.warning(
                    "queue %s: recovered %d tasks of lost workers (%d retried, %d dead)",
                    queue,
                    retried + buried,
                    retried,
                    buried,
                )
            if next_due is not None:
                wait = min(wait, next_due)
        # outcomes whose hand-off a worker did not finish (it died), links a producer did not make
        if busy and self.broker.dependencies.maintain(busy):
            log.debug("dependencies: handed off or linked again")
        return wait


class Scheduler:
    """`taskq scheduler`: maintenance for every queue of the namespace until stopped."""

    def __init__(self, broker: SchedulerBroker, defaults: RetryDefaults, *, cron: bool = True) -> None:
        self.broker = broker
        self.maintenance = Maintenance(broker, defaults)
        self.cron = CronRunner(broker) if cron else None
        self.stop_event = threading.Event()
        self.outage = Outage(log)

    def run(self) -> int:
        while not self.stop_event.is_set():
            self.stop_event.wait(self.tick())
        return 0

    def tick(self) -> float:
        """One pass over every known queue and the schedules; returns the seconds until the next."""
        try:
            wait = self.maintenance.tick(self.broker.known_queues())
            if self.cron is not None:
                wait = min(wait, self.cron.tick())
        except REDIS_ERRORS as exc:  # any of them: a scheduler outlives ACL changes, OOM, failovers
            return self.outage.failed("scheduler", exc)
        self.outage.ok("scheduler")
        return wait


class CronRunner:
    """Fires due ticks of every periodic schedule of the namespace (in `taskq scheduler`, and in
    workers unless --no-cron). Each tick is claimed in Redis, so any number may run at once."""

    def __init__(self, broker: SchedulerBroker) -> None:
        self.broker = broker

    def tick(self) -> float:
        """One pass; returns the seconds until the next tick of any schedule."""
        from taskq_cli.cron import Schedule, due_tick

        schedules: list[Schedule] = []
        for name, definition in self.broker.cron_definitions().items():
            try:
                schedules.append(Schedule.from_json(definition))
            except Exception as exc:  # a bad definition must not stop the others
                log.error("schedule %s is invalid and is skipped: %s", name, exc)
        if not schedules:
            return MAX_IDLE
        now = self.broker.redis_time_ms()
        wait = MAX_IDLE
        lasts = self.broker.cron_last([(s.name, s.queue) for s in schedules])
        for schedule, last in zip(schedules, lasts, strict=True):
            tick = due_tick(schedule, last[0] if last else None, now)
            if tick is not None:
                self._fire(schedule, tick)
            if not schedule.paused:
                wait = min(wait, max(schedule.ticks.following(now) - now, 0) / 1000)
        return wait

    def _fire(self, schedule: Schedule, tick: int) -> None:
        from taskq_cli.errors import UsageError
        from taskq_cli.producer import EnqueueRequest, prepare

        request = EnqueueRequest(
            name=schedule.task,
            payload=schedule.payload,
            queue=schedule.queue,
            task_id=schedule.task_id(tick),
            max_retries=schedule.max_retries,
        )
        try:
            task = prepare(request, {})  # the worker validates the payload against its handler
        except UsageError as exc:
            log.error("schedule %s: cannot enqueue its task: %s", schedule.name, exc)
            return
        fired, state = self.broker.cron_fire(schedule.name, tick, task)
        if fired:
            log.info("schedule %s: fired tick %s as task %s (%s)", schedule.name, tick, task.id, state)
