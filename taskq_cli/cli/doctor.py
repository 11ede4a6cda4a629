"""`taskq doctor`: checks what silently breaks queues in production (placeholder, being written)."""

from __future__ import annotations

import typer

from taskq_cli.cli.common import JsonFlag, Namespace, RedisUrl


def doctor(
    ctx: typer.Context,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> int:
    """Check Redis and the namespace for problems that lose or stall tasks."""
    raise NotImplementedError
