"""What the CLI and the HTTP API both show and do, over a TaskQueue: neither front end reaches
through `tq.broker`. Each function returns a typed result whose JSON shape is declared once
(shapes.py): the CLI prints it, the API answers it and documents it.

  shapes.py     the JSON shapes (pydantic models: the API's response models)
  admin.py      operations over the Broker: listings, the dead-letter queue, cancel, pause, clear
  tasks.py      look a task up, list a queue's tasks, cancel one
  dlq.py        dead tasks: list, show, bulk retry and purge
  queues.py     list, pause, resume, clear
  stats.py      counts per queue, live workers, limits
  cron.py       the periodic schedules as `cron list` describes them; adding one
  enqueue.py    enqueue (the answer's shape has no pydantic: `taskq enqueue` starts lean)
  health.py     is Redis reachable
  processes.py  the long-running pieces a command starts (scheduler) and doctor's checks

Modules are imported one by one (nothing here): each command loads only what it uses.
"""
