"""serve: the read-only HTTP face of the aggregator (Starlette on uvicorn).

Routes: /feeds/<slug>.atom|.rss|.json and /feeds/<slug>/archive/<YYYY-MM>.atom (the files
publish wrote, see `files`), / (HTML index), /search?q= (HTML) and /search.atom|.rss|.json?q=
(see `searchfeeds`), /item?id= (to an item's page by number, published id or URL), /opml,
/healthz and /metrics (see `observe`). Only GET and HEAD.

`create_app(config)` is the ASGI app and `make_server(config)` a uvicorn server for it that
can run on its own (`run`) or inside another event loop (`await server.serve()`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from aggregator import clock
from aggregator.clock import now_to_the_second, stamp
from aggregator.config import Config
from aggregator.errors import SearchError, UsageError
from aggregator.models import FeedSize, Item, SearchResult
from aggregator.search import MAX_QUERY, MAX_RESULTS, item_reference, parse_query
from aggregator.serve import observe, pages
from aggregator.serve.files import FeedFiles, Representation, represent, select
from aggregator.serve.limits import Limits, protocol_with
from aggregator.store import Archive, ArchiveError

__all__ = ["create_app", "is_loopback_host", "make_server", "run"]

METHODS = ("GET", "HEAD")
SHUTDOWN_GRACE = 5  # seconds a stopping server waits for requests in flight
_HTML_HEADERS = {k.decode(): v.decode() for k, v in pages.html_headers()}
_NO_STORE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
SEARCH_MAX_AGE = 60  # seconds: a search answers from an archive that changes every poll
_NOT_ALLOWED_BODY = pages.METHOD_NOT_ALLOWED_HTML.encode()
_NOT_ALLOWED = [
    *pages.html_headers(),
    (b"allow", b"GET, HEAD"),
    (b"content-length", b"%d" % len(_NOT_ALLOWED_BODY)),
]


class FeedServer(Starlette):
    """Starlette with a fast lane: feed files skip the middleware stack and the router.

    Feed readers' polls are nearly all the traffic, and each layer costs microseconds per
    request; the lane keeps them within reach of a bare ASGI app. Middleware added with
    `add_middleware` therefore applies to the pages, not to /feeds/.
    """

    def __init__(self, files: FeedFiles, **kwargs):
        super().__init__(**kwargs)
        self.files = files

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            if scope["method"] not in METHODS:
                await send({"type": "http.response.start", "status": 405, "headers": _NOT_ALLOWED})
                await send({"type": "http.response.body", "body": _NOT_ALLOWED_BODY})
                return
            if scope["path"].startswith("/feeds/"):
                await self.files(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(config: Config) -> Starlette:
    site = _Site(config)
    get = ["GET", "HEAD"]
    routes = [
        Route("/", site.index, methods=get),
        Route("/search", site.search_page, methods=get),
        Route("/search.{kind:str}", site.search_feed, methods=get),
        Route("/item", site.item_lookup, methods=get),
        Route("/opml", site.opml, methods=get),
        Route("/healthz", site.healthz, methods=get),
        Route("/metrics", site.metrics, methods=get),
    ]
    files = FeedFiles(
        config.server.feeds_dir,
        frozenset(feed.slug for feed in config.feeds),
        config.server.cache_max_age,
    )
    return FeedServer(files, routes=routes, exception_handlers={404: _not_found})


class _Site:
    """The dynamic pages: index, search (page and feeds), item lookup, OPML, health and
    metrics. Sync handlers run in Starlette's worker threads (they read the archive)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        made = clock.now().timestamp()
        self.opml_rep = represent(
            pages.opml(config, made),
            b"text/x-opml; charset=utf-8",
            made,
            config.server.cache_max_age,
        )

    def index(self, request: Request) -> Response:
        items, titles, sizes, error = _index_data(self.config)
        pages_of = _item_pages(self.config, items)
        body = pages.index_html(self.config, items, titles, error, sizes, pages_of)
        return HTMLResponse(body, headers={**_HTML_HEADERS, "cache-control": "no-cache"})

    def search_page(self, request: Request) -> Response:
        typed = request.query_params.get("q", "")
        if not typed.strip():
            return _search_page(self.config, "", [], {}, None, 200)
        try:
            query = parse_query(typed)
            results, titles = _search(self.config, query.fts, newest_first=False)
        except SearchError as exc:
            return _search_page(self.config, typed[:MAX_QUERY], [], {}, str(exc), 400)
        return _search_page(self.config, query.text, results, titles, None, 200)

    def search_feed(self, request: Request) -> Response:
        from aggregator.serve import searchfeeds

        kind = request.path_params["kind"]
        if kind not in searchfeeds.CONTENT_TYPES:
            return HTMLResponse(pages.NOT_FOUND_HTML, 404, headers=_HTML_HEADERS)
        try:
            query = parse_query(request.query_params.get("q", ""))
            results, states = _search(self.config, query.fts, newest_first=True, states=True)
        except SearchError as exc:
            return PlainTextResponse(f"{exc}\n", 400, headers=_NO_STORE)
        info = searchfeeds.SearchFeedInfo.of_query(query.text, self.config.server.base_url)
        searched = now_to_the_second()
        body = searchfeeds.render(kind, info, [r.item for r in results], states, searched)
        # Last-Modified is now: an older item can join the results, so the newest date
        # would not tell a change; the ETag (of the bytes) answers conditional requests.
        rep = represent(
            body, searchfeeds.CONTENT_TYPES[kind], clock.now().timestamp(), SEARCH_MAX_AGE
        )
        return _conditional(request, rep)

    def item_lookup(self, request: Request) -> Response:
        """/item?id= with an archive number, a published id or a URL: to the item's page."""
        try:
            reference = item_reference(request.query_params.get("id", ""))
            with Archive(self.config.archive.database, readonly=True) as archive:
                item = archive.find_item(reference)
        except (ArchiveError, SearchError):
            item = None
        pages_of = _item_pages(self.config, [item] if item else [])
        if item is None or item.id not in pages_of:
            return HTMLResponse(pages.NO_ITEM_HTML, 404, headers=_HTML_HEADERS)
        return RedirectResponse(pages.item_page_href(item.id), 303, headers=_NO_STORE)

    def healthz(self, request: Request) -> Response:
        status, payload = observe.health(self.config, clock.now())
        if payload["status"] != "unavailable":
            payload["feeds"] = _published(self.config)
        return JSONResponse(payload, status, headers=_NO_STORE)

    def metrics(self, request: Request) -> Response:
        body = observe.metrics_text(self.config)
        return Response(body, headers=_NO_STORE, media_type=PROMETHEUS)

    async def opml(self, request: Request) -> Response:
        return _conditional(request, self.opml_rep)


async def _not_found(request: Request, exc: Exception) -> Response:
    return HTMLResponse(pages.NOT_FOUND_HTML, 404, headers=_HTML_HEADERS)


def _conditional(request: Request, rep: Representation) -> Response:
    headers = request.headers
    status, head, body = select(
        rep,
        _raw(headers.get("if-none-match")),
        _raw(headers.get("if-modified-since")),
        _raw(headers.get("accept-encoding")),
    )
    response = Response(body, status)
    response.raw_headers = list(head)  # complete, content-length included
    return response


def _raw(value: str | None) -> bytes | None:
    return value.encode("latin-1") if value is not None else None


def _index_data(
    config: Config,
) -> tuple[list[Item], dict[str, str], dict[str, FeedSize], str | None]:
    """The partnership feed's latest items, the source titles and each feed's size, or why
    there are none."""
    feed = pages.partnership_feed(config)
    if not config.archive.database.exists():
        return [], {}, {}, None
    try:
        with Archive(config.archive.database, readonly=True) as archive, archive.consistent_read():
            titles = {s.id: s.title for s in archive.list_sources(include_seed=True)}
            sizes = {f.slug: archive.feed_size(f.topics, f.min_score) for f in config.feeds}
            items = (
                archive.list_items(topics=feed.topics, min_score=feed.min_score, limit=20)
                if feed
                else []
            )
    except ArchiveError as exc:
        return [], {}, {}, str(exc)
    return items, titles, sizes, None


def _search(
    config: Config, fts: str, *, newest_first: bool, states: bool = False
) -> tuple[list[SearchResult], dict]:
    """The best (or newest) matches, and the sources by id: their titles, or with `states`
    their whole state. SearchError when the archive cannot be searched."""
    if not config.archive.database.exists():
        raise SearchError("search: the archive holds nothing yet")
    try:
        with Archive(config.archive.database, readonly=True) as archive, archive.consistent_read():
            results = archive.search_snippets(fts, MAX_RESULTS, newest_first=newest_first)
            sources = archive.list_sources(include_seed=True)
    except ArchiveError as exc:
        raise SearchError(f"search: the archive cannot be read right now ({exc})") from None
    return results, {s.id: (s if states else s.title) for s in sources}


def _search_page(
    config: Config,
    query: str,
    results: list[SearchResult],
    titles: dict[str, str],
    problem: str | None,
    status: int,
) -> Response:
    body = pages.search_html(
        query, results, titles, _item_pages(config, [r.item for r in results]), problem
    )
    headers = {**_HTML_HEADERS, "cache-control": f"public, max-age={SEARCH_MAX_AGE}"}
    return HTMLResponse(body, status, headers=headers)


def _item_pages(config: Config, items: list[Item]) -> frozenset[int]:
    """Which of these items have a page that publish wrote."""
    folder = config.server.feeds_dir
    return frozenset(i.id for i in items if pages.item_page_file(folder, i.id).is_file())


def _published(config: Config) -> dict[str, str | None]:
    """When each feed's Atom document was last written, if ever."""
    result = {}
    for feed in config.feeds:
        try:
            mtime = os.stat(config.server.feeds_dir / f"{feed.slug}.atom").st_mtime
        except OSError:
            result[feed.slug] = None
        else:
            result[feed.slug] = stamp(datetime.fromtimestamp(mtime, UTC))
    return result


# --- the server ------------------------------------------------------------------------------


def make_server(
    config: Config,
    app=None,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "warning",
    limits: Limits | None = None,
) -> uvicorn.Server:
    """A uvicorn server for `app` (default: create_app(config)) with uvloop when installed,
    httptools, and `limits` (default: Limits.for_this_process()) on every connection.
    `server.run()` blocks; `await server.serve()` runs in the caller's loop."""
    limits = limits or Limits.for_this_process()
    settings = uvicorn.Config(
        app if app is not None else create_app(config),
        host=host or config.server.host,
        port=port or config.server.port,
        loop="auto",
        http=protocol_with(limits),
        ws="none",  # no WebSocket routes: an Upgrade header is just a header
        timeout_keep_alive=limits.keep_alive_timeout,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        lifespan="off",
        access_log=False,  # thousands of polling readers: the log would be the bottleneck
        server_header=False,
        proxy_headers=False,  # nothing here uses the client address
        log_level=log_level,
    )
    return uvicorn.Server(settings)


def run(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted; `ready` gets the URL once the port is ours. A port that
    cannot be had is a UsageError with a one-line message."""
    server = make_server(config, host=host, port=port)
    listener = listen(server.config.host, server.config.port)
    with listener:
        if ready:
            ready(f"http://{server.config.host}:{server.config.port}/")
        server.run(sockets=[listener])


def listen(host: str, port: int) -> socket.socket:
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {where}: {exc.strerror}") from None
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise UsageError(f"cannot listen on {where}: {exc.strerror}") from None
    return listener


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
