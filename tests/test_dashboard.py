"""The web dashboard in a real browser (issue 19): Playwright drives Debian's Chromium (its executable
path: no browser is downloaded) against real `taskq api` processes, one without a token and one with,
on a real Redis. One browser for the module; each test opens its own page.

Screenshots of the main pages go to docs/img/dashboard-*.png when TASKQ_SCREENSHOTS=1 (the docs'
images are regenerated that way), else to a temporary directory (the same code runs either way)."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_cli import TaskQueue
from taskq_cli.protocol import Fetched
from taskq_cli.protocol.keys import NamespaceKeys
from tests.support import ROOT, Proc, Procs, free_port, taskq_env, until

playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is in the dev extra")
CHROMIUM = os.environ.get("TASKQ_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

TOKEN = "browser-test-token"
WAIT_MS = 8000  # the longest a page may take to show a change (refresh every 2 s)
SHOTS = ROOT / "docs" / "img" if os.environ.get("TASKQ_SCREENSHOTS") == "1" else None


# -- the servers, the browser ------------------------------------------------------------------------------


class Api:
    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}/ui/"


def _start_api(procs: Procs, env: dict[str, str], **extra: str) -> Api:
    port = free_port()
    proc = procs.start("api", "--port", str(port), "--no-access-log", env={**env, **extra}, label="api")
    until(lambda: "api on http" in proc.stderr, 20, what="taskq api to start", logs=[proc])
    return Api(proc, port)


@pytest.fixture(scope="module")
def module_namespace(redis_url: str) -> Iterator[str]:
    ns = f"test-{uuid.uuid4().hex[:12]}"
    yield ns
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = list(client.scan_iter(match=NamespaceKeys(ns).pattern(), count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def servers(redis_url: str, module_namespace: str) -> Iterator[dict[str, Any]]:
    env = taskq_env(redis_url, module_namespace)
    procs = Procs(env)
    try:
        yield {
            "open": _start_api(procs, env),
            "locked": _start_api(procs, env, TASKQ_API_TOKEN=TOKEN),
            "procs": procs,
            "env": env,
        }
    finally:
        procs.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (its own cookies) that fails the test on any script error or alert."""
    context = browser.new_context(viewport={"width": 1100, "height": 640})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    opened.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield opened
    context.close()
    assert problems == []


@pytest.fixture
def queue(redis_url: str, module_namespace: str) -> Iterator[TaskQueue]:
    tq = TaskQueue(redis_url=redis_url, namespace=module_namespace)
    yield tq
    tq.close()


def shot(page: Any, name: str, tmp_path: Path) -> None:
    target = (SHOTS or tmp_path) / f"dashboard-{name}.png"
    page.screenshot(path=str(target))
    assert target.stat().st_size > 1000


def bury(tq: TaskQueue, queue: str, message: str, name: str = "send_email", **payload: Any) -> str:
    task_id = tq.enqueue(name, payload, queue=queue)
    job = tq.broker.fetch(queue, 30, "test-worker")
    assert isinstance(job, Fetched) and job.id == task_id
    failure = {"type": "SMTPError", "message": message, "traceback": 'Traceback:\n  File "mail.py", line 9'}
    assert tq.broker.fail(job, failure, final=True, delay=0, max_retries=3) == "dead"
    return task_id


def cell(page: Any, queue: str, state: str) -> Any:
    return page.locator(f'tr[data-queue="{queue}"] td[data-state="{state}"]')


# -- the tests ---------------------------------------------------------------------------------------------


def test_the_overview_counts_change_after_an_enqueue_without_a_reload(page, servers, queue, tmp_path):
    queue.enqueue("send_email", {"to": "a@example.com"}, queue="emails")
    page.goto(servers["open"].url)
    playwright.expect(cell(page, "emails", "pending")).to_have_text("1")
    page.evaluate("window.sameDocument = true")  # gone if the page reloaded

    queue.enqueue_many([("send_email", {"to": f"{i}@example.com"}, {"queue": "emails"}) for i in range(4)])
    queue.enqueue("resize", {"size": 64}, queue="images")
    queue.enqueue("resize", {"size": 128}, queue="images", delay=600)
    queue.set_queue_limits("emails", concurrency=5, rate="100/s")
    bury(queue, "thumbnails", "image too large")
    queue.broker.set_paused("reports-nightly", True)
    playwright.expect(cell(page, "emails", "pending")).to_have_text("5")
    playwright.expect(cell(page, "images", "scheduled")).to_have_text("1")
    playwright.expect(page.locator('tr[data-queue="emails"]')).to_contain_text("5 at once, 100 per 1s")
    playwright.expect(page.locator('tr[data-queue="reports-nightly"]')).to_contain_text("paused")
    playwright.expect(cell(page, "images", "pending")).to_have_text("1")
    assert page.evaluate("window.sameDocument") is True
    playwright.expect(page.locator("#strip")).to_contain_text("pending")
    shot(page, "overview", tmp_path)

    page.set_viewport_size({"width": 390, "height": 740})  # a phone: the table scrolls, nothing overflows
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "phone", tmp_path)


def test_a_dead_task_is_found_by_its_error_text_and_retried_from_its_page(page, servers, queue, tmp_path):
    for i in range(3):
        bury(queue, "bounces", f"mailbox full #{i}")
    target = bury(queue, "bounces", "550 relay denied for example.org", to="b@example.org")
    page.goto(servers["open"].url + "#/dlq")
    page.fill("#dlq-text", "RELAY DENIED")
    page.keyboard.press("Enter")  # the keyboard submits the filter form
    rows = page.locator("tr[data-id]")
    playwright.expect(rows).to_have_count(1)
    playwright.expect(page.locator("#dlq-summary")).to_contain_text("1 match")
    shot(page, "dlq", tmp_path)

    rows.first.get_by_role("link").first.click()
    playwright.expect(page.locator('dd[data-field="state"]')).to_contain_text("dead")
    playwright.expect(page.locator("#traceback")).to_contain_text('File "mail.py"')
    shot(page, "task", tmp_path)
    page.get_by_role("button", name="Retry").click()
    playwright.expect(page.locator('dd[data-field="state"]')).to_contain_text("pending")
    assert queue.broker.find_task(target, "bounces").meta["state"] == "pending"  # type: ignore[union-attr]


def test_a_bulk_purge_asks_first_naming_how_many(page, servers, queue):
    ids = [bury(queue, "reports", "disk quota exceeded") for _ in range(3)]
    bury(queue, "reports", "something else")
    page.goto(servers["open"].url + "#/dlq?text=quota&queue=reports")
    playwright.expect(page.locator("tr[data-id]")).to_have_count(3)

    page.click("#purge-all")
    dialog = page.locator("dialog#confirm")
    playwright.expect(dialog).to_be_visible()
    playwright.expect(page.locator("#confirm-text")).to_contain_text("Delete 3 dead tasks")
    page.keyboard.press("Escape")  # cancelled: nothing happens
    playwright.expect(dialog).to_be_hidden()
    assert set(ids) <= set(queue.broker.dead_ids("reports"))

    page.click("#purge-all")
    page.click("#confirm-ok")
    playwright.expect(page.locator("#notice")).to_contain_text("Purged 3 tasks")
    playwright.expect(page.locator("tr[data-id]")).to_have_count(0)
    assert len(queue.broker.dead_ids("reports")) == 1


def test_pause_and_resume_change_what_a_worker_does(page, servers, queue, tmp_path):
    # Given a worker serving `held` before `other` (strict priority)
    worker = servers["procs"].start(
        "worker",
        "--app",
        "tests.apps.basic",
        "--queues",
        "held,other",
        "--concurrency",
        "1",
        "--lease",
        "6s",
        label="worker",
    )
    queue.enqueue("ok", {}, queue="held")
    until(lambda: queue.broker.count_in_state("held", "done") == 1, 20, what="the first task", logs=[worker])
    page.goto(servers["open"].url + "#/queue/held")
    page.get_by_role("button", name="Pause").click()
    playwright.expect(page.locator("h1")).to_contain_text("paused")
    # When a task waits in the paused queue and a later one in `other` is done
    waiting = queue.enqueue("ok", {"value": 1}, queue="held")
    later = queue.enqueue("ok", {"value": 2}, queue="other")
    until(
        lambda: queue.broker.count_in_state("other", "done") == 1,
        20,
        what="the later task",
        logs=[worker],
    )
    # Then the worker passed the paused queue by: its task is still pending
    assert queue.broker.find_task(waiting, "held").meta["state"] == "pending"  # type: ignore[union-attr]
    assert queue.broker.find_task(later, "other").meta["state"] == "done"  # type: ignore[union-attr]
    page.get_by_role("button", name="Resume").click()
    until(
        lambda: queue.broker.count_in_state("held", "done") == 2,
        20,
        what="the resumed task",
        logs=[worker],
    )

    queue.enqueue("sleep", {"seconds": 30}, queue="held")  # something to show on the workers page
    page.goto(servers["open"].url + "#/workers")
    playwright.expect(page.locator('td[data-field="lease_deadline"]')).to_contain_text(
        re.compile(r"in \d+ s")
    )
    shot(page, "workers", tmp_path)
    worker.kill()


def test_the_token_is_asked_once_and_a_cross_site_post_is_refused(page, servers, queue):
    locked = servers["locked"].url
    queue.enqueue("send_email", {}, queue="guarded")
    page.goto(locked)
    page.fill("#token", "not the token")
    page.keyboard.press("Enter")
    playwright.expect(page.get_by_role("alert")).to_contain_text("not the API token")
    page.fill("#token", TOKEN)
    page.keyboard.press("Enter")
    playwright.expect(cell(page, "guarded", "pending")).to_have_text("1")
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads the session
    page.reload()
    playwright.expect(cell(page, "guarded", "pending")).to_have_text("1")  # no second sign-in

    # A page of another site makes the browser post to the dashboard (a form: what any site can do)
    target = locked + "api/queue/pause?name=guarded"
    form = f'<form method="post" action="{target}" enctype="text/plain"><button>go</button></form>'
    other = page.context.new_page()
    other.route("http://evil.example/", lambda route: route.fulfill(content_type="text/html", body=form))
    other.goto("http://evil.example/")
    other.click("button")
    playwright.expect(other.locator("body")).to_contain_text("cross-origin request refused")
    assert queue.broker.paused(["guarded"]) == {"guarded": False}
    other.close()

    page.get_by_role("button", name="Sign out").click()
    playwright.expect(page.locator("#token")).to_be_visible()


def test_an_xss_payload_is_shown_as_text(page, servers, queue):
    evil = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 1">'
    task_id = bury(queue, "xss", f"bad input {evil}", name="<b>bold</b>", note=evil)
    page.goto(servers["open"].url + f"#/task/{task_id}?queue=xss")
    playwright.expect(page.locator("#payload")).to_contain_text("<script>window.pwned = 1</script>")
    playwright.expect(page.locator("#error-message")).to_contain_text(evil)
    playwright.expect(page.locator('dd[data-field="name"]')).to_have_text("<b>bold</b>")
    page.goto(servers["open"].url + "#/dlq?queue=xss")
    playwright.expect(page.locator("tr[data-id]")).to_contain_text("<b>bold</b>")
    assert page.evaluate("window.pwned") is None
    assert page.locator("main img, main script, main b").count() == 0


def test_a_waiting_task_links_to_the_tasks_it_waits_for(page, servers, queue):
    first = queue.enqueue("fetch", {"url": "https://example.com"}, queue="chain")
    second = queue.enqueue("parse", {}, queue="chain", after=[first])
    page.goto(servers["open"].url + "#/queue/chain?state=waiting")
    page.get_by_role("link", name=second).click()
    playwright.expect(page.locator('dd[data-field="state"]')).to_contain_text("waiting")
    page.locator('dd[data-field="blocked_by"]').get_by_role("link", name=first).click()
    playwright.expect(page.locator('dd[data-field="id"]')).to_have_text(first)
    playwright.expect(page.locator('dd[data-field="state"]')).to_contain_text("pending")
