# taskq and an app module in one image: the same image runs a worker, the scheduler or the API,
# chosen by the command (docker-compose.yml runs all three). Build: docker build -t taskq .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# taskq itself first, so that changing the app does not reinstall it
COPY pyproject.toml README.md LICENSE ./
COPY taskq_cli ./taskq_cli
RUN pip install '.[api]'

# The app: replace examples/ with your own handlers' module (or mount it at /app and set TASKQ_APP)
COPY examples ./examples
ENV TASKQ_APP=examples.tasks

# Never root: a handler runs the app's code
RUN useradd --system --uid 10001 --home-dir /app taskq
USER taskq

# Exec form, so SIGTERM reaches taskq (a graceful stop); run with `--init` (compose: `init: true`)
# so that a process reaps the prefork pool's exited children
ENTRYPOINT ["taskq"]
CMD ["worker"]
