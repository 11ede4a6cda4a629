"""One task (show, cancel) and the tasks of a queue in one state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskq_cli.results import FOREVER
from taskq_cli.services.admin import LISTABLE_STATES, Admin
from taskq_cli.services.shapes import CancelAnswer, RunAnswer, TaskDoc

__all__ = ["FOREVER", "cancel", "doc", "list_tasks", "show"]

if TYPE_CHECKING:
    from taskq_cli.models import Task
    from taskq_cli.queue import TaskQueue


def doc(task: Task) -> TaskDoc:
    """A task in its JSON shape."""
    return TaskDoc.model_validate(task.to_json())


def show(tq: TaskQueue, task_id: str, queue: str | None = None) -> TaskDoc:
    """A task with the max_retries and timeout that apply to it and where they come from
    (`options_source`): given at enqueue, its handler's (known with an app) or the defaults."""
    found = Admin(tq.broker).task_json(task_id, queue, tq.registry, tq.settings.defaults)
    return TaskDoc.model_validate(found)


def list_tasks(
    tq: TaskQueue,
    queue: str | None,
    state: str | None,
    limit: int,
    offset: int = 0,
    name: str | None = None,
) -> list[TaskDoc]:
    """Tasks of one queue or all (None), in one state or all, optionally of one task name: state by
    state, queue by queue, each in the order it will be handled (Admin.find_tasks)."""
    return [doc(t) for t in Admin(tq.broker).find_tasks(queue, state, name, limit, offset)]


def count_tasks(tq: TaskQueue, queue: str | None, state: str | None) -> int:
    """How many tasks of `queue` (None: every queue) are in `state` (None: any listable state): the
    total a cut listing is part of."""
    return Admin(tq.broker).count(queue, [state] if state else list(LISTABLE_STATES))


def cancel(tq: TaskQueue, task_id: str, queue: str | None = None) -> CancelAnswer:
    """Remove an unfinished task (an active one is stopped at its worker's next lease renewal);
    UsageError when it already finished."""
    was = Admin(tq.broker).cancel(task_id, queue)
    return CancelAnswer(id=task_id, cancelled=True, state=was)


def run_now(tq: TaskQueue, task_id: str, queue: str | None = None) -> RunAnswer:
    """Move a scheduled or retry-waiting task to pending now (a worker is woken); UsageError for a
    task in another state."""
    was = Admin(tq.broker).run_now(task_id, queue)
    return RunAnswer(id=task_id, state="pending", was=was)
