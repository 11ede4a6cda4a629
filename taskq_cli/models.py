"""The task model and the pure decisions about it (backoff, effective options, outcomes)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from taskq_cli.config import RetryDefaults
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
    last_error: TaskError | None = None
    result: Any = None
    raw: str | None = None
    # fields too long to be read for a listing (left None; `to_json` says `<field>_truncated`)
    _truncated: frozenset[str] = PrivateAttr(default=frozenset())

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
        if data.get("timeout") == 0:
            data["timeout"] = None
        data.setdefault("state", TaskState.DEAD if data.get("raw") is not None else "unknown")
        task = cls.model_validate(data)
        task._truncated = truncated
        return task

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


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry `attempt` (1-based): uniform in [d/2, d], d = min(cap, base*2**(n-1))."""
    d = min(cap, base * 2 ** (max(attempt, 1) - 1))
    return (rng or random).uniform(d / 2, d)


@dataclass(frozen=True)
class Options:
    """The options one attempt runs under: enqueue values, else the decorator's, else defaults."""

    max_retries: int
    timeout: float | None
    backoff_base: float
    backoff_max: float
    result_ttl: float

    @classmethod
    def resolve(cls, meta: dict[str, Any], handler: RetryDefaults | None, defaults: RetryDefaults) -> Options:
        base = handler or defaults
        timeout = meta.get("timeout", base.timeout)
        return cls(
            max_retries=int(meta.get("max_retries", base.max_retries)),
            timeout=None if not timeout else float(timeout),
            backoff_base=float(meta.get("backoff_base", base.backoff_base)),
            backoff_max=float(meta.get("backoff_max", base.backoff_max)),
            result_ttl=float(meta.get("result_ttl", base.result_ttl)),
        )


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    RETRY = "retry"  # the handler asked for a retry after a given delay
    ERROR = "error"  # retried with backoff while attempts remain
    FAIL = "fail"  # final: straight to the dead-letter queue


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
