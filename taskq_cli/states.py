"""Task states: the same strings in Python, Lua and `--json` output."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """The same strings in Python, Lua and `--json` output."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    DONE = "done"
    DEAD = "dead"
