"""The process pool's wire format without processes: messages to a child, record frames and doorbells
from it, decoded back to what was sent, including frames cut anywhere by a read."""

from __future__ import annotations

import io
import os

from taskq_cli.models import Outcome, OutcomeKind
from taskq_cli.prefork import wire
from taskq_cli.runner import Execution


def execution(n: int, timeout: float | None = 2.5) -> Execution:
    return Execution(f"id-{n}", "step", "default", 1, 3, f'{{"n": {n}}}', timeout, f"token-{n}")


def test_a_run_message_gives_the_child_the_same_executions_in_order() -> None:
    sent = [execution(1), execution(2, timeout=None)]
    assert wire.read_message(wire.run_message(sent)) == (sent, [])


def test_a_drop_message_gives_the_child_the_tokens_and_stop_is_the_empty_message() -> None:
    assert wire.read_message(wire.drop_message(["token-1", "token-2"])) == ([], ["token-1", "token-2"])
    assert wire.read_message(wire.STOP) is None


def test_an_outcome_record_carries_the_outcome_and_a_skipped_one_none() -> None:
    outcome = Outcome(OutcomeKind.ERROR, None, {"type": "ValueError", "message": "no"}, 1.5, 0.25)
    record = wire.outcome_record("id-1", outcome, retire="ran 1 tasks")
    assert record[0] == "id-1" and record[-1] == "ran 1 tasks"
    assert wire.record_outcome(record) == outcome
    assert wire.record_outcome(wire.skipped_record("id-2", None)) is None


def test_frames_cut_anywhere_come_out_whole_once_the_rest_arrives() -> None:
    values = [wire.skipped_record("id-1", None), 123, wire.skipped_record("id-2", "why")]
    data = b"".join(wire.frame(v) for v in values)
    for cut in range(len(data) + 1):
        first, rest = wire.unframe(data[:cut])
        second, left = wire.unframe(rest + data[cut:])
        assert first + second == values and left == b""


def test_doorbells_announce_records_in_the_pipe_and_inline_ones_keep_their_place() -> None:
    # Given two records written to the outcome pipe, then one too large for it sent inline, then one more
    r1, r2, big, r4 = (wire.skipped_record(f"id-{n}", None) for n in (1, 2, 3, 4))
    pipe = io.BytesIO(b"".join(wire.frame(r) for r in (r1, r2, r4)))
    bells: list[int | wire.Record] = [len(wire.frame(r1)), len(wire.frame(r2)), big, len(wire.frame(r4))]
    reads: list[int] = []

    def read(size: int) -> bytes:
        reads.append(size)
        return pipe.read(size)

    # Then they come out in the order written, with one read per run of doorbells
    assert wire.announced_records(bells, read) == [r1, r2, big, r4]
    assert reads == [bells[0] + bells[1], bells[3]]


def test_a_doorbell_is_a_frame_of_the_byte_count() -> None:
    assert wire.unframe(wire.doorbell(4096)) == ([4096], b"")


def test_bytes_go_through_a_pipe_whole() -> None:
    read_end, write_end = os.pipe()
    try:
        data = os.urandom(50_000)  # under a pipe's 64 KB: written without a reader
        wire.write_all(write_end, data)
        assert wire.read_exactly(read_end, 20_000) == data[:20_000]
        assert wire.read_available(read_end) == data[20_000:]
        assert wire.read_available(read_end) == b""  # nothing more: no wait
    finally:
        os.close(read_end)
        os.close(write_end)
