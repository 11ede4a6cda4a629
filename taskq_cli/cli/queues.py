"""`taskq queue list | pause | resume | clear | limit`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import JsonFlag, Namespace, Output, Profile, RedisUrl, complete_queue, open_queue
from taskq_cli.cli.tables import Column, yes_no
from taskq_cli.config import check_name

queue_app = typer.Typer(help="List, pause, resume, clear or limit queues.", no_args_is_help=True)

QUEUE_COLUMNS = (
    Column("name", "name"),
    Column("paused"),
    *(
        Column(c, "count", 100 if c == "waiting" else 0)
        for c in ("pending", "scheduled", "waiting", "active", "dead")
    ),
)
LIMITS = Column("limits", "text")

QueueName = Annotated[str, typer.Argument(metavar="NAME", help="Queue name.", autocompletion=complete_queue)]


@queue_app.command("list")
def queue_list(
    ctx: typer.Context,
    fmt: Output = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Every queue with its counts and whether it is paused.

    Example: taskq queue list --json
    """
    from taskq_cli.services.queues import list_queues

    form = output.chosen(fmt, as_json)
    rows = [q.to_json() for q in list_queues(open_queue(ctx, redis_url, namespace, None))]
    output.render(form, rows, lambda: output.show_table("queues", (*QUEUE_COLUMNS, LIMITS), queue_rows(rows)))


def queue_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    fields = [c.header for c in QUEUE_COLUMNS]
    return [[yes_no(r[c]) if c == "paused" else r[c] for c in fields] + [describe_limits(r)] for r in rows]


@queue_app.command("pause")
def queue_pause(
    ctx: typer.Context,
    name: QueueName,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Stop workers taking tasks from a queue; it keeps accepting new ones. A queue never used yet is
    paused ahead of time, saying so on stderr (exit 0): its first tasks will wait.

    Example: taskq queue pause emails
    """
    if not _set_paused(ctx, name, True, redis_url, namespace):
        output.warn(f"queue {name} has never been used; paused ahead of time")
    output.line(f"paused {name}")


@queue_app.command("resume")
def queue_resume(
    ctx: typer.Context,
    name: QueueName,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Let workers take tasks from a paused queue again. A queue never used is left alone, saying so
    on stderr (exit 0).

    Example: taskq queue resume emails
    """
    if _set_paused(ctx, name, False, redis_url, namespace):
        output.line(f"resumed {name}")
    else:
        output.warn(f"queue {name} has never been used; nothing to resume")


@queue_app.command("clear")
def queue_clear(
    ctx: typer.Context,
    name: QueueName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Delete every pending, scheduled, dead and done task of a queue (running ones finish).

    Example: taskq queue clear emails --yes
    """
    from taskq_cli.services import queues

    check_name("queue", name)
    tq = open_queue(ctx, redis_url, namespace, None)
    count = queues.clear_count(tq, name)
    output.confirm(f"Delete {count:,} task(s) (every waiting, dead and done one) of queue {name!r}?", yes)
    output.line(f"deleted {queues.clear(tq, name)} task(s) from {name}")


def _set_paused(
    ctx: typer.Context, name: str, paused: bool, redis_url: str | None, namespace: str | None
) -> bool:
    from taskq_cli.services import queues

    check_name("queue", name)
    _, known = queues.set_paused(open_queue(ctx, redis_url, namespace, None), name, paused)
    return known


@queue_app.command("limit")
def queue_limit(
    ctx: typer.Context,
    name: QueueName,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="At most N tasks of the queue active at once, across every worker.", show_default=False
        ),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            help="At most N starts in any window: N/DURATION (100/s, 600/1m, 5/10s).", show_default=False
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the queue's limits (then set any given).")
    ] = False,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Limit a queue across every worker, or show its limits (no option given). A limit not given
    stays as it is. Limited tasks stay pending and use no attempt.

    Example: taskq queue limit emails --concurrency 5 --rate 100/s
    """
    from taskq_cli.services import limits

    check_name("queue", name)
    tq = open_queue(ctx, redis_url, namespace, None)
    if concurrency is None and rate is None and not clear:
        answer = limits.show(tq, [name])[name]
    else:
        answer = limits.set_limits(tq, name, concurrency, rate, clear)
    if as_json:
        output.json_out(answer.to_json())
    else:
        output.line(f"{name}: {describe_limits(answer.to_json())}")


def describe_limits(row: dict[str, Any]) -> str:
    """`concurrency 5, rate 100/1s`, or `none`."""
    parts = []
    if row.get("concurrency_limit") is not None:
        parts.append(f"concurrency {row['concurrency_limit']}")
    rate = row.get("rate_limit")
    if rate:
        parts.append(f"rate {rate['limit']}/{rate['window']:g}s")
    return ", ".join(parts) or "none"
