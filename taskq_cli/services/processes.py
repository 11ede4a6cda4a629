"""What the long-running and checking commands start over a TaskQueue: the scheduler process and
doctor's checks (their logic lives in scheduler.py and doctor.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskq_cli.doctor import Finding
    from taskq_cli.queue import TaskQueue
    from taskq_cli.scheduler import Scheduler


def scheduler(tq: TaskQueue, *, cron: bool) -> Scheduler:
    """A scheduler for the TaskQueue's namespace: promotion, recovery and (with `cron`) schedules."""
    from taskq_cli.scheduler import Scheduler

    return Scheduler(tq.broker, tq.settings.defaults, cron=cron)


def doctor(tq: TaskQueue) -> list[Finding]:
    """doctor's findings for the TaskQueue's Redis and namespace."""
    from taskq_cli.doctor import run_checks

    return run_checks(tq.broker)
