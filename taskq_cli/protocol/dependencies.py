"""Dependencies between tasks (`after=`): resolving them at enqueue, linking a waiting task to them,
and the hand-off that tells dependents how their dependencies ended.

A dependency may live in another queue, so in another Cluster slot: no single script can end it and
release its dependents. Every step is instead one atomic, idempotent script in one queue:

1. enqueue.lua writes the task `waiting`, with the set of what it waits for (`deps:<id>`), and notes
   it in `unlinked`;
2. depend_link.lua (in each dependency's queue) adds it to the dependency's `dependents:<id>`, or
   answers that the dependency already ended;
3. depend_release.lua (in the task's queue, mode 'settle') applies those answers and takes the task
   out of `unlinked`. A producer that dies before this step leaves the task in `unlinked`, and a
   maintenance pass links it again (`recheck`) past LINK_GRACE_MS.

When a task with dependents ends (ack, death, cancel, clear), the script that ends it writes its
outcome to its queue's `outbox` (hand_off in _lib.lua). `drain` reads the outbox (depend_read),
tells the dependents in their queues (depend_release, mode 'drain'), then removes the entries
(depend_handed). A waiting task cancelled or cleared writes an entry too, with the dependencies it
was still linked to (`unlink:<id>`): the drain takes it out of their `dependents` (depend_unlink), so
those sets stay bounded and a dependency's later hand-off never names it. The worker that ended the
task drains at once; every maintenance pass drains every queue, so a worker killed between its ack
and the hand-off delays the release, never loses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from taskq_cli.errors import AmbiguousId, UsageError
from taskq_cli.protocol.keys import LINK_GRACE_MS, dep_ref, split_ref
from taskq_cli.protocol.reads import Reads
from taskq_cli.protocol.scripts import ScriptArg, execute_with_scripts, load_scripts

DRAIN_BATCH = 500  # outbox entries read per queue and round trip
RECHECK_BATCH = 100  # unlinked waiting tasks linked again per queue and pass
MAX_ROUNDS = 1000  # a drain stops after this many rounds (the next maintenance pass goes on)


@dataclass(frozen=True)
class Link:
    """A waiting task (`queue`, `id`) and the refs ("<queue> <id>") of its dependencies."""

    queue: str
    id: str
    refs: tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    """One outbox entry: a finished task, its outcome value as read, its dependents' refs, and (a
    cancelled waiting task) the refs of the dependencies it is to be unlinked from."""

    queue: str
    id: str
    value: str
    dependents: tuple[str, ...]
    unlinks: tuple[str, ...] = ()

    @property
    def outcome(self) -> str:
        return self.value.partition("|")[0]

    @property
    def task_id(self) -> str:
        """The id of the task that ended: `id` is the outbox field, "<id>\n<n>" for an entry set
        aside when a new task took its custom id (set_aside_hand_off in _lib.lua)."""
        return self.id.partition("\n")[0]


class Dependencies:
    """The dependency steps of one namespace, over the Broker's client (see the module's doc)."""

    def __init__(self, reads: Reads) -> None:
        self.reads = reads
        self._scripts = load_scripts()

    def _now(self) -> ScriptArg:
        now = self.reads.clock()
        return "" if now is None else now

    def _queue(self, pipe: Any, name: str, queue: str, args: Sequence[ScriptArg]) -> None:
        self._scripts[name].queue(pipe, self.reads.keys(queue).script_keys(), args)

    def _pipe(self) -> Any:
        return self.reads.client.pipeline(transaction=False)

    # -- at enqueue ----------------------------------------------------------------------------

    def resolve(self, after: Sequence[Sequence[str]], known: dict[str, str]) -> list[tuple[str, ...]]:
        """For each task's `after` ids, their refs. `known`: ids written in the same batch (id ->
        queue), named without a lookup. Any other id must be a task that exists and is not dead, found
        in exactly one queue: else UsageError (AmbiguousId), nothing written. One round trip."""
        wanted = sorted({i for ids in after for i in ids if i not in known})
        where = self._lookup(wanted) if wanted else {}
        return [tuple(dict.fromkeys(dep_ref(known.get(i) or where[i], i) for i in ids)) for ids in after]

    def _lookup(self, ids: list[str]) -> dict[str, str]:
        found, dead = self._find(ids)
        for task_id in ids:
            queues_found = found.get(task_id)
            if not queues_found:
                raise UsageError(
                    f"after: no task {task_id} (unknown, or finished and expired); nothing written"
                )
            if len(queues_found) > 1:
                raise AmbiguousId(task_id, queues_found)
            if task_id in dead:
                raise UsageError(f"after: task {task_id} is dead; nothing written")
        return {task_id: found[task_id][0] for task_id in ids}

    def _find(self, ids: list[str]) -> tuple[dict[str, list[str]], set[str]]:
        """The queues holding each id, and the ids whose task there is dead."""
        queues = self.reads.known_queues()
        pipe = self._pipe()
        for queue in queues:
            for task_id in ids:
                pipe.hget(self.reads.keys(queue).tasks, task_id)
        replies = iter(pipe.execute())
        found: dict[str, list[str]] = {}
        dead: set[str] = set()
        for queue in queues:
            for task_id in ids:
                raw = next(replies)
                if raw is not None:
                    found.setdefault(task_id, []).append(queue)
                    if _state(raw) == "dead":
                        dead.add(task_id)
        return found, dead

    def link(self, links: Sequence[Link]) -> dict[tuple[str, str], str]:
        """Link waiting tasks to their dependencies and settle what already ended (steps 2 and 3);
        returns the tasks whose state changed ((queue, id) -> 'released' or 'dead'). Two round trips,
        then a drain when a task it buried has dependents of its own."""
        if not links:
            return {}
        answers = self._link_answers(links)
        groups: dict[str, list[ScriptArg]] = {}
        for item in links:
            args = groups.setdefault(item.queue, [])
            if not item.refs:
                args += [item.id, "", "linked"]
            for ref in item.refs:
                args += [item.id, ref, answers[(ref, item.queue, item.id)]]
        changed, fired = self._tell(groups, "settle")
        if fired:
            self.drain(fired)
        return changed

    def _link_answers(self, links: Sequence[Link]) -> dict[tuple[str, str, str], str]:
        by_parent: dict[str, list[tuple[str, str, str]]] = {}
        for item in links:
            for ref in item.refs:
                parent_queue, _ = split_ref(ref)
                by_parent.setdefault(parent_queue, []).append((ref, item.queue, item.id))
        pipe = self._pipe()
        for parent_queue, wanted in by_parent.items():
            args: list[ScriptArg] = []
            for ref, queue, task_id in wanted:
                args += [split_ref(ref)[1], dep_ref(queue, task_id)]
            self._queue(pipe, "depend_link", parent_queue, args)
        answers: dict[tuple[str, str, str], str] = {}
        replies = execute_with_scripts(pipe, self.reads.client)
        for wanted, reply in zip(by_parent.values(), replies, strict=True):
            for key, answer in zip(wanted, reply, strict=True):
                answers[key] = str(answer)
        return answers

    def _tell(
        self, groups: dict[str, list[ScriptArg]], mode: str
    ) -> tuple[dict[tuple[str, str], str], list[str]]:
        """depend_release in each queue (one round trip, `mode` 'settle' or 'drain'). Returns the
        tasks it released or buried ((queue, id) -> 'released' or 'dead') and the queues whose
        outbox it wrote to (a buried task has dependents: drain them next)."""
        if not groups:
            return {}, []
        pipe = self._pipe()
        dead_limits = (self.reads.settings.dead_max, int(self.reads.settings.dead_ttl * 1000))
        for queue, args in groups.items():
            self._queue(pipe, "depend_release", queue, [self._now(), *dead_limits, mode, *args])
        changed: dict[tuple[str, str], str] = {}
        fired: list[str] = []
        replies = execute_with_scripts(pipe, self.reads.client)
        for (queue, args), reply in zip(groups.items(), replies, strict=True):
            for task_id, answer in zip(args[::3], reply[:-1], strict=True):
                if answer in ("released", "dead"):
                    changed[(queue, str(task_id))] = str(answer)
            if int(reply[-1]):
                fired.append(queue)
        return changed, fired

    # -- the hand-off ---------------------------------------------------------------------------

    def drain(self, queues: Iterable[str], ids: dict[str, list[str]] | None = None) -> int:
        """Tell the dependents of every finished task in the queues' outboxes (only `ids` of a queue
        when given: a worker drains what it just ended), then remove those entries; repeats while
        there is more (a buried dependent may have dependents of its own). Returns the entries
        handled. Idempotent: any number may drain at once."""
        work = {q: (ids or {}).get(q, []) for q in queues}
        handled = 0
        for _ in range(MAX_ROUNDS):
            if not work:
                break
            entries, full = self._read(work)
            work = {q: [] for q in full}
            if not entries:
                continue
            groups: dict[str, list[ScriptArg]] = {}
            for entry in entries:
                for ref in entry.dependents:
                    queue, task_id = split_ref(ref)
                    parent = dep_ref(entry.queue, entry.task_id)
                    groups.setdefault(queue, []).extend([task_id, parent, entry.outcome])
            _, fired = self._tell(groups, "drain")
            self._unlink(entries)
            self._handed(entries)
            handled += len(entries)
            work.update({q: [] for q in fired})
        return handled

    def _read(self, work: dict[str, list[str]]) -> tuple[list[Entry], list[str]]:
        pipe = self._pipe()
        for queue, only in work.items():
            self._queue(pipe, "depend_read", queue, [DRAIN_BATCH, *only])
        entries: list[Entry] = []
        full: list[str] = []
        for queue, reply in zip(work, execute_with_scripts(pipe, self.reads.client), strict=True):
            found = _entries(queue, reply)
            entries += found
            if len(found) >= DRAIN_BATCH:
                full.append(queue)
        return entries, full

    def _unlink(self, entries: list[Entry]) -> None:
        """Take cancelled waiting tasks out of their dependencies' `dependents` (depend_unlink, in
        each dependency's queue); no round trip when no entry has any."""
        by_queue: dict[str, list[ScriptArg]] = {}
        for entry in entries:
            for ref in entry.unlinks:
                queue, task_id = split_ref(ref)
                by_queue.setdefault(queue, []).extend([task_id, dep_ref(entry.queue, entry.task_id)])
        if not by_queue:
            return
        pipe = self._pipe()
        for queue, args in by_queue.items():
            self._queue(pipe, "depend_unlink", queue, args)
        execute_with_scripts(pipe, self.reads.client)

    def _handed(self, entries: list[Entry]) -> None:
        by_queue: dict[str, list[ScriptArg]] = {}
        for entry in entries:
            args = by_queue.setdefault(entry.queue, [])
            args += [entry.id, entry.value, len(entry.dependents), *entry.dependents]
            args += [len(entry.unlinks), *entry.unlinks]
        pipe = self._pipe()
        for queue, args in by_queue.items():
            self._queue(pipe, "depend_handed", queue, [self._now(), *args])
        execute_with_scripts(pipe, self.reads.client)

    # -- maintenance ------------------------------------------------------------------------------

    def maintain(self, queues: Sequence[str]) -> int:
        """A maintenance pass: drain every queue's outbox and link again the waiting tasks whose
        producer died before confirming their links. One round trip when there is nothing to do."""
        if not queues:
            return 0
        pipe = self._pipe()
        for queue in queues:
            k = self.reads.keys(queue)
            pipe.hlen(k.outbox)
            pipe.zcard(k.unlinked)
        counts = pipe.execute()
        outboxes = [q for i, q in enumerate(queues) if int(counts[2 * i])]
        unlinked = [q for i, q in enumerate(queues) if int(counts[2 * i + 1])]
        handled = self.drain(outboxes) if outboxes else 0
        if unlinked:
            handled += self.recheck(unlinked)
        return handled

    def recheck(self, queues: Sequence[str], grace_ms: int = LINK_GRACE_MS) -> int:
        """Link again the waiting tasks of the queues still unlinked `grace_ms` after they were
        written (links are idempotent); returns how many."""
        before = self.reads.redis_time_ms() - grace_ms
        pipe = self._pipe()
        for queue in queues:
            pipe.zrangebyscore(self.reads.keys(queue).unlinked, "-inf", before, start=0, num=RECHECK_BATCH)
        stale = [(q, str(i)) for q, ids in zip(queues, pipe.execute(), strict=True) for i in ids]
        if not stale:
            return 0
        pipe = self._pipe()
        for queue, task_id in stale:
            pipe.smembers(self.reads.keys(queue).deps(task_id))
        links = [
            Link(queue, task_id, tuple(sorted(str(r) for r in refs)))
            for (queue, task_id), refs in zip(stale, pipe.execute(), strict=True)
        ]
        self.link(links)
        return len(links)

    # -- reads ------------------------------------------------------------------------------------

    def blocked_by(self, queue: str, task_id: str) -> list[str]:
        """The ids of the dependencies a waiting task still waits for."""
        refs = self.reads.client.smembers(self.reads.keys(queue).deps(task_id))
        return sorted(split_ref(str(r))[1] for r in refs)

    def after(self, tasks: Sequence[tuple[str, str]]) -> list[list[str]]:
        """The dependency refs of each (queue, id), in the order given at enqueue; one round trip."""
        if not tasks:
            return []
        pipe = self._pipe()
        for queue, task_id in tasks:
            pipe.lrange(self.reads.keys(queue).after(task_id), 0, -1)
        return [[str(r) for r in refs] for refs in pipe.execute()]

    def results(self, tasks: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """For each (queue, id), its dependencies' results by id (None where none is kept): two
        round trips whatever the number of tasks and dependencies."""
        lists = self.after(tasks)
        refs = sorted({ref for found in lists for ref in found})
        values: dict[str, Any] = {}
        if refs:
            pipe = self._pipe()
            for ref in refs:
                queue, task_id = split_ref(ref)
                pipe.hget(self.reads.keys(queue).results, task_id)
            for ref, raw in zip(refs, pipe.execute(), strict=True):
                values[ref] = None if raw is None else _json_or_text(raw)
        return [{split_ref(ref)[1]: values.get(ref) for ref in found} for found in lists]


def _entries(queue: str, reply: list[Any]) -> list[Entry]:
    """depend_read's flat reply: id, value, n, n dependent refs, m, m refs to unlink from per entry."""
    entries: list[Entry] = []
    at = 0
    while at < len(reply):
        task_id, value, count = str(reply[at]), str(reply[at + 1]), int(reply[at + 2])
        refs = tuple(str(r) for r in reply[at + 3 : at + 3 + count])
        at += 3 + count
        unlinks = tuple(str(r) for r in reply[at + 1 : at + 1 + int(reply[at])])
        at += 1 + len(unlinks)
        entries.append(Entry(queue, task_id, value, refs, unlinks))
    return entries


def _state(raw: str | bytes) -> str | None:
    try:
        meta = json.loads(raw)
    except ValueError:
        return "dead"  # a corrupt record can never end done
    return meta.get("state") if isinstance(meta, dict) else "dead"


def _json_or_text(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
