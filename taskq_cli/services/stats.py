"""Counts per queue, the oldest pending task's age, the live workers and the dead-letter limits:
what `taskq stats`, `taskq workers` and GET /stats show."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from taskq_cli.errors import NotFound
from taskq_cli.services.limits import fields as limit_fields
from taskq_cli.services.limits import show as show_limits
from taskq_cli.services.shapes import Limits, QueueCounts, RunningTask, StatsAnswer, WorkerDoc
from taskq_cli.timeparse import iso_ms

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue

COUNT_FIELDS = ("pending", "scheduled", "waiting", "active", "dead", "processed", "failed")
WORKER_FIELDS = ("id", "host", "pid", "queues", "concurrency")


def check_queue(tq: TaskQueue, queue: str | None) -> None:
    """NotFound for a queue never used (None: every queue)."""
    if queue is not None and queue not in tq.broker.known_queues():
        raise NotFound(f"queue {queue!r} not found")


def collect(tq: TaskQueue, queue: str | None = None) -> StatsAnswer:
    """The SPEC's `stats --json` document, for one queue or every known one."""
    broker = tq.broker
    names = [queue] if queue else broker.known_queues()
    now_ms = broker.redis_time_ms()
    paused = broker.paused(names)
    limits = show_limits(tq, names)
    queues: dict[str, QueueCounts] = {}
    for s in broker.queue_stats(names):
        age = None if s.oldest_pending_ms is None else max(now_ms - s.oldest_pending_ms, 0) / 1000
        counts = {f: getattr(s, f) for f in COUNT_FIELDS}
        queues[s.queue] = QueueCounts(
            **counts, oldest_pending_age=age, paused=paused[s.queue], **limit_fields(limits[s.queue])
        )
    return StatsAnswer(
        queues=queues,
        workers=workers(tq),
        limits=Limits(dead_max=tq.settings.dead_max, dead_ttl=tq.settings.dead_ttl),
    )


def workers(tq: TaskQueue) -> list[WorkerDoc]:
    """The live workers, as they last described themselves."""
    return [doc for info in tq.broker.live_workers() if (doc := _worker(info)) is not None]


def _worker(info: dict[str, Any]) -> WorkerDoc | None:
    """A worker's description (written by the worker itself) in its JSON shape; None for one that
    does not fit it (data in Redis may come from another version or another writer: never a crash)."""
    try:
        return WorkerDoc.model_validate(
            {
                **{k: info.get(k) for k in WORKER_FIELDS},
                "queues": info.get("queues") or [],
                "started_at": iso_ms(info.get("started_at")),
                "heartbeat_at": iso_ms(info.get("heartbeat_at")),
                "pool": info.get("pool"),
                "tasks": info.get("tasks") or [],
                "state": info.get("state"),
                "active": [
                    RunningTask.model_validate({**a, "started_at": iso_ms(a.get("started_at"))})
                    for a in info.get("active") or []
                ],
            }
        )
    except (ValidationError, TypeError, ValueError):
        return None


def queue_limits(counts: QueueCounts) -> str:
    """A queue's limits in words ("5 at once, 100 per 1s"), "" when it has none. Queue limits
    (`concurrency_limit`, `rate_limit`, SPEC "Limits") are read when the counts carry them."""
    parts = []
    concurrency = getattr(counts, "concurrency_limit", None)
    if concurrency is not None:
        parts.append(f"{concurrency:,} at once")
    rate = getattr(counts, "rate_limit", None)
    if rate is not None:
        pair = (rate["limit"], rate["window"]) if isinstance(rate, dict) else (rate.limit, rate.window)
        limit, window = pair
        parts.append(f"{limit:,} per {window:g}s")
    return ", ".join(parts)


def dead_letter_limits(answer: StatsAnswer) -> str:
    """The dead-letter limits in words, for the table view."""
    ttl = answer.limits.dead_ttl
    kept = f"{ttl / 86400:g}d" if ttl >= 86400 else f"{ttl:g}s"
    return f"dead-letter limits: {answer.limits.dead_max:,} tasks per queue, each kept {kept}"
