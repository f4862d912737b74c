"""Writing the feeds directory: atomically, and only files whose bytes changed.

A reader or a web server never sees a half-written file (temporary file in the same
folder, fsync, rename), and an unchanged file keeps its mtime, so its ETag and
Last-Modified stay valid for every client's conditional GET.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

FILE_MODE = 0o644  # static files for any web server to read
TEMP_SUFFIX = ".tmp"  # temporary files are ".<name>.<random>.tmp": hidden from serving
MONTH_FILE = re.compile(r"^\d{4}-\d{2}\.atom$")
ITEM_PAGE_FILE = re.compile(r"^([1-9]\d*)\.html$")


def write_if_changed(path: Path, data: bytes) -> bool:
    """Replace `path` with `data` unless it already holds exactly these bytes."""
    if _holds(path, data):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)
    return True


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def month_files(folder: Path) -> set[str]:
    """The months ('YYYY-MM') that have a month document ('YYYY-MM.atom') in `folder`."""
    if not folder.is_dir():
        return set()
    return {path.stem for path in folder.iterdir() if MONTH_FILE.match(path.name)}


def remove_stale_months(folder: Path, keep: set[str]) -> list[Path]:
    """Delete the month documents ('YYYY-MM.atom') in `folder` whose month is not in `keep`."""
    removed = []
    for month in sorted(month_files(folder) - keep):
        path = folder / f"{month}.atom"
        path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        _fsync_dir(folder)
    return removed


def item_pages_on_disk(folder: Path) -> set[int]:
    """The item ids that have a page ('<id>.html') in `folder`."""
    if not folder.is_dir():
        return set()
    return {int(m[1]) for name in os.listdir(folder) if (m := ITEM_PAGE_FILE.match(name))}


class PageWriter:
    """Writes item pages into one folder: only those whose bytes changed, and the folder
    synced once at the end.

    Unlike write_if_changed, no page is fsynced on its own (~10 ms of a disk's time per
    file, and a first fetch writes thousands), and a new page is written in place: creating
    files is most of what pages cost, and a temporary file and a rename double it. Nothing
    links to a new page before publish has written it (pages come before the feeds), and a
    changed page is still replaced by rename, so no reader sees half of a page it was sent
    to. A page is derived from the archive and every full publish renders every page again,
    so one a crash left empty or short is mended by the next."""

    def __init__(self, folder: Path, on_disk: set[int]) -> None:
        self.folder = str(folder)
        self.on_disk = on_disk
        self.written: list[Path] = []
        self.unchanged = 0
        self.removed: list[Path] = []
        folder.mkdir(parents=True, exist_ok=True)

    def put(self, item_id: int, data: bytes) -> None:
        path = f"{self.folder}/{item_id}.html"
        if item_id not in self.on_disk:
            _write_new(path, data)
        elif _holds(Path(path), data):
            self.unchanged += 1
            return
        else:
            temp = f"{self.folder}/.{item_id}.html.{os.getpid()}{TEMP_SUFFIX}"
            try:
                _write_new(temp, data)
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise
        self.on_disk.add(item_id)
        self.written.append(Path(path))

    def remove_all_but(self, keep: set[int]) -> list[Path]:
        """Delete the pages of items not in `keep`."""
        for item_id in sorted(self.on_disk - keep):
            path = Path(self.folder, f"{item_id}.html")
            path.unlink(missing_ok=True)
            self.removed.append(path)
        self.on_disk &= keep
        return self.removed

    def close(self) -> None:
        if self.written or self.removed:
            _fsync_dir(Path(self.folder))


def _write_new(path: str, data: bytes) -> None:
    """Create (or truncate) `path` holding `data`, readable by any web server."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(fd, FILE_MODE)  # whatever the umask
        handle.write(data)
