"""Task states: the same strings in Python, Lua and `--json` output."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """The same strings in Python, Lua and `--json` output."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    WAITING = "waiting"  # for its dependencies (after=): released to pending or scheduled by them
    ACTIVE = "active"
    DONE = "done"
    DEAD = "dead"


# Named sets, used wherever states are compared (Lua spells the same sets in enqueue_one and fetch).
UNFINISHED_STATES = frozenset(
    {TaskState.PENDING, TaskState.SCHEDULED, TaskState.WAITING, TaskState.ACTIVE}
)  # may still run
FINISHED_STATES = frozenset({TaskState.DONE, TaskState.DEAD})  # will not run again unless retried by hand
ALL_STATES = (
    TaskState.PENDING,
    TaskState.SCHEDULED,
    TaskState.WAITING,
    TaskState.ACTIVE,
    TaskState.DEAD,
    TaskState.DONE,
)
