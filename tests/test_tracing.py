"""SPEC "Metrics and tracing", the tracing half: the producer span and the W3C traceparent it writes
into the task's headers, and the consumer span of every execution as its child, across processes
and retries. The SDK's in-memory exporter records the producer's spans here; the worker's app
(tests/apps/traced.py) writes its spans to a file, from the pool's processes."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from taskq_cli import RunOutcome, TaskInfo, TaskQueue
from taskq_cli.otel import Tracing
from tests.conftest import cli_env
from tests.support import Procs, final_states, meta_of, until


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(redis_url: str, namespace: str, exporter: InMemorySpanExporter) -> Iterator[TaskQueue]:
    """A producer with the Tracing middleware on an SDK provider of its own."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tq = TaskQueue(redis_url=redis_url, namespace=namespace)
    tq.add_middleware(Tracing(tracer_provider=provider))
    tq.tracer = provider.get_tracer("tests")  # type: ignore[attr-defined]
    yield tq
    tq.close()


def test_enqueue_makes_a_producer_span_under_the_current_one_and_writes_its_traceparent(
    traced: TaskQueue, exporter: InMemorySpanExporter, raw: redis.Redis, namespace: str
) -> None:
    with traced.tracer.start_as_current_span("POST /signup") as request:  # type: ignore[attr-defined]
        task_id = traced.enqueue("flaky", {})
    [producer, _] = exporter.get_finished_spans()
    assert producer.name == "taskq.enqueue flaky" and producer.kind is SpanKind.PRODUCER
    assert producer.parent is not None and producer.parent.span_id == request.get_span_context().span_id
    assert dict(producer.attributes or {}) == {
        "messaging.system": "taskq",
        "messaging.destination.name": "default",
        "messaging.message.id": task_id,
        "messaging.operation.type": "send",
    }
    context = producer.get_span_context()
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert meta_of(raw, namespace, task_id)["headers"] == {"traceparent": traceparent}


def test_without_an_sdk_tracing_costs_a_no_op_and_adds_no_header(
    redis_url: str, namespace: str, raw: redis.Redis
) -> None:
    tq = TaskQueue(redis_url=redis_url, namespace=namespace)
    tq.add_middleware(Tracing())  # the global provider: none configured in this process
    task_id = tq.enqueue("plain", {})
    tq.close()
    assert "headers" not in meta_of(raw, namespace, task_id)


def test_after_run_without_its_before_run_does_nothing() -> None:
    # an earlier middleware's before_run failed the attempt: ours never began a span
    Tracing().after_run(TaskInfo("id", "name", "default", 1, {}), RunOutcome("retry", error=RuntimeError()))


def spans_in(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("pool", ["processes", "threads", "asyncio"])
def test_each_attempt_runs_in_a_consumer_span_child_of_the_producer_span_in_the_handlers_process(
    pool: str,
    traced: TaskQueue,
    exporter: InMemorySpanExporter,
    procs: Procs,
    raw: redis.Redis,
    redis_url: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    # Given a task enqueued by a traced producer, which fails its first attempt
    task_id = traced.enqueue("flaky", {})
    [producer] = exporter.get_finished_spans()
    # When a worker of a traced app runs it (twice: the retry succeeds)
    spans_file = tmp_path / "spans.jsonl"
    env = cli_env(redis_url, namespace, TASKQ_TEST_SPANS=str(spans_file))
    args = ["worker", "--app", "tests.apps.traced", "--pool", pool, "--concurrency", "1"]
    worker = procs.start(*args, env=env)
    until(lambda: final_states(raw, namespace, [task_id]).get(task_id) == ("done", 2), 30, logs=[worker])
    worker.send(signal.SIGTERM)
    assert worker.wait(15) == 0

    # Then each attempt has a consumer span whose parent is the producer span, made where it ran
    spans = spans_in(spans_file)
    runs = [s for s in spans if s["name"] == "taskq.run flaky"]
    context = producer.get_span_context()
    assert [(s["trace_id"], s["parent_id"]) for s in runs] == [
        (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    ] * 2
    assert [s["attributes"] for s in runs] == [
        {
            "messaging.system": "taskq",
            "messaging.destination.name": "default",
            "messaging.message.id": task_id,
            "messaging.operation.type": "process",
            "taskq.attempt": attempt,
            "taskq.outcome": outcome,
            **({"error.type": "RuntimeError"} if attempt == 1 else {}),
        }
        for attempt, outcome in ((1, "retry"), (2, "done"))
    ]
    assert [(s["kind"], s["status"], s["events"]) for s in runs] == [
        ("CONSUMER", "ERROR", ["exception"]),
        ("CONSUMER", "UNSET", []),
    ]
    assert all(s["pid"] != os.getpid() for s in runs)
    assert all((s["pid"] == worker.pid) is (pool != "processes") for s in runs)
    # and the handler's own spans are children of its attempt's consumer span
    inner = [s for s in spans if s["name"] == "inside the handler"]
    assert [s["parent_id"] for s in inner] == [s["span_id"] for s in runs]


def test_the_tracing_example_links_the_web_request_to_the_task_in_the_worker(
    redis_url: str, namespace: str
) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = cli_env(redis_url, namespace)

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    produced = run("-m", "examples.tracing")
    worked = run("-m", "taskq_cli", "worker", "--app", "examples.tracing", "--pool", "threads", "--burst")
    decoder = json.JSONDecoder()

    def spans(text: str) -> dict[str, dict[str, Any]]:
        found, at = {}, text.find("{")
        while at != -1:
            span, end = decoder.raw_decode(text, at)
            found[span["name"]] = span
            at = text.find("{", end)
        return found

    web, worker = spans(produced), spans(worked)
    request, producer = web["POST /orders"], web["taskq.enqueue invoice"]
    consumer, inner = worker["taskq.run invoice"], worker["render pdf"]
    assert producer["parent_id"] == request["context"]["span_id"]
    assert consumer["parent_id"] == producer["context"]["span_id"]
    assert inner["parent_id"] == consumer["context"]["span_id"]
    assert consumer["context"]["trace_id"] == request["context"]["trace_id"]
