"""Loopback ports for the servers and processes the tests start.

A port the system picks (bind to 0) is free when picked but may be taken before the server binds it:
by an outgoing connection, whose local port comes from the same ephemeral range, or by another
xdist worker picking the same one. So ports are handed out below the ephemeral range, where no
connection takes one, from a slice of that range of each worker's own, in turn, each probed first.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path

from taskq_cli.dev import free_port as _dev_free_port

FIRST = 10_000  # above the well-known services of a machine (Redis 6379, PostgreSQL 5432, ...)
_cursor: Iterator[int] | None = None


def free_port() -> int:
    """A port nothing listens on now, not handed out before by this process (until its slice wraps),
    outside the kernel's ephemeral range and outside the other xdist workers' slices."""
    global _cursor
    if _cursor is None:
        _cursor = _turns(worker_slice())
    for _ in range(64):
        port = next(_cursor)
        if _dev_free_port(preferred=port) == port:  # nothing listens on it now
            return port
    return _dev_free_port()  # a slice full of listeners: let the system pick


def worker_slice() -> range:
    """This process's ports: below the ephemeral range, split evenly among the xdist workers."""
    end = _ephemeral_start()
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), 1)
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % count
    size = max((end - FIRST) // count, 1)
    return range(FIRST + index * size, FIRST + (index + 1) * size)


def _turns(ports: range) -> Iterator[int]:
    """Every port of the slice in turn, from a random one (a process started later by the same
    worker, such as a helper script, starts elsewhere)."""
    return itertools.islice(itertools.cycle(ports), random.randrange(len(ports)), None)


def _ephemeral_start() -> int:
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32_768  # Linux's default; elsewhere a guess the probe backs up
    return max(first, FIRST + 1_000)
