"""durable.py: an enqueue that a Redis failover cannot lose. `durable=True` returns only once a replica
has the task; a custom id makes trying again safe (a task already waiting is never added twice)."""

import time

from taskq_cli import TaskQueue
from taskq_cli.errors import BrokerError
from taskq_cli.protocol import NotReplicated


def charge(tq: TaskQueue, order: int, tries: int = 50) -> str:
    """Enqueue `charge` for an order, trying again while the primary is down, electing or has no
    replica yet; raises the last error after `tries` attempts."""
    for attempt in range(1, tries + 1):
        try:
            return tq.enqueue("charge", {"order": order}, task_id=f"charge-{order}", durable=True)
        except (BrokerError, NotReplicated):  # primary down, electing, or no replica yet
            if attempt == tries:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")
