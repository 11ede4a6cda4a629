"""The `taskq` Typer app: the root with its global options, every command, and Typer's usage errors.
Each command module is a thin adapter over the core; heavy imports happen inside the commands. The
console script's entry point is app.py, which runs a plain `taskq enqueue` without this module."""

from __future__ import annotations

from typing import Annotated

import typer

from taskq_cli.cli import output
from taskq_cli.cli.api import api
from taskq_cli.cli.common import GlobalOptions, Profile
from taskq_cli.cli.config import config_app
from taskq_cli.cli.cron import cron_app
from taskq_cli.cli.dev import dev
from taskq_cli.cli.dlq import dlq_app
from taskq_cli.cli.doctor import doctor
from taskq_cli.cli.enqueue import enqueue
from taskq_cli.cli.queues import queue_app
from taskq_cli.cli.shared import print_version, run_guarded
from taskq_cli.cli.stats import stats, workers
from taskq_cli.cli.tasks import task_app
from taskq_cli.cli.worker import scheduler, worker

app = typer.Typer(
    name="taskq",
    help="taskq: a crash-safe background job queue on Redis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        print_version()
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="redis://, rediss://, unix://, redis+cluster://, redis+sentinel:// URL "
            "[env TASKQ_REDIS_URL]",
            show_default=False,
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", help="Prefix of every key [env TASKQ_NAMESPACE; default taskq]", show_default=False
        ),
    ] = None,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            help="module or module:attribute naming the task registry [env TASKQ_APP]",
            show_default=False,
        ),
    ] = None,
    profile: Profile = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print taskq's version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    ctx.obj = GlobalOptions(redis_url, namespace, app_spec, profile)


app.command()(enqueue)
app.command()(worker)
app.command()(scheduler)
app.command()(stats)
app.command()(workers)
app.command()(doctor)
app.command()(api)
app.command()(dev)
app.add_typer(task_app, name="task")
app.add_typer(dlq_app, name="dlq")
app.add_typer(queue_app, name="queue")
app.add_typer(cron_app, name="cron")
app.add_typer(config_app, name="config")


def run(argv: list[str] | None = None) -> int:
    """The exit code of `taskq ARGV` (default sys.argv[1:]) run by the Typer app; every failure is one
    line on stderr (shared.run_guarded)."""
    return run_guarded(lambda: _invoke(argv))


def _invoke(argv: list[str] | None) -> object:
    try:
        return app(args=argv, prog_name="taskq", standalone_mode=False)
    except typer.Abort:
        output.error("interrupted")
        return 130
    except typer.TyperException as exc:  # Typer's own usage errors: bad option, value, command
        return _typer_error(exc)


def _typer_error(exc: typer.TyperException) -> int:
    code = int(getattr(exc, "exit_code", 1))
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    if type(exc).__name__ == "NoArgsIsHelpError":  # `taskq` or `taskq task` alone: show the help
        output.line(message)
        return 0
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if code == 2 and ctx is not None else ""
    output.error(message + hint)
    return code
