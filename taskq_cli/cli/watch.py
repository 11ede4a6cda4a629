"""`taskq stats --watch` on a terminal: a small live dashboard. The queues with a sparkline of
their throughput over the last minutes, the workers, the dead-letter queue's newest entries. It
keeps running through a Redis outage (the last figures stay under a line saying Redis is
unreachable) and lays each frame out at the terminal's width of the moment (a resize is followed at
the next refresh)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from taskq_cli.cli import output
from taskq_cli.cli.tables import Column, TableView, duration

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue
    from taskq_cli.services.shapes import StatsAnswer, WorkerDoc

T = TypeVar("T")

SPARK = "▁▂▃▄▅▆▇█"
BUCKET = 20.0  # seconds of throughput per sparkline character
BUCKETS = 12  # characters: the last 4 minutes
NEWEST_DEAD = 5  # dead-letter entries shown

QUEUE_COLUMNS = (
    Column("queue", "name"),
    Column("pending", "count"),
    Column("scheduled", "count", 100),
    Column("waiting", "count", 140),  # (dependencies) the widest view: names stay whole at 120
    Column("active", "count"),
    Column("dead", "count"),
    Column("processed", "count", 100),
    Column("failed", "count", 100),
    Column("oldest", "age"),
    Column(f"last {int(BUCKET * BUCKETS / 60)}m"),
    Column("done/min", "count", 100),
    Column("failed/min", "count", 100),
)


@dataclass(frozen=True)
class Frame:
    """What one refresh shows: the stats and the newest dead tasks (their JSON shape)."""

    stats: StatsAnswer
    dead: list[dict[str, Any]]


def collect(tq: TaskQueue, queue: str | None) -> Frame:
    from taskq_cli.services.dlq import dead_tasks
    from taskq_cli.services.stats import collect as stats

    return Frame(stats(tq, queue), [t.to_json() for t in dead_tasks(tq, queue, None, NEWEST_DEAD)])


class OutageNote:
    """Through a Redis outage: the command keeps running and says Redis is unreachable (since when,
    and why) until a snapshot can be taken again."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.error = ""
        self._told = False

    def attempt(self, read: Callable[[], T]) -> T | None:
        """`read()`, or None while Redis cannot answer."""
        from taskq_cli.outage import REDIS_ERRORS, describe

        try:
            value = read()
        except REDIS_ERRORS as exc:
            if self.since is None:
                self.since, self._told = time.time(), False
            self.error = describe(exc)
            return None
        self.since = None
        return value

    def news(self) -> bool:
        """True once per outage (for a plain log of it)."""
        told, self._told = self._told, True
        return not told

    def text(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(self.since or time.time()))
        return f"{self.error}; since {since}, retrying"


class Throughput:
    """Tasks finished per queue in buckets of BUCKET seconds over the last BUCKETS, from the
    processed counter of each snapshot; and done/failed per minute over the last minute."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.buckets: dict[str, dict[int, int]] = {}
        self.first: int | None = None
        self.samples: deque[tuple[float, dict[str, tuple[int, int]]]] = deque()

    def add(self, at: float, snapshot: StatsAnswer) -> None:
        bucket = int(at // BUCKET)
        self.first = bucket if self.first is None else self.first
        for name, q in snapshot.queues.items():
            done = q.processed - self.last.get(name, q.processed)
            self.last[name] = q.processed
            history = self.buckets.setdefault(name, {})
            history[bucket] = history.get(bucket, 0) + max(done, 0)
            for old in [b for b in history if b <= bucket - BUCKETS]:
                del history[old]
        counts = {name: (q.processed - q.failed, q.failed) for name, q in snapshot.queues.items()}
        self.samples.append((at, counts))
        while len(self.samples) > 2 and at - self.samples[1][0] >= 60:
            self.samples.popleft()

    def sparkline(self, name: str, at: float) -> str:
        """BUCKETS characters, oldest first; blank before the view started."""
        now = int(at // BUCKET)
        history = self.buckets.get(name, {})
        values = [history.get(b) for b in range(now - BUCKETS + 1, now + 1)]
        top = max((v for v in values if v), default=0)
        chars = []
        for b, v in zip(range(now - BUCKETS + 1, now + 1), values, strict=True):
            if self.first is None or b < self.first:
                chars.append(" ")
            else:
                chars.append(SPARK[(v or 0) * (len(SPARK) - 1) // top] if top else SPARK[0])
        return "".join(chars).rstrip() or SPARK[0]

    def rates(self) -> dict[str, tuple[int, int]]:
        """Done and failed per minute per queue over the samples of the last minute."""
        if len(self.samples) < 2:
            return {}
        (first_at, first), (at, last) = self.samples[0], self.samples[-1]
        span = at - first_at
        return {
            name: (
                round((done - first.get(name, (done, failed))[0]) * 60 / span),
                round((failed - first.get(name, (done, failed))[1]) * 60 / span),
            )
            for name, (done, failed) in last.items()
        }


WorkersTable = Callable[["list[WorkerDoc]"], TableView]  # the workers as `taskq workers` shows them


def dashboard(frame: Frame, throughput: Throughput, at: float, workers: WorkersTable) -> list[output.Part]:
    """The parts of one frame: queues, workers, the newest dead tasks, the dead-letter limits."""
    from taskq_cli.cli.dlq import DLQ_COLUMNS, dlq_rows

    stats = frame.stats
    rates = throughput.rates()
    rows = []
    for name, q in stats.queues.items():
        done, failed = rates.get(name, (None, None))
        counts = (q.pending, q.scheduled, q.waiting, q.active, q.dead, q.processed, q.failed)
        rows.append((name, *counts, q.oldest_pending_age, throughput.sparkline(name, at), done, failed))
    dead_total = sum(q.dead for q in stats.queues.values())
    limits = stats.limits
    return [
        TableView("queues", QUEUE_COLUMNS, rows),
        workers(stats.workers),
        TableView(
            f"dead letters: newest {len(frame.dead)} of {dead_total:,}",
            DLQ_COLUMNS,
            dlq_rows(frame.dead),
        ),
        f"dead-letter limits: {limits.dead_max:,} tasks, {duration(limits.dead_ttl)}",
    ]


def watch(tq: TaskQueue, queue: str | None, interval: float, workers: WorkersTable) -> None:
    """Redraw the dashboard every `interval` seconds until Ctrl-C."""
    throughput = Throughput()
    outage = OutageNote()
    frame = collect(tq, queue)
    throughput.add(time.time(), frame.stats)
    with output.live_view(dashboard(frame, throughput, time.time(), workers)) as live:
        while True:
            time.sleep(interval)
            fresh = outage.attempt(lambda: collect(tq, queue))
            if fresh is not None:
                throughput.add(time.time(), fresh.stats)
                live.show(dashboard(fresh, throughput, time.time(), workers))
            else:  # the last figures stay, under a line saying they are not current
                live.alert(outage.text())
