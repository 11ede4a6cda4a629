"""The no-op app the benchmarks run (`--app bench.taskq_app`)."""

from taskq_cli import TaskQueue

tq = TaskQueue()


@tq.task(name="noop")
def noop() -> None:
    return None
