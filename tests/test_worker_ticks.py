"""The worker's loops, one tick at a time, against an in-memory broker: no Redis, no threads, no
sleeping. Time is whatever `now` the test passes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from taskq_cli.models import Options, Outcome, OutcomeKind
from taskq_cli.outage import Outage
from taskq_cli.protocol import Ack, Failure, Fetched, Limited, Malformed
from taskq_cli.runner import Execution
from taskq_cli.runtime import Runtimes
from taskq_cli.worker.broker import WorkerBroker
from taskq_cli.worker.leases import STATE_GAP, LeaseGuard, LeaseKeeper
from taskq_cli.worker.maintainer import Maintainer
from taskq_cli.worker.plan import QueuePlan
from taskq_cli.worker.reporter import IDLE, RECHECK, Reporter
from taskq_cli.worker.slots import Running, Slots

OPTIONS = Options(max_retries=2, timeout=None, backoff_base=1.0, backoff_max=8.0, result_ttl=60.0)
LEASE = 3.0


class FakeBroker:
    """Pending tasks per queue; records every call that would be a round trip to Redis."""

    def __init__(self, pending: dict[str, list[str]]) -> None:
        self.pending = {q: list(ids) for q, ids in pending.items()}
        self.calls: list[str] = []
        self.reported: list[Ack | Failure] = []
        self.lost: set[str] = set()  # ids whose lease renew says is gone
        self.registered: dict[str, Any] = {}
        self.attempts: dict[str, int] = {}
        self.pins: list[dict[str, tuple[int, float, float]]] = []

    def _take(self, queue: str, count: int) -> list[Fetched | Malformed]:
        taken, self.pending[queue] = self.pending[queue][:count], self.pending[queue][count:]
        found: list[Fetched | Malformed] = []
        for task_id in taken:
            self.attempts[task_id] = self.attempts.get(task_id, 0) + 1
            meta = {"name": "job", "attempts": self.attempts[task_id], "state": "active", "started_at": 1}
            found.append(Fetched(queue, task_id, meta, "{}", f"tok-{task_id}-{self.attempts[task_id]}"))
        return found

    def fetch_many(self, queue: str, count: int, lease: float, worker_id: str) -> list[Fetched | Malformed]:
        self.calls.append(f"fetch {queue}")
        return self._take(queue, count)

    def report_and_fetch(
        self, reports: Sequence[Ack | Failure], queue: str | None, count: int, lease: float, worker_id: str
    ) -> tuple[list[bool | str], list[Fetched | Malformed]]:
        self.calls.append(f"report {len(reports)} + fetch {queue}")
        self.reported += reports
        results: list[bool | str] = [True if isinstance(r, Ack) else "scheduled" for r in reports]
        return results, self._take(queue, count) if queue else []

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> str | None:
        return None

    def promote(self, queue: str) -> tuple[int, float | None]:
        return 0, None

    def renew(
        self,
        leases: dict[str, list[tuple[str, str]]],
        lease: float,
        pins: dict[str, tuple[int, float, float]] | None = None,
    ) -> list[str]:
        self.calls.append("renew")
        self.pins.append(dict(pins or {}))
        return [task_id for held in leases.values() for task_id, _ in held if task_id in self.lost]

    def requeue(self, job: Fetched) -> bool:
        return True

    def register_worker(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        self.calls.append("register")
        self.registered[worker_id] = info

    def unregister_worker(self, worker_id: str) -> None:
        self.registered.pop(worker_id, None)

    def live_workers(self) -> list[dict[str, Any]]:
        return list(self.registered.values())


class Harness:
    """A reporter wired to slots and a fake broker; `launched` is what it handed to the pool."""

    def __init__(self, broker: FakeBroker, plan: str = "default", concurrency: int = 2) -> None:
        self.broker: WorkerBroker = broker
        self.fake = broker
        self.slots = Slots(concurrency, Runtimes(), clock=lambda: 0.0)
        self.stopping = threading.Event()
        self.launched: list[Running] = []
        self.results: list[tuple[str, bool | str]] = []
        self.reporter = Reporter(
            broker,
            QueuePlan.parse(plan),
            self.slots,
            worker_id="w1",
            lease=LEASE,
            prepare=lambda job, at: Running(job, OPTIONS, at, at + LEASE),
            launch=self.launched.extend,
            on_result=lambda running, outcome, report, result: self.results.append((running.job.id, result)),
            stopping=self.stopping,
            outage=Outage(logging.getLogger("test")),
        )

    def finish(self, running: Running, outcome: Outcome) -> None:
        """What the pool does when an execution ends."""
        job = running.job
        self.slots.finish(job.id, job.token)
        execution = Execution(job.id, "job", job.queue, job.record.attempts, 2, "{}", None, job.token)
        self.reporter.deliver(execution, outcome)


# -- the reporter -----------------------------------------------------------------------------------


def test_a_tick_fetches_as_many_tasks_as_there_are_free_slots_and_launches_them() -> None:
    h = Harness(FakeBroker({"default": ["a", "b", "c"]}), concurrency=2)

    h.reporter.tick(0.0)

    assert [r.job.id for r in h.launched] == ["a", "b"]
    assert len(h.slots) == 2 and h.fake.calls == ["report 0 + fetch default"]
    assert h.launched[0].job.record.attempts == 1  # the typed record, decoded at fetch


def test_an_outcome_is_reported_and_its_slot_refilled_in_one_round_trip() -> None:
    # Given a worker whose two slots are taken
    h = Harness(FakeBroker({"default": ["a", "b", "c"]}), concurrency=2)
    h.reporter.tick(0.0)
    h.fake.calls.clear()
    # When one task succeeds
    h.finish(h.launched[0], Outcome.success('"ok"'))
    h.reporter.tick(0.1)
    # Then one call reports it and fetches the next task into the slot it freed
    assert h.fake.calls == ["report 1 + fetch default"]
    assert isinstance(h.fake.reported[0], Ack) and h.results == [("a", True)]
    assert [r.job.id for r in h.launched] == ["a", "b", "c"] and len(h.slots) == 2


def test_a_failure_is_reported_with_the_decided_retry_and_a_spent_task_as_dead() -> None:
    h = Harness(FakeBroker({"default": ["a"]}), concurrency=1)
    h.reporter.tick(0.0)
    h.finish(h.launched[0], Outcome.failure(OutcomeKind.RETRY, "Retry", "later", delay=4.0))
    h.reporter.tick(0.1)

    [failure] = h.fake.reported
    assert isinstance(failure, Failure) and not failure.final and failure.delay == 4.0


def test_a_plan_of_several_queues_fetches_the_next_queue_only_when_the_first_runs_short() -> None:
    h = Harness(FakeBroker({"high": ["h1"], "low": ["l1", "l2"]}), plan="high,low", concurrency=2)

    h.reporter.tick(0.0)

    assert h.fake.calls == ["report 0 + fetch high", "fetch low"]
    assert [r.job.id for r in h.launched] == ["h1", "l1"]


def test_the_reporter_goes_idle_when_the_queues_run_dry_and_fetches_nothing_while_stopping() -> None:
    h = Harness(FakeBroker({"default": []}))

    assert h.reporter.tick(0.0) == IDLE
    assert h.reporter.idle.is_set()
    h.stopping.set()
    h.fake.calls.clear()
    h.reporter.tick(1.0)
    assert h.fake.calls == []


def test_an_outcome_of_an_attempt_no_longer_held_is_not_reported() -> None:
    h = Harness(FakeBroker({"default": ["a"]}), concurrency=1)
    h.reporter.tick(0.0)
    [running] = h.launched
    h.slots.drop([running.job])  # stopped by the lease guard meanwhile
    h.stopping.set()
    h.finish(running, Outcome.success(None))
    h.fake.calls.clear()

    h.reporter.tick(0.1)

    assert h.fake.calls == [] and h.fake.reported == []


# -- leases -------------------------------------------------------------------------------------------


def _keeper(h: Harness, stopped: list[Fetched]) -> LeaseKeeper:
    return LeaseKeeper(
        h.broker,
        h.slots,
        lease=LEASE,
        description=lambda: {"id": "w1", "heartbeat_at": 0},
        stop_runs=stopped.extend,
        outage=Outage(logging.getLogger("test")),
    )


def test_the_lease_keeper_renews_the_held_leases_and_registers_the_worker_every_third_of_a_lease() -> None:
    h = Harness(FakeBroker({"default": ["a", "b"]}))
    h.reporter.tick(0.0)
    h.fake.calls.clear()

    wait = _keeper(h, []).tick(0.0)

    assert h.fake.calls == ["renew", "register"] and wait == LEASE / 3
    assert [t["id"] for t in h.fake.registered["w1"]["active"]] == ["a", "b"]


def test_going_busy_or_idle_registers_again_early_at_most_once_per_state_gap() -> None:
    # Given an idle worker registered at 0
    h = Harness(FakeBroker({"default": ["a"]}), concurrency=1)
    keeper = _keeper(h, [])
    keeper.tick(0.0)
    assert h.fake.registered["w1"]["state"] == "idle"
    h.fake.calls.clear()
    # When it takes a task at 0.1, the slots poke the keeper, which registers "busy" only at STATE_GAP
    h.reporter.tick(0.1)
    assert keeper.poked.is_set()
    assert keeper.tick(0.1) == pytest.approx(STATE_GAP - 0.1)
    assert h.fake.calls == ["report 0 + fetch default"]
    keeper.tick(STATE_GAP)
    # Then it registers busy without renewing, well before the next beat
    assert h.fake.calls == ["report 0 + fetch default", "register"]
    assert h.fake.registered["w1"]["state"] == "busy"
    # And with nothing changed it waits for the beat
    assert keeper.tick(0.5) == pytest.approx(LEASE / 3 - 0.5)
    # When the task finishes, "idle" follows at once (the last registration is long enough ago)
    h.slots.finish("a", h.launched[0].job.token)
    keeper.tick(0.6)
    assert h.fake.registered["w1"]["state"] == "idle" and h.fake.calls[-1] == "register"


def test_a_worker_flipping_within_the_gap_wakes_the_keeper_once_and_its_last_state_is_registered() -> None:
    h = Harness(FakeBroker({"default": ["a", "b", "c"]}), concurrency=1)
    keeper = _keeper(h, [])
    keeper.tick(0.0)
    keeper.poked.clear()
    for _ in range(3):  # busy, idle, busy, ... within the gap: one wake-up, not one per change
        h.reporter.tick(0.05)
        assert keeper.tick(0.05) == pytest.approx(STATE_GAP - 0.05)
        keeper.poked.clear()
        running = h.launched[-1]
        h.finish(running, Outcome.success(None))
        assert not keeper.poked.is_set()
    keeper.tick(STATE_GAP)
    assert h.fake.registered["w1"]["state"] == ("busy" if h.slots.busy() else "idle")


def test_a_lease_found_lost_at_renewal_stops_its_execution() -> None:
    h = Harness(FakeBroker({"default": ["a", "b"]}))
    h.reporter.tick(0.0)
    h.fake.lost = {"a"}
    stopped: list[Fetched] = []

    _keeper(h, stopped).tick(0.0)

    assert [job.id for job in stopped] == ["a"]


def test_a_handlers_policy_rides_on_the_next_renewal_once_and_costs_no_round_trip_of_its_own() -> None:
    # Given a running task whose producer did not write its handler's retry policy
    h = Harness(FakeBroker({"default": ["a"]}), concurrency=1)
    h.reporter.tick(0.0)
    h.launched[0].pin = (0, 1.0, 2.0)
    keeper = _keeper(h, [])
    # When the keeper beats twice
    keeper.tick(0.0)
    keeper.tick(1.0)
    # Then the first renewal carries the policy, the second does not, and nothing else was sent
    assert h.fake.pins == [{"a": (0, 1.0, 2.0)}, {}]
    assert h.fake.calls == ["report 0 + fetch default", "renew", "register", "renew", "register"]


def test_the_lease_guard_stops_an_execution_whose_lease_was_not_renewed_in_time() -> None:
    h = Harness(FakeBroker({"default": ["a"]}), concurrency=1)
    h.reporter.tick(0.0)
    [running] = h.launched
    stopped: list[Fetched] = []
    guard = LeaseGuard(h.slots, lease=LEASE, pool_kind="processes", stop_runs=stopped.extend)
    lease_until = running.lease_until

    # Before the margin: nothing stopped; it asks to look again by the margin (or a third of a lease)
    wait = guard.tick(lease_until - 1.0)
    assert stopped == [] and 0 < wait <= LEASE / 3
    # Within the margin of its lease's end, unrenewed: stopped
    guard.tick(lease_until - guard.margin)
    assert [job.id for job in stopped] == ["a"]


# -- maintenance ------------------------------------------------------------------------------------


class Counting:
    def __init__(self, wait: float) -> None:
        self.wait, self.passes = wait, 0

    def tick(self, queues: Sequence[str] | None = None) -> float:
        self.passes += 1
        return self.wait


def test_the_maintainer_runs_a_pass_when_due_and_again_when_poked_sooner() -> None:
    maintenance, cron = Counting(0.8), Counting(5.0)
    maintainer = Maintainer(
        maintenance,
        cron,
        ["default"],
        period=1.0,
        stopping=threading.Event(),
        outage=Outage(logging.getLogger("t")),
    )

    assert maintainer.tick(10.0) == pytest.approx(0.8)  # first pass at once; next when the next task is due
    assert maintainer.tick(10.5) == pytest.approx(0.3) and maintenance.passes == 1  # not due yet
    maintainer.poke(10.5, 0.0)  # a retry became due sooner
    maintainer.tick(10.5)
    assert maintenance.passes == 2 and cron.passes == 2


# -- queue limits: how the reporter learns when to ask a limited queue again -------------------------


class LimitedBroker(FakeBroker):
    """`lim` holds tasks back: by its rate (`retry_in` seconds) or its concurrency (None)."""

    def __init__(self, pending: dict[str, list[str]], retry_in: float | None) -> None:
        super().__init__(pending)
        self.retry_in = retry_in
        self.open = False  # the limit lets tasks through

    def _take(self, queue: str, count: int) -> list[Fetched | Malformed]:  # type: ignore[override]
        if queue == "lim" and not self.open and self.pending[queue]:
            return [Limited("lim", self.retry_in)]  # type: ignore[list-item]
        return super()._take(queue, count)


def test_a_rate_limited_queue_is_asked_again_when_its_rate_allows_and_not_before() -> None:
    fake = LimitedBroker({"lim": ["l1"], "other": ["o1", "o2", "o3"]}, retry_in=0.3)
    h = Harness(fake, plan="lim,other", concurrency=8)
    assert h.reporter.tick(0.0) == pytest.approx(0.3)  # the other queue served; look again at 0.3
    assert [r.job.id for r in h.launched] == ["o1", "o2", "o3"]
    fake.pending["other"] = ["o4"]
    h.reporter.wake()  # e.g. a task for the other queue; a wake-up asks every queue again
    fake.retry_in = 0.2  # at 0.1 the rate allows the next start at 0.3
    assert h.reporter.tick(0.1) == pytest.approx(0.2)
    fake.calls.clear()
    h.reporter.tick(0.2)  # before the rate allows: the limited queue is not asked
    assert fake.calls == ["report 0 + fetch other"]
    fake.open = True
    h.reporter.tick(0.31)
    assert fake.calls[-2:] == ["report 0 + fetch lim", "fetch other"]
    assert "l1" in [r.job.id for r in h.launched]


def test_a_concurrency_limited_queue_is_asked_again_on_a_wake_up_or_shortly() -> None:
    fake = LimitedBroker({"lim": ["l1"], "other": []}, retry_in=None)
    h = Harness(fake, plan="lim,other", concurrency=2)
    assert h.reporter.tick(0.0) == pytest.approx(RECHECK)
    assert h.reporter.idle.is_set()  # the waiter blocks on the wake keys: a freed slot pushes one
    fake.calls.clear()
    h.reporter.tick(RECHECK / 2)
    assert fake.calls == ["report 0 + fetch other"]
    fake.open = True
    h.reporter.wake()  # the ack that freed a slot pushed the queue's wake key
    h.reporter.tick(RECHECK / 2 + 0.001)
    assert [r.job.id for r in h.launched] == ["l1"]


# -- the hand-off: a worker tells the dependents of what it ended at once ---------------------------


def test_the_hand_off_drains_what_this_worker_ended_at_once_and_leaves_a_failure_to_maintenance() -> None:
    import redis

    from taskq_cli.protocol import HANDED_OFF, FailState
    from taskq_cli.worker.handoff import IDLE as HANDOFF_IDLE
    from taskq_cli.worker.handoff import HandOff

    drained: list[tuple[list[str], dict[str, list[str]]]] = []
    failing = False

    def drain(queues: list[str], ids: dict[str, list[str]]) -> int:
        if failing:
            raise redis.ConnectionError("down")
        drained.append((queues, ids))
        return 1

    hand_off = HandOff(drain, Outage(logging.getLogger("t")))
    job = Fetched("q", "a", {"name": "x"}, "{}", "t1")
    hand_off.after_report(job, True)  # a plain ack: no dependents, nothing to tell
    hand_off.after_report(job, FailState("scheduled"))  # a retry: nothing to tell
    assert not hand_off.poked.is_set()
    assert hand_off.tick(0.0) == HANDOFF_IDLE and drained == []
    hand_off.after_report(job, HANDED_OFF)  # its outcome went to the outbox
    hand_off.after_report(Fetched("r", "b", {"name": "x"}, "{}", "t2"), FailState("dead", fired=True))
    assert hand_off.poked.is_set()  # the hand-off thread wakes at once, not after IDLE
    hand_off.tick(0.0)
    assert drained == [(["q", "r"], {"q": ["a"], "r": ["b"]})]
    failing = True  # Redis lost: the outbox keeps the entries, any maintenance pass drains them
    hand_off.after_report(job, HANDED_OFF)
    assert hand_off.tick(1.0) > 0 and len(drained) == 1
