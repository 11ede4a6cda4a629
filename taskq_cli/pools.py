"""Choosing a pool by name. The factory sits above pool.py (the interface, threads, asyncio) and
prefork/ (processes), which imports pool.py: neither imports the other back. prefork/ is imported
only when asked for, so a threads or asyncio worker never loads it."""

from __future__ import annotations

from collections.abc import Mapping

from taskq_cli.middleware import Chain
from taskq_cli.pool import POOL_KINDS, AsyncPool, Pool, ThreadPool
from taskq_cli.registry import TaskDef

__all__ = ["POOL_KINDS", "make_pool"]


def make_pool(
    kind: str,
    concurrency: int,
    registry: Mapping[str, TaskDef],
    app_spec: str | None,
    middleware: Chain | None = None,
    **process_options: float | int | None,
) -> Pool:
    """`middleware` runs where the handlers run (a process pool's children with --app load it with
    the app, as they load the handlers)."""
    if kind == "threads":
        return ThreadPool(concurrency, registry, middleware)
    if kind == "asyncio":
        return AsyncPool(concurrency, registry, middleware)
    from taskq_cli.prefork import ProcessPool

    return ProcessPool(concurrency, registry, app_spec, middleware=middleware, **process_options)  # type: ignore[arg-type]
