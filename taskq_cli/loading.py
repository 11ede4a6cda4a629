"""`--app` loading: the TaskQueue a module names. Above queue.py and registry.py (it imports the
TaskQueue), so the library's modules do not import each other in a circle."""

from __future__ import annotations

import importlib
import os
import sys

from taskq_cli.errors import UsageError
from taskq_cli.queue import TaskQueue


def load_app(spec: str) -> TaskQueue:
    """The TaskQueue named by `module` or `module:attribute`; the current directory is importable."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import app {spec!r}: {exc}") from None
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, TaskQueue):
            raise UsageError(f"app {spec!r}: {attribute!r} is not a TaskQueue")
    else:
        queues = [v for v in vars(module).values() if isinstance(v, TaskQueue)]
        if len(queues) != 1:
            what = "no TaskQueue" if not queues else "several TaskQueue instances"
            raise UsageError(f"app {spec!r} has {what}; name one as module:attribute")
        found = queues[0]
    found.app_spec = spec
    return found
