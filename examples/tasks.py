"""A small example app: `taskq worker --app examples.tasks` (from the project root).

    taskq enqueue send_email '{"to": "a@example.com"}'
    taskq enqueue flaky_call '{"url": "https://example.com"}'
"""

from __future__ import annotations

import asyncio
import random

from taskq_cli import Fail, Retry, TaskQueue, current_task

tq = TaskQueue()


@tq.task(name="send_email", max_retries=3, timeout=30)
def send_email(to: str, subject: str = "hello", body: str = "") -> dict[str, str]:
    """Pretend to send a mail; refuses addresses without an @ for good."""
    if "@" not in to:
        raise Fail(f"not an e-mail address: {to!r}")
    return {"to": to, "subject": subject, "status": "sent"}


@tq.task(name="flaky_call", max_retries=5, backoff_base=0.5, backoff_max=5.0)
def flaky_call(url: str, failure_rate: float = 0.5) -> str:
    """An HTTP call that fails half of the time: watch it retry with backoff."""
    if random.random() < failure_rate:
        raise ConnectionError(f"could not reach {url}")
    ctx = current_task()
    return f"fetched {url} on attempt {ctx.attempt if ctx else '?'}"


@tq.task(name="rate_limited", max_retries=10)
def rate_limited(key: str) -> str:
    """Asks for a retry after an explicit delay, as a rate-limited API would."""
    ctx = current_task()
    if ctx is not None and ctx.attempt < 3:
        raise Retry(delay=1.0)
    return f"{key} done"


@tq.task(name="resize_image", timeout=60)
async def resize_image(path: str, width: int = 800) -> dict[str, object]:
    """An async handler."""
    await asyncio.sleep(0.05)
    return {"path": path, "width": width}
