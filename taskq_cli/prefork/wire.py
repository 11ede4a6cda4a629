"""What the supervisor and a child say to each other, as bytes. No process, no pool: encoding and
decoding only (plus three helpers that move bytes through a pipe's file descriptor).

Three channels per child:
- the child's pipe (duplex, a multiprocessing Connection): messages to the child, each `run_message`
  (executions to run, in order), `drop_message` (tokens of aborted executions) or `STOP`; and back,
  raw frames that are doorbells: an int (that many bytes of records wait in the outcome pipe) or a
  whole record too large for the outcome pipe;
- the outcome pipe (one way, to the supervisor): record frames the child writes as each task ends,
  read by the supervisor when a doorbell announces them (so a crash after the write cannot lose them);
- shared progress (two doubles): PROGRESS[CLAIMED] is the number of the execution the child took
  last (numbered from 1, in the order sent), PROGRESS[BEGAN] when that one began to run (0.0 while
  it runs nothing).

marshal is the codec: the cheapest for tuples of str/int/float/None, and both ends run the same
Python. A frame is a 4-byte little-endian length, then the marshalled value.
"""

from __future__ import annotations

import marshal
import os
import select
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from taskq_cli.models import Outcome, OutcomeKind
from taskq_cli.runner import Execution

RUN, DROP = 0, 1  # kinds of message to a child; an empty message asks it to stop
STOP = b""
CLAIMED, BEGAN = 0, 1  # indexes into a child's shared progress (see above)

Record = tuple[str, str, str | None, dict[str, str] | None, float | None, float, str | None]
# (task id, outcome kind or "" for an execution skipped as aborted, result, error, delay, runtime,
#  why the child retires after it or None)
ExecutionFields = tuple[
    str, str, str, int, int, str, float | None, str, float, str | None, dict[str, str] | None
]

# -- messages to a child ----------------------------------------------------------------------------


def run_message(executions: Iterable[Execution]) -> bytes:
    return marshal.dumps((RUN, [execution_fields(e) for e in executions]))


def drop_message(tokens: Sequence[str]) -> bytes:
    return marshal.dumps((DROP, list(tokens)))


def read_message(message: bytes) -> tuple[list[Execution], list[str]] | None:
    """(executions to run, tokens to drop) from one message; None: the supervisor asks to stop."""
    if not message:
        return None
    kind, body = marshal.loads(message)
    if kind == RUN:
        return [Execution(*fields) for fields in body], []
    return [], body


def execution_fields(e: Execution) -> ExecutionFields:
    """The Execution as a plain tuple (order = the dataclass's fields, so `Execution(*fields)`)."""
    return (
        e.task_id,
        e.name,
        e.queue,
        e.attempt,
        e.max_retries,
        e.payload_json,
        e.timeout,
        e.token,
        e.lease,
        e.dependency_results,
        e.headers,
    )


# -- records and doorbells from a child --------------------------------------------------------------


def outcome_record(task_id: str, outcome: Outcome, retire: str | None) -> Record:
    return (
        task_id,
        outcome.kind.value,
        outcome.result_json,
        outcome.error,
        outcome.delay,
        outcome.runtime,
        retire,
    )


def skipped_record(task_id: str, retire: str | None) -> Record:
    """An execution the child skipped because it was aborted before it began."""
    return (task_id, "", None, None, None, 0.0, retire)


def record_outcome(record: Record) -> Outcome | None:
    """The Outcome a record carries; None for a skipped execution."""
    _, kind, result_json, error, delay, runtime, _ = record
    return Outcome(OutcomeKind(kind), result_json, error, delay, runtime) if kind else None


def frame(value: Any) -> bytes:
    data = marshal.dumps(value)
    return len(data).to_bytes(4, "little") + data


def doorbell(unsent_bytes: int) -> bytes:
    return frame(unsent_bytes)


def unframe(data: bytes) -> tuple[list[Any], bytes]:
    """The values framed in `data`, and what is left of an incomplete last frame."""
    values, offset = [], 0
    while offset + 4 <= len(data):
        end = offset + 4 + int.from_bytes(data[offset : offset + 4], "little")
        if end > len(data):
            break
        values.append(marshal.loads(data[offset + 4 : end]))
        offset = end
    return values, data[offset:]


def announced_records(doorbells: Iterable[int | Record], read: Callable[[int], bytes]) -> list[Record]:
    """The records doorbells announce, in order: an int is that many bytes of record frames to
    `read` from the outcome pipe (written before the doorbell, so reading never waits), a tuple
    one record sent inline. Consecutive ints are read at once."""
    records: list[Record] = []
    announced = 0
    for bell in [*doorbells, None]:
        if isinstance(bell, int):
            announced += bell
            continue
        if announced:
            records += unframe(read(announced))[0]
            announced = 0
        if bell is not None:
            records.append(bell)
    return records


# -- bytes through a pipe ----------------------------------------------------------------------------


def read_exactly(fd: int, size: int) -> bytes:
    """`size` bytes (fewer only if the pipe ends first)."""
    chunks = []
    while size > 0 and (chunk := os.read(fd, size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_available(fd: int) -> bytes:
    """What a pipe holds now (no wait: another holder of its write end cannot hang us)."""
    chunks = []
    while select.select([fd], [], [], 0)[0] and (chunk := os.read(fd, 65536)):
        chunks.append(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
