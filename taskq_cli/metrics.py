"""The worker's Prometheus metrics (SPEC "Metrics and tracing"), served by `taskq worker --metrics-port`:

    taskq_tasks_total{queue,task,outcome}        outcome: done, retry, dead
    taskq_task_duration_seconds{queue,task}      histogram: every finished execution, failures included
    taskq_task_wait_seconds{queue,task}          histogram: from becoming due to starting
    taskq_tasks_running{queue}                   gauge: attempts held by this worker, not finished

Counted in the worker process, on the reporter thread, where each outcome becomes known (whatever
pool ran the handler: the processes pool needs no multiprocess mode). Counting is plain dict and list
arithmetic on that one thread; prometheus-client is imported only to serve, and builds the families
from these counts when Prometheus scrapes (a custom collector), so an unscraped worker pays almost
nothing. Label values are bounded: queues come from the worker's --queues, task names from the app's
registry; any other name (a task no handler here knows) is counted as `unknown`.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taskq_cli.errors import TaskqError
from taskq_cli.protocol import Ack, Failure

if TYPE_CHECKING:
    from taskq_cli.models import Outcome
    from taskq_cli.protocol import Fetched, Report

UNKNOWN = "unknown"  # the task label of a name the registry does not have
# seconds; from a millisecond task to an hour-long one (the default task timeout is 600 s)
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 21600)


class Histogram:
    """Counts per bucket (the last one +Inf) and the sum; Prometheus's cumulative form on reading."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # bucket `le` bound: value <= bound
        self.total += value

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        counts, total = list(self.counts), self.total  # a copy: the reporter thread goes on counting
        buckets, running = [], 0
        for bound, count in zip([*map(_le, self.bounds), "+Inf"], counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        return buckets, total


def _le(bound: float) -> str:
    return repr(float(bound))


class Series:
    """The counts of one (queue, task) pair."""

    __slots__ = ("durations", "outcomes", "waits")

    def __init__(self) -> None:
        self.outcomes = {"done": 0, "retry": 0, "dead": 0}
        self.durations = Histogram(DURATION_BUCKETS)
        self.waits = Histogram(WAIT_BUCKETS)


class WorkerMetrics:
    """The counts one worker keeps. `finished` is called on the reporter thread only; `collect`
    (Prometheus's collector interface) on the HTTP server's threads."""

    def __init__(
        self,
        queues: Collection[str],
        task_names: Collection[str],
        running: Callable[[], Mapping[str, int]],
    ) -> None:
        self.queues = tuple(queues)
        self.names = frozenset(task_names)
        self.running = running
        self.series: dict[tuple[str, str], Series] = {}  # bounded: queues x (registry + unknown)

    def finished(
        self, job: Fetched, held_since: float, outcome: Outcome, report: Report, result: bool | str
    ) -> None:
        """One reported attempt (`held_since`: monotonic, when this worker took it): its outcome, run
        time and wait."""
        name = job.record.name
        labels = (job.queue, name if name in self.names else UNKNOWN)
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = Series()
        verdict = outcome_label(report, result)
        if verdict is not None:
            series.outcomes[verdict] += 1
        # a run time 0.0 was not measured (a thread given up at its timeout, a child process killed)
        series.durations.observe(outcome.runtime or max(time.monotonic() - held_since, 0.0))
        waited = wait_seconds(job.meta, job.record.started_at)
        if waited is not None:
            series.waits.observe(waited)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        series = dict(self.series)  # a copy: the reporter thread may add a pair meanwhile
        total = CounterMetricFamily(
            "taskq_tasks",
            "Executions reported, by what became of the task",
            labels=["queue", "task", "outcome"],
        )
        for (queue, task), counts in series.items():
            for outcome, count in dict(counts.outcomes).items():
                if count:
                    total.add_metric([queue, task, outcome], count)
        yield total
        for name, doc, attribute in (
            ("taskq_task_duration_seconds", "Run time of every finished execution", "durations"),
            ("taskq_task_wait_seconds", "Time from becoming due to starting", "waits"),
        ):
            family = HistogramMetricFamily(name, doc, labels=["queue", "task"])
            for labels, counts in series.items():
                buckets, total_seconds = getattr(counts, attribute).cumulative()
                if buckets[-1][1]:
                    family.add_metric(list(labels), buckets, total_seconds)
            yield family
        running = GaugeMetricFamily(
            "taskq_tasks_running", "Attempts this worker holds, not finished", labels=["queue"]
        )
        held = self.running()
        for queue in sorted({*self.queues, *held}):
            running.add_metric([queue], held.get(queue, 0))
        yield running


def outcome_label(report: Report, result: bool | str) -> str | None:
    """done, retry or dead; None when nothing became of the task through this report (its lease was
    lost: recovery counts it; or a limiter postponed it, using no attempt)."""
    if not result:
        return None
    if isinstance(report, Ack):
        return "done"
    if isinstance(report, Failure):
        return "dead" if result == "dead" else "retry"
    return None


def wait_seconds(meta: Mapping[str, Any], started_ms: int | None) -> float | None:
    """From when the task became due (enqueued, due after a delay or a retry's backoff, back from the
    dead-letter queue) to when this attempt was fetched, on Redis's clock."""
    if started_ms is None:
        return None
    due = 0
    for value in (meta.get("enqueued_at"), meta.get("run_at"), meta.get("retried_at")):
        if value is not None and isinstance(value, int | float) and value > due:
            due = int(value)
    return max(started_ms - due, 0) / 1000 if due else None


class MetricsServer:
    """The HTTP endpoint: Prometheus text at /metrics, this worker's counts together with whatever
    else the process registered in prometheus-client's default registry."""

    def __init__(self, metrics: WorkerMetrics, host: str, port: int) -> None:
        self.metrics, self.host, self.port = metrics, host, port
        self._server: Any = None

    def start(self) -> None:
        from prometheus_client import REGISTRY, start_http_server

        REGISTRY.register(self.metrics)  # a Collector by its `collect`
        try:
            self._server, _ = start_http_server(self.port, self.host, REGISTRY)
        except OSError as exc:
            REGISTRY.unregister(self.metrics)
            raise TaskqError(
                f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = self._server.server_port  # the one chosen when asked for port 0

    def stop(self) -> None:
        if self._server is None:
            return
        from prometheus_client import REGISTRY

        self._server.shutdown()
        self._server.server_close()
        REGISTRY.unregister(self.metrics)
        self._server = None
