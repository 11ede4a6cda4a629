"""The HTTP API's own shapes: the request bodies (the API also checks them with these models), the
error body and the OpenAPI document. The answers' shapes are the services' (services/shapes.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskq_cli.producer import AT_RANGE, MAX_ID_LENGTH, MAX_NAME_LENGTH
from taskq_cli.timeparse import MAX_SECONDS

if TYPE_CHECKING:
    from fastapi import FastAPI

QUEUE_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"  # config.check_name's rule
MAX_BATCH = 10_000  # tasks in one request
MAX_PAGE = 1000  # tasks in one listing
MAX_RETRIES = 1_000_000
# The bounds the producer applies (one source: the document says what the server accepts)
MAX_DURATION = MAX_SECONDS  # seconds: delays, timeouts, ages
MIN_AT, MAX_AT = AT_RANGE  # epoch seconds: 1970 to 9999

Duration = (
    Annotated[float, Field(ge=0, le=MAX_DURATION, allow_inf_nan=False)]
    | Annotated[str, Field(min_length=1, max_length=64, examples=["30s", "1h30m", "500ms"])]
)


class EnqueueItem(BaseModel):
    """One task to enqueue: the fields of a `taskq enqueue --file` line."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"name": "send_email", "payload": {"to": "a@example.com"}},
                {"name": "report", "payload": {"day": "2026-11-28"}, "queue": "reports", "delay": "5m"},
            ]
        },
    )

    name: str = Field(  # strict str: text with a lone surrogate is refused (Lua's JSON could not read it)
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=r"^[^\x00]*$",
        description="Task name (the handler's name); no NUL character.",
    )
    payload: dict[str, Any] | None = Field(
        None, description="The handler's keyword arguments ({} if omitted)."
    )
    queue: Annotated[str, Field(pattern=QUEUE_PATTERN)] | None = Field(
        None, description="Queue (default: the handler's with an app, else `default`)."
    )
    delay: Duration | None = Field(None, description="Run after this many seconds, or a duration (`30s`).")
    at: (
        Annotated[str, Field(min_length=1, max_length=64)]
        | Annotated[float, Field(ge=MIN_AT, le=MAX_AT, allow_inf_nan=False)]
        | None
    ) = Field(
        None, description="Run at this ISO 8601 time (no zone = the server's local time) or epoch seconds."
    )
    max_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] | None = Field(
        None, description="Retries after the first attempt."
    )
    timeout: Duration | None = Field(None, description="Execution time limit; `null` or 0 = none.")
    id: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)] | None = Field(
        None, description="Custom id: enqueue is idempotent while a task with it is unfinished."
    )
    unique: bool | list[Annotated[str, Field(max_length=MAX_ID_LENGTH)]] | None = Field(
        None, description="true: unique key from the name and the payload; a list: from these payload fields."
    )
    unique_key: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)] | None = Field(
        None, description="Unique key: nothing is added while a task holding it is unfinished."
    )
    unique_until: Literal["finished", "started"] | None = Field(
        None, description="Hold the key until the task is finished (default) or started."
    )
    unique_for: Duration | None = Field(None, description="Hold the key at most this long.")
    debounce: Duration | None = Field(
        None, description="Run this long after the last enqueue with the key, with its payload."
    )
    after: list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]] | None = Field(
        None,
        max_length=MAX_BATCH,
        description="Ids of tasks this one waits for (it is `waiting` until they are done); each must "
        "exist and not be dead (else 422), or be the `id` of an earlier item of the batch.",
    )


class DlqRetryBody(BaseModel):
    """Which dead tasks to retry: `ids`, or `all: true` with optional filters."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"ids": ["3f2a9c"]}, {"all": True, "queue": "emails"}]},
    )

    ids: list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]] | None = Field(
        None, max_length=MAX_BATCH
    )
    all: bool = Field(False, description="Every dead task matching `queue` and `name`.")
    queue: Annotated[str, Field(pattern=QUEUE_PATTERN)] | None = None
    name: Annotated[str, Field(max_length=1000)] | None = None


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": "nothing enqueued: item 1: delay: Input should be a valid number",
                    "errors": [
                        {
                            "loc": ["body", 1, "delay"],
                            "msg": "Input should be a valid number",
                            "type": "float_type",
                        }
                    ],
                }
            ]
        }
    )

    detail: str = Field(description="One line saying what went wrong.")
    errors: list[ErrorItem] | None = Field(None, description="Validation errors, when there are some.")
    queues: list[str] | None = Field(None, description="409 for an ambiguous id: the queues holding it.")
    error: dict[str, str] | None = Field(
        None, description="409 from /tasks/{id}/result: the dead task's last error (type, message, ...)."
    )


_ERRORS = {
    400: "Malformed JSON, or a body that is not UTF-8",
    401: "Missing or wrong bearer token (only when the server has a token)",
    404: "Not found",
    408: "The task did not finish within `wait` seconds (GET /tasks/{id}/result)",
    409: "The task already finished, or its id is in several queues (`queues`): give `queue`",
    413: "Request body or batch too large",
    415: "The body is not sent as application/json",
    422: "Invalid input: nothing was written",
    503: "Redis unreachable",
}


def responses(*statuses: int, ok: Any) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        if status < 400:
            out[status] = {"model": ok, "description": "Success"}
        else:
            out[status] = {"model": ErrorBody, "description": _ERRORS[status]}
    return out


def _body_doc(model: type[BaseModel], examples: dict[str, Any], batch: bool) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    schema = {"oneOf": [ref, {"type": "array", "items": ref, "minItems": 1, "maxItems": MAX_BATCH}]}
    return {
        "required": True,
        "content": {"application/json": {"schema": schema if batch else ref, "examples": examples}},
    }


ENQUEUE_BODY = _body_doc(
    EnqueueItem,
    {
        "one": {"summary": "One task", "value": {"name": "send_email", "payload": {"to": "a@example.com"}}},
        "delayed": {
            "summary": "Later, with a custom id",
            "value": {
                "name": "report",
                "payload": {},
                "queue": "reports",
                "delay": "5m",
                "id": "report-2026-11-28",
            },
        },
        "batch": {
            "summary": "A batch (one transaction)",
            "value": [
                {"name": "send_email", "payload": {"to": "a@example.com"}},
                {"name": "send_email", "payload": {"to": "b@example.com"}, "max_retries": 5},
            ],
        },
    },
    batch=True,
)
DLQ_RETRY_BODY = _body_doc(
    DlqRetryBody,
    {
        "ids": {"summary": "These dead tasks", "value": {"ids": ["3f2a9c"]}},
        "all": {"summary": "Every dead task of a queue", "value": {"all": True, "queue": "emails"}},
    },
    batch=False,
)


def build_openapi(app: FastAPI, bearer: bool) -> dict[str, Any]:
    """FastAPI's document plus the request bodies (parsed by hand, so described by hand) and, when a
    token is required, the bearer scheme on every operation but /healthz."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi
    from pydantic.json_schema import models_json_schema

    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=app.servers or None,
    )
    components = schema.setdefault("components", {})
    _, defs = models_json_schema(
        [(EnqueueItem, "validation"), (DlqRetryBody, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    components.setdefault("schemas", {}).update(defs.get("$defs", {}))
    if bearer:
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "TASKQ_API_TOKEN"}
        }
        schema["security"] = [{"bearer": []}]
        schema["paths"]["/healthz"]["get"]["security"] = []
    app.openapi_schema = schema
    return schema
