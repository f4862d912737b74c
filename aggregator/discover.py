"""Finding the feeds a site offers: what its pages advertise and where feeds usually live.

Pure functions over a page's bytes: `advertised` reads `<link rel="alternate">` with a
feed type and `<a>` links whose URL looks like a feed; `usual_paths` are the places feed
software puts feeds. The pipeline fetches the candidates (politely, as any source) and
keeps those that parse, with their title, kind and item count: `aggregator discover URL`
prints them, and a feed source that answers 404, 410 or a web page names them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit, urlunsplit

from aggregator.models import FeedCandidate

FEED_TYPES = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/feed+json": "json",
    "application/json": "json",
    "application/rdf+xml": "rss",
    "text/xml": "rss",
    "application/xml": "rss",
}
USUAL_PATHS = ("/feed", "/rss.xml", "/atom.xml", "/feed.xml", "/index.xml", "/feed.json", "/rss")
_FEED_LOOKING = re.compile(r"(?:^|[/._-])(?:rss|atom|feed|rdf)(?:[/._-]|$)|\.(?:rss|atom)$", re.I)
MAX_CANDIDATES = 20  # a page with hundreds of feed links is not asked about each


def advertised(
    body: bytes, page_url: str, headers: Mapping[str, str] | None = None
) -> list[FeedCandidate]:
    """The feeds a page advertises with <link rel="alternate">, then its <a> links that
    look like feeds; absolute, http(s), each once, in page order."""
    from selectolax.lexbor import LexborHTMLParser

    from aggregator.parse.listing import decode_page

    page = LexborHTMLParser(decode_page(body, headers or {}))
    base = _base(page, page_url)
    found: dict[str, FeedCandidate] = {}
    for link in page.css("link[rel][href]"):
        rels = (link.attributes.get("rel") or "").lower().split()
        kind = FEED_TYPES.get((link.attributes.get("type") or "").split(";")[0].strip().lower())
        if "alternate" in rels and kind:
            _add(found, base, link.attributes.get("href"), _title(link), kind, "advertised")
    for anchor in page.css("a[href]"):
        href = anchor.attributes.get("href") or ""
        if _FEED_LOOKING.search(urlsplit(href).path if "://" in href else href.split("?")[0]):
            _add(found, base, href, " ".join(anchor.text().split()), "", "linked")
    return list(found.values())[:MAX_CANDIDATES]


def usual_paths(page_url: str) -> list[FeedCandidate]:
    """The usual feed locations of the page's site."""
    parts = urlsplit(page_url)
    return [
        FeedCandidate(urlunsplit((parts.scheme, parts.netloc, path, "", "")), how="usual")
        for path in USUAL_PATHS
    ]


def site_root(url: str) -> str:
    """The home page of `url`'s site, where a site advertises its feeds."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/", "", ""))


def hint(found: list[FeedCandidate], instead_of: str) -> str:
    """One line naming the feeds a site advertises, for an operator whose feed is gone."""
    others = [candidate for candidate in found if candidate.url != instead_of][:3]
    if not others:
        return "the site advertises no other feed (try `aggregator discover` on its pages)"
    named = ", ".join(f"{c.url} ({c.title})" if c.title else c.url for c in others)
    return f"the site advertises: {named}"


def _add(found: dict, base: str, href: str | None, title: str, kind: str, how: str) -> None:
    url = _absolute(base, href)
    if url and url not in found:
        found[url] = FeedCandidate(url, title, kind, how)


def _absolute(base: str, href: str | None) -> str | None:
    if not href or not href.strip():
        return None
    try:
        url = urljoin(base, href.strip())
    except ValueError:
        return None
    return url.split("#")[0] if urlsplit(url).scheme in ("http", "https") else None


def _base(page, page_url: str) -> str:
    tag = page.css_first("base[href]")
    return _absolute(page_url, tag.attributes.get("href")) or page_url if tag else page_url


def _title(node) -> str:
    return " ".join((node.attributes.get("title") or "").split())
