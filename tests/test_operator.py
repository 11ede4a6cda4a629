"""The questions an operator asks (issue 20, point 4): what each worker knows and whether it is busy,
tasks across queues, running a waiting task now, how many a purge or clear deletes, completion of
names from Redis. Real Redis, real worker and CLI processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.services.completion import DEADLINE
from tests.conftest import ROOT, cli_env, wait_until
from tests.test_operating import APP, Terminal, bury, contents, error, fetch_one, finish, ok_json

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(run_cli: Cli) -> Cli:
    """`taskq ARGS` with stdin a pipe (never the terminal pytest may run in)."""
    return lambda *args, **kw: run_cli(*args, input=kw.pop("input", ""), **kw)


@pytest.fixture
def start_worker(
    spawn: Callable[..., subprocess.Popen[str]],
) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """`taskq worker --app tests.apps.basic ARGS`; its process group is killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        started.append(spawn("worker", "--app", APP, *args))
        return started[-1]

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


BASIC_TASKS = [
    "async_ok",
    "boom",
    "echo",
    "exit_hard",
    "give_up",
    "ok",
    "retry_later",
    "sleep",
    "slow_timeout",
]


def _state(tq: TaskQueue) -> str | None:
    [worker] = tq.broker.live_workers()
    state: str | None = worker.get("state")
    return state


EARLY = 5.0


def test_workers_show_the_registered_task_names_and_busy_or_idle_within_a_second(
    tq: TaskQueue, start_worker: Any, cli: Any
) -> None:
    # a lease of 120 s: the regular registration comes every 40 s, so a change seen within EARLY is the
    # early one (within STATE_GAP on an idle machine; EARLY leaves room for a loaded one)
    start_worker("--concurrency", "1", "--lease", "120s", "--pool", "threads")
    wait_until(lambda: len(tq.broker.live_workers()) == 1, timeout=15)
    assert _state(tq) == "idle"
    [found] = ok_json(cli("workers", "--json"))
    assert set(BASIC_TASKS) <= set(found["tasks"]) and found["state"] == "idle"

    sent = time.monotonic()
    task_id = tq.enqueue("sleep", {"seconds": 4})  # long enough for `taskq workers` to start meanwhile
    wait_until(lambda: _state(tq) == "busy", timeout=15, interval=0.01)
    busy_after = time.monotonic() - sent
    [shown] = ok_json(cli("workers", "--json"))
    assert shown["state"] == "busy" and [a["id"] for a in shown["active"]] == [task_id]

    wait_until(
        lambda: (t := tq.get_task(task_id)) is not None and t.state == "done", timeout=10, interval=0.01
    )
    done = time.monotonic()
    wait_until(lambda: _state(tq) == "idle", timeout=15, interval=0.01)
    idle_after = time.monotonic() - done
    assert busy_after < EARLY and idle_after < EARLY, (busy_after, idle_after)
    plain = cli("workers")
    assert plain.returncode == 0 and "idle" in plain.stdout and "sleep" in plain.stdout


# -- task list across queues -------------------------------------------------------------------------


def ids(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [t["id"] for t in ok_json(result)]


def test_task_list_spans_every_queue_and_state_and_filters_by_name_state_and_queue(
    tq: TaskQueue, cli: Cli
) -> None:
    # pending: b1 b2 in "beta", a1 in "alpha"; scheduled: a2 (alpha), b3 (beta)
    b1 = tq.enqueue("send", {}, queue="beta")
    a1 = tq.enqueue("resize", {}, queue="alpha")
    b2 = tq.enqueue("resize", {}, queue="beta")
    a2 = tq.enqueue("send", {}, queue="alpha", delay=60)
    b3 = tq.enqueue("send", {}, queue="beta", delay=30)
    everything = [a1, b1, b2, a2, b3]  # state by state, queue by queue, each in handling order

    assert ids(cli("task", "list", "--json")) == everything
    assert ids(cli("task", "list", "--name", "send", "--json")) == [b1, a2, b3]
    assert ids(cli("task", "list", "--state", "scheduled", "--json")) == [a2, b3]
    assert ids(cli("task", "list", "-q", "beta", "--json")) == [b1, b2, b3]
    assert ids(cli("task", "list", "-q", "beta", "--name", "send", "--state", "scheduled", "--json")) == [b3]
    # paging: over segments, with and without a name
    assert ids(cli("task", "list", "--offset", "2", "--limit", "2", "--json")) == everything[2:4]
    assert ids(cli("task", "list", "--name", "send", "--offset", "1", "--limit", "1", "--json")) == [a2]
    assert ids(cli("task", "list", "--offset", "9", "--json")) == []
    plain = cli("task", "list", "--name", "send")
    assert plain.returncode == 0 and b1 in plain.stdout and "beta" in plain.stdout


def test_task_list_refuses_a_bad_state_or_paging_and_an_unknown_queue(tq: TaskQueue, cli: Cli) -> None:
    tq.enqueue("send", {})
    for args, code in (
        (("--state", "lost"), 2),
        (("--limit", "0"), 2),
        (("--offset", "-1"), 2),
        (("-q", "nowhere"), 1),
    ):
        result = cli("task", "list", *args)
        assert result.returncode == code, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- task run ----------------------------------------------------------------------------------------


def test_task_run_moves_a_delayed_task_to_pending_and_a_worker_runs_it_now(
    tq: TaskQueue, start_worker: Any, cli: Cli
) -> None:
    start_worker("--concurrency", "1", "--pool", "threads")
    wait_until(lambda: len(tq.broker.live_workers()) == 1, timeout=15)
    task_id = tq.enqueue("ok", {"value": 1}, delay=3600)

    moved = ok_json(cli("task", "run", task_id, "--json"))

    assert moved == {"id": task_id, "state": "pending", "was": "scheduled"}
    wait_until(
        lambda: (t := tq.get_task(task_id)) is not None and t.state == "done", timeout=5, interval=0.02
    )


def test_task_run_moves_a_task_waiting_for_its_retry_and_keeps_its_attempts(tq: TaskQueue, cli: Cli) -> None:
    task_id = tq.enqueue("t", {})
    job = fetch_one(tq.broker)
    assert tq.broker.fail(job, error(), final=False, delay=3600, max_retries=3) == "scheduled"

    result = cli("task", "run", task_id)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{task_id} is pending now (was scheduled)"
    listed = ok_json(cli("task", "list", "--state", "pending", "--json"))
    assert [(t["id"], t["attempts"]) for t in listed] == [(task_id, 1)]
    assert ok_json(cli("task", "list", "--state", "scheduled", "--json")) == []


def test_task_run_refuses_a_task_in_any_other_state_and_changes_nothing(
    tq: TaskQueue, raw: redis.Redis, namespace: str, cli: Cli
) -> None:
    pending = tq.enqueue("t", {}, queue="p")
    active = tq.enqueue("t", {}, queue="a")
    fetch_one(tq.broker, "a")
    done = tq.enqueue("t", {}, queue="d")
    assert tq.broker.ack(fetch_one(tq.broker, "d"), None, 600)
    dead = tq.enqueue("t", {}, queue="x")
    assert tq.broker.fail(fetch_one(tq.broker, "x"), error(), final=True, delay=0, max_retries=0) == "dead"
    before = contents(raw, namespace)
    for task_id, state in ((pending, "pending"), (active, "active"), (done, "done"), (dead, "dead")):
        result = cli("task", "run", task_id)
        assert result.returncode == 2, (state, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert f"is {state}" in line and "scheduled" in line, line
    missing = cli("task", "run", "no-such-task")
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert contents(raw, namespace) == before


def test_post_tasks_id_run_moves_a_scheduled_task_and_answers_409_for_another_state(tq: TaskQueue) -> None:
    from taskq_cli.api import create_app
    from tests.test_api import LOCAL, TestClient

    later = tq.enqueue("t", {}, delay=3600)
    now = tq.enqueue("t", {})
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as api:
        moved = api.post(f"/tasks/{later}/run")
        assert moved.status_code == 200 and moved.json() == {
            "id": later,
            "state": "pending",
            "was": "scheduled",
        }
        refused = api.post(f"/tasks/{now}/run")
        assert refused.status_code == 409 and "is pending" in refused.json()["detail"]
        assert api.post("/tasks/nope/run").status_code == 404


# -- how many a purge or a clear deletes ---------------------------------------------------------------


@pytest.fixture
def terminal(redis_url: str, namespace: str) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_(*args: str) -> Terminal:
        opened.append(Terminal(args, cli_env(redis_url, namespace)))
        return opened[-1]

    yield open_
    for term in opened:
        term.close()


def test_purge_and_clear_off_a_terminal_refuse_saying_how_many_they_would_delete(
    tq: TaskQueue, raw: redis.Redis, namespace: str, cli: Cli
) -> None:
    old = [bury(tq, "a"), bury(tq, "b"), bury(tq, "a")]
    bury(tq, "a", queue="emails")
    finish(tq)
    tq.enqueue("t", {})
    tq.enqueue("t", {}, delay=60)
    before = contents(raw, namespace)
    for args, count in (
        (["dlq", "purge", "--all"], 4),
        (["dlq", "purge", "--all", "-q", "default"], 3),
        (["dlq", "purge", "--all", "--name", "a"], 3),
        (["dlq", "purge", old[0], "no-such-id"], 1),
        (["queue", "clear", "default"], 6),  # 3 dead, 1 pending, 1 scheduled, 1 done
    ):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert f"Delete {count} " in line and "--yes" in line, (args, line)
    assert contents(raw, namespace) == before


def test_purge_and_clear_on_a_terminal_ask_naming_the_count_and_delete_that_many(
    tq: TaskQueue, raw: redis.Redis, namespace: str, terminal: Callable[..., Terminal]
) -> None:
    for _ in range(2):
        bury(tq)
    purge = terminal("dlq", "purge", "--all")
    purge.read_until(lambda text: "?" in text, timeout=10)
    assert "Delete 2 dead task(s) for good?" in purge.text
    purge.write("y\n")
    assert purge.wait(10) == 0, purge.text
    assert "purged 2 task(s)" in purge.text

    for n in range(3):
        tq.enqueue("t", {"n": n})
    clear = terminal("queue", "clear", "default")
    clear.read_until(lambda text: "?" in text, timeout=10)
    assert "Delete 3 task(s)" in clear.text and "'default'" in clear.text
    clear.write("y\n")
    assert clear.wait(10) == 0, clear.text
    assert "deleted 3 task(s)" in clear.text


# -- completion of names from Redis ------------------------------------------------------------------


def complete(words: str, env: dict[str, str]) -> tuple[list[str], float, subprocess.CompletedProcess[str]]:
    """Typer's bash protocol for the command line `words` (the last word is being completed)."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "taskq_cli"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**env, "_TASKQ_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)},
        timeout=30,
        check=False,
    )
    return proc.stdout.split(), time.monotonic() - started, proc


def test_tab_completes_queue_and_schedule_names_from_redis(
    tq: TaskQueue, redis_url: str, namespace: str
) -> None:
    for queue in ("emails", "events", "default"):
        tq.enqueue("x", {}, queue=queue)
    tq.schedule("nightly-report", "0 3 * * *", "x")
    tq.schedule("hourly", "0 * * * *", "x")
    env = cli_env(redis_url, namespace)

    assert complete("taskq queue pause e", env)[0] == ["emails", "events"]
    assert complete("taskq stats -q ", env)[0] == ["default", "emails", "events"]
    assert complete("taskq task list --queue d", env)[0] == ["default"]
    assert complete("taskq dlq list -q ev", env)[0] == ["events"]
    assert complete("taskq cron pause ", env)[0] == ["hourly", "nightly-report"]
    # the connection options on the line are the ones used
    other = {**env, "TASKQ_NAMESPACE": "nothing-here"}
    assert complete("taskq queue pause ", other)[0] == []
    assert complete(f"taskq --namespace {namespace} queue pause ", other)[0] == [
        "default",
        "emails",
        "events",
    ]
    assert complete(f"taskq queue clear --namespace {namespace} e", other)[0] == ["emails", "events"]


def test_tab_never_hangs_and_shows_nothing_when_redis_does_not_answer(tmp_path: Path, namespace: str) -> None:
    # a server that accepts connections and never answers: the worst case for a Tab
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        # the bound scales with the machine's load: a URL that is never dialled measures the process
        # start-up; a hang would be the 10 s socket timeout or the 30 s of `complete`
        bound = 3.0
        for url in ("bogus://x", f"redis://127.0.0.1:{port}/0", "redis://127.0.0.1:1/0"):
            words, took, proc = complete("taskq queue pause ", cli_env(url, namespace))
            assert proc.returncode == 0 and words == [] and proc.stderr == "", (url, proc.stderr)
            assert took < bound, (url, took, bound)  # the process start-up plus the 0.5 s deadline
            if url == "bogus://x":
                bound = max(bound, 2 * took + DEADLINE)
        write = tmp_path / "taskq"
        write.mkdir()
        (write / "config.toml").write_text("not toml [", encoding="utf-8")
        words, _, proc = complete(
            "taskq cron pause ", cli_env("redis://127.0.0.1:1/0", namespace, XDG_CONFIG_HOME=str(tmp_path))
        )
        assert proc.returncode == 0 and words == [] and proc.stderr == ""
    finally:
        silent.close()


def test_completion_reads_with_short_timeouts_and_a_deadline() -> None:
    from taskq_cli.services import completion

    assert completion.TIMEOUT <= 0.3 and completion.DEADLINE <= 0.5
    started = time.monotonic()
    assert completion.queue_names("", "redis://10.255.255.1:6379/0", "ns", None) == []
    assert time.monotonic() - started < completion.DEADLINE + 0.2


# -- stats: paused queues and limits ------------------------------------------------------------------


def test_stats_table_shows_paused_queues_and_the_dead_letter_limits(tq: TaskQueue, cli: Cli) -> None:
    tq.enqueue("t", {}, queue="emails")
    tq.enqueue("t", {}, queue="default")
    assert cli("queue", "pause", "emails").returncode == 0

    plain = cli("stats")

    assert plain.returncode == 0, plain.stderr
    rows = {line.split()[0]: line.split() for line in plain.stdout.splitlines()[1:3]}
    assert rows["emails"][-1] == "yes" and rows["default"][-1] == "no"
    assert "limits" not in plain.stdout.splitlines()[0]  # no queue has limits: no column
    assert plain.stdout.splitlines()[-1] == "dead-letter limits: 100,000 tasks per queue, each kept 30d"


def test_queue_limits_are_put_in_words_when_the_counts_carry_them() -> None:
    from types import SimpleNamespace

    from taskq_cli.services.stats import queue_limits

    assert queue_limits(SimpleNamespace()) == ""  # type: ignore[arg-type]
    both = SimpleNamespace(concurrency_limit=5, rate_limit={"limit": 1000, "window": 60.0})
    assert queue_limits(both) == "5 at once, 1,000 per 60s"  # type: ignore[arg-type]
