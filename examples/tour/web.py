"""web.py: the HTTP API mounted in an app of your own; run: uvicorn web:web (needs taskq-cli[api])."""

from fastapi import FastAPI
from tasks import tq  # your TaskQueue, with its handlers

from taskq_cli.api import create_app

web = FastAPI()
web.mount("/taskq", create_app(tq, token="s3cret"))  # /taskq/enqueue, /taskq/healthz, ...
