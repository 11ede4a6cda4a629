"""Every Redis key taskq uses, and nothing else spells them.

Per queue (all share the hash tag `{queue}`, so one queue lives in one Redis Cluster slot and
every script touches one slot):

    <ns>:{<q>}:tasks      hash    id -> task metadata (JSON: state, attempts, options, times, error)
    <ns>:{<q>}:payloads   hash    id -> payload (JSON text, never parsed by Lua)
    <ns>:{<q>}:results    hash    id -> handler result (JSON text) of done tasks
    <ns>:{<q>}:pending    list    ids waiting; producers LPUSH, workers RPOP (RPUSH = head of line)
    <ns>:{<q>}:active     zset    id -> lease deadline (ms)
    <ns>:{<q>}:leases     hash    id -> lease token of the current attempt
    <ns>:{<q>}:scheduled  zset    id -> due time (ms): delayed tasks and retries
    <ns>:{<q>}:dead       zset    id -> time of death (ms), trimmed by count and age
    <ns>:{<q>}:done       zset    id -> expiry time (ms) of a done record
    <ns>:{<q>}:counters   hash    processed, failed
    <ns>:{<q>}:wake       list    at most one token: wakes one idle worker blocked on BLPOP
    <ns>:{<q>}:paused     string  present while the queue is paused: workers take nothing from it
    <ns>:{<q>}:cron       hash    schedule name -> "<tick ms>:<task id>" of the last tick fired into
                                  this queue (the claim that makes each tick fire once)
    <ns>:{<q>}:waiting:<id>  string  present while a caller waits for the task's outcome (result());
                                  expires WAITING_TTL_MS after the last waiter refreshed it
    <ns>:{<q>}:outcome:<id>  list    one marker, pushed when a waited-for task ends (done, dead or
                                  gone); waiters block on it; expires OUTCOME_TTL_MS after the push
                                  (scripts spell these two from KEYS[1], see _lib.lua)
    <ns>:{<q>}:unique     hash    unique key -> id of the task holding it (released by the script
                                  that ends the hold: ack, death, cancel, clear, fetch for 'started')
    <ns>:{<q>}:limits     hash    concurrency, rate, window (ms): the queue's limits (queue limit)
    <ns>:{<q>}:starts     zset    lease token -> start time (ms): the rate limit's sliding log
    <ns>:{<q>}:blocked    zset    id -> enqueue time (ms) of each `waiting` task (after=)
    <ns>:{<q>}:outbox     hash    id -> "<outcome>|<ms>" of a finished task whose dependents are not
                                  told yet (written by the script that ends it; drained by
                                  protocol/dependencies.py from the worker and every maintenance pass)
    <ns>:{<q>}:unlinked   zset    id -> time (ms) of a waiting task whose links to its dependencies
                                  are not confirmed yet (maintenance links again past LINK_GRACE_MS)
    <ns>:{<q>}:deps:<id>        set  "<queue> <id>" of each dependency not done yet (one SREM per
                                     release, so a chord of n costs O(1) per dependency)
    <ns>:{<q>}:dependents:<id>  set  "<queue> <id>" of each task waiting on this one
    <ns>:{<q>}:after:<id>       list "<queue> <id>" of each of its dependencies, in order (its record
                                     holds only their number, `deps`: it stays small for a chord)
    <ns>:{<q>}:unlink:<id>      set  "<queue> <id>" of each dependency a cancelled or cleared waiting
                                     task is still linked to (with its outbox entry: the drain takes
                                     it out of their `dependents`, then deletes this set)

Per namespace:

    <ns>:queues           set     every queue name ever enqueued to
    <ns>:cron             hash    schedule name -> schedule definition (JSON)
    <ns>:workers          zset    worker id -> last heartbeat (ms)
    <ns>:worker:<id>      string  worker description (JSON), expires when the worker stops beating
    <ns>:limiter:{<key>}:starts   zset  pass id -> time (ms): a per-key limiter's rate log
    <ns>:limiter:{<key>}:permits  zset  pass id -> expiry (ms): its concurrency permits
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

# The order in which every Lua script receives a queue's keys (see lua/_lib.lua).
QUEUE_KEY_ORDER = (
    "tasks",
    "payloads",
    "results",
    "pending",
    "active",
    "leases",
    "scheduled",
    "dead",
    "done",
    "counters",
    "wake",
    "paused",
    "cron",
    "unique",
    "limits",
    "starts",
    "blocked",
    "outbox",
    "unlinked",
)

# Per-task keys of result waiters (see protocol/outcomes.py). A waiter refreshes `waiting` at every
# block of at most WAIT_BLOCK_S seconds, so the key outlives each block; the marker lives long enough
# for a waiter between its record check and its block to find it.
WAITING_TTL_MS = 15_000
OUTCOME_TTL_MS = 15_000
# A waiting task's links are made by its producer right after the enqueue; one still unconfirmed this
# long after (the producer died between the two steps) is linked again by a maintenance pass.
LINK_GRACE_MS = 2_000


def dep_ref(queue: str, task_id: str) -> str:
    """A task named across queues: queue names hold no space, so the first one splits it."""
    return f"{queue} {task_id}"


def split_ref(ref: str) -> tuple[str, str]:
    queue, _, task_id = ref.partition(" ")
    return queue, task_id


@dataclass(frozen=True)
class QueueKeys:
    namespace: str
    queue: str

    def key(self, part: str) -> str:
        return f"{self.namespace}:{{{self.queue}}}:{part}"

    @property
    def tasks(self) -> str:
        return self.key("tasks")

    @property
    def payloads(self) -> str:
        return self.key("payloads")

    @property
    def results(self) -> str:
        return self.key("results")

    @property
    def pending(self) -> str:
        return self.key("pending")

    @property
    def active(self) -> str:
        return self.key("active")

    @property
    def scheduled(self) -> str:
        return self.key("scheduled")

    @property
    def dead(self) -> str:
        return self.key("dead")

    @property
    def counters(self) -> str:
        return self.key("counters")

    @property
    def wake(self) -> str:
        return self.key("wake")

    @property
    def paused(self) -> str:
        return self.key("paused")

    @property
    def done(self) -> str:
        return self.key("done")

    @property
    def cron(self) -> str:
        return self.key("cron")

    def waiting(self, task_id: str) -> str:
        return self.key(f"waiting:{task_id}")

    def outcome(self, task_id: str) -> str:
        return self.key(f"outcome:{task_id}")

    @property
    def unique(self) -> str:
        return self.key("unique")

    @property
    def limits(self) -> str:
        return self.key("limits")

    @property
    def starts(self) -> str:
        return self.key("starts")

    @property
    def blocked(self) -> str:
        return self.key("blocked")

    @property
    def outbox(self) -> str:
        return self.key("outbox")

    @property
    def unlinked(self) -> str:
        return self.key("unlinked")

    def deps(self, task_id: str) -> str:
        return self.key(f"deps:{task_id}")

    def dependents(self, task_id: str) -> str:
        return self.key(f"dependents:{task_id}")

    def after(self, task_id: str) -> str:
        return self.key(f"after:{task_id}")

    def unlink(self, task_id: str) -> str:
        return self.key(f"unlink:{task_id}")

    def script_keys(self) -> list[str]:
        """All of the queue's keys in the order the scripts expect them (built once: every script
        call of the hot paths passes them)."""
        return self._script_keys

    @functools.cached_property
    def _script_keys(self) -> list[str]:
        return [self.key(part) for part in QUEUE_KEY_ORDER]


@dataclass(frozen=True)
class NamespaceKeys:
    namespace: str

    @property
    def queues(self) -> str:
        return f"{self.namespace}:queues"

    @property
    def cron(self) -> str:
        return f"{self.namespace}:cron"

    @property
    def workers(self) -> str:
        return f"{self.namespace}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.namespace}:worker:{worker_id}"

    def limiter_starts(self, key: str) -> str:
        """A per-key limiter's rate log; with its permits in one slot by their hash tag."""
        return f"{self.namespace}:limiter:{{{_tag(key)}}}:starts"

    def limiter_permits(self, key: str) -> str:
        return f"{self.namespace}:limiter:{{{_tag(key)}}}:permits"

    def pattern(self) -> str:
        """Every key of the namespace (for tests and `queue clear`-style tooling)."""
        return f"{self.namespace}:*"


def _tag(key: str) -> str:
    """A limiter key as a hash tag: a brace in it must not end the tag."""
    return key.replace("{", "(").replace("}", ")")
