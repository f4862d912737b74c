"""Bytes and text in, normalized `Entry` values out: feeds (feedparser), JSON Feed, HTML
listing pages (CSS selectors) and seed files."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from aggregator.models import ParsedFeed
from aggregator.parse.prepare import DEFAULT_MAX_ENTRIES


def parse_document(
    body: bytes,
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    known: Collection[bytes] = frozenset(),
) -> ParsedFeed:
    """A feed source's document, whatever its format: JSON Feed when it is served or
    written as JSON, else RSS or Atom (feedparser), which leaves the entries whose digest is
    `known` unread. Raises FeedError (one line)."""
    from aggregator.parse import feed, jsonfeed

    if jsonfeed.looks_like_json_feed(body, headers or {}):
        return jsonfeed.parse_json_feed(body, url, max_entries=max_entries)
    return feed.parse_feed(body, url, headers, max_entries=max_entries, known=known)
