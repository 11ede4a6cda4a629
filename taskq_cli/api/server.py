"""How `taskq api` serves HTTP: uvicorn's h11 protocol with three changes against slow and oversized
clients, and JSON where uvicorn answered plain text.

- A read deadline: a request (headers and body) must arrive within `read_timeout` seconds of its
  first byte (of the connection, for the first request); else the server answers 408 when it can and
  closes. uvicorn has none: unfinished headers or a trickling body kept a connection open for good.
- A lingering close: when the answer is sent before the client has sent its whole body (413, or a
  route that takes no body) and the connection must close, the server stops writing (FIN) and reads
  and discards up to LINGER_BYTES for up to LINGER_TIME before closing, as nginx does. Closing at
  once, with unread data, makes the kernel send a reset and the client never reads the answer.
- uvicorn's own 400 for a request that is not HTTP is JSON like every other error.

Only `taskq api` imports this module (uvicorn comes with the api extra)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

READ_TIMEOUT = 10.0  # seconds for a whole request, headers and body
LINGER_TIME = 5.0  # seconds an unread body is still drained before the connection closes
LINGER_BYTES = 16 * 1024 * 1024  # bytes drained at most


def protocol_class(read_timeout: float = READ_TIMEOUT) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `http` setting."""
    return type("TaskqH11Protocol", (TimedH11Protocol,), {"read_timeout": read_timeout})


def error_bytes(status: int, reason: str, detail: str) -> bytes:
    """A whole HTTP/1.1 answer, written straight to the socket, that closes the connection."""
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class TimedH11Protocol(H11Protocol):
    read_timeout: float = READ_TIMEOUT

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.real = transport
        self.deadline: asyncio.TimerHandle | None = None
        self.linger: asyncio.TimerHandle | None = None
        self.drained = 0
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._arm()  # a connection that never sends anything is a request that never arrives

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.deadline, self.linger):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.linger is not None:  # answered and closing: drain, never parse
            self.drained += len(data)
            if self.drained > LINGER_BYTES:
                self.real.close()
            return
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request()

    def send_400_response(self, msg: str) -> None:
        self.real.write(error_bytes(400, "Bad Request", "invalid HTTP request"))
        self.real.close()

    def _follow_request(self) -> None:
        """The deadline runs while a request is being received: from its first byte until its end."""
        state = self.conn.their_state
        receiving = state is h11.SEND_BODY or (state is h11.IDLE and bool(self.conn.trailing_data[0]))
        if receiving:
            self._arm()
        elif self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _arm(self) -> None:
        if self.deadline is None:
            self.deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _too_slow(self) -> None:
        self.deadline = None
        cycle: Any = self.cycle
        in_progress = cycle is not None and not cycle.response_complete
        if in_progress:  # the route waits for the rest of the body: it gets a disconnect
            cycle.disconnected = True
            cycle.message_event.set()
        if not in_progress or not cycle.response_started:
            detail = f"request not received within {self.read_timeout:g} s"
            self.real.write(error_bytes(408, "Request Timeout", detail))
        self.real.close()

    def close_lingering(self) -> None:
        """uvicorn closes the connection: at once, unless the client is still sending a body."""
        if self.linger is not None or self.real.is_closing():
            return
        if self.conn.their_state is not h11.SEND_BODY:
            self.real.close()
            return
        try:
            self.real.write_eof()  # the answer is whole: the client can read it while we drain
        except (OSError, RuntimeError, NotImplementedError):
            self.real.close()
            return
        self.real.resume_reading()
        self.linger = self.loop.call_later(LINGER_TIME, self.real.close)


class _LingeringTransport:
    """The socket's transport as uvicorn sees it: close() lingers (see TimedH11Protocol)."""

    def __init__(self, transport: asyncio.Transport, protocol: TimedH11Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.close_lingering()

    def is_closing(self) -> bool:
        return self._protocol.linger is not None or self._transport.is_closing()
