"""`taskq stats` (and its live `--watch` view) and `taskq workers`, over services/stats.py."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import JsonFlag, Namespace, Profile, RedisUrl, complete_queue, open_queue

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue
    from taskq_cli.services.shapes import StatsAnswer, WorkerDoc

COUNT_FIELDS = ("pending", "scheduled", "active", "dead", "processed", "failed")
WORKER_COLUMNS = ("id", "state", "queues", "concurrency", "tasks", "running", "heartbeat")


def stats(
    ctx: typer.Context,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue", "-q", help="Only this queue.", show_default=False, autocompletion=complete_queue
        ),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="A live view, refreshed until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.")] = 1.0,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Counts per queue, the oldest pending task's age, and the live workers.

    Example: taskq stats --watch
    """
    from taskq_cli.services.stats import check_queue, collect

    tq = open_queue(ctx, redis_url, namespace, None)
    check_queue(tq, queue)
    if watch and output.is_terminal() and not as_json:
        _watch(tq, queue, max(interval, 0.1))
        return
    if not watch:
        _show(collect(tq, queue), as_json)
        return
    outage = OutageNote()
    try:
        while True:  # off a terminal, --watch appends one snapshot per interval
            snapshot = outage.collect(tq, queue)
            if snapshot is not None:
                _show(snapshot, as_json)
            elif outage.news():
                output.warn(outage.text())
            time.sleep(max(interval, 0.1))
    except KeyboardInterrupt:
        return


def _show(snapshot: StatsAnswer, as_json: bool) -> None:
    from taskq_cli.services.stats import dead_letter_limits, queue_limits

    if as_json:
        output.json_out(snapshot.to_json())
        return
    limits = {name: queue_limits(q) for name, q in snapshot.queues.items()}
    shown = ("limits",) if any(limits.values()) else ()  # a column only when some queue has limits
    columns = ("queue", *COUNT_FIELDS, "oldest pending", "paused", *shown)
    rows = [
        (
            name,
            *(getattr(q, f) for f in COUNT_FIELDS),
            _age(q.oldest_pending_age),
            "yes" if q.paused else "no",
            *((limits[name] or "-",) if shown else ()),
        )
        for name, q in snapshot.queues.items()
    ]
    output.show_table("queues", columns, rows)
    _show_workers(snapshot.workers)
    output.line(dead_letter_limits(snapshot))


class OutageNote:
    """`--watch` through a Redis outage: the command keeps running and says Redis is unreachable
    (since when, and why) until a snapshot can be taken again."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.error = ""
        self._told = False

    def collect(self, tq: TaskQueue, queue: str | None) -> StatsAnswer | None:
        from taskq_cli.outage import REDIS_ERRORS, describe
        from taskq_cli.services.stats import collect

        try:
            snapshot = collect(tq, queue)
        except REDIS_ERRORS as exc:
            if self.since is None:
                self.since, self._told = time.time(), False
            self.error = describe(exc)
            return None
        self.since = None
        return snapshot

    def news(self) -> bool:
        """True once per outage (for a plain log of it)."""
        told, self._told = self._told, True
        return not told

    def text(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(self.since or time.time()))
        return f"{self.error}; since {since}, retrying"


def workers(
    ctx: typer.Context,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Live workers: busy or idle, queues, concurrency, the task names each has handlers for, running
    tasks, last heartbeat.

    Example: taskq workers --json
    """
    from taskq_cli.services.stats import workers as live_workers

    found = live_workers(open_queue(ctx, redis_url, namespace, None))
    if as_json:
        output.json_out([w.to_json() for w in found])
        return
    _show_workers(found)


# -- the live view -------------------------------------------------------------------------------------


def view(snapshot: StatsAnswer, rates: dict[str, tuple[float, float]]) -> list[output.Part]:
    """The live view's parts: queues with their rates, workers, and the dead-letter limits."""
    rows = []
    for name, q in snapshot.queues.items():
        done_rate, failed_rate = rates.get(name, (None, None))
        counts = (str(getattr(q, f)) for f in COUNT_FIELDS)
        rows.append((name, *counts, _age(q.oldest_pending_age), _rate(done_rate), _rate(failed_rate)))
    columns = ("queue", *COUNT_FIELDS, "oldest pending", "done/min", "failed/min")
    limits = snapshot.limits
    return [
        output.TableView("queues", columns, rows, right=columns[1:]),
        output.TableView(
            f"workers ({len(snapshot.workers)})", WORKER_COLUMNS, _worker_rows(snapshot.workers)
        ),
        f"dead-letter limits: {limits.dead_max:,} tasks, {_age(limits.dead_ttl)}",
    ]


class RateWindow:
    """processed/failed per minute per queue, from counter samples over the last 60 s."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, dict[str, tuple[int, int]]]] = deque()

    def add(self, at: float, snapshot: StatsAnswer) -> dict[str, tuple[float, float]]:
        counts = {name: (q.processed - q.failed, q.failed) for name, q in snapshot.queues.items()}
        self.samples.append((at, counts))
        while len(self.samples) > 2 and at - self.samples[1][0] >= self.window:
            self.samples.popleft()
        first_at, first = self.samples[0]
        span = at - first_at
        if span <= 0:
            return {}
        return {
            name: (
                (done - first.get(name, (done, failed))[0]) * 60 / span,
                (failed - first.get(name, (done, failed))[1]) * 60 / span,
            )
            for name, (done, failed) in counts.items()
        }


def _watch(tq: TaskQueue, queue: str | None, interval: float) -> None:
    from taskq_cli.services.stats import collect

    rates = RateWindow()
    outage = OutageNote()
    snapshot = collect(tq, queue)
    with output.live_view(view(snapshot, rates.add(time.monotonic(), snapshot))) as live:
        while True:
            time.sleep(interval)
            fresh = outage.collect(tq, queue)
            if fresh is not None:
                live.show(view(fresh, rates.add(time.monotonic(), fresh)))
            else:  # the last figures stay, under a line saying they are not current
                live.alert(outage.text())


def _worker_rows(found: list[WorkerDoc]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for w in found:
        running = ", ".join(f"{a.name} {a.id}" for a in w.active[:3])
        if len(w.active) > 3:
            running += f" (+{len(w.active) - 3})"
        tasks = ",".join(w.tasks) or "-"
        rows.append(
            (
                w.id,
                w.state or "-",
                ",".join(w.queues),
                str(w.concurrency),
                tasks,
                running or "-",
                w.heartbeat_at,
            )
        )
    return rows


def _show_workers(found: list[WorkerDoc]) -> None:
    output.show_table(f"workers ({len(found)})", WORKER_COLUMNS, _worker_rows(found))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 86400:
        return time.strftime("%H:%M:%S", time.gmtime(seconds))
    return f"{seconds / 86400:.0f}d"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
