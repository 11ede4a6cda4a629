"""AsyncBroker: the few operations a web app awaits (enqueue, look a task up, wait for its outcome)
on redis.asyncio. Only the I/O is its own: the script objects, the keys, the arguments and the
decoding of replies are the Broker's (broker.py, waits.py), so the two cannot drift apart."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import NoScriptError

from taskq_cli.errors import UsageError
from taskq_cli.protocol.broker import check_new_queues, decode_enqueue, enqueue_args
from taskq_cli.protocol.failures import broker_errors
from taskq_cli.protocol.keys import NamespaceKeys, QueueKeys
from taskq_cli.protocol.reads import only_queue
from taskq_cli.protocol.scripts import ScriptArg, load_scripts
from taskq_cli.protocol.topology import (
    CLUSTER_SCHEMES,
    SENTINEL_SCHEMES,
    _cluster_nodes,
    _driver_info,
    _single_server_options,
)
from taskq_cli.protocol.types import BrokerSettings, EnqueueResult, NewTask, NotReplicated, TaskRecord
from taskq_cli.protocol.waits import block_args, queue_watch, watched_record

DURABLE_TIMEOUT = 5.0
# one aenqueue call waiting in a batch: its tasks, and the future its results go to
Waiting = tuple[Sequence[NewTask], "asyncio.Future[list[EnqueueResult]]"]


def connect_async(url: str) -> Any:
    """A redis.asyncio client for the URL (one server or a Cluster), with the sync client's options.
    Sentinel URLs are refused: use the sync calls there (or a thread)."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "encoding_errors": "replace",
        "socket_connect_timeout": 5.0,
        "socket_timeout": 10.0,
    }
    scheme = url.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES:
        raise UsageError("the asyncio client does not speak Sentinel yet: use the sync calls")
    if scheme in CLUSTER_SCHEMES:
        parsed = _cluster_nodes(url)
        nodes = [AsyncClusterNode(host, port) for host, port in parsed.hosts]
        return AsyncRedisCluster(startup_nodes=nodes, ssl=parsed.tls, **{**options, **parsed.options})
    _single_server_options(url, {})  # a malformed URL is refused the same way as for the sync client
    # redis-py's name and version without a package-metadata search per connection (~1 ms each)
    return aredis.Redis.from_url(url, **{**_driver_info(), **options})


class AsyncBroker:
    """One namespace on one event loop. Methods raise taskq's errors in place of redis-py's."""

    def __init__(self, client: Any, settings: BrokerSettings) -> None:
        self.client = client
        self.settings = settings
        self.ns = NamespaceKeys(settings.namespace)
        self.cluster = isinstance(client, AsyncRedisCluster)
        self._scripts = load_scripts()
        self._registered: set[str] = set()
        self._batch: list[Waiting] | None = None
        self._flushing: set[asyncio.Future[None]] = set()

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.settings.namespace, queue)

    async def close(self) -> None:
        with broker_errors():
            await self.client.aclose()

    async def enqueue(self, tasks: Sequence[NewTask], *, durable: bool = False) -> list[EnqueueResult]:
        """Broker.enqueue on the loop: each call's tasks are written atomically per queue. Calls made
        in the same turn of the loop (many coroutines enqueueing at once, as in a busy web app) are
        written together: one round trip and one script call per queue for all of them, which is
        what keeps the loop's turns short. A call's queue limit is checked before it joins
        (TooManyQueues refuses that call only); a Redis failure fails every call of the batch, none
        of which then knows whether its tasks were written, as with any lost reply."""
        if not tasks:
            return []
        if durable:  # its WAIT answers for its own writes: never shared
            return await self._write(tasks, durable=True)
        with broker_errors():
            await self._check_queue_limit(list({t.queue: None for t in tasks}))
        done: asyncio.Future[list[EnqueueResult]] = asyncio.get_running_loop().create_future()
        if self._batch is None:
            self._batch = []
            asyncio.get_running_loop().call_soon(self._flush_soon)
        self._batch.append((tasks, done))
        return await done

    def _flush_soon(self) -> None:
        batch, self._batch = self._batch or [], None
        task = asyncio.ensure_future(self._flush(batch))
        self._flushing.add(task)  # a reference until it ends (the loop keeps only weak ones)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[Waiting]) -> None:
        everything = [task for tasks, _ in batch for task in tasks]
        try:
            written = await self._write(everything, durable=False)
        except Exception as exc:  # every caller of the batch learns of it
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        start = 0
        for tasks, done in batch:
            if not done.done():  # a caller cancelled meanwhile: its tasks are written all the same
                done.set_result(written[start : start + len(tasks)])
            start += len(tasks)

    async def _write(self, tasks: Sequence[NewTask], *, durable: bool) -> list[EnqueueResult]:
        if durable and self.cluster:
            raise UsageError("durable aenqueue on a Redis Cluster: use the sync enqueue")
        if any(t.after for t in tasks):  # TaskQueue.asubmit sends these to the sync Broker in a thread
            raise UsageError("after= needs the sync Broker (dependencies are linked in several steps)")
        by_queue: dict[str, list[int]] = {}
        for index, task in enumerate(tasks):
            by_queue.setdefault(task.queue, []).append(index)
        calls = [
            (self.keys(q).script_keys(), enqueue_args("", [tasks[i] for i in ix]))
            for q, ix in by_queue.items()
        ]
        with broker_errors():
            if durable:
                await self._check_queue_limit(list(by_queue))
            replies = await self._run_enqueue(calls, list(by_queue), durable)
        self._registered.update(by_queue)
        written = decode_enqueue(tasks, by_queue, replies[: len(by_queue)])
        if durable and int(replies[-1]) < 1:
            raise NotReplicated(written, DURABLE_TIMEOUT, False)
        return written

    async def _run_enqueue(
        self, calls: list[tuple[list[str], list[ScriptArg]]], queues: list[str], durable: bool
    ) -> list[Any]:
        """The enqueue calls, the SADD of the queue names (after the tasks, see
        Broker.forget_if_empty) and a WAIT when durable, in one pipeline. A script missing from a
        restarted server's cache is loaded and only the calls it failed run again."""
        script = self._scripts["enqueue"]
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.sadd(self.ns.queues, *queues)
        if durable:
            pipe.execute_command("WAIT", 1, int(DURABLE_TIMEOUT * 1000))
        replies = list(await pipe.execute(raise_on_error=False))
        missing = [i for i, r in enumerate(replies[: len(calls)]) if isinstance(r, NoScriptError)]
        if missing:
            await self._load(script.source)
        for i in missing:
            keys, args = calls[i]
            replies[i] = await self.client.evalsha(script.sha, len(keys), *keys, *args)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _load(self, source: str) -> None:
        await self.client.script_load(source)  # a cluster client sends it to every primary

    async def _check_queue_limit(self, queues: list[str]) -> None:
        """Broker._check_queue_limit on the loop (the decision is shared: check_new_queues)."""
        unknown = [q for q in queues if q not in self._registered]
        if not unknown:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.scard(self.ns.queues)
        pipe.smismember(self.ns.queues, unknown)
        count, members = await pipe.execute()
        check_new_queues(int(count), unknown, members, self.settings, self._registered)

    # -- looking up and waiting (the Broker's watch and block_outcome; waits.py) ---------------

    async def queues_holding(self, task_id: str, queue: str | None) -> str | None:
        """The one queue holding the id (None: none); AmbiguousId when several do."""
        with broker_errors():
            queues = [queue] if queue else sorted(await self.client.smembers(self.ns.queues))
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                pipe.hexists(self.keys(q).tasks, task_id)
            found = [q for q, there in zip(queues, await pipe.execute(), strict=True) if there]
        return only_queue(task_id, found) if found else None

    async def watch(self, queue: str, task_id: str, *, register: bool) -> TaskRecord | None:
        with broker_errors():
            pipe = self.client.pipeline(transaction=False)
            queue_watch(pipe, self.keys(queue), task_id, register)
            return watched_record(await pipe.execute(), task_id, queue)

    async def block_outcome(self, queue: str, task_id: str, seconds: float) -> bool:
        with broker_errors():
            key, timeout = block_args(self.keys(queue), task_id, seconds)
            return await self.client.blmove(key, key, timeout, "LEFT", "RIGHT") is not None
