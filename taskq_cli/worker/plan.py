"""Which queues a worker serves, and in which order it tries them on each fetch."""

from __future__ import annotations

import random
from dataclasses import dataclass

from taskq_cli.config import check_name
from taskq_cli.errors import UsageError


@dataclass(frozen=True)
class QueuePlan:
    """`a,b,c` (strict priority, in that order) or `a:5,b:1` (weighted random order per fetch)."""

    names: tuple[str, ...]
    weights: tuple[float, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> QueuePlan:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise UsageError("--queues needs at least one queue name")
        names: list[str] = []
        weights: list[float] = []
        for part in parts:
            name, _, weight = part.partition(":")
            names.append(check_name("queue", name))
            weights.append(_weight(part, weight) if weight else 1.0)
        if len(set(names)) != len(names):
            raise UsageError(f"--queues names a queue twice: {text!r}")
        weighted = any(":" in p for p in parts)
        return cls(tuple(names), tuple(weights) if weighted else None)

    def order(self, rng: random.Random | None = None) -> list[str]:
        """The queues to try for this fetch. Weighted: a weighted random permutation, so the first
        non-empty queue is chosen with probability proportional to its weight among non-empty ones."""
        if self.weights is None:
            return list(self.names)
        choose = rng.uniform if rng is not None else random.uniform
        pool = list(zip(self.names, self.weights, strict=True))
        ordered: list[str] = []
        while pool:
            pick = choose(0, sum(w for _, w in pool))
            for index, (name, weight) in enumerate(pool):
                pick -= weight
                if pick <= 0 or index == len(pool) - 1:
                    ordered.append(name)
                    pool.pop(index)
                    break
        return ordered


def _weight(part: str, text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = -1.0
    if not weight > 0:
        raise UsageError(f"invalid queue weight in {part!r}: use name:N with N > 0")
    return weight
