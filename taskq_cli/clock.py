"""The one time seam on the Python side. Redis scripts use Redis's own clock (TIME)."""

from __future__ import annotations

import time


def now() -> float:
    """Seconds since the epoch; patch this in tests instead of sleeping."""
    return time.time()


def monotonic() -> float:
    return time.monotonic()
