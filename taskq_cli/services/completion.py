"""Names for shell completion (a Tab on --queue or a schedule name): read from Redis with short
timeouts and a hard deadline, so a Tab never hangs, and silent on every error (no names)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from taskq_cli.config import Settings

if TYPE_CHECKING:
    from taskq_cli.protocol import Broker

TIMEOUT = 0.3  # seconds: each socket operation of a completion
DEADLINE = 0.5  # seconds: a completion answers (possibly nothing) within this whatever Redis does


def queue_names(
    incomplete: str, redis_url: str | None, namespace: str | None, profile: str | None
) -> list[str]:
    """The known queues of the namespace starting with `incomplete`."""
    return _names(lambda broker: broker.known_queues(), incomplete, redis_url, namespace, profile)


def schedule_names(
    incomplete: str, redis_url: str | None, namespace: str | None, profile: str | None
) -> list[str]:
    """The periodic schedules of the namespace starting with `incomplete`."""
    return _names(lambda broker: list(broker.cron_definitions()), incomplete, redis_url, namespace, profile)


def _names(
    read: Callable[[Broker], list[str]],
    incomplete: str,
    redis_url: str | None,
    namespace: str | None,
    profile: str | None,
) -> list[str]:
    found: list[str] = []

    def look() -> None:
        try:
            from taskq_cli.protocol import Broker, BrokerSettings, connect

            s = Settings.from_env(profile, redis_url=redis_url, namespace=namespace)
            client = connect(s.redis_url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
            broker = Broker(client, BrokerSettings(s.namespace, s.dead_max, s.dead_ttl, s.max_queues))
            try:
                found.extend(sorted(n for n in read(broker) if n.startswith(incomplete)))
            finally:
                broker.close()
        except Exception:  # a Tab shows no names rather than an error
            found.clear()

    worker = threading.Thread(target=look, name="taskq-complete", daemon=True)
    worker.start()
    worker.join(DEADLINE)
    return list(found) if not worker.is_alive() else []
