"""The web dashboard at /ui/: three static files (ui_static/, served from the package: no CDN, no
build step) and the JSON they read under /ui/api/. Data comes from taskq_cli.services.dashboard;
the overview is one snapshot shared by every open page (ui_live.Shared).

Security: the pages hold no data, so they are served to anyone the Host rule admits; every /ui/api/
route needs the session cookie (ui_session) or the bearer token when the API has a token; every
POST needs the session's CSRF token in the X-CSRF-Token header (or the bearer token, which no
browser sends on its own). Guard's Host and Origin checks apply as to every route. Every answer
carries a Content-Security-Policy that allows the page's own files only."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskq_cli.api.guard import JSON, ApiError, parse_body
from taskq_cli.api.schema import MAX_DURATION, QUEUE_PATTERN
from taskq_cli.api.ui_live import Pending, Shared
from taskq_cli.api.ui_session import COOKIE, CSRF_HEADER, Sessions, cookie_header
from taskq_cli.errors import UsageError
from taskq_cli.producer import MAX_ID_LENGTH, MAX_NAME_LENGTH
from taskq_cli.queue import TaskQueue
from taskq_cli.services import dashboard, dlq
from taskq_cli.services import limits as limit_service
from taskq_cli.services import queues as queue_service
from taskq_cli.services import stats as stats_service
from taskq_cli.services import tasks as task_service
from taskq_cli.services.dashboard import Cursor, DeadFilter, Plan
from taskq_cli.timeparse import parse_duration

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "index.html": "text/html"}
MAX_OVERVIEW_PAGE = 500
MAX_DEAD_PAGE = 200
MAX_CHOSEN = 1000  # dead tasks picked one by one in one action

router = APIRouter(prefix="/ui", include_in_schema=False)


def install_ui(app: FastAPI, secret: str | None) -> None:
    """Serve the dashboard from `app` (create_app calls this). `secret`: the API token, or None."""
    queue = cast(TaskQueue, app.state.tq)
    app.state.ui_sessions = Sessions.for_token(secret)
    app.state.ui_live = Shared(lambda: dashboard.overview(queue))
    app.state.ui_plans = Pending[Plan]()
    app.include_router(router)


def _answer(data: Any, status: int = 200) -> Response:
    return JSON(data, status_code=status, headers=SECURITY_HEADERS)


# -- pages -------------------------------------------------------------------------------------------------


@cache
def _asset(name: str) -> bytes:
    return resources.files("taskq_cli.api").joinpath("ui_static", name).read_bytes()


def _file(name: str) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return Response(_asset(name), media_type=ASSETS[name], headers=headers)


@router.get("")
def ui_root() -> Response:
    """/ui → /ui/ (a relative Location: never built from the Host header)."""
    return Response(status_code=308, headers={"Location": "ui/", **SECURITY_HEADERS})


@router.get("/")
def ui_index() -> Response:
    return _file("index.html")


@router.get("/{asset}")
def ui_asset(asset: str) -> Response:
    if asset not in ASSETS or asset == "index.html":
        raise ApiError(404, "not found")
    return _file(asset)


# -- the session -------------------------------------------------------------------------------------------


def _sessions(request: Request) -> Sessions:
    return cast(Sessions, request.app.state.ui_sessions)


def _bearer_ok(request: Request) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and _sessions(request).token_ok(given.strip())


def _may_read(request: Request) -> None:
    sessions = _sessions(request)
    if sessions.needs_token and not (sessions.session_of(request.cookies.get(COOKIE)) or _bearer_ok(request)):
        raise ApiError(401, "sign in with the API token")


def _may_write(request: Request) -> None:
    """A POST from the dashboard: its session and that session's CSRF token (or the bearer token)."""
    sessions = _sessions(request)
    if sessions.needs_token and _bearer_ok(request):
        return
    session = sessions.session_of(request.cookies.get(COOKIE))
    if session is None:
        why = "sign in with the API token" if sessions.needs_token else "no session: reload the page"
        raise ApiError(401, why)
    if not sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "missing or wrong CSRF token: reload the page")


async def _body(request: Request) -> Any:
    raw = await request.body()
    return parse_body(raw) if raw.strip() else {}


def _tq(request: Request) -> TaskQueue:
    return cast(TaskQueue, request.app.state.tq)


Read = Annotated[None, Depends(_may_read)]
Write = Annotated[None, Depends(_may_write)]
Body = Annotated[Any, Depends(_body)]
Tq = Annotated[TaskQueue, Depends(_tq)]
QueueName = Annotated[str, Query(pattern=QUEUE_PATTERN)]
OptionalQueue = Annotated[str | None, Query(pattern=QUEUE_PATTERN)]
TaskId = Annotated[str, Query(min_length=1, max_length=MAX_ID_LENGTH)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]


def _session_answer(request: Request, session: str | None) -> dict[str, Any]:
    sessions = _sessions(request)
    signed_in = session is not None or not sessions.needs_token
    return {
        "auth": sessions.needs_token,
        "signed_in": signed_in,
        "csrf": sessions.csrf_for(session) if session else None,
        "root": request.scope.get("root_path", ""),
    }


def _with_cookie(request: Request, data: dict[str, Any], value: str, max_age: int | None = None) -> Response:
    response = _answer(data)
    path = f"{request.scope.get('root_path', '')}/ui"
    secure = request.url.scheme == "https"
    extra = {} if max_age is None else {"max_age": max_age}
    response.headers.append("Set-Cookie", cookie_header(value, path, secure, **extra))
    return response


@router.get("/api/session")
def ui_session(request: Request) -> Response:
    """Who the page is: signed in or not, and its CSRF token. Without an API token a session is
    made here (the CSRF token needs one)."""
    sessions = _sessions(request)
    session = sessions.session_of(request.cookies.get(COOKIE))
    if session is None and not sessions.needs_token:
        cookie = sessions.new_cookie()
        return _with_cookie(request, _session_answer(request, sessions.session_of(cookie)), cookie)
    return _answer(_session_answer(request, session))


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    token: str = Field(min_length=1, max_length=4096)


@router.post("/api/login")
def ui_login(request: Request, body: Body) -> Response:
    """The API token, once: answered with the session cookie (HttpOnly: no script can read it)."""
    sessions = _sessions(request)
    given = _model(LoginBody, body)
    if not sessions.needs_token:
        return ui_session(request)
    if not sessions.token_ok(given.token):
        raise ApiError(401, "wrong token")
    cookie = sessions.new_cookie()
    return _with_cookie(request, _session_answer(request, sessions.session_of(cookie)), cookie)


@router.post("/api/logout")
def ui_logout(request: Request, _: Write) -> Response:
    return _with_cookie(request, {"signed_in": False}, "", max_age=0)


def _model(model: type[Any], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, f"{where}: {first['msg']}" if where else str(first["msg"])) from None


# -- reading -----------------------------------------------------------------------------------------------


@router.get("/api/overview")
def ui_overview(
    request: Request,
    _: Read,
    find: Annotated[str, Query(max_length=200)] = "",
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_OVERVIEW_PAGE)] = 100,
) -> Response:
    """The shared snapshot (at most one Redis read per second whatever the number of pages open):
    totals over every queue, and one page of queues whose name contains `find`."""
    snapshot = cast(Shared, request.app.state.ui_live).get()
    rows = snapshot["queues"]
    chosen = [q for q in rows if find.lower() in q["name"].lower()] if find else rows
    totals = {k: sum(q.get(k) or 0 for q in rows) for k in [*snapshot["states"], "processed", "failed"]}
    page = {k: v for k, v in snapshot.items() if k != "queues"}
    shown = chosen[offset : offset + limit]
    return _answer({**page, "totals": totals, "matched": len(chosen), "queues": shown})


@router.get("/api/tasks")
def ui_tasks(
    tq: Tq,
    _: Read,
    queue: QueueName,
    state: Annotated[str, Query(max_length=20)] = "pending",
    name: Annotated[str | None, Query(min_length=1, max_length=MAX_NAME_LENGTH)] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    found = dashboard.queue_tasks(tq, queue, state, name, limit, offset)
    return _answer({**found, "states": dashboard.states()})


@router.get("/api/task")
def ui_task(tq: Tq, _: Read, id: TaskId, queue: OptionalQueue = None) -> Response:
    return _answer(dashboard.task(tq, id, queue))


@router.get("/api/workers")
def ui_workers(tq: Tq, _: Read) -> Response:
    return _answer(dashboard.workers(tq))


@router.get("/api/schedules")
def ui_schedules(tq: Tq, _: Read) -> Response:
    return _answer(dashboard.schedules(tq))


@router.get("/api/queue")
def ui_queue(tq: Tq, _: Read, name: QueueName) -> Response:
    """One queue's row of the overview and how many tasks clearing it would delete."""
    stats_service.check_queue(tq, name)
    row = stats_service.collect(tq, name).queues[name].to_json()
    return _answer({"name": name, **row, "clear_count": queue_service.clear_count(tq, name)})


# -- the dead-letter queue ------------------------------------------------------------------------------


def _age(text: str | None, what: str) -> float | None:
    if text is None or not text.strip():
        return None
    seconds = parse_duration(text)
    if seconds > MAX_DURATION:
        raise UsageError(f"{what} too long: at most {MAX_DURATION:.0f} seconds")
    return seconds


def _cursor(text: str | None) -> Cursor | None:
    if not text:
        return None
    try:
        died, queue, task_id = json.loads(text)
        if isinstance(died, int) and isinstance(queue, str) and isinstance(task_id, str):
            return died, queue, task_id
    except (ValueError, TypeError):
        pass
    raise ApiError(422, "cursor: not a cursor this server gave")


class FilterBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    queue: Annotated[str, Field(pattern=QUEUE_PATTERN)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)] | None = None
    text: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    min_age: Annotated[str, Field(max_length=64)] | None = None
    max_age: Annotated[str, Field(max_length=64)] | None = None

    def chosen(self) -> DeadFilter:
        return DeadFilter(
            self.queue, self.name, self.text, _age(self.min_age, "min_age"), _age(self.max_age, "max_age")
        )


@router.get("/api/dlq")
def ui_dlq(
    tq: Tq,
    _: Read,
    queue: OptionalQueue = None,
    name: Annotated[str | None, Query(min_length=1, max_length=MAX_NAME_LENGTH)] = None,
    text: Annotated[str | None, Query(min_length=1, max_length=1000)] = None,
    min_age: Annotated[str | None, Query(max_length=64)] = None,
    max_age: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_DEAD_PAGE)] = 50,
) -> Response:
    chosen = FilterBody(queue=queue, name=name, text=text, min_age=min_age, max_age=max_age).chosen()
    return _answer(dashboard.dead_page(tq, chosen, _cursor(cursor), limit))


QueueText = Annotated[str, Field(pattern=QUEUE_PATTERN)]
IdText = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class PlanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")  # lax: JSON has no tuples (the filter stays strict)
    filter: FilterBody | None = None
    items: Annotated[list[tuple[QueueText, IdText]], Field(min_length=1, max_length=MAX_CHOSEN)] | None = None


@router.post("/api/dlq/plan")
def ui_dlq_plan(request: Request, tq: Tq, _: Write, body: Body) -> Response:
    """The dead tasks a bulk action would handle (`items` picked, or all matching `filter`),
    counted for the confirmation; the action then handles exactly these."""
    given = _model(PlanBody, body)
    if (given.filter is None) == (given.items is None):
        raise ApiError(422, "give either filter or items")
    if given.items is not None:
        plan = dashboard.plan_chosen(given.items)
    else:
        plan = dashboard.plan_matching(tq, given.filter.chosen())
    key = cast(Pending[Plan], request.app.state.ui_plans).put(plan)
    return _answer({"plan": key, "count": plan.count, "capped": plan.capped})


class ActBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    plan: str = Field(min_length=1, max_length=100)


@router.post("/api/dlq/{action}")
def ui_dlq_act(request: Request, tq: Tq, _: Write, body: Body, action: str) -> Response:
    """Carry out a plan once: `retry` (back to pending, attempts reset) or `purge` (deleted)."""
    if action not in ("retry", "purge"):
        raise ApiError(404, "not found")
    plan = cast(Pending[Plan], request.app.state.ui_plans).take(_model(ActBody, body).plan)
    if plan is None:
        raise ApiError(409, "this confirmation expired or was already used: choose again")
    report = (dashboard.retry_plan if action == "retry" else dashboard.purge_plan)(tq, plan)
    return _answer({"handled": len(report.handled), "missing": report.missing, "refused": report.refused})


# -- changes -----------------------------------------------------------------------------------------------


@router.post("/api/task/{action}")
def ui_task_act(tq: Tq, _: Write, action: str, id: TaskId, queue: OptionalQueue = None) -> Response:
    """One task: `retry` a dead one, `cancel` an unfinished one, `run` a scheduled one now."""
    if action == "retry":
        report = dlq.retry(tq, [id], queue)
        if report.refused or report.missing:
            raise ApiError(409, f"task {id} is not a dead task that can be retried")
        return _answer({"id": id, "state": "pending"})
    if action == "cancel":
        return _conflict(lambda: task_service.cancel(tq, id, queue).to_json())
    if action == "run":
        return _conflict(lambda: task_service.run_now(tq, id, queue).to_json())
    raise ApiError(404, "not found")


def _conflict(act: Any) -> Response:
    try:
        return _answer(act())
    except UsageError as exc:  # the task is in a state the action does not apply to
        raise ApiError(409, str(exc)) from None


class LimitsBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    concurrency: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    rate: Annotated[str, Field(min_length=1, max_length=64)] | None = None


@router.post("/api/queue/{action}")
def ui_queue_act(tq: Tq, _: Write, body: Body, action: str, name: QueueName) -> Response:
    """`pause`, `resume`, `clear` (pending, scheduled, dead and done tasks deleted), `limits`
    (concurrency and rate; null clears one)."""
    if action in ("pause", "resume"):
        answer, _known = queue_service.set_paused(tq, name, action == "pause")
        return _answer(answer.to_json())
    if action == "clear":
        return _answer({"name": name, "cleared": queue_service.clear(tq, name)})
    if action == "limits":
        given = _model(LimitsBody, body)
        limits = limit_service.set_limits(tq, name, given.concurrency, given.rate, clear=True)
        return _answer(limits.to_json())
    raise ApiError(404, "not found")


@router.post("/api/schedule/{action}")
def ui_schedule_act(
    tq: Tq, _: Write, action: str, name: Annotated[str, Query(min_length=1, max_length=200)]
) -> Response:
    if action not in ("pause", "resume"):
        raise ApiError(404, "not found")
    return _answer(dashboard.set_schedule_paused(tq, name, action == "pause"))
