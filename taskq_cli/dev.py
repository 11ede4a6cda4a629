"""`taskq dev`: a throwaway Redis and the processes that use it, started and stopped as one.

The Redis is a `redis-server` from PATH (loopback only, nothing persisted) or, when there is none,
the embedded server fakeredis provides (the Redis protocol over TCP, Lua included), run in this
process. Every process started here gets a process group of its own, so the terminal's Ctrl-C reaches
only `taskq dev`, which stops them in order: workers first (they hand their tasks back while Redis
still answers), Redis last. Each one also dies with `taskq dev` should that be SIGKILLed: a tiny
bootstrap sets PR_SET_PDEATHSIG and then execs the real program, so nothing outlives it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Protocol

from taskq_cli.config import DEFAULT_QUEUE, child_env
from taskq_cli.errors import TaskqError

if TYPE_CHECKING:
    from fakeredis import TcpFakeServer

    from taskq_cli.producer import EnqueueRequest
    from taskq_cli.queue import TaskQueue

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 6379
READY_TIMEOUT = 10.0  # Redis must answer PING within this
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


# -- the Redis ------------------------------------------------------------------------------------


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


# -- the processes using it -----------------------------------------------------------------------


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


# -- the session ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevPlan:
    port: int | None = None
    embedded: bool = False
    queues: str | None = None  # default: every queue the app's tasks use
    concurrency: int | None = None
    grace: float = 10.0
    api_port: int | None = None  # serve the HTTP API on this port
    requests: Sequence[EnqueueRequest] = ()
    exit_when_done: bool = False


@dataclass
class DevHooks:
    """How the session talks to people (the CLI renders; this module never prints)."""

    say: Callable[[str], None]
    ready: Callable[[DevRedis, list[Service]], None] = lambda redis, services: None
    settled: Callable[[DevRedis], None] = lambda redis: None


def app_queues(tq: TaskQueue) -> str:
    """Every queue the app's tasks use, `default` first."""
    names = {d.queue for d in tq.registry.values()} or {DEFAULT_QUEUE}
    return ",".join(sorted(names, key=lambda q: (q != DEFAULT_QUEUE, q)))


def plan_services(tq: TaskQueue, plan: DevPlan) -> list[Service]:
    services = [Service("scheduler", ["scheduler"])]
    if tq.app_spec:
        worker = ["worker", "--app", tq.app_spec, "--queues", plan.queues or app_queues(tq)]
        worker += ["--grace", f"{plan.grace:g}s"]
        if plan.concurrency:
            worker += ["--concurrency", str(plan.concurrency)]
        services.insert(0, Service("worker", worker))
    if plan.api_port is not None:
        api = ["api", "--port", str(plan.api_port)] + (["--app", tq.app_spec] if tq.app_spec else [])
        services.append(Service("api", api))
    return services


def run_dev(tq: TaskQueue, plan: DevPlan, hooks: DevHooks) -> int:
    """Start Redis, then the services; run until a signal (or, with `exit_when_done`, until every
    task is done or dead); stop everything. 0 on a requested stop, 1 when something died or a
    second signal cut the stop short."""
    with StopSignals() as signals:
        redis = start_redis(plan.port, embedded=plan.embedded)
        services = plan_services(tq, plan)
        try:
            tq.configure(redis_url=redis.url)
            env = child_env(redis.url, tq.settings.namespace)
            for service in services:
                service.start(env)
            hooks.ready(redis, services)
            if plan.requests:
                tq.submit(plan.requests)
            code = _supervise(tq, plan, hooks, redis, services, signals)
        finally:
            tq.close()
            hooks.say("stopping" if not signals.forced() else "stopping at once")
            stop_services(services, plan.grace + STOP_MARGIN, signals.forced)
            redis.stop()
        return 1 if signals.forced() else code


def _supervise(
    tq: TaskQueue,
    plan: DevPlan,
    hooks: DevHooks,
    redis: DevRedis,
    services: Sequence[Service],
    signals: StopSignals,
) -> int:
    calm: tuple[int, ...] | None = None  # totals of the last settled look, to see it twice unchanged
    while not signals.event.wait(POLL * 2):
        for service in services:
            code = service.exited()
            if code is not None:
                hooks.say(f"{service.name} (pid {service.pid}) exited with code {code}; stopping everything")
                return 1
        if not redis.alive():
            hooks.say("Redis stopped; stopping everything")
            return 1
        if plan.exit_when_done:
            totals = _settled_totals(tq)
            if totals is not None and totals == calm:
                hooks.settled(redis)
                return 0
            calm = totals
    return 0


def _settled_totals(tq: TaskQueue) -> tuple[int, ...] | None:
    """(processed, dead) when no task is pending, scheduled or active anywhere; else None."""
    stats = tq.broker.queue_stats(tq.broker.known_queues())
    if any(s.pending or s.scheduled or s.waiting or s.active for s in stats):
        return None
    return (sum(s.processed for s in stats), sum(s.dead for s in stats))
