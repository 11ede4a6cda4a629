"""Queues: list them with their counts, pause or resume one, clear one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskq_cli.services.admin import Admin
from taskq_cli.services.shapes import PauseAnswer, QueueInfoDoc

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue


def list_queues(tq: TaskQueue) -> list[QueueInfoDoc]:
    return Admin(tq.broker).queue_infos()


def require(tq: TaskQueue, queue: str) -> None:
    """NotFound unless the queue has been used."""
    Admin(tq.broker).queues(queue)


def set_paused(tq: TaskQueue, queue: str, paused: bool) -> tuple[PauseAnswer, bool]:
    """Pause or resume a queue. The flag is False when the queue has never been used: pausing one
    pauses it ahead of time, resuming one changes nothing."""
    known = Admin(tq.broker).set_paused(queue, paused)
    return PauseAnswer(name=queue, paused=paused), known


def clear(tq: TaskQueue, queue: str) -> int:
    """Delete every pending, scheduled, waiting, dead and done task of a queue; returns how many."""
    return Admin(tq.broker).clear(queue)


def clear_count(tq: TaskQueue, queue: str) -> int:
    """How many tasks clearing the queue would delete now (NotFound for a queue never used)."""
    return Admin(tq.broker).clear_count(queue)
