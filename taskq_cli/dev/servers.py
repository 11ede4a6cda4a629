"""The dev Redis: a `redis-server` from PATH (loopback only, nothing persisted) or, when there is
none, the embedded server fakeredis provides (the Redis protocol over TCP, Lua included), run in this
process. The test suite's private servers are this launcher with options on top."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

from taskq_cli.dev.processes import POLL, STOP_MARGIN, kill_group, spawn
from taskq_cli.errors import TaskqError

if TYPE_CHECKING:
    from fakeredis import TcpFakeServer

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 6379
READY_TIMEOUT = 10.0  # Redis must answer PING within this


class DevRedis(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def description(self) -> str: ...  # for people: what runs, where

    def alive(self) -> bool: ...

    def stop(self) -> None: ...


def start_redis(port: int | None = None, *, embedded: bool = False, args: Sequence[str] = ()) -> DevRedis:
    """A Redis on the loopback at `port`, else on 6379 when free, else on any free port: a
    `redis-server` from PATH unless `embedded` (or none is installed), else the embedded server.
    `args` go to redis-server after its defaults, so they override them; a config file, if any,
    comes first, as redis-server wants it (the test suite's private servers use this)."""
    binary = None if embedded else shutil.which("redis-server")
    if binary is None:
        if args:
            raise TaskqError("redis-server options need a redis-server on PATH")
        return EmbeddedRedis.start(port)
    return RedisServer.start(os.path.abspath(binary), port, args)


def answers_ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens on it, else a port the system picks."""
    found = _bind_probe(preferred) if preferred is not None else None
    return found if found is not None else int(_bind_probe(0) or 0)


def _bind_probe(port: int) -> int | None:
    """The port, if it can be bound on the loopback now (0: any port the system picks)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return None
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    """`redis-server` on the loopback: no RDB snapshots, no AOF; its log in an anonymous file, so
    nothing is left on disk even when `taskq dev` is SIGKILLed."""

    proc: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]
    description: str = ""

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @classmethod
    def start(cls, binary: str, port: int | None, args: Sequence[str] = ()) -> RedisServer:
        if port is not None and _bind_probe(port) is None:
            raise TaskqError(f"cannot listen on {LOOPBACK}:{port}: address already in use")
        for attempt in range(3):  # a port found free may be taken before redis-server binds it
            chosen = port if port is not None else free_port(DEFAULT_PORT if attempt == 0 else None)
            log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; closed by stop()
            server = cls(spawn(_server_argv(binary, chosen, args), output=log), chosen, log)
            problem = server._wait_ready()
            if problem is None:
                server.description = f"redis-server (pid {server.proc.pid}) on {LOOPBACK}:{chosen}"
                return server
            text = server._log()
            server.stop()
            if port is not None or "in use" not in text:
                raise TaskqError(f"redis-server did not start on port {chosen}: {problem}")
        raise TaskqError("redis-server did not start: no free port")

    def _wait_ready(self) -> str | None:
        """None once this very process answers (not another Redis on the port), else the problem."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                lines = self._log().splitlines()
                return lines[-1].split(" # ", 1)[-1].strip() if lines else f"exit {self.proc.returncode}"
            if self._answers():
                return None
            time.sleep(0.02)
        return f"no answer within {READY_TIMEOUT:g}s"

    def _answers(self) -> bool:
        from taskq_cli.protocol.probes import server_pid

        return server_pid(LOOPBACK, self.port) == self.proc.pid

    def _log(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # nothing to save: it exits at once
            try:
                self.proc.wait(STOP_MARGIN)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_group(self.proc.pid)
        self.log.close()


def _server_argv(binary: str, port: int, args: Sequence[str] = ()) -> list[str]:
    config = list(args[:1]) if args and not args[0].startswith("-") else []
    return [
        binary,
        *config,
        *("--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"),
        *("--dir", tempfile.gettempdir(), "--logfile", "", "--loglevel", "warning", "--daemonize", "no"),
        *args[len(config) :],
    ]


class EmbeddedRedis:
    """fakeredis's TCP server (Redis protocol, Lua through lupa) on threads of this process."""

    def __init__(self, server: TcpFakeServer) -> None:
        self.server = server
        self.port = int(server.server_address[1])
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.description = f"embedded Redis (fakeredis, in process {os.getpid()}) on {LOOPBACK}:{self.port}"
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": POLL}, name="taskq-dev-redis", daemon=True
        )
        self.thread.start()

    @classmethod
    def start(cls, port: int | None = None) -> EmbeddedRedis:
        import importlib.util

        if any(importlib.util.find_spec(m) is None for m in ("fakeredis", "lupa")):  # lupa runs the Lua
            raise TaskqError(
                "no redis-server on PATH and no embedded server: pip install 'taskq-cli[embedded]' "
                "(or install Redis)"
            )
        from fakeredis import TcpFakeServer

        error: OSError | None = None
        for candidate in [port] if port is not None else [DEFAULT_PORT, 0]:
            try:
                server = TcpFakeServer((LOOPBACK, candidate), server_type="redis", server_version=(7, 2))
            except OSError as exc:
                error = exc
                continue
            return cls(server)
        raise TaskqError(f"cannot listen on {LOOPBACK}:{port}: {error.strerror if error else 'unknown'}")

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.server.shutdown()  # also ends every connection's handler loop
        self.server.server_close()
        self.thread.join(STOP_MARGIN)
