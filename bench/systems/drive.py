"""`python -m bench.systems.drive SYSTEM ACTION ...`: imports bench/systems/SYSTEM_sys.py as itself (not as
__main__, so the tasks it defines have the names a worker knows) and runs one of its ACTIONS."""

from __future__ import annotations

import importlib
import sys

from bench.systems.common import main

if __name__ == "__main__":
    system = sys.argv.pop(1)
    module = importlib.import_module(f"bench.systems.{system}_sys")
    main(module.ACTIONS)
