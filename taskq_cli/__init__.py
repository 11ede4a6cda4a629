"""taskq: a crash-safe background job queue on Redis.

from taskq_cli import TaskQueue, Retry, Fail
"""

from taskq_cli.errors import (
    Fail,
    RateLimited,
    ResultTimeout,
    Retry,
    TaskFailed,
    TaskNotFound,
    TaskqError,
    UsageError,
    ValidationFailed,
)
from taskq_cli.queue import TaskHandle, TaskQueue
from taskq_cli.registry import TaskContext, current_task
from taskq_cli.states import TaskState

__version__ = "0.1.0"

__all__ = [
    "Fail",
    "RateLimited",
    "ResultTimeout",
    "Retry",
    "TaskContext",
    "TaskFailed",
    "TaskHandle",
    "TaskNotFound",
    "TaskQueue",
    "TaskState",
    "TaskqError",
    "UsageError",
    "ValidationFailed",
    "__version__",
    "current_task",
]
