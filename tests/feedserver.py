"""A real HTTP server on 127.0.0.1 that serves recorded feeds and scripted faults.

    def test_x(feed_server):
        feed_server.route("/feed", body=b"<rss .../>", etag='"v1"')
        url = feed_server.url("/feed")
        ...
        assert feed_server.requests("/feed")[0].headers["user-agent"].startswith("nato-")

A path answers with one `Route`, or with a list of them taken in turn (the last one
repeats). Every request is recorded (path, headers, time) so tests can assert what a
client sent. It is a real socket server in a thread, so a client in another process
(the daemon in a subprocess) can use it too.
"""

from __future__ import annotations

import gzip as gzip_module
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/rss+xml; charset=utf-8"
    delay: float = 0.0  # seconds before the status line
    gzip: bool = False  # gzip the body (Content-Encoding: gzip)
    raw_encoding: str | None = None  # send `body` as is, labelled with this Content-Encoding
    etag: str | None = None  # sent, and a matching If-None-Match gets a 304
    last_modified: str | None = None  # sent, and a matching If-Modified-Since gets a 304
    honour_validators: bool = True  # False: a server that ignores validators (always 200)
    location: str | None = None  # for redirects: the Location header
    retry_after: str | None = None
    endless: bool = False  # a body that never ends (no Content-Length)
    trickle: float | None = None  # seconds between single bytes of the body
    stall_after: int | None = None  # send this many body bytes, then go silent


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    time: float  # time.time() when it arrived
    peer: tuple = ()  # the client's (address, port): one per connection


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, list[Route]] = {}
        self.log: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- programming it ----------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, *steps: Route, **kwargs) -> str:
        """Program a path: one Route from kwargs, or several Routes answered in turn."""
        with self._lock:
            self.routes[path] = list(steps) or [Route(**kwargs)]
        return self.url(path)

    def feed(self, path: str, fixture: str, **kwargs) -> str:
        """Serve a file from tests/fixtures/."""
        return self.route(path, body=(FIXTURES / fixture).read_bytes(), **kwargs)

    def requests(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.log if path is None or r.path == path]

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> FeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases handlers that stall or stream forever
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next_route(self, path: str) -> Route | None:
        with self._lock:
            steps = self.routes.get(path) or self.routes.get(path.split("?", 1)[0])
            if not steps:
                return None
            return steps.pop(0) if len(steps) > 1 else steps[0]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # clients that cut a response off (caps, timeouts) are what tests do


def _handler_for(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: with Nagle's algorithm on, a keep-alive
        # client waits ~40 ms for the delayed ACK on every response.
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            with server._lock:
                server.log.append(
                    Request(self.command, self.path, headers, time.time(), self.client_address)
                )
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                self._answer(server._next_route(self.path), headers)
            except OSError:
                pass  # the client hung up, as clients that cap a response do
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _answer(self, route: Route | None, headers: dict[str, str]) -> None:
            if route is None:
                route = Route(status=404, body=b"no such route", content_type="text/plain")
            if route.delay and server._stop.wait(route.delay):
                return
            if _not_modified(route, headers):
                self.send_response(304)
                self._validators(route)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = gzip_module.compress(route.body) if route.gzip else route.body
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self._validators(route)
            if route.gzip or route.raw_encoding:
                self.send_header("Content-Encoding", route.raw_encoding or "gzip")
            if route.location:
                self.send_header("Location", route.location)
            if route.retry_after:
                self.send_header("Retry-After", route.retry_after)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.endless or route.trickle or route.stall_after is not None:
                self.send_header("Connection", "close")
                self.end_headers()
                self._stream(route, body)
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _validators(self, route: Route) -> None:
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.last_modified:
                self.send_header("Last-Modified", route.last_modified)

        def _stream(self, route: Route, body: bytes) -> None:
            if route.stall_after is not None:
                self.wfile.write(body[: route.stall_after])
                self.wfile.flush()
                server._stop.wait(60)
            elif route.trickle:
                for byte in _endless(body) if route.endless else body:
                    self.wfile.write(bytes([byte]) if isinstance(byte, int) else byte)
                    self.wfile.flush()
                    if server._stop.wait(route.trickle):
                        return
            else:
                chunk = body or b"<item>" * 10_000
                while not server._stop.is_set():
                    self.wfile.write(chunk)

    return Handler


def _not_modified(route: Route, headers: dict[str, str]) -> bool:
    if not route.honour_validators or route.status != 200:
        return False
    if route.etag and headers.get("if-none-match") == route.etag:
        return True
    return bool(route.last_modified and headers.get("if-modified-since") == route.last_modified)


def _endless(body: bytes) -> Iterator[int]:
    while True:
        yield from body or b"x"


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    try:
        yield server
    finally:
        server.stop()
