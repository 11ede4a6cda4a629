"""The exception hierarchy. Handlers raise Retry/Fail; the rest are taskq's own errors."""

from __future__ import annotations


class TaskqError(Exception):
    """Base of every error taskq raises on purpose."""


class UsageError(TaskqError):
    """Bad input from the caller (CLI exit 2): nothing was written."""


class ValidationFailed(UsageError):
    """A payload does not match its handler's signature."""


class AmbiguousId(TaskqError):
    """An id found in more than one queue when no queue was given (bad usage: CLI exit 2; HTTP 409,
    not a UsageError's 422): ids are unique per queue only, and picking one of the tasks silently
    could act on the wrong one."""

    def __init__(self, task_id: str, queues: list[str]) -> None:
        self.task_id = task_id
        self.queues = sorted(queues)
        super().__init__(
            f"task id {task_id} is in {len(self.queues)} queues: {', '.join(self.queues)} (name the queue)"
        )


class NotFound(TaskqError):
    """A task, queue or entry that is not there (CLI exit 1)."""


class BrokerUnavailable(TaskqError):
    """Redis cannot be reached (CLI exit 1)."""


class Retry(Exception):
    """Raise from a handler to run the task again after `delay` seconds (counts as an attempt)."""

    def __init__(self, delay: float | None = None, message: str = "") -> None:
        super().__init__(message or (f"retry requested in {delay}s" if delay is not None else "retry"))
        self.delay = delay


class Fail(Exception):
    """Raise from a handler to give up at once: the task goes straight to the dead-letter queue."""
