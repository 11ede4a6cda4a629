"""What the protocol takes and gives back: the tasks it writes, the attempts it hands out and the
reports on them, what it reads, and the few settings a Broker needs (built from taskq's Settings by
whoever makes the Broker: the protocol does not read configuration)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskq_cli.errors import TaskqError
from taskq_cli.protocol.record import TaskMeta


@dataclass(frozen=True)
class BrokerSettings:
    """The namespace a Broker serves and its limits: `dead_max`/`dead_ttl` trim each dead-letter
    queue by count and age (seconds); `max_queues` bounds how many queues the namespace may have.
    No defaults here: they live in taskq's Settings, which this is built from."""

    namespace: str
    dead_max: int
    dead_ttl: float
    max_queues: int


class RetryFallbacks(Protocol):
    """The retry policy recovery applies to an attempt whose task names none of its own (taskq's
    RetryDefaults is one)."""

    @property
    def max_retries(self) -> int: ...

    @property
    def backoff_base(self) -> float: ...

    @property
    def backoff_max(self) -> float: ...


class NotReplicated(TaskqError):
    """A durable enqueue that no replica confirmed in time (CLI exit 1). The primary took the tasks,
    so they are most likely there and will run; only a failover before they replicate loses them."""

    def __init__(self, results: Sequence[EnqueueResult], timeout: float, moved: bool = False) -> None:
        self.results = list(results)
        ids = [r.id for r in self.results]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        why = (
            "a queue's slot moved to another node during the write, so the replicas could not be asked"
            if moved
            else f"no replica acknowledged it within {timeout:g}s"
        )
        super().__init__(
            f"durable enqueue not confirmed: {why}. The task(s) {shown} were written to the primary and "
            "are most likely there (they run as usual) but are lost if it fails before they replicate; "
            "check its replicas (INFO replication). Enqueueing again with the same --id/task_id is safe."
        )


@dataclass(frozen=True)
class UniqueLock:
    """A task's unique key and how long it holds it: until it `finished` (done, dead, cancelled,
    cleared, purged) or `started` (its first execution), at most `hold_ms` when given. `debounce_ms`:
    the task runs that long after the last enqueue with the key, with that enqueue's payload."""

    key: str
    until: str = "finished"
    hold_ms: int | None = None
    debounce_ms: int | None = None

    def encode(self) -> str:
        """enqueue.lua's form: "<until>|<for ms>|<debounce ms>|<key>" (the key last: it may hold '|')."""
        hold = "" if self.hold_ms is None else str(self.hold_ms)
        debounce = "" if self.debounce_ms is None else str(self.debounce_ms)
        return f"{self.until}|{hold}|{debounce}|{self.key}"


@dataclass(frozen=True)
class NewTask:
    """A validated task ready to be written; `meta` holds name, queue and explicit options."""

    id: str
    queue: str
    meta: dict[str, Any]
    payload_json: str
    delay_ms: int | None = None
    at_ms: int | None = None
    custom_id: bool = False
    unique: UniqueLock | None = None
    after: tuple[str, ...] = ()  # ids of its dependencies: it waits for them (protocol/dependencies.py)


@dataclass(frozen=True)
class EnqueueResult:
    id: str
    queue: str
    state: str
    duplicate: bool


@dataclass(frozen=True)
class Fetched:
    """One attempt handed to this worker: `token` fences every later report of it."""

    queue: str
    id: str
    meta: dict[str, Any]
    payload_json: str
    token: str
    record: TaskMeta = field(init=False, repr=False, compare=False)  # `meta`, typed, decoded once

    def __post_init__(self) -> None:
        object.__setattr__(self, "record", TaskMeta.decode(self.meta))


@dataclass(frozen=True)
class Ack:
    """Report: the attempt succeeded."""

    job: Fetched
    result_json: str | None
    result_ttl: float


@dataclass(frozen=True)
class Failure:
    """Report: the attempt failed; `final` buries it, otherwise retry if attempts remain, after `delay`
    seconds or, when it is None, after the retry backoff of `backoff_base`/`backoff_max`, which the
    protocol draws (lua/_lib.lua `backoff_ms`: the one formula, also used to recover lost attempts)."""

    job: Fetched
    error: dict[str, str]
    final: bool
    delay: float | None
    max_retries: int
    backoff_base: float = 0.0
    backoff_max: float = 0.0


@dataclass(frozen=True)
class Postpone:
    """Report: the attempt did not really start (a per-key limiter held it back): it is given back
    uncounted and runs again after `delay` seconds."""

    job: Fetched
    delay: float


Report = Ack | Failure | Postpone


HANDED_OFF = "handed-off"
"""What an Ack answers (truthy, like True) when the task has dependents: its outcome is in its
queue's outbox, to be drained (protocol/dependencies.py)."""


class FailState(str):
    """What fail.lua answers: the task's new state ('scheduled', 'dead'; '' when the lease was lost),
    a str that compares as one, with `retry_in`: seconds until the retry when it is 'scheduled', and
    `fired`: its death went to the outbox for its dependents."""

    retry_in: float | None
    fired: bool

    def __new__(cls, state: str, retry_in: float | None = None, fired: bool = False) -> FailState:
        made = super().__new__(cls, state)
        made.retry_in = retry_in
        made.fired = fired
        return made


@dataclass(frozen=True)
class Malformed:
    queue: str
    dead_id: str


@dataclass(frozen=True)
class Limited:
    """A fetch that the queue's limits held back while tasks were pending: `retry_in` seconds until
    its rate allows another start, or None when a concurrency slot must free first (the release
    wakes the queue's idle workers)."""

    queue: str
    retry_in: float | None


@dataclass(frozen=True)
class QueueLimits:
    """A queue's limits (None: none): at most `concurrency` active at once; at most `rate` starts in
    any window of `window` seconds."""

    concurrency: int | None = None
    rate: int | None = None
    window: float | None = None


@dataclass(frozen=True)
class TaskRecord:
    meta: dict[str, Any]
    payload_json: str | None
    result_json: str | None
    truncated: frozenset[str] = frozenset()  # "payload", "result": too long to read (left None)


@dataclass(frozen=True)
class QueueStats:
    queue: str
    pending: int
    scheduled: int
    active: int
    dead: int
    processed: int
    failed: int
    oldest_pending_ms: int | None = None  # when the oldest pending task became ready
    waiting: int = 0  # for their dependencies (after=)
