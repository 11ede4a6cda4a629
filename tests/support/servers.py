"""The one launcher of private Redis servers for the tests: `taskq dev`'s (`dev.start_redis`) with
options on top. Each server runs in a folder of its own on a port fixed at the first start, so it
can be killed (a crash: only what AOF `always` wrote survives), shut down and started again with
the same data. It dies with pytest (dev's launcher sets the death signal).

The readiness check always needs a plain TCP port (`plain_port`): a TLS server serves TLS on `port`
(its URL) beside it, a unix-socket one its socket (its URL).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from taskq_cli.dev import RedisServer as DevServer
from taskq_cli.dev import start_redis
from taskq_cli.errors import TaskqError

from .ports import free_port

HOST = "127.0.0.1"


class RedisDidNotStart(RuntimeError):
    """redis-server exited at start (`exited`: a directive it lacks, a build without TLS...) or did
    not answer in time; the message carries its log."""

    def __init__(self, message: str, *, exited: bool) -> None:
        super().__init__(message)
        self.exited = exited


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


class RedisServer:
    """A redis-server of a test's own. `aof`: appendonly with `appendfsync always`; `tls`: serve
    TLS on `port` (its URL names `localhost`, as the test certificates do); `unixsocket`: its
    URL is the socket; `config`: lines of a config file (written to the folder and given first,
    kept for restarts and appendable); `args`: more command-line options; `sentinel`: run as a
    Sentinel (which needs the config file)."""

    def __init__(
        self,
        workdir: Path,
        *,
        aof: bool = False,
        args: Sequence[str] = (),
        tls: TlsFiles | None = None,
        unixsocket: Path | None = None,
        config: Sequence[str] | None = None,
        sentinel: bool = False,
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.aof = aof
        self.args = list(args)
        self.tls = tls
        self.unixsocket = unixsocket
        self.directives = list(config) if config is not None or sentinel else None
        self.sentinel = sentinel
        self.plain_port = port or free_port()  # readiness and `admin()`
        self.port = free_port() if tls else self.plain_port  # what the URL names
        self.starts = 0
        self._server: DevServer | None = None
        self._old_logs = ""

    @property
    def address(self) -> str:
        return f"{HOST}:{self.plain_port}"

    @property
    def url(self) -> str:
        if self.unixsocket:
            return f"unix://{self.unixsocket}"
        if self.tls:
            return f"rediss://localhost:{self.port}/0"
        return f"redis://{HOST}:{self.port}/0"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self._server.proc if self._server else None

    def options(self) -> list[str]:
        """What goes to redis-server after dev's defaults (a config file first, if any)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        opts: list[str] = []
        if self.directives is not None:
            config = self.workdir / ("sentinel.conf" if self.sentinel else "redis.conf")
            config.write_text("".join(f"{line}\n" for line in self.directives))
            opts.append(str(config))
        opts += ["--dir", str(self.workdir), "--loglevel", "notice"]
        if self.aof:
            opts += ["--appendonly", "yes", "--appendfsync", "always"]
        if self.tls:
            opts += ["--tls-port", str(self.port), "--tls-auth-clients", "no"]
            opts += ["--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)]
            opts += ["--tls-ca-cert-file", str(self.tls.ca)]
        if self.unixsocket:
            opts += ["--unixsocket", str(self.unixsocket), "--unixsocketperm", "700"]
        if self.sentinel:
            opts.append("--sentinel")
        return opts + self.args

    def start(self) -> RedisServer:
        assert not self.alive(), "already running"
        if shutil.which("redis-server") is None:
            raise RedisDidNotStart("redis-server is not installed", exited=True)
        self._keep_log()
        try:
            server = start_redis(self.plain_port, args=self.options())
        except TaskqError as exc:
            raise RedisDidNotStart(f"{exc}", exited="no answer within" not in str(exc)) from None
        assert isinstance(server, DevServer)
        self._server = server
        self.starts += 1
        return self

    def client(self, **options: object) -> redis.Redis:
        extra: dict[str, object] = {"ssl_ca_certs": str(self.tls.ca)} if self.tls else {}
        extra.update(options)
        return redis.Redis.from_url(
            self.url, decode_responses=True, socket_connect_timeout=2, socket_timeout=10, **extra
        )

    def admin(self, **options: object) -> redis.Redis:
        """A client on the plain loopback port, whatever the URL is."""
        return redis.Redis(
            host=HOST, port=self.plain_port, decode_responses=True, socket_timeout=5, **options
        )  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self._server is not None and self._server.alive()

    def kill(self) -> None:
        """SIGKILL: a crash; only what AOF `always` wrote survives."""
        if self._server is not None and self._server.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._server.proc.pid, signal.SIGKILL)
            self._server.proc.wait(timeout=10)
        self._end()

    def shutdown(self) -> None:
        """SIGTERM: a clean stop (the AOF is flushed)."""
        self._end()

    def restart(self, *, crash: bool, down_for: float = 0.0) -> None:
        """Kill or shut down, stay down `down_for` seconds (the outage a test stages), start again."""
        (self.kill if crash else self.shutdown)()
        time.sleep(down_for)
        self.start()

    def stop(self) -> None:
        self.kill()

    def _end(self) -> None:
        if self._server is not None:
            self._keep_log()
            self._server.stop()  # SIGTERM, then SIGKILL after a margin; reaps; closes the log
            self._server = None

    def _keep_log(self) -> None:
        if self._server is not None and not self._server.log.closed:
            self._old_logs += _read(self._server)

    def log(self, last: int = 4000) -> str:
        current = _read(self._server) if self._server is not None and not self._server.log.closed else ""
        text = (self._old_logs + current)[-last:]
        return text or "(no redis log)"

    def report(self) -> str:
        return f"--- redis-server on {self.address}:\n{self.log()}"


def _read(server: DevServer) -> str:
    server.log.seek(0)
    return server.log.read().decode(errors="replace")


def make_tls_files(folder: Path, san: str = "IP:127.0.0.1,DNS:localhost") -> TlsFiles:
    """A CA and a server certificate for the given subjectAltName, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    cert, key, csr = folder / "server.crt", folder / "server.key", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text(f"subjectAltName={san}\n")
    ca_req = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=taskq-test-CA"]
    server_req = ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
    sign = ["x509", "-req", "-days", "2", "-CAcreateserial", "-in", str(csr), "-CA", str(ca)]
    steps = [
        [*ca_req, "-keyout", str(ca_key), "-out", str(ca)],
        [*server_req, "-keyout", str(key), "-out", str(csr)],
        [*sign, "-CAkey", str(ca_key), "-extfile", str(ext), "-out", str(cert)],
    ]
    for step in steps:
        subprocess.run(["openssl", *step], check=True, capture_output=True, timeout=60)
    return TlsFiles(ca, cert, key)
