"""`taskq dev`: a throwaway Redis and the processes that use it, started and stopped as one.

The Redis is a `redis-server` from PATH (loopback only, nothing persisted) or, when there is none,
the embedded server fakeredis provides (the Redis protocol over TCP, Lua included), run in this
process. Every process started here gets a process group of its own, so the terminal's Ctrl-C reaches
only `taskq dev`, which stops them in order: workers first (they hand their tasks back while Redis
still answers), Redis last. Each one also dies with `taskq dev` should that be SIGKILLed: a tiny
bootstrap sets PR_SET_PDEATHSIG and then execs the real program, so nothing outlives it.

The package: `servers` (the Redis), `processes` (spawning, the services, stop signals) and
`session` (run_dev: start, supervise, stop).
"""

from taskq_cli.dev.processes import POLL, STOP_MARGIN, Service, StopSignals, kill_group, spawn, stop_services
from taskq_cli.dev.servers import (
    DEFAULT_PORT,
    LOOPBACK,
    READY_TIMEOUT,
    DevRedis,
    EmbeddedRedis,
    RedisServer,
    answers_ping,
    free_port,
    start_redis,
)
from taskq_cli.dev.session import DevHooks, DevPlan, app_queues, plan_services, run_dev

__all__ = [
    "DEFAULT_PORT",
    "LOOPBACK",
    "POLL",
    "READY_TIMEOUT",
    "STOP_MARGIN",
    "DevHooks",
    "DevPlan",
    "DevRedis",
    "EmbeddedRedis",
    "RedisServer",
    "Service",
    "StopSignals",
    "answers_ping",
    "app_queues",
    "free_port",
    "kill_group",
    "plan_services",
    "run_dev",
    "spawn",
    "start_redis",
    "stop_services",
]
