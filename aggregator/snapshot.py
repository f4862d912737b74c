"""Snapshots: consistent, self-describing copies of the archive that outlive this program.

A snapshot is a folder `<snapshots>/<UTC stamp>[-<label>]/` (or the same folder as one
`.tar.gz`) holding `aggregator.db` (an online backup, never a file copy), `items.jsonl`
(every item with its revisions, exported from that backup), `feeds/` (the published
documents) and `manifest.json` (counts, versions, and the size and SHA-256 of every other
file), plus `SHA256SUMS` so `sha256sum -c` can check it by hand. It is written under a
temporary name and renamed when complete, so a half-written snapshot never looks like one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import re
import shutil
import sqlite3
import sys
import tarfile
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click

from aggregator import __version__
from aggregator.errors import AggregatorError
from aggregator.lock import WRITER_WAIT, ArchiveLock
from aggregator.store import Archive, ArchiveError
from aggregator.store.codec import now

FORMAT = "aggregator-snapshot"
FORMAT_VERSION = 1
DATABASE, ITEMS, FEEDS = "aggregator.db", "items.jsonl", "feeds"
MANIFEST, SUMS = "manifest.json", "SHA256SUMS"
TAR_SUFFIX = ".tar.gz"
TEMP_PREFIX = ".tmp-"
STAMP = "%Y%m%dT%H%M%SZ"
CHUNK = 1 << 20
HASH_CHUNK = 64 << 20
REPORT_EVERY = 2000  # items between progress reports

_NAME = re.compile(r"^(\d{8}T\d{6}Z)(?:-[a-z0-9-]+)?$")
_TEMP = re.compile(r"^\.tmp-.*-(\d+)-[a-z0-9_]+(?:\.tar\.gz)?$")

Reporter = Callable[[str, int, int], None]  # (stage, done, total)


class SnapshotError(AggregatorError):
    """A snapshot cannot be made, found, verified or restored; str() is one line."""


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    path: Path
    created: datetime
    items: int | None  # None when the manifest cannot be read
    size: int  # bytes on disk
    label: str | None
    packed: bool  # a .tar.gz rather than a folder


@dataclass(frozen=True)
class Counts:
    """What the manifest promises about the items, checked against db and JSONL."""

    items: int
    items_by_origin: dict[str, int]
    items_by_source: dict[str, int]
    revisions: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "items_by_origin": self.items_by_origin,
            "items_by_source": self.items_by_source,
            "revisions": self.revisions,
        }


@dataclass(frozen=True)
class RestoreReport:
    snapshot: SnapshotInfo
    database: Path
    replaced: Path | None  # the database it replaced, kept beside it
    note: str  # how the feeds were brought back


# --- names -----------------------------------------------------------------------------------


def snapshot_name(created: datetime, label: str | None = None) -> str:
    slug = _slug(label or "")
    stamp = created.astimezone(UTC).strftime(STAMP)
    return f"{stamp}-{slug}" if slug else stamp


def _slug(label: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:40].strip("-")


def _entries(snapshots: Path) -> list[Path]:
    """Every snapshot in the folder, oldest first; temporary and foreign entries ignored."""
    if not snapshots.is_dir():
        return []
    found = []
    for path in snapshots.iterdir():
        base = _base_name(path)
        if base and _NAME.match(base) and (path.is_dir() or path.is_file()):
            found.append(path)
    return sorted(found, key=lambda p: (_NAME.match(_base_name(p)).group(1), p.name))


def _base_name(path: Path) -> str:
    if path.name.endswith(TAR_SUFFIX):
        return path.name[: -len(TAR_SUFFIX)] if path.is_file() else ""
    return path.name if path.is_dir() else ""


def resolve(snapshots: Path, name: str) -> Path:
    """A snapshot by its name, its file name, or a unique prefix of either."""
    name = name.rstrip("/").rsplit("/", 1)[-1]
    entries = _entries(Path(snapshots))
    exact = [p for p in entries if name in (p.name, _base_name(p))]
    matches = exact or [p for p in entries if p.name.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SnapshotError(f'no snapshot "{name}" in {snapshots}')
    shown = ", ".join(p.name for p in matches)
    raise SnapshotError(f'"{name}" matches several snapshots: {shown}')


# --- create ----------------------------------------------------------------------------------


def create(
    database: Path,
    snapshots: Path,
    feeds: Path,
    *,
    label: str | None = None,
    tar: bool = False,
    progress: Reporter | None = None,
    clock: Callable[[], datetime] = now,
) -> SnapshotInfo:
    """Write a complete snapshot of `database` and `feeds` into `snapshots`, or nothing."""
    database, snapshots, feeds = Path(database), Path(snapshots), Path(feeds)
    if not database.is_file():
        raise SnapshotError(f"{database}: no archive here")
    created = clock()
    name = snapshot_name(created, label)
    final = snapshots / (name + TAR_SUFFIX if tar else name)
    if (snapshots / name).exists() or (snapshots / (name + TAR_SUFFIX)).exists():
        raise SnapshotError(f"snapshot {name} already exists; wait a second or give a --label")
    snapshots.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{name}-{os.getpid()}-", dir=snapshots))
    try:
        folder = work / name
        folder.mkdir()
        _fill(folder, database, feeds, created, label, progress or _quiet)
        built = _pack(folder, work / (name + TAR_SUFFIX), progress or _quiet) if tar else folder
        if final.exists():
            raise SnapshotError(f"snapshot {name} already exists")
        os.rename(built, final)
        _fsync_dir(snapshots)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return info(final)


def _quiet(stage: str, done: int, total: int) -> None:
    return None


def _fill(
    folder: Path,
    database: Path,
    feeds: Path,
    created: datetime,
    label: str | None,
    progress: Reporter,
) -> None:
    copy = folder / DATABASE
    items, database_entry = _copy_and_export(database, copy, folder / ITEMS, progress)
    with Archive(copy, readonly=True) as backup:
        counts, dates = _db_counts(backup), backup.published_range()
        schema = backup.schema_version()
    if items.counts != counts:  # cannot happen unless the two views saw different instants
        raise SnapshotError(f"{ITEMS}: exported counts differ from the database copy")
    files = {ITEMS: items.entry, DATABASE: database_entry}
    files.update(_copy_feeds(feeds, folder / FEEDS))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": folder.name,
        "created": _iso(created),
        "label": label,
        "program": "aggregator",
        "program_version": __version__,
        "schema_version": schema,
        **counts.as_dict(),
        "oldest_published": dates[0],
        "newest_published": dates[1],
        "files": dict(sorted(files.items())),
    }
    manifest["manifest_sha256"] = _manifest_hash(manifest)
    _write_bytes(folder / MANIFEST, _manifest_bytes(manifest))
    files[MANIFEST] = _file_entry(folder / MANIFEST)
    _write_bytes(folder / SUMS, _sums_text(files).encode())


def _copy_and_export(
    database: Path, copy: Path, items: Path, progress: Reporter
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
    return _file_entry(copy)


def _db_counts(archive: Archive) -> Counts:
    by_origin = archive.count_items_by("origin")
    return Counts(
        items=sum(by_origin.values()),
        items_by_origin=by_origin,
        items_by_source=archive.count_items_by("source_id"),
        revisions=archive.count_revisions(),
    )


@dataclass(frozen=True)
class _Export:
    entry: dict  # size and sha256
    counts: Counts


def _write_items(archive: Archive, path: Path, progress: Reporter) -> _Export:
    """items.jsonl, hashed while it is written."""
    digest, size, tally = hashlib.sha256(), 0, _Tally()
    total = archive.count_items()
    with open(path, "wb", buffering=0) as out:
        for rows in archive.export_lines():
            data = b"\n".join(row[0] for row in rows) + b"\n"
            digest.update(data)
            out.write(data)
            size += len(data)
            for _line, origin, source_id, revisions in rows:
                tally.add(origin, source_id, revisions)
            progress("export", tally.items, total)
        os.fsync(out.fileno())
    return _Export({"size": size, "sha256": digest.hexdigest()}, tally.counts())


class _Tally:
    def __init__(self) -> None:
        self.items, self.revisions = 0, 0
        self.origins: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()

    def add(self, origin: str, source_id: str, revisions: int) -> None:
        self.items += 1
        self.revisions += revisions
        self.origins[origin] += 1
        self.sources[source_id] += 1

    def counts(self) -> Counts:
        return Counts(
            self.items,
            dict(sorted(self.origins.items())),
            dict(sorted(self.sources.items())),
            self.revisions,
        )


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
            relative = source.relative_to(feeds)
            if source.is_symlink() or not source.is_file():
                continue
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # publish replaced it meanwhile
                entries[f"{FEEDS}/{relative.as_posix()}"] = _copy_file(source, destination)
    return entries


def _walk_error(exc: OSError) -> None:
    raise SnapshotError(f"{exc.filename}: cannot read the feeds folder ({exc.strerror})")


def _copy_file(source: Path, destination: Path) -> dict:
    digest, size = hashlib.sha256(), 0
    with open(source, "rb") as src, open(destination, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return {"size": size, "sha256": digest.hexdigest()}


def _pack(folder: Path, target: Path, progress: Reporter) -> Path:
    """One .tar.gz holding the folder; the manifest goes first so listing reads it fast."""
    names = [MANIFEST, *sorted(_relative_files(folder) - {MANIFEST})]
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


# --- manifest ----------------------------------------------------------------------------------


def _manifest_hash(manifest: dict) -> str:
    """SHA-256 of the manifest's own fields, so an edited field is caught too."""
    fields = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()


def _sums_text(files: dict[str, dict]) -> str:
    """The `sha256sum` format, escaped as GNU coreutils does for odd file names."""
    lines = []
    for relative, entry in sorted(files.items()):
        if "\\" in relative or "\n" in relative:
            escaped = relative.replace("\\", "\\\\").replace("\n", "\\n")
            lines.append(f"\\{entry['sha256']}  {escaped}\n")
        else:
            lines.append(f"{entry['sha256']}  {relative}\n")
    return "".join(lines)


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise SnapshotError(f"{MANIFEST}: missing")
    try:
        manifest = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SnapshotError(f"{MANIFEST}: not valid JSON (damaged)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"{MANIFEST}: not an aggregator snapshot manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(
            f"{MANIFEST}: format version {manifest.get('format_version')} is not "
            f"{FORMAT_VERSION}; use a newer program"
        )
    if manifest.get("manifest_sha256") != _manifest_hash(manifest):
        raise SnapshotError(f"{MANIFEST}: sha256 of its fields mismatch (edited or damaged)")
    return manifest


# --- list and info -------------------------------------------------------------------------------


def list_snapshots(snapshots: Path) -> list[SnapshotInfo]:
    """Every snapshot in the folder, oldest first."""
    return [info(path) for path in _entries(Path(snapshots))]


def info(path: Path) -> SnapshotInfo:
    packed = path.is_file()
    name = _base_name(path)
    manifest = _peek_manifest(path, name) if packed else _try_manifest(path)
    created = datetime.strptime(_NAME.match(name).group(1), STAMP).replace(tzinfo=UTC)
    size = path.stat().st_size if packed else sum(p.stat().st_size for p in _files(path))
    return SnapshotInfo(
        name=name,
        path=path,
        created=created,
        items=manifest.get("items") if manifest else None,
        size=size,
        label=manifest.get("label") if manifest else None,
        packed=packed,
    )


def _try_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return None


def _peek_manifest(path: Path, name: str) -> dict | None:
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile(f"{name}/{MANIFEST}")
            return json.loads(member.read()) if member else None
    except (OSError, KeyError, ValueError, tarfile.TarError):
        return None


def _files(folder: Path) -> Iterator[Path]:
    for parent, _dirs, names in os.walk(folder):
        for file_name in names:
            yield Path(parent, file_name)


def _relative_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in _files(folder)}


# --- verify ----------------------------------------------------------------------------------


def verify(snapshots: Path, name: str, progress: Reporter | None = None) -> SnapshotInfo:
    """Re-check every checksum, the database and the counts; SnapshotError names the first
    file that does not match."""
    path = resolve(Path(snapshots), name)
    with _unpacked(path, Path(snapshots)) as folder:
        verify_folder(folder, progress)
    return info(path)


def verify_folder(folder: Path, progress: Reporter | None = None) -> dict:
    progress = progress or _quiet
    manifest = _read_manifest(folder)
    files = manifest.get("files") or {}
    for relative in _check_order(files):
        _check_file(folder, relative, files[relative], progress)
    extra = sorted(_relative_files(folder) - set(files) - {MANIFEST, SUMS})
    if extra:
        raise SnapshotError(f"{extra[0]}: not in the manifest")
    _check_database(folder / DATABASE, manifest)
    _check_items(folder / ITEMS, manifest, progress)
    _check_sums(folder, files)
    return manifest


def _check_order(files: dict) -> list[str]:
    first = [name for name in (DATABASE, ITEMS) if name in files]
    missing = [name for name in (DATABASE, ITEMS) if name not in files]
    if missing:
        raise SnapshotError(f"{MANIFEST}: lists no {missing[0]}")
    return first + sorted(set(files) - set(first))


def _check_file(folder: Path, relative: str, entry: dict, progress: Reporter) -> None:
    path = folder / relative
    if not path.is_file():
        raise SnapshotError(f"{relative}: missing")
    size = path.stat().st_size
    if size != entry.get("size"):
        raise SnapshotError(
            f"{relative}: size mismatch ({size} bytes, manifest says {entry.get('size')})"
        )
    if _file_entry(path, progress)["sha256"] != entry.get("sha256"):
        raise SnapshotError(f"{relative}: sha256 mismatch")


def _check_database(path: Path, manifest: dict) -> None:
    try:
        with Archive(path, readonly=True) as archive:
            archive.map_into_memory()
            result = archive.integrity_check()
            if result != "ok":
                raise SnapshotError(f"{DATABASE}: integrity check failed: {result}")
            found = {**_db_counts(archive).as_dict(), "schema_version": archive.schema_version()}
            oldest, newest = archive.published_range()
    except (ArchiveError, sqlite3.DatabaseError) as exc:
        raise SnapshotError(f"{DATABASE}: {exc}") from None
    found.update(oldest_published=oldest, newest_published=newest)
    _compare(DATABASE, found, manifest)


def _check_items(path: Path, manifest: dict, progress: Reporter) -> None:
    tally = _Tally()
    total = manifest.get("items") or 0
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                raise SnapshotError(f"{ITEMS}: line {number} is not valid JSON") from None
            if not isinstance(record, dict):
                raise SnapshotError(f"{ITEMS}: line {number} is not an item")
            revisions = record.get("revisions")
            tally.add(record.get("origin"), record.get("source_id"), len(revisions or ()))
            if number % REPORT_EVERY == 0:
                progress("items", number, total)
    _compare(ITEMS, tally.counts().as_dict(), manifest)


def _compare(file_name: str, found: dict, manifest: dict) -> None:
    for key, value in found.items():
        if manifest.get(key) != value:
            raise SnapshotError(
                f"{file_name}: {key} is {_show(value)}, manifest says {_show(manifest.get(key))}"
            )


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _check_sums(folder: Path, files: dict) -> None:
    path = folder / SUMS
    if not path.is_file():
        raise SnapshotError(f"{SUMS}: missing")
    expected = {**files, MANIFEST: _file_entry(folder / MANIFEST)}
    if path.read_bytes() != _sums_text(expected).encode():
        raise SnapshotError(f"{SUMS}: does not match the files")


@contextlib.contextmanager
def _unpacked(path: Path, snapshots: Path) -> Iterator[Path]:
    """A folder to read: the snapshot itself, or a .tar.gz unpacked into a temporary folder
    inside the snapshots folder (removed afterwards)."""
    if path.is_dir():
        yield path
        return
    name = _base_name(path)
    work = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{name}-{os.getpid()}-", dir=snapshots))
    try:
        try:
            with tarfile.open(path, "r:gz") as tar:
                members = tar.getmembers()
                _check_members(members, name)
                tar.extractall(work, members=members, **_tar_filter())
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise SnapshotError(f"{path.name}: not a readable .tar.gz ({exc})") from None
        yield work / name
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_members(members: list[tarfile.TarInfo], name: str) -> None:
    for member in members:
        inside = member.name == name or member.name.startswith(f"{name}/")
        if not inside or ".." in member.name.split("/") or not (member.isfile() or member.isdir()):
            raise SnapshotError(f"{name}{TAR_SUFFIX}: unexpected member {member.name}")


def _tar_filter() -> dict:
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


# --- restore ----------------------------------------------------------------------------------


def restore(config: Any, name: str, progress: Reporter | None = None) -> RestoreReport:
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
    with lock.acquire(wait=WRITER_WAIT), _unpacked(path, snapshots) as folder:
        verify_folder(folder, progress)
        replaced = _swap_in(folder / DATABASE, database)
        note = _republish(database, config, folder / FEEDS)
    return RestoreReport(info(path), database, replaced, note)


def _swap_in(source: Path, database: Path) -> Path | None:
    incoming = database.with_name(f".{database.name}.restore-{os.getpid()}")
    try:
        _copy_file(source, incoming)
        replaced = _retire(database) if database.exists() else None
        os.replace(incoming, database)
        _fsync_dir(database.parent)
    finally:
        incoming.unlink(missing_ok=True)
    return replaced


def _retire(database: Path) -> Path:
    """Keep the current database beside it as `<name>.replaced-<stamp>`, with its WAL.

    A WAL left beside the new file would be replayed into it, so the old database is first
    checkpointed and taken out of WAL mode; whatever sidecar files remain go with it.
    """
    try:
        with Archive(database) as live:
            live.checkpoint_and_detach()
    except (ArchiveError, sqlite3.DatabaseError) as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise SnapshotError(
                f"archive {database} is open in another process; stop it and retry"
            ) from None
        # otherwise the archive is damaged, which is what restores are for: keep it as it is
    replaced = _free_name(database.with_name(f"{database.name}.replaced-{now():{STAMP}}"))
    try:
        os.link(database, replaced)
    except OSError:
        shutil.copy2(database, replaced)
    for suffix in ("-wal", "-shm"):
        sidecar = Path(f"{database}{suffix}")
        if sidecar.exists():
            os.replace(sidecar, f"{replaced}{suffix}")
    return replaced


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _republish(database: Path, config: Any, snapshot_feeds: Path) -> str:
    try:
        from aggregator.publish import publish_all
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name != "aggregator.publish":
            raise  # publish exists but lacks one of its own dependencies
        copied = _restore_feeds(snapshot_feeds, Path(config.server.feeds_dir))
        return f"publish is not available here: put back the snapshot's {copied} feed files"
    with Archive(database) as archive:
        publish_all(archive, config)
    return "republished the feeds"


def _restore_feeds(source: Path, feeds: Path) -> int:
    """The snapshot's feed files back into place, each replaced atomically."""
    count = 0
    for path in sorted(_files(source)):
        target = feeds / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.restore-{os.getpid()}")
        shutil.copyfile(path, temporary)
        os.replace(temporary, target)
        count += 1
    return count


# --- prune ----------------------------------------------------------------------------------


def prune(snapshots: Path, keep: int) -> list[str]:
    """Remove all but the newest `keep` snapshots (and temporary folders of dead runs)."""
    if keep < 1:
        raise SnapshotError("--keep must be at least 1 (delete the folder to remove them all)")
    snapshots = Path(snapshots)
    doomed = _entries(snapshots)[:-keep]
    for path in doomed:
        _remove(path)
    for path in _stale_temporaries(snapshots):
        _remove(path)
    return [path.name for path in doomed]


def _remove(path: Path) -> None:
    """Rename first, so a half-deleted snapshot never looks like a snapshot."""
    doomed = path.with_name(f"{TEMP_PREFIX}{path.name}-{os.getpid()}-deleting")
    os.rename(path, doomed)
    if doomed.is_dir():
        shutil.rmtree(doomed)
    else:
        doomed.unlink()


def _stale_temporaries(snapshots: Path) -> list[Path]:
    if not snapshots.is_dir():
        return []
    return [
        path
        for path in snapshots.iterdir()
        if (match := _TEMP.match(path.name)) and not _alive(int(match.group(1)))
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- files -------------------------------------------------------------------------------------


def _file_entry(path: Path, progress: Reporter | None = None) -> dict:
    """Size and SHA-256, read through mmap: no copy into Python, and hashlib releases the
    GIL, so checksums run beside other work."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        if size:
            with mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                for start in range(0, size, HASH_CHUNK):
                    digest.update(view[start : start + HASH_CHUNK])
                    if progress:
                        progress(f"sha256 {path.name}", min(start + HASH_CHUNK, size), size)
                view.release()
    return {"size": size, "sha256": digest.hexdigest()}


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- progress on a terminal ----------------------------------------------------------------------


class TerminalProgress:
    """A progress bar per stage on a terminal, only once the work has taken a second.

    Quiet when the stream is not a terminal (logs, pipes, tests) and for small archives.
    """

    def __init__(self, stream: IO[str] | None = None, delay: float = 1.0, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.delay, self.clock = delay, clock
        self.started = clock()
        self.stage: str | None = None
        self.bar: Any = None
        self.shown = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.stage, self.shown = stage, 0
        if self.bar is None:
            if self.clock() - self.started < self.delay or done >= total:
                return
            self.bar = click.progressbar(length=total, label=stage, file=self.stream)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.length - self.shown)
            self.bar.__exit__(None, None, None)
            self.bar = None
