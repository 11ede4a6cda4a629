"""Which Redis deployment a URL names, the client for it, and what that deployment looks like.

    redis://host:port/db, rediss://..., unix://...          one server (redis-py's own from_url)
    redis+cluster://[user:pass@]host:port[,host:port...]    Redis Cluster: redis-py's RedisCluster
    redis+sentinel://[user:pass@]host:port[,host:port...]/service_name[/db]
                                                            the primary of a Sentinel-managed group:
                                                            redis-py's Sentinel.master_for
    rediss+cluster://..., rediss+sentinel://...              the same over TLS (sentinels included)

Query options are redis-py's (`?ssl_ca_certs=...&socket_timeout=...`); for Sentinel,
`sentinel_username` and `sentinel_password` authenticate to the sentinels themselves (the user and
password before `@` are the data nodes'). The clients never retry on their own: callers decide
(workers back off and try again; other commands fail at once). Routing is redis-py's: a cluster
client follows MOVED/ASK and refreshes its slot map, a Sentinel pool asks the sentinels for the
current primary whenever it (re)connects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry as RedisRetry
from redis.sentinel import Sentinel, SentinelConnectionPool

from taskq_cli.errors import BrokerUnavailable, InvalidRedisUrl
from taskq_cli.protocol.failures import broker_error

Client: TypeAlias = "redis.Redis | RedisCluster"

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379

# redis-py helpers without type annotations, called through Any under mypy --strict
_parse_url: Any = redis.connection.parse_url
_ClusterNode: Any = ClusterNode
_Sentinel: Any = Sentinel


def connect(url: str, *, socket_timeout: float | None = 10.0, connect_timeout: float = 5.0) -> Client:
    """A client that fails fast: callers decide themselves whether and how to retry."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "encoding_errors": "replace",  # malformed bytes become visible text instead of a crash
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        "socket_keepalive": True,
        "retry": RedisRetry(NoBackoff(), 0),
    }
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES:
        return _cluster(url, options)
    if scheme in SENTINEL_SCHEMES:
        return _sentinel(url, options)
    return _single(url, options)


def check_url(url: str) -> None:
    """Refuse (InvalidRedisUrl) a URL no client can be made from, without connecting to anything: what a
    command checks before it starts, so a typo is bad usage (exit 2) rather than a runtime failure."""
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES:
        _cluster_nodes(url)
    elif scheme in SENTINEL_SCHEMES:
        _sentinel_target(url)
    else:
        _single_server_options(url, {})


def _driver_info() -> dict[str, Any]:
    """redis-py 8 names itself to the server (CLIENT SETINFO) with the version it reads from the
    installed package's metadata: a search of sys.path for each connection object made (12 ms of
    a `taskq enqueue` here, more in a venv of many packages). The same name and version, from
    redis.__version__. Earlier redis-py has no DriverInfo (and reads the version once, at import)."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:
        return {}
    return {"driver_info": DriverInfo(name="redis-py", lib_version=redis.__version__)}


def _single(url: str, options: dict[str, Any]) -> redis.Redis:
    options = {**_driver_info(), **options}
    _single_server_options(url, options)
    if url.lower().startswith("unix:"):  # not a TCP socket: no keepalive (redis-py refuses it there)
        options = {k: v for k, v in options.items() if k != "socket_keepalive"}
    return redis.Redis.from_url(url, health_check_interval=30, **options)


# Options of redis-py's pool rather than of each connection.
_POOL_OPTIONS = ("connection_class", "max_connections", "cache_factory", "maint_notifications_config")


def _single_server_options(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options each connection of a redis://, rediss:// or unix:// URL gets: `options`, then the
    URL's own (its query options win, as in redis-py's from_url); a malformed URL is InvalidRedisUrl."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise _bad_url(url, "use redis://, rediss://, unix://, redis+cluster:// or redis+sentinel://")
    database = parts.path.strip("/")
    if scheme == "unix" and not database:
        raise _bad_url(url, "unix:// needs the socket's path (unix:///run/redis.sock)")
    if scheme != "unix" and database and not database.isdigit():  # redis-py would ignore it
        raise _bad_url(url, f"the database must be a number, not {database!r}")
    try:
        from_url = _parse_url(url)
    except ValueError as exc:
        raise _bad_url(url, str(exc)) from None
    merged = {**_driver_info(), **options, **from_url}
    connection_class = merged.get("connection_class", redis.Connection)
    if scheme == "unix":
        merged.pop("socket_keepalive", None)
    kwargs = {k: v for k, v in merged.items() if k not in _POOL_OPTIONS}
    try:  # making a connection object opens no socket: this only checks the options (`?bogus=1`)
        connection_class(**kwargs)
    except TypeError as exc:
        unknown = str(exc).rpartition(" ")[2].strip("'")
        raise _bad_url(url, f"unknown option {unknown!r}") from None
    return kwargs


def _bad_url(url: str, why: str) -> InvalidRedisUrl:
    return InvalidRedisUrl(f"invalid Redis URL {_redacted(url)!r}: {why}")


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


@dataclass(frozen=True)
class ParsedUrl:
    """A URL naming several hosts: its hosts, the rest of its path, and redis-py's own reading of
    its credentials and query options."""

    tls: bool
    hosts: list[tuple[str, int]]
    path: list[str]
    options: dict[str, Any] = field(default_factory=dict)


def parse_multi_host_url(url: str, default_port: int) -> ParsedUrl:
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    hosts = [_host_port(item.strip(), default_port, url) for item in hostlist.split(",") if item.strip()]
    if not hosts:
        raise InvalidRedisUrl(
            f"no host in Redis URL {_redacted(url)!r}: use {parts.scheme}://host:port[,host:port]"
        )
    tls = parts.scheme.lower().startswith("rediss")
    # redis-py parses the credentials and query options; the host it sees is only a placeholder
    single = f"{'rediss' if tls else 'redis'}://{userinfo + '@' if userinfo else ''}localhost"
    options = _parse_url(single + (f"?{parts.query}" if parts.query else ""))
    for key in ("host", "port", "connection_class", "db"):
        options.pop(key, None)
    path = [unquote(p) for p in parts.path.split("/") if p]
    return ParsedUrl(tls, hosts, path, options)


def _host_port(item: str, default_port: int, url: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, sep, port_text = item.rpartition(":")
        if not sep:
            host, port_text = item, ""
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidRedisUrl(f"invalid port {port_text!r} in Redis URL {_redacted(url)!r}")
    return host, int(port_text)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    return url.replace(parts.netloc, f"***@{hostlist}", 1) if at and userinfo else url


def _cluster_nodes(url: str) -> ParsedUrl:
    parsed = parse_multi_host_url(url, 6379)
    if parsed.path and parsed.path != ["0"]:
        raise InvalidRedisUrl(f"a Redis Cluster has only database 0: {_redacted(url)!r}")
    return parsed


def _cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    parsed = _cluster_nodes(url)
    try:
        return RedisCluster(
            startup_nodes=[_ClusterNode(host, port) for host, port in parsed.hosts],
            ssl=parsed.tls,
            **{**options, **parsed.options, "decode_responses": True},
        )
    except RedisClusterException as exc:  # no startup node answered: the usual "cannot reach Redis"
        raise BrokerUnavailable(f"Redis Cluster at {_redacted(url)}: {exc}", type(exc).__name__) from exc
    except redis.RedisError as exc:
        raise broker_error(exc) from exc


def _sentinel_target(url: str) -> tuple[ParsedUrl, str, int]:
    """The sentinels, the service name and the database of a Sentinel URL."""
    parsed = parse_multi_host_url(url, SENTINEL_PORT)
    if not parsed.path or len(parsed.path) > 2:
        raise InvalidRedisUrl(
            f"Sentinel URL {_redacted(url)!r} needs the service name: "
            "redis+sentinel://host:port[,host:port]/service_name[/db]"
        )
    service, db = parsed.path[0], parsed.path[1] if len(parsed.path) == 2 else "0"
    if not db.isdigit():
        raise InvalidRedisUrl(f"invalid database {db!r} in Sentinel URL {_redacted(url)!r}")
    return parsed, service, int(db)


def _sentinel(url: str, options: dict[str, Any]) -> redis.Redis:
    parsed, service, db = _sentinel_target(url)
    node_options = dict(parsed.options)
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": options["socket_connect_timeout"],
        "socket_timeout": 5.0,
        "socket_keepalive": True,
        "ssl": parsed.tls,
    }
    for key in ("username", "password"):
        value = node_options.pop(f"sentinel_{key}", None)
        if value is not None:
            sentinel_options[key] = value
    for key, value in node_options.items():
        if key.startswith("ssl_"):  # the sentinels of a TLS deployment use the same certificates
            sentinel_options[key] = value
    sentinel = _Sentinel(parsed.hosts, sentinel_kwargs=sentinel_options)
    client: redis.Redis = sentinel.master_for(
        service,
        redis_class=redis.Redis,
        ssl=parsed.tls,
        db=db,
        **{**options, **node_options, "decode_responses": True},
    )
    return client


# -- what the deployment looks like (for `taskq doctor`) -------------------------------------------


@dataclass(frozen=True)
class Topology:
    """`kind`: standalone, sentinel or cluster. `primaries`: host:port of each primary;
    `replicas`: how many replicas each primary has (same order); `problems`: what the deployment
    itself reports as broken (cluster state, uncovered slots, a primary that is a replica)."""

    kind: str
    primaries: list[str]
    replicas: list[int]
    service: str | None = None
    sentinels: int = 0  # sentinels that answered
    sentinels_configured: int = 0
    slots_covered: int | None = None
    problems: list[str] = field(default_factory=list)


def describe(client: Client) -> Topology:
    if isinstance(client, RedisCluster):
        return _describe_cluster(client)
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return _describe_sentinel(client, pool)
    info = client.info("replication")
    kwargs = pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    problems = []
    if info.get("role") != "master":
        problems.append(f"{where} is a replica (role {info.get('role')}): every write fails with READONLY")
    return Topology("standalone", [str(where)], [int(info.get("connected_slaves", 0))], problems=problems)


def _describe_cluster(client: RedisCluster) -> Topology:
    cluster: Any = client
    primaries = cluster.get_primaries()
    counts = []
    for node in primaries:
        info = client.get_redis_connection(node).info("replication")
        counts.append(int(info.get("connected_slaves", 0)))
    state = client.cluster_info()
    covered = int(state.get("cluster_slots_ok", 0))
    problems = []
    if state.get("cluster_state") != "ok":
        problems.append(f"cluster_state is {state.get('cluster_state')}")
    if covered < 16384:
        problems.append(f"only {covered} of 16384 slots are served")
    return Topology("cluster", [n.name for n in primaries], counts, slots_covered=covered, problems=problems)


def _describe_sentinel(client: redis.Redis, pool: SentinelConnectionPool) -> Topology:
    manager = pool.sentinel_manager
    answered = 0
    for sentinel in manager.sentinels:
        try:
            sentinel.ping()
            answered += 1
        except redis.RedisError:
            pass
    host, port = manager.discover_master(pool.service_name)
    info = client.info("replication")
    problems = []
    if info.get("role") != "master":
        problems.append(f"{host}:{port} answers as a {info.get('role')}: a failover is under way")
    return Topology(
        "sentinel",
        [f"{host}:{port}"],
        [int(info.get("connected_slaves", 0))],
        service=pool.service_name,
        sentinels=answered,
        sentinels_configured=len(manager.sentinels),
        problems=problems,
    )


def server_clients(client: Client) -> list[tuple[str, redis.Redis]]:
    """One plain client per primary, named host:port (a standalone or Sentinel primary: one, named
    ''), for checks of each server's own settings."""
    if isinstance(client, RedisCluster):
        cluster: Any = client
        return [(node.name, cluster.get_redis_connection(node)) for node in cluster.get_primaries()]
    return [("", client)]
