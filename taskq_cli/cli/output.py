"""The one place that writes for people. Plain lines need no Rich (keeps `taskq enqueue` fast);
tables and colours import Rich lazily. Colours only on a terminal, and never with NO_COLOR."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def error(message: str) -> None:
    """One line on stderr, no traceback."""
    first = " ".join(str(message).split("\n")[0].split()) or "error"
    sys.stderr.write(f"taskq: error: {first}\n")


def warn(message: str) -> None:
    sys.stderr.write(f"taskq: {message}\n")


def line(text: str) -> None:
    sys.stdout.write(text + "\n")


def json_out(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def show_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(table)


def show_mapping(title: str, values: dict[str, Any]) -> None:
    """A two-column key/value view."""
    show_table(title, ("field", "value"), [(k, _cell(v)) for k, v in values.items()])


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return "" if value is None else str(value)
