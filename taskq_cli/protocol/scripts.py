"""Loads the Lua scripts once per process and runs them by SHA, reloading after a Redis restart."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

ScriptArg = str | int | float


class Script:
    """One operation: `_lib.lua` followed by the operation's own file."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, client: Any, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Any, keys: Sequence[str], args: Sequence[ScriptArg]) -> None:
        """Add a call to a pipeline; run the pipeline with `execute_with_scripts`."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)


@cache
def load_scripts() -> dict[str, Script]:
    folder = resources.files("taskq_cli.protocol").joinpath("lua")
    lib = folder.joinpath("_lib.lua").read_text()
    scripts: dict[str, Script] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".lua") and not entry.name.startswith("_"):
            name = entry.name.removesuffix(".lua")
            scripts[name] = Script(name, lib + "\n" + entry.read_text())
    return scripts


def execute_with_scripts(pipe: Any, client: Any) -> list[Any]:
    """Run a pipeline of script calls; after a Redis restart emptied the script cache, load the
    scripts and run it again. A script missing from the cache fails every one of its calls, so the
    second run repeats no script; the pipelines that mix in plain commands keep them idempotent."""
    commands = list(pipe.command_stack)
    try:
        return list(pipe.execute())
    except NoScriptError:
        for script in load_scripts().values():
            client.script_load(script.source)
        pipe.command_stack = commands
        return list(pipe.execute())
