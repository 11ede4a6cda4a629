"""Leases: the keeper renews the leases of running attempts and registers the worker, and nothing
else, so that no other work can delay a renewal; the guard stops an execution whose lease could not
be renewed in time (Redis unreachable or refusing): by the time its lease expires and another
worker may take the task, it no longer runs here."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from taskq_cli.outage import REDIS_ERRORS, Outage
from taskq_cli.protocol import Fetched
from taskq_cli.worker.broker import WorkerBroker
from taskq_cli.worker.slots import Running, Slots

log = logging.getLogger("taskq.worker")

PRUNE_EVERY = 15.0  # seconds between sweeps of dead workers out of the worker registry
# `taskq workers` shows busy/idle within a second of a change: the keeper registers again early when
# the worker goes busy or idle, at most once per STATE_GAP (a worker flipping at every task would
# otherwise write at every task).
STATE_GAP = 0.25
# The guard stops an execution this share of the lease before its lease expires (at most
# GUARD_MARGIN_MAX): a SIGKILL and the end of a handler's thread take a moment.
GUARD_MARGIN = 0.1
GUARD_MARGIN_MAX = 1.0

StopRuns = Callable[[list[Fetched]], None]  # stop these executions and let go of their slots


class LeaseKeeper:
    """Every lease / 3: renew the leases held, then register the worker. A renewal also carries the
    retry policy of handlers that the producer did not know (see renew.lua): the first renewal after a
    fetch writes it, so a worker that dies before (within lease / 3) leaves a record recovered under
    the policy it holds (the producer's values, else the defaults). Between beats, a tick (`poked`
    when the slots go busy or idle) registers the new state early, without renewing."""

    def __init__(
        self,
        broker: WorkerBroker,
        slots: Slots,
        *,
        lease: float,
        description: Callable[[], dict[str, Any]],
        stop_runs: StopRuns,
        outage: Outage,
    ) -> None:
        self.broker, self.slots, self.lease = broker, slots, lease
        self.description, self.stop_runs, self.outage = description, stop_runs, outage
        self._next_prune = 0.0
        self._next_beat = 0.0
        self._registered_at = -STATE_GAP
        self._shown_busy = False
        self.poked = threading.Event()
        # a change is noticed and not yet registered: further changes need not wake the thread (a
        # worker flipping at every task would otherwise wake it at every task)
        self._armed = False
        slots.on_busy_change = self._on_busy_change

    def _on_busy_change(self) -> None:
        """Called by the slots (under their lock) when the worker goes busy or idle."""
        if not self._armed:
            self._armed = True
            self.poked.set()

    def tick(self, now: float) -> float:
        """A beat when one is due, else an early registration when busy/idle changed since the last;
        returns the seconds until the next (sooner while Redis fails)."""
        if now < self._next_beat:
            if now < self._registered_at + STATE_GAP:  # too soon: look again once the gap is over
                return self._registered_at + STATE_GAP - now if self._armed else self._next_beat - now
            self._armed = False  # before reading the state: a change after this read pokes again
            if self.slots.busy() == self._shown_busy:
                return self._next_beat - now
        else:
            self._armed = False
        try:
            if now < self._next_beat:
                self._register(self.slots.unfinished(), now)
            else:
                self._beat(now)
        except REDIS_ERRORS as exc:
            return self.outage.failed("heartbeat", exc)
        except Exception:  # a bug: loud, but the beat goes on (without it leases lapse)
            log.exception("heartbeat: unexpected error; retrying")
            return self.outage.failed("heartbeat", RuntimeError("unexpected error"))
        self.outage.ok("heartbeat")
        return self._next_beat - now

    def _beat(self, now: float) -> None:
        runs = self.slots.unfinished()
        self._renew(runs)
        self._register(runs, now)
        self._next_beat = now + self.lease / 3
        if now >= self._next_prune:  # drop registry entries of workers that died
            self._next_prune = now + PRUNE_EVERY
            self.broker.live_workers()

    def _register(self, runs: Sequence[Running], now: float) -> None:
        busy = bool(runs)
        info = self.description()
        info["active"] = [_active(r.job) for r in runs]
        info["state"] = "busy" if busy else "idle"
        self.broker.register_worker(str(info["id"]), info, ttl=max(self.lease, 3.0))
        self._registered_at, self._shown_busy = now, busy

    def _renew(self, runs: Sequence[Running]) -> None:
        by_queue: dict[str, list[tuple[str, str]]] = {}
        for running in runs:
            by_queue.setdefault(running.job.queue, []).append((running.job.id, running.job.token))
        pins = {r.job.id: r.pin for r in runs if r.pin is not None}
        sent = time.monotonic()
        lost_ids = set(self.broker.renew(by_queue, self.lease, pins))
        lost = self.slots.renewed(runs, lost_ids, sent + self.lease)
        if lost:
            for running in lost:
                log.warning(
                    "task %s: lease lost (cancelled or recovered elsewhere); stopping it", running.job.id
                )
            self.stop_runs([running.job for running in lost])


def _active(job: Fetched) -> dict[str, Any]:
    return {"id": job.id, "name": job.record.name, "queue": job.queue, "started_at": job.record.started_at}


def describe_worker(
    worker_id: str, queues: Sequence[str], concurrency: int, pool: str, tasks: Sequence[str] = ()
) -> Callable[[], dict[str, Any]]:
    """The registry entry of this worker, fresh at each beat; `tasks`: the names of the handlers it
    has registered."""
    started_at = int(time.time() * 1000)
    host, pid = socket.gethostname(), os.getpid()

    def description() -> dict[str, Any]:
        return {
            "id": worker_id,
            "host": host,
            "pid": pid,
            "queues": list(queues),
            "concurrency": concurrency,
            "pool": pool,
            "tasks": sorted(tasks),
            "started_at": started_at,
            "heartbeat_at": int(time.time() * 1000),
        }

    return description


class LeaseGuard:
    """Stops every execution whose lease may be about to expire unrenewed. Its own thread: the keeper
    may hang in a call to an unresponsive Redis for longer than the lease."""

    def __init__(self, slots: Slots, *, lease: float, pool_kind: str, stop_runs: StopRuns) -> None:
        self.slots, self.lease, self.pool_kind, self.stop_runs = slots, lease, pool_kind, stop_runs
        self.margin = min(lease * GUARD_MARGIN, GUARD_MARGIN_MAX)

    def tick(self, now: float) -> float:
        held = self.slots.unfinished()
        expired = [r for r in held if r.lease_until - self.margin <= now]
        if expired:
            self._expire(expired, now)
        soonest = min((r.lease_until for r in held if r not in expired), default=now + self.lease)
        # a task fetched meanwhile has a whole lease ahead: waking at lease / 3 is soon enough
        return min(max(soonest - self.margin - now, 0.005), self.lease / 3)

    def _expire(self, runs: list[Running], now: float) -> None:
        # a sync handler in the threads pool cannot be stopped: its thread runs on, its result dropped
        how = (
            "its thread cannot be stopped; dropping its result"
            if self.pool_kind == "threads"
            else "stopping it"
        )
        for running in runs:
            log.warning(
                "task %s: lease not renewed for %.1fs (lease %gs); %s so that it never runs twice at "
                "once (the task comes back once its lease expires)",
                running.job.id,
                now - (running.lease_until - self.lease),
                self.lease,
                how,
                extra={"fields": {"event": "lease_expired", "task_id": running.job.id}},
            )
        self.stop_runs([running.job for running in runs])
