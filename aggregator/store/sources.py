"""Sources and their fetch state, and the fetch log."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.clock import now, up_to_the_second
from aggregator.models import (
    FetchLogEntry,
    Identity,
    KnownEntry,
    KnownItem,
    PollOutcome,
    SourceSpec,
    SourceState,
)
from aggregator.store.codec import from_text, to_text

if TYPE_CHECKING:
    from aggregator.store import Archive

SEED_SOURCE_ID = "seed"  # the pseudo-source that owns the seeded articles


_SOURCE_COLUMNS = (
    "id, kind, title, url, config_url, enabled, gone, etag, last_modified, body_hash, "
    "last_poll, last_status, last_error, consecutive_errors, next_poll_not_before"
)


class SourcesMixin:
    conn: sqlite3.Connection

    def sync_sources(self: Archive, specs: Sequence[SourceSpec]) -> None:
        """Make the sources table match config; removed sources are disabled, not deleted,
        because their items stay in the archive."""
        stamp = to_text(now())
        with self.transaction():
            self._ensure_seed_source(stamp)
            for spec in specs:
                self.conn.execute(
                    """INSERT INTO sources (id, kind, title, url, config_url, enabled, created)
                       VALUES (?, 'feed', ?, ?, ?, ?, ?)
                       ON CONFLICT(id) DO UPDATE SET
                           title = excluded.title,
                           enabled = excluded.enabled,
                           -- a new URL in config starts afresh: forget redirects, validators
                           -- and the old URL's errors and back-off (it may be why it changed)
                           url = CASE WHEN config_url = excluded.config_url THEN url
                                      ELSE excluded.url END,
                           last_poll = CASE WHEN config_url = excluded.config_url
                                            THEN last_poll END,
                           last_status = CASE WHEN config_url = excluded.config_url
                                              THEN last_status END,
                           last_error = CASE WHEN config_url = excluded.config_url
                                             THEN last_error END,
                           consecutive_errors = CASE WHEN config_url = excluded.config_url
                                                     THEN consecutive_errors ELSE 0 END,
                           next_poll_not_before = CASE WHEN config_url = excluded.config_url
                                                       THEN next_poll_not_before END,
                           etag = CASE WHEN config_url = excluded.config_url THEN etag END,
                           last_modified = CASE WHEN config_url = excluded.config_url
                                                THEN last_modified END,
                           body_hash = CASE WHEN config_url = excluded.config_url
                                            THEN body_hash END,
                           gone = CASE WHEN config_url = excluded.config_url THEN gone ELSE 0 END,
                           config_url = excluded.config_url""",
                    (spec.id, spec.title, spec.url, spec.url, int(spec.enabled), stamp),
                )
            known = [spec.id for spec in specs]
            marks = ",".join("?" * len(known)) or "NULL"
            self.conn.execute(
                f"UPDATE sources SET enabled = 0 WHERE kind = 'feed' AND id NOT IN ({marks})",
                known,
            )

    def _ensure_seed_source(self: Archive, stamp: str) -> None:
        self.conn.execute(
            """INSERT OR IGNORE INTO sources (id, kind, title, url, config_url, enabled, created)
               VALUES (?, 'seed', 'Seeded articles', 'file:archive/seed', 'file:archive/seed',
                       0, ?)""",
            (SEED_SOURCE_ID, stamp),
        )

    def ensure_seed_source(self: Archive) -> None:
        with self.transaction():
            self._ensure_seed_source(to_text(now()))

    def get_source(self: Archive, source_id: str) -> SourceState | None:
        row = self.conn.execute(
            f"SELECT {_SOURCE_COLUMNS}, (SELECT count(*) FROM items WHERE source_id = s.id) "
            "FROM sources s WHERE id = ?",
            (source_id,),
        ).fetchone()
        return _source(row) if row else None

    def list_sources(self: Archive, *, include_seed: bool = False) -> list[SourceState]:
        where = "" if include_seed else " WHERE kind = 'feed'"
        rows = self.conn.execute(
            f"SELECT {_SOURCE_COLUMNS}, (SELECT count(*) FROM items WHERE source_id = s.id) "
            f"FROM sources s{where} ORDER BY kind, id"
        )
        return [_source(row) for row in rows]

    def record_poll(
        self: Archive,
        source_id: str,
        outcome: PollOutcome,
        log: FetchLogEntry,
        *,
        config_url: str | None = None,
    ) -> bool:
        """Store a poll's effect on its source and its fetch log line, together. With
        `config_url` (the URL config gave when the poll began), the source is left as it is
        when config has given it another URL meanwhile: that URL starts afresh. Returns
        whether the source took the poll's effect."""
        with self.transaction():
            updated = self.conn.execute(
                """UPDATE sources SET last_poll = ?, last_status = ?, last_error = ?,
                       consecutive_errors = ?, next_poll_not_before = ?,
                       etag = coalesce(?, etag), last_modified = coalesce(?, last_modified),
                       body_hash = coalesce(?, body_hash), url = coalesce(?, url),
                       gone = max(gone, ?), enabled = CASE WHEN ? THEN 0 ELSE enabled END
                   WHERE id = ? AND config_url = coalesce(?, config_url)""",
                (
                    to_text(log.time),
                    outcome.status,
                    outcome.error,
                    outcome.consecutive_errors,
                    to_text(up_to_the_second(outcome.next_poll_not_before)),
                    outcome.etag,
                    outcome.last_modified,
                    outcome.body_hash,
                    outcome.new_url,
                    int(outcome.gone),
                    int(outcome.gone),
                    source_id,
                    config_url,
                ),
            ).rowcount
            self._log_fetch(log)
        return updated > 0

    def known_entries(self: Archive, source_id: str) -> list[tuple[bytes, KnownEntry, KnownItem]]:
        """The entries of the source's last stored poll, by digest, each with what its item
        holds now (dedupe.still_known decides whether it may stay unread)."""
        rows = self.conn.execute(
            """SELECT d.digest, d.item_id, d.content_hash, d.guid_key, d.canonical_url,
                   d.fingerprint, d.title_key, i.guid_key, i.canonical_url, i.content_hash
               FROM entry_digests d JOIN items i ON i.id = d.item_id
               WHERE d.source_id = ?""",
            (source_id,),
        )
        return [
            (
                row[0],
                KnownEntry(row[1], row[2], Identity(*row[3:7])),
                KnownItem(*row[7:10]),
            )
            for row in rows
        ]

    def keep_entries(
        self: Archive,
        source_id: str,
        unread: Collection[bytes],
        read: Sequence[tuple[bytes, KnownEntry]],
    ) -> None:
        """The source's document is now `unread` (known entries left as they are) and
        `read`: every other entry of the source is forgotten."""
        with self.transaction():
            rows = self.conn.execute(
                "SELECT digest FROM entry_digests WHERE source_id = ?", (source_id,)
            )
            held = {digest for (digest,) in rows}
            gone = held - set(unread) - {digest for digest, _ in read}
            self.conn.executemany(
                "DELETE FROM entry_digests WHERE source_id = ? AND digest = ?",
                ((source_id, digest) for digest in gone),
            )
            self.conn.executemany(
                """INSERT OR REPLACE INTO entry_digests (source_id, digest, item_id,
                       content_hash, guid_key, canonical_url, fingerprint, title_key)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (_entry_row(source_id, digest, known) for digest, known in read),
            )

    def _log_fetch(self: Archive, log: FetchLogEntry) -> None:
        self.conn.execute(
            """INSERT INTO fetch_log (time, source_id, url, status, bytes, duration_ms,
                   new_items, updated_items, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                to_text(log.time),
                log.source_id,
                log.url,
                log.status,
                log.bytes,
                log.duration_ms,
                log.new_items,
                log.updated_items,
                log.error,
            ),
        )

    def fetch_log(
        self: Archive, source_id: str | None = None, limit: int = 50
    ) -> list[FetchLogEntry]:
        sql = (
            "SELECT time, source_id, url, status, bytes, duration_ms, new_items, updated_items,"
            " error FROM fetch_log"
        )
        params: list = []
        if source_id:
            sql += " WHERE source_id = ?"
            params.append(source_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [FetchLogEntry(from_text(r[0]), *r[1:]) for r in self.conn.execute(sql, params)]

    def trim_fetch_log(self: Archive, older_than: datetime) -> int:
        with self.transaction():
            cursor = self.conn.execute(
                "DELETE FROM fetch_log WHERE time < ?", (to_text(older_than),)
            )
        return cursor.rowcount


def _source(row: tuple) -> SourceState:
    return SourceState(
        id=row[0],
        kind=row[1],
        title=row[2],
        url=row[3],
        config_url=row[4],
        enabled=bool(row[5]),
        gone=bool(row[6]),
        etag=row[7],
        last_modified=row[8],
        body_hash=row[9],
        last_poll=from_text(row[10]),
        last_status=row[11],
        last_error=row[12],
        consecutive_errors=row[13],
        next_poll_not_before=from_text(row[14]),
        item_count=row[15],
    )


def _entry_row(source_id: str, digest: bytes, known: KnownEntry) -> tuple:
    ident = known.identity
    return (
        source_id,
        digest,
        known.item_id,
        known.content_hash,
        ident.guid_key,
        ident.canonical_url,
        ident.fingerprint,
        ident.title_key,
    )
