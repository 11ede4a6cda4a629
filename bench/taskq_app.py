"""The app the benchmarks run (`--app bench.taskq_app`): a no-op, and a task that records its pickup
latency."""

from taskq_cli import TaskQueue

tq = TaskQueue()


@tq.task(name="noop")
def noop() -> None:
    return None


@tq.task(name="lat")
def lat(sent: float) -> None:
    from bench.systems.common import record_latency

    record_latency(sent)
