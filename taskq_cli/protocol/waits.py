"""The protocol side of waiting for a task's outcome, shared by Broker and AsyncBroker: the commands
of one look at the record (queued on a pipeline, sync or async alike) and what their replies mean.

How a waiter hears of an outcome (see notify in lua/_lib.lua): it sets `waiting:<id>` in the queue's
slot, reads the record in the same round trip, and, while the task has not ended, blocks with
`BLMOVE outcome:<id> outcome:<id>` for at most WAIT_BLOCK_S. Ending a task (ack.lua, fail.lua,
recover.lua, fetch's malformed path, cancel.lua: all through notify) pushes one marker there when
`waiting:<id>` exists. BLMOVE from a list to itself hands the marker on to the next blocked client
within the same push, so every waiter wakes at once; each then reads the record again. Why not the
alternatives: a plain BLPOP wakes one waiter per marker, so the script would have to know how many
wait (a counter that a waiter which leaves must take back, racing the script); sharded pub/sub needs
a connection per waiter held in subscribe mode and loses messages sent while it reconnects. Here a
waiter whose connection drops simply reads the record again, and a marker pushed while it was away
is still there when it blocks again. Both keys expire (keys.py *_TTL_MS): nothing stays behind.
"""

from __future__ import annotations

from typing import Any

from taskq_cli.protocol.keys import WAITING_TTL_MS, QueueKeys
from taskq_cli.protocol.reads import _parse_meta
from taskq_cli.protocol.types import TaskRecord

# Seconds one BLMOVE blocks at most (below the clients' 10 s socket timeout); after it the waiter
# refreshes `waiting:<id>` and reads the record again. A notification ends the block at once.
WAIT_BLOCK_S = 5.0


def queue_watch(pipe: Any, keys: QueueKeys, task_id: str, register: bool) -> None:
    """Queue one look at the task on a pipeline (register: as a waiter, for the next block)."""
    if register:
        pipe.set(keys.waiting(task_id), "1", px=WAITING_TTL_MS)
    pipe.hget(keys.tasks, task_id)
    pipe.hget(keys.payloads, task_id)
    pipe.hget(keys.results, task_id)


def watched_record(replies: list[Any], task_id: str, queue: str) -> TaskRecord | None:
    """The record from the replies of `queue_watch` (None: no such task)."""
    meta, payload, result = replies[-3:]
    return None if meta is None else TaskRecord(_parse_meta(meta, task_id, queue), payload, result)


def block_args(keys: QueueKeys, task_id: str, seconds: float) -> tuple[str, float]:
    """BLMOVE's key (the marker list, moved to itself: see the module's docstring) and timeout."""
    return keys.outcome(task_id), max(round(min(seconds, WAIT_BLOCK_S), 3), 0.01)
