"""Wake-ups of an idle worker whose queues live on several shards of a Redis Cluster.

On one server an idle worker blocks in one BLPOP over the wake keys of all its queues. On a cluster
every queue has a slot of its own, usually on another shard, and one BLPOP cannot span slots
(CROSSSLOT). A Waker keeps one thread per queue blocking on that queue's wake key (BLPOP, at most
`WAKER_BLOCK` at a time), only while the dispatcher waits for work; the first token to arrive sets
the event the dispatcher waits on, so a task is picked up as fast as on one server, whatever shard its
queue is on. The dispatcher then fetches in the plan's order (strict or weighted), exactly as on one
server: the waker only says "look now", never which queue to take.

A token is a promise to wake ONE idle worker: a thread that receives one after its dispatcher stopped
waiting (woken by another queue, or timed out and busy fetching) puts it back for another worker.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

WAKER_BLOCK = 1.0  # seconds one BLPOP blocks: how long a closed waker's threads may linger
ERROR_PAUSE_MAX = 5.0


class Waker:
    def __init__(self, client: Any, wake_keys: Sequence[str]) -> None:
        self.client = client
        self.keys = tuple(wake_keys)
        self._lock = threading.Lock()  # guards the hand-over of a token between armed and woken
        self._armed = threading.Event()  # the dispatcher is waiting
        self._woken = threading.Event()
        self._closed = threading.Event()
        self._threads = [
            threading.Thread(target=self._listen, args=(key,), name=f"taskq-waker-{key}", daemon=True)
            for key in self.keys
        ]
        for thread in self._threads:
            thread.start()

    def wait(self, timeout: float) -> bool:
        """Block until a token arrives on any of the keys, or the timeout passes."""
        with self._lock:
            self._woken.clear()
            self._armed.set()
        self._woken.wait(max(timeout, 0.0))
        with self._lock:
            self._armed.clear()
            return self._woken.is_set()

    def close(self) -> None:
        self._closed.set()
        self._armed.set()  # lets idle threads see that they are done

    def _listen(self, key: str) -> None:
        failures = 0
        while not self._closed.is_set():
            if not self._armed.wait(0.5) or self._closed.is_set():
                continue
            try:
                reply = self.client.blpop([key], timeout=WAKER_BLOCK)
                failures = 0
            except RedisError:  # the dispatcher's own fetches report the outage; just back off
                failures += 1
                self._closed.wait(min(ERROR_PAUSE_MAX, 0.1 * 2 ** (failures - 1)))
                continue
            if reply is None:
                continue
            with self._lock:
                taken = self._armed.is_set() and not self._woken.is_set() and not self._closed.is_set()
                if taken:
                    self._woken.set()
            if not taken:
                self._pass_on(key)

    def _pass_on(self, key: str) -> None:
        """Give back a token nobody here waits for (at most one token stays in the list; a rare
        second one only costs one idle worker a look at an empty queue)."""
        with contextlib.suppress(RedisError):
            if self.client.llen(key) == 0:
                self.client.lpush(key, "1")
