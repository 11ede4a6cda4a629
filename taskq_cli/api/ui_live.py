"""What the dashboard keeps in the API process's memory: one shared overview snapshot per interval
(however many pages are open, Redis is read at most once per interval), the processed and failed
counters sampled from those snapshots for the last minutes (per-minute throughput and failures), and
the bulk plans waiting for their confirmation. Nothing here survives a restart, by design: the
counters themselves live in Redis, and /metrics serves them for a lasting history."""

from __future__ import annotations

import bisect
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

SNAPSHOT_INTERVAL = 1.0  # seconds a snapshot is shared before Redis is read again
SAMPLE_EVERY = 5.0  # seconds between two kept samples of the counters
HISTORY = 600.0  # seconds of samples kept (10 minutes)
MINUTES = 10  # per-minute buckets in the overview

T = TypeVar("T")


@dataclass
class Snapshot:
    data: dict[str, Any]
    taken: float  # monotonic seconds


class Shared:
    """The overview as of at most `interval` seconds ago. Concurrent callers of a stale snapshot
    wait for the one read in progress instead of each reading Redis."""

    def __init__(
        self,
        read: Callable[[], dict[str, Any]],
        interval: float = SNAPSHOT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.interval = interval
        self.clock = clock
        self.history = History()
        self.reads = 0  # how many times Redis was read (the tests count them)
        self._lock = threading.Lock()
        self._last: Snapshot | None = None

    def get(self) -> dict[str, Any]:
        last = self._last
        if last is not None and self.clock() - last.taken < self.interval:
            return last.data
        with self._lock:
            last = self._last
            if last is not None and self.clock() - last.taken < self.interval:
                return last.data
            data = self.read()
            self.reads += 1
            now = time.time()
            counters = {q["name"]: (q["processed"], q["failed"]) for q in data["queues"]}
            self.history.add(now, counters)
            data = {**data, "minutes": self.history.minute_starts(now)}
            series = self.history.per_minute(now, counters)
            for row in data["queues"]:
                row["per_minute"] = series[row["name"]]
            self._last = Snapshot(data, self.clock())
            return data


@dataclass
class History:
    """Samples of every queue's (processed, failed) counters, at most one per SAMPLE_EVERY seconds,
    for HISTORY seconds."""

    times: deque[float] = field(default_factory=deque)
    values: deque[dict[str, tuple[int, int]]] = field(default_factory=deque)

    def add(self, now: float, counters: dict[str, tuple[int, int]]) -> None:
        if self.times and now - self.times[-1] < SAMPLE_EVERY:
            return
        self.times.append(now)
        self.values.append(counters)
        while self.times and now - self.times[0] > HISTORY + 60:
            self.times.popleft()
            self.values.popleft()

    def minute_starts(self, now: float) -> list[float]:
        """The start (epoch seconds) of each per-minute bucket, oldest first; the last ends now."""
        return [now - 60 * (MINUTES - i) for i in range(MINUTES)]

    def per_minute(
        self, now: float, latest: dict[str, tuple[int, int]]
    ) -> dict[str, dict[str, list[int | None]]]:
        """For each queue of `latest` (the counters read at `now`), processed and failed in each of
        the last MINUTES minutes (oldest first; None where no sample covers the minute: the
        dashboard was not open then)."""
        times = [*self.times, now]
        values = [*self.values, latest]
        queues = list(latest)
        processed: dict[str, list[int | None]] = {q: [None] * MINUTES for q in queues}
        failed: dict[str, list[int | None]] = {q: [None] * MINUTES for q in queues}
        for i, start in enumerate(self.minute_starts(now)):
            first = _at_or_before(times, start)
            if first is None and times and times[0] < start + 60:
                first = 0  # the dashboard opened during this minute: counted from then
            last = _at_or_before(times, start + 60)
            if first is None or last is None or last <= first:
                continue
            for q in queues:
                before, after = values[first].get(q), values[last].get(q)
                if before is not None and after is not None:
                    processed[q][i] = max(after[0] - before[0], 0)  # a counter reset is no negative work
                    failed[q][i] = max(after[1] - before[1], 0)
        return {q: {"processed": processed[q], "failed": failed[q]} for q in queues}


def _at_or_before(times: list[float], moment: float) -> int | None:
    """The index of the last sample taken at or before `moment` (None: none was)."""
    index = bisect.bisect_right(times, moment) - 1
    return index if index >= 0 else None


class Pending(Generic[T]):
    """Things waiting for a confirmation (bulk plans), each under a random key, for `ttl` seconds;
    at most `size` of them (the oldest goes first)."""

    def __init__(self, ttl: float = 600.0, size: int = 64) -> None:
        self.ttl = ttl
        self.size = size
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, item: T) -> str:
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._items[key] = (time.monotonic(), item)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return key

    def take(self, key: str) -> T | None:
        """The item, once (a plan is carried out at most once); None when unknown or expired."""
        with self._lock:
            found = self._items.pop(key, None)
        if found is None or time.monotonic() - found[0] > self.ttl:
            return None
        return found[1]
