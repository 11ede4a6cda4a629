"""Real Redis deployments on loopback for the scale-out tests, each in a temp dir on free ports and
killed at the end: a Redis Cluster of three primaries, and a Sentinel group (one primary, one
replica, three sentinels). Servers run in the foreground as our children (no --daemonize), so a
crashed test leaves nothing behind once its fixtures are torn down."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
HOST = "127.0.0.1"
SERVICE = "mymaster"


class Unsupported(Exception):
    """This redis-server cannot run the deployment (the tests skip, saying why)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if predicate():
                return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


class Server:
    """One redis-server (or sentinel) process with its folder, config file and log."""

    def __init__(self, folder: Path, port: int, directives: list[str], *, sentinel: bool = False) -> None:
        self.folder = folder
        self.port = port
        self.directives = directives
        self.sentinel = sentinel
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> Server:
        if REDIS_SERVER is None:
            raise Unsupported("redis-server is not installed")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / ("sentinel.conf" if self.sentinel else "redis.conf")
        lines = [f"port {self.port}", f"bind {HOST}", f'dir "{self.folder}"', 'logfile "log.txt"']
        if not self.sentinel:
            lines += ['save ""', "appendonly no"]
        config.write_text("\n".join(lines + self.directives) + "\n")
        command = [REDIS_SERVER, str(config)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(
            command, cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                raise Unsupported(
                    f"redis-server exited at start: {(err.decode() + self.log())[-500:].strip()}"
                )
            with contextlib.suppress(redis.RedisError, OSError):
                if self.client().ping():
                    return self
            time.sleep(0.02)
        raise AssertionError(f"redis-server on port {self.port} did not answer: {self.log()[-500:]}")

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, decode_responses=True, socket_timeout=5, **options)  # type: ignore[arg-type]

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def log(self) -> str:
        path = self.folder / "log.txt"
        return path.read_text(errors="replace") if path.exists() else ""


class Cluster:
    """Three primaries, no replicas, every slot assigned by `redis-cli --cluster create`."""

    def __init__(self, folder: Path, size: int = 3) -> None:
        self.nodes = [
            Server(
                folder / f"node{i}",
                free_port(),
                [
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    "cluster-node-timeout 2000",
                    f"cluster-port {free_port()}",
                ],
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes[:2])

    def start(self) -> Cluster:
        if REDIS_CLI is None:
            raise Unsupported("redis-cli is not installed")
        for node in self.nodes:
            node.start()
            if int(node.client().info("cluster").get("cluster_enabled", 0)) != 1:
                raise Unsupported(
                    "redis-server lacks cluster support (INFO cluster: cluster_enabled is not 1)"
                )
        created = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(n.address for n in self.nodes), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            raise AssertionError(
                f"redis-cli --cluster create failed: {created.stdout[-500:]}{created.stderr}"
            )
        for node in self.nodes:
            until(lambda n=node: n.client().cluster("info")["cluster_state"] == "ok", 15, "cluster state ok")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


class SentinelGroup:
    """One primary, one replica and `sentinels` sentinels (quorum: a majority) watching SERVICE,
    tuned to fail over within a couple of seconds."""

    def __init__(self, folder: Path, sentinels: int = 3) -> None:
        self.folder = folder
        fast_sync = ["repl-diskless-sync-delay 0"]  # a replica syncs at once, not after 5 s
        self.primary = Server(folder / "primary", free_port(), fast_sync)
        self.replica = Server(
            folder / "replica", free_port(), [*fast_sync, f"replicaof {HOST} {self.primary.port}"]
        )
        quorum = sentinels // 2 + 1
        self.sentinels = [
            Server(
                folder / f"sentinel{i}",
                free_port(),
                [
                    f"sentinel monitor {SERVICE} {HOST} {self.primary.port} {quorum}",
                    f"sentinel down-after-milliseconds {SERVICE} 1000",
                    f"sentinel failover-timeout {SERVICE} 10000",
                    f"sentinel parallel-syncs {SERVICE} 1",
                ],
                sentinel=True,
            )
            for i in range(sentinels)
        ]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(s.address for s in self.sentinels) + f"/{SERVICE}"

    def start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        until(
            lambda: self.replica.client().info("replication")["master_link_status"] == "up",
            15,
            "replica in sync",
        )
        for sentinel in self.sentinels:
            sentinel.start()
        others = len(self.sentinels) - 1
        for sentinel in self.sentinels:  # every sentinel knows the replica and the other sentinels
            until(lambda s=sentinel: self._ready(s, others), 20, f"sentinel {sentinel.port} ready")
        return self

    def _ready(self, sentinel: Server, others: int) -> bool:
        client = sentinel.client()
        master = client.sentinel_master(SERVICE)
        replicas = client.sentinel_slaves(SERVICE)
        return int(master["num-other-sentinels"]) >= others and any(
            "s_down" not in str(r.get("flags")) and int(r.get("port", 0)) == self.replica.port
            for r in replicas
        )

    def current_primary(self) -> int:
        """The port the sentinels now name as the primary."""
        _, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.primary]:
            server.kill()
