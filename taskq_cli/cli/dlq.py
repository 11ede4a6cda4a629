"""`taskq dlq list | show | retry | purge`: the dead-letter queue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import (
    JsonFlag,
    Limit,
    Namespace,
    Offset,
    Output,
    Profile,
    RedisUrl,
    complete_queue,
    open_queue,
)
from taskq_cli.cli.tables import Column, footer
from taskq_cli.errors import NotFound, UsageError

if TYPE_CHECKING:
    from taskq_cli.services.shapes import BulkReport

dlq_app = typer.Typer(help="The dead-letter queue: tasks that failed for good.", no_args_is_help=True)

DLQ_COLUMNS = (
    Column("id", "id"),
    Column("name", "name"),
    Column("queue", "name"),
    Column("attempts", "count", 100),
    Column("died at", "time"),
    Column("error", "text"),
)

QueueOpt = Annotated[
    str | None,
    typer.Option("--queue", "-q", help="Only this queue.", show_default=False, autocompletion=complete_queue),
]
NameOpt = Annotated[str | None, typer.Option("--name", help="Only tasks of this name.", show_default=False)]
Ids = Annotated[list[str] | None, typer.Argument(metavar="[ID]...", help="Task ids.", show_default=False)]
AllFlag = Annotated[bool, typer.Option("--all", help="Every dead task matching the filters.")]


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    queue: QueueOpt = None,
    name: NameOpt = None,
    limit: Limit = 50,
    offset: Offset = 0,
    fmt: Output = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Dead tasks, newest first.

    Example: taskq dlq list --queue emails --name send_email --limit 20
    """
    from taskq_cli.services.dlq import dead_tasks, dead_total

    form = output.chosen(fmt, as_json)
    tq = open_queue(ctx, redis_url, namespace, None)
    tasks = [t.to_json() for t in dead_tasks(tq, queue, name, limit, offset)]

    def table() -> None:
        rows = dlq_rows(tasks)
        cut = footer(len(tasks), offset, dead_total(tq, queue, name))
        if cut is None and len(tasks) == limit and name is not None:
            cut = f"{len(tasks):,} shown; --limit/--offset for more"
        output.show_table("dead tasks", DLQ_COLUMNS, rows, footer=cut)

    output.render(form, tasks, table)


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    queue: QueueOpt = None,
    fmt: Output = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """One dead task: payload, error and the whole traceback.

    Example: taskq dlq show 3f2a...
    """
    from taskq_cli.services.dlq import dead_task

    form = output.chosen(fmt, as_json)
    data = dead_task(open_queue(ctx, redis_url, namespace, None), task_id, queue).to_json()
    output.render(form, data, lambda: output.show_task(data))


@dlq_app.command("retry")
def dlq_retry(
    ctx: typer.Context,
    ids: Ids = None,
    all_: AllFlag = False,
    queue: QueueOpt = None,
    name: NameOpt = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> int:
    """Dead tasks back to pending, attempts reset.

    Example: taskq dlq retry --all --queue emails
    """
    from taskq_cli.services import dlq
    from taskq_cli.services.shapes import RetryAnswer

    chosen = _selection(ids, all_)
    tq = open_queue(ctx, redis_url, namespace, None)
    with output.progress("retrying dead tasks") as step:
        report = dlq.retry(tq, chosen, queue, name, progress=step)
    for task_id in report.refused:
        output.warn(f"{task_id} is a malformed message (raw text): it cannot be retried")
    return _finish("retried", report, RetryAnswer.of(report).to_json(), as_json)


@dlq_app.command("purge")
def dlq_purge(
    ctx: typer.Context,
    ids: Ids = None,
    all_: AllFlag = False,
    queue: QueueOpt = None,
    name: NameOpt = None,
    older_than: Annotated[
        str | None, typer.Option(help="Only tasks dead for longer than this (7d).", show_default=False)
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> int:
    """Delete dead tasks for good.

    Example: taskq dlq purge --all --older-than 7d --yes
    """
    from taskq_cli.services import dlq
    from taskq_cli.services.shapes import PurgeAnswer
    from taskq_cli.timeparse import parse_duration

    chosen = _selection(ids, all_)
    age = None if older_than is None else parse_duration(older_than)
    tq = open_queue(ctx, redis_url, namespace, None)
    plan = dlq.plan_purge(tq, chosen, queue, name, age)
    output.confirm(f"Delete {plan.count:,} dead task(s) for good?", yes)
    with output.progress("purging dead tasks") as step:
        report = dlq.purge(tq, chosen, queue, name, age, progress=step, plan=plan)
    return _finish("purged", report, PurgeAnswer.of(report).to_json(), as_json)


def _selection(ids: list[str] | None, all_: bool) -> list[str] | None:
    if all_ and ids:
        raise UsageError("give task ids or --all, not both")
    if not all_ and not ids:
        raise UsageError("give task ids, or --all")
    return None if all_ else ids


def _finish(verb: str, report: BulkReport, answer: dict[str, Any], as_json: bool) -> int:
    if as_json:
        output.json_out(answer)
    else:
        output.line(f"{verb} {len(report.handled)} task(s)")
    if report.missing:
        output.warn(f"not found in the dead-letter queue: {' '.join(report.missing)}")
        raise NotFound(f"{len(report.missing)} task(s) not found")
    return 1 if report.refused else 0


def dlq_rows(tasks: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(t["id"], t["name"], t["queue"], t["attempts"], t["died_at"], _error(t)) for t in tasks]


def _error(task: dict[str, object]) -> str:
    error = task.get("last_error")
    if not isinstance(error, dict):
        return ""
    return output.first_line(f"{error.get('type')}: {error.get('message')}")
