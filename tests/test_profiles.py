"""Profiles (SPEC "Output formats, profiles, version"): `[profiles.NAME]` in
$XDG_CONFIG_HOME/taskq/config.toml, chosen by --profile or TASKQ_PROFILE, [profiles.default] when none
is; option, then environment, then profile, then default; `taskq config show` says which won. Real
processes, each with its own XDG_CONFIG_HOME."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_cli.config import mask_url
from tests.conftest import ROOT, cli_env

DEFAULT_URL = "redis://localhost:6379/0"


def write_config(home: Path, text: str) -> None:
    (home / "taskq").mkdir(parents=True, exist_ok=True)
    (home / "taskq" / "config.toml").write_text(text, encoding="utf-8")


def taskq(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`taskq ARGS` with no TASKQ_* variable but those given, and XDG_CONFIG_HOME=home."""
    base = {k: v for k, v in cli_env("", "").items() if not k.startswith("TASKQ_")}
    base.update(XDG_CONFIG_HOME=str(home), **env)
    return subprocess.run(
        [sys.executable, "-m", "taskq_cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=base,
        timeout=30,
        check=False,
    )


def shown(home: Path, *args: str, **env: str) -> dict[str, Any]:
    result = taskq(home, *args, **env)
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    return value


PROFILES = """
[profiles.default]
namespace = "from-default"

[profiles.staging]
redis_url = "redis://:hunter2@staging.example:6380/1"
namespace = "from-staging"
app = "examples.tasks"

[profiles.other]
namespace = "from-other"
"""

# (global args, command args, env) -> the namespace expected and its source
MATRIX = [
    ((), (), {}, "from-default", "profile:default"),
    ((), (), {"TASKQ_PROFILE": "staging"}, "from-staging", "profile:staging"),
    (("--profile", "staging"), (), {}, "from-staging", "profile:staging"),
    ((), ("--profile", "staging"), {}, "from-staging", "profile:staging"),
    (("--profile", "other"), (), {"TASKQ_PROFILE": "staging"}, "from-other", "profile:other"),
    (("--profile", "other"), ("--profile", "staging"), {}, "from-staging", "profile:staging"),
    ((), (), {"TASKQ_PROFILE": "staging", "TASKQ_NAMESPACE": "from-env"}, "from-env", "env"),
    (("--namespace", "from-opt"), (), {"TASKQ_NAMESPACE": "from-env"}, "from-opt", "option"),
    ((), ("--namespace", "from-opt", "--profile", "staging"), {}, "from-opt", "option"),
]


@pytest.mark.parametrize(("before", "after", "env", "value", "source"), MATRIX)
def test_precedence_option_env_profile_default(
    tmp_path: Path,
    before: tuple[str, ...],
    after: tuple[str, ...],
    env: dict[str, str],
    value: str,
    source: str,
) -> None:
    write_config(tmp_path, PROFILES)
    got = shown(tmp_path, *before, "config", "show", "-o", "json", *after, **env)
    assert got["namespace"] == {"value": value, "source": source}


def test_built_in_defaults_without_a_file(tmp_path: Path) -> None:
    got = shown(tmp_path, "config", "show", "--json")
    assert got["redis_url"] == {"value": DEFAULT_URL, "source": "default"}
    assert got["namespace"] == {"value": "taskq", "source": "default"}
    assert got["app"] == {"value": None, "source": "default"}


def test_every_setting_has_its_own_source(tmp_path: Path) -> None:
    write_config(tmp_path, PROFILES)
    got = shown(tmp_path, "--profile", "staging", "config", "show", "-o", "json", TASKQ_APP="tests.app")
    assert got["profile"] == {"value": "staging", "source": "option"}
    assert got["redis_url"]["source"] == "profile:staging"
    assert got["namespace"]["source"] == "profile:staging"
    assert got["app"] == {"value": "tests.app", "source": "env"}


MASKED = [
    ("redis://:hunter2@h:6380/1", "redis://:***@h:6380/1"),
    ("redis://user:hunter2@h/0", "redis://user:***@h/0"),
    ("rediss://hunter2@h/0", "rediss://:***@h/0"),
    ("redis+sentinel://u:hunter2@a:1,b:2/svc", "redis+sentinel://u:***@a:1,b:2/svc"),
    ("redis://h:6379/0", "redis://h:6379/0"),
]
SOURCES = ("option", "env", "profile")


@pytest.mark.parametrize(("url", "masked"), MASKED)
def test_mask_url_hides_the_password_and_keeps_the_rest(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(("url", "masked"), MASKED)
def test_passwords_are_masked(tmp_path: Path, url: str, masked: str) -> None:
    """The URL is masked once, whatever its source, so each URL comes from one source (in turn) and
    the first from all three: 14 processes, not 30."""
    index = MASKED.index((url, masked))
    for where in SOURCES if index == 0 else (SOURCES[index % len(SOURCES)],):
        write_config(tmp_path, f'[profiles.default]\nredis_url = "{url}"\n')
        args = ("--redis-url", url) if where == "option" else ()
        env = {"TASKQ_REDIS_URL": url} if where == "env" else {}
        result = taskq(tmp_path, "config", "show", *args, **env)
        assert result.returncode == 0, result.stderr
        assert "hunter2" not in result.stdout
        assert masked in result.stdout
        got = shown(tmp_path, "config", "show", "-o", "json", *args, **env)
        assert got["redis_url"]["value"] == masked


@pytest.mark.parametrize(
    ("text", "args", "env", "words"),
    [
        (PROFILES, ("--profile", "prod"), {}, "unknown profile 'prod'"),
        (PROFILES, (), {"TASKQ_PROFILE": "prod"}, "unknown profile 'prod'"),
        ("", ("--profile", "prod"), {}, "unknown profile 'prod'"),
        ("[profiles.default\nnamespace = 1\n", (), {}, "cannot read"),
        ("[profiles.default]\nnamespace = 1\n", (), {}, "profiles.default.namespace"),
        ("[profiles.default]\nnamspace = 'x'\n", (), {}, "profiles.default.namspace"),
        ("profiles = 3\n", (), {}, "profiles"),
    ],
)
def test_unknown_profile_or_malformed_file_is_bad_usage(
    tmp_path: Path, text: str, args: tuple[str, ...], env: dict[str, str], words: str
) -> None:
    write_config(tmp_path, text)
    for command in (("config", "show"), ("queue", "list"), ("enqueue", "t")):
        result = taskq(tmp_path, *command, *args, **env)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (command, result.stderr)
        assert "Traceback" not in result.stderr


def write_target(home: Path, redis_url: str, namespace: str) -> None:
    write_config(
        home,
        f'[profiles.default]\nnamespace = "unused-{namespace}"\n'
        f'[profiles.target]\nredis_url = "{redis_url}"\nnamespace = "{namespace}"\n',
    )


@pytest.mark.parametrize("how", ["option", "global option", "env"])
def test_fast_enqueue_honours_the_profile(
    tmp_path: Path, redis_url: str, namespace: str, raw: redis.Redis, how: str
) -> None:
    write_target(tmp_path, redis_url, namespace)
    if how == "option":
        result = taskq(tmp_path, "enqueue", "t", "--profile", "target")
    elif how == "global option":
        result = taskq(tmp_path, "--profile", "target", "enqueue", "t")
    else:
        result = taskq(tmp_path, "enqueue", "t", TASKQ_PROFILE="target")
    assert result.returncode == 0, result.stderr
    assert raw.llen(f"{namespace}:{{default}}:pending") == 1


def test_fast_enqueue_with_a_profile_stays_lean(tmp_path: Path, redis_url: str, namespace: str) -> None:
    write_target(tmp_path, redis_url, namespace)
    code = (
        "import sys\nfrom taskq_cli.cli.app import run\n"
        "rc = run(['enqueue', 't', '--profile', 'target'])\n"
        "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'click', 'rich', 'pydantic'}))"
    )
    env = {k: v for k, v in cli_env("", "").items() if not k.startswith("TASKQ_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr


def test_commands_use_the_profile(tmp_path: Path, redis_url: str, namespace: str) -> None:
    write_target(tmp_path, redis_url, namespace)
    assert taskq(tmp_path, "enqueue", "t", "-q", "emails", TASKQ_PROFILE="target").returncode == 0
    listed = taskq(tmp_path, "queue", "list", "--json", "--profile", "target")
    assert listed.returncode == 0, listed.stderr
    assert [q["name"] for q in json.loads(listed.stdout)] == ["emails"]
    # the default profile (another namespace) applies when none is chosen
    assert json.loads(taskq(tmp_path, "queue", "list", "--json").stdout) == []


def test_home_config_is_the_default_location(tmp_path: Path) -> None:
    write_config(tmp_path / ".config", '[profiles.default]\nnamespace = "from-home"\n')
    env = {k: v for k, v in cli_env("", "").items() if not k.startswith(("TASKQ_", "XDG_"))}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "taskq_cli", "config", "show", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=30,
        check=False,
    )
    assert json.loads(result.stdout)["namespace"] == {"value": "from-home", "source": "profile:default"}


def test_a_worker_serves_the_profiles_namespace(tmp_path: Path, redis_url: str, namespace: str) -> None:
    write_target(tmp_path, redis_url, namespace)
    assert taskq(tmp_path, "enqueue", "ok", '{"value": 1}', TASKQ_PROFILE="target").returncode == 0

    ran = taskq(
        tmp_path, "worker", "--app", "tests.apps.basic", "--burst", "--pool", "threads", "--profile", "target"
    )

    assert ran.returncode == 0, ran.stderr
    listed = taskq(tmp_path, "task", "list", "--state", "done", "--json", TASKQ_PROFILE="target")
    assert [t["name"] for t in json.loads(listed.stdout)] == ["ok"]


def test_the_api_built_from_the_environment_uses_taskq_profile(
    tmp_path: Path, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskq_cli.api import create_app
    from tests.test_api import LOCAL, TestClient

    write_target(tmp_path, redis_url, namespace)
    for variable in ("TASKQ_REDIS_URL", "TASKQ_NAMESPACE", "TASKQ_APP", "TASKQ_API_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("TASKQ_PROFILE", "target")

    with TestClient(create_app(token=""), base_url=LOCAL) as api:
        created = api.post("/enqueue", json={"name": "x", "queue": "via-api"})
        assert created.status_code == 201, created.text
    assert redis.Redis.from_url(redis_url).llen(f"{namespace}:{{via-api}}:pending") == 1


def test_taskq_dev_takes_its_namespace_and_app_from_the_profile(tmp_path: Path, namespace: str) -> None:
    from taskq_cli.dev import free_port

    write_config(tmp_path, f'[profiles.p]\nnamespace = "{namespace}"\napp = "tests.apps.basic"\n')
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"name": "ok", "payload": {"value": 2}}\n', encoding="utf-8")
    args = ("dev", "--profile", "p", "--exit-when-done", "--enqueue", str(jobs), "--port", str(free_port()))

    result = taskq(tmp_path, *args)

    # --exit-when-done without an app is refused (exit 2): 0 means the profile's app ran the task
    assert result.returncode == 0, result.stderr
    assert f"(namespace {namespace})" in result.stderr  # the profile's namespace
