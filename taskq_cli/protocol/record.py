"""The task record as the worker reads it: the metadata JSON of a fetched task, decoded once (at
fetch) into typed fields. The JSON stays what Lua and `task show` read; this is its typed view."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taskq_cli.states import ALL_STATES, TaskState

OPTION_NAMES = ("max_retries", "timeout", "backoff_base", "backoff_max", "result_ttl")


def compact_json_encoder(*, allow_nan: bool) -> Callable[[Any], str]:
    """`json.JSONEncoder(separators=(",", ":"), allow_nan=...).encode`, the same text, at a third
    of the cost for small objects: the C encoder is built once, not at every call. Without circular
    reference checks (their state cannot be shared between threads): a cyclic object raises
    RecursionError instead of ValueError."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)  # not in typeshed
    if make is None:  # no C accelerator: the plain encoder
        return json.JSONEncoder(separators=(",", ":"), allow_nan=allow_nan).encode

    def default(value: object) -> Any:
        raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")

    chunks = make(None, default, encoder.encode_basestring_ascii, None, ":", ",", False, False, allow_nan)
    join = "".join

    def encode(value: Any) -> str:
        return join(chunks(value, 0))

    return encode


@dataclass(frozen=True)
class GivenOptions:
    """Options written on the record (at enqueue, by the producer): None where none was given.
    `timeout` 0 means "no timeout" given explicitly."""

    max_retries: int | None = None
    timeout: float | None = None
    backoff_base: float | None = None
    backoff_max: float | None = None
    result_ttl: float | None = None

    @classmethod
    def decode(cls, meta: Mapping[str, Any]) -> tuple[GivenOptions, tuple[str, ...]]:
        """The options on a record, and the names of those present but unreadable (left None).
        Tasks of one kind carry the same options: decoded once per distinct set (a hot path)."""
        raw = tuple(meta.get(name) for name in OPTION_NAMES)
        try:  # keyed by the values' types too: True == 1, but True is no number of retries
            return _decode_options(raw, tuple(map(type, raw)))
        except TypeError:  # an unhashable value (a list, an object): decode it without the cache
            return cls._decode(raw)

    @classmethod
    def _decode(cls, raw: tuple[Any, ...]) -> tuple[GivenOptions, tuple[str, ...]]:
        values: dict[str, float | None] = {}
        bad: list[str] = []
        for name, value in zip(OPTION_NAMES, raw, strict=True):
            values[name] = _number(value)
            if value is not None and values[name] is None:
                bad.append(name)
        retries = values.pop("max_retries")
        return cls(max_retries=None if retries is None else int(retries), **values), tuple(bad)

    @property
    def retry_policy_given(self) -> bool:
        """Whether recovery after a crash can follow the record alone (it holds the whole policy)."""
        return None not in (self.max_retries, self.backoff_base, self.backoff_max)


@dataclass(frozen=True)
class TaskMeta:
    name: str
    attempts: int  # executions started so far, this one included once fetched
    state: TaskState | None
    started_at: int | None  # ms, when this attempt was fetched
    given: GivenOptions
    unreadable: tuple[str, ...] = ()  # option fields present but not numbers: ignored
    headers: dict[str, str] | None = None  # what the producer's middleware added (strings only)

    @classmethod
    def decode(cls, meta: Mapping[str, Any]) -> TaskMeta:
        """Never raises: a record written by something else still runs, with what can be read."""
        given, bad = GivenOptions.decode(meta)
        return cls(
            name=str(meta.get("name", "")),
            attempts=int(_number(meta.get("attempts")) or 0),
            state=_STATES.get(str(meta.get("state"))),
            started_at=_int_or_none(meta.get("started_at")),
            given=given,
            unreadable=bad,
            headers=_headers(meta.get("headers")),
        )


@functools.lru_cache(maxsize=256)
def _decode_options(raw: tuple[Any, ...], kinds: tuple[type, ...]) -> tuple[GivenOptions, tuple[str, ...]]:
    return GivenOptions._decode(raw)


_STATES: dict[str, TaskState] = {state.value: state for state in ALL_STATES}


def _number(raw: object) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        number = float(raw)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _headers(raw: object) -> dict[str, str] | None:
    """A record's headers (None when none, or not a dict of strings: such a record still runs)."""
    if not raw or not isinstance(raw, dict):
        return None
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)} or None


def _int_or_none(raw: object) -> int | None:
    number = _number(raw)
    return None if number is None else int(number)
