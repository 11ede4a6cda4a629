"""What the worker needs of the protocol: the Broker methods its loops call. Tests drive the loops
against an in-memory fake of it; `taskq_cli.protocol.Broker` satisfies it (mypy checks that in
worker.py, where the real one is passed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from taskq_cli.protocol import Fetched, Limited, Malformed, Report


class WorkerBroker(Protocol):
    def fetch_many(
        self, queue: str, count: int, lease: float, worker_id: str
    ) -> list[Fetched | Malformed | Limited]:
        """Up to `count` tasks of one queue, each under its own lease (and a last `Limited` when the
        queue's limits held pending tasks back)."""

    def report_and_fetch(
        self, reports: Sequence[Report], queue: str | None, count: int, lease: float, worker_id: str
    ) -> tuple[list[bool | str], list[Fetched | Malformed | Limited]]:
        """Outcomes and, when `queue` is given, a fetch from it, in one round trip."""

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> str | None:
        """Block until woken (a task became pending) or the timeout passes: None, or the token
        taken (WAKE_DUE: a scheduled task is due sooner than planned)."""

    def promote(self, queue: str) -> tuple[int, float | None]:
        """Due scheduled tasks to pending: (moved, seconds until the next is due)."""

    def renew(
        self,
        leases: dict[str, list[tuple[str, str]]],
        lease: float,
        pins: dict[str, tuple[int, float, float]] | None = None,
    ) -> list[str]:
        """Extend leases ({queue: [(id, token)]}) and record retry policies (`pins`, by id) on the
        tasks; returns the ids whose lease was lost."""

    def requeue(self, job: Fetched) -> bool:
        """Return an unfinished attempt to the head of its queue without using up an attempt."""

    def register_worker(self, worker_id: str, info: dict[str, Any], ttl: float) -> None: ...

    def unregister_worker(self, worker_id: str) -> None: ...

    def live_workers(self) -> list[dict[str, Any]]:
        """The registered workers (and sweeps out those whose description expired)."""
