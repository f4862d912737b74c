"""What one client can make the server hold: bounded in bytes, time and connections.

uvicorn's httptools protocol, as it comes, takes request heads of any size (httptools joins a
long header value chunk by chunk, so memory grows without end), arms no timer until a first
response is sent, restarts its keep-alive timer on every byte (a blank line a second keeps a
connection forever), never drops a client that stops reading, and accepts connections until
the process runs out of file descriptors, after which new clients are dropped. `LimitedProtocol`
is that protocol with the limits below; `make_server` passes it to uvicorn as its `http=` class,
so the daemon and `aggregator serve` get the same limits.

Deadlines are kept as numbers per connection and enforced by one sweep a `tick` while
connections are open (no timer per request: the feed polls are the hot path), so each time
limit holds within one tick.
"""

from __future__ import annotations

import heapq
import resource
import socket
import struct
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["LimitedProtocol", "Limits", "protocol_with"]

RESERVED_DESCRIPTORS = 64  # kept for the archive, logs and the poller's own connections
SLICE = 16 * 1024  # bytes fed to the parser at a time, so a head is checked every 16 KiB
LINGER = 1.0  # seconds a refused connection stays half-open so that the client reads why
RETRY_AFTER = b"5"  # seconds, in a 503


@dataclass(frozen=True, slots=True)
class Limits:
    max_head_bytes: int = 16 * 1024  # request line and header fields: above, 431
    max_target_bytes: int = 8 * 1024  # the request target (path and query): above, 414
    max_header_fields: int = 100  # above, 431
    request_timeout: float = 10.0  # from a connection or a request's first byte to its end: 408
    keep_alive_timeout: float = 5.0  # an idle connection between requests is closed
    send_timeout: float = 60.0  # a response the client does not read is dropped
    max_connections: int = 1000  # the ceiling: see LimitedProtocol

    @classmethod
    def for_this_process(cls) -> Limits:
        """The defaults, with the connection ceiling below this process's descriptor limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return cls()
        usable = max(8, soft - RESERVED_DESCRIPTORS)
        return cls(max_connections=min(cls().max_connections, usable))

    @property
    def tick(self) -> float:
        return min(1.0, self.request_timeout / 2, self.keep_alive_timeout / 2)


def protocol_with(limits: Limits) -> type[LimitedProtocol]:
    """A protocol class for one server: its connections share the limits and one sweep."""
    return type("LimitedProtocol", (LimitedProtocol,), {"limits": limits, "sweep": Sweep(limits)})


class Sweep:
    """Enforces the deadlines of one server's connections, waking once a tick while any is open."""

    def __init__(self, limits: Limits) -> None:
        self.tick = limits.tick
        self.timer = None

    def start(self, protocol: LimitedProtocol) -> None:
        if self.timer is None:
            self.timer = protocol.loop.call_later(
                self.tick, self.run, protocol.loop, protocol.connections
            )

    def run(self, loop, connections: set) -> None:
        self.timer = None
        now = loop.time()
        for connection in list(connections):
            if isinstance(connection, LimitedProtocol):
                connection.check_deadlines(now)
        if connections:
            self.timer = loop.call_later(self.tick, self.run, loop, connections)


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with `limits`:

    - a request head above the size or field-count limit gets 431 (414 for the target),
      checked while it arrives, so no more than `max_head_bytes` + 16 KiB is ever held;
    - a connection must complete a request within `request_timeout` of opening or of the
      request's first byte (else 408), and is closed after `keep_alive_timeout` idle;
    - a client that leaves `send_timeout` seconds of our response unread is dropped;
    - at `max_connections`, a new connection makes room by dropping the one that has waited
      longest on its client (idle, or a head still unfinished); when every connection is busy
      with a request, requests get 503 with Retry-After instead of being dropped.
    """

    limits: ClassVar[Limits]
    sweep: ClassVar[Sweep]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: float | None = None  # the client must finish what it is doing by then
        self.write_deadline: float | None = None  # the client must read what we sent by then
        self.waiting_since: float | None = None  # waiting on the client since; None: busy
        self.in_request = False  # a request's first byte came, its last has not
        self.reading_head = False
        self.head_bytes = 0
        self.began = False  # a request began in the slice being parsed
        self.refused = False

    # --- connections ------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        now = self.loop.time()
        self.waiting_since = now
        self.deadline = now + self.limits.request_timeout
        if len(self.connections) > self.limits.max_connections:
            self._make_room()
        self.sweep.start(self)

    def _make_room(self) -> None:
        """Drop the connections that have waited longest on their clients, down to the ceiling."""
        closing, candidates = 0, []
        for connection in self.connections:
            if connection.transport.is_closing():
                closing += 1
            elif connection is not self and getattr(connection, "waiting_since", None) is not None:
                candidates.append(connection)
        excess = len(self.connections) - closing - self.limits.max_connections
        for connection in heapq.nsmallest(excess, candidates, key=lambda c: c.waiting_since):
            connection.drop()

    def drop(self) -> None:
        """End the connection now, discarding what the client has not read (a reset)."""
        if self.cycle is not None:
            self.cycle.disconnected = True  # a response waiting to write must not try
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def check_deadlines(self, now: float) -> None:
        if self.write_deadline is not None and now >= self.write_deadline:
            self.drop()
        elif self.deadline is not None and now >= self.deadline:
            self.deadline = None
            if self.in_request:
                self._refuse(b"408", b"The request took too long to arrive.\n")
            else:
                self._close()

    def timeout_keep_alive_handler(self) -> None:
        self._close()

    def _close(self) -> None:
        """Close once our bytes are out; if the client does not take them, drop it."""
        self.transport.close()
        if self.transport.get_write_buffer_size() and self.write_deadline is None:
            self.write_deadline = self.loop.time() + self.limits.send_timeout

    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_deadline = self.loop.time() + self.limits.send_timeout

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_deadline = None

    # --- requests ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if len(data) <= SLICE:
            self._parse(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), SLICE):
            self._parse(view[start : start + SLICE])
            if self.refused or self.transport.is_closing():
                return

    def _parse(self, data) -> None:
        if self.refused:
            return
        self.began = False
        super().data_received(data)
        if self.reading_head and not self.began:  # a slice wholly inside an unfinished head
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_head_bytes:
                self._refuse(b"431", b"The request's header fields are too large.\n")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.began = self.reading_head = self.in_request = True
        self.head_bytes = 0
        self.deadline = self.loop.time() + self.limits.request_timeout

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.waiting_since = None
        refusal = self._refusal()
        if refusal is None:
            super().on_headers_complete()
            return
        app, self.app = self.app, refusal  # uvicorn runs self.app for this request
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def _refusal(self) -> Callable[..., Awaitable[None]] | None:
        limits = self.limits
        if len(self.url) > limits.max_target_bytes:
            return TARGET_TOO_LONG
        if len(self.headers) > limits.max_header_fields:
            return HEAD_TOO_LARGE
        size = len(self.url)
        for name, value in self.headers:
            size += len(name) + len(value)
        if size > limits.max_head_bytes:
            return HEAD_TOO_LARGE
        if len(self.tasks) >= limits.max_connections:
            return BUSY
        return None

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_request = False
        self.deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle now: no pipelined request started
            now = self.loop.time()
            self.waiting_since = now
            self.deadline = now + self.limits.keep_alive_timeout  # blank lines do not reset it

    def _refuse(self, status: bytes, message: bytes) -> None:
        """Answer without a request cycle, stop reading, and close after LINGER seconds: a
        client still sending gets our answer before the connection ends."""
        self.refused = True
        self.in_request = False
        if self.cycle is not None and not self.cycle.response_complete:
            self.drop()  # an earlier response is being written: no room for ours
            return
        self.transport.write(_raw_response(status, message, self.server_state.default_headers))
        self.flow.pause_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.deadline = self.loop.time() + LINGER
        if self.waiting_since is None:
            self.waiting_since = self.loop.time()


# --- the refusals -------------------------------------------------------------------------------

_REASONS = {
    b"408": b"Request Timeout",
    b"414": b"URI Too Long",
    b"431": b"Request Header Fields Too Large",
    b"503": b"Service Unavailable",
}


def _headers(message: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),
        (b"content-length", b"%d" % len(message)),
    ]


def _raw_response(status: bytes, message: bytes, default_headers) -> bytes:
    lines = [b"HTTP/1.1 " + status + b" " + _REASONS[status]]
    lines += [name + b": " + value for name, value in [*default_headers, *_headers(message)]]
    return b"\r\n".join(lines) + b"\r\n\r\n" + message


def _refusal_app(status: int, message: bytes, extra: list[tuple[bytes, bytes]]):
    headers = [*_headers(message), *extra]

    async def refuse(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": message})

    return refuse


HEAD_TOO_LARGE = _refusal_app(431, b"The request's header fields are too large.\n", [])
TARGET_TOO_LONG = _refusal_app(414, b"The request target is too long.\n", [])
BUSY = _refusal_app(
    503, b"The server is busy; try again shortly.\n", [(b"retry-after", RETRY_AFTER)]
)
