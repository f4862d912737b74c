"""What every rendering shares: a feed's public URLs, a page of items, how an entry names
its origin. Pure values and functions; the renderers beside this module turn them into bytes.

Every date written into a document derives from its items, never from the clock, so the
same items always give the same bytes (and the same ETag).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from aggregator import __version__
from aggregator.config import FeedConfig
from aggregator.models import Item, SourceState

GENERATOR_NAME = "nato-partnership-aggregator"
GENERATOR_URI = "https://github.com/nato-partnership-aggregator/aggregator"
GENERATOR_VERSION = __version__
LANGUAGE = "en"  # NATO's English news feed is what we follow
DEFAULT_AUTHOR = "NATO"  # NATO's feed names no authors; every story is NATO's
# A document with no entries and no date of its own (a search that found nothing) says this;
# a published feed says when it was first published instead.
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)
SEED_SOURCE_TITLE = "NATO (seeded article)"
SEED_SOURCE_HOME = "https://www.nato.int/"  # the seeds are text captures of nato.int pages
HISTORY_NS = "http://purl.org/syndication/history/1.0"  # RFC 5005
SITE_TITLE = "NATO partnership feeds"
# atom:source needs an id: the origin feed's URL, else one of ours (RFC 2606's .invalid, as
# the seeds' entry ids): the seeds' capture of nato.int, or a source the archive lost.
SEED_SOURCE_ID = "tag:aggregator.invalid,2024:seeded-articles"
LOST_SOURCE_ID = "tag:aggregator.invalid,2024:source/"


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """One output feed's names and public URLs, all derived from `server.base_url`."""

    slug: str
    title: str
    subtitle: str
    base_url: str  # without a trailing slash

    @classmethod
    def of(cls, feed: FeedConfig, base_url: str) -> FeedInfo:
        return cls(feed.slug, feed.title, feed.subtitle, base_url.rstrip("/"))

    @property
    def id(self) -> str:
        """The feed's atom:id: its subscription URL, shared by its archive documents."""
        return self.atom_url

    @property
    def home_url(self) -> str:
        return f"{self.base_url}/"

    @property
    def atom_url(self) -> str:
        return f"{self.base_url}/feeds/{self.slug}.atom"

    @property
    def rss_url(self) -> str:
        return f"{self.base_url}/feeds/{self.slug}.rss"

    @property
    def json_url(self) -> str:
        return f"{self.base_url}/feeds/{self.slug}.json"

    @property
    def topic_scheme(self) -> str:
        return f"{self.base_url}/topics"

    def archive_url(self, month: str) -> str:
        return f"{self.base_url}/feeds/{self.slug}/archive/{month}.atom"

    def item_url(self, item_id: int) -> str:
        """The item's page (see itempage): a link every entry can offer a reader."""
        return f"{self.base_url}/feeds/{item_page_path(item_id)}"


ITEMS_FOLDER = "items"  # in the feeds folder: every item's page


def item_page_path(item_id: int) -> str:
    """Where an item's page is, in the feeds folder and under `<base_url>/feeds/`."""
    return f"{ITEMS_FOLDER}/{item_id}.html"


@dataclass(frozen=True, slots=True)
class Page:
    """One Atom document: the subscription document (month None) or a month's archive."""

    items: tuple[Item, ...]  # newest first
    month: str | None = None  # 'YYYY-MM' for an archive document
    prev_month: str | None = None  # the next older month with items
    next_month: str | None = None  # the next newer month with items
    empty_updated: datetime = EMPTY_FEED_UPDATED  # the document's date when it has no items

    @property
    def is_archive(self) -> bool:
        return self.month is not None


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """How an entry names the feed it came from (atom:source, RSS source)."""

    id: str  # atom:source's id
    title: str
    feed_url: str | None  # the origin feed's own URL; None for the seeded articles
    home_url: str | None = None  # a page for people, when there is no feed


SEED_SOURCE = SourceInfo(SEED_SOURCE_ID, SEED_SOURCE_TITLE, None, SEED_SOURCE_HOME)


def present_source(source_id: str, state: SourceState | None) -> SourceInfo:
    if state is None:  # an item whose source row is gone: still say where it came from
        return SourceInfo(LOST_SOURCE_ID + quote(source_id, safe=""), source_id, None)
    if state.kind == "seed":
        return SEED_SOURCE
    return SourceInfo(state.url, state.title, state.url)


def newest_updated(items: Sequence[Item], empty: datetime = EMPTY_FEED_UPDATED) -> datetime:
    return max((item.updated for item in items), default=empty)


def author_of(item: Item) -> str:
    return (item.author or "").strip() or DEFAULT_AUTHOR


def original_link(item: Item) -> str | None:
    """The link to the original article, when it is one a reader can open: http(s) only,
    whatever an older archive holds (the parser keeps only those)."""
    link = item.link
    return link if link and link[:8].lower().startswith(("http://", "https://")) else None


def inline_content(item: Item) -> str | None:
    """The HTML an entry carries as its content: the full text when the archive has it;
    for an item with no link to the original, its summary (an entry needs one or the other)."""
    if item.content_html:
        return item.content_html
    if not original_link(item):
        return item.summary_html or html.escape(item.title)
    return None
