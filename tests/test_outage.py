"""Redis trouble in the long-running loops, without Redis: the Outage log driven by a fake clock, and
the scheduler's loop against a broker that answers errors (NOPERM, OOM, READONLY) before working."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ReadOnlyError, ResponseError

from taskq_cli.config import RetryDefaults
from taskq_cli.outage import Outage, redis_backoff
from taskq_cli.scheduler import Scheduler
from taskq_cli.stopsignals import REPEAT_WINDOW, StopSignals


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_an_outage_is_logged_once_then_reminded_at_doubling_intervals_and_its_end_once(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outage = Outage(logging.getLogger("test.outage"), clock)
    caplog.set_level(logging.INFO, "test.outage")
    # Given three loops failing every 0.1 s for 30 s
    waits = []
    for _ in range(300):
        for loop in ("dispatcher", "heartbeat", "maintenance"):
            waits.append(outage.failed(loop, RedisConnectionError("refused")))
        clock.now += 0.1
    # When they work again, one after the other
    for loop in ("dispatcher", "heartbeat", "maintenance"):
        outage.ok(loop)

    # Then: the first failure, reminders at 5, 10, 20 s, and one line at the end
    said = lines(caplog)
    assert len(said) == 5, said
    assert said[0].startswith("dispatcher: Redis unreachable (refused)")
    assert [s for s in said if "for " in s] == said[1:4]
    assert said[-1] == "Redis reachable again after 30.0s"
    # and each loop backs off on its own count: 0.1 s doubling up to 5 s
    assert waits[:3] == [0.1, 0.1, 0.1] and waits[3:6] == [0.2, 0.2, 0.2] and max(waits) == 5.0


def test_a_loop_failing_alone_keeps_the_outage_open_while_others_work(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outage = Outage(logging.getLogger("test.outage"), clock)
    caplog.set_level(logging.INFO, "test.outage")
    for _ in range(20):  # the heartbeat is refused SET (an ACL change) while the dispatcher fetches
        outage.failed("heartbeat", NoPermissionError("no permissions to run the 'set' command"))
        outage.ok("dispatcher")
        clock.now += 0.1
    outage.failed("heartbeat", ReadOnlyError("You can't write against a read only replica."))
    outage.ok("heartbeat")

    said = lines(caplog)
    assert len(said) == 3, said  # NOPERM, then READONLY (another error is news), then the end
    assert "NoPermissionError" in said[0] and "ReadOnlyError" in said[1]
    assert said[2] == "Redis reachable again after 2.0s"


def test_backoff_doubles_from_a_tenth_of_a_second_to_five() -> None:
    assert [redis_backoff(n) for n in range(1, 9)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


class RefusingBroker:
    """Answers `errors` (one per call) before it works."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0
        self.worked = threading.Event()

    def known_queues(self) -> list[str]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.worked.set()
        return []

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call {name}")


def test_the_scheduler_outlives_noperm_oom_and_readonly_and_says_when_redis_answers_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = RefusingBroker(
        [
            NoPermissionError("this user has no permissions to run the 'evalsha' command"),
            ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
            ReadOnlyError("You can't write against a read only replica."),
        ]
    )
    scheduler = Scheduler(broker, RetryDefaults(), cron=False)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, "taskq")
    thread = threading.Thread(target=scheduler.run, daemon=True)
    thread.start()
    try:
        assert broker.worked.wait(5), lines(caplog)
    finally:
        scheduler.stop_event.set()
        thread.join(5)
    assert not thread.is_alive()
    said = lines(caplog)
    assert len(said) == 4, said
    assert [s.split(" (")[0] for s in said[:3]] == [
        "scheduler: Redis error NoPermissionError",
        "scheduler: Redis error ResponseError",
        "scheduler: Redis error ReadOnlyError",
    ]
    assert said[3].startswith("Redis reachable again after")


class _Exited(Exception):
    pass


def _signals(monkeypatch: pytest.MonkeyPatch) -> tuple[StopSignals, list[str], list[float]]:
    import taskq_cli.stopsignals as stopsignals

    events: list[str] = []
    now = [100.0]

    def exit_now(code: int) -> None:
        events.append(f"exit {code}")
        raise _Exited

    monkeypatch.setattr(stopsignals.os, "_exit", exit_now)
    return StopSignals(lambda: events.append("graceful"), clock=lambda: now[0]), events, now


def test_one_sigterm_delivered_twice_within_the_window_is_one_stop_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signals, events, now = _signals(monkeypatch)
    signals.handle(signal.SIGTERM)
    now[0] += REPEAT_WINDOW / 2
    signals.handle(signal.SIGTERM)
    assert events == ["graceful"]
    now[0] += REPEAT_WINDOW
    with pytest.raises(_Exited):
        signals.handle(signal.SIGTERM)
    assert events == ["graceful", "exit 1"]


def test_a_second_ctrl_c_stops_at_once_however_soon_it_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    signals, events, now = _signals(monkeypatch)
    signals.handle(signal.SIGINT)
    now[0] += 0.05
    with pytest.raises(_Exited):
        signals.handle(signal.SIGINT)
    assert events == ["graceful", "exit 1"]
