"""The update pipe: entries in, one item per story out.

    parse | dedupe.make_intents | store.apply | classify

This module wires the stages together and is the only one that calls several of them;
each stage stays ignorant of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from aggregator import dedupe
from aggregator.models import Entry, IngestCounts, Origin
from aggregator.parse.seed import read_seed_file, seed_files
from aggregator.store import Archive
from aggregator.store.codec import now
from aggregator.store.sources import SEED_SOURCE_ID


def store_entries(
    archive: Archive,
    entries: Sequence[Entry],
    source_id: str,
    origin: Origin = Origin.FEED,
    seen: datetime | None = None,
) -> IngestCounts:
    """Deduplicate entries against the archive and store them in one transaction."""
    seen = seen or now()
    entries = dedupe.unique_entries(entries, source_id)
    identities = [dedupe.identify(entry, source_id) for entry in entries]
    dates = [entry.published for entry in entries if entry.published]
    with archive.transaction():
        candidates = archive.candidates_for(identities, dates)
        intents = dedupe.make_intents(entries, source_id, candidates)
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


def after_ingest(archive: Archive, config: object, counts: IngestCounts) -> None:
    """What follows a store: classify the changed items (publish follows in its issue)."""
    # filled in by classify/publish: kept as the one hook every ingest path calls
    return None
