"""What happens before a route sees a request: the bearer token (constant time), the body size limit,
and strict JSON parsing with a nesting limit. Pure ASGI and pure functions; nothing here talks to
Redis."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from itertools import accumulate
from typing import Any

from fastapi.responses import JSONResponse

MAX_BODY = 1024 * 1024  # bytes
MAX_DEPTH = 64  # nesting levels of a request body

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


class Guard:
    """Checks the bearer token on every route but /healthz (when there is a token), then reads the
    whole body, at most `max_body` bytes (413 beyond, whatever Content-Length said), and hands it on."""

    def __init__(self, app: ASGIApp, token: str | None, max_body: int) -> None:
        self.app = app
        self.digest = None if token is None else _digest(token.encode())
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.digest is not None and route_path(scope) != "/healthz" and not self._allowed(headers):
            await send_error(send, 401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
            return
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            await send_error(send, 400, "invalid Content-Length header")
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


def parse_body(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Strict JSON from a request body (UTF-8; no NaN or Infinity): 400 when it is not JSON, 422
    when it nests deeper than `max_depth`, checked before the parser could recurse."""
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
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:  # cannot happen after the depth check; a guard all the same
        raise too_deep from None
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from None
