"""Instructions per one-by-one `enqueue` (valgrind's callgrind): the bench app's `noop.enqueue()` in
a loop, client side only, on a redis-server of its own. Two runs (--base and --tasks enqueues) are
counted and their difference divided by the extra tasks, so start-up and imports cancel out; the
count hardly moves with the machine's load, unlike a timing.

    python bench/profile_enqueue.py --tasks 3000 [--site /tmp/other-build]
    python bench/profile_enqueue.py --bulk --tasks 20000 --base 2000   # one enqueue_many of N
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import ROOT, redis_server, variant_site

LOOP = """
import sys
from bench import taskq_app
import taskq_cli
taskq_app.tq.configure(redis_url=sys.argv[1])
for _ in range(int(sys.argv[2])):
    taskq_app.noop.enqueue()
print(taskq_cli.__file__)
"""

BULK = """
import sys
from bench import taskq_app
import taskq_cli
taskq_app.tq.configure(redis_url=sys.argv[1])
taskq_app.noop.enqueue()
taskq_app.tq.enqueue_many([("noop", {})] * int(sys.argv[2]))
print(taskq_cli.__file__)
"""


def count(site: Path, n: int, loop: str = LOOP) -> int:
    out = Path(tempfile.mkdtemp(prefix="taskq-callgrind-"))
    with redis_server() as (url, _port):
        env = dict(os.environ, TASKQ_NAMESPACE="prof", PYTHONPATH=str(site))
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p"]
        subprocess.run(
            [*valgrind, sys.executable, "-c", loop, url, str(n)],
            cwd=site,
            env=env,
            check=True,
            capture_output=True,
        )
    total = 0
    for path in glob.glob(str(out / "cg.*")):
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total += int(line.split()[1])
                break
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--base", type=int, default=300)
    parser.add_argument("--site", help="a directory holding the taskq_cli to profile (default: this repo's)")
    parser.add_argument("--bulk", action="store_true", help="one enqueue_many of --tasks items instead")
    args = parser.parse_args()
    site = variant_site("profile", Path(args.site)) if args.site else ROOT
    loop = BULK if args.bulk else LOOP
    base, full = count(site, args.base, loop), count(site, args.tasks, loop)
    what = "task of enqueue_many" if args.bulk else "enqueue"
    print(f"{(full - base) / (args.tasks - args.base):,.0f} instructions per {what} ({site})")


if __name__ == "__main__":
    main()
