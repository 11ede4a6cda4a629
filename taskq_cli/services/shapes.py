"""The JSON shapes the CLI's `--json` prints and the HTTP API answers, each declared once. The
services return these; the CLI prints `to_json()`, the API answers it and documents the same models
in its OpenAPI document (their class names are the document's schema names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Timestamp = Annotated[str | None, Field(description="ISO 8601 UTC with milliseconds.")]
Flag = Annotated[bool, Field(description="Present (true) only when it applies.")]


class JsonShape(BaseModel):
    """A JSON document: its fields in the declared order; fields never given are left out."""

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


# -- tasks ----------------------------------------------------------------------------------------------


class TaskErrorDoc(JsonShape):
    type: str
    message: str
    traceback: str


class TaskDoc(JsonShape):
    """A task as `taskq task show --json` prints it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2a9c",
                    "name": "send_email",
                    "queue": "default",
                    "payload": {"to": "a@example.com"},
                    "state": "done",
                    "attempts": 1,
                    "max_retries": 3,
                    "timeout": 600.0,
                    "enqueued_at": "2026-11-28T18:00:00.123Z",
                    "run_at": None,
                    "started_at": "2026-11-28T18:00:00.200Z",
                    "finished_at": "2026-11-28T18:00:00.450Z",
                    "died_at": None,
                    "worker": "host-1234-ab12",
                    "last_error": None,
                    "result": {"sent": True},
                }
            ]
        }
    )

    id: str
    name: str
    queue: str
    payload: Any
    state: str = Field(
        description="pending, scheduled, waiting (for its dependencies), active, done or dead."
    )
    attempts: int
    max_retries: int | None
    timeout: float | None
    enqueued_at: Timestamp
    run_at: Timestamp
    started_at: Timestamp
    finished_at: Timestamp
    died_at: Timestamp
    worker: str | None
    unique_key: str | None = Field(None, description="The task's unique key (null when none).")
    after: list[str] = Field(
        default_factory=list,
        description="Ids of the tasks it was enqueued after (after=), in the order given; in listings too.",
    )
    blocked_by: list[str] = Field(
        default_factory=list,
        description="Of those, the ones not done yet while it is `waiting` (one task's view only).",
    )
    last_error: TaskErrorDoc | None
    result: Any
    raw: str | None = Field(None, description="Only for a malformed message: its raw text.")
    # a listing's bounds (GET /dlq): what it left out or cut; `GET /tasks/{id}` shows the task whole
    payload_truncated: Flag = False
    result_truncated: Flag = False
    last_error_truncated: Flag = False
    raw_truncated: Flag = False
    options_source: dict[str, str] = Field(
        default_factory=dict,
        description="One task's view only: where max_retries and timeout come from (enqueue, handler "
        "or default).",
    )


class CancelAnswer(JsonShape):
    id: str
    cancelled: bool
    state: str = Field(description="The state the task was in.")


class ResultAnswer(JsonShape):
    id: str
    state: str = Field(description="Always `done` (a dead task answers 409, an unfinished one 408).")
    result: Any = Field(description="The handler's return value (null when it returned nothing).")


# -- stats and workers ----------------------------------------------------------------------------------


class RunAnswer(JsonShape):
    """`task run ID --json`, POST /tasks/{id}/run."""

    id: str
    state: str = Field(description="pending: it waits for a worker now.")
    was: str = Field(description="The state it was in: scheduled (delayed or waiting for its retry).")


class RateLimitDoc(JsonShape):
    limit: int = Field(description="At most this many starts in any window.")
    window: float = Field(description="The window, in seconds.")


class QueueLimitsDoc(JsonShape):
    """A queue's limits, as `taskq queue limit --json` prints them (null: none)."""

    name: str
    concurrency_limit: int | None
    rate_limit: RateLimitDoc | None


class QueueCounts(JsonShape):
    pending: int
    scheduled: int
    waiting: int = Field(0, description="Waiting for their dependencies (after=).")
    active: int
    dead: int
    processed: int
    failed: int
    oldest_pending_age: float | None = Field(description="Seconds.")
    paused: bool
    concurrency_limit: int | None = Field(None, description="At most this many active (null: no limit).")
    rate_limit: RateLimitDoc | None = Field(None, description="At most `limit` starts per `window` s.")


class RunningTask(JsonShape):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None
    queue: str
    started_at: Timestamp


class WorkerDoc(JsonShape):
    """A worker as it described itself in Redis; a field an older or foreign writer left out is null."""

    id: str
    host: str | None
    pid: int | None
    queues: list[str]
    concurrency: int | None
    started_at: Timestamp
    heartbeat_at: Timestamp
    pool: str | None
    active: list[RunningTask]
    tasks: list[str] = Field(default_factory=list, description="The task names it has handlers for.")
    state: str | None = Field(None, description="busy (running a task) or idle; null from older workers.")


class Limits(JsonShape):
    dead_max: int
    dead_ttl: float = Field(description="Seconds.")


class StatsAnswer(JsonShape):
    """As `taskq stats --json`."""

    queues: dict[str, QueueCounts]
    workers: list[WorkerDoc]
    limits: Limits


# -- queues ----------------------------------------------------------------------------------------------


class QueueInfoDoc(JsonShape):
    name: str
    paused: bool
    pending: int
    scheduled: int
    waiting: int = Field(0, description="Waiting for their dependencies (after=).")
    active: int
    dead: int
    concurrency_limit: int | None = Field(None, description="At most this many active (null: no limit).")
    rate_limit: RateLimitDoc | None = Field(None, description="At most `limit` starts per `window` s.")


class PauseAnswer(JsonShape):
    name: str
    paused: bool


# -- the dead-letter queue ---------------------------------------------------------------------------------


@dataclass
class BulkReport:
    """What a bulk operation on dead tasks did, id by id."""

    handled: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # malformed entries cannot be retried


class RetryAnswer(JsonShape):
    retried: int
    ids: list[str]
    missing: list[str] = Field(description="Ids not in the dead-letter queue.")
    refused: list[str] = Field(description="Malformed messages (raw text): they cannot be retried.")

    @classmethod
    def of(cls, report: BulkReport) -> RetryAnswer:
        return cls(
            retried=len(report.handled), ids=report.handled, missing=report.missing, refused=report.refused
        )


class PurgeAnswer(JsonShape):
    purged: int
    ids: list[str]
    missing: list[str]
    refused: list[str]

    @classmethod
    def of(cls, report: BulkReport) -> PurgeAnswer:
        return cls(
            purged=len(report.handled), ids=report.handled, missing=report.missing, refused=report.refused
        )


# -- periodic schedules and health ---------------------------------------------------------------------------


class ScheduleDoc(JsonShape):
    """A schedule as `taskq cron list --json` prints it."""

    name: str
    schedule: str
    tz: str
    task: str
    queue: str
    payload: dict[str, Any]
    paused: bool
    catchup: str
    next_run: Timestamp
    last_run: Timestamp
    last_task_id: str | None
    last_task_state: str | None = Field(description="The last fired task's state; `expired` once gone.")


class Health(JsonShape):
    status: str = Field(description="`ok`")
    redis_ms: float = Field(description="PING round trip in milliseconds.")
