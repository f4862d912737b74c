"""The feed files and item pages: what publish wrote into feeds/, served with HTTP caching
done right.

Every file becomes a `Representation` (its bytes, a gzip copy, both ETags and every header
list precomputed) cached in memory under the file's (mtime, size, inode). A request costs a
dict lookup and a stat (see FeedFiles): a republish, which replaces the file by rename, changes
the stat and is picked up on the next request without a restart.

The deciding functions (`select`, `etag_matches`, `accepts_gzip`) are pure; `FeedFiles` is the
raw ASGI app around them, with no framework objects on the hot path because it is measured.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from pathlib import Path

from aggregator import clock
from aggregator.serve.pages import NOT_FOUND_HTML, html_headers

CONTENT_TYPES = {
    "atom": b"application/atom+xml; charset=utf-8",
    "rss": b"application/rss+xml; charset=utf-8",
    "json": b"application/feed+json; charset=utf-8",
}
HTML = b"text/html; charset=utf-8"
# An item page gets the policy the served pages have (the page repeats it in a <meta>).
_PAGE_HEADERS = [
    (name, value)
    for name, value in html_headers()
    if name not in (b"content-type", b"x-content-type-options")
]

# /feeds/<slug>.<ext> and /feeds/<slug>/archive/<YYYY-MM>.atom; nothing else is a feed path,
# so no '..', encoded slash, backslash, NUL or absolute path can name a file (slug as in config).
FEED_PATH = re.compile(
    r"/feeds/([a-z0-9][a-z0-9-]{0,62})"
    r"(?:\.(atom|rss|json)|/archive/\d{4}-(?:0[1-9]|1[0-2])\.(atom))"
)
ITEM_PAGE_PATH = re.compile(r"/feeds/items/[1-9]\d{0,18}\.html")  # the archive's item number

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Representation:
    """One file's bytes with everything a response needs, computed once per version."""

    key: tuple[int, int, int]  # (mtime_ns, size, inode) of the file it was read from
    etag: bytes
    etag_gz: bytes | None  # None: gzip would not be smaller, everyone gets identity
    modified: int  # Last-Modified, whole seconds since the epoch
    body: bytes
    body_gz: bytes | None
    ok: Headers
    ok_gz: Headers
    not_modified: Headers
    not_modified_gz: Headers


def represent(
    body: bytes,
    content_type: bytes,
    mtime: float,
    max_age: int,
    key: tuple[int, int, int] = (0, 0, 0),
) -> Representation:
    """`body` with its headers; an HTML page also gets the Content-Security-Policy."""
    digest = hashlib.sha256(body).hexdigest()[:32]
    etag = f'"{digest}"'.encode()
    compressed = gzip.compress(body, compresslevel=9, mtime=0)  # mtime=0: same bytes every time
    body_gz = compressed if len(compressed) < len(body) else None
    etag_gz = f'"{digest}-gz"'.encode() if body_gz is not None else None
    modified = int(mtime)
    common = [
        (b"cache-control", f"public, max-age={max_age}".encode()),
        (b"last-modified", formatdate(modified, usegmt=True).encode()),
        (b"vary", b"accept-encoding"),
    ]
    entity = [
        (b"content-type", content_type),
        (b"x-content-type-options", b"nosniff"),
        (b"access-control-allow-origin", b"*"),  # public documents; lets web feed readers read
        *(_PAGE_HEADERS if content_type == HTML else ()),
    ]
    gz_etag = etag_gz or etag
    gz_body = body_gz if body_gz is not None else body
    gz_coding = [(b"content-encoding", b"gzip")] if body_gz is not None else []
    return Representation(
        key=key,
        etag=etag,
        etag_gz=etag_gz,
        modified=modified,
        body=body,
        body_gz=body_gz,
        ok=[(b"etag", etag), *common, *entity, (b"content-length", b"%d" % len(body))],
        ok_gz=[
            (b"etag", gz_etag),
            *common,
            *entity,
            *gz_coding,
            (b"content-length", b"%d" % len(gz_body)),
        ],
        not_modified=[(b"etag", etag), *common],
        not_modified_gz=[(b"etag", gz_etag), *common],
    )


def select(
    rep: Representation,
    if_none_match: bytes | None,
    if_modified_since: bytes | None,
    accept_encoding: bytes | None,
) -> tuple[int, Headers, bytes]:
    """The response (status, headers, body) for a GET of `rep` (RFC 9110 section 13.2.2)."""
    use_gz = (
        rep.body_gz is not None and accept_encoding is not None and accepts_gzip(accept_encoding)
    )
    etag = rep.etag_gz if use_gz else rep.etag
    if if_none_match is not None:  # takes precedence: If-Modified-Since is then ignored
        fresh = if_none_match == etag or etag_matches(if_none_match, etag)
    elif if_modified_since is not None:
        fresh = not_modified_since(if_modified_since, rep.modified)
    else:
        fresh = False
    if use_gz:
        return (304, rep.not_modified_gz, b"") if fresh else (200, rep.ok_gz, rep.body_gz)
    return (304, rep.not_modified, b"") if fresh else (200, rep.ok, rep.body)


def etag_matches(header: bytes, etag: bytes) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"."""
    tags = _entity_tags(header)
    return b"*" in tags or etag in tags


_ENTITY_TAG = re.compile(rb'\s*(?:(\*)|(?:W/)?("[^"]*"))\s*(?:,|$)')


@lru_cache(maxsize=512)
def _entity_tags(header: bytes) -> frozenset[bytes]:
    return frozenset(star or tag for star, tag in _ENTITY_TAG.findall(header))


def not_modified_since(header: bytes, modified: int) -> bool:
    since = _http_date(header)
    # a date in the future is a client's clock error, not a promise: ignore it
    return since is not None and modified <= since <= clock.now().timestamp()


@lru_cache(maxsize=512)
def _http_date(header: bytes) -> int | None:
    """The date as seconds since the epoch; None (as if absent) when it is not a date."""
    if len(header) > 64:  # an HTTP-date has 29 characters
        return None
    try:
        parsed = parsedate_to_datetime(header.decode("latin-1"))
        return int(parsed.timestamp()) if parsed.tzinfo is not None else None
    except (TypeError, ValueError, IndexError, OverflowError):  # e.g. year 99999999999
        return None


@lru_cache(maxsize=512)
def accepts_gzip(header: bytes) -> bool:
    """Accept-Encoding allows gzip: listed (or x-gzip) with q > 0, or '*' with q > 0."""
    gzip_q = star_q = None
    for part in header.decode("latin-1").split(","):
        coding, _, params = part.partition(";")
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            gzip_q = _qvalue(params)
        elif coding == "*":
            star_q = _qvalue(params)
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _qvalue(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


def load(path: str, root: Path, content_type: bytes, max_age: int) -> Representation | None:
    """Read a regular file inside `root` (after resolving symlinks); None if there is none.

    Opened without blocking: opening a FIFO for reading would otherwise wait for a writer,
    and this runs on the event loop."""
    real = os.path.realpath(path)
    top = os.path.realpath(root)
    if os.path.commonpath([real, top]) != top:
        return None
    try:
        with open(os.open(real, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None
            body = handle.read()
    except OSError:
        return None
    key = (info.st_mtime_ns, info.st_size, info.st_ino)
    return represent(body, content_type, info.st_mtime, max_age, key)


_NOT_FOUND_BODY = NOT_FOUND_HTML.encode()
_NOT_FOUND = [
    *html_headers(),
    (b"cache-control", b"no-cache"),
    (b"content-length", b"%d" % len(_NOT_FOUND_BODY)),
]


class FeedFiles:
    """Raw ASGI app for /feeds/...: only GET and HEAD reach it (the app checks the method).

    A file is stat'ed at most once per event loop iteration: every request handled in an
    iteration was received before that iteration's first stat, so answering all of them
    from it is as fresh as a stat per request, and under load the syscall is shared by
    the whole batch. The set of checked paths is cleared at the start of the next iteration.
    """

    def __init__(self, root: Path, slugs: frozenset[str], max_age: int):
        self.root = Path(root)
        self.prefix = str(self.root) + os.sep
        self.slugs = slugs
        self.max_age = max_age
        self.cache: dict[str, Representation] = {}
        self.checked: set[str] = set()  # paths stat'ed in this loop iteration
        # the current documents' URL paths, so the common case skips the regex
        self.known = {
            f"/feeds/{slug}.{ext}": (f"{self.prefix}{slug}.{ext}", content_type)
            for slug in slugs
            for ext, content_type in CONTENT_TYPES.items()
        }

    def lookup(self, url_path: str) -> Representation | None:
        known = self.known.get(url_path)
        if known is None:
            # the part after "/feeds/" is safe as a relative path: the patterns checked it
            match = FEED_PATH.fullmatch(url_path)
            if match is not None and match[1] in self.slugs:
                known = (self.prefix + url_path[7:], CONTENT_TYPES[match[2] or match[3]])
            elif ITEM_PAGE_PATH.fullmatch(url_path):
                known = (self.prefix + url_path[7:], HTML)
            else:
                return None
        path, content_type = known
        if path in self.checked:
            return self.cache[path]
        try:
            info = os.stat(path)
        except (OSError, ValueError):
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):  # only regular files are served
            self.cache.pop(path, None)
            return None
        rep = self.cache.get(path)
        if rep is None or rep.key != (info.st_mtime_ns, info.st_size, info.st_ino):
            rep = load(path, self.root, content_type, self.max_age)
            if rep is None:
                self.cache.pop(path, None)
                return None
            self.cache[path] = rep
        self._checked(path)
        return rep

    def _checked(self, path: str) -> None:
        if not self.checked:
            try:
                asyncio.get_running_loop().call_soon(self.checked.clear)
            except RuntimeError:  # called outside an event loop: nothing will clear it
                return
        self.checked.add(path)

    async def __call__(self, scope, receive, send) -> None:
        rep = self.lookup(scope["path"])
        if rep is None:
            status, headers, body = 404, _NOT_FOUND, _NOT_FOUND_BODY
        else:
            if_none_match = if_modified_since = accept_encoding = None
            for name, value in scope["headers"]:
                if name == b"if-none-match":
                    if_none_match = value
                elif name == b"if-modified-since":
                    if_modified_since = value
                elif name == b"accept-encoding":
                    accept_encoding = value
            status, headers, body = select(rep, if_none_match, if_modified_since, accept_encoding)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})
