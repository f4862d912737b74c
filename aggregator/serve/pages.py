"""What the server says besides the feed files: the HTML index, OPML, /healthz, error pages.

String templates with `html.escape` on every value that comes from config or the archive;
links from the archive are only shown when they are http(s). Pure functions of their inputs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from email.utils import formatdate
from html import escape
from pathlib import Path
from urllib.parse import urlencode

from aggregator.clock import stamp
from aggregator.config import Config, FeedConfig
from aggregator.html import CSP, page
from aggregator.models import FeedSize, Item, Precision, PublishState, SearchResult, SourceState
from aggregator.publish.document import item_page_path, original_link
from aggregator.search import MAX_QUERY

FORMATS = (("atom", "Atom"), ("rss", "RSS"), ("json", "JSON Feed"))

NOT_FOUND_HTML = (
    '<!doctype html>\n<html lang="en"><meta charset="utf-8"><title>Not found</title>\n'
    '<p>Nothing here. The feeds are listed on <a href="/">the index page</a>.</p></html>\n'
)
NO_ITEM_HTML = (
    '<!doctype html>\n<html lang="en"><meta charset="utf-8"><title>No such item</title>\n'
    "<p>No published item has that number, id or URL. "
    '<a href="search">Search the archive</a>.</p></html>\n'
)
METHOD_NOT_ALLOWED_HTML = (
    '<!doctype html>\n<html lang="en"><meta charset="utf-8"><title>Method not allowed</title>\n'
    "<p>This server only answers GET and HEAD.</p></html>\n"
)


def html_headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", CSP.encode()),
        (b"referrer-policy", b"no-referrer"),
    ]


# --- the index page ------------------------------------------------------------------------


def index_html(
    config: Config,
    items: Sequence[Item],
    source_titles: dict[str, str],
    archive_error: str | None = None,
    sizes: dict[str, FeedSize] | None = None,
    item_pages: frozenset[int] = frozenset(),
) -> str:
    """The feeds (with their sizes when the archive could tell them), a search box and the
    partnership feed's latest items, linked to their pages (`item_pages`: ids that have one)."""
    feeds = config.feeds
    alternates = "".join(
        f'<link rel="alternate" type="application/atom+xml" title="{escape(f.title)}" '
        f'href="feeds/{escape(f.slug)}.atom">\n'
        for f in feeds
    )
    sizes = sizes or {}
    feed_list = (
        "".join(_feed_li(f, sizes.get(f.slug)) for f in feeds)
        or "<li>No feeds are configured.</li>"
    )
    opml_link = '<link rel="alternate" type="text/x-opml" title="All feeds (OPML)" href="opml">\n'
    body = (
        "<h1>NATO partnership feeds</h1>\n"
        "<p>Focused, deduplicated feeds of NATO news. Add a feed's address to your feed reader, "
        'or import <a href="opml">all of them as OPML</a>.</p>\n'
        f"{search_form('')}"
        f'<h2>Feeds</h2>\n<ul class="feeds">\n{feed_list}</ul>\n'
        f"{_items_section(config, items, source_titles, archive_error, item_pages)}"
        '<p class="meta"><a href="healthz">Service health</a></p>\n'
    )
    return page("NATO partnership feeds", body, head=alternates + opml_link)


def _feed_li(feed: FeedConfig, size: FeedSize | None) -> str:
    links = " ".join(
        f'<a href="feeds/{escape(feed.slug)}.{ext}">{label}</a>' for ext, label in FORMATS
    )
    subtitle = f'<br><span class="sub">{escape(feed.subtitle)}</span>' if feed.subtitle else ""
    return (
        f"<li><strong>{escape(feed.title)}</strong>{_size(size)}{subtitle}"
        f'<br><span class="formats">{links}</span></li>\n'
    )


def _size(size: FeedSize | None) -> str:
    if size is None:
        return ""
    if not size.items:
        return '<br><span class="empty">empty: no item has matched it yet</span>'
    when = _show_date(size.updated, Precision.DAY) if size.updated else ""
    updated = f", updated {when}" if when else ""
    return f'<br><span class="meta">{_counted(size.items, "item")}{updated}</span>'


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def partnership_feed(config: Config) -> FeedConfig | None:
    """The feed whose items the index shows: the first one with topics."""
    return next((f for f in config.feeds if f.topics), None)


def _items_section(
    config: Config,
    items: Sequence[Item],
    titles: dict[str, str],
    error: str | None,
    item_pages: frozenset[int],
) -> str:
    feed = partnership_feed(config)
    if feed is None:
        return ""
    heading = f"<h2>Latest in {escape(feed.title)}</h2>\n"
    if error:
        return heading + '<p class="meta">The archive cannot be read right now.</p>\n'
    if not items:
        return heading + "<p>No items yet.</p>\n"
    rows = "".join(_item_li(item, titles, item.id in item_pages) for item in items)
    return f"{heading}<ol>\n{rows}</ol>\n"


def _item_li(
    item: Item, titles: dict[str, str], has_page: bool, found: SearchResult | None = None
) -> str:
    """An item's title linked to its page (else to the original), its date and source; the
    original link beside a page's; for a search result, what matched marked."""
    title = highlighted(found.title) if found else escape(item.title)
    passage = highlighted(found.passage) if found else ""
    original = original_link(item)
    if has_page:
        title = f'<a class="title" href="{item_page_href(item.id)}">{title}</a>'
    elif original:
        title = f'<a class="title" href="{escape(original)}">{title}</a>'
    else:
        title = f'<span class="title">{title}</span>'
    source = escape(titles.get(item.source_id, item.source_id))
    when = _show_date(item.published, item.precision)
    meta = f'<time datetime="{stamp(item.published)}">{when}</time> · {source}'
    if has_page and original:
        meta += f' · <a href="{escape(original)}">original</a>'
    snippet = f'<br><span class="passage">{passage}</span>' if passage else ""
    return f'<li>{title}{snippet}<br><span class="meta">{meta}</span></li>\n'


def item_page_file(feeds_dir: Path, item_id: int) -> Path:
    """Where publish writes an item's page on disk."""
    return feeds_dir / item_page_path(item_id)


def item_page_href(item_id: int) -> str:
    """Where publish writes an item's page, relative to the site's root."""
    return f"feeds/{item_page_path(item_id)}"


def _show_date(value: datetime, precision: Precision) -> str:
    day = f"{value.day} {value:%b %Y}"
    return day if precision is Precision.DAY else f"{day}, {value:%H:%M} UTC"


# --- search -----------------------------------------------------------------------------------


def search_form(query: str) -> str:
    """A GET form to /search: the browser builds the URL, no script runs."""
    return (
        '<form class="search" action="search" method="get" role="search">\n'
        '<label for="q">Search the archive</label>\n'
        f'<input id="q" name="q" type="search" value="{escape(query)}" maxlength="{MAX_QUERY}" '
        'placeholder="Indo-Pacific, partner*">\n'
        "<button>Search</button>\n</form>\n"
    )


def search_html(
    query: str,
    results: Sequence[SearchResult],
    titles: dict[str, str],
    item_pages: frozenset[int],
    problem: str | None = None,
) -> str:
    """The results page: the best matches with their passages, and the search as feeds."""
    feeds = ""
    if query and problem is None:
        encoded = escape(urlencode({"q": query}))
        feeds = "".join(
            f'<link rel="alternate" type="{kind}" title="Search: {escape(query)} ({label})" '
            f'href="search.{ext}?{encoded}">\n'
            for ext, kind, label in SEARCH_FEEDS
        )
    body = (
        '<p class="meta"><a href="./">NATO partnership feeds</a></p>\n'
        f"<h1>{escape(_search_title(query))}</h1>\n"
        f"{search_form(query)}"
        f"{_search_body(query, results, titles, item_pages, problem)}"
        f"{_search_help()}"
    )
    return page(_search_title(query), body, head=feeds)


SEARCH_FEEDS = (
    ("atom", "application/atom+xml", "Atom"),
    ("rss", "application/rss+xml", "RSS"),
    ("json", "application/feed+json", "JSON Feed"),
)


def _search_title(query: str) -> str:
    return f"Search: {query}" if query else "Search the archive"


def _search_body(
    query: str,
    results: Sequence[SearchResult],
    titles: dict[str, str],
    item_pages: frozenset[int],
    problem: str | None,
) -> str:
    if problem:
        return f'<p class="problem">{escape(problem)}</p>\n'
    if not query:
        return ""
    encoded = escape(urlencode({"q": query}))
    subscribe = " ".join(
        f'<a href="search.{ext}?{encoded}">{label}</a>' for ext, _, label in SEARCH_FEEDS
    )
    found = (
        f"{_counted(len(results), 'item')} found, best match first"
        if results
        else "Nothing matches."
    )
    rows = "".join(_item_li(r.item, titles, r.item.id in item_pages, r) for r in results)
    listing = f'<ol class="results">\n{rows}</ol>\n' if rows else ""
    return (
        f'<p class="meta">{found}<br><span class="formats">Follow this search in a feed reader: '
        f"{subscribe}</span></p>\n{listing}"
    )


def highlighted(passage: Sequence[tuple[str, bool]]) -> str:
    """The passage as HTML: every run escaped, the matched ones in <mark>."""
    return "".join(
        f"<mark>{escape(text)}</mark>" if matched else escape(text) for text, matched in passage
    )


def _search_help() -> str:
    return (
        '<details class="help"><summary>How to search</summary>\n<ul>\n'
        "<li>Words as you write them (<code>Indo-Pacific</code>, <code>NATO's</code>): "
        "every one must appear.</li>\n"
        '<li><code>"defence capacity"</code>: the words together, in that order.</li>\n'
        "<li><code>partner*</code>: words that begin so.</li>\n"
        "<li><code>Georgia OR Ukraine</code>: either; <code>-Russia</code>: not that word.</li>\n"
        "<li><code>fts:</code> then SQLite FTS5 syntax: "
        "<code>fts: title:Georgia NEAR(defence reform)</code>.</li>\n"
        "</ul></details>\n"
    )


# --- OPML ------------------------------------------------------------------------------------


def opml(config: Config, created: float) -> bytes:
    """OPML 2.0 listing each feed's Atom URL (absolute, from server.base_url)."""
    base = config.server.base_url.rstrip("/")
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = "NATO partnership feeds"
    ET.SubElement(head, "dateCreated").text = formatdate(created, usegmt=True)
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ET.SubElement(root, "body")
    for feed in config.feeds:
        attributes = {
            "type": "rss",  # OPML's word for any subscribable feed, Atom included
            "text": feed.title,
            "title": feed.title,
            "xmlUrl": f"{base}/feeds/{feed.slug}.atom",
            "htmlUrl": f"{base}/",
        }
        if feed.subtitle:
            attributes["description"] = feed.subtitle
        ET.SubElement(body, "outline", attributes)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# --- /healthz --------------------------------------------------------------------------------


def health(
    sources: Sequence[SourceState],
    counts: dict[str, int],
    captures: dict[str, int],
    publish: PublishState,
    status: str,
) -> dict:
    return {
        "status": status,
        "publish": {
            "owed": publish.owed,
            "owed_since": _iso(publish.owed_since),
            "last_success": _iso(publish.last_success),
            "last_failure": _iso(publish.last_failure),
            "last_error": publish.last_error,
        },
        "items": counts,
        "captures": captures,
        "sources": [_source_health(source) for source in sources],
    }


def _source_health(source: SourceState) -> dict:
    return {
        "id": source.id,
        "title": source.title,
        "kind": source.kind,
        "url": source.url,
        "state": source.state,
        "last_poll": _iso(source.last_poll),
        "last_status": source.last_status,
        "last_error": source.last_error,
        "consecutive_errors": source.consecutive_errors,
        "next_poll": _iso(source.next_poll_not_before),
        "items": source.item_count,
    }


def _iso(value: datetime | None) -> str | None:
    return stamp(value, None)
