"""The dashboard's session: the API token is asked once and traded for a cookie (HttpOnly,
SameSite=Strict, HMAC-signed, no state on the server), and every request that changes something
carries a CSRF token bound to that cookie in a header. Pure functions over bytes and strings.

The cookie's key is derived from the API token, so a cookie survives a restart of `taskq api` and
dies when the token changes. Without a token a random key per process signs a cookie all the same:
the CSRF token needs a session to be bound to."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "taskq_ui"
CSRF_HEADER = "x-csrf-token"
MAX_AGE = 7 * 24 * 3600  # seconds a signed-in browser stays signed in


@dataclass(frozen=True)
class Sessions:
    key: bytes
    token_digest: bytes | None  # sha256 of the API token; None: no token, no sign-in

    @classmethod
    def for_token(cls, token: str | None) -> Sessions:
        if token is None:
            return cls(secrets.token_bytes(32), None)
        key = hmac.new(token.encode(), b"taskq dashboard cookie v1", hashlib.sha256).digest()
        return cls(key, hashlib.sha256(token.encode()).digest())

    @property
    def needs_token(self) -> bool:
        return self.token_digest is not None

    def token_ok(self, given: str) -> bool:
        """Constant time: both sides hashed first."""
        digest = hashlib.sha256(given.encode()).digest()
        return self.token_digest is not None and hmac.compare_digest(digest, self.token_digest)

    def new_cookie(self, now: float | None = None) -> str:
        """`<session id>.<issued at>.<signature>`, all URL-safe."""
        body = f"{secrets.token_urlsafe(18)}.{int(now if now is not None else time.time())}"
        return f"{body}.{self._sign(body)}"

    def session_of(self, cookie: str | None, now: float | None = None) -> str | None:
        """The session id of a valid, unexpired cookie; None otherwise."""
        if not cookie or cookie.count(".") != 2:
            return None
        session, issued, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{session}.{issued}")):
            return None
        if not issued.isdigit() or (now if now is not None else time.time()) - int(issued) > MAX_AGE:
            return None
        return session

    def csrf_for(self, session: str) -> str:
        return self._sign(f"csrf:{session}")

    def csrf_ok(self, session: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf_for(session))

    def _sign(self, text: str) -> str:
        mac = hmac.new(self.key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def cookie_header(value: str, path: str, secure: bool, max_age: int = MAX_AGE) -> str:
    """A Set-Cookie value the page's scripts cannot read and no other site's request carries."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{flags}"
