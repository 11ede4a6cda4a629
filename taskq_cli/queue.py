"""`TaskQueue`: the library's front door (define handlers, enqueue, look tasks up)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

from taskq_cli.config import DEFAULT_QUEUE, RetryDefaults, Settings, check_name
from taskq_cli.errors import UsageError
from taskq_cli.middleware import Chain, Middleware, TaskInfo
from taskq_cli.producer import UNSET, EnqueueRequest, prepare
from taskq_cli.registry import TaskDef, UniqueSpec
from taskq_cli.workflows import chain_requests, group_requests, items_as_requests

if TYPE_CHECKING:
    import asyncio

    from taskq_cli.cron import Schedule
    from taskq_cli.limiter import Limiter
    from taskq_cli.models import Task
    from taskq_cli.protocol import Broker, EnqueueResult, NewTask, QueueLimits
    from taskq_cli.protocol.aio import AsyncBroker

# Keyword arguments of `handler.enqueue(...)` that are options, not payload fields.
ENQUEUE_OPTIONS = (
    "delay",
    "at",
    "queue",
    "task_id",
    "max_retries",
    "timeout",
    "unique",
    "unique_key",
    "unique_until",
    "unique_for",
    "debounce",
    "after",
)


class TaskHandle:
    """What `@tq.task` returns: the function itself (callable as before) plus `.enqueue(...)`."""

    def __init__(self, tq: TaskQueue, definition: TaskDef) -> None:
        self.tq = tq
        self.definition = definition
        self.__wrapped__ = definition.fn
        self.__name__ = getattr(definition.fn, "__name__", definition.name)
        self.__doc__ = definition.fn.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.definition.fn(*args, **kwargs)

    def enqueue(self, **kwargs: Any) -> str:
        """Enqueue with the payload as keyword arguments; ENQUEUE_OPTIONS (`delay`, `at`, `queue`,
        `task_id`, `max_retries`, `timeout`, `unique_key`, ...) are options (use `tq.enqueue` for
        fields with those names)."""
        options = {k: kwargs.pop(k) for k in ENQUEUE_OPTIONS if k in kwargs}
        return self.tq.enqueue(self.definition.name, kwargs, **options)

    async def aenqueue(self, **kwargs: Any) -> str:
        """`enqueue` on the event loop (redis.asyncio): the same options and checks."""
        options = {k: kwargs.pop(k) for k in ENQUEUE_OPTIONS if k in kwargs}
        return await self.tq.aenqueue(self.definition.name, kwargs, **options)


class TaskQueue:
    """The library's front door: register handlers, enqueue tasks, wait for results, manage schedules.

    Connects lazily, on the first call that needs Redis. Settings not given here come from the
    environment (`TASKQ_REDIS_URL`, `TASKQ_NAMESPACE`, ...), then from the profile, then from the
    defaults (docs/reference.md, "Configuration").

    Args:
        redis_url: `redis://`, `rediss://`, `unix://`, `redis+cluster://` or `redis+sentinel://` URL.
        namespace: prefix of every key; two namespaces on one Redis never see each other's data.
        max_retries: retries after the first execution (default 3), unless a handler or enqueue says.
        timeout: seconds a handler may run (default 600; 0 or None: no limit).
        backoff_base: first retry delay in seconds (default 5), doubling per retry.
        backoff_max: longest retry delay in seconds (default 3600).
        result_ttl: seconds a done task and its result are kept (default 600).
        dead_max: most dead tasks kept per queue (default 100,000).
        dead_ttl: longest a dead task is kept, in seconds (default 30 days).
        max_queues: most queues one namespace may hold (default 1,000).
        profile: a `[profiles.NAME]` of the config file.

    Example:
        ```python
        tq = TaskQueue()

        @tq.task(max_retries=5)
        def send_email(to: str) -> None: ...

        send_email.enqueue(to="a@example.com")
        ```
    """

    def __init__(
        self,
        redis_url: str | None = None,
        namespace: str | None = None,
        *,
        max_retries: int | None = None,
        timeout: float | None = UNSET,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        result_ttl: float | None = None,
        dead_max: int | None = None,
        dead_ttl: float | None = None,
        max_queues: int | None = None,
        profile: str | None = None,
    ) -> None:
        # What the code said: CLI options and a profile chosen later (configure) apply around it.
        self._given = {"redis_url": redis_url, "namespace": namespace}
        settings = Settings.from_env(
            profile,
            redis_url=redis_url,
            namespace=namespace,
            dead_max=dead_max,
            dead_ttl=dead_ttl,
            max_queues=max_queues,
        )
        changes: dict[str, Any] = {
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_max": backoff_max,
            "result_ttl": result_ttl,
        }
        settings = settings.with_defaults(**changes)
        if timeout is not UNSET:
            settings = settings.with_defaults(timeout=timeout or 0.0)
        self.settings = settings
        self.registry: dict[str, TaskDef] = {}
        self.app_spec: str | None = None  # set by --app loading: how child processes find handlers
        self.code_schedules: dict[str, Schedule] = {}  # @tq.periodic; written by sync_schedules()
        self.middleware = Chain()  # add_middleware; runs in this app's producers and workers
        self._broker: Broker | None = None
        # one redis.asyncio pool per event loop: a pool's connections belong to the loop that made them
        self._abrokers: dict[asyncio.AbstractEventLoop, AsyncBroker] = {}

    # -- configuration ----------------------------------------------------------------------

    def configure(
        self, *, redis_url: str | None = None, namespace: str | None = None, profile: str | None = None
    ) -> None:
        """Point at another Redis, namespace or profile (CLI options beat what the app's code said,
        which beats the environment and the profile)."""
        if redis_url is None and namespace is None and profile is None:
            return
        self._given = {
            "redis_url": redis_url or self._given["redis_url"],
            "namespace": namespace or self._given["namespace"],
        }
        self.settings = Settings.from_env(
            profile or self.settings.profile,
            **self._given,
            dead_max=self.settings.dead_max,
            dead_ttl=self.settings.dead_ttl,
            max_queues=self.settings.max_queues,
            defaults=self.settings.defaults,
        )
        self.close()
        self._abrokers.clear()  # pools of the old address: each loop makes a new one on first use

    @property
    def broker(self) -> Broker:
        """The synchronous connection to Redis (made on first use; `close` ends it)."""
        if self._broker is None:
            from taskq_cli.protocol import Broker, BrokerSettings, connect

            s = self.settings
            limits = BrokerSettings(s.namespace, s.dead_max, s.dead_ttl, s.max_queues)
            self._broker = Broker(connect(s.redis_url), limits)
        return self._broker

    def close(self) -> None:
        """Close the synchronous connection pool (the next call that needs Redis opens a new one)."""
        if self._broker is not None:
            self._broker.close()
            self._broker = None

    @property
    def abroker(self) -> AsyncBroker:
        """The running loop's AsyncBroker (made on first use; `aclose` ends it)."""
        import asyncio

        from taskq_cli.protocol import BrokerSettings
        from taskq_cli.protocol.aio import AsyncBroker, connect_async

        loop = asyncio.get_running_loop()
        found = self._abrokers.get(loop)
        if found is None:
            for old in [old for old in self._abrokers if old.is_closed()]:
                del self._abrokers[old]  # a loop gone (asyncio.run ended): its pool went with it
            s = self.settings
            limits = BrokerSettings(s.namespace, s.dead_max, s.dead_ttl, s.max_queues)
            found = self._abrokers[loop] = AsyncBroker(connect_async(s.redis_url), limits)
        return found

    async def aclose(self) -> None:
        """Close the running loop's connection pool (the sync client stays: see `close`)."""
        import asyncio

        found = self._abrokers.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found.close()

    # -- handlers ---------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[..., Any], /) -> TaskHandle: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        max_retries: int | None = None,
        timeout: float | None = UNSET,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        result_ttl: float | None = None,
        unique: bool | Sequence[str] = False,
        unique_until: str | None = None,
        unique_for: float | str | None = None,
        debounce: float | str | None = None,
    ) -> Callable[[Callable[..., Any]], TaskHandle]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        max_retries: int | None = None,
        timeout: float | None = UNSET,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        result_ttl: float | None = None,
        unique: bool | Sequence[str] = False,
        unique_until: str | None = None,
        unique_for: float | str | None = None,
        debounce: float | str | None = None,
    ) -> TaskHandle | Callable[[Callable[..., Any]], TaskHandle]:
        """Register a handler (sync or `async def`); its parameters are the payload's fields.

        Used bare (`@tq.task`) or with options (`@tq.task(max_retries=5)`); returns a TaskHandle,
        still callable as the function, with `.enqueue(...)`. Options left out come from the
        TaskQueue; an enqueue's own options beat these.

        Args:
            name: the task's name in Redis (default: the function's name).
            queue: the queue its tasks go to.
            max_retries: retries after the first execution.
            timeout: seconds an execution may run (0 or None: no limit).
            backoff_base: first retry delay in seconds, doubling per retry.
            backoff_max: longest retry delay in seconds.
            result_ttl: seconds a done task and its result are kept.
            unique: True (key from the name and the whole payload) or payload field names: while a
                task holds its key, an enqueue with the same key answers the holder's id.
            unique_until: `"finished"` (default) or `"started"`: when the key is released.
            unique_for: the longest the key is held (seconds or `"1h"`).
            debounce: run the task this long after the last enqueue with its key, with that
                enqueue's payload (docs/flow-control.md).
        """
        given: dict[str, Any] = {
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_max": backoff_max,
            "result_ttl": result_ttl,
        }
        if timeout is not UNSET:
            given["timeout"] = timeout or 0.0
        given = {k: v for k, v in given.items() if v is not None}
        spec = _unique_spec(unique, unique_until, unique_for, debounce)

        def register(func: Callable[..., Any]) -> TaskHandle:
            task_name = name or f"{func.__module__}.{func.__qualname__}"
            definition = TaskDef(
                name=task_name,
                fn=func,
                queue=check_name("queue", queue),
                retry=_merge(self.settings.defaults, given),
                explicit=frozenset(given),
                unique=spec,
            )
            self.registry[task_name] = definition
            return TaskHandle(self, definition)

        return register(fn) if fn is not None else register

    def add_middleware(self, middleware: Middleware) -> None:
        """Run `middleware`'s hooks around every enqueue of this app (library, CLI and API with
        --app) and every execution in its workers, whatever the pool (docs/observability.md). Add
        it where the tasks are defined, before a worker starts."""
        self.middleware = Chain([*self.middleware.middleware, middleware])

    # -- producing --------------------------------------------------------------------------

    def enqueue(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        delay: float | str | None = None,
        at: datetime | str | float | None = None,
        task_id: str | None = None,
        max_retries: int | None = None,
        timeout: Any = UNSET,
        durable: bool = False,
        unique: bool | Sequence[str] | None = None,
        unique_key: str | None = None,
        unique_until: str | None = None,
        unique_for: float | str | None = None,
        debounce: float | str | None = None,
        after: Sequence[str] | None = None,
    ) -> str:
        """Enqueue one task; returns its id (the existing task's id for a duplicate custom id, or the
        holder's for a held unique key).

        With the handler registered in this TaskQueue, the payload is validated against its
        signature first: ValidationFailed, and nothing written, when it does not match.

        Args:
            name: the task's name (a handler registered here, or in the workers' app).
            payload: the handler's keyword arguments, as JSON-able values.
            queue: the queue (default: the handler's, else `default`).
            delay: run no sooner than this many seconds (or `"5m"`) from now.
            at: run no sooner than this time (a datetime, ISO 8601 text or a Unix time).
            task_id: a custom id, unique within its queue: enqueueing it again while it waits or
                runs adds nothing (idempotent).
            max_retries: this task's retries, over the handler's.
            timeout: this task's timeout in seconds, over the handler's.
            durable: return only once a replica has the task too (raises NotReplicated when none
                confirms it in time; see docs/scaling.md).
            unique: as in `task`, for this enqueue.
            unique_key: an explicit uniqueness key (implies unique).
            unique_until: as in `task`.
            unique_for: as in `task`.
            debounce: as in `task`.
            after: ids of tasks it waits for; it runs once they are all done (docs/workflows.md).
        """
        request = EnqueueRequest(
            name,
            payload,
            queue,
            delay,
            at,
            task_id,
            max_retries,
            timeout,
            unique=unique,
            unique_key=unique_key,
            unique_until=unique_until,
            unique_for=unique_for,
            debounce=debounce,
            after=after,
        )
        return self.submit([request], durable=durable)[0].id

    def enqueue_many(self, items: Iterable[Sequence[Any]], *, durable: bool = False) -> list[str]:
        """Enqueue `(name, payload)` pairs or `(name, payload, options)` triples in one round trip;
        every item is validated before anything is written. Returns the ids in order. `durable`: as
        for `enqueue`, for the whole batch."""
        return [result.id for result in self.submit(_requests(items), durable=durable)]

    def chain(self, items: Iterable[Sequence[Any]], *, durable: bool = False) -> list[str]:
        """Enqueue `(name, payload[, options])` items, each `after` the one before it (it runs once
        that one is done; if one ends dead or is cancelled, the rest end dead with DependencyFailed).
        One batch; returns the ids in order (docs/workflows.md)."""
        return [r.id for r in self.submit(chain_requests(_requests(items)), durable=durable)]

    def group(self, items: Iterable[Sequence[Any]], *, durable: bool = False) -> list[str]:
        """Enqueue independent tasks as one batch; returns their ids. A chord is a task enqueued
        `after=` them: `tq.enqueue("notify", {}, after=tq.group([...]))`."""
        return [r.id for r in self.submit(group_requests(_requests(items)), durable=durable)]

    async def achain(self, items: Iterable[Sequence[Any]], *, durable: bool = False) -> list[str]:
        """`chain` on the event loop."""
        return [r.id for r in await self.asubmit(chain_requests(_requests(items)), durable=durable)]

    async def agroup(self, items: Iterable[Sequence[Any]], *, durable: bool = False) -> list[str]:
        """`group` on the event loop."""
        return [r.id for r in await self.asubmit(group_requests(_requests(items)), durable=durable)]

    def submit(self, requests: Sequence[EnqueueRequest], *, durable: bool = False) -> list[EnqueueResult]:
        """Validate every request, then write them all (one round trip, atomic per queue)."""
        return self.write([prepare(request, self.registry) for request in requests], durable=durable)

    def write(self, tasks: Sequence[NewTask], *, durable: bool = False) -> list[EnqueueResult]:
        """Write tasks `producer.prepare` already validated (one round trip, atomic per queue)."""
        return self.broker.enqueue(self._before_enqueue(tasks), durable=durable)

    def _before_enqueue(self, tasks: Sequence[NewTask]) -> Sequence[NewTask]:
        """The middleware's `before_enqueue` for each task, before anything of the batch is written;
        the headers they add go into the task's record."""
        chain = self.middleware
        if not chain.producing:
            return tasks
        from dataclasses import replace

        out: list[NewTask] = []
        for task in tasks:
            info = TaskInfo(task.id, task.meta["name"], task.queue, 0, {}, payload_json=task.payload_json)
            headers = chain.before_enqueue(info)
            out.append(replace(task, meta={**task.meta, "headers": headers}) if headers else task)
        return out

    async def aenqueue(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        delay: float | str | None = None,
        at: datetime | str | float | None = None,
        task_id: str | None = None,
        max_retries: int | None = None,
        timeout: Any = UNSET,
        durable: bool = False,
        unique: bool | Sequence[str] | None = None,
        unique_key: str | None = None,
        unique_until: str | None = None,
        unique_for: float | str | None = None,
        debounce: float | str | None = None,
        after: Sequence[str] | None = None,
    ) -> str:
        """`enqueue` on the event loop (redis.asyncio): the same checks, options and guarantees."""
        request = EnqueueRequest(
            name,
            payload,
            queue,
            delay,
            at,
            task_id,
            max_retries,
            timeout,
            unique=unique,
            unique_key=unique_key,
            unique_until=unique_until,
            unique_for=unique_for,
            debounce=debounce,
            after=after,
        )
        return (await self.asubmit([request], durable=durable))[0].id

    async def aenqueue_many(self, items: Iterable[Sequence[Any]], *, durable: bool = False) -> list[str]:
        """`enqueue_many` on the event loop."""
        return [result.id for result in await self.asubmit(_requests(items), durable=durable)]

    async def asubmit(
        self, requests: Sequence[EnqueueRequest], *, durable: bool = False
    ) -> list[EnqueueResult]:
        """`submit` on the event loop: the same preparation, then AsyncBroker.enqueue."""
        tasks = self._before_enqueue([prepare(request, self.registry) for request in requests])
        if any(t.after for t in tasks):  # linked in several steps: the sync Broker, off the loop
            return await asyncio.to_thread(self.broker.enqueue, tasks, durable=durable)
        return await self.abroker.enqueue(tasks, durable=durable)

    # -- results ----------------------------------------------------------------------------

    def result(self, task_id: str, wait: float | None = None, queue: str | None = None) -> Any:
        """The handler's return value once the task is done. Waits up to `wait` seconds (None: not
        at all). Raises TaskFailed (dead), ResultTimeout (not finished in time), TaskNotFound."""
        from taskq_cli.results import wait_result

        return wait_result(self.broker, task_id, wait, queue)

    async def aresult(self, task_id: str, wait: float | None = None, queue: str | None = None) -> Any:
        """`result` on the event loop."""
        from taskq_cli.results import await_result

        return await await_result(self.abroker, task_id, wait, queue)

    # -- flow control -----------------------------------------------------------------------------

    def limiter(self, key: str, *, rate: str | None = None, concurrency: int | None = None) -> Limiter:
        """A per-key limiter for a block of a handler: at most `rate` passes (`"10/s"`) in any
        window of that length, at most `concurrency` blocks at once, namespace-wide. Over the limit
        it raises RateLimited: the task is rescheduled for when the limiter lets it pass, using no
        attempt (docs/flow-control.md)."""
        from taskq_cli.limiter import Limiter

        return Limiter(self.broker, key, rate, concurrency)

    def set_queue_limits(self, queue: str, *, concurrency: Any = UNSET, rate: Any = UNSET) -> QueueLimits:
        """Limit a queue across every worker: at most `concurrency` tasks active at once, at most
        `rate` starts (`"100/s"`, `"600/1m"`) in any window of that length. None clears a limit; a
        limit not given stays as it is. Checked whole before anything is written (UsageError).
        Returns the limits now set (docs/flow-control.md)."""
        check_name("queue", queue)
        if concurrency is not UNSET and concurrency is not None:
            if isinstance(concurrency, bool) or not isinstance(concurrency, int):
                raise UsageError(f"concurrency must be a whole number, got {concurrency!r}")
            if not 1 <= concurrency <= MAX_CONCURRENCY_LIMIT:
                raise UsageError(
                    f"concurrency must be between 1 and {MAX_CONCURRENCY_LIMIT}, got {concurrency}"
                )
        parsed = rate if rate is UNSET or rate is None else _rate(rate)
        current = self.broker.limits([queue])[queue]
        from taskq_cli.protocol import QueueLimits

        limits = QueueLimits(
            current.concurrency if concurrency is UNSET else concurrency,
            current.rate if parsed is UNSET else None if parsed is None else parsed[0],
            current.window if parsed is UNSET else None if parsed is None else parsed[1],
        )
        self.broker.set_limits(queue, limits)
        return limits

    # -- periodic schedules ---------------------------------------------------------------------

    def periodic(
        self,
        spec: str,
        *,
        name: str | None = None,
        payload: dict[str, Any] | None = None,
        queue: str | None = None,
        timezone: str = "UTC",
        catchup: str = "skip",
    ) -> Callable[[Callable[..., Any]], TaskHandle]:
        """Run a task on a schedule: a cron expression (`*/5 * * * *`, `@daily`) in `timezone`, or
        `every 30s`. Workers and schedulers started with this app store it in Redis; each tick
        fires exactly once however many of them run."""
        from taskq_cli.cron import Schedule

        def register(fn: Callable[..., Any]) -> TaskHandle:
            handle = fn if isinstance(fn, TaskHandle) else self.task(queue=queue or DEFAULT_QUEUE)(fn)
            definition = handle.definition
            definition.validate(payload or {})
            schedule = Schedule(
                name=name or handle.__name__,
                spec=spec,
                task=definition.name,
                payload=payload or {},
                queue=queue or definition.queue,
                timezone=timezone,
                catchup=catchup,
            )
            self.code_schedules[schedule.name] = schedule
            return handle

        return register

    def schedule(
        self,
        name: str,
        spec: str,
        task: str,
        payload: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        timezone: str = "UTC",
        catchup: str = "skip",
        max_retries: int | None = None,
    ) -> Schedule:
        """Store a schedule in Redis now (the same as `taskq cron add`); replaces one of that name."""
        from taskq_cli.cron import Schedule

        handler = self.registry.get(task)
        if handler is not None:
            handler.validate(payload or {})
        schedule = Schedule(
            name=name,
            spec=spec,
            task=task,
            payload=payload or {},
            queue=queue or (handler.queue if handler else DEFAULT_QUEUE),
            timezone=timezone,
            catchup=catchup,
            max_retries=max_retries,
        )
        return self._store_schedule(schedule)

    def schedules(self) -> list[Schedule]:
        """Every schedule stored in Redis, by name (`taskq cron list`)."""
        from taskq_cli.cron import Schedule

        return [Schedule.from_json(d) for _, d in sorted(self.broker.cron_definitions().items())]

    def unschedule(self, name: str) -> bool:
        """Remove a stored schedule (the same as `taskq cron remove`); False when there was none."""
        found = {s.name: s for s in self.schedules()}.get(name)
        return found is not None and self.broker.cron_delete(name, found.queue)

    def set_schedule_paused(self, name: str, paused: bool) -> Schedule:
        """Pause or resume a stored schedule (`taskq cron pause/resume`); raises NotFound for none."""
        from taskq_cli.errors import NotFound

        found = {s.name: s for s in self.schedules()}.get(name)
        if found is None:
            raise NotFound(f"schedule {name!r} not found")
        changed = found.with_changes(paused=paused)
        self.broker.cron_put(name, changed.to_json())
        return changed

    def sync_schedules(self) -> None:
        """Write the app's @periodic schedules to Redis (workers and schedulers do this at start)."""
        for schedule in self.code_schedules.values():
            self._store_schedule(schedule)

    def _store_schedule(self, schedule: Schedule) -> Schedule:
        """Upsert. An unchanged definition keeps its creation time and paused flag; a new or changed
        one starts now, so it never fires a tick from before it existed."""
        from taskq_cli.cron import Schedule

        existing = self.broker.cron_definitions().get(schedule.name)
        if existing is not None:
            old = Schedule.from_json(existing)
            if old.with_changes(created_at=0, paused=False) == schedule.with_changes(
                created_at=0, paused=False
            ):
                return old
        stored = schedule.with_changes(created_at=self.broker.redis_time_ms())
        self.broker.cron_put(stored.name, stored.to_json())
        return stored

    # -- inspection -------------------------------------------------------------------------

    def get_task(self, task_id: str, queue: str | None = None) -> Task | None:
        """The task with this id (every field, its payload and result), or None. Searches every
        queue unless `queue` is given."""
        from taskq_cli.models import Task

        record = self.broker.find_task(task_id, queue)
        if record is None:
            return None
        return Task.from_record(record.meta, record.payload_json, record.result_json)


def _requests(items: Iterable[Sequence[Any]]) -> list[EnqueueRequest]:
    """`enqueue_many`'s items as requests: `(name, payload)` or `(name, payload, options)`."""
    return items_as_requests(items, ENQUEUE_OPTIONS)


MAX_CONCURRENCY_LIMIT = 1_000_000


def _rate(rate: object) -> tuple[int, float]:
    """`N/DURATION` or `(N, seconds)`."""
    from taskq_cli.timeparse import parse_rate

    if isinstance(rate, str):
        return parse_rate(rate)
    if isinstance(rate, tuple) and len(rate) == 2:
        return parse_rate(f"{rate[0]}/{rate[1]}")
    raise UsageError(f"rate must be N/DURATION (100/s, 600/1m), got {rate!r}")


def _unique_spec(
    unique: bool | Sequence[str],
    until: str | None,
    hold: float | str | None,
    debounce: float | str | None,
) -> UniqueSpec | None:
    """The decorator's uniqueness, checked when the handler is defined."""
    from taskq_cli.timeparse import parse_duration

    if not unique:
        if until is not None or hold is not None or debounce is not None:
            raise UsageError("unique_until, unique_for and debounce need unique=True or unique=(fields)")
        return None
    if isinstance(unique, str) or (unique is not True and not all(isinstance(f, str) for f in unique)):
        raise UsageError("unique must be True or a sequence of payload field names")
    if until not in (None, "finished", "started"):
        raise UsageError(f"unique_until must be 'finished' or 'started', got {until!r}")
    return UniqueSpec(
        fields=None if unique is True else tuple(unique),
        until=until,
        hold=None if hold is None else parse_duration(hold),
        debounce=None if debounce is None else parse_duration(debounce),
    )


def _merge(defaults: RetryDefaults, given: dict[str, Any]) -> RetryDefaults:
    from dataclasses import replace

    return replace(defaults, **given)
