"""Run ONE task and say how it went: payload validation, the call (sync or async) under its timeout,
and the exception-to-outcome rules. No Redis here; pools decide where this runs."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from taskq_cli.errors import Fail, RateLimited, Retry, ValidationFailed
from taskq_cli.middleware import DEAD, DONE, RETRY, Chain, RunOutcome, TaskInfo
from taskq_cli.models import Outcome, OutcomeKind
from taskq_cli.registry import TaskContext, TaskDef, set_current_task


class TaskTimeout(BaseException):  # a handler's `except Exception` must not swallow it
    pass


class NotRunnable(Exception):
    """Why a handler was not called (a middleware's `outcome.error`): `kind` is the error type its
    outcome records (UnknownTask, MalformedPayload, ValidationError); `final` sends it to dead."""

    def __init__(self, kind: str, message: str, final: bool) -> None:
        super().__init__(message)
        self.kind, self.final = kind, final

    def outcome(self) -> Outcome:
        return Outcome.failure(OutcomeKind.FAIL if self.final else OutcomeKind.ERROR, self.kind, str(self))


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
    headers: dict[str, str] | None = field(default=None, compare=False)  # the producer's middleware's

    @property
    def context(self) -> TaskContext:
        results = json.loads(self.dependency_results) if self.dependency_results not in (None, "{}") else {}
        return TaskContext(
            self.task_id, self.name, self.queue, self.attempt, self.max_retries, self.lease, results or {}
        )


# How a sync handler is called under its timeout: in a watched thread, or under SIGALRM.
Caller = Callable[[TaskDef, dict[str, Any], TaskContext, float | None], Any]
# What one execution gave: its outcome, the handler's return value, the exception that failed it.
Ran = tuple[Outcome, Any, BaseException | None]


def run_task(
    handler: TaskDef | None,
    execution: Execution,
    call: Caller | None = None,
    middleware: Chain | None = None,
    wanted: Callable[[], bool] | None = None,
    task: TaskInfo | None = None,
) -> Outcome:
    """Run one execution with the app's middleware around it (`before_run`, then the handler, then
    `after_run`). `wanted`: whether its outcome still counts when it ends (a thread pool reports a
    timed-out task without waiting for its thread, and calls `after_run` itself, with the same
    `task` the hooks saw)."""
    started = time.perf_counter()
    if middleware is None or not middleware.running:
        outcome = _run_task(handler, execution, call)[0]
        return replace(outcome, runtime=time.perf_counter() - started)
    task = task or task_info(execution)
    failed = middleware.before_run(task)
    ran = _run_task(handler, execution, call) if failed is None else (outcome_of(failed), None, failed)
    outcome = replace(ran[0], runtime=time.perf_counter() - started)
    if wanted is None or wanted():
        middleware.after_run(task, run_outcome(execution, outcome, ran[1], ran[2]))
    return outcome


def _run_task(handler: TaskDef | None, execution: Execution, call: Caller | None) -> Ran:
    try:
        prepared = _prepare(handler, execution)
    except NotRunnable as exc:
        return exc.outcome(), None, exc
    assert handler is not None
    try:
        value = (call or call_in_thread)(handler, prepared, execution.context, execution.timeout)
    except BaseException as exc:  # user code may raise anything, SystemExit included
        return outcome_of(exc), None, exc
    return Outcome.success(result_to_json(value)), value, None


async def run_task_async(
    handler: TaskDef | None, execution: Execution, middleware: Chain | None = None
) -> Outcome:
    """The same rules on an event loop: async handlers run on it, sync ones in a thread."""
    started = time.perf_counter()
    if middleware is None or not middleware.running:
        outcome = (await _run_task_async(handler, execution))[0]
        return replace(outcome, runtime=time.perf_counter() - started)
    task = task_info(execution)
    failed = middleware.before_run(task)
    try:
        ran = (
            await _run_task_async(handler, execution)
            if failed is None
            else (outcome_of(failed), None, failed)
        )
    except asyncio.CancelledError as exc:  # aborted (lease lost, stopping): the task comes back later
        middleware.after_run(task, RunOutcome(RETRY, None, exc, time.perf_counter() - started))
        raise
    outcome = replace(ran[0], runtime=time.perf_counter() - started)
    middleware.after_run(task, run_outcome(execution, outcome, ran[1], ran[2]))
    return outcome


async def _run_task_async(handler: TaskDef | None, execution: Execution) -> Ran:
    try:
        prepared = _prepare(handler, execution)
    except NotRunnable as exc:
        return exc.outcome(), None, exc
    assert handler is not None
    ctx, timeout = execution.context, execution.timeout
    try:
        if handler.is_async:
            value = await _await_with_timeout(handler, prepared, ctx, timeout)
        else:
            value = await asyncio.wait_for(asyncio.to_thread(_call_sync, handler, prepared, ctx), timeout)
    except TimeoutError:
        timed_out = TaskTimeout(f"timed out after {timeout:g}s")
        return outcome_of(timed_out), None, timed_out
    except BaseException as exc:  # CancelledError is handled by the pool
        if isinstance(exc, asyncio.CancelledError):
            raise
        return outcome_of(exc), None, exc
    return Outcome.success(result_to_json(value)), value, None


def _prepare(handler: TaskDef | None, execution: Execution) -> dict[str, Any]:
    """The handler's keyword arguments; NotRunnable when running it is pointless."""
    if handler is None:
        raise NotRunnable(
            "UnknownTask", f"no handler named {execution.name!r} is registered in this worker", final=False
        )
    if execution.dependency_results is None:
        raise NotRunnable(
            "DependencyResultsUnavailable", "the dependencies' results could not be read", final=False
        )
    try:
        payload = json.loads(execution.payload_json) if execution.payload_json else {}
    except ValueError as exc:
        raise NotRunnable("MalformedPayload", f"payload is not JSON: {exc}", final=True) from None
    if not isinstance(payload, dict):
        raise NotRunnable("MalformedPayload", "payload is not a JSON object", final=True)
    try:
        return handler.validate(payload)
    except ValidationFailed as exc:
        raise NotRunnable("ValidationError", str(exc), final=True) from exc


def task_info(execution: Execution) -> TaskInfo:
    """The execution as middleware sees it (its headers a copy: a hook cannot change the record)."""
    return TaskInfo(
        execution.task_id,
        execution.name,
        execution.queue,
        execution.attempt,
        dict(execution.headers) if execution.headers else {},
        payload_json=execution.payload_json,
    )


def run_outcome(
    execution: Execution, outcome: Outcome, value: Any, error: BaseException | None
) -> RunOutcome:
    """The outcome as middleware sees it, with what becomes of the task (as models.decide rules;
    only a lost lease, which this process cannot know of, turns out otherwise)."""
    status = status_of(outcome, execution.attempt, execution.max_retries)
    return RunOutcome(status, value, error, outcome.runtime)


def status_of(outcome: Outcome, attempt: int, max_retries: int) -> str:
    kind = outcome.kind
    if kind is OutcomeKind.SUCCESS:
        return DONE
    if kind is OutcomeKind.POSTPONE:
        return RETRY
    if kind is OutcomeKind.FAIL or attempt >= max_retries + 1:
        return DEAD
    return RETRY


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
    context = contextvars.copy_context()  # what a before_run set (a tracing span) holds in there too

    def target() -> None:
        try:
            box["value"] = context.run(_call_sync, handler, kwargs, ctx)
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


def freeze_startup_heap() -> None:
    """Put every object alive now (modules, classes, the app: made at start-up, kept for the life of
    the process) out of the cyclic collector's sight (gc.freeze), so that a full collection, which
    stops every thread of the process, scans only what was made since. In a worker process with the
    bench app: 53,000 objects, a full collection 15 ms at load 1 and 45-136 ms at load 4-5 (the
    pickup profile, bench/profile_pickup.py) before; about nothing after. Start-up's garbage is
    collected first: what is frozen is never collected."""
    gc.collect()
    gc.freeze()
