"""Reading what taskq keeps in Redis, through the protocol's own key layout (`QueueKeys`,
`NamespaceKeys`): no test spells a key by hand."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from taskq_cli.protocol.keys import NamespaceKeys, QueueKeys

DEFAULT = "default"


def qkeys(namespace: str, queue: str = DEFAULT) -> QueueKeys:
    return QueueKeys(namespace, queue)


def nskeys(namespace: str) -> NamespaceKeys:
    return NamespaceKeys(namespace)


def record(raw: redis.Redis, namespace: str, task_id: str, queue: str = DEFAULT) -> dict[str, Any] | None:
    """The task's metadata as Redis holds it, or None when it has no record."""
    text = raw.hget(QueueKeys(namespace, queue).tasks, task_id)
    return dict(json.loads(text)) if text is not None else None


def meta_of(raw: redis.Redis, namespace: str, task_id: str, queue: str = DEFAULT) -> dict[str, Any]:
    """The task's metadata; fails when it has none."""
    found = record(raw, namespace, task_id, queue)
    assert found is not None, f"task {task_id!r} is not in queue {queue!r}"
    return found


def payload_of(raw: redis.Redis, namespace: str, task_id: str, queue: str = DEFAULT) -> Any:
    text = raw.hget(QueueKeys(namespace, queue).payloads, task_id)
    assert text is not None, f"no payload stored for {task_id!r}"
    return json.loads(text)


def state_of(raw: redis.Redis, namespace: str, task_id: str, queue: str = DEFAULT) -> str | None:
    found = record(raw, namespace, task_id, queue)
    return None if found is None else str(found.get("state"))


def counters(raw: redis.Redis, namespace: str, queue: str = DEFAULT) -> dict[str, int]:
    return {str(k): int(v) for k, v in raw.hgetall(QueueKeys(namespace, queue).counters).items()}


def worker_ids(raw: redis.Redis, namespace: str) -> list[str]:
    return [str(w) for w in raw.zrange(NamespaceKeys(namespace).workers, 0, -1)]


def final_states(
    client: redis.Redis, namespace: str, ids: Iterable[str], queue: str = DEFAULT
) -> dict[str, tuple[str, int]]:
    """id -> (state, attempts) for every id that has a record (read 5000 at a time)."""
    key = QueueKeys(namespace, queue).tasks
    wanted = list(ids)
    found: dict[str, tuple[str, int]] = {}
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        for task_id, raw in zip(chunk, client.hmget(key, chunk), strict=True):
            if raw is not None:
                meta = json.loads(raw)
                found[task_id] = (str(meta.get("state")), int(meta.get("attempts") or 0))
    return found


def queue_counts(client: redis.Redis, namespace: str, queue: str = DEFAULT) -> dict[str, int]:
    """How many tasks each of the queue's sets holds, read in one transaction."""
    k = QueueKeys(namespace, queue)
    pipe = client.pipeline(transaction=True)
    pipe.llen(k.pending)
    for name in ("scheduled", "active", "dead", "done"):
        pipe.zcard(k.key(name))
    pending, scheduled, active, dead, done = pipe.execute()
    return {"pending": pending, "scheduled": scheduled, "active": active, "dead": dead, "done": done}
