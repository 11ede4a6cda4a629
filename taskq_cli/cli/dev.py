"""`taskq dev`: Redis, a worker and the scheduler (and the API) on one laptop, in one command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import App, Namespace, Profile, open_queue
from taskq_cli.errors import TaskqError, UsageError
from taskq_cli.timeparse import parse_duration

if TYPE_CHECKING:
    from taskq_cli.dev import DevRedis, Service
    from taskq_cli.producer import EnqueueRequest
    from taskq_cli.queue import TaskQueue


def dev(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port for Redis on 127.0.0.1 [default: 6379 when free, else any free port].",
            min=0,
            max=65535,
            show_default=False,
        ),
    ] = None,
    embedded: Annotated[
        bool, typer.Option("--embedded", help="Use the embedded server even when redis-server is on PATH.")
    ] = False,
    api: Annotated[bool, typer.Option("--api", help="Also serve the HTTP API (taskq-cli[api]).")] = False,
    api_port: Annotated[int, typer.Option(help="Port of the HTTP API.", min=1, max=65535)] = 8000,
    queues: Annotated[
        str | None,
        typer.Option(help="Queues of the worker [default: every queue the app uses].", show_default=False),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Tasks the worker runs at once.", min=1)] = 4,
    grace: Annotated[str, typer.Option(help="On Ctrl-C, time given to running tasks.")] = "10s",
    enqueue_file: Annotated[
        str | None,
        typer.Option(
            "--enqueue",
            help="Enqueue these JSON Lines once Redis is up (as `taskq enqueue --file`).",
            show_default=False,
        ),
    ] = None,
    exit_when_done: Annotated[
        bool,
        typer.Option(
            "--exit-when-done",
            help="Stop everything once no task is pending, scheduled or active (needs --app: the worker).",
        ),
    ] = False,
    namespace: Namespace = None,
    app: App = None,
    profile: Profile = None,
) -> int:
    """Run a throwaway Redis (redis-server from PATH, else an embedded one), a worker for --app and
    the scheduler; print the TASKQ_REDIS_URL to export elsewhere. Ctrl-C stops everything.

    Example: taskq dev --app examples.tasks --enqueue examples/demo.jsonl --exit-when-done
    """
    from taskq_cli.dev import DevHooks, DevPlan, run_dev

    tq = open_queue(ctx, None, namespace, app)  # imports --app now: a bad one starts nothing
    if exit_when_done and not tq.app_spec:
        raise UsageError(
            "--exit-when-done needs --app: without --app no worker runs the tasks, so it would wait forever"
        )
    if api:
        _check_api_installed()
    plan = DevPlan(
        port=port,
        embedded=embedded,
        queues=queues,
        concurrency=concurrency,
        grace=parse_duration(grace),
        api_port=api_port if api else None,
        requests=_read_requests(enqueue_file, tq) if enqueue_file else (),
        exit_when_done=exit_when_done,
    )
    ns = tq.settings.namespace
    hooks = DevHooks(
        say=lambda text: output.warn(f"dev: {text}"), ready=_ready, settled=lambda redis: _settled(redis, ns)
    )
    return run_dev(tq, plan, hooks)


def _read_requests(path: str, tq: TaskQueue) -> list[EnqueueRequest]:
    """The --enqueue file, parsed and validated whole before anything starts (exit 2 on a bad line)."""
    from taskq_cli.producer import parse_json_lines, prepare

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    requests = parse_json_lines(text.splitlines())
    for request in requests:
        prepare(request, tq.registry)
    return requests


def _check_api_installed() -> None:
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn")):
        raise TaskqError("the HTTP API is not installed: pip install 'taskq-cli[api]'")


def _ready(redis: DevRedis, services: list[Service]) -> None:
    output.warn(f"dev: {redis.description}, in memory only")
    output.warn("dev: " + ", ".join(f"{s.name} (pid {s.pid})" for s in services) + "; Ctrl-C stops all")
    if not any(s.name == "worker" for s in services):
        output.warn("dev: no --app given, so no worker: run `taskq worker --app ...` in another terminal")
    output.warn("dev: in another terminal:")
    output.line(f"export TASKQ_REDIS_URL={redis.url}")
    sys.stdout.flush()


def _settled(redis: DevRedis, namespace: str) -> None:
    """What a newcomer wants to see before the throwaway Redis goes away: the real commands' output."""
    from taskq_cli.config import child_env

    output.warn("dev: every task is done or dead")
    env = child_env(redis.url, namespace)
    for args in (["stats"], ["dlq", "list"]):
        output.line(f"$ taskq {' '.join(args)}")
        sys.stdout.flush()
        try:
            subprocess.run([sys.executable, "-m", "taskq_cli", *args], env=env, check=False, timeout=60)
        except subprocess.TimeoutExpired:
            output.warn(f"dev: `taskq {' '.join(args)}` took over 60 s; skipped")
