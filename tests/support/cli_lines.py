"""Command lines as docs and deploy files show them, checked against the Typer app: the command
exists and takes every option given. Nothing runs: the line is parsed by the CLI's own parser."""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator
from typing import Any

import typer

from taskq_cli.cli.typer_app import app

SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)[^\n]*\n(.*?)^```", re.S | re.M)
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def taskq_commands(text: str) -> Iterator[list[str]]:
    """Every `taskq ...` command in the shell blocks of a Markdown text, as arguments after `taskq`:
    one per pipeline stage or list element (`|`, `;`, `&&`, `$(...)`), comments and `VAR=value`
    prefixes dropped."""
    for block in SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            yield from commands_in_line(line.removeprefix("$ "))


def commands_in_line(line: str) -> Iterator[list[str]]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # a quote closed on a later line (a curl body): shell, but not a taskq line
        if line.lstrip().startswith("taskq"):
            raise
        return
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token and set(token) <= set("();<>|&"):
            words = [w for w in segment if not ASSIGNMENT.match(w)] if segment else []
            if words and words[0] == "taskq":
                yield words[1:]
            segment = []
        else:
            segment.append(token)


@functools.cache
def root_command() -> Any:
    return typer.main.get_command(app)


def parse_error(args: list[str]) -> str | None:
    """None when `taskq ARGS` parses (command found, options known, values converted), else why."""
    command: Any = root_command()
    name, rest, parent = "taskq", list(args), None
    try:
        while True:
            ctx = command.make_context(name, rest, parent=parent)
            if not hasattr(command, "commands"):
                return None
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:
                return f"taskq {' '.join(args)}: no command given"
            name, command, rest = command.resolve_command(ctx, rest)
            parent = ctx
    except Exception as error:  # Typer's vendored click raises its own UsageError classes
        if type(error).__name__ == "Exit" and getattr(error, "exit_code", 1) == 0:
            return None  # an eager option that answers and exits: --version, --help
        return f"taskq {' '.join(args)}: {type(error).__name__}: {error}"
