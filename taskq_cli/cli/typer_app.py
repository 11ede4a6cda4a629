"""The `taskq` command: the root with its global options, and error handling for every command.
Each command module is a thin adapter over the core; heavy imports happen inside the commands."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from taskq_cli.cli import output
from taskq_cli.cli.api import api
from taskq_cli.cli.common import GlobalOptions
from taskq_cli.cli.cron import cron_app
from taskq_cli.cli.dev import dev
from taskq_cli.cli.dlq import dlq_app
from taskq_cli.cli.doctor import doctor
from taskq_cli.cli.enqueue import enqueue
from taskq_cli.cli.queues import queue_app
from taskq_cli.cli.stats import stats, workers
from taskq_cli.cli.tasks import task_app
from taskq_cli.cli.worker import scheduler, worker
from taskq_cli.errors import NotFound, TaskqError, UsageError

app = typer.Typer(
    name="taskq",
    help="taskq: a crash-safe background job queue on Redis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
) -> None:
    ctx.obj = GlobalOptions(redis_url, namespace, app_spec)


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


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps every failure to one line on stderr and the SPEC's exit codes."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        result = app(args=argv, prog_name="taskq", standalone_mode=False)
    except typer.Abort:
        output.error("interrupted")
        return 130
    except typer.TyperException as exc:  # Typer's own usage errors: bad option, value, command
        return _typer_error(exc)
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130
    except UsageError as exc:
        output.error(str(exc))
        return 2
    except (NotFound, TaskqError) as exc:
        output.error(str(exc))
        return 1
    except (RedisConnectionError, RedisTimeoutError) as exc:
        output.error(f"cannot reach Redis: {exc}")
        return 1
    except RedisError as exc:
        output.error(f"Redis error: {exc}")
        return 1
    return result if isinstance(result, int) else 0


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
