"""A web app that hands work to taskq without blocking its event loop, and waits for results.

    taskq worker --app examples.tasks               # a worker for the example's tasks
    uvicorn examples.webapp:app --port 8000         # (or: python -m examples.webapp)
    curl -X POST localhost:8000/thumbnails -H 'content-type: application/json' \\
         -d '{"path": "cat.png", "width": 200}'
    curl localhost:8000/thumbnails/<id>?wait=10

Both routes are `async def`: `aenqueue` and `aresult` run on redis.asyncio, so a slow task or a
waiting client holds no thread. The app imports the worker's TaskQueue (`examples.tasks`), so a bad
payload is refused here (422) before anything is written, by the same validation as the worker's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from examples.tasks import resize_image, tq
from taskq_cli import ResultTimeout, TaskFailed, TaskNotFound, UsageError


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await tq.aclose()  # the connection pool of this event loop


app = FastAPI(title="thumbnails", lifespan=lifespan)


class ThumbnailRequest(BaseModel):
    path: str
    width: int = Field(800, ge=1, le=10_000)


@app.post("/thumbnails", status_code=202)
async def make_thumbnail(body: ThumbnailRequest) -> dict[str, str]:
    """Enqueue the work; answer at once with the task's id."""
    try:
        task_id = await resize_image.aenqueue(path=body.path, width=body.width)
    except UsageError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"id": task_id}


@app.get("/thumbnails/{task_id}")
async def thumbnail(task_id: str, wait: float = 0.0) -> dict[str, object]:
    """The result, waiting up to `wait` seconds (at most 30) for the task to end."""
    try:
        return {"id": task_id, "thumbnail": await tq.aresult(task_id, wait=min(max(wait, 0.0), 30.0))}
    except TaskNotFound:
        raise HTTPException(404, f"no task {task_id}") from None
    except TaskFailed as exc:
        raise HTTPException(409, str(exc)) from None
    except ResultTimeout:
        raise HTTPException(408, "not ready yet: ask again") from None


@app.post("/thumbnails/now")
async def make_thumbnail_and_wait(body: ThumbnailRequest) -> dict[str, object]:
    """Enqueue and wait for the result in one request (up to 30 s)."""
    task_id = (await make_thumbnail(body))["id"]
    return await thumbnail(task_id, wait=30.0)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
