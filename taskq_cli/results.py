"""Waiting for a task's result: `TaskQueue.result` and `aresult`. What an outcome means is decided
once (`settle`); the two loops differ only in their I/O (Broker or AsyncBroker, see protocol/waits.py
for how Redis tells a waiter that the task ended)."""

from __future__ import annotations

import contextlib
import json
import math
import time
from typing import TYPE_CHECKING, Any

from taskq_cli.errors import BrokerUnavailable, ResultTimeout, TaskFailed, TaskNotFound
from taskq_cli.models import Task
from taskq_cli.protocol import only_queue
from taskq_cli.states import TaskState

if TYPE_CHECKING:
    from taskq_cli.protocol import Broker, TaskRecord
    from taskq_cli.protocol.aio import AsyncBroker

FOREVER = math.inf  # `wait=FOREVER`: until the task ends (the CLI without --timeout)


def settle(record: TaskRecord | None, task_id: str) -> tuple[bool, Any]:
    """(True, the result) when the task is done; (False, None) while it runs. Raises TaskFailed
    when it is dead, TaskNotFound when there is no such task (or its done record expired)."""
    if record is None:
        raise TaskNotFound(f"task {task_id} not found")
    state = record.meta.get("state")
    if state == TaskState.DONE:
        return True, _result(record.result_json)
    if state == TaskState.DEAD:
        raise TaskFailed(Task.from_record(record.meta, record.payload_json, record.result_json))
    return False, None


def _result(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _deadline(wait: float | None) -> float:
    return time.monotonic() + (wait or 0.0) if wait != FOREVER else math.inf


def _timeout(task_id: str, wait: float | None) -> ResultTimeout:
    return ResultTimeout(f"task {task_id} did not finish within {wait or 0:g}s")


def wait_result(broker: Broker, task_id: str, wait: float | None, queue: str | None) -> Any:
    """TaskQueue.result: read the record (registered as a waiter); while the task runs, block until
    Redis says it ended (or a block of at most WAIT_BLOCK_S passes) and read it again. A dropped
    connection counts as a wake-up: the record is read again, so an outcome while away is never
    missed (and a Redis still down raises from that read)."""
    found = broker.queues_holding([task_id], [queue] if queue else broker.known_queues()).get(task_id)
    if not found:
        raise TaskNotFound(f"task {task_id} not found")
    where = only_queue(task_id, found)
    deadline = _deadline(wait)
    while True:
        done, value = settle(broker.watch(where, task_id, register=bool(wait)), task_id)
        if done:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timeout(task_id, wait)
        with contextlib.suppress(BrokerUnavailable):  # dropped while blocked: read the record again
            broker.block_outcome(where, task_id, left)


async def await_result(broker: AsyncBroker, task_id: str, wait: float | None, queue: str | None) -> Any:
    """TaskQueue.aresult: `wait_result` on the loop."""
    where = await broker.queues_holding(task_id, queue)
    if where is None:
        raise TaskNotFound(f"task {task_id} not found")
    deadline = _deadline(wait)
    while True:
        done, value = settle(await broker.watch(where, task_id, register=bool(wait)), task_id)
        if done:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timeout(task_id, wait)
        with contextlib.suppress(BrokerUnavailable):
            await broker.block_outcome(where, task_id, left)
