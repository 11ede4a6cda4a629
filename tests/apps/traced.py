"""An app with the Tracing middleware, for tests/test_tracing.py. Its spans go through the SDK to an
exporter that appends each finished span as one JSON line to the file TASKQ_TEST_SPANS names, with
the pid of the process that made it (the consumer spans are made in the pool's child processes)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from taskq_cli import TaskQueue, current_task
from taskq_cli.otel import Tracing


class JsonLinesExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        path = os.environ.get("TASKQ_TEST_SPANS")
        if path:
            with open(path, "a") as out:
                for span in spans:
                    out.write(json.dumps(span_fields(span)) + "\n")
        return SpanExportResult.SUCCESS


def span_fields(span: ReadableSpan) -> dict[str, object]:
    context, parent = span.get_span_context(), span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}" if context else None,
        "span_id": f"{context.span_id:016x}" if context else None,
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
        "pid": os.getpid(),
    }


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter()))
tracer = provider.get_tracer("tests.apps.traced")

tq = TaskQueue(backoff_base=0.05, backoff_max=0.1)
tq.add_middleware(Tracing(tracer_provider=provider))


@tq.task(name="flaky", max_retries=2)
def flaky() -> str:
    ctx = current_task()
    assert ctx is not None
    with tracer.start_as_current_span("inside the handler"):  # a child of the consumer span
        pass
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return "ok"


@tq.task(name="plain")
def plain() -> str:
    return (trace.get_current_span().get_span_context().trace_id and "traced") or "untraced"
