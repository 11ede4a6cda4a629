"""periodic.py: tasks on a schedule. Every worker and scheduler started with this app writes the
schedules to Redis, and each tick fires exactly once however many of them run:

    taskq scheduler --app periodic        # or: taskq worker --app periodic
    taskq cron list
"""

from taskq_cli import TaskQueue

tq = TaskQueue()


@tq.periodic("30 2 * * *", timezone="Europe/Berlin", payload={"kind": "daily"})
def build_report(kind: str) -> dict[str, str]:
    return {"report": kind}


@tq.periodic("every 30s", name="heartbeat")
def ping() -> None:
    """An interval, aligned to the epoch: at :00 and :30 of every minute."""
