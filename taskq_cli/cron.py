"""Periodic schedules: their definition and the tick arithmetic (pure; no Redis here).

A schedule fires at ticks of a cron expression in its time zone (cronsim evaluates it, DST included:
a time skipped by spring-forward fires once at the jump, a repeated hour fires once), or every N
seconds (ticks aligned to the epoch, so every scheduler agrees on them). Which tick to fire now is
decided by `due_tick`; the firing itself is claimed atomically in Redis (protocol cron_fire).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskq_cli.config import DEFAULT_QUEUE, check_name
from taskq_cli.errors import UsageError
from taskq_cli.timeparse import parse_duration

MISFIRE_GRACE_MS = 60_000  # a tick older than this when a scheduler looks is "missed"
CATCHUP_POLICIES = ("skip", "once")
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = re.compile(r"^(?:@every|every)\s+(\S+)$", re.IGNORECASE)
_SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9_.\-:]{1,100}$")


@dataclass(frozen=True)
class Schedule:
    name: str
    spec: str  # a cron expression, an @alias, or "every 30s"
    task: str
    payload: dict[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    timezone: str = "UTC"
    catchup: str = "skip"  # missed ticks: "skip" to the next, or run "once" to catch up
    paused: bool = False
    max_retries: int | None = None
    created_at: int = 0  # ms; ticks at or before it never fire

    def __post_init__(self) -> None:
        if not _SCHEDULE_NAME.match(self.name):
            raise UsageError(f"invalid schedule name {self.name!r}: use 1-100 letters, digits, '_.-:'")
        check_name("queue", self.queue)
        if self.catchup not in CATCHUP_POLICIES:
            raise UsageError(f"invalid catch-up policy {self.catchup!r}: use skip or once")
        if not isinstance(self.payload, dict):
            raise UsageError("a schedule's payload must be a JSON object")
        zone(self.timezone)
        Ticks(self.spec, self.timezone)  # validates the expression

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        return cls(**json.loads(text))

    def with_changes(self, **changes: Any) -> Schedule:
        return replace(self, **changes)

    @property
    def ticks(self) -> Ticks:
        return Ticks(self.spec, self.timezone)

    def task_id(self, tick_ms: int) -> str:
        """The id of the task a tick enqueues: the same for every scheduler that fires it."""
        return f"cron:{self.name}:{tick_ms}"


def local_time(iso_utc: str | None, timezone: str) -> str | None:
    """A SPEC timestamp (`2026-11-28T18:00:00.000Z`) as people read it in a schedule's zone:
    `2026-11-28 19:00:00+01:00`."""
    if iso_utc is None:
        return None
    moment = datetime.fromisoformat(iso_utc.replace("Z", "+00:00")).astimezone(zone(timezone))
    return moment.isoformat(sep=" ", timespec="seconds")


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from None


class Ticks:
    """The instants (epoch ms) a schedule fires at."""

    def __init__(self, spec: str, timezone: str = "UTC") -> None:
        self.spec = spec.strip()
        self.zone = zone(timezone)
        self.interval_ms: int | None = None
        self.expression = ""
        every = _EVERY.match(self.spec)
        if every:
            seconds = parse_duration(every.group(1))
            if seconds < 1:
                raise UsageError(f"invalid schedule {spec!r}: an interval must be at least 1s")
            self.interval_ms = int(seconds * 1000)
            return
        self.expression = ALIASES.get(self.spec.lower(), self.spec)
        if len(self.expression.split()) != 5:
            raise UsageError(
                f"invalid cron expression {spec!r}: use 5 fields (minute hour day month weekday), "
                "an alias such as @daily, or 'every 30s'"
            )
        self._cron(datetime.now(UTC))  # raises on a bad field

    def previous(self, now_ms: int) -> int:
        """The latest tick at or before `now_ms`."""
        if self.interval_ms is not None:
            return now_ms - now_ms % self.interval_ms
        moment = datetime.fromtimestamp(now_ms / 1000, tz=UTC) + timedelta(microseconds=1)
        return _ms(next(self._cron(moment, reverse=True)))

    def following(self, after_ms: int) -> int:
        """The first tick strictly after `after_ms`."""
        if self.interval_ms is not None:
            return after_ms - after_ms % self.interval_ms + self.interval_ms
        return _ms(next(self._cron(datetime.fromtimestamp(after_ms / 1000, tz=UTC))))

    def _cron(self, moment: datetime, reverse: bool = False) -> Any:
        from cronsim import CronSim, CronSimError

        try:
            return CronSim(self.expression, moment.astimezone(self.zone), reverse=reverse)
        except CronSimError as exc:
            raise UsageError(f"invalid cron expression {self.spec!r}: {exc}") from None


def due_tick(
    schedule: Schedule, last_fired_ms: int | None, now_ms: int, grace_ms: int = MISFIRE_GRACE_MS
) -> int | None:
    """The tick to fire now, or None. The latest tick not yet fired fires when it is fresh (at most
    `grace_ms` old). Older ones were missed (no scheduler ran): policy 'skip' waits for the next
    tick, 'once' fires the latest missed tick once."""
    if schedule.paused:
        return None
    floor = max(last_fired_ms or 0, schedule.created_at)
    tick = schedule.ticks.previous(now_ms)
    if tick <= floor:
        return None
    if now_ms - tick <= grace_ms or schedule.catchup == "once":
        return tick
    return None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
