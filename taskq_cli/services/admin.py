"""Operating a namespace over its Broker: the dead-letter queue (selection by ids, queue, name and
age; bulk retry and purge in chunks), cancelling, listing, pausing and clearing queues. The service
modules (tasks, dlq, queues) call it for the CLI and the HTTP API; no Typer, Rich or FastAPI here."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskq_cli.errors import NotFound, UsageError
from taskq_cli.models import Options, Task
from taskq_cli.protocol import Broker, TaskRecord
from taskq_cli.protocol.keys import split_ref
from taskq_cli.protocol.reads import only_queue
from taskq_cli.services.limits import doc as limit_doc
from taskq_cli.services.limits import fields as limit_fields
from taskq_cli.services.shapes import BulkReport, QueueInfoDoc
from taskq_cli.states import FINISHED_STATES

if TYPE_CHECKING:
    from taskq_cli.config import RetryDefaults
    from taskq_cli.registry import TaskDef


@dataclass(frozen=True)
class PurgePlan:
    """What `dlq purge` deletes: ids by queue (so the count asked about is the count deleted)."""

    selection: list[tuple[str, list[str]]]
    missing: list[str]

    @property
    def count(self) -> int:
        return sum(len(ids) for _, ids in self.selection)


CHUNK = 1000  # ids per script call in bulk operations: Redis stays responsive
LISTABLE_STATES = ("pending", "scheduled", "waiting", "active", "dead", "done")

Progress = Callable[[int, int], None]  # (handled so far, total)


class Admin:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    # -- reading ----------------------------------------------------------------------------

    def queues(self, only: str | None = None) -> list[str]:
        names = self.broker.known_queues()
        if only is None:
            return names
        if only not in names:
            raise NotFound(f"queue {only!r} not found")
        return [only]

    def queue_infos(self) -> list[QueueInfoDoc]:
        names = self.broker.known_queues()
        paused = self.broker.paused(names)
        limits = self.broker.limits(names)
        return [
            QueueInfoDoc(
                name=s.queue,
                paused=paused[s.queue],
                pending=s.pending,
                scheduled=s.scheduled,
                waiting=s.waiting,
                active=s.active,
                dead=s.dead,
                **limit_fields(limit_doc(s.queue, limits[s.queue])),
            )
            for s in self.broker.queue_stats(names)
        ]

    def list_tasks(self, queue: str, state: str, limit: int, offset: int = 0) -> list[Task]:
        if state not in LISTABLE_STATES:
            raise UsageError(f"invalid state {state!r}: use {', '.join(LISTABLE_STATES)}")
        _check_paging(limit, offset)
        ids = self.broker.ids_in_state(queue, state, offset, limit)
        return self.with_after(_tasks(self.broker.records(queue, ids)))

    def records(self, queue: str, ids: Sequence[str], max_value: int | None = None) -> list[Task]:
        """The tasks of these ids that are still there (see Broker.records for `max_value`)."""
        return self.with_after(_tasks(self.broker.records(queue, ids, max_value)))

    def with_after(self, tasks: list[Task]) -> list[Task]:
        """Fill in the `after` ids of the tasks enqueued with dependencies (kept in a key of their
        own, not in the record): one round trip, none when no task has any."""
        wanted = [t for t in tasks if t.has_dependencies]
        for task, refs in zip(
            wanted, self.broker.dependencies.after([(t.queue, t.id) for t in wanted]), strict=True
        ):
            task.after = [split_ref(ref)[1] for ref in refs]
        return tasks

    def count(self, queue: str | None, states: Sequence[str]) -> int:
        """How many tasks a queue (None: every queue) holds in these states, in one round trip."""
        for state in states:
            if state not in LISTABLE_STATES:
                raise UsageError(f"invalid state {state!r}: use {', '.join(LISTABLE_STATES)}")
        return self.broker.count_in_states(self.queues(queue), states)

    def dead_total(self, queue: str | None) -> int:
        """How many dead tasks there are in a queue, or in every queue."""
        return self.count(queue, ["dead"])

    def find_tasks(
        self, queue: str | None, state: str | None, name: str | None, limit: int, offset: int = 0
    ) -> list[Task]:
        """Tasks across queues (or one) and states (or one), optionally of one task name: state by
        state (ALL_STATES' order), queue by queue (by name), each in the order it will be handled.
        Bounded: without a name whole segments are skipped by their counts; with one, records are
        read CHUNK by CHUNK only until offset + limit have matched."""
        if state is not None and state not in LISTABLE_STATES:
            raise UsageError(f"invalid state {state!r}: use {', '.join(LISTABLE_STATES)}")
        _check_paging(limit, offset)
        found: list[Task] = []
        skip = offset
        for s in [state] if state else LISTABLE_STATES:
            for q in sorted(self.queues(queue)):
                skip = self._segment(q, s, name, skip, limit, found)
                if len(found) >= limit:
                    return self.with_after(found)
        return self.with_after(found)

    def _segment(
        self, queue: str, state: str, name: str | None, skip: int, limit: int, found: list[Task]
    ) -> int:
        """Append to `found` (up to `limit`) the matching tasks of one queue and state after the first
        `skip` matches; returns the matches still to skip."""
        position = 0
        if name is None:
            size = self.broker.count_in_state(queue, state)
            if skip >= size:
                return skip - size
            position, skip = skip, 0
        while len(found) < limit:
            ids = self.broker.ids_in_state(queue, state, position, CHUNK if name else limit - len(found))
            if not ids:
                break
            position += len(ids)
            for task in _tasks(self.broker.records(queue, ids)):
                if name is not None and task.name != name:
                    continue
                if skip:
                    skip -= 1
                elif len(found) < limit:
                    found.append(task)
        return skip

    def dead_tasks(
        self, queue: str | None, name: str | None, limit: int, offset: int = 0, max_value: int | None = None
    ) -> list[Task]:
        """Dead tasks newest first, across queues, optionally of one task name. `max_value`: payloads
        and results longer than this (bytes) are left out, marked truncated (see Broker.records)."""
        _check_paging(limit, offset)
        wanted = offset + limit
        found: list[Task] = []
        for q in self.queues(queue):
            found += self._dead_of_queue(q, name, wanted, max_value)
        found.sort(key=lambda t: t.died_at or 0, reverse=True)
        return self.with_after(found[offset:wanted])

    def _dead_of_queue(self, queue: str, name: str | None, wanted: int, max_value: int | None) -> list[Task]:
        # without a name filter the first `wanted` ids are enough (the live dashboard asks every frame)
        ids = self.broker.dead_ids(queue) if name else self.broker.ids_in_state(queue, "dead", 0, wanted)
        out: list[Task] = []
        for start in range(0, len(ids), CHUNK):
            tasks = _tasks(self.broker.records(queue, ids[start : start + CHUNK], max_value))
            out += [t for t in tasks if name is None or t.name == name]
            if len(out) >= wanted:
                break
        return out[:wanted]

    def task_json(
        self,
        task_id: str,
        queue: str | None,
        handlers: Mapping[str, TaskDef],
        defaults: RetryDefaults,
    ) -> dict[str, Any]:
        """A task as `task show --json` prints it: `max_retries` and `timeout` are the values that
        apply to it (given at enqueue, else its handler's when `handlers` knows it, else the
        defaults), and `options_source` says which: "enqueue", "handler" or "default"."""
        record = self.broker.find_task(task_id, queue, prefix=True)
        if record is None:
            raise NotFound(f"task {task_id} not found")
        [task] = self.with_after([Task.from_record(record.meta, record.payload_json, record.result_json)])
        out = task.to_json()
        if out.get("state") == "waiting":
            out["blocked_by"] = self.broker.dependencies.blocked_by(out["queue"], out["id"])
        handler = handlers.get(str(record.meta.get("name", "")))
        try:
            options = Options.resolve(record.meta, handler.retry if handler else None, defaults)
        except (TypeError, ValueError):  # a record written by something else: show it as it is
            return out
        out["max_retries"], out["timeout"] = options.max_retries, options.timeout
        out["options_source"] = {
            k: _option_source(k, record.meta, handler) for k in ("max_retries", "timeout")
        }
        return out

    def dead_task(self, task_id: str, queue: str | None = None) -> Task:
        queues = self.queues(queue)
        holders = self.broker.queues_holding_dead([task_id], queues)
        if task_id not in holders:
            full_id, found = self.broker.by_prefix(task_id, queues, dead=True)
            if not found:
                raise NotFound(f"dead task {task_id} not found")
            task_id, holders = full_id, {full_id: only_queue(full_id, found)}
        [record] = self.broker.records(holders[task_id], [task_id])
        if record is None:
            raise NotFound(f"dead task {task_id} not found")
        return self.with_after([Task.from_record(record.meta, record.payload_json, record.result_json)])[0]

    # -- the dead-letter queue --------------------------------------------------------------

    def dlq_retry(
        self,
        ids: Sequence[str] | None,
        queue: str | None = None,
        name: str | None = None,
        progress: Progress | None = None,
        plan: PurgePlan | None = None,
    ) -> BulkReport:
        """Dead tasks (these ids, or all matching the filters; or exactly those of a `plan`) back to
        pending, attempts reset."""
        report = BulkReport(missing=list(plan.missing) if plan else [])
        selection = plan.selection if plan else self._dead_selection(ids, queue, name, report)
        for q, chunk in _chunks(selection, progress):
            for task_id, status in zip(chunk, self.broker.dlq_retry(q, chunk), strict=True):
                bucket = {"ok": report.handled, "missing": report.missing}.get(status, report.refused)
                bucket.append(task_id)
        return report

    def dlq_purge(
        self,
        ids: Sequence[str] | None,
        queue: str | None = None,
        name: str | None = None,
        older_than: float | None = None,
        progress: Progress | None = None,
        plan: PurgePlan | None = None,
    ) -> BulkReport:
        """Delete dead tasks for good (these ids, or all matching the filters; or exactly those of a
        `plan`, counted before asking)."""
        plan = plan or self.dlq_purge_plan(ids, queue, name, older_than)
        report = BulkReport(missing=list(plan.missing))
        for q, chunk in _chunks(plan.selection, progress):
            for task_id, ok in zip(chunk, self.broker.dlq_purge(q, chunk), strict=True):
                (report.handled if ok else report.missing).append(task_id)
        return report

    def dlq_purge_plan(
        self,
        ids: Sequence[str] | None,
        queue: str | None = None,
        name: str | None = None,
        older_than: float | None = None,
    ) -> PurgePlan:
        """The dead tasks a purge would delete (and the given ids not in the dead-letter queue)."""
        report = BulkReport()
        selection = self._dead_selection(ids, queue, name, report, older_than)
        return PurgePlan(selection, report.missing)

    def clear_count(self, queue: str) -> int:
        """How many tasks `clear` would delete: the queue's pending, scheduled, waiting, dead and done
        ones."""
        return self.count(queue, ["pending", "scheduled", "waiting", "dead", "done"])

    def _dead_selection(
        self,
        ids: Sequence[str] | None,
        queue: str | None,
        name: str | None,
        report: BulkReport,
        older_than: float | None = None,
    ) -> list[tuple[str, list[str]]]:
        queues = self.queues(queue) if queue or ids is None else self.broker.known_queues()
        if ids is not None:
            holders = self.broker.queues_holding_dead(list(dict.fromkeys(ids)), queues)
            for given in [i for i in dict.fromkeys(ids) if i not in holders]:
                task_id, found = self.broker.by_prefix(given, queues, dead=True)
                if found:
                    holders[task_id] = only_queue(task_id, found)
                else:
                    report.missing.append(given)
            by_queue: dict[str, list[str]] = {}
            for task_id, q in holders.items():
                by_queue.setdefault(q, []).append(task_id)
            return list(by_queue.items())
        cutoff = None
        if older_than is not None:
            cutoff = self.broker.redis_time_ms() - int(older_than * 1000)
        selection = []
        for q in queues:
            chosen = self.broker.dead_ids(q, cutoff)
            if name is not None:
                chosen = self._named(q, chosen, name)
            selection.append((q, chosen))
        return selection

    def _named(self, queue: str, ids: list[str], name: str) -> list[str]:
        kept: list[str] = []
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            kept += [
                r.meta["id"]
                for r in self.broker.records(queue, chunk)
                if r is not None and r.meta.get("name") == name
            ]
        return kept

    # -- tasks and queues -------------------------------------------------------------------

    def cancel(self, task_id: str, queue: str | None = None) -> str:
        """Remove an unfinished task; returns the state it was in."""
        record = self.broker.find_task(task_id, queue, prefix=True)
        if record is None:
            raise NotFound(f"task {task_id} not found")
        task_id = str(record.meta["id"])
        state = self.broker.cancel(str(record.meta["queue"]), task_id)
        if state == "":
            raise NotFound(f"task {task_id} not found")
        if state in FINISHED_STATES:
            raise UsageError(f"task {task_id} is already {state}; nothing to cancel")
        return state

    def run_now(self, task_id: str, queue: str | None = None) -> str:
        """Move a scheduled task (delayed or waiting for its retry) to pending now; UsageError for a
        task in any other state."""
        record = self.broker.find_task(task_id, queue, prefix=True)
        if record is None:
            raise NotFound(f"task {task_id} not found")
        task_id = str(record.meta["id"])  # a prefix given: the id it stands for
        was = self.broker.run_now(str(record.meta["queue"]), task_id)
        if was == "":
            raise NotFound(f"task {task_id} not found")
        if was != "scheduled":
            why = {"pending": "already waiting for a worker", "active": "running now"}.get(was, "finished")
            raise UsageError(
                f"task {task_id} is {was} ({why}); only a scheduled or retry-waiting task can be run now"
            )
        return was

    def set_paused(self, queue: str, paused: bool) -> bool:
        """Pause or resume a queue; False when the queue has never been used. Pausing one anyway
        pauses it ahead of time (it is listed from then on, paused); resuming one changes nothing."""
        known = queue in self.broker.known_queues()
        if known or paused:
            self.broker.set_paused(queue, paused)
        return known

    def clear(self, queue: str) -> int:
        self.queues(queue)
        return self.broker.clear(queue)


def _option_source(name: str, meta: Mapping[str, Any], handler: TaskDef | None) -> str:
    """Where a task's option comes from. A producer or worker that knew the handler records its
    retry policy with the task (with backoff_base, which enqueue options never set): a recorded
    max_retries is the handler's unless the handler, when known, says otherwise."""
    if name not in meta:
        return "handler" if handler is not None and name in handler.explicit else "default"
    recorded = name == "max_retries" and "backoff_base" in meta
    if recorded and (handler is None or meta[name] == handler.retry.max_retries):
        return "handler"
    return "enqueue"


def _tasks(records: Iterable[TaskRecord | None]) -> list[Task]:
    return [
        Task.from_record(r.meta, r.payload_json, r.result_json, r.truncated) for r in records if r is not None
    ]


def _chunks(
    selection: list[tuple[str, list[str]]], progress: Progress | None
) -> Iterable[tuple[str, list[str]]]:
    """(queue, ids) in chunks of CHUNK, reporting progress over the whole selection."""
    total = sum(len(ids) for _, ids in selection)
    handled = 0
    for queue, ids in selection:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            yield queue, chunk
            handled += len(chunk)
            if progress is not None:
                progress(handled, total)


def _check_paging(limit: int, offset: int) -> None:
    if limit < 1 or offset < 0:
        raise UsageError("--limit must be at least 1 and --offset at least 0")
