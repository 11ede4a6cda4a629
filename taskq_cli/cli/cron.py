"""`taskq cron add | list | remove | pause | resume`: periodic schedules stored in Redis."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import (
    App,
    JsonFlag,
    Namespace,
    Output,
    Profile,
    RedisUrl,
    complete_queue,
    complete_schedule,
    open_queue,
)
from taskq_cli.cli.shared import parse_payload
from taskq_cli.cli.tables import Column, yes_no
from taskq_cli.errors import NotFound
from taskq_cli.timeparse import iso_ms

cron_app = typer.Typer(help="Periodic schedules: each tick fires exactly once.", no_args_is_help=True)

CRON_COLUMNS = (
    Column("name", "name"),
    Column("schedule", "name"),
    Column("tz", "name"),
    Column("task", "name", 100),
    Column("queue", "name", 120),
    Column("paused", from_width=120),
    Column("next run", "time"),
    Column("next run (local)", from_width=140),
    Column("last run", "time", 100),
    Column("last run (local)", from_width=160),
    Column("last task", "id", 140),
    Column("last state", from_width=120),
)

Name = Annotated[str, typer.Argument(metavar="NAME", help="Schedule name.", autocompletion=complete_schedule)]


@cron_app.command("add")
def cron_add(
    ctx: typer.Context,
    name: Name,
    spec: Annotated[str, typer.Argument(metavar="CRON", help="'*/5 * * * *', '@daily' or 'every 30s'.")],
    task: Annotated[str, typer.Argument(metavar="TASK", help="Task name.")],
    payload: Annotated[
        str | None, typer.Argument(metavar="[PAYLOAD]", help="JSON object.", show_default=False)
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            "-q",
            help="Queue [default: the task's].",
            show_default=False,
            autocompletion=complete_queue,
        ),
    ] = None,
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone the cron expression is read in.")] = "UTC",
    catchup: Annotated[str, typer.Option(help="Missed ticks: skip, or run once to catch up.")] = "skip",
    max_retries: Annotated[
        int | None, typer.Option(help="Retries of each fired task.", show_default=False)
    ] = None,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
    app: App = None,
) -> None:
    """Add or replace a schedule.

    Example: taskq cron add nightly-report "30 2 * * *" build_report '{"kind": "daily"}' --tz Europe/Berlin
    """
    from taskq_cli.services import cron

    body = parse_payload(payload)
    tq = open_queue(ctx, redis_url, namespace, app)
    added = cron.add(
        tq, name, spec, task, body, queue=queue, timezone=tz, catchup=catchup, max_retries=max_retries
    )
    output.line(f"scheduled {added.schedule.name}: next run {iso_ms(added.next_run_ms)}")


@cron_app.command("list")
def cron_list(
    ctx: typer.Context,
    fmt: Output = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Every schedule with its next run, last run, last task and that task's state. The table gives
    the runs in each schedule's own time zone; --json in UTC.

    Example: taskq cron list --json
    """
    from taskq_cli.services.cron import describe

    form = output.chosen(fmt, as_json)
    rows = [s.to_json() for s in describe(open_queue(ctx, redis_url, namespace, None))]

    def table() -> None:
        output.show_table("schedules", CRON_COLUMNS, cron_rows(rows))

    output.render(form, rows, table)


def cron_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Runs relative on a terminal, and in each schedule's own time zone in wider columns."""
    from taskq_cli.cron import local_time

    return [
        [
            *(r[c] for c in ("name", "schedule", "tz", "task", "queue")),
            yes_no(r["paused"]),
            r["next_run"],
            local_time(r["next_run"], r["tz"]),
            r["last_run"],
            local_time(r["last_run"], r["tz"]),
            r["last_task_id"],
            r["last_task_state"],
        ]
        for r in rows
    ]


@cron_app.command("remove")
def cron_remove(
    ctx: typer.Context,
    name: Name,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Delete a schedule (tasks it already enqueued stay).

    Example: taskq cron remove nightly-report
    """
    if not open_queue(ctx, redis_url, namespace, None).unschedule(name):
        raise NotFound(f"schedule {name!r} not found")
    output.line(f"removed {name}")


@cron_app.command("pause")
def cron_pause(
    ctx: typer.Context,
    name: Name,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Stop firing a schedule until resumed (missed ticks follow its catch-up policy).

    Example: taskq cron pause nightly-report
    """
    open_queue(ctx, redis_url, namespace, None).set_schedule_paused(name, True)
    output.line(f"paused {name}")


@cron_app.command("resume")
def cron_resume(
    ctx: typer.Context,
    name: Name,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> None:
    """Fire a paused schedule again.

    Example: taskq cron resume nightly-report
    """
    open_queue(ctx, redis_url, namespace, None).set_schedule_paused(name, False)
    output.line(f"resumed {name}")
