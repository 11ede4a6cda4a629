"""`taskq stats` and `taskq task show`: reading the state of queues and tasks."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import JsonFlag, Namespace, RedisUrl, open_queue
from taskq_cli.errors import NotFound
from taskq_cli.timeparse import iso_ms

task_app = typer.Typer(help="Look at one task.", no_args_is_help=True)


def stats(
    ctx: typer.Context,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Only this queue.", show_default=False)
    ] = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Counts per queue, and the live workers."""
    tq = open_queue(ctx, redis_url, namespace, None)
    broker = tq.broker
    names = [queue] if queue else broker.known_queues()
    now_ms = broker.redis_time_ms()
    queues: dict[str, dict[str, Any]] = {}
    for s in broker.queue_stats(names):
        age = None if s.oldest_pending_ms is None else max(now_ms - s.oldest_pending_ms, 0) / 1000
        queues[s.queue] = {
            "pending": s.pending,
            "scheduled": s.scheduled,
            "active": s.active,
            "dead": s.dead,
            "processed": s.processed,
            "failed": s.failed,
            "oldest_pending_age": age,
        }
    workers = [_worker_json(w) for w in broker.live_workers()]
    if as_json:
        limits = {"dead_max": tq.settings.dead_max, "dead_ttl": tq.settings.dead_ttl}
        output.json_out({"queues": queues, "workers": workers, "limits": limits})
        return
    columns = ("queue", "pending", "scheduled", "active", "dead", "processed", "failed", "oldest pending")
    rows = [
        (name, *(v[c] for c in columns[1:7]), _age(v["oldest_pending_age"])) for name, v in queues.items()
    ]
    output.show_table("queues", columns, rows)
    output.show_table(
        f"workers ({len(workers)})",
        ("id", "queues", "concurrency", "active", "heartbeat"),
        [
            (w["id"], ",".join(w["queues"]), w["concurrency"], len(w["active"]), w["heartbeat_at"])
            for w in workers
        ],
    )


@task_app.command("show")
def task_show(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Look only in this queue.", show_default=False)
    ] = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Every field of one task."""
    tq = open_queue(ctx, redis_url, namespace, None)
    found = tq.get_task(task_id, queue)
    if found is None:
        raise NotFound(f"task {task_id} not found")
    data = found.to_json()
    if as_json:
        output.json_out(data)
    else:
        output.show_mapping(f"task {task_id}", data)


def _worker_json(info: dict[str, Any]) -> dict[str, Any]:
    out = dict(info)
    out["started_at"] = iso_ms(info.get("started_at"))
    out["heartbeat_at"] = iso_ms(info.get("heartbeat_at"))
    out["active"] = [{**a, "started_at": iso_ms(a.get("started_at"))} for a in info.get("active", [])]
    return out


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds >= 60 else f"{seconds:.1f}s"
