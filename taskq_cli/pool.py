"""Where tasks run. A worker submits Executions to a pool; the pool runs them and hands each Outcome to
the worker's callback. Three pools:

- `processes` (default, prefork/): supervised child processes; hard timeouts, crash isolation.
- `threads`: threads of the worker process; cheapest for I/O-bound sync handlers, no hard timeout.
- `asyncio`: one event loop running many `async def` handlers at once (sync ones go to threads).

Each pool records every outcome's run time in its `runtimes` before the callback hears of it: the one
record of run times (the worker's prefetch reads the overall average, the process pool's placement
the average per task name).
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

from taskq_cli.middleware import Chain, TaskInfo
from taskq_cli.models import Outcome
from taskq_cli.registry import TaskDef
from taskq_cli.runner import (
    Execution,
    TaskTimeout,
    call_here,
    outcome_of,
    run_outcome,
    run_task,
    run_task_async,
    task_info,
)
from taskq_cli.runtime import Runtimes

OnDone = Callable[[Execution, Outcome], None]
POOL_KINDS = ("processes", "threads", "asyncio")


class Pool(Protocol):
    runtimes: Runtimes  # every outcome's run time, recorded before `on_done` is called

    def start(self, on_done: OnDone) -> None:
        """Get ready; `on_done` is called once per execution that was not aborted."""

    def submit(self, execution: Execution) -> None:
        """Never blocks; runs it when a slot is free (the worker may submit a few more than it has
        slots while tasks are short, so that no slot waits for a round trip to Redis)."""

    def submit_many(self, executions: Sequence[Execution]) -> None:
        """`submit` each, in order, as one hand-off: a fetch's batch costs one lock and one message
        per child (process pool) or one loop wake-up (asyncio), not one per task."""

    def abort(self, tokens: Collection[str]) -> None:
        """Stop these attempts (by lease token) now; their outcomes are dropped."""

    def close(self) -> None:
        """Release everything (after all executions ended or were aborted)."""


class ThreadPool:
    """`size` daemon threads. A sync handler past its timeout cannot be killed: the pool reports it as
    timed out, abandons its thread (dropping whatever it returns later) and starts a replacement."""

    def __init__(self, size: int, registry: Mapping[str, TaskDef], middleware: Chain | None = None) -> None:
        self.size = size
        self.registry = registry
        self.middleware = middleware or Chain()
        self._jobs: queue.SimpleQueue[Execution | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._deadlines: dict[str, tuple[float, Execution]] = {}
        self._dropped: set[str] = set()  # aborted or timed out: outcomes are not delivered
        self._executing: set[str] = set()
        self._seen: dict[str, TaskInfo] = {}  # what the hooks saw of a running task with a timeout
        self._on_done: OnDone | None = None
        self._closed = threading.Event()
        self._threads = 0
        self.runtimes = Runtimes()

    def start(self, on_done: OnDone) -> None:
        self._on_done = on_done
        for _ in range(self.size):
            self._add_thread()
        threading.Thread(target=self._watch, name="taskq-thread-watchdog", daemon=True).start()

    def submit(self, execution: Execution) -> None:
        self._jobs.put(execution)

    def submit_many(self, executions: Sequence[Execution]) -> None:
        for execution in executions:
            self._jobs.put(execution)

    def abort(self, tokens: Collection[str]) -> None:
        with self._lock:
            self._dropped.update(tokens)
            stuck = len(self._executing & set(tokens))
        for _ in range(stuck):  # their threads cannot be stopped: replace them
            self._add_thread()

    def close(self) -> None:
        self._closed.set()
        for _ in range(self._threads):
            self._jobs.put(None)

    def _add_thread(self) -> None:
        self._threads += 1
        threading.Thread(target=self._serve, name=f"taskq-thread-{self._threads}", daemon=True).start()

    def _serve(self) -> None:
        while (execution := self._jobs.get()) is not None:
            task = task_info(execution) if self.middleware.running else None
            with self._lock:
                if execution.token in self._dropped:
                    continue  # aborted before it started
                self._executing.add(execution.token)
                if execution.timeout is not None:
                    self._deadlines[execution.token] = (time.monotonic() + execution.timeout, execution)
                    if task is not None:
                        self._seen[execution.token] = task
            outcome = run_task(
                self.registry.get(execution.name),
                execution,
                call=call_here,
                middleware=self.middleware,
                wanted=functools.partial(self._wanted, execution.token),
                task=task,
            )
            with self._lock:
                self._executing.discard(execution.token)
                self._deadlines.pop(execution.token, None)
                self._seen.pop(execution.token, None)
                abandoned = execution.token in self._dropped
            if abandoned:
                return  # this thread was replaced when its task timed out or was aborted
            self.runtimes.record(known_name(self.registry, execution.name), outcome.runtime)
            if self._on_done is not None:
                self._on_done(execution, outcome)

    def _wanted(self, token: str) -> bool:
        """Whether a finished execution's outcome still counts (not timed out or aborted)."""
        with self._lock:
            return token not in self._dropped

    def _watch(self) -> None:
        while not self._closed.wait(0.05):
            now = time.monotonic()
            with self._lock:
                late = [e for deadline, e in self._deadlines.values() if deadline <= now]
                seen = {e.token: self._seen.pop(e.token, None) for e in late}
                for execution in late:
                    del self._deadlines[execution.token]
                    self._dropped.add(execution.token)
                    self._executing.discard(execution.token)
            for execution in late:
                self._add_thread()
                timed_out = TaskTimeout(f"timed out after {execution.timeout:g}s")
                outcome = outcome_of(timed_out)
                self.runtimes.record(None, outcome.runtime)  # not measured: no guess for its name
                if self.middleware.running:  # its thread runs on: after_run hears of the timeout now
                    task = seen.get(execution.token) or task_info(execution)  # the one before_run saw
                    self.middleware.after_run(task, run_outcome(execution, outcome, None, timed_out))
                if self._on_done is not None:
                    self._on_done(execution, outcome)


class AsyncPool:
    """One event loop in its own thread; up to the worker's concurrency tasks run on it at once."""

    def __init__(self, size: int, registry: Mapping[str, TaskDef], middleware: Chain | None = None) -> None:
        self.registry = registry
        self.middleware = middleware or Chain()
        self._loop = asyncio.new_event_loop()
        self._slots = asyncio.Semaphore(size)  # submissions beyond `size` wait their turn
        self._running: dict[str, asyncio.Task[None]] = {}
        self._on_done: OnDone | None = None
        self.runtimes = Runtimes()
        self._thread = threading.Thread(target=self._loop.run_forever, name="taskq-asyncio", daemon=True)

    def start(self, on_done: OnDone) -> None:
        self._on_done = on_done
        self._thread.start()

    def submit(self, execution: Execution) -> None:
        self._loop.call_soon_threadsafe(self._begin, execution)

    def submit_many(self, executions: Sequence[Execution]) -> None:
        self._loop.call_soon_threadsafe(self._begin_all, list(executions))

    def abort(self, tokens: Collection[str]) -> None:
        def cancel() -> None:
            for token in tokens:
                running = self._running.pop(token, None)
                if running is not None:
                    running.cancel()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(_call(cancel), self._loop).result(timeout=5)

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    def _begin(self, execution: Execution) -> None:
        self._running[execution.token] = self._loop.create_task(self._run(execution))

    def _begin_all(self, executions: list[Execution]) -> None:
        for execution in executions:
            self._begin(execution)

    async def _run(self, execution: Execution) -> None:
        async with self._slots:
            outcome = await run_task_async(self.registry.get(execution.name), execution, self.middleware)
        if self._running.pop(execution.token, None) is None:
            return  # aborted
        self.runtimes.record(known_name(self.registry, execution.name), outcome.runtime)
        if self._on_done is not None:
            self._on_done(execution, outcome)


def known_name(registry: Mapping[str, TaskDef], name: str) -> str | None:
    """The name to record a run time under: None for a name no handler has (names come from Redis,
    and per-name averages are for our tasks only)."""
    return name if name in registry else None


async def _call(fn: Callable[[], None]) -> None:
    fn()
