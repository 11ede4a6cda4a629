"""Logging for the long-running commands: human lines on a terminal, JSON lines with --log-format json.
Task events carry their fields (task id, name, attempt, duration...) in `extra={"fields": {...}}`."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from taskq_cli.errors import UsageError

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        entry: dict[str, Any] = {
            "ts": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "info", fmt: str = "text") -> None:
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise UsageError(f"invalid --log-level {level!r}: use debug, info, warning or error")
    if fmt not in FORMATS:
        raise UsageError(f"invalid --log-format {fmt!r}: use text or json")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("taskq")
    root.handlers[:] = [handler]
    root.setLevel(number)
    root.propagate = False


def current_setup() -> tuple[str, str] | None:
    """(level, format) as `configure` set them in this process, or None when it was not called: what
    a child process started afresh (the fork server's) needs to log as its worker does."""
    root = logging.getLogger("taskq")
    if root.propagate or not root.handlers:
        return None
    fmt = "json" if isinstance(root.handlers[0].formatter, JsonFormatter) else "text"
    return logging.getLevelName(root.level).lower(), fmt
