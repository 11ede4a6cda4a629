"""The README and the docs site as a user meets them: the site builds with `mkdocs build --strict`,
every Python sample is a file under examples/ that a test here runs (or sits on a page whose blocks
are run in place), every `taskq` command shown parses against the CLI, every link points at a file
of the repository, and the generated references (commands, HTTP API) are what the code generates."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.admin import Admin
from tests.conftest import ROOT, cli_env
from tests.support import kill_group, popen_taskq
from tests.support.cli_lines import parse_error, taskq_commands

DOCS = ROOT / "docs"
TOUR = ROOT / "examples" / "tour"
# Pages whose ```python blocks are not includes: test_pages_tested_in_place_run_as_written runs
# them (the first block, headed `# <file>.py`, is written as that file; the others run in order).
PAGES_TESTED_IN_PLACE = {"flow-control.md"}
PYTHON_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
INCLUDE = re.compile(r'^--8<-- "([^":]+)(?::[\w-]+)?"$')
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "examples" / "README.md", *sorted(DOCS.glob("*.md"))]


def run_in(folder: Path, args: list[str], redis_url: str, namespace: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(redis_url, namespace, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = f"{folder}:{env['PYTHONPATH']}"
    return subprocess.run(
        [sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def keys_of(raw: redis.Redis, namespace: str) -> list[str]:
    return list(raw.scan_iter(match=f"{namespace}:*"))


# -- the site -------------------------------------------------------------------------------------


def test_the_site_builds_with_no_warning(tmp_path: Path) -> None:
    # strict: a broken link, a missing include, a page left out of the nav or a docstring the
    # library reference cannot render fails the build
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    library = (tmp_path / "site" / "library" / "index.html").read_text()
    assert "taskq_cli.TaskQueue.enqueue" in library  # mkdocstrings rendered the docstrings


def test_every_python_sample_is_an_included_example_or_runs_in_place() -> None:
    loose = []
    for page in pages():
        if page.name in PAGES_TESTED_IN_PLACE:
            continue
        for body in PYTHON_BLOCK.findall(page.read_text()):
            lines = body.strip().splitlines()
            files = [m.group(1) for line in lines if (m := INCLUDE.match(line.strip()))]
            if len(files) != len(lines) or not all(f.startswith("examples/") for f in files):
                loose.append(f"{page.relative_to(ROOT)}: {lines[0] if lines else '(empty)'}")
            loose += [f"{page.relative_to(ROOT)}: {f} is missing" for f in files if not (ROOT / f).is_file()]
    assert loose == [], "put the sample in examples/ and include it with --8<--"


def test_every_taskq_command_shown_parses_against_the_cli() -> None:
    errors, seen = [], 0
    for page in pages():
        for args in taskq_commands(page.read_text()):
            seen += 1
            if (error := parse_error(args)) is not None:
                errors.append(f"{page.relative_to(ROOT)}: {error}")
    assert errors == []
    assert seen > 50  # the pages' shell blocks were found at all


def test_getting_started_shows_the_readmes_two_commands_as_they_are() -> None:
    first_block = re.compile(r"```bash\n(.*?)```", re.S)
    readme = first_block.search((ROOT / "README.md").read_text())
    started = first_block.search((DOCS / "getting-started.md").read_text())
    assert readme and started and readme.group(1) == started.group(1)
    assert len((ROOT / "README.md").read_text()) < 6000  # a first visit; the rest is in docs/


def test_every_relative_link_in_the_docs_points_at_a_file_of_the_repository() -> None:
    broken = []
    for page in pages():
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (page.parent / target).resolve()
            if not path.exists() or ROOT not in path.parents:
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


@pytest.mark.parametrize(
    ("tool", "page"), [("gen_commands.py", "commands.md"), ("gen_openapi.py", "openapi.md")]
)
def test_the_generated_references_are_what_the_code_generates(tool: str, page: str) -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "tools" / tool)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    ).stdout
    assert (DOCS / page).read_text() == generated, f"regenerate: python tools/{tool} > docs/{page}"


# -- the examples the pages include ---------------------------------------------------------------


def test_importing_the_tours_handlers_writes_nothing(
    redis_url: str, namespace: str, raw: redis.Redis
) -> None:
    # Given the tour's tasks.py, as every worker and every --app command imports it
    # When it is imported, and when a command with --app is refused for a bad payload
    imported = run_in(TOUR, ["-c", "import tasks"], redis_url, namespace)
    refused = run_in(
        TOUR,
        ["-m", "taskq_cli", "--app", "tasks", "enqueue", "send_email", '{"to": 1}'],
        redis_url,
        namespace,
    )
    # Then nothing at all is written
    assert imported.returncode == 0, imported.stderr
    assert refused.returncode == 2, refused.stderr
    assert keys_of(raw, namespace) == []


def test_the_tours_producer_enqueues_and_a_burst_worker_runs_it(
    redis_url: str, namespace: str, tq: TaskQueue
) -> None:
    admin = Admin(tq.broker)
    produced = run_in(TOUR, ["producer.py"], redis_url, namespace)
    assert produced.returncode == 0, produced.stderr
    assert len(admin.list_tasks("default", "pending", 10)) == 3
    assert len(admin.list_tasks("default", "scheduled", 10)) == 1
    worked = run_in(
        TOUR,
        ["-m", "taskq_cli", "worker", "--app", "tasks", "--burst", "--pool", "threads"],
        redis_url,
        namespace,
    )
    assert worked.returncode == 0, worked.stderr
    done = [t for t in admin.list_tasks("default", "done", 10) if t.name == "send_email"]
    assert {t.result["sent"] for t in done} == {"a@example.com", "c@example.com"}


def test_the_tours_result_and_async_producer_get_their_results_from_a_worker(
    redis_url: str, namespace: str
) -> None:
    env = cli_env(redis_url, namespace, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = f"{TOUR}:{env['PYTHONPATH']}"
    worker = popen_taskq(
        ["worker", "--app", "tasks", "--pool", "threads", "--concurrency", "2"],
        env,
        output=subprocess.DEVNULL,
    )
    try:
        waited = run_in(TOUR, ["result.py"], redis_url, namespace)
        awaited = run_in(TOUR, ["async_producer.py"], redis_url, namespace)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        kill_group(worker.pid)  # its pool's threads and anything left, whatever happened
    assert waited.returncode == 0 and waited.stdout == "{'sent': 'd@example.com'}\n", waited.stderr
    assert awaited.returncode == 0, awaited.stderr
    assert awaited.stdout.startswith("{'sent': 'e@example.com'}\nlater: ")


def test_the_api_mounted_in_an_app_of_ones_own_answers_with_its_token(redis_url: str, namespace: str) -> None:
    code = (
        "from fastapi.testclient import TestClient\n"
        "from web import web\n"
        "client = TestClient(web, base_url='http://localhost')\n"
        "print(client.get('/taskq/healthz').status_code, client.get('/taskq/stats').status_code,\n"
        "      client.get('/taskq/stats', headers={'Authorization': 'Bearer s3cret'}).status_code)\n"
    )
    answered = run_in(TOUR, ["-c", code], redis_url, namespace)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.split() == ["200", "401", "200"]


def test_the_periodic_example_stores_its_schedules(redis_url: str, namespace: str) -> None:
    examples = ROOT / "examples"
    stored = run_in(examples, ["-c", "import periodic; periodic.tq.sync_schedules()"], redis_url, namespace)
    listed = run_in(examples, ["-m", "taskq_cli", "cron", "list", "-o", "jsonl"], redis_url, namespace)
    assert stored.returncode == 0, stored.stderr
    assert listed.returncode == 0, listed.stderr
    assert '"build_report"' in listed.stdout and '"heartbeat"' in listed.stdout
    assert "Europe/Berlin" in listed.stdout and "every 30s" in listed.stdout


def test_the_durable_example_tries_again_and_never_adds_the_task_twice(
    redis_url: str, namespace: str, tq: TaskQueue
) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from durable import charge
    finally:
        sys.path.remove(str(ROOT / "examples"))
    from taskq_cli.protocol import NotReplicated

    tq.broker.durable_timeout = 0.05  # the test's Redis has no replica: each try is refused fast
    try:
        task_id = charge(tq, 42, tries=3)
    except NotReplicated:
        task_id = "charge-42"  # written to the primary, three times asked, once added
    task = tq.get_task(task_id)
    assert task is not None and task.payload == {"order": 42}
    assert len(Admin(tq.broker).list_tasks("default", "pending", 10)) == 1


def test_pages_tested_in_place_run_as_written(tmp_path: Path, redis_url: str, namespace: str) -> None:
    for name in sorted(PAGES_TESTED_IN_PLACE):
        blocks = PYTHON_BLOCK.findall((DOCS / name).read_text())
        module = re.match(r"# (\w+\.py)\n", blocks[0])
        assert module, f"{name}: the first block names its file (# <file>.py)"
        (tmp_path / module.group(1)).write_text(blocks[0])
        for block in blocks[1:]:
            done = run_in(tmp_path, ["-c", block], redis_url, namespace)
            assert done.returncode == 0, (name, block, done.stderr)


def test_the_profiles_sample_gives_the_config_show_answer_the_reference_prints(tmp_path: Path) -> None:
    # Given the reference's config.toml, as written
    page = (DOCS / "reference.md").read_text()
    toml = re.search(r"```toml\n(.*?)```", page, re.S)
    shown = re.search(r"^\$ taskq (--profile prod config show -o json)\n(.*)$", page, re.M)
    assert toml and shown
    (tmp_path / "taskq").mkdir()
    (tmp_path / "taskq" / "config.toml").write_text(toml.group(1))
    env = {k: v for k, v in cli_env("redis://unused", "unused").items() if not k.startswith("TASKQ_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    # When the page's command runs (it reads the settings only: no Redis needed)
    done = subprocess.run(
        [sys.executable, "-m", "taskq_cli", *shown.group(1).split()],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it prints what the page shows
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == shown.group(2)
