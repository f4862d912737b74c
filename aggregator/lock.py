"""One daemon per archive: an advisory lock on `<database>.lock`.

`flock` locks belong to the open file, so the operating system drops them when the
holder exits in any way, `kill -9` included: a stale lock cannot outlive its process.
The lock file stays in place (deleting it would let two processes lock two different
files of the same name); it holds the holder's PID so the refusal can name it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

PID_WAIT = 0.5  # how long to wait for a fresh holder to write its PID


class LockHeld(Exception):
    """Another process holds the archive lock; str() is the one line for the user."""

    def __init__(self, database: Path | str, pid: int | None):
        self.database, self.pid = Path(database), pid
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"archive {database} is in use by another daemon ({who})")


def lock_path(database: Path | str) -> Path:
    return Path(f"{database}.lock")


class ArchiveLock:
    """`with ArchiveLock(db):` holds the lock for the block; `acquire()` raises LockHeld."""

    def __init__(self, database: Path | str):
        self.database = Path(database)
        self.path = lock_path(self.database)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> ArchiveLock:
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LockHeld(self.database, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # the next reader must not blame a process that is gone
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> ArchiveLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(database: Path | str) -> int | None:
    """The PID of the process holding the lock, or None when nobody does.

    Asks without taking the lock for longer than the test itself: a shared lock succeeds
    only when no exclusive holder exists, and is dropped at once. Returns 0 when the lock
    is held but the holder has not written its PID yet.
    """
    try:
        fd = os.open(lock_path(database), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    deadline = time.monotonic() + PID_WAIT
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)
