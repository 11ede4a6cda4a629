"""A free loopback port: the one `taskq dev` uses (no second copy in the tests)."""

from __future__ import annotations

from taskq_cli.dev import free_port as _dev_free_port


def free_port() -> int:
    """A port nothing listens on now, picked by the system (it may be taken before it is used:
    the launchers retry or fail saying so)."""
    return _dev_free_port()
