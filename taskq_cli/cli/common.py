"""Options every command shares, and how they combine: a command's own option, else the global one
given before the command, else the environment, else the default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from taskq_cli.cli.output import Format

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue

RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        help="redis://, rediss:// or unix:// URL; redis+cluster://h:p[,h:p] or "
        "redis+sentinel://h:p[,h:p]/service (rediss+ for TLS) [env TASKQ_REDIS_URL]",
        show_default=False,
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace", help="Prefix of every key [env TASKQ_NAMESPACE; default taskq]", show_default=False
    ),
]
App = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="module or module:attribute naming the task registry [env TASKQ_APP]",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts (same as -o json).")]
Output = Annotated[
    Format | None,
    typer.Option(
        "--output",
        "-o",
        help="table (for people), json (one document) or jsonl (one object a line) [default: table]",
        show_default=False,
    ),
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="[profiles.NAME] of $XDG_CONFIG_HOME/taskq/config.toml giving redis_url, namespace, app "
        "[env TASKQ_PROFILE; default: profiles.default if present]",
        show_default=False,
    ),
]
Limit = Annotated[int, typer.Option(help="At most this many.")]
Offset = Annotated[int, typer.Option(help="Skip this many first (paging).")]


@dataclass(frozen=True)
class GlobalOptions:
    redis_url: str | None = None
    namespace: str | None = None
    app: str | None = None
    profile: str | None = None


def chosen_profile(ctx: typer.Context) -> str | None:
    """The command's own --profile (every command with --redis-url has one), else the global one."""
    given = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
    return ctx.params.get("profile") or given.profile


def _connection(ctx: typer.Context) -> tuple[str | None, str | None, str | None]:
    """--redis-url, --namespace and --profile as given so far, the command's own before the global."""
    own, top = ctx.params, ctx.find_root().params
    url, ns, profile = ("redis_url", "namespace", "profile")
    return own.get(url) or top.get(url), own.get(ns) or top.get(ns), own.get(profile) or top.get(profile)


def complete_queue(ctx: typer.Context, incomplete: str) -> list[str]:
    """Tab on a queue name: the namespace's queues (none when Redis does not answer at once)."""
    from taskq_cli.services.completion import queue_names

    return queue_names(incomplete, *_connection(ctx))


def complete_schedule(ctx: typer.Context, incomplete: str) -> list[str]:
    """Tab on a schedule name: the namespace's schedules (none when Redis does not answer at once)."""
    from taskq_cli.services.completion import schedule_names

    return schedule_names(incomplete, *_connection(ctx))


def open_queue(
    ctx: typer.Context,
    redis_url: str | None,
    namespace: str | None,
    app: str | None,
    *,
    need_app: bool = False,
) -> TaskQueue:
    """The TaskQueue a command works with: the command's own option, else the global one given before
    the command, else the environment, else the profile (shared.make_queue)."""
    from taskq_cli.cli.shared import make_queue

    given = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
    return make_queue(
        redis_url or given.redis_url,
        namespace or given.namespace,
        app or given.app,
        need_app=need_app,
        profile=chosen_profile(ctx),
    )
