"""Per-key limiters inside handlers (`with tq.limiter("crm:42", rate="10/s", concurrency=2): ...`).

A pass is taken in one script call (protocol/lua/limiter.lua) on Redis's clock: the rate is a
sliding log of passes (at most N in any window, like a queue's rate); a concurrency permit is held
while the block runs for the running task's lease (PERMIT_TTL outside a worker), renewed by one
thread per process every third of that, so the permit of a worker that dies expires like its
lease. Over the limit the block raises RateLimited, which the runner turns into a postponed task:
scheduled for when the limiter says it may pass, its attempt given back, not an error."""

from __future__ import annotations

import logging
import secrets
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from taskq_cli.errors import RateLimited, UsageError
from taskq_cli.registry import current_task
from taskq_cli.timeparse import parse_rate

if TYPE_CHECKING:
    from taskq_cli.protocol import Broker

log = logging.getLogger("taskq.limiter")

PERMIT_TTL = 30.0  # seconds a permit outlives its last renewal (the default lease)
MAX_KEY_LENGTH = 200


class Limiter:
    """One use of a per-key limiter: a context manager (sync code) that takes a pass on entry."""

    def __init__(self, broker: Broker, key: str, rate: str | None, concurrency: int | None) -> None:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
            raise UsageError(f"limiter key must be 1-{MAX_KEY_LENGTH} characters, got {key!r}")
        if rate is None and concurrency is None:
            raise UsageError("a limiter needs a rate, a concurrency or both")
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise UsageError(f"limiter concurrency must be a whole number >= 1, got {concurrency!r}")
        self.broker, self.key, self.concurrency = broker, key, concurrency
        self.rate = None if rate is None else parse_rate(rate)
        self.pass_id = ""

    def __enter__(self) -> Limiter:
        self.pass_id = secrets.token_hex(8)
        task = current_task()
        ttl = task.lease if task is not None else PERMIT_TTL
        wait = self.broker.limiter_acquire(self.key, self.pass_id, self.rate, self.concurrency, ttl)
        if wait is not None:
            raise RateLimited(self.key, wait)
        if self.concurrency is not None:
            _renewer(self.broker).hold(self.key, self.pass_id, ttl)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.concurrency is not None:
            _renewer(self.broker).drop(self.key, self.pass_id)
            self.broker.limiter_release(self.key, self.pass_id)


class _Renewer:
    """Renews the permits this process holds, each every third of its ttl, on one daemon thread."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._held: dict[tuple[str, str], float] = {}  # (key, pass id) -> ttl
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, key: str, pass_id: str, ttl: float) -> None:
        with self._lock:
            self._held[(key, pass_id)] = ttl
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="taskq-limiter", daemon=True)
                self._thread.start()

    def drop(self, key: str, pass_id: str) -> None:
        with self._lock:
            self._held.pop((key, pass_id), None)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self._interval()):
            with self._lock:
                by_key: dict[tuple[str, float], list[str]] = {}
                for (key, pass_id), ttl in self._held.items():
                    by_key.setdefault((key, ttl), []).append(pass_id)
            for (key, ttl), ids in by_key.items():
                try:
                    self.broker.limiter_renew(key, ids, ttl)
                except Exception as exc:  # Redis away: the permits may lapse, as leases do
                    log.warning("could not renew limiter permits of %r: %s", key, exc)

    def _interval(self) -> float:
        with self._lock:
            return min(self._held.values(), default=PERMIT_TTL) / 3


_renewers: dict[int, _Renewer] = {}
_renewers_lock = threading.Lock()


def _renewer(broker: Broker) -> _Renewer:
    with _renewers_lock:
        found = _renewers.get(id(broker))
        if found is None or found.broker is not broker:
            found = _renewers[id(broker)] = _Renewer(broker)
        return found
