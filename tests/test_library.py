"""The Python API in-process, against a real Redis: `TaskQueue`, `@tq.task`, `enqueue`,
`enqueue_many`, payload validation and `get_task` (SPEC: "The library", "Custom ids and enqueue")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from taskq_cli import TaskHandle, TaskQueue, UsageError, ValidationFailed
from tests.support import meta_of, nskeys, payload_of, qkeys

UNREACHABLE_URL = "redis://127.0.0.1:1/0"


def pending_ids(raw: redis.Redis, namespace: str, queue: str = "default") -> list[str]:
    return raw.lrange(qkeys(namespace, queue).pending, 0, -1)


def redis_now_ms(raw: redis.Redis) -> int:
    seconds, micros = raw.time()
    return int(seconds) * 1000 + int(micros) // 1000


def nothing_written(raw: redis.Redis, namespace: str) -> bool:
    return raw.keys(f"{namespace}:*") == []


@pytest.fixture
def send(tq: TaskQueue) -> TaskHandle:
    @tq.task(name="send_email", max_retries=3, timeout=30)
    def send_email(to: str, subject: str = "hello", count: int = 1) -> dict[str, Any]:
        return {"to": to, "subject": subject, "count": count}

    return send_email


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[timedelta]:
    """Local time is UTC+05:30 for the test (a POSIX TZ string: no tz database needed)."""
    monkeypatch.setenv("TZ", "UTC-05:30")
    time.tzset()
    yield timedelta(hours=5, minutes=30)
    monkeypatch.undo()
    time.tzset()


# -- @tq.task --------------------------------------------------------------------------------------


def test_task_decorator_returns_a_handle_that_is_still_callable_directly(tq, raw, namespace):
    @tq.task(name="add")
    def add(a: int, b: int = 1) -> int:
        """Adds."""
        return a + b

    assert isinstance(add, TaskHandle)
    assert add(2, 3) == 5
    assert add(a=4) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Adds."
    assert nothing_written(raw, namespace), "calling the handler directly must not enqueue"


def test_async_handler_stays_a_coroutine_function_when_called_directly(tq):
    import asyncio

    @tq.task(name="double")
    async def double(value: int) -> int:
        return value * 2

    assert asyncio.run(double(value=21)) == 42


def test_handle_enqueue_takes_the_payload_as_keyword_arguments(send, tq, raw, namespace):
    task_id = send.enqueue(to="a@example.com", subject="hi")

    assert isinstance(task_id, str)
    assert pending_ids(raw, namespace) == [task_id]
    task = tq.get_task(task_id)
    assert task is not None
    assert task.id == task_id
    assert task.name == "send_email"
    assert task.queue == "default"
    assert task.state == "pending"
    assert task.attempts == 0
    assert task.payload == {"to": "a@example.com", "subject": "hi"}


def test_handle_enqueue_with_delay_schedules_the_task_and_keeps_delay_out_of_the_payload(
    send, raw, namespace
):
    before = redis_now_ms(raw)
    task_id = send.enqueue(to="a@example.com", delay=10)
    after = redis_now_ms(raw)

    meta = meta_of(raw, namespace, task_id)
    assert meta["state"] == "scheduled"
    assert before + 10_000 <= meta["run_at"] <= after + 10_000
    assert raw.zscore(qkeys(namespace, "default").scheduled, task_id) == meta["run_at"]
    assert pending_ids(raw, namespace) == []
    assert payload_of(raw, namespace, task_id) == {"to": "a@example.com"}


def test_handle_enqueue_accepts_queue_and_task_id_options(send, raw, namespace):
    task_id = send.enqueue(to="a@example.com", queue="mail", task_id="mail-1")

    assert task_id == "mail-1"
    assert pending_ids(raw, namespace, "mail") == ["mail-1"]
    assert payload_of(raw, namespace, "mail-1", "mail") == {"to": "a@example.com"}


def test_handle_enqueue_uses_the_decorators_queue(tq, raw, namespace):
    @tq.task(name="report", queue="reports")
    def report(month: int) -> None:
        pass

    task_id = report.enqueue(month=3)

    assert pending_ids(raw, namespace, "reports") == [task_id]
    assert pending_ids(raw, namespace, "default") == []
    assert tq.enqueue("report", {"month": 4}, queue="urgent") in pending_ids(raw, namespace, "urgent")


# -- tq.enqueue ------------------------------------------------------------------------------------


def test_enqueue_by_name_with_a_payload(send, tq, raw, namespace):
    task_id = tq.enqueue("send_email", {"to": "b@example.com"})

    assert pending_ids(raw, namespace) == [task_id]
    assert meta_of(raw, namespace, task_id)["name"] == "send_email"
    assert payload_of(raw, namespace, task_id) == {"to": "b@example.com"}


def test_enqueue_without_a_payload_stores_an_empty_object(tq, raw, namespace):
    task_id = tq.enqueue("cleanup")

    assert payload_of(raw, namespace, task_id) == {}


def test_enqueue_with_a_queue_puts_the_task_in_that_queue(tq, raw, namespace):
    task_id = tq.enqueue("t", {}, queue="bulk")

    assert pending_ids(raw, namespace, "bulk") == [task_id]
    assert "bulk" in raw.smembers(nskeys(namespace).queues)
    task = tq.get_task(task_id)
    assert task is not None
    assert task.queue == "bulk"


def test_enqueue_with_a_delay_in_seconds_or_a_duration_string(tq, raw, namespace):
    before = redis_now_ms(raw)
    seconds = tq.enqueue("t", {}, delay=10)
    text = tq.enqueue("t", {}, delay="2m")
    after = redis_now_ms(raw)

    assert before + 10_000 <= meta_of(raw, namespace, seconds)["run_at"] <= after + 10_000
    assert before + 120_000 <= meta_of(raw, namespace, text)["run_at"] <= after + 120_000
    assert pending_ids(raw, namespace) == []


def test_enqueue_at_an_aware_datetime_schedules_it_for_that_moment(tq, raw, namespace):
    moment = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)

    task_id = tq.enqueue("t", {}, at=moment)

    meta = meta_of(raw, namespace, task_id)
    assert meta["state"] == "scheduled"
    assert meta["run_at"] == int(moment.timestamp() * 1000)
    task = tq.get_task(task_id)
    assert task is not None
    assert task.state == "scheduled"


def test_enqueue_at_a_naive_datetime_is_local_time(tq, raw, namespace, local_tz):
    moment = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    naive_local = (moment + local_tz).replace(tzinfo=None)

    task_id = tq.enqueue("t", {}, at=naive_local)

    assert meta_of(raw, namespace, task_id)["run_at"] == int(moment.timestamp() * 1000)


def test_enqueue_at_an_iso_string(tq, raw, namespace):
    moment = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)

    task_id = tq.enqueue("t", {}, at=moment.strftime("%Y-%m-%dT%H:%M:%SZ"))

    assert meta_of(raw, namespace, task_id)["run_at"] == int(moment.timestamp() * 1000)


def test_enqueue_at_a_past_moment_is_pending_at_once(tq, raw, namespace):
    task_id = tq.enqueue("t", {}, at=datetime(2001, 1, 1, tzinfo=UTC))

    assert pending_ids(raw, namespace) == [task_id]
    assert meta_of(raw, namespace, task_id)["state"] == "pending"


def test_enqueue_stores_max_retries_and_timeout(tq, raw, namespace):
    task_id = tq.enqueue("t", {}, max_retries=5, timeout=45)

    meta = meta_of(raw, namespace, task_id)
    assert meta["max_retries"] == 5
    assert meta["timeout"] == 45
    task = tq.get_task(task_id)
    assert task is not None
    assert task.max_retries == 5
    assert task.timeout == 45


def test_enqueue_with_timeout_none_disables_the_timeout(send, tq, raw, namespace):
    task_id = tq.enqueue("send_email", {"to": "a@example.com"}, timeout=None)

    meta = meta_of(raw, namespace, task_id)
    assert "timeout" in meta, "an explicit timeout=None must be recorded, or the decorator's 30s applies"
    assert not meta["timeout"]
    task = tq.get_task(task_id)
    assert task is not None
    assert task.timeout is None


def test_enqueue_with_delay_and_at_raises_usage_error_and_writes_nothing(tq, raw, namespace):
    with pytest.raises(UsageError):
        tq.enqueue("t", {}, delay=5, at=datetime.now(UTC) + timedelta(hours=1))

    assert nothing_written(raw, namespace)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"delay": "soon"}, id="bad-delay"),
        pytest.param({"delay": -1}, id="negative-delay"),
        pytest.param({"at": "next tuesday"}, id="bad-at"),
        pytest.param({"max_retries": -1}, id="negative-max-retries"),
        pytest.param({"queue": "no spaces"}, id="bad-queue"),
        pytest.param({"timeout": "forever"}, id="bad-timeout"),
        pytest.param({"task_id": ""}, id="empty-task-id"),
    ],
)
def test_enqueue_with_a_bad_option_raises_usage_error_and_writes_nothing(tq, raw, namespace, options):
    with pytest.raises(UsageError):
        tq.enqueue("t", {}, **options)

    assert nothing_written(raw, namespace)


@pytest.mark.parametrize("payload", [[1, 2], "text", 42])
def test_enqueue_with_a_payload_that_is_not_an_object_raises_usage_error(tq, raw, namespace, payload):
    with pytest.raises(UsageError):
        tq.enqueue("t", payload)

    assert nothing_written(raw, namespace)


def test_unknown_task_names_are_accepted_by_the_producer(send, tq, raw, namespace):
    task_id = tq.enqueue("nobody.knows.this", {"anything": [1, {"goes": True}]})

    task = tq.get_task(task_id)
    assert task is not None
    assert task.name == "nobody.knows.this"
    assert task.state == "pending"
    assert task.payload == {"anything": [1, {"goes": True}]}


# -- validation of known tasks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"subject": "no recipient"}, id="missing-required-field"),
        pytest.param({"to": "a@example.com", "cc": "b@example.com"}, id="unknown-field"),
        pytest.param({"to": "a@example.com", "count": "many"}, id="not-an-int"),
        pytest.param({"to": 12345}, id="int-for-str"),
        pytest.param({"to": ["a@example.com"]}, id="list-for-str"),
    ],
)
def test_an_invalid_payload_for_a_known_task_is_refused_before_anything_is_written(
    send, tq, raw, namespace, payload
):
    with pytest.raises(ValidationFailed):
        tq.enqueue("send_email", payload)

    assert nothing_written(raw, namespace)


def test_validation_failed_is_a_usage_error():
    assert issubclass(ValidationFailed, UsageError)


def test_handle_enqueue_validates_the_payload(send, raw, namespace):
    with pytest.raises(ValidationFailed):
        send.enqueue(subject="no recipient", delay=5)

    assert nothing_written(raw, namespace)


def test_validation_names_the_offending_field(send, tq):
    with pytest.raises(ValidationFailed) as caught:
        tq.enqueue("send_email", {"to": "a@example.com", "cc": "b@example.com"})

    assert "cc" in str(caught.value)


def test_a_payload_that_coerces_to_the_declared_type_is_accepted(send, tq, raw, namespace):
    task_id = tq.enqueue("send_email", {"to": "a@example.com", "count": "3"})

    assert pending_ids(raw, namespace) == [task_id]


def test_extra_fields_are_accepted_when_the_handler_takes_kwargs(tq, raw, namespace):
    @tq.task(name="log_event")
    def log_event(kind: str, **fields: Any) -> None:
        pass

    task_id = tq.enqueue("log_event", {"kind": "click", "x": 1, "y": 2})

    assert payload_of(raw, namespace, task_id) == {"kind": "click", "x": 1, "y": 2}
    with pytest.raises(ValidationFailed):
        tq.enqueue("log_event", {"x": 1})
    assert pending_ids(raw, namespace) == [task_id]


def test_an_optional_field_may_be_omitted(send, tq, raw, namespace):
    task_id = tq.enqueue("send_email", {"to": "a@example.com"})

    assert payload_of(raw, namespace, task_id) == {"to": "a@example.com"}


# -- enqueue_many ----------------------------------------------------------------------------------


def test_enqueue_many_takes_pairs_and_triples_and_returns_ids_in_order(send, tq, raw, namespace):
    items = [
        ("send_email", {"to": "a@example.com"}),
        ("resize", {"path": "x.png"}, {"queue": "images"}),
        ("send_email", {"to": "b@example.com"}, {"max_retries": 9}),
        ("resize", {"path": "y.png"}, {"queue": "images", "task_id": "img-y"}),
        ("send_email", {"to": "c@example.com"}),
    ]

    ids = tq.enqueue_many(items)

    assert len(ids) == 5
    assert len(set(ids)) == 5
    assert ids[3] == "img-y"
    for task_id, item in zip(ids, items, strict=True):
        queue = item[2].get("queue", "default") if len(item) == 3 else "default"
        task = tq.get_task(task_id)
        assert task is not None, f"{task_id} not visible after enqueue_many returned"
        assert (task.name, task.queue, task.state, task.payload) == (item[0], queue, "pending", item[1])
    assert meta_of(raw, namespace, ids[2])["max_retries"] == 9
    assert sorted(pending_ids(raw, namespace, "default")) == sorted([ids[0], ids[2], ids[4]])
    assert sorted(pending_ids(raw, namespace, "images")) == sorted([ids[1], ids[3]])


def test_enqueue_many_keeps_input_order_within_each_queue(tq, broker):
    items = [("t", {"i": i}, {"queue": "odd" if i % 2 else "even"}) for i in range(10)]

    ids = tq.enqueue_many(items)

    fetched: dict[str, list[str]] = {"even": [], "odd": []}
    for queue, got in fetched.items():
        while (job := broker.fetch(queue, 30, "test-worker")) is not None:
            got.append(job.id)
    assert fetched["even"] == ids[0::2]
    assert fetched["odd"] == ids[1::2]


def test_enqueue_many_with_options_schedules_delayed_items(tq, raw, namespace):
    before = redis_now_ms(raw)
    ids = tq.enqueue_many([("t", {}), ("t", {}, {"delay": 60}), ("t", {}, {"at": "2001-01-01T00:00:00Z"})])
    after = redis_now_ms(raw)

    assert meta_of(raw, namespace, ids[0])["state"] == "pending"
    delayed = meta_of(raw, namespace, ids[1])
    assert delayed["state"] == "scheduled"
    assert before + 60_000 <= delayed["run_at"] <= after + 60_000
    assert meta_of(raw, namespace, ids[2])["state"] == "pending"
    assert sorted(pending_ids(raw, namespace)) == sorted([ids[0], ids[2]])


def test_enqueue_many_writes_a_large_batch_across_queues(tq, raw, namespace):
    items = [("t", {"i": i}, {"queue": f"q{i % 2}"}) for i in range(1500)]

    ids = tq.enqueue_many(items)

    assert len(ids) == 1500
    assert len(set(ids)) == 1500
    assert raw.llen(qkeys(namespace, "q0").pending) == 750
    assert raw.llen(qkeys(namespace, "q1").pending) == 750
    assert payload_of(raw, namespace, ids[1499], "q1") == {"i": 1499}


def test_enqueue_many_of_nothing_returns_an_empty_list(tq, raw, namespace):
    assert tq.enqueue_many([]) == []
    assert nothing_written(raw, namespace)


def test_enqueue_many_with_a_duplicate_custom_id_answers_the_existing_id(tq, raw, namespace):
    first = tq.enqueue("t", {"n": 1}, task_id="dup")

    ids = tq.enqueue_many([("t", {"n": 2}, {"task_id": "dup"}), ("t", {"n": 3})])

    assert first == "dup"
    assert ids[0] == "dup"
    assert raw.llen(qkeys(namespace, "default").pending) == 2
    assert payload_of(raw, namespace, "dup") == {"n": 1}


@pytest.mark.parametrize(
    ("bad_item", "error"),
    [
        pytest.param(("send_email", {"subject": "no recipient"}), ValidationFailed, id="invalid-payload"),
        pytest.param(("send_email", {"to": "a@b.c", "cc": "x"}), ValidationFailed, id="unknown-field"),
        pytest.param(("send_email", {"to": "a@b.c", "count": "x"}), ValidationFailed, id="wrong-type"),
        pytest.param(("t", {}, {"priority": 1}), UsageError, id="unknown-option"),
        pytest.param(("t", {}, {"delay": 5, "at": "2030-01-01T00:00:00Z"}), UsageError, id="delay-and-at"),
        pytest.param(("t", {}, {"delay": "soon"}), UsageError, id="bad-delay"),
        pytest.param(("t", {}, {"queue": "bad queue"}), UsageError, id="bad-queue"),
        pytest.param(("t", [1, 2]), UsageError, id="payload-not-object"),
        pytest.param(("t", {"when": object()}), UsageError, id="payload-not-json"),
        pytest.param(("t",), UsageError, id="too-short"),
        pytest.param(("t", {}, {}, {}), UsageError, id="too-long"),
    ],
)
def test_a_bad_item_in_enqueue_many_raises_and_writes_nothing(send, tq, raw, namespace, bad_item, error):
    items = [
        ("send_email", {"to": "a@example.com"}),
        ("t", {"n": 1}, {"queue": "other"}),
        ("t", {"n": 2}, {"task_id": "would-be"}),
        bad_item,
        ("t", {"n": 3}),
    ]

    with pytest.raises(error):
        tq.enqueue_many(items)

    assert nothing_written(raw, namespace)


# -- get_task and custom ids -----------------------------------------------------------------------


def test_get_task_returns_the_task_with_its_state_and_payload(tq):
    task_id = tq.enqueue("t", {"a": [1, 2], "b": None})

    task = tq.get_task(task_id)

    assert task is not None
    assert task.id == task_id
    assert task.name == "t"
    assert task.state == "pending"
    assert task.payload == {"a": [1, 2], "b": None}
    assert task.attempts == 0
    assert task.enqueued_at is not None


def test_get_task_of_an_unknown_id_is_none(tq):
    tq.enqueue("t", {})

    assert tq.get_task("no-such-task") is None


def test_a_custom_id_enqueued_twice_returns_the_existing_id_and_adds_nothing(tq, raw, namespace):
    first = tq.enqueue("t", {"n": 1}, task_id="order-7")
    second = tq.enqueue("t", {"n": 2}, task_id="order-7")

    assert first == second == "order-7"
    assert raw.llen(qkeys(namespace, "default").pending) == 1
    task = tq.get_task("order-7")
    assert task is not None
    assert task.payload == {"n": 1}


def test_a_custom_id_of_a_done_task_creates_a_new_task(tq, broker, raw, namespace):
    tq.enqueue("t", {"n": 1}, task_id="again")
    job = broker.fetch("default", 30, "test-worker")
    assert job is not None
    assert broker.ack(job, None, 600)

    assert tq.enqueue("t", {"n": 2}, task_id="again") == "again"

    task = tq.get_task("again")
    assert task is not None
    assert task.state == "pending"
    assert task.payload == {"n": 2}
    assert pending_ids(raw, namespace) == ["again"]


# -- configuration from the environment ------------------------------------------------------------


def test_taskqueue_reads_redis_url_and_namespace_from_the_environment(monkeypatch, redis_url, namespace, raw):
    monkeypatch.setenv("TASKQ_REDIS_URL", redis_url)
    monkeypatch.setenv("TASKQ_NAMESPACE", namespace)
    queue = TaskQueue()
    try:
        task_id = queue.enqueue("t", {"from": "env"})
    finally:
        queue.close()

    assert pending_ids(raw, namespace) == [task_id]
    assert payload_of(raw, namespace, task_id) == {"from": "env"}


def test_explicit_arguments_beat_the_environment(monkeypatch, redis_url, namespace, raw):
    env_namespace = f"{namespace}-env"
    monkeypatch.setenv("TASKQ_REDIS_URL", UNREACHABLE_URL)
    monkeypatch.setenv("TASKQ_NAMESPACE", env_namespace)
    queue = TaskQueue(redis_url=redis_url, namespace=namespace)
    try:
        task_id = queue.enqueue("t", {})
    finally:
        queue.close()

    assert pending_ids(raw, namespace) == [task_id]
    assert raw.keys(f"{env_namespace}:*") == []


def test_an_explicit_namespace_with_the_url_from_the_environment(monkeypatch, redis_url, namespace, raw):
    monkeypatch.setenv("TASKQ_REDIS_URL", redis_url)
    monkeypatch.setenv("TASKQ_NAMESPACE", f"{namespace}-env")
    queue = TaskQueue(namespace=namespace)
    try:
        task_id = queue.enqueue("t", {})
    finally:
        queue.close()

    assert pending_ids(raw, namespace) == [task_id]
    assert raw.keys(f"{namespace}-env:*") == []


def test_two_namespaces_on_one_redis_do_not_see_each_others_tasks(tq, redis_url, namespace):
    other = TaskQueue(redis_url=redis_url, namespace=f"{namespace}-other")
    try:
        task_id = tq.enqueue("t", {})
        assert other.get_task(task_id) is None
        assert tq.get_task(task_id) is not None
    finally:
        other.close()
