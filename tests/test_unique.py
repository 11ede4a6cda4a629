"""SPEC "Uniqueness and debounce", sentence by sentence, against a real Redis: the library (the
decorator and enqueue's options), the protocol's state changes that end a hold, the CLI (the fast
path, Typer and --file) and the HTTP API."""

from __future__ import annotations

import json
import subprocess
import warnings
from collections.abc import Callable, Iterator

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.config import RetryDefaults
from taskq_cli.errors import UsageError
from taskq_cli.producer import EnqueueRequest
from taskq_cli.protocol import Broker, Fetched
from taskq_cli.protocol.keys import QueueKeys
from taskq_cli.queue import TaskHandle

from .conftest import Clock

Cli = Callable[..., subprocess.CompletedProcess[str]]
DEFAULTS = RetryDefaults(max_retries=3, backoff_base=5.0, backoff_max=3600.0)


@pytest.fixture
def app(tq: TaskQueue) -> TaskQueue:
    @tq.task(name="whole", unique=True)
    def whole(to: str, n: int = 0) -> None: ...

    @tq.task(name="by_customer", unique=("customer_id",))
    def by_customer(customer_id: int, note: str = "") -> None: ...

    @tq.task(name="started", unique=True, unique_until="started", unique_for="1h")
    def started(to: str) -> None: ...

    @tq.task(name="debounced", unique=("user_id",), debounce="30s")
    def debounced(user_id: int, text: str = "") -> None: ...

    @tq.task(name="plain")
    def plain(to: str = "") -> None: ...

    return tq


def submit(tq: TaskQueue, name: str, payload: dict[str, object], **options: object):  # type: ignore[no-untyped-def]
    return tq.submit([EnqueueRequest(name, payload, **options)])[0]  # type: ignore[arg-type]


def take(broker: Broker, queue: str = "default") -> Fetched:
    got = broker.fetch(queue, 30.0, "w1")
    assert isinstance(got, Fetched), got
    return got


def state(tq: TaskQueue, task_id: str, queue: str | None = None) -> str:
    task = tq.get_task(task_id, queue)
    assert task is not None
    return task.state


# -- the keys -----------------------------------------------------------------------------------


def test_unique_true_keys_on_the_name_and_the_canonical_payload(app: TaskQueue) -> None:
    first = submit(app, "whole", {"to": "a", "n": 1})
    again = submit(app, "whole", {"n": 1, "to": "a"})  # same payload, other field order
    other = submit(app, "whole", {"to": "b", "n": 1})
    assert not first.duplicate and other.id != first.id and not other.duplicate
    assert (again.id, again.queue, again.state, again.duplicate) == (first.id, "default", "pending", True)


def test_unique_fields_key_on_the_name_and_those_fields(app: TaskQueue) -> None:
    first = submit(app, "by_customer", {"customer_id": 7, "note": "x"})
    again = submit(app, "by_customer", {"customer_id": 7, "note": "y"})
    assert again.duplicate and again.id == first.id
    assert not submit(app, "by_customer", {"customer_id": 8}).duplicate


def test_an_explicit_key_wins_over_the_decorator(app: TaskQueue) -> None:
    first = app.enqueue("whole", {"to": "a"}, unique_key="welcome:42")
    assert app.enqueue("whole", {"to": "zzz"}, unique_key="welcome:42") == first
    assert app.enqueue("whole", {"to": "a"}) != first  # the derived key is another key
    handle = TaskHandle(app, app.registry["plain"])  # the handle's enqueue takes it as an option too
    assert handle.enqueue(unique_key="welcome:42") == first


def test_unique_keys_are_per_queue(app: TaskQueue) -> None:
    a = app.enqueue("plain", {}, unique_key="k", queue="qa")
    b = app.enqueue("plain", {}, unique_key="k", queue="qb")
    assert a != b
    assert app.enqueue("plain", {}, unique_key="k", queue="qa") == a


def test_a_key_is_held_while_pending_scheduled_active_and_between_retries(
    app: TaskQueue, broker: Broker
) -> None:
    holder = submit(app, "plain", {}, unique_key="k", delay=60)
    assert submit(app, "plain", {}, unique_key="k").state == "scheduled"
    broker.client.zadd(broker.keys("default").scheduled, {holder.id: 0})
    broker.promote("default")
    assert submit(app, "plain", {}, unique_key="k").state == "pending"
    job = take(broker)
    answer = submit(app, "plain", {}, unique_key="k")
    assert (answer.id, answer.state, answer.duplicate) == (holder.id, "active", True)
    assert broker.fail(
        job, {"type": "E", "message": "", "traceback": ""}, final=False, delay=60, max_retries=3
    )
    answer = submit(app, "plain", {}, unique_key="k")
    assert (answer.id, answer.state, answer.duplicate) == (holder.id, "scheduled", True)


# -- what ends a hold (unique_until="finished", the default) ----------------------------------------


def test_done_releases_the_key_in_the_ack_itself(
    app: TaskQueue, broker: Broker, raw: redis.Redis, namespace: str
) -> None:
    first = app.enqueue("plain", {}, unique_key="k")
    assert broker.ack(take(broker), None, 600)
    assert raw.hget(QueueKeys(namespace, "default").unique, "k") is None  # no second step needed
    second = submit(app, "plain", {}, unique_key="k")
    assert second.id != first and not second.duplicate


def test_a_dead_task_never_blocks_its_key(app: TaskQueue, broker: Broker) -> None:
    first = app.enqueue("plain", {}, unique_key="k")
    broker.fail(
        take(broker), {"type": "Fail", "message": "", "traceback": ""}, final=True, delay=None, max_retries=3
    )
    assert state(app, first) == "dead"
    assert not submit(app, "plain", {}, unique_key="k").duplicate


def test_a_recovered_task_with_its_attempts_spent_releases_its_key(
    app: TaskQueue, broker: Broker, clock: Clock
) -> None:
    first = app.enqueue("plain", {}, unique_key="k", max_retries=0)
    take(broker)
    clock.advance(31)
    assert broker.recover("default", DEFAULTS) == (0, 1)
    assert state(app, first) == "dead"
    assert not submit(app, "plain", {}, unique_key="k").duplicate


def test_a_recovered_task_with_attempts_left_keeps_its_key(
    app: TaskQueue, broker: Broker, clock: Clock
) -> None:
    first = app.enqueue("plain", {}, unique_key="k")
    take(broker)
    clock.advance(31)
    assert broker.recover("default", DEFAULTS) == (1, 0)
    assert submit(app, "plain", {}, unique_key="k").id == first


@pytest.mark.parametrize("when", ["pending", "scheduled", "active"])
def test_cancel_releases_the_key(app: TaskQueue, broker: Broker, when: str) -> None:
    first = app.enqueue("plain", {}, unique_key="k", delay=60 if when == "scheduled" else None)
    if when == "active":
        take(broker)
    assert broker.cancel("default", first) == when
    assert not submit(app, "plain", {}, unique_key="k").duplicate


def test_clear_releases_the_keys_of_the_tasks_it_deletes(app: TaskQueue, broker: Broker) -> None:
    app.enqueue("plain", {}, unique_key="a")
    app.enqueue("plain", {}, unique_key="b", delay=60)
    broker.clear("default")
    assert not submit(app, "plain", {}, unique_key="a").duplicate
    assert not submit(app, "plain", {}, unique_key="b").duplicate


def test_a_purged_dead_task_does_not_block_its_key(app: TaskQueue, broker: Broker) -> None:
    first = app.enqueue("plain", {}, unique_key="k")
    broker.fail(
        take(broker), {"type": "Fail", "message": "", "traceback": ""}, final=True, delay=None, max_retries=3
    )
    assert broker.dlq_purge("default", [first]) == [True]
    assert not submit(app, "plain", {}, unique_key="k").duplicate


def test_a_later_holder_keeps_its_key_when_an_earlier_one_finishes(
    app: TaskQueue, broker: Broker, clock: Clock
) -> None:
    app.enqueue("plain", {}, unique_key="k", unique_for="1s")
    job = take(broker)
    clock.advance(2)  # the first hold has run out: a second task takes the key
    second = app.enqueue("plain", {}, unique_key="k")
    assert broker.ack(job, None, 600)  # the first one's end must not free the second's key
    assert app.enqueue("plain", {}, unique_key="k") == second


# -- "started" and unique_for ---------------------------------------------------------------------


def test_started_releases_the_key_when_its_first_execution_starts(app: TaskQueue, broker: Broker) -> None:
    first = app.enqueue("started", {"to": "a"})
    assert app.enqueue("started", {"to": "a"}) == first
    take(broker)
    second = submit(app, "started", {"to": "a"})
    assert second.id != first and not second.duplicate


def test_unique_for_caps_the_hold(app: TaskQueue, broker: Broker, clock: Clock) -> None:
    first = app.enqueue("plain", {}, unique_key="k", unique_for="10s")
    clock.advance(9)
    assert app.enqueue("plain", {}, unique_key="k") == first
    clock.advance(1.5)
    assert app.enqueue("plain", {}, unique_key="k") != first
    assert state(app, first) == "pending"  # the cap ends the hold, not the task


# -- debounce -------------------------------------------------------------------------------------


def test_debounce_schedules_then_replaces_the_payload_and_pushes_the_run_time(
    app: TaskQueue, broker: Broker, clock: Clock
) -> None:
    first = submit(app, "debounced", {"user_id": 1, "text": "one"})
    assert first.state == "scheduled"
    task = app.get_task(first.id)
    assert task is not None and task.run_at == clock.ms + 30_000
    clock.advance(20)
    again = submit(app, "debounced", {"user_id": 1, "text": "two"})
    assert (again.id, again.state, again.duplicate) == (first.id, "scheduled", True)
    task = app.get_task(first.id)
    assert (
        task is not None
        and task.payload == {"user_id": 1, "text": "two"}
        and task.run_at == clock.ms + 30_000
    )
    clock.advance(29)
    assert broker.promote("default")[0] == 0  # pushed: not due 30 s after the first enqueue
    clock.advance(1.5)
    assert broker.promote("default")[0] == 1
    job = take(broker)
    assert job.id == first.id and json.loads(job.payload_json)["text"] == "two"
    third = submit(app, "debounced", {"user_id": 1, "text": "three"})  # started: no longer replaced
    assert (third.id, third.state, third.duplicate) == (first.id, "active", True)


def test_debounce_of_a_pending_holder_moves_it_back_to_scheduled(
    app: TaskQueue, broker: Broker, clock: Clock
) -> None:
    first = app.enqueue("debounced", {"user_id": 2})
    clock.advance(31)
    broker.promote("default")
    assert state(app, first) == "pending"
    assert submit(app, "debounced", {"user_id": 2, "text": "late"}).state == "scheduled"
    assert broker.fetch("default", 30.0, "w1") is None  # its old pending entry is not taken


def test_debounce_needs_a_unique_key(tq: TaskQueue) -> None:
    with pytest.raises(UsageError, match="need a unique key"):
        tq.enqueue("x", {}, debounce="5s")
    with pytest.raises(UsageError, match="unique_until"):
        tq.enqueue("x", {}, unique_key="k", unique_until="soon")


# -- task show -------------------------------------------------------------------------------------


def test_task_show_includes_unique_key(app: TaskQueue, run_cli: Cli) -> None:
    keyed = app.enqueue("plain", {}, unique_key="welcome:42")
    plain = app.enqueue("plain", {})
    shown = json.loads(run_cli("task", "show", keyed, "--json").stdout)
    assert shown["unique_key"] == "welcome:42"
    assert json.loads(run_cli("task", "show", plain, "--json").stdout)["unique_key"] is None


# -- the CLI and the HTTP API ------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--durable"]], ids=["fast path", "typer"])
def test_cli_unique_options(run_cli: Cli, extra: list[str]) -> None:
    if extra:
        pytest.importorskip("typer")

    def enqueue(*args: str) -> dict[str, object]:
        done = run_cli("enqueue", "t", *args, "--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    first = enqueue('{"a": 1}', "--unique")
    assert enqueue('{"a": 1}', "--unique")["duplicate"] is True
    keyed = enqueue("--unique-key", "k", "--unique-until", "started", "--unique-for", "1h")
    assert enqueue("--unique-key", "k")["id"] == keyed["id"]
    bounced = enqueue('{"v": 1}', "--unique-key", "d", "--debounce", "30s")
    assert bounced["state"] == "scheduled"
    again = enqueue('{"v": 2}', "--unique-key", "d", "--debounce", "30s")
    assert (again["id"], again["duplicate"]) == (bounced["id"], True)
    assert first["duplicate"] is False


def test_cli_bad_unique_options_exit_2_and_write_nothing(
    run_cli: Cli, raw: redis.Redis, namespace: str
) -> None:
    for args in (
        ["--debounce", "5s"],
        ["--unique-key", "k", "--unique-until", "later"],
        ["--unique", "--delay", "1", "--debounce", "1"],
    ):
        done = run_cli("enqueue", "t", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)
    assert raw.keys(f"{namespace}:*") == []


def test_file_lines_take_the_unique_fields(run_cli: Cli) -> None:
    lines = "\n".join(
        json.dumps(line)
        for line in (
            {"name": "t", "payload": {"a": 1}, "unique": True},
            {"name": "t", "payload": {"a": 1}, "unique": True},
            {"name": "t", "unique_key": "k", "unique_until": "started", "unique_for": "1h"},
            {"name": "t", "payload": {"v": 1}, "unique_key": "d", "debounce": 30},
            {"name": "t", "payload": {"v": 2}, "unique_key": "d", "debounce": "30s"},
        )
    )
    done = run_cli("enqueue", "--file", "-", "--json", input=lines)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["duplicate"] for a in answers] == [False, True, False, False, True]
    assert answers[1]["id"] == answers[0]["id"] and answers[4]["id"] == answers[3]["id"]
    assert answers[3]["state"] == "scheduled"


@pytest.fixture
def http(tq: TaskQueue) -> Iterator[object]:
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient
    from taskq_cli.api import create_app

    with TestClient(create_app(tq, token=""), base_url="http://localhost") as client:
        yield client


def test_http_enqueue_takes_the_unique_fields(http) -> None:  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/json"}
    body = [
        {"name": "t", "payload": {"v": 1}, "unique_key": "d", "debounce": "30s"},
        {"name": "t", "payload": {"v": 2}, "unique_key": "d", "debounce": "30s"},
        {"name": "t", "unique": True},
    ]
    answer = http.post("/enqueue", content=json.dumps(body), headers=headers)
    assert answer.status_code == 201, answer.text
    first, second, third = answer.json()
    assert second["id"] == first["id"] and second["duplicate"] is True and not third["duplicate"]
    bad = http.post(
        "/enqueue",
        content=json.dumps({"name": "t", "unique_until": "later", "unique_key": "k"}),
        headers=headers,
    )
    assert bad.status_code == 422
    bad = http.post("/enqueue", content=json.dumps({"name": "t", "debounce": "5s"}), headers=headers)
    assert bad.status_code == 422
