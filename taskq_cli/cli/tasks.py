"""`taskq task show | cancel | run | list`: one task, or tasks across queues and states."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import (
    App,
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

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue

task_app = typer.Typer(help="Look at, list, run now or cancel tasks.", no_args_is_help=True)

TASK_COLUMNS = (
    Column("id", "id"),
    Column("name", "name"),
    Column("queue", "name", 100),  # from 100 columns: at 80 the id and name come first
    Column("state", from_width=100),
    Column("attempts", "count"),
    Column("enqueued_at", "time", 120),
    Column("run_at", "time"),
    Column("error", "text"),
)

QueueOpt = Annotated[
    str | None,
    typer.Option(
        "--queue", "-q", help="Look only in this queue.", show_default=False, autocompletion=complete_queue
    ),
]


@task_app.command("show")
def task_show(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    queue: QueueOpt = None,
    fmt: Output = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
    app: App = None,
) -> None:
    """Every field of one task. max_retries and timeout are those that apply, with where they come
    from: given at enqueue, the handler's (known with --app) or the defaults.

    Example: taskq task show 3f2a... --json
    """
    from taskq_cli.services import tasks

    form = output.chosen(fmt, as_json)
    data = tasks.show(open_queue(ctx, redis_url, namespace, app), task_id, queue).to_json()
    output.render(form, data, lambda: _show_task(data))


def _show_task(data: dict[str, Any]) -> None:
    shown = dict(data)
    sources = shown.pop("options_source", {})
    for option, source in sources.items():
        value = "none" if shown[option] is None else f"{shown[option]:g}"
        shown[option] = f"{value} ({source})"
    output.show_task(shown)


@task_app.command("wait")
def task_wait(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    timeout: Annotated[
        str | None,
        typer.Option(help="Wait at most this long (30s, 5m); omitted = until it ends.", show_default=False),
    ] = None,
    queue: QueueOpt = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Wait until a task is done or dead and print its result as JSON (--json: the whole task).
    Exit 0 done, 3 dead (the last error on stderr), 4 not finished within --timeout, 1 unknown id.

    Example: taskq task wait 3f2a... --timeout 60s
    """
    from taskq_cli.cli.shared import wait_and_print

    tq = open_queue(ctx, redis_url, namespace, None)
    code = wait_and_print(tq, task_id, queue=queue, timeout=timeout, as_json=as_json)
    if code:
        raise typer.Exit(code)


@task_app.command("cancel")
def task_cancel(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    queue: QueueOpt = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Remove a pending or scheduled task; stop an active one (its worker kills it at its next lease
    renewal).

    Example: taskq task cancel 3f2a...
    """
    from taskq_cli.services import tasks

    cancelled = tasks.cancel(open_queue(ctx, redis_url, namespace, None), task_id, queue)
    if as_json:
        output.json_out(cancelled.to_json())
    else:
        output.line(f"cancelled {task_id} (was {cancelled.state})")


@task_app.command("run")
def task_run(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    queue: QueueOpt = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Run a scheduled task (delayed, or waiting for its retry) now: it moves to pending and a worker
    is woken. Any other state is refused (exit 2).

    Example: taskq task run 3f2a...
    """
    from taskq_cli.services import tasks

    moved = tasks.run_now(open_queue(ctx, redis_url, namespace, None), task_id, queue)
    if as_json:
        output.json_out(moved.to_json())
    else:
        output.line(f"{task_id} is pending now (was {moved.was})")


@task_app.command("list")
def task_list(
    ctx: typer.Context,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            "-q",
            help="Only this queue [default: all].",
            show_default=False,
            autocompletion=complete_queue,
        ),
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(
            help="Only pending, scheduled, waiting, active, dead or done [default: all].", show_default=False
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Only tasks of this name.", show_default=False)
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    fmt: Output = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Tasks across queues and states (state by state, queue by queue, each in the order it will be
    handled), narrowed by --queue, --state and --name.

    Example: taskq task list --state scheduled --name send_email --limit 20
    """
    from taskq_cli.services.tasks import list_tasks

    form = output.chosen(fmt, as_json)
    tq = open_queue(ctx, redis_url, namespace, None)
    found = [t.to_json() for t in list_tasks(tq, queue, state, limit, offset, name)]
    output.render(form, found, lambda: _task_table(tq, queue, state, name, found, offset))


def _task_table(
    tq: TaskQueue,
    queue: str | None,
    state: str | None,
    name: str | None,
    found: list[dict[str, Any]],
    offset: int,
) -> None:
    from taskq_cli.services.tasks import count_tasks

    total = None if name else count_tasks(tq, queue, state)  # by name: unknown without reading all
    output.show_table(
        f"{state or 'all'} tasks in {queue or 'all queues'}",
        TASK_COLUMNS,
        task_rows(found),
        footer=footer(len(found), offset, total),
    )


def task_rows(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            t["id"],
            t["name"],
            t["queue"],
            t["state"],
            t["attempts"],
            t["enqueued_at"],
            t["run_at"],
            output.first_line((t.get("last_error") or {}).get("message")),
        )
        for t in found
    ]
