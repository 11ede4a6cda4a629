"""The deployment files docs/production.md shows: docker-compose.yml, the Dockerfile and the systemd
units of examples/deploy/. `docker compose config` validates the compose file where Docker Compose is
installed; everywhere, each taskq command they run parses against the CLI, and the compose file's
services run for real as local processes (two workers, the scheduler, the API) on the test's Redis:
a task enqueued through the API with the token is done, and every process stops gracefully."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from taskq_cli.timeparse import parse_duration
from tests.conftest import ROOT, cli_env
from tests.support import Procs, free_port, until
from tests.support.cli_lines import parse_error

yaml = pytest.importorskip("yaml")  # PyYAML comes with MkDocs (the dev extra)
TASKQ_SERVICES = ("worker", "scheduler", "api")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def compose_command() -> tuple[list[str], str]:
    """`docker compose` (the plugin), else `docker-compose` (the standalone program), else why not."""
    reasons = []
    if shutil.which("docker") is not None:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"], ""
        reasons.append(f"`docker compose version` failed: {probe.stderr.strip()[:120]}")
    else:
        reasons.append("docker is not installed")
    if shutil.which("docker-compose") is not None:
        return ["docker-compose"], ""
    return [], "; ".join([*reasons, "no docker-compose either"])


def test_docker_compose_accepts_the_compose_file() -> None:
    command, reason = compose_command()
    if not command:
        pytest.skip(reason)
    checked = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        env={**cli_env("redis://unused", "unused"), "TASKQ_API_TOKEN": "t"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_the_compose_file_runs_redis_two_workers_the_scheduler_and_the_api() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", *TASKQ_SERVICES}
    assert services["worker"]["deploy"]["replicas"] == 2
    redis_args = services["redis"]["command"]
    assert (
        "--appendonly" in redis_args
        and redis_args[redis_args.index("--maxmemory-policy") + 1] == "noeviction"
    )
    for name in TASKQ_SERVICES:
        service = services[name]
        assert service["init"] is True and service["build"] == "."
        assert parse_error(service["command"]) is None, parse_error(service["command"])
    worker = services["worker"]["command"]
    grace = parse_duration(worker[worker.index("--grace") + 1])
    assert parse_duration(services["worker"]["stop_grace_period"]) > grace  # tasks finish before a kill
    assert "TASKQ_API_TOKEN" in services["api"]["environment"]
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]


def test_the_dockerfile_runs_taskq_from_a_slim_image_as_a_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:[\d.]+-slim$", dockerfile, re.M)
    assert re.search(r"^USER taskq$", dockerfile, re.M)
    assert 'ENTRYPOINT ["taskq"]' in dockerfile
    command = json.loads(re.findall(r"^CMD (\[.*\])$", dockerfile, re.M)[-1])
    assert parse_error(command) is None
    # every COPY source exists and the build context (.dockerignore) lets it in
    ignored = (ROOT / ".dockerignore").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
            assert f"!{path.rstrip('/')}" in ignored, f"{path} is left out of the build context"


def unit_commands() -> dict[str, list[str]]:
    commands = {}
    for unit in sorted((ROOT / "examples" / "deploy").glob("*.service")):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(unit)
        words = parser["Service"]["ExecStart"].split()
        assert words[0].endswith("/bin/taskq"), words
        commands[unit.name] = words[1:]
    return commands


def test_every_systemd_unit_runs_a_command_the_cli_accepts() -> None:
    commands = unit_commands()
    assert set(commands) == {"taskq-worker@.service", "taskq-scheduler.service", "taskq-api.service"}
    assert {name: parse_error(args) for name, args in commands.items()} == dict.fromkeys(commands)


def test_the_compose_services_run_as_local_processes(redis_url: str, namespace: str) -> None:
    # Given each taskq service of the compose file, with its command and environment, on this Redis
    services = compose()["services"]
    api_port = free_port()
    procs = Procs(cli_env(redis_url, namespace))
    try:
        started = {}
        for name in TASKQ_SERVICES:
            service = services[name]
            env = {**cli_env(redis_url, namespace), "TASKQ_APP": service["environment"]["TASKQ_APP"]}
            if name == "api":
                env["TASKQ_API_TOKEN"] = "s3cret"
            command = [
                str(api_port) if prev == "--port" else arg for prev, arg in pairwise(service["command"])
            ]
            for replica in range(service.get("deploy", {}).get("replicas", 1)):
                started[f"{name}-{replica}"] = procs.start(*command, env=env, label=f"{name}-{replica}")
        # When a task is enqueued through the API with the token
        url = f"http://127.0.0.1:{api_port}"
        until(
            lambda: urllib.request.urlopen(f"{url}/healthz", timeout=2).status == 200, 20, ignore=(OSError,)
        )
        sent = urllib.request.Request(
            f"{url}/enqueue",
            data=json.dumps({"name": "send_email", "payload": {"to": "a@example.com"}}).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer s3cret"},
        )
        with urllib.request.urlopen(sent, timeout=10) as answer:
            task_id = json.load(answer)["id"]

        # Then a worker runs it, and every process stops on SIGTERM with exit 0
        def done() -> bool:
            asked = urllib.request.Request(
                f"{url}/tasks/{task_id}", headers={"Authorization": "Bearer s3cret"}
            )
            with urllib.request.urlopen(asked, timeout=5) as answer:
                return bool(json.load(answer)["state"] == "done")

        until(done, 30, what="the task is done", logs=list(started.values()))
        for proc in started.values():
            proc.send(signal.SIGTERM)
        assert {name: proc.wait(timeout=40) for name, proc in started.items()} == dict.fromkeys(started, 0)
    finally:
        procs.close()


def pairwise(words: list[str]) -> list[tuple[str, str]]:
    """Each word with the one before it ("" for the first)."""
    return list(zip(["", *words[:-1]], words, strict=True))


def test_the_production_page_includes_the_files_tested_here() -> None:
    page = (ROOT / "docs" / "production.md").read_text()
    for path in ("Dockerfile", "docker-compose.yml", "examples/deploy/taskq-worker@.service"):
        assert f'--8<-- "{path}"' in page
    assert Path(ROOT / "examples" / "deploy" / "taskq.env").is_file()
