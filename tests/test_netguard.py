"""The SSRF guard: which addresses are refused, and a transport that checks every hop
against a real loopback server."""

from __future__ import annotations

import asyncio
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest
import trustme

from aggregator.netguard import (
    PRIVATE_OK,
    GuardedTransport,
    TargetRefused,
    address_refusal,
    refused_addresses,
    resolve_async,
)


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
        ("64:ff9b::808:808", None),  # NAT64 for 8.8.8.8: public
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "a loopback address (IPv4-mapped 127.0.0.1)"),
        ("::ffff:10.0.0.1", "a private address (IPv4-mapped 10.0.0.1)"),
        ("64:ff9b::a9fe:a9fe", "a link-local address (NAT64 for 169.254.169.254)"),
        ("64:ff9b::7f00:1", "a loopback address (NAT64 for 127.0.0.1)"),
        ("2002:c0a8:0101::", "a private address (6to4 for 192.168.1.1)"),
        ("not-an-ip", "not an IP address ('not-an-ip')"),
    ],
)
def test_address_refusal(address, refusal):
    assert address_refusal(address) == refusal


def refusal_of(url: str, allow_private: bool = False, resolver=resolve_async) -> str | None:
    """What the transport decides for `url` before it would connect: the refusal, or None
    (the connection itself is left out: nothing listens at these names)."""

    async def decide() -> str | None:
        transport = GuardedTransport(allow_private, resolver=resolver)

        async def connected(pool, request: httpx.Request, address: str) -> httpx.Response:
            return httpx.Response(204)

        transport._send = connected
        try:
            await transport.handle_async_request(httpx.Request("GET", url))
        except TargetRefused as exc:
            return str(exc)
        return None

    return asyncio.run(decide())


def resolver_for(table: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "refusing a file URL"),
        ("ftp://example.org/x", "refusing a ftp URL"),
        ("http:///nohost", "no host"),
    ],
)
def test_only_http_urls_with_a_host_pass(url, reason):
    assert reason in refusal_of(url, allow_private=True)


def test_a_public_host_passes_and_a_private_answer_is_refused():
    resolver = resolver_for({
        "www.nato.int": ["93.184.216.34", "2606:2800:220:1::1"],
        "intranet.example": ["93.184.216.34", "10.0.0.7"],  # one bad address is enough
        "rebind.example": ["::ffff:192.168.0.1"],
    })  # fmt: skip
    assert refusal_of("https://www.nato.int/cps/en/natohq/news_1.htm", resolver=resolver) is None
    assert refusal_of("http://intranet.example/", resolver=resolver) == (
        "refused: intranet.example resolves to 10.0.0.7, which is a private address "
        "(fetch.allow_private_addresses is off)"
    )
    assert "IPv4-mapped 192.168.0.1" in refusal_of("http://rebind.example/", resolver=resolver)
    assert refused_addresses("www.nato.int", ["93.184.216.34"]) is None


def test_the_system_resolver_is_used_and_its_answers_checked():
    assert "resolves to 127.0.0.1, which is a loopback address" in refusal_of("http://localhost/")
    # 2130706433 is 127.0.0.1 written as one number: the resolver, not the text, decides.
    assert "is a loopback address" in refusal_of("http://2130706433/")
    assert "::1 is a loopback address" in refusal_of("http://[::1]:8080/")
    assert refusal_of("http://localhost/", allow_private=True) is None


def test_a_host_that_does_not_resolve_is_a_failed_connection_not_a_refusal():
    """DNS recovers: a capture or poll that met a resolver failure is tried again later."""

    async def failing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(httpx.ConnectError) as caught:
        refusal_of("http://nowhere.invalid/", resolver=failing)
    assert not isinstance(caught.value, TargetRefused)
    assert str(caught.value) == "cannot resolve nowhere.invalid: Name or service not known"


# --- the transport, against a real server on 127.0.0.1 -----------------------------------


async def get(transport: GuardedTransport, url: str, follow: bool = False) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport, follow_redirects=follow) as client:
        return await client.get(url)


def test_the_transport_refuses_loopback_before_connecting(feed_server):
    url = feed_server.route("/secret", body=b"internal")
    with pytest.raises(TargetRefused, match=r"refused: 127\.0\.0\.1 is a loopback address"):
        asyncio.run(get(GuardedTransport(allow_private=False), url))
    assert feed_server.requests() == []


def test_the_transport_connects_when_private_addresses_are_allowed(feed_server):
    url = feed_server.route("/page", body=b"hello")
    response = asyncio.run(get(GuardedTransport(allow_private=True), url))
    assert (response.status_code, response.content) == (200, b"hello")


def test_every_redirect_hop_is_checked(feed_server):
    """The source's own host may be private (its setting allows it); where it redirects
    to is checked again, after resolution: localhost is the same loopback server."""
    feed_server.route("/secret", body=b"internal")
    start = feed_server.route(
        "/hop", status=302, location=f"http://localhost:{feed_server.port}/secret"
    )
    transport = GuardedTransport(allow_private=False, private_hosts={"127.0.0.1"})
    with pytest.raises(TargetRefused, match=r"localhost resolves to 127\.0\.0\.1, which is a loop"):
        asyncio.run(get(transport, start, follow=True))
    assert [r.path for r in feed_server.requests()] == ["/hop"]


def test_the_connection_goes_to_the_checked_address_with_the_host_name_kept(feed_server):
    feed_server.route("/page", body=b"pinned")
    asked = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return {"news.example": ["127.0.0.1"]}[host]

    transport = GuardedTransport(private_hosts={"news.example"}, resolver=resolver)
    response = asyncio.run(get(transport, f"http://news.example:{feed_server.port}/page"))
    assert (response.status_code, response.content) == (200, b"pinned")
    assert asked == ["news.example"]  # resolved once: the check's answer is where it went
    assert feed_server.requests("/page")[0].headers["host"] == f"news.example:{feed_server.port}"


def test_hosts_on_one_address_never_share_a_connection(feed_server):
    """Two names served from one address (a CDN, virtual hosts) each get connections of
    their own: a connection is checked, and its TLS verified, for the name it was opened
    for. Requests to one name still reuse its connection."""
    feed_server.route("/page", body=b"shared address")

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async def three_gets() -> None:
        transport = GuardedTransport(allow_private=True, resolver=resolver)
        async with httpx.AsyncClient(transport=transport) as client:
            for host in ("one.example", "one.example", "two.example"):
                response = await client.get(f"http://{host}:{feed_server.port}/page")
                assert response.content == b"shared address"

    asyncio.run(three_gets())
    first, again, other = feed_server.requests("/page")
    assert [r.headers["host"].split(":")[0] for r in (first, again, other)] == [
        "one.example",
        "one.example",
        "two.example",
    ]
    assert first.peer == again.peer  # kept alive and reused for the same name
    assert other.peer != first.peer  # never lent to another name


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a pool could reuse the connection

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def tls_server():
    """A TLS server on 127.0.0.1 with a certificate for news.example only, and a client
    TLS context that trusts its CA (trustme)."""
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("news.example").configure_cert(server_context)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    httpd.daemon_threads = True
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    yield httpd.server_address[1], client_context
    httpd.shutdown()
    httpd.server_close()


def test_a_tls_connection_verified_for_one_name_is_never_used_for_another(tls_server):
    port, client_context = tls_server

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]  # both names on the one address, as on a CDN

    async def two_names() -> tuple[httpx.Response, Exception | None]:
        transport = GuardedTransport(
            allow_private=True, resolver=resolver, ssl_context=client_context
        )
        async with httpx.AsyncClient(transport=transport) as client:
            verified = await client.get(f"https://news.example:{port}/")
            try:
                await client.get(f"https://other.example:{port}/")
            except httpx.ConnectError as exc:
                return verified, exc
            return verified, None

    verified, refused = asyncio.run(two_names())
    assert (verified.status_code, verified.content) == (200, b"hello")
    assert refused is not None and "other.example" in str(refused)  # a hostname mismatch


def test_a_connection_opened_where_private_addresses_were_allowed_is_never_reused_otherwise(
    feed_server, monkeypatch
):
    """A poll of a configured host may reach a private address; an article link to the same
    name may not. Were they pooled together, the link would ride the poll's connection to
    the private address though DNS now answers a public one for its check."""
    feed_server.route("/feed", body=b"feed")
    feed_server.route("/admin", body=b"internal page")
    answers = iter([["127.0.0.1"], ["93.184.216.34"]])  # private first, public afterwards

    async def resolver(host: str, port: int) -> list[str]:
        return next(answers)

    opened = []
    real_connect = httpcore.AnyIOBackend.connect_tcp

    async def loopback_only(backend, host, port, *args, **kwargs):
        opened.append(host)
        if host != "127.0.0.1":  # no network here: a public address is never reached
            raise httpcore.ConnectError(f"not connecting to {host} in a test")
        return await real_connect(backend, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", loopback_only)

    async def poll_then_link() -> httpx.Response | Exception:
        transport = GuardedTransport(allow_private=False, resolver=resolver)
        async with httpx.AsyncClient(transport=transport) as client:
            base = f"http://feeds.example:{feed_server.port}"
            await client.get(f"{base}/feed", extensions={PRIVATE_OK: True})
            try:
                return await client.get(f"{base}/admin")
            except httpx.ConnectError as exc:
                return exc

    outcome = asyncio.run(poll_then_link())
    assert isinstance(outcome, httpx.ConnectError)  # a new connection, to the checked address
    assert opened == ["127.0.0.1", "93.184.216.34"]
    assert feed_server.requests("/admin") == []


def test_an_address_nothing_answers_on_is_passed_over_for_the_next(feed_server):
    # A host with an IPv6 record, fetched where only IPv4 answers: the server listens on
    # 127.0.0.1 only, so ::1 refuses (or is unreachable) and 127.0.0.1 must be tried next.
    feed_server.route("/page", body=b"second address")

    async def resolver(host: str, port: int) -> list[str]:
        return ["::1", "127.0.0.1"]

    transport = GuardedTransport(allow_private=True, resolver=resolver)
    response = asyncio.run(get(transport, f"http://dual.example:{feed_server.port}/page"))
    assert (response.status_code, response.content) == (200, b"second address")


def test_a_refusal_is_an_httpx_connect_error_with_its_reason():
    async def resolver(host: str, port: int) -> list[str]:
        return ["169.254.169.254"]

    transport = GuardedTransport(resolver=resolver)
    with pytest.raises(httpx.ConnectError) as caught:
        asyncio.run(get(transport, "http://metadata.example/latest/"))
    assert str(caught.value) == (
        "refused: metadata.example resolves to 169.254.169.254, which is a link-local "
        "address (fetch.allow_private_addresses is off)"
    )
