"""The fast path of `taskq enqueue` (taskq_cli/cli/fast.py) behaves exactly like the Typer command it
stands in for: the same exit code, stdout, first line of stderr and state in Redis for every form it
handles, and everything else is handed to the Typer app. Real processes against a real Redis."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import redis
import typer

from taskq_cli.cli import fast
from taskq_cli.cli.typer_app import app as typer_app
from tests.conftest import cli_env, run_python
from tests.test_cli_enqueue import UNREACHABLE_URL

# `taskq ARGS` through the Typer app alone, as every command ran before the fast path existed.
TYPER_ONLY = ("-c", "import sys; from taskq_cli.cli.typer_app import run; sys.exit(run())")
AT = "2030-01-01T00:00:00Z"
AT_MS = 1_893_456_000_000
GENERATED_ID = re.compile(r"\b[0-9a-f]{32}\b")

OPTION_VALUES = {
    "--queue": "reports",
    "--delay": "1h30m",
    "--max-retries": "2",
    "--timeout": "45s",
    "--id": "report-1",
    "--redis-url": "{url}",
    "--namespace": "{ns}",
}
EVERY_OPTION = [
    "enqueue",
    "report",
    '{"k": "v"}',
    "--json",
    *(w for pair in OPTION_VALUES.items() for w in pair),
]
# Each case: the `taskq` commands run one after another ("{ns}" is the namespace of the run), the
# stdin they get, and whether the fast path should take them (True) or hand them to Typer (False).
Case = tuple[list[list[str]], str | None, bool]
CASES: dict[str, Case] = {
    "name and payload": ([["enqueue", "send_email", '{"to": "a@example.com", "n": 2}']], None, True),
    "name alone": ([["enqueue", "cleanup"]], None, True),
    "payload from stdin": ([["enqueue", "resize", "-"]], '{"path": "/tmp/a.png"}\n', True),
    "json output": ([["enqueue", "t", '{"a": 1}', "--json"]], None, True),
    "options before the arguments": ([["enqueue", "--json", "-q", "emails", "t", "{}"]], None, True),
    "short queue option": ([["enqueue", "t", "-q", "emails"]], None, True),
    "long option with =": ([["enqueue", "t", "--queue=emails", "--delay=5m", "--id=a=b"]], None, True),
    "every option": ([EVERY_OPTION], None, True),
    "at a time": ([["enqueue", "t", "--at", AT, "--json"]], None, True),
    "at a past time": ([["enqueue", "t", "--at", "2001-01-01T00:00:00Z"]], None, True),
    "timeout off": ([["enqueue", "t", "--timeout", "0"], ["enqueue", "u", "--timeout", "off"]], None, True),
    "max retries with leading zeros": ([["enqueue", "t", "--max-retries", "007"]], None, True),
    "custom id twice": (
        [
            ["enqueue", "t", '{"n": 1}', "--id", "job-1"],
            ["enqueue", "t", '{"n": 2}', "--id", "job-1", "--json"],
        ],
        None,
        True,
    ),
    "empty queue value": ([["enqueue", "t", "--queue="]], None, True),
    "bad json payload": ([["enqueue", "t", '{"a":']], None, True),
    "payload not an object": ([["enqueue", "t", "[1, 2]"]], None, True),
    "bad duration": ([["enqueue", "t", "--delay", "soon"]], None, True),
    "bad timeout": ([["enqueue", "t", "--timeout", "forever"]], None, True),
    "delay and at": ([["enqueue", "t", "--delay", "5s", "--at", AT]], None, True),
    "bad at": ([["enqueue", "t", "--at", "tomorrow-ish"]], None, True),
    "negative max retries": ([["enqueue", "t", "--max-retries", "-1"]], None, True),
    "bad queue name": ([["enqueue", "t", "-q", "bad queue"]], None, True),
    "option word as a value": ([["enqueue", "t", "--queue", "--json"]], None, True),
    "bad namespace": ([["enqueue", "t", "--namespace", "bad ns"]], None, True),
    "empty custom id": ([["enqueue", "t", "--id", ""]], None, True),
    "blank name": ([["enqueue", " "]], None, True),
    "name not utf-8": ([["enqueue", "caf\udce9"]], None, True),
    "redis unreachable": ([["enqueue", "t", "--redis-url", UNREACHABLE_URL]], None, True),
    "unknown profile": ([["enqueue", "t", "--profile", "nope"]], None, False),
    "help": ([["enqueue", "--help"]], None, False),
    "unknown option": ([["enqueue", "t", "--bogus"]], None, False),
    "max retries not a number": ([["enqueue", "t", "--max-retries", "x"]], None, False),
    "max retries Typer coerces": ([["enqueue", "t", "--max-retries", "+5"]], None, False),
    "repeated option": ([["enqueue", "t", "-q", "a", "-q", "b"]], None, False),
    "global option before the command": ([["--namespace", "{ns}", "enqueue", "t"]], None, False),
    "file": ([["enqueue", "--file", "-"]], '{"name": "a"}\n{"name": "b", "queue": "q2"}\n', False),
}

# Forms the fast path must hand over; the Typer command's handling of them is tested elsewhere.
HANDED_OVER = [
    ["enqueue"],
    ["enqueue", "-h"],
    ["enqueue", "t", "--help"],
    ["--help"],
    ["enqueue", "t", "--durable"],
    ["enqueue", "t", "--wait", "5s"],
    ["enqueue", "t", "--app", "tests.apps.basic"],
    ["enqueue", "t", "--profile", "nope"],
    ["enqueue", "--file", "tasks.jsonl"],
    ["enqueue", "t", "{}", "extra"],
    ["enqueue", "t", "--queue"],
    ["enqueue", "t", "--json", "--json"],
    ["enqueue", "t", "--json=1"],
    ["enqueue", "t", "-qemails"],
    ["enqueue", "t", "-q=emails"],
    ["enqueue", "--", "t"],
    ["enqueue", "t", "-1"],
    ["enqueue", "t", "--max-retries", " 5"],
    ["enqueue", "t", "--max-retries", "5.0"],
    ["enqueue", "t", "--max-retries", "1_000"],
    ["enqueue", "t", "--max-retries", "--5"],
    ["enqueue", "t", "--max-retries", "1" * 19],
    ["enqueue", "t", "--max-retries", "\u0663"],
    ["enqueue", "t", "--Queue", "x"],
    ["enqueue", "t", "--delay", "1s", "--delay", "2s"],
    ["enqueue", "t", "--id", "a", "--id=b"],
    ["enqueue", "t", "--queue", "a", "--queue=b"],
    ["--redis-url", "redis://x", "enqueue", "t"],
    ["worker"],
    ["stats"],
    [],
]


# -- helpers ---------------------------------------------------------------------------------------


def fill(argv: list[str], ns: str, url: str) -> list[str]:
    return [arg.replace("{ns}", ns).replace("{url}", url) for arg in argv]


def normalise(text: str, ns: str, ids: list[str]) -> str:
    """The namespace and generated ids (numbered in the order they were printed) as placeholders."""
    text = text.replace(ns, "<ns>")
    for number, task_id in enumerate(ids):
        text = text.replace(task_id, f"<id{number}>")
    return GENERATED_ID.sub("<id?>", text)


def times(meta: dict[str, Any]) -> dict[str, Any]:
    """Times that differ from run to run made comparable: enqueued_at as a marker, run_at as an offset
    from it (or the fixed AT)."""
    enqueued = meta.pop("enqueued_at", None)
    if enqueued is not None:
        meta["enqueued_at"] = "<now>"
    if "run_at" in meta:
        meta["run_at"] = "<AT>" if meta["run_at"] == AT_MS else f"<now+{meta['run_at'] - enqueued}ms>"
    return meta


def redis_state(raw: redis.Redis, ns: str, ids: list[str]) -> dict[str, Any]:
    """Every key of the namespace with its value, comparable across runs (see normalise, times)."""
    norm: Callable[[str], str] = lambda text: normalise(text, ns, ids)  # noqa: E731
    state: dict[str, Any] = {}
    metas: dict[str, dict[str, Any]] = {}
    keys = sorted(raw.scan_iter(match=f"{ns}:*"))
    for key in keys:
        if raw.type(key) == "hash" and key.endswith(":tasks"):
            metas.update({task_id: json.loads(text) for task_id, text in raw.hgetall(key).items()})
    for key in keys:
        kind = raw.type(key)
        if kind == "hash":
            items = raw.hgetall(key)
            if key.endswith(":tasks"):
                items = {f: json.dumps(times(json.loads(v)), sort_keys=True) for f, v in items.items()}
            value: Any = sorted((norm(f), norm(v)) for f, v in items.items())
        elif kind == "list":
            value = [norm(v) for v in raw.lrange(key, 0, -1)]
        elif kind == "set":
            value = sorted(norm(v) for v in raw.smembers(key))
        elif kind == "zset":
            value = [
                (norm(member), "run_at" if score == metas.get(member, {}).get("run_at") else score)
                for member, score in raw.zrange(key, 0, -1, withscores=True)
            ]
        else:
            value = norm(str(raw.get(key)))
        state[norm(key)] = (kind, value)
    return state


def run_case(
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    raw: redis.Redis,
    ns: str,
    url: str,
    commands: list[list[str]],
    stdin: str | None,
    entry: tuple[str, ...],
) -> dict[str, Any]:
    """Run the commands one after another in namespace `ns`; what a user and Redis would see."""
    env = cli_env(url, ns)
    runs: list[tuple[int, str, str]] = []
    ids: list[str] = []
    for argv in commands:
        result = run_cli(*fill(argv, ns, url), input=stdin, env=env, entry=entry)
        ids += [found for found in GENERATED_ID.findall(result.stdout) if found not in ids]
        first_error = (result.stderr.splitlines() or [""])[0]
        runs.append((result.returncode, result.stdout, first_error))
    return {
        "runs": [(code, normalise(out, ns, ids), normalise(err, ns, ids)) for code, out, err in runs],
        "redis": redis_state(raw, ns, ids),
    }


# -- the fast path and Typer agree -----------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_the_fast_path_and_the_typer_app_give_the_same_exit_output_and_redis_state(
    case, run_cli, raw, namespace, extra_namespace, redis_url
):
    commands, stdin, takes_fast_path = CASES[case]
    # Given the commands are (or are not) ones the fast path takes, in the environment they run in
    assert all(
        (fast.recognise(fill(argv, namespace, redis_url)) is not None) == takes_fast_path for argv in commands
    )

    # When they run through the console script's entry and through the Typer app alone
    through_entry = run_case(run_cli, raw, namespace, redis_url, commands, stdin, ("-m", "taskq_cli"))
    through_typer = run_case(run_cli, raw, extra_namespace(), redis_url, commands, stdin, TYPER_ONLY)

    # Then a user and Redis see the same thing
    assert through_entry == through_typer
    for code, stdout, stderr in through_entry["runs"]:
        assert "Traceback" not in stderr
        if code == 0:
            assert stderr == ""
        elif case != "help":
            assert stdout == ""
            assert stderr.startswith("taskq: error:"), stderr


def test_every_option_given_to_the_fast_path_reaches_the_task(run_cli, raw, namespace, redis_url):
    # Parity alone would pass if both paths dropped an option: this one case checked for itself
    seen = run_case(run_cli, raw, namespace, redis_url, [EVERY_OPTION], None, ("-m", "taskq_cli"))

    [(code, stdout, stderr)] = seen["runs"]
    assert (code, stderr) == (0, "")
    assert json.loads(stdout) == {
        "id": "report-1",
        "queue": "reports",
        "state": "scheduled",
        "duplicate": False,
    }
    meta = json.loads(dict(seen["redis"]["<ns>:{reports}:tasks"][1])["report-1"])
    assert meta["run_at"] == f"<now+{90 * 60 * 1000}ms>"
    assert (meta["max_retries"], meta["timeout"]) == (2, 45)


@pytest.mark.parametrize("argv", HANDED_OVER, ids=lambda argv: " ".join(argv) or "(none)")
def test_forms_the_fast_path_does_not_fully_recognise_go_to_typer(argv):
    assert fast.recognise(argv) is None


@pytest.mark.parametrize("variable", ["TASKQ_APP", "_TASKQ_COMPLETE"])
def test_an_app_or_shell_completion_in_the_environment_sends_every_enqueue_to_typer(variable, monkeypatch):
    monkeypatch.setenv(variable, "tests.apps.basic")

    assert fast.recognise(["enqueue", "t"]) is None


def test_an_app_in_the_environment_still_validates_the_payload(run_cli, redis_url, namespace, raw):
    env = cli_env(redis_url, namespace, TASKQ_APP="tests.apps.basic")

    through_entry = run_cli("enqueue", "ok", '{"value": "not a number"}', env=env)
    through_typer = run_cli("enqueue", "ok", '{"value": "not a number"}', env=env, entry=TYPER_ONLY)

    assert through_entry.returncode == through_typer.returncode == 2
    assert through_entry.stderr == through_typer.stderr
    assert raw.keys(f"{namespace}:*") == []


def test_the_fast_path_knows_every_option_of_the_typer_command_or_hands_it_over():
    # An option added to cli/enqueue.py must be taught to fast.py, or left to Typer on purpose here
    handed_over = {"file", "durable", "app", "wait", "after"}
    command = typer.main.get_command(typer_app).commands["enqueue"]  # type: ignore[attr-defined]
    options = [param for param in command.params if isinstance(param, typer.core.TyperOption)]
    typer_spellings: dict[str, str] = {}
    for option in options:
        assert not option.envvar, f"{option.name} reads an environment variable the fast path does not"
        for spelling in option.opts + option.secondary_opts:
            typer_spellings[spelling] = option.name
            if option.name in handed_over:
                assert spelling not in fast.VALUE_OPTIONS and spelling not in fast.FLAGS
            elif option.is_flag:
                assert spelling in fast.FLAGS
            else:
                assert fast.VALUE_OPTIONS.get(spelling) == option.name, spelling
    assert set(fast.VALUE_OPTIONS) | set(fast.FLAGS) <= set(typer_spellings)
    arguments = [param.name for param in command.params if isinstance(param, typer.core.TyperArgument)]
    assert arguments == ["name", "payload"]


# -- what the fast path imports --------------------------------------------------------------------


def test_an_enqueue_process_imports_neither_typer_click_rich_nor_pydantic(redis_url, namespace):
    code = (
        "import sys; from taskq_cli.cli.app import run; rc = run(['enqueue', 'noop', '{}', '--json']);"
        "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'click', 'rich', 'pydantic'}))"
    )
    result = run_python(code, redis_url, namespace)

    assert result.stderr == ""
    assert result.stdout.splitlines()[-1] == "0 []", result.stdout


@pytest.mark.parametrize(
    "args", [("--version",), ("--namespace", "x", "--version")], ids=["fast path", "typer"]
)
def test_version_prints_taskq_and_the_package_version(run_cli, args):
    from importlib.metadata import version

    import taskq_cli

    result = run_cli(*args)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"taskq {taskq_cli.__version__}\n"
    assert taskq_cli.__version__ == version("taskq-cli")  # one version: the package's


def test_other_commands_still_run_through_typer(run_cli):
    result = run_cli("queue", "list", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_typer_app_can_still_be_imported_from_the_entry_module():
    from taskq_cli.cli import app as entry
    from taskq_cli.cli.app import app

    assert app is typer_app
    assert isinstance(app, typer.Typer)
    with pytest.raises(AttributeError):
        entry.__path__  # noqa: B018 -- the import system's probe: refused, not forwarded to Typer
