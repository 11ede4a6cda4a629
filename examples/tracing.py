"""Tracing a task from the code that enqueued it to the worker that ran it (docs/observability.md).

    pip install 'taskq-cli[otel]' opentelemetry-sdk
    taskq worker --app examples.tracing --pool threads      # from the project root

The SDK is set up here, where the tasks are defined, so producers and workers of this app share it.
Spans go to stdout (ConsoleSpanExporter); in production use an OTLP exporter and a
BatchSpanProcessor instead (opentelemetry-exporter-otlp), pointed at your collector.
tests/test_tracing.py runs it.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from taskq_cli import TaskQueue
from taskq_cli.otel import Tracing

provider = TracerProvider(resource=Resource.create({"service.name": "billing"}))
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("billing")

tq = TaskQueue()
tq.add_middleware(Tracing())  # the global provider set above


@tq.task(name="invoice")
def invoice(order_id: int) -> str:
    with tracer.start_as_current_span("render pdf"):  # a child of the task's `taskq.run invoice` span
        return f"invoice-{order_id}.pdf"


def place_order(order_id: int) -> str:
    """What a web handler does: its span is the parent of the task's producer span."""
    with tracer.start_as_current_span("POST /orders"):
        return invoice.enqueue(order_id=order_id)


if __name__ == "__main__":
    print(place_order(42))
