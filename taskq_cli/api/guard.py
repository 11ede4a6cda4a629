"""What happens before a route sees a request: the Host and Origin checks (a web page in a browser on
the same machine must not reach an API that has no token), the bearer token (constant time), the
content type and size of a body, and strict JSON parsing with a nesting limit. Pure ASGI and pure
functions; nothing here talks to Redis."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from fastapi.responses import JSONResponse

MAX_BODY = 1024 * 1024  # bytes
MAX_DEPTH = 64  # nesting levels of a request body
# The routes that read a body; every other route answers without reading one.
BODY_ROUTES = frozenset({("POST", "/enqueue"), ("POST", "/dlq/retry")})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # they change nothing: no Origin check
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
UI_PREFIX = "/ui"  # the dashboard (ui.py) checks its own session: a cookie, or the bearer token
UI_API_PREFIX = "/ui/api/"  # its POSTs take JSON bodies

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiError(Exception):
    """An answer other than success: its status, one line of detail, and validation errors."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors


class JSON(JSONResponse):
    """JSON like the CLI's --json (UTF-8, not ASCII-escaped). Text that is not valid Unicode (a lone
    surrogate inside a stored payload) falls back to escapes instead of failing."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(content, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class HostRule:
    """The Host headers a server without a token answers, against DNS rebinding (a name the attacker
    controls, pointed at 127.0.0.1, would make the browser treat the API as the attacker's own site).
    An IP address cannot be rebound, so `any_address` accepts any; `names` are accepted as well, on
    `port` when it is set. A request without a Host header (HTTP/1.0) comes from no browser."""

    names: frozenset[str] = frozenset({"localhost"})
    any_address: bool = True
    port: int | None = None

    @classmethod
    def bound_to(cls, host: str, port: int) -> HostRule:
        """What `taskq api --host HOST --port PORT` answers: the loopback names and HOST, on PORT;
        any address when HOST is a wildcard (0.0.0.0, ::) whose names cannot be known."""
        wildcard = host.strip("[]") in ("", "0.0.0.0", "::")
        names = {*LOOPBACK_NAMES, _normal_host(host)}
        return cls(frozenset(names), any_address=wildcard, port=None if wildcard else port)

    def allows(self, header: bytes | None) -> bool:
        if header is None:
            return True
        parsed = split_host(header.decode("latin-1"))
        if parsed is None:
            return False
        name, port = parsed
        if port is not None and self.port is not None and port != self.port:
            return False
        return name in self.names or (self.any_address and _is_address(name))


def split_host(text: str) -> tuple[str, int | None] | None:
    """(name, port) of a Host header or an origin's host part, the name lower-case and an IPv6
    address without brackets; None when it is malformed."""
    text = text.strip().lower()
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        name, _, port_text = text.partition(":")
    else:
        name, port_text = text, None
    if not name or (port_text is not None and not (port_text.isdigit() and int(port_text) < 65536)):
        return None
    return name, None if port_text is None else int(port_text)


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").lower()


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Guard:
    """Before any route: refuses a Host header that names another site (no token only), a foreign
    Origin on a request that changes something (unless CORS allows it), a missing or wrong bearer
    token (every route but /healthz, when there is a token). Then, for the routes that take a body
    only, checks it is JSON (415) and reads it whole, at most `max_body` bytes (413 beyond, whatever
    Content-Length said). Other routes answer without reading a body."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        max_body: int,
        cors_origins: Collection[str] = (),
        hosts: HostRule | None = None,
    ) -> None:
        self.app = app
        self.digest = None if token is None else _digest(token.encode())
        self.max_body = max_body
        self.origins = frozenset(o.rstrip("/").lower() for o in cors_origins)
        self.hosts = hosts or HostRule()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await send_error(send, *refusal)
            return
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            await send_error(send, 400, "invalid Content-Length header")
            return
        if not takes_body(str(scope.get("method")), route_path(scope)):
            await self.app(scope, receive, send)  # its body, if any, is never read
            return
        await self._with_body(scope, receive, send, headers, declared)

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[Any, ...] | None:
        """(status, detail[, headers]) when the request is refused before anything is read."""
        if self.digest is None and not self.hosts.allows(headers.get(b"host")):
            return 421, "unknown Host header: this server answers only the names it listens on"
        origin = headers.get(b"origin")
        if (
            origin is not None
            and scope.get("method") not in SAFE_METHODS
            and not self._origin_ok(origin.decode("latin-1"), scope, headers.get(b"host"))
        ):
            return 403, "cross-origin request refused: allow the origin with --cors-origin"
        if self.digest is not None and not _own_auth(route_path(scope)) and not self._allowed(headers):
            return 401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
        return None

    def _origin_ok(self, origin: str, scope: Scope, host: bytes | None) -> bool:
        """Same origin (the page the API serves itself, /docs), or one CORS allows."""
        origin = origin.strip().rstrip("/").lower()
        if "*" in self.origins or origin in self.origins:
            return True
        scheme, sep, netloc = origin.partition("://")
        return (
            bool(sep)
            and host is not None
            and (
                scheme == scope.get("scheme", "http")
                and split_host(netloc) == split_host(host.decode("latin-1"))
            )
        )

    async def _with_body(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], declared: bytes | None
    ) -> None:
        has_body = declared != b"0" and (declared is not None or b"transfer-encoding" in headers)
        if has_body and not is_json(headers.get(b"content-type")):
            await send_error(send, 415, "the body must be JSON: send Content-Type: application/json")
            return
        too_big = declared is not None and int(declared) > self.max_body
        try:
            body = None if too_big else await self._read(receive)
        except _ClientGone:  # gone before the end of its body: no answer, and nothing runs
            return
        if body is None:
            await send_error(send, 413, f"request body too large: at most {self.max_body} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    def _allowed(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        same = hmac.compare_digest(_digest(given.strip()), self.digest or b"")
        return same and scheme.lower() == b"bearer"

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None past the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def takes_body(method: str, path: str) -> bool:
    """The routes whose body is read (checked, limited); every other route never reads one."""
    return (method, path) in BODY_ROUTES or (method == "POST" and path.startswith(UI_API_PREFIX))


def _own_auth(path: str) -> bool:
    """/healthz needs no token; the dashboard's paths check their own session (ui.py)."""
    return path in ("/healthz", UI_PREFIX) or path.startswith(UI_PREFIX + "/")


def is_json(content_type: bytes | None) -> bool:
    """application/json, with or without parameters (charset)."""
    media = (content_type or b"").split(b";", 1)[0].strip().lower()
    return media == b"application/json"


class _ClientGone(Exception):
    pass


def _digest(value: bytes) -> bytes:
    """Both sides hashed first, so the comparison takes the same time whatever the lengths."""
    return hashlib.sha256(value).digest()


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def route_path(scope: Scope) -> str:
    """The path inside this app (a mounted app sees its mount point in root_path)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


async def send_error(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    response = JSON({"detail": detail}, status_code=status, headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# -- strict JSON -----------------------------------------------------------------------------------

# A string, or an unclosed one up to the end of the text: linear time whatever the input.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_depth(text: str) -> int:
    """How deep a JSON text's arrays and objects nest, found without parsing (no recursion)."""
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, skeleton)), default=0)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all different: with a key given twice, which value would count is
    the parser's choice (Python keeps the last, others the first), so neither is taken."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"key {twice[:100]!r} given more than once in an object")
    return found


def parse_body(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Strict JSON from a request body (UTF-8; no NaN or Infinity, no key twice in an object): 400
    when it is not JSON, 422 when it nests deeper than `max_depth`, checked before the parser could
    recurse."""
    if not body.strip():
        raise ApiError(400, "empty request body: expected JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"request body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    too_deep = ApiError(422, f"JSON nested too deeply: at most {max_depth} levels")
    openings = text.count("[") + text.count("{")  # cheap: most bodies cannot nest that deep
    if openings > max_depth and nesting_depth(text) > max_depth:
        raise too_deep
    try:
        return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except RecursionError:  # cannot happen after the depth check; a guard all the same
        raise too_deep from None
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from None
