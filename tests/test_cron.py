"""Periodic schedules: tick arithmetic (DST included), the catch-up policy, and exactly-once firing
across racing schedulers against a real Redis with the scripts' clock driven by the test."""

from __future__ import annotations

import itertools
import random
import threading
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import redis

from taskq_cli import TaskQueue, UsageError
from taskq_cli.cron import Schedule, Ticks, due_tick
from taskq_cli.protocol import Broker
from taskq_cli.protocol.keys import QueueKeys
from taskq_cli.scheduler import CronRunner

from .conftest import Clock


def ms(*parts: int, tz: str = "UTC") -> int:
    return int(datetime(*parts, tzinfo=ZoneInfo(tz)).timestamp() * 1000)  # type: ignore[misc]


def local(tick: int, tz: str) -> str:
    return datetime.fromtimestamp(tick / 1000, tz=ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


def following(spec: str, start: int, count: int, tz: str = "UTC") -> list[int]:
    ticks, out, at = Ticks(spec, tz), [], start
    for _ in range(count):
        at = ticks.following(at)
        out.append(at)
    return out


# -- tick arithmetic --------------------------------------------------------------------------------


def test_cron_list_shows_the_next_run_in_the_schedules_own_time_zone_and_utc_in_json(run_cli) -> None:  # type: ignore[no-untyped-def]
    import json
    from datetime import date, timedelta

    # Asia/Kolkata: UTC+05:30 all year (no DST), so 02:30 there is 21:00 UTC the day before
    assert run_cli("cron", "add", "nightly", "30 2 * * *", "report", "--tz", "Asia/Kolkata").returncode == 0

    [row] = json.loads(run_cli("cron", "list", "--json").stdout)
    table = run_cli("cron", "list").stdout

    assert row["next_run"].endswith("T21:00:00.000Z")
    local_day = date.fromisoformat(row["next_run"][:10]) + timedelta(days=1)
    assert f"{local_day.isoformat()} 02:30:00+05:30" in table, table


@pytest.mark.parametrize(
    ("spec", "start", "expected"),
    [
        ("*/15 * * * *", ms(2026, 1, 1, 10, 7), [ms(2026, 1, 1, 10, 15), ms(2026, 1, 1, 10, 30)]),
        ("@hourly", ms(2026, 1, 1, 10, 7), [ms(2026, 1, 1, 11), ms(2026, 1, 1, 12)]),
        ("@daily", ms(2026, 1, 1, 10), [ms(2026, 1, 2), ms(2026, 1, 3)]),
        ("0 9 * * MON-FRI", ms(2026, 1, 2, 10), [ms(2026, 1, 5, 9), ms(2026, 1, 6, 9)]),  # Fri -> Mon
        ("0 0 1 JAN,JUL *", ms(2026, 1, 2), [ms(2026, 7, 1), ms(2027, 1, 1)]),
        ("10-12 3 * * *", ms(2026, 1, 1), [ms(2026, 1, 1, 3, 10), ms(2026, 1, 1, 3, 11)]),
        ("every 30s", ms(2026, 1, 1, 0, 0, 10), [ms(2026, 1, 1, 0, 0, 30), ms(2026, 1, 1, 0, 1)]),
        ("@every 1h30m", ms(2026, 1, 1, 0, 10), [ms(2026, 1, 1, 1, 30), ms(2026, 1, 1, 3)]),
    ],
)
def test_cron_expressions_aliases_names_ranges_steps_and_intervals(
    spec: str, start: int, expected: list[int]
) -> None:
    assert following(spec, start, 2) == expected


def test_the_previous_tick_includes_a_tick_happening_now() -> None:
    assert Ticks("*/5 * * * *").previous(ms(2026, 1, 1, 0, 5)) == ms(2026, 1, 1, 0, 5)
    assert Ticks("*/5 * * * *").previous(ms(2026, 1, 1, 0, 9)) == ms(2026, 1, 1, 0, 5)


def test_a_daily_time_skipped_by_spring_forward_runs_once_at_the_jump() -> None:
    tz = "Europe/Berlin"  # 2026-03-29: 02:00 -> 03:00
    ticks = following("30 2 * * *", ms(2026, 3, 27, 12, tz=tz), 3, tz)
    assert [local(t, tz) for t in ticks] == [
        "2026-03-28 02:30 CET",
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:30 CEST",
    ]


def test_a_daily_time_in_the_repeated_hour_of_fall_back_runs_once() -> None:
    tz = "Europe/Berlin"  # 2026-10-25: 03:00 -> 02:00, so 02:30 happens twice
    ticks = following("30 2 * * *", ms(2026, 10, 24, 12, tz=tz), 3, tz)
    assert [local(t, tz) for t in ticks] == [
        "2026-10-25 02:30 CEST",
        "2026-10-26 02:30 CET",
        "2026-10-27 02:30 CET",
    ]
    hourly = following("0 * * * *", ms(2026, 10, 25, 0, 30, tz=tz), 4, tz)
    assert len(set(hourly)) == 4 and hourly == sorted(hourly)


@pytest.mark.parametrize(
    ("spec", "tz", "message"),
    [
        ("61 * * * *", "UTC", "invalid cron"),
        ("* * *", "UTC", "5 fields"),
        ("@sometimes", "UTC", "5 fields"),
        ("every 0s", "UTC", "at least 1s"),
        ("every soon", "UTC", "duration"),
        ("@daily", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_invalid_schedules_and_time_zones_are_usage_errors(spec: str, tz: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Schedule(name="s", spec=spec, task="t", timezone=tz)


# -- which tick to fire -----------------------------------------------------------------------------


def test_a_fresh_tick_fires_and_only_once_it_was_recorded() -> None:
    s = Schedule(name="s", spec="*/5 * * * *", task="t")
    now = ms(2026, 1, 1, 0, 5, 20)
    assert due_tick(s, None, now) == ms(2026, 1, 1, 0, 5)
    assert due_tick(s, ms(2026, 1, 1, 0, 5), now) is None


def test_a_schedule_never_fires_a_tick_from_before_it_existed() -> None:
    s = Schedule(name="s", spec="*/5 * * * *", task="t", created_at=ms(2026, 1, 1, 0, 5, 10))
    assert due_tick(s, None, ms(2026, 1, 1, 0, 5, 20)) is None
    assert due_tick(s, None, ms(2026, 1, 1, 0, 10, 1)) == ms(2026, 1, 1, 0, 10)


def test_missed_ticks_are_skipped_by_default_and_run_once_with_catch_up() -> None:
    last = ms(2026, 1, 1, 0, 0)
    now = ms(2026, 1, 1, 1, 2, 30)  # 12 ticks missed; the latest is 2.5 minutes old
    skip = Schedule(name="s", spec="*/5 * * * *", task="t")
    once = Schedule(name="s", spec="*/5 * * * *", task="t", catchup="once")
    assert due_tick(skip, last, now) is None
    assert due_tick(once, last, now) == ms(2026, 1, 1, 1, 0)
    assert due_tick(once, ms(2026, 1, 1, 1, 0), now) is None, "caught up: once, not per missed tick"
    assert due_tick(skip, last, ms(2026, 1, 1, 1, 5, 1)) == ms(2026, 1, 1, 1, 5), "then on time again"


def test_a_paused_schedule_fires_nothing() -> None:
    s = Schedule(name="s", spec="every 1s", task="t", paused=True)
    assert due_tick(s, None, ms(2026, 1, 1)) is None


# -- exactly once in Redis --------------------------------------------------------------------------


@pytest.fixture
def schedulers(redis_url: str, namespace: str, clock: Clock) -> list[CronRunner]:
    """Three independent schedulers (own clients) sharing the test's clock."""
    runners = []
    for _ in range(3):
        broker = TaskQueue(redis_url=redis_url, namespace=namespace).broker
        broker.clock = clock
        runners.append(CronRunner(broker))
    return runners


def fired_ids(raw: redis.Redis, namespace: str, queue: str = "default") -> list[str]:
    return sorted(raw.hkeys(QueueKeys(namespace, queue).tasks))


def test_three_racing_schedulers_fire_each_tick_exactly_once(
    tq: TaskQueue, schedulers: list[CronRunner], clock: Clock, raw: redis.Redis, namespace: str
) -> None:
    tq.schedule("every-second", "every 1s", "report", {"n": 1})
    tq.schedule("every-5s", "every 5s", "report", queue="other")
    clock.advance(0.5)
    start = clock.ms
    rng = random.Random(3)
    for _ in range(300):
        clock.advance(rng.choice([0.3, 0.5, 1.0]))
        for runner in rng.sample(schedulers, len(schedulers)):
            runner.tick()
    seconds = (clock.ms - start) // 1000
    ids = fired_ids(raw, namespace)
    assert len(ids) == len(set(ids))
    assert abs(len(ids) - seconds) <= 1, (len(ids), seconds)
    ticks = sorted(int(i.split(":")[-1]) for i in ids)
    assert all(b - a == 1000 for a, b in itertools.pairwise(ticks)), "no tick missed or doubled"
    assert len(fired_ids(raw, namespace, "other")) in (seconds // 5, seconds // 5 + 1)


def test_schedulers_racing_in_threads_at_the_same_instant_fire_once(
    tq: TaskQueue, schedulers: list[CronRunner], clock: Clock, raw: redis.Redis, namespace: str
) -> None:
    tq.schedule("s", "every 1s", "report")
    for _ in range(20):
        clock.advance(1)
        barrier = threading.Barrier(len(schedulers))

        def go(runner: CronRunner, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            runner.tick()

        threads = [threading.Thread(target=go, args=(r,)) for r in schedulers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(fired_ids(raw, namespace)) == 20


def test_a_restarted_scheduler_does_not_fire_a_tick_again(
    tq: TaskQueue, schedulers: list[CronRunner], clock: Clock, raw: redis.Redis, namespace: str
) -> None:
    tq.schedule("s", "*/5 * * * *", "report")
    clock.ms = Ticks("*/5 * * * *").following(clock.ms) + 1500
    schedulers[0].tick()
    restarted = CronRunner(schedulers[1].broker)
    restarted.tick()
    clock.advance(20)
    restarted.tick()
    assert len(fired_ids(raw, namespace)) == 1


def test_a_done_tick_task_does_not_let_the_tick_fire_again(
    tq: TaskQueue,
    schedulers: list[CronRunner],
    clock: Clock,
    broker: Broker,
    raw: redis.Redis,
    namespace: str,
) -> None:
    tq.schedule("s", "*/5 * * * *", "report")
    clock.ms = Ticks("*/5 * * * *").following(clock.ms) + 1000
    schedulers[0].tick()
    job = broker.fetch("default", 30, "w")
    assert job is not None and broker.ack(job, None, 0)  # done and forgotten at once
    schedulers[1].tick()
    assert raw.hlen(QueueKeys(namespace, "default").tasks) == 0, "the claim, not the task, decides"


def test_catch_up_once_fires_a_single_task_for_a_long_outage(
    tq: TaskQueue, schedulers: list[CronRunner], clock: Clock, raw: redis.Redis, namespace: str
) -> None:
    tq.schedule("skipper", "*/5 * * * *", "report")
    tq.schedule("catcher", "*/5 * * * *", "report", catchup="once")
    clock.advance(3 * 3600)  # no scheduler for three hours, and then 2.5 minutes past a tick: a tick
    clock.advance(150 - (clock.ms // 1000) % 300)  # missed by less than the grace would still fire
    for runner in schedulers:
        runner.tick()
    ids = fired_ids(raw, namespace)
    assert [i.split(":")[1] for i in ids] == ["catcher"]


def test_pausing_stops_firing_and_resuming_starts_again(
    tq: TaskQueue, schedulers: list[CronRunner], clock: Clock, raw: redis.Redis, namespace: str
) -> None:
    tq.schedule("s", "every 1s", "report")
    tq.set_schedule_paused("s", True)
    for _ in range(5):
        clock.advance(1)
        schedulers[0].tick()
    assert fired_ids(raw, namespace) == []
    tq.set_schedule_paused("s", False)
    clock.advance(1)
    schedulers[0].tick()
    assert len(fired_ids(raw, namespace)) == 1


def test_readding_an_unchanged_schedule_keeps_it_and_a_changed_one_starts_afresh(tq: TaskQueue) -> None:
    first = tq.schedule("s", "@daily", "report")
    assert tq.schedule("s", "@daily", "report").created_at == first.created_at
    assert tq.schedule("s", "@hourly", "report").spec == "@hourly"
    assert [s.spec for s in tq.schedules()] == ["@hourly"]
    assert tq.unschedule("s") and tq.schedules() == []


def test_periodic_decorator_registers_the_task_and_syncs_its_schedule(redis_url: str, namespace: str) -> None:
    tq = TaskQueue(redis_url=redis_url, namespace=namespace)

    @tq.periodic("*/10 * * * *", payload={"kind": "short"}, timezone="Europe/Berlin")
    def build_report(kind: str) -> str:
        return kind

    assert (
        "tests.test_cron.test_periodic_decorator_registers_the_task_and_syncs_its_schedule.<locals>"
        ".build_report" in tq.registry
    )
    assert tq.schedules() == []
    tq.sync_schedules()
    [stored] = tq.schedules()
    assert stored.name == "build_report"
    assert (stored.spec, stored.timezone, stored.payload) == (
        "*/10 * * * *",
        "Europe/Berlin",
        {"kind": "short"},
    )
    with pytest.raises(UsageError):
        tq.periodic("@daily", payload={"wrong": 1})(build_report)
    tq.close()


# -- the command line -------------------------------------------------------------------------------


def test_cron_commands_add_list_pause_resume_and_remove(run_cli, namespace: str) -> None:  # type: ignore[no-untyped-def]
    added = run_cli(
        "cron", "add", "nightly", "30 2 * * *", "report", '{"kind": "daily"}', "--tz", "Europe/Berlin"
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("scheduled nightly: next run 20")
    listed = run_cli("cron", "list", "--json")
    import json

    [row] = json.loads(listed.stdout)
    assert row["name"] == "nightly" and row["tz"] == "Europe/Berlin" and row["payload"] == {"kind": "daily"}
    assert row["next_run"].endswith("Z") and row["last_run"] is None and row["paused"] is False
    assert run_cli("cron", "pause", "nightly").returncode == 0
    assert json.loads(run_cli("cron", "list", "--json").stdout)[0]["paused"] is True
    assert run_cli("cron", "resume", "nightly").returncode == 0
    assert run_cli("cron", "remove", "nightly").returncode == 0
    gone = run_cli("cron", "remove", "nightly")
    assert gone.returncode == 1 and gone.stderr.startswith("taskq: error: schedule 'nightly' not found")


@pytest.mark.parametrize(
    "args",
    [
        ("bad", "61 * * * *", "report"),
        ("bad", "@daily", "report", "--tz", "Nowhere/Land"),
        ("bad", "@daily", "report", "[1]"),
        ("bad", "@daily", "report", "--catchup", "sometimes"),
        ("bad name", "@daily", "report"),
    ],
)
def test_invalid_cron_input_exits_2_with_one_line_and_stores_nothing(
    run_cli,
    raw: redis.Redis,  # type: ignore[no-untyped-def]
    namespace: str,
    args: tuple[str, ...],
) -> None:
    result = run_cli("cron", "add", *args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert raw.keys(f"{namespace}:*") == []


def test_a_scheduler_process_fires_an_interval_schedule(
    run_cli, spawn, raw: redis.Redis, namespace: str
) -> None:  # type: ignore[no-untyped-def]
    from .support import until

    assert run_cli("cron", "add", "beat", "every 1s", "report").returncode == 0
    spawn("scheduler")
    spawn("scheduler")
    until(lambda: len(fired_ids(raw, namespace)) >= 3, timeout=10)
    ticks = [int(i.split(":")[-1]) for i in fired_ids(raw, namespace)]
    assert len(ticks) == len(set(ticks)) and all(t % 1000 == 0 for t in ticks)


def test_ticks_use_utc_epoch_milliseconds() -> None:
    assert Ticks("every 1s").previous(ms(2026, 1, 1) + 999) == ms(2026, 1, 1)
    assert datetime.fromtimestamp(ms(2026, 1, 1) / 1000, UTC).year == 2026
