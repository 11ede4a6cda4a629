"""async_producer.py: enqueue and wait on the event loop, as a web app does (nothing blocks the loop);
run: python async_producer.py, with a worker running (taskq worker --app tasks)."""

import asyncio

from tasks import send_email, tq


async def main() -> None:
    task_id = await send_email.aenqueue(to="e@example.com")
    later = await tq.aenqueue("send_email", {"to": "f@example.com"}, delay=10)
    batch = await tq.aenqueue_many([("send_email", {"to": "g@example.com"})])  # one round trip
    print(await tq.aresult(task_id, wait=30))  # {'sent': 'e@example.com'}
    print("later:", later, "batch:", batch)
    await tq.aclose()  # the running loop's connection pool


asyncio.run(main())
