"""SPEC "Output formats": every inspection command takes -o/--output table|json|jsonl; --json stays
as -o json; jsonl prints one object per line (a list's items; a single object on one line).
The matrix runs every inspection command in every format, in process, and parses what it printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from taskq_cli import TaskQueue
from taskq_cli.cli.typer_app import run
from tests.test_operating import bury

INSPECTION = {
    "stats": (["stats"], "object", ("queue", "pending", "scheduled", "oldest")),
    "workers": (["workers"], "list", ("id", "queues", "running", "heartbeat")),
    "task show": (["task", "show", "{pending}"], "object", ("id:", "name:", "state:")),
    "task list": (["task", "list"], "list", ("id", "name", "attempts", "run_at")),
    "dlq list": (["dlq", "list"], "list", ("id", "name", "queue", "died at", "error")),
    "dlq show": (["dlq", "show", "{dead}"], "object", ("id:", "name:", "error:")),
    "queue list": (["queue", "list"], "list", ("name", "paused", "pending", "dead")),
    "cron list": (["cron", "list"], "list", ("name", "schedule", "tz", "next run")),
    "doctor": (["doctor"], "list", ("check", "status", "message", "fix")),
}


@pytest.fixture
def taskq(
    tq: TaskQueue, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> Callable[..., tuple[int, str]]:
    """`taskq ARGS` in this process against the test's namespace: (exit code, stdout)."""
    monkeypatch.setenv("TASKQ_REDIS_URL", redis_url)
    monkeypatch.setenv("TASKQ_NAMESPACE", namespace)
    monkeypatch.delenv("TASKQ_APP", raising=False)
    ids = {"dead": bury(tq, "send_email"), "pending": tq.enqueue("send_email", {"to": "a@b"})}
    tq.schedule("nightly", "30 2 * * *", "report", {}, timezone="Europe/Berlin")
    tq.broker.register_worker("w1", _worker_info(), 30)

    def invoke(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = run([a.format(**ids) for a in args])
        return code, capsys.readouterr().out

    return invoke


def _worker_info() -> dict[str, Any]:
    return {
        "id": "w1",
        "host": "box",
        "pid": 1,
        "queues": ["default"],
        "concurrency": 4,
        "started_at": 1_700_000_000_000,
        "heartbeat_at": 1_700_000_000_000,
        "pool": "threads",
        "active": [],
    }


@pytest.mark.parametrize("command", INSPECTION, ids=str)
@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "--json"])
def test_every_inspection_command_prints_each_output_format(command: str, fmt: str, taskq: Any) -> None:
    args, kind, headers = INSPECTION[command]
    flag = ["--json"] if fmt == "--json" else ["-o", fmt]

    code, out = taskq(*args, *flag)

    assert code in (0, 1) if command == "doctor" else code == 0, out  # doctor: 1 when a check fails
    if fmt in ("json", "--json"):
        document = json.loads(out)
        assert isinstance(document, dict if kind == "object" else list), out
        assert document, out
    elif fmt == "jsonl":
        lines = out.splitlines()
        objects = [json.loads(line) for line in lines]
        assert objects and all(isinstance(o, dict) for o in objects), out
        if kind == "object":
            assert len(lines) == 1, out
    else:
        head = out.splitlines()[0]
        assert all(h in (head if not h.endswith(":") else out) for h in headers), out
        with pytest.raises(ValueError):
            json.loads(out)


def test_jsonl_of_a_list_is_its_items_one_per_line(taskq: Any) -> None:
    _, as_json = taskq("dlq", "list", "--json")
    _, as_jsonl = taskq("dlq", "list", "-o", "jsonl")

    assert [json.loads(line) for line in as_jsonl.splitlines()] == json.loads(as_json)


def test_json_and_a_different_output_format_together_are_bad_usage(taskq: Any, capsys: Any) -> None:
    code, out = taskq("stats", "--json", "-o", "table")

    assert (code, out) == (2, "")


def test_an_unknown_output_format_is_bad_usage(taskq: Any) -> None:
    code, out = taskq("stats", "-o", "yaml")

    assert (code, out) == (2, "")


def test_a_cut_list_ends_with_how_many_are_shown_of_how_many(tq: TaskQueue, taskq: Any) -> None:
    for n in range(4):
        tq.enqueue("t", {"n": n})  # 5 pending with the fixture's one

    pending = ("task", "list", "--state", "pending")  # (the fixture's data holds tasks in other states)
    _, first = taskq(*pending, "--limit", "2")
    _, second = taskq(*pending, "--limit", "2", "--offset", "2")
    _, whole = taskq(*pending)

    assert first.splitlines()[-1] == "2 of 5 shown; --limit/--offset for more", first
    assert second.splitlines()[-1] == "3-4 of 5 shown; --limit/--offset for more", second
    assert "shown" not in whole, whole


def test_a_cut_dead_letter_list_says_how_many_dead_tasks_there_are(tq: TaskQueue, taskq: Any) -> None:
    bury(tq, "t", queue="other")  # two dead with the fixture's one

    _, out = taskq("dlq", "list", "--limit", "1")

    assert out.splitlines()[-1] == "1 of 2 shown; --limit/--offset for more", out
