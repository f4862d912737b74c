"""Restoring a snapshot: verify it, swap its database and its captured pages in for the
archive's (keeping the replaced ones beside them), and republish the feeds from it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aggregator import pipeline
from aggregator.clock import now
from aggregator.errors import ArchiveBusy, ArchiveError
from aggregator.lock import WRITER_WAIT, ArchiveLock
from aggregator.snapshot.checking import verify_folder
from aggregator.snapshot.files import copy_file, fsync_dir
from aggregator.snapshot.layout import (
    DATABASE,
    FEEDS,
    PAGES,
    STAMP,
    Progress,
    SnapshotError,
    SnapshotInfo,
    info,
    quiet,
    resolve,
    unpacked,
    walk,
)
from aggregator.store import Archive

if TYPE_CHECKING:
    from aggregator.config import Config


@dataclass(frozen=True)
class RestoreReport:
    snapshot: SnapshotInfo
    database: Path
    replaced: Path | None  # the database it replaced, kept beside it
    note: str  # how the feeds were brought back


def restore(config: Config, name: str, progress: Progress = quiet) -> RestoreReport:
    """Put a snapshot's database in place of the archive's and republish its feeds.

    Holds the archive lock from the check to the swap and the republish, so it refuses
    while a daemon runs, and no daemon or one-off writer (`fetch`...) starts half-way and
    writes into the database about to be replaced. The snapshot is verified before
    anything is touched.
    """
    database = Path(config.archive.database)
    snapshots = Path(config.archive.snapshots)
    path = resolve(snapshots, name)
    lock = ArchiveLock(database, "snapshot restore")
    with lock.acquire(wait=WRITER_WAIT), unpacked(path, snapshots) as folder:
        verify_folder(folder, progress)
        replaced = _swap_in(folder / DATABASE, database, keep=_retire)
        if (folder / PAGES).is_file():  # a snapshot made before any capture has no pages
            _swap_in(folder / PAGES, Path(config.capture.warc), keep=_set_aside)
        note = _republish(database, config, folder / FEEDS)
    return RestoreReport(info(path), database, replaced, note)


def _swap_in(source: Path, target: Path, keep: Callable[[Path], Path]) -> Path | None:
    """A copy of `source` in place of `target`, atomically; the current `target` first kept
    by `keep`, whose path is returned. A copy cut short leaves `target` as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    incoming = target.with_name(f".{target.name}.restore-{os.getpid()}")
    try:
        copy_file(source, incoming)
        replaced = keep(target) if target.exists() else None
        os.replace(incoming, target)
        fsync_dir(target.parent)
    finally:
        incoming.unlink(missing_ok=True)
    return replaced


def _set_aside(path: Path) -> Path:
    """The current file moved to `<name>.replaced-<stamp>`: the WARC file may hold captures
    made after the snapshot."""
    replaced = _replaced_name(path)
    os.replace(path, replaced)
    return replaced


def _retire(database: Path) -> Path:
    """Keep the current database beside it as `<name>.replaced-<stamp>`, with its WAL.

    A WAL left beside the new file would be replayed into it, so the old database is first
    checkpointed and taken out of WAL mode; whatever sidecar files remain go with it.
    """
    _detach(database)
    replaced = _replaced_name(database)
    try:
        os.link(database, replaced)
    except OSError:
        shutil.copy2(database, replaced)
    for suffix in ("-wal", "-shm"):
        sidecar = Path(f"{database}{suffix}")
        if sidecar.exists():
            os.replace(sidecar, f"{replaced}{suffix}")
    return replaced


def _replaced_name(path: Path) -> Path:
    return _free_name(path.with_name(f"{path.name}.replaced-{now():{STAMP}}"))


def _detach(database: Path) -> None:
    try:
        with Archive(database) as live:
            live.checkpoint_and_detach()
    except ArchiveBusy:
        raise SnapshotError(
            f"archive {database} is open in another process; stop it and retry"
        ) from None
    except ArchiveError:
        pass  # the archive is damaged, which is what restores are for: keep it as it is


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _republish(database: Path, config: Config, snapshot_feeds: Path) -> str:
    """The feeds from the restored database, through the pipeline (which records the
    outcome in the archive); the snapshot's own feed files where publish is missing."""
    try:
        with Archive(database) as archive:
            failure = pipeline.publish_or_say_why(archive, config)
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name != "aggregator.publish":
            raise  # publish exists but lacks one of its own dependencies
        copied = _restore_feeds(snapshot_feeds, Path(config.server.feeds_dir))
        return f"publish is not available here: put back the snapshot's {copied} feed files"
    if failure:
        return f"{failure}; the next fetch or daemon tick publishes again"
    return "republished the feeds"


def _restore_feeds(source: Path, feeds: Path) -> int:
    """The snapshot's feed files back into place, each replaced atomically."""
    count = 0
    for path in sorted(walk(source)):
        target = feeds / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.restore-{os.getpid()}")
        shutil.copyfile(path, temporary)
        os.replace(temporary, target)
        count += 1
    return count
