"""Redis trouble as the long-running loops see it: how long to back off, and what to log.

One `Outage` per process, shared by all its loops (a worker's dispatcher, reporter, heartbeat and
maintenance; the scheduler): it logs one line when Redis stops answering one of them, a reminder at
growing intervals while it lasts, and one line when every loop it saw failing works again. Each loop
backs off on its own count of failures. Every Redis error counts, not only a lost connection: an ACL
change (NOPERM), OOM, READONLY during a failover, MISCONF and BUSY all pass, and a loop must outlive
them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from taskq_cli.errors import BrokerError, BrokerUnavailable
from taskq_cli.protocol.failures import REDIS_PY_ERRORS, broker_error

# What the protocol raises (BrokerError), and redis-py's own errors for code that still meets them
# directly (a fake broker in tests, a client used outside the protocol): both mean "Redis failed".
REDIS_ERRORS = (BrokerError, *REDIS_PY_ERRORS)
FIRST_REMINDER = 5.0  # seconds into an outage; then every twice as long, up to REMINDER_MAX
REMINDER_MAX = 60.0


def redis_backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure to reach Redis (0.1 s doubling to 5 s)."""
    return float(min(5.0, 0.1 * 2 ** max(failures - 1, 0)))


def describe(exc: BaseException) -> str:
    """`Redis unreachable (...)` for a lost connection, else the error Redis answered."""
    failure = as_broker_error(exc)
    text = " ".join(str(failure).split())
    if isinstance(failure, BrokerUnavailable):
        return f"Redis unreachable ({text})"
    return f"Redis error {failure.kind} ({text})"


def as_broker_error(exc: BaseException) -> BrokerError:
    """`exc` as the protocol raises it: a BrokerError naming the kind of failure (NoPermissionError,
    ReadOnlyError, ConnectionError...)."""
    if isinstance(exc, BrokerError):
        return exc
    if isinstance(exc, REDIS_PY_ERRORS):
        return broker_error(exc)
    return BrokerError(str(exc), type(exc).__name__)


class Outage:
    def __init__(self, log: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}  # loop -> consecutive failures; a loop here is failing
        self._since: float | None = None  # when the first loop began failing
        self._next_reminder = 0.0
        self._said: set[str] = set()  # kinds of error logged in this outage

    def failed(self, loop: str, exc: BaseException) -> float:
        """A call of `loop` failed; logs what is news, and returns how long that loop waits."""
        with self._lock:
            failures = self._failures.get(loop, 0) + 1
            self._failures[loop] = failures
            wait = redis_backoff(failures)
            now = self.clock()
            kind = as_broker_error(exc).kind
            if self._since is None:
                self._since, self._next_reminder = now, now + FIRST_REMINDER
            elif kind in self._said and now < self._next_reminder:
                return wait
            else:
                elapsed = now - self._since
                self._next_reminder = now + min(max(elapsed, FIRST_REMINDER), REMINDER_MAX)
            lasting = now - self._since
            self._said.add(kind)
        suffix = f" for {lasting:.0f}s" if lasting >= 1 else ""
        self.log.error("%s: %s%s; retrying with backoff (up to 5s)", loop, describe(exc), suffix)
        return wait

    def ok(self, loop: str) -> None:
        """A call of `loop` worked: once every failing loop works again, the outage is over."""
        if loop not in self._failures:  # the common case, without the lock
            return
        with self._lock:
            self._failures.pop(loop, None)
            if self._failures or self._since is None:
                return
            lasted = self.clock() - self._since
            self._since = None
            self._said.clear()
        self.log.warning("Redis reachable again after %.1fs", lasted)
