"""SIGTERM and SIGINT for the long-running commands: the first asks for a graceful stop, a second one
stops at once (exit 1).

One request delivered twice is still one: `timeout` sends its SIGTERM to the command and then to the
command's whole process group, and service managers may do the same, so the process gets it twice
within microseconds. Whether Python runs the handler once or twice for that depends on scheduling (a
stop taken for a second signal one time in 18). So a SIGTERM within REPEAT_WINDOW of a first SIGTERM
is the same request. SIGINT is a person at a terminal (Ctrl-C reaches the process once): a second one
stops at once, however soon it comes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

REPEAT_WINDOW = 1.0  # seconds

log = logging.getLogger("taskq")


class StopSignals:
    def __init__(self, on_first: Callable[[], None], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.on_first = on_first
        self.clock = clock
        self.first_at: float | None = None
        self.first_signal: int | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only (a worker run from a library thread)
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGINT, self.handle)

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        now = self.clock()
        if self.first_at is None:
            self.first_at, self.first_signal = now, signum
            self.on_first()
        elif not self._same_request(signum, now):
            log.warning("second signal: stopping at once; running tasks return through leases")
            os._exit(1)

    def _same_request(self, signum: int, now: float) -> bool:
        assert self.first_at is not None
        return signum == self.first_signal == signal.SIGTERM and now - self.first_at < REPEAT_WINDOW
