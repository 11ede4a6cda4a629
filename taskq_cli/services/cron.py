"""Periodic schedules as `taskq cron list` describes them (next run, last run, the last fired
task's state), and adding one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskq_cli.services.shapes import ScheduleDoc
from taskq_cli.timeparse import iso_ms

if TYPE_CHECKING:
    from taskq_cli.cron import Schedule
    from taskq_cli.queue import TaskQueue


def describe(tq: TaskQueue) -> list[ScheduleDoc]:
    """Every schedule, by name; runs in UTC."""
    schedules = tq.schedules()
    broker = tq.broker
    now = broker.redis_time_ms()
    lasts = broker.cron_last([(s.name, s.queue) for s in schedules])
    rows = []
    for schedule, last in zip(schedules, lasts, strict=True):
        state = None
        if last is not None:
            found = broker.find_task(last[1], schedule.queue)
            state = found.meta.get("state") if found else "expired"
        rows.append(
            ScheduleDoc(
                name=schedule.name,
                schedule=schedule.spec,
                tz=schedule.timezone,
                task=schedule.task,
                queue=schedule.queue,
                payload=schedule.payload,
                paused=schedule.paused,
                catchup=schedule.catchup,
                next_run=None if schedule.paused else iso_ms(schedule.ticks.following(now)),
                last_run=iso_ms(last[0]) if last else None,
                last_task_id=last[1] if last else None,
                last_task_state=state,
            )
        )
    return rows


@dataclass(frozen=True)
class Added:
    schedule: Schedule
    next_run_ms: int  # epoch milliseconds, Redis's clock


def add(tq: TaskQueue, name: str, spec: str, task: str, payload: dict[str, Any], **options: Any) -> Added:
    """Store a schedule (replacing one of that name); with its next run."""
    stored = tq.schedule(name, spec, task, payload, **options)
    return Added(stored, stored.ticks.following(tq.broker.redis_time_ms()))
