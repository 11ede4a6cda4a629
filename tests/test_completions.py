"""Shell completion: the scripts committed under completions/ are exactly what the CLI generates
(regenerate: the one-liner in docs/operating.md), and they complete for real: through Typer's protocol
for each shell, and by sourcing each committed script into the real shell when it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SHELLS = ("bash", "zsh", "fish")
REGENERATE = "for sh in bash zsh fish; do _TASKQ_COMPLETE=source_$sh taskq > completions/taskq.$sh; done"


def env(**extra: str) -> dict[str, str]:
    """No TASKQ_* or completion variables from the caller; this checkout's taskq_cli first."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TASKQ_", "_TASKQ_", "_TYPER_"))}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")])
    base.update(extra)
    return base


def taskq(**extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskq_cli"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=env(**extra),
    )


@pytest.fixture
def taskq_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH starts with a `taskq` running this checkout (the scripts call it)."""
    wrapper = tmp_path / "bin" / "taskq"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m taskq_cli "$@"\n')
    wrapper.chmod(0o755)
    return env(PATH=f"{wrapper.parent}{os.pathsep}{os.environ.get('PATH', '')}")


def run_shell(argv: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=60, cwd=ROOT, env=environment
    )


def need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed")
    return path


# -- the committed scripts are current ---------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_the_committed_script_is_exactly_what_the_cli_generates(shell: str) -> None:
    generated = taskq(_TASKQ_COMPLETE=f"source_{shell}")
    assert generated.returncode == 0, generated.stderr
    committed = (ROOT / "completions" / f"taskq.{shell}").read_text()
    assert committed == generated.stdout, f"completions/taskq.{shell} is stale; regenerate: {REGENERATE}"


# -- Typer's completion protocol, per shell ----------------------------------------------------


def test_bash_protocol_completes_dl_to_dlq() -> None:
    proc = taskq(_TASKQ_COMPLETE="complete_bash", COMP_WORDS="taskq dl", COMP_CWORD="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["dlq"]


def test_bash_protocol_completes_the_subcommands_of_dlq() -> None:
    proc = taskq(_TASKQ_COMPLETE="complete_bash", COMP_WORDS="taskq dlq ", COMP_CWORD="2")
    assert set(proc.stdout.split()) >= {"list", "show", "retry", "purge"}


def test_bash_protocol_completes_the_options_of_doctor() -> None:
    proc = taskq(_TASKQ_COMPLETE="complete_bash", COMP_WORDS="taskq doctor --j", COMP_CWORD="2")
    assert proc.stdout.split() == ["--json"]


def test_zsh_protocol_offers_dlq_with_its_help() -> None:
    proc = taskq(_TASKQ_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="taskq dl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('_arguments \'*: :(("dlq":"The dead-letter queue')


def test_fish_protocol_offers_dlq_with_its_help_and_claims_the_arguments() -> None:
    proc = taskq(
        _TASKQ_COMPLETE="complete_fish",
        _TYPER_COMPLETE_FISH_ACTION="get-args",
        _TYPER_COMPLETE_ARGS="taskq dl",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("dlq\tThe dead-letter queue")
    claims = taskq(
        _TASKQ_COMPLETE="complete_fish",
        _TYPER_COMPLETE_FISH_ACTION="is-args",
        _TYPER_COMPLETE_ARGS="taskq dl",
    )
    assert claims.returncode == 0


# -- the committed scripts in the real shells --------------------------------------------------


def test_the_committed_bash_script_completes_dl_to_dlq_in_bash(taskq_on_path: dict[str, str]) -> None:
    bash = need("bash")
    script = (
        "source completions/taskq.bash\n"
        "complete -p taskq\n"
        "COMP_WORDS=(taskq dl); COMP_CWORD=1\n"
        "_taskq_completion taskq\n"
        'printf "reply:%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = run_shell([bash, "--norc", "--noprofile", "-c", script], taskq_on_path)
    assert proc.returncode == 0, proc.stderr
    assert "complete -o default -F _taskq_completion taskq" in proc.stdout
    assert [line for line in proc.stdout.splitlines() if line.startswith("reply:")] == ["reply:dlq"]


def test_the_committed_zsh_script_completes_dl_to_dlq_in_zsh(taskq_on_path: dict[str, str]) -> None:
    zsh = need("zsh")
    # compsys is interactive; stand in for its two functions and call the completer as it would
    script = (
        "compdef() { print -r -- compdef $@ }\n"
        "_arguments() { print -r -- arguments $@ }\n"
        "source completions/taskq.zsh\n"
        "words=(taskq dl); CURRENT=2\n"
        "_taskq_completion\n"
    )
    proc = run_shell([zsh, "-f", "-c", script], taskq_on_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "compdef _taskq_completion taskq" in lines
    offered = [line for line in lines if line.startswith("arguments")]
    assert len(offered) == 1
    assert '"dlq":"The dead-letter queue' in offered[0]


def test_the_committed_fish_script_completes_dl_to_dlq_in_fish(taskq_on_path: dict[str, str]) -> None:
    fish = need("fish")
    proc = run_shell(
        [fish, "--no-config", "-c", "source completions/taskq.fish; complete -C'taskq dl'"], taskq_on_path
    )
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == ["dlq"]
