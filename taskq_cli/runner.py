"""Run ONE task and say how it went: payload validation, the call (sync or async), its timeout, and
the exception-to-outcome rules. No Redis here."""

from __future__ import annotations

import asyncio
import json
import threading
import traceback
from typing import Any

from taskq_cli.errors import Fail, Retry, ValidationFailed
from taskq_cli.models import Outcome, OutcomeKind
from taskq_cli.registry import TaskContext, TaskDef, set_current_task


class TaskTimeout(Exception):
    pass


def run_task(
    handler: TaskDef | None, name: str, payload_json: str, ctx: TaskContext, timeout: float | None
) -> Outcome:
    if handler is None:
        return Outcome.failure(
            OutcomeKind.ERROR, "UnknownTask", f"no handler named {name!r} is registered in this worker"
        )
    try:
        payload = json.loads(payload_json) if payload_json else {}
    except ValueError as exc:
        return Outcome.failure(OutcomeKind.FAIL, "MalformedPayload", f"payload is not JSON: {exc}")
    if not isinstance(payload, dict):
        return Outcome.failure(OutcomeKind.FAIL, "MalformedPayload", "payload is not a JSON object")
    try:
        kwargs = handler.validate(payload)
    except ValidationFailed as exc:
        return Outcome.failure(OutcomeKind.FAIL, "ValidationError", str(exc))
    try:
        value = call_with_timeout(handler, kwargs, ctx, timeout)
    except Retry as exc:
        return Outcome.failure(OutcomeKind.RETRY, "Retry", str(exc), delay=exc.delay)
    except Fail as exc:
        return Outcome.failure(OutcomeKind.FAIL, type(exc).__name__, str(exc), _traceback(exc))
    except TaskTimeout as exc:
        return Outcome.failure(OutcomeKind.ERROR, "TaskTimeout", str(exc))
    except BaseException as exc:
        return Outcome.failure(OutcomeKind.ERROR, type(exc).__name__, str(exc), _traceback(exc))
    return Outcome.success(result_to_json(value))


def call_with_timeout(
    handler: TaskDef, kwargs: dict[str, Any], ctx: TaskContext, timeout: float | None
) -> Any:
    """Call the handler under its timeout. Async handlers are cancelled at the timeout; a sync
    handler is abandoned (its thread keeps running: the process pool is what stops it hard)."""
    if handler.is_async:
        return asyncio.run(_run_async(handler, kwargs, ctx, timeout))
    if timeout is None:
        return _call_sync(handler, kwargs, ctx)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = _call_sync(handler, kwargs, ctx)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"task-{ctx.id}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TaskTimeout(f"timed out after {timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _call_sync(handler: TaskDef, kwargs: dict[str, Any], ctx: TaskContext) -> Any:
    set_current_task(ctx)  # each task runs in a thread or event loop of its own context
    return handler.fn(**kwargs)


async def _run_async(
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


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-20_000:]
