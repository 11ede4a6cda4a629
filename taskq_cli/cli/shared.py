"""The CLI's pieces that need no Typer, shared by the Typer commands and by the fast path of
`taskq enqueue` (fast.py): reading a PAYLOAD argument, opening the queue a command works with,
enqueueing from arguments and printing the result, and mapping failures to the SPEC's exit codes.
Only light imports at module level: a `taskq enqueue` process is mostly start-up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskq_cli.producer import EnqueueRequest
    from taskq_cli.queue import TaskQueue


def parse_payload(text: str | None) -> dict[str, Any]:
    """A PAYLOAD argument: a JSON object ('-' reads stdin; omitted = {}); bad input is a UsageError."""
    import json
    import sys

    from taskq_cli.errors import UsageError

    if text is None:
        return {}
    if text == "-":
        text = sys.stdin.read()
        if not text.strip():
            raise UsageError("empty payload on stdin")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"invalid JSON payload: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"payload must be a JSON object, got {type(value).__name__}")
    return value


def make_queue(
    redis_url: str | None,
    namespace: str | None,
    app: str | None,
    *,
    need_app: bool = False,
    profile: str | None = None,
) -> TaskQueue:
    """The TaskQueue a command works with: the app's own (with --app, TASKQ_APP or the profile's app)
    or a plain one. None means not given: the environment, then the profile (--profile, else
    TASKQ_PROFILE, else [profiles.default]), then the default, applies. A malformed Redis URL, an
    unknown profile or a malformed config file is refused here, before the command starts (exit 2)."""
    from taskq_cli.config import app_from_env
    from taskq_cli.protocol.topology import check_url
    from taskq_cli.queue import TaskQueue

    app_spec = app or app_from_env(profile)
    if app_spec:
        from taskq_cli.loading import load_app

        tq = load_app(app_spec)
        tq.configure(redis_url=redis_url, namespace=namespace, profile=profile)
    elif need_app:
        from taskq_cli.errors import UsageError

        raise UsageError("this command needs --app (or TASKQ_APP) to find the task handlers")
    else:
        tq = TaskQueue(redis_url=redis_url, namespace=namespace, profile=profile)
    check_url(tq.settings.redis_url)
    return tq


# -- taskq enqueue ---------------------------------------------------------------------------------


def single_request(
    name: str,
    payload: str | None,
    *,
    queue: str | None,
    delay: str | None,
    at: str | None,
    max_retries: int | None,
    timeout: str | None,
    task_id: str | None,
    unique: bool = False,
    unique_key: str | None = None,
    unique_until: str | None = None,
    unique_for: str | None = None,
    debounce: str | None = None,
    after: list[str] | None = None,
) -> EnqueueRequest:
    """The request of `taskq enqueue NAME [PAYLOAD] [options]`, options as given on the command line
    (None = not given); validation happens when it is submitted."""
    from taskq_cli.producer import UNSET, EnqueueRequest

    return EnqueueRequest(
        name=name,
        payload=parse_payload(payload),
        queue=queue,
        delay=delay,
        at=at,
        task_id=task_id,
        max_retries=max_retries,
        timeout=UNSET if timeout is None else _timeout(timeout),
        unique=True if unique else None,
        unique_key=unique_key,
        unique_until=unique_until,
        unique_for=unique_for,
        debounce=debounce,
        after=after or None,
    )


def _timeout(text: str) -> str | None:
    return None if text.strip().lower() in ("0", "none", "off") else text


def submit_and_print(
    tq: TaskQueue, requests: Sequence[EnqueueRequest], *, durable: bool = False, as_json: bool = False
) -> None:
    """Enqueue the requests (all validated before any is written) and print one id, or with --json
    one object, per task."""
    from taskq_cli.cli import output
    from taskq_cli.services.enqueue import submit

    results = submit(tq, requests, durable=durable)
    try:
        for result in results:
            if as_json:
                output.json_out(result.to_json())
            else:
                output.line(result.id)
        output.finish()
    except output.OutputError as exc:  # the tasks are in Redis: whoever ran this must learn their ids
        ids = " ".join(r.id for r in results)
        what = f"task {ids} was" if len(results) == 1 else f"{len(results)} tasks ({ids}) were"
        its = "its id" if len(results) == 1 else "their ids"
        raise output.OutputError(
            exc.reason, message=f"{what} enqueued but {its} could not be written to stdout: {exc.reason}"
        ) from None


# -- waiting for a result (`task wait`, `enqueue --wait`) ------------------------------------------

EXIT_DEAD = 3  # the task ended dead (SPEC "Results and the asyncio client")
EXIT_TIMEOUT = 4  # not finished within the timeout


def submit_and_wait(
    tq: TaskQueue, request: EnqueueRequest, *, durable: bool, wait: str, as_json: bool
) -> int:
    """`taskq enqueue ... --wait`: enqueue one task, its id on stderr, then as `wait_and_print`."""
    from taskq_cli.cli import output
    from taskq_cli.services.enqueue import submit

    [result] = submit(tq, [request], durable=durable)
    output.warn(f"enqueued {result.id}")
    return wait_and_print(tq, result.id, queue=result.queue, timeout=wait, as_json=as_json)


def wait_and_print(
    tq: TaskQueue, task_id: str, *, queue: str | None, timeout: str | None, as_json: bool
) -> int:
    """Wait for a task's outcome and print it: its result as JSON (--json: the whole task object).
    Answers the exit code: 0 done, 3 dead (the last error on stderr), 4 not finished within
    `timeout` (a duration; None: until it ends). An unknown id raises TaskNotFound (exit 1)."""
    from taskq_cli.cli import output
    from taskq_cli.errors import ResultTimeout, TaskFailed
    from taskq_cli.services import tasks
    from taskq_cli.timeparse import parse_duration

    wait = tasks.FOREVER if timeout is None else parse_duration(timeout)
    try:
        value = tq.result(task_id, wait=wait, queue=queue)
    except TaskFailed as exc:
        if as_json:
            output.json_out(tasks.doc(exc.task).to_json())
        error = exc.task.last_error
        output.error(f"task {task_id} is dead: {error.type}: {error.message}" if error else str(exc))
        return EXIT_DEAD
    except ResultTimeout as exc:
        output.error(str(exc))
        return EXIT_TIMEOUT
    output.json_out(tasks.show(tq, task_id, queue).to_json() if as_json else value)
    return 0


def print_version() -> None:
    from taskq_cli import __version__
    from taskq_cli.cli import output

    output.line(f"taskq {__version__}")


# -- exit codes ------------------------------------------------------------------------------------


def run_guarded(command: Callable[[], object]) -> int:
    """Run a command and answer its exit code: an int it returns, else 0; every failure becomes one
    line on stderr (no traceback) and exit 2 (bad usage or input) or 1 (runtime failure)."""
    from taskq_cli.cli import output
    from taskq_cli.errors import AmbiguousId, BrokerUnavailable, NotFound, TaskqError, UsageError
    from taskq_cli.outage import REDIS_ERRORS, as_broker_error

    try:
        result = command()
        output.finish()
    except output.OutputError as exc:
        output.discard()
        if not exc.broken_pipe:  # a reader that stopped reading (`| head -1`) needs no message
            output.error(str(exc))
        return 1
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130
    except (UsageError, AmbiguousId) as exc:
        output.error(str(exc))
        return 2
    except REDIS_ERRORS as exc:
        failure = as_broker_error(exc)
        unreachable = isinstance(failure, BrokerUnavailable)
        output.error(f"{'cannot reach Redis' if unreachable else 'Redis error'}: {failure}")
        return 1
    except (NotFound, TaskqError) as exc:
        output.error(str(exc))
        return 1
    return result if isinstance(result, int) else 0
