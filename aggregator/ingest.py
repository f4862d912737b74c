"""The update pipe: entries in, one item per story out.

    parse | dedupe.make_intents | store.apply | classify

This module wires the stages together and is the only one that calls several of them;
each stage stays ignorant of the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from aggregator import dedupe, metrics
from aggregator.config import Config, FeedConfig
from aggregator.models import (
    Candidate,
    Entry,
    Identity,
    IngestCounts,
    Intent,
    Origin,
    SourceSpec,
)
from aggregator.parse.seed import read_seed_file, seed_files
from aggregator.store import Archive
from aggregator.store.codec import now
from aggregator.store.sources import SEED_SOURCE_ID

if TYPE_CHECKING:
    from aggregator.publish import PublishReport

RULES_HASH_KEY = "classify.rules_hash"  # meta key: the rules the stored scores came from
log = logging.getLogger("aggregator.ingest")


def store_entries(
    archive: Archive,
    entries: Sequence[Entry],
    source_id: str,
    origin: Origin = Origin.FEED,
    seen: datetime | None = None,
) -> IngestCounts:
    """Deduplicate entries against the archive and store them in one transaction, which
    also records that a publish is owed when any item changed (so a crash before the
    publish leaves the debt for the next run to settle)."""
    seen = seen or now()
    identified = dedupe.unique_identified(entries, source_id)
    with archive.transaction():
        intents = decide(archive, identified, origin)
        counts = archive.apply(intents, source_id, origin, seen)
        if counts.item_ids:
            archive.mark_publish_owed(seen)
        return counts


def decide(
    archive: Archive, identified: Sequence[tuple[Entry, Identity]], origin: Origin
) -> list[Intent]:
    """Dedupe's complete intents for these entries, from what the archive holds; call it in
    the transaction that applies them (the ids of new items are the next free ones)."""
    candidates = find_candidates(archive, identified)
    first_id = archive.next_item_id()
    intents = dedupe.decide(identified, candidates, origin, first_id)
    held = archive.held_atom_ids(dedupe.new_atom_ids(intents))
    if held:  # a published id another item has: decide again, avoiding it
        intents = dedupe.decide(identified, candidates, origin, first_id, held)
    return intents


def find_candidates(
    archive: Archive, identified: Sequence[tuple[Entry, Identity]]
) -> list[Candidate]:
    """The stored items that may be these stories: by guid and link, then by title and
    day for the identities those leave open, then unmerged seeds of nearby days. Each
    item once, in the order found."""
    identities = [ident for _, ident in identified]
    found: dict[int, Candidate] = {}

    def add(candidates: list[Candidate]) -> None:
        for candidate in candidates:
            found.setdefault(candidate.id, candidate)

    add(archive.candidates_where("guid_key", [i.guid_key for i in identities if i.guid_key]))
    urls = [i.canonical_url for i in identities if i.canonical_url]
    add(archive.candidates_where("canonical_url", urls))
    rest = dedupe.needs_title_lookup(identities, found.values())
    add(archive.candidates_where("fingerprint", [i.fingerprint for i in rest]))
    add(archive.candidates_where("title_key", [i.title_key for i in rest]))
    window = dedupe.seed_window(entry for entry, _ in identified)
    if window:
        add(archive.unmerged_seeds_between(*window))
    return list(found.values())


def import_seeds(
    archive: Archive, paths: Sequence[Path], reference: str | None = None
) -> IngestCounts:
    """Import seed files (or folders of them); all of them land, or none does.

    Parsing every file before storing any means a bad file changes nothing.
    """
    files = [f for p in paths for f in (seed_files(p) if p.is_dir() else [p])]
    entries = [entry for f in files for entry in read_seed_file(f, reference)]
    archive.ensure_seed_source()
    return store_entries(archive, entries, SEED_SOURCE_ID, Origin.SEED)


def ensure_seeds(archive: Archive, folder: Path) -> IngestCounts | None:
    """Import the seeds when the archive has none yet (a fresh archive)."""
    if archive.count_items(Origin.SEED) or not folder.is_dir():
        return None
    return import_seeds(archive, [folder])


def after_ingest(archive: Archive, config: Config, counts: IngestCounts) -> bool:
    """What follows every store that changed items: classify them, then republish the
    feeds they touch, or every feed when the archive owed a publish from before. False
    when the publish failed (recorded and owed, never raised); True otherwise."""
    if not counts.item_ids:
        return True
    debt = archive.publish_debt()  # read first: a change stored meanwhile stays owed
    topics = classify_items(archive, config, counts.item_ids)
    from aggregator.publish import PublishError, feeds_touched

    touched = feeds_touched(config, topics)
    owed_before = debt.unsettled > 1  # more than this store's own mark
    feeds = [feed for feed in config.feeds if owed_before or feed.slug in touched]
    try:
        _publish_recorded(archive, config, feeds, settles=True, covers=debt.marks)
    except PublishError:
        return False
    return True


def settle_publish(archive: Archive, config: Config) -> bool | None:
    """Publish every feed if the archive owes a publish (one failed, or the process died
    before it ran). None: nothing was owed; True: settled; False: it failed again, which
    is recorded and stays owed (never raised)."""
    if not archive.publish_state().owed:
        return None
    from aggregator.publish import PublishError

    try:
        publish(archive, config)
    except PublishError:
        return False
    return True


def classify_items(archive: Archive, config: Config, item_ids: Sequence[int]) -> set[str]:
    """Score items against every topic; returns the topics they match or matched."""
    from aggregator import classify

    topics = classify.load_topics(config)
    scores = []
    matched: set[str] = set()  # before and after: an item leaving a feed changes it too
    for start in range(0, len(item_ids), 500):
        chunk = item_ids[start : start + 500]
        for item in archive.get_items(chunk):
            matched.update(item.topics)
            for score in classify.score_item(topics, item):
                scores.append(score)
                if score.matched:
                    matched.add(score.topic)
    archive.save_scores(scores, replace_items=item_ids)
    return matched


def reclassify(archive: Archive, config: Config) -> int:
    """Score every item again (the rules changed); one transaction."""
    from aggregator import classify

    topics = classify.load_topics(config)
    with archive.transaction():
        archive.clear_scores()
        batch, count = [], 0
        for item in archive.iter_items():
            batch.extend(classify.score_item(topics, item))
            count += 1
            if len(batch) >= 5000:
                archive.save_scores(batch)
                batch = []
        archive.save_scores(batch)
        archive.set_meta(RULES_HASH_KEY, classify.rules_hash(config))
    log.info("reclassified %d items", count, extra={"fields": {"items": count}})
    return count


def reclassify_if_rules_changed(archive: Archive, config: Config) -> bool:
    from aggregator import classify

    if archive.get_meta(RULES_HASH_KEY) == classify.rules_hash(config):
        return False
    reclassify(archive, config)
    return True


def publish(archive: Archive, config: Config, slugs: Iterable[str] | None = None) -> PublishReport:
    """Render the named feeds (default: every feed) and record the outcome in the archive;
    a run that renders every feed settles what was owed. ValueError for an unknown slug,
    before anything is written; PublishError, once recorded, when a feed did not publish."""
    from aggregator.publish import chosen_feeds

    feeds = config.feeds if slugs is None else chosen_feeds(config, slugs)
    everything = {feed.slug for feed in feeds} >= {feed.slug for feed in config.feeds}
    return _publish_recorded(archive, config, feeds, settles=everything)


def _publish_recorded(
    archive: Archive,
    config: Config,
    feeds: Sequence[FeedConfig],
    *,
    settles: bool,
    covers: int | None = None,
) -> PublishReport:
    """Publish `feeds`; record a failure (owed) or, when the run `settles` the debt, a
    success covering the marks made before it began (`covers`, default: now)."""
    from aggregator import publish as publisher
    from aggregator.publish.isolate import one_line

    covers = archive.publish_debt().marks if covers is None else covers
    began = time.monotonic()
    report, error = None, None
    try:
        report = publisher.publish_feeds(archive, config, [feed.slug for feed in feeds])
        error = report.failure() or None
    except Exception as exc:  # the archive could not be read: a failed publish all the same
        error = one_line(exc)
        log.error("publish failed: %s", error)  # a feed's failure the publisher logged itself
    metrics.PUBLISH_SECONDS.observe(time.monotonic() - began)
    finished = datetime.now(UTC)  # not to the second: see store.publishing
    if error:
        archive.record_publish_failure(finished, error)
        metrics.PUBLISHES.labels(outcome="failed").inc()
        raise publisher.PublishError(f"publish failed: {error}", report)
    if settles:
        archive.record_publish_success(finished, covers)
    metrics.PUBLISHES.labels(outcome="ok").inc()
    log.info(
        "publish",
        extra={
            "fields": {
                "feeds": ",".join(feed.slug for feed in feeds) or "none",
                "written": len(report.written),
                "unchanged": report.unchanged,
                "left_out": len(report.left_out),
            }
        },
    )
    return report


def sync_sources(archive: Archive, config: Config) -> None:
    archive.sync_sources([SourceSpec(s.id, s.title, s.url, s.enabled) for s in config.sources])


def maintain(archive: Archive, config: Config) -> int:
    """The daily chores: trim the fetch log, let SQLite optimize, checkpoint the WAL."""
    cutoff = now() - timedelta(seconds=config.daemon.fetch_log_max_age)
    trimmed = archive.trim_fetch_log(cutoff)
    archive.optimize()
    return trimmed
