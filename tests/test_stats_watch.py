"""`taskq stats --watch` as a live dashboard: queues with a throughput sparkline, workers, the
dead-letter queue's newest entries; each frame laid out at the terminal's width of the moment (a
pty resized while it runs gets a fitting frame). Snapshots of the dashboard at 80 and 160 columns
with fixed data and a fixed clock. (The Redis outage line: tests/chaos/test_redis_errors.py.)"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios

import pytest
from rich.console import Console

from taskq_cli import TaskQueue
from taskq_cli.cli import output, stats
from taskq_cli.cli.watch import BUCKET, Frame, Throughput, dashboard
from taskq_cli.services.shapes import StatsAnswer
from tests.conftest import cli_env
from tests.test_operating import Terminal, bury, screen_lines
from tests.test_table_snapshots import NOW, TASKS, WORKERS, check_snapshot

QUEUE = "invoices-eu-west-2"


def test_the_dashboard_shows_queues_workers_and_the_newest_dead_tasks_and_fits_a_resized_terminal(
    tq: TaskQueue, redis_url: str, namespace: str
) -> None:
    # Given a dashboard on a 160-column terminal, showing a queue and a dead task
    tq.enqueue("t", {}, queue=QUEUE)
    dead = bury(tq, "send_email", queue="emails")
    term = Terminal(["stats", "--watch", "--interval", "0.2"], cli_env(redis_url, namespace), cols=160)
    try:
        term.read_until(lambda text: "dead letters" in text and dead[:8] in text, timeout=15)

        # When the terminal shrinks to 80 columns (the kernel's SIGWINCH, sent by hand: no
        # controlling terminal here)
        fcntl.ioctl(term.master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 80, 0, 0))
        os.kill(term.proc.pid, signal.SIGWINCH)
        mark = len(term.data)
        term.read_until(lambda text: text[mark:].count("\x1b[H") >= 3, timeout=10)

        # Then the next frames fit 80 columns, with the queue name and the dead task's id whole
        frames = [screen_lines(f) for f in term.text[mark:].split("\x1b[H")[1:-1]]
        assert frames, term.text[-3000:]
        last = frames[-1]
        assert max(len(line) for line in last) <= 80, "\n".join(last)
        assert any(QUEUE in line for line in last), "\n".join(last)
        assert any(dead[:8] in line for line in last), "\n".join(last)
        assert term.proc.poll() is None
    finally:
        term.close()


def _stats(processed: int) -> StatsAnswer:
    queue = {"pending": 4210, "scheduled": 12, "active": 3, "dead": 57, "failed": 890}
    return StatsAnswer.model_validate(
        {
            "queues": {
                QUEUE: {**queue, "processed": processed, "oldest_pending_age": 272.5, "paused": False}
            },
            "workers": [w.model_dump(mode="json") for w in WORKERS],
            "limits": {"dead_max": 10_000, "dead_ttl": 7 * 86400},
        }
    )


def _throughput() -> Throughput:
    """Four minutes of samples: a burst, a lull, a steady flow."""
    throughput = Throughput()
    processed = 1_000_000
    for step, done in enumerate([0, 50, 400, 380, 10, 0, 0, 120, 130, 125, 140, 135, 150]):
        processed += done
        throughput.add(NOW - BUCKET * (12 - step), _stats(processed))
    return throughput


@pytest.mark.parametrize("width", [80, 160])
def test_the_dashboard_matches_its_snapshot(width: int) -> None:
    parts = dashboard(Frame(_stats(1_001_640), TASKS[:3]), _throughput(), NOW, stats.workers_table)

    with open(os.devnull, "w") as sink:
        console = Console(record=True, width=width, color_system=None, file=sink)
        console.print(output.render_parts(parts, width, NOW))
    text = console.export_text()

    check_snapshot(f"watch-{width}", text)
    assert max(len(line) for line in text.splitlines()) <= width, text


def test_the_sparkline_scales_each_bucket_to_the_busiest_one() -> None:
    line = _throughput().sparkline(QUEUE, NOW)

    assert len(line) == 12 and line[1] == "█" and line[5] == "▁", line
