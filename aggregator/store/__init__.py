"""The archive: the only place in the program that speaks SQL.

SQLite in WAL mode through sqlite-utils. The connection runs in autocommit mode and
every write that belongs together goes through `Archive.transaction()`, so an ingest
lands whole or not at all. Concerns live in mixins beside this file (items, sources);
the rest of the program sees methods that take and return the values in `models`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from aggregator.store.feeds import FeedsMixin
from aggregator.store.items import ItemsMixin
from aggregator.store.publishing import PublishingMixin
from aggregator.store.schema import MIGRATIONS, SCHEMA_VERSION
from aggregator.store.snapshot import SnapshotMixin
from aggregator.store.sources import SourcesMixin
from aggregator.store.topics import TopicsMixin

__all__ = ["SCHEMA_VERSION", "Archive", "ArchiveError", "DiskFull"]


class ArchiveError(Exception):
    """The archive cannot be opened or is newer than this program."""


class DiskFull(ArchiveError):
    """A write did not fit on the disk (SQLITE_FULL); nothing of its transaction is stored."""


class Archive(ItemsMixin, SourcesMixin, TopicsMixin, SnapshotMixin, FeedsMixin, PublishingMixin):
    def __init__(self, path: Path | str, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.conn = self._connect()
        self.db = sqlite_utils.Database(self.conn)
        self._depth = 0
        if not readonly:
            self._migrate()
        elif self.schema_version() > SCHEMA_VERSION:
            raise ArchiveError(f"{self.path}: schema {self.schema_version()} is newer than ours")

    # --- lifecycle ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            if not self.path.exists():
                raise ArchiveError(f"{self.path}: no archive here")
            uri = f"file:{self.path.resolve()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            if not self.readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ArchiveError(f"{self.path}: not a usable SQLite archive ({exc})") from None
        return conn

    def close(self) -> None:
        self.conn.close()

    def interrupt(self) -> None:
        """Abort the statement running on this archive (call from another thread); its
        transaction rolls back."""
        self.conn.interrupt()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of work; nested calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._disk_full_named():
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                self.conn.execute("COMMIT")
            except BaseException:
                self._roll_back()
                raise
            finally:
                self._depth = 0

    @contextmanager
    def _disk_full_named(self) -> Iterator[None]:
        """SQLite says "database or disk is full"; a person needs to hear "disk full"."""
        try:
            yield
        except sqlite3.Error as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL:
                raise DiskFull(f"disk full: cannot write to {self.path}") from exc
            raise

    def _roll_back(self) -> None:
        # SQLite rolls a transaction back by itself after some errors (a full disk, an I/O
        # error); a ROLLBACK then fails and its message would hide the real error.
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # --- schema ------------------------------------------------------------------------

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise ArchiveError(
                f"{self.path}: schema version {current} is newer than this program's "
                f"{SCHEMA_VERSION}; upgrade the program"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                MIGRATIONS[version - 1](self.conn)
                self.conn.execute(f"PRAGMA user_version = {version}")

    # --- meta --------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # --- maintenance -------------------------------------------------------------------

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def optimize(self) -> None:
        self.conn.execute("PRAGMA optimize")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
