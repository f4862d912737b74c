"""The capture queue and what each capture found (issue 15).

A new feed item with a link is queued in the transaction that stores it. A capture that
finds an article writes it into its item as a new revision (content_html, content_text:
feeds, search and classify see it) and marks a publish owed, in one transaction; the page
itself is kept here, zlib-compressed, with the validators for the next conditional GET.
"""

from __future__ import annotations

import itertools
import sqlite3
import zlib
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.models import (
    CaptureJob,
    CaptureOutcome,
    CaptureRecord,
    CaptureState,
    IngestCounts,
)
from aggregator.store.codec import from_text, to_text

if TYPE_CHECKING:
    from aggregator.store import Archive

_RECORD_COLUMNS = (
    "item_id, url, state, attempts, next_attempt, last_attempt, last_status, reason, "
    "final_url, title, author, captured"
)


class CapturesMixin:
    conn: sqlite3.Connection

    # --- the queue -------------------------------------------------------------------------

    def queue_captures(self: Archive, links: Iterable[tuple[int, str]], when: datetime) -> None:
        """Queue (item id, link) pairs, due at once; an item already queued stays as it is."""
        stamp = to_text(when)
        self.conn.executemany(
            "INSERT INTO captures (item_id, url, next_attempt, queued) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(item_id) DO NOTHING",
            [(item_id, url, stamp, stamp) for item_id, url in links],
        )

    def requeue_capture(self: Archive, item_id: int, when: datetime) -> bool:
        """Make the item's capture due now, whatever became of it before (its validators
        stay: a page that did not change answers 304). False if it has no link."""
        with self.transaction():
            row = self.conn.execute("SELECT link FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is None or not row[0]:
                return False
            stamp = to_text(when)
            self.conn.execute(
                """INSERT INTO captures (item_id, url, next_attempt, queued) VALUES (?, ?, ?, ?)
                   ON CONFLICT(item_id) DO UPDATE SET state = 'pending', attempts = 0,
                       next_attempt = excluded.next_attempt""",
                (item_id, row[0], stamp, stamp),
            )
        return True

    def due_captures(
        self: Archive, now: datetime, limit: int | None = None, item_id: int | None = None
    ) -> list[CaptureJob]:
        """Pending captures due at `now` (or only `item_id`'s): half of `limit` (rounded
        down: a batch of one is the longest due) the newest queued first, as a fresh
        article is the one most likely still there and a backlog (an archive that predates
        captures queues every old item at once) must not hold today's news back; the rest
        the longest due first, so retries and the backlog move even while new items come
        faster than a run takes them."""
        sql = (
            "SELECT c.item_id, i.source_id, c.url, c.attempts, c.etag, c.last_modified "
            "FROM captures c JOIN items i ON i.id = c.item_id "
            "WHERE c.state = 'pending' AND c.next_attempt <= ?"
        )
        params: list = [to_text(now)]
        if item_id is not None:
            sql += " AND c.item_id = ?"
            params.append(item_id)
        newest = " ORDER BY c.queued DESC, c.item_id DESC"
        if limit is None:
            return [CaptureJob(*row) for row in self.conn.execute(sql + newest, params)]
        fresh = [
            CaptureJob(*row)
            for row in self.conn.execute(f"{sql}{newest} LIMIT ?", [*params, limit // 2])
        ]
        taken = {job.item_id for job in fresh}
        longest_due = self.conn.execute(
            f"{sql} ORDER BY c.next_attempt, c.item_id LIMIT ?", [*params, limit]
        )
        waiting = (CaptureJob(*row) for row in longest_due if row[0] not in taken)
        return fresh + list(itertools.islice(waiting, limit - len(fresh)))

    # --- what a capture found --------------------------------------------------------------

    def record_capture(self: Archive, job: CaptureJob, outcome: CaptureOutcome) -> IngestCounts:
        """Record an attempt; an article that differs from the item's text becomes the
        item's new revision, with a publish owed. Returns the item as changed, or nothing."""
        with self.transaction():
            self._update_capture(job.item_id, outcome)
            if outcome.article is None or not self._store_article(job.item_id, outcome):
                return IngestCounts()
            self._record_revision(job.item_id, outcome.time)
            self.mark_publish_owed(outcome.time)
            months = frozenset(self._months_of([job.item_id]))
            return IngestCounts(updated=1, item_ids=(job.item_id,), months=months)

    def _update_capture(self: Archive, item_id: int, outcome: CaptureOutcome) -> None:
        article = outcome.article
        page = zlib.compress(outcome.page) if outcome.page is not None else None
        self.conn.execute(
            """UPDATE captures SET state = ?, attempts = ?, next_attempt = ?, last_attempt = ?,
                   last_status = ?, reason = ?, final_url = coalesce(?, final_url),
                   etag = coalesce(?, etag), last_modified = coalesce(?, last_modified),
                   title = coalesce(?, title), author = coalesce(?, author),
                   published = coalesce(?, published), page = coalesce(?, page),
                   captured = CASE WHEN ? THEN ? ELSE captured END
               WHERE item_id = ?""",
            (
                outcome.state.value,
                outcome.attempts,
                to_text(outcome.next_attempt),
                to_text(outcome.time),
                outcome.status,
                outcome.reason,
                outcome.final_url,
                outcome.etag,
                outcome.last_modified,
                article and article.title,
                article and article.author,
                article and to_text(article.published),
                page,
                article is not None,
                to_text(outcome.time),
                item_id,
            ),
        )

    def _store_article(self: Archive, item_id: int, outcome: CaptureOutcome) -> bool:
        """The article as the item's text, unless it already is; True when it changed."""
        article, stamp = outcome.article, to_text(outcome.time)
        changed = self.conn.execute(
            """UPDATE items SET content_html = ?, content_text = ?,
                   author = coalesce(author, ?), updated = max(updated, ?), last_seen = ?,
                   revision = revision + 1
               WHERE id = ? AND content_html IS NOT ?""",
            (article.html, article.text, article.author, stamp, stamp, item_id, article.html),
        )
        return changed.rowcount == 1

    # --- reading ---------------------------------------------------------------------------

    def capture_counts(self: Archive) -> dict[str, int]:
        """Captures per state, every state named (0 when none)."""
        counts = {state.value: 0 for state in CaptureState}
        counts.update(self.conn.execute("SELECT state, count(*) FROM captures GROUP BY state"))
        return counts

    def get_capture(
        self: Archive, item_id: int, *, with_page: bool = False
    ) -> CaptureRecord | None:
        row = self.conn.execute(
            f"SELECT {_RECORD_COLUMNS}, page FROM captures WHERE item_id = ?", (item_id,)
        ).fetchone()
        if row is None:
            return None
        page = zlib.decompress(row[-1]) if with_page and row[-1] is not None else None
        return _record(row[:-1], page)

    def captures_in(
        self: Archive, states: Iterable[CaptureState], limit: int
    ) -> list[CaptureRecord]:
        """Captures in these states, the most recently tried first."""
        names = [state.value for state in states]
        marks = ",".join("?" * len(names))
        rows = self.conn.execute(
            f"SELECT {_RECORD_COLUMNS} FROM captures WHERE state IN ({marks}) "
            "ORDER BY last_attempt DESC, item_id DESC LIMIT ?",
            [*names, limit],
        )
        return [_record(row) for row in rows]


def _record(row: tuple, page: bytes | None = None) -> CaptureRecord:
    return CaptureRecord(
        item_id=row[0],
        url=row[1],
        state=CaptureState(row[2]),
        attempts=row[3],
        next_attempt=from_text(row[4]),
        last_attempt=from_text(row[5]),
        last_status=row[6],
        reason=row[7],
        final_url=row[8],
        title=row[9],
        author=row[10],
        captured=from_text(row[11]),
        page=page,
    )
