"""The protocol suite (tests/test_protocol.py) again, against the embedded server `taskq dev` runs
when no redis-server is installed: fakeredis's Redis-protocol TCP server, Lua through lupa. The same
scripts, keys and assertions, one server per module instead of the suite's Redis, which these tests
do not need at all.

Every protocol test passes as it is: the embedded server lacks no command the protocol sends (EVALSHA
with SCRIPT LOAD and cjson, TIME inside scripts, BLPOP with a timeout, ZRANGE BYSCORE, MULTI, HELLO).
Should a future fakeredis lack one, mark the test in LACKING with the command it needs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fakeredis", reason="the embedded server needs fakeredis[lua]: pip install -e '.[dev]'")
pytest.importorskip("lupa", reason="the embedded server runs Lua with lupa: pip install -e '.[dev]'")

from taskq_cli.dev import EmbeddedRedis

from . import test_protocol

LACKING: dict[str, str] = {}  # test name -> the command the embedded server lacks


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """Overrides the suite's Redis for every test of this module."""
    server = EmbeddedRedis.start(port=0)
    yield server.url
    server.stop()


def _adopt(name: str, value: Any) -> Any:
    """The test itself, or a copy marked as failing for want of a command (the original, which
    tests/test_protocol.py runs against the real Redis, keeps no mark)."""
    if name not in LACKING:
        return value

    @functools.wraps(value)
    def lacking(*args: Any, **kwargs: Any) -> Any:
        return value(*args, **kwargs)

    return pytest.mark.xfail(reason=f"the embedded server lacks {LACKING[name]}", strict=True)(lacking)


# The tests and the fixtures they use, collected here so that `redis_url` above applies to them.
globals().update(
    {name: _adopt(name, value) for name, value in vars(test_protocol).items() if not name.startswith("_")}
)
