"""Every table rendered at 80 and 160 columns with Rich's recording console, from fixed data and a
fixed clock, compared with tests/snapshots/. TASKQ_UPDATE_SNAPSHOTS=1 writes them anew (then read
the diff). Beyond the snapshot, the 80-column promises are checked directly: nothing wider than
80, ids never cut or wrapped, names whole."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from taskq_cli.cli import cron, dlq, doctor, output, queues, stats, tables, tasks
from taskq_cli.cli.tables import TableView, footer
from taskq_cli.services.shapes import StatsAnswer, WorkerDoc

SNAPSHOTS = Path(__file__).parent / "snapshots"
NOW = datetime(2026, 12, 4, 16, 0, tzinfo=UTC).timestamp()  # the clock every snapshot is rendered at
ISO = "2026-12-04T{}Z"
UPDATE = os.environ.get("TASKQ_UPDATE_SNAPSHOTS") == "1"

IDS = [
    "3f2a9c0d1e2b4c5d8e9f0a1b2c3d4e5f",
    "3f2a9c0d7777aaaa8e9f0a1b2c3d4e5f",  # shares 8 hex digits with the first: both show 9
    "b71e44aa09c24e1f9a3d5c6b7e8f9012",
    "order-2026-0001",  # a custom id, shown whole
]
ERROR = {"type": "SMTPServerDisconnected", "message": "Connection unexpectedly closed by smtp.example.org"}


def _task(i: int, task_id: str, name: str, queue: str = "default") -> dict[str, Any]:
    return {
        "id": task_id,
        "name": name,
        "queue": queue,
        "state": "scheduled",
        "attempts": i,
        "enqueued_at": ISO.format(f"15:{10 + i}:07.013"),
        "run_at": ISO.format(f"{17 + i}:58:46.013"),
        "died_at": ISO.format(f"15:5{i}:46.013"),
        "last_error": ERROR if i else None,
    }


TASKS = [
    _task(0, IDS[0], "send_email"),
    _task(1, IDS[1], "send_email", "emails"),
    _task(2, IDS[2], "generate_monthly_invoice_pdf", "invoices-eu-west"),
    _task(3, IDS[3], "charge_card", "payments"),
]

STATS = StatsAnswer.model_validate(
    {
        "queues": {
            "default": {
                "pending": 4210,
                "scheduled": 12,
                "active": 3,
                "dead": 57,
                "processed": 1_234_567,
                "failed": 890,
                "oldest_pending_age": 272.5,
                "paused": False,
            },
            "invoices-eu-west": {
                "pending": 0,
                "scheduled": 1,
                "active": 0,
                "dead": 2,
                "processed": 81,
                "failed": 2,
                "oldest_pending_age": None,
                "paused": True,
            },
        },
        "workers": [],
        "limits": {"dead_max": 10_000, "dead_ttl": 7 * 86400},
    }
)
WORKERS = [
    WorkerDoc.model_validate(
        {
            "id": "build-host-01:48213:9f2c1a",
            "host": "build-host-01",
            "pid": 48213,
            "queues": ["default", "emails"],
            "concurrency": 16,
            "started_at": ISO.format("09:00:00.000"),
            "heartbeat_at": ISO.format("15:59:58.000"),
            "pool": "threads",
            "active": [
                {
                    "id": IDS[0],
                    "name": "send_email",
                    "queue": "default",
                    "started_at": ISO.format("15:59:01.000"),
                }
            ],
        }
    )
]
SCHEDULES = [
    {
        "name": "nightly-report",
        "schedule": "30 2 * * *",
        "tz": "Europe/Berlin",
        "task": "build_report",
        "queue": "default",
        "paused": False,
        "next_run": ISO.format("01:30:00.000").replace("12-04", "12-05"),
        "last_run": ISO.format("01:30:00.000"),
        "last_task_id": IDS[2],
        "last_task_state": "done",
    }
]
FINDINGS = [
    ("redis", "ok", "Redis 7.2.4, 1.2 MB used", "-"),
    ("maxmemory-policy", "fail", "allkeys-lru evicts task records", "CONFIG SET maxmemory-policy noeviction"),
]

TABLES: dict[str, TableView] = {
    "stats": TableView("queues", stats.QUEUE_COLUMNS, stats.queue_rows(STATS)),
    "workers": TableView("workers (1)", stats.WORKER_COLUMNS, stats.worker_rows(WORKERS)),
    "task-list": TableView(
        "scheduled tasks in default", tasks.TASK_COLUMNS, tasks.task_rows(TASKS), footer(4, 0, 4210)
    ),
    "dlq-list": TableView("dead tasks", dlq.DLQ_COLUMNS, dlq.dlq_rows(TASKS), footer(4, 0, 57)),
    "queue-list": TableView(
        "queues",
        (*queues.QUEUE_COLUMNS, queues.LIMITS),
        queues.queue_rows([{"name": n, **q.model_dump()} for n, q in STATS.queues.items()]),
    ),
    "cron-list": TableView("schedules", cron.CRON_COLUMNS, cron.cron_rows(SCHEDULES)),
    "doctor": TableView("taskq doctor: namespace taskq", doctor.COLUMNS, FINDINGS),
}


def render(view: TableView, width: int) -> str:
    with open(os.devnull, "w") as sink:
        console = Console(record=True, width=width, color_system=None, file=sink)
        console.print(output.render_table(view, width, NOW))
    return console.export_text()


@pytest.mark.parametrize("width", [80, 160])
@pytest.mark.parametrize("name", TABLES)
def test_each_table_matches_its_snapshot(name: str, width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "clock", lambda: NOW)
    check_snapshot(f"{name}-{width}", render(TABLES[name], width))


def check_snapshot(name: str, text: str) -> None:
    """`text` is tests/snapshots/NAME.txt (written when missing or with TASKQ_UPDATE_SNAPSHOTS=1)."""
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs (TASKQ_UPDATE_SNAPSHOTS=1 rewrites it):\n{text}"


@pytest.mark.parametrize("name", TABLES)
def test_at_80_columns_nothing_is_wider_and_ids_and_names_are_whole(name: str) -> None:
    text = render(TABLES[name], 80)
    lines = text.splitlines()

    assert max(len(line) for line in lines) <= 80, text
    view = TABLES[name]
    assert all(c.header in lines[1] for c in view.cols if c.from_width <= 80 and c.kind != "text"), text
    for row in TABLES[name].rows:
        for column, value in zip(TABLES[name].cols, row, strict=True):
            if column.from_width > 80 or value is None:
                continue
            if column.kind == "id":
                shown = tables.shortened([str(value)]).get(str(value), str(value))
                assert any(shown in line for line in lines), (shown, text)
            if column.kind == "name" and len(str(value)) <= tables.NAME_MAX:
                assert any(str(value) in line for line in lines), (value, text)


def test_generated_ids_are_shortened_to_the_shortest_prefix_that_tells_apart_those_shown() -> None:
    short = tables.shortened(IDS)

    assert short[IDS[0]] == IDS[0][:9] and short[IDS[1]] == IDS[1][:9]
    assert IDS[3] not in short  # custom ids are shown whole
    assert tables.shortened([IDS[2]]) == {IDS[2]: IDS[2][:8]}


def test_times_in_tables_read_relative_to_now_and_durations_in_two_units() -> None:
    assert tables.relative(ISO.format("15:57:00.000"), NOW) == "3m ago"
    assert tables.relative(ISO.format("18:00:00.000"), NOW) == "in 2h"
    assert tables.relative(None, NOW) == "-"
    assert tables.duration(272.5) == "4m32s"
    assert tables.duration(7 * 86400) == "7d"
    assert tables.duration(3.25) == "3.2s"


def test_a_cut_list_says_how_much_is_shown_of_how_many() -> None:
    assert footer(12, 0, 4210) == "12 of 4,210 shown; --limit/--offset for more"
    assert footer(12, 24, 4210) == "25-36 of 4,210 shown; --limit/--offset for more"
    assert footer(3, 0, 3) is None


def test_a_generated_id_inside_text_is_shortened_on_a_terminal_and_whole_in_a_pipe() -> None:
    view = TableView("workers (1)", stats.WORKER_COLUMNS, stats.worker_rows(WORKERS))

    assert f"send_email {IDS[0][:8]} " in render(view, 80)
    assert any(f"send_email {IDS[0]}" in line for line in tables.plain_lines(view))
