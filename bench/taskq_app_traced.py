"""bench.taskq_app with the tracing middleware installed and no OpenTelemetry SDK configured (what
`Tracing()` costs a worker whose app does not export spans)."""

from bench.taskq_app import tq
from taskq_cli.otel import Tracing

tq.add_middleware(Tracing())

__all__ = ["tq"]
