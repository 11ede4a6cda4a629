"""Results and the asyncio client on a real 3-primary Redis Cluster: waiters of tasks in queues on
different slots all wake (the notification lives in each queue's slot), aenqueue writes there, and
no waiting key is left without an expiry."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from taskq_cli import TaskFailed, TaskQueue
from taskq_cli.protocol import Broker

QUEUES = ["alpha", "beta", "gamma", "delta"]  # spread over the primaries' slots


def end(broker: Broker, queue: str, result: Any = None, *, fail: bool = False) -> None:
    job = broker.fetch(queue, 30, "w-cluster")
    assert job is not None
    if fail:
        error = {"type": "OSError", "message": "disk full", "traceback": ""}
        broker.fail(job, error, final=True, delay=None, max_retries=0)  # type: ignore[arg-type]
    else:
        broker.ack(job, json.dumps(result), 60)  # type: ignore[arg-type]


def test_waiters_on_every_slot_wake_with_their_results(tq: TaskQueue, broker: Broker, raw, namespace):
    async def enqueue_all() -> list[str]:
        ids = await tq.aenqueue_many([("t", {"n": i}, {"queue": q}) for i, q in enumerate(QUEUES)])
        await tq.aclose()
        return ids

    ids = asyncio.run(enqueue_all())
    outcomes: dict[str, Any] = {}

    def wait(task_id: str) -> None:
        try:
            outcomes[task_id] = tq.result(task_id, wait=30)
        except TaskFailed as exc:
            outcomes[task_id] = exc.task.last_error.type

    threads = [threading.Thread(target=wait, args=(i,)) for i in ids for _ in range(2)]
    for t in threads:
        t.start()

    async def async_waits() -> list[Any]:
        try:
            return await asyncio.gather(*(tq.aresult(i, wait=30) for i in ids[:-1]))
        finally:
            await tq.aclose()

    waits: list[Any] = []
    runner = threading.Thread(target=lambda: waits.extend(asyncio.run(async_waits())))
    runner.start()
    for n, queue in enumerate(QUEUES[:-1]):
        end(broker, queue, n * 10)
    end(broker, QUEUES[-1], fail=True)
    for t in [*threads, runner]:
        t.join(30)
    assert outcomes == {ids[0]: 0, ids[1]: 10, ids[2]: 20, ids[3]: "OSError"}
    assert waits == [0, 10, 20]
    for key in raw.scan_iter(match=f"{namespace}:*:waiting:*"):
        assert 0 < raw.pttl(key) <= 15_000
    for key in raw.scan_iter(match=f"{namespace}:*:outcome:*"):
        assert 0 < raw.pttl(key) <= 15_000
