"""The README and docs/ as a user meets them: the tour's files run as written, importing the handlers
writes nothing, every link points at a file of the repository, and the command reference is what the
CLI generates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import redis

from taskq_cli import TaskQueue
from taskq_cli.admin import Admin
from tests.conftest import ROOT, cli_env

FILE_BLOCK = re.compile(r"```python\n# (\w+\.py)[^\n]*\n(.*?)```", re.S)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tour_files() -> dict[str, str]:
    """The README's code blocks that start with `# <file>.py`, by file name."""
    return {name: body for name, body in FILE_BLOCK.findall((ROOT / "README.md").read_text())}


def run_in(folder: Path, args: list[str], redis_url: str, namespace: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(redis_url, namespace)
    env["PYTHONPATH"] = f"{folder}:{env['PYTHONPATH']}"
    return subprocess.run(
        [sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def keys_of(raw: redis.Redis, namespace: str) -> list[str]:
    return list(raw.scan_iter(match=f"{namespace}:*"))


def test_the_tour_has_handlers_and_a_producer_in_files_of_their_own() -> None:
    assert {"tasks.py", "producer.py"} <= set(tour_files())


def test_importing_the_tours_handlers_writes_nothing(
    tmp_path: Path, redis_url: str, namespace: str, raw: redis.Redis
) -> None:
    # Given the tour's tasks.py, as every worker and every --app command imports it
    for name, body in tour_files().items():
        (tmp_path / name).write_text(body)
    # When it is imported, and when a command with --app is refused for a bad payload
    imported = run_in(tmp_path, ["-c", "import tasks"], redis_url, namespace)
    refused = run_in(
        tmp_path,
        ["-m", "taskq_cli", "--app", "tasks", "enqueue", "send_email", '{"to": 1}'],
        redis_url,
        namespace,
    )
    # Then nothing at all is written
    assert imported.returncode == 0, imported.stderr
    assert refused.returncode == 2, refused.stderr
    assert keys_of(raw, namespace) == []


def test_the_tours_producer_enqueues_and_a_burst_worker_runs_it(
    tmp_path: Path, redis_url: str, namespace: str, tq: TaskQueue
) -> None:
    admin = Admin(tq.broker)
    for name, body in tour_files().items():
        (tmp_path / name).write_text(body)
    produced = run_in(tmp_path, ["producer.py"], redis_url, namespace)
    assert produced.returncode == 0, produced.stderr
    assert len(admin.list_tasks("default", "pending", 10)) == 3
    assert len(admin.list_tasks("default", "scheduled", 10)) == 1
    worked = run_in(
        tmp_path,
        ["-m", "taskq_cli", "worker", "--app", "tasks", "--burst", "--pool", "threads"],
        redis_url,
        namespace,
    )
    assert worked.returncode == 0, worked.stderr
    done = [t for t in admin.list_tasks("default", "done", 10) if t.name == "send_email"]
    assert {t.result["sent"] for t in done} == {"a@example.com", "c@example.com"}


def test_every_relative_link_in_the_docs_points_at_a_file_of_the_repository() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (page.parent / target).resolve()
            if not path.exists() or ROOT not in path.parents:
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_the_command_reference_is_what_the_cli_generates() -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_commands.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    ).stdout
    committed = (ROOT / "docs" / "commands.md").read_text()
    assert committed == generated, "regenerate: python tools/gen_commands.py > docs/commands.md"
