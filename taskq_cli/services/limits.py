"""Queue limits: set, clear and show them (`taskq queue limit`, the limits fields of `stats` and
`queue list`). `TaskQueue.set_queue_limits` checks and writes them; fetch.lua enforces them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskq_cli.producer import UNSET
from taskq_cli.protocol import QueueLimits
from taskq_cli.services.shapes import QueueLimitsDoc, RateLimitDoc

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue


def set_limits(
    tq: TaskQueue, queue: str, concurrency: int | None, rate: str | None, clear: bool
) -> QueueLimitsDoc:
    """`taskq queue limit`: `clear` removes both limits, then a given one is set; one not given
    stays as it is."""
    if clear:
        tq.set_queue_limits(queue, concurrency=None, rate=None)
    limits = tq.set_queue_limits(
        queue,
        concurrency=UNSET if concurrency is None else concurrency,
        rate=UNSET if rate is None else rate,
    )
    return doc(queue, limits)


def show(tq: TaskQueue, queues: Sequence[str]) -> dict[str, QueueLimitsDoc]:
    return {q: doc(q, limits) for q, limits in tq.broker.limits(queues).items()}


def doc(queue: str, limits: QueueLimits) -> QueueLimitsDoc:
    rate = None
    if limits.rate is not None and limits.window is not None:
        rate = RateLimitDoc(limit=limits.rate, window=limits.window)
    return QueueLimitsDoc(name=queue, concurrency_limit=limits.concurrency, rate_limit=rate)


def fields(limits: QueueLimitsDoc) -> dict[str, Any]:
    """The limit fields of a queue's row in `stats` and `queue list`."""
    return {"concurrency_limit": limits.concurrency_limit, "rate_limit": limits.rate_limit}
