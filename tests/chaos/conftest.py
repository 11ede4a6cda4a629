"""Fixtures for tests that need a Redis of their own (restarted, proxied, with ACL users or TLS):
never the shared one. Each test gets a fresh redis-server on a free port, a namespace, a ledger
directory and a fleet of taskq processes; all of them are stopped at the end of the test.

The figures every chaos scenario measures (`Lab.figure`) are printed together at the end of the run
(tests/conftest.py gathers them, from xdist's workers too)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from taskq_cli import TaskQueue
from tests.apps import chaos as app
from tests.chaos.harness import Fleet
from tests.conftest import FIGURE
from tests.support import RedisServer, qkeys


@dataclass
class Lab:
    """One test's private Redis, namespace, producer, client and processes."""

    server: RedisServer
    namespace: str
    fleet: Fleet
    client: redis.Redis
    producer: TaskQueue
    workdir: Path
    record_property: Callable[[str, object], None]

    def figure(self, line: str) -> None:
        """A line for the run's "taskq figures" section (and the test's own output)."""
        self.record_property(FIGURE, line)
        print(line)

    def key(self, part: str, queue: str = "default") -> str:
        return qkeys(self.namespace, queue).key(part)

    def enqueue(
        self,
        items: list[tuple[str, dict[str, object]]] | list[tuple[str, dict[str, object], dict[str, object]]],
    ) -> list[str]:
        return self.producer.enqueue_many(items)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path / "redis", aof=True).start()
    yield srv
    srv.stop()


@pytest.fixture
def lab(server: RedisServer, tmp_path: Path, record_property: Callable[[str, object], None]) -> Iterator[Lab]:
    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    fleet = Fleet(tmp_path, server.url, namespace, tmp_path / "ledger")
    client = server.client()
    producer = TaskQueue(redis_url=server.url, namespace=namespace)
    producer.registry = app.tq.registry  # the producer knows the handlers: their retry policy is recorded
    try:
        yield Lab(server, namespace, fleet, client, producer, tmp_path, record_property)
    finally:
        fleet.close()
        producer.close()
        client.close()
