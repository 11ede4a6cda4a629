"""What `taskq doctor` reports: a finding per check, with its status and, when there is something to
do, the fix in one line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]

SHOWN = 5  # ids, keys or queues named in one message


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    message: str
    fix: str | None = None  # one line; None when there is nothing to do

    def as_json(self) -> dict[str, str | None]:
        return {"check": self.check, "status": self.status, "message": self.message, "fix": self.fix}


def failed(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.status == "fail"]


def plural(count: int) -> str:
    """The "s" of a plural noun: "" for one."""
    return "" if count == 1 else "s"
