"""Atom 1.0 documents (RFC 4287) with feedgen, linked as an archived feed (RFC 5005).

The subscription document holds the newest entries and links `prev-archive` to the newest
month; each month's archive document is marked `fh:archive` and links `current`,
`prev-archive` and `next-archive`. feedgen builds un-namespaced elements under a default
Atom namespace, so the extensions below add un-namespaced elements too.
"""

from __future__ import annotations

from collections.abc import Callable

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
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
)

ATOM_TYPE = "application/atom+xml"


class _ArchiveMark(BaseExtension):
    """`<fh:archive/>`: this document is a stable page of the feed's history."""

    def extend_ns(self) -> dict[str, str]:
        return {"fh": HISTORY_NS}

    def extend_atom(self, feed: etree._Element) -> etree._Element:
        etree.SubElement(feed, f"{{{HISTORY_NS}}}archive")
        return feed


class _Source(BaseEntryExtension):
    """atom:source naming the origin feed (feedgen's own cannot say rel="self")."""

    def __init__(self) -> None:
        self.info: SourceInfo | None = None

    def extend_atom(self, entry: etree._Element) -> etree._Element:
        if self.info is None:
            return entry
        source = etree.SubElement(entry, "source")
        if self.info.feed_url:
            etree.SubElement(source, "link", rel="self", href=self.info.feed_url)
        if self.info.home_url:
            etree.SubElement(source, "link", rel="alternate", href=self.info.home_url)
        etree.SubElement(source, "title").text = self.info.title
        return entry


def render(info: FeedInfo, page: Page, source_of: Callable[[Item], SourceInfo]) -> bytes:
    fg = FeedGenerator()
    fg.register_extension("aggregator_source", BaseExtension, _Source, atom=True, rss=False)
    if page.is_archive:
        fg.register_extension("history", _ArchiveMark, BaseEntryExtension, rss=False)
    fg.id(info.id)
    fg.title(info.title if page.month is None else f"{info.title} (archive {page.month})")
    if info.subtitle:
        fg.subtitle(info.subtitle)
    fg.language(LANGUAGE)
    fg.updated(newest_updated(page.items))
    _feed_links(fg, info, page)
    if page.is_archive:
        # No version in archives: a program upgrade must not rewrite a finished month.
        fg.generator(GENERATOR_NAME, uri=GENERATOR_URI)
    else:
        fg.generator(GENERATOR_NAME, version=GENERATOR_VERSION, uri=GENERATOR_URI)
    for item in page.items:
        _entry(fg, info, item, source_of(item))
    return fg.atom_str(pretty=True)


def _feed_links(fg: FeedGenerator, info: FeedInfo, page: Page) -> None:
    if page.month is None:
        fg.link(href=info.atom_url, rel="self", type=ATOM_TYPE)
    else:
        fg.link(href=info.archive_url(page.month), rel="self", type=ATOM_TYPE)
        fg.link(href=info.atom_url, rel="current", type=ATOM_TYPE)
    fg.link(href=info.home_url, rel="alternate", type="text/html")
    if page.prev_month:
        fg.link(href=info.archive_url(page.prev_month), rel="prev-archive", type=ATOM_TYPE)
    if page.next_month:
        fg.link(href=info.archive_url(page.next_month), rel="next-archive", type=ATOM_TYPE)


def _entry(fg: FeedGenerator, info: FeedInfo, item: Item, source: SourceInfo) -> None:
    fe = fg.add_entry(order="append")
    fe.id(item.atom_id)
    fe.title(item.title)
    fe.published(item.published)
    fe.updated(item.updated)
    fe.author(name=author_of(item))
    if item.link:
        fe.link(href=item.link, rel="alternate")
    content = inline_content(item)
    if content:
        fe.content(content, type="html")
    if item.summary_html and content != item.summary_html:
        fe.summary(item.summary_html, type="html")
    for topic in sorted(item.topics):
        fe.category(term=topic, scheme=info.topic_scheme)
    fe.aggregator_source.info = source
