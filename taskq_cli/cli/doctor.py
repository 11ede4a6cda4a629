"""`taskq doctor`: checks what silently breaks queues in production and says how to fix each.
The checks live in taskq_cli/doctor/; this module only prints them and picks the exit status."""

from __future__ import annotations

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import JsonFlag, Namespace, Output, Profile, RedisUrl, open_queue
from taskq_cli.cli.tables import Column

COLUMNS = (Column("check", "name"), Column("status"), Column("message", "prose"), Column("fix", "prose"))


def doctor(
    ctx: typer.Context,
    fmt: Output = None,
    as_json: JsonFlag = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
) -> int:
    """Check Redis and the namespace for problems that lose or stall tasks.

    Exit 0 when nothing failed (warnings allowed), 1 when a check failed.
    Example: taskq doctor --json
    """
    from taskq_cli.doctor import failed
    from taskq_cli.services.processes import doctor as checks

    form = output.chosen(fmt, as_json)
    tq = open_queue(ctx, redis_url, namespace, None)
    findings = checks(tq)
    rows = [(f.check, f.status, f.message, f.fix or "-") for f in findings]
    output.render(
        form,
        [f.as_json() for f in findings],
        lambda: output.show_table(f"taskq doctor: namespace {tq.settings.namespace}", COLUMNS, rows),
    )
    problems = failed(findings)
    if problems:
        names = ", ".join(dict.fromkeys(f.check for f in problems))
        output.error(f"{len(problems)} check{'s' if len(problems) > 1 else ''} failed: {names}")
        return 1
    return 0
