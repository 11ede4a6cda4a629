"""What a table says, before Rich draws it (output.py): which columns fit a width, and each cell as
people read it. Ids are shortened the way git shortens hashes, times are relative ("3m ago"),
durations compact ("4m30s"), counts have thousands separators. No Rich here, so it is tested
without a terminal; `now` is the one clock seam (snapshot tests fix it)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Literal

Kind = Literal["id", "name", "text", "prose", "count", "time", "age", "plain"]

GENERATED_ID = re.compile(r"[0-9a-f]{32}")  # what the broker makes when no id is given
ID_IN_TEXT = re.compile(r"\b[0-9a-f]{32}\b")
SHORT_ID = 8  # the shortest prefix shown, as git's default abbreviation
NAME_MAX = 40  # a name longer than this may be cut with "…" at narrow widths
MIN_TEXT = 12  # free text narrower than this says nothing: the column is left out

clock: Callable[[], float] = time.time  # seconds since the epoch; tests set it


def now() -> float:
    return clock()


@dataclass(frozen=True)
class Column:
    """A column of a table. `kind` says how its cells read and wrap: an id is never cut or wrapped;
    a name is not cut while there is room; text (error messages) takes what is left on one line, cut
    with "…"; prose (doctor's advice) wraps at words, as it must be read whole;
    counts are right-aligned with thousands separators; times are relative; ages are durations.
    `from_width`: the terminal width from which the column is shown (0: always)."""

    header: str
    kind: Kind = "plain"
    from_width: int = 0

    @property
    def right(self) -> bool:
        return self.kind in ("count", "age")


@dataclass(frozen=True)
class TableView:
    """A table: its title, columns, raw rows (ints, ISO UTC strings, seconds, ids in full) and a
    footer under it (the "12 of 4,210 shown" of a cut list)."""

    title: str
    columns: Sequence[Column | str]
    rows: Sequence[Sequence[Any]]
    footer: str | None = None
    cols: tuple[Column, ...] = field(init=False)

    def __post_init__(self) -> None:
        cols = tuple(c if isinstance(c, Column) else Column(c) for c in self.columns)
        object.__setattr__(self, "cols", cols)


def visible(view: TableView, width: int | None) -> list[int]:
    """The indexes of the columns shown at `width` (None: a pipe, every column)."""
    return [i for i, c in enumerate(view.cols) if width is None or width >= c.from_width]


def cells(view: TableView, at: float | None, width: int | None) -> list[list[str]]:
    """The rows as text, in the columns shown at `width`. `at` None (a pipe): ids whole and times
    as their ISO UTC text, exact for grep, sort and awk."""
    shown = visible(view, width)
    short = {} if at is None else shortened(_ids(view, shown))
    return [[_cell(view.cols[i].kind, row[i], at, short) for i in shown] for row in view.rows]


def layout(cols: Sequence[Column], body: Sequence[Sequence[str]], width: int) -> list[int | None]:
    """Each column's width at a terminal `width` (None: left out). Ids, counts, times and names get
    their whole width; free text (errors, advice) shares what is left, and is left out when that is
    less than MIN_TEXT. A column costs 3 more than its text: padding each side and a rule."""
    natural = [max([len(c.header)] + [len(row[j]) for row in body]) for j, c in enumerate(cols)]
    natural = [min(n, NAME_MAX) if c.kind == "name" else n for n, c in zip(natural, cols, strict=True)]
    free = [j for j, c in enumerate(cols) if c.kind in ("text", "prose")]
    widths: list[int | None] = list(natural)
    while free:
        taken = sum(natural[j] for j in range(len(cols)) if j not in free and widths[j] is not None)
        shown = sum(1 for w in widths if w is not None)
        share = (width - taken - 3 * shown + 1) // len(free)
        if share >= MIN_TEXT or (len(free) == 1 and share >= min(MIN_TEXT, natural[free[0]])):
            for j in free:
                widths[j] = max(min(natural[j], share), 0)
            break
        widths[free.pop()] = None  # too narrow to say anything: the last free column goes
    return widths


def plain_lines(view: TableView) -> list[str]:
    """A table in a pipe: a header and aligned columns, two spaces apart, every column, ids whole,
    times in ISO UTC."""
    shown = visible(view, None)
    headers = [view.cols[i].header for i in shown]
    body = cells(view, None, width=None)
    widths = [max([len(h)] + [len(r[j]) for r in body]) for j, h in enumerate(headers)]
    out = []
    for row in [headers, *body]:
        padded = [
            c.rjust(w) if view.cols[shown[j]].right and row is not headers else c.ljust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(padded).rstrip())
    if view.footer:
        out.append(view.footer)
    return out


def shortened(ids: Sequence[str]) -> dict[str, str]:
    """Generated ids shortened to the shortest common prefix length (at least SHORT_ID) that tells
    apart every generated id shown, as git abbreviates hashes; custom ids are shown whole."""
    generated = sorted({i for i in ids if GENERATED_ID.fullmatch(i)})
    length = SHORT_ID
    for a, b in pairwise(generated):
        common = len(_common_prefix(a, b))
        length = max(length, common + 1)
    return {i: i[:length] for i in generated}


def footer(shown: int, offset: int, total: int | None) -> str | None:
    """ "12 of 4,210 shown; --limit/--offset for more" where a list is cut (None when it is not)."""
    if total is None or (offset == 0 and shown >= total):
        return None
    first = f"{offset + 1:,}-{offset + shown:,}" if offset else f"{shown:,}"
    return f"{first} of {total:,} shown; --limit/--offset for more"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def relative(iso: str | None, at: float) -> str:
    """An ISO UTC time as "3m ago" or "in 2h" from `at`."""
    if not iso:
        return "-"
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment.timestamp() - at
    if abs(delta) < 1:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(-delta)} ago"


def duration(seconds: float | None) -> str:
    """A duration in its two largest units: "4s", "4m30s", "2h5m", "3d4h"."""
    if seconds is None:
        return "-"
    total = int(seconds)
    if total < 60:
        return f"{seconds:.1f}s" if seconds < 10 and seconds != total else f"{total}s"
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    parts: list[str] = []
    for suffix, size in units:
        amount, total = divmod(total, size)
        if amount or parts:
            parts.append(f"{amount}{suffix}")
        if len(parts) == 2:
            break
    return "".join(p for p in parts if not p.startswith("0"))


def _cell(kind: Kind, value: Any, at: float | None, short: dict[str, str]) -> str:
    if value is None:
        return "-"
    if kind == "id":
        return short.get(str(value), str(value))
    if kind == "count" and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,}"
    if kind == "time" and at is not None:
        return relative(str(value), at)
    if kind == "text" and at is not None:  # ids inside text (a worker's running tasks) shortened too
        return ID_IN_TEXT.sub(lambda m: short.get(m[0], m[0][:SHORT_ID]), str(value))
    if kind == "age" and isinstance(value, int | float):
        return duration(value)
    return str(value)


def _ids(view: TableView, shown: Sequence[int]) -> list[str]:
    return [str(row[i]) for row in view.rows for i in shown if view.cols[i].kind == "id" and row[i]]


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
