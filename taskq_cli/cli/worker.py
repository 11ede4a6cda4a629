"""`taskq worker` and `taskq scheduler`: the long-running processes."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import App, Namespace, Profile, RedisUrl, open_queue
from taskq_cli.timeparse import parse_duration

LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]
NoCron = Annotated[bool, typer.Option("--no-cron", help="Do not fire periodic schedules here.")]
LogFormat = Annotated[str, typer.Option("--log-format", help="text, or json (one object per line).")]


def worker(
    ctx: typer.Context,
    queues: Annotated[
        str, typer.Option("--queues", help="a,b,c (strict priority) or a:5,b:1 (weighted).")
    ] = "default",
    concurrency: Annotated[
        int | None, typer.Option(help="Tasks at once [default: CPU count].", show_default=False)
    ] = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit once nothing is pending or due and nothing is in flight.")
    ] = False,
    grace: Annotated[str, typer.Option(help="On SIGTERM/SIGINT, time given to running tasks.")] = "30s",
    lease: Annotated[str, typer.Option(help="How long a dead worker's tasks wait for recovery.")] = "30s",
    pool: Annotated[
        str,
        typer.Option(
            help="processes (isolated, hard timeouts), threads (I/O-bound sync handlers) "
            "or asyncio (async def handlers)."
        ),
    ] = "processes",
    max_tasks_per_child: Annotated[
        int | None, typer.Option(help="Replace a child process after N tasks.", show_default=False)
    ] = None,
    max_memory_per_child: Annotated[
        int | None, typer.Option(help="Replace a child process using more than N MB.", show_default=False)
    ] = None,
    no_cron: NoCron = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics at http://HOST:PORT/metrics [env TASKQ_METRICS_PORT].",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics endpoint listens on.")] = "127.0.0.1",
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
    app: App = None,
) -> int:
    """Run tasks from the given queues."""
    from taskq_cli import logs
    from taskq_cli.config import metrics_port as chosen_metrics_port
    from taskq_cli.worker import QueuePlan, Worker

    plan = QueuePlan.parse(queues)
    port = chosen_metrics_port(metrics_port)
    grace_s, lease_s = parse_duration(grace), parse_duration(lease)
    logs.configure(log_level, log_format)
    tq = open_queue(ctx, redis_url, namespace, app)
    if not tq.registry:
        output.warn("no --app given (or it registers no task): every task will fail as unknown")
    runner = Worker(
        tq,
        plan,
        (os.cpu_count() or 1) if concurrency is None else concurrency,  # 0 is refused, not "the default"
        burst=burst,
        grace=grace_s,
        lease=lease_s,
        pool=pool,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        cron=not no_cron,
        metrics_port=port,
        metrics_host=metrics_host,
    )
    if not no_cron:
        tq.sync_schedules()
    return runner.run()


def scheduler(
    ctx: typer.Context,
    no_cron: NoCron = False,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
    app: App = None,
) -> int:
    """Promote due scheduled tasks, recover lost workers' tasks and fire periodic schedules."""
    from taskq_cli import logs
    from taskq_cli.services.processes import scheduler as scheduler_for
    from taskq_cli.stopsignals import StopSignals

    logs.configure(log_level, log_format)
    tq = open_queue(ctx, redis_url, namespace, app)
    runner = scheduler_for(tq, cron=not no_cron)
    if not no_cron:
        tq.sync_schedules()

    StopSignals(runner.stop_event.set).install()
    logging.getLogger("taskq.scheduler").info("scheduler started (namespace %s)", tq.settings.namespace)
    return runner.run()
