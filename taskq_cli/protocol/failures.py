"""redis-py's errors become taskq's at the protocol's edge, in one place.

A connection refused or lost, or no answer in time, is `BrokerUnavailable`; any other error of
redis-py (an error reply: NOPERM, OOM, READONLY, BUSY...; a cluster that cannot route) is
`BrokerError`. Both are raised `from` the original, and keep its class name in `kind`. Nothing
above the protocol needs to know redis-py's exception classes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskq_cli.errors import BrokerError, BrokerUnavailable

REDIS_PY_ERRORS = (RedisError, RedisClusterException)

C = TypeVar("C", bound=type)
F = TypeVar("F", bound=Callable[..., Any])


def broker_error(exc: BaseException) -> BrokerError:
    """taskq's error for one of redis-py's."""
    kind = type(exc).__name__
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return BrokerUnavailable(str(exc), kind)
    return BrokerError(str(exc), kind)


@contextmanager
def broker_errors() -> Iterator[None]:
    """Raise taskq's error in place of any error of redis-py inside the block."""
    try:
        yield
    except REDIS_PY_ERRORS as exc:
        raise broker_error(exc) from exc


def translating(cls: C) -> C:
    """Every public method of the class (those it defines itself) raises taskq's errors in place of
    redis-py's: one wrapper per method, put on once when the class is made."""
    for name, attr in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(attr):
            setattr(cls, name, translated(attr))
    return cls


def translated(function: F) -> F:
    """One function (or method) raising taskq's errors in place of redis-py's."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except REDIS_PY_ERRORS as exc:
            raise broker_error(exc) from exc

    return cast(F, call)
