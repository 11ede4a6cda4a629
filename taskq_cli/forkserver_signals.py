"""Imported first in the process pool's fork server (its preload list; never import it elsewhere).

The fork server spawns the pool's replacement children when the worker has an --app. It lives in the
worker's process group, so a SIGTERM to the whole group (`timeout`, a service manager, `kill -TERM
-PGID`) reached it too and killed it: every child it had spawned died with it (their parent is the
server) in the middle of the grace period, and the pool's next spawn failed with BrokenPipeError.
The server ignores SIGTERM as multiprocessing already makes it ignore SIGINT: the worker decides what
stops, and the server exits on its own once the worker is gone. Children inherit the setting; the pool's
child code sets it again anyway.
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
