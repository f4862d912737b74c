"""JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/), written with the json module.

`<`, `>` and `&` are written as \\u escapes, so no markup appears in the bytes even if a
document is served or embedded where a browser might sniff it as HTML.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from typing import Any

from aggregator.clock import stamp
from aggregator.models import Item
from aggregator.publish.document import (
    LANGUAGE,
    FeedInfo,
    SourceInfo,
    author_of,
    original_link,
)

VERSION = "https://jsonfeed.org/version/1.1"
EXTENSION = "_aggregator"  # JSON Feed extensions start with an underscore


def render(info: FeedInfo, items: Sequence[Item], source_of: Callable[[Item], SourceInfo]) -> bytes:
    document: dict[str, Any] = {
        "version": VERSION,
        "title": info.title,
        "home_page_url": info.home_url,
        "feed_url": info.json_url,
    }
    if info.subtitle:
        document["description"] = info.subtitle
    document["language"] = LANGUAGE
    document["items"] = [_item(info, item, source_of(item)) for item in items]
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    for char in "<>&":  # these occur only inside JSON strings, where \\u escapes mean the same
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text.encode("utf-8")


def _item(info: FeedInfo, item: Item, source: SourceInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": item.atom_id}
    entry["url"] = original_link(item) or info.item_url(
        item.id
    )  # the original, else the item's page
    entry["title"] = item.title
    entry["content_html"] = item.content_html or item.summary_html or html.escape(item.title)
    if item.content_html and item.summary_text:
        entry["summary"] = item.summary_text
    entry["date_published"] = stamp(item.published)
    entry["date_modified"] = stamp(item.updated)
    entry["authors"] = [{"name": author_of(item)}]
    if item.topics:
        entry["tags"] = sorted(item.topics)
    origin = {"title": source.title}
    if source.feed_url or source.home_url:
        origin["url"] = source.feed_url or source.home_url
    entry[EXTENSION] = {"origin": item.origin.value, "source": origin}
    return entry
