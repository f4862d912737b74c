"""serve under abuse: the real server on a loopback port, attacked with raw sockets.

What one client may make the server hold is bounded (issue 11, case 7): the size and number of
a request's header fields, the time it takes to send a request and to read a response, how long
an idle connection stays open, how many connections there are. Requests beyond the concurrency
ceiling are answered 503. Bad dates and odd files in feeds/ never break a request.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

import httpx
import pytest

from aggregator import config as config_module
from aggregator.serve.limits import Limits
from tests.test_serve import free_port, make_site, serving

FEED = "/feeds/partnerships.atom"
QUICK = Limits(request_timeout=1.0, keep_alive_timeout=1.0, send_timeout=1.0)
HANG = 10.0  # seconds: far beyond every limit under test, so waiting this long means a hang


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[config_module.Config, str]]:
    config = make_site(tmp_path_factory.mktemp("site"))
    with serving(config) as base:
        yield config, base


@pytest.fixture
def quick_site(tmp_path) -> Iterator[tuple[config_module.Config, str]]:
    """A server whose time limits are one second, so that tests can outwait them."""
    config = make_site(tmp_path / "site")
    with serving(config, limits=QUICK) as base:
        yield config, base


# --- raw HTTP -----------------------------------------------------------------------------------


def address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def connect(base: str) -> socket.socket:
    sock = socket.create_connection(address(base), timeout=HANG)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(target: str = FEED, *fields: str, close: bool = True) -> bytes:
    """A GET; with `close`, the connection ends after the response instead of idling."""
    head = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *fields]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server ends the connection within `seconds` while we read what it sends."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.5)
    try:
        while time.monotonic() < deadline:
            with suppress(TimeoutError):
                if not sock.recv(1 << 20):
                    return True
    except ConnectionResetError:
        return True
    return False


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def exchange(base: str, data: bytes) -> bytes:
    with connect(base) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def healthy(base: str) -> bool:
    """Another client still gets the feed."""
    return httpx.get(base + FEED, timeout=HANG).status_code == 200


# --- the size of a request head ---------------------------------------------------------------


def test_a_head_over_the_size_limit_gets_431(site):
    _, base = site
    field = "X-Padding: " + "a" * (Limits().max_head_bytes + 1)
    response = exchange(base, request(FEED, field))
    assert status_of(response) == 431
    assert b"connection: close" in response.lower()
    fitting = "X-Padding: " + "a" * (Limits().max_head_bytes // 2)
    assert status_of(exchange(base, request(FEED, fitting))) == 200
    assert healthy(base)


def test_too_many_header_fields_get_431(site):
    _, base = site
    limit = Limits().max_header_fields
    too_many = [f"X-Field-{n}: {n}" for n in range(limit - 1)]  # + Host and Connection
    assert status_of(exchange(base, request(FEED, *too_many))) == 431
    assert status_of(exchange(base, request(FEED, *too_many[1:]))) == 200


def test_a_long_request_target_gets_414(site):
    _, base = site
    target = FEED + "?" + "q" * Limits().max_target_bytes
    assert status_of(exchange(base, request(target))) == 414
    assert healthy(base)


def test_an_unfinished_head_is_refused_without_reading_it_all(site):
    """The attack that took the server to 638 MB: header bytes that never end. The server
    stops reading near the limit, so the client cannot send its 64 MiB (the kernel's socket
    buffers take a few MiB), and another client is served meanwhile."""
    _, base = site
    total = 64 * 1024 * 1024
    chunk = b"a" * 65536
    sent = 0
    with connect(base) as sock:
        sock.settimeout(2)  # a send that blocks this long: the server is not reading
        sock.sendall(b"GET " + FEED.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        deadline = time.monotonic() + HANG
        try:
            while sent < total and time.monotonic() < deadline:
                sock.sendall(chunk)
                sent += len(chunk)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
        assert sent < total // 4, "the server kept reading an endless header"
        assert healthy(base)
        sock.settimeout(HANG)
        response = read_until_closed(sock)
    assert status_of(response) == 431  # sent before the server stopped listening


# --- time ---------------------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(quick_site):
    _, base = quick_site
    with connect(base) as sock:
        assert read_until_closed(sock) == b""  # closed by the server, not by our timeout


def test_a_head_sent_byte_by_byte_times_out_with_408(quick_site):
    """Slowloris: each byte arrives well within any idle timeout, the head never ends."""
    _, base = quick_site
    received = []

    def listen(sock: socket.socket) -> None:
        received.append(read_until_closed(sock))

    with connect(base) as sock:
        reader = threading.Thread(target=listen, args=(sock,))
        reader.start()
        sock.sendall(b"GET " + FEED.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + HANG
        try:
            while reader.is_alive() and time.monotonic() < deadline:
                sock.sendall(b"X")
                time.sleep(0.1)
        except (ConnectionResetError, BrokenPipeError):
            pass
        reader.join(HANG)
        assert not reader.is_alive(), "the server kept a trickling head open"
    assert status_of(received[0]) == 408


def test_an_idle_keep_alive_connection_is_closed(quick_site):
    _, base = quick_site
    with connect(base) as sock:
        sock.sendall(request(close=False))
        response = read_until_closed(sock)  # returns when the server closes the idle connection
    assert status_of(response) == 200 and response.endswith(b"</feed>\n")


def test_blank_lines_do_not_keep_an_idle_connection_open(quick_site):
    """The parser skips empty lines between requests; they must not count as a request."""
    _, base = quick_site
    with connect(base) as sock:
        sock.sendall(request(close=False))
        deadline = time.monotonic() + HANG
        try:
            while time.monotonic() < deadline:
                sock.sendall(b"\r\n")
                time.sleep(0.1)
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert time.monotonic() < deadline, "blank lines kept the connection open"


def test_a_client_that_does_not_read_its_response_is_dropped(quick_site):
    """Pipelined requests for a large document that are never read: the responses pile up
    in the server until the send timeout drops the connection."""
    config, base = quick_site
    month = config.server.feeds_dir / "partnerships" / "archive" / "2023-01.atom"
    size = 4 * 1024 * 1024
    month.write_bytes(b"<feed>" + os.urandom(size // 2).hex().encode() + b"</feed>\n")
    requests = 20
    with connect(base) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        path = "/feeds/partnerships/archive/2023-01.atom"
        sock.sendall(request(path, "Accept-Encoding: identity", close=False) * requests)
        time.sleep(3 * QUICK.send_timeout)  # read nothing meanwhile
        assert closed_within(sock, HANG), "the server kept a stalled connection"
    assert healthy(base)


# --- how many ---------------------------------------------------------------------------------


@contextmanager
def serve_command(config: config_module.Config, descriptors: int) -> Iterator[str]:
    """`aggregator serve` in a subprocess limited to `descriptors` open files."""
    port = free_port()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, descriptors))

    command = ("-m", "aggregator", "--config", str(config.path), "serve", "--port", str(port))
    process = subprocess.Popen(
        [sys.executable, *command],
        preexec_fn=limit,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=config.path.parent,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.communicate()
            try:
                httpx.get(base + "/opml", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        _, err = process.communicate(timeout=HANG)
        assert b"Traceback" not in err, err.decode(errors="replace")


def test_idle_connections_cannot_lock_out_new_clients(tmp_path):
    """More idle connections than the process has file descriptors: new clients are still
    served, because at the ceiling the connection idle for longest makes room."""
    config = make_site(tmp_path / "site")
    descriptors = 256
    with serve_command(config, descriptors) as base, ExitStack() as stack:
        idle = [stack.enter_context(connect(base)) for _ in range(descriptors + 150)]
        for _ in range(3):
            assert httpx.get(base + FEED, timeout=HANG).status_code == 200
        idle[0].settimeout(HANG)
        assert read_until_closed(idle[0]) == b"", "the oldest idle connection is still open"


class Gate:
    """An ASGI app whose requests wait until the test opens the gate: requests in flight."""

    def __init__(self) -> None:
        self.inside = 0
        self.opened = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        self.inside += 1
        while not self.opened.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


def test_requests_beyond_the_concurrency_ceiling_get_503(tmp_path):
    config = make_site(tmp_path / "site")
    gate = Gate()
    ceiling = 3
    with serving(config, gate, limits=Limits(max_connections=ceiling)) as base, ExitStack() as s:
        waiting = [s.enter_context(connect(base)) for _ in range(ceiling)]
        for sock in waiting:
            sock.sendall(request("/", close=False))
        deadline = time.monotonic() + HANG
        while gate.inside < ceiling:
            assert time.monotonic() < deadline, "the gated requests did not arrive"
            time.sleep(0.01)
        refused = exchange(base, request("/"))
        assert status_of(refused) == 503
        assert b"retry-after:" in refused.lower()
        gate.opened.set()
        for sock in waiting:
            sock.sendall(request("/"))
            assert status_of(read_until_closed(sock)) == 200
        assert status_of(exchange(base, request("/"))) == 200


# --- what a request may contain -----------------------------------------------------------------


@pytest.mark.parametrize(
    "date",
    [
        "Mon, 01 Jan 99999999999 00:00:00 GMT",
        "Mon, 01 Jan 9999 23:59:59 -2359",
        "Mon, 99 Jan 2020 00:00:00 GMT",
        "Mon, 01 Jan 2020 99:00:00 GMT",
        "Mon, 01 Jan -5 00:00:00 GMT",
        "x" * 1000,
        "",
    ],
)
@pytest.mark.parametrize("path", [FEED, "/opml"])
def test_an_unreadable_if_modified_since_is_ignored(site, date, path):
    _, base = site
    response = httpx.get(base + path, headers={"if-modified-since": date}, timeout=HANG)
    assert response.status_code == 200 and response.content


def test_only_regular_files_are_served(tmp_path):
    """A FIFO in feeds/ used to block the event loop in open() and hang every request."""
    config = make_site(tmp_path / "site")
    fifo = config.server.feeds_dir / "partnerships.rss"
    fifo.unlink()
    os.mkfifo(fifo)
    with serving(config) as base:
        try:
            response = httpx.get(base + "/feeds/partnerships.rss", timeout=HANG)
            assert response.status_code == 404
            assert healthy(base)
        finally:
            release_reader(fifo)


def release_reader(fifo) -> None:
    """If the server is stuck opening the FIFO, open its other end so it can shut down."""
    with suppress(OSError):  # no reader: nothing is stuck
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
