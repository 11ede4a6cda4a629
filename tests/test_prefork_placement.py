"""Placement, the pure choice of the child that runs the next execution, case by case: a snapshot of
the children (what each holds, its expected run time, how long its current task has run) and the
next execution's expected run time and payload size in; a child's index (or None: wait) out."""

from __future__ import annotations

import pytest

from taskq_cli.prefork.placement import (
    AHEAD,
    AHEAD_PAYLOAD,
    PACK_BUDGET,
    QUEUE_BEHIND,
    ChildState,
    place,
)

TINY = PACK_BUDGET / 10  # a task that many of fit in the budget
LONG = 1.0
SMALL = 100  # payload bytes
IDLE = ChildState()
CLOSED = ChildState(accepts=False)


def busy(held: int = 1, expected: float | None = TINY, running_for: float = 0.0) -> ChildState:
    return ChildState(held=held, expected=expected, running_for=running_for)


CASES: list[tuple[str, list[ChildState], float | None, int, int | None]] = [
    # (why, children, next expected run time, payload size, chosen child)
    ("no child: it waits", [], TINY, SMALL, None),
    ("only children that take nothing more: it waits", [CLOSED, CLOSED], TINY, SMALL, None),
    ("an idle child", [IDLE], LONG, SMALL, 0),
    ("a closed idle child is skipped for an open one", [CLOSED, IDLE], TINY, SMALL, 1),
    ("the first idle child of several", [busy(2, LONG), IDLE, IDLE], LONG, SMALL, 1),
    ("tiny tasks pack into an awake child rather than wake an idle one", [IDLE, busy()], TINY, SMALL, 1),
    ("of two packable children, the one holding more", [busy(1), busy(3), busy(2)], TINY, SMALL, 1),
    ("of two packable children holding as many, the first", [busy(2), busy(2)], TINY, SMALL, 0),
    (
        "no packing when what the child holds would exceed the budget",
        [busy(1, PACK_BUDGET - TINY / 2), IDLE],
        TINY,
        SMALL,
        1,
    ),
    ("no packing of a task with no run time yet", [busy(), IDLE], None, SMALL, 1),
    ("no packing behind a task with no run time yet", [busy(1, None), IDLE], TINY, SMALL, 1),
    (
        "no packing behind a task that has run past the budget",
        [busy(1, TINY, PACK_BUDGET), IDLE],
        TINY,
        SMALL,
        1,
    ),
    (
        "no packing into a child already holding AHEAD behind its task",
        [busy(AHEAD + 1), IDLE],
        TINY,
        SMALL,
        1,
    ),
    (
        "a child holding AHEAD in all still takes a tiny one",
        [busy(AHEAD, TINY / AHEAD), IDLE],
        TINY,
        SMALL,
        0,
    ),
    ("no idle child: behind a task that just began", [busy(1, LONG, QUEUE_BEHIND / 2)], LONG, SMALL, 0),
    (
        "no idle child: the first that just began",
        [busy(1, LONG, QUEUE_BEHIND / 2), busy(1, LONG, 0.0)],
        LONG,
        SMALL,
        0,
    ),
    ("no idle child: not behind a task running for long", [busy(1, LONG, QUEUE_BEHIND)], LONG, SMALL, None),
    ("no idle child: not behind a child holding two", [busy(2, LONG, 0.0)], LONG, SMALL, None),
    ("no idle child: not into a closed child", [ChildState(1, LONG, 0.0, accepts=False)], LONG, SMALL, None),
    ("a large payload goes to an idle child, not a packable one", [busy(), IDLE], TINY, AHEAD_PAYLOAD + 1, 1),
    (
        "a large payload waits rather than queue behind a task",
        [busy(1, LONG, 0.0)],
        LONG,
        AHEAD_PAYLOAD + 1,
        None,
    ),
    ("a payload of exactly AHEAD_PAYLOAD may queue", [busy()], TINY, AHEAD_PAYLOAD, 0),
]


@pytest.mark.parametrize(
    ("children", "expected", "payload", "chosen"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_placement_chooses(
    children: list[ChildState], expected: float | None, payload: int, chosen: int | None
) -> None:
    assert place(children, expected, payload) == chosen


def test_a_child_given_an_execution_holds_one_more_and_expects_its_run_time_more() -> None:
    assert busy(2, TINY).given(TINY) == busy(3, 2 * TINY)
    assert busy(2, TINY).given(None) == busy(3, None)
    assert busy(2, None).given(TINY) == busy(3, None)
    assert busy(1, TINY).given(TINY, accepts=False) == ChildState(2, 2 * TINY, 0.0, accepts=False)


def test_placing_a_run_of_tiny_tasks_fills_one_child_up_to_the_budget_then_wakes_the_next() -> None:
    # Given two idle children and tiny tasks, placed one after the other as the supervisor does
    children = [IDLE, IDLE]
    expected = PACK_BUDGET / 3.5  # three fit in the budget, four do not
    chosen = []
    for _ in range(6):
        index = place(children, expected, SMALL)
        assert index is not None
        chosen.append(index)
        children[index] = children[index].given(expected)
    # Then the first child takes three (it is awake), the second the rest
    assert chosen == [0, 0, 0, 1, 1, 1]
