"""SPEC "Middleware", sentence by sentence, in every pool: hooks run in producers (sync, async, the
CLI with --app) and in the process that runs the handler; headers added at enqueue travel with the
task (retries included); a broken middleware never loses a task."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import redis

from taskq_cli import EnqueueRefused, Middleware, RunOutcome, TaskInfo, TaskQueue, UsageError
from taskq_cli.middleware import Chain
from tests.support import Procs, final_states, meta_of, qkeys, queue_counts, until


@pytest.fixture
def app(redis_url: str, namespace: str) -> Iterator[ModuleType]:
    """tests/apps/hooked.py, pointed at the test's namespace (as its workers are, by environment)."""
    from tests.apps import hooked

    hooked.tq.configure(redis_url=redis_url, namespace=namespace)
    yield hooked
    hooked.tq.close()


def hook_events(raw: redis.Redis, namespace: str) -> list[dict[str, Any]]:
    from tests.apps.hooked import hooks_key

    return [json.loads(e) for e in raw.lrange(hooks_key(namespace), 0, -1)]


def of(events: list[dict[str, Any]], task_id: str, hook: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e.get("id") == task_id and (hook is None or e["hook"] == hook)]


# -- producers ------------------------------------------------------------------------------------


def test_before_enqueue_adds_headers_that_are_written_with_the_task(
    app: ModuleType, raw: redis.Redis, namespace: str
) -> None:
    task_id = app.tq.enqueue("work", {"value": 1})
    assert meta_of(raw, namespace, task_id)["headers"] == {"tenant": "acme"}
    [seen] = of(hook_events(raw, namespace), task_id, "before_enqueue")
    assert (seen["attempt"], seen["name"], seen["queue"], seen["payload"]) == (
        0,
        "work",
        "default",
        {"value": 1},
    )
    assert seen["pid"] == os.getpid()  # producer side


def test_the_async_producer_runs_before_enqueue_too(
    app: ModuleType, raw: redis.Redis, namespace: str
) -> None:
    async def produce() -> str:
        try:
            return await app.tq.aenqueue("work", {"value": 2})
        finally:
            await app.tq.aclose()

    task_id = asyncio.run(produce())
    assert meta_of(raw, namespace, task_id)["headers"] == {"tenant": "acme"}


def test_an_exception_from_before_enqueue_refuses_the_whole_batch_and_writes_nothing(
    app: ModuleType, raw: redis.Redis, namespace: str
) -> None:
    with pytest.raises(EnqueueRefused, match=r"Breaker.*PermissionError: tenant over quota") as caught:
        app.tq.enqueue_many([("work", {"value": 1}), ("work", {"refuse": True})])
    assert isinstance(caught.value.__cause__, PermissionError)

    async def produce() -> None:
        try:
            await app.tq.aenqueue("work", {"refuse": True})
        finally:
            await app.tq.aclose()

    with pytest.raises(EnqueueRefused):
        asyncio.run(produce())
    assert sum(queue_counts(raw, namespace).values()) == 0
    assert raw.hlen(qkeys(namespace).tasks) == 0


def test_the_cli_with_the_app_runs_the_middleware_refusing_with_exit_2(
    app: ModuleType, run_cli: Callable[..., Any], raw: redis.Redis, namespace: str
) -> None:
    done = run_cli("enqueue", "work", '{"value": 1}', "--app", "tests.apps.hooked")
    assert done.returncode == 0, done.stderr
    assert meta_of(raw, namespace, done.stdout.strip())["headers"] == {"tenant": "acme"}
    refused = run_cli("enqueue", "work", '{"refuse": true}', "--app", "tests.apps.hooked")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "refused by middleware Breaker" in refused.stderr
    assert queue_counts(raw, namespace)["pending"] == 1


# -- workers ----------------------------------------------------------------------------------------

POOLS = {
    "threads": ["--pool", "threads"],
    "asyncio": ["--pool", "asyncio"],
    # one task per child: replacements come from the fork server, which loads the app (and its
    # middleware and log settings) itself
    "processes": ["--pool", "processes", "--max-tasks-per-child", "1"],
}


@pytest.mark.parametrize("pool", list(POOLS))
def test_hooks_run_where_the_handler_runs_and_a_broken_middleware_loses_no_task(
    pool: str, app: ModuleType, procs: Procs, raw: redis.Redis, namespace: str
) -> None:
    # Given tasks that succeed, whose before_run raises (retried, then dead), raises Fail (dead at
    # once), whose after_run raises, and an async handler
    ok = app.tq.enqueue("work", {"value": 3})
    broken = app.tq.enqueue("work", {"break_before": True})
    failed = app.tq.enqueue("work", {"fail_before": True})
    after_broken = app.tq.enqueue("work", {"break_after": True, "value": 5})
    awork = app.tq.enqueue("awork", {"value": 4})
    ids = [ok, broken, failed, after_broken, awork]
    # When a worker runs them
    worker = procs.start("worker", "--app", "tests.apps.hooked", "--concurrency", "2", *POOLS[pool])
    until(
        lambda: all(s in ("done", "dead") for s, _ in final_states(raw, namespace, ids).values()),
        30,
        what="every task finished",
        logs=[worker],
    )
    worker.send(signal.SIGTERM)
    assert worker.wait(15) == 0
    states = final_states(raw, namespace, ids)
    events = hook_events(raw, namespace)

    # Then before_run saw the task as enqueued, headers included, in the process of the handler
    [before] = of(events, ok, "before_run")
    assert (before["attempt"], before["payload"], before["headers"]) == (1, {"value": 3}, {"tenant": "acme"})
    [handler] = of(events, ok, "handler")
    assert before["pid"] == handler["pid"] != os.getpid()
    assert (handler["pid"] == worker.pid) is (pool != "processes")
    # after_run hooks run in reverse order of addition, after the handler
    assert [e["hook"] for e in of(events, ok)] == [
        "before_enqueue",
        "before_run",
        "handler",
        "breaker_after_run",
        "after_run",
    ]
    [after] = of(events, ok, "after_run")
    assert (after["status"], after["result"], after["error"]) == ("done", {"value": 3}, None)
    assert after["duration"] > 0

    # before_run raising fails the attempt like a handler error: retried (headers ride along), then dead
    assert states[broken] == ("dead", 2)
    assert not of(events, broken, "handler")
    assert [(e["attempt"], e["headers"]) for e in of(events, broken, "before_run")] == [
        (1, {"tenant": "acme"}),
        (2, {"tenant": "acme"}),
    ]
    assert [(e["status"], e["error"]) for e in of(events, broken, "after_run")] == [
        ("retry", "RuntimeError: no database connection"),
        ("dead", "RuntimeError: no database connection"),
    ]
    assert meta_of(raw, namespace, broken)["last_error"]["type"] == "RuntimeError"
    # Fail from before_run keeps its meaning: dead at once
    assert states[failed] == ("dead", 1)
    assert [e["status"] for e in of(events, failed, "after_run")] == ["dead"]

    # after_run raising is logged in the worker's log (type and message) and changes nothing
    assert states[after_broken] == ("done", 1)
    assert f"after_run of task {after_broken} failed: ValueError: report server down" in worker.stderr
    assert states[awork] == ("done", 1)
    [async_after] = of(events, awork, "after_run")
    assert (async_after["status"], async_after["result"]) == ("done", 8)


# -- the chain's rules, without Redis ------------------------------------------------------------------


class Log(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_run(self, task: TaskInfo) -> None:
        self.calls.append(f"{self.name}.before_run")

    def after_run(self, task: TaskInfo, outcome: RunOutcome) -> None:
        self.calls.append(f"{self.name}.after_run")


class OnlyAfter(Middleware):
    def after_run(self, task: TaskInfo, outcome: RunOutcome) -> None:
        raise AssertionError("never: a broken after_run is logged")


def test_before_hooks_run_in_order_after_hooks_in_reverse_and_only_those_overridden() -> None:
    calls: list[str] = []
    chain = Chain([Log("a", calls), OnlyAfter(), Log("b", calls)])
    task = TaskInfo("id", "name", "default", 1, {})
    assert chain.before_run(task) is None
    chain.after_run(task, RunOutcome("done"))
    assert calls == ["a.before_run", "b.before_run", "b.after_run", "a.after_run"]
    assert not chain.producing and chain.running


def test_headers_must_be_strings() -> None:
    class Bad(Middleware):
        def before_enqueue(self, task: TaskInfo) -> None:
            task.headers["n"] = 1  # type: ignore[assignment]

    with pytest.raises(EnqueueRefused, match="dict of strings"):
        Chain([Bad()]).before_enqueue(TaskInfo("id", "name", "default", 0, {}))


def test_a_taskq_error_from_before_enqueue_passes_as_it_is() -> None:
    class Strict(Middleware):
        def before_enqueue(self, task: TaskInfo) -> None:
            raise UsageError("tenant header required")

    tq = TaskQueue(redis_url="redis://127.0.0.1:1/0")  # never reached: refused before any write
    tq.add_middleware(Strict())
    with pytest.raises(UsageError, match="tenant header required"):
        tq.enqueue("anything", {})


def test_the_payload_is_decoded_only_when_read_and_bad_json_shows_as_text() -> None:
    assert TaskInfo("i", "n", "q", 1, {}, payload_json='{"a": 1}').payload == {"a": 1}
    assert TaskInfo("i", "n", "q", 1, {}, payload_json="{oops").payload == "{oops"


def test_a_thread_pool_timeout_calls_after_run_once_with_the_task_before_run_saw() -> None:
    import threading

    from taskq_cli.pool import ThreadPool
    from taskq_cli.registry import TaskDef
    from taskq_cli.runner import Execution, TaskTimeout

    seen: list[tuple[str, TaskInfo, RunOutcome | None]] = []
    returned, reported = threading.Event(), threading.Event()

    class Watch(Middleware):
        def before_run(self, task: TaskInfo) -> None:
            seen.append(("before", task, None))

        def after_run(self, task: TaskInfo, outcome: RunOutcome) -> None:
            seen.append(("after", task, outcome))

    def slow() -> None:
        returned.wait(10)  # until the test lets it return, past its timeout

    tq = TaskQueue(redis_url="redis://127.0.0.1:1/0")
    definition = tq.task(name="slow")(slow).definition
    registry: dict[str, TaskDef] = {"slow": definition}
    pool = ThreadPool(1, registry, Chain([Watch()]))
    pool.start(lambda execution, outcome: reported.set())
    pool.submit(Execution("t1", "slow", "default", 1, 0, "{}", 0.1, "token-1"))
    assert reported.wait(10)  # reported as timed out while its thread still runs
    returned.set()
    pool.close()
    for thread in threading.enumerate():  # the abandoned thread has returned from the handler
        if thread.name == "taskq-thread-1":
            thread.join(5)
    [(_, before, _), (_, after, outcome)] = seen  # and not again once the thread returns
    assert after is before
    assert outcome is not None and outcome.status == "dead" and isinstance(outcome.error, TaskTimeout)
