"""examples/middleware.py: the audit log and the error reporter, producer in this process and a real
burst worker running the example app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, cli_env


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_audit_log_follows_the_actor_to_the_worker_and_errors_are_reported(
    redis_url: str, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examples import middleware as example

    audit, errors = tmp_path / "audit.jsonl", tmp_path / "errors.jsonl"
    monkeypatch.setenv("TASKQ_EXAMPLE_AUDIT", str(audit))
    monkeypatch.setenv("TASKQ_EXAMPLE_ERRORS", str(errors))
    example.tq.configure(redis_url=redis_url, namespace=namespace)
    try:
        with example.acting_as("alice"):
            paid = example.charge.enqueue(customer="acme", cents=1200)
            refused = example.charge.enqueue(customer="acme", cents=0)
        crm = example.sync_crm.enqueue(customer="globex")  # by the system
    finally:
        example.tq.close()

    env = cli_env(redis_url, namespace, TASKQ_EXAMPLE_AUDIT=str(audit), TASKQ_EXAMPLE_ERRORS=str(errors))
    worker = subprocess.run(
        [sys.executable, "-m", "taskq_cli", "worker", "--app", "examples.middleware", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr

    events = {(e["id"], e["event"]): e for e in lines(audit)}
    assert events[paid, "enqueued"]["actor"] == events[paid, "ran"]["actor"] == "alice"
    assert events[paid, "ran"]["status"] == "done"
    assert events[refused, "ran"]["status"] == "dead"
    assert events[crm, "ran"]["actor"] == "system"
    reported = {e["id"]: e for e in lines(errors)}
    assert set(reported) == {refused, crm}
    assert reported[refused]["error"] == "Fail: cannot charge 0 cents"
    assert reported[refused]["actor"] == "alice"
    assert reported[crm]["error"] == "ConnectionError: CRM refused the connection"
    assert "Traceback" in reported[crm]["traceback"]
