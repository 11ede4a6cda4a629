"""Fixtures for the scale-out tests: a real 3-primary Redis Cluster for the whole session (started
only when a test here needs it), and a Sentinel group per test that asks for one.

Inside tests/cluster, `redis_url` is the cluster's `redis+cluster://` URL, and `raw` a cluster
client, so the shared fixtures (tq, broker, clock, run_cli, spawn) all work against the cluster; a
module can point them at another deployment by overriding `redis_url` (test_sentinel.py does).
Every test's namespace is deleted afterwards on every primary."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from taskq_cli.protocol import connect

from .servers import Cluster, SentinelGroup, Unsupported


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    deployment = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        deployment.start()
    except Unsupported as exc:
        deployment.stop()
        pytest.skip(f"no Redis Cluster: {exc}")
    except BaseException:
        deployment.stop()
        raise
    yield deployment
    deployment.stop()


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path / "sentinel")
    try:
        group.start()
    except Unsupported as exc:
        group.stop()
        pytest.skip(f"no Sentinel group: {exc}")
    except BaseException:
        group.stop()
        raise
    yield group
    group.stop()


@pytest.fixture(scope="session")
def redis_url(cluster: Cluster) -> str:
    return cluster.url


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    ns = f"test-{uuid.uuid4().hex[:12]}"
    yield ns
    client = connect(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{ns}:*", count=1000))  # every primary of a cluster
        if keys:
            client.delete(*keys)  # a cluster client deletes slot by slot
    finally:
        client.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[RedisCluster]:
    """A cluster client for looking at keys directly."""
    client = connect(redis_url)
    assert isinstance(client, RedisCluster)
    yield client
    client.close()
