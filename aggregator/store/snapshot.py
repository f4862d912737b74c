"""What snapshots need from the archive: an online backup, a full export, and counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from aggregator.errors import ArchiveBusy

if TYPE_CHECKING:
    from aggregator.store import Archive

BACKUP_PAGES = 2048  # pages per backup step: 8 MB with 4 KB pages, so progress moves
EXPORT_BATCH = 500
MMAP_BYTES = 1 << 40  # SQLite caps it at its compile-time maximum (2 GB by default)

# Columns stored as JSON text or 0/1 that an export should show as what they mean.
_JSON_COLUMNS = frozenset({"categories", "rules"})
_BOOL_COLUMNS = frozenset({"date_inferred", "matched"})
_COUNTABLE = frozenset({"origin", "source_id"})

Progress = Callable[[int, int], None]  # (done, total)


class SnapshotMixin:
    conn: sqlite3.Connection

    @classmethod
    @contextmanager
    def at_one_instant(cls, path: Path, count: int) -> Iterator[list[Archive]]:
        """`count` read-only handles on the archive that all see it as it was at one
        instant, however much other processes write meanwhile, so that a backup and an
        export can run side by side and still agree row for row.

        Their read transactions start while this process holds the write lock (as any
        writer would), so no commit can fall between them; writers wait microseconds.
        """
        views = [cls(path, readonly=True) for _ in range(count)]
        try:
            for view in views:
                view.map_into_memory()
            gate = sqlite3.connect(path, isolation_level=None, timeout=30)
            try:
                gate.execute("BEGIN IMMEDIATE")
                try:
                    for view in views:
                        view.conn.execute("BEGIN")
                        view.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                finally:
                    gate.execute("ROLLBACK")
            finally:
                gate.close()
            yield views
        finally:
            for view in views:
                if view.conn.in_transaction:
                    view.conn.execute("COMMIT")
                view.close()

    def map_into_memory(self: Archive) -> None:
        """Read pages through mmap, not a system call each: long reads run much faster."""
        self.conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")

    def backup_to(self: Archive, target: Path, progress: Progress | None = None) -> None:
        """Copy the database into `target` with SQLite's online backup API.

        The source reads inside one transaction across all steps (its caller's, or one of
        its own), so the copy is the database as it was at one instant even while other
        processes write (in WAL mode they are not blocked, and the backup never restarts).
        The copy is switched to rollback-journal mode: one self-contained file.
        """
        own = not self.conn.in_transaction
        target_conn = sqlite3.connect(target, isolation_level=None)
        try:
            if own:
                self.conn.execute("BEGIN")
                self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            try:
                self.conn.backup(
                    target_conn,
                    pages=BACKUP_PAGES,
                    progress=_page_progress(progress),
                    sleep=0.01,
                )
            finally:
                if own:
                    self.conn.execute("COMMIT")
            target_conn.execute("PRAGMA journal_mode = DELETE")
        finally:
            target_conn.close()

    def export_lines(self: Archive) -> Iterator[list[tuple[bytes, str, str, int]]]:
        """Every item as one line of JSON with all its columns, its revisions and its topic
        scores, in batches of (json, origin, source_id, revision count), by id.

        SQLite builds the JSON itself (json1), in C and without holding Python's GIL, so
        the export of a large archive runs at the speed of the database.
        """
        cursor = self.conn.execute(self._export_sql())
        while rows := cursor.fetchmany(EXPORT_BATCH):
            yield rows

    def _export_sql(self: Archive) -> str:
        # Revisions come from a join grouped by item (LEFT JOIN keeps items as the outer
        # loop, in id order, and each item's revisions in key order), so SQLite nests
        # their JSON without parsing it twice; topics are few, a subquery is fine.
        item = self._json_fields("items", "i")
        revision = self._json_fields("item_revisions", "r")
        topic = self._json_fields("item_topics", "t")
        topics = (
            f"SELECT json_group_array(json_object({topic})) FROM "
            "(SELECT * FROM item_topics WHERE item_id = i.id ORDER BY topic) AS t"
        )
        return (
            f"SELECT CAST(json_object({item}, "
            f"'revisions', json_group_array(json_object({revision})) "
            "FILTER (WHERE r.item_id IS NOT NULL), "
            f"'topics', json(({topics}))) AS BLOB), "
            "i.origin, i.source_id, count(r.item_id) "
            "FROM items AS i LEFT JOIN item_revisions AS r ON r.item_id = i.id "
            "GROUP BY i.id ORDER BY i.id"
        )

    def _json_fields(self: Archive, table: str, alias: str) -> str:
        columns = self.conn.execute(f"PRAGMA table_info({table})").fetchall()
        return ", ".join(
            f"'{name}', {_json_value(f'{alias}.{name}', name, kind)}"
            for _cid, name, kind, *_rest in columns
        )

    def count_items_by(self: Archive, column: str) -> dict[str, int]:
        if column not in _COUNTABLE:
            raise ValueError(f"cannot count items by {column}")
        sql = f"SELECT {column}, count(*) FROM items GROUP BY {column} ORDER BY {column}"
        return dict(self.conn.execute(sql).fetchall())

    def count_revisions(self: Archive) -> int:
        return self.conn.execute("SELECT count(*) FROM item_revisions").fetchone()[0]

    def published_range(self: Archive) -> tuple[str | None, str | None]:
        """The oldest and newest publication dates, as stored (ISO 8601 UTC text)."""
        return self.conn.execute("SELECT min(published), max(published) FROM items").fetchone()

    def checkpoint_and_detach(self: Archive) -> None:
        """Fold the WAL into the file and leave rollback mode, so the file stands alone.

        ArchiveBusy when another connection has the archive open: SQLite then refuses to
        leave WAL mode, with SQLITE_BUSY or by leaving the mode as it was.
        """
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        mode = self.conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
        if mode != "delete":
            raise ArchiveBusy(f"archive {self.path} is open in another program")


def _page_progress(progress: Progress | None):
    if progress is None:
        return None

    def report(status: int, remaining: int, total: int) -> None:
        progress(total - remaining, total)

    return report


def _json_value(column: str, name: str, kind: str) -> str:
    """How a column appears in the export: what it means, not how it is stored."""
    if name in _JSON_COLUMNS:
        return f"json({column})"
    if name in _BOOL_COLUMNS:
        return f"json(CASE WHEN {column} THEN 'true' WHEN NOT {column} THEN 'false' END)"
    if kind.upper() == "REAL":  # the shortest text that reads back as the same number
        short, full = f"printf('%!.15g', {column})", f"printf('%!.17g', {column})"
        return f"json(CASE WHEN {short} + 0 = {column} THEN {short} ELSE {full} END)"
    return column
