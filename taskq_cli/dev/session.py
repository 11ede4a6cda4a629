"""The `taskq dev` session: start the Redis, then the services; supervise them until a signal (or
until every task is settled); stop the services first (workers hand their tasks back while Redis
still answers), Redis last."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskq_cli.config import DEFAULT_QUEUE, child_env
from taskq_cli.dev.processes import POLL, STOP_MARGIN, Service, StopSignals, stop_services
from taskq_cli.dev.servers import DevRedis, start_redis

if TYPE_CHECKING:
    from taskq_cli.producer import EnqueueRequest
    from taskq_cli.queue import TaskQueue


@dataclass(frozen=True)
class DevPlan:
    port: int | None = None
    embedded: bool = False
    queues: str | None = None  # default: every queue the app's tasks use
    concurrency: int | None = None
    grace: float = 10.0
    api_port: int | None = None  # serve the HTTP API on this port
    requests: Sequence[EnqueueRequest] = ()
    exit_when_done: bool = False


@dataclass
class DevHooks:
    """How the session talks to people (the CLI renders; this module never prints)."""

    say: Callable[[str], None]
    ready: Callable[[DevRedis, list[Service]], None] = lambda redis, services: None
    settled: Callable[[DevRedis], None] = lambda redis: None


def app_queues(tq: TaskQueue) -> str:
    """Every queue the app's tasks use, `default` first."""
    names = {d.queue for d in tq.registry.values()} or {DEFAULT_QUEUE}
    return ",".join(sorted(names, key=lambda q: (q != DEFAULT_QUEUE, q)))


def plan_services(tq: TaskQueue, plan: DevPlan) -> list[Service]:
    services = [Service("scheduler", ["scheduler"])]
    if tq.app_spec:
        worker = ["worker", "--app", tq.app_spec, "--queues", plan.queues or app_queues(tq)]
        worker += ["--grace", f"{plan.grace:g}s"]
        if plan.concurrency:
            worker += ["--concurrency", str(plan.concurrency)]
        services.insert(0, Service("worker", worker))
    if plan.api_port is not None:
        api = ["api", "--port", str(plan.api_port)] + (["--app", tq.app_spec] if tq.app_spec else [])
        services.append(Service("api", api))
    return services


def run_dev(tq: TaskQueue, plan: DevPlan, hooks: DevHooks) -> int:
    """Start Redis, then the services; run until a signal (or, with `exit_when_done`, until every
    task is done or dead); stop everything. 0 on a requested stop, 1 when something died or a
    second signal cut the stop short."""
    with StopSignals() as signals:
        redis = start_redis(plan.port, embedded=plan.embedded)
        services = plan_services(tq, plan)
        try:
            tq.configure(redis_url=redis.url)
            env = child_env(redis.url, tq.settings.namespace)
            for service in services:
                service.start(env)
            hooks.ready(redis, services)
            if plan.requests:
                tq.submit(plan.requests)
            code = _supervise(tq, plan, hooks, redis, services, signals)
        finally:
            tq.close()
            hooks.say("stopping" if not signals.forced() else "stopping at once")
            stop_services(services, plan.grace + STOP_MARGIN, signals.forced)
            redis.stop()
        return 1 if signals.forced() else code


def _supervise(
    tq: TaskQueue,
    plan: DevPlan,
    hooks: DevHooks,
    redis: DevRedis,
    services: Sequence[Service],
    signals: StopSignals,
) -> int:
    calm: tuple[int, ...] | None = None  # totals of the last settled look, to see it twice unchanged
    while not signals.event.wait(POLL * 2):
        for service in services:
            code = service.exited()
            if code is not None:
                hooks.say(f"{service.name} (pid {service.pid}) exited with code {code}; stopping everything")
                return 1
        if not redis.alive():
            hooks.say("Redis stopped; stopping everything")
            return 1
        if plan.exit_when_done:
            totals = _settled_totals(tq)
            if totals is not None and totals == calm:
                hooks.settled(redis)
                return 0
            calm = totals
    return 0


def _settled_totals(tq: TaskQueue) -> tuple[int, ...] | None:
    """(processed, dead) when no task is pending, scheduled or active anywhere; else None."""
    stats = tq.broker.queue_stats(tq.broker.known_queues())
    if any(s.pending or s.scheduled or s.waiting or s.active for s in stats):
        return None
    return (sum(s.processed for s in stats), sum(s.dead for s in stats))
