"""Polite HTTP: one shared httpx client, conditional GET, caps, redirects, back-off.

This stage knows HTTP and nothing about what a feed contains. `Fetcher.get` returns a
`FetchResult` for every outcome: an HTTP status is data, a network failure, a bad URL or
redirect is an `error` string, nothing raises. When to poll next is poll's decision.

Every request goes through the server-side request forgery guard (`netguard`): a URL a
remote party chose (a redirect, an article link) must resolve to public addresses unless
`fetch.allow_private_addresses` or the caller (a source allowed to) says otherwise. The
host of a URL the user configured is trusted for its own redirects.

Bodies are read raw and decompressed here, with an output limit on every step, so a
gzip or brotli bomb stops at `fetch.max_bytes` without ever inflating past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
import weakref
import zlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import httpx

from aggregator import __version__, clock
from aggregator.clock import later
from aggregator.config import Config, FetchConfig
from aggregator.errors import SourceError
from aggregator.models import FetchResult
from aggregator.netguard import PRIVATE_OK, GuardedTransport, TargetRefused

MAX_REDIRECTS = 5
# Held around each request to a URL's host: a capture's per-host turn (capture.pace).
Pace = Callable[[str], AbstractAsyncContextManager[None]]
PERMANENT_REDIRECTS = {301, 308}
REDIRECTS = {301, 302, 303, 307, 308}
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)
ACCEPT_ENCODING = "gzip, deflate, br"
# A server that trickles one byte per read timeout would hold the host's lock forever.
DEADLINE_READS = 4  # a whole response may take connect_timeout + this many read timeouts


def user_agent(contact: str) -> str:
    return f"nato-partnership-aggregator/{__version__} (+{contact})"


class FetchError(SourceError):
    """A failure that ends one fetch; str() is the `error` line."""


class URLRefused(FetchError):
    """A URL this program never fetches: asking again would be refused again."""


class Fetcher:
    """One httpx client for the whole program, and one request in flight per host."""

    def __init__(self, config: Config | FetchConfig):
        self.config: FetchConfig = getattr(config, "fetch", config)
        timeout = httpx.Timeout(
            connect=self.config.connect_timeout,
            read=self.config.read_timeout,
            write=self.config.read_timeout,
            pool=None,  # waiting for our own host lock is not a network timeout
        )
        self.client = httpx.AsyncClient(
            headers={
                "User-Agent": user_agent(self.config.user_agent_contact),
                "Accept": ACCEPT,
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            transport=GuardedTransport(self.config.allow_private_addresses),
        )
        # A daemon meets new hosts for ever (whatever articles link to): a host's lock lives
        # only while a request to it holds or awaits it.
        self._host_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def host_lock(self, url: str) -> asyncio.Lock:
        return self._host_locks.setdefault(host_key(url), asyncio.Lock())

    def request_headers(
        self, etag: str | None = None, last_modified: str | None = None
    ) -> dict[str, str]:
        """The headers a GET with these validators sends (as a WARC request record keeps)."""
        return {**self.client.headers, **_conditional(etag, last_modified)}

    async def get(
        self,
        url: str,
        etag: str | None = None,
        last_modified: str | None = None,
        *,
        remote: bool = False,
        private_ok: bool = False,
        pace: Pace | None = None,
    ) -> FetchResult:
        """GET with validators sent exactly as stored; redirects followed by hand.

        `remote`: a remote party chose `url` (an article link), so even its own host must
        be public; otherwise the user chose it and its host may be private. Every other
        host, on any redirect hop, must be public unless `private_ok`. `pace(url)`, when
        given, is held around each hop's request: a redirect to another host waits for
        that host's turn too (one hop at a time, so two hosts are never held at once)."""
        started = time.monotonic()
        try:
            _check_url(url)  # before _host, which cannot read a broken URL
            trusted = None if remote or private_ok else _host(url)
            conditional = _conditional(etag, last_modified)
            result = await self._follow(url, conditional, private_ok, trusted, pace)
        except URLRefused as exc:
            result = FetchResult(url=url, final_url=url, error=str(exc), refused=str(exc))
        except FetchError as exc:
            result = FetchResult(url=url, final_url=url, error=str(exc))
        except TargetRefused as exc:
            reason = describe_error(exc, self.config)
            result = FetchResult(url=url, final_url=url, error=reason, refused=reason)
        except httpx.HTTPError as exc:
            result = FetchResult(url=url, final_url=url, error=describe_error(exc, self.config))
        except httpx.StreamError as exc:  # httpx's other exceptions outside HTTPError
            result = FetchResult(url=url, final_url=url, error=f"broken response: {exc}")
        return _with_elapsed(result, time.monotonic() - started)

    async def _follow(
        self,
        url: str,
        conditional: dict[str, str],
        private_ok: bool,
        trusted: str | None,
        pace: Pace | None = None,
    ) -> FetchResult:
        visited = [url]
        current, permanent, still_permanent = url, None, True
        for _hop in range(MAX_REDIRECTS + 1):
            _check_url(current)
            hop_ok = private_ok or (trusted is not None and _host(current) == trusted)
            async with pace(current) if pace else contextlib.nullcontext():
                status, headers, body = await self._request(current, conditional, hop_ok)
            if status not in REDIRECTS or "location" not in headers:
                return _result(url, current, status, headers, body, permanent)
            target = _redirect_target(current, headers["location"])
            if target in visited:
                raise FetchError(f"redirect loop: {' -> '.join([*visited, target])}")
            still_permanent = still_permanent and status in PERMANENT_REDIRECTS
            if still_permanent:
                permanent = target
            visited.append(target)
            current = target
        raise FetchError(f"more than {MAX_REDIRECTS} redirects from {url}")

    async def _request(
        self, url: str, conditional: dict[str, str], private_ok: bool
    ) -> tuple[int, dict[str, str], bytes]:
        deadline = self.config.connect_timeout + DEADLINE_READS * self.config.read_timeout
        async with self.host_lock(url):
            try:
                async with asyncio.timeout(deadline):
                    request = self.client.build_request(
                        "GET", url, headers=conditional, extensions={PRIVATE_OK: private_ok}
                    )
                    response = await _send(self.client, request)
                    try:
                        headers = {k.lower(): v for k, v in response.headers.items()}
                        body = b""
                        if response.status_code not in REDIRECTS:
                            body = await self._read_body(response, headers)
                    finally:
                        await response.aclose()
            except TimeoutError:
                raise FetchError(f"response took longer than {deadline:g}s (cut off)") from None
        return response.status_code, headers, body

    async def _read_body(self, response: httpx.Response, headers: dict[str, str]) -> bytes:
        limit = self.config.max_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(f"response of {int(declared)} bytes is over the {limit} byte cap")
        decoder = Decoder(headers.get("content-encoding", ""), limit)
        parts, raw = [], 0
        async for chunk in response.aiter_raw():
            raw += len(chunk)
            if raw > limit:
                raise FetchError(f"response larger than the {limit} byte cap (cut off)")
            parts.append(decoder.feed(chunk))
        parts.append(decoder.flush())
        return b"".join(parts)


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    try:
        return await client.send(request, stream=True)
    except httpx.InvalidURL as exc:
        # httpx reads a redirect's Location into a next request even when it does not
        # follow it, and refuses one like `javascript:...` before we see the headers.
        raise URLRefused(f"redirect to an invalid URL: {exc}") from None


def _conditional(etag: str | None, last_modified: str | None) -> dict[str, str]:
    conditional = {}
    if etag:
        conditional["If-None-Match"] = etag
    if last_modified:
        conditional["If-Modified-Since"] = last_modified
    return conditional


def host_key(url: str) -> str:
    """The server a URL names, as politeness counts servers: the name httpx connects to
    (IDNA 2008, as httpx encodes it), lower case, without a trailing dot; "" for a URL
    without a host. Not for trust: `intranet.` and `intranet` may resolve apart."""
    try:
        raw = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError):
        raw = _host(url)
    return raw.rstrip(".").lower()


def _host(url: str) -> str:
    """The host exactly as written (lower case): what a user chose, for trust."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _redirect_target(current: str, location: str) -> str:
    try:
        return urljoin(current, location.strip())
    except ValueError as exc:  # "Invalid IPv6 URL" and the like
        raise URLRefused(f"redirect to an invalid URL {location.strip()!r}: {exc}") from None


def _check_url(url: str) -> None:
    """Only http(s) URLs with a host and a valid port are fetched: a bad one is this
    fetch's error here, before a library deep below turns it into an odd exception."""
    try:
        parts = urlsplit(url)
        scheme, host, _port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError as exc:  # a port out of range, a broken IPv6 address
        raise URLRefused(f"invalid URL {url!r}: {exc}") from None
    if scheme not in ("http", "https"):
        raise URLRefused(f"refusing to fetch a {scheme or 'scheme-less'} URL: {url}")
    if not host:
        raise URLRefused(f"invalid URL {url!r}: no host")


def _result(
    url: str,
    final_url: str,
    status: int,
    headers: dict[str, str],
    body: bytes,
    permanent: str | None,
) -> FetchResult:
    answered = 200 <= status < 300 or status == 304
    return FetchResult(
        url=url,
        status=status,
        final_url=final_url,
        headers=headers,
        body=body,
        permanent_url=permanent if answered else None,
        retry_after=parse_retry_after(headers.get("retry-after"), clock.now()),
        not_modified=status == 304,
        gone=status == 410,
    )


def _with_elapsed(result: FetchResult, elapsed: float) -> FetchResult:
    return replace(result, elapsed=elapsed)


def describe_error(exc: httpx.HTTPError, config: FetchConfig) -> str:
    """One line a person can act on: what failed, within which of config's limits."""
    if isinstance(exc, TargetRefused):  # the guard's own words say what and why
        return " ".join(str(exc).split())
    kinds = (
        (httpx.ConnectTimeout, f"connect timed out (after {config.connect_timeout:g} s)"),
        (httpx.ReadTimeout, f"read timed out (no data for {config.read_timeout:g} s)"),
        (httpx.TimeoutException, "timed out"),
        (httpx.ConnectError, "cannot connect"),
        (httpx.RemoteProtocolError, "broken HTTP response"),
        (httpx.DecodingError, "cannot decode the response"),
        (httpx.UnsupportedProtocol, "unsupported URL"),
    )
    kind = next((text for cls, text in kinds if isinstance(exc, cls)), type(exc).__name__)
    detail = " ".join(str(exc).split())
    return f"{kind}: {detail}" if detail else kind


# --- decompression with a limit ---------------------------------------------------------------


class Decoder:
    """Undoes one Content-Encoding, refusing to produce more than `limit` bytes in total.

    Every decompression step is told how much output it may make, so a small bomb never
    inflates in memory beyond the cap.
    """

    def __init__(self, encoding: str, limit: int):
        self.encoding = encoding.strip().lower()
        self.limit = limit
        self.produced = 0
        if self.encoding in ("", "identity"):
            self._step = self._identity
        elif self.encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._step = self._inflate
        elif self.encoding == "deflate":
            self._zlib = zlib.decompressobj()
            self._raw_deflate_tried = False
            self._step = self._inflate
        elif self.encoding == "br":
            import brotli

            self._brotli = brotli.Decompressor()
            self._step = self._unbrotli
        else:
            raise FetchError(f"unsupported Content-Encoding {encoding!r}")

    def feed(self, data: bytes) -> bytes:
        try:
            out = self._step(data)
        except FetchError:
            raise
        except Exception as exc:  # zlib.error, brotli.error
            raise FetchError(f"corrupt {self.encoding} body: {exc}") from None
        self.produced += len(out)
        if self.produced > self.limit:
            raise FetchError(f"response larger than the {self.limit} byte cap after decompression")
        return out

    def flush(self) -> bytes:
        if self._step is self._inflate:
            return self.feed(b"")
        return b""

    def _room(self) -> int:
        return self.limit - self.produced + 1  # one byte more than allowed proves the excess

    def _identity(self, data: bytes) -> bytes:
        return data

    def _inflate(self, data: bytes) -> bytes:
        if self.encoding == "deflate" and not self._raw_deflate_tried and data:
            # Servers send both zlib-wrapped and raw deflate under this name.
            self._raw_deflate_tried = True
            try:
                return self._inflate_bounded(data)
            except zlib.error:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._inflate_bounded(data)

    def _inflate_bounded(self, data: bytes) -> bytes:
        # With more input left over than room, the output is one byte over: feed() refuses.
        return self._zlib.decompress(data, self._room()) if data else self._zlib.flush()

    def _unbrotli(self, data: bytes) -> bytes:
        parts = [self._brotli.process(data, output_buffer_limit=self._room())]
        while not self._brotli.can_accept_more_data():
            if sum(map(len, parts)) > self.limit - self.produced:
                break
            parts.append(self._brotli.process(b"", output_buffer_limit=self._room()))
        return b"".join(parts)


# --- when to poll next (pure) -----------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """Retry-After as delta-seconds or an HTTP-date; None when absent or unreadable.

    What the server said, however absurd (a delay past the year 9999 is the latest time
    there is); poll.next_poll decides how much of it to honour.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return later(now, int(value))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
