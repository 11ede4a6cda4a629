"""`taskq stats` (and its live `--watch` view) and `taskq workers`."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import JsonFlag, Namespace, RedisUrl, open_queue
from taskq_cli.errors import NotFound
from taskq_cli.timeparse import iso_ms

if TYPE_CHECKING:
    from rich.console import RenderableType

    from taskq_cli.queue import TaskQueue

COUNT_FIELDS = ("pending", "scheduled", "active", "dead", "processed", "failed")


def stats(
    ctx: typer.Context,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Only this queue.", show_default=False)
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="A live view, refreshed until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.")] = 1.0,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Counts per queue, the oldest pending task's age, and the live workers.

    Example: taskq stats --watch
    """
    tq = open_queue(ctx, redis_url, namespace, None)
    if queue is not None and queue not in tq.broker.known_queues():
        raise NotFound(f"queue {queue!r} not found")
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


def _show(snapshot: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.json_out(snapshot)
    else:
        _show_snapshot(snapshot)


class OutageNote:
    """`--watch` through a Redis outage: the command keeps running and says Redis is unreachable
    (since when, and why) until a snapshot can be taken again."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.error = ""
        self._told = False

    def collect(self, tq: TaskQueue, queue: str | None) -> dict[str, Any] | None:
        from taskq_cli.outage import REDIS_ERRORS, describe

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


def _show_snapshot(snapshot: dict[str, Any]) -> None:
    columns = ("queue", *COUNT_FIELDS, "oldest pending", "paused")
    rows = [
        (name, *(q[f] for f in COUNT_FIELDS), _age(q["oldest_pending_age"]), "yes" if q["paused"] else "no")
        for name, q in snapshot["queues"].items()
    ]
    output.show_table("queues", columns, rows)
    _show_workers(snapshot["workers"])


def workers(
    ctx: typer.Context,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Live workers: host, pid, queues, concurrency, running tasks, last heartbeat.

    Example: taskq workers --json
    """
    tq = open_queue(ctx, redis_url, namespace, None)
    found = [_worker_json(w) for w in tq.broker.live_workers()]
    if as_json:
        output.json_out(found)
        return
    _show_workers(found)


def collect(tq: TaskQueue, queue: str | None) -> dict[str, Any]:
    """The SPEC's `stats --json` document."""
    broker = tq.broker
    names = [queue] if queue else broker.known_queues()
    now_ms = broker.redis_time_ms()
    paused = broker.paused(names)
    queues: dict[str, dict[str, Any]] = {}
    for s in broker.queue_stats(names):
        age = None if s.oldest_pending_ms is None else max(now_ms - s.oldest_pending_ms, 0) / 1000
        counts = {f: getattr(s, f) for f in COUNT_FIELDS}
        queues[s.queue] = {**counts, "oldest_pending_age": age, "paused": paused[s.queue]}
    return {
        "queues": queues,
        "workers": [_worker_json(w) for w in broker.live_workers()],
        "limits": {"dead_max": tq.settings.dead_max, "dead_ttl": tq.settings.dead_ttl},
    }


def render(snapshot: dict[str, Any], rates: dict[str, tuple[float, float]]) -> RenderableType:
    from rich.console import Group
    from rich.table import Table

    table = Table(title="queues", show_edge=False, header_style="bold")
    for column in ("queue", *COUNT_FIELDS, "oldest pending", "done/min", "failed/min"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for name, q in snapshot["queues"].items():
        done_rate, failed_rate = rates.get(name, (None, None))
        table.add_row(
            name,
            *(str(q[f]) for f in COUNT_FIELDS),
            _age(q["oldest_pending_age"]),
            _rate(done_rate),
            _rate(failed_rate),
        )
    limits = snapshot["limits"]
    caption = f"dead-letter limits: {limits['dead_max']:,} tasks, {_age(limits['dead_ttl'])}"
    return Group(table, _workers_table(snapshot["workers"]), caption)


class RateWindow:
    """processed/failed per minute per queue, from counter samples over the last 60 s."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, dict[str, tuple[int, int]]]] = deque()

    def add(self, at: float, snapshot: dict[str, Any]) -> dict[str, tuple[float, float]]:
        counts = {name: (q["processed"] - q["failed"], q["failed"]) for name, q in snapshot["queues"].items()}
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
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    rates = RateWindow()
    outage = OutageNote()
    snapshot = collect(tq, queue)
    view = render(snapshot, rates.add(time.monotonic(), snapshot))
    with Live(
        view, console=output.console(), screen=output.is_terminal(), auto_refresh=False, transient=False
    ) as live:
        try:
            while True:
                time.sleep(interval)
                fresh = outage.collect(tq, queue)
                if fresh is not None:
                    view = render(fresh, rates.add(time.monotonic(), fresh))
                    live.update(view, refresh=True)
                else:  # the last figures stay, under a line saying they are not current
                    live.update(Group(Text(outage.text(), style="bold red"), view), refresh=True)
        except KeyboardInterrupt:
            pass


WORKER_COLUMNS = ("id", "queues", "concurrency", "running", "heartbeat")


def _worker_rows(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for w in found:
        running = ", ".join(f"{a.get('name')} {a.get('id')}" for a in w["active"][:3])
        if len(w["active"]) > 3:
            running += f" (+{len(w['active']) - 3})"
        rows.append(
            (w["id"], ",".join(w["queues"]), str(w["concurrency"]), running or "-", w["heartbeat_at"])
        )
    return rows


def _show_workers(found: list[dict[str, Any]]) -> None:
    output.show_table(f"workers ({len(found)})", WORKER_COLUMNS, _worker_rows(found))


def _workers_table(found: list[dict[str, Any]]) -> RenderableType:
    from rich.table import Table

    table = Table(title=f"workers ({len(found)})", show_edge=False, header_style="bold")
    for column in WORKER_COLUMNS:
        table.add_column(column)
    for row in _worker_rows(found):
        table.add_row(*row)
    return table


def _worker_json(info: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: info.get(k) for k in ("id", "host", "pid", "queues", "concurrency", "started_at", "heartbeat_at")
    }
    out["started_at"] = iso_ms(info.get("started_at"))
    out["heartbeat_at"] = iso_ms(info.get("heartbeat_at"))
    out["pool"] = info.get("pool")
    out["active"] = [{**a, "started_at": iso_ms(a.get("started_at"))} for a in info.get("active", [])]
    return out


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 86400:
        return time.strftime("%H:%M:%S", time.gmtime(seconds))
    return f"{seconds / 86400:.0f}d"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
