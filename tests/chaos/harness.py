"""The fault-injection kit, shared by tests/chaos/ and tools/soak.py.

- `RedisServer`: a redis-server of our own on a free port (never the system's), which can be killed,
  shut down and restarted on the same port and data directory; AOF with `appendfsync always` when
  asked, so that every write acknowledged to a client survives a restart.
- `ChaosProxy`: a TCP proxy between workers and Redis that can slow, stall or cut connections and
  refuse new ones.
- `Fleet`: taskq processes (workers, schedulers) started in process groups of their own, logging to
  files, killed with SIGKILL at will; at the end every group is killed and reaped.
- `LeaseWatch`: polls the active set on Redis's clock and keeps the longest time any lease stayed
  expired before recovery gave its task back.
- `final_states`: every task's state and attempts as Redis holds them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.chaos"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def until(predicate: Callable[[], object], timeout: float, what: str, logs: Callable[[], str] = str) -> float:
    """Poll until the predicate holds; returns the seconds it took. Fails with the given logs."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout}s: {what}\n{logs()}")
        time.sleep(0.05)
    return time.monotonic() - began


# -- Redis ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


class RedisServer:
    """`redis-server` on 127.0.0.1 and a free port, its files in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        aof: bool = False,
        args: Sequence[str] = (),
        tls: TlsFiles | None = None,
        password: str | None = None,
        unixsocket: Path | None = None,
    ) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.aof = aof
        self.tls = tls
        self.password = password
        self.unixsocket = unixsocket  # listen there only (no TCP port)
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        if self.unixsocket:
            return f"unix://{self.unixsocket}"
        if self.tls:  # the test certificates name `localhost`
            return f"rediss://localhost:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        cmd = ["redis-server", "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", ""]
        cmd += ["--logfile", str(self.workdir / "redis.log"), "--daemonize", "no"]
        cmd += ["--appendonly", "yes" if self.aof else "no", "--appendfsync", "always"]
        if self.tls:
            cmd += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            cmd += ["--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)]
            cmd += ["--tls-ca-cert-file", str(self.tls.ca)]
        elif self.unixsocket:
            cmd += ["--port", "0", "--unixsocket", str(self.unixsocket), "--unixsocketperm", "700"]
        else:
            cmd += ["--port", str(self.port)]
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd + self.args

    def client(self, **options: object) -> redis.Redis:
        extra: dict[str, object] = {"ssl_ca_certs": str(self.tls.ca)} if self.tls else {}
        if self.password:
            extra["password"] = self.password
        extra.update(options)
        return redis.Redis.from_url(
            self.url, decode_responses=True, socket_connect_timeout=2, socket_timeout=10, **extra
        )

    def start(self) -> RedisServer:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(self.command(), start_new_session=True)
        self.starts += 1
        client = self.client()
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    if client.ping():
                        break
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"redis-server did not start:\n{self.log()}")
                time.sleep(0.05)
        finally:
            client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: a crash; only what AOF `always` wrote survives."""
        self._end(signal.SIGKILL)

    def shutdown(self) -> None:
        """SIGTERM: a clean stop (the AOF is flushed)."""
        self._end(signal.SIGTERM)

    def restart(self, *, crash: bool, down_for: float = 0.0) -> None:
        (self.kill if crash else self.shutdown)()
        time.sleep(down_for)
        self.start()

    def _end(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        self.kill()

    def log(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text()[-4000:] if path.exists() else "(no redis log)"


def make_tls_files(folder: Path, san: str = "IP:127.0.0.1,DNS:localhost") -> TlsFiles:
    """A CA and a server certificate for the given subjectAltName, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    cert, key, csr = folder / "server.crt", folder / "server.key", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text(f"subjectAltName={san}\n")
    ca_req = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=taskq-test-CA"]
    server_req = ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
    sign = ["x509", "-req", "-days", "2", "-CAcreateserial"]
    steps = [
        [*ca_req, "-keyout", str(ca_key), "-out", str(ca)],
        [*server_req, "-keyout", str(key), "-out", str(csr)],
        [
            *sign,
            "-in",
            str(csr),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-extfile",
            str(ext),
            "-out",
            str(cert),
        ],
    ]
    for step in steps:
        subprocess.run(["openssl", *step], check=True, capture_output=True, timeout=60)
    return TlsFiles(ca, cert, key)


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
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
        env.update(
            TASKQ_REDIS_URL=redis_url or self.redis_url,
            TASKQ_NAMESPACE=self.namespace,
            TASKQ_CHAOS_LEDGER=str(self.ledger),
            NO_COLOR="1",
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        )
        env.update(self.env_extra)
        env.update(extra)
        return env

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
            popen = subprocess.Popen(
                [sys.executable, *python, "-m", "taskq_cli", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env(redis_url, **env),
                start_new_session=True,
            )
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
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(member.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                member.popen.wait(timeout=10)

    def logs(self, last: int = 3000) -> str:
        parts = []
        for m in self.members:
            state = "running" if m.alive() else f"exited {m.popen.returncode}"
            parts.append(f"--- {m.label} pid {m.pid} ({state}):\n{m.log()[-last:]}")
        return "\n".join(parts)


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


def final_states(
    client: redis.Redis, namespace: str, ids: Iterable[str], queue: str = "default"
) -> dict[str, tuple[str, int]]:
    """id -> (state, attempts) for every id that has a record."""
    key = f"{namespace}:{{{queue}}}:tasks"
    wanted = list(ids)
    found: dict[str, tuple[str, int]] = {}
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        for task_id, raw in zip(chunk, client.hmget(key, chunk), strict=True):
            if raw is not None:
                meta = json.loads(raw)
                found[task_id] = (str(meta.get("state")), int(meta.get("attempts") or 0))
    return found


def queue_counts(client: redis.Redis, namespace: str, queue: str = "default") -> dict[str, int]:
    k = f"{namespace}:{{{queue}}}:"
    pipe = client.pipeline(transaction=True)
    pipe.llen(k + "pending")
    pipe.zcard(k + "scheduled")
    pipe.zcard(k + "active")
    pipe.zcard(k + "dead")
    pipe.zcard(k + "done")
    pending, scheduled, active, dead, done = pipe.execute()
    return {"pending": pending, "scheduled": scheduled, "active": active, "dead": dead, "done": done}
