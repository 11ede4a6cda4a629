"""Skews this process's wall clock by TASKQ_CHAOS_SKEW seconds (put this folder on PYTHONPATH).

The chaos tests run workers whose `time.time()` disagree by several seconds, as on hosts with
drifting clocks: leases, delays and backoff must follow Redis's clock regardless. (libfaketime would
skew C code too, but it is not installed everywhere; taskq's own wall-clock reads are Python's.)"""

import os
import time

_SKEW = float(os.environ.get("TASKQ_CHAOS_SKEW") or 0)
if _SKEW:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _SKEW
    time.time_ns = lambda: _time_ns() + int(_SKEW * 1e9)
