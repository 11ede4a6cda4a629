"""`taskq enqueue`: one task from arguments, or a JSON Lines batch with --file."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from taskq_cli.cli.common import App, JsonFlag, Namespace, Profile, RedisUrl, complete_queue, open_queue
from taskq_cli.cli.shared import single_request, submit_and_print, submit_and_wait
from taskq_cli.errors import UsageError
from taskq_cli.producer import parse_json_lines


def enqueue(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Task name.", show_default=False)] = None,
    payload: Annotated[
        str | None, typer.Argument(help="JSON object ('-' reads stdin; omitted = {}).", show_default=False)
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            "-q",
            help="Queue [default: default].",
            show_default=False,
            autocompletion=complete_queue,
        ),
    ] = None,
    delay: Annotated[
        str | None, typer.Option(help="Run after this duration (30s, 5m, 1h30m).", show_default=False)
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="Run at this ISO 8601 time (no zone = local).", show_default=False)
    ] = None,
    max_retries: Annotated[
        int | None, typer.Option(help="Retries after the first attempt.", show_default=False)
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help="Execution time limit ('0' = none).", show_default=False)
    ] = None,
    task_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="Custom id: enqueue is idempotent while a task with it is unfinished.",
            show_default=False,
        ),
    ] = None,
    unique: Annotated[
        bool, typer.Option("--unique", help="Unique key from the task name and the payload.")
    ] = False,
    unique_key: Annotated[
        str | None,
        typer.Option(
            help="Unique key: nothing is added while a task holding it is unfinished.", show_default=False
        ),
    ] = None,
    unique_until: Annotated[
        str | None,
        typer.Option(
            help="Hold the key until the task is 'finished' (default) or 'started'.", show_default=False
        ),
    ] = None,
    unique_for: Annotated[
        str | None, typer.Option(help="Hold the key at most this long (1h).", show_default=False)
    ] = None,
    debounce: Annotated[
        str | None,
        typer.Option(
            help="Run this long after the last enqueue with the key, with its payload (needs a key).",
            show_default=False,
        ),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option(
            "--after",
            help="Wait for this task to be done first (repeatable; it must exist and not be dead).",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option("--file", help="JSON Lines of {name, payload, ...}; '-' = stdin.", show_default=False),
    ] = None,
    durable: Annotated[
        bool,
        typer.Option(
            "--durable",
            help="Return only once a replica has the task(s) too (Redis WAIT); exit 1 if none confirms "
            "within 5s (the task may still be there).",
        ),
    ] = False,
    wait: Annotated[
        str | None,
        typer.Option(
            help="Wait this long for the result and print it (the id goes to stderr); exit 0 done, "
            "3 dead, 4 not finished in time.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
    app: App = None,
) -> None:
    """Enqueue a task; prints its id."""
    # A plain `taskq enqueue NAME [PAYLOAD] [options]` runs without Typer (fast.py parses it and calls
    # the same shared functions): an option added here must be taught to fast.py too, or handed over
    # there (tests/test_cli_fast.py compares the two option sets).
    if file is not None:
        if name is not None or payload is not None:
            raise UsageError("--file takes no NAME or PAYLOAD arguments")
        per_line = (
            delay,
            at,
            max_retries,
            timeout,
            task_id,
            unique_key,
            unique_until,
            unique_for,
            debounce,
            after,
        )
        if unique or any(v is not None for v in per_line):
            raise UsageError("--file takes options per line; only --queue applies to every line")
        requests = parse_json_lines(_read_lines(file), default_queue=queue)
    elif name is None:
        raise UsageError("missing task NAME (or --file)")
    else:
        requests = [
            single_request(
                name,
                payload,
                queue=queue,
                delay=delay,
                at=at,
                max_retries=max_retries,
                timeout=timeout,
                task_id=task_id,
                unique=unique,
                unique_key=unique_key,
                unique_until=unique_until,
                unique_for=unique_for,
                debounce=debounce,
                after=after,
            )
        ]
    if wait is not None:
        _check_wait(wait, file)
    if not requests:
        return
    tq = open_queue(ctx, redis_url, namespace, app)
    if wait is not None:
        code = submit_and_wait(tq, requests[0], durable=durable, wait=wait, as_json=as_json)
        if code:
            raise typer.Exit(code)
        return
    submit_and_print(tq, requests, durable=durable, as_json=as_json)


def _check_wait(wait: str, file: str | None) -> None:
    from taskq_cli.timeparse import parse_duration

    if file is not None:
        raise UsageError("--wait takes one task, not --file")
    parse_duration(wait)  # a bad duration is bad usage before anything is written


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
