"""Execution slots: where a worker runs its tasks. The worker hands a pool a callable per task; a pool
decides where it runs. This pool runs tasks in threads of the worker process."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class ThreadPool:
    """`size` daemon threads; a task whose handler never returns cannot block the worker's exit."""

    def __init__(self, size: int, name: str = "taskq-slot") -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()
