"""The task model and the pure decisions about it (backoff, effective options, outcomes)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

from taskq_cli.config import RetryDefaults
from taskq_cli.protocol.record import GivenOptions
from taskq_cli.states import TaskState
from taskq_cli.timeparse import iso_ms


class TaskError(BaseModel):
    type: str
    message: str
    traceback: str = ""


class Task(BaseModel):
    """One task as users see it (`task show --json`)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    queue: str
    payload: Any = None
    state: str
    attempts: int = 0
    max_retries: int | None = None
    timeout: float | None = None
    enqueued_at: int | None = None
    run_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    died_at: int | None = None
    worker: str | None = None
    unique_key: str | None = None
    after: list[str] = []  # ids of its dependencies (after=; filled by the services from their own key)
    blocked_by: list[str] = []  # those it still waits for (filled by `task show` for a waiting task)
    last_error: TaskError | None = None
    result: Any = None
    raw: str | None = None
    # fields too long to be read for a listing (left None; `to_json` says `<field>_truncated`)
    _truncated: frozenset[str] = PrivateAttr(default=frozenset())
    # how many dependencies the record names (`deps`): their ids are read from their own key
    _deps: int = PrivateAttr(default=0)

    @classmethod
    def from_record(
        cls,
        meta: dict[str, Any],
        payload_json: str | None,
        result_json: str | None,
        truncated: frozenset[str] = frozenset(),
    ) -> Task:
        data = dict(meta)
        data["payload"] = _loads_or_text(payload_json)
        data["result"] = _loads_or_text(result_json)
        data.pop("after", None)  # filled by `task show` (its own key, protocol/dependencies.py)
        data.pop("blocked_by", None)
        if data.get("timeout") == 0:
            data["timeout"] = None
        data.setdefault("state", TaskState.DEAD if data.get("raw") is not None else "unknown")
        task = cls.model_validate(data)
        task._truncated = truncated
        deps = meta.get("deps")
        task._deps = deps if isinstance(deps, int) else 0
        return task

    @property
    def has_dependencies(self) -> bool:
        """Whether it was enqueued with `after=` (its `after` ids are read from their own key)."""
        return self._deps > 0

    def to_json(self) -> dict[str, Any]:
        """The SPEC's JSON form: ISO 8601 UTC timestamps with milliseconds."""
        out = self.model_dump(exclude_none=False)
        for name in ("enqueued_at", "run_at", "started_at", "finished_at", "died_at"):
            out[name] = iso_ms(out[name])
        if self.raw is None:
            out.pop("raw")
        for name in sorted(self._truncated):
            out[f"{name}_truncated"] = True
        return out


def _loads_or_text(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class Options:
    """The options one attempt runs under: enqueue values, else the decorator's, else defaults."""

    max_retries: int
    timeout: float | None
    backoff_base: float
    backoff_max: float
    result_ttl: float

    @classmethod
    def resolve(
        cls, given: GivenOptions | Mapping[str, Any], handler: RetryDefaults | None, defaults: RetryDefaults
    ) -> Options:
        """The one resolution of a task's options: given at enqueue (on the record), else the
        handler's decorator, else the defaults. A mapping is a record's metadata; ValueError when an
        option on it is not a number."""
        if not isinstance(given, GivenOptions):
            given, unreadable = GivenOptions.decode(given)
            if unreadable:
                raise ValueError(f"unreadable options in the record: {', '.join(unreadable)}")
        base = handler or defaults
        timeout = base.timeout if given.timeout is None else given.timeout
        return cls(
            max_retries=_first(given.max_retries, base.max_retries),
            timeout=float(timeout) if timeout else None,
            backoff_base=_first(given.backoff_base, base.backoff_base),
            backoff_max=_first(given.backoff_max, base.backoff_max),
            result_ttl=_first(given.result_ttl, base.result_ttl),
        )


N = TypeVar("N", int, float)


def _first(given: N | None, otherwise: N) -> N:
    return otherwise if given is None else given


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    RETRY = "retry"  # the handler asked for a retry after a given delay
    ERROR = "error"  # retried with backoff while attempts remain
    FAIL = "fail"  # final: straight to the dead-letter queue
    POSTPONE = "postpone"  # a per-key limiter held it back: again after `delay`, no attempt used


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    result_json: str | None = None
    error: dict[str, str] | None = None
    delay: float | None = None
    runtime: float = 0.0  # seconds the handler ran, measured where it ran

    @classmethod
    def success(cls, result_json: str | None) -> Outcome:
        return cls(OutcomeKind.SUCCESS, result_json=result_json)

    @classmethod
    def failure(
        cls,
        kind: OutcomeKind,
        error_type: str,
        message: str,
        traceback: str = "",
        delay: float | None = None,
    ) -> Outcome:
        return cls(kind, error={"type": error_type, "message": message, "traceback": traceback}, delay=delay)


class Verdict(StrEnum):
    ACK = "ack"  # done: keep the result
    RETRY = "retry"  # another attempt after `delay`
    DEAD = "dead"  # to the dead-letter queue
    POSTPONE = "postpone"  # given back uncounted, scheduled after `delay` (RateLimited)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay: float | None = None  # RETRY: seconds before the next attempt; None = the retry backoff,
    # drawn by the protocol (lua/_lib.lua backoff_ms: the formula's one home, recovery uses it too)


def decide(outcome: Outcome, attempts: int, options: Options) -> Decision:
    """What becomes of a task after attempt number `attempts` ended with `outcome` (SPEC, "Delivery
    and retries"): a success is acked; `Fail` (and an invalid payload) is dead at once; any other
    failure is retried while attempts remain (`max_retries` + 1 executions in all), after the delay
    the handler asked for (`Retry(delay=...)`, used as given) or else the jittered backoff
    (Decision.delay None), which the protocol draws."""
    if outcome.kind is OutcomeKind.SUCCESS:
        return Decision(Verdict.ACK)
    if outcome.kind is OutcomeKind.POSTPONE:  # not a failure: the attempt did not really start
        return Decision(Verdict.POSTPONE, outcome.delay or 0.0)
    if outcome.kind is OutcomeKind.FAIL or attempts >= options.max_retries + 1:
        return Decision(Verdict.DEAD)
    if outcome.delay is not None:
        return Decision(Verdict.RETRY, outcome.delay)
    return Decision(Verdict.RETRY)
