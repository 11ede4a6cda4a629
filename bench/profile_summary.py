"""Summarise a py-spy raw profile (`py-spy record --format raw [--subprocesses]`) of a taskq worker:
samples per process and thread, and inclusive samples of the functions that make up a task's cost.

    python bench/profile_summary.py /tmp/prof.txt [--top 30]
"""

from __future__ import annotations

import argparse
import collections
import re

# (label, regex on one frame): inclusive samples, counted once per stack
BUCKETS = [
    ("fetch (Broker.fetch_many)", r"^Broker\.fetch_many "),
    ("report (Broker.report)", r"^Broker\.report "),
    ("renew + register (heartbeat)", r"^LeaseKeeper\._beat "),
    ("promote/recover (maintenance)", r"^Maintenance\.tick "),
    (
        "redis-py send/parse (any call)",
        r"^(Pipeline\.execute|Redis\.execute_command|Connection\.send_packed_command|"
        r"_HiredisParser\.read_response|Connection\.read_response) ",
    ),
    ("pipeline packing (pack_commands)", r"^(Connection\.pack_commands|Pipeline\._execute_pipeline) "),
    ("socket recv/send (syscalls)", r"(recv_into|sendall|_readline|read_from_socket)"),
    ("json (loads/dumps)", r"^(loads|dumps|JSONDecoder\.decode|JSONEncoder\.encode) \(json/"),
    ("pydantic validation (TaskDef.validate)", r"^TaskDef\.validate "),
    ("run_task (child: validate + call)", r"^run_task "),
    ("Worker._start (options, log, submit)", r"^Worker\._start "),
    ("Options.resolve", r"^Options\.resolve "),
    ("logging calls", r"^(Logger\.(info|debug|warning|_log|isEnabledFor)) "),
    (
        "pool IPC: send/recv over the pipe",
        r"^(Connection\.(send_bytes|recv_bytes|_send_bytes|_recv_bytes|_send|_recv)) ",
    ),
    ("marshal", r"^(dumps|loads) \(marshal"),
    ("supervisor select()", r"^(DefaultSelector|EpollSelector)\.select "),
    ("Worker._on_done", r"^Worker\._on_done "),
    ("Worker._report (reporter thread)", r"^Worker\._report "),
    (
        "thread sync (Condition/Event/Queue)",
        r"^(Condition\.(wait|notify|notify_all|__enter__|__exit__)|Event\.(wait|set)|"
        r"SimpleQueue\.(get|put)|Lock\.acquire) ",
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    per_process: collections.Counter[str] = collections.Counter()
    per_thread: collections.Counter[tuple[str, str]] = collections.Counter()
    buckets: collections.Counter[tuple[str, str]] = collections.Counter()
    leaves: collections.Counter[tuple[str, str]] = collections.Counter()
    compiled = [(label, re.compile(rx)) for label, rx in BUCKETS]
    total = 0
    with open(args.path) as handle:
        lines = handle.read().splitlines()
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        # with --subprocesses, a child's stack starts with its parents' "process N:..." frames
        procs = [f for f in frames if f.startswith("process ")]
        proc = "child" if len(procs) > 1 else "worker"
        if "forkserver" in stack or "-B -c" in stack:
            proc = "forkserver"
        body = [f for f in frames if not f.startswith("process ")]
        thread = next(
            (
                f
                for f in body
                if f.startswith("Worker._")
                or f.startswith("ProcessPool._")
                or f.startswith("ThreadPool._")
                or f.startswith("child_main")
            ),
            body[0] if body else "?",
        )
        total += count
        per_process[proc] += count
        per_thread[(proc, thread.split(" (")[0])] += count
        for label, rx in compiled:
            if any(rx.search(f) for f in body):
                buckets[(proc, label)] += count
        leaves[(proc, body[-1] if body else "?")] += count
    print(f"samples: {total}")
    for proc, n in per_process.most_common():
        print(f"  {proc:<10} {n:>8} {100 * n / total:5.1f}%")
    print("\nper process / outermost taskq function (thread):")
    for (proc, thread), n in per_thread.most_common(args.top):
        print(f"  {proc:<10} {thread:<45} {n:>8} {100 * n / total:5.1f}%")
    print("\ninclusive, per cost:")
    for (proc, label), n in sorted(buckets.items(), key=lambda kv: -kv[1]):
        print(f"  {proc:<10} {label:<45} {n:>8} {100 * n / total:5.1f}%")
    print("\nleaf frames:")
    for (proc, leaf), n in leaves.most_common(args.top):
        print(f"  {proc:<10} {leaf[:90]:<90} {n:>7} {100 * n / total:5.1f}%")


if __name__ == "__main__":
    main()
