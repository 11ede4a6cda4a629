"""The dead-letter queue: list, show, and bulk retry or purge (by ids, or every dead task matching
a queue, a task name and an age)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskq_cli.services.admin import Admin, Progress, PurgePlan
from taskq_cli.services.shapes import BulkReport, TaskDoc
from taskq_cli.services.tasks import doc

if TYPE_CHECKING:
    from taskq_cli.models import Task
    from taskq_cli.queue import TaskQueue

MAX_LISTED_VALUE = 4096  # bytes of a payload or result shown in a bounded listing
MAX_LISTED_TEXT = 4096  # characters of an error message, traceback or raw message in a bounded listing


def dead_tasks(
    tq: TaskQueue,
    queue: str | None,
    name: str | None,
    limit: int,
    offset: int = 0,
    *,
    bounded: bool = False,
) -> list[TaskDoc]:
    """Dead tasks newest first. `bounded` (the HTTP API's listing): a payload or result over
    MAX_LISTED_VALUE bytes is left out (never read from Redis) and texts are cut, each marked
    `<field>_truncated`."""
    max_value = MAX_LISTED_VALUE if bounded else None
    found = Admin(tq.broker).dead_tasks(queue, name, limit, offset, max_value=max_value)
    return [listed(t) if bounded else doc(t) for t in found]


def dead_total(tq: TaskQueue, queue: str | None, name: str | None) -> int | None:
    """How many dead tasks a listing with these filters is part of (None with a name: counting
    those would read every dead task)."""
    return None if name is not None else Admin(tq.broker).dead_total(queue)


def dead_task(tq: TaskQueue, task_id: str, queue: str | None = None) -> TaskDoc:
    return doc(Admin(tq.broker).dead_task(task_id, queue))


def retry(
    tq: TaskQueue,
    ids: Sequence[str] | None,
    queue: str | None = None,
    name: str | None = None,
    progress: Progress | None = None,
) -> BulkReport:
    """Dead tasks (these ids, or with None all matching the filters) back to pending, attempts reset."""
    return Admin(tq.broker).dlq_retry(ids, queue, name, progress=progress)


def purge(
    tq: TaskQueue,
    ids: Sequence[str] | None,
    queue: str | None = None,
    name: str | None = None,
    older_than: float | None = None,
    progress: Progress | None = None,
    plan: PurgePlan | None = None,
) -> BulkReport:
    """Delete dead tasks for good (these ids, or with None all matching the filters; with a `plan`
    from plan_purge, exactly the tasks it counted)."""
    return Admin(tq.broker).dlq_purge(ids, queue, name, older_than, progress=progress, plan=plan)


def plan_purge(
    tq: TaskQueue,
    ids: Sequence[str] | None,
    queue: str | None = None,
    name: str | None = None,
    older_than: float | None = None,
) -> PurgePlan:
    """The dead tasks a purge would delete, counted before asking (`.count`)."""
    return Admin(tq.broker).dlq_purge_plan(ids, queue, name, older_than)


def listed(task: Task) -> TaskDoc:
    """A task as a bounded listing shows it: long texts cut (long payloads and results were not read)."""
    out: dict[str, Any] = task.to_json()
    error = out.get("last_error")
    if error and any(len(error[k]) > MAX_LISTED_TEXT for k in ("message", "traceback")):
        out["last_error"] = {k: _cut(v) if isinstance(v, str) else v for k, v in error.items()}
        out["last_error_truncated"] = True
    if isinstance(out.get("raw"), str) and len(out["raw"]) > MAX_LISTED_TEXT:
        out["raw"], out["raw_truncated"] = _cut(out["raw"]), True
    return TaskDoc.model_validate(out)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LISTED_TEXT else text[: MAX_LISTED_TEXT - 1] + "…"
