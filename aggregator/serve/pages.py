"""What the server says besides the feed files: the HTML index, OPML, /healthz, error pages.

String templates with `html.escape` on every value that comes from config or the archive;
links from the archive are only shown when they are http(s). Pure functions of their inputs.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from email.utils import formatdate
from html import escape
from urllib.parse import urlsplit

from aggregator.config import Config, FeedConfig
from aggregator.models import Item, Precision, PublishState, SourceState

FORMATS = (("atom", "Atom"), ("rss", "RSS"), ("json", "JSON Feed"))

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
    "color:#1a1a1a;background:#fff}"
    "h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}"
    "a{color:#0b4f9c}ul,ol{padding-left:1.2rem}li{margin:.5rem 0}"
    ".meta,.sub{color:#555;font-size:.9rem}.formats a{margin-right:.75rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# No scripts, no frames, no forms, no outside resources: only our one inline style block.
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

NOT_FOUND_HTML = (
    '<!doctype html>\n<html lang="en"><meta charset="utf-8"><title>Not found</title>\n'
    '<p>Nothing here. The feeds are listed on <a href="/">the index page</a>.</p></html>\n'
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
) -> str:
    feeds = config.feeds
    alternates = "".join(
        f'<link rel="alternate" type="application/atom+xml" title="{escape(f.title)}" '
        f'href="feeds/{escape(f.slug)}.atom">\n'
        for f in feeds
    )
    feed_list = "".join(_feed_li(f) for f in feeds) or "<li>No feeds are configured.</li>"
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>NATO partnership feeds</title>\n"
        f"{alternates}"
        '<link rel="alternate" type="text/x-opml" title="All feeds (OPML)" href="opml">\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n"
        "<h1>NATO partnership feeds</h1>\n"
        "<p>Focused, deduplicated feeds of NATO news. Add a feed's address to your feed reader, "
        'or import <a href="opml">all of them as OPML</a>.</p>\n'
        f'<h2>Feeds</h2>\n<ul class="feeds">\n{feed_list}</ul>\n'
        f"{_items_section(config, items, source_titles, archive_error)}"
        '<p class="meta"><a href="healthz">Service health</a></p>\n'
        "</body>\n</html>\n"
    )


def _feed_li(feed: FeedConfig) -> str:
    links = " ".join(
        f'<a href="feeds/{escape(feed.slug)}.{ext}">{label}</a>' for ext, label in FORMATS
    )
    subtitle = f'<br><span class="sub">{escape(feed.subtitle)}</span>' if feed.subtitle else ""
    return (
        f"<li><strong>{escape(feed.title)}</strong>{subtitle}"
        f'<br><span class="formats">{links}</span></li>\n'
    )


def partnership_feed(config: Config) -> FeedConfig | None:
    """The feed whose items the index shows: the first one with topics."""
    return next((f for f in config.feeds if f.topics), None)


def _items_section(
    config: Config, items: Sequence[Item], titles: dict[str, str], error: str | None
) -> str:
    feed = partnership_feed(config)
    if feed is None:
        return ""
    heading = f"<h2>Latest in {escape(feed.title)}</h2>\n"
    if error:
        return heading + '<p class="meta">The archive cannot be read right now.</p>\n'
    if not items:
        return heading + "<p>No items yet.</p>\n"
    rows = "".join(_item_li(item, titles) for item in items)
    return f"{heading}<ol>\n{rows}</ol>\n"


def _item_li(item: Item, titles: dict[str, str]) -> str:
    title = escape(item.title)
    if item.link and urlsplit(item.link).scheme in ("http", "https"):
        title = f'<a href="{escape(item.link)}">{title}</a>'
    source = escape(titles.get(item.source_id, item.source_id))
    when = _show_date(item.published, item.precision)
    stamp = item.published.strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = f'<time datetime="{stamp}">{when}</time> · {source}'
    return f'<li>{title}<br><span class="meta">{meta}</span></li>\n'


def _show_date(value: datetime, precision: Precision) -> str:
    day = f"{value.day} {value:%b %Y}"
    return day if precision is Precision.DAY else f"{day}, {value:%H:%M} UTC"


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
    sources: Sequence[SourceState], counts: dict[str, int], publish: PublishState, status: str
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
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
