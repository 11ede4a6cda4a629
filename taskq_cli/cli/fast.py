"""`taskq enqueue NAME [PAYLOAD] [options]` without Typer. What shell scripts and cron run is mostly
process start-up, and loading Typer costs more than the rest of it (its parameter coercion imports
pydantic). This recognises the plain forms itself and runs the same shared functions as the Typer
command (shared.py), with the same error mapping; anything it does not fully recognise -- --file,
--app or TASKQ_APP (or a profile's app), --durable, --wait, --help, global options before the command, a
repeated option, `--`, `-qNAME`, a number Typer would have to coerce, an unknown option -- it hands
over (None), and the Typer app then behaves exactly as it always has."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Options of `taskq enqueue` (cli/enqueue.py) that take a value, as spelled there -> their field.
VALUE_OPTIONS = {
    "--queue": "queue",
    "-q": "queue",
    "--delay": "delay",
    "--at": "at",
    "--max-retries": "max_retries",
    "--timeout": "timeout",
    "--id": "task_id",
    "--unique-key": "unique_key",
    "--unique-until": "unique_until",
    "--unique-for": "unique_for",
    "--debounce": "debounce",
    "--redis-url": "redis_url",
    "--namespace": "namespace",
    "--profile": "profile",
}
FLAGS = ("--json", "--unique")


@dataclass(frozen=True)
class PlainEnqueue:
    """A recognised `taskq enqueue`: its arguments and option values exactly as given."""

    name: str
    payload: str | None
    options: Mapping[str, str]  # VALUE_OPTIONS field -> value
    as_json: bool
    unique: bool = False

    def execute(self) -> None:
        from taskq_cli.cli.shared import make_queue, single_request, submit_and_print

        get = self.options.get
        retries = get("max_retries")
        request = single_request(
            self.name,
            self.payload,
            queue=get("queue"),
            delay=get("delay"),
            at=get("at"),
            max_retries=None if retries is None else int(retries),
            timeout=get("timeout"),
            task_id=get("task_id"),
            unique=self.unique,
            unique_key=get("unique_key"),
            unique_until=get("unique_until"),
            unique_for=get("unique_for"),
            debounce=get("debounce"),
        )
        tq = make_queue(get("redis_url"), get("namespace"), None, profile=get("profile"))
        submit_and_print(tq, [request], as_json=self.as_json)


def run(argv: Sequence[str]) -> int | None:
    """The exit code of `taskq ARGV` when it is a plain enqueue or `taskq --version` (run here), else
    None."""
    if list(argv) == ["--version"]:
        from taskq_cli.cli.shared import print_version, run_guarded

        return run_guarded(print_version)
    command = recognise(argv)
    if command is None:
        return None
    from taskq_cli.cli.shared import run_guarded

    return run_guarded(command.execute)


def recognise(argv: Sequence[str]) -> PlainEnqueue | None:
    """`enqueue NAME [PAYLOAD]` with options from VALUE_OPTIONS (`--opt VALUE`, long ones also
    `--opt=VALUE`, each at most once) and FLAGS, in any order, parsed as Typer parses them; else None."""
    from taskq_cli.config import completing

    if not argv or argv[0] != "enqueue" or completing():
        return None
    positional: list[str] = []
    options: dict[str, str] = {}
    flags: set[str] = set()
    tokens = iter(argv[1:])
    for token in tokens:
        if token == "-" or not token.startswith("-"):  # Typer reads a lone '-' as an argument too
            positional.append(token)
            continue
        if token in FLAGS and token not in flags:
            flags.add(token)
            continue
        option, equals, value = token.partition("=") if token.startswith("--") else (token, "", "")
        field = VALUE_OPTIONS.get(option)
        if field is None or field in options:
            return None
        if not equals:
            following = next(tokens, None)  # Typer takes the next word whatever it looks like
            if following is None:
                return None
            value = following
        options[field] = value
    if not 1 <= len(positional) <= 2:
        return None
    if _for_typer(options):
        return None
    payload = positional[1] if len(positional) > 1 else None
    return PlainEnqueue(positional[0], payload, options, "--json" in flags, "--unique" in flags)


def _for_typer(options: Mapping[str, str]) -> bool:
    if "max_retries" in options and not _plain_int(options["max_retries"]):
        return True  # ' 5', '+5', '1_000', '5.0', 'x': Typer coerces (or refuses) them in its own words
    return _needs_app(options.get("profile"))


def _needs_app(profile: str | None) -> bool:
    """An app from TASKQ_APP or the profile (the fast path loads none), or a profile or config file
    that is refused: the Typer command handles (and reports) it."""
    from taskq_cli.config import app_from_env
    from taskq_cli.errors import UsageError

    try:
        return app_from_env(profile) is not None
    except UsageError:
        return True


def _plain_int(text: str) -> bool:
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit() and len(digits) <= 18
