"""The Redis protocol: the only code that sends commands to Redis, and the floor of taskq (it imports
nothing of taskq but `errors` and `states`).

    types.py     what goes in and comes out: NewTask, Fetched, Ack, Failure, TaskRecord, QueueStats...
    broker.py    Broker: one typed method per operation (reads.py: its read-only half)
    keys.py      every key; scripts.py and lua/ the scripts, one per state change
    topology.py  URLs to clients (one server, Sentinel, Cluster); waker.py a cluster's wake-ups
    aio.py       AsyncBroker: the enqueue, lookup and result waits of the asyncio client
    waits.py     how a result waiter hears of a task's outcome (shared by both brokers)
    probes.py    facts about the server and the namespace, for `taskq doctor`
    failures.py  redis-py's errors become BrokerUnavailable / BrokerError

This module only re-exports.
"""

from __future__ import annotations

from taskq_cli.protocol.broker import WAKE_DUE, Broker, new_id, random_tokens
from taskq_cli.protocol.reads import only_queue
from taskq_cli.protocol.topology import connect
from taskq_cli.protocol.types import (
    HANDED_OFF,
    Ack,
    BrokerSettings,
    EnqueueResult,
    FailState,
    Failure,
    Fetched,
    Limited,
    Malformed,
    NewTask,
    NotReplicated,
    Postpone,
    QueueLimits,
    QueueStats,
    Report,
    RetryFallbacks,
    TaskRecord,
    UniqueLock,
)

__all__ = [
    "HANDED_OFF",
    "WAKE_DUE",
    "Ack",
    "Broker",
    "BrokerSettings",
    "EnqueueResult",
    "FailState",
    "Failure",
    "Fetched",
    "Limited",
    "Malformed",
    "NewTask",
    "NotReplicated",
    "Postpone",
    "QueueLimits",
    "QueueStats",
    "Report",
    "RetryFallbacks",
    "TaskRecord",
    "UniqueLock",
    "connect",
    "new_id",
    "only_queue",
    "random_tokens",
]
