"""The dashboard's server side (issue 19): its pages and their security headers, the session (the
token traded once for an HttpOnly, SameSite=Strict cookie), CSRF on every change, the shared overview
snapshot, the dead-letter queue's filters, keyset pages and bulk plans, workers with their lease
deadlines, and the queue, task and schedule actions; through the ASGI test client on a real Redis.
The browser side is tests/test_dashboard.py."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from taskq_cli import TaskQueue
from taskq_cli.api.ui_live import MINUTES, History
from taskq_cli.api.ui_session import MAX_AGE, Sessions
from taskq_cli.protocol import Fetched
from taskq_cli.services import dashboard
from taskq_cli.services import stats as stats_service

with warnings.catch_warnings():  # starlette asks for httpx2; httpx (the api extra) works the same
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from taskq_cli.api import create_app

TOKEN = "dashboard-token-for-tests"
LOCAL = "http://localhost"


def bury(
    tq: TaskQueue,
    name: str = "t",
    queue: str = "default",
    message: str = "gave up",
    at: int | None = None,
    **payload: Any,
) -> str:
    """Enqueue a task and fail its first attempt for good: it is dead, with this error message, a
    second after the task buried before it (Redis's clock driven: no two die in the same ms)."""
    died = at or tq.broker.redis_time_ms() + 1000
    tq.broker.clock = lambda: died
    task_id = tq.enqueue(name, payload, queue=queue)
    job = tq.broker.fetch(queue, 30, "test-worker")
    assert isinstance(job, Fetched) and job.id == task_id
    failure = {"type": "Boom", "message": message, "traceback": "Traceback:\n  in handler"}
    assert tq.broker.fail(job, failure, final=True, delay=0, max_retries=3) == "dead"
    return task_id


@pytest.fixture
def open_ui(tq: TaskQueue) -> Iterator[TestClient]:
    """The dashboard of an API without a token, its session (and CSRF token) made."""
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as client:
        csrf = client.get("/ui/api/session").json()["csrf"]
        client.headers["X-CSRF-Token"] = csrf
        yield client


@pytest.fixture
def locked(tq: TaskQueue) -> Iterator[TestClient]:
    with TestClient(create_app(tq, token=TOKEN), base_url=LOCAL) as client:
        yield client


# -- pages and the session -------------------------------------------------------------------------------


def test_the_pages_are_served_from_the_package_with_a_strict_content_security_policy(locked):
    page = locked.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "app.js" in page.text and "http" not in page.text.replace("http-equiv", "")  # no CDN
    script = locked.get("/ui/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text  # every value goes in as text
    assert locked.get("/ui/app.css").status_code == 200
    assert locked.get("/ui/nothing.js").status_code == 404
    moved = locked.get("/ui", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["location"] == "ui/"


def test_with_a_token_the_data_needs_the_cookie_that_the_token_is_traded_for_once(locked):
    assert locked.get("/ui/api/overview").status_code == 401
    assert locked.get("/ui/api/session").json() == {
        "auth": True,
        "signed_in": False,
        "csrf": None,
        "root": "",
    }
    assert locked.post("/ui/api/login", json={"token": "wrong"}).status_code == 401
    assert "set-cookie" not in locked.post("/ui/api/login", json={"token": "wrong"}).headers

    signed = locked.post("/ui/api/login", json={"token": TOKEN})
    assert signed.status_code == 200 and signed.json()["signed_in"] is True
    cookie = signed.headers["set-cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/ui", f"Max-Age={MAX_AGE}"):
        assert flag in cookie
    assert TOKEN not in cookie  # the token itself is never stored in the browser
    assert locked.get("/ui/api/overview").status_code == 200
    assert locked.get("/ui/api/session").json()["csrf"] == signed.json()["csrf"]

    locked.headers["X-CSRF-Token"] = signed.json()["csrf"]
    assert "Max-Age=0" in locked.post("/ui/api/logout").headers["set-cookie"]
    assert locked.get("/ui/api/overview").status_code == 401


def test_a_forged_or_expired_cookie_is_no_session_and_the_bearer_token_still_works(locked):
    sessions = Sessions.for_token(TOKEN)
    good = sessions.new_cookie()
    assert sessions.session_of(good) is not None
    assert sessions.session_of(good[:-2] + "xx") is None
    assert sessions.session_of(Sessions.for_token("other").new_cookie()) is None
    assert sessions.session_of(sessions.new_cookie(now=time.time() - MAX_AGE - 5)) is None
    locked.cookies.set("taskq_ui", good[:-2] + "xx", domain="localhost", path="/ui")
    assert locked.get("/ui/api/overview").status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert locked.get("/ui/api/overview", headers=bearer).status_code == 200
    assert locked.post("/ui/api/queue/pause?name=q", headers=bearer).status_code == 200


def test_every_change_needs_the_sessions_csrf_token_and_a_cross_site_post_is_refused(tq, locked):
    csrf = locked.post("/ui/api/login", json={"token": TOKEN}).json()["csrf"]
    tq.enqueue("t", {}, queue="q")
    assert locked.post("/ui/api/queue/pause?name=q").status_code == 403
    assert locked.post("/ui/api/queue/pause?name=q", headers={"X-CSRF-Token": "x" + csrf}).status_code == 403
    other = Sessions.for_token(TOKEN)
    assert other.csrf_for("another-session") != csrf
    evil = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert locked.post("/ui/api/queue/pause?name=q", headers=evil).status_code == 403
    assert tq.broker.paused(["q"]) == {"q": False}
    same = {"X-CSRF-Token": csrf, "Origin": LOCAL}
    assert locked.post("/ui/api/queue/pause?name=q", headers=same).json() == {"name": "q", "paused": True}
    assert tq.broker.paused(["q"]) == {"q": True}


def test_without_a_token_reading_needs_nothing_and_a_change_still_needs_the_csrf_token(tq):
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as client:
        assert client.get("/ui/api/overview").status_code == 200
        assert client.post("/ui/api/queue/pause?name=q").status_code == 401  # no session yet
        session = client.get("/ui/api/session")
        assert session.json()["auth"] is False and session.json()["signed_in"] is True
        assert "HttpOnly" in session.headers["set-cookie"]
        assert client.post("/ui/api/queue/pause?name=q").status_code == 403
        ok = client.post("/ui/api/queue/pause?name=q", headers={"X-CSRF-Token": session.json()["csrf"]})
        assert ok.status_code == 200
        rebound = client.get("/ui/api/overview", headers={"Host": "evil.example"})
        assert rebound.status_code == 421  # the API's Host rule (DNS rebinding) holds here too


def test_a_post_body_must_be_json_and_bad_input_answers_4xx(open_ui):
    assert (
        open_ui.post("/ui/api/dlq/plan", content=b"x", headers={"Content-Type": "text/plain"}).status_code
        == 415
    )
    assert open_ui.post("/ui/api/dlq/plan", json={"filter": {}, "items": [["q", "i"]]}).status_code == 422
    assert open_ui.post("/ui/api/dlq/plan", json={"filter": {"min_age": "soon"}}).status_code == 422
    assert open_ui.get("/ui/api/dlq?cursor=nope").status_code == 422
    assert open_ui.get("/ui/api/dlq?queue=nowhere").status_code == 404
    assert open_ui.get("/ui/api/tasks?queue=nowhere").status_code == 404
    assert open_ui.post("/ui/api/dlq/retry", json={"plan": "unknown"}).status_code == 409
    assert open_ui.post("/ui/api/queue/explode?name=q").status_code == 404


# -- the overview ------------------------------------------------------------------------------------------


def test_the_overview_is_one_shared_snapshot_per_interval_whatever_the_number_of_pages(tq, open_ui):
    tq.enqueue("t", {}, queue="a")
    live = open_ui.app.state.ui_live
    first = open_ui.get("/ui/api/overview").json()
    reads = live.reads
    for _ in range(20):
        assert open_ui.get("/ui/api/overview").json()["totals"] == first["totals"]
    assert live.reads == reads  # twenty pages, one read of Redis
    assert first["totals"]["pending"] == 1
    tq.enqueue("t", {}, queue="b")
    live.interval = 0.0  # the next request reads again
    after = open_ui.get("/ui/api/overview").json()
    assert after["totals"]["pending"] == 2 and live.reads == reads + 1
    row = next(q for q in after["queues"] if q["name"] == "b")
    assert row["pending"] == 1 and row["paused"] is False and row["concurrency_limit"] is None
    assert len(row["per_minute"]["processed"]) == MINUTES
    assert set(after["states"]) >= {"pending", "scheduled", "active", "dead"}


def test_the_overview_finds_queues_by_name_and_pages_them(tq, open_ui):
    for q in ("mail-a", "mail-b", "reports"):
        tq.enqueue("t", {}, queue=q)
    found = open_ui.get("/ui/api/overview?find=MAIL&limit=1").json()
    assert found["matched"] == 2 and [q["name"] for q in found["queues"]] == ["mail-a"]
    assert found["totals"]["pending"] == 3
    assert [q["name"] for q in open_ui.get("/ui/api/overview?find=mail&offset=1").json()["queues"]] == [
        "mail-b"
    ]


def test_per_minute_throughput_comes_from_counter_samples_kept_ten_minutes():
    history = History()
    start = 1_000_000.0
    for second in range(0, 181, 5):  # three minutes at 2 done and 1 failed per 5 s
        history.add(start + second, {"q": (second // 5 * 2, second // 5)})
    history.add(start + 182, {"q": (1, 1)})  # too soon after the last sample: not kept
    assert len(history.times) == 37
    series = history.per_minute(start + 180, {"q": (72, 36)})["q"]
    assert series["processed"][-3:] == [24, 24, 24] and series["failed"][-3:] == [12, 12, 12]
    assert series["processed"][:-3] == [None] * (MINUTES - 3)  # the dashboard was not open then
    history.add(start + 2000, {"q": (0, 0)})  # much later, after a counter reset
    assert len(history.times) == 1


# -- the dead-letter queue -----------------------------------------------------------------------------------


def test_dead_tasks_are_found_by_queue_name_error_text_and_age(tq, open_ui):
    bury(tq, "mail", "a", "SMTP refused: 550")
    bury(tq, "mail", "b", "timeout talking to SMTP")
    target = bury(tq, "report", "a", "disk full")
    page = open_ui.get("/ui/api/dlq").json()
    assert page["total"] == 3 and page["next"] is None
    died = [t["died_at"] for t in page["items"]]
    assert died == sorted(died, reverse=True) and target in [t["id"] for t in page["items"]]
    assert page["items"][0]["id"] == target and "payload" not in page["items"][0]
    assert page["items"][0]["last_error"]["message"] == "disk full"
    assert {t["queue"] for t in open_ui.get("/ui/api/dlq?text=smtp").json()["items"]} == {"a", "b"}
    assert [t["id"] for t in open_ui.get("/ui/api/dlq?text=DISK").json()["items"]] == [target]
    assert len(open_ui.get("/ui/api/dlq?text=handler").json()["items"]) == 3  # the traceback too
    assert len(open_ui.get("/ui/api/dlq?queue=a&name=mail").json()["items"]) == 1
    slashed = bury(tq, "mail", "b", 'cannot open "/var/spool/out": é')  # JSON escapes these
    assert [t["id"] for t in open_ui.get('/ui/api/dlq?text="/var/spool/out": É').json()["items"]] == [slashed]
    assert open_ui.get("/ui/api/dlq?min_age=1h").json()["total"] == 0
    assert open_ui.get("/ui/api/dlq?max_age=1h").json()["total"] == 4


@pytest.mark.parametrize("same_ms", [False, True], ids=["apart", "all-in-one-ms"])
def test_dead_pages_follow_a_cursor_and_cover_every_task_once(tq, open_ui, same_ms):
    moment = tq.broker.redis_time_ms()
    ids = {bury(tq, "t", q, at=moment if same_ms else None) for q in ("a", "b") for _ in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        query = "/ui/api/dlq?limit=3" + (f"&cursor={json.dumps(cursor)}" if cursor else "")
        page = open_ui.get(query).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)


def test_a_text_filter_reads_a_bounded_number_of_records_and_says_where_it_stopped(tq, open_ui, monkeypatch):
    monkeypatch.setattr(dashboard, "PAGE_SCAN_CAP", 4)
    monkeypatch.setattr(dashboard, "SCAN_CHUNK", 2)
    old = bury(tq, "t", "a", "needle")
    for _ in range(6):
        bury(tq, "t", "a", "hay")
    page = open_ui.get("/ui/api/dlq?text=needle").json()
    assert page["items"] == [] and page["capped"] is True and page["scanned"] == 4 and page["total"] is None
    rest = open_ui.get(f"/ui/api/dlq?text=needle&cursor={json.dumps(page['next'])}").json()
    assert [t["id"] for t in rest["items"]] == [old]


def test_a_bulk_purge_plan_names_its_count_and_purges_exactly_those_once(tq, open_ui):
    smtp = [bury(tq, "mail", "a", "SMTP down") for _ in range(3)]
    kept = bury(tq, "mail", "a", "bad address")
    plan = open_ui.post("/ui/api/dlq/plan", json={"filter": {"text": "smtp"}}).json()
    assert plan["count"] == 3 and plan["capped"] is False
    late = bury(tq, "mail", "a", "SMTP down")  # dies after the confirmation was asked
    done = open_ui.post("/ui/api/dlq/purge", json={"plan": plan["plan"]}).json()
    assert done == {"handled": 3, "missing": [], "refused": []}
    assert set(tq.broker.dead_ids("a")) == {kept, late}
    assert open_ui.post("/ui/api/dlq/purge", json={"plan": plan["plan"]}).status_code == 409
    assert set(smtp).isdisjoint(tq.broker.dead_ids("a"))


def test_picked_dead_tasks_are_retried_back_to_pending(tq, open_ui):
    a, b = bury(tq, "t", "a"), bury(tq, "t", "b")
    plan = open_ui.post("/ui/api/dlq/plan", json={"items": [["a", a], ["b", b]]}).json()
    assert plan["count"] == 2
    assert open_ui.post("/ui/api/dlq/retry", json={"plan": plan["plan"]}).json()["handled"] == 2
    assert tq.broker.ids_in_state("a", "pending", 0, 10) == [a]
    everything = open_ui.post("/ui/api/dlq/plan", json={"filter": {}}).json()
    assert everything["count"] == 0


# -- tasks, queues, workers, schedules ---------------------------------------------------------------------


def test_a_task_page_has_every_field_and_a_dead_one_is_retried_from_it(tq, open_ui):
    task_id = bury(tq, "t", "a", "no", note="<script>alert(1)</script>")
    shown = open_ui.get(f"/ui/api/task?id={task_id}").json()
    assert shown["payload"] == {"note": "<script>alert(1)</script>"}
    assert shown["last_error"]["traceback"].startswith("Traceback")
    assert open_ui.post(f"/ui/api/task/retry?id={task_id}").json() == {"id": task_id, "state": "pending"}
    assert open_ui.post(f"/ui/api/task/retry?id={task_id}").status_code == 409
    assert open_ui.post(f"/ui/api/task/cancel?id={task_id}").json()["state"] == "pending"
    assert open_ui.get("/ui/api/task?id=nothing-here").status_code == 404


def test_a_queues_tasks_are_listed_by_state_with_their_total_and_found_by_name(tq, open_ui):
    for i in range(5):
        tq.enqueue("mail" if i % 2 else "other", {"i": i}, queue="q")
    page = open_ui.get("/ui/api/tasks?queue=q&state=pending&limit=2").json()
    assert page["total"] == 5 and len(page["items"]) == 2 and "pending" in page["states"]
    named = open_ui.get("/ui/api/tasks?queue=q&state=pending&name=mail").json()
    assert named["total"] is None and {t["name"] for t in named["items"]} == {"mail"}
    assert open_ui.get("/ui/api/tasks?queue=q&state=nonsense").status_code == 422


def test_queue_actions_pause_resume_limit_and_clear(tq, open_ui):
    tq.enqueue("t", {}, queue="q")
    assert open_ui.post("/ui/api/queue/pause?name=q").json()["paused"] is True
    assert open_ui.post("/ui/api/queue/resume?name=q").json()["paused"] is False
    limits = open_ui.post("/ui/api/queue/limits?name=q", json={"concurrency": 3, "rate": "10/s"}).json()
    assert limits["concurrency_limit"] == 3 and limits["rate_limit"] == {"limit": 10, "window": 1.0}
    assert open_ui.post("/ui/api/queue/limits?name=q", json={"rate": "often"}).status_code == 422
    cleared = open_ui.post("/ui/api/queue/limits?name=q", json={}).json()
    assert cleared["concurrency_limit"] is None and cleared["rate_limit"] is None
    assert open_ui.get("/ui/api/queue?name=q").json()["clear_count"] == 1
    assert open_ui.post("/ui/api/queue/clear?name=q").json() == {"name": "q", "cleared": 1}


def test_workers_show_what_each_runs_since_when_and_its_lease_deadline(tq, open_ui):
    task_id = tq.enqueue("slow", {}, queue="q")
    job = tq.broker.fetch("q", 30, "w1")
    assert isinstance(job, Fetched)
    now = tq.broker.redis_time_ms()
    info = {"id": "w1", "host": "h", "pid": 1, "queues": ["q"], "concurrency": 1, "started_at": now,
            "heartbeat_at": now, "pool": "threads", "state": "busy",
            "active": [{"id": task_id, "name": "slow", "queue": "q", "started_at": now}]}  # fmt: skip
    tq.broker.register_worker("w1", info, 30)
    [worker] = open_ui.get("/ui/api/workers").json()
    [running] = worker["active"]
    deadline = tq.broker.lease_deadlines([("q", task_id)])[0]
    assert running["id"] == task_id and running["lease_deadline"] is not None
    assert deadline is not None and deadline - now >= 29_000
    assert open_ui.get(f"/ui/api/task?id={task_id}").json()["lease_deadline"] == running["lease_deadline"]


def test_schedules_are_listed_and_paused_and_resumed(tq, open_ui):
    tq.schedule("nightly", "0 3 * * *", "report", {}, queue="q")
    [row] = open_ui.get("/ui/api/schedules").json()
    assert row["name"] == "nightly" and row["paused"] is False
    assert open_ui.post("/ui/api/schedule/pause?name=nightly").json() == {"name": "nightly", "paused": True}
    assert open_ui.get("/ui/api/schedules").json()[0]["paused"] is True
    assert open_ui.post("/ui/api/schedule/resume?name=nightly").json()["paused"] is False
    assert open_ui.post("/ui/api/schedule/pause?name=nothing").status_code == 404


def test_mounted_under_a_prefix_the_dashboard_and_its_cookie_follow_the_prefix(tq):
    from fastapi import FastAPI

    parent = FastAPI()
    parent.mount("/taskq", create_app(tq, token=TOKEN))
    with TestClient(parent, base_url=LOCAL) as client:
        assert client.get("/taskq/ui/").status_code == 200
        signed = client.post("/taskq/ui/api/login", json={"token": TOKEN})
        assert "Path=/taskq/ui;" in signed.headers["set-cookie"] and signed.json()["root"] == "/taskq"
        assert client.get("/taskq/ui/api/overview").status_code == 200


def test_a_task_waiting_for_its_dependencies_is_counted_listed_and_names_them(tq, open_ui):
    first = tq.enqueue("fetch", {}, queue="q")
    waiting = tq.enqueue("parse", {}, queue="q", after=[first])
    open_ui.app.state.ui_live.interval = 0.0
    overview = open_ui.get("/ui/api/overview").json()
    assert "waiting" in overview["states"] and overview["totals"]["waiting"] == 1
    listed = open_ui.get("/ui/api/tasks?queue=q&state=waiting").json()
    assert [t["id"] for t in listed["items"]] == [waiting] and listed["total"] == 1
    shown = open_ui.get(f"/ui/api/task?id={waiting}").json()
    assert shown["state"] == "waiting" and shown["after"] == [first] and shown["blocked_by"] == [first]


@pytest.mark.parametrize("seed", range(4))
def test_the_merge_of_many_dead_sets_pages_exactly_like_one_sorted_list(tq, seed):
    # Given dead sets of very different sizes, with many deaths in the same millisecond
    import random

    chance = random.Random(seed)
    everything = []
    for q in [f"q{i}" for i in range(chance.randint(1, 30))]:
        members = {
            f"id{j}": chance.choice([1000, 1001, chance.randint(0, 5000)])
            for j in range(chance.randint(0, 60))
        }
        if members:
            tq.broker.client.zadd(tq.broker.keys(q).dead, members)
        everything += [(score, q, member) for member, score in members.items()]
    queues = sorted({q for _, q, _ in everything} | {"empty"})
    expected = sorted(everything, reverse=True)
    newest, oldest = (3000, 500) if seed % 2 else (None, None)
    if newest is not None:
        expected = [k for k in expected if oldest <= k[0] <= newest]
    # When it is read page by page, each page after the last key of the one before
    pages, cursor = [], None
    while True:
        page = tq.broker.dead_newest(queues, cursor, newest, oldest, 7)
        pages += page
        if len(page) < 7:
            break
        cursor = page[-1]
    # Then the pages are the sorted list, every key once
    assert pages == expected


def test_the_overviews_one_script_per_queue_says_what_stats_says(tq):
    # Given queues in every shape: pending (a head that came back from the dead-letter queue),
    # scheduled, waiting, dead, paused, limited, counted
    first = tq.enqueue("t", {}, queue="a")
    tq.enqueue("t", {}, queue="a", after=[first])
    tq.enqueue("t", {}, queue="b", delay=60)
    retried = bury(tq, "t", "c")
    tq.broker.clock = lambda: None
    tq.enqueue("t", {}, queue="c")
    assert tq.broker.dlq_retry("c", [retried]) == ["ok"]
    tq.broker.set_paused("b", True)
    tq.set_queue_limits("a", concurrency=2, rate="5/10s")
    tq.set_queue_limits("c", concurrency=1)
    # When the overview and `stats` read them
    rows = {row.pop("name"): row for row in dashboard.overview(tq)["queues"]}
    stats = {name: counts.to_json() for name, counts in stats_service.collect(tq).queues.items()}
    # Then they agree on every field (the oldest pending age is read a moment apart)
    for name in ("a", "b", "c"):
        got, want = rows[name], stats[name]
        assert abs((got.pop("oldest_pending_age") or 0) - (want.pop("oldest_pending_age") or 0)) < 1
        assert got == want, name
    assert rows["a"]["waiting"] == 1 and rows["b"]["paused"] and rows["c"]["processed"] == 1
