"""`taskq enqueue` as a user runs it: a real `python -m taskq_cli` process against a real Redis.

SPEC: "Commands" -> `taskq enqueue`, "Custom ids and enqueue", "Output", and the exit-status rules
(0 success; 1 runtime failure with one line on stderr; 2 bad usage with nothing written to Redis).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_cli.protocol import Broker
from tests.conftest import ROOT, cli_env
from tests.support import meta_of, nskeys, payload_of, qkeys

UNREACHABLE_URL = "redis://127.0.0.1:1/0"
# A POSIX TZ string (no tz database needed): local time is UTC+05:30, so a zone-less time read as
# UTC instead of local would land 5.5 hours off.
LOCAL_TZ = "UTC-05:30"
LOCAL_OFFSET = timedelta(hours=5, minutes=30)


# -- helpers ---------------------------------------------------------------------------------------


def pending_ids(raw: redis.Redis, namespace: str, queue: str = "default") -> list[str]:
    return raw.lrange(qkeys(namespace, queue).pending, 0, -1)


def redis_now_ms(raw: redis.Redis) -> int:
    seconds, micros = raw.time()
    return int(seconds) * 1000 + int(micros) // 1000


def only_id(stdout: str) -> str:
    """stdout must be exactly one id and a newline (so `id=$(taskq enqueue ...)` works)."""
    assert re.fullmatch(r"\S+\n", stdout), f"stdout is not a lone id: {stdout!r}"
    return stdout.strip()


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def assert_one_error_line(result: Any, exit_code: int) -> str:
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {result.stderr!r}"
    assert lines[0].startswith("taskq: error:"), lines[0]
    assert result.stdout == "", result.stdout
    return lines[0]


def assert_usage_error(result: Any, raw: redis.Redis, namespace: str) -> str:
    line = assert_one_error_line(result, 2)
    assert raw.keys(f"{namespace}:*") == [], "a refused enqueue wrote to Redis"
    return line


# -- one task --------------------------------------------------------------------------------------


def test_enqueue_prints_only_the_task_id_and_the_task_is_pending_with_its_payload(run_cli, raw, namespace):
    result = run_cli("enqueue", "send_email", '{"to": "a@example.com", "n": 2}')

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    task_id = only_id(result.stdout)
    assert pending_ids(raw, namespace) == [task_id]
    meta = meta_of(raw, namespace, task_id)
    assert meta["name"] == "send_email"
    assert meta["queue"] == "default"
    assert meta["state"] == "pending"
    assert meta["attempts"] == 0
    assert payload_of(raw, namespace, task_id) == {"to": "a@example.com", "n": 2}
    assert "default" in raw.smembers(nskeys(namespace).queues)


def test_each_enqueue_gets_a_new_id(run_cli, raw, namespace):
    first = only_id(run_cli("enqueue", "t").stdout)
    second = only_id(run_cli("enqueue", "t").stdout)

    assert first != second
    assert sorted(pending_ids(raw, namespace)) == sorted([first, second])


def test_enqueue_reads_the_payload_from_stdin_with_a_dash(run_cli, raw, namespace):
    result = run_cli("enqueue", "resize", "-", input='{"path": "/tmp/a.png",\n "width": 640}\n')

    assert result.returncode == 0, result.stderr
    task_id = only_id(result.stdout)
    assert payload_of(raw, namespace, task_id) == {"path": "/tmp/a.png", "width": 640}


def test_enqueue_without_a_payload_stores_an_empty_object(run_cli, raw, namespace, tq):
    result = run_cli("enqueue", "cleanup")

    assert result.returncode == 0, result.stderr
    task_id = only_id(result.stdout)
    assert payload_of(raw, namespace, task_id) == {}
    task = tq.get_task(task_id)
    assert task is not None
    assert task.payload == {}
    assert task.state == "pending"


def test_enqueue_json_prints_id_queue_state_and_duplicate(run_cli, raw, namespace):
    result = run_cli("enqueue", "t", '{"a": 1}', "--json")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["queue"] == "default"
    assert out["state"] == "pending"
    assert out["duplicate"] is False
    assert pending_ids(raw, namespace) == [out["id"]]


@pytest.mark.parametrize("flag", ["--queue", "-q"])
def test_enqueue_queue_option_puts_the_task_in_that_queue(run_cli, raw, namespace, flag):
    result = run_cli("enqueue", "t", "{}", flag, "emails", "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["queue"] == "emails"
    assert pending_ids(raw, namespace, "emails") == [out["id"]]
    assert pending_ids(raw, namespace, "default") == []
    assert meta_of(raw, namespace, out["id"], "emails")["queue"] == "emails"
    assert "emails" in raw.smembers(nskeys(namespace).queues)


def test_enqueue_delay_schedules_the_task_for_later_and_not_in_pending(run_cli, raw, namespace):
    before = redis_now_ms(raw)
    result = run_cli("enqueue", "t", "--delay", "5s", "--json")
    after = redis_now_ms(raw)

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["state"] == "scheduled"
    task_id = out["id"]
    meta = meta_of(raw, namespace, task_id)
    assert meta["state"] == "scheduled"
    assert before + 5000 <= meta["run_at"] <= after + 5000
    assert raw.zscore(qkeys(namespace, "default").scheduled, task_id) == meta["run_at"]
    assert pending_ids(raw, namespace) == []


def test_enqueue_delay_accepts_compound_durations(run_cli, raw, namespace):
    before = redis_now_ms(raw)
    result = run_cli("enqueue", "t", "--delay", "1h30m")
    after = redis_now_ms(raw)

    assert result.returncode == 0, result.stderr
    meta = meta_of(raw, namespace, only_id(result.stdout))
    assert before + 5_400_000 <= meta["run_at"] <= after + 5_400_000


def test_enqueue_at_an_iso_time_in_utc_schedules_it_for_that_moment(run_cli, raw, namespace):
    moment = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    text = moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    result = run_cli("enqueue", "t", "--at", text, "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["state"] == "scheduled"
    meta = meta_of(raw, namespace, out["id"])
    assert meta["run_at"] == int(moment.timestamp() * 1000)
    assert pending_ids(raw, namespace) == []


def test_enqueue_at_without_a_zone_is_local_time(run_cli, raw, namespace, redis_url):
    moment = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    local_text = (moment + LOCAL_OFFSET).replace(tzinfo=None).isoformat()

    result = run_cli("enqueue", "t", "--at", local_text, env=cli_env(redis_url, namespace, TZ=LOCAL_TZ))

    assert result.returncode == 0, result.stderr
    meta = meta_of(raw, namespace, only_id(result.stdout))
    assert meta["state"] == "scheduled"
    assert meta["run_at"] == int(moment.timestamp() * 1000)


def test_enqueue_at_a_past_time_is_pending_at_once(run_cli, raw, namespace):
    result = run_cli("enqueue", "t", "--at", "2001-01-01T00:00:00Z", "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["state"] == "pending"
    assert pending_ids(raw, namespace) == [out["id"]]


def test_enqueue_refuses_delay_together_with_at_and_writes_nothing(run_cli, raw, namespace):
    at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    result = run_cli("enqueue", "t", "{}", "--delay", "5s", "--at", at)

    assert_usage_error(result, raw, namespace)


def test_enqueue_stores_max_retries_and_timeout(run_cli, raw, namespace, tq):
    result = run_cli("enqueue", "t", "--max-retries", "7", "--timeout", "1m30s")

    assert result.returncode == 0, result.stderr
    task_id = only_id(result.stdout)
    meta = meta_of(raw, namespace, task_id)
    assert meta["max_retries"] == 7
    assert meta["timeout"] == 90
    task = tq.get_task(task_id)
    assert task is not None
    assert task.max_retries == 7
    assert task.timeout == 90


def test_enqueue_max_retries_zero_is_stored_as_zero(run_cli, raw, namespace):
    result = run_cli("enqueue", "t", "--max-retries", "0")

    assert result.returncode == 0, result.stderr
    assert meta_of(raw, namespace, only_id(result.stdout))["max_retries"] == 0


# -- custom ids ------------------------------------------------------------------------------------


def test_enqueue_with_a_custom_id_prints_that_id(run_cli, raw, namespace):
    result = run_cli("enqueue", "t", '{"n": 1}', "--id", "order-42")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "order-42\n"
    assert pending_ids(raw, namespace) == ["order-42"]
    assert meta_of(raw, namespace, "order-42")["state"] == "pending"


def test_enqueue_with_a_pending_custom_id_again_adds_nothing_and_answers_the_same_id(run_cli, raw, namespace):
    first = run_cli("enqueue", "t", '{"n": 1}', "--id", "order-42")
    again = run_cli("enqueue", "t", '{"n": 2}', "--id", "order-42")
    as_json = run_cli("enqueue", "t", '{"n": 3}', "--id", "order-42", "--json")

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert again.stdout == "order-42\n"
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {
        "id": "order-42",
        "queue": "default",
        "state": "pending",
        "duplicate": True,
    }
    assert raw.llen(qkeys(namespace, "default").pending) == 1
    assert raw.hlen(qkeys(namespace, "default").tasks) == 1
    assert payload_of(raw, namespace, "order-42") == {"n": 1}


def test_first_enqueue_with_a_custom_id_is_not_a_duplicate(run_cli):
    result = run_cli("enqueue", "t", "--id", "fresh-1", "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["id"] == "fresh-1"
    assert out["duplicate"] is False


def test_a_scheduled_custom_id_blocks_a_second_enqueue(run_cli, raw, namespace):
    assert run_cli("enqueue", "t", "--id", "later", "--delay", "1h").returncode == 0

    result = run_cli("enqueue", "t", "--id", "later", "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["id"] == "later"
    assert out["state"] == "scheduled"
    assert out["duplicate"] is True
    assert pending_ids(raw, namespace) == []
    assert raw.zcard(qkeys(namespace, "default").scheduled) == 1


def test_an_active_custom_id_blocks_a_second_enqueue(run_cli, raw, namespace, broker: Broker):
    assert run_cli("enqueue", "t", "--id", "busy").returncode == 0
    job = broker.fetch("default", 30, "test-worker")
    assert job is not None
    assert job.id == "busy"

    result = run_cli("enqueue", "t", "--id", "busy", "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["state"] == "active"
    assert out["duplicate"] is True
    assert pending_ids(raw, namespace) == []
    assert meta_of(raw, namespace, "busy")["state"] == "active"


def test_a_done_custom_id_creates_a_new_task(run_cli, raw, namespace, broker: Broker):
    assert run_cli("enqueue", "t", '{"n": 1}', "--id", "once").returncode == 0
    job = broker.fetch("default", 30, "test-worker")
    assert job is not None
    assert job.id == "once"
    assert broker.ack(job, None, 600)
    assert meta_of(raw, namespace, "once")["state"] == "done"

    result = run_cli("enqueue", "t", '{"n": 2}', "--id", "once", "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == {"id": "once", "queue": "default", "state": "pending", "duplicate": False}
    meta = meta_of(raw, namespace, "once")
    assert meta["state"] == "pending"
    assert meta["attempts"] == 0
    assert pending_ids(raw, namespace) == ["once"]
    assert payload_of(raw, namespace, "once") == {"n": 2}


def test_a_dead_custom_id_creates_a_new_task_and_leaves_the_dead_letter_queue(
    run_cli, raw, namespace, broker: Broker
):
    assert run_cli("enqueue", "t", '{"n": 1}', "--id", "doomed").returncode == 0
    job = broker.fetch("default", 30, "test-worker")
    assert job is not None
    error = {"type": "Fail", "message": "no", "traceback": ""}
    assert broker.fail(job, error, final=True, delay=0, max_retries=3) == "dead"
    dead_key = qkeys(namespace, "default").dead
    assert raw.zscore(dead_key, "doomed") is not None

    result = run_cli("enqueue", "t", '{"n": 2}', "--id", "doomed", "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == {"id": "doomed", "queue": "default", "state": "pending", "duplicate": False}
    assert raw.zscore(dead_key, "doomed") is None
    meta = meta_of(raw, namespace, "doomed")
    assert meta["state"] == "pending"
    assert meta["attempts"] == 0
    assert pending_ids(raw, namespace) == ["doomed"]
    assert payload_of(raw, namespace, "doomed") == {"n": 2}


# -- bad input: exit 2, one line, nothing written --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        pytest.param(["t", "{not json"], None, id="invalid-json"),
        pytest.param(["t", "[1, 2]"], None, id="payload-list"),
        pytest.param(["t", "42"], None, id="payload-number"),
        pytest.param(["t", '"text"'], None, id="payload-string"),
        pytest.param(["t", "-"], "[1, 2]", id="stdin-payload-list"),
        pytest.param(["t", "-"], "{oops", id="stdin-invalid-json"),
        pytest.param(["t", "--delay", "5 parsecs"], None, id="bad-delay"),
        pytest.param(["t", "--delay", "-5s"], None, id="negative-delay"),
        pytest.param(["t", "--timeout", "forever"], None, id="bad-timeout"),
        pytest.param(["t", "--at", "next tuesday"], None, id="bad-date"),
        pytest.param(["t", "--at", "2026-13-45T99:00:00Z"], None, id="impossible-date"),
        pytest.param(["t", "--max-retries", "-1"], None, id="negative-max-retries"),
        pytest.param(["t", "--queue", "no spaces allowed"], None, id="queue-with-spaces"),
        pytest.param(["t", "-q", "a:b"], None, id="queue-with-colon"),
        pytest.param([], None, id="missing-name"),
    ],
)
def test_bad_enqueue_input_exits_2_with_one_error_line_and_writes_nothing(
    run_cli, raw, namespace, args, stdin
):
    result = run_cli("enqueue", *args, input=stdin)

    assert_usage_error(result, raw, namespace)


@pytest.mark.parametrize("typer_path", [False, True], ids=["fast path", "typer"])
def test_an_empty_stdin_for_a_dash_payload_says_so(run_cli, raw, namespace, typer_path):
    global_options = ["--namespace", namespace] if typer_path else []  # the fast path hands these over

    result = run_cli(*global_options, "enqueue", "t", "-", input="  \n")

    assert assert_usage_error(result, raw, namespace) == "taskq: error: empty payload on stdin"


def test_unknown_option_exits_2_with_one_line_and_writes_nothing(run_cli, raw, namespace):
    result = run_cli("enqueue", "t", "{}", "--priority", "9")

    assert_usage_error(result, raw, namespace)


def test_non_numeric_max_retries_exits_2_with_one_line_and_writes_nothing(run_cli, raw, namespace):
    result = run_cli("enqueue", "t", "--max-retries", "many")

    assert_usage_error(result, raw, namespace)


def test_unknown_command_exits_2_with_one_line(run_cli, raw, namespace):
    result = run_cli("enqueu", "t")

    assert_usage_error(result, raw, namespace)


# -- --file (JSON Lines) ---------------------------------------------------------------------------


def write_lines(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_enqueue_file_prints_one_id_per_line_in_input_order(run_cli, raw, namespace, tmp_path):
    names = [f"job_{i}" for i in range(5)]
    path = write_lines(tmp_path, *(json.dumps({"name": n, "payload": {"i": i}}) for i, n in enumerate(names)))

    result = run_cli("enqueue", "--file", path)

    assert result.returncode == 0, result.stderr
    ids = result.stdout.splitlines()
    assert len(ids) == 5
    assert len(set(ids)) == 5
    for i, (task_id, name) in enumerate(zip(ids, names, strict=True)):
        meta = meta_of(raw, namespace, task_id)
        assert meta["name"] == name
        assert meta["state"] == "pending"
        assert payload_of(raw, namespace, task_id) == {"i": i}
    assert sorted(pending_ids(raw, namespace)) == sorted(ids)


def test_enqueue_file_dash_reads_json_lines_from_stdin(run_cli, raw, namespace):
    text = '{"name": "a", "payload": {"x": 1}}\n{"name": "b"}\n'

    result = run_cli("enqueue", "--file", "-", input=text)

    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert meta_of(raw, namespace, first)["name"] == "a"
    assert payload_of(raw, namespace, first) == {"x": 1}
    assert meta_of(raw, namespace, second)["name"] == "b"
    assert payload_of(raw, namespace, second) == {}


def test_enqueue_file_json_prints_one_object_per_line(run_cli, tmp_path):
    path = write_lines(
        tmp_path,
        '{"name": "a", "payload": {}}',
        '{"name": "b", "payload": {}, "queue": "other", "delay": 60}',
        '{"name": "c", "payload": {}, "id": "fixed"}',
    )

    result = run_cli("enqueue", "--file", path, "--json")

    assert result.returncode == 0, result.stderr
    objects = json_lines(result.stdout)
    assert len(objects) == 3
    assert [(o["queue"], o["state"], o["duplicate"]) for o in objects] == [
        ("default", "pending", False),
        ("other", "scheduled", False),
        ("default", "pending", False),
    ]
    assert objects[2]["id"] == "fixed"


def test_enqueue_file_applies_each_lines_options(run_cli, raw, namespace, tmp_path):
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    path = write_lines(
        tmp_path,
        json.dumps({"name": "a", "payload": {"k": 1}, "queue": "mail", "max_retries": 1, "timeout": 15}),
        json.dumps({"name": "b", "payload": {}, "delay": "5m"}),
        json.dumps({"name": "c", "payload": {}, "delay": 30}),
        json.dumps({"name": "d", "payload": {}, "at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}),
        json.dumps({"name": "e", "payload": {}, "id": "line-five", "timeout": "2m"}),
    )

    before = redis_now_ms(raw)
    result = run_cli("enqueue", "--file", path)
    after = redis_now_ms(raw)

    assert result.returncode == 0, result.stderr
    a, b, c, d, e = result.stdout.splitlines()
    meta_a = meta_of(raw, namespace, a, "mail")
    assert (meta_a["name"], meta_a["max_retries"], meta_a["timeout"]) == ("a", 1, 15)
    assert pending_ids(raw, namespace, "mail") == [a]
    assert before + 300_000 <= meta_of(raw, namespace, b)["run_at"] <= after + 300_000
    assert before + 30_000 <= meta_of(raw, namespace, c)["run_at"] <= after + 30_000
    assert meta_of(raw, namespace, d)["run_at"] == int(at.timestamp() * 1000)
    assert e == "line-five"
    assert meta_of(raw, namespace, e)["timeout"] == 120
    assert pending_ids(raw, namespace) == ["line-five"]


def test_enqueue_file_skips_blank_lines(run_cli, raw, namespace, tmp_path):
    path = write_lines(tmp_path, "", '{"name": "a"}', "   ", "", '{"name": "b"}', "")

    result = run_cli("enqueue", "--file", path)

    assert result.returncode == 0, result.stderr
    ids = result.stdout.splitlines()
    assert len(ids) == 2
    assert [meta_of(raw, namespace, i)["name"] for i in ids] == ["a", "b"]


def test_enqueue_file_with_a_custom_id_twice_answers_the_same_id(run_cli, raw, namespace, tmp_path):
    path = write_lines(tmp_path, '{"name": "a", "id": "same"}', '{"name": "a", "id": "same"}')

    result = run_cli("enqueue", "--file", path, "--json")

    assert result.returncode == 0, result.stderr
    objects = json_lines(result.stdout)
    assert [o["id"] for o in objects] == ["same", "same"]
    assert [o["duplicate"] for o in objects] == [False, True]
    assert pending_ids(raw, namespace) == ["same"]


GOOD_LINE = '{"name": "ok", "payload": {"n": 1}}'


@pytest.mark.parametrize(
    "bad_line",
    [
        pytest.param('{"name": "x", "payload": {', id="invalid-json"),
        pytest.param('{"payload": {"n": 1}}', id="missing-name"),
        pytest.param('{"name": "x", "payload": {}, "priority": 5}', id="unknown-field"),
        pytest.param('{"name": "x", "payload": {}, "delay": "soon"}', id="bad-delay"),
        pytest.param('{"name": "x", "payload": [1, 2]}', id="payload-not-object"),
        pytest.param('{"name": "x", "at": "yesterday-ish"}', id="bad-at"),
        pytest.param('{"name": "x", "delay": 5, "at": "2030-01-01T00:00:00Z"}', id="delay-and-at"),
        pytest.param('{"name": "x", "max_retries": -2}', id="negative-max-retries"),
        pytest.param('{"name": "x", "queue": "bad queue"}', id="bad-queue"),
        pytest.param('["name", "x"]', id="not-an-object"),
    ],
)
def test_a_bad_file_line_is_reported_with_its_number_and_nothing_is_written(
    run_cli, raw, namespace, tmp_path, bad_line
):
    path = write_lines(tmp_path, GOOD_LINE, GOOD_LINE, bad_line, GOOD_LINE)

    result = run_cli("enqueue", "--file", path)

    line = assert_usage_error(result, raw, namespace)
    assert "line 3" in line


def test_file_line_numbers_count_blank_lines(run_cli, raw, namespace):
    text = GOOD_LINE + "\n\n\n" + '{"name": "x", "oops": 1}\n'

    result = run_cli("enqueue", "--file", "-", input=text)

    line = assert_usage_error(result, raw, namespace)
    assert "line 4" in line


def test_a_bad_line_late_in_a_long_file_writes_nothing_from_the_earlier_lines(run_cli, raw, namespace):
    lines = [json.dumps({"name": "ok", "payload": {"i": i}}) for i in range(1200)]
    lines.append('{"name": "ok", "delay": "nope"}')

    result = run_cli("enqueue", "--file", "-", input="\n".join(lines) + "\n")

    line = assert_usage_error(result, raw, namespace)
    assert "line 1201" in line


def test_enqueue_file_that_does_not_exist_exits_2(run_cli, raw, namespace, tmp_path):
    result = run_cli("enqueue", "--file", str(tmp_path / "missing.jsonl"))

    assert_usage_error(result, raw, namespace)


# -- --app: payload validation and the decorator's queue -------------------------------------------


@pytest.mark.parametrize(
    ("task", "payload"),
    [
        pytest.param("echo", '{"text": "hi", "colour": "red"}', id="unknown-field"),
        pytest.param("echo", '{"times": 2}', id="missing-required"),
        pytest.param("echo", '{"text": "hi", "times": "many"}', id="wrong-type"),
        pytest.param("ok", '{"value": [1]}', id="wrong-type-list"),
    ],
)
def test_app_refuses_an_invalid_payload_and_writes_nothing(run_cli, raw, namespace, task, payload):
    result = run_cli("enqueue", task, payload, "--app", "tests.apps.basic")

    assert_usage_error(result, raw, namespace)


def test_app_given_before_the_command_also_validates(run_cli, raw, namespace):
    result = run_cli("--app", "tests.apps.basic", "enqueue", "echo", '{"nope": 1}')

    assert_usage_error(result, raw, namespace)


def test_app_from_the_environment_validates(run_cli, raw, namespace, redis_url):
    env = cli_env(redis_url, namespace, TASKQ_APP="tests.apps.basic")

    result = run_cli("enqueue", "echo", "{}", env=env)

    assert_usage_error(result, raw, namespace)


def test_app_accepts_a_valid_payload(run_cli, raw, namespace):
    result = run_cli("enqueue", "echo", '{"text": "hi", "times": 3}', "--app", "tests.apps.basic")

    assert result.returncode == 0, result.stderr
    task_id = only_id(result.stdout)
    assert meta_of(raw, namespace, task_id)["name"] == "echo"
    assert payload_of(raw, namespace, task_id) == {"text": "hi", "times": 3}


def test_app_validates_every_line_of_a_file_and_writes_nothing_on_a_bad_one(run_cli, raw, namespace):
    text = '{"name": "echo", "payload": {"text": "a"}}\n{"name": "echo", "payload": {"txt": "b"}}\n'

    result = run_cli("enqueue", "--file", "-", "--app", "tests.apps.basic", input=text)

    line = assert_usage_error(result, raw, namespace)
    assert "line 2" in line


def test_unknown_task_names_are_accepted_with_an_app(run_cli, raw, namespace):
    result = run_cli("enqueue", "not_in_the_app", '{"any": "thing"}', "--app", "tests.apps.basic")

    assert result.returncode == 0, result.stderr
    assert meta_of(raw, namespace, only_id(result.stdout))["name"] == "not_in_the_app"


QUEUED_APP = """
from taskq_cli import TaskQueue

tq = TaskQueue()


@tq.task(name="report", queue="reports")
def report(month: int) -> None:
    pass
"""


@pytest.fixture
def queued_app_env(tmp_path, redis_url, namespace) -> dict[str, str]:
    """An app whose task has its own queue (tests/apps/basic.py only uses `default`)."""
    (tmp_path / "queued_app.py").write_text(QUEUED_APP, encoding="utf-8")
    return cli_env(redis_url, namespace, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))


def test_app_uses_the_decorators_queue_when_no_queue_is_given(run_cli, raw, namespace, queued_app_env):
    result = run_cli("enqueue", "report", '{"month": 3}', "--app", "queued_app", "--json", env=queued_app_env)

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["queue"] == "reports"
    assert pending_ids(raw, namespace, "reports") == [out["id"]]
    assert pending_ids(raw, namespace, "default") == []


def test_queue_option_beats_the_decorators_queue(run_cli, raw, namespace, queued_app_env):
    result = run_cli(
        "enqueue",
        "report",
        '{"month": 3}',
        "--app",
        "queued_app",
        "-q",
        "urgent",
        "--json",
        env=queued_app_env,
    )

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["queue"] == "urgent"
    assert pending_ids(raw, namespace, "urgent") == [out["id"]]
    assert pending_ids(raw, namespace, "reports") == []


def test_without_app_the_cli_uses_the_default_queue(run_cli, raw, namespace):
    result = run_cli("enqueue", "report", '{"month": 3}', "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["queue"] == "default"


# -- Redis unreachable -----------------------------------------------------------------------------


def test_unreachable_redis_exits_1_with_one_line_mentioning_redis(run_cli, redis_url, namespace):
    env = cli_env(redis_url, namespace, TASKQ_REDIS_URL=UNREACHABLE_URL)

    result = run_cli("enqueue", "t", '{"a": 1}', env=env)

    line = assert_one_error_line(result, 1)
    assert "redis" in line.lower()


def test_unreachable_redis_from_the_option_exits_1(run_cli, raw, namespace):
    result = run_cli("enqueue", "t", "--redis-url", UNREACHABLE_URL)

    line = assert_one_error_line(result, 1)
    assert "redis" in line.lower()
    assert raw.keys(f"{namespace}:*") == []


def test_redis_url_option_beats_the_environment(run_cli, raw, namespace, redis_url):
    env = cli_env(redis_url, namespace, TASKQ_REDIS_URL=UNREACHABLE_URL)

    result = run_cli("enqueue", "t", "--redis-url", redis_url, env=env)

    assert result.returncode == 0, result.stderr
    assert pending_ids(raw, namespace) == [only_id(result.stdout)]


# -- global options --------------------------------------------------------------------------------


def test_global_namespace_before_the_command_beats_the_environment(run_cli, raw, namespace, extra_namespace):
    other = extra_namespace()

    result = run_cli("--namespace", other, "enqueue", "t")

    assert result.returncode == 0, result.stderr
    assert pending_ids(raw, other) == [only_id(result.stdout)]
    assert raw.keys(f"{namespace}:*") == []


def test_namespace_after_the_command_wins_over_the_global_one(run_cli, raw, namespace, extra_namespace):
    global_ns, command_ns = extra_namespace(), extra_namespace()

    result = run_cli("--namespace", global_ns, "enqueue", "t", "--namespace", command_ns)

    assert result.returncode == 0, result.stderr
    assert pending_ids(raw, command_ns) == [only_id(result.stdout)]
    assert raw.keys(f"{global_ns}:*") == []
    assert raw.keys(f"{namespace}:*") == []


def test_global_redis_url_before_the_command_is_used(run_cli, redis_url, namespace):
    result = run_cli("--redis-url", UNREACHABLE_URL, "enqueue", "t")

    line = assert_one_error_line(result, 1)
    assert "redis" in line.lower()


def test_redis_url_after_the_command_wins_over_the_global_one(run_cli, raw, namespace, redis_url):
    env = cli_env(redis_url, namespace, TASKQ_REDIS_URL=UNREACHABLE_URL)

    result = run_cli("--redis-url", UNREACHABLE_URL, "enqueue", "t", "--redis-url", redis_url, env=env)

    assert result.returncode == 0, result.stderr
    assert pending_ids(raw, namespace) == [only_id(result.stdout)]


def test_invalid_namespace_exits_2_and_writes_nothing(run_cli, raw, namespace):
    result = run_cli("--namespace", "bad namespace", "enqueue", "t")

    assert_one_error_line(result, 2)
    assert raw.keys("bad namespace:*") == []


# -- stdout that cannot be written -----------------------------------------------------------------

UNWRITABLE = {"closed": ">&-", "full": ">/dev/full"}
# `--namespace` before the command sends the enqueue to the Typer app instead of the fast path
PATHS = {"fast path": (), "typer": ("--namespace", "{ns}")}


def taskq_in_shell(redirect: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`taskq ARGS REDIRECT` run by sh, as a shell script runs it."""
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {redirect}', "sh", sys.executable, "-m", "taskq_cli", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("stdout", list(UNWRITABLE))
def test_an_enqueue_whose_id_cannot_be_written_says_the_task_was_enqueued_and_gives_its_id(
    raw, namespace, redis_url, stdout, path
):
    args = [a.replace("{ns}", namespace) for a in PATHS[path]]

    result = taskq_in_shell(
        UNWRITABLE[stdout], [*args, "enqueue", "t", '{"n": 1}'], cli_env(redis_url, namespace)
    )

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    found = re.fullmatch(
        r"taskq: error: task (\S+) was enqueued but its id could not be written to stdout: .+", line
    )
    assert found, line
    assert pending_ids(raw, namespace) == [found.group(1)]


@pytest.mark.parametrize("path", list(PATHS))
def test_an_enqueue_whose_reader_went_away_still_gives_the_id_of_the_task_it_wrote(
    raw, namespace, redis_url, path
):
    args = [a.replace("{ns}", namespace) for a in PATHS[path]]
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `taskq enqueue t | consumer` after the consumer died
    try:
        result = subprocess.run(
            [sys.executable, "-m", "taskq_cli", *args, "enqueue", "t"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env=cli_env(redis_url, namespace), timeout=30, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)

    assert result.returncode == 1
    [task_id] = pending_ids(raw, namespace)
    assert result.stderr.startswith(
        f"taskq: error: task {task_id} was enqueued but its id could not be written"
    )
