"""Two middlewares and an app that uses them (docs/observability.md).

- `AuditLog`: one JSON line per enqueue and per execution, saying who asked for the task (the `actor`
  header the producer adds, which travels with the task to the worker).
- `ErrorReporter`: hands every failed execution, with its exception, to an error tracker. Here the
  tracker appends to a file; with Sentry it would be `sentry_sdk.capture_exception(error)`.

    taskq worker --app examples.middleware          # from the project root

Producers say who acts with `with acting_as("alice"): charge.enqueue(...)`.
Files: TASKQ_EXAMPLE_AUDIT (default $TMPDIR/taskq-audit.jsonl), TASKQ_EXAMPLE_ERRORS (default
$TMPDIR/taskq-errors.jsonl). tests/test_example_middleware.py runs it against a real worker.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from taskq_cli import Fail, Middleware, RunOutcome, TaskInfo, TaskQueue

_actor: contextvars.ContextVar[str] = contextvars.ContextVar("actor", default="system")


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Tasks enqueued inside the block are recorded as asked for by `actor`."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def _file(variable: str, default_name: str) -> Path:
    return Path(os.environ.get(variable) or Path(tempfile.gettempdir()) / default_name)


def _append(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a") as out:  # one short write per line: lines from many processes do not mix
        out.write(json.dumps(entry, default=str) + "\n")


class AuditLog(Middleware):
    """Who asked for which task, and how each execution went."""

    def before_enqueue(self, task: TaskInfo) -> None:
        task.headers["actor"] = _actor.get()  # travels with the task, retries included
        self._write("enqueued", task)

    def after_run(self, task: TaskInfo, outcome: RunOutcome) -> None:
        self._write("ran", task, status=outcome.status, duration=round(outcome.duration, 6))

    def _write(self, event: str, task: TaskInfo, **more: Any) -> None:
        entry = {
            "at": time.time(),
            "event": event,
            "actor": task.headers.get("actor", "unknown"),
            "task": task.name,
            "id": task.id,
            "queue": task.queue,
            "attempt": task.attempt,
            **more,
        }
        _append(_file("TASKQ_EXAMPLE_AUDIT", "taskq-audit.jsonl"), entry)


def file_tracker(error: BaseException, context: dict[str, Any]) -> None:
    """A stand-in error tracker: one JSON line per error, with its traceback."""
    trace = "".join(traceback.format_exception(error))
    _append(_file("TASKQ_EXAMPLE_ERRORS", "taskq-errors.jsonl"), {**context, "traceback": trace})


class ErrorReporter(Middleware):
    """Every failed execution goes to `report(error, context)`; `only_final`: only those that leave
    the task dead (not the ones a retry may still fix)."""

    def __init__(
        self, report: Callable[[BaseException, dict[str, Any]], None] = file_tracker, only_final: bool = False
    ) -> None:
        self.report, self.only_final = report, only_final

    def after_run(self, task: TaskInfo, outcome: RunOutcome) -> None:
        if outcome.error is None or (self.only_final and outcome.status != "dead"):
            return
        context = {
            "task": task.name,
            "id": task.id,
            "attempt": task.attempt,
            "status": outcome.status,
            "error": f"{type(outcome.error).__name__}: {outcome.error}",
            "actor": task.headers.get("actor"),
        }
        self.report(outcome.error, context)


tq = TaskQueue()
tq.add_middleware(AuditLog())
tq.add_middleware(ErrorReporter())


@tq.task(name="charge")
def charge(customer: str, cents: int) -> dict[str, Any]:
    if cents <= 0:
        raise Fail(f"cannot charge {cents} cents")  # no retry: dead at once, and reported
    return {"customer": customer, "charged": cents}


@tq.task(name="sync_crm", max_retries=0)
def sync_crm(customer: str) -> None:
    if customer == "globex":
        raise ConnectionError("CRM refused the connection")
