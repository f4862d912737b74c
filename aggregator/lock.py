"""One writer per archive: an advisory lock on `<database>.lock`.

The daemon holds it for its life; every one-off command that writes (`fetch`,
`import-seeds`, `publish`, `reclassify`, `snapshot restore`) holds it while it runs, so a
restore can never swap the database under a writer, nor a writer change the database a
restore is replacing. A one-off writer waits a few seconds for the lock, then refuses.

`flock` locks belong to the open file, so the operating system drops them when the
holder exits in any way, `kill -9` included: a stale lock cannot outlive its process.
The lock file stays in place (deleting it would let two processes lock two different
files of the same name); it holds the holder's PID, and on a second line what holds it
unless that is a daemon, so the refusal can name it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from aggregator.errors import AggregatorError

PID_WAIT = 0.5  # how long to wait for a fresh holder to write its PID
WRITER_WAIT = 5.0  # how long a one-off writer waits for the lock before it refuses
RETRY_EVERY = 0.1
DAEMON = "daemon"


class LockHeld(AggregatorError):
    """Another process holds the archive lock; str() is the one line for the user."""

    def __init__(
        self, database: Path | str, pid: int | None, holder: str = DAEMON, wanted: str = ""
    ):
        self.database, self.pid, self.holder = Path(database), pid, holder
        who = f"pid {pid}" if pid else "pid unknown"
        what = "the daemon" if holder == DAEMON else f"aggregator {holder}"
        message = f"archive {database} is in use by {what} ({who})"
        if holder == DAEMON and pid:  # what to do instead
            message += _instead_of_the_daemon(pid, wanted)
        super().__init__(message)


def _instead_of_the_daemon(pid: int, wanted: str) -> str:
    if wanted == "snapshot restore":
        return "; stop it first: a restore replaces the archive it writes"
    return f"; it polls and publishes on its own, and `kill -HUP {pid}` reloads config"


def lock_path(database: Path | str) -> Path:
    return Path(f"{database}.lock")


class ArchiveLock:
    """`with ArchiveLock(db):` holds the lock for the block; `acquire()` raises LockHeld.

    `purpose` names the holder in other processes' refusals: "daemon", or the command
    ("fetch", "snapshot restore").
    """

    def __init__(self, database: Path | str, purpose: str = DAEMON):
        self.database = Path(database)
        self.path = lock_path(self.database)
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: float = 0.0) -> ArchiveLock:
        """Take the lock, waiting up to `wait` seconds for a holder to let go."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        try:
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    pid, holder = _read_holder(fd)
                    raise LockHeld(self.database, pid, holder, self.purpose)
                time.sleep(RETRY_EVERY)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        what = "" if self.purpose == DAEMON else f"{self.purpose}\n"
        os.pwrite(fd, f"{os.getpid()}\n{what}".encode(), 0)
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


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_pid(fd: int) -> int | None:
    return _read_holder(fd)[0]


def _read_holder(fd: int) -> tuple[int | None, str]:
    """The holder's PID and purpose, as its lock file says."""
    deadline = time.monotonic() + PID_WAIT
    while True:
        lines = os.pread(fd, 256, 0).decode("utf-8", "replace").splitlines()
        if lines and lines[0].strip().isdigit():
            purpose = lines[1].strip() if len(lines) > 1 and lines[1].strip() else DAEMON
            return int(lines[0]), purpose
        if time.monotonic() >= deadline:
            return None, DAEMON
        time.sleep(0.02)
