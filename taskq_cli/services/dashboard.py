"""What the web dashboard (`/ui/` on `taskq api`) shows and does beyond what the CLI has: the
overview's rows, a queue's tasks with their total, one task with its lease, the dead-letter queue
filtered by queue, name, error text and age (keyset pages; a filter that must read records reads a
bounded number of them per request), bulk plans over those filters, and the workers with the lease
deadline of what each runs. Plain data (dicts of JSON values); the api layer serves it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskq_cli.errors import UsageError
from taskq_cli.services import stats as stats_service
from taskq_cli.services import tasks as task_service
from taskq_cli.services.admin import LISTABLE_STATES, Admin, PurgePlan
from taskq_cli.services.dlq import MAX_LISTED_VALUE, listed
from taskq_cli.services.limits import doc as limit_doc
from taskq_cli.services.limits import fields as limit_fields
from taskq_cli.services.shapes import BulkReport, Limits, QueueCounts
from taskq_cli.states import ALL_STATES
from taskq_cli.timeparse import iso_ms

if TYPE_CHECKING:
    from taskq_cli.queue import TaskQueue

SCAN_CHUNK = 500  # dead records read per round while a name or text filter looks for matches
PAGE_SCAN_CAP = 5000  # dead records one page request reads at most (the page says where it stopped)
PLAN_SCAN_CAP = 100_000  # dead records a bulk plan reads at most (dead_max's default)
PLAN_CAP = 100_000  # tasks one bulk action handles at most (the plan says when more match)

Cursor = tuple[int, str, str]  # (died_at ms, queue, id) of the last dead task shown


def states() -> list[str]:
    """The states a queue's tasks can be listed in, in the order taskq knows them (a state a newer
    taskq adds, such as `waiting`, appears once the listing knows it)."""
    return [str(s) for s in ALL_STATES if str(s) in LISTABLE_STATES]


def overview(tq: TaskQueue) -> dict[str, Any]:
    """Every queue's counts by state, processed and failed counters, oldest pending age, paused
    flag and limits (the fields of `stats --json`), and the live workers' count: one script call
    per queue in one pipeline (Broker.queue_glances), whatever the number of queues."""
    broker = tq.broker
    now_ms = broker.redis_time_ms()
    rows = []
    for s, paused, limits in broker.queue_glances(broker.known_queues()):
        age = None if s.oldest_pending_ms is None else max(now_ms - s.oldest_pending_ms, 0) / 1000
        counts = {f: getattr(s, f) for f in QueueCounts.model_fields if hasattr(s, f)}
        limited = limit_fields(limit_doc(s.queue, limits))
        row = QueueCounts(**counts, oldest_pending_age=age, paused=paused, **limited)
        rows.append({"name": s.queue, **row.to_json()})
    return {
        "time": iso_ms(now_ms),
        "states": [str(s) for s in ALL_STATES if str(s) in QueueCounts.model_fields],
        "queues": rows,
        "workers": len(stats_service.workers(tq)),
        "limits": Limits(dead_max=tq.settings.dead_max, dead_ttl=tq.settings.dead_ttl).to_json(),
    }


def queue_tasks(
    tq: TaskQueue, queue: str, state: str, name: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """One page of a queue's tasks in one state (optionally of one task name) and the state's total
    (without a name: counting by name would read every record)."""
    Admin(tq.broker).queues(queue)  # NotFound for a queue never used
    items = task_service.list_tasks(tq, queue, state, limit, offset, name)
    total = None if name else task_service.count_tasks(tq, queue, state)
    return {"items": [listed_task(t.to_json()) for t in items], "total": total}


def listed_task(doc: dict[str, Any]) -> dict[str, Any]:
    """A row of a listing: no payload, result or traceback (the task's own page has them)."""
    error = doc.get("last_error")
    row = {k: v for k, v in doc.items() if k not in ("payload", "result", "last_error")}
    if error:
        row["last_error"] = {"type": error.get("type"), "message": str(error.get("message", ""))[:300]}
    return row


def task(tq: TaskQueue, task_id: str, queue: str | None) -> dict[str, Any]:
    """Every field of a task (`task show --json`), with its lease deadline while it is active."""
    found = task_service.show(tq, task_id, queue).to_json()
    if found.get("state") == "active":
        [deadline] = tq.broker.lease_deadlines([(found["queue"], found["id"])])
        found["lease_deadline"] = iso_ms(deadline)
    return found


def workers(tq: TaskQueue) -> list[dict[str, Any]]:
    """The live workers; each task one runs carries the lease deadline its worker keeps renewing
    (null once the task is no longer active: it just finished, or its lease was recovered)."""
    docs = [w.to_json() for w in stats_service.workers(tq)]
    held = [(a["queue"], a["id"]) for w in docs for a in w["active"]]
    deadlines = iter(tq.broker.lease_deadlines(held))
    for w in docs:
        for running in w["active"]:
            running["lease_deadline"] = iso_ms(next(deadlines))
    return docs


def schedules(tq: TaskQueue) -> list[dict[str, Any]]:
    from taskq_cli.services.cron import describe

    return [s.to_json() for s in describe(tq)]


def set_schedule_paused(tq: TaskQueue, name: str, paused: bool) -> dict[str, Any]:
    changed = tq.set_schedule_paused(name, paused)
    return {"name": changed.name, "paused": changed.paused}


# -- the dead-letter queue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadFilter:
    """Which dead tasks: of a queue, of a task name, whose error (type, message or traceback)
    contains a text (case-insensitive), dead at least `min_age` and at most `max_age` seconds."""

    queue: str | None = None
    name: str | None = None
    text: str | None = None
    min_age: float | None = None
    max_age: float | None = None

    @property
    def reads_records(self) -> bool:
        return bool(self.name or self.text)

    def may_match(self, raw: str) -> bool:
        """A cheap test on a record's JSON text before it is decoded: False only when a searched
        text that JSON writes as itself (printable ASCII but quotes, backslashes and slashes) is
        not in it. Most records of a rare error are turned down here, never decoded."""
        folded = raw.casefold()
        return all(
            needle.casefold() in folded for needle in (self.name, self.text) if needle and _json_plain(needle)
        )

    def matches(self, meta: dict[str, Any] | None) -> bool:
        if meta is None:
            return False
        if self.name and meta.get("name") != self.name:
            return False
        if not self.text:
            return True
        error = meta.get("last_error")
        parts = [str(meta.get("raw") or "")]
        if isinstance(error, dict):
            parts += [str(error.get(k, "")) for k in ("type", "message", "traceback")]
        return self.text.casefold() in "\n".join(parts).casefold()


def _json_plain(text: str) -> bool:
    return all(" " <= c <= "~" and c not in '"\\/' for c in text)


@dataclass(frozen=True)
class _Window:
    queues: list[str]
    newest_ms: int | None
    oldest_ms: int | None


def _window(tq: TaskQueue, chosen: DeadFilter) -> _Window:
    queues = Admin(tq.broker).queues(chosen.queue)
    if chosen.min_age is None and chosen.max_age is None:
        return _Window(queues, None, None)
    if chosen.min_age is not None and chosen.max_age is not None and chosen.min_age > chosen.max_age:
        raise UsageError("the minimum age is larger than the maximum age")
    now = tq.broker.redis_time_ms()
    newest = None if chosen.min_age is None else now - int(chosen.min_age * 1000)
    oldest = None if chosen.max_age is None else now - int(chosen.max_age * 1000)
    return _Window(queues, newest, oldest)


def dead_page(tq: TaskQueue, chosen: DeadFilter, cursor: Cursor | None, limit: int) -> dict[str, Any]:
    """One page of dead tasks newest first, after `cursor`. Without a name or text filter the total
    is exact (ZCOUNT); with one, at most PAGE_SCAN_CAP records are read: `scanned` says how many,
    and `next` continues from where the reading stopped (`capped`: it stopped before a full page)."""
    window = _window(tq, chosen)
    if chosen.reads_records:
        keys, scanned, last, capped = _matching(tq, chosen, window, cursor, limit + 1, PAGE_SCAN_CAP)
        total = None
    else:
        keys = tq.broker.dead_newest(window.queues, cursor, window.newest_ms, window.oldest_ms, limit + 1)
        scanned, last, capped = len(keys), None, False
        total = tq.broker.dead_count(window.queues, window.newest_ms, window.oldest_ms)
    more = len(keys) > limit
    keys = keys[:limit]
    following = keys[-1] if more else (last if capped else None)
    return {
        "items": _dead_docs(tq, keys),
        "total": total,
        "scanned": scanned,
        "capped": capped,
        "next": None if following is None else list(following),
    }


def _matching(
    tq: TaskQueue, chosen: DeadFilter, window: _Window, cursor: Cursor | None, wanted: int, cap: int
) -> tuple[list[Cursor], int, Cursor | None, bool]:
    """Dead tasks matching a name or text filter, newest first after `cursor`, reading at most `cap`
    records: (matches, records read, the last one read, whether the cap stopped the reading)."""
    found: list[Cursor] = []
    scanned = 0
    position = cursor
    chunk = SCAN_CHUNK  # doubled at each round: few restarts of the merge over many queues
    while len(found) < wanted:
        if scanned >= cap:  # at the bound: capped only if there is more to read
            return found, scanned, position, _more_after(tq, window, position)
        step = min(chunk, cap - scanned)
        chunk *= 2
        batch = tq.broker.dead_newest(window.queues, position, window.newest_ms, window.oldest_ms, step)
        metas = tq.broker.metas([(q, i) for _, q, i in batch], chosen.may_match)
        for key, meta in zip(batch, metas, strict=True):
            scanned += 1
            position = key
            if chosen.matches(meta):
                found.append(key)
                if len(found) >= wanted:
                    break
        if len(batch) < step:
            break
    return found, scanned, position, False


def _more_after(tq: TaskQueue, window: _Window, position: Cursor | None) -> bool:
    return bool(tq.broker.dead_newest(window.queues, position, window.newest_ms, window.oldest_ms, 1))


def _dead_docs(tq: TaskQueue, keys: Sequence[Cursor]) -> list[dict[str, Any]]:
    """The dead tasks' bounded listings (payloads over 4 KiB not read), in the keys' order."""
    by_queue: dict[str, list[str]] = {}
    for _, q, task_id in keys:
        by_queue.setdefault(q, []).append(task_id)
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for q, ids in by_queue.items():
        for task in Admin(tq.broker).records(q, ids, MAX_LISTED_VALUE):
            docs[(task.queue, task.id)] = listed_task(listed(task).to_json())
    return [docs[(q, i)] for _, q, i in keys if (q, i) in docs]


@dataclass(frozen=True)
class Plan:
    """The dead tasks a bulk action will handle, chosen before the confirmation that names their
    count: the action handles exactly these (none that died since)."""

    selection: list[tuple[str, list[str]]]
    capped: bool  # more matched than PLAN_CAP (or than PLAN_SCAN_CAP records could show)

    @property
    def count(self) -> int:
        return sum(len(ids) for _, ids in self.selection)


def plan_matching(tq: TaskQueue, chosen: DeadFilter) -> Plan:
    """Every dead task matching the filter, newest first, up to PLAN_CAP."""
    window = _window(tq, chosen)
    if chosen.reads_records:
        keys, _, _, capped = _matching(tq, chosen, window, None, PLAN_CAP + 1, PLAN_SCAN_CAP)
    else:
        keys, capped = [], False
        while len(keys) <= PLAN_CAP:
            batch = tq.broker.dead_newest(
                window.queues, keys[-1] if keys else None, window.newest_ms, window.oldest_ms, 1000
            )
            keys += batch
            if len(batch) < 1000:
                break
    capped = capped or len(keys) > PLAN_CAP
    return Plan(_by_queue(keys[:PLAN_CAP]), capped)


def plan_chosen(items: Sequence[tuple[str, str]]) -> Plan:
    """The dead tasks picked one by one: (queue, id) pairs."""
    return Plan(_by_queue([(0, q, i) for q, i in dict.fromkeys(items)]), False)


def _by_queue(keys: Sequence[Cursor]) -> list[tuple[str, list[str]]]:
    grouped: dict[str, list[str]] = {}
    for _, q, task_id in keys:
        grouped.setdefault(q, []).append(task_id)
    return list(grouped.items())


def retry_plan(tq: TaskQueue, plan: Plan) -> BulkReport:
    """Exactly the plan's dead tasks back to pending, attempts reset."""
    return Admin(tq.broker).dlq_retry(None, plan=PurgePlan(plan.selection, []))


def purge_plan(tq: TaskQueue, plan: Plan) -> BulkReport:
    """Exactly the plan's dead tasks deleted for good."""
    return Admin(tq.broker).dlq_purge(None, plan=PurgePlan(plan.selection, []))
