"""The HTTP API (`taskq api`, `taskq_cli.api.create_app`) as its users meet it: through the ASGI test
client, and through a real `taskq api` process on a free loopback port, against a real Redis.

Issue 7: enqueue (one task or an atomic batch), inspect and operate with the same JSON fields as the
CLI's --json (checked against real `taskq ... --json` processes); a bearer token on every route but
/healthz, compared in constant time; bad input of every kind answers 4xx with one clear line and
writes nothing; Redis unreachable is 503; no stack trace ever reaches a client.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from taskq_cli import TaskQueue
from taskq_cli.api.guard import nesting_depth
from taskq_cli.api.schema import DlqRetryBody, EnqueueItem
from taskq_cli.protocol import Fetched
from tests.conftest import cli_env, run_python
from tests.support import Procs, free_port, until

with warnings.catch_warnings():  # starlette asks for httpx2; httpx (the api extra) works the same
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from taskq_cli.api import create_app

TOKEN = "s3cret-token-for-tests"
JSON_TYPE = {"Content-Type": "application/json"}  # a body without it answers 415 (issue 13)
LOCAL = "http://localhost"  # without a token the API answers only the names it listens on
UNREACHABLE_URL = "redis://127.0.0.1:1/0"
Cli = Callable[..., subprocess.CompletedProcess[str]]


# -- helpers ---------------------------------------------------------------------------------------


def cli_json(run_cli: Cli, *args: str) -> Any:
    result = run_cli(*args, "--json")
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def keys(raw: redis.Redis, namespace: str) -> list[str]:
    return sorted(raw.scan_iter(match=f"{namespace}:*", count=1000))


def bury(
    tq: TaskQueue, name: str = "t", queue: str = "default", payload: dict[str, Any] | None = None
) -> str:
    """Enqueue a task and fail its first attempt for good: it is dead."""
    task_id = tq.enqueue(name, payload or {}, queue=queue)
    job = tq.broker.fetch(queue, 30, "test-worker")
    assert isinstance(job, Fetched) and job.id == task_id
    failure = {"type": "Fail", "message": "gave up", "traceback": "Traceback: here"}
    assert tq.broker.fail(job, failure, final=True, delay=0, max_retries=3) == "dead"
    return task_id


def assert_error(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """An error answer: the status, JSON with a one-line `detail`, no stack trace."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and "\n" not in body["detail"] and body["detail"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    for word in words:
        assert word.lower() in body["detail"].lower(), body["detail"]
    return body


def counts(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`stats` per queue without the oldest pending task's age (it grows between two calls)."""
    return {
        name: {k: v for k, v in queue.items() if k != "oldest_pending_age"}
        for name, queue in stats["queues"].items()
    }


@pytest.fixture
def client(tq: TaskQueue) -> Iterator[TestClient]:
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def authed(tq: TaskQueue) -> Iterator[TestClient]:
    with TestClient(create_app(tq, token=TOKEN), base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def app_queue(redis_url: str, namespace: str) -> Iterator[TaskQueue]:
    """A TaskQueue that knows its handlers, as with `--app`."""
    tq = TaskQueue(redis_url=redis_url, namespace=namespace)

    @tq.task(name="greet", queue="greetings")
    def greet(to: str, times: int = 1) -> str:
        return f"hello {to}" * times

    yield tq
    tq.close()


# -- enqueue ---------------------------------------------------------------------------------------


def test_enqueue_answers_201_with_the_cli_json_fields_and_the_task_reads_back_as_task_show_json(
    client, run_cli
):
    response = client.post("/enqueue", json={"name": "send", "payload": {"to": "a@example.com"}})

    assert response.status_code == 201, response.text
    answer = response.json()
    cli_answer = cli_json(run_cli, "enqueue", "other", "{}")
    assert set(answer) == set(cli_answer) == {"id", "queue", "state", "duplicate"}
    assert (answer["queue"], answer["state"], answer["duplicate"]) == ("default", "pending", False)
    shown = client.get(f"/tasks/{answer['id']}")
    assert shown.status_code == 200
    assert shown.json() == cli_json(run_cli, "task", "show", answer["id"])
    assert shown.json()["payload"] == {"to": "a@example.com"}


def test_a_batch_is_enqueued_in_input_order_across_queues_and_answers_with_the_list(client, tq):
    items = [
        {"name": "a", "payload": {"n": 1}},
        {"name": "b", "queue": "other", "delay": "1h"},
        {"name": "c", "payload": {"n": 3}, "id": "custom-c", "max_retries": 5, "timeout": None},
    ]

    response = client.post("/enqueue", json=items)

    assert response.status_code == 201, response.text
    answers = response.json()
    assert [(a["queue"], a["state"]) for a in answers] == [
        ("default", "pending"),
        ("other", "scheduled"),
        ("default", "pending"),
    ]
    assert answers[2]["id"] == "custom-c"
    custom = tq.get_task("custom-c")
    assert custom is not None and (custom.max_retries, custom.timeout) == (5, None)


def test_one_invalid_item_in_a_batch_writes_nothing_and_the_answer_names_it(client, raw, namespace):
    items = [{"name": "fine"}, {"name": "bad", "delay": "soon"}, {"name": "also fine", "queue": "q"}]

    body = assert_error(client.post("/enqueue", json=items), 422, "nothing enqueued", "item 1", "soon")

    assert body["errors"][0]["loc"] == ["body", 1]
    assert keys(raw, namespace) == []


def test_every_invalid_item_of_a_batch_is_listed_with_its_place(client, raw, namespace):
    items = [{"name": "a", "max_retries": "3"}, {"name": "b"}, {"name": "c", "bogus": 1, "queue": 7}]

    body = assert_error(client.post("/enqueue", json=items), 422, "item 0", "and 1 more invalid")

    assert [e["loc"] for e in body["errors"]] == [
        ["body", 0, "max_retries"],
        ["body", 2, "queue"],
        ["body", 2, "bogus"],
    ]
    assert keys(raw, namespace) == []


def test_a_custom_id_makes_enqueue_idempotent_while_the_task_is_unfinished(client):
    first = client.post("/enqueue", json={"name": "x", "id": "once"}).json()
    again = client.post("/enqueue", json={"name": "x", "id": "once", "payload": {"other": 1}})

    assert again.status_code == 201
    assert again.json() == {**first, "duplicate": True}


def test_delay_and_at_schedule_the_task(client, raw):
    delayed = client.post("/enqueue", json={"name": "x", "delay": 60}).json()
    at = client.post("/enqueue", json={"name": "x", "at": "2099-01-01T00:00:00Z"}).json()

    assert delayed["state"] == at["state"] == "scheduled"
    assert client.get(f"/tasks/{at['id']}").json()["run_at"] == "2099-01-01T00:00:00.000Z"


def test_with_an_app_a_payload_the_handler_refuses_answers_422_with_the_pydantic_errors(
    app_queue, raw, namespace
):
    with TestClient(create_app(app_queue, token=""), base_url=LOCAL) as api:
        refused = api.post("/enqueue", json=[{"name": "greet", "payload": {"to": "a"}}, {"name": "greet"}])
        wrong = api.post("/enqueue", json={"name": "greet", "payload": {"to": "a", "times": "many", "x": 1}})
        body = assert_error(refused, 422, "item 1", "greet")
        assert body["errors"] == [
            {"loc": ["body", 1, "payload", "to"], "msg": "Field required", "type": "missing"}
        ]
        errors = assert_error(wrong, 422, "greet")["errors"]
        assert {(tuple(e["loc"]), e["type"]) for e in errors} == {
            (("body", "payload", "times"), "int_parsing"),
            (("body", "payload", "x"), "extra_forbidden"),
        }
        assert keys(raw, namespace) == []

        ok = api.post("/enqueue", json={"name": "greet", "payload": {"to": "a", "times": 2}})
        assert ok.status_code == 201 and ok.json()["queue"] == "greetings"  # the handler's queue


# -- bad input: 4xx with one line, nothing written ----------------------------------------------------------

NESTED = {"name": "x", "payload": {"a": json.loads("[" * 70 + "]" * 70)}}
BAD_BODIES: list[tuple[str, bytes, int, str]] = [
    ("malformed JSON", b'{"name": "x",', 400, "invalid JSON"),
    ("empty body", b"", 400, "empty"),
    ("not UTF-8", b'{"name": "\xff\xfe"}', 400, "UTF-8"),
    ("NaN", b'{"name": "x", "payload": {"v": NaN}}', 400, "NaN"),
    ("Infinity as a delay", b'{"name": "x", "delay": Infinity}', 400, "Infinity"),
    ("a 5000-digit number", b'{"name": "x", "payload": {"v": ' + b"9" * 5000 + b"}}", 400, "invalid JSON"),
    ("100,000 open brackets", b"[" * 100_000, 422, "nested too deeply"),
    ("100,000 nested objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 422, "nested too deeply"),
    ("nesting past 64 levels", json.dumps(NESTED).encode(), 422, "nested too deeply"),
    ("a JSON string", b'"hello"', 422, "expected a JSON object"),
    ("a number", b"42", 422, "expected a JSON object"),
    ("null", b"null", 422, "expected a JSON object"),
    ("an empty batch", b"[]", 422, "empty batch"),
    ("a batch of non-objects", b"[1, 2]", 422, "item 0"),
    ("no name", b'{"payload": {}}', 422, "name"),
    ("an empty name", b'{"name": ""}', 422, "name"),
    ("a blank name", b'{"name": "   "}', 422, "name"),
    ("a number as name", b'{"name": 5}', 422, "name"),
    ("a lone surrogate in the name", b'{"name": "a\\ud800b"}', 422, "Unicode"),
    ("an unknown field", b'{"name": "x", "priority": 1}', 422, "priority"),
    ("a list as payload", b'{"name": "x", "payload": [1]}', 422, "payload"),
    ("a string as payload", b'{"name": "x", "payload": "{}"}', 422, "payload"),
    ("a list as delay", b'{"name": "x", "delay": [1]}', 422, "delay"),
    ("an object as timeout", b'{"name": "x", "timeout": {}}', 422, "timeout"),
    ("a bad duration", b'{"name": "x", "delay": "soon"}', 422, "invalid duration"),
    ("a negative delay", b'{"name": "x", "delay": -1}', 422, "delay"),
    ("a delay past any timestamp", b'{"name": "x", "delay": "1e308"}', 422, "100 years"),
    ("a huge delay number", b'{"name": "x", "delay": 1e300}', 422, "delay"),
    ("a delay of a thousand years", b'{"name": "x", "delay": "365000d"}', 422, "100 years"),
    ("a timeout of a thousand years", b'{"name": "x", "timeout": "365000d"}', 422, "100 years"),
    ("delay and at", b'{"name": "x", "delay": 5, "at": "2099-01-01T00:00:00Z"}', 422, "not both"),
    ("a bad date", b'{"name": "x", "at": "tomorrow"}', 422, "date/time"),
    ("a date before 1970", b'{"name": "x", "at": "0001-01-01T00:00:00+14:00"}', 422, "between 1970 and 9999"),
    ("a boolean as at", b'{"name": "x", "at": true}', 422, "at"),
    ("a bad queue name", b'{"name": "x", "queue": "a b"}', 422, "queue"),
    ("a queue name with a newline", b'{"name": "x", "queue": "abc\\n"}', 422, "queue"),
    ("a non-printable id", b'{"name": "x", "id": "a\\u0000b"}', 422, "id"),
    ("a 201-character id", json.dumps({"name": "x", "id": "i" * 201}).encode(), 422, "id"),
    ("a negative max_retries", b'{"name": "x", "max_retries": -1}', 422, "max_retries"),
    ("a boolean max_retries", b'{"name": "x", "max_retries": true}', 422, "max_retries"),
    ("a fractional max_retries", b'{"name": "x", "max_retries": 1.5}', 422, "max_retries"),
    ("a huge max_retries", b'{"name": "x", "max_retries": 1' + b"0" * 30 + b"}", 422, "max_retries"),
    ("10,001 tasks", json.dumps([{"name": "x"}] * 10_001).encode(), 422, "at most 10000"),
]


@pytest.mark.parametrize(
    ("body", "status", "words"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
def test_bad_enqueue_input_answers_4xx_with_a_clear_line_and_writes_nothing(
    client, raw, namespace, body, status, words
):
    started = time.perf_counter()
    response = client.post("/enqueue", content=body, headers={"content-type": "application/json"})

    assert_error(response, status, words)
    assert keys(raw, namespace) == []
    assert time.perf_counter() - started < 3


def test_a_body_over_the_limit_answers_413_whether_or_not_it_declares_its_length(tq, raw, namespace):
    with TestClient(create_app(tq, token="", max_body=1000), base_url=LOCAL) as api:
        item = {"name": "x", "payload": {"blob": "z" * 980}}
        declared = api.post("/enqueue", json=item)
        streamed = api.post(
            "/enqueue", content=iter([json.dumps(item).encode()[:600], b"z" * 600]), headers=JSON_TYPE
        )
        just_fits = api.post("/enqueue", json={"name": "x", "payload": {"blob": "z" * 900}})

    assert_error(declared, 413, "at most 1000 bytes")
    assert_error(streamed, 413, "at most 1000 bytes")
    assert just_fits.status_code == 201


def test_the_default_body_limit_is_one_mib(client, raw, namespace):
    big = {"name": "x", "payload": {"blob": "z" * (1024 * 1024)}}
    assert_error(client.post("/enqueue", json=big), 413, "1048576")
    assert keys(raw, namespace) == []


def test_the_nesting_check_counts_brackets_outside_strings_only():
    assert nesting_depth('{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert nesting_depth('["\\"[[[", "\\\\", [[]]]') == 3
    assert nesting_depth('"unclosed [[[[') == 0
    assert nesting_depth("") == 0


UNICODE = {
    "emoji": "😀 emoji",
    "right-to-left": "عربى rtl",
    "NUL": "nul \u0000 inside",
    "BOM": "\ufeffbom",
    "combining": "combining e\u0301",
    "line separator": "\u2028 line sep",
    "long": "a" * 5_000,
}


@pytest.mark.parametrize("text", UNICODE.values(), ids=UNICODE.keys())
def test_unicode_payloads_and_names_round_trip_unchanged(client, text):
    name = f"t {text}".replace("\x00", "")  # a NUL is refused in a name (issue 13), kept in a payload
    created = client.post("/enqueue", json={"name": name, "payload": {text: text}})
    assert created.status_code == 201, created.text

    shown = client.get(f"/tasks/{created.json()['id']}").json()

    assert (shown["name"], shown["payload"]) == (name, {text: text})


def test_a_lone_surrogate_inside_a_payload_is_kept_and_read_back_as_json_escapes(client):
    created = client.post(
        "/enqueue", content=b'{"name": "x", "payload": {"s": "\\udcff"}}', headers=JSON_TYPE
    )
    assert created.status_code == 201, created.text

    shown = client.get(f"/tasks/{created.json()['id']}")

    assert shown.status_code == 200
    assert b"\\udcff" in shown.content
    assert shown.json()["payload"] == {"s": "\udcff"}


def test_a_query_parameter_given_twice_is_refused(client):
    assert_error(client.get("/dlq?limit=5&limit=6"), 422, "limit", "more than once")


# -- inspecting and operating: the CLI's --json fields ------------------------------------------------------


def test_an_unknown_task_answers_404_for_show_and_cancel(client):
    assert_error(client.get("/tasks/nope"), 404, "nope", "not found")
    assert_error(client.delete("/tasks/nope"), 404, "not found")


def test_a_task_id_with_slashes_and_spaces_can_be_shown_and_cancelled(client):
    client.post("/enqueue", json={"name": "x", "id": "reports/2026 11/28"})

    assert client.get("/tasks/reports/2026%2011/28").json()["id"] == "reports/2026 11/28"
    assert client.delete("/tasks/reports/2026%2011/28").json()["cancelled"] is True


def test_cancel_answers_like_task_cancel_json_and_a_finished_task_answers_409(client, tq, run_cli):
    pending = tq.enqueue("x", {})
    cancelled = client.delete(f"/tasks/{pending}")
    dead = bury(tq)

    assert cancelled.json() == {"id": pending, "cancelled": True, "state": "pending"}
    assert_error(client.get(f"/tasks/{pending}"), 404)
    assert_error(client.delete(f"/tasks/{dead}"), 409, "already dead")
    other = tq.enqueue("y", {})
    assert cli_json(run_cli, "task", "cancel", other) == {"id": other, "cancelled": True, "state": "pending"}


def test_stats_queues_and_dlq_answer_exactly_what_the_cli_json_prints(client, tq, run_cli):
    bury(tq, "broken", "mail")
    bury(tq, "broken", "default")
    tq.enqueue("later", {}, queue="mail", delay=600)
    client.post("/queues/mail/pause")

    stats = client.get("/stats").json()
    cli_stats = cli_json(run_cli, "stats")
    assert stats["limits"] == cli_stats["limits"] and stats["workers"] == cli_stats["workers"] == []
    assert counts(stats) == counts(cli_stats)
    assert counts(client.get("/stats?queue=mail").json()) == {"mail": counts(cli_stats)["mail"]}
    assert client.get("/queues").json() == cli_json(run_cli, "queue", "list")
    assert [q["paused"] for q in client.get("/queues").json()] == [False, True]
    assert client.get("/dlq").json() == cli_json(run_cli, "dlq", "list")
    assert client.get("/dlq?queue=mail&limit=1").json() == cli_json(
        run_cli, "dlq", "list", "-q", "mail", "--limit", "1"
    )
    assert_error(client.get("/stats?queue=nowhere"), 404, "nowhere")
    assert client.post("/queues/mail/resume").json() == {"name": "mail", "paused": False}
    assert [q["paused"] for q in client.get("/queues").json()] == [False, False]


def test_dlq_listing_filters_by_name_pages_and_an_unknown_queue_is_404(client, tq):
    ids = [bury(tq, name) for name in ("a", "b", "a")]

    listed = [t["id"] for t in client.get("/dlq").json()]  # newest first (ties in one ms: any order)

    assert sorted(listed) == sorted(ids)
    assert [t["id"] for t in client.get("/dlq?name=a").json()] == [i for i in listed if i != ids[1]]
    assert [t["id"] for t in client.get("/dlq?limit=1&offset=1").json()] == listed[1:2]
    assert_error(client.get("/dlq?queue=nowhere"), 404, "nowhere")
    assert_error(client.get("/dlq?limit=0"), 422, "limit")
    assert_error(client.get("/dlq?limit=1001"), 422, "limit")


def test_dlq_retry_by_ids_or_all_answers_like_the_cli_and_lists_missing_ids(client, tq, run_cli):
    first, second, third = bury(tq, "a"), bury(tq, "b", "other"), bury(tq, "c", "other")

    by_ids = client.post("/dlq/retry", json={"ids": [first, "ghost"]})
    by_filter = client.post("/dlq/retry", json={"all": True, "queue": "other", "name": "b"})

    assert by_ids.json() == {"retried": 1, "ids": [first], "missing": ["ghost"], "refused": []}
    assert by_filter.json() == {"retried": 1, "ids": [second], "missing": [], "refused": []}
    assert client.get(f"/tasks/{first}").json()["state"] == "pending"
    result = run_cli("dlq", "retry", third, "--json")
    assert set(json.loads(result.stdout)) == set(by_ids.json())


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "give task ids, or all"),
        ({"ids": ["a"], "all": True}, "not both"),
        ({"ids": "a"}, "ids"),
        ({"all": "yes"}, "all"),
        ({"all": True, "extra": 1}, "extra"),
        ({"all": True, "queue": "no spaces"}, "queue"),
    ],
)
def test_dlq_retry_refuses_a_bad_selection_with_422(client, body, words):
    assert_error(client.post("/dlq/retry", json=body), 422, words)


def test_dlq_purge_deletes_the_chosen_dead_tasks_with_filters(client, tq):
    old, keep, other = bury(tq, "a"), bury(tq, "b"), bury(tq, "c", "other")

    assert_error(client.delete("/dlq"), 422, "give task ids, or all")
    assert_error(client.delete(f"/dlq?id={old}&all=true"), 422, "not both")
    assert client.delete(f"/dlq?id={old}&id=ghost").json() == {
        "purged": 1,
        "ids": [old],
        "missing": ["ghost"],
        "refused": [],
    }
    assert client.delete("/dlq?all=true&older_than=1d").json()["purged"] == 0
    assert client.delete("/dlq?all=true&queue=other").json()["ids"] == [other]
    assert [t["id"] for t in client.get("/dlq").json()] == [keep]
    assert_error(client.delete("/dlq?all=true&older_than=soon"), 422, "duration")


def test_healthz_answers_ok_when_redis_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_redis_unreachable_answers_503_with_one_line_on_every_route(namespace):
    with TestClient(
        create_app(TaskQueue(redis_url=UNREACHABLE_URL, namespace=namespace), token=""), base_url=LOCAL
    ) as api:
        assert_error(api.get("/healthz"), 503, "cannot reach Redis")
        assert_error(api.post("/enqueue", json={"name": "x"}), 503, "cannot reach Redis")
        for path in ("/stats", "/queues", "/dlq", "/tasks/x"):
            assert_error(api.get(path), 503, "cannot reach Redis")
        assert_error(api.post("/enqueue", json={"name": ""}), 422)  # input is checked first


def test_an_unexpected_error_answers_500_without_a_stack_trace(tq, monkeypatch):
    from taskq_cli.admin import Admin

    def explode(self: Admin) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Admin, "queue_infos", explode)
    with TestClient(create_app(tq, token=""), base_url=LOCAL, raise_server_exceptions=False) as api:
        response = api.get("/queues")

    assert_error(response, 500, "internal error")
    assert "secret internals" not in response.text


# -- security: the token, CORS, mounting -----------------------------------------------------------------


def _operations(api: TestClient, headers: dict[str, str] | None = None) -> list[tuple[str, str]]:
    spec = api.get("/openapi.json", headers=headers).json()
    return [
        (method.upper(), path.replace("{task_id}", "x").replace("{name}", "q"))
        for path, ops in spec["paths"].items()
        for method in ops
    ]


def test_with_a_token_every_route_but_healthz_answers_401_without_it_and_writes_nothing(
    authed, raw, namespace
):
    operations = _operations(authed, {"Authorization": f"Bearer {TOKEN}"})
    assert len(operations) == 13  # GET /tasks/{id}/result (issue 15), POST /tasks/{id}/run (issue 20)

    for method, path in [*operations, ("GET", "/openapi.json"), ("GET", "/nowhere")]:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            response = authed.request(
                method, path, headers=headers, json={"name": "x"} if method == "POST" else None
            )
            if path == "/healthz":
                assert response.status_code == 200
                continue
            assert_error(response, 401, "bearer token")
            assert response.headers["www-authenticate"] == "Bearer"
    assert keys(raw, namespace) == []
    assert authed.get("/docs").status_code == 401  # no docs page: it could not load the schema


def test_with_the_token_the_routes_answer_and_the_scheme_is_case_insensitive(authed):
    ok = authed.post("/enqueue", json={"name": "x"}, headers={"Authorization": f"bearer {TOKEN}"})
    assert ok.status_code == 201
    assert authed.get("/stats", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    spec = authed.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert spec["security"] == [{"bearer": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_the_token_comes_from_taskq_api_token_when_not_given(tq, monkeypatch):
    monkeypatch.setenv("TASKQ_API_TOKEN", TOKEN)
    with TestClient(create_app(tq), base_url=LOCAL) as api:
        assert api.get("/stats").status_code == 401
        assert api.get("/stats", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_without_a_token_nothing_asks_for_one_and_the_docs_page_is_served(client):
    assert client.get("/stats").status_code == 200
    assert "security" not in client.get("/openapi.json").json()
    assert client.get("/docs").status_code == 200


def test_cors_is_off_by_default_and_allows_only_the_given_origins(tq):
    preflight = {"Origin": "https://ops.example.com", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as closed:
        response = closed.options("/enqueue", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    with TestClient(
        create_app(tq, token=TOKEN, cors_origins=["https://ops.example.com"]), base_url=LOCAL
    ) as open_:
        allowed = open_.options("/enqueue", headers=preflight)
        other = open_.options("/enqueue", headers={**preflight, "Origin": "https://evil.example.com"})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://ops.example.com"
        assert "access-control-allow-origin" not in other.headers


def test_the_app_mounts_inside_another_asgi_app_with_its_token_and_health_check(tq):
    parent = FastAPI()
    parent.mount("/taskq", create_app(tq, token=TOKEN))

    with TestClient(parent) as api:
        assert api.get("/taskq/healthz").status_code == 200
        assert api.get("/taskq/stats").status_code == 401
        created = api.post("/taskq/enqueue", json={"name": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert created.status_code == 201
        shown = api.get(f"/taskq/tasks/{created.json()['id']}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert shown.json()["name"] == "x"


# -- the OpenAPI document --------------------------------------------------------------------------------


def test_the_openapi_document_describes_every_route_its_bodies_errors_and_examples(client):
    spec = client.get("/openapi.json").json()

    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/enqueue",
        "/tasks/{task_id}",
        "/tasks/{task_id}/result",
        "/tasks/{task_id}/run",
        "/stats",
        "/queues",
        "/queues/{name}/pause",
        "/queues/{name}/resume",
        "/dlq",
        "/dlq/retry",
        "/healthz",
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation["summary"] and operation["description"], (method, path)
            assert "503" in operation["responses"], (method, path)
            for status, answer in operation["responses"].items():
                assert "$ref" in json.dumps(answer["content"]["application/json"]["schema"]), (
                    method,
                    path,
                    status,
                )
    for name in ("EnqueueItem", "DlqRetryBody", "TaskDoc", "EnqueueAnswer", "StatsAnswer", "ErrorBody"):
        assert name in spec["components"]["schemas"], name
    enqueue = spec["paths"]["/enqueue"]["post"]["requestBody"]["content"]["application/json"]
    for example in enqueue["examples"].values():
        for item in example["value"] if isinstance(example["value"], list) else [example["value"]]:
            EnqueueItem.model_validate(item)
    retry = spec["paths"]["/dlq/retry"]["post"]["requestBody"]["content"]["application/json"]
    for example in retry["examples"].values():
        DlqRetryBody.model_validate(example["value"])
    assert spec["components"]["schemas"]["TaskDoc"]["examples"]


def test_the_enqueue_examples_of_the_document_are_accepted(client):
    spec = client.get("/openapi.json").json()
    examples = spec["paths"]["/enqueue"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    for example in examples.values():
        assert client.post("/enqueue", json=example["value"]).status_code == 201


# -- a real `taskq api` process ------------------------------------------------------------------------------


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def serve(procs: Procs, redis_url: str, namespace: str) -> Callable[..., str]:
    """Start `taskq api` on a free loopback port; returns its base URL once /healthz answers."""

    def start(*args: str, **env: str) -> str:
        port = free_port()
        proc = procs.start(
            "api", "--port", str(port), "--no-access-log", *args, env=cli_env(redis_url, namespace, **env)
        )
        url = f"http://127.0.0.1:{port}"
        until(lambda: healthy(url) or not proc.running(), 20, what="taskq api answering", logs=[proc])
        assert proc.running(), proc.report()
        return url

    return start


def test_a_real_taskq_api_process_enqueues_what_the_cli_then_sees(serve, run_cli):
    url = serve()

    single = httpx.post(f"{url}/enqueue", json={"name": "x", "payload": {"n": 1}})
    batch = httpx.post(f"{url}/enqueue", json=[{"name": "y"}, {"name": "z", "queue": "other"}])
    bad = httpx.post(f"{url}/enqueue", content=b"[" * 100_000, headers=JSON_TYPE)

    assert single.status_code == batch.status_code == 201
    assert cli_json(run_cli, "task", "show", single.json()["id"])["payload"] == {"n": 1}
    assert counts(httpx.get(f"{url}/stats").json()) == counts(cli_json(run_cli, "stats"))
    assert_error(bad, 422, "nested too deeply")
    assert "server" not in single.headers  # no server banner


def test_a_real_process_with_a_token_file_or_env_token_requires_it(serve, tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    from_file = serve("--token-file", str(token_file))
    from_env = serve(TASKQ_API_TOKEN=TOKEN)

    for url in (from_file, from_env):
        assert_error(httpx.get(f"{url}/stats"), 401)
        assert httpx.get(f"{url}/stats", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_real_process_stops_cleanly_on_sigterm(procs: Procs) -> None:
    port = free_port()
    proc = procs.start("api", "--port", str(port))
    until(lambda: healthy(f"http://127.0.0.1:{port}") or not proc.running(), 20, what="api up", logs=[proc])
    proc.send(signal.SIGTERM)
    proc.wait(15)
    stderr = proc.stderr
    assert proc.popen.returncode == 0, stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "env", "code", "words"),
    [
        (["--host", "0.0.0.0"], {}, 2, "refusing to serve on 0.0.0.0 without a token"),
        (["--host", "192.0.2.10"], {}, 2, "without a token"),
        (["--token-file", "/nonexistent/token"], {}, 2, "cannot read the token file"),
        ([], {"TASKQ_API_TOKEN": "has space"}, 2, "printable ASCII"),
        (["--max-body", "lots"], {}, 2, "invalid size"),
        (["--port", "0"], {}, 2, "port"),
    ],
)
def test_taskq_api_refuses_unsafe_or_bad_options_with_one_line_and_exit_2(
    run_cli, redis_url, namespace, args, env, code, words
):
    result = run_cli("api", *args, env=cli_env(redis_url, namespace, **env), timeout=20)

    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskq: error:"), result.stderr
    assert words.lower() in lines[0].lower()


def test_taskq_api_without_the_api_extra_exits_1_saying_what_to_install(redis_url, namespace):
    code = "import sys; sys.modules['uvicorn'] = None; from taskq_cli.cli.app import main; main(['api'])"
    result = run_python(code, redis_url, namespace)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "taskq: error: the HTTP API is not installed: pip install 'taskq-cli[api]'"
    ]


def test_taskq_enqueue_does_not_import_the_web_stack(redis_url, namespace):
    code = (
        "import sys; from taskq_cli.cli.app import run; rc = run(['enqueue', 'x']);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette')))"
    )
    result = run_python(code, redis_url, namespace)

    assert result.stdout.splitlines()[-1] == "[]", result.stdout + result.stderr
