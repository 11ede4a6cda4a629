"""The protocol is the floor: it imports nothing of taskq above errors and states, and a Redis
failure leaves it as taskq's own error (BrokerUnavailable, BrokerError), never as redis-py's."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskq_cli.errors import BrokerError, BrokerUnavailable, InvalidRedisUrl, UsageError
from taskq_cli.protocol import Broker, BrokerSettings, connect
from taskq_cli.protocol.topology import check_url
from tests.support.ports import free_port
from tests.support.servers import RedisServer

PACKAGE = Path(__file__).resolve().parent.parent / "taskq_cli"
ALLOWED = {"taskq_cli", "taskq_cli.errors", "taskq_cli.states", "taskq_cli.timeparse"}

# taskq_cli/__init__.py imports the whole library: an empty package object stands in for it, so that
# only what the protocol itself imports gets loaded.
ONLY_THE_PROTOCOL = f"""
import json, sys, types
package = types.ModuleType("taskq_cli")
package.__path__ = [{str(PACKAGE)!r}]
sys.modules["taskq_cli"] = package
import taskq_cli.protocol, taskq_cli.protocol.probes
print(json.dumps(sorted(m for m in sys.modules if m.startswith("taskq_cli"))))
"""


def test_importing_the_protocol_loads_nothing_of_taskq_above_errors_and_states() -> None:
    run = [sys.executable, "-c", ONLY_THE_PROTOCOL]
    proc = subprocess.run(run, capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(proc.stdout))
    assert "taskq_cli.protocol.broker" in loaded
    above = {m for m in loaded if m not in ALLOWED and not m.startswith("taskq_cli.protocol")}
    assert above == set(), "the protocol reaches up into " + ", ".join(sorted(above))


def test_no_module_of_the_protocol_imports_taskq_above_errors_and_states_even_inside_a_function() -> None:
    upward = []
    for path in sorted((PACKAGE / "protocol").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            upward += [
                f"{path.name}: {name}"
                for name in names
                if name.startswith("taskq_cli")
                and name not in ALLOWED
                and not name.startswith("taskq_cli.protocol")
            ]
    assert upward == []


def test_a_call_to_a_redis_nobody_listens_on_raises_broker_unavailable(namespace: str) -> None:
    broker = Broker(connect(f"redis://127.0.0.1:{free_port()}/0"), BrokerSettings(namespace, 100, 3600.0, 10))
    try:
        with pytest.raises(BrokerUnavailable) as caught:
            broker.known_queues()
        assert caught.value.kind == "ConnectionError"
        with pytest.raises(BrokerUnavailable):  # a pipeline and a script call alike
            broker.queue_stats(["default"])
    finally:
        broker.close()


def test_a_malformed_url_is_an_invalid_redis_url_which_is_bad_usage() -> None:
    with pytest.raises(InvalidRedisUrl) as caught:
        check_url("redis://127.0.0.1:6379/zero")
    assert isinstance(caught.value, UsageError)


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_a_command_the_user_may_not_run_raises_broker_error_naming_noperm(
    acl_server: RedisServer, namespace: str
) -> None:
    # Given a user that may read the namespace's keys but run no script
    admin = acl_server.client()
    admin.acl_setuser("reader", enabled=True, passwords=["+pw"], keys=[f"{namespace}:*"], commands=["+@read"])
    admin.close()
    url = acl_server.url.replace("redis://", "redis://reader:pw@")
    broker = Broker(connect(url), BrokerSettings(namespace, 100, 3600.0, 10))
    try:
        assert broker.known_queues() == []  # a read it may do
        # When it runs a write script, Then taskq's own error comes out, with Redis's reason
        with pytest.raises(BrokerError) as caught:
            broker.cancel("default", "some-id")
        assert not isinstance(caught.value, BrokerUnavailable)
        assert caught.value.kind == "NoPermissionError" and "no permissions" in str(caught.value)
        assert type(caught.value.__cause__).__name__ == "NoPermissionError"
    finally:
        broker.close()


def test_a_client_names_redis_py_and_its_version_without_reading_package_metadata() -> None:
    """CLIENT SETINFO gets redis-py's name and version from redis.__version__: redis-py 8 would
    otherwise search sys.path for its metadata for every connection object (cold start)."""
    import redis

    driver = pytest.importorskip("redis.driver_info")
    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    assert isinstance(client, redis.Redis)
    info = client.connection_pool.connection_kwargs["driver_info"]
    assert isinstance(info, driver.DriverInfo)
    assert (info.formatted_name, info.lib_version) == ("redis-py", redis.__version__)
    from taskq_cli.protocol.aio import connect_async

    async_info = connect_async(f"redis://127.0.0.1:{free_port()}/0").connection_pool.connection_kwargs
    assert async_info["driver_info"].lib_version == redis.__version__
    code = (
        "from unittest import mock\n"
        "import redis.utils\n"
        "from taskq_cli.protocol.topology import check_url\n"
        "with mock.patch.object(redis.utils, 'get_lib_version', side_effect=AssertionError('read')):\n"
        "    check_url('redis://127.0.0.1:1/0')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
