"""The one way tests wait for something that happens in another process or thread: poll a
predicate, bounded in time, and fail with the logs of whoever was supposed to make it happen."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol


class Reports(Protocol):
    """Anything whose log can go into a failure message (a Proc, a chaos fleet member...)."""

    def report(self) -> str: ...


Logs = Callable[[], str] | Iterable[Reports]


def until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    *,
    what: str = "",
    logs: Logs = (),
    interval: float = 0.02,
    ignore: tuple[type[BaseException], ...] = (),
) -> float:
    """Poll until `predicate()` holds; returns the seconds it took. On timeout, fail saying `what`
    and printing `logs` (a callable giving text, or processes). Exceptions of the `ignore` types
    count as "not yet" (a server still starting)."""
    began = time.monotonic()
    deadline = began + timeout
    while True:
        try:
            if predicate():
                return time.monotonic() - began
        except ignore:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or 'condition'}\n{describe(logs)}")
        time.sleep(interval)


def describe(logs: Logs) -> str:
    if callable(logs):
        return logs()
    return "\n".join(item.report() for item in logs)
