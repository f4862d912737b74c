"""Atom 1.0 documents (RFC 4287) with lxml, linked as an archived feed (RFC 5005).

The subscription document holds the newest entries and links `prev-archive` to the newest
month; each month's archive document is marked `fh:archive` and links `current`,
`prev-archive` and `next-archive`.

The bytes are those feedgen wrote when it rendered these documents: un-namespaced
elements under a literal default `xmlns`, in feedgen's order, pretty-printed by lxml. An
entry is the same in every document that carries it, so one publish run serializes it once
(`Entries`) and joins the bytes into each document: the "all" feed and the topic feeds,
their subscription and their archive documents, share them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from lxml import etree

from aggregator.models import Item
from aggregator.publish.document import (
    GENERATOR_NAME,
    GENERATOR_URI,
    GENERATOR_VERSION,
    HISTORY_NS,
    LANGUAGE,
    FeedInfo,
    Page,
    SourceInfo,
    author_of,
    inline_content,
    newest_updated,
    original_link,
)

ATOM_TYPE = "application/atom+xml"
ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_FEED_END = b"</feed>\n"
_WRAPPER_START = b"<feed>\n"


class Entries:
    """Serialized entries of one publish run, by everything an entry is made of."""

    def __init__(self) -> None:
        self._bytes: dict[tuple, bytes] = {}

    def of(self, item: Item, info: FeedInfo, source: SourceInfo) -> bytes:
        page = info.item_url(item.id)
        key = (_entry_fields(item), info.topic_scheme, page, source)
        found = self._bytes.get(key)
        if found is None:
            found = self._bytes[key] = _entry_bytes(item, info.topic_scheme, page, source)
        return found


def render(
    info: FeedInfo,
    page: Page,
    source_of: Callable[[Item], SourceInfo],
    entries: Entries | None = None,
) -> bytes:
    entries = entries or Entries()
    body = [entries.of(item, info, source_of(item)) for item in page.items]
    head = etree.tostring(
        etree.ElementTree(_feed(info, page)),
        pretty_print=True,
        encoding="UTF-8",
        xml_declaration=True,
    )
    if not head.endswith(_FEED_END):  # the feed element always has children
        raise ValueError("unexpected serialization of the feed element")
    return b"".join([head[: -len(_FEED_END)], *body, _FEED_END])


def _feed(info: FeedInfo, page: Page) -> etree._Element:
    nsmap = {"fh": HISTORY_NS} if page.is_archive else {}
    feed = etree.Element("feed", xmlns=ATOM_NS, nsmap=nsmap)
    feed.attrib[XML_LANG] = LANGUAGE
    _text(feed, "id", info.id)
    _text(
        feed, "title", info.title if page.month is None else f"{info.title} (archive {page.month})"
    )
    _text(feed, "updated", _date(newest_updated(page.items, page.empty_updated)))
    _feed_links(feed, info, page)
    generator = _text(feed, "generator", GENERATOR_NAME)
    generator.attrib["uri"] = GENERATOR_URI
    if not page.is_archive:  # no version in archives: an upgrade must not rewrite a month
        generator.attrib["version"] = GENERATOR_VERSION
    if info.subtitle:
        _text(feed, "subtitle", info.subtitle)
    if page.is_archive:  # a stable page of the feed's history
        etree.SubElement(feed, f"{{{HISTORY_NS}}}archive")
    return feed


def _feed_links(feed: etree._Element, info: FeedInfo, page: Page) -> None:
    if page.month is None:
        _link(feed, info.atom_url, "self", ATOM_TYPE)
    else:
        _link(feed, info.archive_url(page.month), "self", ATOM_TYPE)
        _link(feed, info.atom_url, "current", ATOM_TYPE)
    _link(feed, info.home_url, "alternate", "text/html")
    if page.prev_month:
        _link(feed, info.archive_url(page.prev_month), "prev-archive", ATOM_TYPE)
    if page.next_month:
        _link(feed, info.archive_url(page.next_month), "next-archive", ATOM_TYPE)


def _entry_fields(item: Item) -> tuple:
    return (
        item.atom_id,
        item.title,
        item.published,
        item.updated,
        item.author,
        item.link,
        item.content_html,
        item.summary_html,
        tuple(sorted(item.topics)),
    )


def _entry_bytes(item: Item, scheme: str, page: str, source: SourceInfo) -> bytes:
    """The entry as it appears in a document: indented one level, with its newline. Its
    alternate link is the original article, else the item's `page` (which, beside an original,
    is the related link): a reader can open every entry."""
    if not (item.atom_id and item.title):
        raise ValueError("Required fields not set")  # what feedgen said
    wrapper = etree.Element("feed")
    entry = etree.SubElement(wrapper, "entry")
    _text(entry, "id", item.atom_id)
    _text(entry, "title", item.title)
    _text(entry, "updated", _date(item.updated))
    _text(etree.SubElement(entry, "author"), "name", author_of(item))
    content = inline_content(item)
    if content:
        _text(entry, "content", content).attrib["type"] = "html"
    # feedgen wrote an entry's link without its rel: alternate, the default
    original = original_link(item)
    etree.SubElement(entry, "link", href=original or page)
    if original:
        etree.SubElement(entry, "link", href=page, rel="related", type="text/html")
    if item.summary_html and content != item.summary_html:
        _text(entry, "summary", item.summary_html).attrib["type"] = "html"
    for topic in sorted(item.topics):
        etree.SubElement(entry, "category", term=topic, scheme=scheme)
    _text(entry, "published", _date(item.published))
    _source(entry, source, item.updated)
    text = etree.tostring(wrapper, pretty_print=True, encoding="UTF-8", xml_declaration=False)
    return text[len(_WRAPPER_START) : -len(_FEED_END)]


def _source(entry: etree._Element, info: SourceInfo, updated: datetime) -> None:
    """atom:source naming the origin feed, with rel="self" when it has one. Its `updated`
    is the entry's: the source as this entry was taken from it (a date from the clock would
    change every document at every poll)."""
    source = etree.SubElement(entry, "source")
    _text(source, "id", info.id)
    if info.feed_url:
        etree.SubElement(source, "link", rel="self", href=info.feed_url)
    if info.home_url:
        etree.SubElement(source, "link", rel="alternate", href=info.home_url)
    _text(source, "title", info.title)
    _text(source, "updated", _date(updated))


def _text(parent: etree._Element, tag: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, tag)
    element.text = text
    return element


def _link(parent: etree._Element, href: str, rel: str, kind: str | None = None) -> None:
    link = etree.SubElement(parent, "link", href=href, rel=rel)
    if kind:
        link.attrib["type"] = kind


def _date(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("Datetime object has no timezone info")  # what feedgen said
    return value.isoformat()
