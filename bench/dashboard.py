"""Dashboard server times (issue 19), in-process through the ASGI app (routing, the services' Redis
reads and the JSON answer; no network):

1. The overview with 1,000 queues (each with pending, scheduled and dead tasks, some paused or
   limited): the shared snapshot rebuilt at every request (interval 0: the cost one read of Redis
   adds), then served from the snapshot (what every other open page costs).
2. The dead-letter queue with 100,000 dead tasks over 4 queues: the first page, a page deep in the
   listing (by its keyset cursor), the first page of a name filter, of an error-text filter that
   matches one task in 20 and of one that matches nothing (it stops at the 5,000-record bound and
   says so), an age filter, and the plan behind "retry all matching" for a text filter.
3. The same figures with the 100,000 dead tasks spread over the 1,000 queues (the merge of a
   thousand dead sets).

    python bench/dashboard.py --queues 1000 --dead 100000 --repeat 15

The dead tasks are written straight into the protocol's keys (the record fields fail.lua writes), in
pipelines: burying 100,000 through fetch and fail would only make the set-up slower.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taskq_cli import TaskQueue  # noqa: E402
from taskq_cli.api import create_app  # noqa: E402
from taskq_cli.protocol.keys import NamespaceKeys, QueueKeys  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/tasks.py", line 41, in send_email\n'
    "    client.send(message)\n"
    '  File "/srv/app/smtp.py", line 118, in send\n'
    "    raise SMTPError(code, text)\n"
)


CPU: list[float] = []  # the API process's CPU milliseconds of each call timed last


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median and worst milliseconds of `repeat` calls, and the last answer. The process's CPU time
    of each call goes to CPU: on a loaded machine it says what the wall time cannot."""
    times = []
    answer = None
    CPU.clear()
    for _ in range(repeat):
        began, cpu = time.perf_counter(), time.process_time()
        answer = call()
        times.append((time.perf_counter() - began) * 1000)
        CPU.append((time.process_time() - cpu) * 1000)
    return statistics.median(times), max(times), answer


def fill_queues(tq: TaskQueue, queues: int) -> None:
    names = [f"queue-{i:04d}" for i in range(queues)]
    batch = [(("job", {"n": i}, {"queue": q})) for q in names for i in range(3)]
    tq.enqueue_many(batch)
    tq.enqueue_many([("later", {}, {"queue": q, "delay": 3600}) for q in names])
    for q in names[::10]:
        tq.broker.set_paused(q, True)
    for q in names[5::10]:
        tq.set_queue_limits(q, concurrency=4, rate="100/s")


def fill_dead(client: redis.Redis, namespace: str, dead: int, queues: int) -> None:
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for i in range(dead):
        queue = f"mail-{i % queues}"
        keys = QueueKeys(namespace, queue)
        task_id = uuid.uuid4().hex
        died = now - (dead - i) * 20  # one death every 20 ms: 100,000 over about half an hour
        error = "SMTPError", f"421 try later ({i})" if i % 20 else f"550 relay denied ({i})"
        meta = {
            "last_error": {"type": error[0], "message": error[1], "traceback": TRACEBACK},
            "id": task_id,
            "queue": queue,
            "state": "dead",
            "enqueued_at": died - 500,
            "name": "send_email" if i % 3 else "send_report",
            "finished_at": died,
            "died_at": died,
            "worker": "bench",
            "started_at": died - 100,
            "attempts": 4,
        }
        pipe.hset(keys.tasks, task_id, json.dumps(meta, separators=(",", ":")))
        pipe.hset(keys.payloads, task_id, json.dumps({"to": f"user{i}@example.com", "template": "welcome"}))
        pipe.zadd(keys.dead, {task_id: died})
        pipe.sadd(NamespaceKeys(namespace).queues, queue)
        if len(pipe) >= 20_000:
            pipe.execute()
    pipe.execute()


def overview_figures(api: TestClient, repeat: int) -> dict[str, Any]:
    live = api.app.state.ui_live  # type: ignore[attr-defined]
    live.interval = 0.0
    fresh = timed(lambda: api.get("/ui/api/overview?limit=100").json(), repeat)
    cpu = statistics.median(CPU)
    live.interval = 3600.0
    shared = timed(lambda: api.get("/ui/api/overview?limit=100").json(), repeat)
    answer = fresh[2]
    return {
        "queues": len(api.app.state.ui_live.get()["queues"]),  # type: ignore[attr-defined]
        "rebuilt_ms": fresh[:2],
        "rebuilt_cpu_ms": cpu,
        "shared_ms": shared[:2],
        "totals": answer["totals"],
        "bytes_per_page": len(json.dumps(answer)),
    }


def dlq_figures(api: TestClient, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def page(query: str) -> dict[str, Any]:
        answer = api.get("/ui/api/dlq" + query)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    first = timed(lambda: page("?limit=50"), repeat)
    out["first page"] = (*first[:2], f"total {first[2]['total']:,}")
    cursor = None
    for _ in range(20):  # walk 20 pages of 50, then time a page from there
        cursor = page("?limit=50" + (f"&cursor={json.dumps(cursor)}" if cursor else ""))["next"]
    deep = timed(lambda: page(f"?limit=50&cursor={json.dumps(cursor)}"), repeat)
    out["page 21 (by cursor)"] = (*deep[:2], "")
    for label, query in [
        ("name filter", "?limit=50&name=send_report"),
        ("text filter, 1 in 20 match", "?limit=50&text=relay%20denied"),
        ("text filter, no match (bounded)", "?limit=50&text=no-such-error"),
        ("age filter (older than 10 min)", "?limit=50&min_age=10m"),
    ]:
        figure = timed(lambda q=query: page(q), repeat)  # type: ignore[misc]
        answer = figure[2]
        note = f"total {answer['total']:,}" if answer["total"] is not None else ""
        note = note or f"{len(answer['items'])} shown, {answer['scanned']:,} read, capped {answer['capped']}"
        out[label] = (*figure[:2], note)
    plan = timed(
        lambda: api.post(
            "/ui/api/dlq/plan", json={"filter": {"text": "relay denied"}}, headers=api.headers
        ).json(),
        max(2, repeat // 5),
    )
    out["plan: all matching a text filter"] = (
        *plan[:2],
        f"{plan[2]['count']:,} tasks, capped {plan[2]['capped']}",
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--dead", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--parts", default="overview,dlq,dlq-spread", help="which figures (comma-separated)")
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis_url)
    results: dict[str, Any] = {}
    for part in args.parts.split(","):
        namespace = f"bench-ui-{uuid.uuid4().hex[:8]}"
        tq = TaskQueue(redis_url=args.redis_url, namespace=namespace)
        try:
            began = time.perf_counter()
            if part == "overview":
                fill_queues(tq, args.queues)
            else:
                fill_dead(client, namespace, args.dead, 4 if part == "dlq" else args.queues)
            print(f"{part}: set-up {time.perf_counter() - began:.1f} s", file=sys.stderr)
            with TestClient(create_app(tq, token=""), base_url="http://localhost") as api:
                api.headers["X-CSRF-Token"] = api.get("/ui/api/session").json()["csrf"]
                results[part] = (
                    overview_figures(api, args.repeat)
                    if part == "overview"
                    else dlq_figures(api, args.repeat)
                )
        finally:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=5000))
            for start in range(0, len(keys), 5000):
                client.delete(*keys[start : start + 5000])
            tq.close()
    report(results, args.queues)


def report(results: dict[str, Any], queues: int) -> None:
    over = results.get("overview")
    if over:
        print(f"overview, {over['queues']:,} queues ({over['bytes_per_page']:,} bytes for a page of 100):")
        for label, key in (("snapshot rebuilt", "rebuilt_ms"), ("shared snapshot ", "shared_ms")):
            median, worst = over[key]
            print(f"  {label}: median {median:.1f} ms, worst {worst:.1f} ms")
        print(f"  (rebuilt: the API process's CPU time, median {over['rebuilt_cpu_ms']:.1f} ms)")
    for part, title in (("dlq", "4 queues"), ("dlq-spread", f"{queues:,} queues")):
        if part not in results:
            continue
        print(f"dead-letter queue, over {title}:")
        for label, (median, worst, note) in results[part].items():
            print(f"  {label:<34} median {median:7.1f} ms  worst {worst:7.1f} ms  {note}")


if __name__ == "__main__":
    main()
