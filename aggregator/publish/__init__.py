"""Publish: the output feeds, rendered from the archive into `server.feeds_dir`.

For every feed in config, three subscription documents (`<slug>.atom`, `<slug>.rss`,
`<slug>.json`) with its newest `limit` entries, and one Atom archive document per month
that has items (`<slug>/archive/YYYY-MM.atom`, RFC 5005) with every item of that month.
Rendering is pure (document, atom, rss, jsonfeed); this module reads the archive and
writes the files, each only when its bytes changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aggregator.config import Config, FeedConfig
from aggregator.models import Item
from aggregator.publish import atom, jsonfeed, rss
from aggregator.publish.document import FeedInfo, Page, SourceInfo, present_source
from aggregator.publish.files import remove_stale_months, write_if_changed
from aggregator.store import Archive
from aggregator.store.codec import now as clock

__all__ = [
    "FeedResult",
    "PublishReport",
    "archive_path",
    "feeds_touched",
    "publish_all",
    "publish_feeds",
]


@dataclass(frozen=True, slots=True)
class FeedResult:
    slug: str
    entries: int  # in the subscription documents
    months: int  # archive documents
    written: tuple[Path, ...]  # files whose bytes changed
    unchanged: int  # files left as they were
    removed: tuple[Path, ...] = ()  # archive months that no longer have items


@dataclass(frozen=True, slots=True)
class PublishReport:
    written: tuple[Path, ...]
    unchanged: int
    removed: tuple[Path, ...] = ()
    feeds: tuple[FeedResult, ...] = ()
    finished: datetime | None = None  # when the run ended; never written into a document


def publish_all(archive: Archive, config: Config, *, now: datetime | None = None) -> PublishReport:
    """Render every configured feed."""
    return _publish(archive, config, config.feeds, now)


def publish_feeds(
    archive: Archive, config: Config, slugs: Iterable[str], *, now: datetime | None = None
) -> PublishReport:
    """Render the named feeds; an unknown slug is an error before anything is written."""
    by_slug = {feed.slug: feed for feed in config.feeds}
    wanted = list(dict.fromkeys(slugs))
    unknown = [slug for slug in wanted if slug not in by_slug]
    if unknown:
        known = ", ".join(by_slug) or "none"
        raise ValueError(f'no feed "{unknown[0]}" in {config.path} (feeds: {known})')
    return _publish(archive, config, [by_slug[slug] for slug in wanted], now)


def feeds_touched(config: Config, topics_of_changed_items: Iterable[str]) -> set[str]:
    """The feeds that changed items can appear in, given the topics those items matched
    (before and after the change). A feed without topics carries every item, so any change
    touches it. Pure: call it only when some item changed."""
    topics = set(topics_of_changed_items)
    return {feed.slug for feed in config.feeds if not feed.topics or topics & set(feed.topics)}


def topics_carrying(feed: FeedConfig, scores: dict[str, float]) -> list[str] | None:
    """The topics (of an item's matched topics and scores) that put it in this feed: None for
    a feed that carries every item, [] when the item is not in it. The same rule as the
    archive's feed query, for explaining one item."""
    if not feed.topics:
        return None
    return [t for t in feed.topics if t in scores and scores[t] >= feed.min_score]


def current_path(feeds_dir: Path, slug: str, suffix: str) -> Path:
    return feeds_dir / f"{slug}.{suffix}"


def archive_path(feeds_dir: Path, slug: str, month: str) -> Path:
    return feeds_dir / slug / "archive" / f"{month}.atom"


def _publish(
    archive: Archive, config: Config, feeds: Sequence[FeedConfig], now: datetime | None
) -> PublishReport:
    results = [_publish_feed(archive, config, feed) for feed in feeds]
    return PublishReport(
        written=tuple(path for result in results for path in result.written),
        unchanged=sum(result.unchanged for result in results),
        removed=tuple(path for result in results for path in result.removed),
        feeds=tuple(results),
        finished=now or clock(),
    )


def _publish_feed(archive: Archive, config: Config, feed: FeedConfig) -> FeedResult:
    info = FeedInfo.of(feed, config.server.base_url)
    folder = config.server.feeds_dir
    source_of = _source_lookup(archive)
    out = _Output()
    with archive.consistent_read():
        months = archive.feed_months(feed.topics, feed.min_score)
        # Months first: a reader following the new prev-archive link finds its target.
        for index, month in enumerate(months):
            items = archive.feed_month_items(month, feed.topics, feed.min_score)
            page = Page(tuple(items), month, _at(months, index - 1), _at(months, index + 1))
            out.put(archive_path(folder, feed.slug, month), atom.render(info, page, source_of))
        current = tuple(
            archive.list_items(topics=feed.topics, min_score=feed.min_score, limit=feed.limit)
        )
    page = Page(current, prev_month=_at(months, len(months) - 1))
    out.put(current_path(folder, feed.slug, "atom"), atom.render(info, page, source_of))
    out.put(current_path(folder, feed.slug, "rss"), rss.render(info, current, source_of))
    out.put(current_path(folder, feed.slug, "json"), jsonfeed.render(info, current, source_of))
    removed = remove_stale_months(folder / feed.slug / "archive", set(months))
    return FeedResult(
        feed.slug, len(current), len(months), tuple(out.written), out.unchanged, tuple(removed)
    )


def _at(months: list[str], index: int) -> str | None:
    return months[index] if 0 <= index < len(months) else None


class _Output:
    """Counts what write_if_changed did."""

    def __init__(self) -> None:
        self.written: list[Path] = []
        self.unchanged = 0

    def put(self, path: Path, data: bytes) -> None:
        if write_if_changed(path, data):
            self.written.append(path)
        else:
            self.unchanged += 1


def _source_lookup(archive: Archive) -> Callable[[Item], SourceInfo]:
    """How each item names its origin; one archive lookup per source per run."""
    cache: dict[str, SourceInfo] = {}

    def source_of(item: Item) -> SourceInfo:
        if item.source_id not in cache:
            cache[item.source_id] = present_source(
                item.source_id, archive.get_source(item.source_id)
            )
        return cache[item.source_id]

    return source_of
