"""Where snapshots are: their names, the name a user gives resolved to one of them, the
listing, and a snapshot's folder to read (a .tar.gz unpacked first).

A snapshot is a folder `<snapshots>/<UTC stamp>[-<slug of the label>]/`, or that folder as
one `<name>.tar.gz`. Anything else in the snapshots folder is not a snapshot: temporary
`.tmp-…` entries (a snapshot being written, unpacked or deleted) and foreign files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aggregator.errors import AggregatorError
from aggregator.slugs import slugify

DATABASE, ITEMS, FEEDS = "aggregator.db", "items.jsonl", "feeds"
PAGES = "pages.warc.gz"  # the captured pages, when there are any
MANIFEST, SUMS = "manifest.json", "SHA256SUMS"
TAR_SUFFIX = ".tar.gz"
TEMP_PREFIX = ".tmp-"
STAMP = "%Y%m%dT%H%M%SZ"
LABEL_ROOM = 40  # characters of a label kept in a snapshot name

_NAME = re.compile(r"^(\d{8}T\d{6}Z)(?:-[a-z0-9-]+)?$")

Progress = Callable[[str, int, int], None]  # (stage, done, total); the CLI draws it


def quiet(stage: str, done: int, total: int) -> None:
    """The progress callback when nobody watches."""


class SnapshotError(AggregatorError):
    """A snapshot cannot be made, found, verified or restored; str() is one line."""


@dataclass(frozen=True)
class SnapshotInfo:
    name: str  # the same for a folder and its .tar.gz: what every command shows and takes
    path: Path
    created: datetime
    items: int | None  # None when the manifest cannot be read
    size: int  # bytes on disk
    label: str | None
    packed: bool  # a .tar.gz rather than a folder


# --- names -----------------------------------------------------------------------------------


def snapshot_name(created: datetime, label: str | None = None) -> str:
    slug = slugify(label or "", LABEL_ROOM)
    stamp = created.astimezone(UTC).strftime(STAMP)
    return f"{stamp}-{slug}" if slug else stamp


def base_name(path: Path) -> str:
    """The snapshot name of a folder or a .tar.gz file; "" for anything else."""
    if path.name.endswith(TAR_SUFFIX):
        return path.name[: -len(TAR_SUFFIX)] if path.is_file() else ""
    return path.name if path.is_dir() else ""


def taken(snapshots: Path, name: str) -> bool:
    """Whether a snapshot of this name exists, in either form."""
    return (snapshots / name).exists() or (snapshots / (name + TAR_SUFFIX)).exists()


def entries(snapshots: Path) -> list[Path]:
    """Every snapshot in the folder, oldest first; temporary and foreign entries ignored."""
    if not snapshots.is_dir():
        return []
    found = [path for path in snapshots.iterdir() if _NAME.match(base_name(path))]
    return sorted(found, key=lambda path: (_stamp_of(base_name(path)), path.name))


def _stamp_of(name: str) -> str:
    return _NAME.match(name).group(1)


def resolve(snapshots: Path, name: str) -> Path:
    """A snapshot by its name, its file name, a unique prefix of either, or its label."""
    name = name.rstrip("/").rsplit("/", 1)[-1]
    found = entries(Path(snapshots))
    exact = [path for path in found if name in (path.name, base_name(path))]
    label = slugify(name, LABEL_ROOM)
    # a label of digits ("2025") also reads as the start of a name: both count, so that a
    # clash is refused as ambiguous rather than one of them chosen silently
    matches = exact or [
        path
        for path in found
        if path.name.startswith(name) or (label and base_name(path).endswith(f"Z-{label}"))
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SnapshotError(
            f'no snapshot "{name}" in {snapshots} (give its name, the start of it or its '
            "label; `snapshot list` shows them)"
        )
    shown = ", ".join(base_name(path) for path in matches)
    raise SnapshotError(f'"{name}" matches several snapshots: {shown}')


def claim(snapshots: Path, name: str) -> Path:
    """The temporary folder to write snapshot `name` in, unless a snapshot of that name
    exists in either form or a live process is writing one: checked and claimed under a
    lock, so two creates in one second (a folder and a .tar.gz) cannot both take a name."""
    snapshots.mkdir(parents=True, exist_ok=True)
    folder = os.open(snapshots, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # the folder itself: no lock file left behind
        if taken(snapshots, name) or _being_written(snapshots, name):
            raise SnapshotError(f"snapshot {name} already exists; wait a second or give a --label")
        return temporary_folder(snapshots, name)
    finally:
        os.close(folder)  # and with it the lock


def _being_written(snapshots: Path, name: str) -> bool:
    # `.tmp-NAME-PID-suffix`: the suffix (mkdtemp's, or prune's "deleting") has no "-", so
    # another snapshot's NAME-LABEL with a numeric label is not read as a PID
    own = re.compile(re.escape(f"{TEMP_PREFIX}{name}-") + r"(\d+)-[a-z0-9_]+$")
    return any(
        (match := own.match(path.name)) and alive(int(match.group(1)))
        for path in snapshots.iterdir()
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_folder(snapshots: Path, name: str) -> Path:
    """A fresh folder inside `snapshots` that no listing takes for a snapshot; its name
    carries our PID, so prune can tell a dead run's leftovers from a running one."""
    prefix = f"{TEMP_PREFIX}{name}-{os.getpid()}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=snapshots))


# --- listing ---------------------------------------------------------------------------------


def list_snapshots(snapshots: Path) -> list[SnapshotInfo]:
    """Every snapshot in the folder, oldest first."""
    return [info(path) for path in entries(Path(snapshots))]


def info(path: Path) -> SnapshotInfo:
    packed = path.is_file()
    name = base_name(path)
    manifest = _peek_manifest(path, name) if packed else _try_manifest(path)
    if not isinstance(manifest, dict):
        manifest = {}
    size = path.stat().st_size if packed else sum(p.stat().st_size for p in walk(path))
    return SnapshotInfo(
        name=name,
        path=path,
        created=datetime.strptime(_stamp_of(name), STAMP).replace(tzinfo=UTC),
        items=manifest.get("items"),
        size=size,
        label=manifest.get("label"),
        packed=packed,
    )


def _try_manifest(folder: Path) -> object:
    try:
        return json.loads((folder / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return None


def _peek_manifest(path: Path, name: str) -> object:
    """The manifest of a .tar.gz without unpacking it (it is the first member)."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile(f"{name}/{MANIFEST}")
            return json.loads(member.read()) if member else None
    except (OSError, KeyError, ValueError, tarfile.TarError):
        return None


def walk(folder: Path) -> Iterator[Path]:
    for parent, _dirs, names in os.walk(folder):
        for file_name in names:
            yield Path(parent, file_name)


def relative_files(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in walk(folder)}


# --- a folder to read ------------------------------------------------------------------------


@contextlib.contextmanager
def unpacked(path: Path, snapshots: Path) -> Iterator[Path]:
    """A folder to read: the snapshot itself, or a .tar.gz unpacked into a temporary folder
    inside the snapshots folder (removed afterwards)."""
    if path.is_dir():
        yield path
        return
    name = base_name(path)
    work = temporary_folder(snapshots, name)
    try:
        _extract(path, name, work)
        yield work / name
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract(path: Path, name: str, work: Path) -> None:
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = tar.getmembers()
            _check_members(members, name)
            tar.extractall(work, members=members, **_tar_filter())
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise SnapshotError(f"{path.name}: not a readable .tar.gz ({exc})") from None


def _check_members(members: list[tarfile.TarInfo], name: str) -> None:
    for member in members:
        inside = member.name == name or member.name.startswith(f"{name}/")
        if not inside or ".." in member.name.split("/") or not (member.isfile() or member.isdir()):
            raise SnapshotError(f"{name}{TAR_SUFFIX}: unexpected member {member.name}")


def _tar_filter() -> dict:
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
