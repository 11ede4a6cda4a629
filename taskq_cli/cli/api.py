"""`taskq api`: serve the HTTP API (taskq_cli/api) with uvicorn. FastAPI and uvicorn are imported
only here, inside the command, so every other command starts without them."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
from typing import Annotated

import typer

from taskq_cli.cli import output
from taskq_cli.cli.common import App, Namespace, Profile, RedisUrl, open_queue
from taskq_cli.config import api_token_from_env
from taskq_cli.errors import TaskqError, UsageError

_SIZE = re.compile(r"(\d+)\s*(b|k|kb|kib|m|mb|mib)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}


def api(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    token_file: Annotated[
        str | None,
        typer.Option(help="File holding the bearer token [else env TASKQ_API_TOKEN].", show_default=False),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a non-loopback address without a token.")
    ] = False,
    max_body: Annotated[str, typer.Option(help="Largest request body (bytes, or 512KiB, 2MiB).")] = "1MiB",
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Allow this origin through CORS (repeatable; CORS is off without it).", show_default=False
        ),
    ] = None,
    read_timeout: Annotated[
        float, typer.Option(help="Seconds a client has to send a whole request (headers and body).", min=0.1)
    ] = 10.0,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    redis_url: RedisUrl = None,
    profile: Profile = None,
    namespace: Namespace = None,
    app: App = None,
) -> None:
    """Serve the HTTP API: enqueue, inspect and operate over HTTP (see docs/api.md).

    Example: TASKQ_API_TOKEN=secret taskq api --host 0.0.0.0 --port 8000 --app tasks
    """
    try:
        import uvicorn

        from taskq_cli.api import HostRule, create_app
        from taskq_cli.api.server import protocol_class
    except ImportError:
        raise TaskqError("the HTTP API is not installed: pip install 'taskq-cli[api]'") from None
    token = _token(token_file)
    if token is None and not _is_loopback(host):
        if not insecure:
            raise UsageError(
                f"refusing to serve on {host} without a token: set TASKQ_API_TOKEN or --token-file "
                "(or pass --insecure)"
            )
        output.warn(f"warning: serving on {host} with no authentication (--insecure)")
    if token is None and "*" in (cors_origin or ()):
        raise UsageError("--cors-origin '*' needs a token: any web page could use the API")
    limit = _size(max_body)
    tq = open_queue(ctx, redis_url, namespace, app)
    rule = HostRule.bound_to(host, port)
    server = create_app(tq, token=token or "", max_body=limit, cors_origins=cors_origin or (), hosts=rule)
    listener = _listen(host, port)
    auth = "bearer token required" if token else "no authentication"
    output.warn(f"api on http://{_url_host(host)}:{port} (namespace {tq.settings.namespace}, {auth})")
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the handler it
    # found: this one makes that a plain exit 0, like `taskq worker`.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_0)
    config = uvicorn.Config(
        server,
        http=protocol_class(read_timeout),
        access_log=access_log,
        server_header=False,
        log_level="info",
    )
    uvicorn.Server(config).run(sockets=[listener])


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here: a port in use is one line and exit 1 (uvicorn would log
    several and exit 3)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise TaskqError(f"cannot listen on {_url_host(host)}:{port}: {reason.lower()}") from None


def _exit_0(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _token(path: str | None) -> str | None:
    """The token from --token-file, else TASKQ_API_TOKEN; None when neither gives one."""
    if path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the token file {path}: {exc}") from None
        if not text:
            raise UsageError(f"the token file {path} is empty")
    else:
        text = api_token_from_env()
        if not text:
            return None
    if not text.isascii() or not text.isprintable() or any(c.isspace() for c in text):
        raise UsageError("the API token must be printable ASCII without spaces")
    return text


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _size(text: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    if match is None or int(match.group(1)) < 1:
        raise UsageError(f"invalid size {text!r} (examples: 1048576, 512KiB, 2MiB)")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
