"""producer.py: the code that enqueues (in a web app, a script, a cron job); run: python producer.py"""

from tasks import send_email, tq

send_email.enqueue(to="a@example.com")  # options: delay=, at=, queue=, task_id=
tq.enqueue("send_email", {"to": "b@example.com"}, delay=10)
tq.enqueue_many([("send_email", {"to": "c@example.com"}), ("poll_api", {"url": "https://x"})])
