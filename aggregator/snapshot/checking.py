"""Verifying a snapshot: every file against the manifest, the database's integrity and
counts, items.jsonl's counts, and SHA256SUMS. The first mismatch is a SnapshotError
that names its file."""

from __future__ import annotations

import json
from pathlib import Path

from aggregator.errors import ArchiveError
from aggregator.snapshot import manifest
from aggregator.snapshot.files import file_entry
from aggregator.snapshot.layout import (
    DATABASE,
    ITEMS,
    MANIFEST,
    PAGES,
    SUMS,
    Progress,
    SnapshotError,
    SnapshotInfo,
    info,
    quiet,
    relative_files,
    resolve,
    unpacked,
)
from aggregator.snapshot.pages import check_pages
from aggregator.store import Archive

REPORT_EVERY = 2000  # items between progress reports


def verify(snapshots: Path, name: str, progress: Progress = quiet) -> SnapshotInfo:
    """Re-check every checksum, the database and the counts; SnapshotError names the first
    file that does not match."""
    path = resolve(Path(snapshots), name)
    with unpacked(path, Path(snapshots)) as folder:
        verify_folder(folder, progress)
    return info(path)


def verify_folder(folder: Path, progress: Progress = quiet) -> dict:
    """The manifest of a snapshot folder whose every promise holds."""
    promised = manifest.read(folder)
    files = promised.get("files") or {}
    for relative in _check_order(files):
        _check_file(folder, relative, files[relative], progress)
    extra = sorted(relative_files(folder) - set(files) - {MANIFEST, SUMS})
    if extra:
        raise SnapshotError(f"{extra[0]}: not in the manifest")
    _check_database(folder / DATABASE, promised)
    _check_items(folder / ITEMS, promised, progress)
    if PAGES in files:
        check_pages(folder / PAGES)
    manifest.check_sums(folder, files)
    return promised


def _check_order(files: dict) -> list[str]:
    """The database and items.jsonl first: a damaged snapshot is most likely damaged there."""
    missing = [name for name in (DATABASE, ITEMS) if name not in files]
    if missing:
        raise SnapshotError(f"{MANIFEST}: lists no {missing[0]}")
    return [DATABASE, ITEMS, *sorted(set(files) - {DATABASE, ITEMS})]


def _check_file(folder: Path, relative: str, entry: dict, progress: Progress) -> None:
    path = folder / relative
    if not path.is_file():
        raise SnapshotError(f"{relative}: missing")
    size = path.stat().st_size
    if size != entry.get("size"):
        raise SnapshotError(
            f"{relative}: size mismatch ({size} bytes, manifest says {entry.get('size')})"
        )
    if file_entry(path, progress)["sha256"] != entry.get("sha256"):
        raise SnapshotError(f"{relative}: sha256 mismatch")


def _check_database(path: Path, promised: dict) -> None:
    try:
        with Archive(path, readonly=True) as archive:
            archive.map_into_memory()
            result = archive.integrity_check()
            if result != "ok":
                raise SnapshotError(f"{DATABASE}: integrity check failed: {result}")
            found = manifest.facts_of(archive).as_dict()
    except ArchiveError as exc:  # the store says what SQLite found wrong with the file
        raise SnapshotError(f"{DATABASE}: {exc}") from None
    manifest.compare(DATABASE, found, promised)


def _check_items(path: Path, promised: dict, progress: Progress) -> None:
    tally = manifest.Tally()
    total = promised.get("items") or 0
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            record = _item(line, number)
            revisions = record.get("revisions")
            tally.add(record.get("origin"), record.get("source_id"), len(revisions or ()))
            if number % REPORT_EVERY == 0:
                progress("items", number, total)
    manifest.compare(ITEMS, tally.counts().as_dict(), promised)


def _item(line: bytes, number: int) -> dict:
    try:
        record = json.loads(line)
    except ValueError:
        raise SnapshotError(f"{ITEMS}: line {number} is not valid JSON") from None
    if not isinstance(record, dict):
        raise SnapshotError(f"{ITEMS}: line {number} is not an item")
    return record
