"""Settings: the one place where defaults live and where the environment is read."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
    profile: str | None = None  # the --profile these were resolved with (configure keeps it)
    dead_max: int = 100_000
    dead_ttl: float = 30 * 86400.0
    max_queues: int = 1000  # queues per namespace: every maintenance pass visits each one
    defaults: RetryDefaults = field(default_factory=RetryDefaults)

    @classmethod
    def from_env(cls, profile: str | None = None, **overrides: object) -> Settings:
        """Settings from explicit non-None overrides (options), else TASKQ_* variables, else the
        profile (`profile`, else TASKQ_PROFILE, else [profiles.default]), else the defaults."""
        env = os.environ
        given = {k: overrides.pop(k) for k in CONNECTION if k in overrides}
        resolved = resolve(given, profile)  # type: ignore[arg-type]
        values: dict[str, object] = {k: s.value for k, s in resolved.items()}
        values["profile"] = profile
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


def app_from_env(profile: str | None = None) -> str | None:
    """The app (`module[:attribute]`) a command or the API loads when no --app is given: TASKQ_APP,
    else the profile's `app`."""
    return resolve({}, profile)["app"].value


def api_token_from_env() -> str:
    """TASKQ_API_TOKEN, stripped ("" when unset): the bearer token of the HTTP API."""
    return os.environ.get("TASKQ_API_TOKEN", "").strip()


def metrics_port(given: int | None) -> int | None:
    """The worker's metrics port: --metrics-port, else TASKQ_METRICS_PORT, else None (no metrics).
    0 picks a free port (the worker logs which)."""
    if given is None:
        text = os.environ.get("TASKQ_METRICS_PORT", "").strip()
        if not text:
            return None
        try:
            given = int(text)
        except ValueError:
            raise UsageError(f"TASKQ_METRICS_PORT must be a port number, got {text!r}") from None
    if not 0 <= given <= 65535:
        raise UsageError(f"--metrics-port must be between 0 and 65535, got {given}")
    return given


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


# -- profiles --------------------------------------------------------------------------------------

# The settings a profile (and an option, and the environment) gives: name -> (variable, default).
CONNECTION: dict[str, tuple[str, str | None]] = {
    "redis_url": ("TASKQ_REDIS_URL", DEFAULT_REDIS_URL),
    "namespace": ("TASKQ_NAMESPACE", DEFAULT_NAMESPACE),
    "app": ("TASKQ_APP", None),
}


@dataclass(frozen=True)
class Resolved:
    """One effective setting and where it came from: "option", "env", "profile:NAME" or "default"."""

    value: str | None
    source: str


def config_path() -> Path:
    """$XDG_CONFIG_HOME/taskq/config.toml, XDG_CONFIG_HOME defaulting to ~/.config."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "taskq" / "config.toml"


def resolve(options: Mapping[str, str | None], profile: str | None = None) -> dict[str, Resolved]:
    """Each CONNECTION setting: the option (non-None in `options`), else the environment, else the
    chosen profile, else the built-in default. An unknown profile or a malformed file: UsageError."""
    name, values = chosen_profile(profile)
    out: dict[str, Resolved] = {}
    for key, (variable, default) in CONNECTION.items():
        if options.get(key):
            out[key] = Resolved(options[key], "option")
        elif os.environ.get(variable):
            out[key] = Resolved(os.environ[variable], "env")
        elif key in values:
            out[key] = Resolved(values[key], f"profile:{name}")
        else:
            out[key] = Resolved(default, "default")
    return out


def chosen_profile(option: str | None = None) -> tuple[str | None, dict[str, str]]:
    """The profile in force and its values: --profile, else TASKQ_PROFILE (either must exist in the
    file), else [profiles.default] when the file has one; (None, {}) when none applies."""
    name = option or os.environ.get("TASKQ_PROFILE") or None
    path = config_path()
    profiles = _profiles_of(path)
    if name is None:
        return ("default", profiles["default"]) if "default" in profiles else (None, {})
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise UsageError(f"unknown profile {name!r}: {path} defines {known}")
    return name, profiles[name]


def _profiles_of(path: Path) -> dict[str, dict[str, str]]:
    """The file's profiles ({} without a file: tomllib is not even imported); read once per version
    of the file (a command resolves its settings several times)."""
    try:
        stat = path.stat()
    except OSError:
        return {}
    return _read_profiles(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _read_profiles(where: str, _mtime_ns: int, _size: int) -> dict[str, dict[str, str]]:
    import tomllib

    path = Path(where)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict):
        raise UsageError(f"{path}: 'profiles' must be a table of [profiles.NAME] tables")
    for name, table in profiles.items():
        if not isinstance(table, dict):
            raise UsageError(f"{path}: profiles.{name} must be a table")
        for key, value in table.items():
            if key not in CONNECTION or not isinstance(value, str):
                allowed = ", ".join(CONNECTION)
                raise UsageError(f"{path}: profiles.{name}.{key}: expected one of {allowed} as a string")
    return profiles


def mask_url(url: str | None) -> str | None:
    """The URL with its password (if any) replaced by ***, for showing settings."""
    if not url or "@" not in url:
        return url
    parts = urlsplit(url)
    userinfo, _, hostpart = parts.netloc.rpartition("@")
    if ":" not in userinfo:
        user, password = "", userinfo  # redis://secret@host: Redis reads a lone userinfo as the password
    else:
        user, _, password = userinfo.partition(":")
    if not password:
        return url
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostpart}"))


def effective(options: Mapping[str, str | None], profile: str | None = None) -> dict[str, Resolved]:
    """What `taskq config show` prints: the profile in force, then each CONNECTION setting, each
    with its source; passwords in URLs masked."""
    if profile:
        chosen = Resolved(profile, "option")
    elif os.environ.get("TASKQ_PROFILE"):
        chosen = Resolved(os.environ["TASKQ_PROFILE"], "env")
    else:
        chosen = Resolved(chosen_profile(None)[0], "default")
    settings = resolve(options, profile)
    url = settings["redis_url"]
    settings["redis_url"] = Resolved(mask_url(url.value), url.source)
    return {"profile": chosen, **settings}


def kill_after_ack() -> bool:
    """TASKQ_TEST_KILL_AFTER_ACK=1: TEST ONLY. A worker SIGKILLs itself right after an ack (or a death)
    that wrote its task's outcome to the outbox, before the hand-off to the dependents: the fault
    injection of tests/test_workflows.py, proving a maintenance pass releases them. Never set it in
    production."""
    return os.environ.get("TASKQ_TEST_KILL_AFTER_ACK") == "1"
