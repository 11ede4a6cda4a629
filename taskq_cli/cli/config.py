"""`taskq config show`: the effective connection settings and where each came from."""

from __future__ import annotations

from typing import Annotated

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import App, GlobalOptions, Namespace, Profile, RedisUrl, chosen_profile

config_app = typer.Typer(help="Profiles and the effective settings.", no_args_is_help=True)

Output = Annotated[
    str,
    typer.Option("-o", "--output", help="table, json or jsonl.", show_default=False),
]


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    fmt: Output = "table",
    as_json: Annotated[bool, typer.Option("--json", help="Same as -o json.")] = False,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
    app: App = None,
) -> None:
    """Each effective setting (profile, redis_url, namespace, app) and its source: option, env,
    profile:NAME or default. Passwords in URLs are masked.

    Example: taskq --profile staging config show -o json
    """
    from taskq_cli.config import effective
    from taskq_cli.errors import UsageError

    if fmt not in ("table", "json", "jsonl"):
        raise UsageError(f"invalid --output {fmt!r}: use table, json or jsonl")
    given = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
    options = {
        "redis_url": redis_url or given.redis_url,
        "namespace": namespace or given.namespace,
        "app": app or given.app,
    }
    shown = {
        k: {"value": s.value, "source": s.source} for k, s in effective(options, chosen_profile(ctx)).items()
    }
    if as_json or fmt == "json":
        output.json_out(shown)
    elif fmt == "jsonl":
        output.json_out(shown)  # one object: one line
    else:
        rows = [[k, "" if v["value"] is None else v["value"], v["source"]] for k, v in shown.items()]
        output.show_table("settings", ("setting", "value", "source"), rows)
