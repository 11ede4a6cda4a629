"""Release packaging: `python -m build` makes a wheel and an sdist that carry every data file of the
package (the Lua scripts, the dashboard's assets, py.typed), the version from taskq_cli.__version__
and the license as an SPDX expression; the wheel, installed (not editable) into a fresh virtual
environment, runs `taskq --version`, an enqueue, a burst worker and `taskq dev --exit-when-done`.

The fresh environment gets the wheel alone (`--no-deps --no-index`) and sees the test run's
installed dependencies through a .pth file (a .pth in a plain directory runs nothing, so the
editable taskq of the test run stays out of it); `pip check` then proves the wheel's declared
requirements are what it needs. This keeps the test to seconds and off the network."""

from __future__ import annotations

import email
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import taskq_cli
from tests.conftest import ROOT
from tests.support import free_port, kill_group

APP = """
from taskq_cli import TaskQueue

tq = TaskQueue()


@tq.task(name="add")
def add(a: int, b: int) -> int:
    return a + b
"""


def package_data() -> set[str]:
    """Every file of the package in the source tree that is not Python: each must ship."""
    package = ROOT / "taskq_cli"
    return {
        str(path.relative_to(ROOT))
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }


def source_tree(into: Path) -> Path:
    """What a release is built from: the checkout's files that git tracks or would (not ignored),
    copied to `into`; the checkout itself when it is not a git one. Building from ROOT would let
    setuptools walk whatever else lies there (bench/.venv and bench/results/fatvenv made it take
    minutes)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if listed.returncode != 0:
        return ROOT
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not part of it
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    source = source_tree(tmp_path_factory.mktemp("source"))
    # The dev extra brings setuptools>=77, so the build needs no isolated environment (seconds,
    # no download); an older setuptools builds in one, as a release does.
    setuptools_major = int(importlib.metadata.version("setuptools").split(".")[0])
    flags = ["--no-isolation"] if setuptools_major >= 77 else []
    build = subprocess.Popen(
        [sys.executable, "-m", "build", *flags, "--outdir", str(out), str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = build.communicate(timeout=100)  # within pytest's 120 s, to say why
    finally:
        kill_group(build.pid)  # its backend hook runs in a process of its own: stopped too, however this ends
    assert build.returncode == 0, stdout[-2000:] + stderr[-2000:]
    version = taskq_cli.__version__
    return {
        "wheel": out / f"taskq_cli-{version}-py3-none-any.whl",
        "sdist": out / f"taskq_cli-{version}.tar.gz",
    }


def test_the_wheel_carries_the_package_its_data_and_its_metadata(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"taskq_cli-{taskq_cli.__version__}.dist-info"
        metadata = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "taskq_cli").rglob("*.py")}
    assert package_data() - names == set()
    assert modules - names == set()
    assert {"taskq_cli/py.typed", "taskq_cli/protocol/lua/enqueue.lua", f"{info}/licenses/LICENSE"} <= names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/", "docs/"))]
    assert metadata["Version"] == taskq_cli.__version__
    assert metadata["License-Expression"] == "MIT"
    assert "taskq = taskq_cli.cli.app:main" in entry_points


def test_the_sdist_carries_what_a_wheel_is_built_from(dists: dict[str, Path]) -> None:
    top = f"taskq_cli-{taskq_cli.__version__}"
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.removeprefix(f"{top}/") for name in sdist.getnames()}
    assert {"pyproject.toml", "README.md", "LICENSE", "PKG-INFO"} <= names
    assert package_data() - names == set()


def fresh_venv(where: Path) -> Path:
    """A virtual environment with no taskq in it, seeing this run's dependencies read-only."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=60)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    Path(site, "_test_run_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_the_wheel_installed_in_a_fresh_venv_runs_the_cli(
    dists: dict[str, Path], tmp_path: Path, redis_url: str, namespace: str
) -> None:
    python = fresh_venv(tmp_path / "venv")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--no-compile", "-q", str(dists["wheel"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    checked = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # every declared requirement is met

    work = tmp_path / "work"  # no taskq source on the way: not the repository, no PYTHONPATH
    work.mkdir()
    (work / "pkgapp.py").write_text(APP)
    (work / "batch.jsonl").write_text('{"name": "add", "payload": {"a": 2, "b": 3}}\n' * 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKQ_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        TASKQ_REDIS_URL=redis_url,
        TASKQ_NAMESPACE=namespace,
        NO_COLOR="1",
        PYTHONPATH=str(work),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    taskq = str(tmp_path / "venv" / "bin" / "taskq")

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [taskq, *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        return done

    where = subprocess.run(
        [str(python), "-c", "import taskq_cli; print(taskq_cli.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert where.startswith(str(tmp_path / "venv")), where  # the wheel's copy, not the source tree
    assert run("--version").stdout == f"taskq {taskq_cli.__version__}\n"
    task_id = run("enqueue", "--app", "pkgapp", "add", '{"a": 1, "b": 2}').stdout.strip()
    run(
        "worker", "--app", "pkgapp", "--burst", "--concurrency", "2"
    )  # the processes pool: its Lua, fork server
    assert '"result": 3' in run("task", "show", task_id, "--json").stdout
    dev = run(
        "dev",
        "--app",
        "pkgapp",
        "--enqueue",
        "batch.jsonl",
        "--exit-when-done",
        "--port",
        str(free_port()),
        "--namespace",
        f"{namespace}-dev",
        timeout=90,
    )
    # its closing `taskq stats`: the three tasks processed, none left in any state, none failed
    header, row = (
        line.split() for line in dev.stdout.splitlines() if line.startswith(("queue ", "default "))
    )
    counts = dict(zip(header, row, strict=False))
    assert counts["processed"] == "3", dev.stdout
    assert {counts[c] for c in header if c not in ("queue", "processed", "oldest", "paused")} == {"0"}, (
        dev.stdout
    )
