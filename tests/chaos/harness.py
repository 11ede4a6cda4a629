"""The fault-injection kit, shared by tests/chaos/ and tools/soak.py (the private Redis servers,
waiting and key readers are tests/support's).

- `ChaosProxy`: a TCP proxy between workers and Redis that can slow, stall or cut connections and
  refuse new ones.
- `Fleet`: taskq processes (workers, schedulers) started in process groups of their own, logging to
  files, killed with SIGKILL at will; at the end every group is killed and reaped.
- `LeaseWatch`: polls the active set on Redis's clock and keeps the longest time any lease stayed
  expired before recovery gave its task back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support import kill_group, popen_taskq, taskq_env

APP = "tests.apps.chaos"


# -- the proxy --------------------------------------------------------------------------------------


class ChaosProxy:
    """Forwards 127.0.0.1:port to an upstream port, byte for byte, until told to misbehave:
    `slow(s)` delays every chunk, `stall()` holds every byte (connections stay open) until
    `resume()`, `cut()` closes every open connection, `refuse(True)` closes new ones at once."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.delay = 0.0
        self.refusing = False
        self.refused = 0  # connections closed at once while refusing: how often clients tried
        self.cuts = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="chaos-proxy", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def slow(self, seconds: float) -> None:
        self.delay = seconds

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self.delay = 0.0
        self._flowing.set()

    def refuse(self, refusing: bool) -> None:
        self.refusing = refusing

    def cut(self) -> int:
        """Close every open connection (both ends); returns how many there were."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)
        self.cuts += 1
        return len(pairs)

    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        _close(self.listener)
        self.cut()
        self._acceptor.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while not self._flowing.wait(0.05):
                    if self._closed.is_set():
                        return
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)
            with self._lock:
                self._pairs = [p for p in self._pairs if src not in p]


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


# -- taskq processes --------------------------------------------------------------------------------


@dataclass
class Member:
    label: str
    popen: subprocess.Popen[bytes]
    logfile: Path
    killed_at: float | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def report(self, last: int = 3000) -> str:
        state = "running" if self.alive() else f"exited {self.popen.returncode}"
        return f"--- {self.label} pid {self.pid} ({state}):\n{self.log()[-last:]}"


@dataclass
class Fleet:
    """taskq worker and scheduler processes, each the leader of its own process group."""

    workdir: Path
    redis_url: str
    namespace: str
    ledger: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)

    def env(self, redis_url: str | None = None, **extra: str) -> dict[str, str]:
        ledger = {"TASKQ_CHAOS_LEDGER": str(self.ledger)}
        return taskq_env(redis_url or self.redis_url, self.namespace, **ledger, **self.env_extra, **extra)

    def start(
        self,
        label: str,
        *args: str,
        redis_url: str | None = None,
        python: Sequence[str] = (),
        **env: str,
    ) -> Member:
        self.ledger.mkdir(parents=True, exist_ok=True)
        logfile = self.workdir / f"{label}-{len(self.members)}.log"
        with open(logfile, "wb") as out:
            popen = popen_taskq(args, self.env(redis_url, **env), output=out, merge=True, python=python)
        member = Member(label, popen, logfile)
        self.members.append(member)
        return member

    def worker(
        self,
        label: str = "worker",
        *,
        concurrency: int = 2,
        lease: str = "2s",
        redis_url: str | None = None,
        extra: Sequence[str] = (),
        python: Sequence[str] = (),
        **env: str,
    ) -> Member:
        args = ["worker", "--app", APP, "--concurrency", str(concurrency), "--lease", lease, "--grace", "5s"]
        return self.start(label, *args, *extra, redis_url=redis_url, python=python, **env)

    def scheduler(self, label: str = "scheduler", *, redis_url: str | None = None) -> Member:
        return self.start(label, "scheduler", "--app", APP, redis_url=redis_url)

    def kill(self, member: Member) -> float:
        """SIGKILL the process itself (not its group): its children must die with it on their own."""
        at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(member.pid, signal.SIGKILL)
        member.popen.wait(timeout=10)
        member.killed_at = at
        return at

    def live(self, label: str | None = None) -> list[Member]:
        return [m for m in self.members if m.alive() and (label is None or m.label == label)]

    def stop_gracefully(self, timeout: float = 20) -> None:
        for member in self.live():
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for member in self.members:
            with contextlib.suppress(subprocess.TimeoutExpired):
                member.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))

    def orphans(self) -> list[int]:
        """Processes still alive in the groups of workers that are gone (children left behind)."""
        gone = {m.pid for m in self.members if not m.alive()}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) in gone:  # state, ppid, pgrp
                found.append(int(entry.name))
        return found

    def close(self) -> None:
        for member in self.members:
            kill_group(member.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                member.popen.wait(timeout=10)

    def logs(self, last: int = 3000) -> str:
        return "\n".join(m.report(last) for m in self.members)


# -- watching Redis ---------------------------------------------------------------------------------


class LeaseWatch(threading.Thread):
    """Every 50 ms: how long has the oldest expired lease of the queue been expired (Redis clock)?
    `worst` is the longest any lease stayed expired before its task was recovered."""

    def __init__(self, client: redis.Redis, active_key: str, interval: float = 0.05) -> None:
        super().__init__(name="lease-watch", daemon=True)
        self.client = client
        self.active_key = active_key
        self.interval = interval
        self.worst = 0.0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                pipe = self.client.pipeline(transaction=True)
                pipe.zrange(self.active_key, 0, 0, withscores=True)
                pipe.time()
                oldest, (seconds, micros) = pipe.execute()
            except redis.RedisError:
                continue  # Redis is down or restarting: measured again once it is back
            self.samples += 1
            if oldest:
                now_ms = int(seconds) * 1000 + int(micros) // 1000
                self.worst = max(self.worst, (now_ms - float(oldest[0][1])) / 1000)

    def stop(self) -> float:
        self._halt.set()
        self.join(timeout=5)
        return self.worst
