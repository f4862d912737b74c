"""The update pipe: entries in, one item per story out.

    parse | dedupe.make_intents | store.apply | classify

This module wires the stages together and is the only one that calls several of them;
each stage stays ignorant of the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from aggregator import dedupe
from aggregator.config import Config
from aggregator.models import Entry, IngestCounts, Origin
from aggregator.parse.seed import read_seed_file, seed_files
from aggregator.store import Archive
from aggregator.store.codec import now
from aggregator.store.sources import SEED_SOURCE_ID, SourceSpec

RULES_HASH_KEY = "classify.rules_hash"  # meta key: the rules the stored scores came from
log = logging.getLogger("aggregator.ingest")


def store_entries(
    archive: Archive,
    entries: Sequence[Entry],
    source_id: str,
    origin: Origin = Origin.FEED,
    seen: datetime | None = None,
) -> IngestCounts:
    """Deduplicate entries against the archive and store them in one transaction."""
    seen = seen or now()
    identified = dedupe.unique_identified(entries, source_id)
    identities = [identity for _, identity in identified]
    dates = [entry.published for entry, _ in identified if entry.published]
    with archive.transaction():
        candidates = archive.candidates_for(identities, dates)
        intents = dedupe.intents_for(identified, candidates)
        return archive.apply(intents, source_id, origin, seen)


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


def after_ingest(archive: Archive, config: Config, counts: IngestCounts) -> None:
    """What follows every store that changed items: classify them, then republish the
    feeds they touch."""
    if not counts.item_ids:
        return
    topics = classify_items(archive, config, counts.item_ids)
    from aggregator.publish import feeds_touched

    publish(archive, config, feeds_touched(config, topics))


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


def publish(archive: Archive, config: Config, slugs: Iterable[str] | None = None) -> None:
    from aggregator import publish as publisher

    wanted = None if slugs is None else set(slugs)
    if wanted is not None and not wanted:
        return
    report = (
        publisher.publish_all(archive, config)
        if wanted is None
        else publisher.publish_feeds(archive, config, sorted(wanted))
    )
    log.info(
        "publish",
        extra={
            "fields": {
                "feeds": ",".join(sorted(wanted)) if wanted else "all",
                "written": len(report.written),
                "unchanged": report.unchanged,
            }
        },
    )


def sync_sources(archive: Archive, config: Config) -> None:
    archive.sync_sources([SourceSpec(s.id, s.title, s.url, s.enabled) for s in config.sources])


def maintain(archive: Archive, config: Config) -> int:
    """The daily chores: trim the fetch log, let SQLite optimize, checkpoint the WAL."""
    cutoff = now() - timedelta(seconds=config.daemon.fetch_log_max_age)
    trimmed = archive.trim_fetch_log(cutoff)
    archive.optimize()
    return trimmed
