"""Fixtures for the scale-out tests: the session's 3-primary Redis Cluster (tests/conftest.py's
`cluster`, started only when a test needs it), and a Sentinel group per test that asks for one.

Inside tests/cluster, `redis_url` is the cluster's `redis+cluster://` URL, so the shared fixtures
(raw, namespace, tq, broker, clock, run_cli, spawn) all work against the cluster (`raw` is then a
cluster client, and a test's namespace is deleted on every primary); a module can point them at
another deployment by overriding `redis_url` (test_sentinel.py does)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import Cluster, SentinelGroup, Unsupported


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
