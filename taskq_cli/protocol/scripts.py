"""Loads the Lua scripts once per process and runs them by SHA, reloading after a Redis restart."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.cluster import ClusterPipeline
from redis.exceptions import NoScriptError

ScriptArg = str | int | float


class Script:
    """One operation: `_lib.lua` followed by the operation's own file (a `read_` file alone)."""

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
        """Add a call to a pipeline; run the pipeline with `execute_with_scripts`. The raw command,
        since a cluster pipeline refuses `pipe.evalsha()`; there it also names the node owning the
        keys' slot (from the client's slot map), because redis-py would otherwise ask a server
        (COMMAND GETKEYS) where each EVALSHA goes: one extra round trip per call. A MOVED reply is
        still followed: redis-py re-sends such a call on its own, routed by its keys."""
        if isinstance(pipe, ClusterPipeline):
            cluster: Any = pipe
            node = cluster.get_node_from_key(keys[0])
            cluster.execute_command("EVALSHA", self.sha, len(keys), *keys, *args, target_nodes=node)
        else:
            pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


@cache
def load_scripts() -> dict[str, Script]:
    folder = resources.files("taskq_cli.protocol").joinpath("lua")
    lib = folder.joinpath("_lib.lua").read_text()
    scripts: dict[str, Script] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".lua") and not entry.name.startswith("_"):
            name = entry.name.removesuffix(".lua")
            # a read_ script is standalone: it takes only the keys it reads, and needs no helper
            source = entry.read_text() if name.startswith("read_") else lib + "\n" + entry.read_text()
            scripts[name] = Script(name, source)
    return scripts


def execute_with_scripts(pipe: Any, client: Any) -> list[Any]:
    """Run a non-transactional pipeline of script calls and plain commands (standalone or cluster).

    A script missing from a server's cache (after a restart, a failover, on a new cluster node) fails
    only its own calls: the scripts are loaded (on every primary of a cluster) and exactly those calls
    run again, so no call ever runs twice, even when only some nodes of a cluster lost their cache.
    A WAIT in the pipeline is sent again after those calls (on the connection that re-ran them) and
    answers the smaller count of the two. Then the first error left, if any, is raised."""
    staged = _staged(pipe)
    replies = list(pipe.execute(raise_on_error=False))
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for script in load_scripts().values():
            client.script_load(script.source)
        waits = [i for i, (args, _) in enumerate(staged) if str(args[0]).upper() == "WAIT"]
        again = client.pipeline(transaction=False)
        for i in missing + waits:
            args, options = staged[i]
            again.execute_command(*args, **options)
        rerun = list(again.execute(raise_on_error=False))
        for i, reply in zip(missing, rerun[: len(missing)], strict=True):
            replies[i] = reply
        for i, reply in zip(waits, rerun[len(missing) :], strict=True):
            replies[i] = reply if isinstance(reply, Exception) else min(int(reply), _count(replies[i]))
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _staged(pipe: Any) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The commands waiting in a pipeline, copied before it runs (a cluster pipeline consumes options
    such as `target_nodes` while it runs). redis-py keeps (args, options) pairs in `command_stack`
    for a standalone pipeline, and PipelineCommand objects for a cluster one: in its execution
    strategy since redis-py 6, in `command_stack` before."""
    strategy = getattr(pipe, "_execution_strategy", None)
    stack = strategy.command_queue if strategy is not None else pipe.command_stack
    return [
        (tuple(c.args), dict(c.options)) if hasattr(c, "args") else (tuple(c[0]), dict(c[1])) for c in stack
    ]


def _count(reply: Any) -> int:
    return reply if isinstance(reply, int) else 0
