"""The routes. Each is a thin adapter over taskq_cli.services: enqueue checks every item with
producer.request_from_object and producer.prepare (the rules of `taskq enqueue --file`) and writes
through services.enqueue; every answer is a services shape (services/shapes.py), the JSON the CLI's
--json prints, and the same model documents it. Routes are plain `def`s: FastAPI runs them in its thread
pool, so a slow Redis never blocks the event loop."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import StringConstraints, ValidationError

from taskq_cli.api.guard import JSON, ApiError, parse_body
from taskq_cli.api.schema import (
    DLQ_RETRY_BODY,
    ENQUEUE_BODY,
    MAX_BATCH,
    MAX_DURATION,
    MAX_PAGE,
    QUEUE_PATTERN,
    DlqRetryBody,
    EnqueueItem,
    responses,
)
from taskq_cli.errors import BrokerError, ResultTimeout, TaskFailed, UsageError, ValidationFailed
from taskq_cli.producer import MAX_ID_LENGTH, prepare, request_from_object
from taskq_cli.protocol import NewTask
from taskq_cli.queue import TaskQueue
from taskq_cli.registry import build_validator
from taskq_cli.services import dlq, health, tasks
from taskq_cli.services import queues as queue_service
from taskq_cli.services import stats as stats_service
from taskq_cli.services.enqueue import EnqueueAnswer, write
from taskq_cli.services.shapes import (
    CancelAnswer,
    Health,
    PauseAnswer,
    PurgeAnswer,
    QueueInfoDoc,
    ResultAnswer,
    RetryAnswer,
    RunAnswer,
    StatsAnswer,
    TaskDoc,
)
from taskq_cli.timeparse import parse_duration

log = logging.getLogger("taskq.api")

MAX_ERRORS = 100  # validation errors listed in one answer
MAX_QUERY_IDS = 100  # ids in one query string (more: several requests)

LIST_PARAMETERS = frozenset({"id"})  # query parameters that may repeat


async def _single_values(request: Request) -> None:
    """A query parameter given twice is refused, not silently reduced to its last value."""
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({n for n in names if names.count(n) > 1} - LIST_PARAMETERS)
    if repeated:
        raise ApiError(422, f"query parameter {repeated[0]!r} given more than once")


router = APIRouter(dependencies=[Depends(_single_values)])


async def _raw_body(request: Request) -> bytes:
    return await request.body()


async def _queue(request: Request) -> TaskQueue:
    return cast(TaskQueue, request.app.state.tq)


Body = Annotated[bytes, Depends(_raw_body)]
Tq = Annotated[TaskQueue, Depends(_queue)]
QueueParam = Annotated[str | None, Query(pattern=QUEUE_PATTERN, description="Only this queue.")]
NameParam = Annotated[str | None, Query(max_length=1000, description="Only tasks of this name.")]
QueueName = Annotated[str, Path(pattern=QUEUE_PATTERN, description="Queue name.")]
TaskId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="Task id.")]


# -- enqueue -------------------------------------------------------------------------------------------


@router.post(
    "/enqueue",
    status_code=201,
    summary="Enqueue a task, or a batch of tasks",
    responses=responses(201, 400, 401, 413, 415, 422, 503, ok=EnqueueAnswer | list[EnqueueAnswer]),
    openapi_extra={"requestBody": ENQUEUE_BODY},
)
def enqueue(request: Request, tq: Tq, body: Body) -> Response:
    """One task object, or a JSON array of them written in one transaction: one invalid item and
    nothing is written. With an app (`--app`), payloads are validated against the handler's
    signature. An `id` whose task is unfinished answers with that task and `duplicate: true`."""
    prepared, batch = enqueue_body(tq, body, request.app.state.validators)
    results = [answer.to_json() for answer in write(tq, prepared)]
    return JSON(results if batch else results[0], status_code=201)


def enqueue_body(tq: TaskQueue, body: bytes, validators: dict[str, Any]) -> tuple[list[NewTask], bool]:
    """Validated tasks from a request body (one object or a batch); raises ApiError, writes nothing."""
    data = parse_body(body)
    batch = isinstance(data, list)
    items: list[Any] = data if batch else [data]
    if batch and not items:
        raise ApiError(422, "empty batch: give at least one task")
    if len(items) > MAX_BATCH:
        raise ApiError(422, f"batch of {len(items)} tasks: at most {MAX_BATCH} per request")
    prepared: list[NewTask] = []
    errors: list[dict[str, Any]] = []
    messages: list[str] = []
    for index, item in enumerate(items):
        where: tuple[str | int, ...] = ("body", index) if batch else ("body",)
        try:
            prepared.append(_one_task(tq, item, index if batch else None))
        except ValidationError as exc:
            found = item_errors(exc)
            errors += [{**e, "loc": [*where, *e["loc"]]} for e in found]
            messages.append((f"item {index}: " if batch else "") + summary(found))
        except ValidationFailed as exc:
            errors += _handler_errors(tq, item, where, validators)
            messages.append(str(exc))
        except UsageError as exc:
            errors.append({"loc": list(where), "msg": str(exc), "type": "value_error"})
            messages.append(str(exc))
    if errors:
        more = f" (and {len(messages) - 1} more invalid)" if len(messages) > 1 else ""
        raise ApiError(422, f"nothing enqueued: {messages[0]}{more}", errors[:MAX_ERRORS])
    return prepared, batch


def _one_task(tq: TaskQueue, item: Any, index: int | None) -> NewTask:
    label = None if index is None else f"item {index}"
    prefix = f"{label}: " if label else ""
    if not isinstance(item, dict):
        raise UsageError(f"{prefix}expected a JSON object, got {type(item).__name__}")
    EnqueueItem.model_validate(item)  # types and bounds; the producer checks the rest
    # the producer bounds durations (100 years) and `at` (1970-9999), as for the CLI and library
    return prepare(request_from_object(item, None, label), tq.registry)


def _handler_errors(
    tq: TaskQueue, item: dict[str, Any], where: Sequence[str | int], validators: dict[str, Any]
) -> list[dict[str, Any]]:
    """The handler's own pydantic errors for a payload its signature refuses."""
    handler = tq.registry[item["name"]]
    model = validators.get(handler.name)
    if model is None:
        model = validators[handler.name] = build_validator(handler.name, handler.fn)[0]
    try:
        model.model_validate(item.get("payload") or {})
    except ValidationError as exc:
        found = exc.errors(include_url=False, include_context=False, include_input=False)
        return [error_item(e, (*where, "payload")) for e in found]
    return [{"loc": [*where, "payload"], "msg": "invalid payload", "type": "value_error"}]


def error_item(error: Any, prefix: Sequence[str | int] = ()) -> dict[str, Any]:
    loc = [p if isinstance(p, int) else str(p) for p in (*prefix, *error.get("loc", ()))]
    return {"loc": loc, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}


def item_errors(exc: ValidationError, where: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    """Pydantic's errors for one body object, one per field (a union's alternatives merged)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = tuple(error["loc"][:1])  # drop a union's branch names ("delay", "constrained-float")
        item = error_item({**error, "loc": loc}, where)
        if loc in merged:
            merged[loc]["msg"] += f", or {item['msg'][:1].lower()}{item['msg'][1:]}"
        else:
            merged[loc] = item
    return list(merged.values())


def summary(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


# -- tasks, stats, queues ---------------------------------------------------------------------------------


MAX_RESULT_WAIT = 60.0  # seconds one request may wait for a result; longer: ask again


@router.get(
    "/tasks/{task_id:path}/result",
    summary="A task's result, waiting for it a bounded time",
    responses=responses(200, 401, 404, 408, 409, 422, 503, ok=ResultAnswer),
)
async def task_result(
    task_id: TaskId,
    tq: Tq,
    queue: QueueParam = None,
    wait: Annotated[
        float, Query(ge=0, le=MAX_RESULT_WAIT, description="Seconds to wait for the task to end (max 60).")
    ] = 0.0,
) -> Response:
    """As `taskq task wait ID --timeout WAIT`: 200 `{"id", "state": "done", "result"}`; 409 when the
    task is dead (`error`: its last error); 408 when it did not end within `wait`; 404 unknown id
    (or a done record that expired). An `async` route: the wait is `aresult`, no thread held."""
    try:
        value = await tq.aresult(task_id, wait=wait, queue=queue)
    except TaskFailed as exc:
        error = exc.task.last_error
        return JSON({"detail": str(exc), "error": error.model_dump() if error else None}, status_code=409)
    except ResultTimeout as exc:
        raise ApiError(408, str(exc)) from None
    return JSON(ResultAnswer(id=task_id, state="done", result=value).to_json())


@router.post(
    "/tasks/{task_id:path}/run",
    summary="Run a scheduled task now",
    responses=responses(200, 401, 404, 409, 422, 503, ok=RunAnswer),
)
def task_run(task_id: TaskId, tq: Tq, queue: QueueParam = None) -> Response:
    """As `taskq task run ID --json`: a scheduled task (delayed, or waiting for its retry) moves to
    pending now; 409 for a task in another state."""
    try:
        moved = tasks.run_now(tq, task_id, queue)
    except UsageError as exc:
        raise ApiError(409, str(exc)) from None
    return JSON(moved.to_json())


@router.get(
    "/tasks/{task_id:path}",
    summary="One task, every field",
    responses=responses(200, 401, 404, 409, 422, 503, ok=TaskDoc),
)
def task_show(task_id: TaskId, tq: Tq, queue: QueueParam = None) -> Response:
    """As `taskq task show ID --json`; 404 when no queue holds it, 409 (naming the queues) when
    several do and `queue` is not given."""
    return JSON(tasks.show(tq, task_id, queue).to_json())


@router.delete(
    "/tasks/{task_id:path}",
    summary="Cancel an unfinished task",
    responses=responses(200, 401, 404, 409, 422, 503, ok=CancelAnswer),
)
def task_cancel(task_id: TaskId, tq: Tq, queue: QueueParam = None) -> Response:
    """As `taskq task cancel ID --json`: removes a pending or scheduled task, stops an active one (its
    worker kills it at its next lease renewal); 409 when it already finished."""
    try:
        cancelled = tasks.cancel(tq, task_id, queue)
    except UsageError as exc:  # done or dead: nothing to cancel
        raise ApiError(409, str(exc)) from None
    return JSON(cancelled.to_json())


@router.get(
    "/stats",
    summary="Counts per queue, live workers, limits",
    responses=responses(200, 401, 404, 422, 503, ok=StatsAnswer),
)
def stats(tq: Tq, queue: QueueParam = None) -> Response:
    """As `taskq stats --json`; 404 for an unknown queue."""
    stats_service.check_queue(tq, queue)
    return JSON(stats_service.collect(tq, queue).to_json())


@router.get(
    "/queues",
    summary="Every queue, its counts and whether it is paused",
    responses=responses(200, 401, 503, ok=list[QueueInfoDoc]),
)
def queues(tq: Tq) -> Response:
    """As `taskq queue list --json`."""
    return JSON([q.to_json() for q in queue_service.list_queues(tq)])


@router.post(
    "/queues/{name}/pause", summary="Pause a queue", responses=responses(200, 401, 422, 503, ok=PauseAnswer)
)
def queue_pause(name: QueueName, tq: Tq) -> Response:
    """Workers stop taking tasks from this queue; it keeps accepting new ones."""
    answer, _ = queue_service.set_paused(tq, name, True)
    return JSON(answer.to_json())


@router.post(
    "/queues/{name}/resume", summary="Resume a queue", responses=responses(200, 401, 422, 503, ok=PauseAnswer)
)
def queue_resume(name: QueueName, tq: Tq) -> Response:
    """Workers take tasks from this queue again."""
    answer, _ = queue_service.set_paused(tq, name, False)
    return JSON(answer.to_json())


# -- the dead-letter queue ------------------------------------------------------------------------------


@router.get(
    "/dlq", summary="Dead tasks, newest first", responses=responses(200, 401, 404, 422, 503, ok=list[TaskDoc])
)
def dlq_list(
    tq: Tq,
    queue: QueueParam = None,
    name: NameParam = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many.")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="Skip this many first.")] = 0,
) -> Response:
    """As `taskq dlq list --json`, bounded in size: a payload or result over 4 KiB is `null` with
    `payload_truncated`/`result_truncated: true` (and never read from Redis), an error text or raw
    message over 4,096 characters is cut (`last_error_truncated`, `raw_truncated`); `GET
    /tasks/{id}` shows the task whole. 404 for an unknown queue."""
    dead = dlq.dead_tasks(tq, queue, name, limit, offset, bounded=True)
    return JSON([t.to_json() for t in dead])


@router.post(
    "/dlq/retry",
    summary="Dead tasks back to pending, attempts reset",
    responses=responses(200, 400, 401, 404, 409, 413, 415, 422, 503, ok=RetryAnswer),
    openapi_extra={"requestBody": DLQ_RETRY_BODY},
)
def dlq_retry(tq: Tq, body: Body) -> Response:
    """As `taskq dlq retry --json`: the given `ids`, or with `all: true` every dead task matching
    `queue` and `name`. Ids not in the dead-letter queue are listed in `missing`, malformed entries
    (which cannot be retried) in `refused`."""
    try:
        chosen = DlqRetryBody.model_validate(parse_body(body))
    except ValidationError as exc:
        errors = item_errors(exc, ("body",))
        raise ApiError(422, summary(errors), errors) from None
    report = dlq.retry(tq, _selection(chosen.ids, chosen.all), chosen.queue, chosen.name)
    return JSON(RetryAnswer.of(report).to_json())


@router.delete(
    "/dlq",
    summary="Delete dead tasks for good",
    responses=responses(200, 401, 404, 409, 422, 503, ok=PurgeAnswer),
)
def dlq_purge(
    tq: Tq,
    id: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]],
        Query(max_length=MAX_QUERY_IDS, description="Task ids (repeat the parameter; at most 100)."),
    ] = [],  # noqa: B006  # FastAPI copies defaults; a list (not Optional) keeps the schema a plain array
    all: Annotated[bool, Query(description="Every dead task matching the filters.")] = False,
    queue: QueueParam = None,
    name: NameParam = None,
    older_than: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only tasks dead longer than this (7d).")
    ] = None,
) -> Response:
    """As `taskq dlq purge --yes --json`: the given ids, or with `all=true` every dead task matching
    the filters."""
    ids = _selection(id or None, all)
    age = None if older_than is None else parse_duration(older_than)
    if age is not None and age > MAX_DURATION:
        raise UsageError(f"older_than too long: at most {MAX_DURATION:.0f} seconds")
    return JSON(PurgeAnswer.of(dlq.purge(tq, ids, queue, name, age)).to_json())


def _selection(ids: list[str] | None, all_: bool) -> list[str] | None:
    if all_ and ids:
        raise UsageError("give task ids or all, not both")
    if not all_ and not ids:
        raise UsageError("give task ids, or all")
    return None if all_ else ids


# -- metrics ----------------------------------------------------------------------------------------------


@router.get("/metrics", include_in_schema=False)
def metrics(tq: Tq) -> Response:
    """Prometheus text: every queue's counts by state, oldest pending age, processed and failed,
    and the live workers (services/metrics.py). Behind the token like every route."""
    from taskq_cli.services.metrics import exposition

    body, content_type = exposition(tq)
    return Response(body, media_type=content_type)


# -- health -----------------------------------------------------------------------------------------------


@router.get(
    "/healthz", summary="Is Redis reachable? (no token needed)", responses=responses(200, 503, ok=Health)
)
def healthz(tq: Tq) -> Response:
    """200 when Redis answers a PING, else 503."""
    try:
        answer = health.ping(tq)
    except BrokerError as exc:  # no token here: a short reason, the detail (hosts, pools) in the log
        log.warning("health check: Redis failed: %s: %s", exc.kind, exc)
        return JSON({"status": "unavailable", "detail": "cannot reach Redis"}, status_code=503)
    return JSON(answer.to_json())
