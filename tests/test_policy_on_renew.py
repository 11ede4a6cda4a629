"""A handler's retry policy that the producer did not know reaches the task's record with the lease
renewal the worker sends anyway (no round trip of its own), so that recovery after a crash follows it."""

from __future__ import annotations

import json

import redis

from taskq_cli.config import RetryDefaults
from taskq_cli.protocol import Broker, NewTask
from taskq_cli.protocol.keys import QueueKeys

from .conftest import Clock

DEFAULTS = RetryDefaults(max_retries=3, backoff_base=5.0, backoff_max=3600.0)


def test_a_policy_sent_with_a_renewal_is_what_recovery_of_the_lost_attempt_follows(
    broker: Broker, raw: redis.Redis, namespace: str, clock: Clock
) -> None:
    # Given a task enqueued by a producer that did not know its handler (no policy on the record)
    broker.enqueue([NewTask("a", "default", {"name": "job", "queue": "default"}, "{}")])
    [job] = broker.fetch_many("default", 1, 10, "w1")
    # When the worker's renewal carries the handler's policy (no retries), and the worker dies
    assert broker.renew({"default": [(job.id, job.token)]}, 10, pins={job.id: (0, 1.0, 2.0)}) == []
    clock.advance(11)
    # Then recovery follows the handler's policy: dead, not retried under the defaults
    assert broker.recover("default", DEFAULTS) == (0, 1)
    record = json.loads(str(raw.hget(QueueKeys(namespace, "default").tasks, "a")))
    assert record["state"] == "dead" and record["max_retries"] == 0 and record["backoff_max"] == 2.0
