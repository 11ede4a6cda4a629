"""The `taskq` console script (`taskq_cli.cli.app:main`, also `python -m taskq_cli`). A plain
`taskq enqueue NAME [PAYLOAD] [options]` runs without Typer (fast.py); every other command, and any
enqueue the fast path does not fully recognise, goes to the Typer app (typer_app.py), which is only
imported then."""

from __future__ import annotations

import sys
from typing import Any


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps every failure to one line on stderr and the SPEC's exit codes."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    """The exit code of `taskq ARGV` (default sys.argv[1:])."""
    from taskq_cli.cli import fast

    code = fast.run(sys.argv[1:] if argv is None else argv)
    if code is not None:
        return code
    from taskq_cli.cli import typer_app

    return typer_app.run(argv)


def __getattr__(name: str) -> Any:
    """`from taskq_cli.cli.app import app` still gives the Typer app, loading Typer only then. Nothing
    else is forwarded: the import system probes modules for `__path__` and other dunders, and a
    forwarded probe would load Typer for every `taskq enqueue`."""
    if name == "app":
        from taskq_cli.cli.typer_app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
