"""The processes `taskq dev` starts: each in a process group of its own that dies with `taskq dev`
(a tiny bootstrap sets PR_SET_PDEATHSIG, then execs the real program), the `taskq` services run
against the dev Redis, and the signals that stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any

STOP_MARGIN = 5.0  # beyond the workers' grace, before their process groups are killed
POLL = 0.1

# Run as `python -S -c _BOOT PARENT_PID PROGRAM ARGS...`: die with PARENT_PID, then become PROGRAM.
# The death signal survives execve, so it covers redis-server as well as Python processes.
_BOOT = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def spawn(
    argv: Sequence[str], env: dict[str, str] | None = None, output: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` (argv[0] an absolute path) in a process group of its own; it dies with us.
    Its output goes to ours, or to `output`."""
    boot = [sys.executable, "-S", "-c", _BOOT, str(os.getpid()), *argv]
    return subprocess.Popen(
        boot, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output, process_group=0
    )


def kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of a process group we started (a no-op once it is empty)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class Service:
    """A `taskq` command run against the dev Redis."""

    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.proc = spawn([sys.executable, "-m", "taskq_cli", *self.args], env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


def stop_services(services: Sequence[Service], timeout: float, forced: Callable[[], bool]) -> None:
    """SIGTERM each (a worker drains and hands back its tasks), SIGKILL what is left after `timeout`
    or as soon as `forced()`, then clear each one's process group (pool children and the like)."""
    running = [s for s in services if s.exited() is None]
    for service in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(service.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(s.exited() is None for s in running) and time.monotonic() < deadline and not forced():
        time.sleep(0.05)
    for service in services:
        if service.proc is not None:
            kill_group(service.pid)
            service.proc.wait()


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP ask for a stop; a second one asks to stop at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():  # after a stop signal we are on our way out:
            signal.signal(signum, signal.SIG_IGN if self.count else handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.event.set()

    def forced(self) -> bool:
        return self.count > 1
