"""RSS 2.0 documents with feedgen: the subscription document only (RSS has no archives).

Authors go in `dc:creator` because RSS's own `author` must be an e-mail address; the full
text goes in `content:encoded` beside the summary in `description`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from feedgen.feed import FeedGenerator

from aggregator.models import Item
from aggregator.publish.document import (
    EMPTY_FEED_UPDATED,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    LANGUAGE,
    FeedInfo,
    SourceInfo,
    author_of,
    newest_updated,
    original_link,
)


def render(
    info: FeedInfo,
    items: Sequence[Item],
    source_of: Callable[[Item], SourceInfo],
    empty_updated: datetime = EMPTY_FEED_UPDATED,
) -> bytes:
    """The channel; `empty_updated` is its lastBuildDate when it has no items."""
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.title(info.title)
    fg.description(info.subtitle or info.title)
    fg.link(href=info.rss_url, rel="self", type="application/rss+xml")
    fg.link(href=info.home_url, rel="alternate")  # the last link is the channel's <link>
    fg.language(LANGUAGE)
    fg.lastBuildDate(newest_updated(items, empty_updated))
    fg.generator(f"{GENERATOR_NAME} {GENERATOR_VERSION}")
    for item in items:
        _item(fg, info, item, source_of(item))
    return fg.rss_str(pretty=True)


def _item(fg: FeedGenerator, info: FeedInfo, item: Item, source: SourceInfo) -> None:
    fe = fg.add_entry(order="append")
    fe.title(item.title)
    fe.link(
        href=original_link(item) or info.item_url(item.id)
    )  # the original, else the item's page
    fe.guid(item.atom_id, permalink=item.atom_id == item.link)
    if item.summary_html:
        fe.description(item.summary_html)
    if item.content_html:
        fe.content(item.content_html, type="html")
    fe.published(item.published)
    fe.dc.dc_creator(author_of(item))
    for topic in sorted(item.topics):
        fe.category(term=topic, scheme=info.topic_scheme)
    if source.feed_url:
        fe.source(url=source.feed_url, title=source.title)
