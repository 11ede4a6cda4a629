"""Middleware: code of the app's that runs around every enqueue (in producers) and every execution (in
the process that runs the handler). SPEC, "Middleware":

    class Audit(Middleware):
        def before_enqueue(self, task): ...        # producer side, before anything is written
        def before_run(self, task): ...            # in the process that runs the handler
        def after_run(self, task, outcome): ...    # outcome.status: "done" | "retry" | "dead"
    tq.add_middleware(Audit())

The rules of failure are the point of this module: an exception from `before_enqueue` refuses the
enqueue (nothing is written), from `before_run` it fails the attempt like a handler error, from
`after_run` it is logged and changes nothing. So a broken middleware never loses a task.

Order: `before_*` hooks run in the order the middleware was added, `after_run` in the reverse order
(the first added wraps the others). Only the hooks a middleware overrides are called.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from taskq_cli.errors import EnqueueRefused, TaskqError

log = logging.getLogger("taskq.middleware")

MAX_HEADERS_BYTES = 8192  # what headers may add to a task record: tracing context, ids, not payloads
DONE, RETRY, DEAD = "done", "retry", "dead"


class TaskInfo:
    """One task as middleware sees it. `attempt` is 0 before enqueue, 1 for the first execution.
    `headers` is a dict of strings that travels with the task: `before_enqueue` may add to it (the
    tracing context rides there); workers see what the producer wrote. `payload` is decoded on first
    use (most middleware never reads it) and is read-only: changing it changes nothing."""

    __slots__ = ("_payload", "_payload_json", "attempt", "headers", "id", "name", "queue")

    def __init__(
        self,
        id: str,
        name: str,
        queue: str,
        attempt: int,
        headers: dict[str, str],
        payload_json: str | None = None,
        payload: Any = None,
    ) -> None:
        self.id, self.name, self.queue, self.attempt, self.headers = id, name, queue, attempt, headers
        self._payload_json = payload_json
        self._payload = payload

    @property
    def payload(self) -> Any:
        if self._payload_json is not None:
            text, self._payload_json = self._payload_json, None
            try:
                self._payload = json.loads(text) if text else {}
            except ValueError:
                self._payload = text  # a malformed payload is shown as its text
        return self._payload

    def __repr__(self) -> str:
        return f"TaskInfo(id={self.id!r}, name={self.name!r}, queue={self.queue!r}, attempt={self.attempt})"


@dataclass(frozen=True)
class RunOutcome:
    """How one execution ended, as the process that ran it knows it. `status` is what becomes of the
    task: "done", "retry" (another attempt will run, or a limiter postponed it) or "dead". `error` is
    the exception raised (by the handler, a `before_run`, or the runner: a timeout, a payload its
    signature refuses, a name no handler has), None on success; `result` the handler's return value;
    `duration` the seconds the execution took."""

    status: str
    result: Any = None
    error: BaseException | None = None
    duration: float = 0.0


class Middleware:
    """Subclass and override the hooks you need (each default does nothing)."""

    def before_enqueue(self, task: TaskInfo) -> None:
        """Producer side, before anything is written; may add to `task.headers`. Raising refuses
        the enqueue (EnqueueRefused; nothing of the batch is written)."""

    def before_run(self, task: TaskInfo) -> None:
        """In the process that runs the handler, before it runs. Raising fails the attempt like a
        handler error (Retry and Fail keep their meaning)."""

    def after_run(self, task: TaskInfo, outcome: RunOutcome) -> None:
        """After every execution, in the same process. Raising is logged and changes nothing."""


def _overrides(middleware: object, hook: str) -> bool:
    found = getattr(type(middleware), hook, None)
    return callable(found) and found is not getattr(Middleware, hook)


def _label(middleware: object) -> str:
    return type(middleware).__name__


class Chain:
    """The middleware of one TaskQueue, with each hook's callers worked out once."""

    def __init__(self, middleware: Iterable[object] = ()) -> None:
        self.middleware = tuple(middleware)
        self._enqueue = [m for m in self.middleware if _overrides(m, "before_enqueue")]
        self._before = [m for m in self.middleware if _overrides(m, "before_run")]
        self._after = [m for m in reversed(self.middleware) if _overrides(m, "after_run")]
        self.producing = bool(self._enqueue)
        self.running = bool(self._before or self._after)

    def __bool__(self) -> bool:
        return bool(self.middleware)

    def before_enqueue(self, task: TaskInfo) -> dict[str, str]:
        """Run every `before_enqueue`; the headers to write. EnqueueRefused (or the middleware's own
        TaskqError) when one raises or leaves headers that cannot travel."""
        for middleware in self._enqueue:
            try:
                middleware.before_enqueue(task)  # type: ignore[attr-defined]
            except TaskqError:
                raise
            except Exception as exc:
                raise EnqueueRefused(_label(middleware), exc) from exc
        return checked_headers(task.headers)

    def before_run(self, task: TaskInfo) -> BaseException | None:
        """Run every `before_run` until one raises; that exception (it fails the attempt), or None."""
        for middleware in self._before:
            try:
                middleware.before_run(task)  # type: ignore[attr-defined]
            except Exception as exc:
                return exc
        return None

    def after_run(self, task: TaskInfo, outcome: RunOutcome) -> None:
        """Run every `after_run`; one that raises is logged (type and message) and changes nothing."""
        for middleware in self._after:
            try:
                middleware.after_run(task, outcome)  # type: ignore[attr-defined]
            except Exception as exc:
                log.error(
                    "middleware %s: after_run of task %s failed: %s: %s",
                    _label(middleware),
                    task.id,
                    type(exc).__name__,
                    exc,
                    extra={"fields": {"event": "middleware_failed", "task_id": task.id, "hook": "after_run"}},
                )


def checked_headers(headers: object) -> dict[str, str]:
    """Headers that can travel with a task: a dict of strings, at most MAX_HEADERS_BYTES."""
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise EnqueueRefused("headers", TypeError("task headers must be a dict of strings"))
    if headers and len(json.dumps(headers)) > MAX_HEADERS_BYTES:
        raise EnqueueRefused("headers", ValueError(f"task headers over {MAX_HEADERS_BYTES} bytes"))
    return headers
