"""`taskq stats` (and its live `--watch` view) and `taskq workers`, over services/stats.py."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import JsonFlag, Namespace, Output, Profile, RedisUrl, complete_queue, open_queue
from taskq_cli.cli.tables import Column, TableView, yes_no

if TYPE_CHECKING:
    from taskq_cli.services.shapes import StatsAnswer, WorkerDoc

COUNT_FIELDS = ("pending", "scheduled", "waiting", "active", "dead", "processed", "failed")
WIDE_COUNTS = ("waiting", "processed", "failed")  # from 100 columns (waiting: for dependencies)
QUEUE_COLUMNS = (
    Column("queue", "name"),
    *(Column(f, "count", 100 if f in WIDE_COUNTS else 0) for f in COUNT_FIELDS),
    Column("oldest", "age"),
    Column("paused"),
)
WORKER_COLUMNS = (
    Column("id", "name"),
    Column("state"),
    Column("queues", "name", 120),
    Column("concurrency", "count", 100),
    Column("tasks", "text", 120),
    Column("running", "text"),
    Column("heartbeat", "time"),
)
LIMITS_COLUMN = Column("limits", "text")


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
    fmt: Output = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Counts per queue, the oldest pending task's age, and the live workers.

    Example: taskq stats --watch
    """
    from taskq_cli.services.stats import check_queue, collect

    form = output.chosen(fmt, as_json)
    tq = open_queue(ctx, redis_url, namespace, None)
    check_queue(tq, queue)
    if watch and output.is_terminal() and form is output.Format.table:
        from taskq_cli.cli.watch import watch as dashboard

        dashboard(tq, queue, max(interval, 0.1), workers_table)
        return
    if not watch:
        _show(collect(tq, queue), form)
        return
    from taskq_cli.cli.watch import OutageNote

    outage = OutageNote()
    try:
        while True:  # off a terminal, --watch appends one snapshot per interval
            snapshot = outage.attempt(lambda: collect(tq, queue))
            if snapshot is not None:
                _show(snapshot, form)
            elif outage.news():
                output.warn(outage.text())
            time.sleep(max(interval, 0.1))
    except KeyboardInterrupt:
        return


def _show(snapshot: StatsAnswer, form: output.Format) -> None:
    from taskq_cli.services.stats import dead_letter_limits

    def table() -> None:
        columns, rows = queue_table(snapshot)
        output.show_table("queues", columns, rows)
        _show_workers(snapshot.workers)
        output.line(dead_letter_limits(snapshot))

    output.render(form, snapshot.to_json(), table)


def queue_table(snapshot: StatsAnswer) -> tuple[tuple[Column, ...], list[tuple[Any, ...]]]:
    """The queues' columns and rows; a limits column only when some queue has limits."""
    from taskq_cli.services.stats import queue_limits

    rows = queue_rows(snapshot)
    limits = [queue_limits(q) for q in snapshot.queues.values()]
    if not any(limits):
        return QUEUE_COLUMNS, rows
    return (*QUEUE_COLUMNS, LIMITS_COLUMN), [
        (*row, text or "-") for row, text in zip(rows, limits, strict=True)
    ]


def queue_rows(snapshot: StatsAnswer) -> list[tuple[Any, ...]]:
    return [
        (name, *(getattr(q, f) for f in COUNT_FIELDS), q.oldest_pending_age, yes_no(q.paused))
        for name, q in snapshot.queues.items()
    ]


def workers(
    ctx: typer.Context,
    fmt: Output = None,
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

    form = output.chosen(fmt, as_json)
    found = live_workers(open_queue(ctx, redis_url, namespace, None))
    output.render(form, [w.to_json() for w in found], lambda: _show_workers(found))


def worker_rows(found: list[WorkerDoc]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for w in found:
        running = ", ".join(f"{a.name} {a.id}" for a in w.active[:3])
        if len(w.active) > 3:
            running += f" (+{len(w.active) - 3})"
        tasks = ",".join(w.tasks) or "-"
        rows.append(
            (w.id, w.state or "-", ",".join(w.queues), w.concurrency, tasks, running or "-", w.heartbeat_at)
        )
    return rows


def workers_table(found: list[WorkerDoc]) -> TableView:
    return TableView(f"workers ({len(found)})", WORKER_COLUMNS, worker_rows(found))


def _show_workers(found: list[WorkerDoc]) -> None:
    view = workers_table(found)
    output.show_table(view.title, view.columns, view.rows)
