"""The one place that writes for people. Plain lines need no Rich (keeps `taskq enqueue` fast);
tables and colours import Rich lazily. Colours only on a terminal, and never with NO_COLOR."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from taskq_cli.cli.tables import Column, TableView, cells, layout, now, plain_lines, visible
from taskq_cli.errors import TaskqError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


class OutputError(TaskqError):
    """stdout cannot be written: closed (`>&-`), full (`>/dev/full`), or its reader went away
    (`broken_pipe`: `taskq dlq list | head -1`, which ends quietly)."""

    def __init__(self, reason: str, *, broken_pipe: bool = False, message: str | None = None) -> None:
        super().__init__(message or f"cannot write to stdout: {reason}")
        self.reason = reason
        self.broken_pipe = broken_pipe


def error(message: str) -> None:
    """One line on stderr, no traceback."""
    first = " ".join(str(message).split("\n")[0].split()) or "error"
    _write_stderr(f"taskq: error: {first}\n")


def warn(message: str) -> None:
    _write_stderr(f"taskq: {message}\n")


def _write_stderr(text: str) -> None:
    if sys.stderr is not None:  # `2>&-`: nowhere to say anything
        sys.stderr.write(text)


def line(text: str) -> None:
    _write(text + "\n")


def json_out(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    if not _encodable(text):  # an ASCII stdout: \u escapes are the same JSON
        text = json.dumps(value)
    _write(text + "\n")


class Format(StrEnum):
    """`-o/--output`: a table for people, or JSON for scripts (one document, or one object a line)."""

    table = "table"
    json = "json"
    jsonl = "jsonl"


def chosen(fmt: Format | None, as_json: bool) -> Format:
    """The format asked for: `-o`, else `--json` (which is `-o json`), else a table."""
    from taskq_cli.errors import UsageError

    if as_json and fmt not in (None, Format.json):
        raise UsageError(f"--json and -o {fmt} disagree: give one")
    return Format.json if as_json else fmt or Format.table


def render(fmt: Format, data: Any, table: Callable[[], None]) -> None:
    """Print `data` (the command's JSON shape) in `fmt`; `table` draws it for people."""
    if fmt is Format.json:
        render_json(data)
    elif fmt is Format.jsonl:
        render_jsonl(data)
    else:
        table()


def render_json(data: Any) -> None:
    json_out(data)


def render_jsonl(data: Any) -> None:
    """One JSON object a line: a list's items, or a single object on its line."""
    for item in data if isinstance(data, list) else [data]:
        json_out(item)


def finish() -> None:
    """Flush stdout, so that a write that fails in the buffer fails here, while the command can
    still say so, rather than in the interpreter's last flush ("Exception ignored", exit 120)."""
    if sys.stdout is not None:
        _guarded(sys.stdout.flush)


def discard() -> None:
    """After stdout failed: point it at /dev/null, so what is left in its buffer goes nowhere quietly
    when the interpreter flushes it on exit."""
    if sys.stdout is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor (a test's StringIO): nothing to protect
        pass


def _write(text: str) -> None:
    out = sys.stdout
    if out is None:  # started with fd 1 closed
        raise OutputError("stdout is closed")
    if not _encodable(text):  # PYTHONIOENCODING=ascii: people still read "..." and "?"
        encoding = out.encoding or "ascii"
        text = text.replace("…", "...").encode(encoding, "replace").decode(encoding)
    _guarded(lambda: out.write(text))


def _guarded(write: Any) -> None:
    try:
        write()
    except BrokenPipeError:
        raise OutputError("the reader went away", broken_pipe=True) from None
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc)) from None


def _encodable(text: str) -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    if encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig"):
        return True
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def show_table(
    title: str | None,
    columns: Sequence[Column | str],
    rows: Sequence[Sequence[Any]],
    *,
    footer: str | None = None,
) -> None:
    """A table for people. On a terminal, Rich at the terminal's width (tables.py: short ids, relative
    times, the columns that fit); in a pipe, plain aligned columns with every column and whole ids
    (easy to grep, cut and awk)."""
    view = TableView(title or "", columns, rows, footer=footer)
    if not sys.stdout.isatty():
        for text in plain_lines(view):
            line(text)
        return
    out = console()
    out.print(render_table(view, out.width, now()))


def show_mapping(title: str, values: dict[str, Any]) -> None:
    """A two-column key/value view."""
    show_table(title, ("field", "value"), [(k, _cell(v)) for k, v in values.items()])


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return "" if value is None else str(value)


def is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def confirm(question: str, yes: bool) -> None:
    """Destructive commands ask on a terminal; off a terminal they need --yes (exit 2 otherwise)."""
    from taskq_cli.errors import UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question.rstrip('?')}: refusing without --yes when not on a terminal")
    from rich.prompt import Confirm

    if not Confirm.ask(question, default=False, console=console(stderr=True)):
        raise UsageError("cancelled")


class progress:
    """A progress bar on a terminal (stderr); silent otherwise. Yields a `step(done, total)` callback."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if sys.stderr.isatty():
            from rich.progress import Progress

            self._bar = Progress(console=console(stderr=True), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None)
        return self.step

    def step(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def show_task(data: dict[str, Any]) -> None:
    """One task for people: its fields, the payload pretty-printed, the whole traceback (highlighted
    on a terminal)."""
    error = data.get("last_error") or {}
    fields = {k: v for k, v in data.items() if k not in ("payload", "result", "last_error")}
    if error:
        fields["error"] = f"{error.get('type')}: {error.get('message')}"
    sections = [("payload", json.dumps(data.get("payload"), indent=2, ensure_ascii=False), "json")]
    if data.get("result") is not None:
        sections.append(("result", json.dumps(data["result"], indent=2, ensure_ascii=False), "json"))
    if error.get("traceback"):
        sections.append(("traceback", error["traceback"].rstrip(), "pytb"))
    if not sys.stdout.isatty():
        for key, value in fields.items():
            line(f"{key}: {_cell(value)}")
        for title, text, _ in sections:
            line(f"{title}:")
            line(text)
        return
    from rich.syntax import Syntax

    show_mapping(f"task {data.get('id')}", fields)
    out = console()
    for title, text, lexer in sections:
        out.print(f"[bold]{title}[/bold]")
        out.print(Syntax(text, lexer, background_color="default", word_wrap=True))


def first_line(text: str | None, width: int = 60) -> str:
    line_ = (text or "").strip().splitlines()[:1]
    value = line_[0] if line_ else ""
    return value if len(value) <= width else value[: width - 1] + "…"


# -- a live view (`stats --watch` on a terminal) ------------------------------------------------------


Part = TableView | str  # a str is a line of text under the tables


class live_view:
    """A full-screen view redrawn in place on every `show`, until the block ends (Ctrl-C ends it
    quietly). Each frame is laid out at the terminal's width of the moment, so a resized terminal
    gets a fitting frame at the next refresh. `alert` keeps the last parts shown under a bold red
    line saying they are not current."""

    def __init__(self, parts: Sequence[Part]) -> None:
        from rich.live import Live

        self._parts = parts
        self._console = console()
        self._live = Live(
            self._draw(), console=self._console, screen=is_terminal(), auto_refresh=False, transient=False
        )

    def __enter__(self) -> live_view:
        self._live.__enter__()
        return self

    def show(self, parts: Sequence[Part]) -> None:
        self._parts = parts
        self._live.update(self._draw(), refresh=True)

    def alert(self, message: str) -> None:
        self._live.update(self._draw(alert=message), refresh=True)

    def _draw(self, alert: str | None = None) -> RenderableType:
        return render_parts(self._parts, self._console.width, now(), alert=alert)

    def __exit__(self, *exc: object) -> bool:
        self._live.__exit__(None, None, None)
        return exc[0] is KeyboardInterrupt


def render_parts(parts: Sequence[Part], width: int, at: float, *, alert: str | None = None) -> RenderableType:
    """A live view's frame at `width`: its tables and lines, under the alert if there is one."""
    from rich.console import Group
    from rich.text import Text

    drawn = [
        Text(p, overflow="ellipsis", no_wrap=True) if isinstance(p, str) else render_table(p, width, at)
        for p in parts
    ]
    if alert is not None:
        drawn.insert(0, Text(alert, style="bold red"))
    return Group(*drawn)


def render_table(view: TableView, width: int, at: float) -> RenderableType:
    """A table drawn for a terminal `width` columns wide: the columns that fit it (wider terminals
    show more), ids and names never wrapped, free text cut with "…" to take the overflow."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    cols = [view.cols[i] for i in visible(view, width)]
    body = cells(view, at, width)
    widths = layout(cols, body, width)
    kept = [j for j, w in enumerate(widths) if w is not None]
    table = Table(title=view.title or None, show_edge=False, header_style="bold", title_justify="left")
    for j in kept:
        column = cols[j]
        table.add_column(
            column.header,
            justify="right" if column.right else "left",
            no_wrap=column.kind != "prose",
            overflow="fold" if column.kind == "prose" else "ellipsis",
            width=widths[j],
        )
    for row in body:
        table.add_row(*(row[j] for j in kept))
    if not view.footer:
        return table
    return Group(table, Text(view.footer, style="dim"))
