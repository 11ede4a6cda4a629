"""Chains and groups (`tq.chain`, `tq.group`); a chord is a task enqueued `after=` a group. Both are
one batch (`TaskQueue.submit`): validated whole before anything is written, atomic per queue, and a
chain's links name earlier tasks of the same batch, so they need no lookup (docs/workflows.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from taskq_cli.errors import UsageError
from taskq_cli.producer import EnqueueRequest
from taskq_cli.protocol import new_id


def chain_requests(requests: Sequence[EnqueueRequest]) -> list[EnqueueRequest]:
    """Each request after the one before it (its own `after`, if any, kept too); ids are chosen
    here for those without one, so that the next can name it."""
    if not requests:
        raise UsageError("a chain needs at least one task")
    chained: list[EnqueueRequest] = []
    previous: str | None = None
    for request in requests:
        task_id = request.task_id or new_id()
        after = list(request.after or [])
        if previous is not None and previous not in after:
            after.append(previous)
        chained.append(replace(request, task_id=task_id, after=after or None))
        previous = task_id
    return chained


def group_requests(requests: Sequence[EnqueueRequest]) -> list[EnqueueRequest]:
    """A group is one batch of independent tasks: nothing to change, but it may not be empty."""
    if not requests:
        raise UsageError("a group needs at least one task")
    return list(requests)


def items_as_requests(items: Iterable[Sequence[Any]], options: tuple[str, ...]) -> list[EnqueueRequest]:
    """`(name, payload)` pairs or `(name, payload, options)` triples as requests (enqueue_many's items)."""
    requests: list[EnqueueRequest] = []
    for index, item in enumerate(items):
        if isinstance(item, str) or len(item) not in (2, 3):
            raise UsageError(f"item {index}: expected (name, payload) or (name, payload, options)")
        if len(item) == 2:  # the usual item: no options to check
            requests.append(EnqueueRequest.plain(item[0], item[1], f"item {index}"))
            continue
        given = dict(item[2])
        unknown = set(given) - set(options)
        if unknown:
            raise UsageError(f"item {index}: unknown option(s) {', '.join(sorted(unknown))}")
        requests.append(EnqueueRequest(item[0], item[1], **given, label=f"item {index}"))
    return requests
