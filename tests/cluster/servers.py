"""Real Redis deployments on loopback for the scale-out tests, each in a temp dir on free ports and
killed at the end: a Redis Cluster of three primaries, and a Sentinel group (one primary, one
replica, three sentinels). Each node is tests/support's launcher with its directives in a config
file; nodes die with pytest, so a crashed test leaves nothing behind."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from tests.support import RedisDidNotStart, RedisServer, free_port, until

REDIS_CLI = shutil.which("redis-cli")
HOST = "127.0.0.1"
SERVICE = "mymaster"


class Unsupported(Exception):
    """This redis-server cannot run the deployment (the tests skip, saying why)."""


def node(folder: Path, port: int, directives: list[str], *, sentinel: bool = False) -> RedisServer:
    return RedisServer(folder, port=port, config=directives, sentinel=sentinel)


PORT_TAKEN = ("Failed listening on port", "Address already in use")  # redis-server's words for it


def start(server: RedisServer) -> RedisServer:
    """Start a node; one that exits at once (a directive this build lacks) makes the tests skip,
    except when it exits because its port was taken: that is the tests' doing and fails them."""
    try:
        return server.start()
    except RedisDidNotStart as exc:
        said = str(exc)[-500:].strip()
        if exc.exited and not any(sign in said for sign in PORT_TAKEN):
            raise Unsupported(f"redis-server exited at start: {said}") from None
        raise AssertionError(f"redis-server on port {server.port} did not start: {said}") from None


class Cluster:
    """Three primaries, no replicas, every slot assigned by `redis-cli --cluster create`."""

    def __init__(self, folder: Path, size: int = 3) -> None:
        self.nodes = [
            node(
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
        for each in self.nodes:
            start(each)
            if int(each.client().info("cluster").get("cluster_enabled", 0)) != 1:
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
        for each in self.nodes:
            until(
                lambda n=each: n.client().cluster("info")["cluster_state"] == "ok",
                15,
                what="cluster state ok",
                ignore=(redis.RedisError, OSError),
            )
        return self

    def stop(self) -> None:
        for each in self.nodes:
            each.kill()


class SentinelGroup:
    """One primary, one replica and `sentinels` sentinels (quorum: a majority) watching SERVICE,
    tuned to fail over within a couple of seconds."""

    def __init__(self, folder: Path, sentinels: int = 3) -> None:
        self.folder = folder
        fast_sync = ["repl-diskless-sync-delay 0"]  # a replica syncs at once, not after 5 s
        self.primary = node(folder / "primary", free_port(), fast_sync)
        self.replica = node(
            folder / "replica", free_port(), [*fast_sync, f"replicaof {HOST} {self.primary.port}"]
        )
        quorum = sentinels // 2 + 1
        self.sentinels = [
            node(
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
        start(self.primary)
        start(self.replica)
        until(
            lambda: self.replica.client().info("replication")["master_link_status"] == "up",
            15,
            what="replica in sync",
            ignore=(redis.RedisError, OSError),
        )
        for sentinel in self.sentinels:
            start(sentinel)
        others = len(self.sentinels) - 1
        for sentinel in self.sentinels:  # every sentinel knows the replica and the other sentinels
            until(
                lambda s=sentinel: self._ready(s, others),
                20,
                what=f"sentinel {sentinel.port} ready",
                ignore=(redis.RedisError, OSError),
            )
        return self

    def _ready(self, sentinel: RedisServer, others: int) -> bool:
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
