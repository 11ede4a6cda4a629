"""Options every command shares, and how they combine: a command's own option, else the global one
given before the command, else the environment, else the default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Limit = Annotated[int, typer.Option(help="At most this many.")]
Offset = Annotated[int, typer.Option(help="Skip this many first (paging).")]


def parse_payload(text: str | None) -> dict[str, Any]:
    """A PAYLOAD argument: a JSON object ('-' reads stdin; omitted = {}); bad input is a UsageError."""
    import json
    import sys

    from taskq_cli.errors import UsageError

    if text is None:
        return {}
    if text == "-":
        text = sys.stdin.read()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"invalid JSON payload: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"payload must be a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class GlobalOptions:
    redis_url: str | None = None
    namespace: str | None = None
    app: str | None = None


def open_queue(
    ctx: typer.Context,
    redis_url: str | None,
    namespace: str | None,
    app: str | None,
    *,
    need_app: bool = False,
) -> TaskQueue:
    """The TaskQueue a command works with: the app's own (with --app) or a plain one."""
    import os

    from taskq_cli.queue import TaskQueue

    given = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
    url = redis_url or given.redis_url
    ns = namespace or given.namespace
    app_spec = app or given.app or os.environ.get("TASKQ_APP") or None
    if app_spec:
        from taskq_cli.registry import load_app

        tq = load_app(app_spec)
        tq.configure(redis_url=url, namespace=ns)
        return tq
    if need_app:
        from taskq_cli.errors import UsageError

        raise UsageError("this command needs --app (or TASKQ_APP) to find the task handlers")
    return TaskQueue(redis_url=url, namespace=ns)
