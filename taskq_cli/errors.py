"""The exception hierarchy. Handlers raise Retry/Fail; the rest are taskq's own errors."""

from __future__ import annotations

from typing import Any


class TaskqError(Exception):
    """Base of every error taskq raises on purpose."""


class UsageError(TaskqError):
    """Bad input from the caller (CLI exit 2): nothing was written."""


class ValidationFailed(UsageError):
    """A payload does not match its handler's signature."""


class EnqueueRefused(UsageError):
    """A middleware's `before_enqueue` raised (CLI exit 2, HTTP 422): nothing was written. The
    middleware's own exception is `__cause__` (and `.error`)."""

    def __init__(self, middleware: str, error: BaseException) -> None:
        super().__init__(f"enqueue refused by middleware {middleware}: {type(error).__name__}: {error}")
        self.middleware = middleware
        self.error = error


class AmbiguousId(TaskqError):
    """An id found in more than one queue when no queue was given (bad usage: CLI exit 2; HTTP 409,
    not a UsageError's 422): ids are unique per queue only, and picking one of the tasks silently
    could act on the wrong one."""

    def __init__(self, task_id: str, queues: list[str], matches: list[str] | None = None) -> None:
        self.task_id = task_id
        self.queues = sorted(queues)
        self.matches = sorted(matches or [])
        if self.matches:  # a prefix of several ids: name them, as git does for a short hash
            shown = ", ".join(self.matches[:10]) + (", …" if len(self.matches) > 10 else "")
            message = (
                f"task id prefix {task_id} matches {len(self.matches)} tasks: {shown} (give more of the id)"
            )
        else:
            where = ", ".join(self.queues)
            message = f"task id {task_id} is in {len(self.queues)} queues: {where} (name the queue)"
        super().__init__(message)


class NotFound(TaskqError):
    """A task, queue or entry that is not there (CLI exit 1)."""


class InvalidRedisUrl(UsageError):
    """A Redis URL no client can be made from (CLI exit 2): found before connecting to anything."""


class TooManyQueues(UsageError):
    """A write that would bring a namespace past its queue limit (CLI exit 2): nothing was written."""


class BrokerError(TaskqError):
    """Redis answered a command with an error (NOPERM, OOM, READONLY...) or could not be asked (CLI
    exit 1, HTTP 503). The protocol raises it from redis-py's error (`__cause__`); `kind` names that
    error's class, so logs still tell a NOPERM from an OOM."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or type(self).__name__


class BrokerUnavailable(BrokerError):
    """Redis cannot be reached: connection refused or lost, or no answer in time (CLI exit 1)."""


class Retry(Exception):
    """Raise from a handler to run the task again after `delay` seconds (counts as an attempt)."""

    def __init__(self, delay: float | None = None, message: str = "") -> None:
        super().__init__(message or (f"retry requested in {delay}s" if delay is not None else "retry"))
        self.delay = delay


class RateLimited(Exception):
    """Raised by `tq.limiter(...)` when its key is over its limit: leaving the handler with it
    reschedules the task for `retry_in` seconds from now, using no attempt and not as an error."""

    def __init__(self, key: str, retry_in: float) -> None:
        super().__init__(f"limiter {key!r} is over its limit: the task runs again in {retry_in:.3f}s")
        self.key = key
        self.retry_in = retry_in


class Fail(Exception):
    """Raise from a handler to give up at once: the task goes straight to the dead-letter queue."""


class TaskNotFound(NotFound, LookupError):
    """`result()` of an unknown id, or of a done task whose record has expired (CLI exit 1)."""


class ResultTimeout(TaskqError, TimeoutError):
    """`result()`: the task did not finish within the wait (CLI exit 4)."""


class TaskFailed(TaskqError):
    """`result()` of a task that ended dead (CLI exit 3); `.task` is the Task, `last_error` included."""

    def __init__(self, task: Any) -> None:
        error = getattr(task, "last_error", None)
        kind, message = getattr(error, "type", "Error"), getattr(error, "message", "")
        super().__init__(f"task {task.id} failed: {kind}: {message}")
        self.task = task
