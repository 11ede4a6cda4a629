"""docs/alerting.md's rules, checked by promtool (Debian's prometheus package ships it): they load,
and the main ones fire on made-up series (`promtool test rules`); docs/grafana-dashboard.json asks
only for metrics taskq exports. (tests/test_metrics.py runs the dashboard's queries on a real
Prometheus.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

RULES = re.compile(r"```yaml\n(groups:.*?)```", re.S)
UNIT_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'taskq_queue_oldest_pending_age_seconds{queue="mail"}'
        values: '0+60x20'
      - series: 'taskq_queue_oldest_pending_age_seconds{queue="reports"}'
        values: '0x20'
      - series: 'taskq_queue_tasks{queue="mail",state="dead"}'
        values: '0+2x20'
      - series: 'taskq_queue_tasks{queue="mail",state="pending"}'
        values: '5x20'
      - series: 'taskq_workers'
        values: '0x20'
    alert_rule_test:
      - eval_time: 15m
        alertname: TaskqQueueBacklogOld
        exp_alerts:
          - exp_labels: {severity: warning, queue: mail}
            exp_annotations:
              summary: "taskq queue mail: oldest pending task waits 15m 0s"
              description: "Add workers or look for stuck ones: taskq stats --queue mail"
      - eval_time: 15m
        alertname: TaskqDeadLetterGrowing
        exp_alerts:
          - exp_labels: {severity: warning, queue: mail}
            exp_annotations:
              summary: "taskq queue mail: 30 more dead tasks in 15 minutes"
              description: "See why: taskq dlq list --queue mail; taskq dlq show ID"
      - eval_time: 1m
        alertname: TaskqNoWorkers
        exp_alerts: []
      - eval_time: 5m
        alertname: TaskqNoWorkers
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "taskq: tasks are pending and no worker is alive"
"""


def rules_file(folder: Path) -> Path:
    [block] = RULES.findall((ROOT / "docs" / "alerting.md").read_text())
    path = folder / "rules.yml"
    path.write_text(block)
    return path


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("no promtool on PATH (Debian: apt install prometheus; .ci/run installs it)")
    return found


def test_the_alert_rules_load_and_fire_on_a_stuck_queue_a_growing_dlq_and_no_workers(tmp_path: Path) -> None:
    tool = promtool()
    rules = rules_file(tmp_path)
    command = [tool, "check", "rules", str(rules)]
    checked = subprocess.run(command, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp_path / "tests.yml").write_text(UNIT_TESTS)
    tested = subprocess.run(
        [tool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


EXPORTED = {
    "taskq_tasks_total",
    "taskq_task_duration_seconds_bucket",
    "taskq_task_wait_seconds_bucket",
    "taskq_tasks_running",
    "taskq_queue_tasks",
    "taskq_queue_oldest_pending_age_seconds",
    "taskq_queue_processed_total",
    "taskq_queue_failed_total",
    "taskq_workers",
}


def dashboard_queries() -> list[str]:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_dashboard_shows_depth_throughput_failures_and_percentiles_of_exported_metrics() -> None:
    queries = dashboard_queries()
    used = {name for q in queries for name in re.findall(r"\b(taskq_\w+)", q)}
    assert used <= EXPORTED, used - EXPORTED
    joined = "\n".join(queries)
    for wanted in ('state="pending"', "taskq_tasks_total", 'outcome=~"retry|dead"', "histogram_quantile"):
        assert wanted in joined
    assert {"taskq_task_wait_seconds_bucket", "taskq_task_duration_seconds_bucket"} <= used
