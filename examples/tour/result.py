"""result.py: enqueue, then wait for the handler's return value; run: python result.py (a worker
must be running: taskq worker --app tasks)."""

from tasks import send_email, tq

from taskq_cli import ResultTimeout, TaskFailed

task_id = send_email.enqueue(to="d@example.com")
try:
    print(tq.result(task_id, wait=30))  # {'sent': 'd@example.com'}
except TaskFailed as dead:  # the task ended in the dead-letter queue
    print("dead:", dead)
except ResultTimeout:  # not finished within 30 s: it is still queued or running
    print("still running:", task_id)
