"""OpenTelemetry tracing as a middleware (`pip install 'taskq-cli[otel]'`; SPEC "Metrics and tracing"):

    from taskq_cli.otel import Tracing
    tq.add_middleware(Tracing())

Enqueue makes a producer span `taskq.enqueue <task>` (a child of whatever span is current: the web
request that enqueued) and writes its W3C `traceparent` into the task's headers, which travel with
the task. Each execution runs in a consumer span `taskq.run <task>` whose parent is that context, in
whatever process runs it and on every attempt; the span is current while the handler runs, so spans
the handler makes are its children. Attributes follow OpenTelemetry's messaging conventions:
`messaging.system=taskq`, `messaging.destination.name` (the queue), `messaging.message.id` (the task
id), `messaging.operation.type`, and `taskq.attempt`.

Only opentelemetry-api is needed: while no SDK is configured, Tracing makes no span (each would be a
no-op) and adds nothing to the headers. The producer span ends when `before_enqueue` returns
(middleware has no hook after the write): it marks the hand-off, not the round trip to Redis.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import context, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from taskq_cli.middleware import Middleware, RunOutcome, TaskInfo

SYSTEM = "taskq"
_NO_SDK = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


class Tracing(Middleware):
    """Producer and consumer spans around every enqueue and execution. `tracer_provider`: the
    global one by default; `propagator`: W3C trace context by default (what SPEC promises)."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        from taskq_cli import __version__

        self.tracer = trace.get_tracer("taskq_cli", __version__, tracer_provider=tracer_provider)
        self._given = tracer_provider is not None
        self.propagator = propagator or TraceContextTextMapPropagator()
        # running executions: TaskInfo -> (its span, the context token, the thread that attached it)
        self._running: dict[int, tuple[Span, Any, int]] = {}

    def _tracing(self) -> bool:
        """False while no SDK is set up (the global provider is still the API's proxy or a no-op):
        every span would be a no-op, so none is made. Asked each time: an app may set it up later."""
        return self._given or not isinstance(trace.get_tracer_provider(), _NO_SDK)

    def before_enqueue(self, task: TaskInfo) -> None:
        if not self._tracing():
            return
        span = self.tracer.start_span(
            f"taskq.enqueue {task.name}", kind=SpanKind.PRODUCER, attributes=_attributes(task, "send")
        )
        try:
            self.propagator.inject(task.headers, context=trace.set_span_in_context(span))
        finally:
            span.end()

    def before_run(self, task: TaskInfo) -> None:
        if not self._tracing():
            return
        parent = self.propagator.extract(task.headers)  # not the worker's own context
        attributes = {**_attributes(task, "process"), "taskq.attempt": task.attempt}
        span = self.tracer.start_span(
            f"taskq.run {task.name}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span))  # current while the handler runs
        self._running[id(task)] = (span, token, threading.get_ident())

    def after_run(self, task: TaskInfo, outcome: RunOutcome) -> None:
        found = self._running.pop(id(task), None)
        if found is None:
            return  # an earlier middleware's before_run failed the attempt before ours ran
        span, token, thread = found
        span.set_attribute("taskq.outcome", outcome.status)
        error = outcome.error
        if error is not None:
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()
        if thread == threading.get_ident():  # a thread pool reports a timeout from its watchdog
            context.detach(token)


def _attributes(task: TaskInfo, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": task.queue,
        "messaging.message.id": task.id,
        "messaging.operation.type": operation,
    }
