"""Creating a snapshot: an online backup of the database and an export of its items,
taken side by side from one instant, the feeds copied, the manifest and SHA256SUMS
written, all under a temporary name that is renamed when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from aggregator.clock import now
from aggregator.snapshot import manifest
from aggregator.snapshot.files import (
    HashingWriter,
    copy_file,
    file_entry,
    fsync_dir,
    write_bytes,
)
from aggregator.snapshot.layout import (
    DATABASE,
    FEEDS,
    ITEMS,
    MANIFEST,
    PAGES,
    SUMS,
    TAR_SUFFIX,
    Progress,
    SnapshotError,
    SnapshotInfo,
    claim,
    info,
    quiet,
    relative_files,
    snapshot_name,
)
from aggregator.snapshot.pages import copy_pages
from aggregator.store import Archive


def create(
    database: Path,
    snapshots: Path,
    feeds: Path,
    *,
    label: str | None = None,
    tar: bool = False,
    progress: Progress = quiet,
    clock: Callable[[], datetime] = now,
    pages: Path | None = None,
) -> SnapshotInfo:
    """Write a complete snapshot of `database`, `feeds` and the WARC file of captured
    `pages` (when it exists) into `snapshots`, or nothing."""
    database, snapshots, feeds = Path(database), Path(snapshots), Path(feeds)
    if not database.is_file():
        raise SnapshotError(f"{database}: no archive here")
    created = clock()
    name = snapshot_name(created, label)
    final = snapshots / (name + TAR_SUFFIX if tar else name)
    work = claim(snapshots, name)
    try:
        folder = work / name
        folder.mkdir()
        _fill(folder, database, feeds, created, label, progress, pages)
        built = _pack(folder, work / (name + TAR_SUFFIX), progress) if tar else folder
        if final.exists():
            raise SnapshotError(f"snapshot {name} already exists")
        os.rename(built, final)
        fsync_dir(snapshots)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return info(final)


def _fill(
    folder: Path,
    database: Path,
    feeds: Path,
    created: datetime,
    label: str | None,
    progress: Progress,
    pages: Path | None,
) -> None:
    copy = folder / DATABASE
    items, database_entry = _copy_and_export(database, copy, folder / ITEMS, progress)
    with Archive(copy, readonly=True) as backup:
        facts = manifest.facts_of(backup)
    if items.counts != facts.counts:  # cannot happen unless the two views saw different instants
        raise SnapshotError(f"{ITEMS}: exported counts differ from the database copy")
    files = {ITEMS: items.entry, DATABASE: database_entry}
    files.update(_copy_feeds(feeds, folder / FEEDS))
    if pages is not None and pages.is_file():
        files[PAGES] = copy_pages(pages, folder / PAGES)
    written = manifest.build(folder.name, created, label, facts, files)
    write_bytes(folder / MANIFEST, manifest.to_bytes(written))
    files[MANIFEST] = file_entry(folder / MANIFEST)
    write_bytes(folder / SUMS, manifest.sums_text(files).encode())


@dataclass(frozen=True)
class _Export:
    entry: dict  # size and sha256
    counts: manifest.Counts


def _copy_and_export(
    database: Path, copy: Path, items: Path, progress: Progress
) -> tuple[_Export, dict]:
    """The backup and the JSONL export, side by side on two views of one instant.

    SQLite and hashlib release the GIL, so on two cores the export, the integrity check
    and the checksums cost little more than the backup itself. Returns the export and
    the copy's manifest entry once the copy passed `PRAGMA integrity_check`.
    """
    pages = [0, 1]

    def back_up(view: Archive) -> None:
        view.backup_to(copy, lambda done, total: pages.__setitem__(slice(None), [done, total]))

    with (
        Archive.at_one_instant(database, 2) as (for_backup, for_export),
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        backed_up = pool.submit(back_up, for_backup)
        checked = pool.submit(lambda: backed_up.result() or _checked_entry(copy))
        exported = _write_items(for_export, items, progress)
        while not _done(backed_up):
            progress("backup", *pages)
        return exported, checked.result()


def _done(future: Future) -> bool:
    try:
        future.result(timeout=0.1)
    except TimeoutError:
        return False
    return True


def _checked_entry(copy: Path) -> dict:
    """The copy's manifest entry, once it passed `PRAGMA integrity_check`."""
    with Archive(copy, readonly=True) as backup:
        backup.map_into_memory()
        result = backup.integrity_check()
    if result != "ok":
        raise SnapshotError(f"{DATABASE}: integrity check of the copy failed: {result}")
    return file_entry(copy)


def _write_items(archive: Archive, path: Path, progress: Progress) -> _Export:
    """items.jsonl, hashed while it is written."""
    tally = manifest.Tally()
    total = archive.count_items()
    with open(path, "wb", buffering=0) as file:
        out = HashingWriter(file)
        for rows in archive.export_lines():
            out.write(b"\n".join(row[0] for row in rows) + b"\n")
            for _line, origin, source_id, revisions in rows:
                tally.add(origin, source_id, revisions)
            progress("export", tally.items, total)
        os.fsync(file.fileno())
    return _Export(out.entry(), tally.counts())


def _copy_feeds(feeds: Path, target: Path) -> dict[str, dict]:
    """Copy the regular files under `feeds` (symlinks are not followed), hashing as we go."""
    target.mkdir()
    entries: dict[str, dict] = {}
    if not feeds.is_dir():
        return entries
    for folder, dirs, names in os.walk(feeds, onerror=_walk_error):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)))
        for file_name in sorted(names):
            source = Path(folder, file_name)
            if source.is_symlink() or not source.is_file():
                continue
            relative = source.relative_to(feeds)
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # publish replaced it meanwhile
                entries[f"{FEEDS}/{relative.as_posix()}"] = copy_file(source, destination)
    return entries


def _walk_error(exc: OSError) -> None:
    raise SnapshotError(f"{exc.filename}: cannot read the feeds folder ({exc.strerror})")


def _pack(folder: Path, target: Path, progress: Progress) -> Path:
    """One .tar.gz holding the folder; the manifest goes first so listing reads it fast."""
    names = [MANIFEST, *sorted(relative_files(folder) - {MANIFEST})]
    total, done = sum((folder / name).stat().st_size for name in names), 0
    with tarfile.open(target, "w:gz", compresslevel=6) as tar:
        tar.add(folder, arcname=folder.name, recursive=False)
        for relative in names:
            member = tar.gettarinfo(folder / relative, arcname=f"{folder.name}/{relative}")
            with open(folder / relative, "rb") as source:
                tar.addfile(member, _Reading(source, lambda n: progress("pack", n, total), done))
            done += member.size
    with open(target, "rb") as packed:
        os.fsync(packed.fileno())
    return target


class _Reading:
    """A file as tarfile reads it, telling how far it got."""

    def __init__(self, source: IO[bytes], report: Callable[[int], None], offset: int):
        self.source, self.report, self.position = source, report, offset

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.position += len(data)
        self.report(self.position)
        return data
