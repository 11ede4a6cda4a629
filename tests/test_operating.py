"""Operating taskq from a terminal and from scripts: the dead-letter queue (`dlq list | show | retry |
purge`), `task show | cancel | list`, `queue list | pause | resume | clear`, `workers` and `stats`
(also its live `--watch` view), as real `python -m taskq_cli` processes against a real Redis.

SPEC: "Commands", "Output" and the exit-status rules (0 success; 1 a runtime failure such as a task
that is not there, one clear line on stderr; 2 bad usage, nothing written). Known contents are set up
through the library and the broker (enqueue, fetch, ack, fail), and checked only through the CLI and
the keys of protocol/keys.py. Tables are Rich on a terminal (driven here through a pseudo-terminal)
and plain aligned text in a pipe.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.protocol import Broker, Fetched, Malformed
from tests.conftest import ROOT, cli_env
from tests.support import qkeys, until

APP = "tests.apps.basic"
ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
BOX_DRAWING = re.compile(r"[\u2500-\u257f]")
SPEC_TASK_FIELDS = {
    "id",
    "name",
    "queue",
    "payload",
    "state",
    "attempts",
    "max_retries",
    "timeout",
    "enqueued_at",
    "run_at",
    "last_error",
    "result",
}
QUEUE_COUNT_FIELDS = ("pending", "scheduled", "waiting", "active", "dead", "processed", "failed")
WORKER_FIELDS = {"id", "host", "pid", "queues", "concurrency", "started_at", "heartbeat_at", "active"}
DLQ_COLUMNS = ("id", "name", "queue", "attempts", "died at", "error")
TASK_COLUMNS = ("id", "name", "queue", "state", "attempts", "enqueued_at", "run_at", "error")
STATS_COLUMNS = ("queue", *QUEUE_COUNT_FIELDS, "oldest", "paused")
BULK = 100_000

Cli = Callable[..., subprocess.CompletedProcess[str]]


# -- helpers ---------------------------------------------------------------------------------------


def iso(epoch_ms: int) -> str:
    """The SPEC's JSON timestamp (UTC, milliseconds, Z), computed independently of the product."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> datetime:
    assert ISO_MS.fullmatch(text), f"not an ISO 8601 UTC timestamp with milliseconds: {text!r}"
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def fetch_one(broker: Broker, queue: str = "default", lease: float = 30.0) -> Fetched:
    got = broker.fetch(queue, lease, "test-worker")
    assert isinstance(got, Fetched), f"expected a task from {queue!r}, got {got!r}"
    return got


def error(message: str = "gave up", kind: str = "Fail", traceback: str = "") -> dict[str, str]:
    return {"type": kind, "message": message, "traceback": traceback}


def bury(
    tq: TaskQueue,
    name: str = "t",
    payload: dict[str, Any] | None = None,
    *,
    queue: str = "default",
    failure: dict[str, str] | None = None,
    **options: Any,
) -> str:
    """Enqueue a task and fail its first attempt for good: it is dead with attempts 1. The queue must
    have nothing else pending (the fetch takes the oldest pending task)."""
    task_id = tq.enqueue(name, payload if payload is not None else {}, queue=queue, **options)
    job = fetch_one(tq.broker, queue)
    assert job.id == task_id
    assert tq.broker.fail(job, failure or error(), final=True, delay=0, max_retries=3) == "dead"
    return task_id


def finish(tq: TaskQueue, name: str = "t", *, queue: str = "default", result: Any = None) -> str:
    """Enqueue a task and acknowledge its first attempt: it is done."""
    task_id = tq.enqueue(name, {}, queue=queue)
    job = fetch_one(tq.broker, queue)
    assert job.id == task_id
    assert tq.broker.ack(job, None if result is None else json.dumps(result), 600)
    return task_id


def activate(tq: TaskQueue, name: str = "t", *, queue: str = "default", lease: float = 30.0) -> str:
    """Enqueue a task and fetch it: it is active under a lease."""
    task_id = tq.enqueue(name, {}, queue=queue)
    assert fetch_one(tq.broker, queue, lease).id == task_id
    return task_id


def contents(raw: redis.Redis, namespace: str) -> dict[str, Any]:
    """Every key of the namespace with its value (to show that a command changed nothing)."""
    readers: dict[str, Callable[[str], Any]] = {
        "hash": raw.hgetall,
        "list": lambda k: raw.lrange(k, 0, -1),
        "zset": lambda k: raw.zrange(k, 0, -1, withscores=True),
        "set": raw.smembers,
        "string": raw.get,
    }
    return {k: readers[raw.type(k)](k) for k in raw.scan_iter(match=f"{namespace}:*", count=1000)}


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def assert_one_error_line(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {result.stderr!r}"
    assert lines[0].startswith("taskq: error:"), lines[0]
    return lines[0]


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def plain_table(lines: Sequence[str], columns: Sequence[str]) -> list[dict[str, str]]:
    """Parse a plain table (header + rows) and check it is aligned: every column starts at the same
    offset on every line, separated from the previous one by at least two spaces."""
    header, *rows = lines
    starts: list[int] = []
    pos = 0
    for column in columns:
        found = header.find(column, pos)
        assert found >= 0, f"column {column!r} missing from header {header!r}"
        starts.append(found)
        pos = found + len(column)
    assert starts[0] == 0, header
    assert header.split() == " ".join(columns).split(), header
    parsed = []
    for row in rows:
        for start in starts[1:]:
            if len(row) > start:
                assert row[start - 2 : start] == "  ", f"misaligned at {start}: {row!r} (header {header!r})"
        ends = [start - 2 for start in starts[1:]] + [len(row)]
        parsed.append({c: row[s:e].strip() for c, s, e in zip(columns, starts, ends, strict=True)})
    return parsed


def assert_plain(text: str) -> None:
    assert not BOX_DRAWING.search(text), f"box drawing in a pipe:\n{text}"
    assert "\x1b" not in text, f"escape codes in a pipe: {text!r}"


@pytest.fixture
def cli(run_cli: Cli) -> Cli:
    """`run_cli` with stdin a pipe (never the terminal pytest may have been started from)."""

    def run(
        *args: str, input: str = "", timeout: float = 30, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, input=input, timeout=timeout, env=env)

    return run


@pytest.fixture
def start_worker(
    spawn: Callable[..., subprocess.Popen[str]],
) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """`taskq worker --app tests.apps.basic ARGS` in the background; its whole process group (pool
    children included) is killed at the end of the test."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = spawn("worker", "--app", APP, *args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # spawn starts each one in a session of its own


def runs(raw: redis.Redis, namespace: str) -> list[str]:
    """Executions recorded by tests/apps/basic.py: `task_id:attempt[:tag]`."""
    return raw.lrange(f"{namespace}:test:runs", 0, -1)


class Terminal:
    """`taskq ARGS` with stdin, stdout and stderr on a pseudo-terminal, as a person runs it."""

    def __init__(self, args: Sequence[str], env: dict[str, str], rows: int = 50, cols: int = 200) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taskq_cli", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.data = b""
        self.eof = False

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def _read_once(self, timeout: float) -> None:
        if self.eof:
            time.sleep(min(timeout, 0.05))
            return
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not ready:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            chunk = b""
        if chunk:
            self.data += chunk
        else:
            self.eof = True

    def read_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read_once(min(0.05, deadline - time.monotonic()))

    def read_until(self, predicate: Callable[[str], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.text):
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen within {timeout}s; terminal so far:\n{self.text[-3000:]}")
            self._read_once(0.05)

    def write(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout}s; terminal:\n{self.text[-3000:]}")
            self._read_once(0.05)
        self.read_for(0.1)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def terminal(redis_url: str, namespace: str) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_(*args: str) -> Terminal:
        term = Terminal(args, cli_env(redis_url, namespace))
        opened.append(term)
        return term

    yield open_
    for term in opened:
        term.close()


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen_lines(frame: str) -> list[str]:
    return [line.rstrip() for line in ANSI.sub("", frame).replace("\r", "").split("\n")]


def row_cells(lines: Sequence[str], first: str) -> list[str] | None:
    """The cells of the table row starting with `first` (Rich's column rules dropped)."""
    for line in lines:
        cells = [c for c in re.split(r"\s*[\u2500-\u257f]\s*|\s{2,}", line.strip()) if c]
        if cells and cells[0] == first:
            return cells
    return None


# -- dlq list ---------------------------------------------------------------------------------------


def test_dlq_list_shows_exactly_the_dead_tasks_of_every_queue_newest_first(tq, broker, clock, cli):
    made = [("a", "default"), ("b", "emails"), ("a", "default"), ("c", "emails"), ("b", "default")]
    dead = []
    for i, (name, queue) in enumerate(made):
        clock.advance(1)
        dead.append(bury(tq, name, {"n": i}, queue=queue, failure=error(f"failure {i}", "RuntimeError")))
    finish(tq, "done_one")
    activate(tq, "running", queue="emails")
    tq.enqueue("waiting", {})
    tq.enqueue("later", {}, delay=60)

    listed = ok_json(cli("dlq", "list", "--json"))

    assert [t["id"] for t in listed] == dead[::-1]
    assert [(t["name"], t["queue"]) for t in listed] == made[::-1]
    assert all(t["state"] == "dead" and t["attempts"] == 1 for t in listed), listed
    assert [t["payload"] for t in listed] == [{"n": i} for i in range(len(made))][::-1]

    plain = cli("dlq", "list")
    assert plain.returncode == 0, plain.stderr
    assert_plain(plain.stdout)
    rows = plain_table(plain.stdout.splitlines(), DLQ_COLUMNS)
    assert [r["id"] for r in rows] == dead[::-1]
    assert [(r["name"], r["queue"], r["attempts"]) for r in rows] == [(n, q, "1") for n, q in made[::-1]]
    assert rows[0]["error"] == "RuntimeError: failure 4"


def test_dlq_list_filters_by_queue_and_name_and_pages_with_limit_and_offset(tq, clock, cli):
    made = [
        ("a", "default"),
        ("a", "emails"),
        ("b", "default"),
        ("a", "default"),
        ("b", "emails"),
        ("a", "default"),
    ]
    ids = []
    for name, queue in made:
        clock.advance(1)
        ids.append(bury(tq, name, queue=queue))
    newest = list(zip(ids, made, strict=True))[::-1]

    def expect(queue: str | None = None, name: str | None = None) -> list[str]:
        return [i for i, (n, q) in newest if queue in (None, q) and name in (None, n)]

    cases = [
        (["--queue", "default"], expect(queue="default")),
        (["--name", "a"], expect(name="a")),
        (["-q", "emails", "--name", "b"], expect("emails", "b")),
        (["--limit", "2"], expect()[:2]),
        (["--limit", "2", "--offset", "2"], expect()[2:4]),
        (["--queue", "default", "--name", "a", "--limit", "2", "--offset", "1"], expect("default", "a")[1:3]),
        (["--offset", "5"], expect()[5:]),
    ]
    wrong = {}
    for args, expected in cases:
        got = [t["id"] for t in ok_json(cli("dlq", "list", *args, "--json"))]
        if got != expected:
            wrong[" ".join(args)] = (got, expected)
    assert not wrong, wrong


def test_dlq_list_json_gives_task_objects_with_the_spec_fields_and_utc_millisecond_timestamps(
    tq, broker, clock, cli
):
    clock.ms = clock.ms - clock.ms % 1000 + 123
    enqueued_ms = clock.ms
    task_id = tq.enqueue(
        "send_email", {"to": "a@example.com", "tags": ["x", "y"]}, queue="emails", max_retries=2, timeout=5
    )
    clock.advance(2.5)
    job = fetch_one(broker, "emails")
    failure = error(
        "mailbox full", "SMTPError", 'Traceback (most recent call last):\n  File "x.py"\nSMTPError'
    )
    assert broker.fail(job, failure, final=True, delay=0, max_retries=2) == "dead"

    [task] = ok_json(cli("dlq", "list", "--json"))

    assert task.keys() >= SPEC_TASK_FIELDS, SPEC_TASK_FIELDS - task.keys()
    assert task["id"] == task_id
    assert task["name"] == "send_email"
    assert task["queue"] == "emails"
    assert task["payload"] == {"to": "a@example.com", "tags": ["x", "y"]}
    assert task["state"] == "dead"
    assert task["attempts"] == 1
    assert task["max_retries"] == 2
    assert task["timeout"] == 5
    assert task["enqueued_at"] == iso(enqueued_ms)
    assert task["run_at"] is None
    assert task["last_error"] == failure
    assert task["result"] is None
    for name, value in task.items():
        if name.endswith("_at") and value is not None:
            parse_iso(value)
    if task.get("died_at") is not None:
        assert task["died_at"] == iso(enqueued_ms + 2500)


# -- dlq show ---------------------------------------------------------------------------------------

LONG_TRACEBACK = (
    "Traceback (most recent call last):\n"
    + "".join(
        f'  File "/srv/app/mail/step_{i}.py", line {10 + i}, in step_{i}\n    step_{i + 1}(to)\n'
        for i in range(30)
    )
    + "ConnectionRefusedError: [Errno 111] smtp.example.com:25 refused the connection\n"
)


def test_dlq_show_in_a_pipe_prints_plain_text_with_the_payload_and_the_whole_traceback(tq, cli):
    task_id = bury(
        tq,
        "send_email",
        {"to": "a@example.com", "subject": "Quarterly report"},
        failure=error("smtp.example.com:25 refused the connection", "ConnectionRefusedError", LONG_TRACEBACK),
    )

    result = cli("dlq", "show", task_id)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert_plain(result.stdout)
    assert task_id in result.stdout
    assert "a@example.com" in result.stdout
    assert "Quarterly report" in result.stdout
    assert LONG_TRACEBACK.rstrip() in result.stdout, "the traceback is not there whole"


def test_dlq_show_json_prints_the_dead_task_object_and_an_id_not_in_the_dead_letter_queue_exits_1(tq, cli):
    dead_id = bury(tq, "send_email", {"to": "a@example.com"}, failure=error("no", "Fail", LONG_TRACEBACK))
    pending_id = tq.enqueue("send_email", {"to": "b@example.com"})

    shown = ok_json(cli("dlq", "show", dead_id, "--json"))

    assert isinstance(shown, dict)
    assert shown == ok_json(cli("dlq", "list", "--json"))[0]
    assert shown["id"] == dead_id
    assert shown["last_error"]["traceback"] == LONG_TRACEBACK
    for missing in ("no-such-task", pending_id):
        result = cli("dlq", "show", missing, "--json")
        line = assert_one_error_line(result, 1)
        assert missing in line
        assert result.stdout == ""


# -- dlq retry --------------------------------------------------------------------------------------


def test_dlq_retry_puts_a_dead_task_back_to_pending_with_attempts_reset_and_a_worker_runs_it_to_done(
    tq, broker, raw, namespace, cli
):
    task_id = tq.enqueue("ok", {"value": 7})
    job = fetch_one(broker)
    assert (
        broker.fail(job, error("flaky", "RuntimeError"), final=False, delay=0, max_retries=3) == "scheduled"
    )
    assert broker.promote("default")[0] == 1
    job = fetch_one(broker)
    assert broker.fail(job, error("flaky", "RuntimeError"), final=True, delay=0, max_retries=3) == "dead"
    assert ok_json(cli("task", "show", task_id, "--json"))["attempts"] == 2

    result = cli("dlq", "retry", task_id)

    assert result.returncode == 0, result.stderr
    shown = ok_json(cli("task", "show", task_id, "--json"))
    assert (shown["state"], shown["attempts"]) == ("pending", 0)
    assert raw.lrange(qkeys(namespace, "default").pending, 0, -1) == [task_id]
    assert raw.zcard(qkeys(namespace, "default").dead) == 0

    worker = cli("worker", "--app", APP, "--burst", "--concurrency", "1", "--pool", "threads")

    assert worker.returncode == 0, worker.stderr
    shown = ok_json(cli("task", "show", task_id, "--json"))
    assert (shown["state"], shown["attempts"], shown["result"]) == ("done", 1, {"value": 7})
    assert runs(raw, namespace) == [f"{task_id}:1"]  # attempt numbering started again at 1


def test_a_task_a_worker_gave_up_on_shows_its_real_traceback_and_after_a_retry_runs_again(
    tq, raw, namespace, cli
):
    task_id = tq.enqueue("give_up", {})
    assert cli("worker", "--app", APP, "--burst", "--concurrency", "1", "--pool", "threads").returncode == 0

    shown = cli("dlq", "show", task_id)

    assert shown.returncode == 0, shown.stderr
    assert "Traceback (most recent call last)" in shown.stdout
    assert 'raise Fail("no point trying again")' in shown.stdout
    assert "no point trying again" in shown.stdout
    assert cli("dlq", "retry", task_id).returncode == 0
    assert cli("worker", "--app", APP, "--burst", "--concurrency", "1", "--pool", "threads").returncode == 0
    again = ok_json(cli("dlq", "show", task_id, "--json"))
    assert (again["state"], again["attempts"], again["last_error"]["type"]) == ("dead", 1, "Fail")
    assert runs(raw, namespace) == [f"{task_id}:1", f"{task_id}:1"]


def test_dlq_retry_all_with_queue_and_name_retries_only_the_matching_dead_tasks(tq, raw, namespace, cli):
    matching = [bury(tq, "a"), bury(tq, "a")]
    other_name = bury(tq, "b")
    other_queue = bury(tq, "a", queue="emails")

    result = cli("dlq", "retry", "--all", "--queue", "default", "--name", "a")

    assert result.returncode == 0, result.stderr
    assert sorted(raw.lrange(qkeys(namespace, "default").pending, 0, -1)) == sorted(matching)
    assert raw.zrange(qkeys(namespace, "default").dead, 0, -1) == [other_name]
    assert raw.zrange(qkeys(namespace, "emails").dead, 0, -1) == [other_queue]
    assert raw.llen(qkeys(namespace, "emails").pending) == 0
    for task_id in matching:
        shown = ok_json(cli("task", "show", task_id, "--json"))
        assert (shown["state"], shown["attempts"]) == ("pending", 0)


def test_dlq_retry_with_a_missing_id_retries_the_others_lists_the_missing_on_stderr_and_exits_1(
    tq, raw, namespace, cli
):
    first, second = bury(tq), bury(tq)
    pending_id = tq.enqueue("t", {"still": "pending"})

    result = cli("dlq", "retry", first, "no-such-task", pending_id, second)

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert_no_traceback(result)
    assert "no-such-task" in result.stderr
    assert pending_id in result.stderr
    assert first not in result.stderr and second not in result.stderr
    assert raw.zcard(qkeys(namespace, "default").dead) == 0
    assert sorted(raw.lrange(qkeys(namespace, "default").pending, 0, -1)) == sorted(
        [first, second, pending_id]
    )
    untouched = ok_json(cli("task", "show", pending_id, "--json"))
    assert (untouched["state"], untouched["attempts"], untouched["payload"]) == (
        "pending",
        0,
        {"still": "pending"},
    )


@pytest.mark.parametrize("kind", ["unknown-pending-entry", "record-not-json"])
def test_a_malformed_message_in_the_dead_letter_queue_shows_its_raw_text_and_cannot_be_retried(
    kind, tq, broker, raw, namespace, cli
):
    good = bury(tq, "ok", {"value": 1})
    if kind == "unknown-pending-entry":
        raw_text = "%%% not a task id %%%"
        raw.lpush(qkeys(namespace, "default").pending, raw_text)
    else:
        raw_text = '{"name": "ok", "payload"'
        raw.hset(qkeys(namespace, "default").tasks, "corrupt-1", raw_text)
        raw.lpush(qkeys(namespace, "default").pending, "corrupt-1")
    buried = broker.fetch("default", 30, "test-worker")
    assert isinstance(buried, Malformed), buried
    bad = buried.dead_id

    shown = ok_json(cli("dlq", "show", bad, "--json"))
    assert (shown["id"], shown["name"], shown["queue"], shown["state"]) == (
        bad,
        "<malformed>",
        "default",
        "dead",
    )
    assert shown["raw"] == raw_text
    assert {t["id"] for t in ok_json(cli("dlq", "list", "--json"))} == {good, bad}

    refused = cli("dlq", "retry", bad)

    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert_no_traceback(refused)
    assert bad in refused.stderr
    assert "malformed" in refused.stderr.lower()
    assert raw.zscore(qkeys(namespace, "default").dead, bad) is not None
    assert raw.llen(qkeys(namespace, "default").pending) == 0

    everything = cli("dlq", "retry", "--all")

    assert everything.returncode == 1, (everything.stdout, everything.stderr)
    assert bad in everything.stderr
    assert raw.lrange(qkeys(namespace, "default").pending, 0, -1) == [good]
    assert raw.zrange(qkeys(namespace, "default").dead, 0, -1) == [bad]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["dlq", "retry"], id="retry-neither-ids-nor-all"),
        pytest.param(["dlq", "retry", "ID", "--all"], id="retry-ids-and-all"),
        pytest.param(["dlq", "purge", "ID", "--all", "--yes"], id="purge-ids-and-all"),
        pytest.param(["dlq", "purge", "--all", "--older-than", "a while", "--yes"], id="purge-bad-duration"),
        pytest.param(["dlq", "list", "--limit", "0"], id="list-limit-0"),
        pytest.param(["task", "list", "--state", "zombie"], id="task-list-bad-state"),
    ],
)
def test_bad_usage_of_the_operating_commands_exits_2_with_one_line_and_changes_nothing(
    args, tq, raw, namespace, cli
):
    dead_id = bury(tq)
    tq.enqueue("t", {})
    before = contents(raw, namespace)

    result = cli(*[dead_id if a == "ID" else a for a in args])

    assert_one_error_line(result, 2)
    assert contents(raw, namespace) == before


# -- dlq purge --------------------------------------------------------------------------------------


def test_dlq_purge_without_yes_off_a_terminal_exits_2_and_deletes_nothing(tq, raw, namespace, cli):
    ids = [bury(tq), bury(tq, queue="emails")]
    before = contents(raw, namespace)

    for args in (
        ["dlq", "purge", ids[0]],
        ["dlq", "purge", "--all"],
        ["dlq", "purge", "--all", "-q", "emails"],
    ):
        result = cli(*args)
        line = assert_one_error_line(result, 2)
        assert "--yes" in line

    assert contents(raw, namespace) == before


def test_dlq_purge_with_yes_deletes_the_given_dead_tasks_for_good_and_lists_missing_ids_with_exit_1(
    tq, raw, namespace, cli
):
    kept, gone, also_gone = bury(tq), bury(tq), bury(tq, queue="emails")
    pending_id = tq.enqueue("t", {})

    result = cli("dlq", "purge", gone, "no-such-task", also_gone, pending_id, "--yes")

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert_no_traceback(result)
    assert "no-such-task" in result.stderr and pending_id in result.stderr
    assert raw.zrange(qkeys(namespace, "default").dead, 0, -1) == [kept]
    assert raw.zcard(qkeys(namespace, "emails").dead) == 0
    for task_id, queue in ((gone, "default"), (also_gone, "emails")):
        assert raw.hget(qkeys(namespace, queue).tasks, task_id) is None
        assert raw.hget(qkeys(namespace, queue).payloads, task_id) is None
    assert_one_error_line(cli("task", "show", gone), 1)
    assert ok_json(cli("task", "show", pending_id, "--json"))["state"] == "pending"


def test_dlq_purge_all_older_than_deletes_only_the_tasks_dead_longer_than_that(
    tq, raw, namespace, clock, cli
):
    now = clock.ms
    clock.ms = now - 3 * 3600_000
    old_default = bury(tq)
    clock.ms = now - 2 * 3600_000
    old_emails = bury(tq, queue="emails")
    clock.ms = now - 50 * 60_000
    young_default = bury(tq)
    clock.ms = now - 1000
    young_emails = bury(tq, queue="emails")

    first = cli("dlq", "purge", "--all", "--queue", "emails", "--older-than", "1h", "--yes")

    assert first.returncode == 0, first.stderr
    assert {t["id"] for t in ok_json(cli("dlq", "list", "--json"))} == {
        old_default,
        young_default,
        young_emails,
    }

    second = cli("dlq", "purge", "--all", "--older-than", "1h", "--yes")

    assert second.returncode == 0, second.stderr
    assert [t["id"] for t in ok_json(cli("dlq", "list", "--json"))] == [young_emails, young_default]
    assert raw.hget(qkeys(namespace, "default").tasks, old_default) is None
    assert raw.hget(qkeys(namespace, "emails").tasks, old_emails) is None


def test_dlq_purge_on_a_terminal_asks_first_and_deletes_only_after_yes(tq, raw, namespace, terminal):
    task_id = bury(tq)
    dead = qkeys(namespace, "default").dead

    declined = terminal("dlq", "purge", task_id)
    declined.read_until(lambda text: "?" in text, timeout=10)
    declined.write("n\n")
    assert declined.wait(10) != 0
    assert raw.zscore(dead, task_id) is not None

    accepted = terminal("dlq", "purge", task_id)
    accepted.read_until(lambda text: "?" in text, timeout=10)
    accepted.write("y\n")
    assert accepted.wait(10) == 0, accepted.text
    assert raw.zscore(dead, task_id) is None


# -- bulk operations --------------------------------------------------------------------------------


def write_dead_tasks(tq: TaskQueue, raw: redis.Redis, namespace: str, count: int) -> list[str]:
    """`count` dead tasks in `default`, fast: one real dead task is the template, the others are its
    copies written with pipelines in the layout of protocol/keys.py. Returns the ids, newest first."""
    template = bury(tq, "bulk", {"n": -1}, failure=error("boom", "RuntimeError"))
    tasks, payloads, dead = (qkeys(namespace, "default").key(part) for part in ("tasks", "payloads", "dead"))
    meta = json.loads(raw.hget(tasks, template))
    died = int(raw.zscore(dead, template))
    ids = [f"bulk-{i:06d}" for i in range(count - 1)]
    pipe = raw.pipeline(transaction=False)
    step = 10_000
    for start in range(0, len(ids), step):
        chunk = ids[start : start + step]
        pipe.hset(tasks, mapping={i: json.dumps({**meta, "id": i}) for i in chunk})
        pipe.hset(payloads, mapping={i: json.dumps({"n": start + n}) for n, i in enumerate(chunk)})
        pipe.zadd(dead, {i: died - 1 - start - n for n, i in enumerate(chunk)})
    pipe.execute()
    assert raw.zcard(dead) == count
    return [template, *ids]


def test_dlq_retry_all_of_100000_dead_tasks_finishes_in_seconds_and_leaves_them_all_pending(
    tq, raw, namespace, cli
):
    ids = write_dead_tasks(tq, raw, namespace, BULK)
    assert [t["id"] for t in ok_json(cli("dlq", "list", "--limit", "3", "--json"))] == ids[:3]

    began = time.monotonic()
    result = cli("dlq", "retry", "--all", timeout=120)
    took = time.monotonic() - began

    assert result.returncode == 0, result.stderr
    assert took < 15, f"dlq retry --all of {BULK} dead tasks took {took:.1f}s"
    assert raw.zcard(qkeys(namespace, "default").dead) == 0
    assert raw.llen(qkeys(namespace, "default").pending) == BULK
    counts = ok_json(cli("stats", "--json"))["queues"]["default"]
    assert (counts["pending"], counts["dead"]) == (BULK, 0)
    for task_id in (ids[0], ids[BULK // 2], ids[-1]):
        meta = json.loads(raw.hget(qkeys(namespace, "default").tasks, task_id))
        assert (meta["state"], meta["attempts"]) == ("pending", 0), meta


def test_dlq_purge_all_of_100000_dead_tasks_finishes_in_seconds_and_leaves_none(tq, raw, namespace, cli):
    write_dead_tasks(tq, raw, namespace, BULK)
    survivor = tq.enqueue("t", {})

    began = time.monotonic()
    result = cli("dlq", "purge", "--all", "--yes", timeout=120)
    took = time.monotonic() - began

    assert result.returncode == 0, result.stderr
    assert took < 15, f"dlq purge --all of {BULK} dead tasks took {took:.1f}s"
    assert raw.zcard(qkeys(namespace, "default").dead) == 0
    assert raw.hkeys(qkeys(namespace, "default").tasks) == [survivor]
    assert raw.hkeys(qkeys(namespace, "default").payloads) == [survivor]
    assert ok_json(cli("dlq", "list", "--json")) == []


# -- task cancel ------------------------------------------------------------------------------------


def test_cancelling_a_pending_task_removes_it_from_its_queue_and_task_show_then_exits_1(
    tq, raw, namespace, cli
):
    first, middle, last = (tq.enqueue("t", {"n": n}) for n in range(3))

    result = cli("task", "cancel", middle)

    assert result.returncode == 0, result.stderr
    assert middle in result.stdout
    assert raw.lrange(qkeys(namespace, "default").pending, 0, -1) == [last, first]
    assert raw.hget(qkeys(namespace, "default").tasks, middle) is None
    assert raw.hget(qkeys(namespace, "default").payloads, middle) is None
    assert middle in assert_one_error_line(cli("task", "show", middle), 1)
    assert_one_error_line(cli("task", "cancel", middle), 1)


def test_cancelling_a_scheduled_task_removes_it_before_it_is_due(tq, raw, namespace, cli):
    cancelled = tq.enqueue("t", {}, queue="emails", delay=60)
    kept = tq.enqueue("t", {}, queue="emails", delay=60)

    result = cli("task", "cancel", cancelled)

    assert result.returncode == 0, result.stderr
    assert raw.zrange(qkeys(namespace, "emails").scheduled, 0, -1) == [kept]
    assert_one_error_line(cli("task", "show", cancelled), 1)
    assert ok_json(cli("task", "show", kept, "--json"))["state"] == "scheduled"


@pytest.mark.parametrize("pool", ["processes", "threads"])
def test_cancelling_an_active_task_makes_its_worker_stop_it_at_the_next_lease_renewal_and_serve_on(
    pool, tq, raw, namespace, start_worker, cli
):
    worker = start_worker("--concurrency", "1", "--lease", "1s", "--grace", "1s", "--pool", pool)
    long = tq.enqueue("sleep", {"seconds": 30})
    until(lambda: f"{long}:1:start" in runs(raw, namespace), timeout=15)

    result = cli("task", "cancel", long)

    assert result.returncode == 0, result.stderr
    cancelled_at = time.monotonic()
    follow = tq.enqueue("ok", {"value": 1})
    # one slot: the follow-up can only run once the cancelled task was stopped
    until(lambda: f"{follow}:1" in runs(raw, namespace), timeout=8)
    assert time.monotonic() - cancelled_at < 5
    until(lambda: (t := tq.get_task(follow)) is not None and t.state == "done", timeout=5)
    assert f"{long}:1:end" not in runs(raw, namespace)
    assert tq.get_task(long) is None
    assert_one_error_line(cli("task", "show", long), 1)
    assert raw.zcard(qkeys(namespace, "default").active) == 0
    assert raw.llen(qkeys(namespace, "default").pending) == 0
    assert raw.zcard(qkeys(namespace, "default").dead) == 0
    assert worker.poll() is None, "the worker stopped"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0


@pytest.mark.parametrize("end", ["done", "dead"])
def test_cancelling_a_finished_task_exits_2_saying_it_is_already_finished_and_keeps_it(end, tq, cli):
    task_id = finish(tq, result={"ok": True}) if end == "done" else bury(tq)

    result = cli("task", "cancel", task_id)

    line = assert_one_error_line(result, 2)
    assert f"already {end}" in line
    assert ok_json(cli("task", "show", task_id, "--json"))["state"] == end


def test_cancelling_or_showing_an_unknown_task_exits_1_with_one_line(tq, cli):
    tq.enqueue("t", {})
    for args in (["task", "cancel", "no-such-task"], ["task", "show", "no-such-task", "--json"]):
        result = cli(*args)
        assert "no-such-task" in assert_one_error_line(result, 1)
        assert result.stdout == ""


def test_task_show_json_gives_every_field_of_a_done_task_and_plain_text_in_a_pipe(tq, broker, clock, cli):
    clock.ms = clock.ms - clock.ms % 1000 + 7
    enqueued_ms = clock.ms
    task_id = tq.enqueue("report", {"month": "2026-10"}, queue="reports", max_retries=1, timeout=90)
    clock.advance(1)
    job = fetch_one(broker, "reports")
    clock.advance(2)
    assert broker.ack(job, json.dumps({"rows": 42}), 600)

    shown = ok_json(cli("task", "show", task_id, "--json"))

    assert shown.keys() >= SPEC_TASK_FIELDS, SPEC_TASK_FIELDS - shown.keys()
    assert (shown["id"], shown["name"], shown["queue"], shown["state"]) == (
        task_id,
        "report",
        "reports",
        "done",
    )
    assert (shown["payload"], shown["result"], shown["attempts"]) == ({"month": "2026-10"}, {"rows": 42}, 1)
    assert (shown["max_retries"], shown["timeout"], shown["last_error"]) == (1, 90, None)
    assert shown["enqueued_at"] == iso(enqueued_ms)
    for name, value in shown.items():
        if name.endswith("_at") and value is not None:
            parse_iso(value)
    plain = cli("task", "show", task_id)
    assert plain.returncode == 0, plain.stderr
    assert_plain(plain.stdout)
    assert task_id in plain.stdout and "2026-10" in plain.stdout and "42" in plain.stdout


# -- task list --------------------------------------------------------------------------------------


def test_task_list_shows_each_state_in_the_order_tasks_will_be_handled_and_pages(tq, broker, clock, cli):
    q = "work"

    def fetched(lease: float) -> Fetched:
        return fetch_one(broker, q, lease)

    a = tq.enqueue("t", {"tag": "a"}, queue=q)
    fetched(60)
    b = tq.enqueue("t", {"tag": "b"}, queue=q)
    fetched(20)  # b's lease ends before a's
    ended: dict[str, list[str]] = {"done": [], "dead": []}
    for state in ("done", "done", "dead", "dead"):
        task_id = tq.enqueue("t", {}, queue=q)
        job = fetched(30)
        clock.advance(1)
        if state == "done":
            assert broker.ack(job, None, 600)
        else:
            assert broker.fail(job, error(), final=True, delay=0, max_retries=3) == "dead"
        ended[state].append(task_id)
    pending = [tq.enqueue("t", {"n": n}, queue=q) for n in range(4)]
    s30, s10, s20 = (tq.enqueue("t", {}, queue=q, delay=d) for d in (30, 10, 20))
    expected = {
        "pending": pending,
        "scheduled": [s10, s20, s30],
        "active": [b, a],
        "done": ended["done"][::-1],
        "dead": ended["dead"][::-1],
    }

    wrong = {}
    for state, ids in expected.items():
        listed = ok_json(cli("task", "list", "--queue", q, "--state", state, "--json"))
        if [(t["id"], t["state"]) for t in listed] != [(i, state) for i in ids]:
            wrong[state] = ([(t["id"], t["state"]) for t in listed], ids)
    for args, ids in (
        (["--state", "pending", "--limit", "2", "--offset", "1"], pending[1:3]),
        (["--state", "scheduled", "--limit", "1", "--offset", "2"], [s30]),
        (["--state", "dead", "--offset", "1"], expected["dead"][1:]),
    ):
        got = [t["id"] for t in ok_json(cli("task", "list", "-q", q, *args, "--json"))]
        if got != ids:
            wrong[" ".join(args)] = (got, ids)
    assert not wrong, wrong

    plain = cli("task", "list", "--queue", q, "--state", "scheduled")
    assert plain.returncode == 0, plain.stderr
    assert_plain(plain.stdout)
    rows = plain_table(plain.stdout.splitlines(), TASK_COLUMNS)
    assert [(r["id"], r["state"]) for r in rows] == [(i, "scheduled") for i in expected["scheduled"]]
    assert all(ISO_MS.fullmatch(r["run_at"]) for r in rows), rows


# -- queues ------------------------------------------------------------------------------------------


def test_a_paused_queue_keeps_accepting_tasks_a_worker_takes_none_from_it_and_after_resume_drains_it(
    tq, raw, namespace, start_worker, cli
):
    assert cli("queue", "pause", "held").returncode == 0
    enqueued = cli("enqueue", "ok", '{"value": 1}', "--queue", "held")
    assert enqueued.returncode == 0, enqueued.stderr
    held = [enqueued.stdout.strip()]
    start_worker("--queues", "held,open", "--concurrency", "2", "--pool", "threads")
    held.append(tq.enqueue("ok", {"value": 2}, queue="held"))
    served = [tq.enqueue("ok", {"value": n}, queue="open") for n in range(3)]

    until(lambda: all(f"{i}:1" in runs(raw, namespace) for i in served), timeout=15)
    # the worker has been serving, and idle, with the paused tasks waiting: one more fetch proves it
    later = tq.enqueue("ok", {"value": 9}, queue="open")
    until(lambda: f"{later}:1" in runs(raw, namespace), timeout=15)

    assert not [r for r in runs(raw, namespace) if r.split(":")[0] in held]
    assert sorted(raw.lrange(qkeys(namespace, "held").pending, 0, -1)) == sorted(held)
    listed = {q["name"]: q for q in ok_json(cli("queue", "list", "--json"))}
    assert (listed["held"]["paused"], listed["held"]["pending"]) == (True, 2)
    assert (listed["open"]["paused"], listed["open"]["pending"]) == (False, 0)

    assert cli("queue", "resume", "held").returncode == 0

    until(lambda: all(f"{i}:1" in runs(raw, namespace) for i in held), timeout=10)
    until(lambda: all((t := tq.get_task(i)) is not None and t.state == "done" for i in held), timeout=5)
    listed = {q["name"]: q for q in ok_json(cli("queue", "list", "--json"))}
    assert (listed["held"]["paused"], listed["held"]["pending"]) == (False, 0)


def test_queue_list_json_gives_each_queue_with_its_counts_and_whether_it_is_paused(tq, cli):
    bury(tq)
    activate(tq)
    tq.enqueue("t", {})
    tq.enqueue("t", {})
    tq.enqueue("t", {}, delay=60)
    tq.enqueue("t", {}, queue="emails")
    assert cli("queue", "pause", "emails").returncode == 0

    listed = ok_json(cli("queue", "list", "--json"))

    fields = ("name", "paused", "pending", "scheduled", "waiting", "active", "dead")
    assert [{f: q[f] for f in fields} for q in sorted(listed, key=lambda q: q["name"])] == [
        {
            "name": "default",
            "paused": False,
            "pending": 2,
            "scheduled": 1,
            "waiting": 0,
            "active": 1,
            "dead": 1,
        },
        {
            "name": "emails",
            "paused": True,
            "pending": 1,
            "scheduled": 0,
            "waiting": 0,
            "active": 0,
            "dead": 0,
        },
    ]
    plain = cli("queue", "list")
    assert plain.returncode == 0, plain.stderr
    assert_plain(plain.stdout)
    rows = {r["name"]: r for r in plain_table(plain.stdout.splitlines(), (*fields, "limits"))}
    assert (rows["default"]["pending"], rows["emails"]["pending"]) == ("2", "1")


def test_pausing_a_queue_never_used_warns_and_pauses_it_ahead_of_time(tq, raw, namespace, cli):
    tq.enqueue("t", {})

    paused = cli("queue", "pause", "nosuch")
    again = cli("queue", "pause", "nosuch")
    known = cli("queue", "pause", "default")

    assert (paused.returncode, paused.stdout) == (0, "paused nosuch\n")
    assert paused.stderr == "taskq: queue nosuch has never been used; paused ahead of time\n"
    assert (again.returncode, again.stderr, known.returncode, known.stderr) == (0, "", 0, "")
    listed = {q["name"]: q["paused"] for q in ok_json(cli("queue", "list", "--json"))}
    assert listed == {"default": True, "nosuch": True}


def test_resuming_a_queue_never_used_says_so_and_writes_nothing(raw, namespace, cli):
    resumed = cli("queue", "resume", "nosuch")

    assert (resumed.returncode, resumed.stdout) == (0, "")
    assert resumed.stderr == "taskq: queue nosuch has never been used; nothing to resume\n"
    assert contents(raw, namespace) == {}


def test_stats_shows_which_queues_are_paused_in_the_table_and_the_json(tq, cli):
    tq.enqueue("t", {})
    tq.enqueue("t", {}, queue="emails")
    assert cli("queue", "pause", "emails").returncode == 0

    as_json = ok_json(cli("stats", "--json"))
    table = cli("stats")

    assert {name: q["paused"] for name, q in as_json["queues"].items()} == {"default": False, "emails": True}
    lines = table.stdout.splitlines()
    end = next((i for i, line in enumerate(lines) if i > 0 and line.startswith("id ")), len(lines))
    rows = {r["queue"]: r for r in plain_table(lines[:end], STATS_COLUMNS)}
    assert (rows["default"]["paused"], rows["emails"]["paused"]) == ("no", "yes")


def test_queue_clear_without_yes_off_a_terminal_exits_2_and_deletes_nothing(tq, raw, namespace, cli):
    bury(tq)
    tq.enqueue("t", {})
    tq.enqueue("t", {}, delay=60)
    before = contents(raw, namespace)

    line = assert_one_error_line(cli("queue", "clear", "default"), 2)

    assert "--yes" in line
    assert contents(raw, namespace) == before


def test_queue_clear_with_yes_deletes_the_waiting_dead_and_done_tasks_and_leaves_the_running_one(
    tq, broker, raw, namespace, cli
):
    cleared = [bury(tq), bury(tq), finish(tq)]
    running = tq.enqueue("t", {})
    job = fetch_one(broker)
    cleared += [tq.enqueue("t", {}) for _ in range(3)]
    cleared += [tq.enqueue("t", {}, delay=60) for _ in range(2)]
    elsewhere = tq.enqueue("t", {}, queue="emails")

    result = cli("queue", "clear", "default", "--yes")

    assert result.returncode == 0, result.stderr
    assert re.search(r"\b8\b", result.stdout), result.stdout
    counts = ok_json(cli("stats", "--json"))["queues"]
    assert {f: counts["default"][f] for f in ("pending", "scheduled", "dead", "active")} == {
        "pending": 0,
        "scheduled": 0,
        "dead": 0,
        "active": 1,
    }
    assert counts["emails"]["pending"] == 1
    assert raw.hkeys(qkeys(namespace, "default").tasks) == [running]
    assert raw.hkeys(qkeys(namespace, "default").payloads) == [running]
    assert raw.zcard(qkeys(namespace, "default").done) == 0
    assert tq.get_task(elsewhere) is not None
    assert_one_error_line(cli("task", "show", cleared[0]), 1)
    assert broker.ack(job, None, 600)  # the running one finishes normally


def test_queue_commands_on_a_queue_that_does_not_exist_or_a_bad_name_fail_cleanly(tq, cli):
    tq.enqueue("t", {})
    assert_one_error_line(cli("queue", "clear", "no-such-queue", "--yes"), 1)
    assert_one_error_line(cli("queue", "pause", "bad name"), 2)


# -- workers and stats ------------------------------------------------------------------------------


def test_workers_json_describes_each_live_worker_with_its_running_tasks_and_forgets_it_once_stopped(
    tq, start_worker, cli
):
    worker = start_worker(
        "--queues", "default,emails", "--concurrency", "2", "--lease", "1s", "--grace", "0.5s"
    )
    long = tq.enqueue("sleep", {"seconds": 30}, queue="emails")
    until(
        lambda: any(a.get("id") == long for w in tq.broker.live_workers() for a in w.get("active", [])),
        timeout=15,
    )

    [found] = ok_json(cli("workers", "--json"))

    assert found.keys() >= WORKER_FIELDS, WORKER_FIELDS - found.keys()
    assert found["host"] == socket.gethostname()
    assert found["pid"] == worker.pid
    assert found["queues"] == ["default", "emails"]
    assert found["concurrency"] == 2
    started, beat = parse_iso(found["started_at"]), parse_iso(found["heartbeat_at"])
    now = datetime.now(UTC)
    assert started <= beat and abs((now - beat).total_seconds()) < 5, (started, beat, now)
    [running] = found["active"]
    assert (running["id"], running["name"], running["queue"]) == (long, "sleep", "emails")
    parse_iso(running["started_at"])
    assert [w["id"] for w in ok_json(cli("stats", "--json"))["workers"]] == [found["id"]]
    plain = cli("workers")
    assert plain.returncode == 0, plain.stderr
    assert_plain(plain.stdout)
    assert found["id"] in plain.stdout and "default,emails" in plain.stdout and long in plain.stdout

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert ok_json(cli("workers", "--json")) == []


def test_a_worker_killed_without_warning_drops_out_of_the_live_workers_within_seconds(tq, start_worker, cli):
    worker = start_worker("--concurrency", "1", "--lease", "1s", "--pool", "threads")
    until(lambda: len(tq.broker.live_workers()) == 1, timeout=15)
    assert [w["pid"] for w in ok_json(cli("workers", "--json"))] == [worker.pid]

    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(5)

    until(lambda: ok_json(cli("workers", "--json")) == [], timeout=8, interval=0.5)


def test_stats_json_counts_each_queue_and_shows_the_workers_and_the_dead_letter_limits(
    tq, broker, clock, redis_url, namespace, cli
):
    now = clock.ms
    clock.ms = now - 200_000
    bury(tq)
    bury(tq)
    finish(tq)
    retried = tq.enqueue("t", {})
    job = fetch_one(broker)
    assert (
        broker.fail(job, error("again", "RuntimeError"), final=False, delay=3600, max_retries=3)
        == "scheduled"
    )
    tq.enqueue("t", {}, delay=3600)
    activate(tq)
    clock.ms = now - 120_000
    tq.enqueue("t", {})  # the oldest pending task
    clock.ms = now - 5_000
    tq.enqueue("t", {})
    tq.enqueue("t", {})
    bury(tq, queue="emails")

    stats = ok_json(cli("stats", "--json"))

    assert {"queues", "workers", "limits"} <= stats.keys()
    default = stats["queues"]["default"]
    assert {f: default[f] for f in QUEUE_COUNT_FIELDS} == {
        "pending": 3,
        "scheduled": 2,
        "waiting": 0,
        "active": 1,
        "dead": 2,
        "processed": 4,
        "failed": 3,
    }
    assert 120 <= default["oldest_pending_age"] < 150, default["oldest_pending_age"]
    emails = stats["queues"]["emails"]
    assert {f: emails[f] for f in QUEUE_COUNT_FIELDS} == {
        "pending": 0,
        "scheduled": 0,
        "waiting": 0,
        "active": 0,
        "dead": 1,
        "processed": 1,
        "failed": 1,
    }
    assert emails["oldest_pending_age"] is None
    assert stats["workers"] == []
    assert stats["limits"] == {"dead_max": 100_000, "dead_ttl": 30 * 86400}
    assert tq.get_task(retried).state == "scheduled"

    only = ok_json(cli("stats", "--queue", "emails", "--json"))
    assert list(only["queues"]) == ["emails"]
    configured = cli(
        "stats", "--json", env=cli_env(redis_url, namespace, TASKQ_DEAD_MAX="500", TASKQ_DEAD_TTL="7d")
    )
    assert ok_json(configured)["limits"] == {"dead_max": 500, "dead_ttl": 7 * 86400}


def test_stats_in_a_pipe_prints_plain_aligned_columns_without_box_drawing(tq, cli):
    bury(tq, queue="emails")
    tq.enqueue("t", {})
    tq.enqueue("t", {})

    result = cli("stats")

    assert result.returncode == 0, result.stderr
    assert_plain(result.stdout)
    lines = result.stdout.splitlines()
    end = next((i for i, line in enumerate(lines) if i > 0 and line.startswith("id ")), len(lines))
    rows = {r["queue"]: r for r in plain_table(lines[:end], STATS_COLUMNS)}
    assert [rows["default"][f] for f in QUEUE_COUNT_FIELDS] == ["2", "0", "0", "0", "0", "0", "0"]
    assert [rows["emails"][f] for f in QUEUE_COUNT_FIELDS] == ["0", "0", "0", "0", "1", "1", "1"]
    assert rows["emails"]["oldest"] == "-"


@pytest.mark.parametrize(
    "args",
    [
        ["dlq", "list"],
        ["dlq", "retry", "--all"],
        ["dlq", "purge", "--all", "--yes"],
        ["task", "cancel", "some-id"],
        ["task", "list"],
        ["queue", "list"],
        ["queue", "pause", "default"],
        ["workers"],
        ["stats", "--json"],
    ],
    ids=" ".join,
)
def test_operating_commands_exit_1_with_one_line_when_redis_is_unreachable(args, namespace, cli):
    env = cli_env("redis://127.0.0.1:1/0", namespace)

    result = cli(*args, env=env, timeout=20)

    line = assert_one_error_line(result, 1)
    assert "redis" in line.lower()
    assert result.stdout == ""


def test_tables_are_drawn_by_rich_on_a_terminal(tq, terminal):
    ids = [bury(tq, "send_email"), bury(tq, "send_email", queue="emails")]

    term = terminal("dlq", "list")

    assert term.wait(15) == 0, term.text
    assert BOX_DRAWING.search(term.text), term.text
    # generated ids shortened as git shortens hashes (8 hex digits tell these two apart)
    assert all(task_id[:8] in term.text and task_id not in term.text for task_id in ids), term.text


def test_stats_watch_on_a_terminal_shows_live_counts_and_rates_and_exits_0_soon_after_ctrl_c(tq, terminal):
    for n in range(7):
        tq.enqueue("t", {"n": n}, queue="watched-a")
    bury(tq, queue="watched-b")
    bury(tq, queue="watched-b")

    term = terminal("stats", "--watch", "--interval", "0.2")
    term.read_until(lambda text: "watched-b" in text, timeout=10)
    term.read_for(0.8)
    first = screen_lines(term.text.split("\x1b[H")[-1] if "\x1b[H" in term.text else term.text)
    assert row_cells(first, "watched-a") is not None, "\n".join(first)
    for _ in range(3):
        bury(tq, queue="watched-b")  # three more failures while the view is live
    term.read_for(1.0)
    frames = [screen_lines(f) for f in term.text.split("\x1b[H") if "watched-b" in f]
    assert frames, term.text[-3000:]
    last = frames[-1]

    sent = time.monotonic()
    term.proc.send_signal(signal.SIGINT)
    code = term.wait(5)
    took = time.monotonic() - sent

    assert code == 0, term.text[-2000:]
    assert took < 3, took
    assert "Traceback" not in term.text
    header = row_cells(last, "queue")
    assert header is not None and "done/min" in header and "failed/min" in header, "\n".join(last)
    cells_a = row_cells(last, "watched-a")
    cells_b = row_cells(last, "watched-b")
    assert cells_a is not None and cells_b is not None, "\n".join(last)
    assert cells_a[1:8] == ["7", "0", "0", "0", "0", "0", "0"], cells_a  # pending ... waiting ... failed
    assert cells_b[1:8] == ["0", "0", "0", "0", "5", "5", "5"], cells_b
    done_rate, failed_rate = cells_b[-2:]
    assert done_rate == "0", cells_b
    assert failed_rate.isdigit() and int(failed_rate) > 0, cells_b


def test_stats_watch_in_a_pipe_prints_plain_text_with_whole_queue_names_and_exits_0_on_sigint(
    tq, redis_url, namespace
):
    for n in range(3):
        tq.enqueue("t", {"n": n}, queue="invoices-eu-west")
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskq_cli", "stats", "--watch", "--interval", "0.2"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=cli_env(redis_url, namespace),
        start_new_session=True,
    )
    head = b""

    def screens() -> int:
        """Screens printed so far (each names the queue): read without blocking."""
        nonlocal head
        assert proc.stdout is not None
        if select.select([proc.stdout], [], [], 0)[0]:
            head += os.read(proc.stdout.fileno(), 65536)
        return head.count(b"invoices-eu-west")

    try:
        until(lambda: screens() >= 2 or proc.poll() is not None, 20, what="two screens")
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=5)
        out = head.decode() + rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=5)

    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "invoices-eu-west" in out, out
    assert_plain(out)


def test_a_task_retried_from_the_dead_letter_queue_counts_as_waiting_since_its_retry_in_stats(
    tq, broker, clock, cli
):
    real_now = clock.ms
    clock.ms = real_now - 2 * 3600_000
    task_id = bury(tq)  # enqueued and dead two hours ago
    clock.ms = real_now

    assert cli("dlq", "retry", task_id).returncode == 0

    age = ok_json(cli("stats", "--json"))["queues"]["default"]["oldest_pending_age"]
    assert age is not None and age < 60, f"pending for {age}s just after its retry from the DLQ"


# -- worker options ------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", ["0", "-1"])
def test_a_worker_concurrency_below_one_is_refused_as_bad_usage(tq, raw, namespace, cli, concurrency):
    tq.enqueue("ok", {})

    result = cli("worker", "--app", APP, "--burst", "--pool", "threads", "--concurrency", concurrency)

    assert assert_one_error_line(result, 2) == "taskq: error: --concurrency must be at least 1"
    assert runs(raw, namespace) == []


# -- output that cannot be written -------------------------------------------------------------------


def run_into(stdout: int, args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`taskq ARGS` writing to the file descriptor `stdout` (stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "taskq_cli", *args],
        stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
        text=True, cwd=ROOT, env=env, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("typer_path", [False, True], ids=["dlq list", "taskq --help"])
def test_a_reader_that_went_away_ends_the_command_quietly(tq, redis_url, namespace, typer_path):
    # Given more dead tasks than one write buffer holds, and a pipe whose reader has already gone, as
    # after `taskq dlq list | head -1`
    for n in range(100):
        bury(tq, f"t{n}")
    read_end, write_end = os.pipe()
    os.close(read_end)
    args = ["--help"] if typer_path else ["dlq", "list", "--limit", "100"]
    try:
        result = run_into(write_end, args, cli_env(redis_url, namespace))
    finally:
        os.close(write_end)

    assert result.stderr == ""  # no "Exception ignored", no traceback, no error line
    assert result.returncode == 1  # the output is incomplete; Click ends `--help` so too


def test_dlq_list_into_a_full_device_is_one_error_line(tq, redis_url, namespace):
    bury(tq)
    with open("/dev/full", "w") as full:
        result = run_into(full.fileno(), ["dlq", "list"], cli_env(redis_url, namespace))

    assert result.returncode == 1
    assert result.stderr.startswith("taskq: error: cannot write to stdout: ")
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(
    ("setting", "ellipsis"), [({"PYTHONIOENCODING": "ascii"}, "..."), ({"LANG": "C", "LC_ALL": "C"}, "…")]
)
def test_plain_output_in_an_ascii_or_c_locale_is_written_without_an_error(
    tq, redis_url, namespace, cli, setting, ellipsis
):
    bury(tq, failure=error("x" * 100, "RuntimeError"))  # long: its first line is cut with an ellipsis

    result = cli("dlq", "list", env=cli_env(redis_url, namespace, **setting))

    assert (result.returncode, result.stderr) == (0, "")
    assert re.search(f"RuntimeError: x+{re.escape(ellipsis)}$", result.stdout, re.MULTILINE), result.stdout


# -- the options that apply to a task ---------------------------------------------------------------


def test_task_show_gives_the_max_retries_and_timeout_that_apply_and_where_they_come_from(cli):
    plain = cli("enqueue", "boom").stdout.strip()  # no options given, the producer not knowing the task
    given = cli("enqueue", "boom", "--max-retries", "5", "--timeout", "45s").stdout.strip()

    without_app = ok_json(cli("task", "show", plain, "--json"))
    with_app = ok_json(cli("task", "show", plain, "--json", "--app", APP))  # boom: max_retries=2
    explicit = ok_json(cli("task", "show", given, "--json", "--app", APP))
    table = cli("task", "show", plain, "--app", APP)

    def options(shown: dict[str, Any]) -> tuple[Any, ...]:
        return shown["max_retries"], shown["timeout"], shown["options_source"]

    assert options(without_app) == (3, 600, {"max_retries": "default", "timeout": "default"})
    assert options(with_app) == (2, 600, {"max_retries": "handler", "timeout": "default"})
    assert options(explicit) == (5, 45, {"max_retries": "enqueue", "timeout": "enqueue"})
    assert without_app.keys() >= SPEC_TASK_FIELDS
    assert "max_retries: 2 (handler)\n" in table.stdout and "timeout: 600 (default)\n" in table.stdout
    assert "options_source" not in table.stdout
