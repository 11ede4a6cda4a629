"""The HTTP API: enqueue, inspect and operate over HTTP, with the same JSON fields as the CLI's --json.

`create_app()` is an ASGI app factory (FastAPI): run it alone (`taskq api`, or `uvicorn --factory
taskq_cli.api:create_app`) or mount it in another ASGI app. Bad input never reaches Redis: bodies are
size- and nesting-limited and parsed strictly before anything is written, and every error is a 4xx
(503 when Redis is unreachable) with a one-line `detail`, never a stack trace.

  guard.py   Host and Origin checks, bearer token, body type and size, strict JSON (pure ASGI)
  routes.py  the routes over taskq_cli.services (the answers are its shapes)
  schema.py  the request bodies, the error body and the OpenAPI document
  ui.py      the web dashboard at /ui/ (ui_static/ its files, ui_session.py its cookie and CSRF
             token, ui_live.py the shared overview snapshot and the per-minute counters)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from taskq_cli import __version__
from taskq_cli.api.guard import JSON, MAX_BODY, MAX_DEPTH, ApiError, Guard, HostRule
from taskq_cli.api.routes import MAX_ERRORS, error_item, router, summary
from taskq_cli.api.schema import build_openapi
from taskq_cli.api.ui import install_ui
from taskq_cli.config import api_token_from_env, app_from_env
from taskq_cli.errors import BrokerError, BrokerUnavailable, NotFound, TaskqError, UsageError
from taskq_cli.outage import REDIS_ERRORS, as_broker_error
from taskq_cli.queue import TaskQueue

__all__ = ["MAX_BODY", "MAX_DEPTH", "HostRule", "create_app"]

log = logging.getLogger("taskq.api")

MAX_DETAIL = 1000  # characters of an error message
DESCRIPTION = (
    "Enqueue, inspect and operate taskq over HTTP. Answers have the fields of the CLI's `--json`; "
    'every error is `{"detail": "one line"}`, plus `errors` (`loc`, `msg`, `type`) for invalid input.'
)


def create_app(
    tq: TaskQueue | None = None,
    *,
    token: str | None = None,
    max_body: int = MAX_BODY,
    cors_origins: Sequence[str] = (),
    hosts: HostRule | None = None,
) -> FastAPI:
    """The API over `tq` (default: TASKQ_APP's TaskQueue, else one from TASKQ_REDIS_URL and
    TASKQ_NAMESPACE). `token`: the bearer token every route but /healthz requires (default
    TASKQ_API_TOKEN; "" or neither set: no authentication). `max_body`: the largest request body
    in bytes. `cors_origins`: the origins CORS allows (none by default: CORS off), which may also
    send requests that change something; `"*"` only with a token. `hosts`: the Host headers
    answered without a token (default: localhost and IP addresses, any port)."""
    secret = (token if token is not None else api_token_from_env()).strip() or None
    if "*" in cors_origins and secret is None:
        raise UsageError("--cors-origin '*' needs a token: any web page could use the API")
    owned = tq is None
    queue = tq if tq is not None else _queue_from_env()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await queue.aclose()  # the pool /tasks/{id}/result's waits used on this loop
        if owned:
            queue.close()

    app = FastAPI(
        title="taskq",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSON,
        docs_url=None if secret else "/docs",  # a browser cannot fetch the schema without the token
        redoc_url=None,
        redirect_slashes=False,  # its redirect's Location is built from the Host header: 404 instead
    )
    app.state.tq = queue
    app.state.validators = {}  # task name -> its payload model, built when a payload is refused
    app.include_router(router)
    install_ui(app, secret)
    _add_error_handlers(app)
    app.add_middleware(Guard, token=secret, max_body=max_body, cors_origins=cors_origins, hosts=hosts)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,  # outermost: preflights carry no token
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.openapi = lambda: build_openapi(app, bearer=bool(secret))  # type: ignore[method-assign]
    return app


def _queue_from_env() -> TaskQueue:
    spec = app_from_env()
    if spec:
        from taskq_cli.loading import load_app

        return load_app(spec)
    return TaskQueue()


def _error(status: int, detail: str, **extra: Any) -> JSON:
    one_line = " ".join(str(detail).split()) or "error"
    if len(one_line) > MAX_DETAIL:
        one_line = one_line[: MAX_DETAIL - 1] + "…"
    return JSON({"detail": one_line, **extra}, status_code=status)


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error(exc.status, exc.detail, **({} if exc.errors is None else {"errors": exc.errors}))


async def _taskq_error(_: Request, exc: Exception) -> Response:
    """Bad input 422, not found 404; any other failure of taskq's (Redis unavailable, a write no
    replica confirmed) is the service's, not the request's: 503."""
    status = 422 if isinstance(exc, UsageError) else 404 if isinstance(exc, NotFound) else 503
    return _error(status, str(exc))


async def _redis_error(request: Request, exc: Exception) -> Response:
    """A short reason: Redis's own message can name its host, a command's text or redis-py's pool
    (2 KB of it for a Sentinel without a master). The detail goes to the server's log."""
    failure = as_broker_error(exc)
    log.warning("%s %s: Redis failed: %s: %s", request.method, request.url.path, failure.kind, failure)
    return _error(503, redis_reason(failure))


def redis_reason(exc: BrokerError) -> str:
    if isinstance(exc, BrokerUnavailable):
        return "cannot reach Redis (the server log has the details)"
    return "Redis refused the request (the server log has the details)"


async def _request_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [error_item(e) for e in exc.errors()]
    return _error(422, summary(errors), errors=errors[:MAX_ERRORS])


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = _error(exc.status_code, str(exc.detail))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:  # Starlette names only the first route's methods
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    """The methods of every route matching the path: taskq's own router's (FastAPI wraps an included
    router in an object that is not a Route) and the app's (the OpenAPI document, /docs)."""
    from starlette.routing import Match, Route

    allowed: set[str] = set()
    first: str | None = None  # /tasks/x/result also matches /tasks/{task_id:path}: the first one's
    for route in [*router.routes, *request.app.routes]:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE:
            first = first or route.path_format
            if route.path_format == first:
                allowed |= route.methods
    return sorted(allowed)


async def _ambiguous_id(_: Request, exc: Exception) -> Response:
    """An id in several queues, no `queue` given: 409, naming the queues to choose from."""
    return _error(409, str(exc), queues=getattr(exc, "queues", []))


async def _unexpected(_: Request, exc: Exception) -> Response:
    return _error(500, "internal error (the server log has the details)")


def _add_error_handlers(app: FastAPI) -> None:
    """UsageError/ValidationFailed 422, NotFound 404, Redis unreachable 503; no stack traces."""
    from taskq_cli.errors import AmbiguousId

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(AmbiguousId, _ambiguous_id)
    app.add_exception_handler(TaskqError, _taskq_error)
    for failure in REDIS_ERRORS:  # BrokerError before TaskqError's handler (FastAPI takes the closest)
        app.add_exception_handler(failure, _redis_error)
    app.add_exception_handler(RequestValidationError, _request_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
