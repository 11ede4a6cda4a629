"""Extra handlers for the worker process tests. They are registered on basic's TaskQueue, so
`--app tests.apps.crashy` serves these and every handler of tests.apps.basic."""

from __future__ import annotations

import json
import time

from taskq_cli import current_task
from taskq_cli.protocol.keys import QueueKeys
from tests.apps.basic import _client, record, tq


@tq.task(name="sleep_first", timeout=60)
def sleep_first(seconds: float = 30.0) -> int:
    """Sleeps `seconds` on attempt 1 only (so a worker can be killed mid-task) and returns at once on
    every later attempt."""
    ctx = current_task()
    assert ctx is not None
    record("start")
    if ctx.attempt == 1:
        time.sleep(seconds)
    record("end")
    return ctx.attempt


@tq.task(name="backoff_probe", max_retries=4)
def backoff_probe() -> None:
    """Always fails. From attempt 2 on it records, from its own task record (Redis clock, ms), the
    delay the previous failure scheduled (`run_at - finished_at`) and how long after that failure this
    attempt started (`started_at - finished_at`), as the tag `delay=D,gap=G`."""
    ctx = current_task()
    assert ctx is not None
    raw = _client().hget(QueueKeys(tq.settings.namespace, ctx.queue).tasks, ctx.id)
    meta = json.loads(str(raw))
    if ctx.attempt == 1:
        record()
    else:
        delay = int(meta["run_at"]) - int(meta["finished_at"])
        gap = int(meta["started_at"]) - int(meta["finished_at"])
        record(f"delay={delay},gap={gap}")
    raise RuntimeError(f"probe attempt {ctx.attempt}")
