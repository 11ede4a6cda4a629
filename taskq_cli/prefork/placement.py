"""Which child runs the next execution: a pure function of a snapshot of the children.

Executions queued in a child wait for the task it runs, so the supervisor queues them only where the
wait is short, in this order of preference:
1. A busy child, if the work queued there, this one included, is expected to take under PACK_BUDGET
   (each task name's recent run time is the guess): a child that is awake runs tiny tasks back to
   back, and waking an idle one costs more than such a task (a context switch, cold caches, one more
   doorbell). Of several, the one holding most, so that the others can go to sleep.
2. An idle child.
3. One behind the running task of a child that holds nothing else, if that task began under
   QUEUE_BEHIND ago, so that the child goes on without waiting for the supervisor (the worker holds
   more than one task per slot only while tasks are short).
Else none: the execution waits in the supervisor's backlog until a child reports.
A payload over AHEAD_PAYLOAD goes to an idle child only: a busy child's pipe stays small, so sending
to it never blocks. A child never holds more than AHEAD executions behind its running one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

AHEAD = 4  # executions a child may hold behind its running one (tiny tasks; else 1)
PACK_BUDGET = 0.0005  # seconds of expected work that may wait in one child rather than wake another
QUEUE_BEHIND = 0.02  # seconds a task may have run and still get one queued behind it
AHEAD_PAYLOAD = 16 * 1024  # larger payloads go to idle children only


@dataclass(slots=True)  # not frozen: its __init__ would cost a microsecond per child and placement
class ChildState:
    """One child as placement sees it, at one moment."""

    held: int = 0  # executions sent to it whose outcome has not come back (the first may run)
    expected: float | None = 0.0  # their expected run time in all (s); None: one has no history yet
    running_for: float = 0.0  # how long its current task has run (s); 0.0 when it runs none
    accepts: bool = True  # False: it retires, was killed, or was sent its last task

    def given(self, expected: float | None, accepts: bool = True) -> ChildState:
        """This child once it holds one more execution, expected to take `expected`."""
        total = None if self.expected is None or expected is None else self.expected + expected
        return ChildState(self.held + 1, total, self.running_for, accepts)


def place(children: Sequence[ChildState], expected: float | None, payload_size: int) -> int | None:
    """The index of the child to run an execution expected to take `expected` seconds (None: no
    history yet) with a payload of `payload_size` bytes; None: it waits for a child to report."""
    queueable = payload_size <= AHEAD_PAYLOAD
    packed = idle = behind = None
    for index, child in enumerate(children):
        if not child.accepts:
            continue
        if not child.held:
            idle = index if idle is None else idle
        elif queueable and child.held <= AHEAD:
            fuller = packed is None or child.held > children[packed].held
            if fuller and _packable(child, expected):
                packed = index
            if behind is None and child.held == 1 and child.running_for < QUEUE_BEHIND:
                behind = index
    if packed is not None:
        return packed
    return idle if idle is not None else behind


def _packable(child: ChildState, expected: float | None) -> bool:
    if child.running_for >= PACK_BUDGET or child.expected is None or expected is None:
        return False
    return child.expected + expected < PACK_BUDGET
