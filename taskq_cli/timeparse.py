"""Durations (`30`, `1.5s`, `500ms`, `1h30m`) and datetimes (ISO 8601) from users."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from taskq_cli.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)")


MAX_SECONDS = 100 * 365 * 86400.0  # no duration or delay beyond a century (keeps ms integers sane)


def parse_duration(text: str | float | int) -> float:
    """Seconds from a duration: a plain number means seconds; units ms, s, m, h, d may be chained."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise UsageError(f"invalid duration {text!r}: give seconds or a string such as 1h30m")

    seconds = float(text) if isinstance(text, int | float) else _parse_duration_text(text.strip().lower())
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_SECONDS:
        raise UsageError(f"invalid duration {text!r}: must be between 0 and 100 years")
    return seconds


def _parse_duration_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise UsageError(f"invalid duration {text!r} (examples: 30, 30s, 1.5s, 500ms, 5m, 2h, 1d, 1h30m)")
    return total


def parse_datetime(text: str) -> datetime:
    """An aware datetime from ISO 8601; a value without a zone is local time (SPEC)."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(
            f"invalid date/time {text!r} (expected ISO 8601, e.g. 2026-12-01T09:00:00Z)"
        ) from None
    if value.tzinfo is None:
        value = value.astimezone()  # naive = local time
    return value


def iso_ms(epoch_ms: int | float | None) -> str | None:
    """`2026-11-28T18:00:00.123Z` from epoch milliseconds (the SPEC's JSON timestamp form)."""
    if epoch_ms is None:
        return None
    moment = datetime.fromtimestamp(float(epoch_ms) / 1000.0, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_rate(text: str) -> tuple[int, float]:
    """A rate `N/DURATION` (`100/s`, `600/1m`, `5/10s`): at most N in any window of that many
    seconds."""
    count, slash, window = str(text).strip().partition("/")
    if not slash or not count.isdigit() or int(count) < 1:
        raise UsageError(f"invalid rate {text!r}: use N/DURATION with N >= 1 (100/s, 600/1m, 5/10s)")
    unit = window.strip()
    seconds = parse_duration(unit if unit[:1].isdigit() or unit[:1] == "." else f"1{unit}")
    if seconds < 0.001:
        raise UsageError(f"invalid rate {text!r}: the window must be at least 1ms")
    return int(count), seconds
