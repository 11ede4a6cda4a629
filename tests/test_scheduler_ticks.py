"""The scheduler's loops (maintenance, cron, `taskq scheduler`'s pass), one tick at a time, against an
in-memory broker: no Redis, no threads, no sleeping. Their clock is Redis's, so `now` is the fake
broker's: a test moves it and ticks again, and "it did not happen yet" is a tick before the moment.
The scripts themselves (promote.lua, recover.lua, cron_fire.lua) are tested against real Redis in
tests/test_protocol.py and tests/test_cron.py; here it is the loops' decisions."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from taskq_cli.config import RetryDefaults
from taskq_cli.cron import Schedule
from taskq_cli.errors import BrokerUnavailable
from taskq_cli.protocol import NewTask, RetryFallbacks
from taskq_cli.scheduler import MAX_IDLE, CronRunner, Maintenance, Scheduler, SchedulerBroker

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, in ms: a whole minute, so "every 10s" ticks on it
DEFAULTS = RetryDefaults(max_retries=2, backoff_base=1.0, backoff_max=8.0)


@dataclass
class Leased:
    attempts: int
    deadline_ms: int


@dataclass
class FakeBroker:
    """The namespace as plain dicts, on a clock the test moves (`now_ms`, Redis's clock)."""

    now_ms: int = T0
    scheduled: dict[str, dict[str, int]] = field(default_factory=dict)  # queue -> {id: due ms}
    pending: dict[str, list[str]] = field(default_factory=dict)
    active: dict[str, dict[str, Leased]] = field(default_factory=dict)
    dead: dict[str, list[str]] = field(default_factory=dict)
    schedules: dict[str, str] = field(default_factory=dict)  # name -> definition JSON
    fired: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (last tick, task id)
    failures: list[Exception] = field(default_factory=list)  # raised by the next calls, in order
    calls: list[str] = field(default_factory=list)

    @property
    def dependencies(self) -> FakeBroker:  # no task here waits on another: nothing to hand off
        return self

    def maintain(self, queues: Sequence[str]) -> int:
        return 0

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.failures:
            raise self.failures.pop(0)

    def known_queues(self) -> list[str]:
        self._call("known_queues")
        return sorted({*self.scheduled, *self.pending, *self.active})

    def promote(self, queue: str) -> tuple[int, float | None]:
        self._call(f"promote {queue}")
        waiting = self.scheduled.setdefault(queue, {})
        due = sorted((at, i) for i, at in waiting.items() if at <= self.now_ms)
        for _, task_id in due:
            del waiting[task_id]
            self.pending.setdefault(queue, []).append(task_id)
        later = min(waiting.values(), default=None)
        return len(due), None if later is None else (later - self.now_ms) / 1000

    def promote_and_look(self, queue: str) -> tuple[int, float | None, bool]:
        moved, wait = self.promote(queue)
        return moved, wait, False  # no task here waits on another: no dependency work

    def recover(self, queue: str, fallbacks: RetryFallbacks) -> tuple[int, int]:
        self._call(f"recover {queue}")
        held = self.active.setdefault(queue, {})
        retried = buried = 0
        for task_id, lease in sorted(held.items()):
            if lease.deadline_ms > self.now_ms:
                continue
            del held[task_id]
            if lease.attempts > fallbacks.max_retries:
                self.dead.setdefault(queue, []).append(task_id)
                buried += 1
            else:
                due = self.now_ms + int(fallbacks.backoff_base * 1000)
                self.scheduled.setdefault(queue, {})[task_id] = due
                retried += 1
        return retried, buried

    def redis_time_ms(self) -> int:
        self._call("time")
        return self.now_ms

    def cron_definitions(self) -> dict[str, str]:
        self._call("cron_definitions")
        return dict(self.schedules)

    def cron_last(self, schedules: Sequence[tuple[str, str]]) -> list[tuple[int, str] | None]:
        return [self.fired.get(name) for name, _ in schedules]

    def cron_fire(self, name: str, tick_ms: int, task: NewTask) -> tuple[bool, str]:
        """Claims the tick: a tick fired already (by any scheduler) is not fired again."""
        self._call(f"cron_fire {name} {tick_ms}")
        last = self.fired.get(name)
        if last is not None and last[0] >= tick_ms:
            return False, ""
        self.fired[name] = (tick_ms, task.id)
        self.pending.setdefault(task.queue, []).append(task.id)
        return True, "pending"


def every(name: str, seconds: int, *, paused: bool = False) -> str:
    """A schedule created at T0: its ticks at or before T0 never fire."""
    return Schedule(name=name, spec=f"every {seconds}s", task="ping", paused=paused, created_at=T0).to_json()


def test_the_fake_has_every_method_the_loops_call() -> None:
    wanted = {n for n in vars(SchedulerBroker) if not n.startswith("_")}
    assert wanted <= set(vars(FakeBroker)), wanted - set(vars(FakeBroker))


# -- maintenance -----------------------------------------------------------------------------------


def test_a_scheduled_task_is_promoted_when_the_clock_reaches_it_and_not_a_tick_before() -> None:
    b = FakeBroker()
    b.scheduled["q"] = {"soon": T0 + 500, "later": T0 + 3_000}
    maintenance = Maintenance(b, DEFAULTS)

    assert maintenance.tick(["q"]) == 0.5  # the next pass when "soon" is due
    assert b.pending.get("q", []) == []

    b.now_ms = T0 + 499
    maintenance.tick(["q"])
    assert b.pending.get("q", []) == []

    b.now_ms = T0 + 500
    assert maintenance.tick(["q"]) == MAX_IDLE  # "later" is 2.5 s away: a pass a second at least
    assert b.pending["q"] == ["soon"]

    b.now_ms = T0 + 3_000
    maintenance.tick(["q"])
    assert b.pending["q"] == ["soon", "later"]


def test_an_expired_lease_is_recovered_retried_with_retries_left_or_dead_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = FakeBroker()
    b.active["q"] = {
        "young": Leased(1, T0 + 1_000),
        "spent": Leased(3, T0 + 1_000),
        "live": Leased(1, T0 + 9_000),
    }
    maintenance = Maintenance(b, DEFAULTS)
    caplog.set_level(logging.DEBUG, "taskq.scheduler")

    maintenance.tick(["q"])  # the leases run: nothing is recovered
    assert set(b.active["q"]) == {"young", "spent", "live"}
    assert not caplog.records

    b.now_ms = T0 + 1_000
    maintenance.tick(["q"])
    assert set(b.active["q"]) == {"live"}
    assert b.scheduled["q"] == {"young": T0 + 2_000}  # retried after the fallback backoff
    assert b.dead["q"] == ["spent"]  # 3 attempts > max_retries 2
    [said] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == "queue q: recovered 2 tasks of lost workers (1 retried, 1 dead)"


def test_one_pass_serves_every_queue_given_and_waits_for_the_soonest_due_task() -> None:
    b = FakeBroker()
    b.scheduled = {"a": {"x": T0 + 800}, "b": {"y": T0 + 300}, "c": {}}
    wait = Maintenance(b, DEFAULTS).tick(["a", "b", "c"])
    assert wait == 0.3
    assert b.calls == ["promote a", "recover a", "promote b", "recover b", "promote c", "recover c"]


# -- cron ------------------------------------------------------------------------------------------


def test_a_due_tick_fires_once_however_many_schedulers_look_and_the_wait_is_until_the_next() -> None:
    b = FakeBroker()
    b.schedules = {"beat": every("beat", 10)}
    one, two = CronRunner(b), CronRunner(b)

    b.now_ms = T0 + 9_600
    assert one.tick() == pytest.approx(0.4)  # nothing due: the next tick is 0.4 s away
    assert b.pending == {}

    b.now_ms = T0 + 10_000
    one.tick()
    two.tick()  # another scheduler, the same moment: the tick is claimed already
    assert b.pending == {"default": [f"cron:beat:{T0 + 10_000}"]}
    assert [c for c in b.calls if c.startswith("cron_fire")] == [f"cron_fire beat {T0 + 10_000}"]
    # the second runner read the tick fired (cron_last) and did not even try; had it read before
    # the first fired (the race), the claim in cron_fire refuses it: still one task
    b.cron_last = lambda schedules: [None for _ in schedules]  # type: ignore[method-assign]
    two.tick()
    assert b.pending == {"default": [f"cron:beat:{T0 + 10_000}"]}


def test_a_paused_schedule_never_fires_nor_shortens_the_wait_and_a_bad_one_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = FakeBroker()
    b.schedules = {
        "quiet": every("quiet", 1, paused=True),
        "broken": json.dumps({"name": "broken", "spec": "not a spec", "task": "ping"}),
        "slow": every("slow", 30),
    }
    b.now_ms = T0 + 30_000
    wait = CronRunner(b).tick()
    assert b.pending == {"default": [f"cron:slow:{T0 + 30_000}"]}
    assert wait == MAX_IDLE  # "slow" ticks in 30 s; the paused one-second schedule does not count
    assert "broken" not in b.fired and "quiet" not in b.fired
    assert any("schedule broken is invalid" in r.getMessage() for r in caplog.records)


def test_no_schedules_means_one_look_a_second_and_no_read_of_the_clock() -> None:
    b = FakeBroker()
    assert CronRunner(b).tick() == MAX_IDLE
    assert b.calls == ["cron_definitions"]


# -- `taskq scheduler` -------------------------------------------------------------------------------


def test_the_scheduler_pass_maintains_every_known_queue_then_cron() -> None:
    b = FakeBroker()
    b.now_ms = T0 + 10_000
    b.scheduled = {"a": {"x": T0}, "b": {}}
    b.schedules = {"beat": every("beat", 10)}
    wait = Scheduler(b, DEFAULTS).tick()
    assert b.pending["a"] == ["x"]
    assert b.pending["default"] == [f"cron:beat:{T0 + 10_000}"]
    assert b.calls[:5] == ["known_queues", "promote a", "recover a", "promote b", "recover b"]
    assert "cron_definitions" in b.calls[5:]
    assert wait == MAX_IDLE


def test_without_cron_the_scheduler_never_reads_the_schedules() -> None:
    b = FakeBroker()
    b.schedules = {"beat": every("beat", 10)}
    Scheduler(b, DEFAULTS, cron=False).tick()
    assert b.calls == ["known_queues"] and b.pending == {}


def test_redis_away_the_scheduler_backs_off_doubling_and_says_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = FakeBroker()
    b.failures = [BrokerUnavailable("connection refused")] * 3
    scheduler = Scheduler(b, DEFAULTS, cron=False)
    caplog.set_level(logging.INFO, "taskq")

    assert [scheduler.tick() for _ in range(3)] == [0.1, 0.2, 0.4]  # what run() waits between passes
    assert scheduler.tick() == MAX_IDLE  # back: the usual pace
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said  # the outage once, its end once
    assert said[1].startswith("Redis reachable again after")


def test_run_stops_without_another_pass_once_asked() -> None:
    b = FakeBroker()
    scheduler = Scheduler(b, DEFAULTS, cron=False)
    stop_during_pass = b.known_queues

    def known_queues() -> list[str]:  # a stop signal arrives while a pass runs
        scheduler.stop_event.set()
        return stop_during_pass()

    b.known_queues = known_queues  # type: ignore[method-assign]
    assert scheduler.run() == 0  # in this thread: it returns at once, without waiting the pass's wait
    assert b.calls == ["known_queues"]
