"""SIGTERM and SIGINT for the long-running commands: the first asks for a graceful stop, a second one
stops at once (exit 1).

One request delivered twice is still one: `timeout` sends its SIGTERM to the command and then to the
command's whole process group, and service managers may do the same, so the process gets it twice
within microseconds. Whether Python runs the handler once or twice for that depends on scheduling (a
stop taken for a second signal one time in 18). A signal within REPEAT_WINDOW of the first is the same
request; a person who means "stop now" signals again after that.
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

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only (a worker run from a library thread)
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGINT, self.handle)

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        now = self.clock()
        if self.first_at is None:
            self.first_at = now
            self.on_first()
        elif now - self.first_at >= REPEAT_WINDOW:
            log.warning("second signal: stopping at once; running tasks return through leases")
            os._exit(1)
