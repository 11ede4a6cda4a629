"""Enqueue for the front ends, and the answer's shape: one per task. A dataclass, not pydantic:
`taskq enqueue` prints it too and starts without pydantic (tests/test_cli_fast.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskq_cli.producer import EnqueueRequest
    from taskq_cli.protocol import EnqueueResult, NewTask
    from taskq_cli.queue import TaskQueue


@dataclass(frozen=True)
class EnqueueAnswer:
    """One enqueued task. `state`: pending, scheduled or active (an unfinished duplicate's state);
    `duplicate`: the id belonged to an unfinished task, which is answered instead."""

    __pydantic_config__ = {  # read by pydantic for the API's document; a plain dict needs no import
        "json_schema_extra": {
            "examples": [{"id": "3f2a9c", "queue": "default", "state": "pending", "duplicate": False}]
        }
    }

    id: str
    queue: str
    state: str
    duplicate: bool

    @classmethod
    def of(cls, result: EnqueueResult) -> EnqueueAnswer:
        return cls(result.id, result.queue, result.state, result.duplicate)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def submit(
    tq: TaskQueue, requests: Sequence[EnqueueRequest], *, durable: bool = False
) -> list[EnqueueAnswer]:
    """Validate every request, then write them all (one round trip, atomic per queue)."""
    return [EnqueueAnswer.of(r) for r in tq.submit(requests, durable=durable)]


def write(tq: TaskQueue, tasks: Sequence[NewTask]) -> list[EnqueueAnswer]:
    """Write tasks already prepared (validated) by producer.prepare, as the API does after checking a
    whole batch item by item."""
    return [EnqueueAnswer.of(r) for r in tq.write(tasks)]
