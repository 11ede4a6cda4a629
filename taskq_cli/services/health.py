"""Is Redis reachable: a PING and its round trip."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from taskq_cli.services.shapes import Health

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue


def ping(tq: TaskQueue) -> Health:
    """Health with the PING round trip; BrokerError (BrokerUnavailable) when Redis does not answer."""
    started = time.perf_counter()
    tq.broker.ping()
    return Health(status="ok", redis_ms=round((time.perf_counter() - started) * 1000, 3))
