"""A search as a feed: /search.atom?q=, /search.rss?q= and /search.json?q=.

A saved search is a subscription (as FreshRSS's user queries are): the feed's self link and
id carry the query, its entries are the newest matching items, rendered by publish's own
renderers so an entry reads as it does in the published feeds. Pure: serve runs the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from aggregator.models import Item, SourceState
from aggregator.publish import atom, jsonfeed, rss
from aggregator.publish.document import FeedInfo, Page, SourceInfo, present_source
from aggregator.publish.isolate import render_isolated
from aggregator.serve.files import CONTENT_TYPES

__all__ = ["CONTENT_TYPES", "SearchFeedInfo", "render"]


@dataclass(frozen=True, slots=True)
class SearchFeedInfo(FeedInfo):
    """A search's names and URLs: those of /search with its query."""

    query: str

    @classmethod
    def of_query(cls, query: str, base_url: str) -> SearchFeedInfo:
        title = f"Search: {query}"
        subtitle = f"The newest items of the NATO news archive that match {query}"
        return cls("search", title, subtitle, base_url.rstrip("/"), query)

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path}?{urlencode({'q': self.query})}"

    @property
    def home_url(self) -> str:
        return self._url("search")

    @property
    def atom_url(self) -> str:
        return self._url("search.atom")

    @property
    def rss_url(self) -> str:
        return self._url("search.rss")

    @property
    def json_url(self) -> str:
        return self._url("search.json")


def render(
    kind: str,
    info: SearchFeedInfo,
    items: Sequence[Item],
    sources: dict[str, SourceState],
    searched: datetime,
) -> bytes:
    """The search's feed document in `kind` ("atom", "rss" or "json"), items newest first;
    `sources` by id say where each item came from; a search that found nothing is dated
    when it ran (`searched`)."""

    def source_of(item: Item) -> SourceInfo:
        return present_source(item.source_id, sources.get(item.source_id))

    def document(some: Sequence[Item]) -> bytes:
        if kind == "atom":
            return atom.render(info, Page(tuple(some), empty_updated=searched), source_of)
        if kind == "rss":
            return rss.render(info, some, source_of, empty_updated=searched)
        return jsonfeed.render(info, some, source_of)

    # As in publish: an item the renderer cannot write is left out, not the whole feed.
    body, _ = render_isolated(document, items)
    return body
