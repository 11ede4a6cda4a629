"""`taskq` as a real process: started from the project root with a test's Redis and namespace, in
a process group of its own (so killing the group takes its pool's children too), its output read
as it comes (the pipes never fill, and the log can go into any assertion message)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
TASKQ = ("-m", "taskq_cli")


def taskq_env(redis_url: str, namespace: str, **extra: str) -> dict[str, str]:
    """The environment of a taskq process: ours without any TASKQ_ setting, then the test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    env.update(
        TASKQ_REDIS_URL=redis_url,
        TASKQ_NAMESPACE=namespace,
        NO_COLOR="1",
        XDG_CONFIG_HOME=str(ROOT / "tests" / "no-such-config-dir"),  # the tester's profiles stay out
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
    )
    env.update(extra)
    return env


def popen_taskq(
    args: Sequence[str],
    env: dict[str, str],
    *,
    output: IO[bytes] | int = subprocess.PIPE,
    merge: bool = False,
    python: Sequence[str] = (),
    entry: Sequence[str] = TASKQ,
) -> subprocess.Popen[bytes]:
    """Start `python [python] [entry] ARGS` in a session (and process group) of its own; `output`
    takes stdout, and stderr too when `merge`."""
    return subprocess.Popen(
        [sys.executable, *python, *entry, *args],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if merge else output,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )


def kill_group(pid: int) -> None:
    """SIGKILL the process group a process we started leads (a no-op once it is empty)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class Proc:
    """A background taskq process, its stdout and stderr collected by reader threads."""

    def __init__(self, popen: subprocess.Popen[str], label: str = "taskq") -> None:
        self.popen = popen
        self.label = label
        self.out_lines: list[str] = []
        self.lines: list[str] = []  # stderr
        self._readers = [
            threading.Thread(target=_collect, args=(stream, into), daemon=True)
            for stream, into in ((popen.stdout, self.out_lines), (popen.stderr, self.lines))
            if stream is not None
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stdout(self) -> str:
        return "".join(self.out_lines)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def running(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """The exit code; fails with the log when it is still running after `timeout`."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s\n{self.report()}") from None
        self._finish()
        return code

    def report(self) -> str:
        state = "running" if self.running() else f"exited {self.popen.returncode}"
        return f"--- {self.label} (pid {self.pid}, {state}) stderr:\n{self.stderr}"

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the leader."""
        kill_group(self.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._finish()

    def _finish(self) -> None:
        """Read the output to its end (the group is gone), then close the pipes."""
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _collect(stream: IO[str], into: list[str]) -> None:
    with contextlib.suppress(OSError, ValueError):  # closed under us at teardown
        for line in stream:
            into.append(line)


class Procs:
    """Every taskq process one test starts; `close()` kills each process group and reaps it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[Proc] = []
        self._plain: list[subprocess.Popen[str]] = []

    def start(self, *args: str, env: dict[str, str] | None = None, label: str = "taskq") -> Proc:
        proc = Proc(self.popen(*args, env=env, track=False), label)
        self.started.append(proc)
        return proc

    def popen(
        self, *args: str, env: dict[str, str] | None = None, track: bool = True
    ) -> subprocess.Popen[str]:
        """The bare Popen (text pipes the caller reads, or not); killed at close all the same."""
        popen = subprocess.Popen(
            [sys.executable, *TASKQ, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env or self.env,
            start_new_session=True,
        )
        if track:
            self._plain.append(popen)
        return popen

    def close(self) -> None:
        for proc in self.started:
            proc.kill()
        for popen in self._plain:
            kill_group(popen.pid)
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
                popen.communicate(timeout=10)
