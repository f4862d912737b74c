"""Publish: the output feeds, rendered from the archive into `server.feeds_dir`.

For every feed in config, three subscription documents (`<slug>.atom`, `<slug>.rss`,
`<slug>.json`) with its newest `limit` entries, and one Atom archive document per month
that has items (`<slug>/archive/YYYY-MM.atom`, RFC 5005) with every item of that month;
and for every item of the archive, its page (`items/<id>.html`, see itempage), which the
entries link to. The folder is the whole static site. Rendering is pure (document, atom,
rss, jsonfeed, itempage); this module reads the archive and writes the files, each only
when its bytes changed.

Nothing one item or one feed holds stops the rest: an item a document cannot be rendered
with is left out of that document (see isolate), logged once per process and counted; a feed
that fails as a whole (its files cannot be written) is reported, and the others publish.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator import metrics
from aggregator.clock import now_to_the_second as clock
from aggregator.config import Config, FeedConfig
from aggregator.errors import AggregatorError, UsageError
from aggregator.models import FeedFailure, FeedResult, Item, LeftOut, PagesResult, PublishReport
from aggregator.publish import itempage, jsonfeed
from aggregator.publish.document import (
    EMPTY_FEED_UPDATED,
    ITEMS_FOLDER,
    FeedInfo,
    Page,
    SourceInfo,
    present_source,
)
from aggregator.publish.files import (
    PageWriter,
    item_pages_on_disk,
    month_files,
    remove_stale_months,
    write_if_changed,
)
from aggregator.publish.isolate import Render, one_line, render_isolated
from aggregator.store import Archive

if TYPE_CHECKING:
    from aggregator.publish import atom

__all__ = [
    "PublishError",
    "archive_path",
    "chosen_feeds",
    "feeds_touched",
    "publish_all",
    "publish_feeds",
]

log = logging.getLogger("aggregator.publish")
LOGGED_DOCUMENTS = 4  # a left-out item's log line names this many documents, then counts
PAGE_CHUNK = 500  # item pages rendered from one read of the archive


class PublishError(AggregatorError):
    """A publish run failed (a feed could not be written); str() is one line for users,
    `report` what did publish (None when the run stopped before any feed)."""

    def __init__(self, message: str, report: PublishReport | None = None):
        super().__init__(message)
        self.report = report


def publish_all(archive: Archive, config: Config, *, now: datetime | None = None) -> PublishReport:
    """Render every configured feed and every item's page."""
    return _publish(archive, config, config.feeds, None, None, now)


def publish_feeds(
    archive: Archive,
    config: Config,
    slugs: Iterable[str],
    months: Iterable[str] | None = None,
    items: Iterable[int] = (),
    *,
    now: datetime | None = None,
) -> PublishReport:
    """Render the named feeds; an unknown slug is an error before anything is written.

    Item pages: with `months` None, every item's page; else those of `items` (the ids of the
    changed items) and of any item that has no page yet. Pages of items the archive no
    longer holds are removed.

    `months` limits which archive-month documents are rendered again: None renders every
    month. After a store, pass the months ('YYYY-MM', of `Item.published` in UTC) of every
    item whose stored row or scores changed, both before and after the change (an item
    whose date moved leaves its old month; one that left a feed changes its month there).
    The subscription documents are always rendered; so are months that have no document
    yet and the neighbours of a month that appears or goes (their prev/next links change).
    Pass None after anything that changes every document: a failed or owed publish, a
    changed config, a source's new title, a restore, a reclassify."""
    wanted = None if months is None else frozenset(months)
    pages = None if months is None else frozenset(items)
    return _publish(archive, config, chosen_feeds(config, slugs), wanted, pages, now)


def chosen_feeds(config: Config, slugs: Iterable[str]) -> list[FeedConfig]:
    """The configured feeds of these slugs; UsageError names the first unknown one."""
    by_slug = {feed.slug: feed for feed in config.feeds}
    wanted = list(dict.fromkeys(slugs))
    unknown = [slug for slug in wanted if slug not in by_slug]
    if unknown:
        known = ", ".join(by_slug) or "none"
        raise UsageError(f'no feed "{unknown[0]}" in {config.path} (feeds: {known})')
    return [by_slug[slug] for slug in wanted]


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
    archive: Archive,
    config: Config,
    feeds: Sequence[FeedConfig],
    months: frozenset[str] | None,
    pages: frozenset[int] | None,
    now: datetime | None,
) -> PublishReport:
    from aggregator.publish import atom  # lxml: loaded by a publish, not a poll

    runs = [_FeedRun(feed, config) for feed in feeds]
    source_of = _source_lookup(archive)
    pages_result = PagesResult(error="the archive could not be read")
    try:
        first = archive.first_published([run.feed.slug for run in runs], now or clock())
        for run in runs:
            run.empty_updated = first[run.feed.slug]
        with archive.consistent_read():  # every feed from one state of the archive
            for run in runs:
                run.attempt(run.plan, archive, months)
            # Pages first: a reader following an entry's link to its page finds it.
            pages_result = _publish_pages(archive, config, source_of, pages)
            # Months first: a reader following the new prev-archive link finds its target.
            for month in sorted({month for run in runs if run.ok for month in run.rendered}):
                _publish_month(archive, month, runs, source_of, atom.Entries())
            entries = atom.Entries()
            for run in runs:
                run.attempt(run.finish, archive, source_of, entries)
    except Exception as exc:  # the archive could not be read: every feed left fails
        for run in runs:
            run.fail(exc)
    results = [run.result for run in runs if run.result is not None]
    left_out = _report_left_out(results, config.server.feeds_dir, archive.path)
    return PublishReport(
        written=tuple(path for result in results for path in result.written) + pages_result.written,
        unchanged=sum(result.unchanged for result in results) + pages_result.unchanged,
        removed=tuple(path for result in results for path in result.removed) + pages_result.removed,
        feeds=tuple(results),
        finished=now or clock(),
        left_out=left_out,
        failed=tuple(run.failure for run in runs if run.failure is not None),
        pages=pages_result,
    )


def _publish_pages(
    archive: Archive,
    config: Config,
    source_of: Callable[[Item], SourceInfo],
    wanted: frozenset[int] | None,
) -> PagesResult:
    """The pages of the `wanted` items (None: all) and of those that have none yet; the
    pages of items that are gone, removed. A page that cannot be rendered is left out alone
    (logged); one that cannot be written stops the pages, not the feeds."""
    folder = config.server.feeds_dir / ITEMS_FOLDER
    writer = None
    try:
        held = archive.item_ids()
        on_disk = item_pages_on_disk(folder)
        todo = sorted(held if wanted is None else (wanted & held) | (held - on_disk))
        writer = PageWriter(folder, on_disk)
        for start in range(0, len(todo), PAGE_CHUNK):
            _put_pages(archive, config, todo[start : start + PAGE_CHUNK], source_of, writer)
        removed = writer.remove_all_but(held)
        writer.close()
    except Exception as exc:
        error = one_line(exc)
        log.error("publish of the item pages failed: %s", error)
        written = tuple(writer.written) if writer else ()
        return PagesResult(written, writer.unchanged if writer else 0, error=error)
    return PagesResult(tuple(writer.written), writer.unchanged, tuple(removed))


def _put_pages(
    archive: Archive,
    config: Config,
    item_ids: Sequence[int],
    source_of: Callable[[Item], SourceInfo],
    writer: PageWriter,
) -> None:
    items = archive.get_items(item_ids)
    rules = archive.matched_rules(item_ids)
    revisions = archive.revisions_of([item.id for item in items if item.revision > 1])
    for item in items:
        feeds = [(f.slug, f.title) for f in config.feeds if topics_carrying(f, item.topics) != []]
        view = itempage.ItemPage(
            item, source_of(item), rules.get(item.id, {}), revisions.get(item.id, ()), feeds
        )
        try:
            data = itempage.render(view)
        except Exception as exc:  # this item's page only; the others are written
            _log_once(archive.path, item.id, "page", "item %d has no page: %s", one_line(exc))
            continue
        writer.put(item.id, data)


def _publish_month(
    archive: Archive,
    month: str,
    runs: Sequence[_FeedRun],
    source_of: Callable[[Item], SourceInfo],
    entries: atom.Entries,
) -> None:
    """One month's archive document of every feed that renders it: the month's items read
    once, each feed taking those it carries (the rule of the archive's feed query)."""
    items = archive.feed_month_items(month, (), 0.0)
    for run in runs:
        if run.ok and month in run.rendered:
            carried = [item for item in items if topics_carrying(run.feed, item.topics) != []]
            run.attempt(run.put_month, month, carried, source_of, entries)


class _FeedRun:
    """One feed's part of a publish run: which months it renders, what it wrote, and its
    failure, which stops this feed only."""

    def __init__(self, feed: FeedConfig, config: Config) -> None:
        self.feed = feed
        self.info = FeedInfo.of(feed, config.server.base_url)
        self.folder = config.server.feeds_dir
        self.months: list[str] = []
        self.rendered: set[str] = set()
        self.out = _Output()
        self.empty_updated = EMPTY_FEED_UPDATED  # when the feed was first published
        self.result: FeedResult | None = None
        self.failure: FeedFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def attempt(self, step: Callable[..., None], *args: Any) -> None:
        if self.ok:
            try:
                step(*args)
            except Exception as exc:  # the other feeds still publish; the run reports it
                self.fail(exc)

    def fail(self, exc: Exception) -> None:
        if self.ok and self.result is None:
            self.failure = FeedFailure(self.feed.slug, one_line(exc))
            log.error("publish of feed %s failed: %s", self.feed.slug, self.failure.error)

    def plan(self, archive: Archive, touched: frozenset[str] | None) -> None:
        self.months = archive.feed_months(self.feed.topics, self.feed.min_score)
        on_disk = month_files(self.folder / self.feed.slug / "archive")
        self.rendered = months_to_render(self.months, touched, on_disk)
        self.out.unchanged += len(self.months) - len(self.rendered)

    def put_month(
        self,
        month: str,
        items: list[Item],
        source_of: Callable[[Item], SourceInfo],
        entries: atom.Entries,
    ) -> None:
        index = bisect.bisect_left(self.months, month)
        months = self.months
        page = Page(tuple(items), month, _at(months, index - 1), _at(months, index + 1))
        render = _atom_page(self.info, page, source_of, entries)
        self.out.put(archive_path(self.folder, self.feed.slug, month), render, items)

    def finish(
        self, archive: Archive, source_of: Callable[[Item], SourceInfo], entries: atom.Entries
    ) -> None:
        """The subscription documents, then the months that have no items any more."""
        from aggregator.publish import rss  # feedgen: loaded by a publish, not a poll

        feed, info, out = self.feed, self.info, self.out
        current = tuple(
            archive.list_items(topics=feed.topics, min_score=feed.min_score, limit=feed.limit)
        )
        page = Page(
            current,
            prev_month=_at(self.months, len(self.months) - 1),
            empty_updated=self.empty_updated,
        )
        out.put(
            current_path(self.folder, feed.slug, "atom"),
            _atom_page(info, page, source_of, entries),
            current,
        )
        out.put(
            current_path(self.folder, feed.slug, "rss"),
            lambda items: rss.render(info, items, source_of, self.empty_updated),
            current,
        )
        out.put(
            current_path(self.folder, feed.slug, "json"),
            lambda items: jsonfeed.render(info, items, source_of),
            current,
        )
        removed = remove_stale_months(self.folder / feed.slug / "archive", set(self.months))
        self.result = FeedResult(
            feed.slug,
            len(current),
            len(self.months),
            tuple(out.written),
            out.unchanged,
            tuple(removed),
            tuple(out.left_out.values()),
        )


def months_to_render(
    months: Sequence[str], touched: frozenset[str] | None, on_disk: set[str]
) -> set[str]:
    """Which of a feed's `months` (oldest first) to render: all when `touched` is None;
    else those touched, those without a document, and the neighbours of every month that
    appeared or went (whose prev/next-archive links name another month now)."""
    if touched is None:
        return set(months)
    present = set(months)
    wanted = (present & touched) | (present - on_disk)
    for month in present ^ on_disk:
        position = bisect.bisect_left(months, month)  # where it is, or would be
        after = position + 1 if month in present else position
        wanted.update(months[max(position - 1, 0) : after + 1])
    return wanted


def _atom_page(
    info: FeedInfo,
    page: Page,
    source_of: Callable[[Item], SourceInfo],
    entries: atom.Entries,
) -> Render:
    from aggregator.publish import atom

    return lambda items: atom.render(info, replace(page, items=tuple(items)), source_of, entries)


def _at(months: list[str], index: int) -> str | None:
    return months[index] if 0 <= index < len(months) else None


class _Output:
    """Renders and writes one feed's documents; counts what write_if_changed did and
    which documents each left-out item is missing from."""

    def __init__(self) -> None:
        self.written: list[Path] = []
        self.unchanged = 0
        self.left_out: dict[int, LeftOut] = {}

    def put(self, path: Path, render: Render, items: Sequence[Item]) -> None:
        data, left_out = render_isolated(render, items)
        _merge(self.left_out, [replace(left, documents=(path,)) for left in left_out])
        if write_if_changed(path, data):
            self.written.append(path)
        else:
            self.unchanged += 1


def _merge(into: dict[int, LeftOut], left_out: Iterable[LeftOut]) -> None:
    """One record per item: the first reason, every document it is missing from."""
    for left in left_out:
        known = into.get(left.item_id)
        into[left.item_id] = (
            left if known is None else replace(known, documents=known.documents + left.documents)
        )


# A daemon republishes after every poll that stores something: an item it cannot render
# is left out each time, and would be logged each time. Said once per process is enough;
# the metric still counts every document published without it.
_ALREADY_LOGGED: set[tuple[Path, int, str]] = set()


def _log_once(database: Path, item_id: int, reason: str, message: str, detail: str) -> None:
    if (database, item_id, reason) not in _ALREADY_LOGGED:
        _ALREADY_LOGGED.add((database, item_id, reason))
        log.warning(message, item_id, detail, extra={"fields": {"item": item_id}})


def _report_left_out(
    results: Sequence[FeedResult], folder: Path, database: Path
) -> tuple[LeftOut, ...]:
    """Log each left-out item once for the process, naming the documents it is missing
    from, and count it once per feed and run."""
    every: dict[int, LeftOut] = {}
    for result in results:
        for left in result.left_out:
            metrics.PUBLISH_LEFT_OUT.labels(feed=result.slug, reason=left.reason).inc()
        _merge(every, result.left_out)
    for left in every.values():
        if (database, left.item_id, left.reason) in _ALREADY_LOGGED:
            continue
        _ALREADY_LOGGED.add((database, left.item_id, left.reason))
        names = [str(path.relative_to(folder)) for path in left.documents]
        more = len(names) - LOGGED_DOCUMENTS
        log.warning(
            "item %d left out of %s%s: %s",
            left.item_id,
            ", ".join(names[:LOGGED_DOCUMENTS]),
            f" and {more} more" if more > 0 else "",
            left.explained,
            extra={"fields": {"item": left.item_id, "reason": left.reason}},
        )
    return tuple(every.values())


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
