"""Settings: the one place where defaults live and where the environment is read."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

from taskq_cli.errors import UsageError
from taskq_cli.timeparse import parse_duration

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_NAMESPACE = "taskq"
DEFAULT_QUEUE = "default"

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True)
class RetryDefaults:
    """Per-task execution defaults; a decorator overrides them, an enqueue option overrides both."""

    max_retries: int = 3
    timeout: float | None = 600.0
    backoff_base: float = 5.0
    backoff_max: float = 3600.0
    result_ttl: float = 600.0


@dataclass(frozen=True)
class Settings:
    redis_url: str = DEFAULT_REDIS_URL
    namespace: str = DEFAULT_NAMESPACE
    app: str | None = None
    dead_max: int = 100_000
    dead_ttl: float = 30 * 86400.0
    max_queues: int = 1000  # queues per namespace: every maintenance pass visits each one
    defaults: RetryDefaults = field(default_factory=RetryDefaults)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from TASKQ_* variables; explicit non-None overrides win (options beat env)."""
        env = os.environ
        values: dict[str, object] = {
            "redis_url": env.get("TASKQ_REDIS_URL") or DEFAULT_REDIS_URL,
            "namespace": env.get("TASKQ_NAMESPACE") or DEFAULT_NAMESPACE,
            "app": env.get("TASKQ_APP") or None,
        }
        if env.get("TASKQ_DEAD_MAX"):
            values["dead_max"] = _positive_int("TASKQ_DEAD_MAX", env["TASKQ_DEAD_MAX"])
        if env.get("TASKQ_MAX_QUEUES"):
            values["max_queues"] = _positive_int("TASKQ_MAX_QUEUES", env["TASKQ_MAX_QUEUES"])
        if env.get("TASKQ_DEAD_TTL"):
            values["dead_ttl"] = parse_duration(env["TASKQ_DEAD_TTL"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        check_name("namespace", settings.namespace)
        return settings

    def with_defaults(self, **changes: object) -> Settings:
        known = {k: v for k, v in changes.items() if v is not None}
        return replace(self, defaults=replace(self.defaults, **known))  # type: ignore[arg-type]


def app_from_env() -> str | None:
    """TASKQ_APP: the app (`module[:attribute]`) a command or the API loads when none is given."""
    return os.environ.get("TASKQ_APP") or None


def api_token_from_env() -> str:
    """TASKQ_API_TOKEN, stripped ("" when unset): the bearer token of the HTTP API."""
    return os.environ.get("TASKQ_API_TOKEN", "").strip()


def completing() -> bool:
    """True while the shell asks for completions (Typer sets _TASKQ_COMPLETE): Typer must answer."""
    return bool(os.environ.get("_TASKQ_COMPLETE"))


def child_env(redis_url: str, namespace: str) -> dict[str, str]:
    """The environment of a process started for this Redis and namespace (`taskq dev`'s services
    and commands): this one's, pointed at them."""
    return {**os.environ, "TASKQ_REDIS_URL": redis_url, "TASKQ_NAMESPACE": namespace}


def check_name(kind: str, value: str) -> str:
    """Queue and namespace names: letters, digits, `_ . -` (they become parts of Redis keys)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise UsageError(f"invalid {kind} {value!r}: use 1-128 letters, digits, '_', '.', '-'")
    return value


def _positive_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name} must be a whole number, got {text!r}") from None
    if value < 1:
        raise UsageError(f"{name} must be at least 1, got {value}")
    return value
