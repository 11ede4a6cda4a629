"""The worker process: `Worker` composes the small loops of this package (see worker.py)."""

from taskq_cli.worker.plan import QueuePlan
from taskq_cli.worker.slots import MAX_AHEAD_PER_SLOT, PREFETCH_WINDOW
from taskq_cli.worker.worker import Worker

__all__ = ["MAX_AHEAD_PER_SLOT", "PREFETCH_WINDOW", "QueuePlan", "Worker"]
