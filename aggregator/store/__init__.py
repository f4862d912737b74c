"""The archive: the only place in the program that speaks SQL.

SQLite in WAL mode through sqlite-utils. The connection runs in autocommit mode and
every write that belongs together goes through `Archive.transaction()`, so an ingest
lands whole or not at all. Concerns live in mixins beside this file (items, sources);
the rest of the program sees methods that take and return the values in `models`.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from aggregator.errors import ArchiveBusy, ArchiveDamaged, ArchiveError, DiskFull, SearchError
from aggregator.models import SearchResult
from aggregator.store.captures import CapturesMixin
from aggregator.store.feeds import FeedsMixin
from aggregator.store.items import ItemsMixin
from aggregator.store.publishing import PublishingMixin
from aggregator.store.schema import MIGRATIONS, SCHEMA_VERSION
from aggregator.store.snapshot import SnapshotMixin
from aggregator.store.sources import SourcesMixin
from aggregator.store.topics import TopicsMixin

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["SCHEMA_VERSION", "Archive", "ArchiveError", "DiskFull"]

BUSY_TIMEOUT = 30.0
"""Seconds a statement waits for another program's write lock before ArchiveBusy."""


class Archive(
    ItemsMixin,
    SourcesMixin,
    TopicsMixin,
    SnapshotMixin,
    FeedsMixin,
    PublishingMixin,
    CapturesMixin,
):
    def __init__(self, path: Path | str, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.conn = self._connect()
        self._depth = 0
        if not readonly:
            self._migrate()
        elif self.schema_version() > SCHEMA_VERSION:
            raise ArchiveError(f"{self.path}: schema {self.schema_version()} is newer than ours")

    @functools.cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils' view of the connection, for migrations: made on first use, as
        importing sqlite-utils is a tenth of a re-poll's time."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    # --- lifecycle ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.readonly and not self.path.exists():
            raise ArchiveError(f"{self.path}: no archive here")
        try:
            conn = self._open()
        except sqlite3.Error as exc:  # a folder, a file we may not read: the archive's fault
            raise _archive_error(exc, self.path) or ArchiveError(f"{self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            if not self.readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise _archive_error(exc, self.path) or ArchiveError(f"{self.path}: {exc}") from exc
        return conn

    def _open(self) -> sqlite3.Connection:
        if self.readonly:
            uri = f"file:{self.path.resolve()}?mode=ro"
            return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)

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
                MIGRATIONS[version - 1](self.db)
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

    # --- search ------------------------------------------------------------------------

    def search_snippets(
        self, query: str, limit: int = 20, *, newest_first: bool = False
    ) -> list[SearchResult]:
        """Full-text search (FTS5 syntax), each item with the passage that matched (`search`
        reads through it); SearchError for a query SQLite cannot read (the statement is
        fixed, so its SQLITE_ERROR is the query's)."""
        with _query_read(query):
            return super().search_snippets(query, limit, newest_first=newest_first)

    # --- maintenance -------------------------------------------------------------------

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def optimize(self) -> None:
        self.conn.execute("PRAGMA optimize")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@contextmanager
def _query_read(query: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_ERROR:
            raise
        raise SearchError(
            f"cannot search for {query!r}: cannot read the query ({exc}); quote words "
            'with hyphens or dots ("NATO-Ukraine") and close every quote and bracket'
        ) from None


# --- SQLite's errors, said for people ------------------------------------------------------

_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_UNREACHABLE = {sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN,
                sqlite3.SQLITE_PERM}  # fmt: skip


def _archive_error(exc: sqlite3.Error, path: Path) -> ArchiveError | None:
    """What went wrong with the archive file, in one line; None for an error of ours (a
    constraint, a bad statement), which stays a bug with its traceback."""
    code = (exc.sqlite_errorcode or 0) & 0xFF  # the primary code: SQLITE_BUSY_SNAPSHOT is busy
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return ArchiveBusy(
            f"archive {path} is locked: another program held its write lock for "
            f"{BUSY_TIMEOUT:g} s; try again when it is done"
        )
    if code == sqlite3.SQLITE_FULL:
        return DiskFull(f"disk full: cannot write to {path}")
    if code in _DAMAGED:
        return ArchiveDamaged(
            f"{path}: not a usable SQLite archive ({exc}); "
            "`aggregator snapshot restore NAME` puts back a verified copy"
        )
    if code in _UNREACHABLE:
        return ArchiveError(f"{path}: cannot read or write the archive ({exc})")
    return None


def _translating(function: Callable) -> Callable:
    """`function` raising ArchiveError where it raised what `_archive_error` can say."""
    inner = getattr(function, "__wrapped__", None)
    if inner is not None and inspect.isgeneratorfunction(inner):  # a @contextmanager
        return contextmanager(_translating(inner))
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def each(self: Archive, *args, **kwargs):
            try:
                yield from function(self, *args, **kwargs)
            except sqlite3.Error as exc:
                _raise_said(exc, self.path)
                raise

        return each

    @functools.wraps(function)
    def call(self: Archive, *args, **kwargs):
        try:
            return function(self, *args, **kwargs)
        except sqlite3.Error as exc:
            _raise_said(exc, self.path)
            raise

    return call


def _raise_said(exc: sqlite3.Error, path: Path) -> None:
    said = _archive_error(exc, path)
    if said is not None:
        raise said from exc


def _translate_public_methods(cls: type) -> None:
    """The store's edge: every public method of the archive, mixins' included, raises
    ArchiveError subclasses instead of sqlite3 errors a caller would have to decode."""
    for name, attr in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_"):
            setattr(cls, name, _translating(attr))


_translate_public_methods(Archive)
