"""tasks.py: the handlers; workers import this module, so it enqueues nothing itself."""

from taskq_cli import Fail, Retry, TaskQueue, current_task

tq = TaskQueue()  # TASKQ_REDIS_URL / TASKQ_NAMESPACE, or TaskQueue(redis_url=..., namespace=...)


@tq.task(name="send_email", queue="default", max_retries=3, timeout=30)
def send_email(to: str, subject: str = "hello") -> dict[str, str]:
    if "@" not in to:
        raise Fail(f"not an address: {to}")  # no retries: straight to the dead-letter queue
    return {"sent": to}  # kept as the result for result_ttl (600 s)


@tq.task(name="poll_api", max_retries=10)
async def poll_api(url: str) -> None:  # async handlers work too
    if current_task().attempt < 3:
        raise Retry(delay=5)  # run again in 5 s (counts as an attempt)
