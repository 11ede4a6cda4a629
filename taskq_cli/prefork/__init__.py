"""The process pool: supervised child processes that each run one task at a time.

- supervisor.py  ProcessPool, a thread of the worker: children's lifecycle, dispatch, outcomes,
                 recycling, timeouts and kills;
- placement.py   which child runs the next execution (a pure function of the children's state);
- wire.py        the bytes between supervisor and child (messages, doorbells, outcome records);
- child.py       the loop a child runs.
Tunables live in the module that uses them (placement.PACK_BUDGET, child.FLUSH_AFTER, ...).
"""

from taskq_cli.prefork.child import resident_memory_mb
from taskq_cli.prefork.supervisor import KILL_AFTER, ProcessPool

__all__ = ["KILL_AFTER", "ProcessPool", "resident_memory_mb"]
