"""Write docs/commands.md, the command reference, from the Typer app itself, so it cannot go stale
(tests/test_docs.py fails when the committed page differs from what this prints).

    python tools/gen_commands.py > docs/commands.md
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from taskq_cli.cli.typer_app import app

HEADER = """# Command reference

Generated from the CLI by `python tools/gen_commands.py > docs/commands.md`; do not edit by hand.
Every command also takes `--redis-url`, `--namespace` and `--app` (or their environment variables,
see [the reference](reference.md#configuration)); exit codes, durations and JSON fields are in
[the reference](reference.md).
"""


def main() -> None:
    root = typer.main.get_command(app)
    sys.stdout.write(HEADER)
    for path, command in walk(root, "taskq"):
        sys.stdout.write(describe(path, command))


def walk(command: Any, path: str) -> list[tuple[str, Any]]:
    """Every runnable command under `command`, depth first, in name order (Typer carries its own
    copy of click, so groups are told by their `commands`, not by class)."""
    if not hasattr(command, "commands"):
        return [(path, command)]
    found: list[tuple[str, Any]] = []
    for name in sorted(command.commands):
        found += walk(command.commands[name], f"{path} {name}")
    return found


def describe(path: str, command: Any) -> str:
    ctx = command.context_class(command, info_name=path)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"\n## `{path}`\n", f"```\n{path} {usage}\n```\n"]
    if command.help:
        lines.append(command.help.strip() + "\n")
    rows = [row for param in command.params if (row := param_row(param, ctx)) is not None]
    if rows:
        lines.append("\n| option | meaning |\n|---|---|\n")
        lines += [f"| {name} | {meaning} |\n" for name, meaning in rows]
    return "".join(lines)


def param_row(param: Any, ctx: Any) -> tuple[str, str] | None:
    if getattr(param, "hidden", False) or param.name in ("redis_url", "namespace", "app_spec", "app"):
        return None
    record = param.get_help_record(ctx)
    if record is None:  # an argument
        return f"`{param.human_readable_name}`", _cell(getattr(param, "help", None) or "argument")
    names, meaning = record
    return f"`{names}`", _cell(meaning)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    main()
