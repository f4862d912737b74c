"""The server-side request forgery guard: a URL a remote party chose reaches public hosts only.

A feed's article links and every redirect were written by someone else. Fetched blindly,
they would let a feed make this program read its own admin pages, a cloud metadata service
(169.254.169.254) or anything else on the private network. So a target is checked after DNS
resolution, and every address it resolves to must be public: not private, loopback,
link-local, multicast, reserved or unspecified, nor one of those wrapped in an IPv6 form
(IPv4-mapped, NAT64's well-known prefix, 6to4).

`refused_addresses` is the decision for a host and the addresses it resolved to.
`GuardedTransport` applies it to every request an httpx client sends, so every redirect hop
is checked, and it connects to the very address it checked, so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot slip through. The URL keeps its
host name: httpcore's pool keys connections on it (two names on one address never share a
connection, which was verified for one of them only), and TLS sends it and checks the
certificate against it. Only the network backend, where httpcore would resolve the name, is
ours: it takes the checked address instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
AsyncResolver = Callable[[str, int], Awaitable[list[str]]]

NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: IPv4 in the last 32 bits
DEFAULT_PORTS = {"http": 80, "https": 443}
ALLOW_SETTING = "fetch.allow_private_addresses"
# A request extension: True lets this one request reach a private address (a host the user
# configured, or a source allowed to); the fetcher decides it per hop.
PRIVATE_OK = "aggregator.private_ok"


class TargetRefused(httpx.ConnectError):
    """The guard refused to connect; str() says why. Asking again gets the same answer
    (a host that does not resolve now is a plain ConnectError: DNS recovers). An
    httpx.ConnectError, so code that handles a failed connection handles this too."""


async def resolve_async(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return _addresses(infos)


def _addresses(infos: list) -> list[str]:
    return list(dict.fromkeys(info[4][0] for info in infos))


def refused_addresses(host: str, addresses: list[str]) -> str | None:
    """Why the host at these addresses is not public, or None when every one is."""
    for text in addresses:
        reason = address_refusal(text)
        if reason:
            shown = host if host == text else f"{host} resolves to {text}, which"
            return f"{shown} is {reason} ({ALLOW_SETTING} is off)"
    return None


def address_refusal(text: str) -> str | None:
    """What is wrong with this address for a fetch a remote party chose; None if public."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # fe80::1%eth0: zone dropped
    except ValueError:
        return f"not an IP address ({text!r})"
    embedded, form = _embedded_ipv4(address)
    if embedded is not None:
        reason = _kind(embedded)
        return f"{reason} ({form} {embedded})" if reason else None
    return _kind(address)


def _embedded_ipv4(address: Address) -> tuple[ipaddress.IPv4Address | None, str]:
    if not isinstance(address, ipaddress.IPv6Address):
        return None, ""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64 for"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4 for"
    return None, ""


def _kind(address: Address) -> str | None:
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _split(url: str) -> tuple[str, int] | str:
    """(host, port) of an http(s) URL, or why there is none."""
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError as exc:
        return f"invalid URL {url!r}: {exc}"
    if scheme not in DEFAULT_PORTS:
        return f"refusing a {scheme or 'scheme-less'} URL: {url}"
    if not host:
        return f"invalid URL {url!r}: no host"
    return host, port or DEFAULT_PORTS[scheme]


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that checks each request's target before connecting.

    Refused requests raise `TargetRefused` and never open a connection. An allowed one is
    sent to the addresses that were checked, in turn until one connects. `private_hosts` are
    hosts whose private addresses are accepted (a source configured to allow them) when
    `allow_private` is off, and so is a request whose `PRIVATE_OK` extension is true.
    """

    def __init__(
        self,
        allow_private: bool = False,
        *,
        private_hosts: Collection[str] = (),
        resolver: AsyncResolver = resolve_async,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.private_hosts = frozenset(h.lower() for h in private_hosts)
        self.resolver = resolver
        ssl_context = ssl_context or httpx.create_ssl_context()
        # Two pools: a connection opened where private addresses were allowed (a poll of a
        # configured host) must never carry a request that only public ones may answer (an
        # article link to the same name, now resolving to a public address).
        self.public = _CheckedAddressTransport(ssl_context)
        self.private = _CheckedAddressTransport(ssl_context)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = _split(str(request.url))
        if isinstance(target, str):
            raise TargetRefused(target, request=request)
        host, port = target
        try:
            addresses = await self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from None
        if not addresses:  # DNS may answer tomorrow: a failure, not a refusal
            raise httpx.ConnectError(f"{host} resolves to no address", request=request)
        private_ok = self.allow_private or request.extensions.get(PRIVATE_OK, False)
        private_ok = private_ok or host.lower() in self.private_hosts
        if not private_ok:
            reason = refused_addresses(host, addresses)
            if reason:
                raise TargetRefused(f"refused: {reason}", request=request)
        pool = self.private if private_ok else self.public
        for address in addresses[:-1]:  # each checked address in turn, as a resolver would
            try:
                return await self._send(pool, request, address)
            except httpx.ConnectError:
                continue
        return await self._send(pool, request, addresses[-1])

    async def _send(
        self, pool: httpx.AsyncHTTPTransport, request: httpx.Request, address: str
    ) -> httpx.Response:
        """The request, over a connection to `address` if one must be opened; a pooled
        connection to the same host name was opened to an address checked before."""
        token = _CHECKED_ADDRESS.set(address)
        try:
            return await pool.handle_async_request(request)
        finally:
            _CHECKED_ADDRESS.reset(token)

    async def aclose(self) -> None:
        try:
            await self.public.aclose()
        finally:
            await self.private.aclose()


# The address GuardedTransport checked for the request being sent in this task: httpcore
# opens a connection in the task that asked for it, through `_CheckedAddressBackend`.
_CHECKED_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "checked_address", default=None
)


class _CheckedAddressBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting to the checked address instead of resolving
    the host name again; it never connects anywhere unchecked."""

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = _CHECKED_ADDRESS.get()
        if address is None:
            raise httpcore.ConnectError(f"no checked address to connect to for {host}")
        return await self._backend.connect_tcp(
            address, port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(self, *args: object, **kwargs: object) -> None:
        raise httpcore.ConnectError("the guard connects to checked TCP addresses only")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _CheckedAddressTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a pool whose connections go to checked addresses. httpx has
    no parameter for the network backend, so the pool it made is replaced, with httpx's
    own defaults."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=100,  # these three: httpx's DEFAULT_LIMITS
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_CheckedAddressBackend(),
        )
