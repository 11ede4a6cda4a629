"""The namespace's metrics from Redis, as `taskq api` serves them at /metrics (SPEC "Metrics and
tracing"):

    taskq_queue_tasks{queue,state}                 gauge: tasks in each state (every state taskq has)
    taskq_queue_oldest_pending_age_seconds{queue}  gauge: 0 when nothing is pending
    taskq_queue_processed_total{queue}             counter: finished executions
    taskq_queue_failed_total{queue}                counter: failed executions
    taskq_workers                                  gauge: live workers

Read in a fixed number of round trips whatever the number of queues (each a pipeline over every
queue): the queue names, the counts by state, the counters and oldest pending task (two), Redis's
clock, the live workers. prometheus-client is imported here only, when the page is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskq_cli.states import ALL_STATES

if TYPE_CHECKING:
    from collections.abc import Iterator

    from taskq_cli.queue import TaskQueue

STATES = tuple(state.value for state in ALL_STATES)  # a state added to taskq is exported with the rest


@dataclass(frozen=True)
class QueueFigures:
    states: dict[str, int]
    oldest_pending_age: float  # seconds; 0.0 when nothing is pending
    processed: int
    failed: int


@dataclass(frozen=True)
class NamespaceFigures:
    queues: dict[str, QueueFigures]
    workers: int


def read(tq: TaskQueue) -> NamespaceFigures:
    """Every queue's figures and the live workers, in a bounded number of round trips."""
    broker = tq.broker
    names = broker.known_queues()
    counts = broker.state_counts(names, STATES) if names else {}
    stats = broker.queue_stats(names) if names else []
    now_ms = broker.redis_time_ms()
    queues = {}
    for s in stats:
        age = 0.0 if s.oldest_pending_ms is None else max(now_ms - s.oldest_pending_ms, 0) / 1000
        queues[s.queue] = QueueFigures(counts[s.queue], age, s.processed, s.failed)
    return NamespaceFigures(queues, len(broker.live_workers()))


class _Figures:
    """A one-shot collector: the families of one reading."""

    def __init__(self, figures: NamespaceFigures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        queues = self.figures.queues
        tasks = GaugeMetricFamily("taskq_queue_tasks", "Tasks in each state", labels=["queue", "state"])
        age = GaugeMetricFamily(
            "taskq_queue_oldest_pending_age_seconds",
            "How long the oldest pending task has been ready (0 when none is pending)",
            labels=["queue"],
        )
        processed = CounterMetricFamily(
            "taskq_queue_processed", "Finished executions (success or failure)", labels=["queue"]
        )
        failed = CounterMetricFamily("taskq_queue_failed", "Failed executions", labels=["queue"])
        for name, figures in sorted(queues.items()):
            for state, count in figures.states.items():
                tasks.add_metric([name, state], count)
            age.add_metric([name], figures.oldest_pending_age)
            processed.add_metric([name], figures.processed)
            failed.add_metric([name], figures.failed)
        yield from (tasks, age, processed, failed)
        yield GaugeMetricFamily("taskq_workers", "Live workers", value=self.figures.workers)


def exposition(tq: TaskQueue) -> tuple[bytes, str]:
    """The Prometheus text page and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(read(tq)))
    return generate_latest(registry), CONTENT_TYPE_LATEST
