"""Pure logic: durations, dates, backoff, option resolution, queue plans, payload validation."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from taskq_cli import TaskQueue, UsageError, ValidationFailed
from taskq_cli.config import RetryDefaults
from taskq_cli.models import Options, Task
from taskq_cli.producer import EnqueueRequest, parse_json_lines, prepare
from taskq_cli.timeparse import iso_ms, parse_datetime, parse_duration
from taskq_cli.worker import QueuePlan


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30),
        ("30s", 30),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("0", 0),
        (" 2S ", 2),
        (".5s", 0.5),
        (7, 7.0),
    ],
)
def test_durations_accept_the_spec_forms(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-1", "1h-5m", "s", "nan", "inf", "1.2.3s"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="duration"):
        parse_duration(text)


def test_datetimes_with_zone_and_without_are_understood() -> None:
    assert parse_datetime("2026-12-01T09:00:00Z") == datetime(2026, 12, 1, 9, tzinfo=UTC)
    local = parse_datetime("2026-12-01T09:00:00")
    assert local.tzinfo is not None
    assert local.replace(tzinfo=None) == datetime(2026, 12, 1, 9)
    with pytest.raises(UsageError, match="ISO 8601"):
        parse_datetime("tomorrow")


def test_json_timestamps_are_utc_with_milliseconds() -> None:
    assert iso_ms(1_795_888_800_123) == "2026-11-28T18:00:00.123Z"
    assert iso_ms(None) is None


def test_options_prefer_enqueue_then_decorator_then_defaults() -> None:
    defaults = RetryDefaults()
    handler = RetryDefaults(max_retries=7, timeout=10.0)
    assert Options.resolve({}, None, defaults).max_retries == 3
    assert Options.resolve({}, handler, defaults).max_retries == 7
    assert Options.resolve({"max_retries": 1}, handler, defaults).max_retries == 1
    assert Options.resolve({"timeout": 0}, handler, defaults).timeout is None
    assert Options.resolve({}, handler, defaults).timeout == 10.0


def test_strict_queue_plan_keeps_the_given_order() -> None:
    plan = QueuePlan.parse("high, mid,low")
    assert plan.order() == ["high", "mid", "low"]


def test_weighted_queue_plan_picks_first_in_proportion_to_weight() -> None:
    plan = QueuePlan.parse("a:5,b:1")
    rng = random.Random(1)
    firsts = [plan.order(rng)[0] for _ in range(6000)]
    share = firsts.count("a") / len(firsts)
    assert 0.80 < share < 0.87  # 5/6 = 0.833
    assert sorted(plan.order(rng)) == ["a", "b"]


@pytest.mark.parametrize("text", ["", "a,a", "a:0", "a:x", "bad name", "a:-1"])
def test_bad_queue_plans_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        QueuePlan.parse(text)


def _queue() -> TaskQueue:
    tq = TaskQueue(redis_url="redis://127.0.0.1:1/0", namespace="unit")

    @tq.task(name="send")
    def send(to: str, retries: int = 1, json: bool = False) -> None:
        pass

    @tq.task(name="flexible")
    def flexible(a: int, **rest: object) -> None:
        pass

    return tq


def test_payload_validation_names_every_problem() -> None:
    tq = _queue()
    with pytest.raises(ValidationFailed) as err:
        tq.registry["send"].validate({"retries": "many", "extra": 1})
    message = str(err.value)
    assert "to: Field required" in message and "retries" in message and "extra" in message


def test_a_producer_check_refuses_what_validate_refuses_with_the_same_message() -> None:
    handler = _queue().registry["send"]
    for payload in ({"retries": "many", "extra": 1}, {"to": 1}):
        with pytest.raises(ValidationFailed) as validated:
            handler.validate(payload)
        with pytest.raises(ValidationFailed) as checked:
            handler.check(payload)
        assert str(checked.value) == str(validated.value)
    handler.check({"to": "x", "retries": "2"})  # valid: no error, nothing returned


def test_the_compact_encoder_writes_what_json_writes_and_refuses_what_it_refuses() -> None:
    import json
    import math

    from taskq_cli.protocol.record import compact_json_encoder

    strict = compact_json_encoder(allow_nan=False)
    reference = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    for value in ({}, {"a": [1, 2.5, "é\u2028", None, True, {"b": 1e300}]}, {"x": 10**30, 1: "k", 2.5: 0}):
        assert strict(value) == reference(value)
    assert compact_json_encoder(allow_nan=True)({"x": math.inf}) == '{"x":Infinity}'
    for bad, error in (({"x": math.nan}, ValueError), ({"x": object()}, TypeError), ({(1,): 1}, TypeError)):
        with pytest.raises(error):
            strict(bad)
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(UsageError, match="not JSON-serialisable"):
        prepare(EnqueueRequest("x", cyclic), _queue().registry)


def test_validation_coerces_and_allows_extras_only_with_kwargs() -> None:
    tq = _queue()
    assert tq.registry["send"].validate({"to": "x", "retries": "2", "json": True}) == {
        "to": "x",
        "retries": 2,
        "json": True,
    }
    assert tq.registry["flexible"].validate({"a": 1, "b": 2}) == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (EnqueueRequest("send", {"to": 1}), "invalid payload"),
        (EnqueueRequest("x", [1]), "JSON object"),
        (EnqueueRequest("x", {}, delay="1s", at="2026-01-01T00:00:00Z"), "not both"),
        (EnqueueRequest("x", {}, queue="bad queue"), "invalid queue"),
        (EnqueueRequest("x", {}, max_retries=-1), "max_retries"),
        (EnqueueRequest("x", {"f": float("nan")}), "JSON"),
        (EnqueueRequest("", {}), "name"),
        (EnqueueRequest("x", {}, task_id=""), "task id"),
    ],
)
def test_bad_requests_are_refused_before_any_write(request_: EnqueueRequest, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        prepare(request_, _queue().registry)


def test_a_known_task_takes_its_decorator_queue_and_retry_policy() -> None:
    tq = TaskQueue(redis_url="redis://127.0.0.1:1/0", namespace="unit")

    @tq.task(name="mail", queue="emails", max_retries=9)
    def mail() -> None:
        pass

    task = prepare(EnqueueRequest("mail"), tq.registry)
    assert task.queue == "emails" and task.meta["max_retries"] == 9
    assert prepare(EnqueueRequest("other"), tq.registry).meta == {"name": "other", "queue": "default"}


def test_json_lines_report_the_bad_line_number() -> None:
    good = '{"name": "a", "payload": {}}'
    assert len(parse_json_lines([good, "", good])) == 2
    for bad, reason in [
        ("{oops", "invalid JSON"),
        ('{"payload": {}}', "missing field"),
        ('{"name": "a", "colour": 1}', "unknown field"),
        ("[1]", "JSON object"),
    ]:
        with pytest.raises(UsageError, match=f"line 3: .*{reason}"):
            parse_json_lines([good, good, bad])


def test_task_json_uses_iso_timestamps_and_hides_internal_fields() -> None:
    task = Task.from_record(
        {
            "id": "a",
            "name": "n",
            "queue": "q",
            "state": "done",
            "attempts": 1,
            "enqueued_at": 1_795_888_800_123,
            "lease": "secret",
            "timeout": 0,
        },
        '{"x": 1}',
        '"ok"',
    )
    data = task.to_json()
    assert data["enqueued_at"] == "2026-11-28T18:00:00.123Z"
    assert data["payload"] == {"x": 1} and data["result"] == "ok" and data["timeout"] is None
    assert "lease" not in data and "raw" not in data


def test_a_records_options_are_read_the_same_whether_or_not_a_like_record_came_before() -> None:
    from taskq_cli.protocol.record import GivenOptions

    # 1 and True are equal (and hash alike) in Python, but True is no number of retries
    assert GivenOptions.decode({"max_retries": 1}) == (GivenOptions(max_retries=1), ())
    assert GivenOptions.decode({"max_retries": True}) == (GivenOptions(), ("max_retries",))
    assert GivenOptions.decode({"max_retries": [1]}) == (GivenOptions(), ("max_retries",))
    assert GivenOptions.decode({"timeout": "30"}) == (GivenOptions(timeout=30.0), ())


def test_a_worker_process_freezes_its_start_up_heap() -> None:
    """Worker.run and each pool child call this once started: a full collection then leaves the
    start-up objects alone (run in a child process: a frozen heap is never collected)."""
    import subprocess
    import sys

    code = (
        "import gc\n"
        "from taskq_cli.runner import freeze_startup_heap\n"
        "assert gc.get_freeze_count() == 0\n"
        "freeze_startup_heap()\n"
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count()\n"
        "assert gc.get_count()[2] == 0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_plain_request_is_the_request_the_constructor_builds() -> None:
    plain = EnqueueRequest.plain("send", {"to": "x"}, "item 3")
    built = EnqueueRequest("send", {"to": "x"}, label="item 3")
    assert plain == built and vars(plain) == vars(built) and list(vars(plain)) == list(vars(built))
    assert repr(plain) == repr(built)
    with pytest.raises(AttributeError):  # still frozen
        plain.name = "other"  # type: ignore[misc]
