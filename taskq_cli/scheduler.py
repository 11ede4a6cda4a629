"""Maintenance of queues: promote due scheduled tasks and recover attempts whose lease expired.
Workers run it for their own queues; `taskq scheduler` runs it for every known queue. Any number of
them may run at once: each step is one atomic script."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskq_cli.config import RetryDefaults
from taskq_cli.protocol import Broker

log = logging.getLogger("taskq.scheduler")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
MAX_IDLE = 1.0  # seconds between passes at most: a lost worker is recovered within lease + 1 s


class Maintenance:
    def __init__(self, broker: Broker, defaults: RetryDefaults) -> None:
        self.broker = broker
        self.defaults = defaults

    def tick(self, queues: Iterable[str]) -> float:
        """One pass over the queues; returns the seconds until the next scheduled task is due."""
        wait = MAX_IDLE
        for queue in queues:
            moved, next_due = self.broker.promote(queue)
            retried, buried = self.broker.recover(queue, self.defaults)
            if moved:
                log.debug("queue %s: promoted %d due tasks", queue, moved)
            if retried or buried:
                log.warning(
                    "queue %s: recovered %d tasks of lost workers (%d retried, %d dead)",
                    queue,
                    retried + buried,
                    retried,
                    buried,
                )
            if next_due is not None:
                wait = min(wait, next_due)
        return wait


def redis_backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure to reach Redis (0.1 s doubling to 5 s)."""
    return float(min(5.0, 0.1 * 2 ** max(failures - 1, 0)))


class Scheduler:
    """`taskq scheduler`: maintenance for every queue of the namespace until stopped."""

    def __init__(self, broker: Broker, defaults: RetryDefaults) -> None:
        self.broker = broker
        self.maintenance = Maintenance(broker, defaults)
        self.stop_event = threading.Event()

    def run(self) -> int:
        failures = 0
        while not self.stop_event.is_set():
            try:
                wait = self.maintenance.tick(self.broker.known_queues())
                failures = 0
            except REDIS_DOWN as exc:
                failures += 1
                wait = redis_backoff(failures)
                log.error("Redis unreachable (%s); retrying in %.1fs", exc, wait)
            self.stop_event.wait(wait)
        return 0
