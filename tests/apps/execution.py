"""Handlers for the execution-engine tests (tests/test_execution.py): code that hangs, crashes, hogs
memory or just reports where it ran. Every execution is recorded in Redis (list `<ns>:test:runs`,
entries `task_id:attempt:tag`) so tests can see across processes what ran, where and when; tags of the
form `pid=N` say which process ran it."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import threading
import time

import redis

from taskq_cli import TaskQueue, current_task

tq = TaskQueue(backoff_base=0.05, backoff_max=0.2)
_client = redis.Redis.from_url(tq.settings.redis_url, decode_responses=True)
_hoard: list[bytes] = []  # what `hog` allocated stays referenced for the life of its process


def record(tag: str = "") -> None:
    ctx = current_task()
    assert ctx is not None
    entry = f"{ctx.id}:{ctx.attempt}" + (f":{tag}" if tag else "")
    _client.rpush(f"{tq.settings.namespace}:test:runs", entry)


def record_pid(tag: str = "") -> None:
    record(f"pid={os.getpid()}" + (f",{tag}" if tag else ""))


# -- plain work ------------------------------------------------------------------------------------


@tq.task(name="pid")
def pid() -> int:
    """Says which process ran it."""
    record_pid()
    return os.getpid()


@tq.task(name="nap", timeout=60)
def nap(seconds: float = 0.5) -> int:
    """Sleeps (interruptibly), recording its process at the start and the end."""
    record_pid("start")
    time.sleep(seconds)
    record_pid("end")
    return os.getpid()


@tq.task(name="nap_first", timeout=60)
def nap_first(seconds: float = 30.0) -> int:
    """Sleeps on attempt 1 only (so its worker can be killed meanwhile); returns at once later."""
    ctx = current_task()
    assert ctx is not None
    record_pid("start")
    if ctx.attempt == 1:
        time.sleep(seconds)
    record_pid("end")
    return ctx.attempt


@tq.task(name="async_nap", timeout=30)
async def async_nap(seconds: float = 0.5) -> int:
    """An async handler: many of them share one event loop under --pool asyncio."""
    record_pid(f"start,thread={threading.get_ident()}")
    await asyncio.sleep(seconds)
    record_pid("end")
    return os.getpid()


# -- code past its timeout -------------------------------------------------------------------------


@tq.task(name="spin", timeout=1, max_retries=0)
def spin() -> None:
    """A pure-Python busy loop: the soft timeout (TaskTimeout raised inside it) stops it."""
    record_pid("start")
    while True:
        pass


@tq.task(name="polite_sleep", timeout=1, max_retries=0)
def polite_sleep() -> None:
    """Sees the soft timeout arrive as TaskTimeout (a BaseException), notes it and lets it go."""
    record_pid("start")
    try:
        time.sleep(30)
    except Exception:  # TaskTimeout is no Exception: this must not catch it
        record("caught-by-except-Exception")
        raise
    except BaseException as exc:
        record(f"caught={type(exc).__name__}")
        raise


@tq.task(name="stubborn_spin", timeout=1, max_retries=0)
def stubborn_spin() -> None:
    """Swallows the soft timeout and spins on: only the hard kill stops it."""
    record_pid("start")
    try:
        time.sleep(30)
    except BaseException as exc:
        record(f"caught={type(exc).__name__}")
        while True:
            pass


@tq.task(name="stubborn_sleep", timeout=1, max_retries=0)
def stubborn_sleep() -> None:
    """A C call (time.sleep) under a loop that ignores every exception."""
    record_pid("start")
    while True:
        try:
            time.sleep(30)
        except BaseException as exc:
            record(f"caught={type(exc).__name__}")


@tq.task(name="deadlock", timeout=1, max_retries=0)
def deadlock() -> None:
    """Blocks SIGALRM, then takes a lock it already holds: no Python code ever runs again."""
    record_pid("start")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()


# -- code that takes its process down --------------------------------------------------------------


@tq.task(name="exit_now", max_retries=1)
def exit_now() -> None:
    record_pid()
    os._exit(1)


@tq.task(name="kill_self", max_retries=1)
def kill_self() -> None:
    record_pid()
    os.kill(os.getpid(), signal.SIGKILL)


@tq.task(name="segfault", max_retries=1)
def segfault() -> None:
    record_pid()
    ctypes.string_at(0)


@tq.task(name="hog", timeout=60)
def hog(mb: int = 100) -> int:
    """Allocates `mb` MB (every page touched) and keeps it."""
    _hoard.append(b"\x01" * (mb * 1024 * 1024))
    record_pid()
    return os.getpid()
