"""What every test part shares: one private-Redis launcher, one free port, one way to wait, one
way to run `taskq` processes, and key readers on the protocol's own key layout."""

from .keys import (
    counters,
    final_states,
    meta_of,
    nskeys,
    payload_of,
    qkeys,
    queue_counts,
    record,
    state_of,
    worker_ids,
)
from .polling import until
from .ports import free_port
from .procs import ROOT, Proc, Procs, kill_group, popen_taskq, taskq_env
from .servers import RedisDidNotStart, RedisServer, TlsFiles, make_tls_files

__all__ = [
    "ROOT",
    "Proc",
    "Procs",
    "RedisDidNotStart",
    "RedisServer",
    "TlsFiles",
    "counters",
    "final_states",
    "free_port",
    "kill_group",
    "make_tls_files",
    "meta_of",
    "nskeys",
    "payload_of",
    "popen_taskq",
    "qkeys",
    "queue_counts",
    "record",
    "state_of",
    "taskq_env",
    "until",
    "worker_ids",
]
