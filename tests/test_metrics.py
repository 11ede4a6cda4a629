"""SPEC "Metrics and tracing", the metrics half: the worker's /metrics (counted where outcomes are
known, label values bounded) and `taskq api`'s /metrics (namespace figures from Redis in a bounded
number of round trips, behind the token); and a real Prometheus scraping both after a known
workload, queried through its HTTP API."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.metrics import UNKNOWN, Histogram, WorkerMetrics, wait_seconds
from taskq_cli.protocol import Ack, Failure, Fetched, Postpone
from taskq_cli.services.metrics import STATES
from taskq_cli.states import ALL_STATES
from tests.support import Procs, final_states, free_port, until

with warnings.catch_warnings():  # starlette asks for httpx2; httpx (the api extra) works the same
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from taskq_cli.api import create_app
from taskq_cli.models import Outcome, OutcomeKind

TOKEN = "metrics-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- worker metrics, counted -------------------------------------------------------------------------


def fetched(name: str, meta: dict[str, Any] | None = None) -> Fetched:
    base = {"name": name, "attempts": 1, "state": "active", "enqueued_at": 1_000, "started_at": 3_500}
    return Fetched("default", f"id-{name}", {**base, **(meta or {})}, "{}", "token")


def test_a_histogram_counts_each_value_in_the_first_bucket_that_holds_it_cumulatively() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        histogram.observe(value)
    assert histogram.cumulative() == ([("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)], 7.65)


def test_the_wait_runs_from_becoming_due_to_the_fetch() -> None:
    assert wait_seconds({"enqueued_at": 1_000}, 3_500) == 2.5
    assert wait_seconds({"enqueued_at": 1_000, "run_at": 3_000}, 3_500) == 0.5  # delayed, or a retry
    assert wait_seconds({"enqueued_at": 1_000, "retried_at": 3_400}, 3_500) == pytest.approx(0.1)
    assert wait_seconds({}, 3_500) is None


def test_outcomes_are_labelled_done_retry_dead_and_task_names_outside_the_registry_are_one_unknown() -> None:
    metrics = WorkerMetrics(["default"], ["known"], lambda: {"default": 2})
    ok = Outcome.success(None)
    error = Outcome.failure(OutcomeKind.ERROR, "E", "m")
    job = fetched("known")
    metrics.finished(job, 0.0, ok, Ack(job, None, 1.0), True)
    metrics.finished(job, 0.0, error, Failure(job, {}, False, None, 3), "scheduled")
    metrics.finished(job, 0.0, error, Failure(job, {}, True, None, 3), "dead")
    metrics.finished(job, 0.0, error, Failure(job, {}, False, None, 3), "")  # lease lost: not counted
    metrics.finished(job, 0.0, ok, Postpone(job, 1.0), True)  # a limiter postponed it: no outcome
    for n in range(50):  # bad input: many names no handler here has
        stranger = fetched(f"stranger-{n}")
        metrics.finished(stranger, 0.0, error, Failure(stranger, {}, True, None, 3), "dead")

    assert {labels: s.outcomes for labels, s in metrics.series.items()} == {
        ("default", "known"): {"done": 1, "retry": 1, "dead": 1},
        ("default", UNKNOWN): {"done": 0, "retry": 0, "dead": 50},
    }
    known = metrics.series["default", "known"]
    assert sum(known.durations.counts) == sum(known.waits.counts) == 5  # every finished execution
    families = {f.name: f for f in metrics.collect()}
    assert [(s.labels, s.value) for s in families["taskq_tasks_running"].samples] == [
        ({"queue": "default"}, 2)
    ]


# -- taskq api's /metrics ------------------------------------------------------------------------------


@pytest.fixture
def api(tq: TaskQueue) -> Iterator[TestClient]:
    with TestClient(create_app(tq, token=TOKEN), base_url="http://localhost") as client:
        yield client


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of a Prometheus text page (comments dropped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_the_api_serves_every_state_of_every_queue_behind_the_token(api: TestClient, tq: TaskQueue) -> None:
    tq.enqueue_many([("a", {}), ("b", {}), ("c", {}, {"queue": "mail"}), ("d", {}, {"delay": 60})])
    assert api.get("/metrics").status_code == 401
    answer = api.get("/metrics", headers=AUTH)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    got = samples(answer.text)
    assert got['taskq_queue_tasks{queue="default",state="pending"}'] == 2
    assert got['taskq_queue_tasks{queue="default",state="scheduled"}'] == 1
    assert got['taskq_queue_tasks{queue="mail",state="pending"}'] == 1
    assert {s.value for s in ALL_STATES} == set(STATES)  # every state taskq has, each queue
    for state in STATES:
        assert f'taskq_queue_tasks{{queue="mail",state="{state}"}}' in got
    assert got['taskq_queue_oldest_pending_age_seconds{queue="mail"}'] >= 0
    assert got['taskq_queue_processed_total{queue="default"}'] == 0
    assert got['taskq_queue_failed_total{queue="default"}'] == 0
    assert got["taskq_workers"] == 0
    assert "/metrics" not in api.get("/openapi.json", headers=AUTH).text


def round_trips(tq: TaskQueue, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count what goes to Redis: each command sent alone, each pipeline as one."""
    sent = [0]
    client = tq.broker.client
    command, pipeline = client.execute_command, client.pipeline

    def counted_command(*args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return command(*args, **kwargs)

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        def counted_execute(*a: Any, **k: Any) -> Any:
            sent[0] += 1
            return execute(*a, **k)

        pipe.execute = counted_execute
        return pipe

    monkeypatch.setattr(client, "execute_command", counted_command)
    monkeypatch.setattr(client, "pipeline", counted_pipeline)
    return lambda: sent[0]


def test_the_api_reads_its_figures_in_the_same_round_trips_for_two_queues_or_forty(
    api: TestClient, tq: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    tq.enqueue_many([("t", {}, {"queue": f"q{n}"}) for n in range(2)])
    count = round_trips(tq, monkeypatch)
    api.get("/metrics", headers=AUTH)
    with_two = count()
    tq.enqueue_many([("t", {}, {"queue": f"q{n}"}) for n in range(2, 40)])
    before = count()
    text = api.get("/metrics", headers=AUTH).text
    assert count() - before == with_two <= 8
    assert samples(text)['taskq_queue_tasks{queue="q39",state="pending"}'] == 1


# -- a real Prometheus ------------------------------------------------------------------------------------


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.skip("no prometheus binary on PATH (Debian: apt install prometheus; .ci/run installs it)")
    return found


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[tuple[str, str, dict[str, Any]]]], str]]:
    """Start a real Prometheus scraping the given (job, host:port, extra config) targets every
    second; returns its base URL. Killed at the end."""
    binary = prometheus_binary()
    started: list[subprocess.Popen[bytes]] = []

    def start(targets: list[tuple[str, str, dict[str, Any]]]) -> str:
        import json

        port = free_port()
        jobs = [
            {"job_name": job, "scrape_interval": "1s", "static_configs": [{"targets": [target]}], **extra}
            for job, target, extra in targets
        ]
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}))  # YAML
        with (tmp_path / "prometheus.log").open("wb") as log:  # the child keeps its own copy
            started.append(
                subprocess.Popen(
                    [
                        binary,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={tmp_path / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        url = f"http://127.0.0.1:{port}"
        until(
            lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200,
            30,
            what="prometheus ready",
            logs=lambda: (tmp_path / "prometheus.log").read_text(errors="replace"),
            ignore=(httpx.TransportError,),
        )
        return url

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


def query(url: str, promql: str) -> dict[str, float]:
    """An instant query: `{label=value,...}` (without job and instance) -> value."""
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    out = {}
    for item in answer["data"]["result"]:
        labels = {k: v for k, v in item["metric"].items() if k not in ("job", "instance", "__name__")}
        out[",".join(f"{k}={v}" for k, v in sorted(labels.items()))] = float(item["value"][1])
    return out


def test_a_real_prometheus_scrapes_a_worker_and_the_api_after_a_known_workload(
    prometheus: Callable[..., str],
    procs: Procs,
    tmp_path: Path,
    raw: redis.Redis,
    namespace: str,
    tq: TaskQueue,
) -> None:
    # Given a known workload: five tasks that succeed, one that fails three times (dead), and three
    # waiting in a queue no worker serves
    ok = [tq.enqueue("ok", {"value": n}) for n in range(5)]
    boom = tq.enqueue("boom", {})
    tq.enqueue_many([("ok", {}, {"queue": "idle"})] * 3)
    # When a worker (processes pool, metrics on) and taskq api (with a token) run and Prometheus
    # scrapes both
    metrics_port, api_port = free_port(), free_port()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    worker = procs.start(
        "worker", "--app", "tests.apps.basic", "--concurrency", "2", "--metrics-port", str(metrics_port)
    )
    api = procs.start("api", "--port", str(api_port), "--no-access-log", "--token-file", str(token_file))
    url = prometheus(
        [
            ("taskq-worker", f"127.0.0.1:{metrics_port}", {}),
            ("taskq-api", f"127.0.0.1:{api_port}", {"authorization": {"credentials": TOKEN}}),
        ]
    )
    until(
        lambda: (
            {s for s, _ in final_states(raw, namespace, ok).values()} == {"done"}
            and final_states(raw, namespace, [boom])[boom] == ("dead", 3)
        ),
        30,
        what="the workload done",
        logs=[worker],
    )

    # Then Prometheus's own queries show it
    def scraped() -> bool:
        totals = query(url, "taskq_tasks_total")
        queued = query(url, "taskq_queue_tasks")
        return (
            totals.get("outcome=done,queue=default,task=ok") == 5
            and totals.get("outcome=dead,queue=default,task=boom") == 1
            and queued.get("queue=idle,state=pending") == 3
            and queued.get("queue=default,state=dead") == 1
        )

    until(scraped, 30, what="prometheus saw the workload", logs=[worker, api])
    totals = query(url, "taskq_tasks_total")
    assert totals["outcome=retry,queue=default,task=boom"] == 2  # max_retries=2: two retries, then dead
    assert query(url, "taskq_queue_tasks")["queue=default,state=done"] == 5
    assert query(url, 'count(up{job=~"taskq-.*"} == 1)') == {"": 2.0}  # both targets scraped
    assert query(url, "taskq_workers")[""] == 1
    count = query(url, 'sum(taskq_task_duration_seconds_count{task="boom"})')
    assert count[""] == 3  # every execution, failures included
    # and every query of the Grafana dashboard is one Prometheus accepts and answers
    from tests.test_alerting import dashboard_queries

    for promql in dashboard_queries():
        query(url, promql.replace("$queue", ".*").replace("$__rate_interval", "1m"))
    assert query(url, 'max(taskq_queue_oldest_pending_age_seconds{queue=~".*"})')[""] > 0  # idle waits


def test_a_bad_metrics_port_is_bad_usage_and_a_taken_one_a_runtime_failure(
    run_cli: Callable[..., subprocess.CompletedProcess[str]], redis_url: str, namespace: str
) -> None:
    import socket

    from tests.conftest import cli_env

    assert run_cli("worker", "--burst", "--metrics-port", "70000").returncode == 2
    env = cli_env(redis_url, namespace, TASKQ_METRICS_PORT="nine")
    refused = run_cli("worker", "--burst", env=env)
    assert refused.returncode == 2 and "TASKQ_METRICS_PORT" in refused.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = cli_env(redis_url, namespace, TASKQ_METRICS_PORT=str(port))
        failed = run_cli("worker", "--burst", "--pool", "threads", env=env)
    assert failed.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_an_enqueue_process_imports_neither_prometheus_client_nor_taskq_tracing(
    redis_url: str, namespace: str
) -> None:
    # (redis-py itself imports opentelemetry when it is installed: its own observability module)
    from tests.conftest import run_python

    code = (
        "import sys; from taskq_cli.cli.app import run; rc = run(['enqueue', 'noop', '{}']);"
        "print(rc, sorted(m for m in sys.modules if m.startswith(('prometheus_client', 'taskq_cli.otel',"
        " 'taskq_cli.metrics', 'taskq_cli.services.metrics'))))"
    )
    result = run_python(code, redis_url, namespace)
    assert result.stdout.splitlines()[-1] == "0 []", result.stdout + result.stderr
