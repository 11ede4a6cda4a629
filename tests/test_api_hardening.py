"""The HTTP API against hostile web pages, slow and oversized clients, and unbounded data (issue 13,
points 13-16): through the ASGI test client, and through a real `taskq api` process spoken to with
raw sockets, against a real Redis."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from starlette.exceptions import StarletteDeprecationWarning

from taskq_cli import TaskQueue
from taskq_cli.admin import Admin
from taskq_cli.config import RetryDefaults, Settings
from taskq_cli.errors import UsageError
from taskq_cli.producer import AT_RANGE
from taskq_cli.scheduler import Maintenance
from taskq_cli.timeparse import MAX_SECONDS
from tests import test_api
from tests.conftest import cli_env
from tests.support import nskeys
from tests.test_api import LOCAL, TOKEN, assert_error, bury, keys

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from taskq_cli.api import create_app

AUTH = {"Authorization": f"Bearer {TOKEN}"}
serve = test_api.serve  # the fixture that starts a real `taskq api` on a free port


@pytest.fixture
def client(tq: TaskQueue) -> Iterator[TestClient]:
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as test_client:
        yield test_client


# -- 13: cross-site requests -------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_declared_json_answers_415_and_writes_nothing(
    client, raw, namespace, content_type
):
    # Given the bodies an HTML form can send without any script (no preflight): text/plain, urlencoded
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = json.dumps({"name": "x"}).encode()
    # When they reach the routes that take a body
    enqueued = client.post("/enqueue", content=body, headers=headers)
    retried = client.post("/dlq/retry", content=b'{"all": true}', headers=headers)
    # Then both are refused before anything is read or written
    assert_error(enqueued, 415, "application/json")
    assert_error(retried, 415, "application/json")
    assert keys(raw, namespace) == []
    json_with_charset = {"Content-Type": "application/json; charset=utf-8"}
    assert client.post("/enqueue", content=body, headers=json_with_charset).status_code == 201


def test_a_foreign_origin_cannot_change_anything_but_can_still_read(client, tq, raw, namespace):
    evil = {"Origin": "https://evil.example"}
    changes = [
        client.post("/enqueue", json={"name": "x"}, headers=evil),
        client.post("/queues/default/pause", headers=evil),
        client.post("/dlq/retry", json={"all": True}, headers=evil),
        client.delete("/dlq?all=true", headers=evil),
        client.delete("/tasks/some-id", headers=evil),
        client.post("/enqueue", json={"name": "x"}, headers={"Origin": "null"}),  # sandboxed pages
        client.post("/enqueue", json={"name": "x"}, headers={"Origin": "http://localhost:9999"}),
    ]
    for response in changes:
        assert_error(response, 403, "cross-origin")
    assert keys(raw, namespace) == []
    # a read is harmless (without CORS the page cannot see the answer); the API's own pages work
    assert client.get("/stats", headers=evil).status_code == 200
    assert client.post("/enqueue", json={"name": "x"}, headers={"Origin": LOCAL}).status_code == 201


def test_an_origin_allowed_through_cors_may_change_things(tq):
    ops = {"Origin": "https://ops.example.com", **AUTH}
    app = create_app(tq, token=TOKEN, cors_origins=["https://ops.example.com"])
    with TestClient(app, base_url=LOCAL) as api:
        created = api.post("/enqueue", json={"name": "x"}, headers=ops)
        other = api.post("/enqueue", json={"name": "x"}, headers={**ops, "Origin": "https://evil.example"})
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == "https://ops.example.com"
    assert_error(other, 403, "cross-origin")


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example", 421),  # DNS rebinding: evil.example now resolves to 127.0.0.1
        ("evil.example:8000", 421),
        ("localhost.evil.example", 421),
        ("localhost:8000", 200),
        ("127.0.0.1:8000", 200),
        ("[::1]:8000", 200),
        ("LOCALHOST", 200),
    ],
)
def test_without_a_token_a_host_header_naming_another_site_is_refused(tq, host, status):
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as api:
        response = api.get("/stats", headers={"Host": host})
    assert response.status_code == status, response.text
    if status != 200:
        assert_error(response, status, "Host")
        assert "queues" not in response.text


def test_with_a_token_any_host_header_is_answered(tq):
    with TestClient(create_app(tq, token=TOKEN), base_url="http://taskq.internal.example") as api:
        assert api.get("/stats", headers=AUTH).status_code == 200


def test_taskq_api_answers_the_names_it_listens_on_with_its_port():
    from taskq_cli.api.guard import HostRule

    rule = HostRule.bound_to("127.0.0.1", 8000)
    assert [rule.allows(h) for h in (b"localhost:8000", b"127.0.0.1:8000", b"[::1]:8000", b"localhost")] == [
        True
    ] * 4
    assert not rule.allows(b"localhost:8001") and not rule.allows(b"10.0.0.1:8000")
    assert not rule.allows(b"evil.example:8000") and not rule.allows(b"[::1")
    wide = HostRule.bound_to("0.0.0.0", 8000)  # names unknown: any address, no name but localhost
    assert wide.allows(b"192.0.2.7:8000") and not wide.allows(b"evil.example:8000")
    named = HostRule.bound_to("taskq.lan", 8000)
    assert named.allows(b"taskq.lan:8000") and not named.allows(b"evil.example:8000")


def test_a_real_process_refuses_a_rebound_host_and_a_foreign_origin(serve):
    url = serve()
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: evil.example:%d\r\n\r\n" % port)
        assert s.recv(200).startswith(b"HTTP/1.1 421 ")
    assert httpx.get(f"http://localhost:{port}/stats").status_code == 200
    form = httpx.post(f"{url}/enqueue", content=b'{"name": "x"}', headers={"Content-Type": "text/plain"})
    assert_error(form, 415)


def test_cors_origin_star_without_a_token_is_refused_at_start(run_cli, redis_url, namespace):
    result = run_cli("api", "--cors-origin", "*", env=cli_env(redis_url, namespace), timeout=20)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "taskq: error: --cors-origin '*' needs a token: any web page could use the API"
    ]
    with pytest.raises(UsageError):
        create_app(TaskQueue(redis_url="redis://127.0.0.1:1/0"), token="", cors_origins=["*"])


# -- 14: slow and oversized clients ------------------------------------------------------------------------


def _answer(s: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes, or until `timeout` passes."""
    s.settimeout(timeout)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    except ConnectionResetError:
        data += b"<reset>"
    return data


def test_healthz_answers_at_once_without_reading_a_body_it_does_not_take(serve):
    # Given a server with a token, and clients that announce a 1 MiB body to /healthz but send 10 bytes
    url = serve(TASKQ_API_TOKEN=TOKEN)
    port = int(url.rsplit(":", 1)[1])
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
    try:
        for s in sockets:
            s.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n0123456789"
            )
        # Then each is answered at once: the server never waits for a body no route reads
        started = time.monotonic()
        for s in sockets:
            s.settimeout(3)
            assert s.recv(100).startswith(b"HTTP/1.1 200 "), "no answer within 3 s"
        assert time.monotonic() - started < 3
    finally:
        for s in sockets:
            s.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /stats HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",  # headers never finished
        b"POST /enqueue HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{",  # a body never finished
        b"",  # a connection that sends nothing
    ],
    ids=["headers", "body", "nothing"],
)
def test_a_request_not_received_within_the_read_timeout_is_answered_408_and_closed(serve, request_bytes):
    url = serve("--read-timeout", "1")
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        started = time.monotonic()
        s.sendall(request_bytes)
        answer = _answer(s, timeout=6)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"application/json" in answer and b"within 1 s" in answer
    assert 0.9 < elapsed < 4, elapsed


@pytest.mark.parametrize("size", [2 * 1024 * 1024, 8 * 1024 * 1024])
def test_a_client_sending_a_body_over_the_limit_receives_the_413(serve, raw, namespace, size):
    # urllib sends the whole body before it reads, with `Connection: close`
    url = serve()
    request = urllib.request.Request(
        f"{url}/enqueue", data=b"x" * size, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=20)
    assert refused.value.code == 413
    assert "too large" in json.loads(refused.value.read())["detail"]
    assert keys(raw, namespace) == []


def test_a_request_that_is_not_http_gets_a_json_400(serve):
    url = serve()
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = _answer(s, timeout=5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"application/json" in head.lower(), answer
    assert json.loads(body)["detail"]


def test_a_port_in_use_exits_1_with_one_line(run_cli, redis_url, namespace):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run_cli("api", "--port", str(port), env=cli_env(redis_url, namespace), timeout=20)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"taskq: error: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


# -- 15: unbounded answers and names -------------------------------------------------------------------


def test_dlq_listings_cut_large_payloads_and_say_so_the_task_route_shows_them_whole(client, tq):
    big = {"blob": "x" * 300_000}
    ids = [bury(tq, "big", payload=big) for _ in range(5)]
    small = bury(tq, "small", payload={"n": 1})

    response = client.get("/dlq?limit=1000")

    assert response.status_code == 200
    assert len(response.content) < 50_000, len(response.content)
    listed = {t["id"]: t for t in response.json()}
    for task_id in ids:
        assert listed[task_id]["payload"] is None and listed[task_id]["payload_truncated"] is True
        assert client.get(f"/tasks/{task_id}").json()["payload"] == big
    assert listed[small]["payload"] == {"n": 1} and "payload_truncated" not in listed[small]


def test_dlq_listings_cut_long_error_texts(client, tq):
    task_id = tq.enqueue("t", {})
    job = tq.broker.fetch("default", 30, "w")
    failure = {"type": "Fail", "message": "m" * 20_000, "traceback": "t" * 50_000}
    tq.broker.fail(job, failure, final=True, delay=0, max_retries=0)

    [shown] = client.get("/dlq").json()

    assert shown["id"] == task_id and shown["last_error_truncated"] is True
    assert len(shown["last_error"]["message"]) <= 4096 and len(shown["last_error"]["traceback"]) <= 4096


def test_the_number_of_queues_is_bounded_and_a_new_one_past_it_is_refused(redis_url, namespace, raw, run_cli):
    assert Settings().max_queues == 1000
    tq = TaskQueue(redis_url=redis_url, namespace=namespace, max_queues=3)
    for q in ("a", "b", "c"):
        tq.enqueue("t", {}, queue=q)
    # a new name past the bound: refused, nothing written; the known ones still take tasks
    with pytest.raises(UsageError, match="too many queues"):
        tq.enqueue("t", {}, queue="d")
    tq.enqueue("t", {}, queue="a")
    assert not [k for k in keys(raw, namespace) if "{d}" in k]
    assert raw.scard(nskeys(namespace).queues) == 3
    # the HTTP API: a batch naming a new queue writes nothing (422)
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as api:
        batch = api.post("/enqueue", json=[{"name": "t", "queue": "a"}, {"name": "t", "queue": "e"}])
    assert_error(batch, 422, "too many queues")
    assert raw.llen(f"{namespace}:{{a}}:pending") == 2
    # the CLI (TASKQ_MAX_QUEUES): exit 2, one line
    result = run_cli("enqueue", "t", "--queue", "f", env=cli_env(redis_url, namespace, TASKQ_MAX_QUEUES="3"))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "TASKQ_MAX_QUEUES" in result.stderr
    tq.close()


def test_maintenance_forgets_empty_queues_nothing_references(tq, raw, namespace):
    broker = tq.broker
    for q in ("emptied", "paused", "busy", "counted", "scheduled-by-cron"):
        tq.enqueue("t", {}, queue=q)
    for q in ("emptied", "paused", "scheduled-by-cron"):
        Admin(broker).clear(q)
    broker.set_paused("paused", True)
    broker.cron_put("nightly", json.dumps({"name": "nightly", "task": "t", "queue": "scheduled-by-cron"}))
    job = broker.fetch("counted", 30, "w")  # done: the queue keeps its counters
    assert job is not None and broker.ack(job, None, 600)
    [done_id] = raw.zrange(f"{namespace}:{{counted}}:done", 0, -1)
    broker.dlq_purge("counted", [done_id])

    Maintenance(broker, RetryDefaults()).tick(broker.known_queues())

    assert broker.known_queues() == ["busy", "counted", "paused", "scheduled-by-cron"]
    assert not [k for k in keys(raw, namespace) if "{emptied}" in k]
    # enqueueing to a forgotten name names it again
    tq.enqueue("t", {}, queue="emptied")
    assert "emptied" in broker.known_queues()


def test_a_queue_being_forgotten_while_tasks_arrive_stays_known(redis_url, namespace):
    import threading

    producer = TaskQueue(redis_url=redis_url, namespace=namespace)
    keeper = TaskQueue(redis_url=redis_url, namespace=namespace)
    names = [f"q{i}" for i in range(150)]
    stop = threading.Event()

    def forget_all() -> None:
        while not stop.is_set():
            for name in names:
                keeper.broker.forget_if_empty(name)

    thread = threading.Thread(target=forget_all)
    thread.start()
    try:
        for name in names:
            producer.enqueue("t", {}, queue=name)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert set(producer.broker.known_queues()) == set(names)
    producer.close()
    keeper.close()


# -- 16: small ones -------------------------------------------------------------------------------------


def test_healthz_answers_a_short_reason_when_redis_fails_and_errors_do_not_echo_redis_internals(
    tq, monkeypatch
):
    from redis.sentinel import MasterNotFoundError

    pool = "ConnectionPool<SentinelConnectionPool<service=mymaster(master)," + " x" * 1000 + ">>"

    def no_master() -> None:
        raise MasterNotFoundError(f"No master found for 'mymaster' : {pool}")

    def no_permission(self: Any) -> None:
        raise redis.exceptions.NoPermissionError(
            "NOPERM User u has no permissions to run 'hgetall' on secret:key"
        )

    monkeypatch.setattr(tq.broker.client, "ping", no_master)
    monkeypatch.setattr(Admin, "queue_infos", no_permission)
    with TestClient(create_app(tq, token=""), base_url=LOCAL) as api:
        health = api.get("/healthz")
        queues = api.get("/queues")
    assert health.status_code == 503 and len(health.content) < 200, health.text
    assert "mymaster" not in health.text and health.json()["detail"] == "cannot reach Redis"
    assert_error(queues, 503)
    assert "secret" not in queues.text and "hgetall" not in queues.text


def test_an_unreachable_redis_is_not_named_in_the_answer(namespace):
    broken = TaskQueue(redis_url="redis://127.0.0.1:1/0", namespace=namespace)
    with TestClient(create_app(broken, token=""), base_url=LOCAL) as api:
        for response in (api.get("/stats"), api.post("/enqueue", json={"name": "x"}), api.get("/healthz")):
            assert response.status_code == 503 and "127.0.0.1:1" not in response.text, response.text


def test_the_documented_bounds_of_delay_timeout_and_at_are_the_ones_the_server_applies(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    item = schemas["EnqueueItem"]["properties"]

    def number_bounds(field: str) -> dict[str, Any]:
        [number] = [s for s in item[field]["anyOf"] if s.get("type") == "number"]
        return number

    for field in ("delay", "timeout"):
        assert number_bounds(field)["maximum"] == MAX_SECONDS
    assert (number_bounds("at")["minimum"], number_bounds("at")["maximum"]) == AT_RANGE
    # the documented extremes are accepted, one past them refused
    assert client.post("/enqueue", json={"name": "x", "delay": MAX_SECONDS}).status_code == 201
    assert client.post("/enqueue", json={"name": "x", "at": AT_RANGE[1]}).status_code == 201
    assert client.post("/enqueue", json={"name": "x", "delay": MAX_SECONDS + 1}).status_code == 422
    assert client.post("/enqueue", json={"name": "x", "at": AT_RANGE[1] + 1}).status_code == 422


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("put", "/enqueue", "POST"),
        ("get", "/enqueue", "POST"),
        ("put", "/tasks/x", "DELETE, GET"),
        ("patch", "/dlq", "DELETE, GET"),
        ("post", "/stats", "GET"),
        ("delete", "/queues/a/pause", "POST"),
    ],
)
def test_every_405_lists_the_allowed_methods(client, method, path, allow):
    response = client.request(method.upper(), path)
    assert_error(response, 405)
    assert response.headers["allow"] == allow


def test_a_trailing_slash_answers_json_404_and_no_redirect_built_from_the_host(client):
    response = client.get("/stats/", follow_redirects=False)
    assert_error(response, 404)
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "a", "name": "b"}',
        b'{"name": "a", "payload": {"k": 1, "k": 2}}',
        b'[{"name": "a", "queue": "q", "queue": "r"}]',
    ],
)
def test_a_key_given_twice_in_a_json_object_is_refused(client, raw, namespace, body):
    response = client.post("/enqueue", content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "more than once")
    assert keys(raw, namespace) == []


def test_a_nul_in_a_task_name_is_refused_by_the_api_the_library_and_the_cli(
    client, tq, raw, namespace, run_cli
):
    assert_error(client.post("/enqueue", json={"name": "a\u0000b"}), 422)
    with pytest.raises(UsageError, match="NUL"):
        tq.enqueue("a\x00b", {})
    result = run_cli("enqueue", "--file", "-", input=json.dumps({"name": "a\u0000b"}) + "\n")
    assert result.returncode == 2 and "NUL" in result.stderr, result.stderr
    assert keys(raw, namespace) == []
    assert client.post("/enqueue", json={"name": "ok", "payload": {"text": "a\u0000b"}}).status_code == 201
