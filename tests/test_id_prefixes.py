"""Tables show generated ids shortened as git shortens hashes; every lookup by id accepts any
unambiguous prefix (at least 4 characters). A prefix matching several tasks is refused as the
ambiguous-id rule refuses an id in several queues: exit 2, naming the candidates. Real Redis, real
CLI processes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from taskq_cli import TaskQueue
from tests.test_operating import bury

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_task_show_and_cancel_accept_a_unique_prefix_of_a_generated_id(tq: TaskQueue, run_cli: Cli) -> None:
    task_id = tq.enqueue("send_email", {}, delay=60)

    shown = run_cli("task", "show", task_id[:8], "--json")
    cancelled = run_cli("task", "cancel", task_id[:10])

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == task_id
    assert cancelled.returncode == 0, cancelled.stderr
    assert tq.get_task(task_id) is None


def test_task_run_accepts_a_unique_prefix_of_a_scheduled_tasks_id(tq: TaskQueue, run_cli: Cli) -> None:
    task_id = tq.enqueue("send_email", {}, delay=60)

    ran = run_cli("task", "run", task_id[:8])

    assert ran.returncode == 0, ran.stderr
    task = tq.get_task(task_id)
    assert task is not None and task.state == "pending"


def test_dlq_show_and_retry_accept_a_unique_prefix(tq: TaskQueue, run_cli: Cli) -> None:
    task_id = bury(tq, "send_email")

    shown = run_cli("dlq", "show", task_id[:8], "-o", "json")
    retried = run_cli("dlq", "retry", task_id[:8])

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == task_id
    assert retried.returncode == 0, retried.stderr
    task = tq.get_task(task_id)
    assert task is not None and task.state == "pending"


def test_a_prefix_of_several_tasks_is_refused_naming_them(tq: TaskQueue, run_cli: Cli) -> None:
    first = tq.enqueue("t", {}, task_id="order-2026-0001")
    second = tq.enqueue("t", {}, task_id="order-2026-0002", queue="emails")

    result = run_cli("task", "show", "order-2026")

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert first in line and second in line, line


def test_an_exact_id_wins_over_longer_ids_it_is_a_prefix_of(tq: TaskQueue, run_cli: Cli) -> None:
    tq.enqueue("t", {}, task_id="order-1")
    tq.enqueue("t", {}, task_id="order-10")

    result = run_cli("task", "show", "order-1", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == "order-1"


def test_a_prefix_matching_nothing_is_not_found(tq: TaskQueue, run_cli: Cli) -> None:
    tq.enqueue("t", {})

    result = run_cli("task", "show", "zzzzzzzz")

    assert result.returncode == 1 and "not found" in result.stderr, result.stderr


def test_the_http_api_accepts_a_prefix_and_answers_409_for_an_ambiguous_one(tq: TaskQueue) -> None:
    from tests.test_ambiguous_ids import TestClient, create_app

    task_id = tq.enqueue("t", {}, delay=60)
    tq.enqueue("t", {}, task_id="order-2026-0001")
    tq.enqueue("t", {}, task_id="order-2026-0002")

    with TestClient(create_app(tq, token=""), base_url="http://localhost") as client:
        found = client.get(f"/tasks/{task_id[:8]}")
        ambiguous = client.get("/tasks/order-2026")

    assert found.status_code == 200 and found.json()["id"] == task_id, found.text
    assert ambiguous.status_code == 409, ambiguous.text
