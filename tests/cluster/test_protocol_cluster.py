"""The core protocol suite (tests/test_protocol.py), unchanged, against a 3-primary Redis Cluster:
the fixtures of tests/cluster/conftest.py point `redis_url`, `raw` and the namespace clean-up at the
cluster, so every script, pipeline and read runs there."""

from tests.test_protocol import *  # noqa: F403
