"""Run ONE task and say how it went: payload validation, the call (sync or async) under its timeout,
and the exception-to-outcome rules. No Redis here; pools decide where this runs."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from taskq_cli.errors import Fail, RateLimited, Retry, ValidationFailed
from taskq_cli.models import Outcome, OutcomeKind
from taskq_cli.registry import TaskContext, TaskDef, set_current_task


class TaskTimeout(BaseException):  # a handler's `except Exception` must not swallow it
    pass


@dataclass(frozen=True)
class Execution:
    """What a pool needs to run one attempt (picklable: it crosses into child processes)."""

    task_id: str
    name: str
    queue: str
    attempt: int
    max_retries: int
    payload_json: str
    timeout: float | None
    token: str = ""  # the attempt's lease token: pools key their bookkeeping by it, not by task id,
    # because a retry of the same task may start in the same worker while the last attempt is reported
    lease: float = 30.0  # the worker's lease (seconds): a limiter's permit lapses like it
    # JSON object of its dependencies' results by id (the worker reads them before it starts);
    # None when they could not be read (the attempt fails and is retried)
    dependency_results: str | None = "{}"

    @property
    def context(self) -> TaskContext:
        results = json.loads(self.dependency_results) if self.dependency_results not in (None, "{}") else {}
        return TaskContext(
            self.task_id, self.name, self.queue, self.attempt, self.max_retries, self.lease, results or {}
        )


# How a sync handler is called under its timeout: in a watched thread, or under SIGALRM.
Caller = Callable[[TaskDef, dict[str, Any], TaskContext, float | None], Any]


def run_task(handler: TaskDef | None, execution: Execution, call: Caller | None = None) -> Outcome:
    started = time.perf_counter()
    outcome = _run_task(handler, execution, call)
    return replace(outcome, runtime=time.perf_counter() - started)


def _run_task(handler: TaskDef | None, execution: Execution, call: Caller | None) -> Outcome:
    prepared = _prepare(handler, execution)
    if isinstance(prepared, Outcome):
        return prepared
    assert handler is not None
    try:
        value = (call or call_in_thread)(handler, prepared, execution.context, execution.timeout)
    except BaseException as exc:  # user code may raise anything, SystemExit included
        return outcome_of(exc)
    return Outcome.success(result_to_json(value))


async def run_task_async(handler: TaskDef | None, execution: Execution) -> Outcome:
    """The same rules on an event loop: async handlers run on it, sync ones in a thread."""
    started = time.perf_counter()
    outcome = await _run_task_async(handler, execution)
    return replace(outcome, runtime=time.perf_counter() - started)


async def _run_task_async(handler: TaskDef | None, execution: Execution) -> Outcome:
    prepared = _prepare(handler, execution)
    if isinstance(prepared, Outcome):
        return prepared
    assert handler is not None
    ctx, timeout = execution.context, execution.timeout
    try:
        if handler.is_async:
            value = await _await_with_timeout(handler, prepared, ctx, timeout)
        else:
            value = await asyncio.wait_for(asyncio.to_thread(_call_sync, handler, prepared, ctx), timeout)
    except TimeoutError:
        return outcome_of(TaskTimeout(f"timed out after {timeout:g}s"))
    except BaseException as exc:  # CancelledError is handled by the pool
        if isinstance(exc, asyncio.CancelledError):
            raise
        return outcome_of(exc)
    return Outcome.success(result_to_json(value))


def _prepare(handler: TaskDef | None, execution: Execution) -> dict[str, Any] | Outcome:
    """The handler's keyword arguments, or the outcome that makes running it pointless."""
    if handler is None:
        return Outcome.failure(
            OutcomeKind.ERROR,
            "UnknownTask",
            f"no handler named {execution.name!r} is registered in this worker",
        )
    if execution.dependency_results is None:
        return Outcome.failure(
            OutcomeKind.ERROR, "DependencyResultsUnavailable", "the dependencies' results could not be read"
        )
    try:
        payload = json.loads(execution.payload_json) if execution.payload_json else {}
    except ValueError as exc:
        return Outcome.failure(OutcomeKind.FAIL, "MalformedPayload", f"payload is not JSON: {exc}")
    if not isinstance(payload, dict):
        return Outcome.failure(OutcomeKind.FAIL, "MalformedPayload", "payload is not a JSON object")
    try:
        return handler.validate(payload)
    except ValidationFailed as exc:
        return Outcome.failure(OutcomeKind.FAIL, "ValidationError", str(exc))


def outcome_of(exc: BaseException) -> Outcome:
    """The SPEC's rules: Retry → after its delay; Fail → dead; anything else → retried with backoff."""
    if isinstance(exc, Retry):
        return Outcome.failure(OutcomeKind.RETRY, "Retry", str(exc), delay=exc.delay)
    if isinstance(exc, RateLimited):
        return Outcome(OutcomeKind.POSTPONE, delay=exc.retry_in)
    if isinstance(exc, Fail):
        return Outcome.failure(OutcomeKind.FAIL, type(exc).__name__, str(exc), format_traceback(exc))
    if isinstance(exc, TaskTimeout):
        return Outcome.failure(OutcomeKind.ERROR, "TaskTimeout", str(exc))
    return Outcome.failure(OutcomeKind.ERROR, type(exc).__name__, str(exc), format_traceback(exc))


def call_here(handler: TaskDef, kwargs: dict[str, Any], ctx: TaskContext, timeout: float | None) -> Any:
    """Call in this thread; async handlers are cancelled at their timeout, a sync handler's timeout is
    the caller's to watch (the thread pool's watchdog)."""
    if handler.is_async:
        return asyncio.run(_await_with_timeout(handler, kwargs, ctx, timeout))
    return _call_sync(handler, kwargs, ctx)


def call_in_thread(handler: TaskDef, kwargs: dict[str, Any], ctx: TaskContext, timeout: float | None) -> Any:
    """Thread pools: async handlers are cancelled at the timeout; a sync handler is abandoned at it
    (its thread cannot be killed: only the process pool stops such code hard)."""
    if handler.is_async:
        return asyncio.run(_await_with_timeout(handler, kwargs, ctx, timeout))
    if timeout is None:
        return _call_sync(handler, kwargs, ctx)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = _call_sync(handler, kwargs, ctx)
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"task-{ctx.id}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TaskTimeout(f"timed out after {timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class AlarmCaller:
    """A Caller for child processes (main thread): the soft timeout raises TaskTimeout inside the
    handler via SIGALRM; code that never returns to Python is killed by the supervisor shortly after.

    A child runs tasks back to back, so the signal handler is installed once and the timer is set
    only when it would go off too late: a run of short tasks makes no system call for timeouts. A
    timer that goes off early (set for an earlier task) sets itself again for the running one."""

    def __init__(self) -> None:
        self._deadline: float | None = None  # of the sync handler running now
        self._timeout = 0.0
        self._fires_at: float | None = None  # when the timer goes off, if it is set

    def __call__(
        self, handler: TaskDef, kwargs: dict[str, Any], ctx: TaskContext, timeout: float | None
    ) -> Any:
        if handler.is_async:
            return asyncio.run(_await_with_timeout(handler, kwargs, ctx, timeout))
        if timeout is None:
            return _call_sync(handler, kwargs, ctx)
        if signal.getsignal(signal.SIGALRM) != self._on_alarm:  # first call, or a handler replaced it
            signal.signal(signal.SIGALRM, self._on_alarm)
            self._fires_at = None
        deadline = time.monotonic() + timeout
        if self._fires_at is None or self._fires_at > deadline:
            self._set(timeout, deadline)
        self._deadline, self._timeout = deadline, timeout
        try:
            return _call_sync(handler, kwargs, ctx)
        finally:
            self._deadline = None

    def _set(self, seconds: float, fires_at: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))  # (0 would clear it)
        self._fires_at = fires_at

    def _on_alarm(self, signum: int, frame: object) -> None:
        self._fires_at = None
        if self._deadline is None:
            return  # between tasks: set for one that has ended
        left = self._deadline - time.monotonic()
        if left > 0:
            self._set(left, self._deadline)
            return
        raise TaskTimeout(f"timed out after {self._timeout:g}s")


call_with_alarm = AlarmCaller()  # one per process: a forked child gets its own copy


def _call_sync(handler: TaskDef, kwargs: dict[str, Any], ctx: TaskContext) -> Any:
    set_current_task(ctx)  # each task runs in a thread or event loop of its own context
    return handler.fn(**kwargs)


async def _await_with_timeout(
    handler: TaskDef, kwargs: dict[str, Any], ctx: TaskContext, timeout: float | None
) -> Any:
    set_current_task(ctx)
    try:
        return await asyncio.wait_for(handler.fn(**kwargs), timeout)
    except TimeoutError:
        raise TaskTimeout(f"timed out after {timeout:g}s") from None


def result_to_json(value: Any) -> str | None:
    """The result as JSON, or None when it is not JSON-serialisable (SPEC: kept only if it is)."""
    if value is None:
        return None
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None


def format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-20_000:]
