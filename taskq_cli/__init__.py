"""taskq: a crash-safe background job queue on Redis.

from taskq_cli import TaskQueue, Retry, Fail
"""

from taskq_cli.errors import (
    EnqueueRefused,
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
from taskq_cli.middleware import Middleware, RunOutcome, TaskInfo
from taskq_cli.queue import TaskHandle, TaskQueue
from taskq_cli.registry import TaskContext, current_task
from taskq_cli.states import TaskState

__version__ = "0.1.0"

__all__ = [
    "EnqueueRefused",
    "Fail",
    "Middleware",
    "RateLimited",
    "ResultTimeout",
    "Retry",
    "RunOutcome",
    "TaskContext",
    "TaskFailed",
    "TaskHandle",
    "TaskInfo",
    "TaskNotFound",
    "TaskQueue",
    "TaskState",
    "TaskqError",
    "UsageError",
    "ValidationFailed",
    "__version__",
    "current_task",
]
